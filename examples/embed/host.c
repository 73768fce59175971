/*
** host.c: a small C program that embeds corio and gives Lua one async
** function, host.compute(x): a worker thread squares x after a short
** delay and posts the result back to the loop; the task that called it
** is suspended meanwhile, so many tasks compute at once. Cancelling a
** task (a timeout) tells the worker to drop its job.
**
**   build/examples/embed/embed_host [script.lua]   (default: the demo
**   below). Exit status 0 when the script ran without error.
*/
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>

#include "corio.h"

typedef struct job {
  corio_op *op;
  double x, result;
  int cancelled;          /* set on the loop thread by the cancel callback */
  pthread_t thread;
} job;

/* On the loop thread: hand the result to the task, free the job. */
static void job_done(corio_op *op, void *arg) {
  job *j = arg;
  lua_State *L = corio_lua(corio_op_runtime(op));
  pthread_join(j->thread, NULL);
  if (j->x < 0) {
    corio_op_fail(op, "host", "compute: negative input");
  } else {
    lua_pushnumber(L, j->result);
    corio_op_resume(op, 1);   /* a cancelled op just drops the value */
  }
  free(j);
}

static void *worker(void *arg) {
  job *j = arg;
  usleep(20000);              /* pretend this is slow work */
  j->result = j->x * j->x;
  corio_op_post(j->op, job_done, j);
  return NULL;
}

static void job_cancel(corio_op *op, void *data) {
  job *j = data;
  (void)op;
  j->cancelled = 1;           /* a real host would stop the work here */
}

static int l_compute(lua_State *L) {
  job *j = calloc(1, sizeof(*j));
  if (j == NULL) return luaL_error(L, "compute: out of memory");
  j->x = luaL_checknumber(L, 1);
  j->op = corio_op_begin(L, job_cancel, j);
  if (j->op == NULL) {
    free(j);
    return lua_error(L);
  }
  if (pthread_create(&j->thread, NULL, worker, j) != 0) {
    corio_op_fail(j->op, "host", "compute: cannot start a thread");
    free(j);
    return luaL_error(L, "compute: cannot start a thread");
  }
  return corio_op_suspend(L, j->op);
}

static const char DEMO[] =
    "local corio = require 'corio'\n"
    "local t0 = corio.now()\n"
    "local xs = {}\n"
    "for i = 1, 50 do xs[i] = i end\n"
    "local squares = corio.map(xs, function(x) return host.compute(x) end)\n"
    "local sum = 0\n"
    "for _, v in ipairs(squares) do sum = sum + v end\n"
    "assert(sum == 42925, 'wrong sum ' .. sum)\n"
    "local elapsed = corio.now() - t0\n"
    "assert(elapsed < 0.5, 'not concurrent: ' .. elapsed)\n"
    "local ok, err = pcall(host.compute, -1)\n"
    "assert(not ok and err.kind == 'host', tostring(err))\n"
    "assert(corio.move_on_after(0.001, host.compute, 3) == false)\n"
    "print(('50 computations in %.3f s, sum %d'):format(elapsed, sum))\n";

int main(int argc, char **argv) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  int r;
  if (rt == NULL) {
    fprintf(stderr, "embed_host: cannot create the runtime\n");
    return 1;
  }
  L = corio_lua(rt);
#ifdef CORIO_BUILD_LUA_DIR
  corio_add_paths(rt, CORIO_BUILD_LUA_DIR "/?.lua;" CORIO_BUILD_LUA_DIR
                      "/?/init.lua", NULL);
#endif
  lua_newtable(L);
  corio_push_async(L, l_compute);
  lua_setfield(L, -2, "compute");
  lua_setglobal(L, "host");
  r = argc > 1 ? corio_run_file(rt, argv[1])
               : corio_run_string(rt, DEMO, "=demo");
  if (r != 0) fprintf(stderr, "embed_host: %s\n", corio_errmsg(rt));
  corio_free(rt);
  return r == 0 ? 0 : 1;
}
