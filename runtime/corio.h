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

typedef struct corio_options {
  lua_State *L;     /* adopt this state (NULL: create one with all libs) */
  uv_loop_t *loop;  /* adopt this loop (NULL: the runtime owns a loop) */
  int handle_signals; /* 1: SIGINT cancels the root task, SIGUSR1 dumps
                         the task tree (as the corio CLI does) */
} corio_options;

/* Create a runtime. opts may be NULL. Loads the corio modules into the
** state (package.preload) so that `require "corio"` works. */
corio_rt *corio_new(const corio_options *opts);
/* Cancel what is still running, free the runtime, close the state if it
** was created by corio_new and the loop if it is owned. */
void corio_free(corio_rt *rt);

lua_State *corio_lua(corio_rt *rt);
uv_loop_t *corio_loop(corio_rt *rt);
const char *corio_errmsg(corio_rt *rt);

/* Run a file / a string / the function on top of the stack (with nargs
** arguments above it) as the root task, driving the loop until the root
** and all its descendants ended. Results of the function are left on the
** stack (corio_run_function only). */
int corio_run_file(corio_rt *rt, const char *path);
int corio_run_string(corio_rt *rt, const char *code, const char *name);
int corio_run_function(corio_rt *rt, int nargs, int nresults);

/* Where Lua modules are searched: prepend to package.path/cpath. */
void corio_add_paths(corio_rt *rt, const char *lua_path,
                     const char *c_path);

/* Set by the CLI: the root task is a script's main chunk, which may call
** corio.run(fn) itself (it then runs fn as a child scope). */
void corio_set_cli(corio_rt *rt, int on);

/* Register the C modules of corio into L's package.preload. */
void corio_preload(lua_State *L);

#ifdef __cplusplus
}
#endif
#endif
