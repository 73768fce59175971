/*
** test_hunt_embed.c: the embedding API as a C host uses it (found by a
** hunt of corio.h): adopted states and loops with the host's own handles,
** run_file errors, runs in sequence on one runtime, two runtimes
** interleaved, host function errors, ops ended from other threads. A
** post pending at corio_free runs then (it was dropped: the host could
** not release its arg). corio_free on an adopted loop with a uv_stop
** pending keeps its memory until its handles closed. corio_errmsg does
** not depend on the script's global tostring. corio.run between two
** corio_step calls says so. Also checked (found sound): custom
** allocators, host handles (idle, prepare, check, async from a thread,
** the host's own uv_run between steps), runs in sequence, runtimes on
** two threads, SIGINT with handle_signals 0/1, worker functions and
** host functions raising odd values, states with few libraries.
*/
#include <pthread.h>
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
  static const char msg[] = "test_hunt_embed: timed out (a hang)\n";
  (void)sig;
  if (write(2, msg, sizeof(msg) - 1) < 0) _exit(2);
  _exit(1);
}

static corio_rt *new_rt(lua_State *L, uv_loop_t *loop, int sig) {
  corio_options o;
  corio_rt *rt;
  memset(&o, 0, sizeof(o));
  o.L = L;
  o.loop = loop;
  o.handle_signals = sig;
  rt = corio_new(&o);
  if (rt != NULL) add_paths(rt);
  return rt;
}

/* ---- run_file errors -------------------------------------------------- */
static void test_run_file_errors(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  FILE *f;
  int top = lua_gettop(L), r;
  r = corio_run_file(rt, "/nonexistent/dir/app.lua");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "/nonexistent/dir/app.lua") != NULL);
  CHECK(lua_gettop(L) == top + 1);
  lua_settop(L, top);
  f = fopen("/tmp/corio_hunt_embed_syntax.lua", "w");
  fputs("local x = = 1\n", f);
  fclose(f);
  r = corio_run_file(rt, "/tmp/corio_hunt_embed_syntax.lua");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "corio_hunt_embed_syntax.lua:1") != NULL);
  CHECK(lua_gettop(L) == top + 1);
  lua_settop(L, top);
  f = fopen("/tmp/corio_hunt_embed_rt.lua", "w");
  fputs("local corio = require 'corio'\ncorio.sleep(0.001)\nerror({code = 7})\n", f);
  fclose(f);
  r = corio_run_file(rt, "/tmp/corio_hunt_embed_rt.lua");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "table value") != NULL);
  CHECK(strstr(corio_errmsg(rt), "corio_hunt_embed_rt.lua:3") != NULL);
  CHECK(lua_istable(L, -1));
  CHECK(lua_gettop(L) == top + 1);
  lua_settop(L, top);
  f = fopen("/tmp/corio_hunt_embed_rt.lua", "w");
  fputs("error('boom here')\n", f);
  fclose(f);
  r = corio_run_file(rt, "/tmp/corio_hunt_embed_rt.lua");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "stack traceback") != NULL);
  CHECK(strstr(corio_errmsg(rt), "boom here") != NULL);
  lua_settop(L, top);
  f = fopen("/tmp/corio_hunt_embed_rt.lua", "w");
  fputs("error(nil)\n", f);
  fclose(f);
  r = corio_run_file(rt, "/tmp/corio_hunt_embed_rt.lua");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "nil value") != NULL);
  lua_settop(L, top);
  r = corio_run_file(rt, "/tmp");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "/tmp") != NULL);
  CHECK(lua_isstring(L, -1));
  lua_settop(L, top);
  CHECK(corio_run_string(rt, "return 1", NULL) == 0);
  CHECK(corio_errmsg(rt)[0] == '\0');
  CHECK(lua_gettop(L) == top);
  corio_free(rt);
  remove("/tmp/corio_hunt_embed_syntax.lua");
  remove("/tmp/corio_hunt_embed_rt.lua");
}

/* ---- host functions raising odd values ------------------------------- */
static int l_raise_table(lua_State *L) {
  lua_newtable(L);
  lua_pushinteger(L, 42);
  lua_setfield(L, -2, "code");
  return lua_error(L);
}
static int l_raise_nil(lua_State *L) { lua_pushnil(L); return lua_error(L); }
static int l_raise_str(lua_State *L) { return luaL_error(L, "host says %s", "no"); }

static void test_host_errors(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int r;
  corio_push_async(L, l_raise_table);
  lua_setglobal(L, "raise_table");
  corio_push_async(L, l_raise_nil);
  lua_setglobal(L, "raise_nil");
  corio_push_async(L, l_raise_str);
  lua_setglobal(L, "raise_str");
  r = corio_run_string(rt,
      "local corio = require 'corio'\n"
      "local ok, e = pcall(raise_table)\n"
      "assert(not ok and type(e) == 'table' and e.code == 42, tostring(e))\n"
      "ok, e = pcall(raise_nil)\n"
      "assert(not ok and e == nil, tostring(e))\n"
      "ok, e = pcall(raise_str)\n"
      "assert(not ok and tostring(e):find('host says no'), tostring(e))\n",
      "=host_errors");
  if (r != 0) fprintf(stderr, "host_errors: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  lua_settop(L, 0);
  r = corio_run_string(rt, "raise_nil()", "=raise_nil");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "nil value") != NULL);
  CHECK(strstr(corio_errmsg(rt), "raise_nil:1") != NULL);
  lua_settop(L, 0);
  r = corio_run_string(rt, "raise_table()", "=raise_table");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "table value") != NULL);
  lua_settop(L, 0);
  corio_free(rt);
}

/* ---- runs in sequence ------------------------------------------------- */
static void test_runs_in_sequence(void) {
  corio_rt *rt = new_rt(NULL, NULL, 1);
  lua_State *L = corio_lua(rt);
  int i, r;
  for (i = 0; i < 5; i++) {
    r = corio_run_string(rt,
        "local corio = require 'corio'\n"
        "n = (n or 0) + 1\n"
        "local t0 = corio.now()\n"
        "corio.sleep(0.002)\n"
        "assert(corio.now() - t0 >= 0.0015, 'slept ' .. (corio.now()-t0))\n"
        "local ev = corio.event and corio.event() \n"
        "corio.spawn(function() corio.sleep(10) end)\n"
        "corio.sleep(0)\n"
        "error('leave a child behind')\n", "=seq");
    CHECK(r == CORIO_ELUA);
    lua_settop(L, 0);
  }
  r = corio_run_string(rt, "assert(n == 5) return n", "=seq2");
  if (r != 0) fprintf(stderr, "seq: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  /* a deadlocked run, then a normal one */
  r = corio_run_string(rt,
      "local corio = require 'corio'\n"
      "local e = corio.event()\n e:wait()\n", "=dead");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "deadlock") != NULL);
  lua_settop(L, 0);
  r = corio_run_string(rt, "require('corio').sleep(0.001)", "=after");
  CHECK(r == 0);
  CHECK(lua_gettop(L) == 0);
  corio_free(rt);
}

/* ---- host handles on an adopted loop, stepping ---------------------- */
static int idles, prepares, checks, asyncs;
static void on_idle(uv_idle_t *h) { (void)h; idles++; }
static void on_prepare(uv_prepare_t *h) { (void)h; prepares++; }
static void on_check(uv_check_t *h) { (void)h; checks++; }
static void on_async(uv_async_t *h) { (void)h; asyncs++; }
static void *async_thread(void *arg) {
  int i;
  for (i = 0; i < 20; i++) {
    uv_async_send(arg);
    usleep(1000);
  }
  return NULL;
}

static void test_host_handles(void) {
  uv_loop_t loop;
  uv_idle_t idle;
  uv_prepare_t prep;
  uv_check_t chk;
  uv_async_t as;
  uv_timer_t tm;
  pthread_t th;
  lua_State *L = luaL_newstate();
  corio_rt *rt;
  int r, steps = 0;
  luaL_openlibs(L);
  uv_loop_init(&loop);
  uv_prepare_init(&loop, &prep);
  uv_prepare_start(&prep, on_prepare);
  uv_check_init(&loop, &chk);
  uv_check_start(&chk, on_check);
  uv_async_init(&loop, &as, on_async);
  uv_timer_init(&loop, &tm);
  rt = new_rt(L, &loop, 0);
  CHECK(rt != NULL);
  pthread_create(&th, NULL, async_thread, &as);
  /* blocking run: host handles keep the loop alive, the run still ends */
  r = corio_run_string(rt,
      "local corio = require 'corio'\n"
      "for i = 1, 5 do corio.sleep(0.002) end\n"
      "local t = corio.to_thread(function() return 3 end)\n"
      "return 1\n", "=handles");
  if (r != 0) fprintf(stderr, "handles: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  CHECK(prepares > 0 && checks > 0);
  lua_settop(L, 0);
  /* deadlock is still found though the host's async keeps the loop alive */
  r = corio_run_string(rt,
      "local corio = require 'corio'\n"
      "corio.event():wait()\n", "=dead");
  CHECK(r == CORIO_ELUA);
  lua_settop(L, 0);
  /* stepped with wait=1 and an idle handle of the host */
  uv_idle_init(&loop, &idle);
  uv_idle_start(&idle, on_idle);
  CHECK(luaL_loadstring(L, "local corio = require 'corio'\n"
      "corio.sleep(0.01) return 'x'") == 0);
  CHECK(corio_start(rt, 0) == 0);
  while ((r = corio_step(rt, 1)) == 1) steps++;
  CHECK(r == 0);
  CHECK(corio_finish(rt, 1) == 0);
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "x") == 0);
  lua_settop(L, 0);
  CHECK(idles > 0);
  pthread_join(th, NULL);
  corio_free(rt);
  /* the host's handles are untouched and still work */
  uv_idle_stop(&idle);
  asyncs = 0;
  uv_async_send(&as);
  uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(asyncs == 1);
  uv_close((uv_handle_t *)&idle, NULL);
  uv_close((uv_handle_t *)&prep, NULL);
  uv_close((uv_handle_t *)&chk, NULL);
  uv_close((uv_handle_t *)&as, NULL);
  uv_close((uv_handle_t *)&tm, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
}

/* ---- custom allocator ------------------------------------------------ */
static size_t live_bytes;
static void *count_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (p != NULL) live_bytes -= osize;
  if (nsize == 0) { free(p); return NULL; }
  p = realloc(p, nsize);
  if (p != NULL) live_bytes += nsize;
  return p;
}

static void test_custom_allocator(void) {
  lua_State *L = lua_newstate(count_alloc, NULL);
  corio_rt *rt;
  int r;
  if (L == NULL) { fprintf(stderr, "(lua_newstate refused a custom allocator)\n"); return; }
  luaL_openlibs(L);
  rt = new_rt(L, NULL, 0);
  CHECK(rt != NULL);
  r = corio_run_string(rt,
      "local corio = require 'corio'\n"
      "local s = string.rep('x', 300000)\n"
      "local ch = corio.channel and corio.channel(1)\n"
      "corio.sleep(0.001) return #s", "=alloc");
  if (r != 0) fprintf(stderr, "alloc: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  lua_settop(L, 0);
  corio_free(rt);
  lua_close(L);
  CHECK(live_bytes == 0);
}

/* ---- two runtimes interleaved --------------------------------------- */
static void test_two_interleaved(void) {
  corio_rt *a = new_rt(NULL, NULL, 1), *b = new_rt(NULL, NULL, 1);
  lua_State *La = corio_lua(a), *Lb = corio_lua(b);
  int ra = 1, rb = 1;
  CHECK(luaL_loadstring(La, "local c = require 'corio' for i=1,5 do c.sleep(0.001) end return 'a'") == 0);
  CHECK(luaL_loadstring(Lb, "local c = require 'corio' for i=1,3 do c.sleep(0.002) end return 'b'") == 0);
  CHECK(corio_start(a, 0) == 0);
  CHECK(corio_start(b, 0) == 0);
  while (ra == 1 || rb == 1) {
    if (ra == 1) ra = corio_step(a, 0);
    if (rb == 1) rb = corio_step(b, 0);
    uv_sleep(1);
  }
  CHECK(corio_finish(a, 1) == 0);
  CHECK(corio_finish(b, 1) == 0);
  CHECK(strcmp(lua_tostring(La, -1), "a") == 0);
  CHECK(strcmp(lua_tostring(Lb, -1), "b") == 0);
  /* b frees while a is mid-run */
  lua_settop(La, 0); lua_settop(Lb, 0);
  CHECK(luaL_loadstring(La, "local c = require 'corio' c.sleep(0.01) return 'a'") == 0);
  CHECK(luaL_loadstring(Lb, "local c = require 'corio' c.sleep(10)") == 0);
  CHECK(corio_start(a, 0) == 0);
  CHECK(corio_start(b, 0) == 0);
  corio_step(b, 0);
  corio_step(a, 0);
  corio_free(b);
  CHECK(corio_finish(a, 1) == 0);
  corio_free(a);
}

/* ---- outside any run ------------------------------------------------ */
static void test_outside_run(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int r;
  r = corio_run_string(rt, "return 1", NULL);
  CHECK(r == 0);
  lua_settop(L, 0);
  CHECK(corio_step(rt, 1) == 0);
  CHECK(corio_finish(rt, 0) == UV_EINVAL);
  /* corio functions from a plain pcall: errors, no crash */
  r = luaL_dostring(L, "local c = require 'corio'\n"
      "local t0 = c.now()\n"
      "local ok, e = pcall(c.sleep, 0.01) assert(ok, 'sleep')\n"
      "assert(c.now() - t0 >= 0.009, 'slept')\n"
      "ok, e = pcall(c.spawn, function() end) assert(not ok, 'spawn')\n"
      "ok, e = pcall(c.event) \n"
      "if ok then local ev = e ev:set() end\n"
      "ok, e = pcall(c.to_thread, function() return 1 end) assert(ok and e == 1, 'to_thread')\n"
      "ok, e = pcall(c.now) \n"
      "ok, e = pcall(c.scope, function() end) \n"
      "return true");
  if (r != 0) fprintf(stderr, "outside: %s\n", lua_tostring(L, -1));
  CHECK(r == 0);
  lua_settop(L, 0);
  r = corio_run_string(rt, "require('corio').sleep(0.001) return 1", NULL);
  CHECK(r == 0);
  lua_settop(L, 0);
  /* between two steps of a run the host calls into corio */
  CHECK(luaL_loadstring(L, "local c = require 'corio' c.sleep(0.02) return 'r'") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(corio_step(rt, 0) == 1);
  r = luaL_dostring(L, "local c = require 'corio'\n"
      "local ok, e = pcall(c.sleep, 0.001)\n"
      "between_sleep = tostring(ok) .. ' ' .. tostring(e)\n"
      "ok, e = pcall(c.spawn, function() end)\n"
      "between_spawn = tostring(ok) .. ' ' .. tostring(e)\n"
      "ok, e = pcall(c.run, function() c.sleep(0.001) return 5 end)\n"
      "between_run = tostring(ok) .. ' ' .. tostring(e)\n");
  if (r != 0) fprintf(stderr, "between: %s\n", lua_tostring(L, -1));
  lua_settop(L, 0);
  /* refused, each saying why (was for corio.run: "called inside a
  ** running task", though no task ran) */
  lua_getglobal(L, "between_sleep");
  CHECK(strstr(lua_tostring(L, -1), "false") == lua_tostring(L, -1));
  CHECK(strstr(lua_tostring(L, -1), "outside any task") != NULL);
  lua_getglobal(L, "between_spawn");
  CHECK(strstr(lua_tostring(L, -1), "no task is running") != NULL);
  lua_getglobal(L, "between_run");
  CHECK(strstr(lua_tostring(L, -1), "corio_step") != NULL);
  CHECK(strstr(lua_tostring(L, -1), "inside a running task") == NULL);
  lua_settop(L, 0);
  while (corio_step(rt, 1) == 1) {
  }
  r = corio_finish(rt, 1);
  if (r != 0) fprintf(stderr, "after between: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  lua_settop(L, 0);
  corio_free(rt);
}

/* ---- a post pending at corio_free ---------------------------------- */
/* Was: an abandoned op that a thread posted after the run ended, with no
** loop turn before corio_free, had its post dropped: fn never ran, so the
** host's arg leaked and its thread's work was never acknowledged. */
typedef struct pjob {
  corio_op *op;
  pthread_t th;
  int ran, rc;
} pjob;
static pjob *pj;
static void pjob_done(corio_op *op, void *arg) {
  pjob *j = arg;
  lua_State *L = corio_lua(corio_op_runtime(op));
  lua_pushinteger(L, 1);
  j->rc = corio_op_resume(op, 1);
  j->ran++;
}
static void *pjob_run(void *arg) {
  pjob *j = arg;
  CHECK(corio_op_post(j->op, pjob_done, j) == 0);
  return NULL;
}
static int l_begin_post_return(lua_State *L) {
  pj = calloc(1, sizeof(*pj));
  pj->op = corio_op_begin(L, NULL, NULL);
  if (pj->op == NULL) return lua_error(L);
  pthread_create(&pj->th, NULL, pjob_run, pj);
  pthread_join(pj->th, NULL);   /* posted before the call returns */
  return 0;                     /* abandoned */
}

static void test_post_pending_at_free(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int r;
  corio_push_async(L, l_begin_post_return);
  lua_setglobal(L, "begin_post_return");
  r = corio_run_string(rt, "begin_post_return()", "=post");
  CHECK(r == 0);
  CHECK(pj->ran == 0);   /* still pending: nothing turned the loop */
  corio_free(rt);
  /* the posted function ran (its resume only says the op is gone), so
  ** the host could release what it passed */
  CHECK(pj->ran == 1);
  CHECK(pj->rc == UV_ECANCELED);
  free(pj);
}

/* ---- corio_free from the host's own loop callback ------------------ */
static corio_rt *cb_rt;
static int cb_steps;
static void step_in_idle(uv_idle_t *h) {
  if (cb_rt != NULL && corio_step(cb_rt, 0) == 1) cb_steps++;
  (void)h;
}
static void free_in_timer(uv_timer_t *h) {
  corio_free(cb_rt);
  cb_rt = NULL;
  uv_close((uv_handle_t *)h, NULL);
}
static void idle_closer(uv_timer_t *h) {
  uv_close((uv_handle_t *)h->data, NULL);
  uv_close((uv_handle_t *)h, NULL);
}

static void test_free_from_host_callback(void) {
  uv_loop_t loop;
  uv_idle_t idle;
  uv_timer_t tfree, tend;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  uv_loop_init(&loop);
  cb_rt = new_rt(L, &loop, 0);
  CHECK(luaL_loadstring(L, "local c = require 'corio' c.sleep(10)") == 0);
  CHECK(corio_start(cb_rt, 0) == 0);
  uv_idle_init(&loop, &idle);
  uv_idle_start(&idle, step_in_idle);
  uv_update_time(&loop);   /* (loading corio may have taken 20 ms) */
  uv_timer_init(&loop, &tfree);
  uv_timer_start(&tfree, free_in_timer, 20, 0);
  uv_timer_init(&loop, &tend);
  tend.data = &idle;
  uv_timer_start(&tend, idle_closer, 40, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(cb_steps > 0);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
}

/* ---- corio_free on an adopted loop with a uv_stop pending ---------- */
/* Was: the loop turn corio_free makes to close its handles did nothing
** (uv_stop pending), and the runtime's memory, which holds them, was
** freed while they were still queued on the host's loop: the host's next
** uv_run (or this uv_walk) read freed memory. */
static int walked;
static void walk_cb(uv_handle_t *h, void *arg) {
  /* read in instrumented code: a handle in freed memory is reported */
  walked += h->type != UV_UNKNOWN_HANDLE;
  (void)arg;
}
static void test_free_with_stop_pending(void) {
  uv_loop_t loop;
  lua_State *L = luaL_newstate();
  corio_rt *rt;
  luaL_openlibs(L);
  uv_loop_init(&loop);
  rt = new_rt(L, &loop, 0);
  CHECK(corio_run_string(rt, "require('corio').sleep(0.001)", NULL) == 0);
  uv_stop(&loop);
  corio_free(rt);
  walked = 0;
  uv_walk(&loop, walk_cb, NULL);
  CHECK(walked > 0);   /* corio's handles, closing, still queued */
  uv_run(&loop, UV_RUN_DEFAULT);
  walked = 0;
  uv_walk(&loop, walk_cb, NULL);
  CHECK(walked == 0);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
}

/* ---- SIGINT with handle_signals 1, stepped; a run of another runtime
** inside a host function ---------------------------------------------- */
static volatile sig_atomic_t host_ints;
static void host_int(int sig) { (void)sig; host_ints++; }
static int l_sigint(lua_State *L) { raise(SIGINT); (void)L; return 0; }
static corio_rt *inner_rt;
static int l_inner_run(lua_State *L) {
  lua_State *IL = corio_lua(inner_rt);
  int r = corio_run_string(inner_rt,
      "local c = require 'corio' c.sleep(0.002) return 9", "=inner");
  lua_pushinteger(L, r);
  lua_settop(IL, 0);
  return 1;
}

static void test_signals_and_inner_runtime(void) {
  corio_rt *rt = new_rt(NULL, NULL, 1);
  lua_State *L = corio_lua(rt);
  struct sigaction sa, old;
  int r;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = host_int;
  sigaction(SIGINT, &sa, &old);
  lua_pushcfunction(L, l_sigint);
  lua_setglobal(L, "sigint");
  CHECK(luaL_loadstring(L, "local c = require 'corio'\n"
      "c.sleep(0.001) sigint() c.sleep(5)") == 0);
  CHECK(corio_start(rt, 0) == 0);
  while (corio_step(rt, 1) == 1) {
  }
  r = corio_finish(rt, 0);
  CHECK(r == CORIO_EINTR_RUN);
  CHECK(host_ints == 0);
  lua_settop(L, 0);
  raise(SIGINT);             /* after the run: the host's handler again */
  CHECK(host_ints == 1);
  /* a run of a second runtime from a host function of the first */
  inner_rt = new_rt(NULL, NULL, 1);
  lua_pushcfunction(L, l_inner_run);
  lua_setglobal(L, "inner_run");
  r = corio_run_string(rt, "local c = require 'corio'\n"
      "local t = c.spawn(function() c.sleep(0.001) return 1 end)\n"
      "assert(inner_run() == 0)\n"
      "c.sleep(0.001) sigint() c.sleep(5)", "=outer");
  CHECK(r == CORIO_EINTR_RUN);
  CHECK(host_ints == 1);
  lua_settop(L, 0);
  raise(SIGINT);
  CHECK(host_ints == 2);
  corio_free(inner_rt);
  corio_free(rt);
  sigaction(SIGINT, &old, NULL);
}

/* ---- corio_errmsg does not depend on the script's globals ---------- */
/* Was: corio_errmsg came from the global tostring: a script that cleared
** or replaced it left "(error object is not a string)" (or its own text)
** in place of the error. */
static void test_errmsg_without_tostring(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int r;
  r = corio_run_string(rt, "tostring = nil error('boom one')", "=g1");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "boom one") != NULL);
  lua_settop(L, 0);
  r = corio_run_string(rt, "local x = = 2", "=g2");   /* a load error */
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "g2:1:") != NULL);
  lua_settop(L, 0);
  r = corio_run_string(rt, "tostring = function() return 'lies' end\n"
                           "require('corio').sleep(0) error('boom two')",
                       "=g3");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "boom two") != NULL);
  CHECK(strstr(corio_errmsg(rt), "lies") == NULL);
  lua_settop(L, 0);
  corio_free(rt);
}

/* ---- runtimes on two threads at once -------------------------------- */
static void *thread_runtime(void *arg) {
  int i, *ok = arg;
  for (i = 0; i < 3; i++) {
    corio_rt *rt = new_rt(NULL, NULL, i & 1);
    int r = corio_run_string(rt,
        "local c = require 'corio'\n"
        "local n = 0\n"
        "c.gather({function() for i = 1, 20 do c.sleep(0.0005) n = n + 1 end end,\n"
        "  function() return c.to_thread(function(x) return x * 2 end, 21) end,\n"
        "  function() local s = string.rep('y', 200000) c.sleep(0.001) return #s end})\n"
        "assert(n == 20)", "=thread");
    if (r != 0) fprintf(stderr, "thread run: %s\n", corio_errmsg(rt));
    *ok += r == 0;
    corio_free(rt);
  }
  return NULL;
}

static void test_runtimes_on_threads(void) {
  pthread_t a, b;
  int oka = 0, okb = 0;
  pthread_create(&a, NULL, thread_runtime, &oka);
  pthread_create(&b, NULL, thread_runtime, &okb);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  CHECK(oka == 3 && okb == 3);
}

/* ---- corio_free of a stepped run whose op a thread still works on --- */
typedef struct fjob {
  corio_op *op;
  pthread_t th;
  int cancelled, rc;
} fjob;
static fjob fj;
static void fjob_done(corio_op *op, void *arg) {
  fjob *j = arg;
  lua_pushliteral(corio_lua(corio_op_runtime(op)), "late");
  j->rc = corio_op_resume(op, 1);
}
static void *fjob_run(void *arg) {
  fjob *j = arg;
  usleep(30000);
  corio_op_post(j->op, fjob_done, j);
  return NULL;
}
static void fjob_cancel(corio_op *op, void *data) {
  (void)op;
  ((fjob *)data)->cancelled++;
}
static int l_slow_thread(lua_State *L) {
  fj.op = corio_op_begin(L, fjob_cancel, &fj);
  if (fj.op == NULL) return lua_error(L);
  pthread_create(&fj.th, NULL, fjob_run, &fj);
  return corio_op_suspend(L, fj.op);
}

static void test_free_with_op_in_flight(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  memset(&fj, 0, sizeof(fj));
  fj.rc = 1;
  corio_push_async(L, l_slow_thread);
  lua_setglobal(L, "slow_thread");
  CHECK(luaL_loadstring(L, "local c = require 'corio'\n"
      "c.defer(function() cleaned = true end)\n"
      "return slow_thread()") == 0);
  CHECK(corio_start(rt, 0) == 0);
  CHECK(corio_step(rt, 0) == 1);
  corio_free(rt);            /* waits for the thread's post, then frees */
  pthread_join(fj.th, NULL);
  CHECK(fj.cancelled == 1);
  CHECK(fj.rc == UV_ECANCELED);
}

/* ---- ops ended by the host's own uv_async from its thread ----------- */
static uv_async_t host_async;
static corio_op *aop[2];
static int aop_rc[2] = {1, 1};
static void host_async_cb(uv_async_t *h) {
  lua_State *L;
  (void)h;
  if (aop[0] != NULL) {
    L = corio_lua(corio_op_runtime(aop[0]));
    lua_pushinteger(L, 7);
    lua_pushnil(L);
    lua_pushliteral(L, "z");
    aop_rc[0] = corio_op_resume(aop[0], 3);
    aop[0] = NULL;
  }
  if (aop[1] != NULL) {
    aop_rc[1] = corio_op_fail(aop[1], NULL, NULL);
    aop[1] = NULL;
  }
}
static void *send_later(void *arg) {
  usleep(5000);
  uv_async_send(arg);
  return NULL;
}
static int l_async_op(lua_State *L) {
  int i = (int)luaL_checkinteger(L, 1);
  aop[i] = corio_op_begin(L, NULL, NULL);
  if (aop[i] == NULL) return lua_error(L);
  return corio_op_suspend(L, aop[i]);
}

static void test_host_async_resume(void) {
  uv_loop_t loop;
  pthread_t th;
  lua_State *L = luaL_newstate();
  corio_rt *rt;
  int r;
  luaL_openlibs(L);
  uv_loop_init(&loop);
  uv_async_init(&loop, &host_async, host_async_cb);
  rt = new_rt(L, &loop, 0);
  corio_push_async(L, l_async_op);
  lua_setglobal(L, "async_op");
  CHECK(luaL_loadstring(L, "local c = require 'corio'\n"
      "local a, b, d = async_op(0)\n"
      "assert(a == 7 and b == nil and d == 'z', 'values')\n"
      "local ok, e = pcall(async_op, 1)\n"
      "assert(not ok and e.kind == 'error', 'kind')\n"
      "assert(tostring(e):find('host operation failed'), tostring(e))\n"
      "return 'done'") == 0);
  CHECK(corio_start(rt, 0) == 0);
  pthread_create(&th, NULL, send_later, &host_async);
  /* (a step that runs the task into its second op then waits for an
  ** event: so no waiting until that op began) */
  while (aop[1] == NULL && corio_step(rt, 0) == 1) uv_sleep(1);
  pthread_join(th, NULL);
  pthread_create(&th, NULL, send_later, &host_async);
  while ((r = corio_step(rt, 1)) == 1) {
  }
  pthread_join(th, NULL);
  r = corio_finish(rt, 1);
  if (r != 0) fprintf(stderr, "async: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  CHECK(aop_rc[0] == 0 && aop_rc[1] == 0);
  lua_settop(L, 0);
  corio_free(rt);
  uv_close((uv_handle_t *)&host_async, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
}

/* ---- worker functions of the host that raise ------------------------ */
static int w_raise_table(lua_State *W) {
  lua_newtable(W);
  return lua_error(W);
}
static int w_raise_str(lua_State *W) { return luaL_error(W, "worker %d", 5); }
static int w_raise_nil(lua_State *W) { lua_pushnil(W); return lua_error(W); }
static int w_return_fn(lua_State *W) {
  lua_pushcfunction(W, w_raise_nil);   /* not copyable */
  return 1;
}

static void test_thread_fn_errors(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int r;
  corio_push_thread_fn(L, w_raise_table);
  lua_setglobal(L, "w_table");
  corio_push_thread_fn(L, w_raise_str);
  lua_setglobal(L, "w_str");
  corio_push_thread_fn(L, w_raise_nil);
  lua_setglobal(L, "w_nil");
  corio_push_thread_fn(L, w_return_fn);
  lua_setglobal(L, "w_fn");
  r = corio_run_string(rt, "local c = require 'corio'\n"
      "local ok, e = pcall(c.to_thread, w_str)\n"
      "assert(not ok and tostring(e):find('worker 5'), tostring(e))\n"
      "ok, e = pcall(c.to_thread, w_table)\n"
      "assert(not ok, 'table')\n"
      "ok, e = pcall(c.to_thread, w_nil)\n"
      "assert(not ok, 'nil')\n"
      "ok, e = pcall(c.to_thread, w_fn)\n"
      "assert(not ok, 'fn')\n"
      "return 1", "=workers");
  if (r != 0) fprintf(stderr, "workers: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  lua_settop(L, 0);
  /* started, never stepped, freed: nothing leaks, nothing runs */
  CHECK(luaL_loadstring(L, "ran = true") == 0);
  CHECK(corio_start(rt, 0) == 0);
  corio_free(rt);
}

/* ---- adopted states with few libraries ------------------------------ */
static void open_lib(lua_State *L, lua_CFunction f, const char *name) {
  lua_pushcfunction(L, f);
  lua_pushstring(L, name);
  lua_call(L, 1, 0);
}

static void test_minimal_states(void) {
  lua_State *L = luaL_newstate();
  corio_rt *rt;
  int r;
  open_lib(L, luaopen_package, "package");
  rt = new_rt(L, NULL, 0);
  CHECK(rt != NULL);
  if (rt != NULL) {
    r = corio_run_string(rt, "return 1", "=bare");
    CHECK(r == CORIO_ELUA || r == 0);
    CHECK(corio_errmsg(rt)[0] != '\0' || r == 0);
    lua_settop(L, 0);
    corio_free(rt);
  }
  lua_close(L);
  /* base and package only: a sandboxing host */
  L = luaL_newstate();
  open_lib(L, luaopen_base, "");
  open_lib(L, luaopen_package, "package");
  rt = new_rt(L, NULL, 0);
  CHECK(rt != NULL);
  if (rt != NULL) {
    r = corio_run_string(rt, "return 1", "=sandbox");
    CHECK(r == CORIO_ELUA);
    CHECK(strstr(corio_errmsg(rt), "string.buffer") != NULL);
    lua_settop(L, 0);
    corio_free(rt);
  }
  lua_close(L);
}

/* ---- a root that is not a function ---------------------------------- */
static void test_root_not_function(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int r;
  lua_pushnil(L);
  r = corio_run_function(rt, 0, 0);
  CHECK(r == CORIO_ELUA);
  CHECK(lua_gettop(L) == 1);
  CHECK(strstr(corio_errmsg(rt), "attempt to call a nil value") != NULL);
  lua_settop(L, 0);
  lua_pushinteger(L, 3);
  lua_pushinteger(L, 4);
  r = corio_run_function(rt, 1, 0);
  CHECK(r == CORIO_ELUA);
  CHECK(lua_gettop(L) == 1);
  lua_settop(L, 0);
  /* a callable table */
  CHECK(luaL_dostring(L, "return setmetatable({}, {__call = function(_, x) "
                         "require('corio').sleep(0) return x + 1 end})") == 0);
  lua_pushinteger(L, 41);
  r = corio_run_function(rt, 1, 1);
  CHECK(r == 0 && lua_tointeger(L, -1) == 42);
  lua_settop(L, 0);
  CHECK(corio_run_string(rt, "return 1", NULL) == 0);
  corio_free(rt);
}

/* ---- corio's timers firing in the host's own uv_run ----------------- */
static void test_timers_fire_in_host_run(void) {
  uv_loop_t loop;
  lua_State *L = luaL_newstate();
  corio_rt *rt;
  uint64_t t0;
  int r, n = 0;
  luaL_openlibs(L);
  uv_loop_init(&loop);
  rt = new_rt(L, &loop, 0);
  CHECK(luaL_loadstring(L, "local c = require 'corio'\n"
      "for i = 1, 10 do c.sleep(0.003) end return 'ok'") == 0);
  CHECK(corio_start(rt, 0) == 0);
  t0 = uv_hrtime();
  for (;;) {
    r = corio_step(rt, 1);
    if (r != 1) break;
    uv_sleep(4);                      /* the host's frame */
    uv_run(&loop, UV_RUN_NOWAIT);     /* the host turns the loop itself */
    if (++n > 1000) break;
  }
  CHECK(r == 0);
  CHECK(uv_hrtime() - t0 < (uint64_t)2e9);
  CHECK(corio_finish(rt, 1) == 0);
  CHECK(strcmp(lua_tostring(L, -1), "ok") == 0);
  lua_settop(L, 0);
  corio_free(rt);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
}

/* ---- SIGINT from another thread while a step blocks ------------------ */
static void *sigint_later(void *arg) {
  usleep(20000);
  kill(getpid(), SIGINT);
  (void)arg;
  return NULL;
}

static void test_sigint_while_blocked(void) {
  corio_rt *rt = new_rt(NULL, NULL, 1);
  lua_State *L = corio_lua(rt);
  pthread_t th;
  int r;
  uint64_t t0 = uv_hrtime();
  CHECK(luaL_loadstring(L, "local c = require 'corio'\n"
      "c.defer(function() cleaned = true end)\n"
      "c.sleep(30)") == 0);
  CHECK(corio_start(rt, 0) == 0);
  pthread_create(&th, NULL, sigint_later, NULL);
  while (corio_step(rt, 1) == 1) {
  }
  pthread_join(th, NULL);
  r = corio_finish(rt, 0);
  CHECK(r == CORIO_EINTR_RUN);
  CHECK(uv_hrtime() - t0 < (uint64_t)10e9);
  lua_settop(L, 0);
  lua_getglobal(L, "cleaned");
  CHECK(lua_toboolean(L, -1));
  lua_settop(L, 0);
  corio_free(rt);
}

/* ---- corio_run_file(rt, NULL): standard input, as luaL_loadfile ----- */
static void test_run_file_stdin(void) {
  corio_rt *rt = new_rt(NULL, NULL, 0);
  lua_State *L = corio_lua(rt);
  int fds[2], saved = dup(0);
  static const char code[] = "require('corio').sleep(0) from_stdin = 6\n";
  CHECK(pipe(fds) == 0);
  CHECK(write(fds[1], code, sizeof(code) - 1) == (ssize_t)(sizeof(code) - 1));
  close(fds[1]);
  dup2(fds[0], 0);
  close(fds[0]);
  clearerr(stdin);
  CHECK(corio_run_file(rt, NULL) == 0);
  dup2(saved, 0);
  close(saved);
  clearerr(stdin);
  lua_getglobal(L, "from_stdin");
  CHECK(lua_tointeger(L, -1) == 6);
  lua_settop(L, 0);
  corio_free(rt);
}

int main(void) {
  signal(SIGALRM, on_alarm);
  alarm(100);
  test_run_file_errors();
  test_host_errors();
  test_runs_in_sequence();
  test_host_handles();
  test_custom_allocator();
  test_two_interleaved();
  test_outside_run();
  test_post_pending_at_free();
  test_free_from_host_callback();
  test_free_with_stop_pending();
  test_signals_and_inner_runtime();
  test_errmsg_without_tostring();
  test_runtimes_on_threads();
  test_free_with_op_in_flight();
  test_host_async_resume();
  test_thread_fn_errors();
  test_minimal_states();
  test_root_not_function();
  test_timers_fire_in_host_run();
  test_sigint_while_blocked();
  test_run_file_stdin();
  return check_done("test_hunt_embed");
}
