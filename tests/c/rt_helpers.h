/*
** rt_helpers.h: what the C tests of the embedding API share: pointing a
** runtime at the build's Lua files, and running a Lua check without one.
** Include after corio.h and the Lua headers.
*/
#ifndef CORIO_TEST_RT_HELPERS_H
#define CORIO_TEST_RT_HELPERS_H

#include <stdio.h>

/* The build tree's lua/ directory first on package.path. */
static inline void add_paths(corio_rt *rt) {
  char buf[4096];
  snprintf(buf, sizeof(buf), "%s/?.lua;%s/?/init.lua", CORIO_BUILD_LUA_DIR,
           CORIO_BUILD_LUA_DIR);
  corio_add_paths(rt, buf, NULL);
}

/* Run code in L with a plain pcall (no runtime): 1 if it returned true. */
static inline int lua_true(lua_State *L, const char *code) {
  int ok;
  if (luaL_dostring(L, code) != 0) {
    fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  ok = lua_toboolean(L, -1);
  lua_settop(L, 0);
  return ok;
}

#endif
