/*
** api.c: the public C API of corio.h over the runtime: creating a runtime
** with its own or an adopted lua_State and loop, running Lua as the root
** task, and error messages. The CLI is one client of it (bindings/cli.c).
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

int luaopen_corio_core(lua_State *L);

void corio_preload(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_corio_core);
  lua_setfield(L, -2, "corio.core");
  lua_pop(L, 2);
}

struct corio_box {
  corio_rt *rt;
  int own_state;
};

corio_rt *corio_new(const corio_options *opts) {
  lua_State *L = opts != NULL ? opts->L : NULL;
  int own = L == NULL;
  corio_rt *rt;
  if (own) {
    L = luaL_newstate();
    if (L == NULL) return NULL;
    luaL_openlibs(L);
  }
  if (corio__rt(L) != NULL) {  /* one runtime per state */
    if (own) lua_close(L);
    return NULL;
  }
  rt = corio__rt_create(L, opts != NULL ? opts->loop : NULL);
  if (rt == NULL) {
    if (own) lua_close(L);
    return NULL;
  }
  rt->own_state = own;
  rt->handle_signals = opts != NULL ? opts->handle_signals : 1;
  corio_preload(L);
  return rt;
}

void corio_free(corio_rt *rt) {
  lua_State *L;
  int own;
  if (rt == NULL) return;
  L = rt->L;
  own = rt->own_state;
  if (rt->running && rt->root != NULL) {
    /* A run the host started and did not finish: cancel it and let its
    ** cleanup (defer, shield) run before anything is freed. */
    int top = lua_gettop(L);
    corio__scope_cancel(rt, &rt->root->root);
    while (corio__run_step(rt, UV_RUN_ONCE)) {
    }
    corio__run_finish(rt, L);
    lua_settop(L, top);
  }
  corio__rt_destroy(rt, 1);
  if (own) lua_close(L);
}

lua_State *corio_lua(corio_rt *rt) { return rt->L; }
uv_loop_t *corio_loop(corio_rt *rt) { return rt->loop; }
const char *corio_errmsg(corio_rt *rt) { return rt->errmsg; }
void corio_set_cli(corio_rt *rt, int on) { rt->cli_root = on; }

void corio_add_paths(corio_rt *rt, const char *lua_path,
                     const char *c_path) {
  lua_State *L = rt->L;
  lua_getglobal(L, "package");
  if (lua_path != NULL) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s;%s", lua_path, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  if (c_path != NULL) {
    lua_getfield(L, -1, "cpath");
    lua_pushfstring(L, "%s;%s", c_path, lua_tostring(L, -1));
    lua_setfield(L, -3, "cpath");
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* Keep the message of the value on top (tostring applied) in errmsg. */
static void set_errmsg(corio_rt *rt, lua_State *L) {
  const char *msg;
  lua_getglobal(L, "tostring");
  lua_pushvalue(L, -2);
  if (lua_pcall(L, 1, 1, 0) != 0 || (msg = lua_tostring(L, -1)) == NULL)
    msg = "(error object is not a string)";
  snprintf(rt->errmsg, sizeof(rt->errmsg), "%s", msg);
  lua_pop(L, 1);
}

/* Require "corio" so that the runtime's metatables and Lua surface exist
** before the root task runs. */
static int ensure_loaded(corio_rt *rt) {
  lua_State *L = rt->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio");
  if (lua_pcall(L, 1, 0, 0) != 0) {
    set_errmsg(rt, L);
    lua_pop(L, 1);
    return CORIO_ELUA;
  }
  return 0;
}

int corio_start(corio_rt *rt, int nargs) {
  lua_State *L = rt->L;
  int base = lua_gettop(L) - nargs - 1, r;
  rt->errmsg[0] = 0;
  if ((r = ensure_loaded(rt)) != 0) {
    lua_settop(L, base);
    return r;
  }
  if (rt->running) {
    snprintf(rt->errmsg, sizeof(rt->errmsg), "corio: the runtime is "
             "already running");
    lua_settop(L, base);
    return UV_EBUSY;
  }
  corio__run_start(rt, L, nargs);
  return 0;
}

int corio_step(corio_rt *rt, int wait) {
  if (!rt->running || rt->root == NULL) return 0;
  return corio__run_step(rt, wait ? UV_RUN_ONCE : UV_RUN_NOWAIT);
}

int corio_finish(corio_rt *rt, int nresults) {
  lua_State *L = rt->L;
  int base = lua_gettop(L), n;
  if (!rt->running || rt->root == NULL) {
    snprintf(rt->errmsg, sizeof(rt->errmsg), "corio: no run to finish");
    return UV_EINVAL;
  }
  while (corio__run_step(rt, UV_RUN_ONCE)) {
  }
  n = corio__run_finish(rt, L);
  if (lua_toboolean(L, -n)) {
    lua_remove(L, -n);
    if (nresults != LUA_MULTRET) lua_settop(L, base + nresults);
    return 0;
  }
  /* leave the error object alone on the stack */
  lua_replace(L, -2);
  set_errmsg(rt, L);
  if (corio__is_error(L, -1, "interrupted")) return CORIO_EINTR_RUN;
  return CORIO_ELUA;
}

int corio_run_function(corio_rt *rt, int nargs, int nresults) {
  int r = corio_start(rt, nargs);
  if (r != 0) return r;
  return corio_finish(rt, nresults);
}

int corio_run_string(corio_rt *rt, const char *code, const char *name) {
  lua_State *L = rt->L;
  if (luaL_loadbuffer(L, code, strlen(code), name ? name : "=corio") != 0) {
    set_errmsg(rt, L);
    return CORIO_ELUA;
  }
  return corio_run_function(rt, 0, 0);
}

int corio_run_file(corio_rt *rt, const char *path) {
  lua_State *L = rt->L;
  if (luaL_loadfile(L, path) != 0) {
    set_errmsg(rt, L);
    return CORIO_ELUA;
  }
  return corio_run_function(rt, 0, 0);
}
