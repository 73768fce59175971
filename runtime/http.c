/*
** http.c: libcurl's multi_socket interface on the runtime's libuv loop.
** One CURLM per client (its connection pool); one uv_poll_t per socket
** curl asks us to watch and one uv_timer_t per multi for curl's timeout;
** each request is an easy handle (pooled on a free list; curl_easy_reset
** between uses unless only the URL changes) bound to the task that waits
** for it. No Lua runs in any libuv or curl callback: they fill C buffers
** and wake the task with corio__ready; the deliver hooks below push the
** results on the task's own stack. The one exception is an HTTP/1
** stream's read (direct_read), where the reading task itself drives curl
** and the write callback makes Lua strings, each in a protected call (a
** finaliser the allocation runs may raise). Argument parsing and the Lua
** objects are in bindings/http.c;
** URLs, redirects and response objects in lua/corio/http.lua.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "curl_dyn.h"

#include "http.h"

/* The phases of a transfer, in order; each may have a timeout (ms) that
** the transfer's own timer enforces. read and write are "the longest gap
** without bytes": every byte moved pushes their deadline back. curl hands
** over whole header lines and body pieces, so the callbacks see bytes
** only when a line or piece is complete; a server that drips a header
** line byte by byte would look silent. Each socket therefore notes when
** it last became readable (http_sock.rd_at, one store per poll event);
** the read timer, when it expires, takes that into account before it
** fails the transfer (see sock_progress), so the fast path costs nothing
** more. */
enum { PH_POOL, PH_CONNECT, PH_WRITE, PH_READ, PH_N };
static const char *const phase_names[PH_N] = {"pool", "connect", "write",
                                              "read"};

/* What a waiting task waits for. */
enum { W_NONE, W_RESPONSE, W_HEAD, W_BODY };

/* What a transfer waits to have done once curl returned (run_later). */
enum { LATER_CLOSE = 1, LATER_RELEASE = 2 };

/* An HTTP/2 stream's buffer pauses the transfer once it holds this many
** bytes.
** It may overshoot by what one socket_action reads (curl 7.88 reads up to
** 100 buffers of 16 KiB while the socket stays readable), so a stream
** holds at most about 1.7 MiB. Chunks handed to Lua are at most this
** size, under LuaJIT's mmap threshold (128 KiB). */
#define STREAM_HIGH (64 * 1024)
/* HTTP/1 streams ("direct"): the write callback never copies. While no
** task is reading, it returns CURL_WRITEFUNC_PAUSE, so curl keeps the bytes
** of its current read (at most one receive buffer) and stops reading; the
** reading task unpauses from its own context: curl_easy_pause(CONT) hands
** the kept bytes to the write callback at once, and a socket_action run
** right after reads on. There the callback makes each piece a Lua string
** straight from curl's buffer: one copy instead of two. A read returns
** about DIRECT_MAX pieces (curl hands out at most 16 KiB per call; it
** reads up to 100 receive buffers while the socket stays readable, and
** a piece beyond the read's share, see below, pauses the transfer
** again). curl 7.88
** cuts every delivery into CURL_MAX_WRITE_SIZE pieces (chop_write in
** lib/sendf.c), whatever CURLOPT_BUFFERSIZE says. Joining the pieces into
** ~112 KiB strings through a C buffer was measured on W4: 7x fewer chunks
** but no faster, as the extra copy costs what the per-chunk work saved;
** strings of 128 KiB or more are slower still (LuaJIT mmaps each).
** What a read hands over stays live until the reader is through with it,
** and the collector lets the heap grow to about twice what it saw live:
** 256 pieces (4 MiB) per read kept an 8 MiB heap of string blocks, every
** copy into them missed the cache, and LuaJIT kept mapping fresh pages
** (the copy into Lua strings took 3x what the same copy into recycled
** malloc blocks takes). Reads of 0.5 to 1.5 MiB keep the heap near 2 MiB:
** W4 took 10-15% less CPU time (15 alternating runs). The 512 KiB receive
** buffer (curl's largest) halves the recv calls and the pauses; with it
** W4 took another ~20% less CPU time than with 256 KiB. An open stream
** holds that buffer, and while paused what curl kept of its last read.
** Pausing makes curl copy the rest of its current delivery aside (up to
** a whole receive buffer) and hand it over again on the next read. So a
** read that has DIRECT_MAX pieces pauses at the last piece of a delivery
** (a full read is then one receive buffer, and curl keeps 16 KiB): curl
** counts a read's bytes (CURLINFO_SIZE_DOWNLOAD_T) before it hands them
** over, so the piece that brings what the stream took to that count is
** the last. A chunked or encoded body counts other bytes: such a read
** pauses at DIRECT_MAX + DIRECT_SLACK pieces at the latest (a delivery is
** at most 32 pieces). Any piece is a safe place to pause; this only
** saves the copy (W4: ~3% less CPU time in 30 alternating runs, fewer
** page faults). */
#define DIRECT_MAX 32
#define DIRECT_BUFSIZE (512 * 1024)
#define DIRECT_SLACK 32
/* Response headers beyond this are a protocol error (h11 uses 64 KiB). */
#define MAX_HEADER_BYTES (64 * 1024)

/* HTTP/2 in clear text with prior knowledge. libcurl 7.88 fails a request
** that reuses an h2c connection while asking for prior knowledge ("Error
** in the HTTP2 framing layer", curl issue 10634, fixed in 7.89), but
** reuses it fine when asked for CURL_HTTP_VERSION_2_0. So a request asks
** for prior knowledge only when no h2c connection to its origin is open or
** being opened by this client; otherwise for 2_0, which reuses (or waits
** for, with CURLOPT_PIPEWAIT) that connection. One entry per origin;
** refs counts its open h2c sockets plus prior-knowledge transfers that
** have not opened theirs yet (pending). At most one transfer per origin
** is pending: two prior-knowledge transfers started together would share
** the first one's connection, and hit the same libcurl bug. */
typedef struct h2c_origin {
  corio_link link;       /* in h->h2c */
  uint32_t refs;
  uint32_t pending;      /* claims not yet taken over by a socket */
  char key[1];           /* "host:port", lower-case */
} h2c_origin;

typedef struct h2c_sock {
  curl_socket_t fd;
  h2c_origin *o;
} h2c_sock;

struct corio_xfer {
  uv_timer_t timer;      /* phase timeouts; closed only when x is freed */
  corio_http *h;
  int gone;              /* GONE_*: timer closed by corio__http_rt_gone */
  CURL *easy;            /* kept across uses; curl_easy_reset between */
  corio_link link;       /* in h->active while in use, h->free after */
  corio_link pause_link; /* in h->to_pause while want_pause */
  corio_task *t;         /* the waiting task, or NULL */
  void **box;            /* a stream's userdata slot pointing here */
  struct curl_slist *hdrs; /* this request's header list (owned) */
  char *buf;             /* body bytes; buf[off..len) not handed out */
  size_t off, len, cap;
  char *head;            /* raw header block of the current response */
  size_t hlen, hcap;
  uint64_t last;         /* loop time (ms) of the last phase change/byte */
  uint64_t start;        /* loop time the transfer started (total) */
  uint64_t armed;        /* loop time the timer fires at, 0 if stopped */
  uint32_t to[PH_N];     /* phase timeouts in ms, 0 = none */
  uint32_t total;        /* total timeout in ms, 0 = none */
  uint8_t phase;         /* PH_* */
  uint8_t wait;          /* W_* */
  uint8_t stream;        /* body is read in chunks */
  uint8_t in_multi;      /* added to h->multi */
  uint8_t head_done;     /* the final response's headers arrived */
  uint8_t done;          /* the transfer ended; rc and err say how */
  uint8_t paused;        /* paused with curl_easy_pause(CURLPAUSE_RECV) */
  uint8_t discard;       /* being removed: the write callback drops bytes */
  uint8_t want_pause;    /* in h->to_pause: pause after socket_action */
  uint8_t new_conn;      /* this transfer opened a connection */
  uint8_t idempotent;    /* RFC 9110 9.2.2: GET, HEAD, PUT, DELETE, ... */
  uint8_t sent;          /* prereq_cb let the request go out once */
  uint8_t h2c_pending;   /* holds a ref on h2o until its socket opens */
  uint8_t h2c_mode;      /* h2c: 1 prior knowledge, 2 reuse (2_0) */
  uint8_t h2c_redo;      /* 2_0 wanted a new connection: see h2c_redo */
  uint8_t h2c_redos;     /* times redone in this request */
  uint8_t late;          /* its timer fired late: judged after a poll */
  h2c_origin *h2o;       /* prior knowledge h2c: its origin, else NULL */
  uint32_t conn_id;      /* its connection (local address), 0: none yet */
  curl_socket_t sock_fd; /* the last socket it opened, and its serial */
  uint32_t sock_serial;
  /* The options the easy handle holds from its last plain request (no
  ** body, the client's headers): a request that differs only by URL sets
  ** just that, without curl_easy_reset and the ~25 setopts after it. */
  uint8_t plain;         /* the fields below describe the easy handle */
  uint8_t plain_stream;
  char plain_method[12];
  uint32_t plain_to[PH_N + 1];
  uint32_t plain_gen;    /* h->hdr_gen at the time */
  char *plain_url;       /* its CURLOPT_URL (owned), or NULL */
  uint8_t has_body;      /* body bytes to send: a write phase first */
  uint8_t direct;        /* an HTTP/1 stream read without a C buffer */
  lua_State *dL;         /* a direct read in progress pushes here */
  corio_xfer *later_next; /* in h->later */
  uint8_t later;         /* LATER_*: what waits until curl returned */
  int dn;                /* pieces it pushed */
  int dfn;               /* make_piece's slot on dL */
  uint8_t derr;          /* making one raised: the error is on dL's top */
  curl_off_t dgot;       /* body bytes a direct stream took */
  /* A streamed request body (an upload): the requesting task pulls each
  ** chunk from its iterator outside curl and copies it here (feed);
  ** read_cb hands it to curl, and when it is empty pauses the send side
  ** (CURL_READFUNC_PAUSE) and wakes the task for the next one (see
  ** read_cb). At most what one chunk holds is kept. */
  uint8_t up;            /* the body comes chunk by chunk from the task */
  uint8_t up_need;       /* read_cb found ubuf empty: the task owes a chunk */
  uint8_t up_eof;        /* the task said the body ended */
  uint8_t up_iter;       /* the task is pulling the next chunk from its
                            iterator (told "more", not fed yet): a cancel
                            of up_scope removes the transfer at once */
  uint8_t up_done;       /* read_cb told curl the body ended */
  char *ubuf;            /* ubuf[uoff..ulen) not handed to curl yet */
  size_t uoff, ulen, ucap;
  curl_off_t up_read;    /* body bytes read_cb handed to curl */
  CURLcode rc;
  const char *err_kind;  /* our own verdict, overriding rc's mapping */
  corio_scope *up_scope; /* while up_iter: the scope the request was made
                            in (its task's innermost scope then)... */
  corio_task *up_task;   /* ...and its task (compared, never followed) */
  const char *err_phase; /* for kind "timeout" */
  char errmsg[128];      /* the message that goes with err_kind */
  char errbuf[CURL_ERROR_SIZE]; /* curl's own message */
};

/* A socket's poll handle. One that this client opened (opensocket_cb)
** keeps its handle from the first time curl asks to watch it until curl
** closes it (closesocket_cb), across CURL_POLL_REMOVE: curl drops a
** keep-alive connection's socket when a transfer on it ends and asks for
** it again when the next one starts, and closing and opening a uv_poll
** each time cost five syscalls per request (ioctl FIONBIO and epoll_ctl
** checks in uv_poll_init_socket, the DEL of uv_poll_start and uv_close,
** the ADD). While curl does not watch it (idle), it stays polled for
** readability: an idle keep-alive connection is quiet, and should it
** speak (the server closed it, a paused transfer's data) poll_cb stops
** polling until curl asks again. */
typedef struct http_sock {
  uv_poll_t poll;
  corio_http *h;
  corio_link link;       /* in h->socks */
  curl_socket_t fd;
  int events;            /* UV_READABLE|UV_WRITABLE being polled */
  int idle;              /* curl said CURL_POLL_REMOVE (a socket of ours) */
  uint64_t rd_at;        /* loop time it was last readable while watched */
  uint64_t idle_at;      /* loop time it became idle (see expire_idle) */
  int gone;              /* GONE_*: poll closed by corio__http_rt_gone */
} http_sock;

/* A handle corio__http_rt_gone closed on a host's loop: its close callback
** is pending (CLOSING), has run (CLOSED), or is pending and its struct,
** which the client no longer needs, is freed by that callback (FREE). */
enum { GONE_NO, GONE_CLOSING, GONE_CLOSED, GONE_FREE };

/* Per fd: its poll handle, whether opensocket_cb opened it. */
typedef struct fd_slot {
  http_sock *s;
  int ours;
  int shut;              /* shut down by keep_trim, no longer counted open */
  ino_t ino;             /* the socket's inode, to know it again */
  uint32_t serial;       /* which of our sockets (see xfer_forget_sock) */
} fd_slot;

struct corio_http {
  corio_rt *rt;
  CURLM *multi;
  uv_timer_t timer;      /* curl's timeout */
  corio_link active;     /* transfers in use */
  corio_link free;       /* idle transfers (easy handle + timer) */
  corio_link socks;      /* sockets being polled */
  corio_link to_pause;   /* streams whose buffer is full */
  corio_link h2c;        /* h2c_origin entries */
  h2c_sock *h2socks;     /* open h2c sockets and their origins */
  size_t nh2socks, caph2socks;
  fd_slot *fds;          /* indexed by fd, nfds entries */
  size_t nfds;
  struct curl_slist *defhdrs; /* the client's default headers */
  uint32_t hdr_gen;      /* bumped when defhdrs changes */
  uint64_t timer_due;    /* loop time curl's timer fires at, 0: stopped */
  int in_curl;           /* a direct read is inside curl: see in_curl() */
  unsigned n_up_iter;    /* transfers with up_iter set */
  int close_later;       /* closed while in_curl: close once curl returned */
  int piece_ref;         /* make_piece in the registry, or LUA_NOREF */
  uv_timer_t kick;       /* HTTP/2: see kick_cb */
  uint64_t moved, kicked_at; /* write_cb calls; at the last kick check */
  corio_xfer *later;     /* transfers with an operation put off (in_curl) */
  char *cainfo;
  long maxage;           /* CURLOPT_MAXAGE_CONN, or -1: curl's default */
  uint64_t expiry_ms;    /* keepalive_expiry when not whole seconds, or 0 */
  int no_reuse;          /* max_keepalive or keepalive_expiry 0 */
  long keep_idle;        /* max_keepalive when it bounds idle connections
                            below what may be busy (see keep_sync), else 0 */
  long maxconnects;      /* CURLMOPT_MAXCONNECTS as last set */
  long http2;
  int verify;
  int decode;             /* CURLOPT_ACCEPT_ENCODING: bodies decoded */
  int no_env_proxy;      /* no proxy variable was set: see env_proxy */
  uint32_t nhandles;     /* open uv handles (closing included) */
  uint32_t nlive;        /* xfers allocated, free list included */
  uint32_t in_flight;    /* xfers in the multi */
  long max_conn;         /* max_connections, or <= 0: no bound */
  uint32_t streams, gc_streams; /* streams bound; that at the last forced GC */
  uint64_t opened, reused, nopen;
  uint32_t sock_serial;  /* sockets opened, numbering fd_slot.serial */
  int closed;            /* client:close() or gc: no new requests */
  int gc;                /* the Lua object is gone */
  int dead;              /* the runtime is gone: touch no uv handle */
  corio_link rt_link;    /* in rt->http_clients until freed */
  uint32_t gone_closing; /* close callbacks of corio__http_rt_gone pending */
  size_t up_peak;        /* the largest upload buffer (ucap) it held */
};

/* libcurl's global init, once per process. Runtimes on several threads
** may make their first client at the same time: this libcurl's
** curl_global_init is thread-safe (CURL_VERSION_THREADSAFE), but the
** flag that skipped it was a plain int that they raced on. */
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static int curl_init_rc = -1;
static void curl_init_once(void) {
  curl_init_rc = (int)curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void h2c_unref(corio_http *h, h2c_origin *o) {
  (void)h;
  if (--o->refs == 0) {
    corio_list_remove(&o->link);
    free(o);
  }
}

static void h2c_free_all(corio_http *h) {
  corio_link *l;
  while ((l = corio_list_shift(&h->h2c)) != NULL)
    free(corio_container_of(l, h2c_origin, link));
  free(h->h2socks);
  h->h2socks = NULL;
  h->nh2socks = h->caph2socks = 0;
}

/* "host:port" of an http:// URL into key (lower-case, no userinfo); 0 if
** it does not fit. */
static int h2c_key(const char *url, char *key, size_t cap) {
  const char *p = url + 7, *end = p, *at;
  size_t n;
  while (*end && *end != '/' && *end != '?' && *end != '#') end++;
  for (at = p; at < end; at++)
    if (*at == '@') p = at + 1;
  n = (size_t)(end - p);
  if (n + 4 >= cap) return 0;
  for (at = p; at < end; at++)
    *key++ = (char)((*at >= 'A' && *at <= 'Z') ? *at + 32 : *at);
  /* a bare host means port 80 (an IPv6 literal ends with ']') */
  if (n == 0 || memchr(p, ':', n) == NULL || end[-1] == ']') {
    memcpy(key, ":80", 3);
    key += 3;
  }
  *key = 0;
  return 1;
}

/* Whether a request to url may ask for prior knowledge; if so, x takes a
** ref on its origin until its socket opens (or it ends). force: a new
** connection is needed though one is open, unless another transfer is
** already opening one (then x waits for that one, with 2_0). */
static int h2c_claim(corio_xfer *x, const char *url, int force) {
  corio_http *h = x->h;
  char key[512];
  corio_link *l;
  h2c_origin *o = NULL;
  x->h2c_mode = 1;
  if (!h2c_key(url, key, sizeof(key))) return 1;
  for (l = h->h2c.next; l != &h->h2c; l = l->next) {
    o = corio_container_of(l, h2c_origin, link);
    if (strcmp(o->key, key) == 0) break;
    o = NULL;
  }
  if (o != NULL && (!force || (force == 1 && o->pending > 0))) {  /* reuse it */
    x->h2c_mode = 2;
    return 0;
  }
  if (o == NULL) {
    o = malloc(sizeof(*o) + strlen(key));
    if (o == NULL) return 1;
    strcpy(o->key, key);
    o->refs = 0;
    o->pending = 0;
    corio_list_push(&h->h2c, &o->link);
  }
  o->refs++;
  o->pending++;
  x->h2o = o;
  x->h2c_pending = 1;
  return 1;
}

/* A request that asked for 2_0 to reuse an h2c connection needs a new one
** after all (the connection closed meanwhile, or curl would not wait for
** it): with 2_0 curl would try an HTTP/1.1 Upgrade, which a prior
** knowledge server does not speak. opensocket_cb refuses the socket and
** check_done adds the transfer again, asking for prior knowledge. */
static int h2c_redo(corio_xfer *x) {
  corio_http *h = x->h;
  char *url = NULL;
  long v;
  x->h2c_redo = 0;
  curl_multi_remove_handle(h->multi, x->easy);
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &url);
  if (url == NULL) return -1;
  /* While another transfer opens the origin's connection, wait for it
  ** (2_0 again); after a few rounds, open one anyway. */
  v = h2c_claim(x, url, ++x->h2c_redos > 4 ? 2 : 1)
          ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
          : (long)CURL_HTTP_VERSION_2_0;
  x->errbuf[0] = 0;
  x->phase = PH_POOL;
  curl_easy_setopt(x->easy, CURLOPT_HTTP_VERSION, v);
  if (curl_multi_add_handle(h->multi, x->easy) != CURLM_OK) {
    x->in_multi = 0;
    h->in_flight--;
    return -1;
  }
  return 0;
}

/* x ends or starts over: drop a claim its socket did not take over. */
static void h2c_release(corio_xfer *x) {
  if (x->h2o != NULL && x->h2c_pending) {
    x->h2o->pending--;
    h2c_unref(x->h, x->h2o);
  }
  x->h2o = NULL;
  x->h2c_pending = 0;
  x->h2c_mode = 0;
}

static void http_maybe_free(corio_http *h) {
  if (h->gc && h->closed && h->nhandles == 0 && h->nlive == 0 &&
      h->gone_closing == 0) {
    corio_list_remove(&h->rt_link);
    h2c_free_all(h);
    free(h->fds);
    free(h->cainfo);
    free(h);
  }
}

/* ---- buffers -------------------------------------------------------- */

static int grow(char **p, size_t *cap, size_t need) {
  size_t n = *cap ? *cap : 1024;
  char *q;
  if (need <= *cap) return 0;
  while (n < need) n *= 2;
  q = realloc(*p, n);
  if (q == NULL) return -1;
  *p = q;
  *cap = n;
  return 0;
}

/* ---- timers ---------------------------------------------------------- */

static uint64_t loop_now(corio_http *h) { return uv_now(h->rt->loop); }

/* The task no longer pulls a chunk for x (it fed one, or let go of x). */
static void up_iter_end(corio_xfer *x) {
  if (!x->up_iter) return;
  x->up_iter = 0;
  x->up_scope = NULL;
  x->up_task = NULL;
  x->h->n_up_iter--;
  if (!x->h->dead) x->h->rt->http_up_iter--;
}

static void xfer_fail(corio_xfer *x, const char *kind, const char *phase,
                      const char *msg);
#define LATE_MS 5  /* a phase timer this late was held up: see xfer_timer_cb */
static void xfer_timer_cb(uv_timer_t *tm);

/* Arm the transfer's timer for its current phase or its total deadline,
** whichever comes first, unless it already fires earlier: every wake-up
** re-checks the deadlines, so arming late is safe and byte callbacks only
** have to store the time. The total deadline is curl's too, but curl does
** not check it while a transfer waits for a free connection. */
static void xfer_arm(corio_xfer *x) {
  uint32_t ms = x->to[x->phase];
  uint64_t when = 0, now;
  if (x->h->dead) return;
  if (ms != 0) when = x->last + ms;
  if (x->total != 0 && (when == 0 || x->start + x->total < when))
    when = x->start + x->total;
  if (when == 0) return;
  if (x->armed != 0 && x->armed <= when) return;
  x->armed = when;
  now = loop_now(x->h);
  uv_timer_start(&x->timer, xfer_timer_cb, when > now ? when - now : 0, 0);
}

static void xfer_phase(corio_xfer *x, int phase) {
  x->phase = (uint8_t)phase;
  x->last = loop_now(x->h);
  xfer_arm(x);
}

/* A connection's id: its local address (port, IP hashed), as prereq_cb
** gets it from curl. */
static uint32_t conn_hash(const char *lip, int lport) {
  uint32_t id = (uint32_t)lport;
  while (lip != NULL && *lip) id = id * 31u + (unsigned char)*lip++;
  return id ? id : 1;
}

/* The inode of socket fd, or 0. */
static ino_t sock_ino(curl_socket_t fd) {
  struct stat st;
  return fstat(fd, &st) == 0 ? st.st_ino : 0;
}

/* The connection id (see prereq_cb) of socket fd, or 0 if unknown. */
static uint32_t sock_conn_id(curl_socket_t fd) {
  struct sockaddr_storage a;
  socklen_t alen = sizeof(a);
  char ip[INET6_ADDRSTRLEN];
  int port;
  if (getsockname(fd, (struct sockaddr *)&a, &alen) != 0) return 0;
  if (a.ss_family == AF_INET) {
    struct sockaddr_in *in = (struct sockaddr_in *)&a;
    if (!inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip))) return 0;
    port = ntohs(in->sin_port);
  } else if (a.ss_family == AF_INET6) {
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
    if (!inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip))) return 0;
    port = ntohs(in6->sin6_port);
  } else {
    return 0;
  }
  return conn_hash(ip, port);
}

/* The loop time x's connection last became readable, or 0 if unknown.
** Only when the read timer expires: the socket is found by its local
** address (x->conn_id), so nothing is kept per request. Bytes that came
** while the loop was held (a task computed, between polls) are seen
** only by the poll after the timers run: a socket readable now counts as
** readable now, so that a held loop is not taken for a silent server. */
static uint64_t sock_progress(corio_xfer *x) {
  corio_http *h = x->h;
  corio_link *l;
  if (x->conn_id == 0) return 0;
  for (l = h->socks.next; l != &h->socks; l = l->next) {
    http_sock *s = corio_container_of(l, http_sock, link);
    struct pollfd pfd;
    if (s->idle || sock_conn_id(s->fd) != x->conn_id) continue;
    pfd.fd = s->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN)) return loop_now(h);
    return s->rd_at;
  }
  return 0;
}

static void xfer_timer_cb(uv_timer_t *tm) {
  corio_xfer *x = (corio_xfer *)tm;
  uint64_t now = loop_now(x->h), due = x->armed;
  uint32_t ms = x->to[x->phase];
  x->armed = 0;
  if (!x->in_multi) return;
  if (x->total != 0 && now >= x->start + x->total) {
    char msg[96];
    snprintf(msg, sizeof(msg), "total timeout (%g s) expired",
             x->total / 1000.0);
    xfer_fail(x, "timeout", "total", msg);
    return;
  }
  /* Fired late: the loop was held (a task computed without a checkpoint).
  ** libuv runs timers before it polls, so what the socket did meanwhile
  ** (bytes came, the send buffer drained) is not seen yet: judge a phase
  ** timeout on the connection after one poll. (The total timeout is
  ** curl's too, and curl counts the held time: it is not put off; nor is
  ** the wait for a connection of the pool, which a poll could only hand
  ** over.) */
  if (!x->late && due != 0 && now > due + LATE_MS && x->phase != PH_POOL) {
    x->late = 1;
    x->armed = now + 1;
    uv_timer_start(&x->timer, xfer_timer_cb, 1, 0);
    return;
  }
  x->late = 0;
  /* a slow consumer is not a slow server, nor is a slow producer (an
  ** upload waiting for its task's next chunk) */
  if (x->paused || x->up_need) x->last = now;
  if (ms != 0 && now >= x->last + ms && x->phase == PH_READ) {
    /* bytes that no callback has seen yet (a header line in progress) */
    uint64_t rd = sock_progress(x);
    if (rd > x->last) x->last = rd;
  }
  if (ms != 0 && now >= x->last + ms) {
    char msg[96];
    snprintf(msg, sizeof(msg), "%s timeout (%g s) expired",
             phase_names[x->phase], ms / 1000.0);
    xfer_fail(x, "timeout", phase_names[x->phase], msg);
    return;
  }
  xfer_arm(x);
}

/* ---- completion ------------------------------------------------------ */

static void deliver(corio_task *t);

/* Wake the task waiting on x, if any. */
static void xfer_wake(corio_xfer *x) {
  corio_task *t = x->t;
  if (t == NULL) return;
  x->t = NULL;
  if (x->h->dead) return;  /* the runtime and its tasks are gone */
  x->h->rt->nexternal--;
  t->abort = NULL;
  /* corio__ready stops corio's uv_run: no blocking poll follows a
  ** wake-up from curl's timer or a phase timeout. */
  corio__ready(x->h->rt, t, deliver);
}

/* curl 7.88 closes the socket of a connect that did not complete (it
** timed out, failed, or its transfer was removed) without calling
** closesocket_cb: it stayed counted as open, and stats().idle grew by
** one each time. A transfer that ends before its request went out
** (prereq_cb) holds no connection curl keeps: a socket it opened that
** closesocket_cb did not see is gone. (Its poll handle is left to
** opensocket_cb, as the fd number may be in use elsewhere by now.) */
static fd_slot *fd_at(corio_http *h, curl_socket_t fd, int grow);

static void xfer_forget_sock(corio_xfer *x) {
  corio_http *h = x->h;
  fd_slot *f;
  if (x->sock_fd == CURL_SOCKET_BAD || x->conn_id != 0) return;
  f = fd_at(h, x->sock_fd, 0);
  x->sock_fd = CURL_SOCKET_BAD;
  if (f == NULL || !f->ours || f->serial != x->sock_serial) return;
  f->ours = 0;
  if (f->shut) f->shut = 0;
  else if (h->nopen > 0) h->nopen--;
}

/* curl's CURLMOPT_MAXCONNECTS bounds all the connections of a multi, busy
** ones included: when a transfer hands its connection back and the multi
** holds more, curl closes the oldest idle one. Set to max_keepalive, it
** closed the returning connection whenever more than max_keepalive were
** busy: with the defaults (20 of 100), 50 concurrent requests opened a new
** connection for nearly every request. httpx's max_keepalive bounds the
** idle connections only, so the bound follows the transfers in flight:
** max_keepalive more than can still be busy once one is handed back.
** Left: curl hands a connection back when its transfer ends, before the
** task has seen the response and asked again (httpx releases it from
** the task), so responses that come back in a burst, many in one turn of
** the loop, still close some connections their tasks would reuse (50
** tasks making 8 requests each in turn: 170-190 connections, not 50; 390
** before). Keeping the bound up through a burst would leave more than
** max_keepalive idle afterwards, as curl closes idle connections only
** when a transfer hands one back. (Outside curl's callbacks only: curl
** refuses multi calls there.) */
static void keep_sync(corio_http *h) {
  long n;
  if (h->keep_idle <= 0 || h->multi == NULL) return;
  n = h->keep_idle + (h->in_flight > 0 ? (long)h->in_flight - 1 : 0);
  if (n == h->maxconnects) return;
  if (curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, n) == CURLM_OK)
    h->maxconnects = n;
}

static void keep_trim(corio_http *h);

/* Take x out of the multi (from outside curl's callbacks only). */
static void xfer_remove(corio_xfer *x) {
  if (x->want_pause) {
    x->want_pause = 0;
    corio_list_remove(&x->pause_link);
  }
  if (x->in_multi) {
    /* still waiting for a connection: keep_trim left one idle for it */
    int waited = x->conn_id == 0 && x->phase == PH_POOL;
    x->in_multi = 0;
    x->h->in_flight--;
    keep_sync(x->h);
    if (x->h->multi != NULL) {
      if (x->paused) {
        /* libcurl 7.88 leaks what it holds back for a paused transfer
        ** removed while other transfers share its connection (HTTP/2:
        ** multi_done returns early, curl issue 10971). Unpausing hands
        ** those bytes over at once; they are dropped. */
        x->discard = 1;
        curl_easy_pause(x->easy, CURLPAUSE_CONT);
        x->discard = 0;
        x->paused = 0;
      }
      curl_multi_remove_handle(x->h->multi, x->easy);
    }
    xfer_forget_sock(x);
    if (waited && x->h->multi != NULL) keep_trim(x->h);
  }
  h2c_release(x);
  /* The phase timer stays armed: xfer_timer_cb ignores a transfer out of
  ** the multi, and the next request on x (x is pooled) re-arms it only
  ** for an earlier deadline, so a run of quick requests costs no
  ** uv_timer_start/stop pair each. */
}

static void xfer_end(corio_xfer *x, CURLcode rc) {
  xfer_remove(x);
  if (!x->done) {
    x->done = 1;
    x->rc = rc;
  }
  xfer_wake(x);
}

static void xfer_fail(corio_xfer *x, const char *kind, const char *phase,
                      const char *msg) {
  if (!x->done) {
    x->err_kind = kind;
    x->err_phase = phase;
    snprintf(x->errmsg, sizeof(x->errmsg), "%s", msg);
  }
  xfer_end(x, CURLE_ABORTED_BY_CALLBACK);
}

/* Backpressure for HTTP/2 streams (HTTP/1 ones are "direct", see
** DIRECT_MAX): a stream whose buffer is full stops reading. For these the
** write callback does not return CURL_WRITEFUNC_PAUSE: curl 7.88 would
** keep the rest of a read buffer aside for every stream of the connection.
** Pausing once socket_action has returned leaves nothing aside. */
static void apply_pauses(corio_http *h) {
  corio_link *l;
  while ((l = corio_list_shift(&h->to_pause)) != NULL) {
    corio_xfer *x = corio_container_of(l, corio_xfer, pause_link);
    x->want_pause = 0;
    if (x->in_multi && !x->paused && x->len - x->off >= STREAM_HIGH) {
      x->paused = 1;
      curl_easy_pause(x->easy, CURLPAUSE_RECV);
    }
  }
}

/* Whether a transfer in the multi holds socket fd (conn: its id). */
static int sock_held(corio_http *h, curl_socket_t fd, uint32_t conn) {
  corio_link *l;
  for (l = h->active.next; l != &h->active; l = l->next) {
    corio_xfer *x = corio_container_of(l, corio_xfer, link);
    if (!x->in_multi) continue;
    if (x->conn_id != 0 ? x->conn_id == conn : x->sock_fd == fd) return 1;
  }
  return 0;
}

static int sock_is_h2c(corio_http *h, curl_socket_t fd) {
  size_t i;
  for (i = 0; i < h->nh2socks; i++)
    if (h->h2socks[i].fd == fd) return 1;
  return 0;
}

static uint64_t busy_conns(corio_http *h);

/* Shut down s if it is an idle connection of ours that no transfer holds
** (not an h2c one): curl then finds it dead and opens another. The fd
** number may be another socket's now, had curl closed ours unseen: only
** the very socket that opensocket_cb made is shut. 1 if it was. */
static int shut_idle(corio_http *h, http_sock *s) {
  fd_slot *f = fd_at(h, s->fd, 0);
  uint32_t id;
  if (!s->idle || f == NULL || !f->ours || f->shut) return 0;
  if (sock_is_h2c(h, s->fd)) return 0;
  if (f->ino == 0 || sock_ino(s->fd) != f->ino) return 0;
  id = sock_conn_id(s->fd);
  if (id == 0 || sock_held(h, s->fd, id)) return 0;
  if (shutdown(s->fd, SHUT_RDWR) != 0) return 0;
  f->shut = 1;
  h->nopen--;
  return 1;
}

/* keep_sync's bound holds while transfers end one at a time. When several
** end inside one socket_action (curl's timer runs every due transfer, and
** a loaded machine lets many come due at once), each hands its connection
** back against the bound set for all of them still in flight, so more
** than max_keepalive stayed idle, and curl closes idle connections only
** when a transfer hands one back. The extra idle ones are shut down here
** (outside curl's callbacks): curl finds such a connection dead (readable
** at end of file) and closes it before it would reuse it, or when it next
** prunes its cache; stats() no longer counts it. Also run when a transfer
** that waited for a connection leaves (cancelled, pool timeout): one was
** left idle for it. */
static void keep_trim(corio_http *h) {
  uint64_t busy, idle, keep = (uint64_t)h->keep_idle;
  corio_link *l;
  if (h->keep_idle <= 0 || h->nopen <= keep) return;
  busy = busy_conns(h);
  if (h->nopen <= busy + keep) return;
  /* A transfer still waiting for a connection (queued on max_connections,
  ** or added this turn) takes one of the idle ones when curl next runs
  ** it: those are not shut under it. */
  for (l = h->active.next; l != &h->active; l = l->next) {
    corio_xfer *x = corio_container_of(l, corio_xfer, link);
    if (x->in_multi && x->conn_id == 0 && x->phase == PH_POOL) keep++;
  }
  if (h->nopen <= busy + keep) return;
  idle = h->nopen - busy;
  for (l = h->socks.next; l != &h->socks && idle > keep; l = l->next)
    if (shut_idle(h, corio_container_of(l, http_sock, link))) idle--;
}

static void check_done(corio_http *h) {
  CURLMsg *m;
  int left, ended = 0;
  while ((m = curl_multi_info_read(h->multi, &left)) != NULL) {
    corio_xfer *x;
    CURLcode rc;
    if (m->msg != CURLMSG_DONE) continue;
    rc = m->data.result;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
    if (x->h2c_redo && h2c_redo(x) == 0) continue;
    xfer_end(x, rc);
    ended = 1;
  }
  if (ended) keep_trim(h);
}

/* ---- curl callbacks (no Lua here) ----------------------------------- */

static void poll_cb(uv_poll_t *p, int status, int events) {
  http_sock *s = (http_sock *)p;
  corio_http *h = s->h;
  int running, flags = 0;
  if (s->idle) {  /* curl does not watch it: quiet until curl asks again */
    uv_poll_stop(&s->poll);
    s->events = 0;
    return;
  }
  if (status < 0) {
    /* libuv saw POLLERR (it reports UV_EBADF whatever the error) and
    ** stopped the handle. Poll again for what curl wants, and let curl do
    ** its I/O, so that the transfer fails with the socket's own error
    ** ("Connection reset by peer"), not "select/poll returned error". */
    if (s->events != 0) uv_poll_start(&s->poll, s->events, poll_cb);
    if (s->events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (s->events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    if (flags == 0) flags = CURL_CSELECT_ERR;
  } else {
    if (events & UV_READABLE) {
      flags |= CURL_CSELECT_IN;
      s->rd_at = uv_now(h->rt->loop);  /* see the read phase, above */
    }
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  }
  /* s may be closed inside (CURL_POLL_REMOVE): do not touch it after. */
  curl_multi_socket_action(h->multi, s->fd, flags, &running);
  check_done(h);
  apply_pauses(h);
}

static void sock_closed(uv_handle_t *hd) {
  http_sock *s = (http_sock *)hd;
  corio_http *h = s->h;
  free(s);
  h->nhandles--;
  http_maybe_free(h);
}

/* The fd's slot, made room for when grow is set (NULL: out of memory or
** not there). */
static fd_slot *fd_at(corio_http *h, curl_socket_t fd, int grow) {
  if (fd < 0) return NULL;
  if ((size_t)fd >= h->nfds) {
    size_t n = h->nfds ? h->nfds : 64;
    fd_slot *a;
    if (!grow) return NULL;
    while (n <= (size_t)fd) n *= 2;
    a = realloc(h->fds, n * sizeof(*a));
    if (a == NULL) return NULL;
    memset(a + h->nfds, 0, (n - h->nfds) * sizeof(*a));
    h->fds = a;
    h->nfds = n;
  }
  return &h->fds[fd];
}

/* Stop watching s and free it (through uv_close unless the loop is gone:
** then it closed the handle already). */
static void sock_close(http_sock *s) {
  corio_http *h = s->h;
  fd_slot *f = fd_at(h, s->fd, 0);
  if (f != NULL && f->s == s) f->s = NULL;
  corio_list_remove(&s->link);
  if (h->dead) {
    if (s->gone == GONE_CLOSING) s->gone = GONE_FREE;
    else free(s);
    h->nhandles--;
    return;
  }
  uv_close((uv_handle_t *)&s->poll, sock_closed);
}

static int socket_cb(CURL *e, curl_socket_t fd, int what, void *userp,
                     void *sockp) {
  corio_http *h = userp;
  fd_slot *f = fd_at(h, fd, what != CURL_POLL_REMOVE);
  http_sock *s = f != NULL ? f->s : NULL;
  int ev;
  (void)e; (void)sockp;
  if (h->dead) return 0;
  if (what == CURL_POLL_REMOVE) {
    if (s == NULL) return 0;
    if (!f->ours) {  /* curl closes it without closesocket_cb */
      sock_close(s);
      return 0;
    }
    s->idle = 1;  /* see http_sock */
    s->idle_at = loop_now(h);
    if (s->events & UV_WRITABLE) {  /* would fire at once */
      uv_poll_stop(&s->poll);
      s->events = 0;
    }
    return 0;
  }
  if (f == NULL) return -1;
  if (s == NULL) {
    s = malloc(sizeof(*s));
    if (s == NULL) return -1;
    if (uv_poll_init_socket(h->rt->loop, &s->poll, fd) != 0) {
      free(s);
      return -1;
    }
    s->h = h;
    s->fd = fd;
    s->gone = GONE_NO;
    s->events = 0;
    s->rd_at = s->idle_at = 0;
    corio_list_push(&h->socks, &s->link);
    h->nhandles++;
    f->s = s;
  }
  s->idle = 0;
  ev = (what & CURL_POLL_IN ? UV_READABLE : 0) |
       (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
  /* uv_poll_start stops and re-adds the fd (two epoll_ctl calls): only
  ** when the events really change. */
  if (ev != s->events) {
    s->events = ev;
    if (uv_poll_start(&s->poll, ev, poll_cb) != 0) return -1;
  }
  return 0;
}

/* HTTP/2 watchdog. With libcurl 7.88 on the multi_socket API, an h2
** connection with several streams sometimes goes quiet: the server waits
** for a WINDOW_UPDATE that curl queued but sends only when one of the
** connection's transfers runs again, and nothing makes one run. While an
** HTTP/2 client has requests in flight, every KICK_MS without a byte
** received runs the transfers of each of its sockets; while that brings
** nothing (a stream whose reader is slow, a slow server) the interval
** doubles, up to KICK_MAX_MS. */
#define KICK_MS 20
#define KICK_MAX_MS 1000
static void kick_cb(uv_timer_t *tm) {
  corio_http *h = tm->data;
  corio_link *l;
  curl_socket_t fds[16];
  int running, i, n = 0;
  if (h->in_flight == 0 || h->closed) {
    uv_timer_stop(tm);
    return;
  }
  if (h->moved != h->kicked_at) {
    h->kicked_at = h->moved;
    if (uv_timer_get_repeat(tm) != KICK_MS) uv_timer_set_repeat(tm, KICK_MS);
    return;
  }
  if (uv_timer_get_repeat(tm) < KICK_MAX_MS)
    uv_timer_set_repeat(tm, 2 * uv_timer_get_repeat(tm));
  /* socket_action may close sockets: take their fds first */
  for (l = h->socks.next; l != &h->socks && n < 16; l = l->next) {
    http_sock *s = corio_container_of(l, http_sock, link);
    if (!s->idle) fds[n++] = s->fd;
  }
  for (i = 0; i < n && h->multi != NULL; i++)
    curl_multi_socket_action(h->multi, fds[i],
                             CURL_CSELECT_IN | CURL_CSELECT_OUT, &running);
  check_done(h);
  apply_pauses(h);
}

static void curl_timeout_cb(uv_timer_t *tm) {
  corio_http *h = tm->data;
  int running;
  h->timer_due = 0;
  curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  check_done(h);
  apply_pauses(h);
}

/* curl asks for a timeout. 0 means "soon", never from inside this
** callback: a 0 ms uv timer runs it on the next loop turn, which also
** batches every transfer added by the tasks that ran this turn. */
static int timer_cb(CURLM *m, long ms, void *userp) {
  corio_http *h = userp;
  (void)m;
  if (h->dead || h->closed == 2) return 0;
  if (ms < 0) {
    uv_timer_stop(&h->timer);
    h->timer_due = 0;
    return 0;
  }
  /* Every curl_multi_add_handle asks for 0 ms, and a transfer that ends
  ** moves curl's next deadline later: when the timer already fires by
  ** then, leave it (uv_timer_start re-sorts its heap). An early run of
  ** socket_action(CURL_SOCKET_TIMEOUT) does nothing but ask again. */
  if (h->timer_due != 0 && h->timer_due <= loop_now(h) + (uint64_t)ms &&
      uv_is_active((uv_handle_t *)&h->timer))
    return 0;
  h->timer_due = loop_now(h) + (uint64_t)ms;
  if (h->timer_due == 0) h->timer_due = 1;
  uv_timer_start(&h->timer, curl_timeout_cb, (uint64_t)ms, 0);
  return 0;
}

/* A direct read that has DIRECT_MAX pieces: whether to pause at this
** one (see DIRECT_SLACK). */
static int direct_full(corio_xfer *x, size_t n) {
  curl_off_t got = 0;
  if (x->dn >= DIRECT_MAX + DIRECT_SLACK) return 1;
  curl_easy_getinfo(x->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
  return x->dgot + (curl_off_t)n >= got;
}

/* A piece of a direct read made into a Lua string. The allocation may
** run the collector, and a finaliser there may raise (or memory run
** out): an error must not unwind through curl's frames, so each string is
** made in a protected call on the reading task's state, a lua_pcall of
** this function. Nothing allocates outside the protection: direct_read
** pushed the function (from the registry) at dL[dfn] before curl ran,
** write_cb copies it (lua_pushvalue), and lua_pcall allocates nothing
** itself; the string the function returns stays on dL's stack. (With
** lua_cpcall, which returns nothing, each string had to be moved to
** another thread, and it makes a closure per call: twice the cost.)
** ~190 instructions a 16 KiB piece: 0.9% of W4's instructions
** (callgrind), no change in its wall time. The piece is passed in a
** thread-local: a runtime runs on one thread. */
static _Thread_local struct { const char *p; size_t n; } piece;

static int make_piece(lua_State *L) {
  lua_pushlstring(L, piece.p, piece.n);
  return 1;
}

/* A buffer of x that could not grow (corio's malloc): the transfer ends
** (0 to curl: CURLE_WRITE_ERROR) with kind "error", not curl's "Failure
** writing output to destination" of kind "network". */
static size_t out_of_memory(corio_xfer *x, const char *what) {
  if (x->err_kind == NULL) {
    x->err_kind = "error";
    snprintf(x->errmsg, sizeof(x->errmsg), "out of memory holding %s",
             what);
  }
  return 0;
}

static size_t write_cb(char *p, size_t sz, size_t n, void *ud) {
  corio_xfer *x = ud;
  n *= sz;
  if (x->discard) return n;
  if (x->later) {  /* closed or let go of meanwhile: see in_curl */
    x->paused = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  x->last = loop_now(x->h);
  x->h->moved++;
  if (x->direct) {
    if (x->dL != NULL && !x->derr &&
        (x->dn < DIRECT_MAX || !direct_full(x, n))) {
      piece.p = p;
      piece.n = n;
      lua_pushvalue(x->dL, x->dfn);
      if (lua_pcall(x->dL, 0, 1, 0) == 0) {
        x->dn++;
        x->dgot += (curl_off_t)n;
        return n;
      }
      /* The error (on dL's top) stays for direct_read to raise; curl
      ** keeps this piece (the pause below) for the next read. */
      x->derr = 1;
    }
    x->paused = 1;
    if (x->wait == W_BODY) xfer_wake(x);
    return CURL_WRITEFUNC_PAUSE;
  }
  if (x->off == x->len) x->off = x->len = 0;
  if (x->off > 0 && x->len + n > x->cap) {  /* compact before growing */
    memmove(x->buf, x->buf + x->off, x->len - x->off);
    x->len -= x->off;
    x->off = 0;
  }
  if (grow(&x->buf, &x->cap, x->len + n) != 0)
    return out_of_memory(x, "the response body");
  memcpy(x->buf + x->len, p, n);
  x->len += n;
  if (x->stream && x->len - x->off >= STREAM_HIGH && !x->want_pause &&
      !x->paused) {
    x->want_pause = 1;
    corio_list_push(&x->h->to_pause, &x->pause_link);
  }
  if (x->wait == W_BODY) xfer_wake(x);
  return n;
}

/* Whether a task waiting for a stream's headers (W_HEAD) may have them.
** With a streamed body, once the body was sent: the task is the one that
** feeds it, so client:stream returns after the whole body went out (as
** httpx sends the body before it reads the response), unless the answer
** is 300 or more, when curl stops sending (lib/http.c, "HTTP error before
** end of send, stop sending") and will ask for no more. */
static int head_ready(corio_xfer *x) {
  long code = 0;
  if (!x->head_done) return 0;
  if (!x->up || x->up_done) return 1;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  return code >= 300;
}

/* curl wants body bytes (a streamed body only; no Lua here). What the
** task fed goes out; when nothing is left, the send side pauses and the
** task is woken to pull the next chunk from its iterator and feed it
** (corio__xfer_feed unpauses). At the end, 0 tells curl the body ended
** (it then sends a chunked body's last chunk). */
static size_t read_cb(char *p, size_t sz, size_t n, void *ud) {
  corio_xfer *x = ud;
  size_t k = x->ulen - x->uoff;
  n *= sz;
  if (k > 0) {
    if (k > n) k = n;
    memcpy(p, x->ubuf + x->uoff, k);
    x->uoff += k;
    x->up_read += (curl_off_t)k;
    x->last = loop_now(x->h);
    x->h->moved++;
    return k;
  }
  if (x->up_eof) {
    if (!x->up_done) {
      x->up_done = 1;
      /* what is left goes out with curl's last write: the response is
      ** awaited from here (a chunked body's size is unknown to
      ** progress_cb) */
      if (x->phase == PH_WRITE) xfer_phase(x, PH_READ);
      if (x->wait == W_HEAD && head_ready(x)) xfer_wake(x);
    }
    return 0;
  }
  if (!x->up_need) {
    x->up_need = 1;
    if (x->wait == W_RESPONSE || x->wait == W_HEAD) xfer_wake(x);
  }
  return CURL_READFUNC_PAUSE;
}

/* curl rewinds a body to send it again (a reused connection that closed
** before the response, see prereq_cb). Only while every byte it took is
** still in ubuf: the iterator cannot give them again. */
static int seek_cb(void *ud, curl_off_t off, int origin) {
  corio_xfer *x = ud;
  if (origin == SEEK_SET && off == 0 && x->up_read <= (curl_off_t)x->uoff) {
    x->uoff -= (size_t)x->up_read;
    x->up_read = 0;
    return CURL_SEEKFUNC_OK;
  }
  x->err_kind = "network";
  snprintf(x->errmsg, sizeof(x->errmsg),
           "the request had to be sent again (the connection closed), but "
           "a streamed body cannot be replayed");
  return CURL_SEEKFUNC_CANTSEEK;
}

static size_t header_cb(char *p, size_t sz, size_t n, void *ud) {
  corio_xfer *x = ud;
  n *= sz;
  x->last = loop_now(x->h);
  if (x->phase != PH_READ) xfer_phase(x, PH_READ);
  if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) x->hlen = 0; /* 1xx: anew */
  /* after the final head: a chunked body's trailer fields, which are no
  ** headers of the response (httpx drops them; no field name has a /) */
  else if (x->head_done) return n;
  if (x->hlen + n > MAX_HEADER_BYTES) {
    x->err_kind = "protocol";
    snprintf(x->errmsg, sizeof(x->errmsg),
             "the response headers exceed %d bytes", MAX_HEADER_BYTES);
    return 0;
  }
  if (grow(&x->head, &x->hcap, x->hlen + n) != 0)
    return out_of_memory(x, "the response headers");
  memcpy(x->head + x->hlen, p, n);
  x->hlen += n;
  if ((n == 2 && p[0] == '\r') || (n == 1 && p[0] == '\n')) {
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 || code == 101) {
      x->head_done = 1;
      if (x->wait == W_HEAD && (!x->up || head_ready(x))) xfer_wake(x);
    }
  }
  return n;
}

static curl_socket_t opensocket_cb(void *ud, curlsocktype purpose,
                                   struct curl_sockaddr *a) {
  corio_xfer *x = ud;
  curl_socket_t fd;
  (void)purpose;
  if (x->h2c_mode == 2) {  /* see h2c_redo */
    x->h2c_redo = 1;
    return CURL_SOCKET_BAD;
  }
  fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
  if (fd == CURL_SOCKET_BAD) return fd;
  {
    fd_slot *f = fd_at(x->h, fd, 1);
    if (f != NULL) {  /* else its handle closes on REMOVE */
      /* a handle left on this fd number belongs to a socket closed
      ** without closesocket_cb: it is not registered for the new one */
      if (f->s != NULL) sock_close(f->s);
      /* so was the socket it counted as open */
      if (f->ours && !f->shut && x->h->nopen > 0) x->h->nopen--;
      f->ours = 1;
      f->shut = 0;
      f->ino = sock_ino(fd);
      f->serial = ++x->h->sock_serial;
      x->sock_fd = fd;
      x->sock_serial = f->serial;
    }
  }
  x->h->opened++;
  x->h->nopen++;
  x->new_conn = 1;
  if (x->h2o != NULL) {  /* an h2c connection: later requests reuse it */
    corio_http *h = x->h;
    if (h->nh2socks == h->caph2socks) {
      size_t cap = h->caph2socks ? 2 * h->caph2socks : 4;
      h2c_sock *a = realloc(h->h2socks, cap * sizeof(*a));
      if (a == NULL) return fd;  /* untracked: the next request opens one */
      h->h2socks = a;
      h->caph2socks = cap;
    }
    h->h2socks[h->nh2socks].fd = fd;
    h->h2socks[h->nh2socks++].o = x->h2o;
    if (x->h2c_pending) {  /* the socket keeps the ref */
      x->h2c_pending = 0;
      x->h2o->pending--;
    } else {
      x->h2o->refs++;
    }
  }
  if (x->phase == PH_POOL) xfer_phase(x, PH_CONNECT);
  return fd;
}

static int closesocket_cb(void *ud, curl_socket_t fd) {
  corio_http *h = ud;
  fd_slot *f = fd_at(h, fd, 0);
  size_t i;
  if (f != NULL) {  /* libuv must let go of fd before it is closed */
    if (f->s != NULL) sock_close(f->s);
    f->ours = 0;
  }
  if (f != NULL && f->shut) f->shut = 0;  /* keep_trim uncounted it */
  else if (h->nopen > 0) h->nopen--;
  for (i = 0; i < h->nh2socks; i++) {
    if (h->h2socks[i].fd == fd) {
      h2c_unref(h, h->h2socks[i].o);
      h->h2socks[i] = h->h2socks[--h->nh2socks];
      break;
    }
  }
  return close(fd);
}

/* The connection is there (new or reused): the request goes out now.
** libcurl sends a request again on a fresh connection, within the same
** transfer, when a reused connection closed before any byte of the
** response came (Curl_retry_request): it cannot tell a connection that
** was stale from one the server closed after it read the request, and
** acted on it. As in httpx, which never sends a request twice, a request
** whose method is not idempotent (POST, PATCH, ...) is not sent again:
** the transfer fails with kind "network" instead. Idempotent ones are
** sent again, as curl does. */
static int prereq_cb(void *ud, char *ip, char *lip, int port, int lport) {
  corio_xfer *x = ud;
  (void)ip; (void)port;
  if (x->sent && !x->idempotent) {
    x->err_kind = "network";
    snprintf(x->errmsg, sizeof(x->errmsg),
             "the connection closed before a response came; the request "
             "is not sent again (the server may have acted on it)");
    return CURL_PREREQFUNC_ABORT;
  }
  x->sent = 1;
  /* a connection is known by its local address (port, IP hashed) */
  x->conn_id = conn_hash(lip, lport);
  if (!x->new_conn) x->h->reused++;
  xfer_phase(x, x->has_body ? PH_WRITE : PH_READ);
  return CURL_PREREQFUNC_OK;
}

static int progress_cb(void *ud, curl_off_t dt, curl_off_t dn,
                       curl_off_t ut, curl_off_t un) {
  corio_xfer *x = ud;
  (void)dt; (void)dn;
  if (x->phase == PH_WRITE) {
    if (ut > 0 && un >= ut) xfer_phase(x, PH_READ);
    else if (un > 0) x->last = loop_now(x->h);
  }
  return 0;
}

/* ---- the client ----------------------------------------------------- */

/* Whether a proxy variable libcurl reads is set. libcurl looks them up
** (and no_proxy) for every request, six getenv calls that were ~2% of a
** small request's instructions (W3). A client made while none is set
** tells curl "no proxy" instead, as httpx reads them once per client. */
static int env_proxy(void) {
  static const char *const names[] = {"http_proxy", "HTTP_PROXY",
                                      "https_proxy", "HTTPS_PROXY",
                                      "all_proxy", "ALL_PROXY", NULL};
  int i;
  for (i = 0; names[i] != NULL; i++) {
    const char *v = getenv(names[i]);
    if (v != NULL && *v) return 1;
  }
  return 0;
}

static void http_timer_closed(uv_handle_t *hd) {
  corio_http *h = hd->data;
  h->nhandles--;
  http_maybe_free(h);
}

void corio__http_set_decode(corio_http *h, int on) { h->decode = on != 0; }

void corio__http_lua_init(corio_http *h, lua_State *L) {
  lua_pushcfunction(L, make_piece);
  h->piece_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void corio__http_lua_free(corio_http *h, lua_State *L) {
  luaL_unref(L, LUA_REGISTRYINDEX, h->piece_ref);
  h->piece_ref = LUA_NOREF;
}

corio_http *corio__http_new(corio_rt *rt, long max_conn, long max_keep,
                            double expiry, int verify, const char *cainfo,
                            int http2) {
  corio_http *h;
  pthread_once(&curl_once, curl_init_once);
  if (curl_init_rc != CURLE_OK) return NULL;
  h = calloc(1, sizeof(*h));
  if (h == NULL) return NULL;
  h->rt = rt;
  h->decode = 1;
  h->piece_ref = LUA_NOREF;
  h->multi = curl_multi_init();
  if (h->multi == NULL) goto fail;
  if (cainfo != NULL && (h->cainfo = strdup(cainfo)) == NULL) goto fail;
  if (uv_timer_init(rt->loop, &h->timer) != 0) goto fail;
  h->timer.data = h;
  h->nhandles = 1;
  uv_timer_init(rt->loop, &h->kick);  /* only fails for a bad loop */
  h->kick.data = h;
  h->nhandles = 2;
  corio_list_init(&h->active);
  corio_list_init(&h->free);
  corio_list_init(&h->socks);
  corio_list_init(&h->to_pause);
  corio_list_init(&h->h2c);
  corio_list_push(&rt->http_clients, &h->rt_link);
  h->verify = verify;
  h->no_env_proxy = !env_proxy();
  h->http2 = http2;
  /* curl closes a cached connection when its idle time in whole seconds
  ** exceeds CURLOPT_MAXAGE_CONN: expiry e (rounded up to seconds) is
  ** ceil(e) - 1. 0 (expiry or max_keepalive) is no reuse at all. */
  h->maxage = -1;
  if (expiry > 0) {
    double up = expiry > 1e6 ? 1e6 : expiry;
    h->maxage = (long)up;
    if ((double)h->maxage == up) h->maxage--;
    else {  /* see expire_idle; at least 1 ms (0 would be "none") */
      h->expiry_ms = (uint64_t)(up * 1000 + 0.5);
      if (h->expiry_ms == 0) h->expiry_ms = 1;
    }
  }
  h->no_reuse = expiry == 0 || max_keep == 0;
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
  curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
  curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h);
  h->max_conn = max_conn;
  if (max_conn > 0) {
    curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max_conn);
    curl_multi_setopt(h->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_conn);
  }
  if (max_keep > 0 && max_conn > 0 && max_keep >= max_conn) {
    /* never more idle than max_keepalive: a fixed bound will do */
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, max_keep);
  } else if (max_keep > 0) {
    h->keep_idle = max_keep;
    keep_sync(h);
  }
  return h;
fail:
  if (h->multi != NULL) curl_multi_cleanup(h->multi);
  free(h->cainfo);
  free(h);
  return NULL;
}

/* Replace the default header lines ("Name: value"). */
int corio__http_headers(corio_http *h, const char **lines, int n) {
  struct curl_slist *l = NULL, *nl;
  int i;
  for (i = 0; i < n; i++) {
    nl = curl_slist_append(l, lines[i]);
    if (nl == NULL) {
      curl_slist_free_all(l);
      return UV_ENOMEM;
    }
    l = nl;
  }
  curl_slist_free_all(h->defhdrs);
  h->defhdrs = l;
  h->hdr_gen++;
  return 0;
}

static void xfer_closed(uv_handle_t *hd) {
  corio_xfer *x = (corio_xfer *)hd;
  corio_http *h = x->h;
  curl_easy_cleanup(x->easy);
  free(x->buf);
  free(x->ubuf);
  free(x->head);
  free(x->plain_url);
  free(x);
  h->nhandles--;
  h->nlive--;
  http_maybe_free(h);
}

static void xfer_destroy(corio_xfer *x) {
  up_iter_end(x);
  corio_list_remove(&x->link);
  curl_slist_free_all(x->hdrs);
  x->hdrs = NULL;
  if (x->h->dead) {  /* the loop already closed the handle */
    corio_http *h = x->h;
    curl_easy_cleanup(x->easy);
    free(x->buf);
    free(x->ubuf);
    free(x->head);
    free(x->plain_url);
    if (x->gone == GONE_CLOSING) x->gone = GONE_FREE;
    else free(x);
    h->nhandles--;
    h->nlive--;
    return;
  }
  uv_close((uv_handle_t *)&x->timer, xfer_closed);
}

/* Lua runs inside curl's callbacks in one place only: a direct stream
** read makes its chunks there (make_piece), and an allocation may run a
** __gc finaliser, which may call into the same client. curl forbids calls
** into a multi from its callbacks (curl_multi_remove_handle says
** CURLM_RECURSIVE_API_CALL, and a transfer it kept went back to the free
** list while still in the multi; curl_multi_cleanup freed the multi under
** the read), and the read's own transfer must not go away under it. So
** while h->in_curl, what such a finaliser asks is put off: a transfer to
** let go of (a stream collected or closed, a request cancelled) waits in
** h->later, a client:close() in h->close_later, and direct_read runs them
** once curl returned (run_later). A stream box lets go of its transfer at
** once, so the Lua side sees the stream closed. What would have to wait
** (a request, a read) is refused instead (corio__http_busy): a finaliser
** cannot suspend. */
static int in_curl(corio_http *h) { return h->in_curl > 0 && !h->dead; }

int corio__http_busy(corio_http *h) { return in_curl(h); }

/* A stream that nobody closed and nobody can reach any more (a loop left
** early, its task cancelled or done) holds its connection until the
** collector finds it and its __gc closes it; CPython's httpx frees such a
** response at once (reference counting), so a script written like one
** would wait for the pool until its pool timeout instead. So a request
** that finds every connection taken (max_connections; not HTTP/2, which
** multiplexes) runs the collector first, once for each stream opened
** since it last did: the streams that are garbage give their connections
** back before the request is queued. Not on the fast path: one compare
** while the pool has room. */
int corio__http_want_gc(corio_http *h) {
  if (h->max_conn <= 0 || h->in_flight < (uint32_t)h->max_conn || h->http2
      || h->streams == h->gc_streams)
    return 0;
  h->gc_streams = h->streams;
  return 1;
}

static void xfer_later(corio_xfer *x, int op) {
  corio_http *h = x->h;
  if (x->later == 0) {
    x->later_next = h->later;
    h->later = x;
  }
  x->later |= (uint8_t)op;
}

/* Give x back: to the free list, or closed if the client is closed. The
** stream box, if any, no longer points to it. */
static void xfer_release(corio_xfer *x) {
  up_iter_end(x);
  if (in_curl(x->h)) {  /* see in_curl */
    if (x->box != NULL) *x->box = NULL;
    x->box = NULL;
    xfer_later(x, LATER_RELEASE);
    return;
  }
  xfer_remove(x);
  if (x->box != NULL) *x->box = NULL;
  x->box = NULL;
  if (x->h->closed) {
    corio_http *h = x->h;
    xfer_destroy(x);
    http_maybe_free(h);
    return;
  }
  curl_slist_free_all(x->hdrs);
  x->hdrs = NULL;
  /* keep small buffers for the next request */
  if (x->cap > 256 * 1024) {
    free(x->buf);
    x->buf = NULL;
    x->cap = 0;
  }
  if (x->ucap > 256 * 1024) {
    free(x->ubuf);
    x->ubuf = NULL;
    x->ucap = 0;
  }
  corio_list_remove(&x->link);
  corio_list_push(&x->h->free, &x->link);
}

/* A transfer for a new request: from the free list, or a new one. */
corio_xfer *corio__xfer_get(corio_http *h) {
  corio_link *l = corio_list_shift(&h->free);
  corio_xfer *x;
  if (l != NULL) {
    x = corio_container_of(l, corio_xfer, link);
    corio_list_push(&h->active, &x->link);
    return x;
  }
  x = calloc(1, sizeof(*x));
  if (x == NULL) return NULL;
  x->easy = curl_easy_init();
  if (x->easy == NULL || uv_timer_init(h->rt->loop, &x->timer) != 0) {
    if (x->easy != NULL) curl_easy_cleanup(x->easy);
    free(x);
    return NULL;
  }
  x->h = h;
  x->gone = GONE_NO;
  corio_list_init(&x->pause_link);
  h->nhandles++;
  h->nlive++;
  corio_list_init(&x->link);
  corio_list_push(&h->active, &x->link);
  return x;
}

/* Give back a transfer that was never started. */
void corio__xfer_put(corio_xfer *x) { xfer_release(x); }

int corio__xfer_header(corio_xfer *x, const char *line) {
  struct curl_slist *l = curl_slist_append(x->hdrs, line);
  if (l == NULL) return UV_ENOMEM;
  x->hdrs = l;
  return 0;
}

static uint32_t to_ms(double s) {
  if (!(s > 0)) return 0;
  if (s > 4e6) return UINT32_MAX / 2;
  return (uint32_t)(s * 1000 + 0.5) ? (uint32_t)(s * 1000 + 0.5) : 1;
}

/* Set the easy handle up for one request. to[]: connect, read, write,
** pool, total, in seconds (<= 0: none). */
int corio__xfer_setup(corio_xfer *x, const char *method, const char *url,
                      const char *body, size_t nbody, int has_body,
                      int stream, const double *to) {
  corio_http *h = x->h;
  CURL *e = x->easy;
  CURLcode rc = CURLE_OK;
  uint32_t tms[PH_N + 1];
  size_t mlen = strlen(method);
  int fresh = 0;
  int plain = !has_body && x->hdrs == NULL && mlen < sizeof(x->plain_method);
  tms[PH_CONNECT] = to_ms(to[0]);
  tms[PH_READ] = to_ms(to[1]);
  tms[PH_WRITE] = to_ms(to[2]);
  tms[PH_POOL] = to_ms(to[3]);
  tms[PH_N] = to_ms(to[4]);
  h2c_release(x);
  x->h2c_redos = 0;
  x->off = x->len = x->hlen = 0;
  x->phase = PH_POOL;
  x->wait = W_NONE;
  x->done = x->head_done = x->paused = x->new_conn = x->sent = 0;
  x->idempotent = (uint8_t)(strcmp(method, "GET") == 0 ||
                            strcmp(method, "HEAD") == 0 ||
                            strcmp(method, "OPTIONS") == 0 ||
                            strcmp(method, "TRACE") == 0 ||
                            strcmp(method, "PUT") == 0 ||
                            strcmp(method, "DELETE") == 0);
  x->conn_id = 0;
  x->sock_fd = CURL_SOCKET_BAD;
  x->stream = (uint8_t)(stream != 0);
  /* an empty body has nothing to write: the response is awaited at once */
  x->has_body = (uint8_t)(has_body != 0 && nbody > 0);
  x->direct = (uint8_t)(stream && !h->http2);
  x->dL = NULL;
  x->dgot = 0;
  x->up = (uint8_t)(has_body == 2);
  x->up_need = x->up_eof = x->up_done = 0;
  x->uoff = x->ulen = 0;
  x->up_read = 0;
  x->rc = CURLE_OK;
  x->err_kind = x->err_phase = NULL;
  x->errmsg[0] = x->errbuf[0] = 0;
  memcpy(x->to, tms, sizeof(x->to));
  x->total = tms[PH_N];
  if (plain && x->plain && x->plain_gen == h->hdr_gen &&
      x->plain_stream == (stream != 0) &&
      memcmp(x->plain_to, tms, sizeof(tms)) == 0 &&
      memcmp(x->plain_method, method, mlen + 1) == 0) {
    x->plain = 0;  /* until this setup succeeded */
    /* the same URL again (a poller, a benchmark): curl kept it */
    if (x->plain_url == NULL || strcmp(x->plain_url, url) != 0) {
      free(x->plain_url);
      x->plain_url = NULL;
      rc = curl_easy_setopt(e, CURLOPT_URL, url);
      if (rc == CURLE_OK) x->plain_url = strdup(url);  /* NULL: no matter */
    }
    if (rc == CURLE_OK && h->http2 && strncmp(url, "http:", 5) == 0)
      rc = curl_easy_setopt(e, CURLOPT_HTTP_VERSION,
                            h2c_claim(x, url, 0)
                                ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                                : (long)CURL_HTTP_VERSION_2_0);
    if (rc == CURLE_OK) {
      x->plain = 1;
      return 0;
    }
    rc = CURLE_OK;
    h2c_release(x);
  }
  x->plain = 0;
  free(x->plain_url);
  x->plain_url = NULL;
again:
  curl_easy_reset(e);
#define SET(opt, v) \
  do { if (rc == CURLE_OK) rc = curl_easy_setopt(e, opt, v); } while (0)
  SET(CURLOPT_URL, url);
  SET(CURLOPT_PRIVATE, (char *)x);
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_ERRORBUFFER, x->errbuf);
  SET(CURLOPT_WRITEFUNCTION, write_cb);
  SET(CURLOPT_WRITEDATA, x);
  SET(CURLOPT_HEADERFUNCTION, header_cb);
  SET(CURLOPT_HEADERDATA, x);
  SET(CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
  SET(CURLOPT_OPENSOCKETDATA, x);
  SET(CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
  SET(CURLOPT_CLOSESOCKETDATA, h);
  SET(CURLOPT_PREREQFUNCTION, prereq_cb);
  SET(CURLOPT_PREREQDATA, x);
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  /* Bodies are handed over decoded (gzip, deflate, and br and zstd when
  ** this libcurl has them), as httpx does. The Accept-Encoding line is
  ** one of the client's default headers (http.lua), so curl does not
  ** format its own per request (~8k instructions in 7.88's printf); a
  ** request's own header replaces it, and what comes back encoded is
  ** decoded all the same. */
  if (h->decode) SET(CURLOPT_ACCEPT_ENCODING, "");
  SET(CURLOPT_HTTPHEADER, x->hdrs != NULL ? x->hdrs : h->defhdrs);
  if (!h->verify) {
    SET(CURLOPT_SSL_VERIFYPEER, 0L);
    SET(CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (h->cainfo != NULL) SET(CURLOPT_CAINFO, h->cainfo);
  if (h->no_env_proxy) {  /* see env_proxy */
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_NOPROXY, "");
  }
  if (h->http2) {
    long v = (long)CURL_HTTP_VERSION_2TLS;
    if (strncmp(url, "http:", 5) == 0)
      v = h2c_claim(x, url, 0) ? (long)CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE
                            : (long)CURL_HTTP_VERSION_2_0;
    SET(CURLOPT_HTTP_VERSION, v);
    SET(CURLOPT_PIPEWAIT, 1L);  /* wait to multiplex, not a new connection */
  } else
    SET(CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  if (h->maxage >= 0) SET(CURLOPT_MAXAGE_CONN, h->maxage);
  if (h->no_reuse) SET(CURLOPT_FORBID_REUSE, 1L);
  if (x->to[PH_CONNECT]) SET(CURLOPT_CONNECTTIMEOUT_MS, (long)x->to[PH_CONNECT]);
  if (x->total) SET(CURLOPT_TIMEOUT_MS, (long)x->total);
  if (strcmp(method, "HEAD") == 0) {
    SET(CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "POST") == 0) {
    SET(CURLOPT_POST, 1L);
  } else if (strcmp(method, "GET") != 0 || has_body) {
    SET(CURLOPT_CUSTOMREQUEST, method);
  }
  if (has_body == 2) {
    /* a streamed body (read_cb): POST's framing, sent with the method
    ** asked for; no size: chunked over HTTP/1.1, DATA frames over h2 */
    SET(CURLOPT_POST, 1L);
    SET(CURLOPT_POSTFIELDSIZE_LARGE,
        nbody == (size_t)-1 ? (curl_off_t)-1 : (curl_off_t)nbody);
    SET(CURLOPT_READFUNCTION, read_cb);
    SET(CURLOPT_READDATA, x);
    SET(CURLOPT_SEEKFUNCTION, seek_cb);
    SET(CURLOPT_SEEKDATA, x);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, progress_cb);
    SET(CURLOPT_XFERINFODATA, x);
  } else if (has_body) {
    SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)nbody);
    SET(CURLOPT_COPYPOSTFIELDS, body);
    SET(CURLOPT_NOPROGRESS, 0L);
    SET(CURLOPT_XFERINFOFUNCTION, progress_cb);
    SET(CURLOPT_XFERINFODATA, x);
  }
#undef SET
  if (rc == CURLE_OK && x->direct) {
    rc = curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)DIRECT_BUFSIZE);
    if (rc == CURLE_BAD_FUNCTION_ARGUMENT && !fresh) {
      /* curl 7.88 refuses a new receive buffer size while the handle
      ** still holds its buffer, which it keeps when a transfer left the
      ** multi before it had a connection (cancelled while it waited for
      ** one from the pool): set up a fresh handle instead. */
      CURL *n = curl_easy_init();
      if (n == NULL) {
        rc = CURLE_OUT_OF_MEMORY;
      } else {
        curl_easy_cleanup(e);
        x->easy = e = n;
        fresh = 1;
        rc = CURLE_OK;
        goto again;
      }
    }
  }
  if (rc != CURLE_OK) {
    snprintf(x->errmsg, sizeof(x->errmsg), "%s", curl_easy_strerror(rc));
    return rc == CURLE_OUT_OF_MEMORY ? UV_ENOMEM : UV_EINVAL;
  }
  if (plain) {
    x->plain = 1;
    x->plain_stream = (uint8_t)(stream != 0);
    memcpy(x->plain_method, method, mlen + 1);
    memcpy(x->plain_to, tms, sizeof(tms));
    x->plain_gen = h->hdr_gen;
    x->plain_url = strdup(url);  /* NULL: the next request sets it again */
  }
  return 0;
}

const char *corio__xfer_errmsg(corio_xfer *x) { return x->errmsg; }

/* curl judges a kept connection's age in whole seconds (idle seconds >
** CURLOPT_MAXAGE_CONN): exact for a keepalive_expiry of whole seconds,
** but 0.5 would reuse a connection idle for 0.9 s, 1.5 one idle for
** 1.9 s. For such an expiry, a request first shuts down (as keep_trim
** does) the idle connections of ours older than it: curl finds them dead
** and opens another. (Not the HTTP/2 ones that h2c keeps track of.) */
static void expire_idle(corio_http *h) {
  corio_link *l;
  uint64_t now;
  uv_update_time(h->rt->loop);
  now = loop_now(h);
  for (l = h->socks.next; l != &h->socks; l = l->next) {
    http_sock *s = corio_container_of(l, http_sock, link);
    if (s->idle && now >= s->idle_at + h->expiry_ms) (void)shut_idle(h, s);
  }
}

/* Add the transfer to the multi; task t waits for its response (or, for
** a stream, its headers). */
int corio__xfer_start(corio_xfer *x, corio_task *t) {
  corio_http *h = x->h;
  CURLMcode mc;
  if (h->closed) return UV_ECANCELED;
  if (h->expiry_ms != 0) expire_idle(h);
  mc = curl_multi_add_handle(h->multi, x->easy);
  if (mc != CURLM_OK) {
    snprintf(x->errmsg, sizeof(x->errmsg), "%s", curl_multi_strerror(mc));
    return UV_ENOMEM;
  }
  x->in_multi = 1;
  h->in_flight++;
  keep_sync(h);
  /* the loop's cached time is stale after a task computed: the request's
  ** timeouts count from now */
  uv_update_time(h->rt->loop);
  x->start = x->last = loop_now(h);
  x->late = 0;
  xfer_arm(x);
  x->t = t;
  x->wait = x->stream ? W_HEAD : W_RESPONSE;
  h->rt->nexternal++;
  if (h->http2 && !uv_is_active((uv_handle_t *)&h->kick))
    uv_timer_start(&h->kick, kick_cb, KICK_MS, KICK_MS);
  return 0;
}

/* Cancel: the transfer leaves the multi at once (rule 7); a stream whose
** body is being read keeps its transfer, the read alone is undone. */
static int abort_xfer(corio_rt *rt, corio_task *t) {
  corio_xfer *x = t->wait_obj;
  t->wait_obj = NULL;
  if (x == NULL || x->t != t) return 1;
  x->t = NULL;
  rt->nexternal--;
  if (x->wait == W_BODY) {
    x->wait = W_NONE;
    return 1;
  }
  x->wait = W_NONE;
  xfer_release(x);
  return 1;
}
corio_abort_fn corio__http_abort = abort_xfer;

/* ---- delivering results ---------------------------------------------- */

static const char *rc_kind(corio_xfer *x, CURLcode rc, const char **phase) {
  switch (rc) {
  case CURLE_OPERATION_TIMEDOUT:
    /* curl's own timeouts: connect, or total (ours usually fires first) */
    if (x->total != 0 && (x->phase > PH_CONNECT ||
                          loop_now(x->h) + 1 >= x->start + x->total))
      *phase = "total";
    else
      *phase = phase_names[x->phase];
    return "timeout";
  case CURLE_COULDNT_CONNECT: case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
    return "connect";
  case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM: case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_SSL_SHUTDOWN_FAILED: case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND: case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_ENGINE_INITFAILED: case CURLE_USE_SSL_FAILED:
  case CURLE_SSL_CLIENTCERT:
    return "tls";
  case CURLE_WEIRD_SERVER_REPLY: case CURLE_UNSUPPORTED_PROTOCOL:
  case CURLE_PARTIAL_FILE: case CURLE_GOT_NOTHING: case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM: case CURLE_BAD_CONTENT_ENCODING:
  case CURLE_HTTP3: case CURLE_QUIC_CONNECT_ERROR:
    return "protocol";
  case CURLE_URL_MALFORMAT:
    return "invalid";
  case CURLE_OUT_OF_MEMORY:  /* curl's malloc failed: as corio's own */
    return "error";
  default:
    return "network";
  }
}

static int failed(corio_xfer *x) {
  return x->done && (x->rc != CURLE_OK || x->err_kind != NULL);
}

/* [-0, +2] false, err. */
static int push_err(lua_State *L, corio_xfer *x) {
  const char *phase = x->err_phase, *kind = x->err_kind, *msg;
  char tmsg[96];
  if (kind == NULL) kind = rc_kind(x, x->rc, &phase);
  uint32_t ms = 0;
  if (x->rc == CURLE_OPERATION_TIMEDOUT && phase != NULL)
    ms = strcmp(phase, "total") == 0 ? x->total : x->to[x->phase];
  if (x->err_kind != NULL) msg = x->errmsg;
  else if (ms != 0) {
    /* curl's own timer fired before ours (curl ran, from a read, past
    ** the deadline): the same message as when ours does, not curl's
    ** "Operation timed out after N milliseconds ..." (a timeout of
    ** curl's that is none of ours keeps curl's words) */
    snprintf(tmsg, sizeof(tmsg), "%s timeout (%g s) expired", phase,
             ms / 1000.0);
    msg = tmsg;
  } else if (x->errbuf[0] != 0) msg = x->errbuf;
  else msg = curl_easy_strerror(x->rc);
  lua_pushboolean(L, 0);
  corio__push_error(L, kind, msg);
  if (phase != NULL) {
    lua_pushstring(L, phase);
    lua_setfield(L, -2, "phase");
  }
  lua_pushinteger(L, (lua_Integer)x->rc);
  lua_setfield(L, -2, "curl_code");
  return 2;
}

/* [-0, +6] true, status, raw headers, body|nil, http version, elapsed,
** then the redirect target or nil. */
static int push_head(lua_State *L, corio_xfer *x, int body) {
  long code = 0, ver = 0;
  curl_off_t us = 0;
  char *redir = NULL;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ver);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &us);
  lua_pushboolean(L, 1);
  lua_pushinteger(L, code);
  lua_pushlstring(L, x->head, x->hlen);
  if (body) lua_pushlstring(L, x->buf ? x->buf : "", x->len);
  else lua_pushnil(L);
  lua_pushinteger(L, ver);
  lua_pushnumber(L, (double)us / 1e6);
  if (code >= 300 && code < 400 &&
      curl_easy_getinfo(x->easy, CURLINFO_REDIRECT_URL, &redir) == CURLE_OK &&
      redir != NULL)
    lua_pushstring(L, redir);
  else
    lua_pushnil(L);
  return 7;
}

static void run_later(corio_http *h);

/* A direct stream's read, in the reading task's context: unpause, so
** that curl hands over what it kept, and read on. Pushes the pieces;
** returns how many, or -1 with an error pushed. Making strings may run
** the collector inside curl's callbacks: what a finaliser asks of
** this client then waits until curl returned, or is refused (see
** in_curl). An error there (a finaliser that raises, no memory) is
** caught (make_piece) and raised here, after curl returned, as the
** read's own: the pieces made before it go to x's buffer, which the next
** read hands over first, and curl keeps the piece it came with, so no
** byte is lost. */
static int direct_read(lua_State *L, corio_xfer *x) {
  corio_http *h = x->h;
  int running, n;
  if (!x->in_multi || !x->paused || h->dead) return 0;
  if (!lua_checkstack(L, DIRECT_MAX + DIRECT_SLACK + 6)) {  /* fail, rather than stall */
    xfer_fail(x, "error", NULL, "no Lua stack space for the stream's chunks");
    return 0;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, h->piece_ref);
  x->dfn = lua_gettop(L);
  x->dL = L;
  x->dn = 0;
  x->paused = 0;
  x->last = loop_now(h);
  h->in_curl++;  /* Lua may run from here: see in_curl */
  curl_easy_pause(x->easy, CURLPAUSE_CONT);
  /* The unpause made the transfer due: run it now to read what the
  ** socket has, unless the kept bytes filled this read already (or a
  ** finaliser closed the stream or the client meanwhile). */
  if (!x->paused && !x->later && !h->close_later) {
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    h->in_curl--;
    check_done(h);
    apply_pauses(h);
  } else {
    h->in_curl--;
  }
  x->dL = NULL;
  n = x->dn;
  if (x->derr) {  /* make_piece, n pieces, the error */
    int i;
    x->derr = 0;
    for (i = x->dfn + 1; i <= x->dfn + n; i++) {
      size_t len;
      const char *p = lua_tolstring(L, i, &len);
      if (x->off == x->len) x->off = x->len = 0;
      if (grow(&x->buf, &x->cap, x->len + len) != 0) {
        /* the pieces are lost: the stream cannot go on */
        xfer_fail(x, "error", NULL, "out of memory keeping a stream's "
                  "chunks");
        break;
      }
      memcpy(x->buf + x->len, p, len);
      x->len += len;
    }
    lua_replace(L, x->dfn);
    lua_settop(L, x->dfn);
    if (h->in_curl == 0) run_later(h);
    return -1;
  }
  lua_remove(L, x->dfn);
  /* last: it may let go of x (closed by a finaliser) */
  if (h->in_curl == 0) run_later(h);
  return n;
}

/* [-0, +2] the next chunk of a stream: true, chunk | true, nil at the
** end | false, err; a direct stream may give several chunks: true, c1,
** c2, ... Returns -1 if nothing is there yet. */
static int push_chunk(lua_State *L, corio_xfer *x) {
  if (x->len > x->off) {
    /* At most STREAM_HIGH per chunk: one socket_action may have read up
    ** to 100 buffers (curl's maxloops). */
    size_t n = x->len - x->off;
    if (n > STREAM_HIGH) n = STREAM_HIGH;
    lua_pushboolean(L, 1);
    lua_pushlstring(L, x->buf + x->off, n);
    x->off += n;
    if (x->off == x->len) x->off = x->len = 0;
    /* (a direct stream unpauses only in direct_read) */
    if (x->paused && x->in_multi && !x->direct &&
        x->len - x->off < STREAM_HIGH) {
      x->paused = 0;
      x->last = loop_now(x->h);
      curl_easy_pause(x->easy, CURLPAUSE_CONT);
    }
    return 2;
  }
  if (x->direct && x->paused) {
    int n;
    lua_pushboolean(L, 1);
    n = direct_read(L, x);
    if (n > 0) return n + 1;
    if (n < 0) {  /* raise the error on top */
      lua_remove(L, -2);
      return -3;
    }
    lua_pop(L, 1);
  }
  if (!x->done) return -1;
  if (failed(x)) return push_err(L, x);
  lua_pushboolean(L, 1);
  lua_pushnil(L);
  return 2;
}

/* What the woken task resumes with, made on the runtime's state and
** moved over: an allocation on the suspended thread can run a __gc
** finaliser there, and one that raises (even inside its own pcall)
** wrecks that thread's stack. */
static void push_outcome(lua_State *L, corio_xfer *x, int w, corio_task *t);

static void deliver_on(lua_State *L, corio_task *t) {
  corio_xfer *x = t->wait_obj;
  int w = x->wait;
  t->wait_obj = NULL;
  x->wait = W_NONE;
  if (w == W_BODY) {
    int n = push_chunk(L, x);
    if (n == -3) {  /* a direct read's error (on top): false, err */
      lua_pushboolean(L, 0);
      lua_insert(L, -2);
    } else if (n < 0) {  /* cannot happen: woken with data */
      lua_pushboolean(L, 1);
      lua_pushliteral(L, "");
    }
    return;
  }
  push_outcome(L, x, w, t);
}

/* In corio__pcall: [] -> what the task ud resumes with. */
static void deliver_p(corio_rt *rt, lua_State *L, void *ud) {
  (void)rt;
  deliver_on(L, (corio_task *)ud);
}

/* A streamed body's task, woken, or feeding: whether it has an outcome
** yet (the transfer ended, or a stream's headers may be handed over),
** else it owes the next chunk ("more"). */
static int up_settled(corio_xfer *x, int w) {
  return x->done || (w == W_HEAD && head_ready(x));
}

/* What a task waiting for a response (W_RESPONSE) or a stream's headers
** (W_HEAD) gets: the response or headers, an error, or for a streamed
** body "more": pull the next chunk and feed it. */
static void push_outcome(lua_State *L, corio_xfer *x, int w, corio_task *t) {
  if (x->up && !up_settled(x, w)) {
    /* the task now runs its iterator, outside corio.http: a cancel that
    ** reaches the scope of the request removes the transfer at once
    ** (rule 7), see corio__http_cancelled */
    if (!x->up_iter) {
      x->up_iter = 1;
      x->h->n_up_iter++;
      x->h->rt->http_up_iter++;
    }
    x->up_scope = t->cur;
    x->up_task = t;
    lua_pushliteral(L, "more");
    return;
  }
  if (failed(x) || (w == W_HEAD && !x->head_done)) {
    if (!failed(x)) {
      x->err_kind = "protocol";
      snprintf(x->errmsg, sizeof(x->errmsg), "the response ended before "
               "its headers");
    }
    push_err(L, x);
    xfer_release(x);
    return;
  }
  push_head(L, x, w == W_RESPONSE);
  if (w == W_RESPONSE) xfer_release(x);
}

/* This runs in the scheduler: the outcome is made in a protected call.
** Without memory for it (or a finaliser that raised meanwhile) the task
** gets false and that error: a read keeps the bytes it did not hand over
** for the next one (push_chunk takes them once their string exists); a
** request's outcome (a response, a stream's headers, an error) that was
** not handed over lets go of its transfer here, as push_outcome does
** after its allocations (a stream's box is emptied; an upload asked for
** "more" keeps it, its task closes it). */
static void deliver(corio_task *t) {
  corio_xfer *x = t->wait_obj;
  corio_rt *rt = x->h->rt;
  lua_State *L = rt->L;
  int base = lua_gettop(L), w = x->wait;
  if (corio__pcall(rt, L, 0, LUA_MULTRET, deliver_p, t) != 0) {
    if (w != W_BODY && (!x->up || up_settled(x, w))) xfer_release(x);
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
  }
  lua_xmove(L, t->co, lua_gettop(L) - base);
}

/* ---- streams ----------------------------------------------------------- */

/* Bind a stream's userdata slot to x. */
void corio__xfer_bind(corio_xfer *x, void **box) {
  x->box = box;
  *box = x;
  if (x->stream) x->h->streams++;  /* see corio__http_want_gc (not an upload's box) */
}

/* read(): the next chunk now (pushed, count returned), or -1 after arming
** t to wait for it; -3: raise the error pushed (see direct_read); -4: a
** finaliser reads while a read of the client is inside curl (in_curl). */
int corio__xfer_read(lua_State *L, corio_xfer *x, corio_task *t) {
  int n;
  if (in_curl(x->h)) return -4;
  /* another task waits for a chunk, or was woken and has not taken it
  ** yet (xfer_wake clears x->t; deliver clears x->wait) */
  if (x->t != NULL || x->wait != W_NONE) return -2;
  n = push_chunk(L, x);
  if (n >= 0 || n == -3) return n;
  x->t = t;
  x->wait = W_BODY;
  x->h->rt->nexternal++;
  return -1;
}

/* feed(): the next chunk of a streamed body (p, n; eof: it is the
** last), in the requesting task's context after its iterator gave it.
** The chunk is copied, the send side unpaused; then the task gets its
** outcome now (pushed, count returned: the transfer ended meanwhile, a
** stream's headers came) or waits (-1 after arming t; it is woken for
** the next chunk, or with the outcome). -2: not expecting a chunk; -4:
** refused, see corio__http_busy. */
int corio__xfer_feed(lua_State *L, corio_xfer *x, corio_task *t,
                     const char *p, size_t n, int eof) {
  corio_http *h = x->h;
  int w = x->stream ? W_HEAD : W_RESPONSE, base;
  if (in_curl(h)) return -4;
  if (!x->up || x->t != NULL || x->wait != W_NONE) return -2;
  up_iter_end(x);
  if (!x->done && x->in_multi && !h->dead) {
    if (x->uoff == x->ulen) x->uoff = x->ulen = 0;
    if (n > 0) {
      if (x->uoff > 0 && x->ulen + n > x->ucap) {
        memmove(x->ubuf, x->ubuf + x->uoff, x->ulen - x->uoff);
        x->ulen -= x->uoff;
        x->uoff = 0;
      }
      if (grow(&x->ubuf, &x->ucap, x->ulen + n) != 0) {
        xfer_fail(x, "error", NULL, "out of memory holding a chunk of the "
                  "request body");
      } else {
        memcpy(x->ubuf + x->ulen, p, n);
        x->ulen += n;
        if (x->ucap > h->up_peak) h->up_peak = x->ucap;
      }
    }
    if (eof) x->up_eof = 1;
    if (x->up_need && !x->done) {
      x->up_need = 0;
      x->last = loop_now(h);
      /* curl runs read_cb on its next turn (a 0 ms timer); a receive
      ** side paused for a stream reader stays paused */
      curl_easy_pause(x->easy, x->paused ? CURLPAUSE_RECV : CURLPAUSE_CONT);
    }
  }
  if (x->done || up_settled(x, w)) {
    base = lua_gettop(L);
    push_outcome(L, x, w, t);
    return lua_gettop(L) - base;
  }
  x->t = t;
  x->wait = (uint8_t)w;
  h->rt->nexternal++;
  return -1;
}

/* t's innermost scope was just cancelled (effectively, by an outer
** cancel or deadline that reached it: not through a shield): an upload
** whose body iterator t runs (the iterator may block on anything: a
** channel, a sleep) in a scope now cancelled is removed from curl now, as
** a request waiting inside corio.http is (rule 7: transfers removed and
** pool slots freed synchronously). t gets Cancelled at its next
** checkpoint and lets go of x as it unwinds. The scope is followed only
** once found on t's chain of scopes: a request made in a user coroutine
** that was dropped leaves up_scope behind, maybe freed, until x's box is
** collected. */
void corio__http_cancelled(corio_rt *rt, corio_task *t) {
  corio_link *l, *m;
  for (l = rt->http_clients.next; l != &rt->http_clients; l = l->next) {
    corio_http *h = corio_container_of(l, corio_http, rt_link);
    if (h->n_up_iter == 0 || h->dead || h->closed || in_curl(h)) continue;
    for (m = h->active.next; m != &h->active; m = m->next) {
      corio_xfer *x = corio_container_of(m, corio_xfer, link);
      corio_scope *s;
      if (!x->up_iter || x->up_task != t) continue;
      for (s = t->cur; s != x->up_scope && s != &t->root; s = s->parent) {}
      if (s != x->up_scope || !s->eff) continue;
      up_iter_end(x);
      if (x->in_multi && !x->done)
        xfer_fail(x, "cancelled", NULL, "the request was cancelled while "
                  "its body iterator ran");
    }
  }
}

/* The first chunk, given with the request (before corio__xfer_start). */
int corio__xfer_first(corio_xfer *x, const char *p, size_t n, int eof) {
  if (n > 0) {
    if (grow(&x->ubuf, &x->ucap, n) != 0) return UV_ENOMEM;
    memcpy(x->ubuf, p, n);
    if (x->ucap > x->h->up_peak) x->h->up_peak = x->ucap;
  }
  x->uoff = 0;
  x->ulen = n;
  x->up_eof = (uint8_t)(eof != 0);
  return 0;
}

/* The largest buffer a streamed body of this client held (for tests). */
size_t corio__http_up_peak(corio_http *h) { return h->up_peak; }

/* Bytes buffered and whether the transfer is paused (for tests). */
void corio__xfer_buffered(corio_xfer *x, size_t *len, int *paused) {
  *len = x->len - x->off;
  *paused = x->paused;
}

/* close(): drop the transfer; a body not read to the end closes its
** connection (curl does not reuse a connection mid-response). A task
** waiting for a chunk, or woken and not yet run, gets kind "closed" and
** lets go of x itself. */
int corio__xfer_close(corio_xfer *x) {
  if (in_curl(x->h)) {  /* see in_curl */
    xfer_later(x, LATER_CLOSE);
    return 0;
  }
  if (x->t != NULL || x->wait != W_NONE) {
    /* also when the transfer had ended: the reader gets no more */
    x->err_kind = "closed";
    x->err_phase = NULL;
    snprintf(x->errmsg, sizeof(x->errmsg), "the stream was closed");
    x->off = x->len = 0;
    xfer_end(x, CURLE_ABORTED_BY_CALLBACK);
    return 0;
  }
  xfer_release(x);
  return 0;
}

/* ---- closing ------------------------------------------------------------ */

void corio__http_close(corio_http *h) {
  corio_link *l, *next;
  if (h->closed) return;
  if (in_curl(h)) {  /* see in_curl */
    h->close_later = 1;
    return;
  }
  h->closed = 1;
  for (l = h->active.next; l != &h->active; l = next) {
    corio_xfer *x = corio_container_of(l, corio_xfer, link);
    next = l->next;
    /* A waiting task gets "closed" and releases x when it runs; an
    ** unread stream keeps x until its box lets go. */
    if (x->in_multi) xfer_fail(x, "closed", NULL, "the client was closed");
  }
  while ((l = corio_list_shift(&h->free)) != NULL) {
    corio_xfer *x = corio_container_of(l, corio_xfer, link);
    corio_list_init(&x->link);
    xfer_destroy(x);
  }
  h->closed = 2;  /* timer_cb: ignore curl's last wishes */
  curl_multi_cleanup(h->multi);
  h->multi = NULL;
  curl_slist_free_all(h->defhdrs);
  h->defhdrs = NULL;
  while ((l = h->socks.next) != &h->socks)
    sock_close(corio_container_of(l, http_sock, link));
  if (h->dead) h->nhandles -= 2;
  else {
    uv_close((uv_handle_t *)&h->timer, http_timer_closed);
    uv_close((uv_handle_t *)&h->kick, http_timer_closed);
  }
}

/* Once curl returned: what finalisers asked while it ran (see in_curl),
** in the order closes of streams and releases, then the client's close. */
static void run_later(corio_http *h) {
  while (h->later != NULL) {
    corio_xfer *y = h->later;
    int op = y->later;
    h->later = y->later_next;
    y->later_next = NULL;
    y->later = 0;
    if (op & LATER_RELEASE) xfer_release(y);
    else corio__xfer_close(y);
  }
  if (h->close_later) {
    h->close_later = 0;
    corio__http_close(h);
  }
}

/* ---- the runtime freed on a host's loop ------------------------------- */

static void gone_sock_closed(uv_handle_t *hd) {
  http_sock *s = (http_sock *)hd;
  corio_http *h = s->h;
  if (s->gone == GONE_FREE) free(s);
  else s->gone = GONE_CLOSED;
  h->gone_closing--;
  http_maybe_free(h);
}

static void gone_xfer_closed(uv_handle_t *hd) {
  corio_xfer *x = (corio_xfer *)hd;
  corio_http *h = x->h;
  if (x->gone == GONE_FREE) free(x);
  else x->gone = GONE_CLOSED;
  h->gone_closing--;
  http_maybe_free(h);
}

static void gone_timer_closed(uv_handle_t *hd) {
  corio_http *h = hd->data;
  h->gone_closing--;
  http_maybe_free(h);
}

static void gone_xfers(corio_http *h, corio_link *list) {
  corio_link *l;
  for (l = list->next; l != list; l = l->next) {
    corio_xfer *x = corio_container_of(l, corio_xfer, link);
    if (uv_is_closing((uv_handle_t *)&x->timer)) continue;
    x->gone = GONE_CLOSING;
    h->gone_closing++;
    uv_close((uv_handle_t *)&x->timer, gone_xfer_closed);
  }
}

/* The runtime is being freed on a loop that is not its own (an embedding
** host's), while h's Lua object may still live (the host closes its Lua
** state later, or never). Close every handle of h on that loop now: after
** corio_free nothing of corio's may stay on the host's loop. Was: the
** client's timers, its sockets' polls and its transfers' timers stayed
** there (an idle keep-alive connection's poll, curl's timer: the host's
** uv_run did not return, uv_loop_close said EBUSY), and the __gc that
** lua_close ran later took the loop for closed and freed them under it.
** From here on h is dead (as when the runtime's own loop closed every
** handle): no task is woken, no handle touched. Its structs stay until
** their close callbacks ran, however late the host runs its loop. */
static void http_rt_gone(corio_http *h) {
  corio_link *l;
  if (h->dead) return;
  for (l = h->socks.next; l != &h->socks; l = l->next) {
    http_sock *s = corio_container_of(l, http_sock, link);
    if (uv_is_closing((uv_handle_t *)&s->poll)) continue;
    s->gone = GONE_CLOSING;
    h->gone_closing++;
    uv_close((uv_handle_t *)&s->poll, gone_sock_closed);
  }
  gone_xfers(h, &h->active);
  gone_xfers(h, &h->free);
  if (!uv_is_closing((uv_handle_t *)&h->timer)) {
    h->gone_closing++;
    uv_close((uv_handle_t *)&h->timer, gone_timer_closed);
  }
  if (!uv_is_closing((uv_handle_t *)&h->kick)) {
    h->gone_closing++;
    uv_close((uv_handle_t *)&h->kick, gone_timer_closed);
  }
  h->dead = 1;
}

/* The runtime rt is being freed: own_loop says whether the loop goes with
** it (it closes every handle then, and the clients' __gc see them closed).
** The clients leave rt's list, which is freed. */
void corio__http_rt_free(corio_rt *rt, int own_loop) {
  corio_link *l;
  while ((l = corio_list_shift(&rt->http_clients)) != NULL) {
    corio_http *h = corio_container_of(l, corio_http, rt_link);
    if (!own_loop) http_rt_gone(h);
  }
}

/* The client's Lua object is collected. rt_alive: 0 when the runtime was
** destroyed first (its loop closed every handle already). */
void corio__http_gc(corio_http *h, int rt_alive) {
  /* Even when closed: the loop closed the handles still open. */
  if (!rt_alive) h->dead = 1;
  corio__http_close(h);
  if (h->dead) {
    /* No task will run again to release its transfer; a stream box still
    ** alive releases its own when it is collected. */
    corio_link *l, *next;
    for (l = h->active.next; l != &h->active; l = next) {
      corio_xfer *x = corio_container_of(l, corio_xfer, link);
      next = l->next;
      if (x->box == NULL) {
        x->t = NULL;
        xfer_remove(x);
        xfer_destroy(x);
      }
    }
  }
  h->gc = 1;
  http_maybe_free(h);
}

/* A stream box collected while its transfer is still held. */
void corio__xfer_gc(corio_xfer *x, int rt_alive) {
  corio_http *h = x->h;
  if (!rt_alive) {
    h->dead = 1;
    x->t = NULL;  /* the task went with the runtime */
  }
  if (x->t != NULL) return;  /* a task is blocked on it: it holds the box */
  xfer_release(x);  /* inside curl's callbacks, later: see in_curl */
  http_maybe_free(h);
}

/* idle: open connections no transfer uses. A transfer waiting for a
** free connection or for a name holds none, and HTTP/2 transfers share
** one: count the distinct connections of the transfers in the multi
** (CURLINFO_ACTIVESOCKET is unset until a transfer ends, so prereq_cb
** notes each transfer's connection). */
/* The connections the transfers in the multi hold. */
static uint64_t busy_conns(corio_http *h) {
  uint32_t seen[64];
  uint64_t busy = 0, nseen = 0, i;
  corio_link *l;
  for (l = h->active.next; l != &h->active; l = l->next) {
    corio_xfer *x = corio_container_of(l, corio_xfer, link);
    if (!x->in_multi) continue;
    if (x->phase == PH_CONNECT) {  /* opening its own connection */
      busy++;
      continue;
    }
    if (x->conn_id == 0) continue;  /* waiting for one */
    for (i = 0; i < nseen && seen[i] != x->conn_id; i++) {}
    if (i < nseen) continue;
    if (nseen < 64) seen[nseen++] = x->conn_id;
    busy++;
  }
  return busy;
}

void corio__http_stats(corio_http *h, double *out) {
  uint64_t busy = busy_conns(h);
  out[0] = (double)h->opened;
  out[1] = (double)h->reused;
  out[2] = h->nopen > busy ? (double)(h->nopen - busy) : 0;
  out[3] = (double)h->in_flight;
}

int corio__http_closed(corio_http *h) { return h->closed != 0; }
