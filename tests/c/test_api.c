/*
** test_api.c: the public C API of corio.h: creating runtimes (own state
** and loop, or adopted ones), running strings and functions as the root
** task, results and errors, two runtimes in one process, and closing
** with every handle released (uv_loop_close succeeds).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static void test_run_string(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  CHECK(rt != NULL);
  add_paths(rt);
  L = corio_lua(rt);
  CHECK(corio_run_string(rt,
                         "local corio = require 'corio'\n"
                         "local t = corio.spawn(function() corio.sleep(0.01)"
                         " return 5 end)\n"
                         "RESULT = t:join() * 2",
                         "=test") == 0);
  lua_getglobal(L, "RESULT");
  CHECK(lua_tonumber(L, -1) == 10);
  lua_pop(L, 1);
  corio_free(rt);
}

static void test_run_function_results_and_errors(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  int top;
  add_paths(rt);
  L = corio_lua(rt);
  top = lua_gettop(L);
  CHECK(luaL_loadstring(L, "local a, b = ... "
                           "require('corio').sleep(0) return a + b, 'x'") == 0);
  lua_pushinteger(L, 2);
  lua_pushinteger(L, 3);
  CHECK(corio_run_function(rt, 2, 2) == 0);
  CHECK(lua_gettop(L) == top + 2);
  CHECK(lua_tonumber(L, -2) == 5);
  CHECK(strcmp(lua_tostring(L, -1), "x") == 0);
  lua_settop(L, top);

  /* an error: CORIO_ELUA, the error object left on the stack, errmsg set */
  CHECK(corio_run_string(rt, "error('boom', 0)", "=err") == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "boom") != NULL);
  CHECK(lua_istable(L, -1));
  lua_getfield(L, -1, "kind");
  CHECK(strcmp(lua_tostring(L, -1), "error") == 0);
  lua_settop(L, top);

  /* a syntax error is reported, nothing runs */
  CHECK(corio_run_string(rt, "this is not lua", "=bad") == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "bad") != NULL);
  lua_settop(L, top);

  /* a deadlock is an error of kind "deadlock", and the runtime recovers */
  CHECK(corio_run_string(rt, "require('corio').channel():recv()", "=dl") ==
        CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "deadlock") != NULL);
  lua_settop(L, top);
  CHECK(corio_run_string(rt, "require('corio').sleep(0.001)", "=ok") == 0);
  corio_free(rt);
}

static void test_adopted_state_and_loop(void) {
  uv_loop_t loop;
  lua_State *L = luaL_newstate();
  corio_options opts;
  corio_rt *rt;
  luaL_openlibs(L);
  CHECK(uv_loop_init(&loop) == 0);
  memset(&opts, 0, sizeof(opts));
  opts.L = L;
  opts.loop = &loop;
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  CHECK(corio_lua(rt) == L);
  CHECK(corio_loop(rt) == &loop);
  /* one runtime per state */
  CHECK(corio_new(&opts) == NULL);
  add_paths(rt);
  CHECK(corio_run_string(rt, "require('corio').sleep(0.005)", "=a") == 0);
  corio_free(rt);
  /* the host's loop and state are still the host's */
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
}

static int host_ticks;
static void host_tick(uv_timer_t *h) { (void)h; host_ticks++; }

/* A host that drives its own loop: it steps corio without blocking while
** its own timer keeps ticking on the same loop. */
static void test_stepping_with_host_handles(void) {
  uv_loop_t loop;
  uv_timer_t tick;
  corio_options o;
  corio_rt *rt;
  lua_State *L;
  int steps = 0, r;
  CHECK(uv_loop_init(&loop) == 0);
  CHECK(uv_timer_init(&loop, &tick) == 0);
  CHECK(uv_timer_start(&tick, host_tick, 1, 1) == 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  o.handle_signals = 0;
  rt = corio_new(&o);
  add_paths(rt);
  L = corio_lua(rt);
  CHECK(luaL_loadstring(L, "local corio = require 'corio' "
                           "local t = corio.spawn(corio.sleep, 0.03) "
                           "corio.sleep(0.02) t:join() return 'stepped'") ==
        0);
  CHECK(corio_start(rt, 0) == 0);
  while ((r = corio_step(rt, 0)) == 1) {
    steps++;
    uv_run(&loop, UV_RUN_ONCE);   /* the host's own turn of its loop */
  }
  CHECK(r == 0);
  CHECK(corio_finish(rt, 1) == 0);
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "stepped") == 0);
  lua_pop(L, 1);
  CHECK(steps > 1);
  CHECK(host_ticks > 5);
  /* stepping again after the end: nothing to do */
  CHECK(corio_step(rt, 0) == 0);
  CHECK(corio_finish(rt, 0) == UV_EINVAL);
  corio_free(rt);
  uv_close((uv_handle_t *)&tick, NULL);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

static int l_mono(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* A host that holds its thread between two steps: the task that runs in
** the second step counts its sleep from its call, not from a clock corio
** read in the first step (which would have ended the sleep at once). */
static void test_sleep_after_host_gap(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  struct timespec gap = {0, 150 * 1000000L};
  int r;
  add_paths(rt);
  L = corio_lua(rt);
  lua_register(L, "mono", l_mono);
  CHECK(luaL_loadstring(L, "local corio = require 'corio' "
                           "corio.sleep(0.02) "
                           "local t1 = mono() "
                           "corio.sleep(0.1) "
                           "return mono() - t1") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(corio_step(rt, 0) == 1);   /* the task sleeps 0.02 s */
  CHECK(corio_step(rt, 1) == 1);   /* blocks until that sleep ended */
  nanosleep(&gap, NULL);           /* the host's own work */
  while ((r = corio_step(rt, 1)) == 1) {}
  CHECK(r == 0);
  CHECK(corio_finish(rt, 1) == 0);
  CHECK(lua_isnumber(L, -1) && lua_tonumber(L, -1) >= 0.1);
  lua_pop(L, 1);
  corio_free(rt);
}

static int cleanup_ran;
static int l_mark(lua_State *L) {
  (void)L;
  cleanup_ran++;
  return 0;
}

/* Closing a runtime in the middle of a run cancels the tasks; their
** cleanup runs, and nothing leaks (checked under ASan). */
static void test_free_with_pending_tasks(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  add_paths(rt);
  L = corio_lua(rt);
  lua_register(L, "mark", l_mark);
  CHECK(luaL_loadstring(L,
                        "local corio = require 'corio' "
                        "for i = 1, 3 do corio.spawn(function() "
                        "  corio.defer(mark) corio.sleep(10) end) end "
                        "corio.spawn(function() corio.channel():recv() end) "
                        "corio.defer(mark) "
                        "corio.sleep(10)") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(corio_step(rt, 0) == 1);
  CHECK(corio_step(rt, 0) == 1);
  corio_free(rt);
  CHECK(cleanup_ran == 4);
}

/* A task that cannot end when its runtime is freed (blocked in a shield
** on an event nobody sets) is abandoned; in an adopted state, which
** outlives the runtime, its thread and what it holds must then become
** garbage, though the corio module (and the anchor table that corio.spawn
** carries as an upvalue) stays reachable (here from a global; corio_free
** unloads it from package.loaded). */
static void test_free_releases_abandoned_tasks(void) {
  lua_State *L = luaL_newstate();
  corio_options opts;
  corio_rt *rt;
  luaL_openlibs(L);
  memset(&opts, 0, sizeof(opts));
  opts.L = L;
  opts.handle_signals = 0;
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  add_paths(rt);
  CHECK(luaL_loadstring(L,
                        "local corio = require 'corio' CORIO = corio "
                        "WEAK = setmetatable({}, {__mode = 'k'}) "
                        "corio.spawn(function() "
                        "  local held = {} WEAK[held] = true "
                        "  corio.shield(function() corio.event():wait() end) "
                        "  return held end) "
                        "corio.sleep(10)") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(corio_step(rt, 0) == 1);
  CHECK(corio_step(rt, 0) == 1);
  corio_free(rt);
  lua_gc(L, LUA_GCCOLLECT, 0);
  lua_gc(L, LUA_GCCOLLECT, 0);
  CHECK(luaL_dostring(L, "return next(WEAK) == nil and CORIO ~= nil") == 0);
  CHECK(lua_toboolean(L, -1));
  lua_close(L);
}

static void test_two_runtimes(void) {
  corio_rt *a = corio_new(NULL), *b = corio_new(NULL);
  CHECK(a != NULL && b != NULL);
  add_paths(a);
  add_paths(b);
  CHECK(corio_run_string(a, "X = require('corio').gather({function() "
                            "return 1 end})[1]", "=a") == 0);
  CHECK(corio_run_string(b, "X = 2 require('corio').sleep(0)", "=b") == 0);
  lua_getglobal(corio_lua(a), "X");
  lua_getglobal(corio_lua(b), "X");
  CHECK(lua_tonumber(corio_lua(a), -1) == 1);
  CHECK(lua_tonumber(corio_lua(b), -1) == 2);
  corio_free(a);
  corio_free(b);
}

/* A state corio made allocates big blocks with malloc once corio.fs
** reads large chunks (api.c): LuaJIT's own big blocks made before (a
** table's array, a coroutine's stack) are resized and freed by LuaJIT's
** allocator still; blocks that grow across 128 KiB and shrink back (the
** collector shrinks stacks and the string buffer) move between the two;
** big strings are freed and reused. Under ASan a block freed by the
** wrong allocator fails. */
static void test_big_blocks(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  double sum = 0;
  int i;
  CHECK(rt != NULL);
  add_paths(rt);
  L = corio_lua(rt);
  CHECK(corio_run_string(
            rt,
            "local function deep(n) if n == 0 then return 0 end"
            " return 1 + deep(n - 1) end\n"
            "local function stack() return coroutine.wrap(function()"
            " return deep(10000) end)() end\n"
            "local t = {}\n"
            "for i = 1, 100000 do t[i] = i end\n"
            "local depth = stack()\n"
            "local fs = require 'corio.fs'\n"
            "local p = os.tmpname()\n"
            "local h = io.open(p, 'wb') h:write(('x'):rep(300000)) h:close()\n"
            "local f = fs.open(p, 'rb')\n"
            "local chunk = f:read(300000)\n"
            "f:close() os.remove(p)\n"
            "for i = 100001, 300000 do t[i] = i end\n"
            "depth = depth + stack()\n"
            "local co = coroutine.create(function() deep(10000)"
            " coroutine.yield() return 1 end)\n"
            "coroutine.resume(co)\n"
            "local sum = #chunk\n"
            "for i = 1, 40 do\n"
            "  local s = string.rep(string.char(65 + i % 26), 1048576 + i)\n"
            "  sum = sum + #s + s:byte(-1)\n"
            "  if i % 8 == 0 then collectgarbage() end\n"
            "end\n"
            "local u = {}\n"
            "for i = 1, 100000 do u[i] = i end\n"
            "t = nil\n"
            "for _ = 1, 8 do collectgarbage() end\n"
            "local _, one = coroutine.resume(co)\n"
            "RESULT = u[100000] + depth + sum + one\n",
            "=big") == 0);
  lua_getglobal(L, "RESULT");
  for (i = 1; i <= 40; i++) sum += 1048576 + i + 65 + i % 26;
  CHECK(lua_tonumber(L, -1) == 100000 + 20000 + 300000 + sum + 1);
  lua_pop(L, 1);
  corio_free(rt);
}

int main(void) {
  test_run_string();
  test_run_function_results_and_errors();
  test_adopted_state_and_loop();
  test_two_runtimes();
  test_stepping_with_host_handles();
  test_sleep_after_host_gap();
  test_free_with_pending_tasks();
  test_free_releases_abandoned_tasks();
  test_big_blocks();
  return check_done("test_api");
}
