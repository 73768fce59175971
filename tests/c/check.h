/*
** check.h: the CHECK macro of the C tests: a failed check prints where
** and what, counts in `failures`, and the test goes on.
*/
#ifndef CORIO_TEST_CHECK_H
#define CORIO_TEST_CHECK_H

#include <stdio.h>

static int failures;

#define CHECK(cond)                                                   \
  do {                                                                \
    if (!(cond)) {                                                    \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
              #cond);                                                 \
      failures++;                                                     \
    }                                                                 \
  } while (0)

/* The end of a test program: the verdict on stdout or stderr, and the
** exit status (main returns it). */
static inline int check_done(const char *name) {
  if (failures) {
    fprintf(stderr, "%s: %d check(s) failed\n", name, failures);
    return 1;
  }
  printf("%s: all checks passed\n", name);
  return 0;
}

#endif
