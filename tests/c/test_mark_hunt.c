/*
** test_mark_hunt.c: a cancel that starts another cancel while it marks
** (cancel.c mark). A host op's cancel callback runs while the cancel that
** reached its task propagates; here it calls Lua code that cancels other
** scopes: one elsewhere in the tree, one below a task the first cancel has
** not reached yet, the parent of the scope being cancelled, and (last
** test) corio_free, which cancels the root. Every blocked task must be
** woken once, in a fixed order, and nothing may be left running.
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
  static const char msg[] = "test_mark_hunt: timed out (a hang)\n";
  (void)sig;
  if (write(2, msg, sizeof(msg) - 1) < 0) _exit(2);
  _exit(1);
}

static corio_rt *the_rt;
static int free_in_cancel;

/* The cancel callback: call the global hook(name) of the runtime's state,
** then free the op. */
static void on_cancel(corio_op *op, void *data) {
  lua_State *R = corio_lua(corio_op_runtime(op));
  int top = lua_gettop(R);
  lua_getglobal(R, "hook");
  lua_pushstring(R, (const char *)data);
  if (lua_pcall(R, 1, 0, 0) != 0) {
    fprintf(stderr, "hook: %s\n", lua_tostring(R, -1));
    CHECK(0);
  }
  lua_settop(R, top);
  if (free_in_cancel) corio_free(the_rt);
  corio_op_resume(op, 0);
}

/* hold(name): block until cancelled. */
static int l_hold(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  corio_op *op;
  /* the name is kept as the callback's data: pinned in the registry */
  lua_pushvalue(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, name);
  op = corio_op_begin(L, on_cancel, (void *)lua_tostring(L, 1));
  if (op == NULL) return lua_error(L);
  return corio_op_suspend(L, op);
}

static corio_rt *new_rt(void) {
  corio_options o;
  corio_rt *rt;
  memset(&o, 0, sizeof(o));
  rt = corio_new(&o);
  if (rt != NULL) add_paths(rt);
  corio_push_async(corio_lua(rt), l_hold);
  lua_setglobal(corio_lua(rt), "hold");
  return rt;
}

static const char nested[] =
    "local corio = require('corio')\n"
    "LOG = {}\n"
    "local log, scopes = LOG, {}\n"
    "local hooks = {}\n"
    "function hook(name)\n"
    "  log[#log + 1] = 'hook ' .. name\n"
    "  local f = hooks[name] if f then f() end\n"
    "end\n"
    "local function blocked(name)\n"
    "  return function()\n"
    "    local ok, e = pcall(hold, name)\n"
    "    assert(not ok and e.kind == 'cancelled', name)\n"
    "    log[#log + 1] = name\n"
    "  end\n"
    "end\n"
    /* the tree: P { S1 { a1, a2 { T { t1 } }, a3 }, S2 { b1, b2 } } */
    "corio.scope(function(P)\n"
    "  scopes.P = P\n"
    "  P:spawn(function() corio.scope(function(s1) scopes.S1 = s1\n"
    "    s1:spawn(blocked('a1'))\n"
    "    s1:spawn(function() corio.scope(function(t) scopes.T = t\n"
    "      t:spawn(blocked('t1'))\n"
    "      blocked('a2')()\n"
    "    end) end)\n"
    "    s1:spawn(blocked('a3'))\n"
    "    blocked('s1')()\n"
    "  end) end)\n"
    "  P:spawn(function() corio.scope(function(s2) scopes.S2 = s2\n"
    "    s2:spawn(blocked('b1'))\n"
    "    s2:spawn(blocked('b2'))\n"
    "    blocked('s2')()\n"
    "  end) end)\n"
    "  for _ = 1, 5 do corio.yield() end\n"
    /* a3 is woken first: its hook cancels S2 (elsewhere) and T (below
    ** a2, which S1's cancel has not reached yet); s1's hook cancels P,
    ** the parent of S1 */
    "  hooks.a3 = function() scopes.S2:cancel() scopes.T:cancel() end\n"
    "  hooks.s1 = function() scopes.P:cancel() end\n"
    "  scopes.S1:cancel()\n"
    "  hold('p')\n"
    "end)\n"
    "error('not reached')\n";

static void test_nested(void) {
  corio_rt *rt = new_rt();
  lua_State *L = corio_lua(rt);
  int r;
  the_rt = rt;
  /* P's cancel (from s1's hook) is P's own: P absorbs the root's
  ** Cancelled, and the script goes on to its error */
  r = corio_run_string(rt, nested, "=nested");
  CHECK(r == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "not reached") != NULL);
  /* depth first from S1: its owner (s1), whose hook cancels P, which
  ** marks P's tree but S1 (S2's owner, b2, b1); then S1's tasks newest
  ** first: a3, whose hook cancels S2 (marked already) and T (T's owner
  ** a2, t1), a2's task (marked), a1. The root, which cancelled S1, then
  ** blocks in its cancelled scope (p). The tasks run in the order they
  ** were woken (the same order as with the stack mark had). */
  CHECK(lua_true(L, "return table.concat(LOG, ' ') == 'hook s1 hook s2 "
                    "hook b2 hook b1 hook a3 hook a2 hook t1 hook a1 hook p "
                    "s2 b2 b1 s1 a2 t1 a3 a1' or print(table.concat(LOG, ' '))"));
  corio_free(rt);
}

/* corio_free from the cancel callback: the root is cancelled while a
** cancel marks, and the runtime freed when the run returns. */
static const char freed[] =
    "local corio = require('corio')\n"
    "function hook(name) end\n"
    "corio.scope(function(s)\n"
    "  local inner\n"
    "  for i = 1, 20 do\n"
    "    s:spawn(function() corio.scope(function(t)\n"
    "      if i == 10 then inner = t end\n"
    "      for j = 1, 3 do t:spawn(function() pcall(hold, 'x') end) end\n"
    "      pcall(hold, 'y')\n"
    "    end) end)\n"
    "  end\n"
    "  for _ = 1, 5 do corio.yield() end\n"
    "  inner:cancel()\n"
    "  hold('z')\n"
    "end)\n";

static void test_free_in_cancel(void) {
  corio_rt *rt = new_rt();
  int r;
  the_rt = rt;
  free_in_cancel = 1;
  r = corio_run_string(rt, freed, "=freed");
  CHECK(r == CORIO_EFREED);
  free_in_cancel = 0;
}

int main(void) {
  signal(SIGALRM, on_alarm);
  alarm(60);
  test_nested();
  test_free_in_cancel();
  return check_done("test_mark_hunt");
}
