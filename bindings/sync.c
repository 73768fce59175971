/*
** sync.c: semaphores, locks and events for Lua. FIFO-fair by direct
** hand-off: release gives the permit (or the lock) to the oldest waiter,
** so a task arriving later cannot overtake it (rule 8). acquire and wait
** return `true` or `false, err` and are wrapped by init.lua; release, set
** and clear never block and never raise Cancelled.
*/
#include <string.h>

#include "bindings.h"

/* ---- semaphore ---------------------------------------------------- */

static corio_sem *check_sem(lua_State *L) {
  return CORIO_CHECK(L, 1, corio_sem, CORIO_MAGIC_SEM, "corio.Semaphore");
}

/* The most permits a semaphore counts: a double holds every integer up to
** 2^53 exactly; past it count++ and count-- would lose or invent permits. */
#define SEM_MAX 9007199254740992.0 /* 2^53 */

static int l_sem_new(lua_State *L) {
  corio_sem *s;
  double n = 1;  /* none or nil: the default, as corio.channel(nil) */
  if (lua_type(L, 1) == LUA_TNUMBER) n = lua_tonumber(L, 1);
  else if (!lua_isnoneornil(L, 1))
    return corio__argerror(L, 1, 1, "semaphore",
                           lua_pushfstring(L, "number expected, got %s",
                                           luaL_typename(L, 1)));
  if (!(n >= 0 && n <= SEM_MAX) || n != floor(n))
    return corio__argerror(L, 1, 1, "semaphore",
                           lua_pushfstring(L, "non-negative integer "
                                           "expected, got %s",
                                           lua_tostring(L, 1)));
  s = (corio_sem *)lua_newuserdata(L, sizeof(*s));
  s->magic = CORIO_MAGIC_SEM;
  s->count = n == 0 ? 0 : n;  /* -0 showed as available=-0 */
  corio_list_init(&s->waiters);
  luaL_getmetatable(L, "corio.Semaphore");
  lua_setmetatable(L, -2);
  return 1;
}

static int l_sem_acquire(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_sem *s = check_sem(L);
  corio_task *t;
  int n = corio__enter(L, rt, &t, "sem acquire");
  if (n != CORIO_GO) return n;
  if (s->count > 0 && corio_list_empty(&s->waiters)) {
    s->count--;
    lua_pushboolean(L, 1);
    return corio__fast(rt, L, t, 1);
  }
  corio_list_push(&s->waiters, &t->u.wait);
  return corio__suspend(rt, L, t, corio__abort_wait, "semaphore acquire", s);
}

static int l_sem_release(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_sem *s = check_sem(L);
  corio_task *w;
  if (s->count >= SEM_MAX && corio_list_empty(&s->waiters)) {
    luaL_where(L, 1);
    lua_pushliteral(L, "semaphore:release(): the count cannot exceed 2^53 "
                       "(9007199254740992) permits");
    lua_concat(L, 2);
    return lua_error(L);
  }
  w = corio__wq_shift(&s->waiters);
  if (w != NULL) corio__ready(rt, w, corio__deliver_true);
  else s->count++;
  return 0;
}

/* FFI fast paths (init.lua): acquire when a permit is free and nobody
** waits; release always (it never blocks). 0: take the C function. */
static int ffi_sem_acquire(corio_rt *rt, void *p) {
  corio_sem *s = p;
  corio_task *me;
  if (s == NULL || s->magic != CORIO_MAGIC_SEM) return 0;
  if (!(s->count > 0 && corio_list_empty(&s->waiters))) return 0;
  if ((me = corio__ffi_task(rt)) == NULL) return 0;
  corio__ffi_done(rt, me);
  s->count--;
  return 1;
}

static int ffi_sem_release(corio_rt *rt, void *p) {
  corio_sem *s = p;
  corio_task *w;
  if (s == NULL || s->magic != CORIO_MAGIC_SEM) return 0;
  if (s->count >= SEM_MAX && corio_list_empty(&s->waiters)) return 0;
  w = corio__wq_shift(&s->waiters);
  if (w != NULL) corio__ready(rt, w, corio__deliver_true);
  else s->count++;
  return 1;
}

static int l_sem_index(lua_State *L) {
  corio_sem *s = check_sem(L);
  const char *k = lua_tostring(L, 2);
  if (k != NULL && strcmp(k, "available") == 0) {
    lua_pushnumber(L, s->count);
    return 1;
  }
  return corio__method(L);
}

static int l_sem_tostring(lua_State *L) {
  corio_sem *s = check_sem(L);
  lua_pushfstring(L, "corio.Semaphore(available=%f)", (lua_Number)s->count);
  return 1;
}

/* ---- lock ----------------------------------------------------------- */

static corio_lock *check_lock(lua_State *L) {
  return CORIO_CHECK(L, 1, corio_lock, CORIO_MAGIC_LOCK, "corio.Lock");
}

static int l_lock_new(lua_State *L) {
  corio_lock *k = (corio_lock *)lua_newuserdata(L, sizeof(*k));
  memset(k, 0, sizeof(*k));
  k->magic = CORIO_MAGIC_LOCK;
  corio_list_init(&k->waiters);
  corio_list_init(&k->held);
  k->broken_ref = LUA_NOREF;
  luaL_getmetatable(L, "corio.Lock");
  lua_setmetatable(L, -2);
  return 1;
}

static int push_broken(corio_rt *rt, lua_State *L, corio_lock *k) {
  lua_pushboolean(L, 0);
  corio__getref(rt, L, k->broken_ref);
  corio__push_error(L, "broken", lua_tostring(L, -1));
  lua_remove(L, -2);
  return 2;
}

static int l_lock_acquire(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_lock *k = check_lock(L);
  corio_task *t;
  int n = corio__enter(L, rt, &t, "lock acquire");
  if (n != CORIO_GO) return n;
  if (k->broken_ref != LUA_NOREF) return push_broken(rt, L, k);
  if (k->owner == t) {
    luaL_where(L, 2);
    lua_pushliteral(L, "lock:acquire(): the lock is already held by this "
                       "task (corio locks are not re-entrant)");
    lua_concat(L, 2);
    return lua_error(L);
  }
  if (k->owner == NULL && corio_list_empty(&k->waiters)) {
    corio__lock_hold(rt, k, t);
    lua_pushboolean(L, 1);
    return corio__fast(rt, L, t, 1);
  }
  corio_list_push(&k->waiters, &t->u.wait);
  return corio__suspend(rt, L, t, corio__abort_wait, "lock acquire", k);
}

static int l_lock_release(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_lock *k = check_lock(L);
  corio_task *w;
  if (k->owner == NULL || k->owner != rt->current) {
    luaL_where(L, 1);
    if (k->owner == NULL) {
      lua_pushliteral(L, "lock:release(): the lock is not held");
    } else {
      corio__task_name(rt, L, k->owner);
      lua_pushfstring(L, "lock:release(): the lock is held by %s, not by "
                      "the calling task", lua_tostring(L, -1));
      lua_remove(L, -2);
    }
    lua_concat(L, 2);
    return lua_error(L);
  }
  corio__lock_unlink(k);
  w = corio__wq_shift(&k->waiters);
  if (w != NULL) {
    corio__lock_hold(rt, k, w);
    corio__ready(rt, w, corio__deliver_true);
  }
  return 0;
}

/* FFI fast paths (init.lua): acquire a free lock nobody waits for;
** release by its owner. Every other case (broken, re-entry, not the
** owner) takes the C function, which raises. */
static int ffi_lock_acquire(corio_rt *rt, void *p) {
  corio_lock *k = p;
  corio_task *me;
  if (k == NULL || k->magic != CORIO_MAGIC_LOCK || k->owner != NULL ||
      k->broken_ref != LUA_NOREF || !corio_list_empty(&k->waiters))
    return 0;
  if ((me = corio__ffi_task(rt)) == NULL) return 0;
  corio__ffi_done(rt, me);
  corio__lock_hold(rt, k, me);
  return 1;
}

static int ffi_lock_release(corio_rt *rt, void *p) {
  corio_lock *k = p;
  corio_task *w;
  if (k == NULL || k->magic != CORIO_MAGIC_LOCK || k->owner == NULL ||
      k->owner != rt->current)
    return 0;
  corio__lock_unlink(k);
  w = corio__wq_shift(&k->waiters);
  if (w != NULL) {
    corio__lock_hold(rt, k, w);
    corio__ready(rt, w, corio__deliver_true);
  }
  return 1;
}

static int l_lock_locked(lua_State *L) {
  corio_lock *k = check_lock(L);
  lua_pushboolean(L, k->owner != NULL);
  return 1;
}

static int l_lock_tostring(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_lock *k = check_lock(L);
  if (k->broken_ref != LUA_NOREF) {
    lua_pushliteral(L, "corio.Lock(broken)");
  } else if (k->owner != NULL) {
    corio__task_name(rt, L, k->owner);
    lua_pushfstring(L, "corio.Lock(held by %s)", lua_tostring(L, -1));
  } else {
    lua_pushliteral(L, "corio.Lock(free)");
  }
  return 1;
}

static int l_event_tostring(lua_State *L);

static int l_lock_gc(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_lock *k = check_lock(L);
  /* A lock is collected only when no task refers to it, so none holds it
  ** (the holder's task pins nothing of the lock, though: unlink). */
  corio__lock_unlink(k);
  if (k->broken_ref != LUA_NOREF && corio__rt(L) == rt)
    corio__unref(rt, L, k->broken_ref);
  k->broken_ref = LUA_NOREF;
  return 0;
}

/* ---- event ---------------------------------------------------------- */

static corio_event *check_event(lua_State *L) {
  return CORIO_CHECK(L, 1, corio_event, CORIO_MAGIC_EVENT, "corio.Event");
}

static int l_event_new(lua_State *L) {
  corio_event *e = (corio_event *)lua_newuserdata(L, sizeof(*e));
  e->magic = CORIO_MAGIC_EVENT;
  e->set = 0;
  corio_list_init(&e->waiters);
  luaL_getmetatable(L, "corio.Event");
  lua_setmetatable(L, -2);
  return 1;
}

static int l_event_wait(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_event *e = check_event(L);
  corio_task *t;
  int n = corio__enter(L, rt, &t, "wait");
  if (n != CORIO_GO) return n;
  if (e->set) {
    lua_pushboolean(L, 1);
    return corio__fast(rt, L, t, 1);
  }
  corio_list_push(&e->waiters, &t->u.wait);
  return corio__suspend(rt, L, t, corio__abort_wait, "event wait", e);
}

/* FFI fast path (init.lua): wait on an event that is set. */
static int ffi_event_wait(corio_rt *rt, void *p) {
  corio_event *e = p;
  corio_task *me;
  if (e == NULL || e->magic != CORIO_MAGIC_EVENT || !e->set) return 0;
  if ((me = corio__ffi_task(rt)) == NULL) return 0;
  corio__ffi_done(rt, me);
  return 1;
}

static int l_event_set(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_event *e = check_event(L);
  e->set = 1;
  corio__wq_wake_all(rt, &e->waiters, corio__deliver_true);
  return 0;
}

static int l_event_clear(lua_State *L) {
  check_event(L)->set = 0;
  return 0;
}

static int l_event_tostring(lua_State *L) {
  lua_pushstring(L, check_event(L)->set ? "corio.Event(set)"
                                        : "corio.Event(clear)");
  return 1;
}

static int l_event_is_set(lua_State *L) {
  lua_pushboolean(L, check_event(L)->set);
  return 1;
}

/* ---- module ------------------------------------------------------- */

static void meta(lua_State *L, corio_rt *rt, const char *name,
                 lua_CFunction index, const corio_reg *methods,
                 const corio_reg *extra) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  corio__register(L, rt, -1, methods);
  lua_setfield(L, -2, "methods");
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, index, 1);
  lua_setfield(L, -2, "__index");
  if (extra != NULL) corio__register(L, rt, -1, extra);
  lua_pushliteral(L, "corio");
  lua_setfield(L, -2, "__metatable");
  lua_pop(L, 1);
}

int luaopen_corio_sync(lua_State *L) {
  static const corio_reg sem_methods[] = {{"acquire", l_sem_acquire},
                                          {"release", l_sem_release},
                                          {NULL, NULL}};
  static const corio_reg sem_extra[] = {{"__tostring", l_sem_tostring},
                                        {NULL, NULL}};
  static const corio_reg lock_methods[] = {{"acquire", l_lock_acquire},
                                           {"release", l_lock_release},
                                           {"locked", l_lock_locked},
                                           {NULL, NULL}};
  static const corio_reg lock_extra[] = {{"__gc", l_lock_gc},
                                         {"__tostring", l_lock_tostring},
                                         {NULL, NULL}};
  static const corio_reg event_extra[] = {{"__tostring", l_event_tostring},
                                          {NULL, NULL}};
  static const corio_reg event_methods[] = {{"wait", l_event_wait},
                                            {"set", l_event_set},
                                            {"clear", l_event_clear},
                                            {"is_set", l_event_is_set},
                                            {NULL, NULL}};
  static const corio_reg funcs[] = {{"semaphore", l_sem_new},
                                    {"lock", l_lock_new},
                                    {"event", l_event_new},
                                    {NULL, NULL}};
  corio_rt *rt = corio__rt(L);
  meta(L, rt, "corio.Semaphore", l_sem_index, sem_methods, sem_extra);
  meta(L, rt, "corio.Lock", corio__method, lock_methods, lock_extra);
  meta(L, rt, "corio.Event", corio__method, event_methods, event_extra);
  lua_newtable(L);
  corio__register(L, rt, -1, funcs);
  lua_pushlightuserdata(L, (void *)ffi_sem_acquire);
  lua_setfield(L, -2, "ffi_sem_acquire");
  lua_pushlightuserdata(L, (void *)ffi_sem_release);
  lua_setfield(L, -2, "ffi_sem_release");
  lua_pushlightuserdata(L, (void *)ffi_event_wait);
  lua_setfield(L, -2, "ffi_event_wait");
  lua_pushlightuserdata(L, (void *)ffi_lock_acquire);
  lua_setfield(L, -2, "ffi_lock_acquire");
  lua_pushlightuserdata(L, (void *)ffi_lock_release);
  lua_setfield(L, -2, "ffi_lock_release");
  return 1;
}
