/*
** test_host.c: host-defined async functions (corio_op_* in corio.h): a
** host timer on an adopted loop resumes a task with values or an error;
** cancelling the task calls the host's cancel callback and a late resume
** reports UV_ECANCELED; an op cannot begin outside a task; posting from
** another thread wakes the loop; a host C function runs on a to_thread
** worker; to_thread calls in a host that runs its own loop between
** corio_step calls. Ends with uv_loop_close() == 0.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"

static int cancels, late_cancelled;

typedef struct req {
  uv_timer_t timer;   /* a handle of the host's own on the shared loop */
  corio_op *op;
  int mode;           /* 0 resume with 2 values, 1 fail */
  int n;
  uint64_t ms;        /* when the timer fires */
} req;

static void req_closed(uv_handle_t *h) { free(h); }

static void req_fire(uv_timer_t *h) {
  req *r = (req *)h;
  lua_State *L = corio_lua(corio_op_runtime(r->op));
  if (r->mode == 0) {
    lua_pushinteger(L, r->n * 10);
    lua_pushliteral(L, "ok");
    if (corio_op_resume(r->op, 2) == UV_ECANCELED) late_cancelled++;
  } else {
    if (corio_op_fail(r->op, "hostfail", "the host said no") ==
        UV_ECANCELED)
      late_cancelled++;
  }
  uv_close((uv_handle_t *)h, req_closed);
}

static void req_cancel(corio_op *op, void *data) {
  (void)op;
  (void)data;
  cancels++;   /* the timer still fires later and ends the op */
}

static int l_wait(lua_State *L) {
  req *r = calloc(1, sizeof(*r));
  corio_op *op;
  r->n = (int)luaL_checkinteger(L, 1);
  r->mode = lua_toboolean(L, 2);
  r->ms = (uint64_t)luaL_optinteger(L, 3, 5);
  op = corio_op_begin(L, req_cancel, r);
  if (op == NULL) {
    free(r);
    return lua_error(L);
  }
  r->op = op;
  uv_timer_init(corio_loop(corio_op_runtime(op)), &r->timer);
  uv_timer_start(&r->timer, req_fire, r->ms, 0);
  return corio_op_suspend(L, op);
}

/* returns without suspending: plain values pass through the wrapper */
static int l_now(lua_State *L) {
  lua_pushliteral(L, "direct");
  lua_pushinteger(L, 7);
  return 2;
}

typedef struct tjob { corio_op *op; pthread_t th; } tjob;

static void tjob_done(corio_op *op, void *arg) {
  tjob *j = arg;
  pthread_join(j->th, NULL);
  lua_pushliteral(corio_lua(corio_op_runtime(op)), "from thread");
  corio_op_resume(op, 1);
  free(j);
}

static void *tjob_run(void *arg) {
  tjob *j = arg;
  corio_op_post(j->op, tjob_done, j);
  return NULL;
}

static int l_thread(lua_State *L) {
  tjob *j = calloc(1, sizeof(*j));
  j->op = corio_op_begin(L, NULL, NULL);
  if (j->op == NULL) {
    free(j);
    return lua_error(L);
  }
  pthread_create(&j->th, NULL, tjob_run, j);
  return corio_op_suspend(L, j->op);
}

/* Runs on a worker thread, in the worker's own state. */
static int w_square(lua_State *W) {
  lua_Number x = luaL_checknumber(W, 1);
  lua_pushnumber(W, x * x);
  lua_pushstring(W, "from a worker");
  return 2;
}

static const char SCRIPT[] =
    "local corio = require 'corio'\n"
    "local a, b = host.wait(4)\n"
    "assert(a == 40 and b == 'ok', 'resume values')\n"
    "local ok, e = pcall(host.wait, 1, true)\n"
    "assert(not ok and e.kind == 'hostfail' and e.message == 'the host said no')\n"
    "assert(select('#', host.now()) == 2 and host.now() == 'direct')\n"
    "local r = corio.gather({function() return host.wait(1) end,\n"
    "                        function() return host.wait(2) end})\n"
    "assert(r[1] == 10 and r[2] == 20, 'concurrent waits')\n"
    /* the host's timer fires 200 ms after the 1 ms deadline: with 5 ms a
    ** loaded machine saw both due in one turn, and the host's first */
    "assert(corio.move_on_after(0.001, host.wait, 9, false, 200) == false)\n"
    "assert(host.thread() == 'from thread')\n"
    "local sq, who = corio.to_thread(host.square, 7)\n"
    "assert(sq == 49 and who == 'from a worker', 'host thread fn')\n"
    "local ok2, e2 = pcall(corio.to_thread, host.square, 'x')\n"
    "assert(not ok2 and tostring(e2):find('number expected'), tostring(e2))\n"
    "CANCELLED_OK = true\n";

/* Many tasks in host ops (loop timers and threads posting back) under
** random deadlines and cancels. CUT counts the waits that ended with
** Cancelled or a timeout: each must have run the cancel callback once and
** had its late resume told so. (How many are cut varies: a deadline is
** seen between resumes, and starting 60 threads in one pass of the ready
** queue can outlast it, in which case the op's own result stands.) */
static const char STRESS[] =
    "local corio = require 'corio'\n"
    "local s0 = 7\n"
    "local function rand(n) s0 = (s0 * 1103515245 + 12345) % 2147483648\n"
    "  return math.floor(s0 / 65536) % n + 1 end\n"
    "CUT, OK = 0, 0\n"
    "local tasks = {}\n"
    "corio.scope(function(s)\n"
    "  for i = 1, 60 do\n"
    "    tasks[i] = s:spawn(function()\n"
    "      for _ = 1, 3 do\n"
    "        local f = rand(2) == 1 and host.wait or host.thread\n"
    "        local ok, a = pcall(corio.timeout, rand(4) * 0.01, f, i, false, 10 + rand(30))\n"
    "        if ok then\n"
    "          assert(a == 'from thread' or a == i * 10, tostring(a))\n"
    "          OK = OK + 1\n"
    "        else\n"
    "          assert(a.kind == 'timeout' or a.kind == 'cancelled', tostring(a))\n"
    "          if f == host.wait then CUT = CUT + 1 end\n"
    "          if a.kind == 'cancelled' then corio.yield() end\n"
    "        end\n"
    "      end\n"
    "    end)\n"
    "  end\n"
    "  s:spawn(function()\n"
    "    for _ = 1, 40 do corio.sleep(0.002); tasks[rand(60)]:cancel() end\n"
    "  end)\n"
    "end)\n"
    "assert(OK > 0, 'no host op completed')\n";

/* A host that runs its own loop between corio_step calls, with no handle
** of its own on it: to_thread calls finishing while corio is busy, or while
** the host's uv_run is about to poll, still wake that poll. */
static void test_host_runs_loop_with_to_thread(void) {
  uv_loop_t loop;
  corio_options o;
  corio_rt *rt;
  lua_State *L;
  int r, steps = 0;
  CHECK(uv_loop_init(&loop) == 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  o.handle_signals = 0;
  rt = corio_new(&o);
  CHECK(rt != NULL);
  corio_add_paths(rt, CORIO_BUILD_LUA_DIR "/?.lua;" CORIO_BUILD_LUA_DIR
                      "/?/init.lua", NULL);
  L = corio_lua(rt);
  CHECK(luaL_loadstring(L,
      "local corio = require 'corio'\n"
      "local items = {}\n"
      "for i = 1, 200 do items[i] = i end\n"
      "local r = corio.map(items, function(i)\n"
      "  return corio.to_thread(function(x)\n"
      "    if x % 2 == 0 then\n"   /* some finish at once, some later */
      "      local ffi = require 'ffi'\n"
      "      pcall(ffi.cdef, 'int usleep(unsigned int usec);')\n"
      "      ffi.C.usleep(1000)\n"
      "    end\n"
      "    return x + 1\n"
      "  end, i)\n"
      "end, { limit = 4 })\n"
      "for i = 1, 200 do assert(r[i] == i + 1) end\n"
      "return 'threaded'") == 0);
  CHECK(corio_start(rt, 0) == 0);
  while ((r = corio_step(rt, 0)) == 1 && steps < 100000) {
    steps++;
    uv_run(&loop, UV_RUN_ONCE);   /* the host's own turn: may block */
  }
  CHECK(r == 0);
  CHECK(corio_finish(rt, 1) == 0);
  CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "threaded") == 0);
  lua_pop(L, 1);
  corio_free(rt);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
}

int main(void) {
  uv_loop_t loop;
  lua_State *L = luaL_newstate();
  corio_options o;
  corio_rt *rt;
  luaL_openlibs(L);
  CHECK(uv_loop_init(&loop) == 0);
  memset(&o, 0, sizeof(o));
  o.L = L;
  o.loop = &loop;
  rt = corio_new(&o);
  CHECK(rt != NULL);
  corio_add_paths(rt, CORIO_BUILD_LUA_DIR "/?.lua;" CORIO_BUILD_LUA_DIR
                      "/?/init.lua", NULL);
  /* outside a task, an op cannot begin */
  CHECK(corio_op_begin(L, NULL, NULL) == NULL);
  CHECK(strstr(lua_tostring(L, -1), "outside") != NULL);
  lua_pop(L, 1);

  lua_newtable(L);
  corio_push_async(L, l_wait);
  lua_setfield(L, -2, "wait");
  corio_push_async(L, l_now);
  lua_setfield(L, -2, "now");
  corio_push_async(L, l_thread);
  lua_setfield(L, -2, "thread");
  corio_push_thread_fn(L, w_square);
  lua_setfield(L, -2, "square");
  lua_setglobal(L, "host");
  if (corio_run_string(rt, SCRIPT, "=script") != 0)
    fprintf(stderr, "script: %s\n", corio_errmsg(rt)), failures++;
  lua_getglobal(L, "CANCELLED_OK");
  CHECK(lua_toboolean(L, -1));
  lua_pop(L, 1);
  /* the cancelled wait: the cancel callback ran, and the late resume
  ** (the run waited for the op to end) was told so */
  CHECK(cancels == 1);
  CHECK(late_cancelled == 1);
  cancels = late_cancelled = 0;
  if (corio_run_string(rt, STRESS, "=stress") != 0)
    fprintf(stderr, "stress: %s\n", corio_errmsg(rt)), failures++;
  lua_getglobal(L, "CUT");
  CHECK(lua_tointeger(L, -1) == cancels);
  CHECK(late_cancelled == cancels);
  lua_pop(L, 1);
  corio_free(rt);
  CHECK(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  CHECK(uv_loop_close(&loop) == 0);
  lua_close(L);
  test_host_runs_loop_with_to_thread();
  return check_done("test_host");
}
