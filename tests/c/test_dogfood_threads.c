/*
** test_dogfood_threads.c: a C host with one corio runtime per thread, as
** docs/c-api.md allows ("several runtimes (on several states) may live in
** one process, each on its own thread"), written while dogfooding: four
** threads each make runtimes with corio_new(NULL) (so each run handles
** SIGINT) and run a script of to_thread and corio.fs work many times,
** while the host has a SIGINT handler of its own.
**
** Defect found: the runs took and gave back the SIGINT/SIGUSR1 handlers
** through unsynchronised globals. Two runs that both saw them free both
** installed them, the second saving the first's handler as "the host's";
** the host's own handler was never put back, and the next Ctrl-C ended
** the process instead of reaching it (ThreadSanitizer: data races in
** sigint_hold). Now a mutex guards taking and giving back the handlers.
*/
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

#define THREADS 4
#define ROUNDS 2000

static volatile sig_atomic_t host_sigints;
static void host_handler(int s) {
  (void)s;
  host_sigints++;
}

static const char *work =
    "local corio = require 'corio'\n"
    "local fs = require 'corio.fs'\n"
    "local id = ...\n"
    "local r = corio.map({1, 2, 3, 4, 5, 6}, function(i)\n"
    "  local v = corio.to_thread(function(n)\n"
    "    local s = 0 for k = 1, n do s = s + k end return s\n"
    "  end, i * 100)\n"
    "  local p = os.tmpname()\n"
    "  fs.write_file(p, tostring(v))\n"
    "  local back = tonumber(fs.read_file(p))\n"
    "  fs.remove(p)\n"
    "  return back\n"
    "end, {limit = 3})\n"
    "local s = 0 for i = 1, 6 do s = s + r[i] end\n"
    "return s\n";

typedef struct {
  int id;
  int bad;
} worker;

static void *run(void *arg) {
  worker *w = arg;
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  int k;
  if (rt == NULL) {
    w->bad++;
    return NULL;
  }
  add_paths(rt);
  L = corio_lua(rt);
  /* a few runs with real work, then many short ones (the handlers are
  ** taken and given back at every run) */
  for (k = 0; k < 5; k++) {
    luaL_loadstring(L, work);
    lua_pushinteger(L, w->id);
    if (corio_run_function(rt, 1, 1) != 0) {
      fprintf(stderr, "thread %d: %s\n", w->id, corio_errmsg(rt));
      w->bad++;
    } else if (lua_tonumber(L, -1) != 456050) { /* sum of n(n+1)/2, n = 100i */
      fprintf(stderr, "thread %d: got %g\n", w->id, lua_tonumber(L, -1));
      w->bad++;
    }
    lua_settop(L, 0);
  }
  for (k = 0; k < ROUNDS; k++) {
    if (corio_run_string(rt, "return 1", "=short") != 0) {
      fprintf(stderr, "thread %d: %s\n", w->id, corio_errmsg(rt));
      w->bad++;
      break;
    }
  }
  corio_free(rt);
  return NULL;
}

int main(void) {
  struct sigaction sa, now;
  pthread_t th[THREADS];
  worker w[THREADS];
  int i;

  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = host_handler;
  sigemptyset(&sa.sa_mask);
  CHECK(sigaction(SIGINT, &sa, NULL) == 0);

  for (i = 0; i < THREADS; i++) {
    w[i].id = i;
    w[i].bad = 0;
    CHECK(pthread_create(&th[i], NULL, run, &w[i]) == 0);
  }
  for (i = 0; i < THREADS; i++) {
    pthread_join(th[i], NULL);
    CHECK(w[i].bad == 0);
  }

  /* the host's handler is back, and a Ctrl-C reaches it */
  CHECK(sigaction(SIGINT, NULL, &now) == 0);
  CHECK(now.sa_handler == host_handler);
  if (now.sa_handler == host_handler) {
    raise(SIGINT);
    CHECK(host_sigints == 1);
  }
  return check_done("test_dogfood_threads");
}
