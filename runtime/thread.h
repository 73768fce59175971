/*
** thread.h: the requests of corio.to_thread (thread.c), for the binding
** (bindings/thread.c). All of these run on the loop thread.
*/
#ifndef CORIO_THREAD_H
#define CORIO_THREAD_H

#include "internal.h"

typedef struct corio_work corio_work;

/* Said after string.buffer's "too deep to serialize". */
#define CORIO_TOO_DEEP " (cyclic data, or tables nested over 100 deep)"

/* A request to fill and queue, or NULL (out of memory, or the pool could
** not start). */
corio_work *corio__work_new(corio_rt *rt);
/* Give back a request that was not queued. */
void corio__work_drop(corio_rt *rt, corio_work *w);
/* The function: bytecode, or a host's C function (code unused). 0 or -1
** (out of memory). */
int corio__work_code(corio_work *w, const char *code, size_t n,
                     lua_CFunction cfn);
/* The arguments: the values at from..to of L. 0, 1 when one is not nil,
** a boolean, a number or a string (encode them instead), or -1 (out of
** memory). */
int corio__work_args(corio_work *w, lua_State *L, int from, int to);
/* The arguments as a string.buffer encoding of {n = ..., ...}. 0 or -1. */
int corio__work_args_encoded(corio_work *w, const char *s, size_t n);
/* Queue w for task t: 0, or a libuv error code (w is dropped). On 0 the
** caller suspends with corio__suspend(..., corio__abort_work_hook, ...,
** w); the task resumes with true, results... | false, 1, encoded
** results | false, 2, error message with the worker's traceback. */
int corio__work_queue(corio_rt *rt, corio_task *t, corio_work *w);
/* The caller's package.path and cpath (copied), for the workers' states,
** so that fn requires what its caller would. 0, or -1 (out of memory). */
int corio__work_paths(corio_rt *rt, const char *path, size_t n1,
                      const char *cpath, size_t n2);

#endif
