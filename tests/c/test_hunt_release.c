/*
** test_hunt_release.c: what a run leaves open is released when an
** embedding host frees the runtime on its own loop and closes its own
** Lua state: an HTTP client with an idle keep-alive connection and a
** stream half read, a file with bytes still in its write buffer, an
** fs.lines iterator left mid-way, a task asleep and one blocked on a
** semaphore when the run ended by an error. After corio_free the host's
** loop has no handle of corio's left (uv_run returns 0 and
** uv_loop_close succeeds), lua_close frees the rest (the sanitizer
** build fails on a leak), the file's bytes are written and no file
** descriptor stays open.
*/
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "corio.h"
#include "check.h"
#include "rt_helpers.h"

static int count_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  int n = 0;
  if (d == NULL) return -1;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1;   /* the directory's own */
}

/* A keep-alive HTTP/1.1 server on 127.0.0.1 answering every request on
** a connection: "/" with "hello", "/big" with 1 MiB (more than a stream
** read takes in one go). */
static int listen_fd;

static void *serve_conn(void *arg) {
  int fd = (int)(intptr_t)arg;
  char buf[4096];
  size_t have = 0;
  for (;;) {
    ssize_t n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
    char *end;
    if (n <= 0) break;
    have += (size_t)n;
    buf[have] = 0;
    while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
      int big = strncmp(buf, "GET /big", 8) == 0;
      size_t len = big ? 1048576 : 5, used = (size_t)(end + 4 - buf);
      char head[128];
      int hn = snprintf(head, sizeof(head),
                        "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", len);
      if (send(fd, head, (size_t)hn, MSG_NOSIGNAL) != hn) goto out;
      if (big) {
        static char body[65536];
        size_t left = len;
        memset(body, 'x', sizeof(body));
        while (left > 0) {
          size_t k = left < sizeof(body) ? left : sizeof(body);
          ssize_t w = send(fd, body, k, MSG_NOSIGNAL);
          if (w <= 0) goto out;
          left -= (size_t)w;
        }
      } else if (send(fd, "hello", 5, MSG_NOSIGNAL) != 5) {
        goto out;
      }
      memmove(buf, buf + used, have - used);
      have -= used;
      buf[have] = 0;
    }
  }
out:
  close(fd);
  return NULL;
}

static void *serve(void *arg) {
  (void)arg;
  for (;;) {
    pthread_t th;
    int fd = accept(listen_fd, NULL, NULL);
    if (fd < 0) return NULL;
    if (pthread_create(&th, NULL, serve_conn, (void *)(intptr_t)fd) != 0) {
      close(fd);
      continue;
    }
    pthread_detach(th);
  }
}

static int start_server(void) {
  struct sockaddr_in a;
  socklen_t n = sizeof(a);
  pthread_t th;
  listen_fd = socket(AF_INET, SOCK_STREAM, 0);
  memset(&a, 0, sizeof(a));
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (listen_fd < 0 || bind(listen_fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
      listen(listen_fd, 16) != 0 ||
      getsockname(listen_fd, (struct sockaddr *)&a, &n) != 0)
    return -1;
  if (pthread_create(&th, NULL, serve, NULL) != 0) return -1;
  pthread_detach(th);
  return ntohs(a.sin_port);
}

static const char script[] =
    "local corio = require 'corio'\n"
    "local fs = require 'corio.fs'\n"
    "local http = require 'corio.http'\n"
    "local url, path = ...\n"
    /* globals: still reachable when the runtime is freed */
    "C = http.client { base_url = url }\n"
    "assert(C:get('/'):text() == 'hello')\n"
    "S = C:stream('GET', '/big')\n"
    "S:iter_bytes()()\n"
    "local st = C:stats()\n"
    "assert(st.in_flight == 1 and st.opened == 1, 'stats')\n"
    "F = fs.open(path, 'w')\n"
    "F:write('kept in the buffer')\n"
    "L = fs.lines('/proc/self/status')\n"
    "L()\n"
    "corio.spawn(corio.sleep, 1000)\n"
    "corio.spawn(function() corio.semaphore(0):acquire() end)\n"
    "corio.spawn(corio.to_thread, function() end)\n"
    "corio.sleep(0.01)\n"
    "error('the run ends by an error')\n";

/* own_state: the host's Lua state (closed by the host), else corio's.
** stop_first: a uv_stop of the host's is pending at corio_free (its turn
** of the loop then runs no close callback) and the host closes its state
** before it runs its loop again: the structs of the handles closed must
** outlive lua_close (the sanitizer build sees a use after free). */
static void test_free_with_resources(int own_state, int stop_first,
                                     int warm_up) {
  char url[64], path[] = "/tmp/corio_hunt_release_XXXXXX";
  uv_loop_t loop;
  lua_State *L = NULL;
  corio_options o;
  corio_rt *rt;
  int i, fds = count_fds(), port = start_server(), tmp = mkstemp(path);
  FILE *f;
  CHECK(port > 0 && tmp >= 0);
  close(tmp);
  snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
  CHECK(uv_loop_init(&loop) == 0);
  memset(&o, 0, sizeof(o));
  o.loop = &loop;
  if (own_state) {
    L = luaL_newstate();
    luaL_openlibs(L);
    o.L = L;
  }
  rt = corio_new(&o);
  CHECK(rt != NULL);
  add_paths(rt);
  if (L == NULL) L = corio_lua(rt);
  CHECK(luaL_loadstring(L, script) == 0);
  lua_pushstring(L, url);
  lua_pushstring(L, path);
  CHECK(corio_run_function(rt, 2, 0) == CORIO_ELUA);
  CHECK(strstr(corio_errmsg(rt), "the run ends by an error") != NULL);
  if (strstr(corio_errmsg(rt), "the run ends by an error") == NULL)
    fprintf(stderr, "errmsg: %s\n", corio_errmsg(rt));
  lua_settop(L, 0);
  if (stop_first) uv_stop(&loop);
  corio_free(rt);
  if (stop_first) lua_close(L);
  /* nothing of corio's is left on the host's loop (turns of it, not a
  ** uv_run until it ends: it did not end, an idle connection's poll and
  ** curl's timer stayed there) */
  for (i = 0; i < 5; i++) uv_run(&loop, UV_RUN_NOWAIT);
  CHECK(!uv_loop_alive(&loop));
  CHECK(uv_loop_close(&loop) == 0);
  if (own_state && !stop_first) lua_close(L);
  /* the file's buffer was written out, every descriptor closed */
  f = fopen(path, "r");
  CHECK(f != NULL);
  if (f != NULL) {
    char buf[64] = {0};
    CHECK(fgets(buf, sizeof(buf), f) != NULL);
    CHECK(strcmp(buf, "kept in the buffer") == 0);
    fclose(f);
  }
  remove(path);
  shutdown(listen_fd, SHUT_RDWR);
  close(listen_fd);
  usleep(20000);   /* the server's threads close their ends */
  if (warm_up) return;
  CHECK(count_fds() == fds);
  if (count_fds() != fds)
    fprintf(stderr, "fds: %d before, %d after\n", fds, count_fds());
}

static void on_alarm(int sig) {
  static const char msg[] = "test_hunt_release: timed out (a hang)\n";
  (void)sig;
  if (write(2, msg, sizeof(msg) - 1) < 0) _exit(2);
  _exit(1);
}

int main(void) {
  signal(SIGALRM, on_alarm);
  alarm(100);
  /* the first runtime makes what libuv keeps for the process (the pipe
  ** of its signal handling): not counted */
  test_free_with_resources(1, 0, 1);
  test_free_with_resources(1, 0, 0);
  test_free_with_resources(0, 0, 0);
  test_free_with_resources(1, 1, 0);
  return check_done("test_hunt_release");
}
