/*
** thread.c: corio.to_thread on a small worker pool of corio's own.
**
** A call becomes a request (pooled, with reusable buffers): the function's
** bytecode (or a host's C function) and its arguments. Arguments and
** results that are nil, booleans, numbers or strings cross in a compact
** packet written and read straight from the Lua stacks; anything else
** (tables) crosses as one string.buffer encoding of {n = ..., ...}.
**
** Workers are threads of the runtime's own, started on demand up to the
** pool size (UV_THREADPOOL_SIZE, or corio.thread_pool_size; default 4).
** Each owns one Lua state for its life, with the functions it loaded
** cached by bytecode. The loop thread queues requests under one mutex and
** wakes a sleeping worker only when the queue is longer than the number
** of workers already awake (a worker that finishes takes the next request
** without sleeping). Finished requests go on a list that the loop takes in
** one piece: a worker writes the eventfd only when it finds that list
** empty, so one wake-up of the loop delivers every call finished by then,
** and the tasks are made ready in the same turn of the loop.
**
** A cancelled caller is woken at once. A request no worker took yet
** leaves the queue (fn never runs); one that runs goes on, its result is
** dropped when it comes back, and corio.run waits for it (the request
** counts in rt->nexternal, and the poll handle stays referenced while
** requests are out).
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/futex.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#else
#include <fcntl.h>
#endif

#include <lualib.h>

#include "internal.h"
#include "thread.h"

/* Requests kept for reuse, and the buffer size a kept one may hold. */
#define FREE_MAX 64
#define KEEP_BUF 4096
/* Functions a worker keeps loaded before it starts its cache afresh. */
#define CACHE_MAX 256

typedef struct corio_buf {
  char *p;
  size_t n, cap;
} corio_buf;

enum { W_FAST, W_ENC, W_ERR, W_ERRV };

struct corio_work {
  struct corio_work *next;
  struct corio_work *qprev;         /* in the queue, before it (mu) */
  int queued;             /* in the queue: no worker took it yet (mu) */
  struct corio_work *dprev, *dnext; /* in p->delivering while its caller
                                       is ready to take the results */
  struct corio_pool *p;
  corio_task *t;          /* the caller; NULL once it was cancelled */
  lua_CFunction cfn;      /* a host's C function, or NULL: */
  corio_buf code;         /* the function's bytecode */
  corio_buf in;           /* the arguments: a packet, or */
  int in_enc;             /* ... a string.buffer encoding */
  corio_buf out;          /* results (packet or encoding) or a message */
  int status;             /* W_FAST, W_ENC, W_ERR or W_ERRV (a table
                             raised: {message, value} encoded) */
};

typedef struct corio_worker {
  struct corio_pool *p;
  pthread_t th;
  pthread_cond_t cv;            /* (not on Linux: a futex on wake) */
  int wake;                    /* set (under mu) by whoever wakes it */
  struct corio_worker *next_idle;
  lua_State *L;
  int ncache;
  uint32_t paths_gen;           /* the pool's paths its state has */
  corio_buf paths;              /* a copy of new ones, taken under mu, */
  int paths_new;                /* for run_work to set */
} corio_worker;

/* rt->work_states points at this (the type is opaque outside). */
typedef struct corio_pool {
  corio_rt *rt;
  pthread_mutex_t mu;
  corio_work *qhead, *qtail;   /* queued requests (mu) */
  uint32_t qlen;               /* (mu) */
  corio_work *done;            /* finished, newest first (mu) */
  corio_worker **workers;      /* started workers (mu) */
  int nthreads, size;
  int navail;                  /* awake workers not running a request */
  corio_worker *idle;          /* sleeping workers (mu) */
  int stop;                    /* (mu) */
  int rfd, wfd;                /* the wake-up: eventfd (rfd == wfd) */
  uv_poll_t *poll;
  uv_prepare_t *prep;          /* takes finished requests before a poll */
  int sleeping;                /* the loop may block: wake it (mu) */
  uint32_t inflight;           /* loop thread only */
  corio_work *free;            /* requests kept for reuse (loop thread) */
  int nfree;
  corio_work *delivering;      /* finished, caller ready (loop thread) */
  /* The caller's package.path and cpath, for the workers' states:
  ** "path\0cpath\0", and a generation a worker compares with its own
  ** (mu; corio__work_paths). */
  char *paths;
  size_t npaths;
  uint32_t paths_gen;
} corio_pool;

static pthread_mutex_t size_lock = PTHREAD_MUTEX_INITIALIZER;
static int pool_started;   /* a pool (libuv's or corio's) has started */

/* Set the pool size before first use. Returns 0, or UV_EBUSY once a pool
** runs (to_thread or file I/O already used one). libuv reads
** UV_THREADPOOL_SIZE when its pool starts; corio's pool reads it too. */
int corio__pool_size(int n) {
  char buf[16];
  int r;
  pthread_mutex_lock(&size_lock);
  if (pool_started) {
    r = UV_EBUSY;
  } else {
    snprintf(buf, sizeof(buf), "%d", n);
    r = setenv("UV_THREADPOOL_SIZE", buf, 1) == 0 ? 0 : UV_EINVAL;
  }
  pthread_mutex_unlock(&size_lock);
  return r;
}

void corio__pool_used(void) {
  pthread_mutex_lock(&size_lock);
  pool_started = 1;
  pthread_mutex_unlock(&size_lock);
}

/* UV_THREADPOOL_SIZE read as libuv reads it for its pool (file I/O), so
** that the variable gives both pools one size: unset 4, else atoi's value
** as an unsigned number, 0 (empty, not a number) taken as 1, above 1024
** (a negative number too) as 1024. It used to take an empty value as 4
** and a negative one as 1, where libuv's pool has 1 and 1024. */
static int pool_size_env(void) {
  const char *s = getenv("UV_THREADPOOL_SIZE");
  unsigned n = s != NULL ? (unsigned)strtol(s, NULL, 10) : 4;
  if (n == 0) n = 1;
  if (n > 1024) n = 1024;
  return (int)n;
}

int corio__pool_size_now(void) {
  int n;
  pthread_mutex_lock(&size_lock);
  n = pool_size_env();
  pthread_mutex_unlock(&size_lock);
  return n;
}

/* ---- buffers and packets --------------------------------------------- */

static int buf_reserve(corio_buf *b, size_t more) {
  size_t need = b->n + more, cap;
  char *p;
  if (need <= b->cap) return 0;
  cap = b->cap ? b->cap : 64;
  while (cap < need) cap *= 2;
  p = realloc(b->p, cap);
  if (p == NULL) return -1;
  b->p = p;
  b->cap = cap;
  return 0;
}

static int buf_set(corio_buf *b, const char *s, size_t n) {
  b->n = 0;
  if (buf_reserve(b, n + 1) != 0) return -1;
  memcpy(b->p, s, n);
  b->p[n] = 0;
  b->n = n;
  return 0;
}

enum { T_NIL, T_FALSE, T_TRUE, T_NUM, T_STR };

/* Append the values at from..to of L as a packet. Returns 0, 1 when one
** of them is not nil, boolean, number or string, or -1 out of memory. */
static int pack_values(corio_buf *b, lua_State *L, int from, int to) {
  int i;
  b->n = 0;
  if (buf_reserve(b, 4) != 0) return -1;
  {
    uint32_t n = (uint32_t)(to - from + 1);
    memcpy(b->p, &n, 4);
    b->n = 4;
  }
  for (i = from; i <= to; i++) {
    switch (lua_type(L, i)) {
      case LUA_TNIL:
        if (buf_reserve(b, 1) != 0) return -1;
        b->p[b->n++] = T_NIL;
        break;
      case LUA_TBOOLEAN:
        if (buf_reserve(b, 1) != 0) return -1;
        b->p[b->n++] = lua_toboolean(L, i) ? T_TRUE : T_FALSE;
        break;
      case LUA_TNUMBER: {
        lua_Number x = lua_tonumber(L, i);
        if (buf_reserve(b, 1 + sizeof(x)) != 0) return -1;
        b->p[b->n++] = T_NUM;
        memcpy(b->p + b->n, &x, sizeof(x));
        b->n += sizeof(x);
        break;
      }
      case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, i, &len);
        if (buf_reserve(b, 1 + sizeof(len) + len) != 0) return -1;
        b->p[b->n++] = T_STR;
        memcpy(b->p + b->n, &len, sizeof(len));
        b->n += sizeof(len);
        memcpy(b->p + b->n, s, len);
        b->n += len;
        break;
      }
      default:
        return 1;
    }
  }
  return 0;
}

/* Push the values of a packet on L. Returns how many, or -1 when L's
** stack cannot hold them. */
static int unpack_values(lua_State *L, const corio_buf *b) {
  const char *p = b->p, *end = b->p + b->n;
  uint32_t n;
  memcpy(&n, p, 4);
  p += 4;
  if (n > 0 && !lua_checkstack(L, (int)n + 2)) return -1;
  while (p < end) {
    switch (*p++) {
      case T_NIL: lua_pushnil(L); break;
      case T_FALSE: lua_pushboolean(L, 0); break;
      case T_TRUE: lua_pushboolean(L, 1); break;
      case T_NUM: {
        lua_Number x;
        memcpy(&x, p, sizeof(x));
        p += sizeof(x);
        lua_pushnumber(L, x);
        break;
      }
      default: {  /* T_STR */
        size_t len;
        memcpy(&len, p, sizeof(len));
        p += sizeof(len);
        lua_pushlstring(L, p, len);
        p += len;
        break;
      }
    }
  }
  return (int)n;
}

/* ---- workers ----------------------------------------------------------- */

/* The worker state's helpers: the traceback handler and string.buffer's
** encode and decode. They stay at stack slots 1..3, the cache of loaded
** functions (bytecode -> function) at 4. */
static const char DRIVER[] =
    "local buffer = require 'string.buffer'\n"
    /* string.buffer decodes 64-bit integer cdata (1LL) only once the FFI
    ** is loaded; the caller's side encodes them */
    "pcall(require, 'ffi')\n"
    "local traceback, pcall, tostring, type = debug.traceback, pcall, "
    "tostring, type\n"
    "local getmetatable, rawget = debug.getmetatable, rawget\n"
    /* a table raised is kept for take_raised, to be sent back as well */
    "local raised\n"
    /* the message of a value that is not a string, as a task's error gets
    ** it (corio__wrap_error) and lua.c prints it: a number as itself, a
    ** value with __tostring as that, else "(error object is a T value)"
    ** (it used to be tostring's "nil", "true", "table: 0x...") */
    "local function handler(e)\n"
    "  raised = type(e) == 'table' and e or nil\n"
    "  if type(e) == 'number' then\n"
    "    e = tostring(e)\n"
    "  elseif type(e) ~= 'string' then\n"
    "    local mt, s = getmetatable(e)\n"
    "    if type(mt) == 'table' and rawget(mt, '__tostring') ~= nil then\n"
    "      local ok, r = pcall(tostring, e)\n"
    "      if ok and type(r) == 'string' then s = r end\n"
    "    end\n"
    "    e = s or '(error object is a ' .. type(e) .. ' value)'\n"
    "  end\n"
    "  return traceback(e, 2)\n"
    "end\n"
    "local function take_raised()\n"
    "  local e = raised\n"
    "  raised = nil\n"
    "  return e\n"
    "end\n"
    "return handler, buffer.encode, buffer.decode, take_raised\n";

enum { S_HANDLER = 1, S_ENCODE, S_DECODE, S_TAKE, S_CACHE,
       S_BASE = S_CACHE };

static lua_State *worker_state(void) {
  lua_State *L = luaL_newstate();
  if (L == NULL) return NULL;
  luaL_openlibs(L);
  /* A require "corio" in fn gets the corio.core of this very code, as the
  ** caller's state does: found on package.cpath instead, it would map a
  ** second copy of the runtime (core.so beside a corio program or a host
  ** that has corio built in), with globals of its own. */
  corio_preload(L);
  if (luaL_loadbuffer(L, DRIVER, sizeof(DRIVER) - 1, "=to_thread") != 0 ||
      lua_pcall(L, 0, 4, 0) != 0) {
    lua_close(L);
    return NULL;
  }
  lua_newtable(L);
  return L;
}

static void fail(corio_work *w, const char *msg, size_t n) {
  if (buf_set(&w->out, msg, n) != 0) w->out.n = 0;
  w->status = W_ERR;
}

static void fail_top(lua_State *L, corio_work *w, const char *prefix) {
  size_t n;
  const char *s;
  if (prefix != NULL) {
    lua_pushstring(L, prefix);
    lua_insert(L, -2);
    if (lua_type(L, -1) != LUA_TSTRING && lua_type(L, -1) != LUA_TNUMBER) {
      lua_pop(L, 1);
      lua_pushliteral(L, "(not a string)");
    }
    lua_concat(L, 2);
  }
  s = lua_tolstring(L, -1, &n);
  if (s == NULL) {
    s = "corio.to_thread: the worker failed";
    n = strlen(s);
  }
  fail(w, s, n);
}

/* fn raised a table (the handler kept it; its message, with the
** traceback, is on the top): send back {message, table} encoded, so that
** the caller's error carries the table as err.value. 0 if it was no
** table, or one that cannot cross (the message alone goes back then). */
static int fail_value(lua_State *L, corio_work *w) {
  int top = lua_gettop(L);
  size_t n;
  const char *s;
  lua_pushvalue(L, S_TAKE);
  if (lua_pcall(L, 0, 1, 0) != 0 || !lua_istable(L, -1)) {
    lua_settop(L, top);
    return 0;
  }
  lua_createtable(L, 2, 0);               /* [msg e t] */
  lua_insert(L, -2);                      /* [msg t e] */
  lua_rawseti(L, -2, 2);
  lua_pushvalue(L, top);
  lua_rawseti(L, -2, 1);                  /* [msg t] */
  lua_pushvalue(L, S_ENCODE);
  lua_insert(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0 ||
      (s = lua_tolstring(L, -1, &n)) == NULL || buf_set(&w->out, s, n) != 0) {
    lua_settop(L, top);
    return 0;
  }
  w->status = W_ERRV;
  lua_settop(L, top);
  return 1;
}

/* Run request w in the worker's state. */
static void run_work(corio_worker *wk, corio_work *w) {
  lua_State *L = wk->L;
  int base, nargs, nres, r;
  if (L == NULL && (L = wk->L = worker_state()) == NULL) {
    static const char msg[] = "corio.to_thread: cannot create a worker "
                              "Lua state";
    fail(w, msg, sizeof(msg) - 1);
    return;
  }
  lua_settop(L, S_BASE);
  if (wk->paths_new) {
    /* the caller's package.path and cpath, changed since the last call
    ** (worker_main copied them) */
    const char *path = wk->paths.p, *cpath = path + strlen(path) + 1;
    lua_getglobal(L, "package");
    if (lua_istable(L, -1)) {
      lua_pushstring(L, path);
      lua_setfield(L, -2, "path");
      lua_pushstring(L, cpath);
      lua_setfield(L, -2, "cpath");
    }
    lua_settop(L, S_BASE);
    wk->paths_new = 0;
  }
  if (w->cfn != NULL) {
    lua_pushcfunction(L, w->cfn);
  } else {
    lua_pushlstring(L, w->code.p, w->code.n);
    lua_pushvalue(L, -1);
    lua_rawget(L, S_CACHE);
    if (lua_isnil(L, -1)) {
      lua_pop(L, 1);
      if (luaL_loadbuffer(L, w->code.p, w->code.n, "=to_thread function")) {
        fail_top(L, w, NULL);
        lua_settop(L, S_BASE);
        return;
      }
      if (++wk->ncache > CACHE_MAX) {
        lua_newtable(L);
        lua_replace(L, S_CACHE);
        wk->ncache = 1;
      }
      lua_pushvalue(L, -2);
      lua_pushvalue(L, -2);
      lua_rawset(L, S_CACHE);
    }
    lua_remove(L, -2);
  }
  base = lua_gettop(L);   /* the function */
  if (w->in_enc) {
    int i;
    lua_pushvalue(L, S_DECODE);
    lua_pushlstring(L, w->in.p, w->in.n);
    if (lua_pcall(L, 1, 1, 0) != 0 || !lua_istable(L, -1)) {
      fail_top(L, w, "corio.to_thread: cannot read the arguments: ");
      lua_settop(L, S_BASE);
      return;
    }
    lua_getfield(L, -1, "n");
    nargs = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (nargs < 0 || !lua_checkstack(L, nargs + 2)) nargs = -1;
    for (i = 1; i <= nargs; i++) lua_rawgeti(L, base + 1, i);
    lua_remove(L, base + 1);
  } else {
    nargs = unpack_values(L, &w->in);
  }
  if (nargs < 0) {
    static const char msg[] = "corio.to_thread: too many arguments";
    fail(w, msg, sizeof(msg) - 1);
    lua_settop(L, S_BASE);
    return;
  }
  if (lua_pcall(L, nargs, LUA_MULTRET, S_HANDLER) != 0) {
    if (!fail_value(L, w)) fail_top(L, w, NULL);
    lua_settop(L, S_BASE);
    return;
  }
  nres = lua_gettop(L) - base + 1;
  r = pack_values(&w->out, L, base, lua_gettop(L));
  if (r == 0) {
    w->status = W_FAST;
  } else if (r < 0) {
    static const char msg[] = "corio.to_thread: out of memory";
    fail(w, msg, sizeof(msg) - 1);
  } else {
    int i;
    const char *s;
    size_t n;
    if (!lua_checkstack(L, 4)) {
      static const char msg[] = "corio.to_thread: too many results";
      fail(w, msg, sizeof(msg) - 1);
      lua_settop(L, S_BASE);
      return;
    }
    lua_createtable(L, nres, 1);
    for (i = 0; i < nres; i++) {
      lua_pushvalue(L, base + i);
      lua_rawseti(L, -2, i + 1);
    }
    lua_pushinteger(L, nres);
    lua_setfield(L, -2, "n");
    lua_pushvalue(L, S_ENCODE);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != 0) {
      const char *e;
      int bad = 0;
      /* which result: name the first that cannot cross on its own, as
      ** the caller's side names the argument (the message used to say
      ** only the type, so with several results the user had to guess) */
      for (i = 0; i < nres && bad == 0; i++) {
        lua_pushvalue(L, S_ENCODE);
        lua_pushvalue(L, base + i);
        if (lua_pcall(L, 1, 1, 0) != 0) {
          bad = i + 1;
          lua_replace(L, -2);   /* its message instead of the whole's */
        } else {
          lua_pop(L, 1);
        }
      }
      e = lua_tostring(L, -1);
      if (e != NULL && strstr(e, "too deep") != NULL) {
        lua_pushliteral(L, CORIO_TOO_DEEP);
        lua_concat(L, 2);
      }
      if (bad > 0) {
        lua_pushfstring(L, "result #%d: ", bad);
        lua_insert(L, -2);
        lua_concat(L, 2);
      }
      fail_top(L, w, "corio.to_thread: cannot send the results back: ");
    } else {
      s = lua_tolstring(L, -1, &n);
      if (buf_set(&w->out, s, n) != 0) {
        static const char msg[] = "corio.to_thread: out of memory";
        fail(w, msg, sizeof(msg) - 1);
      } else {
        w->status = W_ENC;
      }
    }
  }
  lua_settop(L, S_BASE);
}

static void wake_loop(corio_pool *p) {
  uint64_t one = 1;
  ssize_t r;
  do {
    r = write(p->wfd, &one, p->wfd == p->rfd ? sizeof(one) : 1);
  } while (r < 0 && errno == EINTR);
  /* EAGAIN: the counter (or pipe) is full, so the loop is woken anyway */
}

/* Sleep (mu held, and held again on return) until wk->wake is set. On
** Linux a futex on wk->wake: one system call to sleep and one to wake,
** and the lock is not left marked contended as a condition wait leaves
** it. */
static void park(corio_pool *p, corio_worker *wk) {
#ifdef __linux__
  pthread_mutex_unlock(&p->mu);
  while (__atomic_load_n(&wk->wake, __ATOMIC_ACQUIRE) == 0)
    syscall(SYS_futex, &wk->wake, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
  pthread_mutex_lock(&p->mu);
#else
  while (!wk->wake) pthread_cond_wait(&wk->cv, &p->mu);
#endif
}

/* Set wk->wake (mu held); then unpark(wk) once mu is released. */
static void set_wake(corio_worker *wk) {
  __atomic_store_n(&wk->wake, 1, __ATOMIC_RELEASE);
}

static void unpark(corio_worker *wk) {
#ifdef __linux__
  syscall(SYS_futex, &wk->wake, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
#else
  pthread_cond_signal(&wk->cv);
#endif
}

static void *worker_main(void *arg) {
  corio_worker *wk = arg;
  corio_pool *p = wk->p;
  pthread_mutex_lock(&p->mu);
  for (;;) {
    corio_work *w = p->qhead;
    if (w != NULL) {
      int wake;
      p->qhead = w->next;
      if (p->qhead == NULL) p->qtail = NULL;
      else p->qhead->qprev = NULL;
      p->qlen--;
      w->queued = 0;
      p->navail--;
      if (wk->paths_gen != p->paths_gen &&
          buf_set(&wk->paths, p->paths, p->npaths) == 0) {
        /* new paths: copied for run_work to set (without memory for the
        ** copy, the next request tries again) */
        wk->paths_gen = p->paths_gen;
        wk->paths_new = 1;
      }
      pthread_mutex_unlock(&p->mu);
      run_work(wk, w);
      pthread_mutex_lock(&p->mu);
      wake = p->sleeping;
      p->sleeping = 0;   /* one wake-up is enough */
      w->next = p->done;
      p->done = w;
      p->navail++;
      if (wake) {
        pthread_mutex_unlock(&p->mu);
        wake_loop(p);
        pthread_mutex_lock(&p->mu);
      }
      continue;
    }
    if (p->stop) break;
    /* sleep until a request is queued for this worker */
    p->navail--;
    __atomic_store_n(&wk->wake, 0, __ATOMIC_RELAXED);
    wk->next_idle = p->idle;
    p->idle = wk;
    park(p, wk);   /* woken for a request, or to stop */
  }
  pthread_mutex_unlock(&p->mu);
  if (wk->L != NULL) lua_close(wk->L);
  wk->L = NULL;
  free(wk->paths.p);
  wk->paths.p = NULL;
  return NULL;
}

/* Start one more worker (mu held). Returns 0 or -1. Workers block every
** signal: those are the loop thread's business. */
static int start_worker(corio_pool *p) {
  corio_worker *wk = calloc(1, sizeof(*wk));
  sigset_t all, old;
  int r;
  if (wk == NULL) return -1;
  wk->p = p;
  if (pthread_cond_init(&wk->cv, NULL) != 0) {
    free(wk);
    return -1;
  }
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = pthread_create(&wk->th, NULL, worker_main, wk);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != 0) {
    pthread_cond_destroy(&wk->cv);
    free(wk);
    return -1;
  }
  p->workers[p->nthreads++] = wk;
  p->navail++;
  return 0;
}

/* ---- the loop side ------------------------------------------------------ */

static void work_release(corio_pool *p, corio_work *w) {
  if (p->nfree < FREE_MAX && w->code.cap <= KEEP_BUF &&
      w->in.cap <= KEEP_BUF && w->out.cap <= KEEP_BUF) {
    w->next = p->free;
    p->free = w;
    p->nfree++;
    return;
  }
  free(w->code.p);
  free(w->in.p);
  free(w->out.p);
  free(w);
}

static void work_free_list(corio_work *w) {
  while (w != NULL) {
    corio_work *next = w->next;
    free(w->code.p);
    free(w->in.p);
    free(w->out.p);
    free(w);
    w = next;
  }
}

/* Push what the caller resumes with, for the Lua wrapper (init.lua):
** true, results... | false, 1, encoded results | false, 2, message. */
/* In corio__pcall: [] -> the values deliver_work hands over. */
static void deliver_work_p(corio_rt *rt, lua_State *co, void *ud) {
  corio_work *w = (corio_work *)ud;
  int base = lua_gettop(co);
  (void)rt;
  if (w->status == W_FAST) {
    lua_pushboolean(co, 1);
    if (unpack_values(co, &w->out) < 0) {
      lua_settop(co, base);
      lua_pushboolean(co, 0);
      lua_pushinteger(co, 2);
      lua_pushliteral(co, "corio.to_thread: too many results");
    }
  } else {
    lua_pushboolean(co, 0);
    lua_pushinteger(co, w->status == W_ENC ? 1 : w->status == W_ERRV ? 3 : 2);
    if (w->status == W_ERR && w->out.n == 0)
      lua_pushliteral(co, "corio.to_thread: out of memory");
    else
      lua_pushlstring(co, w->out.p, w->out.n);
  }
}

static void deliver_work(corio_task *t) {
  corio_work *w = t->wait_obj;
  corio_pool *p = w->p;
  /* Made on the runtime's state and moved to the task: an allocation on
  ** the suspended thread could run a __gc finaliser there (runtime/fs.c,
  ** deliver_file). In a protected call (this runs in the scheduler):
  ** without memory for the values, the call fails with LuaJIT's "not
  ** enough memory" (as a message of the worker's, kind 2). */
  lua_State *co = p->rt->L;
  int base = lua_gettop(co);
  t->wait_obj = NULL;
  if (w->dprev != NULL) w->dprev->dnext = w->dnext;
  else p->delivering = w->dnext;
  if (w->dnext != NULL) w->dnext->dprev = w->dprev;
  if (corio__pcall(p->rt, co, 0, LUA_MULTRET, deliver_work_p, w) != 0) {
    lua_pushboolean(co, 0);
    lua_insert(co, -2);
    lua_pushinteger(co, 2);
    lua_insert(co, -2);
  }
  work_release(p, w);
  if (!lua_checkstack(t->co, lua_gettop(co) - base + 1)) {
    lua_settop(co, base);
    lua_pushboolean(co, 0);
    lua_pushinteger(co, 2);
    lua_pushliteral(co, "corio.to_thread: too many results");
  }
  lua_xmove(co, t->co, lua_gettop(co) - base);
}

/* One take of the finished requests (see take_done): returns how many
** there were, and adds how many tasks it made ready to *readied. */
static int take_done_once(corio_pool *p, int sleeping, int *readied) {
  corio_rt *rt = p->rt;
  corio_work *list, *w = NULL;
  int n = 0;
  pthread_mutex_lock(&p->mu);
  list = p->done;
  p->done = NULL;
  p->sleeping = sleeping && list == NULL;
  pthread_mutex_unlock(&p->mu);
  while (list != NULL) {   /* newest first: restore the order */
    corio_work *next = list->next;
    list->next = w;
    w = list;
    list = next;
  }
  while (w != NULL) {
    corio_work *next = w->next;
    rt->nexternal--;
    if (--p->inflight == 0) {
      uv_unref((uv_handle_t *)p->poll);
      uv_prepare_stop(p->prep);
    }
    if (w->t == NULL) {   /* the caller was cancelled: drop the result */
      work_release(p, w);
    } else {
      w->t->abort = NULL;
      /* the pool holds it until the caller runs: a state closed before
      ** that (os.exit(code, true) in another task) does not lose it */
      w->dprev = NULL;
      w->dnext = p->delivering;
      if (p->delivering != NULL) p->delivering->dprev = w;
      p->delivering = w;
      corio__ready(rt, w->t, deliver_work);
      (*readied)++;
    }
    w = next;
    n++;
  }
  return n;
}

/* Make the callers of the finished requests ready (loop thread), with
** sleeping (under mu) set to whether the loop may block afterwards.
** Returns how many there were. Requests whose callers were all cancelled
** make no task ready, so the loop may still block: then take again, so
** that sleeping ends set under mu with the list seen empty (a worker that
** finished meanwhile saw it clear and wrote no wake-up: without this the
** loop slept on with that request done). */
static int take_done(corio_pool *p, int sleeping) {
  int n = 0, got, readied = 0;
  do {
    got = take_done_once(p, sleeping, &readied);
    n += got;
  } while (sleeping && got > 0 && readied == 0);
  return n;
}

/* Woken by a worker: the loop was, or was about to be, blocked. */
static void on_done(uv_poll_t *h, int status, int events) {
  corio_pool *p = h->data;
  uint64_t v;
  (void)status;
  (void)events;
  while (read(p->rfd, &v, p->rfd == p->wfd ? sizeof(v) : 1) > 0 &&
         p->rfd != p->wfd) {
  }
  take_done(p, 0);
}

/* Before every poll of the loop: take what finished while the loop was
** busy (no wake-up needed for those), and tell the workers that the loop
** may now block, so the next one to finish wakes it. A task made ready
** here stops corio's own run of the loop from blocking (corio__ready);
** in a run of the host's, nothing would: then the poll is woken. */
static void on_prepare(uv_prepare_t *h) {
  corio_pool *p = h->data;
  int pending;
  if (p->rt->in_uv) {
    take_done(p, 1);
    return;
  }
  pthread_mutex_lock(&p->mu);
  pending = p->done != NULL;
  p->sleeping = !pending;
  pthread_mutex_unlock(&p->mu);
  if (pending) wake_loop(p);
}

static void pool_destroy(corio_pool *p) {
  if (p->rfd >= 0) close(p->rfd);
  if (p->wfd >= 0 && p->wfd != p->rfd) close(p->wfd);
  pthread_mutex_destroy(&p->mu);
  free(p->workers);
  free(p->paths);
  free(p);
}

static corio_pool *pool_get(corio_rt *rt) {
  corio_pool *p = (corio_pool *)rt->work_states;
  if (p != NULL) return p;
  p = calloc(1, sizeof(*p));
  if (p == NULL) return NULL;
  p->rt = rt;
  p->rfd = p->wfd = -1;
  if (pthread_mutex_init(&p->mu, NULL) != 0) {
    free(p);
    return NULL;
  }
  corio__pool_used();
  p->size = pool_size_env();
  p->workers = calloc((size_t)p->size, sizeof(*p->workers));
#ifdef __linux__
  p->rfd = p->wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
#else
  {
    int fds[2];
    if (pipe(fds) == 0) {
      p->rfd = fds[0];
      p->wfd = fds[1];
      fcntl(fds[0], F_SETFL, O_NONBLOCK);
      fcntl(fds[1], F_SETFL, O_NONBLOCK);
    }
  }
#endif
  p->poll = malloc(sizeof(*p->poll));
  p->prep = malloc(sizeof(*p->prep));
  if (p->workers == NULL || p->rfd < 0 || p->poll == NULL ||
      p->prep == NULL || uv_poll_init(rt->loop, p->poll, p->rfd) != 0) {
    free(p->poll);
    free(p->prep);
    pool_destroy(p);
    return NULL;
  }
  p->poll->data = p;
  uv_poll_start(p->poll, UV_READABLE, on_done);
  uv_unref((uv_handle_t *)p->poll);
  uv_prepare_init(rt->loop, p->prep);
  p->prep->data = p;
  uv_unref((uv_handle_t *)p->prep);
  p->sleeping = 1;
  rt->work_states = (struct corio_work_state *)p;
  return p;
}

static void free_handle(uv_handle_t *h) { free(h); }

/* At the runtime's end: stop and join the workers (a request still
** running is let finish), then free what is left. The loop has been run
** after its handles were closed, unless the host owns it: then the poll
** handle is closed here and freed when the host's loop runs. */
void corio__work_states_free(corio_rt *rt) {
  corio_pool *p = (corio_pool *)rt->work_states;
  int i;
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stop = 1;
  for (i = 0; i < p->nthreads; i++) set_wake(p->workers[i]);
  pthread_mutex_unlock(&p->mu);
  for (i = 0; i < p->nthreads; i++) unpark(p->workers[i]);
  for (i = 0; i < p->nthreads; i++) {
    pthread_join(p->workers[i]->th, NULL);
    pthread_cond_destroy(&p->workers[i]->cv);
    free(p->workers[i]);
  }
  work_free_list(p->qhead);
  work_free_list(p->done);
  work_free_list(p->free);
  while (p->delivering != NULL) {  /* callers that will not run again */
    corio_work *w = p->delivering;
    p->delivering = w->dnext;
    w->t->wait_obj = NULL;
    w->t->deliver = NULL;
    w->next = NULL;
    work_free_list(w);
  }
  if (uv_is_closing((uv_handle_t *)p->poll)) free(p->poll);
  else uv_close((uv_handle_t *)p->poll, free_handle);
  if (uv_is_closing((uv_handle_t *)p->prep)) free(p->prep);
  else uv_close((uv_handle_t *)p->prep, free_handle);
  pool_destroy(p);
  rt->work_states = NULL;
}

/* A request for the loop thread to fill (code, in) and queue, or NULL. */
corio_work *corio__work_new(corio_rt *rt) {
  corio_pool *p = pool_get(rt);
  corio_work *w;
  if (p == NULL) return NULL;
  if ((w = p->free) != NULL) {
    p->free = w->next;
    p->nfree--;
  } else if ((w = calloc(1, sizeof(*w))) == NULL) {
    return NULL;
  }
  w->next = NULL;
  w->p = p;
  w->t = NULL;
  w->cfn = NULL;
  w->code.n = w->in.n = w->out.n = 0;
  w->in_enc = 0;
  return w;
}

/* Give back a request that was not queued. */
void corio__work_drop(corio_rt *rt, corio_work *w) {
  work_release((corio_pool *)rt->work_states, w);
}

int corio__work_code(corio_work *w, const char *code, size_t n,
                     lua_CFunction cfn) {
  w->cfn = cfn;
  if (cfn != NULL) return 0;
  return buf_set(&w->code, code, n);
}

int corio__work_args(corio_work *w, lua_State *L, int from, int to) {
  w->in_enc = 0;
  return pack_values(&w->in, L, from, to);
}

int corio__work_args_encoded(corio_work *w, const char *s, size_t n) {
  w->in_enc = 1;
  return buf_set(&w->in, s, n);
}

/* Queue w for task t. Returns 0, or an error (w is then dropped); the
** caller then suspends with corio__suspend(..., corio__abort_work_hook,
** ..., w). */
int corio__work_queue(corio_rt *rt, corio_task *t, corio_work *w) {
  corio_pool *p = (corio_pool *)rt->work_states;
  corio_worker *wake = NULL;
  int r = 0;
  w->t = t;
  w->next = NULL;
  pthread_mutex_lock(&p->mu);
  w->qprev = p->qtail;
  w->queued = 1;
  if (p->qtail != NULL) p->qtail->next = w;
  else p->qhead = w;
  p->qtail = w;
  p->qlen++;
  if (p->inflight == 0) p->sleeping = 1;   /* until a prepare says more */
  if (p->qlen > (uint32_t)(p->navail > 0 ? p->navail : 0)) {
    if (p->idle != NULL) {
      wake = p->idle;
      p->idle = wake->next_idle;
      set_wake(wake);
      p->navail++;
    } else if (p->nthreads < p->size) {
      if (start_worker(p) != 0 && p->nthreads == 0) r = UV_EAGAIN;
    }
  }
  if (r != 0) {   /* no worker at all: take it back */
    p->qhead = p->qtail = NULL;
    p->qlen = 0;
    w->queued = 0;
  }
  pthread_mutex_unlock(&p->mu);
  if (wake != NULL) unpark(wake);
  if (r != 0) {
    work_release(p, w);
    return r;
  }
  if (p->inflight++ == 0) {
    uv_ref((uv_handle_t *)p->poll);
    uv_prepare_start(p->prep, on_prepare);
  }
  rt->nexternal++;
  return 0;
}

/* The caller is cancelled. A request still in the queue is taken out:
** fn never runs (rule 7: a cancelled waiter leaves its queue at once; as
** trio's to_thread cancelled while it waits for a thread). It used to run
** when a worker got to it, after the cancel, its side effects included,
** and corio.run waited for it. A request a worker runs goes on to its end
** and its result is dropped (take_done_once). */
static int abort_work(corio_rt *rt, corio_task *t) {
  corio_work *w = t->wait_obj;
  corio_pool *p;
  int unqueued = 0;
  t->wait_obj = NULL;
  if (w == NULL) return 1;
  p = w->p;
  pthread_mutex_lock(&p->mu);
  if (w->queued) {
    if (w->qprev != NULL) w->qprev->next = w->next;
    else p->qhead = w->next;
    if (w->next != NULL) w->next->qprev = w->qprev;
    else p->qtail = w->qprev;
    p->qlen--;
    w->queued = 0;
    unqueued = 1;
  }
  pthread_mutex_unlock(&p->mu);
  if (!unqueued) {
    w->t = NULL;
    return 1;
  }
  /* as take_done_once does for a finished request */
  rt->nexternal--;
  if (--p->inflight == 0) {
    uv_unref((uv_handle_t *)p->poll);
    uv_prepare_stop(p->prep);
  }
  work_release(p, w);
  return 1;
}

corio_abort_fn corio__abort_work_hook = abort_work;

/* The caller's package.path and cpath (path\0cpath\0 is copied), for the
** requests queued from now on: a worker sets them in its state before
** its next request. Returns 0, or -1 (out of memory: nothing changed). */
int corio__work_paths(corio_rt *rt, const char *path, size_t n1,
                      const char *cpath, size_t n2) {
  corio_pool *p = pool_get(rt);
  char *buf;
  if (p == NULL || (buf = malloc(n1 + n2 + 2)) == NULL) return -1;
  memcpy(buf, path, n1);
  buf[n1] = '\0';
  memcpy(buf + n1 + 1, cpath, n2);
  buf[n1 + 1 + n2] = '\0';
  pthread_mutex_lock(&p->mu);
  free(p->paths);
  p->paths = buf;
  p->npaths = n1 + n2 + 2;
  p->paths_gen++;
  pthread_mutex_unlock(&p->mu);
  return 0;
}
