/*
** test_op_hardening.c: misuse of the host op API (corio_op_* in corio.h)
** that used to hang, corrupt or crash. An op begun by a host function
** that then returned or raised without corio_op_suspend is abandoned: the
** run ends, the cancel callback runs, and the host's late resume or fail
** only frees it (UV_ECANCELED). A second corio_op_post before the first
** ran returns UV_EALREADY; an op ended while a post was pending stays
** valid until the posted function ran. corio_free from inside a step of
** the same runtime frees it when the outermost call returns. Ops begin
** only in functions made by corio_push_async, and suspend once.
**
** Runs that could hang are stepped against a deadline, and an alarm ends
** the program if a step itself never returns: a hang fails the test.
*/
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static corio_rt *the_rt;

static void on_alarm(int sig) {
  static const char msg[] = "test_op_hardening: timed out (a hang)\n";
  (void)sig;
  if (write(2, msg, sizeof(msg) - 1) < 0) _exit(2);
  _exit(1);
}

static corio_rt *new_rt(void) {
  corio_rt *rt = corio_new(NULL);
  if (rt != NULL) add_paths(rt);
  the_rt = rt;
  return rt;
}

/* Run code as a stepped run for at most secs seconds; returns
** corio_finish's code. A run still going then is a hang: reported, and
** the program ends (its runtime could not be freed). */
static int run_bounded(corio_rt *rt, const char *code, double secs) {
  lua_State *L = corio_lua(rt);
  uint64_t end = uv_hrtime() + (uint64_t)(secs * 1e9);
  int r;
  if (luaL_loadstring(L, code) != 0) {
    fprintf(stderr, "load: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  if ((r = corio_start(rt, 0)) != 0) return r;
  while (corio_step(rt, 0)) {
    if (uv_hrtime() > end) {
      fprintf(stderr, "%s:%d: the run did not end within %g s\n", __FILE__,
              __LINE__, secs);
      failures++;
      exit(check_done("test_op_hardening"));
    }
    uv_sleep(1);
  }
  r = corio_finish(rt, 0);
  if (r != 0) fprintf(stderr, "run: %s\n", corio_errmsg(rt));
  return r;
}

/* ---- 1. an op begun and neither suspended on nor ended ------------- */

typedef struct job {
  corio_op *op;
  int cancelled;
  int free_on_cancel;    /* the host releases the job in the callback */
  int fail_on_cancel;    /* ... or ends the op there */
  int fail_rc;
} job;

static int cancels;
static job *kept[8];
static int nkept;

static void job_cancel(corio_op *op, void *data) {
  job *j = data;
  cancels++;
  if (j->fail_on_cancel) {
    j->fail_rc = corio_op_fail(op, "host", "stopped");
    j->op = NULL;
  }
  if (j->free_on_cancel) free(j);
  else j->cancelled = 1;
}

static job *begin_job(lua_State *L, int free_on_cancel, int fail_on_cancel) {
  job *j = calloc(1, sizeof(*j));
  if (j == NULL) return NULL;
  j->free_on_cancel = free_on_cancel;
  j->fail_on_cancel = fail_on_cancel;
  j->op = corio_op_begin(L, job_cancel, j);
  if (j->op == NULL) {
    free(j);
    return NULL;
  }
  return j;
}

/* Begins an op, keeps it for a late resume, returns without suspending. */
static int l_begin_return(lua_State *L) {
  job *j = begin_job(L, 0, 0);
  if (j == NULL) return lua_error(L);
  kept[nkept++] = j;
  lua_pushliteral(L, "returned");
  return 1;
}
/* ... or raises instead. */
static int l_begin_raise(lua_State *L) {
  job *j = begin_job(L, 0, 0);
  if (j == NULL) return lua_error(L);
  kept[nkept++] = j;
  return luaL_error(L, "host: gave up");
}
/* The host frees its job when told the op is not awaited, and never ends
** the op: corio_free frees it. */
static int l_begin_forget(lua_State *L) {
  if (begin_job(L, 1, 0) == NULL) return lua_error(L);
  return luaL_error(L, "host: forgot the op");
}
/* The host ends the op in its cancel callback. */
static job *failed_in_cancel;
static int l_begin_fail_in_cancel(lua_State *L) {
  job *j = begin_job(L, 0, 1);
  if (j == NULL) return lua_error(L);
  failed_in_cancel = j;
  return 0;
}

/* Was: each of these left the op counted as pending work: the run never
** ended (no deadlock reported either). */
static void test_abandoned_ops(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int i, top;
  cancels = nkept = 0;
  corio_push_async(L, l_begin_return);
  lua_setglobal(L, "begin_return");
  corio_push_async(L, l_begin_raise);
  lua_setglobal(L, "begin_raise");
  corio_push_async(L, l_begin_forget);
  lua_setglobal(L, "begin_forget");
  corio_push_async(L, l_begin_fail_in_cancel);
  lua_setglobal(L, "begin_fail_in_cancel");
  CHECK(run_bounded(rt,
      "local corio = require 'corio' "
      "R1 = begin_return() "
      "local ok, e = pcall(begin_raise) "
      "E1 = not ok and tostring(e):find('gave up') ~= nil "
      "ok, e = pcall(begin_forget) "
      "E2 = not ok and tostring(e):find('forgot the op') ~= nil "
      "begin_fail_in_cancel() "
      "corio.sleep(0.001)", 5) == 0);
  CHECK(lua_true(L, "return R1 == 'returned' and E1 == true and E2 == true"));
  CHECK(cancels == 4);
  CHECK(failed_in_cancel != NULL && failed_in_cancel->fail_rc == UV_ECANCELED);
  free(failed_in_cancel);
  failed_in_cancel = NULL;
  /* the host ends the two kept ops late: they are only freed */
  CHECK(nkept == 2);
  top = lua_gettop(L);
  for (i = 0; i < nkept; i++) {
    CHECK(kept[i]->cancelled == 1);
    lua_pushinteger(L, 5);
    lua_pushinteger(L, 6);
    if (i == 0) CHECK(corio_op_resume(kept[i]->op, 2) == UV_ECANCELED);
    else CHECK(corio_op_fail(kept[i]->op, "host", "late") == UV_ECANCELED);
    if (i != 0) lua_pop(L, 2);
    CHECK(lua_gettop(L) == top);
    free(kept[i]);
  }
  nkept = 0;
  corio_free(rt);   /* frees the forgotten op */
}

/* A late resume of an abandoned op while its task waits on something
** else (here a sleep): the task is not woken by it. */
static uv_timer_t late_timer;
static int late_rc = 1;

static void late_fire(uv_timer_t *h) {
  lua_State *L = corio_lua(the_rt);
  (void)h;
  lua_pushliteral(L, "stolen");
  late_rc = corio_op_resume(kept[0]->op, 1);
  free(kept[0]);
  nkept = 0;
  uv_close((uv_handle_t *)&late_timer, NULL);
}

static int l_begin_return_timer(lua_State *L) {
  l_begin_return(L);
  uv_timer_init(corio_loop(the_rt), &late_timer);
  uv_timer_start(&late_timer, late_fire, 5, 0);
  return 1;
}

/* An abandoned op posted from a thread: the posted function's resume
** only frees it. */
typedef struct tpost { corio_op *op; pthread_t th; } tpost;
static int tpost_rc = 1;

static void tpost_done(corio_op *op, void *arg) {
  tpost *p = arg;
  pthread_join(p->th, NULL);
  lua_pushliteral(corio_lua(corio_op_runtime(op)), "stolen");
  tpost_rc = corio_op_resume(op, 1);
  free(p);
}
static void *tpost_run(void *arg) {
  tpost *p = arg;
  uv_sleep(5);
  CHECK(corio_op_post(p->op, tpost_done, p) == 0);
  return NULL;
}
static int l_begin_thread_return(lua_State *L) {
  tpost *p = calloc(1, sizeof(*p));
  if (p == NULL) return luaL_error(L, "out of memory");
  p->op = corio_op_begin(L, NULL, NULL);
  if (p->op == NULL) {
    free(p);
    return lua_error(L);
  }
  if (pthread_create(&p->th, NULL, tpost_run, p) != 0) {
    corio_op_fail(p->op, "host", "no thread");
    free(p);
    return luaL_error(L, "no thread");
  }
  return 0;
}

static int l_tpost_done(lua_State *L) {
  lua_pushboolean(L, tpost_rc != 1);
  return 1;
}

/* Two ops begun, one suspended on: the other is abandoned. */
static job *other;
static int l_two_ops(lua_State *L) {
  job *a = begin_job(L, 0, 0), *b;
  if (a == NULL) return lua_error(L);
  other = a;
  if ((b = begin_job(L, 1, 0)) == NULL) return lua_error(L);
  lua_pushliteral(corio_lua(the_rt), "from b");
  CHECK(corio_op_resume(b->op, 1) == 0);   /* b ends before suspending */
  {
    corio_op *op = b->op;
    free(b);
    return corio_op_suspend(L, op);
  }
}

static void test_abandoned_late_resume(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  cancels = nkept = 0;
  corio_push_async(L, l_begin_return_timer);
  lua_setglobal(L, "begin_return_timer");
  corio_push_async(L, l_two_ops);
  lua_setglobal(L, "two_ops");
  corio_push_async(L, l_begin_thread_return);
  lua_setglobal(L, "begin_thread_return");
  lua_register(L, "tpost_done", l_tpost_done);
  CHECK(run_bounded(rt,
      "local corio = require 'corio' "
      "assert(begin_return_timer() == 'returned') "
      "begin_thread_return() "
      "local t0 = corio.now() "
      "N = select('#', corio.sleep(0.05)) "
      "SLEPT = corio.now() - t0 "
      "while not tpost_done() do corio.sleep(0.002) end "
      "B = two_ops()", 5) == 0);
  CHECK(late_rc == UV_ECANCELED);
  CHECK(tpost_rc == UV_ECANCELED);
  CHECK(lua_true(L, "return N == 0 and SLEPT >= 0.04 and B == 'from b'"));
  CHECK(cancels == 2);
  CHECK(other != NULL && other->cancelled);
  if (other != NULL) {
    CHECK(corio_op_fail(other->op, NULL, NULL) == UV_ECANCELED);
    free(other);
    other = NULL;
  }
  corio_free(rt);
}

/* ---- 2. posting ------------------------------------------------------ */

static int post_runs, post_rc2;

static void post_resume(corio_op *op, void *arg) {
  post_runs++;
  lua_pushinteger(corio_lua(corio_op_runtime(op)), (lua_Integer)(intptr_t)arg);
  CHECK(corio_op_resume(op, 1) == 0);
}

static int l_post_twice(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  CHECK(corio_op_post(op, post_resume, (void *)(intptr_t)1) == 0);
  post_rc2 = corio_op_post(op, post_resume, (void *)(intptr_t)2);
  return corio_op_suspend(L, op);
}

/* An op ended (in its cancel callback) while a post of it is pending:
** the posted function still runs, on a valid op. */
static int zombie_cb_rc = 1, zombie_post_rc = 1, zombie_fail_rc = 1;
static int zombie_runs;

static void zombie_post(corio_op *op, void *arg) {
  lua_State *L = corio_lua(corio_op_runtime(op));
  int top = lua_gettop(L);
  (void)arg;
  zombie_runs++;
  lua_pushliteral(L, "too late");
  zombie_cb_rc = corio_op_resume(op, 1);
  CHECK(lua_gettop(L) == top);
  zombie_post_rc = corio_op_post(op, post_resume, NULL);
}

static void fail_now(corio_op *op, void *data) {
  (void)data;
  zombie_fail_rc = corio_op_fail(op, "host", "cancelled");
}

static int l_post_then_cancel(lua_State *L) {
  corio_op *op = corio_op_begin(L, fail_now, NULL);
  if (op == NULL) return lua_error(L);
  CHECK(corio_op_post(op, zombie_post, NULL) == 0);
  return corio_op_suspend(L, op);
}

/* A post whose function does not end the op may post again. */
static int progress;
static void progress_post(corio_op *op, void *arg) {
  (void)arg;
  if (++progress < 3) {
    CHECK(corio_op_post(op, progress_post, NULL) == 0);
    return;
  }
  lua_pushinteger(corio_lua(corio_op_runtime(op)), progress);
  CHECK(corio_op_resume(op, 1) == 0);
}
static int l_progress(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  CHECK(corio_op_post(op, NULL, NULL) == UV_EINVAL);
  CHECK(corio_op_post(op, progress_post, NULL) == 0);
  return corio_op_suspend(L, op);
}

/* Was: the second post linked the op into the posted list twice (a
** cycle: the loop thread spun, or ran the first post on a freed op);
** an op ended while posted was freed under the pending post. */
static void test_post_guards(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  corio_push_async(L, l_post_twice);
  lua_setglobal(L, "post_twice");
  corio_push_async(L, l_post_then_cancel);
  lua_setglobal(L, "post_then_cancel");
  corio_push_async(L, l_progress);
  lua_setglobal(L, "progress");
  post_runs = 0;
  CHECK(run_bounded(rt,
      "local corio = require 'corio' "
      "P = post_twice() "
      "C = corio.move_on_after(0, post_then_cancel) "
      "corio.sleep(0.005) "
      "G = progress()", 5) == 0);
  CHECK(post_rc2 == UV_EALREADY);
  CHECK(post_runs == 1);
  CHECK(zombie_fail_rc == UV_ECANCELED);
  CHECK(zombie_runs == 1);
  CHECK(zombie_cb_rc == UV_EALREADY);
  CHECK(zombie_post_rc == UV_EINVAL);
  CHECK(lua_true(L, "return P == 1 and C == false and G == 3"));
  corio_free(rt);
}

/* ---- 3. corio_free from inside a step ------------------------------ */

static int marks;
static int l_mark(lua_State *L) {
  (void)L;
  marks++;
  return 0;
}
static int l_free_rt(lua_State *L) {
  (void)L;
  corio_free(the_rt);
  corio_free(the_rt);   /* twice: the second does nothing more */
  return 0;
}

static const char FREE_SCRIPT[] =
    "local corio = require 'corio' "
    "corio.spawn(function() corio.defer(mark) corio.sleep(10) end) "
    "corio.defer(mark) "
    "corio.sleep(0.001) "
    "free_rt() "
    "corio.sleep(10) "
    "mark() mark() mark()";   /* not reached: the sleep is cancelled */

static uv_timer_t free_timer;
static void free_fire(uv_timer_t *h) {
  (void)h;
  corio_free(the_rt);
}

/* Was: the runtime was freed under the step that called corio_free (a
** use after free). */
static void test_free_inside_step(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  uint64_t t0 = uv_hrtime();
  int steps = 0;
  /* from a task of a run by corio_run_string */
  lua_register(L, "mark", l_mark);
  lua_register(L, "free_rt", l_free_rt);
  marks = 0;
  CHECK(corio_run_string(rt, FREE_SCRIPT, "=free") == CORIO_EFREED);
  CHECK(marks == 2);   /* the child's and the root's defer ran */
  CHECK(uv_hrtime() - t0 < 5000000000u);

  /* from a task of a stepped run: corio_step returns 0 */
  rt = new_rt();
  L = corio_lua(rt);
  lua_register(L, "mark", l_mark);
  lua_register(L, "free_rt", l_free_rt);
  marks = 0;
  CHECK(luaL_loadstring(L, FREE_SCRIPT) == 0);
  CHECK(corio_start(rt, 0) == 0);
  while (corio_step(rt, 1)) steps++;
  CHECK(steps > 0);
  CHECK(marks == 2);

  /* from a loop callback during a step */
  rt = new_rt();
  L = corio_lua(rt);
  lua_register(L, "mark", l_mark);
  marks = 0;
  uv_timer_init(corio_loop(rt), &free_timer);
  uv_timer_start(&free_timer, free_fire, 5, 0);
  CHECK(luaL_loadstring(L, "local corio = require 'corio' "
                           "corio.defer(mark) corio.sleep(10)") == 0);
  CHECK(corio_start(rt, 0) == 0);
  while (corio_step(rt, 1)) {
  }
  CHECK(marks == 1);
  CHECK(uv_hrtime() - t0 < 10000000000u);

  /* Was: a use after free. From corio_start, through a host's require
  ** (corio_start requires "corio" first): nothing starts, nothing is
  ** left on the stack, and the runtime is freed as corio_start returns */
  rt = new_rt();
  L = corio_lua(rt);
  lua_register(L, "mark", l_mark);
  lua_register(L, "free_rt", l_free_rt);
  marks = 0;
  CHECK(luaL_dostring(L, "local real = require "
                         "require = function(m) free_rt() "
                         "return real(m) end") == 0);
  CHECK(luaL_loadstring(L, "mark()") == 0);
  lua_pushinteger(L, 7);
  CHECK(corio_start(rt, 1) == CORIO_EFREED);
  CHECK(marks == 0);

  /* the same through corio_run_string, on a state the host owns: it
  ** stays usable, with nothing of the run left on its stack */
  {
    lua_State *hL = luaL_newstate();
    corio_options o;
    memset(&o, 0, sizeof(o));
    luaL_openlibs(hL);
    o.L = hL;
    the_rt = rt = corio_new(&o);
    CHECK(rt != NULL);
    add_paths(rt);
    lua_register(hL, "free_rt", l_free_rt);
    CHECK(luaL_dostring(hL, "local real = require "
                            "require = function(m) free_rt() "
                            "return real(m) end") == 0);
    CHECK(corio_run_string(rt, "X = 1", "=x") == CORIO_EFREED);
    CHECK(lua_gettop(hL) == 0);
    lua_getglobal(hL, "X");
    CHECK(lua_isnil(hL, -1));
    lua_close(hL);
  }
}

/* ---- 4. ops only from functions made by corio_push_async ---------- */

static int raw_begin_null;
static corio_op *stray;

/* registered with lua_register: not a function of corio_push_async */
static int l_raw_begin(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  raw_begin_null = op == NULL && lua_isstring(L, -1) &&
                   strstr(lua_tostring(L, -1), "corio_push_async") != NULL;
  return 0;
}
/* a function of corio_push_async that calls Lua code (its argument) */
static int l_call_back(lua_State *L) {
  lua_call(L, 0, 0);
  return 0;
}
static int l_suspend_twice(lua_State *L) {
  job *j = begin_job(L, 1, 0);
  if (j == NULL) return lua_error(L);
  corio_op_suspend(L, j->op);
  return corio_op_suspend(L, j->op);
}
static int l_keep_stray(lua_State *L) {
  job *j = begin_job(L, 1, 0);
  if (j == NULL) return lua_error(L);
  stray = j->op;
  return 0;
}
static int l_suspend_stray(lua_State *L) {
  return corio_op_suspend(L, stray);
}

static void test_misuse(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  cancels = 0;
  lua_register(L, "raw_begin", l_raw_begin);
  corio_push_async(L, l_call_back);
  lua_setglobal(L, "call_back");
  corio_push_async(L, l_suspend_twice);
  lua_setglobal(L, "suspend_twice");
  corio_push_async(L, l_keep_stray);
  lua_setglobal(L, "keep_stray");
  corio_push_async(L, l_suspend_stray);
  lua_setglobal(L, "suspend_stray");
  CHECK(run_bounded(rt,
      "local corio = require 'corio' "
      "raw_begin() "
      "local ok, e = pcall(suspend_twice) "
      "E1 = not ok and tostring(e):find('called twice') ~= nil "
      "keep_stray() "
      "ok, e = pcall(suspend_stray) "
      "E2 = not ok and tostring(e):find('not begun by this call') ~= nil "
      "corio.sleep(0.001)", 5) == 0);
  CHECK(raw_begin_null);
  raw_begin_null = 0;
  CHECK(lua_true(L, "return E1 == true and E2 == true"));
  CHECK(cancels == 2);   /* both ops abandoned */
  /* from Lua code that a function of corio_push_async called */
  CHECK(run_bounded(rt, "call_back(function() raw_begin() end)", 5) == 0);
  CHECK(raw_begin_null);
  corio_free(rt);   /* frees the two abandoned ops */
}

/* With an argument, only the test of that name runs. */
int main(int argc, char **argv) {
  static const struct {
    const char *name;
    void (*fn)(void);
  } tests[] = {{"abandoned_ops", test_abandoned_ops},
               {"abandoned_late_resume", test_abandoned_late_resume},
               {"post_guards", test_post_guards},
               {"free_inside_step", test_free_inside_step},
               {"misuse", test_misuse}};
  size_t i;
  signal(SIGALRM, on_alarm);
  alarm(60);
  for (i = 0; i < sizeof(tests) / sizeof(tests[0]); i++)
    if (argc < 2 || strcmp(argv[1], tests[i].name) == 0) tests[i].fn();
  return check_done("test_op_hardening");
}
