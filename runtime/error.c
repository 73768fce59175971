/*
** error.c: building corio error tables from C. An error is a table
** {kind, message, traceback, errors, value} whose metatable is the class of
** its kind; classes live in the registry table "corio.errclass" and get
** their __tostring from bindings/error.c. This file raises nothing.
*/
#include <string.h>

#include "internal.h"

static const char CLASSES[] = "corio.errclass";

/* [-0, +1] The class table of kind, created on first use. */
void corio__push_class(lua_State *L, const char *kind) {
  lua_getfield(L, LUA_REGISTRYINDEX, CLASSES);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, CLASSES);
  }
  lua_getfield(L, -1, kind);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushstring(L, kind);
    lua_setfield(L, -2, "kind");
    lua_getfield(L, -2, "__index");      /* installed by bindings */
    lua_setfield(L, -2, "__index");
    lua_getfield(L, -2, "__tostring");   /* installed by bindings */
    lua_setfield(L, -2, "__tostring");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, kind);
  }
  lua_remove(L, -2);
}

/* [-0, +1] */
void corio__push_error(lua_State *L, const char *kind, const char *msg) {
  lua_createtable(L, 0, 4);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  corio__push_class(L, kind);
  lua_setmetatable(L, -2);
}

/* [-0, +1] A Cancelled error with the traceback of thread co (where the
** checkpoint raised it). Cancelling is rare next to the operations it
** interrupts, so the traceback is taken eagerly. */
void corio__push_cancelled(lua_State *L, lua_State *co, const char *msg) {
  corio__push_error(L, "cancelled", msg ? msg : "cancelled");
  luaL_traceback(L, co != NULL ? co : L, NULL, co == L ? 1 : 0);
  lua_setfield(L, -2, "traceback");
}

/* Is the value at idx a corio error (of this kind, if kind != NULL)? */
int corio__is_error(lua_State *L, int idx, const char *kind) {
  int r = 0;
  if (!lua_istable(L, idx) || !lua_getmetatable(L, idx)) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, CLASSES);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -2, "kind");
    if (lua_isstring(L, -1)) {
      lua_pushvalue(L, -1);
      lua_rawget(L, -3);
      r = lua_rawequal(L, -1, -4) &&
          (kind == NULL || strcmp(lua_tostring(L, -2), kind) == 0);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  return r;
}

/* Text for the spawn site of t: "task 3 spawned at f.lua:12". */
static void push_origin(corio_rt *rt, lua_State *L, corio_task *t) {
  const corio_site *site;
  corio__task_name_shown(rt, L, t);
  site = corio__task_site(rt, t);   /* after what could make sites */
  if (site != NULL) {
    lua_pushfstring(L, "\n\t(%s spawned at %s:%d)", lua_tostring(L, -1),
                    corio__src_shown(site->src), site->line);
  } else {
    lua_pushfstring(L, "\n\t(in %s)", lua_tostring(L, -1));
  }
  lua_remove(L, -2);
}

/* [-0, +1 or +0] A scope body's handler (init.lua) noted the traceback
** of a non-corio error raised on thread co: push it if that note is for
** the value at e. */
static int noted_traceback(lua_State *L, lua_State *co, int e) {
  int found = 0;
  if (co == NULL) return 0;
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.tb");
  if (lua_istable(L, -1)) {
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawget(L, -2);
    if (lua_istable(L, -1)) {   /* { n = k, e1, tb1, ... } (init.lua) */
      int n, i;
      lua_getfield(L, -1, "n");
      n = (int)lua_tointeger(L, -1);
      lua_pop(L, 1);
      lua_pushliteral(L, "value");   /* e is the wrapper by now */
      lua_rawget(L, e);
      for (i = 1; i <= n && !found; i++) {
        lua_rawgeti(L, -2, 2 * i - 1);
        if (lua_rawequal(L, -1, -2)) {
          lua_rawgeti(L, -3, 2 * i);
          lua_replace(L, -5);          /* over corio.tb */
          found = 1;
        }
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  if (!found) lua_pop(L, 1);
  return found;
}

/* Has the corio error at e crossed a task boundary (and so been given the
** spawn site of the task it was raised in)? Notes it as crossed if not.
** The set is a weak-keyed registry table, made on first use. */
static int crossed(lua_State *L, int e) {
  int r;
  lua_getfield(L, LUA_REGISTRYINDEX, "corio.crossed");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 1);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, "corio.crossed");
  }
  lua_pushvalue(L, e);
  lua_rawget(L, -2);
  r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!r) {
    lua_pushvalue(L, e);
    lua_pushboolean(L, 1);
    lua_rawset(L, -3);
  }
  lua_pop(L, 1);
  return r;
}

/* [-1, +1] The error on top of L, raised in task t (whose dead thread co
** still has the frames), becomes the boundary error: corio errors keep
** their object and gain a traceback; other values are wrapped in kind
** "error" with the original in .value (SPEC rule 10). */
void corio__wrap_error(corio_rt *rt, lua_State *L, lua_State *co,
                       corio_task *t) {
  int e = lua_gettop(L);
  if (!corio__is_error(L, e, NULL)) {
    lua_createtable(L, 0, 5);
    lua_pushliteral(L, "error");
    lua_setfield(L, -2, "kind");
    lua_pushvalue(L, e);
    lua_setfield(L, -2, "value");
    if (lua_type(L, e) == LUA_TSTRING || lua_type(L, e) == LUA_TNUMBER) {
      lua_pushvalue(L, e);
    } else if (luaL_getmetafield(L, e, "__tostring")) {
      /* a user __tostring may fail: call it protected (no error may leave
      ** the scheduler, which runs this) */
      lua_pushvalue(L, e);
      if (lua_pcall(L, 1, 1, 0) != 0 || !lua_isstring(L, -1)) {
        lua_pop(L, 1);
        lua_pushfstring(L, "(error object is a %s value)",
                        luaL_typename(L, e));
      }
    } else {
      if (lua_gettop(L) > e + 1) lua_pop(L, 1);
      lua_pushfstring(L, "(error object is a %s value)",
                      luaL_typename(L, e));
    }
    lua_setfield(L, -2, "message");
    corio__push_class(L, "error");
    lua_setmetatable(L, -2);
    lua_replace(L, e);
  }
  lua_pushliteral(L, "traceback");
  lua_rawget(L, e);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (!noted_traceback(L, co, e))  /* co == L: from the caller's frame */
      luaL_traceback(L, co != NULL ? co : L, NULL,
                     co != NULL && co != L ? 0 : 1);
    if (t != NULL) {
      push_origin(rt, L, t);
      lua_concat(L, 2);
      crossed(L, e);
    }
    lua_setfield(L, e, "traceback");
  } else if (t != NULL && !crossed(L, e)) {
    /* a traceback taken inside the task (by a scope body's handler in
    ** init.lua, or where corio.http made the error): it still lacks the
    ** task's spawn site, which an error of a map call under a limit, or
    ** of an HTTP request, left out */
    push_origin(rt, L, t);
    lua_concat(L, 2);
    lua_setfield(L, e, "traceback");
  } else {
    lua_pop(L, 1);
  }
}
