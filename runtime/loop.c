/*
** loop.c: the scheduler. A FIFO ready queue of tasks is drained by
** resuming each task's thread with lua_resume; libuv is polled only when
** the queue is empty (blocking) or, while it stays busy, once every
** CORIO_POLL_EVERY resumes or CORIO_POLL_NS (without blocking), so I/O
** and timers are not starved and deadlines cut waits on time. Blocking primitives suspend through corio__suspend; wakers make
** a task ready with its resume values pushed, or with a deliver hook that
** pushes them right before it runs (libuv callbacks never touch Lua).
*/
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

void corio__ready(corio_rt *rt, corio_task *t, corio_deliver_fn fn) {
  /* Made ready from a libuv callback inside corio's uv_run: make that turn
  ** of the loop end without blocking in poll (a callback that ran before
  ** the poll, e.g. an overdue timer, would otherwise leave the task
  ** waiting for the next unrelated event). */
  if (rt->in_uv) uv_stop(rt->loop);
  t->state = CORIO_ST_READY;
  t->deliver = fn;
  t->ready_next = NULL;
  if (rt->ready_tail != NULL) rt->ready_tail->ready_next = t;
  else rt->ready_head = t;
  rt->ready_tail = t;
}

void corio__deliver_true(corio_task *t) { lua_pushboolean(t->co, 1); }

/* In corio__pcall: [] -> [Cancelled error] for the task ud. */
static void make_cancelled(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *t = (corio_task *)ud;
  (void)rt;
  corio__push_error(L, "cancelled", "the task was cancelled while it waited");
  luaL_traceback(L, t->wait_L, NULL, t->wait_L == t->co ? 1 : 0);
  lua_setfield(L, -2, "traceback");
}

/* The error is made on the runtime's own state and moved over: an
** allocation on the suspended thread can run a __gc finaliser there, and
** one that raises (even inside its own pcall) wrecks that thread's stack.
** It is made in a protected call (this runs in the scheduler): without
** memory for it, the task is woken with LuaJIT's "not enough memory"
** error instead, which it raises where it waited. */
void corio__deliver_cancelled(corio_task *t) {
  corio_rt *rt = corio__rt(t->co);
  lua_pushboolean(t->co, 0);
  if (rt == NULL) {   /* (the runtime is gone: nothing to protect with) */
    corio__push_error(t->co, "cancelled",
                      "the task was cancelled while it waited");
    return;
  }
  (void)corio__pcall(rt, rt->L, 0, 1, make_cancelled, t);
  lua_xmove(rt->L, t->co, 1);
}

/* lua_isyieldable answers what coroutine.isyieldable pushes (both read
** LuaJIT's C frame), without the push, read and pop: every suspension
** asks. rt->isyieldable still says whether to ask at all (a state
** without coroutine.isyieldable is not checked, as before). */
int corio__yieldable(corio_rt *rt, lua_State *L) {
  (void)rt;
  return lua_isyieldable(L);
}

/* Whether every coroutine from L up to the task's thread was resumed by
** corio's coroutine.resume/wrap, so that a yield from L reaches the
** scheduler. init.lua notes in the registry's "corio.resumers" which
** coroutine resumed which; a copy of the original coroutine.resume
** taken before require "corio" notes nothing, and would take the yield
** for its own (the task would then run on while counted as blocked).
** Each resumer on the chain must itself be able to yield on: one that
** resumed the coroutine from inside a C call (a generator called from a
** table.sort comparator, a string.gsub callback or a __gc) cannot pass
** the suspension up, and LuaJIT would raise "attempt to yield across
** C-call boundary" in init.lua with the task counted as blocked.
** -> 1 the chain reaches t->co; 0 a resumer noted nothing; -1 a resumer
** is inside a C call. */
static int resume_chain(lua_State *L, corio_task *t) {
  int ok = 0, i;
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.resumers");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 1;   /* init.lua is not loaded: nothing to check against */
  }
  lua_pushthread(L);
  for (i = 0; i < 100000; i++) {
    lua_State *p;
    lua_rawget(L, -2);             /* [resumers, resumer of the key] */
    p = lua_tothread(L, -1);
    if (p == NULL) break;
    if (!lua_isyieldable(p)) {
      ok = -1;
      break;
    }
    if (p == t->co) {
      ok = 1;
      break;
    }
  }
  lua_pop(L, 2);
  return ok;
}

int corio__resumed_by_corio(lua_State *L, corio_task *t) {
  return resume_chain(L, t) == 1;
}

int corio__cannot_suspend(lua_State *L, const char *what) {
  corio__push_cannot_suspend(L, what);
  return lua_error(L);
}

/* [-0, +1] "file:line: " of the user's code that made the call: the
** innermost frame outside corio's own Lua files, so that a scope's wait
** (called from init.lua) names the user's line, not init.lua's. Falls
** back to luaL_where(L, 2). Only on the error path. */
static void where_user(corio_rt *rt, lua_State *L) {
  lua_Debug ar;
  int level;
  if (rt != NULL) {
    for (level = 1; lua_getstack(L, level, &ar); level++) {
      if (!lua_getinfo(L, "Sl", &ar)) break;
      if (ar.currentline > 0 && !corio__is_own_src(rt, ar.source)) {
        lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
        return;
      }
    }
  }
  luaL_where(L, 2);
}

/* [-0, +1] The message corio__cannot_suspend raises: why the task
** cannot suspend from L. */
void corio__push_cannot_suspend(lua_State *L, const char *what) {
  corio_rt *rt = corio__rt(L);
  if (rt != NULL && (rt->isyieldable == NULL || corio__yieldable(rt, L)) &&
      (rt->current == NULL || L == rt->current->co ||
       resume_chain(L, rt->current) != -1)) {
    where_user(rt, L);
    lua_pushfstring(
        L,
        "corio: %s cannot suspend the task here: it runs in a coroutine "
        "resumed by a copy of coroutine.resume (or wrap) taken before "
        "require \"corio\", which would take the suspension for its own "
        "yield. Look coroutine.resume up after require \"corio\" (corio "
        "wraps it to pass suspensions through)",
        what);
    lua_concat(L, 2);
    return;
  }
  where_user(rt, L);
  lua_pushfstring(
      L,
      "corio: %s cannot suspend the task here: it is called from inside "
      "a C function (a table.sort comparator, a string.gsub callback, "
      "a module body run by require, a metamethod or callback called "
      "from C, or another library's C function), and LuaJIT cannot "
      "yield across a C call. Make the call outside that function "
      "(e.g. fetch the data first, then sort), or move the work into "
      "a task of its own",
      what);
  lua_concat(L, 2);
}

/* Suspend the running task t from a lua_CFunction on thread L (t's own
** thread or a user coroutine inside it). The caller has armed its
** operation; abort undoes it on cancel (NULL: not abortable). Use as
** `return corio__suspend(...)`. */
int corio__suspend(corio_rt *rt, lua_State *L, corio_task *t,
                   corio_abort_fn abort, const char *what, void *obj) {
  return corio__suspend_keep(rt, L, t, abort, what, obj, 0);
}

/* corio__suspend keeping the nkeep values on top of L on t->co while the
** task is blocked (a blocked sender's value): they are t->co's stack
** 1..nkeep, and whoever wakes or aborts the task clears them first. */
int corio__suspend_keep(corio_rt *rt, lua_State *L, corio_task *t,
                        corio_abort_fn abort, const char *what, void *obj,
                        int nkeep) {
  if (!corio__can_suspend(rt, L)) {
    /* Undo the armed operation, then explain (instead of LuaJIT's bare
    ** "attempt to yield across C-call boundary"). The abort functions
    ** find their operation in wait_obj, as when a cancel undoes it. */
    t->fresh = 0;  /* wait_obj holds born while fresh */
    if (abort != NULL) {
      t->wait_obj = obj;
      abort(rt, t);
      t->wait_obj = NULL;
    }
    return corio__cannot_suspend(L, what);
  }
  t->abort = abort;
  t->wait_what = what;
  t->wait_obj = obj;
  t->wait_L = L;
  t->state = CORIO_ST_BLOCKED;
  t->budget = CORIO_BUDGET;
  return lua_yield(L, nkeep);
}

/* A fast path completed with nvals results on top of L. Within the
** budget, return them at once; otherwise yield to the back of the ready
** queue and hand them back on resume (rule 15: no starvation). */
int corio__fast(corio_rt *rt, lua_State *L, corio_task *t, int nvals) {
  if (--t->budget > 0) return nvals;
  t->budget = CORIO_BUDGET;
  if (!corio__can_suspend(rt, L)) return nvals;
  t->wait_L = L;
  corio__ready(rt, t, NULL);
  return lua_yield(L, nvals);
}

_Thread_local corio_rt *corio__tls_rt;

static void resume(corio_rt *rt, corio_task *t) {
  lua_State *co = t->co;
  corio_rt *outer = corio__tls_rt;  /* a runtime stepped inside another's task */
  int nargs, st;
  if (t->deliver != NULL) {
    corio_deliver_fn fn = t->deliver;
    t->deliver = NULL;
    fn(t);
  }
  nargs = lua_gettop(co);
  if (t->status == CORIO_PENDING) {
    nargs--;  /* the function itself */
    t->status = CORIO_RUNNING;
    if (t->fresh) {  /* from its spawn to now: see corio__base */
      if (rt->vclock) {
        /* the virtual clock has no discount, nor has this run after it */
        t->fresh = 0;
      } else {
        uint64_t c = corio__coarse(rt), slack = rt->coarse_res;
        t->born = c > t->born + slack ? c - t->born - slack : 0;
      }
    }
  }
  t->state = CORIO_ST_RUNNING;
  t->wait_L = NULL;
  rt->current = t;
  rt->burst_last = 0;  /* its first spawn starts a burst: corio__burst */
  corio__tls_rt = rt;
  if (rt->debug) corio__debug_step_begin(rt, t);
  st = lua_resume(co, nargs);
  t->fresh = 0;
  if (rt->debug && __atomic_exchange_n(&rt->in_step, 0, __ATOMIC_ACQ_REL) == 2)
    corio__debug_step_end(rt);
  rt->current = NULL;
  corio__tls_rt = outer;
  if (st == LUA_YIELD) {
    /* A corio suspension left the task blocked or queued (CORIO_OWN_YIELD),
    ** with any values it keeps on co. A bare coroutine.yield() in a task
    ** body left it running: treat that as corio.yield() without the
    ** checkpoint; the yielded values are dropped. */
    if (!CORIO_OWN_YIELD(t)) {
      lua_settop(co, 0);
      corio__ready(rt, t, NULL);
    }
    return;
  }
  corio__task_body_ended(rt, t, st);
}

static void dump_tasks(corio_rt *rt);

/* One uv_run of corio's own, with in_uv set so that wake-ups from the
** callbacks it runs stop it from blocking (see corio__ready). */
static void uv_run_in(corio_rt *rt, uv_run_mode mode) {
  rt->in_uv = 1;
  uv_run(rt->loop, mode);
  rt->in_uv = 0;
}

/* A pass over the ready queue long enough to read the clock: true if it
** is time to poll (*since: when the pass was first seen long, or 0). */
static int poll_due(corio_rt *rt, uint64_t *since) {
  uint64_t now;
  if (rt->poll_ns == 0) return 0;
  now = uv_hrtime();
  if (*since == 0) {
    *since = now;
    return 0;
  }
  return now - *since >= rt->poll_ns;
}

static void run_ready(corio_rt *rt) {
  unsigned n = 0;
  uint64_t polled = 0;
  corio_task *t;
  while ((t = rt->ready_head) != NULL) {
    rt->ready_head = t->ready_next;
    if (rt->ready_head == NULL) rt->ready_tail = NULL;
    else {
      /* The tasks ahead are cold (W1, W7): fetch the next one's thread,
      ** whose record the previous turn fetched, and the record after. */
      corio_task *next = rt->ready_head;
      const char *rec = (const char *)next;
      __builtin_prefetch(rec + 64);
      __builtin_prefetch(rec + 128);
      __builtin_prefetch(rec + sizeof(*next) - 1);
      __builtin_prefetch(next->co);
      if (next->ready_next != NULL) __builtin_prefetch(next->ready_next);
    }
    resume(rt, t);
    /* Poll without blocking every CORIO_POLL_EVERY resumes, or sooner if
    ** they take long (each starts a thread, say), so that deadlines and
    ** I/O wait at most about rt->poll_ns behind a busy ready queue. */
    if (++n == CORIO_POLL_EVERY || ((n & 31) == 0 && poll_due(rt, &polled))) {
      n = 0;
      polled = 0;
      corio__timers_sync(rt);
      uv_run_in(rt, UV_RUN_NOWAIT);
      if (rt->timers_due) corio__timers_fire(rt);
      if (rt->dump_due) dump_tasks(rt);
    }
  }
}

/* Wake every task in wait_all_tasks_blocked: nothing else is ready. */
static void wake_idle(corio_rt *rt) {
  corio_link *l;
  while ((l = corio_list_shift(&rt->idle_waiters)) != NULL) {
    corio_task *t = corio_container_of(l, corio_task, u.wait);
    rt->nidle--;
    t->abort = NULL;
    corio__ready(rt, t, corio__deliver_true);
  }
}

/* Visit every live task under s (depth first, spawn order). */
static void walk(corio_scope *s, void (*fn)(corio_task *, void *), void *ud) {
  for (; s != NULL; s = s->inner) {
    corio_link *l;
    for (l = s->children.next; l != &s->children; l = l->next) {
      corio_task *c = corio_container_of(l, corio_task, sibling);
      fn(c, ud);
      walk(&c->root, fn, ud);
    }
  }
}

void corio__walk_tasks(corio_rt *rt, void (*fn)(corio_task *, void *),
                       void *ud) {
  if (rt->root == NULL || rt->root->state == CORIO_ST_ENDED) return;
  corio_link *l;
  fn(rt->root, ud);
  walk(&rt->root->root, fn, ud);
  /* the tasks of scopes a suspended user coroutine holds (bindings/core.c
  ** scope_detach): off every task's chain, but alive */
  for (l = rt->parked.next; l != &rt->parked; l = l->next)
    walk(&corio_container_of(l, corio_xscope, parked)->s, fn, ud);
}

/* The deadlock error names the first DL_NAMED blocked tasks one a line;
** the others are counted by what and where they wait, one line for each
** of the first DL_GROUPS such places, and one count for the rest: a
** deadlock of 100,000 tasks is a short message, not 5 MB of one. */
#define DL_NAMED 20
#define DL_GROUPS 10

typedef struct dl_ctx {
  corio_rt *rt;
  luaL_Buffer *b;
  int n;
  int groups;   /* stack index of {where -> count} and {where...} in order */
} dl_ctx;

/* [-1, +0] Count the task whose line (without its name) is on top. */
static void dl_group(dl_ctx *c) {
  lua_State *L = c->rt->L;
  lua_pushvalue(L, -1);
  lua_rawget(L, c->groups);                  /* [what count|nil] */
  if (lua_isnil(L, -1)) {
    int k = (int)lua_objlen(L, c->groups + 1) + 1;
    lua_pushvalue(L, -2);
    lua_rawseti(L, c->groups + 1, k);        /* first seen: in order */
  }
  lua_pushinteger(L, lua_tointeger(L, -1) + 1);
  lua_remove(L, -2);
  lua_rawset(L, c->groups);                  /* [] */
}

static void describe_blocked(corio_task *t, void *ud) {
  dl_ctx *c = ud;
  char where[256];
  lua_State *L = c->rt->L;
  int top = lua_gettop(L);
  if (t->state == CORIO_ST_ENDING) {
    /* Its body returned and it waits for the tasks it spawned: it is
    ** part of the deadlock too (a task that ended its body holding a
    ** lock its child waits for), so it is named with the others. */
    lua_pushliteral(L, "waits for its tasks (its body has returned)");
    if (t->site != 0) {
      /* its function has left the stack: name it by where it was spawned */
      const corio_site *site = corio__task_site(c->rt, t);
      lua_pushfstring(L, ", spawned at %s:%d",
                      corio__src_shown(site->src), site->line);
    }
  } else if (t->state == CORIO_ST_BLOCKED) {
    lua_pushfstring(L, "waits in %s", t->wait_what ? t->wait_what : "?");
    if (corio__where(c->rt, t, where, sizeof(where)))
      lua_pushfstring(L, " at %s", where);
  } else {
    return;
  }
  lua_concat(L, lua_gettop(L) - top);        /* [what] */
  if (++c->n > DL_NAMED) {
    dl_group(c);
    return;
  }
  corio__task_name_shown(c->rt, L, t);
  lua_pushfstring(L, "\n  %s %s", lua_tostring(L, -1), lua_tostring(L, -2));
  lua_replace(L, -3);
  lua_pop(L, 1);
  luaL_addvalue(c->b);
}

/* Rule 14: nothing can ever wake a task. Describe the blocked tasks in a
** "deadlock" error, then cancel the root so that everything unwinds and
** cleanup runs; corio.run raises the deadlock error. */
static void deadlock_error(corio_rt *rt, lua_State *L, void *ud);

static void deadlock(corio_rt *rt) {
  lua_State *L = rt->L;
  corio_scope *nested = rt->nested_run;
  if (nested != NULL && (nested->closed || rt->nested_deadlock)) {
    /* closed: its corio.run was left without run_nested_end; deadlocked
    ** already: its tasks ignored the cancel, so the root is cancelled */
    nested = NULL;
  }
  if (nested == NULL && ++rt->deadlock > 1) return;
  /* the message is made in a protected call (this runs in the
  ** scheduler): without memory for it, the run's error is LuaJIT's "not
  ** enough memory" (corio.deadlock stays nil: finish_push) */
  if (corio__pcall(rt, L, 0, 0, deadlock_error, NULL) != 0) lua_pop(L, 1);
  if (nested != NULL) {
    /* only the CLI main chunk's corio.run is deadlocked: it raises */
    rt->nested_deadlock = 1;
    corio__scope_cancel(rt, nested);
    return;
  }
  corio__scope_cancel(rt, &rt->root->root);
}

/* In corio__pcall: [] -> [] the deadlock error, in the registry's
** corio.deadlock. */
static void deadlock_error(corio_rt *rt, lua_State *L, void *ud) {
  luaL_Buffer b;
  dl_ctx c;
  int i, ngroups;
  (void)ud;
  c.rt = rt;
  c.b = &b;
  c.n = 0;
  lua_newtable(L);
  lua_newtable(L);
  c.groups = lua_gettop(L) - 1;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "every task is blocked and nothing can wake them "
                     "(no timers, I/O or thread work pending):");
  corio__walk_tasks(rt, describe_blocked, &c);
  ngroups = (int)lua_objlen(L, c.groups + 1);
  for (i = 1; i <= ngroups; i++) {
    int more;
    lua_rawgeti(L, c.groups + 1, i);
    lua_pushvalue(L, -1);
    lua_rawget(L, c.groups);
    more = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (i <= DL_GROUPS) {
      lua_pushfstring(L, "\n  %d more %s: %s", more,
                      more == 1 ? "task" : "tasks", lua_tostring(L, -1));
      lua_remove(L, -2);
      luaL_addvalue(&b);
      continue;
    }
    lua_pop(L, 1);
    /* the rest, in one count */
    for (more = 0; i <= ngroups; i++) {
      lua_rawgeti(L, c.groups + 1, i);
      lua_rawget(L, c.groups);
      more += (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
    lua_pushfstring(L, "\n  %d more %s elsewhere", more,
                    more == 1 ? "task" : "tasks");
    luaL_addvalue(&b);
  }
  luaL_pushresult(&b);
  lua_replace(L, c.groups);
  lua_pop(L, 1);
  corio__push_error(L, "deadlock", lua_tostring(L, -1));
  /* Where each task waits, the useful trace, is the message already: an
  ** empty traceback keeps tostring(err) (and the CLI's report) from
  ** printing that list twice. */
  lua_pushliteral(L, "traceback");
  lua_pushliteral(L, "");
  lua_rawset(L, -3);
  lua_remove(L, -2);
  lua_setfield(L, LUA_REGISTRYINDEX, "corio.deadlock");
}


/* One line of the tree: name, status, what and where it waits. */
static void dump_task(corio_rt *rt, corio_task *c, int depth) {
  lua_State *L = rt->L;
  char where[256];
  static const char *const st[] = {"pending", "running", "done", "failed",
                                   "cancelled"};
  corio__task_name_shown(rt, L, c);
  fprintf(stderr, "%*s%s [%s]", 2 * depth, "", lua_tostring(L, -1),
          st[c->status]);
  lua_pop(L, 1);
  if (c->state == CORIO_ST_BLOCKED && c->wait_what != NULL)
    fprintf(stderr, " waiting in %s", c->wait_what);
  if (c->status == CORIO_RUNNING && corio__where(rt, c, where, sizeof(where)))
    fprintf(stderr, " at %s", where);
  if (c == rt->root)
    fputs(" (root)", stderr);
  else if (c->site != 0)
    fprintf(stderr, " (spawned at %s:%d)",
            corio__src_shown(corio__task_site(rt, c)->src),
            corio__task_site(rt, c)->line);
  fputc('\n', stderr);
}

/* The task tree, as corio.tasks() sees it, on stderr (SIGUSR1). */
static void dump_tree(corio_rt *rt, corio_scope *s, int depth) {
  for (; s != NULL; s = s->inner) {
    corio_link *l;
    for (l = s->children.next; l != &s->children; l = l->next) {
      corio_task *c = corio_container_of(l, corio_task, sibling);
      dump_task(rt, c, depth);
      dump_tree(rt, &c->root, depth + 1);
    }
  }
}

static volatile sig_atomic_t sigusr1_seen;

/* In corio__pcall: [] -> [] the task list on stderr. */
static void dump_tasks_p(corio_rt *rt, lua_State *L, void *ud) {
  (void)L;
  (void)ud;
  fprintf(stderr, "corio: %u live task(s):\n", rt->ntasks);
  if (rt->root == NULL || rt->root->state == CORIO_ST_ENDED) return;
  dump_task(rt, rt->root, 0);   /* (with where it waits, as tasks() has) */
  dump_tree(rt, &rt->root->root, 1);
  {
    corio_link *l;
    for (l = rt->parked.next; l != &rt->parked; l = l->next) {
      fprintf(stderr, "  (in scopes a suspended coroutine holds)\n");
      dump_tree(rt, &corio_container_of(l, corio_xscope, parked)->s, 2);
    }
  }
}

/* The task list (SIGUSR1), in a protected call: naming the tasks
** allocates, and this runs in the scheduler or as a run ends (outside
** any protected call). Without memory the list stops there. */
static void dump_tasks(corio_rt *rt) {
  rt->dump_due = 0;
  __atomic_store_n(&sigusr1_seen, 0, __ATOMIC_SEQ_CST);
  if (corio__pcall(rt, rt->L, 0, 0, dump_tasks_p, NULL) != 0) {
    const char *m = lua_tostring(rt->L, -1);
    fprintf(stderr, "\ncorio: (the task list stops here: %s)\n",
            m != NULL ? m : "an error");
    lua_pop(rt->L, 1);
  }
}

/* SIGINT (rule 12) and SIGUSR1 have handlers of their own rather than
** uv_signal_t watchers: libuv hands a signal over only when the loop
** thread next polls, so while a task spins in Lua or blocks in C no
** SIGINT would be seen and the second one could not end the process at
** once; and stopping a watcher sets SIG_DFL, so a SIGUSR1 after a run
** (at the REPL's prompt) killed the process. The handlers note the
** signal and wake the loop; the work happens on the loop thread. One
** runtime at a time holds them (signals are per process); after its run
** the dispositions from before it come back.
** Runtimes may run on several threads at once (c-api.md): taking and
** giving back the handlers happens under sig_lock, so that one runtime
** takes them and the dispositions saved are the host's (two runs that
** both saw them free both installed them, the second saving the first's
** handler as "the host's", and the host's own handler was never put
** back). The handlers themselves take no lock: they read sigint_rt and
** set the flags with atomic operations (lock-free, so signal-safe). */
static corio_rt *sigint_rt;
static volatile sig_atomic_t sigint_seen;
static struct sigaction sigint_old, sigusr1_old;
static pthread_mutex_t sig_lock = PTHREAD_MUTEX_INITIALIZER;

#define SIG_LOAD(v) __atomic_load_n(&(v), __ATOMIC_SEQ_CST)
#define SIG_STORE(v, x) __atomic_store_n(&(v), (x), __ATOMIC_SEQ_CST)

static void sigusr1_handler(int signum) {
  corio_rt *rt = SIG_LOAD(sigint_rt);
  (void)signum;
  SIG_STORE(sigusr1_seen, 1);
  if (rt != NULL) uv_async_send(&rt->sigusr1);
}

void corio__sigusr1_cb(uv_async_t *h) {
  corio_rt *rt = h->data;
  if (SIG_LOAD(sigint_rt) != rt || !SIG_LOAD(sigusr1_seen)) return;
  rt->dump_due = 1;   /* printed by the scheduler, outside libuv */
  if (rt->in_uv) uv_stop(rt->loop);
}

static void sigint_handler(int signum) {
  corio_rt *rt = SIG_LOAD(sigint_rt);
  if (SIG_LOAD(sigint_seen) || rt == NULL) {
    /* the second: end the process as the default action would have */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(signum, &dfl, NULL);
    raise(signum);
    return;
  }
  SIG_STORE(sigint_seen, 1);
  uv_async_send(&rt->sigint);   /* async-signal-safe */
}

void corio__sigint_cb(uv_async_t *h) {
  corio_rt *rt = h->data;
  /* (a wake-up left from an earlier run finds sigint_seen reset) */
  if (SIG_LOAD(sigint_rt) != rt || !SIG_LOAD(sigint_seen) || !rt->running ||
      rt->interrupted)
    return;
  rt->interrupted = 1;
  if (rt->root != NULL) corio__scope_cancel(rt, &rt->root->root);
}

static void sigint_hold(corio_rt *rt) {
  struct sigaction sa;
  pthread_mutex_lock(&sig_lock);
  if (SIG_LOAD(sigint_rt) != NULL) {
    pthread_mutex_unlock(&sig_lock);
    return;
  }
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = sigint_handler;
  sigemptyset(&sa.sa_mask);
  /* a read or write the signal interrupts goes on (SIGUSR1: "the program
  ** goes on"), as under libuv's own handlers */
  sa.sa_flags = SA_RESTART;
  SIG_STORE(sigint_seen, 0);
  SIG_STORE(sigusr1_seen, 0);
  SIG_STORE(sigint_rt, rt);
  sigaction(SIGINT, &sa, &sigint_old);
  sa.sa_handler = sigusr1_handler;
  sigaction(SIGUSR1, &sa, &sigusr1_old);
  pthread_mutex_unlock(&sig_lock);
}

/* Give the signals back their dispositions from before the run (the
** REPL's SIG_IGN for SIGINT at its prompt, say). Returns whether a
** SIGUSR1 came that nobody printed the tree for. */
static int signals_give_back(corio_rt *rt) {
  int usr1;
  pthread_mutex_lock(&sig_lock);
  if (SIG_LOAD(sigint_rt) != rt) {
    pthread_mutex_unlock(&sig_lock);
    return 0;
  }
  usr1 = SIG_LOAD(sigusr1_seen) != 0;
  sigaction(SIGINT, &sigint_old, NULL);
  sigaction(SIGUSR1, &sigusr1_old, NULL);
  SIG_STORE(sigint_rt, NULL);
  SIG_STORE(sigint_seen, 0);
  pthread_mutex_unlock(&sig_lock);
  return usr1;
}

void corio__signals_release(corio_rt *rt) { (void)signals_give_back(rt); }

/* One turn of the loop when nothing is ready: jump the virtual clock, or
** block in libuv until something happens. mode: UV_RUN_ONCE or NOWAIT. */
int corio__step(corio_rt *rt, int mode) {
  if (rt->nidle && rt->ready_head == NULL) {
    wake_idle(rt);
    return 1;
  }
  corio__timers_sync(rt);
  if (rt->vclock && rt->nheap && rt->nexternal == rt->nrealsleep) {
    /* Autojump: take pending I/O first; if still idle, jump to the next
    ** deadline. Only when every task waits on a timer (SPEC §6): while
    ** real work is pending (a file read, a to_thread worker, a
    ** transfer, a host op) the loop waits for it below, so a timeout
    ** around real work does not pass at once. A real-clock sleep (the
    ** per-test watchdog of corio test) does not count as such work. */
    uv_run_in(rt, UV_RUN_NOWAIT);
    if (rt->ready_head == NULL) {
      uint64_t next = corio__timers_next(rt);
      if (next > rt->vnow) rt->vnow = next;
    }
    corio__timers_fire(rt);
    return 1;
  }
  if (rt->nheap == 0 && rt->nexternal == 0 && rt->ready_head == NULL) {
    deadlock(rt);
    return 0;
  }
  if (rt->vclock) {
    /* Autojump with real work pending: the virtual clock runs at real
    ** speed while the loop waits for it (the uv timer is armed on it:
    ** corio__timers_sync), so a timeout around a hung request or a long
    ** worker fires after its time, as on the real clock, instead of
    ** never (the clock stood still until the work ended). */
    uint64_t t0 = uv_hrtime();
    uv_run_in(rt, (uv_run_mode)mode);
    rt->vnow += uv_hrtime() - t0;
    corio__timers_fire(rt);
    if (rt->dump_due) dump_tasks(rt);
    return 1;
  }
  uv_run_in(rt, (uv_run_mode)mode);
  if (rt->timers_due) corio__timers_fire(rt);
  if (rt->dump_due) dump_tasks(rt);
  return 1;
}

/* In corio__pcall: [fn args...] -> [] the root task spawned, its ref in
** *ref (taken first, set once the Task exists: no allocation after the
** spawn, so a root spawned is a root recorded). */
static void start_root(corio_rt *rt, lua_State *L, void *ud) {
  int *ref = (int *)ud, nargs = lua_gettop(L) - 1;
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, "corio.deadlock");
  lua_pushboolean(L, 0);
  *ref = corio__ref(rt, L);
  rt->root = corio__spawn(rt, L, NULL, nargs, 0);
  corio__setref(rt, L, *ref);   /* the root's results outlive it */
}

/* [-(nargs+1), +0|+1] Start the function below nargs arguments on L as the
** root task; corio__run_step drives it, corio__run_finish collects it.
** Returns 0, or without memory a LUA_ERR* status with the error on top
** of L (nothing started). */
int corio__run_start(corio_rt *rt, lua_State *L, int nargs) {
  int ref = LUA_NOREF, st;
  rt->running = 1;
  rt->interrupted = 0;
  rt->deadlock = 0;
  rt->root = NULL;
  st = corio__pcall(rt, L, nargs + 1, 0, start_root, &ref);
  if (st != 0) {
    if (ref != LUA_NOREF) corio__unref(rt, L, ref);
    rt->root = NULL;
    rt->running = 0;
    return st;
  }
  rt->root_ref = ref;
  if (rt->handle_signals) {
    sigint_hold(rt);
  }
  return 0;
}

/* Run the ready tasks, then one turn of libuv (UV_RUN_ONCE waits for an
** event, UV_RUN_NOWAIT does not). Returns 1 while the run goes on, 0 once
** the root and all its descendants ended and no work of theirs is still
** pending (to_thread workers, fs requests, host ops of cancelled tasks:
** nothing outlives the run). */
static int run_step(corio_rt *rt, int mode) {
  corio_task *root = rt->root;
  run_ready(rt);
  if (root->state == CORIO_ST_ENDED) {
    if (rt->nexternal == 0) return 0;
    uv_run_in(rt, (uv_run_mode)mode);
    return 1;
  }
  if (!corio__step(rt, mode) && rt->deadlock > 1) return 0;
  return 1;
}

typedef struct step_args {
  int mode, r;
} step_args;

static void step_p(corio_rt *rt, lua_State *L, void *ud) {
  step_args *a = (step_args *)ud;
  (void)L;
  a->r = run_step(rt, a->mode);
}

/* An error left the scheduler (the error value on top of rt->L): finish
** what a hot path that named itself was doing (rt->oom_site), or else
** abandon the run, whose state is unknown: it ends with an error naming
** this one, the tasks it leaves are released with the runtime (as after
** a deadlock the tasks ignore). Was: LuaJIT's panic (the host exited). */
static void step_failed(corio_rt *rt) {
  lua_State *L = rt->L;
  int site = rt->oom_site;
  corio_task *t = rt->oom_task;
  rt->oom_site = CORIO_SITE_NONE;
  rt->oom_task = NULL;
  rt->in_uv = 0;
  rt->current = NULL;
  if (site == CORIO_SITE_KEEP) {
    corio__task_keep_failed(rt, L, t);
    return;
  }
  snprintf(rt->broken_msg, sizeof(rt->broken_msg), "%s",
           lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                          : "an error that is not a string");
  lua_pop(L, 1);
  rt->broken = 1;
}

/* Run the ready tasks, then one turn of libuv, in one protected call (see
** step_failed). Returns 1 while the run goes on, 0 once it is over. */
int corio__run_step(corio_rt *rt, int mode) {
  step_args a;
  a.mode = mode;
  for (;;) {
    if (rt->broken) return 0;
    a.r = 0;
    if (corio__pcall(rt, rt->L, 0, 0, step_p, &a) == 0) return a.r;
    step_failed(rt);
  }
}

/* In corio__pcall: [root's userdata] -> (true, results...) or (false,
** err) of the run. */
static void finish_push(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *root = (corio_task *)ud;
  if (rt->broken) {
    lua_pushboolean(L, 0);
    lua_pushfstring(L, "corio: the scheduler failed (%s); the run was "
                    "abandoned", rt->broken_msg);
  } else if (root->state != CORIO_ST_ENDED) {
    /* Tasks ignored the cancel after a deadlock: abandon them (their
    ** threads stay pinned until the runtime closes). */
    lua_pushboolean(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "corio.deadlock");
  } else if (rt->deadlock) {
    lua_pushboolean(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, "corio.deadlock");
  } else if (rt->interrupted && root->status != CORIO_FAILED) {
    lua_pushboolean(L, 0);
    corio__push_error(L, "interrupted", "interrupted by SIGINT");
  } else {
    corio__task_push_results(rt, L, root, 1);
  }
  if (!rt->broken && (root->state != CORIO_ST_ENDED || rt->deadlock) &&
      lua_isnil(L, -1)) {
    /* the deadlock error could not be made (deadlock) */
    lua_pop(L, 1);
    lua_pushliteral(L, "not enough memory");
  }
  lua_remove(L, 1);
}

/* [-0, +n] End the run: push (true, results...) or (false, err) and
** return their count. */
int corio__run_finish(corio_rt *rt, lua_State *L) {
  corio_task *root = rt->root;
  int n, ud;
  if (rt->handle_signals) {
    /* a SIGUSR1 the loop had no turn to see (its step spun to the end) */
    if (signals_give_back(rt)) dump_tasks(rt);
  }
  rt->running = 0;
  rt->root = NULL;
  /* an autojump body whose coroutine was abandoned never switched the
  ** virtual clock off: the next run starts on the real clock */
  if (rt->vclock) {
    uint64_t real = uv_hrtime() + rt->clock_off;
    /* as when the last body ends (l_vclock): now() never goes back */
    if (rt->vnow > real) rt->clock_off += rt->vnow - real;
    rt->vclock = 0;
    rt->armed_when = 0;
  }
  if (rt->nested_ref != LUA_NOREF) corio__unref(rt, L, rt->nested_ref);
  rt->nested_ref = LUA_NOREF;
  rt->nested_run = NULL;
  rt->nested_deadlock = 0;
  corio__getref(rt, L, rt->root_ref);
  corio__unref(rt, L, rt->root_ref);
  rt->root_ref = LUA_NOREF;
  ud = lua_gettop(L);
  if (corio__pcall(rt, L, 1, LUA_MULTRET, finish_push, root) != 0) {
    /* no memory for the outcome: that is the run's error */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
  }
  n = lua_gettop(L) - ud + 1;
  return n;
}

/* [-(nargs+1), +n] Run the function below nargs arguments on L as the root
** task until it and all descendants ended. Pushes (true, results...) or
** (false, err) and returns their count. */
int corio__run_root(corio_rt *rt, lua_State *L, int nargs) {
  if (corio__run_start(rt, L, nargs) != 0) lua_error(L);
  while (corio__run_step(rt, UV_RUN_ONCE)) {
  }
  return corio__run_finish(rt, L);
}
