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

/* An op's life: begun (FRESH) in a call of a host function, it is
** suspended on (WAITING) or ended at once (resume/fail before suspend).
** The task stops waiting for it when cancelled, or when the call of the
** host function returns or raises without suspending on it (abandoned):
** DETACHED, then the host's resume or fail only ends it. `ended` is the
** end; the memory is freed then, unless something still holds it: the
** call of the host function (so corio_op_suspend can read an early end,
** and the end of the call can walk its ops) or a pending post (so the
** posted function runs on a valid op). */
enum { OP_FRESH, OP_WAITING, OP_DETACHED };

struct corio_op {
  corio_rt *rt;
  corio_task *t;           /* the task that waits; NULL once it does not */
  corio_op_cancel_cb on_cancel;
  void *data;
  int state;
  int ended;               /* resumed or failed (written under post_lock) */
  int counted;             /* counts as pending work (nexternal, nops) */
  int abandoning;          /* being abandoned by the end of its call */
  int early_n;             /* ended before suspend: values left on L */
  lua_State *L;            /* the state of the host function's call */
  struct corio_host_call *call; /* that call while it runs, else NULL */
  struct corio_op *call_next;   /* in call->ops */
  struct corio_op *prev, *next; /* in rt->ops */
  corio_op_post_cb post_fn; /* set while a post is pending (post_lock) */
  void *post_arg;
  struct corio_op *post_next;
};

/* A call of a host function made by corio_push_async (host_call), on the
** C stack while the function runs. */
typedef struct corio_host_call {
  struct corio_host_call *prev;  /* rt->hcall when it began */
  lua_State *L;
  corio_task *t;
  int yieldable;           /* L could yield where the call was made */
  corio_op *ops;           /* begun in this call */
  corio_op *suspend;       /* the op corio_op_suspend was called on */
} host_call_t;

corio_rt *corio_op_runtime(corio_op *op) {
  return op != NULL ? op->rt : NULL;
}

static int host_call(lua_State *L);

/* Whether the function running on L was called by host_call itself (not
** from Lua code that the host function called). */
static int called_by_host_call(lua_State *L) {
  lua_Debug ar;
  int ok;
  if (!lua_getstack(L, 1, &ar) || !lua_getinfo(L, "f", &ar)) return 0;
  ok = lua_tocfunction(L, -1) == host_call;
  lua_pop(L, 1);
  return ok;
}

corio_op *corio_op_begin(lua_State *L, corio_op_cancel_cb on_cancel,
                         void *data) {
  corio_rt *rt = corio__rt(L);
  host_call_t *c;
  corio_op *op;
  if (rt == NULL || rt->current == NULL) {
    lua_pushliteral(L, "corio: an async host function was called outside "
                       "a corio task");
    return NULL;
  }
  c = rt->hcall;
  if (c == NULL || c->L != L || c->t != rt->current ||
      !called_by_host_call(L)) {
    lua_pushliteral(L, "corio: corio_op_begin called from a C function "
                       "that corio_push_async did not make (or from Lua "
                       "code such a function called)");
    return NULL;
  }
  /* corio__can_suspend as of the call (inside it, L cannot yield) */
  if (!c->yieldable ||
      (L != c->t->co && !corio__resumed_by_corio(L, c->t))) {
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
  op->state = OP_FRESH;
  op->on_cancel = on_cancel;
  op->data = data;
  op->call = c;
  op->call_next = c->ops;
  c->ops = op;
  op->next = rt->ops;
  if (rt->ops != NULL) rt->ops->prev = op;
  rt->ops = op;
  op->counted = 1;
  rt->nexternal++;
  /* While ops are pending, the async handle keeps uv_run waiting for a
  ** post from another thread. */
  if (rt->nops++ == 0) uv_ref((uv_handle_t *)&rt->async);
  return op;
}

/* The op no longer counts as pending work. */
static void uncount(corio_op *op) {
  corio_rt *rt = op->rt;
  if (!op->counted) return;
  op->counted = 0;
  rt->nexternal--;
  if (--rt->nops == 0) uv_unref((uv_handle_t *)&rt->async);
}

static void op_free(corio_op *op) {
  corio_rt *rt = op->rt;
  if (op->prev != NULL) op->prev->next = op->next;
  else rt->ops = op->next;
  if (op->next != NULL) op->next->prev = op->prev;
  free(op);
}

/* Whether a post of op is pending. */
static int post_pending(corio_op *op) {
  int r;
  pthread_mutex_lock(&op->rt->post_lock);
  r = op->post_fn != NULL;
  pthread_mutex_unlock(&op->rt->post_lock);
  return r;
}

/* End op (resumed or failed): free it unless its call or a pending post
** still holds it (they free it when they let go). */
static void op_end(corio_op *op) {
  corio_rt *rt = op->rt;
  int posted;
  uncount(op);
  pthread_mutex_lock(&rt->post_lock);
  op->ended = 1;
  posted = op->post_fn != NULL;
  pthread_mutex_unlock(&rt->post_lock);
  if (!posted && op->call == NULL) op_free(op);
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
  if (op != NULL && op->t == t && op->state == OP_WAITING) {
    op->t = NULL;
    op->state = OP_DETACHED;
    if (op->on_cancel != NULL) op->on_cancel(op, op->data);  /* may end op */
  }
  if (t->state == CORIO_ST_BLOCKED) {
    t->abort = NULL;
    corio__ready(rt, t, deliver_op_cancelled);
  }
  return 0;
}

/* [-0, +3] What a call raises in a cancelled scope: marker, false,
** Cancelled. */
static int push_op_cancelled(lua_State *L) {
  lua_pushlightuserdata(L, &corio__opmark);
  lua_pushboolean(L, 0);
  corio__push_cancelled(L, L, "the task's scope is cancelled");
  return 3;
}

int corio_op_suspend(lua_State *L, corio_op *op) {
  corio_rt *rt;
  host_call_t *c;
  corio_task *t;
  /* (a host that did not check corio_op_begin's NULL: was a crash) */
  if (op == NULL)
    return luaL_error(L, "corio_op_suspend: op is NULL (corio_op_begin "
                         "failed?)");
  rt = op->rt;
  c = rt->hcall;
  if (op->call == NULL || op->call != c || c->L != L)
    return luaL_error(L, "corio_op_suspend: the op was not begun by this "
                         "call of the host function");
  t = c->t;
  if (op->ended) {
    /* ended already (the call still holds it): the task goes on at once
    ** with its values, still a checkpoint (rule 3) */
    int n = op->early_n;
    if (lua_gettop(L) < n)
      return luaL_error(L, "corio_op_suspend: the op's values are gone "
                           "from the stack");
    corio__checkpoint(rt, t);
    if (t->cur->eff) {
      /* a cancelled scope drops them */
      lua_pop(L, n);
      return push_op_cancelled(L);
    }
    return n;
  }
  if (op->state != OP_FRESH || c->suspend != NULL)
    return luaL_error(L, "corio_op_suspend: called twice in one call of "
                         "the host function");
  corio__checkpoint(rt, t);
  if (t->cur->eff) {
    /* A checkpoint (rule 3): the scope is already cancelled (cancelled
    ** before, or a deadline passed on entry), and nothing would cancel
    ** the task once blocked. The op is cancelled now, as if while
    ** suspended: the host is told, and still ends it. */
    op->t = NULL;
    op->state = OP_DETACHED;
    if (op->on_cancel != NULL) op->on_cancel(op, op->data);  /* may end op */
    return push_op_cancelled(L);
  }
  /* host_call suspends the task once the host function returned */
  op->state = OP_WAITING;
  c->suspend = op;
  return 0;
}

/* The end of a call of a host function (returned or raised): its ops
** that were neither suspended on nor ended are abandoned (the task has
** moved on), and the ops it held and that ended are freed. */
static void call_end(host_call_t *c) {
  corio_op *list = c->ops, *op, *next;
  c->ops = NULL;
  for (op = list; op != NULL; op = op->call_next) {
    if (!op->ended && op->state == OP_FRESH) {
      op->t = NULL;
      op->state = OP_DETACHED;
      op->abandoning = 1;
      uncount(op);
    }
  }
  /* the cancel callbacks: the ops stay held meanwhile, so a callback
  ** that ends one frees nothing under this walk */
  for (op = list; op != NULL; op = op->call_next) {
    if (op->abandoning && !op->ended && op->on_cancel != NULL)
      op->on_cancel(op, op->data);
    op->abandoning = 0;
  }
  for (op = list; op != NULL; op = next) {
    next = op->call_next;
    op->call = NULL;
    op->call_next = NULL;
    if (op->ended && !post_pending(op)) op_free(op);
  }
}

/* The function corio_push_async wraps: calls the host function fn (its
** upvalue, a C function) in a protected call, so that its end is seen however it ends,
** and suspends the task for it when it called corio_op_suspend. */
static int host_call(lua_State *L) {
  corio_rt *rt = corio__rt(L);
  host_call_t c;
  int st;
  if (rt == NULL || rt->current == NULL)   /* no op can begin */
    return lua_tocfunction(L, lua_upvalueindex(1))(L);
  c.prev = rt->hcall;
  c.L = L;
  c.t = rt->current;
  c.yieldable = rt->isyieldable == NULL || corio__yieldable(rt, L);
  c.ops = NULL;
  c.suspend = NULL;
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  rt->hcall = &c;
  st = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  rt->hcall = c.prev;
  if (st != 0 && c.suspend != NULL) {
    c.suspend->state = OP_FRESH;   /* raised after all: not waited for */
    c.suspend = NULL;
  }
  if (c.ops != NULL) call_end(&c);
  if (st != 0) return lua_error(L);
  if (c.suspend != NULL) {
    lua_settop(L, 0);
    return corio__suspend(rt, L, c.t, abort_op, "host operation", c.suspend);
  }
  return lua_gettop(L);
}

/* The op's task is resumed with (marker, ok, values...): push ok, then
** move the values there. */
int corio_op_resume(corio_op *op, int n) {
  corio_rt *rt;
  lua_State *L;
  corio_task *t;
  if (op == NULL) return UV_EINVAL;
  rt = op->rt;
  L = rt->L;
  t = op->t;
  /* fewer values than n on the state (pushed on the task's thread, or
  ** not at all): was moved anyway, taking the runtime's own slots */
  if (n < 0 || n > lua_gettop(L)) return UV_EINVAL;
  if (op->ended) {          /* held by its call or a pending post */
    lua_pop(L, n);
    return UV_EALREADY;
  }
  if (op->state == OP_DETACHED) {   /* cancelled or abandoned */
    lua_pop(L, n);
    op_end(op);
    return UV_ECANCELED;
  }
  if (op->state == OP_FRESH) {
    /* ended before corio_op_suspend, which returns the values; only from
    ** inside the call that began it (the values go on its stack) */
    if (op->call != rt->hcall) {
      lua_pop(L, n);
      return UV_EINVAL;
    }
    lua_pushlightuserdata(op->L, &corio__opmark);
    lua_pushboolean(op->L, 1);
    lua_xmove(L, op->L, n);
    op->early_n = n + 2;
    op_end(op);
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

/* In corio__pcall: [] -> [the error of kind km[0], message km[1]]. */
static void op_error_p(corio_rt *rt, lua_State *L, void *ud) {
  const char **km = (const char **)ud;
  (void)rt;
  corio__push_error(L, km[0], km[1]);
}

int corio_op_fail(corio_op *op, const char *kind, const char *message) {
  corio_rt *rt;
  corio_task *t;
  lua_State *to;
  if (op == NULL) return UV_EINVAL;
  rt = op->rt;
  t = op->t;
  if (op->ended) return UV_EALREADY;
  if (op->state == OP_DETACHED) {
    op_end(op);
    return UV_ECANCELED;
  }
  if (op->state == OP_FRESH && op->call != rt->hcall) return UV_EINVAL;
  to = op->state == OP_FRESH ? op->L : t->co;
  lua_pushlightuserdata(to, &corio__opmark);
  lua_pushboolean(to, 0);
  /* the error is made on the runtime's state and moved: an allocation on
  ** the suspended thread could run a raising __gc finaliser there (see
  ** runtime/fs.c, deliver_file) */
  {
    /* in a protected call: a host's callback may call this between
    ** steps, outside any; without memory the task gets LuaJIT's "not
    ** enough memory" instead (was: LuaJIT's panic) */
    const char *km[2];
    km[0] = kind ? kind : "error";
    km[1] = message ? message : "host operation failed";
    (void)corio__pcall(rt, rt->L, 0, 1, op_error_p, (void *)km);
  }
  lua_xmove(rt->L, to, 1);
  if (op->state == OP_FRESH) {
    /* ended before corio_op_suspend, which raises the error */
    op->early_n = 3;
  } else {
    t->abort = NULL;
    corio__ready(rt, t, NULL);
  }
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
    corio_op *next;
    corio_op_post_cb fn;
    void *arg;
    int ended;
    /* the post is no longer pending once read: the op may be posted
    ** again from here on (by fn, or another thread) */
    pthread_mutex_lock(&rt->post_lock);
    next = op->post_next;
    fn = op->post_fn;
    arg = op->post_arg;
    op->post_fn = NULL;
    op->post_next = NULL;
    ended = op->ended;
    pthread_mutex_unlock(&rt->post_lock);
    /* An op ended while posted was kept for fn: its resume or fail
    ** returns UV_EALREADY and a new post UV_EINVAL, so it is freed here.
    ** Any other op fn may end, which frees it. */
    fn(op, arg);
    if (ended && op->call == NULL) op_free(op);
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
  corio_op *op;
  int pass;
  /* corio_free (on the loop thread): a post still pending (an abandoned
  ** op a thread ended after the run, before the loop turned again) is
  ** run now. Was: the async handle was closed with it queued, so fn never
  ** ran and the host could not release its arg or know its work was
  ** done, though corio_op_post promises fn runs. No task waits any more:
  ** each op is detached first, so fn's resume or fail only frees it
  ** (UV_ECANCELED). A fn that posts again runs again, a bounded number of
  ** times (a host re-posting forever must not hang corio_free). */
  for (op = rt->ops; op != NULL; op = op->next) {
    if (op->state != OP_DETACHED) {
      op->t = NULL;
      op->state = OP_DETACHED;
    }
    uncount(op);
  }
  for (pass = 0; pass < 16; pass++) {
    int pending;
    pthread_mutex_lock(&rt->post_lock);
    pending = rt->posted != NULL;
    pthread_mutex_unlock(&rt->post_lock);
    if (!pending) break;
    on_async(&rt->async);
  }
  corio__close_handle(rt, (uv_handle_t *)&rt->async);
}

/* The runtime is freed: so are the ops the host never ended (abandoned
** ones, or ended while posted with the loop gone). */
void corio__host_free(corio_rt *rt) {
  while (rt->ops != NULL) op_free(rt->ops);
  rt->posted = NULL;
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

/* What corio_push_async(L, NULL) pushes calls: was a call through NULL. */
static int null_async(lua_State *L) {
  return luaL_error(L, "corio_push_async: the host function is NULL");
}

void corio_push_async(lua_State *L, lua_CFunction fn) {
  if (fn == NULL) fn = null_async;
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
  /* fn is called through host_call, which sees its end */
  lua_pushcfunction(L, fn);
  lua_pushcclosure(L, host_call, 1);
  lua_call(L, 1, 1);
}

int corio_op_post(corio_op *op, corio_op_post_cb fn, void *arg) {
  corio_rt *rt;
  int r = 0;
  if (op == NULL || fn == NULL) return UV_EINVAL;
  rt = op->rt;
  pthread_mutex_lock(&rt->post_lock);
  if (op->ended) {
    r = UV_EINVAL;           /* kept only for a post already pending */
  } else if (op->post_fn != NULL) {
    r = UV_EALREADY;         /* posted, and fn not run yet */
  } else {
    op->post_fn = fn;
    op->post_arg = arg;
    op->post_next = rt->posted;
    rt->posted = op;
  }
  pthread_mutex_unlock(&rt->post_lock);
  return r != 0 ? r : uv_async_send(&rt->async);
}
