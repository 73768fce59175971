/*
** thread.c (bindings): to_thread(fn, encoded_args) for init.lua, which
** serialises the arguments and decodes the results. Refuses C functions
** and functions with upvalues before anything runs.
*/
#include <stdlib.h>
#include <string.h>

#include "bindings.h"

static int writer(lua_State *L, const void *p, size_t sz, void *ud) {
  luaL_addlstring((luaL_Buffer *)ud, (const char *)p, sz);
  return 0;
}

/* to_thread(fn, args [, bytecode]) -> true, ok, encoded | false, err */
static int l_to_thread(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  const char *code, *args, *up;
  size_t ncode, nargs;
  luaL_Buffer b;
  void *obj;
  int n, r;
  corio_threadfn *tf = lua_touserdata(L, 1);
  if (tf != NULL && tf->magic == CORIO_MAGIC_THREADFN) {
    args = luaL_checklstring(L, 2, &nargs);
    n = corio__enter(L, rt, &t, "to_thread");
    if (n >= 0) return n;
    r = corio__to_thread(rt, t, NULL, 0, tf->fn, args, nargs, &obj);
    if (r != 0) {
      lua_pushboolean(L, 0);
      corio__push_error(L, "error", uv_strerror(r));
      return 2;
    }
    return corio__suspend(rt, L, t, corio__abort_work_hook, "to_thread",
                          obj);
  }
  if (lua_type(L, 1) != LUA_TFUNCTION || lua_iscfunction(L, 1))
    return corio__argerror(L, 2, 1, "to_thread",
                           lua_type(L, 1) == LUA_TFUNCTION
                               ? "a C function cannot run in a worker"
                               : lua_pushfstring(L, "Lua function expected, "
                                                 "got %s",
                                                 luaL_typename(L, 1)));
  if ((up = lua_getupvalue(L, 1, 1)) != NULL)
    return corio__argerror(L, 2, 1, "to_thread",
                           lua_pushfstring(L, "the function has upvalues "
                                           "('%s'); a worker runs in its own "
                                           "Lua state, so pass values as "
                                           "arguments instead", up));
  args = luaL_checklstring(L, 2, &nargs);
  lua_settop(L, 3);
  n = corio__enter(L, rt, &t, "to_thread");
  if (n >= 0) return n;
  if (lua_type(L, 3) != LUA_TSTRING) {   /* not dumped by the caller */
    luaL_buffinit(L, &b);
    lua_pushvalue(L, 1);
    if (lua_dump(L, writer, &b) != 0)
      return luaL_error(L, "corio.to_thread: cannot dump the function");
    lua_pop(L, 1);
    luaL_pushresult(&b);
    lua_replace(L, 3);
  }
  code = lua_tolstring(L, 3, &ncode);
  r = corio__to_thread(rt, t, code, ncode, NULL, args, nargs, &obj);
  if (r != 0) {
    lua_pushboolean(L, 0);
    corio__push_error(L, "error", uv_strerror(r));
    return 2;
  }
  return corio__suspend(rt, L, t, corio__abort_work_hook, "to_thread", obj);
}

/* thread_pool_size(n): size libuv's thread pool before it starts. */
static int l_pool_size(lua_State *L) {
  lua_Number n = luaL_checknumber(L, 1);
  const char *env;
  if (n < 1 || n > 1024 || n != (lua_Number)(int)n)
    return corio__argerror(L, 1, 1, "thread_pool_size",
                           "an integer from 1 to 1024 expected");
  if (corio__pool_size((int)n) != 0) {
    env = getenv("UV_THREADPOOL_SIZE");
    return luaL_error(L, "corio.thread_pool_size: the thread pool already "
                      "runs (with %s threads): set the size before the "
                      "first to_thread or file call", env ? env : "4");
  }
  return 0;
}

void corio_push_thread_fn(lua_State *L, lua_CFunction fn) {
  corio_threadfn *tf = lua_newuserdata(L, sizeof(*tf));
  tf->magic = CORIO_MAGIC_THREADFN;
  tf->fn = fn;
}

int luaopen_corio_thread_pool(lua_State *L) {
  lua_pushlightuserdata(L, corio__rt(L));
  lua_pushcclosure(L, l_pool_size, 1);
  return 1;
}

int luaopen_corio_thread(lua_State *L) {
  lua_pushlightuserdata(L, corio__rt(L));
  lua_pushcclosure(L, l_to_thread, 1);
  return 1;
}
