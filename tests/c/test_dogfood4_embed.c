/*
** test_dogfood4_embed.c: dogfooding round 4, a C host with its own libuv
** loop (docs/c-api.md): corio adopts the host's loop and lua_State, and
** the host steps the run between its own turns of the loop.
**  1. The host's uv timer calls into Lua (a channel's try_send) between
**     corio's steps and a task consumes what it sends, in turn; then the
**     host shuts down while tasks still sleep (a long sleep, a sleep under
**     a timeout, a task waiting on the channel, one with an open corio.fs
**     file closed by a shielded defer, a scope of sleepers), without
**     finishing the run: corio_free cancels them and runs their cleanup.
**  2. A second runtime on the same loop and state is freed with real work
**     pending: a to_thread worker, an HTTP request to the host's own TCP
**     server (which never answers), a file being read.
**  3. A third one gets work from the host's callbacks: scope:spawn and
**     task:cancel called outside any task; its run ends by itself.
** Everything is freed (the ASan build runs this with leak detection), the
** host's loop closes and its state stays usable.
*/
#define _GNU_SOURCE /* mkstemp */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <uv.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static corio_rt *rt;
static int host_ticks, lua_refused, host_stop_at = 10;
static char order[256];
static size_t order_len;

/* the host's timer: tick n goes to Lua as host_tick(n), called with a
** plain lua_pcall on the runtime's state, outside any task */
static void on_tick(uv_timer_t *t) {
  lua_State *L = corio_lua(rt);
  if (host_ticks >= host_stop_at) return;
  host_ticks++;
  if (order_len + 1 < sizeof(order)) order[order_len++] = 'H';
  lua_getglobal(L, "host_tick");
  lua_pushinteger(L, host_ticks);
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "host_tick failed: %s\n", lua_tostring(L, -1));
    failures++;
  } else if (!lua_toboolean(L, -1)) {
    lua_refused++;
  }
  lua_pop(L, 1);
  (void)t;
}

/* the Lua side records each tick a task took, in the same order string */
static int l_mark(lua_State *L) {
  (void)L;
  if (order_len + 1 < sizeof(order)) order[order_len++] = 'T';
  return 0;
}

static const char *script =
    "local corio = require 'corio'\n"
    "local fs = require 'corio.fs'\n"
    "local path = ...\n"
    "cleanup = {}\n"
    "local function note(s) cleanup[#cleanup + 1] = s end\n"
    "local ticks = corio.channel(4)\n"
    "function host_tick(n) return ticks:try_send(n) end\n"
    "got = {}\n"
    "corio.spawn(function()\n"              /* the consumer */
    "  corio.defer(function() note('consumer') end)\n"
    "  for n in ticks:iter() do got[#got + 1] = n; mark() end\n"
    "end)\n"
    "corio.spawn(function()\n"              /* a long sleep */
    "  corio.defer(function() note('sleeper') end)\n"
    "  corio.sleep(3600)\n"
    "end)\n"
    "corio.spawn(function()\n"              /* a sleep under a deadline */
    "  corio.defer(function() note('timeout') end)\n"
    "  corio.timeout(1800, corio.sleep, 3600)\n"
    "end)\n"
    "corio.spawn(function()\n"              /* an open file, written */
    "  local f = fs.open(path, 'w')\n"
    "  corio.defer(function() note('file'); corio.shield(f.close, f) end)\n"
    "  f:write('kept\\n'); f:flush()\n"
    "  corio.sleep(3600)\n"
    "end)\n"
    "corio.spawn(function()\n"              /* a scope of its own */
    "  corio.scope(function(s)\n"
    "    for i = 1, 3 do s:spawn(function()\n"
    "      corio.defer(function() note('child ' .. i) end)\n"
    "      corio.sleep(100 + i)\n"
    "    end) end\n"
    "  end)\n"
    "end)\n"
    "corio.defer(function() note('root') end)\n"
    "corio.sleep(3600)\n";

static const char *script2 =
    "local corio = require 'corio'\n"
    "local http = require 'corio.http'\n"
    "local fs = require 'corio.fs'\n"
    "local path = ...\n"
    "cleanup2 = {}\n"
    "local function note(s) cleanup2[#cleanup2 + 1] = s end\n"
    "local client = http.client { timeout = 60 }\n"
    "corio.spawn(function()\n"
    "  local ok, err = pcall(client.get, client, http_url)\n"
    "  note('http ' .. (ok and 'answered' or err.kind))\n"
    "end)\n"
    "corio.spawn(function()\n"
    "  worker_started = true\n"
    "  local ok, err = pcall(corio.to_thread, function()\n"
    "    local t = os.clock() + 0.2 while os.clock() < t do end return 1\n"
    "  end)\n"
    "  note('worker ' .. (ok and 'returned' or err.kind))\n"
    "end)\n"
    "corio.spawn(function()\n"
    "  corio.defer(function() note('reader') end)\n"
    "  fs.with_open(path, 'r', function(f)\n"
    "    while true do f:seek('set', 0); f:read('a'); corio.sleep(0.001) end\n"
    "  end)\n"
    "end)\n"
    "corio.spawn(function()\n"
    "  corio.defer(function() note('sleeper') end)\n"
    "  corio.sleep(3600)\n"
    "end)\n"
    "corio.defer(function() note('root') end)\n"
    "while client:stats().in_flight == 0 do corio.sleep(0.001) end\n"
    "corio.sleep(0.02)\n"
    "http_sent = true\n"
    "corio.sleep(3600)\n";

static const char *script3 =
    "local corio = require 'corio'\n"
    "local handled, sleeper_outcome = {}, nil\n"
    "corio.scope(function(s)\n"
    "  local sleeper = s:spawn(function()\n"
    "    local ok, err = pcall(corio.sleep, 3600)\n"
    "    sleeper_outcome = corio.is_cancelled(err) and 'cancelled' or tostring(ok)\n"
    "    if not ok then error(err, 0) end\n"
    "  end)\n"
    "  function host_job(i)\n"          /* called by the host's timer */
    "    if i == 4 then sleeper:cancel() return end\n"
    "    if i == 2 then\n"   /* blocking calls are refused here, named */
    "      local ch, ev = corio.channel(0), corio.event()\n"
    "      local sem, lk = corio.semaphore(0), corio.lock()\n"
    "      local function msg(f, ...)\n"
    "        local ok, e = pcall(f, ...) return ok and 'returned' or tostring(e)\n"
    "      end\n"
    "      refusals = { msg(ch.send, ch, 1), msg(ch.recv, ch), msg(ev.wait, ev),\n"
    "        msg(sem.acquire, sem), msg(lk.acquire, lk), msg(corio.sleep, 1),\n"
    "        msg(sleeper.join, sleeper) }\n"
    "    end\n"
    "    s:spawn(function() corio.sleep(0.001) handled[#handled + 1] = i end)\n"
    "  end\n"
    "end)\n"
    "return table.concat(handled, ',') .. ' ' .. sleeper_outcome\n";

static void on_job(uv_timer_t *t) {
  lua_State *L = corio_lua(rt);
  (void)t;
  if (host_ticks >= 4) return;
  host_ticks++;
  lua_getglobal(L, "host_job");
  lua_pushinteger(L, host_ticks);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "host_job failed: %s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
    failures++;
  }
}

/* the host's own server: accepts connections and never answers */
static uv_tcp_t server, conns[4];
static int nconns, accepted;
static void on_connection(uv_stream_t *srv, int status) {
  if (status != 0 || nconns >= 4) return;
  uv_tcp_init(srv->loop, &conns[nconns]);
  if (uv_accept(srv, (uv_stream_t *)&conns[nconns]) == 0) accepted++;
  nconns++;
}

int main(void) {
  uv_loop_t loop;
  uv_timer_t timer;
  corio_options opts;
  lua_State *L;
  char path[] = "/tmp/corio-dogfood4-XXXXXX";
  int rc = 1, steps = 0, fd;

  CHECK(uv_loop_init(&loop) == 0);
  CHECK(uv_timer_init(&loop, &timer) == 0);

  fd = mkstemp(path);
  CHECK(fd >= 0);
  close(fd);

  memset(&opts, 0, sizeof(opts));
  opts.L = luaL_newstate();
  luaL_openlibs(opts.L);
  opts.loop = &loop;
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  if (!rt) return check_done("test_dogfood4_embed");
  add_paths(rt);
  L = corio_lua(rt);
  lua_pushcfunction(L, l_mark);
  lua_setglobal(L, "mark");

  CHECK(luaL_loadstring(L, script) == 0);
  lua_pushstring(L, path);
  CHECK(corio_start(rt, 1) == 0);
  /* one step first: the script defines host_tick and spawns its tasks */
  CHECK(corio_step(rt, 0) == 1);
  CHECK(uv_timer_start(&timer, on_tick, 5, 5) == 0);
  /* the host's frames: a step of corio, then a turn of the host's own;
  ** ten host ticks, then the host shuts down with the tasks asleep */
  while (host_ticks < host_stop_at && steps < 100000) {
    rc = corio_step(rt, 0);
    if (rc != 1) break;
    uv_run(&loop, UV_RUN_ONCE);
    steps++;
  }
  CHECK(rc == 1);               /* the run was still going */
  CHECK(host_ticks == host_stop_at);
  /* a last step: the consumer takes the last tick */
  CHECK(corio_step(rt, 0) == 1);
  uv_timer_stop(&timer);
  CHECK(lua_refused == 0);      /* the channel never filled up */
  /* the ticks and the task's takes alternate: H T H T ... */
  order[order_len] = '\0';
  CHECK(strcmp(order, "HTHTHTHTHTHTHTHTHTHT") == 0);
  if (strcmp(order, "HTHTHTHTHTHTHTHTHTHT") != 0)
    fprintf(stderr, "order: %s\n", order);
  CHECK(lua_true(L, "return #got == 10 and got[1] == 1 and got[10] == 10"));

  /* the host shuts down: no corio_finish, the tasks still sleep */
  corio_free(rt);
  rt = NULL;

  /* every task's cleanup ran (the state is the host's, still open) */
  CHECK(lua_true(L,
      "local want = {'child 1', 'child 2', 'child 3', 'consumer', 'file',"
      "  'root', 'sleeper', 'timeout'}\n"
      "table.sort(cleanup)\n"
      "if #cleanup ~= #want then return false end\n"
      "for i = 1, #want do if cleanup[i] ~= want[i] then return false end end\n"
      "return true"));
  if (!lua_true(L, "return #cleanup == 8")) {
    lua_true(L, "io.stderr:write('cleanup: ', table.concat(cleanup, ', '), '\\n') return true");
  }
  /* the file's write was flushed and the file closed */
  {
    FILE *f = fopen(path, "r");
    char buf[16] = {0};
    CHECK(f != NULL);
    if (f) {
      CHECK(fgets(buf, sizeof(buf), f) != NULL);
      CHECK(strcmp(buf, "kept\n") == 0);
      fclose(f);
    }
  }
  /* corio is gone from the state: a plain coroutine works, and a new
  ** require "corio" would load it afresh */
  CHECK(lua_true(L, "return package.loaded.corio == nil"));
  CHECK(lua_true(L,
      "local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)\n"
      "return co(1) == 2 and co(5) == 10"));
  /* phase 2: a new runtime on the same loop and state (corio loads
  ** afresh), shut down while real work is pending: a to_thread worker
  ** computing, an HTTP request to the host's own server (which accepts
  ** and never answers), a file being read, a sleep */
  CHECK(uv_tcp_init(&loop, &server) == 0);
  {
    struct sockaddr_in addr;
    int alen = sizeof(addr);
    char code[256];
    uv_ip4_addr("127.0.0.1", 0, &addr);
    CHECK(uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0) == 0);
    CHECK(uv_listen((uv_stream_t *)&server, 16, on_connection) == 0);
    CHECK(uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &alen) == 0);
    snprintf(code, sizeof(code), "http_url = 'http://127.0.0.1:%d/hang'",
             ntohs(addr.sin_port));
    CHECK(luaL_dostring(L, code) == 0);
  }
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  if (!rt) return check_done("test_dogfood4_embed");
  CHECK(luaL_loadstring(L, script2) == 0);
  lua_pushstring(L, path);
  CHECK(corio_start(rt, 1) == 0);
  steps = 0;
  while (!lua_true(L, "return http_sent == true and worker_started == true")
         && steps < 100000) {
    if (corio_step(rt, 0) != 1) break;
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(1000);
    steps++;
  }
  CHECK(lua_true(L, "return http_sent == true and worker_started == true"));
  CHECK(accepted == 1);
  corio_free(rt);
  rt = NULL;
  CHECK(lua_true(L,
      "table.sort(cleanup2)\n"
      "return table.concat(cleanup2, ',') == 'http cancelled,reader,root,sleeper,worker cancelled'"));
  if (!lua_true(L, "return #cleanup2 == 5"))
    lua_true(L, "io.stderr:write('cleanup2: ', table.concat(cleanup2, ', '), '\\n') return true");

  /* phase 3: the host hands work to a scope from its own callbacks
  ** (scope:spawn outside any task, between steps) and cancels a task
  ** (task:cancel); the run then ends by itself */
  rt = corio_new(&opts);
  CHECK(rt != NULL);
  if (!rt) return check_done("test_dogfood4_embed");
  CHECK(luaL_loadstring(L, script3) == 0);
  CHECK(corio_start(rt, 0) == 0);
  host_ticks = 0;
  host_stop_at = 1000;
  CHECK(uv_timer_start(&timer, on_job, 5, 5) == 0);
  steps = 0;
  while ((rc = corio_step(rt, 0)) == 1 && steps < 100000) {
    uv_run(&loop, UV_RUN_ONCE);
    steps++;
  }
  uv_timer_stop(&timer);
  CHECK(rc == 0);
  rc = corio_finish(rt, 1);
  if (rc != 0) fprintf(stderr, "phase 3: %s\n", corio_errmsg(rt));
  CHECK(rc == 0);
  CHECK(lua_tostring(L, -1) != NULL && strcmp(lua_tostring(L, -1), "1,2,3 cancelled") == 0);
  lua_settop(L, 0);
  /* each refusal names the call as the script wrote it */
  CHECK(lua_true(L,
      "local want = { 'channel:send()', 'channel:recv()', 'event:wait()',\n"
      "  'semaphore:acquire()', 'lock:acquire()', 'corio.sleep', 'task:join()' }\n"
      "for i, w in ipairs(want) do\n"
      "  local m = refusals[i]\n"
      "  if m:sub(1, #w + 1) ~= w .. ':' or not m:find(': called outside any task', 1, true) then\n"
      "    io.stderr:write('refusal ', i, ': ', m, '\\n') return false\n"
      "  end\n"
      "end\n"
      "return true"));
  corio_free(rt);
  rt = NULL;

  lua_close(opts.L);
  while (nconns > 0) uv_close((uv_handle_t *)&conns[--nconns], NULL);
  uv_close((uv_handle_t *)&server, NULL);

  /* the host's loop: its own timer is left; once closed, the loop closes */
  uv_close((uv_handle_t *)&timer, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&loop) == 0);
  remove(path);
  return check_done("test_dogfood4_embed");
}
