/*
** test_hunt_capi.c: bad input to the embedding API (runtime/corio.h)
** that the earlier hunts did not try. Defects fixed (each test says
** what it was): corio_start / corio_run_function with no function on
** the stack (LuaJIT panic: the host exited), corio_op_resume with more
** values than corio_lua(rt) holds (the runtime's own slots moved: a
** crash), a NULL op to any corio_op_* (read through), corio_push_async
** and corio_push_thread_fn with fn NULL (a call through NULL; an empty
** chunk run), corio_add_paths after a script cleared `package` (panic),
** corio_preload / corio_new / corio_free after a script cleared or
** replaced `package` (nothing registered, the state refused, corio's
** modules left loaded).
** Found sound, checked here: corio_free(NULL), corio_errmsg before any
** run, NULL / empty / binary / 8 MiB chunks, an empty path or a
** directory for corio_run_file, start twice, step and finish before a
** start and after a finish, a started run freed unfinished, async
** functions from a coroutine inside the task, fail and resume after an
** op ended, thread functions with bad arguments or results.
*/
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static void on_alarm(int sig) {
  static const char msg[] = "test_hunt_capi: timed out (a hang)\n";
  (void)sig;
  if (write(2, msg, sizeof(msg) - 1) < 0) _exit(2);
  _exit(1);
}

static corio_rt *new_rt(void) {
  corio_options o;
  corio_rt *rt;
  memset(&o, 0, sizeof(o));
  rt = corio_new(&o);
  if (rt != NULL) add_paths(rt);
  return rt;
}

static int has(const char *s, const char *part) {
  return s != NULL && strstr(s, part) != NULL;
}

/* ---- free and errmsg at the edges ----------------------------------- */
static void test_free_and_errmsg(void) {
  corio_rt *rt;
  corio_free(NULL);   /* accepted, documented */
  rt = new_rt();
  CHECK(rt != NULL);
  /* before any run: an empty message, not NULL or garbage */
  CHECK(corio_errmsg(rt) != NULL && corio_errmsg(rt)[0] == 0);
  corio_add_paths(rt, NULL, NULL);   /* either may be NULL */
  corio_free(rt);
  /* corio_new(NULL) handles signals; freed without a run */
  rt = corio_new(NULL);
  CHECK(rt != NULL);
  corio_free(rt);
}

/* ---- corio_add_paths after a script cleared the package global ----- */
/* Was: add_paths read the global, so lua_getfield on nil raised outside
** any pcall: LuaJIT's panic, which exits the host. */
static void test_add_paths_no_global(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  CHECK(corio_run_string(rt, "package = nil", NULL) == 0);
  corio_add_paths(rt, "/nowhere/?.lua", "/nowhere/?.so");
  CHECK(lua_gettop(L) == 0);
  CHECK(lua_true(L, "return package == nil and "
                    "require('corio') ~= nil"));
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "package");
  lua_getfield(L, -1, "path");
  CHECK(has(lua_tostring(L, -1), "/nowhere/?.lua;"));
  lua_settop(L, 0);
  CHECK(corio_run_string(rt, "require('corio').sleep(0)", NULL) == 0);
  corio_free(rt);
}

/* ---- corio_preload / corio_new / corio_free without the global ------ */
/* The type of _LOADED[mod][field] (field NULL: of _LOADED[mod]). */
static int loaded_type(lua_State *L, const char *mod, const char *field) {
  int t;
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, mod);
  if (field != NULL && lua_istable(L, -1)) lua_getfield(L, -1, field);
  t = lua_type(L, -1);
  lua_settop(L, 0);
  return t;
}

/* Was: corio_preload, corio_new and corio_free's unloading read the
** global package (corio_add_paths did not, since e47aadf). After a script
** set package = nil, corio_preload did nothing, corio_new refused the
** state (NULL, as for a state without the package library) and
** corio_free left corio's modules loaded, holding the freed runtime;
** with package a table of the script's, corio.core went to its preload. */
static void test_package_not_global(void) {
  corio_options o;
  corio_rt *rt;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  CHECK(luaL_dostring(L, "decoy = { preload = {}, loaded = {} } "
                         "package = decoy") == 0);
  corio_preload(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_getfield(L, -1, "package");
  lua_getfield(L, -1, "preload");
  lua_getfield(L, -1, "corio.core");
  CHECK(lua_type(L, -1) == LUA_TFUNCTION);
  lua_settop(L, 0);
  CHECK(lua_true(L, "return next(decoy.preload) == nil"));

  CHECK(luaL_dostring(L, "package = nil") == 0);
  memset(&o, 0, sizeof(o));
  o.L = L;
  rt = corio_new(&o);
  CHECK(rt != NULL);
  if (rt == NULL) {
    lua_close(L);
    return;
  }
  add_paths(rt);
  if (corio_run_string(rt, "local corio = require('corio') corio.sleep(0) "
                       "assert(package == nil)", NULL) != 0) {
    fprintf(stderr, "package_not_global: %s\n", corio_errmsg(rt));
    CHECK(0);
  }
  CHECK(loaded_type(L, "corio", NULL) == LUA_TTABLE);
  corio_free(rt);
  /* unloaded from the table require looks in */
  CHECK(loaded_type(L, "corio", NULL) == LUA_TNIL);
  CHECK(loaded_type(L, "corio.core", NULL) == LUA_TNIL);
  /* and a new runtime of the state loads them afresh */
  rt = corio_new(&o);
  CHECK(rt != NULL);
  if (rt != NULL) {
    CHECK(corio_run_string(rt, "require('corio').sleep(0)", NULL) == 0);
    corio_free(rt);
  }
  CHECK(loaded_type(L, "package", "preload") == LUA_TTABLE);
  lua_close(L);
}

/* ---- run_string / run_file with odd chunks --------------------------- */
static void test_odd_chunks(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  char *big;
  size_t i, n = 8u << 20;
  int r;
  CHECK(corio_run_string(rt, NULL, NULL) == UV_EINVAL);
  CHECK(has(corio_errmsg(rt), "corio_run_string"));
  CHECK(lua_gettop(L) == 0);
  CHECK(corio_run_string(rt, "", NULL) == 0);   /* an empty chunk runs */
  CHECK(corio_errmsg(rt)[0] == 0);
  CHECK(lua_gettop(L) == 0);
  /* a truncated bytecode header: a load error, not a crash */
  r = corio_run_string(rt, "\x1bLJ\x02", "=bin");
  CHECK(r == CORIO_ELUA);
  CHECK(corio_errmsg(rt)[0] != 0);
  lua_settop(L, 0);
  /* bytes that are no Lua at all */
  r = corio_run_string(rt, "\x01\x02\xff\xfe", "=bin");
  CHECK(r == CORIO_ELUA && has(corio_errmsg(rt), "bin"));
  lua_settop(L, 0);
  /* a huge chunk (8 MiB of statements) */
  big = malloc(n + 1);
  CHECK(big != NULL);
  if (big != NULL) {
    for (i = 0; i + 8 <= n; i += 8) memcpy(big + i, "X = 1  \n", 8);
    big[i] = 0;
    CHECK(corio_run_string(rt, big, "=big") == 0);
    free(big);
  }
  lua_settop(L, 0);
  /* a huge error message is kept whole */
  r = corio_run_string(rt, "error(string.rep('m', 100000) .. 'END')", NULL);
  CHECK(r == CORIO_ELUA && has(corio_errmsg(rt), "mmmEND"));
  lua_settop(L, 0);
  /* run_file: an empty path and a directory name it */
  r = corio_run_file(rt, "");
  CHECK(r == CORIO_ELUA && has(corio_errmsg(rt), "cannot"));
  lua_settop(L, 0);
  r = corio_run_file(rt, "/");
  CHECK(r == CORIO_ELUA && has(corio_errmsg(rt), "/"));
  lua_settop(L, 0);
  CHECK(corio_run_string(rt, "return 1", NULL) == 0);
  CHECK(corio_errmsg(rt)[0] == 0);
  corio_free(rt);
}

/* ---- the root function missing from the stack ------------------------ */
static void test_no_function(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r;
  /* empty stack: nothing to run */
  r = corio_run_function(rt, 0, 0);
  CHECK(r == UV_EINVAL);
  CHECK(has(corio_errmsg(rt), "corio_start"));
  CHECK(lua_gettop(L) == 0);
  /* more arguments claimed than the stack holds */
  lua_pushinteger(L, 1);
  r = corio_start(rt, 1);
  CHECK(r == UV_EINVAL);
  CHECK(lua_gettop(L) == 1);   /* left alone */
  lua_settop(L, 0);
  r = corio_start(rt, -1);
  CHECK(r == UV_EINVAL);
  CHECK(lua_gettop(L) == 0);
  /* nothing was started */
  CHECK(corio_step(rt, 1) == 0);
  CHECK(corio_finish(rt, 0) == UV_EINVAL);
  CHECK(corio_run_string(rt, "return 1", NULL) == 0);
  corio_free(rt);
}

/* ---- start / step / finish out of order ------------------------------ */
static void test_out_of_order(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r;
  /* step and finish before any start */
  CHECK(corio_step(rt, 0) == 0);
  CHECK(corio_step(rt, 1) == 0);   /* does not wait on an idle loop */
  CHECK(corio_finish(rt, 0) == UV_EINVAL);
  CHECK(has(corio_errmsg(rt), "no run to finish"));
  CHECK(lua_gettop(L) == 0);
  /* start twice: the second is refused, its function replaced by the
  ** error; the first run goes on */
  CHECK(luaL_loadstring(L, "require('corio').sleep(0.01) return 'first'") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(lua_gettop(L) == 0);
  CHECK(luaL_loadstring(L, "return 'second'") == 0);
  lua_pushinteger(L, 7);
  r = corio_start(rt, 1);
  CHECK(r == UV_EBUSY);
  CHECK(lua_gettop(L) == 1 && lua_isstring(L, -1));
  lua_settop(L, 0);
  /* a run function while started */
  CHECK(corio_run_string(rt, "return 1", NULL) == UV_EBUSY);
  lua_settop(L, 0);
  r = corio_finish(rt, 1);
  CHECK(r == 0);
  CHECK(lua_gettop(L) == 1 && has(lua_tostring(L, -1), "first"));
  lua_settop(L, 0);
  /* after the finish: step says over, a second finish has nothing */
  CHECK(corio_step(rt, 1) == 0);
  CHECK(corio_finish(rt, 1) == UV_EINVAL);
  CHECK(lua_gettop(L) == 0);
  /* a started run that is never finished: freed (cancelled) */
  CHECK(luaL_loadstring(L, "require('corio').sleep(10)") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(corio_step(rt, 0) == 1);
  corio_free(rt);
}

/* ---- async functions from the wrong place ---------------------------- */
static int begin_null;
static int l_begin(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) {
    begin_null++;
    return lua_error(L);
  }
  lua_pushinteger(corio_lua(corio_op_runtime(op)), 5);
  CHECK(corio_op_resume(op, 1) == 0);
  return corio_op_suspend(L, op);
}
static int l_fail_null(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  CHECK(corio_op_fail(op, NULL, NULL) == 0);
  CHECK(corio_op_fail(op, "x", "y") == UV_EALREADY);   /* ended, held */
  lua_pushinteger(corio_lua(corio_op_runtime(op)), 1);
  CHECK(corio_op_resume(op, 1) == UV_EALREADY);
  CHECK(corio_op_post(op, NULL, NULL) == UV_EINVAL);
  return corio_op_suspend(L, op);
}
static void test_async_misuse(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r;
  corio_push_async(L, l_begin);
  lua_setglobal(L, "begin");
  corio_push_async(L, l_fail_null);
  lua_setglobal(L, "fail_null");
  /* outside any run: NULL, the documented message */
  begin_null = 0;
  r = luaL_dostring(L, "require('corio') return begin()");
  CHECK(r != 0 && begin_null == 1);
  CHECK(has(lua_tostring(L, -1), "outside a corio task"));
  lua_settop(L, 0);
  /* from a plain coroutine inside a task: refused with an error, the
  ** task goes on */
  begin_null = 0;
  r = corio_run_string(rt,
      "local co = coroutine.create(function() return begin() end)\n"
      "local ok, v = coroutine.resume(co)\n"
      "A = tostring(ok) .. ' ' .. tostring(v)\n"
      "B = begin()", NULL);
  if (r != 0) fprintf(stderr, "async_misuse: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  CHECK(lua_true(L, "return B == 5"));
  CHECK(lua_true(L, "return A == 'true 5'"));
  /* kind and message NULL: the defaults */
  r = corio_run_string(rt,
      "local ok, e = pcall(fail_null)\n"
      "assert(not ok and e.kind == 'error', tostring(e))\n"
      "assert(tostring(e):find('host operation failed'), tostring(e))", NULL);
  if (r != 0) fprintf(stderr, "fail_null: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  corio_free(rt);
}

/* ---- corio_op_resume with fewer values than n ----------------------- */
/* Was: n values were moved whether or not they were there, taking the
** runtime's own stack slots to the task (a crash later, or garbage
** results); a host that pushed on the task's thread did just that. */
static corio_op *kept_op;
static int bad_n_rc[2], good_rc = 99;
static int l_wait(lua_State *L) {
  kept_op = corio_op_begin(L, NULL, NULL);
  if (kept_op == NULL) return lua_error(L);
  return corio_op_suspend(L, kept_op);
}
static void on_resume_timer(uv_timer_t *h) {
  lua_State *R = corio_lua(corio_op_runtime(kept_op));
  int top = lua_gettop(R);
  (void)h;
  bad_n_rc[0] = corio_op_resume(kept_op, top + 3);   /* nothing pushed */
  bad_n_rc[1] = corio_op_resume(kept_op, -1);
  CHECK(lua_gettop(R) == top);
  lua_pushinteger(R, 9);
  good_rc = corio_op_resume(kept_op, 1);   /* the op was not ended */
}
static void test_resume_bad_n(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  uv_timer_t tm;
  int r;
  corio_push_async(L, l_wait);
  lua_setglobal(L, "wait");
  uv_timer_init(corio_loop(rt), &tm);
  uv_timer_start(&tm, on_resume_timer, 5, 0);
  r = corio_run_string(rt, "W = wait()", NULL);
  if (r != 0) fprintf(stderr, "resume_bad_n: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  CHECK(bad_n_rc[0] == UV_EINVAL && bad_n_rc[1] == UV_EINVAL);
  CHECK(good_rc == 0);
  CHECK(lua_true(L, "return W == 9"));
  uv_close((uv_handle_t *)&tm, NULL);
  corio_free(rt);
}

/* ---- a NULL op -------------------------------------------------------- */
/* Was: each of these read through the NULL (a host that did not check
** corio_op_begin's result, or posted before storing the op). */
static int l_suspend_null(lua_State *L) { return corio_op_suspend(L, NULL); }
static void test_null_op(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r;
  CHECK(corio_op_resume(NULL, 0) == UV_EINVAL);
  lua_pushinteger(L, 1);
  CHECK(corio_op_resume(NULL, 1) == UV_EINVAL);
  CHECK(lua_gettop(L) == 1);   /* nothing popped */
  lua_settop(L, 0);
  CHECK(corio_op_fail(NULL, "host", "x") == UV_EINVAL);
  CHECK(corio_op_post(NULL, NULL, NULL) == UV_EINVAL);
  CHECK(corio_op_runtime(NULL) == NULL);
  corio_push_async(L, l_suspend_null);
  lua_setglobal(L, "suspend_null");
  corio_push_async(L, NULL);   /* was: a call through NULL */
  lua_setglobal(L, "no_fn");
  r = corio_run_string(rt,
      "local ok, e = pcall(suspend_null)\n"
      "assert(not ok and tostring(e):find('op is NULL'), tostring(e))\n"
      "ok, e = pcall(no_fn, 1)\n"
      "assert(not ok and tostring(e):find('host function is NULL'), "
      "tostring(e))", NULL);
  if (r != 0) fprintf(stderr, "null_op: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  corio_free(rt);
}

/* ---- corio_push_thread_fn misuse ------------------------------------- */
static int w_add(lua_State *W) {
  lua_pushnumber(W, luaL_checknumber(W, 1) + luaL_checknumber(W, 2));
  return 1;
}
static int w_touch_unsendable(lua_State *W) {
  lua_pushcfunction(W, w_add);   /* a value that cannot be copied back */
  return 1;
}
static void test_thread_fn_misuse(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r;
  corio_push_thread_fn(L, w_add);
  lua_setglobal(L, "add");
  corio_push_thread_fn(L, w_touch_unsendable);
  lua_setglobal(L, "unsendable");
  corio_push_thread_fn(L, NULL);
  lua_setglobal(L, "nofn");
  r = corio_run_string(rt,
      "local corio = require 'corio'\n"
      "assert(corio.to_thread(add, 2, 3) == 5)\n"
      "local ok, e = pcall(corio.to_thread, add, 'x')\n"
      "assert(not ok, 'bad arg')\n"
      "ok, e = pcall(corio.to_thread, unsendable)\n"
      "assert(not ok, 'unsendable result')\n"
      "ok, e = pcall(corio.to_thread, add, 1, function() end)\n"
      "assert(not ok, 'unsendable arg')\n"
      "assert(corio.to_thread(add, 1, 1) == 2)\n"
      /* was: run as an empty chunk, returning nothing */
      "ok, e = pcall(corio.to_thread, nofn, 1)\n"
      "assert(not ok and tostring(e):find('thread function is NULL'), "
      "tostring(e))", NULL);
  if (r != 0) fprintf(stderr, "thread_fn: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  corio_free(rt);
}

/* With an argument, only the test of that name runs. */
int main(int argc, char **argv) {
  static const struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {{"free_and_errmsg", test_free_and_errmsg},
               {"add_paths_no_global", test_add_paths_no_global},
               {"package_not_global", test_package_not_global},
               {"odd_chunks", test_odd_chunks},
               {"no_function", test_no_function},
               {"out_of_order", test_out_of_order},
               {"async_misuse", test_async_misuse},
               {"resume_bad_n", test_resume_bad_n},
               {"null_op", test_null_op},
               {"thread_fn_misuse", test_thread_fn_misuse}};
  size_t i;
  signal(SIGALRM, on_alarm);
  alarm(60);
  for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
    if (argc < 2 || strcmp(argv[1], tests[i].name) == 0) {
      fprintf(stderr, "-- %s\n", tests[i].name);
      tests[i].fn();
    }
  return check_done("test_hunt_capi");
}
