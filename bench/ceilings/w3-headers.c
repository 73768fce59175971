/* W3 "headers" ceiling: the shared harness's curl-multi floor sends no
 * header of its own choosing; corio sends SPEC's `User-Agent: corio/<v>`
 * and (bodies decoded, as httpx does) `Accept-Encoding: gzip, deflate`.
 * This program is that floor's loop (curl_multi_perform +
 * curl_multi_poll, C easy handles reused, every body checked) with the
 * header lines given in the environment, so callgrind can say what the
 * lines cost inside libcurl before any corio code runs:
 *   gcc -O2 -o /tmp/w3h bench/ceilings/w3-headers.c -lcurl
 *   HDR1='User-Agent: corio/0.1.0' HDR2='Accept-Encoding: gzip, deflate' \
 *     DECODE=1 BENCH_N=4000 valgrind --tool=callgrind /tmp/w3h
 * HDR1..HDR4: header lines (CURLOPT_HTTPHEADER); DECODE=1 also sets
 * CURLOPT_ACCEPT_ENCODING "" as corio does. BENCH_N, BENCH_C, BENCH_URL
 * as in the harness. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <curl/curl.h>

struct conn {
  CURL *easy;
  long got;
};

static size_t count_body(char *p, size_t size, size_t nmemb, void *ud) {
  (void)p;
  ((struct conn *)ud)->got += (long)(size * nmemb);
  return size * nmemb;
}

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(void) {
  const char *v;
  long n = (v = getenv("BENCH_N")) != NULL ? atol(v) : 20000;
  int c = (v = getenv("BENCH_C")) != NULL ? atoi(v) : 64;
  const char *url = (v = getenv("BENCH_URL")) != NULL
                        ? v : "http://127.0.0.1:18080/1k.bin";
  struct curl_slist *lines = NULL;
  static const char *names[] = { "HDR1", "HDR2", "HDR3", "HDR4" };
  struct conn *conns;
  long started = 0, finished = 0, failed = 0;
  int i, alive = 0;
  double t0, dt;
  CURLM *multi;

  for (i = 0; i < 4; i++)
    if ((v = getenv(names[i])) != NULL && *v != '\0')
      lines = curl_slist_append(lines, v);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  multi = curl_multi_init();
  conns = calloc((size_t)c, sizeof *conns);
  if (multi == NULL || conns == NULL) return 1;
  t0 = seconds();
  for (i = 0; i < c && started < n; i++, started++) {
    CURL *e = curl_easy_init();
    conns[i].easy = e;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, count_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &conns[i]);
    curl_easy_setopt(e, CURLOPT_PRIVATE, (char *)&conns[i]);
    if (lines != NULL) curl_easy_setopt(e, CURLOPT_HTTPHEADER, lines);
    if (getenv("DECODE") != NULL)
      curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_multi_add_handle(multi, e);
  }
  while (finished < n) {
    CURLMsg *m;
    int left;
    curl_multi_perform(multi, &alive);
    while ((m = curl_multi_info_read(multi, &left)) != NULL) {
      struct conn *k;
      long status = 0;
      if (m->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&k);
      curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &status);
      if (m->data.result != CURLE_OK || status != 200 || k->got != 1024)
        failed++;
      finished++;
      curl_multi_remove_handle(multi, k->easy);
      if (started < n) {
        k->got = 0;
        started++;
        curl_multi_add_handle(multi, k->easy);
      }
    }
    if (finished < n) curl_multi_poll(multi, NULL, 0, 1000, NULL);
  }
  dt = seconds() - t0;
  for (i = 0; i < c; i++)
    if (conns[i].easy != NULL) curl_easy_cleanup(conns[i].easy);
  curl_multi_cleanup(multi);
  curl_slist_free_all(lines);
  free(conns);
  curl_global_cleanup();
  if (failed) {
    fprintf(stderr, "FAIL: %ld of %ld requests\n", failed, n);
    return 1;
  }
  printf("RESULT w3-http-small ceiling-headers req_per_s=%.0f wall_s=%.4f "
         "n=%ld c=%d\n", (double)n / dt, dt, n, c);
  return 0;
}
