/*
** common.c: the helpers declared in bindings.h.
*/
#include <string.h>

#include "bindings.h"

char corio__noloop;

void corio__register(lua_State *L, corio_rt *rt, int idx,
                     const corio_reg *r) {
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  for (; r->name != NULL; r++) {
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, r->fn, 1);
    lua_setfield(L, idx, r->name);
  }
}

int corio__argerror(lua_State *L, int level, int n, const char *fname,
                    const char *msg) {
  luaL_where(L, level);
  lua_pushfstring(L, "bad argument #%d to '%s' (%s)", n, fname, msg);
  lua_concat(L, 2);
  return lua_error(L);
}

double corio__checkseconds(lua_State *L, int level, int idx, int n,
                           const char *fname) {
  double s;
  if (lua_type(L, idx) != LUA_TNUMBER)
    corio__argerror(L, level, n, fname,
                    lua_pushfstring(L, "number expected, got %s",
                                    luaL_typename(L, idx)));
  s = lua_tonumber(L, idx);
  if (s != s) corio__argerror(L, level, n, fname, "seconds is NaN");
  if (s < 0)
    corio__argerror(L, level, n, fname,
                    lua_pushfstring(L, "seconds must be >= 0, got %f", s));
  return s;
}

/* The blocking calls as their callers write them, for the error of one
** made outside any task while the loop runs (a C host's callback between
** steps, a finaliser): corio__enter's names are short ("send"), and
** "corio.send" named a function that does not exist. */
static const char *const enter_names[][2] = {
    {"send", "channel:send()"},
    {"recv", "channel:recv()"},
    {"join", "task:join()"},
    {"sleep", "corio.sleep"},
    {"sleep_real", "corio.testing.sleep_real"},
    {"yield", "corio.yield"},
    {"checkpoint", "corio.gather, corio.map or corio.first"},
    {"wait_all_tasks_blocked", "corio.testing.wait_all_tasks_blocked"},
    {"sem acquire", "semaphore:acquire()"},
    {"lock acquire", "lock:acquire()"},
    {"wait", "event:wait()"},
    {"to_thread", "corio.to_thread"},
    {"open", "fs.open"},
    {"read", "file:read()"},
    {"write", "file:write()"},
    {"flush", "file:flush()"},
    {"close", "file:close()"},
    {"stat", "fs.stat"},
    {"mkdir", "fs.mkdir"},
    {"remove", "fs.remove"},
    {"rename", "fs.rename"},
    {"scandir", "fs.scandir"},
    {"copy", "fs.copy"},
    {"http request", "corio.http: a request"},
    {"http stream read", "corio.http: a stream read"},
};

int corio__enter(lua_State *L, corio_rt *rt, corio_task **pt,
                 const char *fname) {
  /* Whether the task can suspend here is checked only when it must
  ** (corio__suspend): a fast path inside a C callback is fine. */
  corio_task *t = rt->current;
  if (t == NULL) {
    if (rt->running) {
      const char *who = NULL;
      size_t i;
      for (i = 0; i < sizeof(enter_names) / sizeof(enter_names[0]); i++)
        if (strcmp(enter_names[i][0], fname) == 0) {
          who = enter_names[i][1];
          break;
        }
      if (who == NULL) who = lua_pushfstring(L, "corio.%s", fname);
      lua_pushfstring(L, "%s: called outside any task while the loop is "
                      "running (a blocking call needs a task; from a C "
                      "host's callback, use try_send, set or scope:spawn)",
                      who);
      return lua_error(L);
    }
    lua_pushboolean(L, 0);
    lua_pushlightuserdata(L, CORIO_NOLOOP);
    return 2;
  }
  corio__checkpoint(rt, t);
  if (t->cur->eff) {
    lua_pushboolean(L, 0);
    corio__push_cancelled(L, L, "the task's scope is cancelled");
    return corio__fast(rt, L, t, 2);
  }
  *pt = t;
  return CORIO_GO;
}

void corio__push_task(corio_rt *rt, lua_State *L, corio_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  lua_rawgeti(L, -1, 2 * t->slot + 1);
  lua_remove(L, -2);
}

/* The name of the method running: the C function's, as init.lua noted it
** in the registry's "corio.cnames" when it put a Lua wrapper in its
** place, or its own or its caller's entry in tname's methods table; NULL
** if none. Leaves values on L: only for building an error. */
static const char *method_name(lua_State *L, const char *tname) {
  lua_Debug ar;
  int level, methods;
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.cnames");
  if (lua_istable(L, -1) && lua_getstack(L, 0, &ar) &&
      lua_getinfo(L, "f", &ar)) {
    lua_rawget(L, -2);
    if (lua_type(L, -1) == LUA_TSTRING) return lua_tostring(L, -1);
  }
  luaL_getmetatable(L, tname);
  if (!lua_istable(L, -1)) return NULL;
  lua_getfield(L, -1, "methods");
  if (!lua_istable(L, -1)) return NULL;
  methods = lua_gettop(L);
  for (level = 0; level <= 1; level++) {
    if (!lua_getstack(L, level, &ar) || !lua_getinfo(L, "f", &ar)) break;
    lua_pushnil(L);
    while (lua_next(L, methods)) {
      if (lua_rawequal(L, -1, -3) && lua_type(L, -2) == LUA_TSTRING)
        return lua_tostring(L, -2);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return NULL;
}

/* The error of corio__checkobj (bindings.h), whose hot path is inline. */
void *corio__checkobj_fail(lua_State *L, int idx, const char *tname) {
  const char *got, *m;
  corio_rt *rt;
  lua_Debug ar;
  int level = 1;
  /* Before method_name pushes onto the stack: with no self given, idx
  ** would name what it pushed. */
  got = luaL_typename(L, idx);
  if (idx != 1 || (m = method_name(L, tname)) == NULL) {
    luaL_typerror(L, idx, tname);
    return NULL;
  }
  /* A method called on something else (t.join(x) for t:join()): name it
  ** as the user knows it, at the user's line (past init.lua's wrapper). */
  rt = corio__rt(L);
  while (rt != NULL && lua_getstack(L, level, &ar) &&
         lua_getinfo(L, "S", &ar) &&
         (ar.what[0] == 'C' || corio__is_own_src(rt, ar.source)))
    level++;
  luaL_where(L, level);
  lua_pushfstring(L, "bad self to '%s' (%s expected, got %s; call it as "
                  "obj:%s(...))", m, tname, got, m);
  lua_concat(L, 2);
  lua_error(L);
  return NULL;
}

corio_task *corio__check_task(lua_State *L, int idx) {
  return CORIO_CHECK(L, idx, corio_task, CORIO_MAGIC_TASK, "corio.Task");
}

/* [-0, +1] The method named by index 2 of the object at index 1, from its
** metatable's methods table: the tail of every C __index (init.lua puts a
** faster Lua __index in front of them). */
int corio__method(lua_State *L) {
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}
