/*
** test_clock_hunt.c: what sleeps count from, for the root task a host
** starts with corio_start and steps later (runtime/rt.c corio__base).
** Lower bounds only, on a clock corio does not read (mono), so a loaded
** machine cannot make them fail.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>
#include <uv.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static int l_mono(lua_State *L) {
  lua_pushnumber(L, (double)uv_hrtime() / 1e9);
  return 1;
}

/* Run code as the root task, started with corio_start, with the host's
** own work (a pause of `pause_ms`) before the first corio_step; returns
** the number the code returned, or -1. */
static double run_after_pause(const char *code, long pause_ms) {
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  struct timespec pause = {pause_ms / 1000, (pause_ms % 1000) * 1000000L};
  double got = -1;
  int r;
  add_paths(rt);
  L = corio_lua(rt);
  lua_register(L, "mono", l_mono);
  CHECK(luaL_loadstring(L, code) == 0);
  CHECK(corio_start(rt, 0) == 0);
  nanosleep(&pause, NULL);         /* the host's own work */
  while ((r = corio_step(rt, 1)) == 1) {}
  CHECK(r == 0);
  if (corio_finish(rt, 1) == 0 && lua_isnumber(L, -1))
    got = lua_tonumber(L, -1);
  else
    fprintf(stderr, "run failed: %s\n", corio_errmsg(rt));
  lua_settop(L, 0);
  corio_free(rt);
  return got;
}

/* The root task was spawned by corio_start, not in a burst of a task's
** spawns: the host's pause before the first step is not the spawn-to-start
** wait of a burst, and the root's first sleep counts from its call. It
** ended at once: 0.15 s of pause were taken off its 0.1 s. */
static void test_root_sleep_after_start_pause(void) {
  double took = run_after_pause("local corio = require 'corio' "
                                "local t0 = mono() "
                                "corio.sleep(0.1) "
                                "return mono() - t0",
                                150);
  CHECK(took >= 0.1);
  if (took < 0.1) fprintf(stderr, "  the root slept %.4f s\n", took);
}

/* And so does a deadline the root sets in its first run. */
static void test_root_deadline_after_start_pause(void) {
  double took = run_after_pause("local corio = require 'corio' "
                                "local t0 = mono() "
                                "assert(corio.move_on_after(0.1, corio.sleep,"
                                " 10) == false) "
                                "return mono() - t0",
                                150);
  CHECK(took >= 0.1);
  if (took < 0.1) fprintf(stderr, "  the root moved on after %.4f s\n", took);
}

int main(void) {
  test_root_sleep_after_start_pause();
  test_root_deadline_after_start_pause();
  return check_done("test_clock_hunt");
}
