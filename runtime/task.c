/*
** task.c: the life of a task: spawn, the end of its body, waiting for its
** children and defers, and the final outcome that joiners and its scope
** see. The scheduler that resumes tasks is in loop.c; scope cancellation
** in cancel.c.
*/
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define TASK_UD(slot) (2 * (slot) + 1)
#define TASK_CO(slot) (2 * (slot) + 2)

/* Record where the spawning code is: the first frame outside corio's own
** Lua files. Only the chunk name (interned) and line are kept. Chunk names
** come from a small cache keyed by the frame's function, which the cache
** pins (so a hit cannot be a new function at a freed one's address):
** formatting the chunk name on every spawn would cost as much as the
** rest of spawn. The pins last one collector cycle (srccache_gc). */
static void srccache_sentinel(lua_State *L);
static void task_keep(corio_rt *rt, lua_State *L, corio_task *t);

/* The chunk name a spawn site keeps: a file's ("@path") whole, as
** tracebacks give it; any other as Lua shows it (ar->short_src, at most
** LUA_IDSIZE bytes) behind '=', so a chunk made by load(code) is
** [string "first line..."], not its whole code, in messages and in the
** interned names (one per chunk, kept for the runtime's life). */
static const char *site_src(const lua_Debug *ar, char *buf) {
  if (ar->source[0] == '@') return ar->source;
  buf[0] = '=';
  memcpy(buf + 1, ar->short_src, sizeof(ar->short_src));
  buf[sizeof(ar->short_src)] = '\0';
  return buf;
}

static void spawn_site(corio_rt *rt, lua_State *L, corio_task *t) {
  char name[sizeof(((lua_Debug *)0)->short_src) + 1];
  lua_Debug ar;
  int level;
  if (!rt->srccache_armed) {
    srccache_sentinel(L);
    rt->srccache_armed = 1;
  }
  for (level = 1; level < 10 && lua_getstack(L, level, &ar); level++) {
    const void *fn;
    corio_srccache *c;
    if (!lua_getinfo(L, "fl", &ar)) break;
    fn = lua_topointer(L, -1);
    c = &rt->srccache[((uintptr_t)fn >> 4) & (CORIO_SRCCACHE - 1)];
    if (c->fn != fn) {
      lua_pushvalue(L, -1);
      if (c->ref == 0) c->ref = corio__ref(rt, L);
      else corio__setref(rt, L, c->ref);
      if (!lua_getinfo(L, ">S", &ar)) {
        c->fn = NULL;
        break;
      }
      c->fn = fn;
      c->line = 0;
      c->own = corio__is_own_src(rt, ar.source);
      c->src = c->own ? NULL : corio__intern_src(rt, site_src(&ar, name));
    } else {
      lua_pop(L, 1);
    }
    if (ar.currentline > 0 && !c->own) {
      if (c->line != ar.currentline) {   /* else the site of last time */
        c->site = corio__intern_site(rt, c->src, ar.currentline);
        c->line = ar.currentline;
      }
      t->site = c->site;
      return;
    }
  }
}

/* The spawn-site cache is emptied, and its pins dropped, when the
** collector ends a cycle: a sentinel userdata, garbage as soon as made,
** runs this __gc then; the next spawn makes the next sentinel (not this
** __gc: in lua_close, which runs finalisers again for those made by
** finalisers, that one's would run after a stock luajit unloaded
** core.so). Was: the functions stayed pinned until another one took
** their slot, and with them what they captured: a file the collector
** should have closed stayed open for good. (Checking a weak table on
** each hit instead cost ~190 instructions a spawn, W1.) */
static int srccache_gc(lua_State *L) {
  corio_rt *rt = corio__rt(L);
  int i;
  if (rt == NULL) return 0;   /* the runtime is gone */
  for (i = 0; i < CORIO_SRCCACHE; i++) {
    corio_srccache *c = &rt->srccache[i];
    c->fn = NULL;
    if (c->ref > 0) {
      lua_pushnil(L);
      corio__setref(rt, L, c->ref);
    }
  }
  rt->srccache_armed = 0;
  return 0;
}

static void srccache_sentinel(lua_State *L) {
  lua_newuserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.srccache_gc");
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, srccache_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "corio.srccache_gc");
  }
  lua_setmetatable(L, -2);
  lua_pop(L, 1);
}

/* [-(nargs+1), +1] Start fn(args) as a task in scope parent (NULL makes a
** root task). The function and arguments move to the new thread; the
** Task userdata is left on L. anchor is where the caller has the anchor
** table at hand (the upvalue of corio.spawn and scope:spawn), or 0 to
** fetch it. Returns NULL only on a Lua memory error, which is raised. */
corio_task *corio__spawn(corio_rt *rt, lua_State *L, corio_scope *parent,
                         int nargs, int anchor) {
  lua_State *co;
  corio_task *t;
  int slot, a_co = anchor, a_ud = anchor;
  /* The thread is pinned in its anchor slot as soon as it exists. A
  ** fetched anchor table goes below the function, where the Task
  ** userdata is returned, so that no call only pops it. */
  co = lua_newthread(L);                  /* [fn args co] */
  slot = corio__slot_alloc(rt);           /* after what may raise first */
  /* The slot's side record is made room for now, where an error can be
  ** raised: the task's side record is then made without allocating, also
  ** where nothing can be raised (corio__task_side). Checked for the slot
  ** taken, not before lua_newthread: a __gc that it ran may have spawned
  ** and taken the slot that was next. */
  if (!corio__side_ready(rt, slot) && corio__side_reserve(rt, slot) != 0) {
    corio__slot_free(rt, slot);
    luaL_error(L, "corio.spawn: not enough memory for a new task");
  }
  if (anchor == 0) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
    lua_insert(L, -(nargs + 3));          /* [A fn args co] */
    a_co = -(nargs + 3);
    a_ud = -3;
  }
  lua_rawseti(L, a_co, TASK_CO(slot));
  lua_xmove(L, co, nargs + 1);            /* [(A)] */
  t = (corio_task *)lua_newuserdata(L, sizeof(*t));
  memset(t, 0, sizeof(*t));
  t->magic = CORIO_MAGIC_TASK;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->ud_tasks);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawseti(L, a_ud, TASK_UD(slot));    /* [(A) ud] */
  if (anchor == 0) lua_replace(L, -2);    /* [ud] */

  corio__scope_init(&t->root, CORIO_SCOPE_TASK, t, parent);
  corio_list_init(&t->sibling);
  t->co = co;
  t->cur = &t->root;
  t->slot = slot;
  t->id = rt->next_id++;
  t->budget = CORIO_BUDGET;
  t->status = CORIO_PENDING;
  t->u.sleep.idx = UINT32_MAX;
  /* corio__base: only a running task's spawns make a burst (a root task
  ** that corio_start spawned may first run after any pause of the host's);
  ** the virtual clock has no discount, and a stamp of it (it stands still
  ** while real time passes) means nothing once the task starts on the
  ** real clock */
  if (rt->current != NULL && !rt->vclock) {
    t->born = corio__burst(rt);
    t->fresh = 1;
  }
  /* before the task is linked anywhere: a memory error it raises leaves
  ** no task that its scope would wait for (only its slot, pinned until
  ** the runtime is freed) */
  spawn_site(rt, L, t);
  if (parent != NULL) {
    parent->nchildren++;
    corio_list_push(&parent->children, &t->sibling);
  }
  rt->ntasks++;
  corio__ready(rt, t, NULL);
  return t;
}

/* The definition site of the task's function ("file.lua:12"), found on
** its thread: the function itself while pending, the bottom frame once
** running. 0 if unknown (ended, or corio's own code at the bottom). */
static int def_site(corio_rt *rt, lua_State *L, corio_task *t, char *buf,
                    size_t len) {
  lua_Debug ar;
  lua_State *co = t->co;
  int level = 0;
  if (co == NULL || t->in_defers) return 0;
  if (t->status == CORIO_PENDING) {
    if (lua_gettop(co) < 1 || !lua_isfunction(co, 1)) return 0;
    lua_pushvalue(co, 1);
    lua_xmove(co, L, 1);
    if (!lua_getinfo(L, ">S", &ar)) return 0;
  } else {
    while (lua_getstack(co, level + 1, &ar)) level++;
    if (!lua_getstack(co, level, &ar) || !lua_getinfo(co, "S", &ar))
      return 0;
  }
  if (ar.linedefined <= 0 || corio__is_own_src(rt, ar.source)) return 0;
  snprintf(buf, len, "%s:%d", ar.short_src, ar.linedefined);
  return 1;
}

/* Task names live in a weak-keyed table (rt->names), keyed by the Task
** userdata, so that a name goes when its task is collected. Was: a ref
** that nothing dropped, so every task named by the user, or whose
** default name an error, a join of its Cancelled or tostring made, kept
** a ref slot and its string until the runtime was freed.
** [-0, +(0|1)] Push the task's userdata: the one at index ud if not 0,
** else the one its anchor slot pins while it lives; 0 if neither. */
static int push_task_ud(corio_rt *rt, lua_State *L, corio_task *t, int ud) {
  if (ud != 0) {
    lua_pushvalue(L, ud);
    return 1;
  }
  if (t->slot < 0) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  lua_rawgeti(L, -1, TASK_UD(t->slot));
  lua_remove(L, -2);
  return 1;
}

/* [-1, +0] Make the string on top the name of t, whose userdata is at ud
** (or 0: found as push_task_ud says). */
void corio__task_set_name(corio_rt *rt, lua_State *L, corio_task *t,
                          int ud) {
  if (ud < 0) ud = lua_gettop(L) + ud + 1;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->names);   /* [name names] */
  if (!push_task_ud(rt, L, t, ud)) {
    lua_pop(L, 2);
    return;
  }
  lua_pushvalue(L, -3);                            /* [name names ud name] */
  lua_rawset(L, -3);
  lua_pop(L, 2);
  t->named = 1;
}

/* [-0, +1] The task's name: the one set by the user, else "task <id>"
** with the definition site of its function, e.g. "task 5 (app.lua:12)".
** A default name is kept once made, so it outlives the task's thread
** (for whoever still holds the Task: ud, or 0 as push_task_ud says). */
void corio__task_name_at(corio_rt *rt, lua_State *L, corio_task *t, int ud) {
  char site[256];
  if (ud < 0) ud = lua_gettop(L) + ud + 1;
  if (t->named) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, rt->names);   /* [names] */
    if (push_task_ud(rt, L, t, ud)) {
      lua_rawget(L, -2);                             /* [names name] */
      lua_remove(L, -2);
      if (!lua_isnil(L, -1)) return;
    }
    lua_pop(L, 1);
  }
  if (def_site(rt, L, t, site, sizeof(site))) {
    lua_pushfstring(L, "task %d (%s)", (int)t->id, site);
    lua_pushvalue(L, -1);
    corio__task_set_name(rt, L, t, ud);
  } else {
    lua_pushfstring(L, "task %d", (int)t->id);
  }
}

void corio__task_name(corio_rt *rt, lua_State *L, corio_task *t) {
  corio__task_name_at(rt, L, t, 0);
}

/* Move the deferred functions of s, still open at the end of t's body,
** to the task's own list, after its first base_n, before those of scopes
** moved earlier (inner ones): the defer thread runs them newest first, so
** inner scopes' functions run before outer ones', as their ends would. */
static void move_defers(corio_rt *rt, corio_task *t, corio_scope *s,
                        int base_n) {
  lua_State *L = rt->L;
  int n, m, i;
  corio_xscope *x = corio_container_of(s, corio_xscope, s);
  corio_tside *sd;
  if (x->defers == LUA_NOREF) return;
  sd = corio__task_side(rt, t);   /* stays put */
  if (sd->defers == LUA_NOREF) {
    lua_createtable(L, 2, 0);
    sd->defers = corio__ref(rt, L);
  }
  corio__getref(rt, L, sd->defers);
  corio__getref(rt, L, x->defers);
  corio__unref(rt, L, x->defers);
  x->defers = LUA_NOREF;
  n = (int)lua_objlen(L, -2);
  m = (int)lua_objlen(L, -1);
  for (i = n; i > base_n; i--) {
    lua_rawgeti(L, -2, i);
    lua_rawseti(L, -3, i + m);
  }
  for (i = 1; i <= m; i++) {
    lua_rawgeti(L, -1, i);
    lua_rawseti(L, -3, base_n + i);
  }
  lua_pop(L, 2);
}

/* The body ended inside scopes it never left (their exit raised, e.g. a
** scope waited for its tasks inside a C call boundary): close them here.
** Their timers stop, and their live children become children of the
** task's own body, which then waits for them, so nothing is orphaned;
** their deferred functions run with the task's own (move_defers).
** Returns whether one of them was entered by another coroutine (one that
** yielded out of it and was resumed by no corio wrapper, e.g. through a
** coroutine.resume saved before corio was loaded): abandoned. */
static int unwind_scopes(corio_rt *rt, corio_task *t) {
  int base_n = 0, foreign = 0;
  corio_tside *sd = corio__task_side_get(rt, t);
  if (sd != NULL && sd->defers != LUA_NOREF) {
    corio__getref(rt, rt->L, sd->defers);
    base_n = (int)lua_objlen(rt->L, -1);
    lua_pop(rt->L, 1);
  }
  while (t->cur != &t->root) {
    corio_scope *s = t->cur;
    corio_xscope *x = corio_container_of(s, corio_xscope, s);
    foreign |= s->foreign;
    move_defers(rt, t, s, base_n);
    corio__scope_hand_over(rt, s, &t->root, 0);
    corio__timer_stop(rt, &x->deadline);
    corio__scope_leave(rt, t, s);
    corio__unref(rt, rt->L, x->ref);
    x->ref = LUA_NOREF;
  }
  return foreign;
}

/* As init.lua's close_open says of a scope body (ABANDONED there). */
static const char abandoned_msg[] =
    "a task body ended while a scope entered inside it by another "
    "coroutine was still open (a coroutine yielded out of that scope's "
    "body and was abandoned, and no corio wrapper resumed it: a "
    "coroutine.resume saved before corio was loaded?); the inner scope "
    "was closed and its deferred functions ran";

/* In corio__pcall: [err] -> [] the error raised in t's body (the top),
** made the boundary error and recorded in t's root scope. */
static void wrap_add(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *t = (corio_task *)ud;
  corio__wrap_error(rt, L, t->co, t);
  corio__scope_add_error(rt, L, &t->root, -1);
}

/* In corio__pcall: [x] -> [] the error of a task whose body ended with a
** scope of another coroutine still open, recorded. */
static void abandoned_add(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *t = (corio_task *)ud;
  corio__push_error(L, "error", abandoned_msg);
  corio__scope_add_error(rt, L, &t->root, -1);
}

/* In corio__pcall: [err] -> [] err recorded as it is. */
static void plain_add(corio_rt *rt, lua_State *L, void *ud) {
  corio__scope_add_error(rt, L, &((corio_task *)ud)->root, -1);
}

/* [-1, +0] Record the value on top as an error of t's body, through fn in
** a protected call (this runs in the scheduler). Without memory for
** that, LuaJIT's "not enough memory" is recorded instead (with no
** memory even for a list of errors, the shared one: corio__scope_oom). */
static void record_error(corio_rt *rt, lua_State *L, corio_task *t,
                         corio_pfn fn) {
  int i, st;
  if (corio__pcall(rt, L, 1, 0, fn, t) == 0) return;
  /* The error of the failed attempt is recorded instead. One that is not
  ** a memory error came from a __gc metamethod the allocation ran
  ** (LuaJIT passes its error on, the finaliser done): the next attempt
  ** runs the next ones, so attempts go on (each with the latest error)
  ** while they fail that way, up to a bound. */
  for (i = 0; i < 1000; i++) {
    if ((st = corio__pcall(rt, L, 1, 0, plain_add, t)) == 0) return;
    if (st == LUA_ERRMEM) break;
  }
  lua_pop(L, 1);
  corio__scope_oom(rt, &t->root);
}

void corio__task_keep_failed(corio_rt *rt, lua_State *L, corio_task *t) {
  /* no memory to keep its results: the task fails with that error */
  t->rtype = CORIO_R_NONE;
  record_error(rt, L, t, plain_add);
  corio__scope_cancel(rt, &t->root);
  corio__task_try_finish(rt, t);
}

/* The body (or the task's defer thread) returned or raised. For a body
** that returned, its results are on t->co. */
void corio__task_body_ended(corio_rt *rt, corio_task *t, int status) {
  lua_State *co = t->co;
  lua_State *L = rt->L;
  int abandoned = 0;
  if (t->cur != &t->root) abandoned = unwind_scopes(rt, t);
  if (t->in_defers) {
    /* The defer thread ended; handler errors were recorded by it. A
    ** function a handler deferred is in root.defers again: try_finish
    ** runs it on a new defer thread (after the tasks handlers spawned). */
    t->in_defers = 0;
    t->state = CORIO_ST_ENDING;
    if (status != 0) {
      /* the defer thread itself raised (no memory for its own work, or
      ** for recording a handler's error): that is the task's error */
      lua_xmove(co, L, 1);
      record_error(rt, L, t, wrap_add);
      corio__scope_cancel(rt, &t->root);
    }
    corio__task_try_finish(rt, t);
    return;
  }
  t->state = CORIO_ST_ENDING;
  if (status == 0) {
    int n = lua_gettop(co);
    if (n == 0) {
      t->rtype = CORIO_R_NONE;
    } else if (n == 1 && lua_type(co, 1) == LUA_TNUMBER) {
      t->rtype = CORIO_R_NUM;
      t->rnum = lua_tonumber(co, 1);
    } else if (n == 1 && lua_type(co, 1) == LUA_TBOOLEAN) {
      t->rtype = CORIO_R_BOOL;
      t->rnum = lua_toboolean(co, 1);
    } else if (n == 1 && lua_isnil(co, 1)) {
      t->rtype = CORIO_R_NIL;
    } else {
      /* the dead thread's stack holds the results (task_keep) */
      t->rtype = CORIO_R_TABLE;
      lua_pushthread(co);
      lua_xmove(co, L, 1);
      /* without memory, the step's protected call catches the error and
      ** calls corio__task_keep_failed (a pcall here would cost ~500
      ** instructions a task) */
      rt->oom_task = t;
      rt->oom_site = CORIO_SITE_KEEP;
      task_keep(rt, L, t);
      rt->oom_site = CORIO_SITE_NONE;
    }
  } else if (corio__is_error(co, -1, "cancelled") && t->root.eff) {
    /* Cancelled by its own scope chain: the task ends "cancelled", and
    ** that is not an error of its scope (rule 2). A Cancelled raised in a
    ** task nobody cancelled (e.g. from joining a cancelled task) is an
    ** ordinary error below. */
    t->root.caught = 1;
  } else {
    lua_xmove(co, L, 1);
    record_error(rt, L, t, wrap_add);
    corio__scope_cancel(rt, &t->root);
  }
  if (abandoned && status == 0) {
    /* the task fails, as a scope around the abandoned one would */
    lua_pushnil(L);
    record_error(rt, L, t, abandoned_add);
    corio__scope_cancel(rt, &t->root);
  }
  corio__task_try_finish(rt, t);
}

/* [-1, +0] Keep the value on top as what the ended task t gives its
** joiners (a thread holding its results, or its error): in {value}, the
** environment of its userdata, so that it goes with the Task. Was: a
** weak-keyed table of the runtime's, results[Task] = value; LuaJIT's weak
** keys are no ephemerons, so a value that refers to its Task (a task that
** returned corio.current(), or raised an error holding it) kept the entry,
** the Task and all it refers to for good. */
static void task_keep(corio_rt *rt, lua_State *L, corio_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  lua_rawgeti(L, -1, TASK_UD(t->slot));   /* [v A ud] */
  lua_createtable(L, 1, 0);
  lua_pushvalue(L, -4);
  lua_rawseti(L, -2, 1);
  lua_setfenv(L, -2);
  lua_pop(L, 3);
}

/* [-0, +1] What task_keep kept for the Task at ud (an index > 0). */
static void task_kept(lua_State *L, int ud) {
  lua_getfenv(L, ud);
  lua_rawgeti(L, -1, 1);
  lua_remove(L, -2);
}

/* [-0, +n] Push (true, results...) or (false, err) of an ended task whose
** userdata is at ud. Returns n. */
int corio__task_push_results(corio_rt *rt, lua_State *L, corio_task *t,
                             int ud) {
  ud = ud < 0 ? lua_gettop(L) + ud + 1 : ud;
  lua_checkstack(L, 4);
  switch (t->status) {
  case CORIO_CANCELLED:
    lua_pushboolean(L, 0);
    corio__task_name_at(rt, L, t, ud);
    lua_pushfstring(L, "%s was cancelled", lua_tostring(L, -1));
    lua_remove(L, -2);
    corio__push_cancelled(L, L, lua_tostring(L, -1));
    lua_remove(L, -2);
    return 2;
  case CORIO_FAILED:
    lua_pushboolean(L, 0);
    task_kept(L, ud);
    return 2;
  default:
    break;
  }
  lua_pushboolean(L, 1);
  switch (t->rtype) {
  case CORIO_R_NONE: return 1;
  case CORIO_R_NIL: lua_pushnil(L); return 2;
  case CORIO_R_BOOL: lua_pushboolean(L, t->rnum != 0); return 2;
  case CORIO_R_NUM: lua_pushnumber(L, t->rnum); return 2;
  default: {
    lua_State *co;
    int i, n;
    task_kept(L, ud);
    co = lua_tothread(L, -1);
    lua_pop(L, 1);
    if (co == NULL) return 1;
    n = lua_gettop(co);
    if (!lua_checkstack(L, n + 2)) luaL_error(L, "too many results");
    for (i = 1; i <= n; i++) {
      lua_pushvalue(co, i);
      lua_xmove(co, L, 1);
    }
    return n + 1;
  }
  }
}

/* In corio__pcall: [] -> [d] what start_defers allocates: the new thread
** d (and the holder of a scalar result). */
static void defers_p(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *t = (corio_task *)ud;
  if (t->rtype == CORIO_R_NUM || t->rtype == CORIO_R_BOOL ||
      t->rtype == CORIO_R_NIL) {
    /* rnum shares its storage with wait_obj, which a deferred function
    ** that blocks (in a shield) would overwrite: keep the result on a
    ** holder thread instead, as multiple results are kept. */
    lua_State *h = lua_newthread(L);
    if (t->rtype == CORIO_R_NUM) lua_pushnumber(h, t->rnum);
    else if (t->rtype == CORIO_R_BOOL) lua_pushboolean(h, t->rnum != 0);
    else lua_pushnil(h);
    task_keep(rt, L, t);
    t->rtype = CORIO_R_TABLE;
  }
  (void)lua_newthread(L);
}

/* Start the task's root defers on a fresh thread of the same task. What
** allocates runs in a protected call (this runs in the scheduler):
** without memory for it, the deferred functions are dropped unrun and
** the task fails with LuaJIT's "not enough memory". Returns 0 once
** started, -1 if dropped (the caller finalizes the task). */
static int start_defers(corio_rt *rt, corio_task *t) {
  lua_State *L = rt->L;
  lua_State *d;
  corio_tside *sd = corio__task_side_get(rt, t);
  if (corio__pcall(rt, L, 0, 1, defers_p, t) != 0) {
    corio__unref(rt, L, sd->defers);
    sd->defers = LUA_NOREF;
    record_error(rt, L, t, plain_add);
    return -1;
  }
  d = lua_tothread(L, -1);
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  lua_insert(L, -2);
  lua_rawseti(L, -2, TASK_CO(t->slot));   /* pins d instead of the body */
  lua_pop(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.run_defers");
  corio__getref(rt, L, sd->defers);
  corio__unref(rt, L, sd->defers);
  sd->defers = LUA_NOREF;
  lua_xmove(L, d, 2);
  t->co = d;
  t->in_defers = 1;
  t->status = CORIO_PENDING;   /* resume passes the function's args */
  corio__ready(rt, t, NULL);
  return 0;
}

/* In corio__pcall: [err] -> [] err is what t's joiners get, and an error
** of t's parent scope. */
static void keep_error(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *t = (corio_task *)ud;
  lua_pushvalue(L, -1);
  task_keep(rt, L, t);
  if (t->root.parent != NULL)
    corio__scope_add_error(rt, L, t->root.parent, -1);
}

/* In corio__pcall: [] -> [] the errors recorded in t's root scope: the
** first (given the list as .errors if there are more) is its error. */
static void keep_errors(corio_rt *rt, lua_State *L, void *ud) {
  corio_task *t = (corio_task *)ud;
  int n;
  corio__getref(rt, L, corio__task_side_get(rt, t)->errs);
  n = (int)lua_objlen(L, -1);
  lua_rawgeti(L, -1, 1);                 /* the first error */
  if (n > 1 && lua_istable(L, -1)) {     /* (not a bare memory error) */
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "errors");
  }
  keep_error(rt, L, t);
}

/* In corio__pcall: [ud] -> [results...] of the ended task t. */
static void push_results_p(corio_rt *rt, lua_State *L, void *ud) {
  corio__task_push_results(rt, L, (corio_task *)ud, 1);
  lua_remove(L, 1);
}

/* corio__task_push_results (ud > 0) in a protected call, for the cases
** that allocate (a cancelled task's Cancelled): without memory, (false,
** "not enough memory"). */
int corio__push_results_safe(corio_rt *rt, lua_State *L, corio_task *t,
                             int ud) {
  int top = lua_gettop(L);
  lua_pushvalue(L, ud);
  if (corio__pcall(rt, L, 1, LUA_MULTRET, push_results_p, t) != 0) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
  }
  return lua_gettop(L) - top;
}
#define push_results_safe corio__push_results_safe

/* The task's outcome is final: tell joiners and the parent scope, drop
** the pins. Returns the parent task when this was the last child its
** ended body was waiting for (to finish next), else NULL. */
static corio_task *finalize(corio_rt *rt, corio_task *t) {
  lua_State *L = rt->L;
  corio_scope *parent = t->root.parent;
  corio_tside *sd = corio__task_side_get(rt, t);
  int ud = 0, anchor, top = lua_gettop(L);
  uint32_t left;

  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  anchor = top + 1;
  if (sd != NULL && (sd->errs != LUA_NOREF || sd->joiners != NULL)) {
    lua_rawgeti(L, anchor, TASK_UD(t->slot));
    ud = anchor + 1;
  }
  if (sd != NULL && sd->errs != LUA_NOREF) {
    t->status = CORIO_FAILED;
    /* protected (the scheduler runs this): without memory, the task's
    ** error is LuaJIT's "not enough memory" */
    if (corio__pcall(rt, L, 0, 0, keep_errors, t) != 0 &&
        corio__pcall(rt, L, 1, 0, keep_error, t) != 0) {
      /* without memory even for that: the shared {"not enough memory"}
      ** is what task_keep would have made */
      lua_pop(L, 1);
      lua_rawgeti(L, anchor, TASK_UD(t->slot));
      corio__getref(rt, L, rt->oom_ref);
      lua_setfenv(L, -2);
      lua_pop(L, 1);
      if (parent != NULL) corio__scope_oom(rt, parent);
    }
    if (parent != NULL) corio__scope_cancel(rt, parent);   /* rule 2 */
    corio__unref(rt, L, sd->errs);
    sd->errs = LUA_NOREF;
  } else if (t->root.caught || (t->root.eff && t->root.child_cancelled)) {
    /* Cancelled (task:cancel() or its scope) and absorbed; or its body
    ** returned but the cancel cut its children short: as a scope whose
    ** deadline cut children it waited for (bindings/core.c scope_exit),
    ** that cancel counts as caught, and join raises Cancelled instead of
    ** returning results as if the children had finished. */
    t->status = CORIO_CANCELLED;
    if (parent != NULL) parent->child_cancelled = 1;
  } else {
    t->status = CORIO_DONE;
  }
  if (t->nlocks > 0) corio__locks_release_dead(rt, L, t);
  if (sd != NULL) {
    corio_link *l;
    while ((l = corio_ring_shift(&sd->joiners)) != NULL) {
      corio_task *j = corio_container_of(l, corio_task, u.wait);
      int n;
      j->abort = NULL;
      /* made on L and moved: an allocation on the joiner's suspended
      ** thread can run a __gc finaliser there, which wrecks it if it
      ** raises */
      n = t->status == CORIO_CANCELLED ? push_results_safe(rt, L, t, ud)
                                       : corio__task_push_results(rt, L, t, ud);
      lua_xmove(L, j->co, n);
      corio__ready(rt, j, NULL);
    }
    t->side = 0;   /* its slot goes: the entry is free */
    t->cpwatch = 0;
  }
  t->state = CORIO_ST_ENDED;
  corio_list_remove(&t->sibling);
  lua_pushnil(L);
  lua_rawseti(L, anchor, TASK_UD(t->slot));
  lua_pushnil(L);
  lua_rawseti(L, anchor, TASK_CO(t->slot));
  corio__slot_free(rt, t->slot);
  t->slot = -1;
  t->co = NULL;
  t->wait_L = NULL;
  rt->ntasks--;
  lua_settop(L, top);
  if (parent == NULL) return NULL;
  /* the count kept in a register: a load of the bit-fields that spans the
  ** count just stored stalls (store forwarding fails), seen on W1 */
  left = --parent->nchildren;
  if (left != 0 || !parent->waiting) return NULL;
  parent->waiting = 0;
  if (parent->kind == CORIO_SCOPE_TASK)
    return corio_container_of(parent, corio_task, root);
  {
    corio_task *o = corio_container_of(parent, corio_xscope, s)->owner;
    o->abort = NULL;
    corio__ready(rt, o, corio__deliver_true);
  }
  return NULL;
}

void corio__task_try_finish(corio_rt *rt, corio_task *t) {
  while (t != NULL) {
    if (t->root.nchildren > 0) {
      t->root.waiting = 1;
      return;
    }
    if (t->side && corio__task_side_get(rt, t)->defers != LUA_NOREF &&
        start_defers(rt, t) == 0)
      return;
    t = finalize(rt, t);
  }
}

int corio__cancel_task(corio_rt *rt, corio_task *t) {
  if (t->state == CORIO_ST_ENDED) return 0;
  corio__scope_cancel(rt, &t->root);
  return 0;
}

/* Where t waits: "file:line" of the first frame outside corio's own
** files, in the thread that suspended. Returns 0 if nothing is known. */
int corio__where(corio_rt *rt, corio_task *t, char *buf, size_t len) {
  lua_State *w = t->wait_L != NULL ? t->wait_L : t->co;
  lua_Debug ar;
  int level;
  if (w == NULL || t->state == CORIO_ST_ENDED) return 0;
  for (level = 0; lua_getstack(w, level, &ar); level++) {
    if (!lua_getinfo(w, "Sl", &ar)) break;
    if (ar.currentline > 0 && !corio__is_own_src(rt, ar.source)) {
      snprintf(buf, len, "%s:%d", ar.short_src, ar.currentline);
      return 1;
    }
  }
  return 0;
}
