/*
** test_heap.c: the allocator of the states corio makes (runtime/heap.c):
** size classes that hold what was asked and waste at most an eighth;
** a state on the heap running code that makes, grows, shrinks and frees
** blocks of every class and mapped big ones, checked after collections;
** the same on a range so small that it fills, where small blocks come
** from malloc; and corio_new's choice of allocator.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lualib.h>

#include "internal.h"
#include "check.h"

static const char WORKLOAD[] =
    "local keep = {}\n"
    "local buffer = require 'string.buffer'\n"
    "for round = 1, 3 do\n"
    "  local sizes = {}\n"
    "  for n = 1, 2100, 7 do sizes[#sizes + 1] = n end\n"
    "  for n = 2100, 300000, 4099 do sizes[#sizes + 1] = n end\n"
    "  for i, n in ipairs(sizes) do\n"
    "    local s = string.rep(string.char(65 + (i + round) % 26), n - 1)"
    "      .. (i % 10)\n"
    "    keep[#keep + 1] = {s, n, i, round}\n"
    "  end\n"
    "  local t = {}\n"
    "  for i = 1, 50000 do t[i] = i * round end\n"
    "  for i = 1, 50000 do assert(t[i] == i * round, 'array') end\n"
    "  local h = {}\n"
    "  for i = 1, 20000 do h['k' .. i] = i end\n"
    "  for i = 1, 20000 do assert(h['k' .. i] == i, 'hash') end\n"
    "  local many = {}\n"
    "  for i = 1, 100000 do many[i] = {i, tostring(i)} end\n"
    "  for i = 1, 100000 do\n"
    "    assert(many[i][1] == i and many[i][2] == tostring(i), 'many')\n"
    "  end\n"
    "  local function deep(d) if d == 0 then return 0 end\n"
    "    return 1 + deep(d - 1) end\n"
    "  assert(deep(10000) == 10000, 'deep')\n"
    "  local cos = {}\n"
    "  for i = 1, 2000 do cos[i] = coroutine.wrap(function(a)\n"
    "    local b = coroutine.yield(a + 1) return b * 2 end) end\n"
    "  for i = 1, 2000 do assert(cos[i](i) == i + 1, 'co1') end\n"
    "  for i = 1, 2000 do assert(cos[i](i) == i * 2, 'co2') end\n"
    "  local buf = buffer.new()\n"
    "  for i = 1, 1000 do buf:put(string.rep('x', i)) end\n"
    "  assert(#buf == 500500, 'buffer')\n"
    "  buf:reset()\n"
    "  many, t, h, cos = nil, nil, nil, nil\n"
    "  collectgarbage()\n"
    "  for i = #keep, 1, -2 do table.remove(keep, i) end\n"
    "  collectgarbage()\n"
    "  for _, e in ipairs(keep) do\n"
    "    local s, n, i, r = e[1], e[2], e[3], e[4]\n"
    "    assert(#s == n, 'length')\n"
    "    assert(s:byte(1) == (n > 1 and 65 + (i + r) % 26 or 48 + i % 10),"
    "      'first byte')\n"
    "    assert(s:sub(-1) == tostring(i % 10), 'last byte')\n"
    "  end\n"
    "end\n"
    "return #keep\n";

static void test_classes(void) {
  size_t n, prev = 0, bad = 0;
  for (n = 1; n <= (size_t)128 << 10; n++) {
    size_t c = corio__heap_class_size(n);
    if (c < n || c % 16 != 0 || c > n + n / 8 + 15 || c < prev) {
      if (bad++ < 5)
        fprintf(stderr, "size %zu: class of %zu bytes\n", n, c);
    }
    prev = c;
  }
  CHECK(bad == 0);
}

static void run_workload(lua_State *L) {
  luaL_openlibs(L);
  if (luaL_loadbuffer(L, WORKLOAD, sizeof(WORKLOAD) - 1, "=workload") != 0 ||
      lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "workload: %s\n", lua_tostring(L, -1));
    CHECK(0);
    return;
  }
  /* three rounds of strings, every other one dropped each round */
  CHECK(lua_tointeger(L, -1) > 100);
  lua_pop(L, 1);
}

static void test_state(size_t reserve) {
  lua_State *L = corio__heap_newstate(reserve);
  void *ud;
  lua_Alloc f;
  CHECK(L != NULL);
  if (L == NULL) return;
  CHECK(corio__heap_owns(L));
  run_workload(L);
  f = lua_getallocf(L, &ud);
  lua_close(L);
  corio__heap_release(f, ud);
}

static void test_corio_new(void) {
  corio_rt *rt;
  unsetenv("CORIO_LUAJIT_ALLOC");
  rt = corio_new(NULL);
  CHECK(rt != NULL && corio__heap_owns(corio_lua(rt)));
  corio_free(rt);
  setenv("CORIO_LUAJIT_ALLOC", "1", 1);
  rt = corio_new(NULL);
  CHECK(rt != NULL && !corio__heap_owns(corio_lua(rt)));
  corio_free(rt);
  /* read as CORIO_DEBUG is (docs/c-api.md): was on for any value */
  setenv("CORIO_LUAJIT_ALLOC", "On", 1);
  rt = corio_new(NULL);
  CHECK(rt != NULL && !corio__heap_owns(corio_lua(rt)));
  corio_free(rt);
  setenv("CORIO_LUAJIT_ALLOC", "0", 1);
  rt = corio_new(NULL);
  CHECK(rt != NULL && corio__heap_owns(corio_lua(rt)));
  corio_free(rt);
  setenv("CORIO_LUAJIT_ALLOC", "off", 1);
  rt = corio_new(NULL);
  CHECK(rt != NULL && corio__heap_owns(corio_lua(rt)));
  corio_free(rt);
  unsetenv("CORIO_LUAJIT_ALLOC");
}

int main(void) {
  test_classes();
  test_state(0);
  /* 8 MiB: the workload keeps more than that alive at once */
  test_state((size_t)8 << 20);
  test_corio_new();
  return check_done("test_heap");
}
