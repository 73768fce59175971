/*
** http.c (bindings): the C functions behind lua/corio/http.lua. A client
** object wraps one runtime/http.c client (a curl multi); a stream object
** holds one transfer whose body is read chunk by chunk. These functions
** take arguments already checked by the Lua module (it raises the kind
** "invalid" errors); they build no response objects, which the module
** makes from the values pushed here.
*/
#include <stdio.h>
#include <stdlib.h>

#include "bindings.h"
#include "../runtime/http.h"
#include "../runtime/curl_dyn.h"

#define CLIENT_MT "corio.HttpClient"
#define STREAM_MT "corio.HttpStream"

typedef struct client_box {
  corio_http *h;  /* NULL once collected */
} client_box;

static client_box *check_client(lua_State *L, int idx) {
  return (client_box *)luaL_checkudata(L, idx, CLIENT_MT);
}

/* [-0, +2] false, err of kind with msg. */
static int fail(lua_State *L, const char *kind, const char *msg) {
  lua_pushboolean(L, 0);
  corio__push_error(L, kind, msg);
  return 2;
}

/* client(max_conn, max_keepalive, keepalive_expiry, verify, cainfo, http2,
** header_lines) -> client */
/* A limit as a long: corio.http checked it is an integer >= 0 (or -1
** here for none); larger than any pool could be is as good as 1e9. */
static long limit_arg(lua_State *L, int idx, double dflt) {
  double d = luaL_optnumber(L, idx, dflt);
  return d > 1e9 ? 1000000000L : (long)d;
}

static int l_client(lua_State *L) {
  corio_rt *rt = RT(L);
  long max_conn = limit_arg(L, 1, 0);
  long max_keep = limit_arg(L, 2, -1);
  double expiry = luaL_optnumber(L, 3, -1);
  int verify = lua_isnoneornil(L, 4) ? 1 : lua_toboolean(L, 4);
  const char *cainfo = luaL_optstring(L, 5, NULL);
  int http2 = lua_toboolean(L, 6);
  int decode = lua_isnoneornil(L, 8) ? 1 : lua_toboolean(L, 8);
  client_box *c;
  char err[256];
  if (corio__curl_load(err, sizeof(err)) != 0)
    return luaL_error(L, "corio.http: %s", err);
  c = (client_box *)lua_newuserdata(L, sizeof(*c));
  c->h = NULL;
  luaL_getmetatable(L, CLIENT_MT);
  lua_setmetatable(L, -2);
  c->h = corio__http_new(rt, max_conn, max_keep, expiry, verify, cainfo,
                         http2);
  if (c->h == NULL) return luaL_error(L, "corio.http: cannot create a "
                                      "client (out of memory?)");
  corio__http_set_decode(c->h, decode);
  corio__http_lua_init(c->h, L);
  if (lua_istable(L, 7)) {
    int i, n = (int)lua_objlen(L, 7);
    const char **lines = malloc(sizeof(*lines) * (n ? n : 1));
    if (lines == NULL) return luaL_error(L, "corio.http: out of memory");
    for (i = 0; i < n; i++) {
      lua_rawgeti(L, 7, i + 1);
      lines[i] = lua_tostring(L, -1);  /* pinned by the table */
      lua_pop(L, 1);
    }
    i = corio__http_headers(c->h, lines, n);
    free(lines);
    if (i != 0) return luaL_error(L, "corio.http: out of memory");
  }
  return 1;
}

/* request(client, method, url, header_lines|nil, body|nil, connect, read,
** write, pool, total [, box [, uplen, stream, eof]]) -> true, status,
** head, body, version, elapsed, redirect | false, err. Blocks until the
** response (or, given a stream object, its headers) arrived. With uplen
** (the body's length, or -1 for none) the body is streamed: body is its
** first chunk (or nil), eof says it is the last, box (required) holds the
** transfer, stream says whether it is a stream; "more" then asks for the
** next chunk, to give with feed(box, chunk|nil, eof). */
static int l_request(lua_State *L) {
  corio_rt *rt = RT(L);
  client_box *c = check_client(L, 1);
  const char *method = luaL_checkstring(L, 2);
  const char *url = luaL_checkstring(L, 3);
  const char *body = NULL;
  size_t nbody = 0;
  double to[5];
  void **box = NULL;
  corio_task *t;
  corio_xfer *x;
  int i, n, r, up = 0, stream, eof = 0;
  double uplen = 0;
  if (!lua_isnoneornil(L, 5)) body = luaL_checklstring(L, 5, &nbody);
  for (i = 0; i < 5; i++) to[i] = luaL_optnumber(L, 6 + i, 0);
  if (!lua_isnoneornil(L, 11)) box = luaL_checkudata(L, 11, STREAM_MT);
  stream = box != NULL;
  if (!lua_isnoneornil(L, 12)) {
    up = 1;
    uplen = luaL_checknumber(L, 12);
    stream = lua_toboolean(L, 13);
    eof = lua_toboolean(L, 14);
    if (box == NULL) return luaL_argerror(L, 11, "a box for a streamed body");
  }
  n = corio__enter(L, rt, &t, "http request");
  if (n != CORIO_GO) return n;
  if (c->h == NULL || corio__http_closed(c->h))
    return fail(L, "closed", "the client was closed");
  if (corio__http_busy(c->h))
    return fail(L, "invalid", "a request cannot start from a __gc "
                "finaliser that runs while a stream read of this client is "
                "inside libcurl (it would have to wait)");
  if (box != NULL && *box != NULL)
    return fail(L, "invalid", "the stream object is in use");
  if (corio__http_want_gc(c->h)) {
    /* every connection is taken: streams nobody can reach give theirs
    ** back (their __gc closes them) before this request would wait for
    ** one; a finaliser may close the client meanwhile */
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (corio__http_closed(c->h))
      return fail(L, "closed", "the client was closed");
  }
  x = corio__xfer_get(c->h);
  if (x == NULL) return fail(L, "error", "out of memory");
  if (lua_istable(L, 4)) {
    int nh = (int)lua_objlen(L, 4);
    for (i = 1; i <= nh; i++) {
      lua_rawgeti(L, 4, i);
      r = corio__xfer_header(x, lua_tostring(L, -1));
      lua_pop(L, 1);
      if (r != 0) {
        corio__xfer_put(x);
        return fail(L, "error", "out of memory");
      }
    }
  }
  if (up)
    r = corio__xfer_setup(x, method, url, NULL,
                          uplen < 0 ? (size_t)-1 : (size_t)uplen, 2, stream,
                          to);
  else
    r = corio__xfer_setup(x, method, url, body, nbody, body != NULL, stream,
                          to);
  if (r == 0 && up) r = corio__xfer_first(x, body, body ? nbody : 0, eof);
  if (r == 0) r = corio__xfer_start(x, t);
  if (r != 0) {
    /* the transfer goes back before anything that may raise (a memory
    ** error while making the error object must not leak it) */
    char msg[128];  /* the size of the transfer's errmsg */
    snprintf(msg, sizeof msg, "%s", corio__xfer_errmsg(x));
    corio__xfer_put(x);
    lua_pushboolean(L, 0);
    corio__push_error(L, r == UV_EINVAL ? "invalid" : "error", msg);
    return 2;
  }
  if (box != NULL) {
    corio__xfer_bind(x, box);
    lua_pushvalue(L, 1);  /* the stream keeps its client alive */
    lua_setfenv(L, 11);
  }
  return corio__suspend(rt, L, t, corio__http_abort, "http request", x);
}

static int l_stream_new(lua_State *L) {
  void **box = (void **)lua_newuserdata(L, sizeof(void *));
  *box = NULL;
  luaL_getmetatable(L, STREAM_MT);
  lua_setmetatable(L, -2);
  return 1;
}

/* feed(box, chunk|nil, eof) -> what request returns (or "more" again):
** the next chunk of a streamed body (nil: the body ended). */
static int l_feed(lua_State *L) {
  corio_rt *rt = RT(L);
  void **box = luaL_checkudata(L, 1, STREAM_MT);
  const char *p = NULL;
  size_t len = 0;
  int eof = lua_isnil(L, 2) || lua_toboolean(L, 3);
  corio_task *t;
  int n;
  if (!lua_isnil(L, 2)) p = luaL_checklstring(L, 2, &len);
  n = corio__enter(L, rt, &t, "http request");
  if (n != CORIO_GO) return n;
  if (*box == NULL) return fail(L, "closed", "the request was closed");
  n = corio__xfer_feed(L, (corio_xfer *)*box, t, p, len, eof);
  if (n >= 0) return corio__fast(rt, L, t, n);
  if (n == -4)
    return fail(L, "invalid", "a request body cannot be fed from a __gc "
                "finaliser that runs while a stream read of its client is "
                "inside libcurl");
  if (n == -2)
    return fail(L, "invalid", "the request does not expect a body chunk");
  return corio__suspend(rt, L, t, corio__http_abort, "http request", *box);
}

/* up_peak(client) -> the largest buffer a streamed body held (tests) */
static int l_up_peak(lua_State *L) {
  client_box *c = check_client(L, 1);
  lua_pushnumber(L, c->h != NULL ? (double)corio__http_up_peak(c->h) : 0);
  return 1;
}

/* read(stream) -> true, chunk | true, nil (end) | false, err */
static int l_read(lua_State *L) {
  corio_rt *rt = RT(L);
  void **box = luaL_checkudata(L, 1, STREAM_MT);
  corio_task *t;
  int n = corio__enter(L, rt, &t, "http stream read");
  if (n != CORIO_GO) return n;
  if (*box == NULL) return fail(L, "closed", "the stream is closed");
  n = corio__xfer_read(L, (corio_xfer *)*box, t);
  if (n >= 0) return corio__fast(rt, L, t, n);
  if (n == -3) return lua_error(L);  /* raised while curl read */
  if (n == -4)
    return fail(L, "invalid", "a stream cannot be read from a __gc "
                "finaliser that runs while a stream read of its client is "
                "inside libcurl");
  if (n == -2)
    return fail(L, "invalid", "the stream is being read by another task");
  return corio__suspend(rt, L, t, corio__http_abort, "http stream read",
                        *box);
}

/* close_stream(stream) -> true | false, err */
static int l_close_stream(lua_State *L) {
  void **box = luaL_checkudata(L, 1, STREAM_MT);
  if (*box != NULL && corio__xfer_close((corio_xfer *)*box) != 0)
    return fail(L, "invalid", "the stream is being read by another task");
  lua_pushboolean(L, 1);
  return 1;
}

/* buffered(stream) -> bytes held in C, paused */
static int l_buffered(lua_State *L) {
  void **box = luaL_checkudata(L, 1, STREAM_MT);
  size_t len = 0;
  int paused = 0;
  if (*box != NULL) corio__xfer_buffered((corio_xfer *)*box, &len, &paused);
  lua_pushnumber(L, (double)len);
  lua_pushboolean(L, paused);
  return 2;
}

/* clock() -> seconds on a monotonic clock: a stream's elapsed runs on it
** from its headers until it is closed (lua/corio/http.lua). */
static int l_clock(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

static int l_stream_gc(lua_State *L) {
  void **box = lua_touserdata(L, 1);
  if (*box != NULL) corio__xfer_gc((corio_xfer *)*box, corio__rt(L) != NULL);
  return 0;
}

static int l_close(lua_State *L) {
  client_box *c = check_client(L, 1);
  if (c->h != NULL) corio__http_close(c->h);
  return 0;
}

static int l_client_gc(lua_State *L) {
  client_box *c = lua_touserdata(L, 1);
  if (c->h != NULL) {
    corio__http_lua_free(c->h, L);
    corio__http_gc(c->h, corio__rt(L) != NULL);
  }
  c->h = NULL;
  return 0;
}

/* stats(client) -> opened, reused, idle, in_flight */
static int l_stats(lua_State *L) {
  client_box *c = check_client(L, 1);
  double s[4] = {0, 0, 0, 0};
  int i;
  if (c->h != NULL) corio__http_stats(c->h, s);
  for (i = 0; i < 4; i++) lua_pushnumber(L, s[i]);
  return 4;
}

static const corio_reg funcs[] = {
    {"client", l_client},     {"request", l_request},
    {"stream", l_stream_new}, {"read", l_read},
    {"close_stream", l_close_stream}, {"buffered", l_buffered},
    {"close", l_close},       {"stats", l_stats},
    {"clock", l_clock},       {"feed", l_feed},
    {"up_peak", l_up_peak},
    {NULL, NULL}};

int luaopen_corio_http(lua_State *L) {
  corio_rt *rt = corio__rt(L);
  luaL_newmetatable(L, CLIENT_MT);
  lua_pushcfunction(L, l_client_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "corio");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  luaL_newmetatable(L, STREAM_MT);
  lua_pushcfunction(L, l_stream_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushliteral(L, "corio");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
  lua_newtable(L);
  corio__register(L, rt, -1, funcs);
  return 1;
}
