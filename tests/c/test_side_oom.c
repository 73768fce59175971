/*
** test_side_oom.c: a task's side record (corio_tside: joiners, the root
** scope's errors and defers, the checkpoint count) when malloc fails. Its
** memory comes from the side table's chunks (runtime/rt.c), allocated with
** malloc. Was: a chunk was allocated when a task first needed its record,
** which can be at the end of its body or in finalize, in the scheduler:
** a failure there raised a Lua error on the runtime's state outside any
** protected call (here: LuaJIT's panic, which exited the host with
** status 1 from corio__task_body_ended). Now the chunk is made at spawn, where the error is
** raised to the spawning code, and the record never allocates.
**
** malloc is replaced in this program (glibc: forwarding to __libc_malloc)
** so that allocations of exactly one side chunk fail while armed. Not
** under a sanitizer, which has malloc replaced itself.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <signal.h>

#include <lauxlib.h>
#include <lualib.h>

#include "internal.h"
#include "check.h"
#include "rt_helpers.h"

#if defined(__SANITIZE_ADDRESS__) || !defined(__GLIBC__)
int main(void) {
  printf("test_side_oom: skipped (malloc cannot be replaced here)\n");
  return 0;
}
#else

extern void *__libc_malloc(size_t n);

static volatile int armed;
static volatile int nfailed;

void *malloc(size_t n) {
  if (armed && n == sizeof(corio_tside) * CORIO_SIDE_CHUNK) {
    nfailed++;
    return NULL;
  }
  return __libc_malloc(n);
}

static int l_arm(lua_State *L) {
  armed = lua_toboolean(L, 1);
  return 0;
}

static int l_nfailed(lua_State *L) {
  lua_pushinteger(L, nfailed);
  return 1;
}

static void on_alarm(int sig) {
  static const char msg[] = "test_side_oom: timed out (a hang)\n";
  (void)sig;
  if (write(2, msg, sizeof(msg) - 1) < 0) _exit(2);
  _exit(1);
}

/* While side chunks cannot be allocated: tasks spawned into slots whose
** chunk exists fail, are joined and defer as usual; the spawn that needs
** a new chunk raises a clean error; after that, all works again. The
** failing tasks raise before any checkpoint, so each one's two errors
** are kept whatever the order (was: they slept 1 ms first, and those
** whose timer fired a loop turn after the first error's were cancelled
** instead, about one run in twelve). The same held for the 600 late
** tasks below, which slept 1 ms before they raised: on a loaded machine
** their timers fired over several loop turns and the later ones were
** cancelled by the first error (seen in a full ctest -j2 run). */
static const char script[] =
    "local corio = require('corio')\n"
    "local n, spawn_err = 0, nil\n"
    "arm(true)\n"
    "local ok, e = pcall(corio.scope, function(s)\n"
    "  for i = 1, 1000 do\n"
    "    local ok2, e2 = pcall(s.spawn, s, function()\n"
    "      corio.defer(function() error('defer ' .. i) end)\n"
    "      error('boom ' .. i)\n"
    "    end)\n"
    "    if not ok2 then spawn_err = e2 break end\n"
    "    n = n + 1\n"
    "  end\n"
    "end)\n"
    "arm(false)\n"
    "assert(not ok, 'the scope should fail')\n"
    "assert(n > 0 and n < 1000, 'spawned ' .. n)\n"
    "assert(type(spawn_err) == 'string' and\n"
    "       spawn_err:find('corio.spawn: not enough memory', 1, true),\n"
    "       tostring(spawn_err))\n"
    "assert(nfailed() > 0)\n"
    "assert(#e.errors == 2 * n, #e.errors .. ' errors for ' .. n)\n"
    /* the runtime goes on: errors and joiners of tasks in new chunks */
    "local ok4, e4 = pcall(corio.scope, function(s)\n"
    "  for i = 1, 600 do s:spawn(function()\n"
    "    error('late ' .. i) end) end\n"
    "end)\n"
    "assert(not ok4 and #e4.errors == 600, tostring(e4))\n"
    "local ts = {}\n"
    "for i = 1, 600 do\n"
    "  ts[i] = corio.spawn(function() corio.sleep(0.001) return i end)\n"
    "end\n"
    "for i = 1, 600 do\n"
    "  assert(ts[i]:join() == i)\n"
    "end\n"
    "return 'fine'\n";

int main(void) {
  corio_rt *rt;
  lua_State *L;
  int r;
  signal(SIGALRM, on_alarm);
  alarm(60);
  rt = corio_new(NULL);
  CHECK(rt != NULL);
  add_paths(rt);
  L = corio_lua(rt);
  lua_register(L, "arm", l_arm);
  lua_register(L, "nfailed", l_nfailed);
  r = corio_run_string(rt, script, "=side_oom");
  if (r != 0) fprintf(stderr, "run: %s\n", corio_errmsg(rt));
  CHECK(r == 0);
  corio_free(rt);
  return check_done("test_side_oom");
}
#endif
