/*
** corio.h: the public C API of the corio runtime. A corio_rt owns (or
** adopts) one lua_State and one uv_loop_t; Lua code runs as tasks that the
** runtime resumes from its scheduler. This header is all a host needs.
**
** Return codes follow libuv: 0 on success, a negative UV_E* code on
** failure; corio_errmsg() then describes the failure (for a Lua error: its
** message and traceback). The library never prints and never exits.
*/
#ifndef CORIO_H
#define CORIO_H

#include <lua.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CORIO_VERSION "0.1.0"
#define CORIO_VERSION_MAJOR 0
#define CORIO_VERSION_MINOR 1
#define CORIO_VERSION_PATCH 0

typedef struct corio_rt corio_rt;

/* Error returned when Lua code raised an error (see corio_errmsg). */
#define CORIO_ELUA (-4094)   /* UV_ERRNO_MAX range is below; not a UV_E* */
/* Error returned when the run was interrupted by SIGINT. */
#define CORIO_EINTR_RUN (-4093)
/* Error returned by corio_finish (and corio_run_*) when corio_free was
** called inside the run: the runtime is gone (see corio_free). */
#define CORIO_EFREED (-4092)

typedef struct corio_options {
  lua_State *L;     /* adopt this state (NULL: create one with all libs) */
  uv_loop_t *loop;  /* adopt this loop (NULL: the runtime owns a loop) */
  int handle_signals; /* 1: during a run, SIGINT cancels the root task and
                         SIGUSR1 prints the task tree (as the corio CLI
                         does); 0: the host keeps its signals. With no
                         options, 1. */
} corio_options;

/* Create a runtime. opts may be NULL. Loads the corio modules into the
** state (package.preload) so that `require "corio"` works. */
corio_rt *corio_new(const corio_options *opts);
/* Free the runtime, close the state if it was created by corio_new and
** the loop if it is owned. A run started with corio_start and not
** finished is cancelled first, and its cleanup (defer, shield) runs.
** Called inside a step of the same runtime (from a host function or a
** loop callback during corio_step, corio_finish or corio_run_*), it
** cancels the run and returns; the outermost of those calls then frees
** the runtime as it returns (corio_step returns 0, corio_finish and
** corio_run_* CORIO_EFREED with nothing left on the stack). After that
** call returns, rt must not be used; a second corio_free before it does
** nothing. */
void corio_free(corio_rt *rt);

lua_State *corio_lua(corio_rt *rt);
uv_loop_t *corio_loop(corio_rt *rt);
const char *corio_errmsg(corio_rt *rt);

/* Run a file / a string / the function on top of the stack (with nargs
** arguments above it) as the root task, driving the loop until the root
** and all its descendants ended. Results of the function are left on the
** stack (corio_run_function only). On failure the error value (a corio
** error table, or the message of a load error) is left on top of the
** stack, and corio_errmsg describes it. */
int corio_run_file(corio_rt *rt, const char *path);
int corio_run_string(corio_rt *rt, const char *code, const char *name);
int corio_run_function(corio_rt *rt, int nargs, int nresults);

/* The same run, stepped by a host that drives its own loop:
** corio_start starts the function below nargs arguments as the root task
** (it does not run yet; if it cannot start, they are replaced by the
** error value; with nargs < 0 or no function below the nargs values it
** returns UV_EINVAL, the stack untouched); corio_step runs the ready tasks and one turn of
** the loop (wait = 0: UV_RUN_NOWAIT; 1: wait for an event) and returns 1
** while the run goes on, 0 when it is over; corio_finish completes the
** run (waiting if needed) and leaves results or the error as
** corio_run_function does. From inside a step or finish of the same
** runtime (a host function, a loop callback) corio_step and corio_finish
** return UV_EBUSY, and corio_free is deferred (see corio_free; inside
** corio_start, e.g. from a host's require, the run never starts and
** corio_start returns CORIO_EFREED). */
int corio_start(corio_rt *rt, int nargs);
int corio_step(corio_rt *rt, int wait);
int corio_finish(corio_rt *rt, int nresults);

/* Where Lua modules are searched: prepend to package.path/cpath. */
void corio_add_paths(corio_rt *rt, const char *lua_path,
                     const char *c_path);

/* Set by the CLI: the root task is a script's main chunk, which may call
** corio.run(fn) itself (it then runs fn as a child scope). */
void corio_set_cli(corio_rt *rt, int on);

/* Register the C modules of corio into L's package.preload. */
void corio_preload(lua_State *L);

/* ---- Host-defined async functions -------------------------------------
** A host's lua_CFunction can suspend the task that called it and finish
** later from the loop thread (any libuv callback of the host) or, through
** corio_op_post, from any thread:
**
**   static int l_compute(lua_State *L) {
**     struct job *j = start_job(luaL_checknumber(L, 1));
**     corio_op *op = corio_op_begin(L, job_cancel, j);
**     if (op == NULL) return lua_error(L);   // message on the stack
**     j->op = op;
**     return corio_op_suspend(L, op);
**   }
**   // later, on the loop thread:
**   lua_pushnumber(corio_lua(rt), result);
**   corio_op_resume(j->op, 1);               // the task gets the value
**
** Expose such a function with corio_push_async(L, l_compute): the wrapper
** raises the errors the task is resumed with (corio_op_fail, or Cancelled)
** on the task's own stack. If the task is cancelled while suspended, the
** op's cancel callback runs (on the loop thread) and the task goes on at
** once with Cancelled; the host must still end the op with
** corio_op_resume or corio_op_fail (which then only free it). Until an op
** ends, the runtime counts it as pending work (no deadlock is reported).
**
** An op the function neither suspended on nor ended when it returns or
** raises is abandoned: the task has moved on and is never resumed by it,
** the op stops counting as pending work (the run may end), and its
** cancel callback runs at once (so the host can stop its work and
** release it). The host may still end it (resume or fail only free it
** and return UV_ECANCELED) until corio_free, which frees the ops never
** ended (a post still pending then runs first, its resume or fail
** returning UV_ECANCELED); after corio_free no op of the runtime may be
** used. */
typedef struct corio_op corio_op;
/* (Every function below refuses an op of NULL: UV_EINVAL, a NULL
** runtime, or a Lua error from corio_op_suspend.) */
typedef void (*corio_op_cancel_cb)(corio_op *op, void *data);
typedef void (*corio_op_post_cb)(corio_op *op, void *arg);

/* Start an op for the task running L's function, a function made by
** corio_push_async (called directly, not from Lua code it called).
** Returns NULL outside a task, from another function, where the task
** cannot suspend, or without memory, with an error message pushed on L. */
corio_op *corio_op_begin(lua_State *L, corio_op_cancel_cb on_cancel,
                         void *data);
/* Suspend the task: `return corio_op_suspend(L, op);` An op already
** ended (resumed or failed since corio_op_begin) returns its values or
** raises its error at once instead; the function may also raise an
** error of its own then, without suspending. Raises a Lua error for an
** op of another call, or a second suspend in one call. */
int corio_op_suspend(lua_State *L, corio_op *op);
/* Resume the task with the n values on top of corio_lua(rt) (popped).
** Returns 0, or UV_ECANCELED if the task was cancelled or the op
** abandoned (values dropped). Loop thread only. Ends op: it is freed, at
** once or (while its host function runs, or a post of it is pending)
** when they are done; until then a second resume or fail returns
** UV_EALREADY. Any other use of an ended op is undefined. n < 0 or more
** than the values on corio_lua(rt): UV_EINVAL, nothing popped, op kept. */
int corio_op_resume(corio_op *op, int n);
/* Resume the task with an error of this kind and message (raised in the
** task as a corio error table). Returns as corio_op_resume. Frees op. */
int corio_op_fail(corio_op *op, const char *kind, const char *message);
/* From any thread: run fn(op, arg) on the loop thread soon (where it may
** call corio_op_resume). Returns 0 or a UV_E* code: UV_EALREADY while a
** post of op is pending (fn not run yet), UV_EINVAL for fn NULL or an
** op ended while posted. Once it returned 0, op stays valid until fn ran,
** even if the loop thread ends it meanwhile (then fn still runs, and its
** resume or fail return UV_EALREADY). The host must not post an op that
** may already be ended (freed), e.g. by the loop thread at the same
** time: end a posted op from fn, or post no more once it may end. */
int corio_op_post(corio_op *op, corio_op_post_cb fn, void *arg);
/* The runtime of an op (for corio_lua). */
corio_rt *corio_op_runtime(corio_op *op);
/* [-0, +1] Push a Lua function that calls fn (which may suspend with
** corio_op_suspend) and raises the error the task is resumed with.
** With fn NULL the function raises an error saying so. */
void corio_push_async(lua_State *L, lua_CFunction fn);

/* [-0, +1] Push a value that corio.to_thread accepts in place of a Lua
** function: fn runs on a worker thread, in the worker's own lua_State,
** called with the (copied) arguments; it returns values as any
** lua_CFunction (nil, booleans, numbers, strings, tables of those).
** With fn NULL, corio.to_thread refuses the value with an error. */
void corio_push_thread_fn(lua_State *L, lua_CFunction fn);

#ifdef __cplusplus
}
#endif
#endif
