/*
** test_hunt2.c: C API regressions found by a second bug hunt. corio_step
** and corio_finish called from inside a step of the same runtime (a host
** function a task called) are refused with UV_EBUSY instead of re-entering
** the scheduler. A host op ended before corio_op_suspend (its result was
** at hand) gives the task that result instead of freeing the op under
** corio_op_suspend. corio_run_string with NULL code returns UV_EINVAL.
** A run that cannot start leaves its error value on the stack.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static corio_rt *the_rt;

static corio_rt *new_rt(void) {
  corio_rt *rt = corio_new(NULL);
  if (rt != NULL) add_paths(rt);
  the_rt = rt;
  return rt;
}

static int l_step(lua_State *L) {
  lua_pushinteger(L, corio_step(the_rt, 0));
  return 1;
}
static int l_finish(lua_State *L) {
  lua_pushinteger(L, corio_finish(the_rt, 0));
  return 1;
}

/* Was: corio_step from a task re-entered the scheduler (the run then
** failed with a false deadlock); corio_finish from a task dereferenced
** the root it had just cleared (a crash). Both of a run by
** corio_run_string and of a stepped run. */
static void test_step_inside_run(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r, steps = 0;
  lua_register(L, "cstep", l_step);
  lua_register(L, "cfinish", l_finish);
  r = corio_run_string(rt,
      "local corio = require 'corio' "
      "corio.sleep(0.001) "
      "S1, F1 = cstep(), cfinish() "
      "corio.spawn(function() corio.sleep(0.001) S2 = cstep() end) "
      "corio.sleep(0.002)", "=inside");
  CHECK(r == 0);
  CHECK(lua_true(L, "return S1 == -16 and F1 == -16 and S2 == -16"));
  /* stepped by the host */
  CHECK(luaL_loadstring(L, "local corio = require 'corio' "
                           "corio.sleep(0.001) S3 = cstep() "
                           "F3 = cfinish() return 5") == 0);
  CHECK(corio_start(rt, 0) == 0);
  while (corio_step(rt, 1)) steps++;
  CHECK(steps > 0);
  CHECK(corio_finish(rt, 1) == 0);
  CHECK(lua_tointeger(L, -1) == 5);
  lua_settop(L, 0);
  CHECK(lua_true(L, "return S3 == -16 and F3 == -16"));
  CHECK(strcmp(corio_errmsg(rt), "") == 0);
  corio_free(rt);
}

/* Host functions whose result is at hand: the op ends before suspend. */
static int l_at_once(lua_State *L) {
  lua_Number x = luaL_checknumber(L, 1);
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  lua_pushnumber(corio_lua(the_rt), x * 2);
  lua_pushliteral(corio_lua(the_rt), "done");
  CHECK(corio_op_resume(op, 2) == 0);
  return corio_op_suspend(L, op);
}
static int l_fail_at_once(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  CHECK(corio_op_fail(op, "busy", "no slot free") == 0);
  return corio_op_suspend(L, op);
}

/* The example host's path when its thread cannot start: the op is
** failed, and the function raises instead of suspending. */
static int l_fail_then_raise(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  CHECK(corio_op_fail(op, "host", "cannot start") == 0);
  return luaL_error(L, "host: cannot start a thread");
}
static int l_resume_then_raise(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  lua_pushinteger(corio_lua(the_rt), 1);
  CHECK(corio_op_resume(op, 1) == 0);
  return luaL_error(L, "host: changed its mind");
}

/* Was: corio_op_fail before suspending readied the task that was still
** running; the run then went wrong. Now the op ends, nothing is pending,
** and the raised error is the call's. */
static void test_op_ended_then_raise(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  corio_push_async(L, l_fail_then_raise);
  lua_setglobal(L, "fail_then_raise");
  corio_push_async(L, l_resume_then_raise);
  lua_setglobal(L, "resume_then_raise");
  corio_push_async(L, l_at_once);
  lua_setglobal(L, "at_once");
  CHECK(corio_run_string(rt,
      "local corio = require 'corio' "
      "local ok, e = pcall(fail_then_raise) "
      "E1 = not ok and tostring(e):find('cannot start a thread') ~= nil "
      "ok, e = pcall(resume_then_raise) "
      "E2 = not ok and tostring(e):find('changed its mind') ~= nil "
      "corio.sleep(0.001) "
      "A = at_once(4)", "=raise") == 0);
  CHECK(lua_true(L, "return E1 == true and E2 == true and A == 8"));
  corio_free(rt);
}

/* Was: corio_op_resume/corio_op_fail freed the op, then corio_op_suspend
** read it (heap-use-after-free). */
static void test_op_ended_before_suspend(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  corio_push_async(L, l_at_once);
  lua_setglobal(L, "at_once");
  corio_push_async(L, l_fail_at_once);
  lua_setglobal(L, "fail_at_once");
  CHECK(corio_run_string(rt,
      "local corio = require 'corio' "
      "A, B = at_once(21) "
      "local ok, e = pcall(fail_at_once) "
      "FOK, FKIND, FMSG = ok, e.kind, e.message "
      /* from a coroutine inside the task, and as a checkpoint */
      "local co = coroutine.wrap(function() return at_once(1) end) "
      "C = co() "
      "corio.scope(function(s) s:cancel() "
      "  local ok2, e2 = pcall(at_once, 3) "
      "  CANC = not ok2 and corio.is_cancelled(e2) end) "
      "corio.sleep(0.001)", "=early") == 0);
  CHECK(lua_true(L, "return A == 42 and B == 'done' and FOK == false and "
                    "FKIND == 'busy' and FMSG == 'no slot free' and C == 2"));
  CHECK(lua_true(L, "return CANC == true"));
  corio_free(rt);
}

static void test_run_string_null(void) {
  corio_rt *rt = new_rt();
  CHECK(corio_run_string(rt, NULL, "=x") == UV_EINVAL);
  CHECK(strstr(corio_errmsg(rt), "code is NULL") != NULL);
  CHECK(corio_run_string(rt, "return 1", NULL) == 0);
  corio_free(rt);
}

static int l_nested_top(lua_State *L) {
  lua_State *ML = corio_lua(the_rt);
  int top = lua_gettop(ML), r, grew;
  (void)L;
  r = corio_run_string(the_rt, "return 1", "=nested");
  grew = lua_gettop(ML) - top;
  lua_pushboolean(L, r == UV_EBUSY && grew == 1 &&
                     lua_isstring(ML, -1) &&
                     strstr(lua_tostring(ML, -1), "already running") != NULL);
  lua_settop(ML, top);
  return 1;
}

/* Was: a run that could not start (corio not found by require, or
** UV_EBUSY) left no error value, so a host popping it as the docs say
** (the corio_run_function example) popped one of its own. */
static void test_start_failure_leaves_error(void) {
  lua_State *L = luaL_newstate();
  corio_options opts;
  corio_rt *rt;
  luaL_openlibs(L);
  memset(&opts, 0, sizeof(opts));
  opts.L = L;
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  CHECK(lua_true(L, "package.path = '' package.cpath = '' return true"));
  lua_pushinteger(L, 99);
  CHECK(luaL_loadstring(L, "return 1") == 0);
  lua_pushinteger(L, 1);
  CHECK(corio_run_function(rt, 1, 0) == CORIO_ELUA);
  CHECK(lua_gettop(L) == 2);
  CHECK(lua_isstring(L, -1) &&
        strstr(lua_tostring(L, -1), "module 'corio' not found") != NULL);
  CHECK(strstr(corio_errmsg(rt), "module 'corio' not found") != NULL);
  CHECK(lua_tointeger(L, 1) == 99);
  lua_settop(L, 0);
  CHECK(corio_run_string(rt, "return 1", "=x") == CORIO_ELUA);
  CHECK(lua_gettop(L) == 1);
  lua_settop(L, 0);
  corio_free(rt);
  lua_close(L);

  rt = new_rt();
  L = corio_lua(rt);
  lua_register(L, "nested_top", l_nested_top);
  CHECK(corio_run_string(rt, "NT = nested_top()", "=n") == 0);
  CHECK(lua_true(L, "return NT == true"));
  corio_free(rt);
}

int main(void) {
  test_step_inside_run();
  test_op_ended_before_suspend();
  test_op_ended_then_raise();
  test_run_string_null();
  test_start_failure_leaves_error();
  return check_done("test_hunt2");
}
