/*
** test_http_exit.c: corio_free while HTTP transfers are in flight. The
** runtime (and its loop) goes first, then lua_close collects the clients:
** their __gc must free every curl and libuv resource without touching the
** loop or the tasks (run under the sanitizer build: a leak or a use after
** free fails it). The server is a listening socket that never accepts, so
** the requests (and a stream waiting for its
** headers) stay in flight.
**
** The same with streamed request bodies (uploads): one whose task is
** blocked in its body iterator (a channel recv: the transfer waits in
** curl, paused, for a chunk), one whose task waits in libcurl (the
** server's socket buffers are full), a client:stream upload, and one in
** a client closed meanwhile; the tasks' threads are collected too.
*/
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"

static int listen_any(int *port) {
  struct sockaddr_in a;
  socklen_t n = sizeof(a);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      listen(fd, 16) != 0 || getsockname(fd, (struct sockaddr *)&a, &n) != 0)
    return -1;
  *port = ntohs(a.sin_port);
  return fd;
}

static const char code[] =
    "local corio = require 'corio'\n"
    "local http = require 'corio.http'\n"
    "local url = 'http://127.0.0.1:' .. ... .. '/'\n"
    /* globals: collected only by lua_close, after the runtime is gone */
    "C1 = http.client { timeout = false }\n"
    "C2 = http.client { timeout = false }\n"
    "for _ = 1, 2 do corio.spawn(function() C1:get(url) end) end\n"
    "corio.spawn(function() return C1:stream('GET', url) end)\n"
    "for _ = 1, 2 do corio.spawn(pcall, C2.get, C2, url) end\n"
    "corio.sleep(0.1)\n"
    "IN_FLIGHT = C1:stats().in_flight + C2:stats().in_flight\n"
    /* wakes C2's tasks with kind closed */
    "C2:close()\n"
    "DONE = true\n"
    "corio.sleep(10)\n";

static const char upload_code[] =
    "local corio = require 'corio'\n"
    "local http = require 'corio.http'\n"
    "local url = 'http://127.0.0.1:' .. ... .. '/'\n"
    "C1 = http.client { timeout = false }\n"
    "C2 = http.client { timeout = false }\n"
    "local ch = corio.channel()\n"
    "local block = string.rep('u', 65536)\n"
    "local n = 0\n"
    "corio.spawn(function() C1:post(url, { body = function()\n"
    "  n = n + 1\n"
    "  if n == 1 then return 'first' end\n"
    "  WAITING = true\n"
    "  return ch:recv()\n"
    "end }) end)\n"
    "corio.spawn(function() C1:put(url, { body = function() return block end }) end)\n"
    "corio.spawn(function() return C1:stream('POST', url, { body = function() return block end }) end)\n"
    "corio.spawn(pcall, C2.post, C2, url, { body = function() corio.sleep(0.01) return block end })\n"
    "while not WAITING do corio.sleep(0.01) end\n"
    "corio.sleep(0.2)\n"
    "IN_FLIGHT = C1:stats().in_flight + C2:stats().in_flight\n"
    "C2:close()\n"
    "DONE = true\n"
    "corio.sleep(10)\n";

/* Run code until it sets DONE, check IN_FLIGHT, free the runtime. */
static void free_in_flight(const char *code, int in_flight, int max_steps) {
  char buf[4096];
  corio_rt *rt = corio_new(NULL);
  lua_State *L;
  int port = 0, fd = listen_any(&port), steps = 0, done = 0;
  CHECK(fd >= 0);
  snprintf(buf, sizeof(buf), "%s/?.lua;%s/?/init.lua", CORIO_BUILD_LUA_DIR,
           CORIO_BUILD_LUA_DIR);
  corio_add_paths(rt, buf, NULL);
  L = corio_lua(rt);
  CHECK(luaL_loadstring(L, code) == 0);
  lua_pushinteger(L, port);
  CHECK(corio_start(rt, 1) == 0);
  while (!done && steps < max_steps && corio_step(rt, 1) == 1) {
    steps++;
    lua_getglobal(L, "DONE");
    done = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  CHECK(done);
  if (!done) {
    fprintf(stderr, "after %d steps: %d %s\n", steps, corio_finish(rt, 0),
            corio_errmsg(rt));
  }
  lua_getglobal(L, "IN_FLIGHT");
  CHECK(lua_tonumber(L, -1) == in_flight);
  lua_pop(L, 1);
  corio_free(rt);  /* the runtime first, then lua_close runs the __gc */
  close(fd);
}

int main(void) {
  free_in_flight(code, 5, 1000);
  free_in_flight(upload_code, 4, 5000);
  return check_done("test_http_exit");
}
