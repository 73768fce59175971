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

int corio__enter(lua_State *L, corio_rt *rt, corio_task **pt,
                 const char *fname) {
  corio_task *t = rt->current;
  if (t == NULL) {
    if (rt->running)
      return luaL_error(L, "corio.%s: called outside any task while the "
                        "loop is running", fname);
    lua_pushboolean(L, 0);
    lua_pushlightuserdata(L, CORIO_NOLOOP);
    return 2;
  }
  if (rt->isyieldable != NULL) {
    int ok;
    rt->isyieldable(L);
    ok = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (!ok) {
      luaL_where(L, 2);
      lua_pushfstring(
          L,
          "corio.%s cannot suspend the task here: it is called from inside "
          "a C function (a table.sort comparator, a string.gsub callback, "
          "a module body run by require, a metamethod or callback called "
          "from C, or another library's C function), and LuaJIT cannot "
          "yield across a C call. Make the call outside that function "
          "(e.g. fetch the data first, then sort), or move the work into "
          "a task of its own",
          fname);
      lua_concat(L, 2);
      return lua_error(L);
    }
  }
  t->checkpoints++;
  if (t->cur->eff) {
    lua_pushboolean(L, 0);
    corio__push_cancelled(L, L, "the task's scope is cancelled");
    return 2;
  }
  *pt = t;
  return -1;
}

void corio__push_task(corio_rt *rt, lua_State *L, corio_task *t) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
  lua_rawgeti(L, -1, 2 * t->slot + 1);
  lua_remove(L, -2);
}

corio_task *corio__check_task(lua_State *L, int idx) {
  return (corio_task *)luaL_checkudata(L, idx, "corio.Task");
}
