/* A Lua module for the W1/W7 "task handle" ceiling (task-handle.lua):
 * handle(n) returns a fresh zeroed userdata of n bytes with a shared
 * metatable that has an __index table and no __gc, as corio's Task has.
 *   gcc -O2 -shared -fPIC $(pkg-config --cflags luajit) \
 *     -o /tmp/task_handle.so bench/ceilings/task-handle.c
 */
#include <string.h>
#include <lua.h>
#include <lauxlib.h>

static int handle(lua_State *L) {
  size_t n = (size_t)luaL_checkinteger(L, 1);
  memset(lua_newuserdata(L, n), 0, n);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_setmetatable(L, -2);
  return 1;
}

int luaopen_task_handle(lua_State *L) {
  lua_newtable(L);
  lua_newtable(L);
  lua_setfield(L, -2, "__index");
  lua_pushcclosure(L, handle, 1);
  return 1;
}
