/*
** test_hunt.c: C API regressions found by a bug hunt. A state the host
** adopted outlives corio_free: its coroutine.resume/wrap (which corio
** replaces) and a later require "corio" must not reach the freed
** runtime, and a second runtime on the state must work. A run tried from
** inside a run fails with UV_EBUSY and leaves the outer run's message
** empty once it succeeds. A host op started in a cancelled scope raises
** Cancelled at once instead of blocking.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static corio_rt *adopt(lua_State *L) {
  corio_options opts;
  corio_rt *rt;
  memset(&opts, 0, sizeof(opts));
  opts.L = L;
  rt = corio_new(&opts);
  if (rt != NULL) add_paths(rt);
  return rt;
}

/* Was: coroutine.resume and wrap stayed corio's after corio_free and
** called the freed runtime (heap-use-after-free in l_own_yield); a later
** require "corio" returned the old module over the freed runtime; a new
** runtime on the state got that module too and failed. */
static void test_adopted_state_after_free(void) {
  lua_State *L = luaL_newstate();
  corio_rt *rt;
  luaL_openlibs(L);
  CHECK(lua_true(L, "ORIG_RESUME, ORIG_WRAP = coroutine.resume, "
                    "coroutine.wrap return true"));
  rt = adopt(L);
  CHECK(rt != NULL);
  CHECK(corio_run_string(rt, "local c = require('corio') c.sleep(0.001) "
                             "require('corio.fs').stat('/') "
                             "c.to_thread(function() end)", "=a") == 0);
  CHECK(lua_true(L, "return coroutine.resume ~= ORIG_RESUME"));
  corio_free(rt);

  /* the host's own coroutines, with the library functions corio had
  ** replaced back in place */
  CHECK(lua_true(L, "return coroutine.resume == ORIG_RESUME and "
                    "coroutine.wrap == ORIG_WRAP"));
  CHECK(lua_true(L, "local co = coroutine.create(function(a) "
                    "  local b = coroutine.yield(a + 1) return b * 2 end) "
                    "local ok1, x = coroutine.resume(co, 1) "
                    "local ok2, y = coroutine.resume(co, 5) "
                    "local w = coroutine.wrap(function() coroutine.yield(3) end) "
                    "return ok1 and ok2 and x == 2 and y == 10 and w() == 3"));
  CHECK(lua_true(L, "return package.loaded.corio == nil and "
                    "package.loaded['corio.core'] == nil and "
                    "package.loaded['corio.fs'] == nil"));

  /* a second runtime on the same state */
  rt = adopt(L);
  CHECK(rt != NULL);
  CHECK(corio_run_string(rt, "local c = require('corio') c.sleep(0.001) "
                             "assert(c.spawn(function() return 4 end):join() "
                             "== 4) require('corio.fs').stat('/') "
                             "X = c.to_thread(function(a) return a * 2 end, "
                             "21)", "=b") == 0);
  CHECK(lua_true(L, "return X == 42"));
  corio_free(rt);

  /* and then corio as a stock luajit loads it: its own runtime, freed
  ** with the state */
  CHECK(lua_true(L, "local c = require('corio') c.sleep(0.001) "
                    "return c.gather({function() return 7 end})[1] == 7"));
  lua_close(L);
}

/* Was: corio_new on an adopted state without the package library (a
** host's minimal state) indexed the missing `package` outside any pcall:
** LuaJIT's panic, which exits the process. It returns NULL now. */
static void test_adopt_state_without_package(void) {
  lua_State *L = luaL_newstate();
  corio_options opts;
  lua_pushcfunction(L, luaopen_base);
  lua_call(L, 0, 0);
  memset(&opts, 0, sizeof(opts));
  opts.L = L;
  CHECK(corio_new(&opts) == NULL);
  corio_preload(L);   /* a no-op there */
  CHECK(lua_true(L, "return package == nil"));
  lua_close(L);
}

static corio_rt *the_rt;

static int l_nested(lua_State *L) {
  int top = lua_gettop(L);
  int r = corio_run_string(the_rt, "return 1", "=nested");
  lua_settop(L, top);
  lua_pushinteger(L, r);
  lua_pushstring(L, corio_errmsg(the_rt));
  return 2;
}

/* Was: the outer run's corio_errmsg kept the nested run's "already
** running" after the outer run succeeded (docs: empty after a success). */
static void test_nested_run(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  add_paths(rt);
  the_rt = rt;
  L = corio_lua(rt);
  lua_pushcfunction(L, l_nested);
  lua_setglobal(L, "nested");
  lua_pushinteger(L, UV_EBUSY);
  lua_setglobal(L, "EBUSY");
  CHECK(corio_run_string(rt, "local r, m = nested() "
                             "assert(r == EBUSY, 'nested: ' .. r) "
                             "assert(m:find('already running'), m) "
                             "require('corio').sleep(0.001)", "=n") == 0);
  CHECK(strcmp(corio_errmsg(rt), "") == 0);

  /* a long message comes whole (it was cut at 511 bytes) */
  CHECK(corio_run_string(rt, "error(('x'):rep(3000) .. 'END', 0)", "=long") ==
        CORIO_ELUA);
  CHECK(strlen(corio_errmsg(rt)) > 3000 &&
        strstr(corio_errmsg(rt), "xEND") != NULL);
  lua_settop(L, 0);
  CHECK(corio_run_string(rt, "return 1", "=short") == 0);
  CHECK(strcmp(corio_errmsg(rt), "") == 0);
  corio_free(rt);
}

/* A host op that a timer of the host ends after ms; its cancel callback
** only counts (the timer still ends it, as the example host does). */
typedef struct slow_op {
  uv_timer_t timer;
  corio_op *op;
} slow_op;

static int slow_cancels, slow_late;

static void slow_closed(uv_handle_t *h) { free(h); }

static void slow_fire(uv_timer_t *h) {
  slow_op *s = (slow_op *)h;
  lua_pushinteger(corio_lua(corio_op_runtime(s->op)), 1);
  if (corio_op_resume(s->op, 1) == UV_ECANCELED) slow_late++;
  uv_close((uv_handle_t *)h, slow_closed);
}

static void slow_cancel(corio_op *op, void *data) {
  (void)op;
  (void)data;
  slow_cancels++;
}

static int l_slow(lua_State *L) {
  slow_op *s = calloc(1, sizeof(*s));
  corio_op *op = corio_op_begin(L, slow_cancel, s);
  if (op == NULL) {
    free(s);
    return lua_error(L);
  }
  s->op = op;
  uv_timer_init(corio_loop(corio_op_runtime(op)), &s->timer);
  uv_timer_start(&s->timer, slow_fire, 1000, 0);
  return corio_op_suspend(L, op);
}

/* Was: a host op started in a scope already cancelled (scope:cancel()
** before, or move_on_after(0, ...): a deadline passed on entry) blocked
** until the host ended it, or forever: nothing cancels a task that
** blocks after its cancel. corio_op_suspend is a checkpoint now. */
static void test_op_in_cancelled_scope(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  add_paths(rt);
  L = corio_lua(rt);
  corio_push_async(L, l_slow);
  lua_setglobal(L, "slow");
  CHECK(corio_run_string(rt,
      "local corio = require 'corio' "
      "corio.scope(function(s) s:cancel() "
      "  local t0 = corio.now() "
      "  local ok, e = pcall(slow) "
      "  R_OK, R_CANCELLED, R_T = ok, corio.is_cancelled(e), corio.now() - t0 "
      "end) "
      "local t0 = corio.now() "
      "R2 = corio.move_on_after(0, slow) "
      "R2_T = corio.now() - t0 "
      "assert(slow() == 1)", "=c") == 0);
  CHECK(lua_true(L, "return R_OK == false and R_CANCELLED == true and "
                    "R_T < 0.5 and R2 == false and R2_T < 0.5"));
  CHECK(slow_cancels == 2);
  CHECK(slow_late == 2);   /* the host's timers still ended both ops */
  corio_free(rt);
}

static void fail_fire(uv_timer_t *h) {
  slow_op *s = (slow_op *)h;
  corio_op_fail(s->op, "host", "the host said no");
  uv_close((uv_handle_t *)h, slow_closed);
}

static int l_failing(lua_State *L) {
  slow_op *s = calloc(1, sizeof(*s));
  corio_op *op = corio_op_begin(L, NULL, s);
  if (op == NULL) {
    free(s);
    return lua_error(L);
  }
  s->op = op;
  uv_timer_init(corio_loop(corio_op_runtime(op)), &s->timer);
  uv_timer_start(&s->timer, fail_fire, 0, 0);
  return corio_op_suspend(L, op);
}

/* Was: corio_op_fail (and the cancel of a suspended op) made the error on
** the task's suspended thread; an
** allocation there could run a __gc finaliser on it, and one that raises
** (inside its own pcall) wrecked the thread: a crash in the traceback. */
static void test_op_fail_with_raising_finalisers(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  add_paths(rt);
  L = corio_lua(rt);
  corio_push_async(L, l_failing);
  lua_setglobal(L, "failing");
  corio_push_async(L, l_slow);
  lua_setglobal(L, "slow");
  CHECK(corio_run_string(rt,
      "local corio = require 'corio' "
      "collectgarbage('setpause', 0) collectgarbage('setstepmul', 1000) "
      "local function junk() local p = newproxy(true) "
      "  getmetatable(p).__gc = function() pcall(error, 'in gc') end end "
      "for i = 1, 300 do junk() junk() "
      "  local ok, e = pcall(failing) "
      "  assert(not ok and e.kind == 'host', tostring(e)) end "
      /* the cancel of a suspended op: its Cancelled too */
      "for i = 1, 300 do junk() junk() "
      "  corio.scope(function(s) "
      "    local t = s:spawn(slow) corio.yield() t:cancel() end) end "
      "collectgarbage('setpause', 200) collectgarbage('setstepmul', 200)",
      "=gc") == 0);
  corio_free(rt);
}

static int l_sync_double(lua_State *L) {   /* returns without suspending */
  lua_pushinteger(L, 2 * luaL_checkinteger(L, 1));
  return 1;
}

/* Was: corio_push_async required corio at once, outside any pcall: called
** before corio_add_paths (corio not findable yet), LuaJIT's panic exited
** the process. The function now wraps fn at its first call. */
static void test_push_async_before_paths(void) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L = corio_lua(rt);
  corio_push_async(L, l_slow);     /* suspends */
  lua_setglobal(L, "slow");
  corio_push_async(L, l_sync_double);
  lua_setglobal(L, "double");
  add_paths(rt);
  slow_cancels = slow_late = 0;
  CHECK(corio_run_string(rt, "local corio = require 'corio' "
                             "assert(double(21) == 42) "
                             "assert(slow() == 1) "
                             "assert(corio.move_on_after(0.01, slow) == false) "
                             "RESULT = double(5)", "=lazy") == 0);
  CHECK(lua_true(L, "return RESULT == 10"));
  CHECK(slow_cancels == 1 && slow_late == 1);
  corio_free(rt);
}

static volatile sig_atomic_t host_sigints;
static void host_on_sigint(int sig) { (void)sig; host_sigints++; }
static int l_raise_sigint(lua_State *L) {
  (void)L;
  raise(SIGINT);
  return 0;
}

/* docs/c-api.md said handle_signals was not read and every run took
** SIGINT; it is read: 0 leaves SIGINT to the host's handler. */
static void test_handle_signals(void) {
  struct sigaction sa, old;
  int i;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = host_on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, &old);
  for (i = 0; i < 2; i++) {
    corio_options opts;
    corio_rt *rt;
    int r;
    memset(&opts, 0, sizeof(opts));
    opts.handle_signals = i;
    rt = corio_new(&opts);
    add_paths(rt);
    lua_pushcfunction(corio_lua(rt), l_raise_sigint);
    lua_setglobal(corio_lua(rt), "raise_sigint");
    host_sigints = 0;
    r = corio_run_string(rt, "local corio = require 'corio' raise_sigint() "
                             "corio.sleep(0.05)", "=sig");
    if (i == 0) CHECK(r == 0 && host_sigints == 1);
    else CHECK(r == CORIO_EINTR_RUN && host_sigints == 0);
    corio_free(rt);
  }
  sigaction(SIGINT, &old, NULL);
}

int main(void) {
  test_adopt_state_without_package();
  test_adopted_state_after_free();
  test_nested_run();
  test_op_in_cancelled_scope();
  test_handle_signals();
  test_op_fail_with_raising_finalisers();
  test_push_async_before_paths();
  return check_done("test_hunt");
}
