/*
** thread.c (bindings): to_thread(fn, code, ...) for init.lua, which
** dumps the function once (code: its bytecode, or false to have it
** refused here) or passes a host's C function (corio_push_thread_fn) as
** code. Arguments that are not all nil, booleans, numbers or strings are
** encoded with string.buffer here, and refused before anything runs when
** they cannot be.
*/
#include <stdlib.h>
#include <string.h>

#include "bindings.h"
#include "../runtime/thread.h"

/* Raise "bad argument #n to 'to_thread' (...)" at the caller of the Lua
** wrapper (n 0: the arguments together cannot be sent). */
static int bad_args(lua_State *L, int n, const char *why) {
  luaL_where(L, 2);
  if (n > 0) lua_pushfstring(L, "bad argument #%d to 'to_thread' (cannot "
                             "send the arguments to a worker", n);
  else lua_pushliteral(L, "bad argument to 'to_thread' (cannot send the "
                          "arguments to a worker");
  lua_pushfstring(L, ": %s%s; only nil, booleans, numbers, strings and "
                  "tables of those can cross)", why,
                  strstr(why, "too deep") != NULL ? CORIO_TOO_DEEP : "");
  lua_concat(L, 2);
  lua_concat(L, 2);
  return lua_error(L);
}

/* fn (arg 1) cannot run in a worker: say why. */
static int refuse(lua_State *L) {
  const char *up;
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
  return corio__argerror(L, 2, 1, "to_thread", "cannot dump the function");
}

/* The arguments at 3..top as one string.buffer encoding, into w; w NULL:
** only check that they can be encoded. */
static void encode_args(lua_State *L, corio_rt *rt, corio_work *w, int top) {
  int i;
  size_t n;
  const char *s;
  lua_pushvalue(L, lua_upvalueindex(2));   /* string.buffer.encode */
  lua_createtable(L, top - 2, 1);
  for (i = 3; i <= top; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 2);
  }
  lua_pushinteger(L, top - 2);
  lua_setfield(L, -2, "n");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    int bad = 0;
    if (w != NULL) corio__work_drop(rt, w);
    for (i = 3; i <= top && bad == 0; i++) {   /* which one: name it */
      lua_pushvalue(L, lua_upvalueindex(2));
      lua_pushvalue(L, i);
      if (lua_pcall(L, 1, 1, 0) != 0) bad = i - 1;
      lua_pop(L, 1);
    }
    return (void)bad_args(L, bad, lua_tostring(L, -1) ? lua_tostring(L, -1)
                                                      : "(no message)");
  }
  if (w == NULL) {
    lua_pop(L, 1);
    return;
  }
  s = lua_tolstring(L, -1, &n);
  if (corio__work_args_encoded(w, s, n) != 0) {
    corio__work_drop(rt, w);
    (void)luaL_error(L, "corio.to_thread: out of memory");
  }
  lua_pop(L, 1);
}

/* to_thread(fn, code, ...) -> true, results... | false, 1, encoded |
** false, 2, worker error | false, NOLOOP or error, fn, code, ... */
static int l_to_thread(lua_State *L) {
  corio_rt *rt = RT(L);
  corio_task *t;
  const char *code = NULL;
  size_t ncode = 0;
  lua_CFunction cfn = NULL;
  corio_work *w;
  int top = lua_gettop(L), n, r;
  if (top < 2) lua_settop(L, top = 2);
  if (lua_type(L, 2) == LUA_TSTRING) {
    code = lua_tolstring(L, 2, &ncode);
  } else {
    corio_threadfn *tf = lua_touserdata(L, 2);
    if (tf == NULL || lua_type(L, 2) != LUA_TUSERDATA ||
        lua_rawequal(L, 1, 2) == 0 || lua_objlen(L, 2) < sizeof(*tf) ||
        tf->magic != CORIO_MAGIC_THREADFN)
      return refuse(L);
    cfn = tf->fn;
    if (cfn == NULL)   /* was: run as an empty Lua chunk, results none */
      return luaL_error(L, "corio.to_thread: the host's thread function is "
                        "NULL (corio_push_thread_fn was given no function)");
  }
  n = corio__enter(L, rt, &t, "to_thread");
  if (n != CORIO_GO && n < 0) return n;  /* yielded with false, Cancelled */
  if (n != CORIO_GO) {   /* false, NOLOOP | false, Cancelled: then the call */
    /* Outside a loop the call runs under corio.run, where arguments that
    ** cannot cross were raised inside the root task and came back wrapped
    ** in kind "error": check them here, to raise the plain string. */
    if (top > 2 && lua_touserdata(L, -1) == CORIO_NOLOOP)
      encode_args(L, rt, NULL, top);
    lua_insert(L, 1);
    lua_insert(L, 1);
    return lua_gettop(L);
  }
  w = corio__work_new(rt);
  if (w == NULL)
    return luaL_error(L, "corio.to_thread: cannot start the worker pool "
                      "(out of memory or file descriptors)");
  if (corio__work_code(w, code, ncode, cfn) != 0) {
    corio__work_drop(rt, w);
    return luaL_error(L, "corio.to_thread: out of memory");
  }
  r = corio__work_args(w, L, 3, top);
  if (r < 0) {
    corio__work_drop(rt, w);
    return luaL_error(L, "corio.to_thread: out of memory");
  }
  if (r > 0) encode_args(L, rt, w, top);
  r = corio__work_queue(rt, t, w);
  if (r != 0)
    return luaL_error(L, "corio.to_thread: cannot start a worker: %s",
                      uv_strerror(r));
  return corio__suspend(rt, L, t, corio__abort_work_hook, "to_thread", w);
}

/* thread_pool_size(n): size the thread pools before they start. */
static int l_pool_size(lua_State *L) {
  lua_Number n;
  if (lua_type(L, 1) != LUA_TNUMBER)
    return corio__argerror(L, 1, 1, "thread_pool_size",
                           lua_pushfstring(L, "number expected, got %s",
                                           luaL_typename(L, 1)));
  n = lua_tonumber(L, 1);
  /* range first (NaN fails it): casting NaN to int is undefined */
  if (!(n >= 1 && n <= 1024) || n != floor(n))
    return corio__argerror(L, 1, 1, "thread_pool_size",
                           lua_pushfstring(L, "an integer from 1 to 1024 "
                                           "expected, got %s",
                                           lua_tostring(L, 1)));
  if (corio__pool_size((int)n) != 0) {
    /* the size in force, as the pool read it: it used to print
    ** UV_THREADPOOL_SIZE as set ("with 0 threads", "with abc threads",
    ** "with 2000 threads" for pools of 1, 1 and 1024) */
    int now = corio__pool_size_now();
    return luaL_error(L, "corio.thread_pool_size: the thread pool already "
                      "runs (with %d thread%s): set the size before the "
                      "first to_thread or file call", now,
                      now == 1 ? "" : "s");
  }
  return 0;
}

/* thread_paths(path, cpath): the caller's package.path and cpath, for
** the workers' states, so that fn requires what its caller would (a
** worker used to keep Lua's defaults, and a module on a path the script
** added was "not found" there). init.lua's to_thread calls it when they
** changed since its last call. */
static int l_thread_paths(lua_State *L) {
  size_t n1, n2;
  const char *path = luaL_checklstring(L, 1, &n1);
  const char *cpath = luaL_checklstring(L, 2, &n2);
  if (corio__work_paths(RT(L), path, n1, cpath, n2) != 0)
    return luaL_error(L, "corio.to_thread: out of memory");
  return 0;
}

int luaopen_corio_thread_paths(lua_State *L) {
  lua_pushlightuserdata(L, corio__rt(L));
  lua_pushcclosure(L, l_thread_paths, 1);
  return 1;
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
  lua_getglobal(L, "require");
  lua_pushliteral(L, "string.buffer");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "encode");
  lua_remove(L, -2);
  lua_pushcclosure(L, l_to_thread, 2);
  return 1;
}
