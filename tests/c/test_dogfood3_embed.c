/*
** test_dogfood3_embed.c: dogfooding round 3, a C host as docs/c-api.md
** describes one that drives its own libuv loop: it makes the loop, has
** corio adopt it (and a lua_State of its own), keeps a timer of its own
** ticking on it, and steps the run with corio_start / corio_step between
** its own uv_run turns. The script gives work to corio.to_thread, and the
** worker functions use corio themselves (a sleep, a file, a gather: each
** worker state has a runtime of its own, api.md "corio.to_thread").
**
** Defect found: a worker state found corio.core on package.cpath, not in
** the host: this host, with corio linked in and no core.so on its
** cpath, got "module 'corio.core' not found" in the worker (and a corio
** program mapped core.so as a second copy of the runtime). Worker states
** now have the running corio.core in package.preload.
*/
#define _GNU_SOURCE /* mkstemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static int ticks;
static void on_tick(uv_timer_t *t) {
  (void)t;
  ticks++;
}

static const char *script =
    "local corio = require 'corio'\n"
    "local path = ...\n"
    "local r = corio.map({1, 2, 3, 4, 5}, function(i)\n"
    "  return corio.to_thread(function(k, p)\n"
    "    local wc = require 'corio'\n"
    "    local wfs = require 'corio.fs'\n"
    "    return wc.run(function()\n"
    "      local g = wc.gather({\n"
    "        function() wc.sleep(0.05) return k end,\n"
    "        function() return #wfs.read_file(p) end,\n"
    "      })\n"
    "      return g[1] * 10 + g[2]\n"
    "    end)\n"
    "  end, i, path)\n"
    "end)\n"
    "local s = 0 for i = 1, 5 do s = s + r[i] end\n"
    "-- a worker whose own corio raises: the caller gets kind error\n"
    "local ok, err = pcall(corio.to_thread, function()\n"
    "  local wc = require 'corio'\n"
    "  return wc.run(function() wc.sleep(0.01) error('worker run failed') end)\n"
    "end)\n"
    "assert(not ok and err.kind == 'error' and err.message:find('worker run failed', 1, true),\n"
    "  tostring(err))\n"
    "return s\n";

int main(void) {
  uv_loop_t loop;
  uv_timer_t timer;
  corio_options opts;
  corio_rt *rt;
  lua_State *L;
  char path[] = "/tmp/corio-dogfood3-XXXXXX";
  FILE *f;
  int rc, steps = 0, fd;

  CHECK(uv_loop_init(&loop) == 0);
  CHECK(uv_timer_init(&loop, &timer) == 0);
  CHECK(uv_timer_start(&timer, on_tick, 5, 5) == 0);

  fd = mkstemp(path);
  CHECK(fd >= 0);
  f = fdopen(fd, "w");
  fputs("abc", f); /* 3 bytes */
  fclose(f);

  memset(&opts, 0, sizeof(opts));
  opts.L = luaL_newstate();
  luaL_openlibs(opts.L);
  opts.loop = &loop;
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  add_paths(rt); /* the Lua files only: no core.so on package.cpath */
  L = corio_lua(rt);

  CHECK(luaL_loadstring(L, script) == 0);
  lua_pushstring(L, path);
  CHECK(corio_start(rt, 1) == 0);
  /* the host's frames: a step of corio, then a turn of its own */
  while ((rc = corio_step(rt, 0)) == 1) {
    uv_run(&loop, UV_RUN_ONCE);
    steps++;
  }
  CHECK(rc == 0);
  rc = corio_finish(rt, 1);
  if (rc != 0) fprintf(stderr, "run failed: %s\n", corio_errmsg(rt));
  CHECK(rc == 0);
  /* sum over i of 10 i + 3 */
  CHECK(lua_tonumber(L, -1) == 165);
  lua_settop(L, 0);
  CHECK(steps > 0);
  CHECK(ticks >= 5); /* the workers slept 0.05 s twice over: the host's
                        timer ran meanwhile */

  corio_free(rt);
  lua_close(opts.L);
  uv_timer_stop(&timer);
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  remove(path);
  return check_done("test_dogfood3_embed");
}
