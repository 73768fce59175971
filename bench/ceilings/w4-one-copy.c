/* W4 "one copy" ceiling: what streaming the 512 MiB file costs when each
 * piece libcurl hands over is copied once into memory of its own, as a Lua
 * string is, but with no Lua, no GC and no corio. Like the shared harness's
 * floor-c-curl-multi.c (curl_multi_perform + curl_multi_poll), whose write
 * callback only counts bytes.
 *   gcc -O2 -o /tmp/ceiling bench/ceilings/w4-one-copy.c -lcurl \
 *       $(pkg-config --cflags --libs luajit)
 *   BENCH_CURL_BUFSIZE=262144 COPY=2 /tmp/ceiling
 * COPY=0: count only (the floor); 1: malloc + memcpy + free each piece;
 * 2: keep the last 64 blocks live (~1 MiB), like strings awaiting the
 * collector; 3: make each piece a Lua string in a plain LuaJIT state
 * (lua_pushlstring, then dropped; LuaJIT's allocator and collector as
 * they are): what any reader that hands out Lua strings pays, with no
 * scheduler, no corio and no resume. Prints MiB/s and the process's CPU
 * seconds. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <curl/curl.h>
#include <lua.h>
#include <lauxlib.h>

static long long bytes;
static int mode;
static void *keep[64];
static int nkeep;
static lua_State *L;

static size_t on_data(char *p, size_t sz, size_t n, void *ud) {
  size_t len = sz * n;
  (void)ud;
  if (mode == 3) {
    lua_pushlstring(L, p, len);
    lua_pop(L, 1);
  } else if (mode) {
    char *b = malloc(len);
    if (b == NULL) return 0;
    memcpy(b, p, len);
    if (mode == 2) {
      free(keep[nkeep]);
      keep[nkeep] = b;
      nkeep = (nkeep + 1) & 63;
    } else {
      __asm__ volatile("" : : "r"(b) : "memory");
      free(b);
    }
  }
  bytes += (long long)len;
  return len;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(void) {
  const char *e, *url = getenv("BENCH_URL");
  struct rusage ru;
  CURLM *m;
  CURL *h;
  double t0, dt, cpu;
  int running = 1, i;
  if (url == NULL) url = "http://127.0.0.1:18080/512m.bin";
  mode = (e = getenv("COPY")) ? atoi(e) : 0;
  if (mode == 3 && (L = luaL_newstate()) == NULL) {
    fprintf(stderr, "no Lua state\n");
    return 1;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  m = curl_multi_init();
  h = curl_easy_init();
  curl_easy_setopt(h, CURLOPT_URL, url);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  if ((e = getenv("BENCH_CURL_BUFSIZE")))
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, atol(e));
  curl_multi_add_handle(m, h);
  t0 = now();
  while (running) {
    curl_multi_perform(m, &running);
    if (running) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  dt = now() - t0;
  getrusage(RUSAGE_SELF, &ru);
  cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
        ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
  printf("RESULT w4-http-stream ceiling-one-copy copy=%d mib_per_s=%.0f "
         "cpu_s=%.3f bytes=%lld\n", mode, bytes / 1048576.0 / dt, cpu, bytes);
  for (i = 0; i < 64; i++) free(keep[i]);
  curl_multi_remove_handle(m, h);
  curl_easy_cleanup(h);
  curl_multi_cleanup(m);
  curl_global_cleanup();
  if (L != NULL) lua_close(L);
  return 0;
}
