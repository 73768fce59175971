/*
** test_oom_sweep.c: out of memory at every allocation of a corio program.
**
** The host hands corio its own lua_State, made with lua_newstate and an
** allocator of this test (LuaJIT GC64 accepts one: corio's own heap.c does
** the same). From the Nth allocation on, fail_len allocations fail (1, 2,
** 4, or all of them), and a program runs through corio_new,
** corio_add_paths, corio_start and corio_finish, then corio_free and
** lua_close: "main" (spawn and join, a scope whose child fails, cancel,
** timeout, move_on_after, sleep, a channel, a semaphore, gather, defer
** with shield, an event) and "deadlock" (a deadlock with a lock held,
** whose message the scheduler builds) and "host" (a host's async
** function that the host fails with corio_op_fail between steps; every
** program is driven by corio_step, then corio_finish), "io" (corio.fs
** and to_thread), "usr1" (the task list SIGUSR1 prints) and "http"
** (corio.http against tests/http/server.py, which the sweep starts once
** and kills at the end; every 2nd to 23rd N, see HTTP_STEP). N sweeps the whole range of
** allocations the run makes (counted by a first run that fails nothing),
** each N in a forked child with a time limit. A child must end with the
** program's own outcome, or with an error whose message says that memory
** ran out (corio_new returning NULL counts as that); never a signal, a
** panic (LuaJIT's, for an error raised outside any protected call), a
** hang, or another error; nor a run the scheduler abandoned (its last
** resort, runtime/loop.c step_failed: no crash, but a place no known path
** should reach, e.g. the fs and to_thread deliver functions did, leaking
** the op in hand; so did corio.http's delivery of a response or chunk).
**
** Before the fix (one failing allocation, "main" without defer and event,
** 2171 allocations): 96 of the N ended in LuaJIT's panic: waking a task
** with Cancelled (28: corio__deliver_cancelled), wrapping and recording a
** task's error (corio__wrap_error, crossed, corio__scope_add_error,
** corio__ref: 19), corio_new (corio__rt_create, corio_preload,
** corio__rt: 14), keeping results and names at a task's end (task_keep,
** corio__task_push_results, corio__task_name_at: 7), the root spawn of
** corio_start (corio__spawn, spawn_site: 10), corio_add_paths (3); and
** with every allocation failing from N on, corio_free's unload_modules
** (all 209 failures of that sweep). The deadlock program added
** describe_blocked's task names; the defer, a defer thread that raised
** (its error was lost: the task ended done).
**
** A second pass counts and fails malloc, calloc and realloc instead
** (replaced in this program; not under a sanitizer): corio's own C memory
** and libuv's. It starts counting once the runtime exists and its Lua
** modules are loaded: before that, libuv's uv_loop_init aborts when
** malloc fails (uv_signal_init: a libuv limitation, corio_new cannot
** help it), and LuaJIT's loader takes a failed fopen for a missing file
** ("module 'corio' not found"), neither of them corio's code; and
** libuv's thread pool is started first (its start aborts when malloc
** fails). These ranges are known to fail and are left out.
**
** Allocations made before the count: the host's luaL_openlibs and
** require "ffi" (LuaJIT's luaopen_ffi interrupted by a memory error
** leaves a state that crashes in lua_close: a LuaJIT defect, no corio
** code runs there).
**
** Environment: OOM_KIND=malloc runs the malloc pass only (OOM_KIND=lua
** the other); OOM_PROG=i (0 main, 1 deadlock, 2 host, 3 io, 4 usr1,
** 5 http) and OOM_LEN=n run that
** one program and length; OOM_N=n runs that one N in this process (for
** gdb: break oom_failed, or on_panic); OOM_FROM/OOM_TO/OOM_STEP narrow
** the sweep; OOM_VERBOSE=1 prints every failing N's output. Under a
** sanitizer the sweep takes every 23rd N (OOM_STEP overrides) and each
** child exits through exit(), so that LeakSanitizer checks it.
*/
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "curl_dyn.h"
#include "check.h"
#include "rt_helpers.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#else
#define SANITIZED 0
#endif

#define PANIC_EXIT 86   /* a child that reached LuaJIT's panic */
#define WRONG_EXIT 87   /* a child whose run ended with another error */
#define CHILD_SECONDS 20
/* The http program's step: each of its runs takes ~0.1 s (each request
** but the first waits ~40 ms for the Python server's reply: its headers
** and body go out in two writes, Nagle's algorithm against delayed ACKs;
** and a malloc libcurl lost may stall a request until its 1 s timeout).
** One failing Lua allocation, where a result delivered to a task would
** abandon the run (a window of one or a few N): every 2nd N; the other
** lengths, every 11th, malloc's every 23rd, from an offset that differs
** for each length (they take different N) */
#define HTTP_STEP_ONE 2
#define HTTP_STEP 11
#define HTTP_STEP_MALLOC 23

static const char program[] =
    "local corio = require('corio')\n"
    "local function oom(e)\n"
    "  local s = tostring(e)\n"
    "  if s:find('not enough memory', 1, true) then error(e, 0) end\n"
    "  return s\n"
    "end\n"
    "local t = corio.spawn(function(a) corio.sleep(0.001) return a * 2 end,"
    " 21)\n"
    "assert(t:join() == 42)\n"
    "local ok, e = pcall(corio.scope, function(s)\n"
    "  s:spawn(function() corio.sleep(0.001) error('child boom') end)\n"
    "  s:spawn(function() corio.sleep(5) end)\n"
    "end)\n"
    "assert(not ok)\n"
    "local m = oom(e)\n"
    "assert(m:find('child boom', 1, true), m)\n"
    "local c = corio.spawn(function() corio.sleep(5) end)\n"
    "corio.sleep(0)\n"
    "c:cancel()\n"
    "ok, e = pcall(c.join, c)\n"
    "m = oom(e)\n"
    "assert(not ok and corio.is_cancelled(e), m)\n"
    "ok, e = pcall(corio.timeout, 0.001, function() corio.sleep(5) end)\n"
    "m = oom(e)\n"
    "assert(not ok and corio.is_error(e, 'timeout'), m)\n"
    "assert(corio.move_on_after(0.001, corio.sleep, 5) == false)\n"
    "local ch = corio.channel(0)\n"
    "local p = corio.spawn(function()\n"
    "  for i = 1, 3 do ch:send(i) end\n"
    "  ch:close()\n"
    "end)\n"
    "local sum = 0\n"
    "for v in ch:iter() do sum = sum + v end\n"
    "assert(sum == 6, sum)\n"
    "p:join()\n"
    "local sem, n = corio.semaphore(1), 0\n"
    "corio.scope(function(s)\n"
    "  for i = 1, 3 do\n"
    "    s:spawn(function() sem:with(function() n = n + 1 corio.sleep(0)"
    " end) end)\n"
    "  end\n"
    "end)\n"
    "assert(n == 3, n)\n"
    "local r = corio.gather({function() return 1 end,\n"
    "  function() corio.sleep(0.001) return 2 end})\n"
    "assert(r[1] == 1 and r[2] == 2)\n"
    "local deferred = 0\n"
    "local d = corio.spawn(function()\n"
    "  corio.defer(function() corio.shield(corio.sleep, 0.001)\n"
    "    deferred = deferred + 1 end)\n"
    "  corio.sleep(0.001)\n"
    "  return 'x', 'y'\n"
    "end)\n"
    "local x, y = d:join()\n"
    "assert(x == 'x' and y == 'y' and deferred == 1,\n"
    "  tostring(x) .. ' ' .. tostring(y) .. ' ' .. deferred)\n"
    "local e2 = corio.event()\n"
    "local w = corio.spawn(function() e2:wait() return true end)\n"
    "corio.sleep(0)\n"
    "e2:set()\n"
    "assert(w:join() == true)\n"
    "return 'fine'\n";

/* A deadlock: the run ends with the deadlock error, whose message the
** scheduler builds (and cancels the root first, so its defer runs). */
static const char program_deadlock[] =
    "local corio = require('corio')\n"
    "local ch = corio.channel(0)\n"
    "local lk = corio.lock()\n"
    "local t = corio.spawn(function() lk:with(ch.recv, ch) end)\n"
    "corio.defer(function() corio.sleep(0) end)\n"
    "corio.sleep(0.001)\n"
    "lk:acquire()\n"
    "return 'not reached'\n";

/* A host's async function failed by the host between steps (where no
** protected call of corio's is active): corio_op_fail makes the error. */
static const char program_host[] =
    "local corio = require('corio')\n"
    "local ok, e = pcall(hostop)\n"
    "if not ok and tostring(e):find('not enough memory', 1, true) then\n"
    "  error(e, 0)\n"
    "end\n"
    "assert(not ok and corio.is_error(e, 'host'), tostring(e))\n"
    "return 'fine'\n";

/* Files and threads: corio.fs (its results made where the task is woken)
** and to_thread (the worker's state is its own, not swept). The file is
** the child's own (tmppath), removed by the parent. */
static const char program_io[] =
    "local corio = require('corio')\n"
    "local fs = require('corio.fs')\n"
    "local p = tmppath\n"
    "fs.write_file(p, 'hello')\n"
    "assert(fs.read_file(p) == 'hello')\n"
    "assert(fs.stat(p).size == 5)\n"
    "local f = fs.open(p, 'a')\n"
    "f:write(' world')\n"
    "f:close()\n"
    "local n = 0\n"
    "for line in fs.lines(p) do n = n + 1 end\n"
    "assert(n == 1 and fs.read_file(p) == 'hello world')\n"
    "fs.remove(p)\n"
    "assert(not fs.exists(p))\n"
    "assert(corio.to_thread(function(a, b) return a + b end, 2, 3) == 5)\n"
    "return 'fine'\n";

/* SIGUSR1 (the runtime handles signals here): the task list it prints
** names the tasks, which allocates (the count starts after the ffi
** declarations). */
static const char program_usr1[] =
    "local corio = require('corio')\n"
    "local ffi = require('ffi')\n"
    "local t = corio.spawn(function() corio.sleep(0.001) end)\n"
    "corio.sleep(0)\n"
    "ffi.C.kill(ffi.C.getpid(), 10)\n"
    "corio.sleep(0.002)\n"
    "t:join()\n"
    "return 'fine'\n";

/* corio.http against the test's own server (tests/http/server.py, started
** once before the sweep; its port in the global "port"): text() and
** json(), a POST with a string body, a stream closed early, a streamed
** request body, a request timeout, a request cancelled by a scope
** deadline, stats() and close(). json() is left out of the malloc pass
** and under a sanitizer (no_cjson): lua-cjson, which it calls, exits the
** process when its malloc fails (its strbuf's die()), and leaks its
** buffer when a Lua memory error interrupts a decode (LeakSanitizer);
** neither is corio's code. */
static const char program_http[] =
    "local corio = require('corio')\n"
    "local http = require('corio.http')\n"
    "local function oom(e)\n"
    "  local s = tostring(e)\n"
    "  if s:find('not enough memory', 1, true) or\n"
    "     s:find('ut of memory', 1, true) then error(e, 0) end\n"
    "  return s\n"
    "end\n"
    "local c = http.client({base_url = 'http://127.0.0.1:' .. port,\n"
    "  timeout = 1})\n"
    "assert(c:get('/ok'):text() == 'hello')\n"
    "local function json(r)\n"
    "  if no_cjson then return {b = 'c', body = r:text():match("
    "'\"body\": \"(%w*)\"')} end\n"
    "  return r:json()\n"
    "end\n"
    "assert(json(c:get('/json')).b == 'c')\n"
    "local r = c:post('/echo', {body = 'abc'})\n"
    "assert(json(r).body == 'abc')\n"
    "local got = 0\n"
    "c:stream('GET', '/stream', {params = {n = 4, size = 100}},\n"
    "  function(s)\n"
    "    for chunk in s:iter_bytes() do got = got + #chunk break end\n"
    "  end)\n"
    "assert(got > 0)\n"
    "local parts, i = {'a', 'b', 'c'}, 0\n"
    "r = c:post('/echo', {body = function() i = i + 1 return parts[i] end})\n"
    "assert(json(r).body == 'abc')\n"
    "local ok, e = pcall(c.get, c, '/slow-headers', {params = {d = 0.1},\n"
    "  timeout = 0.002})\n"
    "local m = oom(e)\n"
    "assert(not ok and corio.is_error(e, 'timeout'), m)\n"
    "ok, e = pcall(corio.timeout, 0.002, c.get, c, '/slow-headers',\n"
    "  {params = {d = 0.1}})\n"
    "m = oom(e)\n"
    "assert(not ok and corio.is_error(e, 'timeout'), m)\n"
    "assert(c:stats().opened >= 1)\n"
    "c:close()\n"
    "return 'fine'\n";

static corio_op *pending_op;

static int l_hostop(lua_State *L) {
  corio_op *op = corio_op_begin(L, NULL, NULL);
  if (op == NULL) return lua_error(L);
  pending_op = op;
  return corio_op_suspend(L, op);
}

static const struct prog {
  const char *name, *code;
  const char *ok;        /* the message of its normal end, if an error */
  const char *preload;   /* run by the host before the count (which then
                            starts after corio_new), or NULL */
} progs[] = {
    {"main", program, NULL, NULL},
    {"deadlock", program_deadlock, "deadlock", NULL},
    {"host", program_host, NULL, NULL},
    /* LuaJIT's parser interrupted by a memory error while require loads
    ** corio/fs.lua sometimes leaves an error value that is no string: its
    ** loader then says "error loading module 'corio.fs' ...: (null)" (not
    ** corio's code; "main" sweeps corio_new and require "corio") */
    {"io", program_io, NULL, "require('corio.fs')"},
    {"usr1", program_usr1, NULL,
     "require('ffi').cdef('int kill(int, int); int getpid(void);')"},
    {"http", program_http, NULL, "require('corio.http')"},
};
static const struct prog *prog = &progs[0];
#define PROG_HTTP 5   /* progs[PROG_HTTP] needs the server */

/* The http program's server: tests/http/server.py, started once by the
** sweep's process (it exits when its parent does) and killed at the end.
** Its port, for the children. */
static int http_port;
static pid_t http_pid;
static unsigned long sweep_round;   /* which run length: the step's offset */

static void server_start(void) {
  int pfd[2];
  char line[128];
  ssize_t got, len = 0;
  CHECK(pipe(pfd) == 0);
  fflush(NULL);
  http_pid = fork();
  if (http_pid == 0) {
    const char *py = CORIO_BUILD_LUA_DIR "/../tests/http/server.py";
    close(pfd[0]);
    dup2(pfd[1], 1);
    execl("/usr/bin/python3", "python3", py, "--lifetime", "3600",
          (char *)NULL);
    _exit(127);
  }
  close(pfd[1]);
  while (len < (ssize_t)sizeof(line) - 1 &&
         (got = read(pfd[0], line + len, 1)) > 0 && line[len] != '\n')
    len++;
  line[len] = 0;
  close(pfd[0]);
  CHECK(sscanf(line, "PORT %d", &http_port) == 1);
  /* libcurl (loaded by corio at its first client: dlopen, and OpenSSL's
  ** start in curl_global_init) is loaded here, once, for every child:
  ** most of a run's time and four fifths of its mallocs, none of them
  ** corio's code */
  {
    char err[256];
    CHECK(corio__curl_load(err, sizeof(err)) == 0);
    CHECK(curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK);
  }
}

static void server_stop(void) {
  if (http_pid > 0) {
    kill(http_pid, SIGTERM);
    waitpid(http_pid, NULL, 0);
    http_pid = 0;
  }
}

/* ---- the allocator ---- */
static unsigned long nalloc;   /* allocations so far */
static unsigned long fail_at;  /* the one to fail (0: none) */
static unsigned long nfailed;
static unsigned long fail_len = 1; /* how many in a row fail from there */

/* Called at each failed allocation: a breakpoint for gdb (OOM_N=n gdb
** -ex 'break oom_failed' ...) */
__attribute__((noinline)) void oom_failed(void) {
  __asm__ volatile("");
}

/* Which allocations are counted and failed: the Lua state's (0), or
** malloc's (1: corio's C memory, libuv's; not the state's, whose
** allocator below calls glibc's own functions). */
static int kind_malloc;

static int fail_now(void) {
  if (++nalloc >= fail_at && fail_at != 0 && nalloc - fail_at < fail_len) {
    nfailed++;
    oom_failed();
    return 1;
  }
  return 0;
}

#if !SANITIZED && defined(__GLIBC__)
#define MALLOC_REPLACED 1
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
extern void __libc_free(void *p);

/* (errno as malloc sets it: glibc's pthread_create asserts it) */
void *malloc(size_t n) {
  if (kind_malloc && fail_now()) return errno = ENOMEM, NULL;
  return __libc_malloc(n);
}

void *calloc(size_t n, size_t m) {
  if (kind_malloc && fail_now()) return errno = ENOMEM, NULL;
  return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n) {
  if (kind_malloc && n != 0 && fail_now()) return errno = ENOMEM, NULL;
  return __libc_realloc(p, n);
}

#define LUA_REALLOC __libc_realloc
#define LUA_FREE __libc_free
#else
#define MALLOC_REPLACED 0
#define LUA_REALLOC realloc
#define LUA_FREE free
#endif

static void *test_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  (void)ud;
  if (nsize == 0) {
    LUA_FREE(p);
    return NULL;
  }
  /* Lua's allocator contract (Lua 5.1 manual, lua_Alloc): "Lua assumes
  ** that the allocator never fails when osize >= nsize". LuaJIT shrinks
  ** a thread's stack inside the collector's traversal, and a shrink that
  ** failed raised a memory error from the middle of a GC step, on a stack
  ** whose top that code had not set: the error value was then a stale
  ** slot (a function, a Scope, a number) or the process crashed. Only
  ** growth and fresh blocks fail. */
  if (!kind_malloc && (p == NULL || nsize > osize) && fail_now())
    return NULL;
  return LUA_REALLOC(p, nsize);
}

static int on_panic(lua_State *L) {
  const char *m = lua_tostring(L, -1);
  fprintf(stderr, "PANIC (error outside any protected call): %s\n",
          m != NULL ? m : "?");
  fflush(stderr);
  _exit(PANIC_EXIT);
}

/* LuaJIT's message, corio's when a state allocation fails; corio's when
** its own C memory (malloc) runs out. And two that others make of a
** memory error, which corio passes on: LuaJIT's string.dump (to_thread
** sends the function's bytecode) says only "unable to dump given
** function"; pthread_create fails with EAGAIN when it cannot allocate
** (corio.to_thread: "cannot start a worker: resource temporarily
** unavailable"). */
static int http_request_error(const char *msg);

static int is_oom(const char *msg) {
  return msg != NULL && (strstr(msg, "not enough memory") != NULL ||
                         strstr(msg, "out of memory") != NULL ||
                         /* libcurl's, as a corio.http request error
                         ** (kind "error", not "network") */
                         (strstr(msg, ": Out of memory") != NULL &&
                          http_request_error(msg)) ||
                         strstr(msg, "unable to dump given function") ||
                         strstr(msg, "cannot start a worker: resource "
                                     "temporarily unavailable"));
}

/* A corio.http request's error ("<kind>: <METHOD> <url>: ..."): what the
** http program may end with in the malloc pass. libcurl's own mallocs
** that fail are not all reported as such: curl_easy_reset drops a default
** it could not copy (the request then fails as libcurl sees it, e.g.
** kind "protocol", "Empty reply from server"), a timer libcurl could not
** set leaves the transfer to corio's timeout (kind "timeout": the
** program's timeout is 1 s), and some say "memory shortage". Not corio's
** code: such a run must still end in an error of the request, never a
** signal, a panic, a hang or an abandoned run. */
static int http_request_error(const char *msg) {
  static const char *const kinds[] = {"error: ", "protocol: ", "timeout: "};
  size_t i;
  for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
    const char *k;
    for (k = strstr(msg, kinds[i]); k != NULL; k = strstr(k + 1, kinds[i])) {
      const char *rest = k + strlen(kinds[i]);
      if (strncmp(rest, "GET http://", 11) == 0 ||
          strncmp(rest, "POST http://", 12) == 0)
        return 1;
    }
  }
  return 0;
}

static void nop_work(uv_work_t *w) { (void)w; }
static void nop_after(uv_work_t *w, int status) {
  (void)w;
  (void)status;
}

/* One run with allocation n failing (0: none). Returns the exit status
** the child uses: 0 fine, 3 a memory error, WRONG_EXIT another outcome. */
static int run_once(unsigned long n, unsigned long *total) {
  lua_State *L;
  corio_rt *rt = NULL;
  corio_options o;
  int r, st;
  /* the host's part: a state with the standard libraries (before the
  ** count starts: that is the host's code, not corio's) */
  L = lua_newstate(test_alloc, NULL);
  if (L == NULL) return WRONG_EXIT;
  lua_atpanic(L, on_panic);
  luaL_openlibs(L);
  /* LuaJIT's own ffi module (corio's init.lua requires it) is loaded
  ** before the count too: luaopen_ffi interrupted by a memory error
  ** leaves a state that crashes in lua_close (a LuaJIT defect, seen with
  ** the system's LuaJIT 2.1; no corio code runs there) */
  if (luaL_dostring(L, "require('ffi')") != 0) return WRONG_EXIT;
  corio_push_async(L, l_hostop);
  lua_setglobal(L, "hostop");
  {
    char path[64];
    snprintf(path, sizeof(path), "/tmp/corio_oom_sweep.%ld", (long)getpid());
    lua_pushstring(L, path);
    lua_setglobal(L, "tmppath");
  }
  lua_pushinteger(L, http_port);
  lua_setglobal(L, "port");
  lua_pushboolean(L, kind_malloc || SANITIZED);
  lua_setglobal(L, "no_cjson");
  pending_op = NULL;
  memset(&o, 0, sizeof(o));
  o.L = L;
  o.handle_signals = prog->code == program_usr1;
  if (kind_malloc) {
    /* libuv's thread pool (one per process) starts at its first request
    ** and aborts when malloc fails then (libuv's uv_once init): started
    ** here, before the count */
    uv_loop_t tmp;
    uv_work_t w;
    if (uv_loop_init(&tmp) != 0 ||
        uv_queue_work(&tmp, &w, nop_work, nop_after) != 0)
      return WRONG_EXIT;
    uv_run(&tmp, UV_RUN_DEFAULT);
    uv_loop_close(&tmp);
  }
  if (kind_malloc || prog->preload) {
    /* malloc failing from the start: libuv's uv_loop_init aborts
    ** (uv_signal_init), and LuaJIT's loader takes a failed fopen for a
    ** missing file ("module 'corio' not found"), neither corio's code:
    ** the count starts once the runtime exists and its modules are
    ** loaded */
    rt = corio_new(&o);
    if (rt == NULL) return WRONG_EXIT;
    add_paths(rt);
    if (luaL_dostring(L, "require('corio') require('corio.gather')") != 0)
      return WRONG_EXIT;
    if (prog->preload && luaL_dostring(L, prog->preload) != 0)
      return WRONG_EXIT;
  }
  nalloc = 0;
  fail_at = n;
  if (!kind_malloc && !prog->preload) rt = corio_new(&o);
  if (rt == NULL) {
    lua_close(L);
    if (total) *total = nalloc;
    return n != 0 && nfailed ? 3 : WRONG_EXIT;
  }
  if (!kind_malloc && !prog->preload) add_paths(rt);
  if (corio_errmsg(rt)[0] != 0) {
    /* corio_add_paths without memory: the paths are unchanged */
    st = is_oom(corio_errmsg(rt)) ? 3 : WRONG_EXIT;
    corio_free(rt);
    lua_close(L);
    return st;
  }
  if (luaL_loadbuffer(L, prog->code, strlen(prog->code), "=oom_program")) {
    /* the host's own load failing: a memory error too */
    st = is_oom(lua_tostring(L, -1)) ? 3 : WRONG_EXIT;
    lua_pop(L, 1);
    corio_free(rt);
    lua_close(L);
    return st;
  }
  r = corio_start(rt, 0);
  /* stepped by the host, which fails its op between steps */
  /* (the http program waits in the step: not spinning beside its server) */
  while (r == 0 && (r = corio_step(rt, prog == &progs[PROG_HTTP])) == 1) {
    r = 0;
    if (pending_op != NULL) {
      corio_op *op = pending_op;
      pending_op = NULL;
      (void)corio_op_fail(op, "host", "failed on purpose");
    }
  }
  if (r == 0) r = corio_finish(rt, 1);
  if (r == 0 && prog->ok == NULL) {
    const char *v = lua_tostring(L, -1);
    st = v != NULL && strcmp(v, "fine") == 0 ? 0 : WRONG_EXIT;
    if (st != 0) fprintf(stderr, "returned %s\n", v ? v : "?");
  } else if (kind_malloc && prog == &progs[PROG_HTTP] &&
             http_request_error(corio_errmsg(rt))) {
    st = 3;
  } else if (is_oom(corio_errmsg(rt))) {
    /* 4: the scheduler's last resort (an unprotected site: the run was
    ** abandoned); allowed, and counted */
    st = strstr(corio_errmsg(rt), "the run was abandoned") ? 4 : 3;
  } else if (r != 0 && prog->ok != NULL &&
             strstr(corio_errmsg(rt), prog->ok) != NULL) {
    st = 0;
  } else if (r == 0) {
    fprintf(stderr, "returned normally\n");
    st = WRONG_EXIT;
    st = 3;
  } else {
    fprintf(stderr, "error %d: %s\n", r, corio_errmsg(rt));
    st = WRONG_EXIT;
  }
  lua_settop(L, 0);
  corio_free(rt);
  if (total) *total = nalloc;
  lua_close(L);
  return st;
}

static unsigned long envnum(const char *name, unsigned long dflt) {
  const char *v = getenv(name);
  return v != NULL && *v ? strtoul(v, NULL, 10) : dflt;
}

/* Sweep N over the run's allocations, with fail_len failing from N on.
** Returns the number of runs that failed. */
static unsigned long sweep(unsigned long *shared, int verbose) {
  unsigned long total, n, from, to, step;
  unsigned long nok = 0, noom = 0, nbad = 0, nabandoned = 0;
  /* the range: a run that fails nothing */
  {
    pid_t pid = fork();
    int ws;
    if (pid == 0) {
      int st = run_once(0, shared);
      _exit(st);
    }
    CHECK(waitpid(pid, &ws, 0) == pid);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    total = *shared;
  }
  step = envnum("OOM_STEP", SANITIZED                   ? 23
                            : prog != &progs[PROG_HTTP] ? 1
                            : kind_malloc   ? HTTP_STEP_MALLOC
                            : fail_len == 1 ? HTTP_STEP_ONE
                                            : HTTP_STEP);
  from = envnum("OOM_FROM", prog == &progs[PROG_HTTP]
                                ? 1 + sweep_round % step : 1);
  to = envnum("OOM_TO", total + 20);
  for (n = from; n <= to; n += step) {
    int pfd[2], ws;
    pid_t pid;
    char out[4096];
    ssize_t got, len = 0;
    if (pipe(pfd) != 0) {
      CHECK(0);
      break;
    }
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
      int st;
      close(pfd[0]);
      dup2(pfd[1], 2);
      dup2(pfd[1], 1);
      alarm(CHILD_SECONDS);
      st = run_once(n, NULL);
      fflush(NULL);
      if (SANITIZED) exit(st);   /* LeakSanitizer runs at exit */
      _exit(st);
    }
    close(pfd[1]);
    while (len < (ssize_t)sizeof(out) - 1 &&
           (got = read(pfd[0], out + len, sizeof(out) - 1 - len)) > 0)
      len += got;
    {
      char sink[512];   /* the rest, so that the child never blocks */
      while (read(pfd[0], sink, sizeof(sink)) > 0) {
      }
    }
    out[len] = 0;
    close(pfd[0]);
    if (waitpid(pid, &ws, 0) != pid) {
      CHECK(0);
      break;
    }
    {
      char path[64];   /* the io program's file, if it was left */
      snprintf(path, sizeof(path), "/tmp/corio_oom_sweep.%ld", (long)pid);
      (void)unlink(path);
    }
    if (WIFEXITED(ws) && WEXITSTATUS(ws) == 0) {
      nok++;
    } else if (WIFEXITED(ws) && WEXITSTATUS(ws) == 3) {
      noom++;
    } else if (WIFEXITED(ws) && WEXITSTATUS(ws) == 4) {
      /* the scheduler's last resort: not a crash, but a site that no
      ** known path should reach (its state, e.g. C memory of the op in
      ** hand, is left to corio_free): a failure here */
      nabandoned++;
      nbad++;
      printf("%s%s, %lu failing: N=%lu: run abandoned by the scheduler\n",
             kind_malloc ? "malloc " : "", prog->name, fail_len, n);
      if (verbose || nbad <= 5) printf("  %s", out);
    } else {
      nbad++;
      if (WIFSIGNALED(ws))
        printf("%s%s, %lu failing: N=%lu: killed by signal %d (%s)\n",
               kind_malloc ? "malloc " : "", prog->name, fail_len, n,
               WTERMSIG(ws),
               WTERMSIG(ws) == SIGALRM ? "a hang" : "a crash");
      else
        printf("%s%s, %lu failing: N=%lu: exit %d (%s)\n",
               kind_malloc ? "malloc " : "", prog->name,
               fail_len, n, WEXITSTATUS(ws),
               WEXITSTATUS(ws) == PANIC_EXIT ? "panic" : "wrong outcome");
      if (verbose || nbad <= 5) printf("  %s", out);
    }
  }
  printf("test_oom_sweep: %s, %s, %lu failing from each N of %lu..%lu "
         "(step %lu; %lu allocations): %lu ran to the end, %lu ended "
         "with a memory error, %lu failed (%lu of them runs abandoned by "
         "the scheduler)\n", kind_malloc ? "malloc" : "Lua allocator",
         prog->name, fail_len, from, to, step, total, nok,
         noom, nbad, nabandoned);
  fflush(stdout);
  return nbad;
}

int main(void) {
  /* one failure; a few in a row; every allocation from N on */
  static const unsigned long lens[] = {1, 2, 4, 1000000000ul};
  unsigned long *shared, total;
  int verbose = (int)envnum("OOM_VERBOSE", 0);
  size_t i, j, k;
  kind_malloc = getenv("OOM_KIND") != NULL &&
                strcmp(getenv("OOM_KIND"), "malloc") == 0;
  if (getenv("OOM_PROG") != NULL)
    prog = &progs[envnum("OOM_PROG", 0) % (sizeof(progs) / sizeof(progs[0]))];
  if (getenv("OOM_PROG") == NULL || prog == &progs[PROG_HTTP])
    server_start();
  if (getenv("OOM_N") != NULL) {
    int st;
    fail_len = envnum("OOM_LEN", 1);
    st = run_once(envnum("OOM_N", 0), &total);
    printf("N=%lu: status %d (%lu allocations, %lu failed)\n",
           envnum("OOM_N", 0), st, total, nfailed);
    server_stop();
    return st == 0 || st == 3 || st == 4 ? 0 : 1;
  }
  shared = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE,
                MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CHECK(shared != MAP_FAILED);
  if (shared == MAP_FAILED) return check_done("test_oom_sweep");
  for (k = 0; k < 1 + MALLOC_REPLACED; k++) {
    if (getenv("OOM_KIND") != NULL && (int)k != kind_malloc) continue;
    kind_malloc = (int)k;
    for (i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
      if (getenv("OOM_PROG") != NULL && &progs[i] != prog) continue;
      for (j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
        const struct prog *keep = prog;
        if (getenv("OOM_LEN") != NULL && j > 0) break;
        fail_len = getenv("OOM_LEN") != NULL ? envnum("OOM_LEN", 1) : lens[j];
        prog = &progs[i];
        sweep_round = j;
        CHECK(sweep(shared, verbose) == 0);
        prog = keep;
      }
    }
  }
  server_stop();
  return check_done("test_oom_sweep");
}
