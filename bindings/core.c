/*
** core.c: the Lua C module "corio.core": tasks, scopes, sleep/yield, the
** clock, run, and the testing hooks, over the runtime in runtime/. The
** blocking functions here return `true, ...` or `false, err` and are
** wrapped by lua/corio/init.lua, which raises (STYLE: errors are raised on
** the task's own stack). Sync objects are in sync.c and channel.c.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bindings.h"

static const char *const STATUS[] = {"pending", "running", "done", "failed",
                                     "cancelled"};

/* ---- run ---------------------------------------------------------- */

/* run(fn, ...) -> true, results... | false, err | "scope" (the CLI main
** chunk asked to run fn as a child scope, rule 11). */
static int l_run(lua_State *L) {
  corio_rt *rt = RT(L);
  if (rt->running) {
    if (rt->cli_root && rt->current == rt->root && rt->root != NULL) {
      lua_pushliteral(L, "scope");
      return 1;
    }
    luaL_where(L, 2);
    if (rt->current == NULL) {
      /* no task runs: the host called in between two corio_step calls
      ** of its run (was: "called inside a running task", which sent an
      ** embedder looking for a task that did not exist) */
      lua_pushliteral(L, "corio.run: called while a run of this runtime "
                         "is going on (from the host, between two of its "
                         "corio_step calls); runs do not nest");
    } else {
      lua_pushliteral(L, "corio.run: called inside a running task; use "
                         "corio.scope(fn) to run a group of tasks inside a "
                         "task, or corio.spawn(fn) to start one");
    }
    lua_concat(L, 2);
    return lua_error(L);
  }
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return corio__argerror(L, 2, 1, "run",
                           lua_pushfstring(L, "function expected, got %s",
                                           luaL_typename(L, 1)));
  return corio__run_root(rt, L, lua_gettop(L) - 1);
}

/* ---- spawn and tasks ---------------------------------------------- */

static int spawn_into(lua_State *L, corio_rt *rt, corio_scope *s, int first,
                      const char *fname, int level) {
  int t = lua_type(L, first);
  if (t != LUA_TFUNCTION) {
    if (!(t == LUA_TTABLE && luaL_getmetafield(L, first, "__call")))
      return corio__argerror(L, level, 1, fname,
                             lua_pushfstring(L, "function expected, got %s",
                                             luaL_typename(L, first)));
    /* a callable table: call its __call with the table first */
    lua_insert(L, first);
  }
  corio__spawn(rt, L, s, lua_gettop(L) - first, lua_upvalueindex(2));
  return 1;
}

static int l_spawn(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = rt->current;
  if (t == NULL)
    return luaL_error(L, "corio.spawn: no task is running (call it inside "
                      "corio.run, or use corio.run to start the first task)");
  return spawn_into(L, rt, t->cur, 1, "spawn", 1);
}

static int l_current(lua_State *L) {
  corio_rt *rt = RT(L);
  if (rt->current == NULL) return 0;
  corio__push_task(rt, L, rt->current);
  return 1;
}

/* task_thread() -> the running task's own thread (its body's, or that of
** its root defers), or nothing outside a task. init.lua's
** coroutine.running marks it, so that coroutine.resume refuses it. */
static int l_task_thread(lua_State *L) {
  corio_rt *rt = RT(L);
  if (rt->current == NULL) return 0;
  lua_pushthread(rt->current->co);
  lua_xmove(rt->current->co, L, 1);
  return 1;
}

static int l_task_status(lua_State *L) {
  corio_task *t = corio__check_task(L, 1);
  lua_pushstring(L, STATUS[t->status]);
  return 1;
}

static int l_task_cancel(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = corio__check_task(L, 1);
  corio__cancel_task(rt, t);
  return 0;
}

static int abort_join(corio_rt *rt, corio_task *t) {
  corio_task *target = t->wait_obj;
  corio_ring_remove(&corio__task_side_get(rt, target)->joiners, &t->u.wait);
  return 1;
}

/* The FFI fast path of task:join (init.lua), called from JIT-compiled
** code without a Lua call: for a task that ended with no result or one
** nil, boolean or number (kept in C), when the caller may go on at once
** (not cancelled, budget left), count the checkpoint and return 1 + the
** result's CORIO_R_* type with a number or boolean in *out. 0: take the
** slow path (l_task_join), which raises, suspends or yields as needed.
** It touches no Lua state, as FFI-called functions must not. */
static int ffi_join(corio_rt *rt, void *p, double *out) {
  corio_task *t = p, *me;
  if (t == NULL || t->magic != CORIO_MAGIC_TASK) return 0;
  if (t->state != CORIO_ST_ENDED || t->status != CORIO_DONE ||
      t->rtype > CORIO_R_NUM)
    return 0;
  if ((me = corio__ffi_task(rt)) == NULL) return 0;
  corio__ffi_done(rt, me);
  *out = t->rnum;
  return 1 + t->rtype;
}

/* join(task) -> true, results... | false, err */
static int l_task_join(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = corio__check_task(L, 1), *me;
  int n = corio__enter(L, rt, &me, "join");
  if (n != CORIO_GO) return n;
  if (t->state == CORIO_ST_ENDED) {
    n = corio__task_push_results(rt, L, t, 1);
    return corio__fast(rt, L, me, n);
  }
  if (t == me) {
    luaL_where(L, 2);
    lua_pushliteral(L, "task:join(): a task cannot join itself");
    lua_concat(L, 2);
    return lua_error(L);
  }
  {
    /* A task that me runs inside (an ancestor, e.g. the caller of
    ** corio.gather({corio.current()}), whose child joins it) ends only
    ** after me: the join would wait forever (a deadlock, or a hang while
    ** anything else keeps the loop alive). Only when about to wait. */
    corio_scope *s;
    for (s = me->cur; s != NULL; s = s->parent)
      if (corio__scope_owner(s) == t) {
        luaL_where(L, 2);
        lua_pushliteral(L, "task:join(): a task cannot join a task it runs "
                        "inside (that task ends only after this one)");
        lua_concat(L, 2);
        return lua_error(L);
      }
  }
  corio_ring_push(&corio__task_side(rt, t)->joiners, &me->u.wait);
  return corio__suspend(rt, L, me, abort_join, "join", t);
}

static int l_task_index(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = corio__check_task(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k != NULL) {
    if (strcmp(k, "name") == 0) {
      corio__task_name_at(rt, L, t, 1);
      return 1;
    }
    if (strcmp(k, "id") == 0) {
      lua_pushinteger(L, (lua_Integer)t->id);
      return 1;
    }
  }
  return corio__method(L);
}

static int l_task_newindex(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = corio__check_task(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k == NULL || strcmp(k, "name") != 0)
    return luaL_error(L, "task: field '%s' cannot be set (only 'name')",
                      k ? k : luaL_typename(L, 2));
  if (!lua_isstring(L, 3))
    return luaL_error(L, "task: field 'name' must be a string, got %s",
                      luaL_typename(L, 3));
  lua_settop(L, 3);
  lua_tolstring(L, 3, NULL);   /* a number is kept as its string: the
                               ** name is a string, as documented */
  corio__task_set_name(rt, L, t, 1);
  return 0;
}

static int l_task_tostring(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = corio__check_task(L, 1);
  corio__task_name_at(rt, L, t, 1);
  corio__name_shown(L);   /* one line, whatever the name holds */
  lua_pushfstring(L, "corio.Task(%s, %s)", lua_tostring(L, -1),
                  STATUS[t->status]);
  return 1;
}

/* ---- sleep, yield, clock ------------------------------------------ */

static int abort_sleep(corio_rt *rt, corio_task *t) {
  corio__timer_stop(rt, &t->u.sleep);
  return 1;
}

static int l_sleep(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  double s = corio__checkseconds(L, 2, 1, 1, "sleep");
  /* sleep(0) is a zero-wait checkpoint, as yield: it fires the deadlines
  ** that have passed first; a longer sleep blocks, and the loop fires
  ** them (firing other tasks' timers here would split the batch of
  ** sleepers due together). */
  int n = s == 0 ? corio__enter_now(L, rt, &t, "sleep")
                 : corio__enter(L, rt, &t, "sleep");
  if (n != CORIO_GO) return n;
  if (s == 0) {
    if (!corio__can_suspend(rt, L))
      return corio__cannot_suspend(L, "corio.sleep");
    lua_pushboolean(L, 1);
    corio__ready(rt, t, NULL);
    t->budget = CORIO_BUDGET;
    t->wait_L = L;
    return lua_yield(L, 1);
  }
  if (s < 1e9) {
    uint64_t when = corio__base(rt, t) + (uint64_t)(s * 1e9);
    t->u.sleep.kind = CORIO_TIMER_SLEEP;
    if (corio__timer_start(rt, &t->u.sleep, when) != 0)
      return luaL_error(L, "corio.sleep: out of memory");
    return corio__suspend(rt, L, t, abort_sleep, "sleep", NULL);
  }
  return corio__suspend(rt, L, t, abort_sleep, "sleep (forever)", NULL);
}

/* A sleep on the real clock with a libuv timer of its own, immune to the
** virtual clock: for watchdogs such as the per-test timeout of busted
** specs that run under autojump. */
typedef struct real_sleep {
  uv_timer_t h;
  corio_task *t;  /* the sleeper, NULL once woken or aborted */
  corio_rt *rt;
} real_sleep;

static void real_sleep_free(uv_handle_t *h) { free(h); }

static void real_sleep_done(uv_timer_t *h) {
  real_sleep *r = (real_sleep *)h;
  corio_task *t = r->t;
  r->t = NULL;
  r->rt->nexternal--;
  r->rt->nrealsleep--;
  uv_close((uv_handle_t *)h, real_sleep_free);
  t->abort = NULL;
  corio__ready(r->rt, t, corio__deliver_true);
}

static int abort_real_sleep(corio_rt *rt, corio_task *t) {
  real_sleep *r = t->wait_obj;
  if (r != NULL && r->t == t) {
    r->t = NULL;
    rt->nexternal--;
    rt->nrealsleep--;
    uv_timer_stop(&r->h);
    uv_close((uv_handle_t *)&r->h, real_sleep_free);
  }
  return 1;
}

static int l_sleep_real(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  real_sleep *r;
  double s = corio__checkseconds(L, 2, 1, 1, "sleep_real");
  /* whole ms, rounded up; math.huge and other sleeps past what a uint64
  ** holds (a cast would be undefined, 0 on x86) become the longest */
  double msd = s * 1000 + 0.999;
  uint64_t ms = msd < 1.8e19 ? (uint64_t)msd : UINT64_MAX;
  int n = corio__enter(L, rt, &t, "sleep_real");
  if (n != CORIO_GO) return n;
  r = malloc(sizeof(*r));
  if (r == NULL) return luaL_error(L, "corio.sleep_real: out of memory");
  if (uv_timer_init(rt->loop, &r->h) != 0) {
    free(r);
    return luaL_error(L, "corio.sleep_real: cannot create a timer");
  }
  r->t = t;
  r->rt = rt;
  /* libuv counts from its cached loop time, which is stale after work
  ** done outside the loop: refresh it so the sleep is not cut short. */
  uv_update_time(rt->loop);
  if (uv_timer_start(&r->h, real_sleep_done, ms, 0) != 0) {
    uv_close((uv_handle_t *)&r->h, real_sleep_free);
    return luaL_error(L, "corio.sleep_real: cannot start a timer");
  }
  rt->nexternal++;
  rt->nrealsleep++;
  return corio__suspend(rt, L, t, abort_real_sleep, "sleep (real clock)", r);
}

/* yield(): to the back of the ready queue. This one is the public
** function itself, with no Lua wrapper: its only error, Cancelled, is
** raised on entry (on the task's own stack), and a task that yielded is
** ready, never woken with an error. Outside a loop it does nothing. */
static int l_yield(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  int n;
  /* Any arguments stay on the stack: lua_yield passes none of them (only
  ** its nresults top values), and the errors below are raised from the
  ** top. Clearing them cost a lua_settop on every yield. */
  n = corio__enter_now(L, rt, &t, "yield");
  if (n != CORIO_GO) {
    /* yielded with false, Cancelled: init.lua's corio.yield raises it */
    if (n < 0) return n;
    if (lua_touserdata(L, -1) == CORIO_NOLOOP) return 0;
    return lua_error(L);   /* the Cancelled on top */
  }
  if (!corio__can_suspend(rt, L))
    return corio__cannot_suspend(L, "corio.yield");
  corio__ready(rt, t, NULL);
  t->budget = CORIO_BUDGET;
  t->wait_L = L;
  return lua_yield(L, 0);
}

/* checkpoint() -> true | false, Cancelled: rule 3 for calls built in
** Lua (gather, map, first). */
static int l_checkpoint(lua_State *L) {
  corio_task *t;
  int n = corio__enter_now(L, RT(L), &t, "checkpoint");
  if (n != CORIO_GO) return n;
  lua_pushboolean(L, 1);
  return 1;
}

/* checkpoint_fast() -> true | false, Cancelled: a checkpoint that counts
** as a fast-path completion against the task's budget (rule 15), for a
** Lua-built call that had nothing to wait for (gather or map of an empty
** list): a loop over batches that are often empty would otherwise never
** let the task that fills them run. */
static int l_checkpoint_fast(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  int n = corio__enter_now(L, rt, &t, "checkpoint");
  if (n != CORIO_GO) return n;
  lua_pushboolean(L, 1);
  return corio__fast(rt, L, t, 1);
}

/* corio.now: reads the clock. It ends the discount of the running task
** and its spawn burst (see corio__base): a task spawned after the read
** counts from a burst that began after it. */
static double now_secs(corio_rt *rt) {
  if (rt->current != NULL) rt->current->fresh = 0;
  rt->burst_last = 0;
  return (double)corio__now(rt) / 1e9;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, now_secs(RT(L)));
  return 1;
}

/* corio.now through the FFI (init.lua). */
static double ffi_now(corio_rt *rt) { return now_secs(rt); }

/* The entry check of a call that needs no wait and is not counted against
** the budget (http.lua: a stream read of bytes it already holds), through
** the FFI: 1 if the running task goes on (not cancelled, no deadline
** near; the checkpoint counted), else 0 and the caller takes
** core.checkpoint, which raises or catches up. A Lua C function call for
** every line of an iter_lines loop made such a loop ~25% slower (~35 ns a
** line); this one JIT-compiles to a call and two loads. */
static int ffi_check(corio_rt *rt) {
  corio_task *me = rt->current;
  if (me == NULL || me->cur->eff) return 0;
  if (rt->nheap != 0 && corio__deadline_near(rt)) return 0;
  corio__checkpoint(rt, me);
  return 1;
}

/* ---- scopes ------------------------------------------------------- */

static corio_xscope *check_scope(lua_State *L, int idx) {
  return CORIO_CHECK(L, idx, corio_xscope, CORIO_MAGIC_SCOPE, "corio.Scope");
}

/* enter(kind [, seconds]) -> Scope | nothing (no task is running: init.lua
** runs the call under corio.run, rule 11). kind: 1 group, 2 timeout,
** 3 move_on, 4 shield, 5 a body of its own (a group whose scope object
** init.lua keeps to itself: gather.lua's own_body). Not a checkpoint.
** Only a group's object reaches the user's code (its body gets it); the
** others come from rt->scope_pool when ffi_scope_leave put one there. */
#define SCOPE_KIND_BODY 5
static int l_scope_enter(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = rt->current;
  int kind = (int)lua_tointeger(L, 1), exposed = kind == CORIO_SCOPE_GROUP;
  corio_xscope *x;
  double secs = -1;
  int ref;
  /* seconds are checked before the no-task return: outside a loop the
  ** call runs under corio.run, where a bad value was raised inside the
  ** root task and came back wrapped in kind "error" (rule 10), not as
  ** the plain bad argument string raised inside a task */
  if (kind == CORIO_SCOPE_TIMEOUT || kind == CORIO_SCOPE_MOVE_ON) {
    if (lua_type(L, 2) != LUA_TNUMBER || !((secs = lua_tonumber(L, 2)) >= 0))
      secs = corio__checkseconds(L, 2, 2, 1,
                                 kind == CORIO_SCOPE_TIMEOUT ? "timeout"
                                                             : "move_on_after");
    if (secs == 0) secs = 0;  /* -0: "the deadline of -0 s passed" */
  }
  if (t == NULL) return 0;
  if (kind == SCOPE_KIND_BODY) kind = CORIO_SCOPE_GROUP;
  /* upvalue 2: the runtime's refs table (rt->refs); 3: the metatable */
  if (!exposed && rt->nscope_pool > 0) {
    x = rt->scope_pool[--rt->nscope_pool];
    ref = x->ref;
    lua_rawgeti(L, lua_upvalueindex(2), ref);
  } else {
    x = (corio_xscope *)lua_newuserdata(L, sizeof(*x));
    lua_pushvalue(L, lua_upvalueindex(3));
    lua_setmetatable(L, -2);
    if (rt->nscope_refs > 0) {
      /* a slot still pinning a scope left through the FFI */
      ref = rt->scope_refs[--rt->nscope_refs];
      lua_pushvalue(L, -1);
      lua_rawseti(L, lua_upvalueindex(2), ref);
    } else {
      lua_pushvalue(L, -1);
      ref = corio__ref(rt, L);
    }
  }
  memset(x, 0, sizeof(*x));
  x->magic = CORIO_MAGIC_SCOPE;
  x->ref = ref;
  x->exposed = (uint8_t)exposed;
  x->body = lua_tointeger(L, 1) == SCOPE_KIND_BODY;
  corio_list_init(&x->parked);
  corio__scope_init(&x->s, kind, t, t->cur);
  x->deadline.idx = UINT32_MAX;
  x->deadline.kind = CORIO_TIMER_DEADLINE;
  x->seconds = secs;
  x->L = L;
  corio__scope_enter(rt, t, &x->s);
  if (L != t->co) {
    x->s.foreign = 1;
    corio__foreign_add(rt, 1);
  }
  if (secs >= 0) {
    if (secs == 0) {
      /* Rule 6: a deadline already passed lets the body run to its first
      ** checkpoint, where Cancelled is raised. */
      x->s.fired = 1;
      corio__scope_cancel(rt, &x->s);
    } else if (secs < 1e9) {
      if (corio__timer_start(rt, &x->deadline,
                             corio__base(rt, t) + (uint64_t)(secs * 1e9)) != 0)
        return luaL_error(L, "corio: out of memory");
    }
  }
  return 1;
}

/* The common exit of a scope, through the FFI (init.lua calls it when the
** body returned): the scope is the running task's innermost, entered by
** the task's own thread, not cancelled, and has no tasks, deferred
** functions or errors, so scope_wait, scope_defers and scope_leave would
** each find nothing to do and leave it with code 0. Then it is left here
** and 1 or 2 returned; otherwise 0 and nothing changed (init.lua's finish
** goes the long way). No Lua state is touched: a body scope (M._body)
** that no code outside init.lua saw returns 2 and goes to init.lua's pool
** (ffi_body_enter takes it from there); another scope of that kind goes
** to rt->scope_pool, pinned, for the next enter; a group's ref goes to
** rt->scope_refs, for the next enter to take over the slot. While a debug
** hook is set, scopes are left the long way, so that the hook sees the
** call (lua_gethookmask only reads the global state). */
static int ffi_scope_leave(corio_rt *rt, corio_xscope *x) {
  corio_task *t = rt->current;
  int r = 1;
  if (x == NULL || x->magic != CORIO_MAGIC_SCOPE || t == NULL ||
      t->cur != &x->s || x->owner != t)
    return 0;
  if (x->s.eff || x->s.foreign || x->s.closed || x->s.nchildren != 0 ||
      x->defers != LUA_NOREF || x->errs != LUA_NOREF ||
      x->ref == LUA_NOREF || lua_gethookmask(rt->L) != 0)
    return 0;
  if (!x->exposed && x->body && rt->nbody_pool < CORIO_SCOPE_POOL) {
    x->pooled = 1;
    rt->nbody_pool++;
    r = 2;
  } else if (!x->exposed && rt->nscope_pool < CORIO_SCOPE_POOL) {
    rt->scope_pool[rt->nscope_pool++] = x;
  } else if (rt->nscope_refs < CORIO_SCOPE_POOL) {
    rt->scope_refs[rt->nscope_refs++] = x->ref;
    x->ref = LUA_NOREF;
  } else {
    return 0;
  }
  corio__timer_stop(rt, &x->deadline);
  t->cur = x->s.parent;
  t->cur->inner = NULL;
  x->s.closed = 1;
  return r;
}

/* Enter body scope x, from init.lua's pool, through the FFI: 1, or 0 and
** nothing changed (init.lua then calls scope_enter). The caller runs on
** the running task's own thread (gather.lua's own_body is called by the
** task's function itself), which scope_enter would find for L. While a
** debug hook is set, scope_enter is called instead, as ffi_scope_leave
** leaves the long way then. */
static int ffi_body_enter(corio_rt *rt, corio_xscope *x) {
  corio_task *t = rt->current;
  int ref;
  if (t == NULL || x == NULL || x->magic != CORIO_MAGIC_SCOPE || !x->pooled ||
      x->exposed || t->in_defers || lua_gethookmask(rt->L) != 0)
    return 0;
  rt->nbody_pool--;
  ref = x->ref;
  memset(x, 0, sizeof(*x));
  x->magic = CORIO_MAGIC_SCOPE;
  x->ref = ref;
  x->body = 1;
  corio_list_init(&x->parked);
  corio__scope_init(&x->s, CORIO_SCOPE_GROUP, t, t->cur);
  x->deadline.idx = UINT32_MAX;
  x->deadline.kind = CORIO_TIMER_DEADLINE;
  x->seconds = -1;
  x->L = t->co;
  corio__scope_enter(rt, t, &x->s);
  return 1;
}

/* fail(scope, err): the body raised err: record it (unless Cancelled) and
** cancel the scope so its children stop (rule 2). */
static int l_scope_fail(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  lua_settop(L, 2);
  /* A Cancelled in a cancelled scope is the cancellation itself; one in
  ** a scope nobody cancelled (e.g. from joining a cancelled task) is an
  ** error like any other. */
  if (corio__is_error(L, 2, "cancelled") && x->s.eff) return 0;
  corio__scope_add_error(rt, L, &x->s, 2);
  corio__scope_cancel(rt, &x->s);
  return 0;
}

/* wait(scope) -> true [, true]: block until the scope's children ended
** (see below for the second value). Not a
** checkpoint and not cancellable: cancelling the scope cancels the
** children. -> false, message where the task cannot suspend: the children
** are cancelled and left to the enclosing scope (corio__scope_hand_over). */
static int l_scope_wait(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  corio_task *t = rt->current;
  if (t != NULL && t->cur != &x->s && x->owner == t && !x->s.closed &&
      lua_isnoneornil(L, 2)) {
    /* nil: scopes entered inside x are still open (left so by a coroutine
    ** no wrapper of init.lua resumed, or whose exit raised): init.lua
    ** closes them (running their deferred functions), then asks again
    ** with true as the second argument */
    lua_pushnil(L);
    return 1;
  }
  if (x->s.nchildren == 0) {
    /* true, true: nothing to wait for (a wait that suspended returns
    ** just true: tasks may have been spawned into the scope before its
    ** owner ran again, so init.lua asks again) */
    lua_pushboolean(L, 1);
    lua_pushboolean(L, 1);
    return 2;
  }
  if (t != x->owner) {
    /* A coroutine that yielded inside the body was resumed by another
    ** task: that one cannot wait in the owner's stead (the children's
    ** end wakes the owner). As below: cancel them, hand them on. */
    corio__scope_hand_over(rt, &x->s, x->s.parent, 1);
    lua_pushboolean(L, 0);
    corio__push_error(L, "error", "a scope entered by one task was left "
                      "by another (a coroutine that yielded inside the "
                      "scope's body was resumed by another task): its "
                      "tasks were cancelled");
    return 2;
  }
  if (!corio__can_suspend(rt, L)) {
    /* inside a C call: cancel the children, and let the enclosing scope
    ** wait for them, so this one can be left */
    corio__scope_hand_over(rt, &x->s, x->s.parent, 1);
    lua_pushboolean(L, 0);
    corio__push_cannot_suspend(L, "a scope (waiting for its tasks)");
    return 2;
  }
  x->s.waiting = 1;
  return corio__suspend(rt, L, t, NULL, "scope (waiting for its tasks)", x);
}

/* defers(scope) -> table | nil: take the scope's deferred functions. */
static int l_scope_defers(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  if (x->defers == LUA_NOREF) return 0;
  corio__getref(rt, L, x->defers);
  corio__unref(rt, L, x->defers);
  x->defers = LUA_NOREF;
  return 1;
}

/* Scopes entered inside x that are still open when x is left. Those
** entered on the same coroutine are dead: their exit raised before it
** left them (e.g. a stack overflow in the exit itself). One entered on
** another coroutine was left open by a coroutine that yielded out of its
** body (and was abandoned, or resumed inside a scope entered after it).
** Close them all, as the task's end would (task.c unwind_scopes), so that
** x is left in order and no scope of the task outlives its parent.
** Returns how many were entered on another coroutine (an error of the
** user's code, which the caller raises). */
static int close_inner(corio_rt *rt, lua_State *L, corio_task *t,
                       corio_xscope *x) {
  corio_scope *c;
  int foreign = 0;
  for (c = t->cur; c != &x->s; c = c->parent)
    if (c == &t->root) return 0;   /* x is not in the task's chain */
  while (t->cur != &x->s) {
    corio_xscope *d = corio_container_of(t->cur, corio_xscope, s);
    if (d->L != L) foreign++;
    corio__scope_hand_over(rt, &d->s, &t->root, 0);
    corio__timer_stop(rt, &d->deadline);
    corio__scope_leave(rt, t, &d->s);
    corio__unref(rt, L, d->ref);
    d->ref = LUA_NOREF;
    /* A last resort (init.lua's close_open finishes such scopes, defers
    ** and all, before x is left; this runs only if that failed): what
    ** they still hold is dropped, not kept pinned until the runtime
    ** closes. */
    if (d->defers != LUA_NOREF) corio__unref(rt, L, d->defers);
    if (d->errs != LUA_NOREF) corio__unref(rt, L, d->errs);
    d->defers = d->errs = LUA_NOREF;
  }
  return foreign;
}

/* ---- scopes left open by user coroutines (rule 13) ----------------
** A user coroutine that yields out of a scope body (a generator) takes the
** scopes it entered with it: init.lua's coroutine.resume/wrap note the
** running task's innermost scope (scope_cur) before resuming it, and when
** it yields or returns with scopes still open above that one, detach them
** (scope_detach) so that they govern only the coroutine, not the code that
** resumed it; resuming the coroutine again puts them back on top of the
** resumer's innermost scope (scope_attach). A chain nobody resumes is
** closed, its deferred functions run, when the scope it was detached from
** ends (init.lua registers that with defer). */

/* scope_cur() -> token of the running task's innermost scope | nothing */
static int l_scope_cur(lua_State *L) {
  corio_task *t = RT(L)->current;
  if (t == NULL) return 0;
  lua_pushlightuserdata(L, t->cur);
  return 1;
}

/* scope_foreign_base() -> token | nothing: the innermost scope of the
** running task's chain that no user coroutine entered (init.lua's
** wrappers take it as the scope current before a resume that began while
** no such scope was open anywhere, rt->nforeign == 0). */
static int l_scope_foreign_base(lua_State *L) {
  corio_task *t = RT(L)->current;
  corio_scope *c;
  if (t == NULL) return 0;
  for (c = t->cur; c != &t->root && c->foreign; c = c->parent) {}
  lua_pushlightuserdata(L, c);
  return 1;
}

/* scope_detach(token) -> top, bottom | nothing: take the scopes open above
** the scope token names off the running task's chain; that scope is the
** innermost again. */
static int l_scope_detach(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = rt->current;
  corio_scope *base = (corio_scope *)lua_touserdata(L, 1), *c;
  if (t == NULL || base == NULL || t->cur == base) return 0;
  for (c = t->cur; c != &t->root && c->parent != base; c = c->parent) {}
  if (c == &t->root) return 0;   /* base is not below: nothing of ours */
  /* init.lua keeps them (parked chains): never reused */
  corio_container_of(t->cur, corio_xscope, s)->exposed = 1;
  corio_container_of(c, corio_xscope, s)->exposed = 1;
  corio__getref(rt, L, corio_container_of(t->cur, corio_xscope, s)->ref);
  corio__getref(rt, L, corio_container_of(c, corio_xscope, s)->ref);
  base->inner = NULL;
  t->cur = base;
  corio_list_push(&rt->parked, &corio_container_of(c, corio_xscope, s)->parked);
  return 2;
}

/* scope_attach(top, bottom) -> true | false (closed meanwhile): put a
** detached chain back on top of the running task's innermost scope. */
static int l_scope_attach(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *top = check_scope(L, 1), *bottom = check_scope(L, 2);
  corio_task *t = rt->current;
  int ok = t != NULL && !top->s.closed && !bottom->s.closed;
  corio_list_remove(&bottom->parked);
  if (ok) corio__scope_reattach(rt, t, &bottom->s, &top->s);
  lua_pushboolean(L, ok);
  return 1;
}

/* scope_top(token | scope) -> scope, kind, foreign | nothing: the running
** task's innermost scope if it is open above the one given; foreign: it
** was entered by another coroutine than the caller. */
static int l_scope_top(lua_State *L) {
  corio_task *t = RT(L)->current;
  corio_scope *base, *c;
  corio_xscope *top;
  if (lua_type(L, 1) == LUA_TUSERDATA) base = &check_scope(L, 1)->s;
  else base = (corio_scope *)lua_touserdata(L, 1);
  if (t == NULL || t->cur == base || t->cur == &t->root) return 0;
  for (c = t->cur; c != &t->root && c != base; c = c->parent) {}
  if (c != base) return 0;
  top = corio_container_of(t->cur, corio_xscope, s);
  top->exposed = 1;   /* init.lua's close_open keeps it: never reused */
  corio__getref(RT(L), L, top->ref);
  lua_pushinteger(L, t->cur->kind);
  lua_pushboolean(L, top->L != L);
  return 3;
}

/* leave(scope, ok, err) -> 0 | 1 (absorbed) | 2, err (raise) */
static int l_scope_leave(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  /* The scope is in its owner's chain, also when another task runs the
  ** coroutine that leaves it; once closed (the owner ended), in none. */
  corio_task *t = x->s.closed ? NULL : x->owner;
  int ok = lua_toboolean(L, 2);
  lua_settop(L, 3);
  corio__timer_stop(rt, &x->deadline);
  corio_list_remove(&x->parked);
  if (t != NULL) {
    int foreign = t->cur != &x->s ? close_inner(rt, L, t, x) : 0;
    foreign += corio__scope_leave(rt, t, &x->s);
    if (foreign) {
      corio__push_error(L, "error", "a scope was left while a scope "
                        "entered inside it by another coroutine was still "
                        "open (a coroutine yielded out of a scope body, "
                        "then was abandoned or resumed inside a later "
                        "scope); the inner scope was closed");
      corio__scope_add_error(rt, L, &x->s, -1);
      lua_pop(L, 1);
    }
  }
  x->s.closed = 1;
  corio__unref(rt, L, x->ref);
  x->ref = LUA_NOREF;
  if (x->errs != LUA_NOREF) {
    int n, i;
    corio__getref(rt, L, x->errs);
    corio__unref(rt, L, x->errs);
    x->errs = LUA_NOREF;
    n = (int)lua_objlen(L, -1);
    if (n > 1) {
      /* Several errors: each becomes an error object so the first can
      ** carry the list (rule 2). */
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (!corio__is_error(L, -1, NULL)) {
          /* a deferred function's error was noted where it was raised,
          ** on this thread (init.lua's run_scope_defers) */
          corio__wrap_error(rt, L, L, NULL);
          lua_rawseti(L, -2, i);
        } else {
          lua_pop(L, 1);
        }
      }
    }
    lua_pushinteger(L, 2);
    lua_rawgeti(L, -2, 1);
    if (corio__is_error(L, -1, NULL)) {
      lua_pushvalue(L, -3);
      lua_setfield(L, -2, "errors");
    }
    return 2;
  }
  if (ok && x->s.child_cancelled && x->s.eff) {
    /* The body returned, but a cancel cut children short: if it is this
    ** scope's own (its deadline), the cancellation is caught here;
    ** otherwise it goes on outwards, so code after the scope does not
    ** run as if the children had finished. */
    if (corio__scope_absorbs(&x->s)) {
      x->s.caught = 1;
      lua_pushinteger(L, 1);
      return 1;
    }
    lua_pushinteger(L, 2);
    corio__push_cancelled(L, L, "a task of the scope was cancelled");
    return 2;
  }
  if (!ok) {
    if (corio__is_error(L, 3, "cancelled") && corio__scope_absorbs(&x->s)) {
      x->s.caught = 1;
      lua_pushinteger(L, 1);
      return 1;
    }
    lua_pushinteger(L, 2);
    lua_pushvalue(L, 3);
    return 2;
  }
  lua_pushinteger(L, 0);
  return 1;
}

static int l_scope_spawn(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  if (x->s.closed)
    return luaL_error(L, "scope:spawn(): the scope has returned and takes "
                      "no new tasks");
  if (!rt->running)
    return luaL_error(L, "scope:spawn(): the loop is not running");
  return spawn_into(L, rt, &x->s, 2, "spawn", 1);
}

static int l_scope_cancel(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  if (!x->s.closed) corio__scope_cancel(rt, &x->s);
  else x->s.cancelled = 1;
  return 0;
}

static int l_scope_index(lua_State *L) {
  corio_xscope *x = check_scope(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "cancelled") == 0) {
    lua_pushboolean(L, x->s.cancelled);
    return 1;
  }
  if (k != NULL && strcmp(k, "cancel_caught") == 0) {
    lua_pushboolean(L, x->s.caught);
    return 1;
  }
  if (k != NULL && strcmp(k, "deadline_fired") == 0) {
    lua_pushboolean(L, x->s.fired);
    return 1;
  }
  if (k != NULL && strcmp(k, "timeout") == 0) {
    if (x->seconds < 0) return 0;
    lua_pushnumber(L, x->seconds);
    return 1;
  }
  return corio__method(L);
}

static int l_scope_tostring(lua_State *L) {
  corio_xscope *x = check_scope(L, 1);
  static const char *const kinds[] = {"task", "scope", "timeout",
                                      "move_on_after", "shield"};
  lua_pushfstring(L, "corio.Scope(%s%s%s)", kinds[x->s.kind],
                  x->s.cancelled ? ", cancelled" : "",
                  x->s.closed ? ", returned" : "");
  return 1;
}

/* defer(fn): run fn when the innermost body ends (see init.lua). */
static int l_defer(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = rt->current;
  corio_scope *s;
  int *d;
  if (t == NULL) return luaL_error(L, "corio.defer: no task is running");
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return corio__argerror(L, 1, 1, "defer",
                           lua_pushfstring(L, "function expected, got %s",
                                           luaL_typename(L, 1)));
  s = t->cur;
  d = corio__scope_defers(rt, s);   /* stays put */
  if (*d == LUA_NOREF) {
    lua_createtable(L, 2, 0);
    *d = corio__ref(rt, L);
  }
  corio__getref(rt, L, *d);
  lua_pushvalue(L, 1);
  lua_rawseti(L, -2, (int)lua_objlen(L, -2) + 1);
  return 0;
}

/* task_fail(err): a deferred function of the running task's body raised. */
static int l_task_fail(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = rt->current;
  lua_settop(L, 1);
  if (t == NULL) return 0;
  if (corio__is_error(L, 1, "cancelled")) {
    corio_tside *sd = corio__task_side_get(rt, t);
    if (sd == NULL || sd->errs == LUA_NOREF) t->root.caught = 1;
    return 0;
  }
  corio__wrap_error(rt, L, L, t);  /* noted where it was raised */
  corio__scope_add_error(rt, L, &t->root, 1);
  return 0;
}

/* ---- introspection ------------------------------------------------ */

typedef struct tasks_ctx { corio_rt *rt; lua_State *L; int n; } tasks_ctx;

static void add_task(corio_task *t, void *ud) {
  tasks_ctx *c = ud;
  lua_State *L = c->L;
  char where[256];
  lua_createtable(L, 0, 8);
  corio__task_name(c->rt, L, t);
  lua_setfield(L, -2, "name");
  lua_pushinteger(L, (lua_Integer)t->id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, STATUS[t->status]);
  lua_setfield(L, -2, "status");
  corio__push_task(c->rt, L, t);
  lua_setfield(L, -2, "task");
  if (t->root.parent != NULL) {
    corio__push_task(c->rt, L, corio__scope_owner(t->root.parent));
    lua_setfield(L, -2, "parent_task");
    corio__task_name(c->rt, L, corio__scope_owner(t->root.parent));
    lua_setfield(L, -2, "parent");
  }
  if (t->state == CORIO_ST_BLOCKED) {
    if (t->wait_what != NULL) {
      lua_pushstring(L, t->wait_what);
      lua_setfield(L, -2, "waiting");
    }
  } else if (t->state == CORIO_ST_ENDING) {
    /* its body returned; it waits for its tasks (the deadlock error names
    ** it the same way): without this it looked like a task doing nothing */
    lua_pushliteral(L, "its tasks");
    lua_setfield(L, -2, "waiting");
  }
  if (t != c->rt->current && t->status == CORIO_RUNNING &&
      corio__where(c->rt, t, where, sizeof(where))) {
    lua_pushstring(L, where);
    lua_setfield(L, -2, "where");
  }
  if (t->site != 0) {
    const corio_site *site = corio__task_site(c->rt, t);
    lua_pushfstring(L, "%s:%d", corio__src_shown(site->src), site->line);
    lua_setfield(L, -2, "spawned_at");
  }
  lua_rawseti(L, -2, ++c->n);
}

static int l_tasks(lua_State *L) {
  tasks_ctx c;
  c.rt = RT(L);
  c.L = L;
  c.n = 0;
  lua_newtable(L);
  corio__walk_tasks(c.rt, add_task, &c);
  return 1;
}

/* run_check() -> true when corio.run should run fn as a child scope of
** the CLI's root task (rule 11's exception). */
static int l_run_check(lua_State *L) {
  corio_rt *rt = RT(L);
  lua_pushboolean(L, rt->running && rt->cli_root && rt->root != NULL &&
                         rt->current == rt->root);
  return 1;
}

/* run_nested(scope): scope is the one the CLI main chunk's corio.run
** runs fn in; a deadlock while it is open cancels it instead of the root
** (loop.c deadlock), and run_nested_end tells. */
static int l_run_nested(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_xscope *x = check_scope(L, 1);
  lua_settop(L, 1);
  if (rt->nested_ref != LUA_NOREF) corio__unref(rt, L, rt->nested_ref);
  rt->nested_ref = corio__ref(rt, L);
  rt->nested_run = &x->s;
  rt->nested_deadlock = 0;
  return 0;
}

/* run_nested_end() -> the deadlock error | nothing: the main chunk's
** corio.run returned; raise this instead if a deadlock cancelled it. */
static int l_run_nested_end(lua_State *L) {
  corio_rt *rt = RT(L);
  int dl = rt->nested_deadlock;
  if (rt->nested_ref != LUA_NOREF) corio__unref(rt, L, rt->nested_ref);
  rt->nested_ref = LUA_NOREF;
  rt->nested_run = NULL;
  rt->nested_deadlock = 0;
  if (!dl) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.deadlock");
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "corio.deadlock");
  return 1;
}

/* metatable(name) -> a corio metatable, so that init.lua can give it a
** Lua __index (LuaJIT runs those far faster than a C one). */
static int l_metatable(lua_State *L) {
  luaL_getmetatable(L, luaL_checkstring(L, 1));
  return 1;
}

/* methods(name) -> the methods table of a corio metatable, so that
** init.lua can wrap blocking methods. */
static int l_methods(lua_State *L) {
  luaL_getmetatable(L, luaL_checkstring(L, 1));
  if (lua_isnil(L, -1)) return 1;
  lua_getfield(L, -1, "methods");
  return 1;
}

/* debug_mode() -> boolean: --debug / CORIO_DEBUG is on */
static int l_debug_mode(lua_State *L) {
  lua_pushboolean(L, RT(L)->debug);
  return 1;
}

static int l_in_task(lua_State *L) {
  lua_pushboolean(L, RT(L)->current != NULL);
  return 1;
}

/* own_yield() -> boolean: was the yield that just came out of a user
** coroutine inside the running task a corio suspension (rule 13)? */
static int l_own_yield(lua_State *L) {
  corio_task *t = RT(L)->current;
  lua_pushboolean(L, t != NULL && CORIO_OWN_YIELD(t));
  return 1;
}

static int l_running(lua_State *L) {
  lua_pushboolean(L, RT(L)->running);
  return 1;
}

/* register_own(source): mark a chunk as corio's own, so that tracebacks'
** "where" and spawn sites skip its frames. */
static int l_register_own(lua_State *L) {
  corio__add_own_src(RT(L), luaL_checkstring(L, 1));
  return 0;
}

/* ---- testing hooks ------------------------------------------------ */

/* vclock(on): switch the virtual clock with autojump on or off. */
static int l_vclock(lua_State *L) {
  corio_rt *rt = RT(L);
  int on = lua_toboolean(L, 1);
  if (lua_isnone(L, 1)) {
    lua_pushboolean(L, rt->vclock > 0);
    return 1;
  }
  /* vclock counts the autojump bodies running (in any task): the clock
  ** is the runtime's, on while any of them runs (corio.testing). */
  if (on) {
    if (rt->vclock == 0) {
      /* The virtual clock starts at the real clock's time, so armed
      ** deadlines keep their remaining time. */
      rt->vnow = corio__now(rt);
    }
    rt->vclock++;
  } else if (rt->vclock > 0 && --rt->vclock == 0) {
    /* The real clock goes on from the virtual time reached, never back
    ** from it: corio.now() is monotonic (SPEC §1), and the clock used to
    ** fall back by all the time the body had jumped. So deadlines keep
    ** what is left of them, now counted in real time. */
    uint64_t real = uv_hrtime() + rt->clock_off;
    if (rt->vnow > real) rt->clock_off += rt->vnow - real;
    corio__timers_rebase(rt, rt->vnow, corio__now(rt));
    rt->armed_when = 0;
  }
  lua_pushboolean(L, rt->vclock > 0);
  return 1;
}

static int abort_idle(corio_rt *rt, corio_task *t) {
  corio_list_remove(&t->u.wait);
  rt->nidle--;
  return 1;
}

/* idle(): block until every other task is blocked. */
static int l_idle(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  int n = corio__enter(L, rt, &t, "wait_all_tasks_blocked");
  if (n != CORIO_GO) return n;
  corio_list_push(&rt->idle_waiters, &t->u.wait);
  rt->nidle++;
  return corio__suspend(rt, L, t, abort_idle, "wait_all_tasks_blocked", NULL);
}

/* pending_work() -> the operations that wake tasks from outside still
** pending (to_thread workers, fs and HTTP requests, host ops), real-clock
** sleeps not counted; corio.run waits for them (corio.busted's grace). */
static int l_pending_work(lua_State *L) {
  corio_rt *rt = RT(L);
  lua_pushnumber(L, (lua_Number)(rt->nexternal - rt->nrealsleep));
  return 1;
}

/* checkpoints() -> n: the running task's checkpoints, counted from its
** first call of this (differences are what corio.testing compares). */
static int l_checkpoints(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t = rt->current;
  corio_tside *sd;
  if (t == NULL) return 0;
  sd = corio__task_side(rt, t);
  t->cpwatch = 1;
  lua_pushnumber(L, sd->checkpoints);
  return 1;
}

/* ---- errors ------------------------------------------------------- */

/* __index of error objects: class fields, and `errors` made on first use
** ({err} for a real error, {} for Cancelled) so that every error has one
** without a table per error raised. */
static int l_error_index(lua_State *L) {
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "errors") == 0) {
    lua_newtable(L);
    if (!corio__is_error(L, 1, "cancelled")) {
      lua_pushvalue(L, 1);
      lua_rawseti(L, -2, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, 1, "errors");
    return 1;
  }
  if (k != NULL && strcmp(k, "traceback") == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (!lua_getmetatable(L, 1)) return 0;
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int l_error_tostring(lua_State *L) {
  luaL_Buffer b;
  int n, i;
  /* The errors list sits below the buffer (index 2): a luaL_Buffer owns
  ** the top of the stack, and once a message passed LUAL_BUFFERSIZE its
  ** pieces lay above a list kept on top, so rawgeti(-1) read a string
  ** (a segfault for a scope of a few hundred errors). */
  lua_settop(L, 1);
  lua_pushliteral(L, "errors");
  lua_rawget(L, 1);
  n = lua_istable(L, 2) ? (int)lua_objlen(L, 2) : 0;
  luaL_buffinit(L, &b);
  lua_getfield(L, 1, "kind");
  if (lua_isstring(L, -1)) {
    luaL_addvalue(&b);
    luaL_addstring(&b, ": ");
  } else {
    lua_pop(L, 1);
  }
  lua_getfield(L, 1, "message");
  if (!lua_isstring(L, -1)) {
    lua_pop(L, 1);
    lua_getfield(L, 1, "kind");
    lua_pushfstring(L, "corio error (%s)", lua_tostring(L, -1));
    lua_remove(L, -2);
  }
  luaL_addvalue(&b);
  if (n > 1) {
    lua_pushfstring(L, "\n(+%d more error%s:", n - 1, n > 2 ? "s" : "");
    luaL_addvalue(&b);
    for (i = 2; i <= n; i++) {
      lua_rawgeti(L, 2, i);
      if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "message");
        lua_remove(L, -2);
      }
      lua_pushfstring(L, "\n  %s", lua_tostring(L, -1) ? lua_tostring(L, -1)
                                                        : "?");
      lua_remove(L, -2);
      luaL_addvalue(&b);
    }
    luaL_addstring(&b, ")");
  }
  lua_getfield(L, 1, "traceback");
  if (lua_isstring(L, -1) && lua_objlen(L, -1) > 0) {
    luaL_addstring(&b, "\n");
    luaL_addvalue(&b);
  } else {
    lua_pop(L, 1);
  }
  luaL_pushresult(&b);
  return 1;
}

/* error(kind, message [, fields]) -> a new error table of that kind */
static int l_error_new(lua_State *L) {
  const char *kind, *msg;
  /* named here: under pcall(corio.new_error, ...) Lua's own check could
  ** only say '?' */
  if (!lua_isstring(L, 1))
    return corio__argerror(L, 1, 1, "new_error",
                           lua_pushfstring(L, "string expected, got %s",
                                           luaL_typename(L, 1)));
  kind = lua_tostring(L, 1);
  if (!lua_isnoneornil(L, 2) && !lua_isstring(L, 2))
    return corio__argerror(L, 1, 2, "new_error",
                           lua_pushfstring(L, "string expected, got %s",
                                           luaL_typename(L, 2)));
  msg = lua_isnoneornil(L, 2) ? kind : lua_tostring(L, 2);
  /* fields: a table or nothing (another value was dropped silently) */
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3))
    return corio__argerror(L, 1, 3, "new_error",
                           lua_pushfstring(L, "table expected, got %s",
                                           luaL_typename(L, 3)));
  corio__push_error(L, kind, msg);
  if (!lua_isnoneornil(L, 2)) {
    /* the message as given: made from a C string it was cut at a NUL */
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "message");
  }
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (lua_next(L, 3)) {
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, -4);
    }
  }
  return 1;
}

static int l_error_class(lua_State *L) {
  corio__push_class(L, luaL_checkstring(L, 1));
  return 1;
}

static int l_is_error(lua_State *L) {
  if (!lua_isnoneornil(L, 2) && !lua_isstring(L, 2))
    return corio__argerror(L, 1, 2, "is_error",
                           lua_pushfstring(L, "string expected, got %s",
                                           luaL_typename(L, 2)));
  lua_pushboolean(L, corio__is_error(L, 1, lua_tostring(L, 2)));
  return 1;
}

/* wrap(err [, thread [, here]]) -> err as a boundary error (rule 10);
** with here, err crosses the running task's boundary: a traceback it
** already has gains that task's spawn site, as at the end of a task
** (gather.lua's return_errors and first keep a child's error in Lua). */
static int l_error_wrap(lua_State *L) {
  corio_rt *rt = RT(L);
  lua_State *co = lua_tothread(L, 2);
  corio_task *t = lua_toboolean(L, 3) ? rt->current : NULL;
  lua_settop(L, 1);
  corio__wrap_error(rt, L, co, t);
  return 1;
}

/* ---- module ------------------------------------------------------- */

static const corio_reg task_methods[] = {
    {"join", l_task_join}, {"cancel", l_task_cancel},
    {"status", l_task_status}, {NULL, NULL}};
static const corio_reg task_meta[] = {{"__index", l_task_index},
                                      {"__newindex", l_task_newindex},
                                      {"__tostring", l_task_tostring},
                                      {NULL, NULL}};
static const corio_reg scope_methods[] = {   /* and spawn: set_spawn */
    {"cancel", l_scope_cancel}, {NULL, NULL}};
static const corio_reg scope_meta[] = {{"__index", l_scope_index},
                                       {"__tostring", l_scope_tostring},
                                       {NULL, NULL}};
static const corio_reg funcs[] = {
    {"run", l_run},   /* and spawn: set_spawn */
    {"current", l_current},
    {"task_thread", l_task_thread},
    {"sleep", l_sleep},
    {"yield", l_yield},
    {"sleep_real", l_sleep_real},
    {"checkpoint", l_checkpoint},
    {"checkpoint_fast", l_checkpoint_fast},
    {"now", l_now},
    {"join", l_task_join},
    {"scope_fail", l_scope_fail},
    {"scope_wait", l_scope_wait},
    {"scope_defers", l_scope_defers},
    {"scope_leave", l_scope_leave},
    {"defer", l_defer},
    {"task_fail", l_task_fail},
    {"tasks", l_tasks},
    {"in_task", l_in_task},
    {"own_yield", l_own_yield},
    {"debug_mode", l_debug_mode},
    {"run_check", l_run_check},
    {"scope_cur", l_scope_cur},
    {"scope_foreign_base", l_scope_foreign_base},
    {"scope_detach", l_scope_detach},
    {"scope_attach", l_scope_attach},
    {"scope_top", l_scope_top},
    {"run_nested", l_run_nested},
    {"run_nested_end", l_run_nested_end},
    {"methods", l_methods},
    {"metatable", l_metatable},
    {"running", l_running},
    {"register_own", l_register_own},
    {"vclock", l_vclock},
    {"idle", l_idle},
    {"pending_work", l_pending_work},
    {"checkpoints", l_checkpoints},
    {"error", l_error_new},
    {"error_class", l_error_class},
    {"is_error", l_is_error},
    {"wrap_error", l_error_wrap},
    {NULL, NULL}};

/* corio.spawn and scope:spawn carry the anchor table as a second upvalue,
** so that corio__spawn pins the new task there without fetching the
** table from the registry, moving it below the function and removing
** it (a quarter of the Lua API calls of a spawn). Sets field "spawn" of
** the table at idx. */
static void set_spawn(lua_State *L, corio_rt *rt, int idx, lua_CFunction fn) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  lua_pushlightuserdata(L, rt);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  lua_pushcclosure(L, fn, 2);
  lua_setfield(L, idx, "spawn");
}

static void new_meta(lua_State *L, corio_rt *rt, const char *name,
                     const corio_reg *meta, const corio_reg *methods) {
  luaL_newmetatable(L, name);
  corio__register(L, rt, -1, meta);
  lua_newtable(L);
  corio__register(L, rt, -1, methods);
  lua_setfield(L, -2, "methods");
  lua_pushliteral(L, "corio");
  lua_setfield(L, -2, "__metatable");
}

int luaopen_corio_sync(lua_State *L);
int luaopen_corio_channel(lua_State *L);
int luaopen_corio_thread(lua_State *L);
int luaopen_corio_thread_pool(lua_State *L);
int luaopen_corio_thread_paths(lua_State *L);
int luaopen_corio_fs(lua_State *L);
int luaopen_corio_http(lua_State *L);

static int rt_gc(lua_State *L) {
  corio_rt **box = (corio_rt **)lua_touserdata(L, 1);
  if (*box != NULL) corio__rt_destroy(*box, 1);
  *box = NULL;
  return 0;
}

int luaopen_corio_core(lua_State *L) {
  corio_rt *rt = corio__rt(L);
  if (rt == NULL) {
    /* Loaded by a stock interpreter: the runtime belongs to the state and
    ** is freed when the state closes. */
    corio_rt **box = (corio_rt **)lua_newuserdata(L, sizeof(*box));
    *box = NULL;
    lua_newtable(L);
    lua_pushcfunction(L, rt_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, "corio.rtbox");
    rt = corio__rt_create(L, NULL);
    if (rt == NULL) return luaL_error(L, "corio: cannot create the runtime");
    lua_getfield(L, LUA_REGISTRYINDEX, "corio.rtbox");
    *(corio_rt **)lua_touserdata(L, -1) = rt;
    lua_pop(L, 1);
  }
  /* error classes get their __tostring before any is created */
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.errclass");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "corio.errclass");
  }
  lua_pushcfunction(L, l_error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushcfunction(L, l_error_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  new_meta(L, rt, "corio.Task", task_meta, task_methods);
  lua_pushvalue(L, -1);
  rt->ud_tasks = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_pop(L, 1);
  new_meta(L, rt, "corio.Scope", scope_meta, scope_methods);
  lua_getfield(L, -1, "methods");
  set_spawn(L, rt, -1, l_scope_spawn);
  lua_pop(L, 2);

  lua_newtable(L);
  corio__register(L, rt, -1, funcs);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->foreign_tab);
  lua_setfield(L, -2, "foreign");
  set_spawn(L, rt, -1, l_spawn);
  lua_pushlightuserdata(L, rt);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->refs);
  luaL_getmetatable(L, "corio.Scope");
  lua_pushcclosure(L, l_scope_enter, 3);
  lua_setfield(L, -2, "scope_enter");
  lua_pushlightuserdata(L, CORIO_NOLOOP);
  lua_setfield(L, -2, "NOLOOP");
  lua_pushlightuserdata(L, rt);
  lua_setfield(L, -2, "rt");
  lua_pushlightuserdata(L, (void *)ffi_join);
  lua_setfield(L, -2, "ffi_join");
  lua_pushlightuserdata(L, (void *)ffi_now);
  lua_setfield(L, -2, "ffi_now");
  lua_pushlightuserdata(L, (void *)ffi_check);
  lua_setfield(L, -2, "ffi_check");
  lua_pushlightuserdata(L, (void *)ffi_scope_leave);
  lua_setfield(L, -2, "ffi_scope_leave");
  lua_pushlightuserdata(L, (void *)ffi_body_enter);
  lua_setfield(L, -2, "ffi_body_enter");
  lua_pushlightuserdata(L, &corio__opmark);
  lua_setfield(L, -2, "OPMARK");
  lua_pushliteral(L, CORIO_VERSION);
  lua_setfield(L, -2, "version");
  luaopen_corio_sync(L);
  lua_setfield(L, -2, "sync");
  luaopen_corio_channel(L);
  lua_setfield(L, -2, "channel");
  luaopen_corio_thread(L);
  lua_setfield(L, -2, "to_thread");
  luaopen_corio_thread_pool(L);
  lua_setfield(L, -2, "thread_pool_size");
  luaopen_corio_thread_paths(L);
  lua_setfield(L, -2, "thread_paths");
  luaopen_corio_fs(L);
  lua_setfield(L, -2, "fs");
  luaopen_corio_http(L);
  lua_setfield(L, -2, "http");
  return 1;
}
