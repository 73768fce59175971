/*
** host.c: async operations defined by an embedding host (corio_op_* in
** corio.h). An op ties a suspended task to the host's own completion; a
** uv_async_t carries completions posted from other threads to the loop.
** The Lua wrapper that raises errors is built in lua/corio/init.lua.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct corio_op {
  corio_rt *rt;
  corio_task *t;           /* the suspended task; NULL once cancelled */
  corio_op_cancel_cb on_cancel;
  void *data;
  int suspended;           /* corio_op_suspend was called */
  lua_State *L;            /* the state of the host function's call */
  corio_op_post_cb post_fn; /* set while posted from another thread */
  void *post_arg;
  struct corio_op *post_next;
};

corio_rt *corio_op_runtime(corio_op *op) { return op->rt; }

corio_op *corio_op_begin(lua_State *L, corio_op_cancel_cb on_cancel,
                         void *data) {
  corio_rt *rt = corio__rt(L);
  corio_op *op;
  if (rt == NULL || rt->current == NULL) {
    lua_pushliteral(L, "corio: an async host function was called outside "
                       "a corio task");
    return NULL;
  }
  if (!corio__can_suspend(rt, L)) {
    lua_pushliteral(L, "corio: an async host function cannot suspend the "
                       "task here (inside a C function boundary, or in a "
                       "coroutine resumed by a copy of coroutine.resume "
                       "taken before require \"corio\")");
    return NULL;
  }
  op = calloc(1, sizeof(*op));
  if (op == NULL) {
    lua_pushliteral(L, "corio: out of memory");
    return NULL;
  }
  op->rt = rt;
  op->L = L;
  op->t = rt->current;
  rt->early_op = NULL;
  op->on_cancel = on_cancel;
  op->data = data;
  rt->nexternal++;
  /* While ops are pending, the async handle keeps uv_run waiting for a
  ** post from another thread. */
  if (rt->nops++ == 0) uv_ref((uv_handle_t *)&rt->async);
  return op;
}

/* Values a task resumes with from an op start with this marker, so the
** Lua wrapper (init.lua) can tell them from values the host function
** returned without suspending. */
char corio__opmark;

static void deliver_op_cancelled(corio_task *t) {
  lua_pushlightuserdata(t->co, &corio__opmark);
  corio__deliver_cancelled(t);   /* made on the runtime's state, moved */
}

/* Cancelled while suspended: tell the host, and wake the task (with the
** marker) ourselves, hence 0 for the scheduler. */
static int abort_op(corio_rt *rt, corio_task *t) {
  corio_op *op = t->wait_obj;
  if (op != NULL && op->t == t) {
    op->t = NULL;
    if (op->on_cancel != NULL) op->on_cancel(op, op->data);
  }
  if (t->state == CORIO_ST_BLOCKED) {
    t->abort = NULL;
    corio__ready(rt, t, deliver_op_cancelled);
  }
  return 0;
}

static void op_end(corio_op *op);

/* An op ended before corio_op_suspend (its result was at hand): its
** values (marker, ok, results or error) go on the stack of the host
** function's call, and it is freed at once, so that a host that raises
** an error instead of suspending leaks nothing. corio_op_suspend then
** knows it by its address. */
static void end_early(corio_op *op, int n) {
  corio_rt *rt = op->rt;
  rt->early_n = n;
  rt->early_op = op;
  op_end(op);
}

int corio_op_suspend(lua_State *L, corio_op *op) {
  corio_rt *rt = corio__rt(L);
  corio_task *t;
  if (rt != NULL && op == rt->early_op) {
    /* ended already (op is freed): the task goes on at once with its
    ** values, still a checkpoint (rule 3) */
    int n = rt->early_n;
    rt->early_op = NULL;
    t = rt->current;
    t->checkpoints++;
    if (t->cur->eff) {
      /* a cancelled scope drops them */
      lua_pop(L, n);
      lua_pushlightuserdata(L, &corio__opmark);
      lua_pushboolean(L, 0);
      corio__push_cancelled(L, L, "the task's scope is cancelled");
      return 3;
    }
    return n;
  }
  t = op->t;
  op->suspended = 1;
  t->checkpoints++;
  if (t->cur->eff) {
    /* A checkpoint (rule 3): the scope is already cancelled (cancelled
    ** before, or a deadline passed on entry), and nothing would cancel
    ** the task once blocked. The op is cancelled now, as if while
    ** suspended: the host is told, and still ends it. */
    op->t = NULL;
    if (op->on_cancel != NULL) op->on_cancel(op, op->data);  /* may end op */
    lua_pushlightuserdata(L, &corio__opmark);
    lua_pushboolean(L, 0);
    corio__push_cancelled(L, L, "the task's scope is cancelled");
    return 3;
  }
  return corio__suspend(op->rt, L, t, abort_op, "host operation", op);
}

static void op_end(corio_op *op) {
  corio_rt *rt = op->rt;
  rt->nexternal--;
  if (--rt->nops == 0) uv_unref((uv_handle_t *)&rt->async);
  free(op);
}

int corio_op_resume(corio_op *op, int n) {
  corio_rt *rt = op->rt;
  lua_State *L = rt->L;
  corio_task *t = op->t;
  if (t == NULL) {          /* cancelled: drop the values */
    lua_pop(L, n);
    op_end(op);
    return UV_ECANCELED;
  }
  if (!op->suspended) {
    /* ended before corio_op_suspend, which returns the values */
    lua_pushlightuserdata(op->L, &corio__opmark);
    lua_pushboolean(op->L, 1);
    lua_xmove(L, op->L, n);
    end_early(op, n + 2);
    return 0;
  }
  lua_pushlightuserdata(t->co, &corio__opmark);
  lua_pushboolean(t->co, 1);
  lua_xmove(L, t->co, n);
  t->abort = NULL;
  corio__ready(rt, t, NULL);
  op_end(op);
  return 0;
}

int corio_op_fail(corio_op *op, const char *kind, const char *message) {
  corio_task *t = op->t;
  if (t == NULL) {
    op_end(op);
    return UV_ECANCELED;
  }
  if (!op->suspended) {
    /* ended before corio_op_suspend, which returns the error */
    lua_pushlightuserdata(op->L, &corio__opmark);
    lua_pushboolean(op->L, 0);
    corio__push_error(op->rt->L, kind ? kind : "error",
                      message ? message : "host operation failed");
    lua_xmove(op->rt->L, op->L, 1);
    end_early(op, 3);
    return 0;
  }
  lua_pushlightuserdata(t->co, &corio__opmark);
  lua_pushboolean(t->co, 0);
  /* the error is made on the runtime's state and moved: an allocation on
  ** the suspended thread could run a raising __gc finaliser there (see
  ** runtime/fs.c, deliver_file) */
  corio__push_error(op->rt->L, kind ? kind : "error",
                    message ? message : "host operation failed");
  lua_xmove(op->rt->L, t->co, 1);
  t->abort = NULL;
  corio__ready(op->rt, t, NULL);
  op_end(op);
  return 0;
}

/* ---- posting from other threads ------------------------------------- */

static void on_async(uv_async_t *h) {
  corio_rt *rt = h->data;
  corio_op *list, *op;
  pthread_mutex_lock(&rt->post_lock);
  list = rt->posted;
  rt->posted = NULL;
  pthread_mutex_unlock(&rt->post_lock);
  /* posted in reverse: restore the order they were posted in */
  op = NULL;
  while (list != NULL) {
    corio_op *next = list->post_next;
    list->post_next = op;
    op = list;
    list = next;
  }
  while (op != NULL) {
    corio_op *next = op->post_next;
    corio_op_post_cb fn = op->post_fn;
    op->post_fn = NULL;
    fn(op, op->post_arg);   /* may free op */
    op = next;
  }
}

int corio__host_init(corio_rt *rt) {
  int r;
  if (pthread_mutex_init(&rt->post_lock, NULL) != 0) return UV_ENOMEM;
  r = uv_async_init(rt->loop, &rt->async, on_async);
  if (r != 0) {
    pthread_mutex_destroy(&rt->post_lock);
    return r;
  }
  rt->async.data = rt;
  uv_unref((uv_handle_t *)&rt->async);
  return 0;
}

void corio__host_close(corio_rt *rt) {
  uv_close((uv_handle_t *)&rt->async, NULL);
}

void corio__host_free(corio_rt *rt) {
  pthread_mutex_destroy(&rt->post_lock);
}

/* corio_push_async before corio is loaded: a Lua function that wraps fn
** at its first call (a run has loaded corio by then). A Lua function, so
** that fn is called from Lua and can suspend. */
static const char LAZY_ASYNC[] =
    "local cfn, w = ...\n"
    "return function(...)\n"
    "  if not w then\n"
    "    local reg = debug.getregistry()\n"
    "    if not reg['corio.async_wrap'] then require 'corio' end\n"
    "    w = reg['corio.async_wrap'](cfn)\n"
    "  end\n"
    "  return w(...)\n"
    "end\n";

void corio_push_async(lua_State *L, lua_CFunction fn) {
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.async_wrap");
  if (lua_isnil(L, -1)) {
    /* Not loaded yet. Requiring it here raised outside any pcall when
    ** its paths were not set yet (corio_add_paths after this call):
    ** LuaJIT's panic, which exits. */
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, LAZY_ASYNC, sizeof(LAZY_ASYNC) - 1,
                        "=corio_push_async") != 0)
      lua_error(L);  /* out of memory only */
  }
  lua_pushcfunction(L, fn);
  lua_call(L, 1, 1);
}

int corio_op_post(corio_op *op, corio_op_post_cb fn, void *arg) {
  corio_rt *rt = op->rt;
  pthread_mutex_lock(&rt->post_lock);
  op->post_fn = fn;
  op->post_arg = arg;
  op->post_next = rt->posted;
  rt->posted = op;
  pthread_mutex_unlock(&rt->post_lock);
  return uv_async_send(&rt->async);
}
