/*
** http.h: the client (a curl multi on the runtime's loop) and transfers
** of runtime/http.c, shared with bindings/http.c. Internal, like
** internal.h.
*/
#ifndef CORIO_HTTP_H
#define CORIO_HTTP_H

#include "internal.h"

typedef struct corio_http corio_http;  /* a client: one pool */
typedef struct corio_xfer corio_xfer;  /* one request's transfer */

/* A client. max_conn <= 0: no limit; max_keep < 0, expiry < 0: curl's
** defaults; max_keep or expiry 0: no connection is reused; expiry (s) is
** rounded up to whole seconds. NULL when out of memory. */
corio_http *corio__http_new(corio_rt *rt, long max_conn, long max_keep,
                            double expiry, int verify, const char *cainfo,
                            int http2);
/* Whether responses are decoded (Content-Encoding); on by default. With
** it on, the default header lines carry the Accept-Encoding. */
void corio__http_set_decode(corio_http *h, int on);
/* What the client keeps in the Lua state (the function a direct stream
** read makes its chunks with): made with the client's Lua object, freed
** when it is collected (before corio__http_gc). */
void corio__http_lua_init(corio_http *h, lua_State *L);
void corio__http_lua_free(corio_http *h, lua_State *L);
/* Replace the default header lines ("Name: value"). 0 or UV_ENOMEM. */
int corio__http_headers(corio_http *h, const char **lines, int n);
/* Close: fail requests in flight with kind "closed". May be repeated. */
void corio__http_close(corio_http *h);
/* The client's Lua object is collected; rt_alive is 0 when the runtime
** was destroyed first (its loop closed every handle already). */
void corio__http_gc(corio_http *h, int rt_alive);
void corio__http_rt_free(corio_rt *rt, int own_loop);
int corio__http_closed(corio_http *h);
/* Whether one of the client's stream reads is inside curl (a __gc
** finaliser runs there): no request may start and no stream of it be
** read. Closing a stream or the client waits until curl returned. */
int corio__http_busy(corio_http *h);
/* Whether a request about to start should run a full garbage collection
** first, so that streams nobody can reach give their connections back
** (every connection is taken, and a stream was opened since the last). */
int corio__http_want_gc(corio_http *h);
/* out[4]: connections opened, reused, idle, requests in flight. */
void corio__http_stats(corio_http *h, double *out);

/* A transfer for a new request (NULL: out of memory); put gives back one
** that was never started. */
corio_xfer *corio__xfer_get(corio_http *h);
void corio__xfer_put(corio_xfer *x);
/* Add a request header line; then headers replace the client's. */
int corio__xfer_header(corio_xfer *x, const char *line);
/* Set the request up. to[]: connect, read, write, pool, total in seconds
** (<= 0: none). 0, UV_EINVAL or UV_ENOMEM (message: corio__xfer_errmsg). */
int corio__xfer_setup(corio_xfer *x, const char *method, const char *url,
                      const char *body, size_t nbody, int has_body,
                      int stream, const double *to);
const char *corio__xfer_errmsg(corio_xfer *x);
/* A streamed request body (setup's has_body 2, nbody its length or
** (size_t)-1 for none): the first chunk, given before start; then each
** next one from the requesting task (feed: the outcome pushed and the
** count returned, -1 after arming t, -2 not expecting one, -4 refused as
** corio__xfer_read is). The task gets "more" (instead of true, status,
** ...) when the transfer wants the next chunk. */
int corio__xfer_first(corio_xfer *x, const char *p, size_t n, int eof);
int corio__xfer_feed(lua_State *L, corio_xfer *x, corio_task *t,
                     const char *p, size_t n, int eof);
size_t corio__http_up_peak(corio_http *h);
/* Start the transfer; task t then suspends with corio__http_abort. */
int corio__xfer_start(corio_xfer *x, corio_task *t);
/* Streams: bind the userdata slot, read the next chunk (pushed and the
** count returned, -1 after arming t, -2 if another task waits on x),
** bytes held, close, gc. A read may also return -3: raise the error
** pushed; -4: refused, see corio__http_busy. */
void corio__xfer_bind(corio_xfer *x, void **box);
int corio__xfer_read(lua_State *L, corio_xfer *x, corio_task *t);
void corio__xfer_buffered(corio_xfer *x, size_t *len, int *paused);
int corio__xfer_close(corio_xfer *x);
void corio__xfer_gc(corio_xfer *x, int rt_alive);

/* The abort hook of every http suspension (SPEC rule 7). */
extern corio_abort_fn corio__http_abort;

#endif
