/*
** test_dogfood_host.c: a C host embedding corio the way docs/c-api.md
** shows it, written as a dogfooding exercise: the host owns the libuv
** loop (corio adopts it), drives the run with corio_start/corio_step/
** corio_finish between its own "frames", and gives Lua two async
** functions: host.after(ms, v), a libuv timer on the host's loop that
** resumes the task with v (cancel: stop and close the timer), and
** host.fetch(key), answered by a host worker thread through corio_op_post.
** The script spawns tasks over both, cancels some with move_on_after and
** task:cancel, and checks its results; the host checks its own
** bookkeeping (every timer closed, every job freed). A second run fails
** in a task while a timer op is pending; a third, a script file, gives
** host C work to corio.to_thread (corio_push_thread_fn). Found sound.
*/
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <uv.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static int timers_live, jobs_live, timers_cancelled, frames;

/* ---- host.after(ms, v): a libuv timer ---- */

typedef struct {
  uv_timer_t timer;
  corio_op *op;
  int ref; /* the Lua registry reference of v */
  lua_State *L;
} after_req;

static void after_closed(uv_handle_t *h) {
  after_req *r = h->data;
  luaL_unref(r->L, LUA_REGISTRYINDEX, r->ref);
  free(r);
  timers_live--;
}

static void after_fire(uv_timer_t *t) {
  after_req *r = t->data;
  lua_State *L = corio_lua(corio_op_runtime(r->op));
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  corio_op_resume(r->op, 1);
  r->op = NULL;
  uv_close((uv_handle_t *)&r->timer, after_closed);
}

static void after_cancel(corio_op *op, void *data) {
  after_req *r = data;
  timers_cancelled++;
  uv_timer_stop(&r->timer);
  corio_op_fail(op, NULL, "cancelled"); /* only frees it */
  r->op = NULL;
  uv_close((uv_handle_t *)&r->timer, after_closed);
}

static int l_after(lua_State *L) {
  lua_Number ms = luaL_checknumber(L, 1);
  after_req *r;
  corio_op *op;
  luaL_checkany(L, 2);
  r = calloc(1, sizeof(*r));
  if (!r) return luaL_error(L, "host.after: out of memory");
  op = corio_op_begin(L, after_cancel, r);
  if (!op) {
    free(r);
    return lua_error(L);
  }
  r->op = op;
  lua_pushvalue(L, 2);
  r->L = corio_lua(corio_op_runtime(op));
  r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  uv_timer_init(corio_loop(corio_op_runtime(op)), &r->timer);
  r->timer.data = r;
  timers_live++;
  uv_timer_start(&r->timer, after_fire, (uint64_t)ms, 0);
  return corio_op_suspend(L, op);
}

/* ---- host.fetch(key): a worker thread posts the answer ---- */

typedef struct {
  corio_op *op;
  pthread_t th;
  char key[64];
  char answer[128];
  int cancelled;
} job;

static void job_done(corio_op *op, void *arg) {
  job *j = arg;
  lua_State *L = corio_lua(corio_op_runtime(op));
  pthread_join(j->th, NULL);
  if (strcmp(j->key, "missing") == 0) {
    corio_op_fail(op, "host", "fetch: no such key 'missing'");
  } else {
    lua_pushstring(L, j->answer);
    corio_op_resume(op, 1);
  }
  free(j);
  jobs_live--;
}

static void *job_thread(void *arg) {
  job *j = arg;
  usleep(10000);
  snprintf(j->answer, sizeof(j->answer), "value of %s", j->key);
  corio_op_post(j->op, job_done, j);
  return NULL;
}

static void job_cancel(corio_op *op, void *data) {
  (void)op;
  ((job *)data)->cancelled = 1; /* the thread still posts; job_done frees */
}

static int l_fetch(lua_State *L) {
  const char *key = luaL_checkstring(L, 1);
  job *j = calloc(1, sizeof(*j));
  if (!j) return luaL_error(L, "host.fetch: out of memory");
  snprintf(j->key, sizeof(j->key), "%s", key);
  j->op = corio_op_begin(L, job_cancel, j);
  if (!j->op) {
    free(j);
    return lua_error(L);
  }
  jobs_live++;
  if (pthread_create(&j->th, NULL, job_thread, j) != 0) {
    corio_op_fail(j->op, "host", "fetch: cannot start a thread");
    free(j);
    jobs_live--;
    return luaL_error(L, "host.fetch: cannot start a thread");
  }
  return corio_op_suspend(L, j->op);
}

/* ---- host.square(x): C work for corio.to_thread, on a worker ---- */

static int w_square(lua_State *W) {
  lua_Number x = luaL_checknumber(W, 1);
  lua_pushnumber(W, x * x);
  return 1;
}

static const char *script =
    "local corio = require 'corio'\n"
    "local out = {}\n"
    "corio.scope(function(s)\n"
    "  for i = 1, 20 do\n"
    "    s:spawn(function() out[i] = host.after(5 + i % 3, i * 10) end)\n"
    "  end\n"
    "  s:spawn(function()\n"
    "    out.keys = corio.map({'a', 'b', 'c', 'd'}, host.fetch, {limit = 2})\n"
    "  end)\n"
    "  s:spawn(function()\n"
    "    local ok, err = pcall(host.fetch, 'missing')\n"
    "    out.missing = (not ok) and err.kind .. ': ' .. err.message\n"
    "  end)\n"
    "  s:spawn(function()\n"
    "    out.moved = corio.move_on_after(0.01, host.after, 10000, 'never')\n"
    "    out.moved_fetch = corio.move_on_after(0.001, host.fetch, 'slow')\n"
    "  end)\n"
    "  local t = s:spawn(host.after, 10000, 'never')\n"
    "  s:spawn(function() host.after(1, 0); t:cancel() end)\n"
    "end)\n"
    "local sum = 0\n"
    "for i = 1, 20 do sum = sum + out[i] end\n"
    "return sum, table.concat(out.keys, ','), out.missing, out.moved,\n"
    "       out.moved_fetch\n";

int main(void) {
  uv_loop_t loop;
  corio_options o;
  corio_rt *rt;
  lua_State *L;
  int rc;

  CHECK(uv_loop_init(&loop) == 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  rt = corio_new(&o);
  CHECK(rt != NULL);
  if (!rt) return check_done("test_dogfood_host");
  add_paths(rt);
  L = corio_lua(rt);
  lua_newtable(L);
  corio_push_async(L, l_after);
  lua_setfield(L, -2, "after");
  corio_push_async(L, l_fetch);
  lua_setfield(L, -2, "fetch");
  lua_setglobal(L, "host");

  /* run 1: stepped by the host, between its frames */
  CHECK(luaL_loadstring(L, script) == 0);
  CHECK(corio_start(rt, 0) == 0);
  while (corio_step(rt, 1)) frames++;
  rc = corio_finish(rt, 5);
  if (rc != 0) fprintf(stderr, "run failed: %s\n", corio_errmsg(rt));
  CHECK(rc == 0);
  if (rc == 0) {
    CHECK(lua_tonumber(L, -5) == 2100);
    CHECK(strcmp(lua_tostring(L, -4),
                 "value of a,value of b,value of c,value of d") == 0);
    CHECK(lua_isstring(L, -3) &&
          strcmp(lua_tostring(L, -3), "host: fetch: no such key 'missing'") == 0);
    CHECK(lua_isboolean(L, -2) && !lua_toboolean(L, -2));
    CHECK(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_pop(L, 5);
  } else {
    lua_pop(L, 1);
  }
  CHECK(lua_gettop(L) == 0);
  CHECK(frames > 0);
  CHECK(timers_cancelled == 2);
  CHECK(jobs_live == 0);

  /* run 2 on the same runtime: an error in a task cancels a pending
  ** timer op, and the run returns the error with a message naming it */
  rc = corio_run_string(rt,
                        "local corio = require 'corio'\n"
                        "corio.scope(function(s)\n"
                        "  s:spawn(host.after, 10000, 'never')\n"
                        "  s:spawn(function() host.after(1, 0); error('boom in task') end)\n"
                        "end)\n",
                        "=run2");
  CHECK(rc == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "boom in task") != NULL);
  lua_settop(L, 0);
  CHECK(timers_cancelled == 3);

  /* run 3: a script file (corio_run_file) that hands host C work to
  ** to_thread (corio_push_thread_fn) beside the host's timer op */
  {
    char path[] = "/tmp/corio_dogfood_hostXXXXXX";
    int fd = mkstemp(path);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    CHECK(f != NULL);
    if (f != NULL) {
      fputs("local corio = require 'corio'\n"
            "local r = corio.gather({\n"
            "  function() return corio.to_thread(host.square, 7) end,\n"
            "  function() return host.after(5, 'timer') end,\n"
            "})\n"
            "assert(r[1] == 49 and r[2] == 'timer', 'results')\n"
            "local ok, err = pcall(corio.to_thread, host.square, 'x')\n"
            "assert(not ok and err.kind == 'error', tostring(err))\n"
            "result3 = 'ok'\n",
            f);
      fclose(f);
      lua_getglobal(L, "host");
      corio_push_thread_fn(L, w_square);
      lua_setfield(L, -2, "square");
      lua_pop(L, 1);
      rc = corio_run_file(rt, path);
      if (rc != 0) fprintf(stderr, "run 3 failed: %s\n", corio_errmsg(rt));
      CHECK(rc == 0);
      lua_getglobal(L, "result3");
      CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "ok") == 0);
      lua_settop(L, 0);
      remove(path);
    }
  }

  corio_free(rt);
  /* the timers' close callbacks ran on the host's loop */
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(timers_live == 0);
  CHECK(uv_loop_close(&loop) == 0);
  return check_done("test_dogfood_host");
}
