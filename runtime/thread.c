/*
** thread.c: corio.to_thread. The function (as bytecode) and its arguments
** (serialised with LuaJIT's string.buffer) go to a worker Lua state on
** libuv's thread pool; the encoded results come back to the task. Worker
** states are pooled and reused; they never touch the runtime's state. A
** cancelled caller is woken at once while the worker finishes in the
** background; its result is dropped, and corio.run waits for it.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

typedef struct corio_work {
  uv_work_t req;
  corio_rt *rt;
  corio_task *t;   /* the caller; NULL once it was cancelled */
  char *code;      /* bytecode of the function, or NULL: */
  size_t ncode;
  lua_CFunction cfn; /* a host's C function (corio_push_thread_fn) */
  char *args;      /* string.buffer encoding of {n=, ...} */
  size_t nargs;
  char *out;       /* encoded results, or an error message */
  size_t nout;
  int ok;          /* the function returned (out = results) */
  struct corio_work_state *ws;
} corio_work;

typedef struct corio_work_state {
  lua_State *L;
  struct corio_work_state *next;
} corio_work_state;

/* The worker's driver: decode the arguments, call the function with a
** traceback handler, encode what it returned. */
static const char DRIVER[] =
    "local buffer = require 'string.buffer'\n"
    "local unpack, select, xpcall, traceback = unpack, select, xpcall, "
    "debug.traceback\n"
    "local encode, decode, pcall, tostring = buffer.encode, buffer.decode, "
    "pcall, tostring\n"
    "local function handler(e)\n"
    "  if type(e) ~= 'string' then\n"
    "    local ok, s = pcall(tostring, e)\n"
    "    e = ok and s or '(error object is a ' .. type(e) .. ' value)'\n"
    "  end\n"
    "  return traceback(e, 2)\n"
    "end\n"
    "local function finish(ok, ...)\n"
    "  if not ok then return false, ... end\n"
    "  local eok, s = pcall(encode, {n = select('#', ...), ...})\n"
    "  if not eok then return false, 'corio.to_thread: cannot send the "
    "results back: ' .. tostring(s) end\n"
    "  return true, s\n"
    "end\n"
    "local loaded = setmetatable({}, {__mode = 'v'})\n"
    "return function(code, args)\n"
    "  local fn = type(code) == 'function' and code or loaded[code]\n"
    "  if fn == nil then\n"
    "    local err\n"
    "    fn, err = loadstring(code, '=to_thread function')\n"
    "    if not fn then return false, err end\n"
    "    loaded[code] = fn\n"
    "  end\n"
    "  local a = decode(args)\n"
    "  return finish(xpcall(fn, handler, unpack(a, 1, a.n)))\n"
    "end\n";

static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* libuv sizes its thread pool (shared by the whole process) from
** UV_THREADPOOL_SIZE when the pool first starts. */
static int pool_started;

/* Set the pool size before first use. Returns 0, or UV_EBUSY once the
** pool runs (to_thread or file I/O already used it). */
int corio__pool_size(int n) {
  char buf[16];
  if (pool_started) return UV_EBUSY;
  snprintf(buf, sizeof(buf), "%d", n);
  return setenv("UV_THREADPOOL_SIZE", buf, 1) == 0 ? 0 : UV_EINVAL;
}

void corio__pool_used(void) { pool_started = 1; }

static corio_work_state *state_get(corio_rt *rt) {
  corio_work_state *ws;
  pthread_mutex_lock(&pool_lock);
  ws = rt->work_states;
  if (ws != NULL) rt->work_states = ws->next;
  pthread_mutex_unlock(&pool_lock);
  if (ws != NULL) return ws;
  ws = calloc(1, sizeof(*ws));
  if (ws == NULL) return NULL;
  ws->L = luaL_newstate();
  if (ws->L == NULL) {
    free(ws);
    return NULL;
  }
  luaL_openlibs(ws->L);
  if (luaL_loadbuffer(ws->L, DRIVER, sizeof(DRIVER) - 1, "=to_thread") ||
      lua_pcall(ws->L, 0, 1, 0)) {
    lua_close(ws->L);
    free(ws);
    return NULL;
  }
  lua_setfield(ws->L, LUA_REGISTRYINDEX, "corio.driver");
  return ws;
}

static void state_put(corio_rt *rt, corio_work_state *ws) {
  pthread_mutex_lock(&pool_lock);
  ws->next = rt->work_states;
  rt->work_states = ws;
  pthread_mutex_unlock(&pool_lock);
}

void corio__work_states_free(corio_rt *rt) {
  corio_work_state *ws = rt->work_states;
  while (ws != NULL) {
    corio_work_state *next = ws->next;
    lua_close(ws->L);
    free(ws);
    ws = next;
  }
  rt->work_states = NULL;
}

static void set_out(corio_work *w, const char *s, size_t n, int ok) {
  w->out = malloc(n + 1);
  if (w->out != NULL) {
    memcpy(w->out, s, n);
    w->out[n] = 0;
    w->nout = n;
  }
  w->ok = ok;
}

/* On a pool thread: touches only the worker state. */
static void work_cb(uv_work_t *req) {
  corio_work *w = req->data;
  corio_work_state *ws = state_get(w->rt);
  lua_State *L;
  size_t n;
  const char *s;
  if (ws == NULL) {
    static const char msg[] = "corio.to_thread: cannot create a worker "
                              "Lua state";
    set_out(w, msg, sizeof(msg) - 1, 0);
    return;
  }
  L = ws->L;
  /* The driver keeps functions it loaded, keyed by their bytecode, so a
  ** function sent again is not parsed again. */
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.driver");
  if (w->cfn != NULL) lua_pushcfunction(L, w->cfn);
  else lua_pushlstring(L, w->code, w->ncode);
  lua_pushlstring(L, w->args, w->nargs);
  if (lua_pcall(L, 2, 2, 0) != 0) {
    s = lua_tolstring(L, -1, &n);
    set_out(w, s ? s : "corio.to_thread: worker failed", s ? n : 30, 0);
  } else {
    s = lua_tolstring(L, -1, &n);
    set_out(w, s ? s : "", s ? n : 0, lua_toboolean(L, -2));
  }
  lua_settop(L, 0);
  state_put(w->rt, ws);
}

static void work_free(corio_work *w) {
  free(w->code);
  free(w->args);
  free(w->out);
  free(w);
}

/* Push (true, ok, encoded) for the Lua wrapper, which decodes. */
static void deliver_work(corio_task *t) {
  corio_work *w = t->wait_obj;
  lua_pushboolean(t->co, 1);
  lua_pushboolean(t->co, w->ok);
  if (w->out != NULL) lua_pushlstring(t->co, w->out, w->nout);
  else lua_pushliteral(t->co, "corio.to_thread: out of memory");
  t->wait_obj = NULL;
  work_free(w);
}

static void after_work(uv_work_t *req, int status) {
  corio_work *w = req->data;
  corio_rt *rt = w->rt;
  rt->nexternal--;
  if (w->t == NULL) {  /* the caller was cancelled: drop the result */
    work_free(w);
    return;
  }
  if (status != 0 && w->out == NULL) {
    static const char msg[] = "corio.to_thread: the work was cancelled";
    set_out(w, msg, sizeof(msg) - 1, 0);
  }
  w->t->abort = NULL;
  corio__ready(rt, w->t, deliver_work);
}

static int abort_work(corio_rt *rt, corio_task *t) {
  corio_work *w = t->wait_obj;
  (void)rt;
  if (w != NULL) w->t = NULL;
  t->wait_obj = NULL;
  return 1;
}

/* Start fn (bytecode) with encoded args for task t; on success the caller
** suspends with corio__suspend(..., corio__abort_work_hook, ..., obj). */
int corio__to_thread(corio_rt *rt, corio_task *t, const char *code,
                     size_t ncode, lua_CFunction cfn, const char *args,
                     size_t nargs, void **obj) {
  corio_work *w = calloc(1, sizeof(*w));
  int r;
  if (w == NULL) return UV_ENOMEM;
  w->cfn = cfn;
  w->code = malloc(ncode ? ncode : 1);
  w->args = malloc(nargs ? nargs : 1);
  if (w->code == NULL || w->args == NULL) {
    work_free(w);
    return UV_ENOMEM;
  }
  if (ncode) memcpy(w->code, code, ncode);
  memcpy(w->args, args, nargs);
  w->ncode = ncode;
  w->nargs = nargs;
  w->rt = rt;
  w->t = t;
  w->req.data = w;
  pool_started = 1;
  r = uv_queue_work(rt->loop, &w->req, work_cb, after_work);
  if (r != 0) {
    work_free(w);
    return r;
  }
  rt->nexternal++;
  *obj = w;
  return 0;
}

corio_abort_fn corio__abort_work_hook = abort_work;
