/*
** api.c: the public C API of corio.h over the runtime: creating a runtime
** with its own or an adopted lua_State and loop, running Lua as the root
** task, and error messages. The CLI is one client of it (bindings/cli.c).
*/
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "internal.h"

int luaopen_corio_core(lua_State *L);

/* The package table require uses, as package.loaded holds it (pushed),
** or nothing and 0 in a state without the package library (a host's own
** minimal state). Not the global: a script may have set package = nil or
** to a table of its own, and indexing nil would raise outside any pcall
** (LuaJIT's panic exits the host). */
static int push_package(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "package");
    lua_remove(L, -2);
    if (lua_istable(L, -1)) return 1;
  }
  lua_pop(L, 1);
  return 0;
}

/* package.preload of L (pushed), or nothing and 0 (push_package). */
static int push_preload(lua_State *L) {
  if (!push_package(L)) return 0;
  lua_getfield(L, -1, "preload");
  lua_remove(L, -2);
  if (lua_istable(L, -1)) return 1;
  lua_pop(L, 1);
  return 0;
}

void corio_preload(lua_State *L) {
  if (!push_preload(L)) return;
  lua_pushcfunction(L, luaopen_corio_core);
  lua_setfield(L, -2, "corio.core");
  lua_pop(L, 1);
}

/* Big blocks. LuaJIT's allocator maps each block over 128 KiB afresh
** and unmaps it when freed, so a program making large strings (a file
** read by 1 MiB chunks) pays a page fault per 4 KiB of each, which costs
** more than the copy. corio__big_blocks (called by corio.fs when it
** starts reading large chunks) puts a wrapper in front of it in a state
** corio made: new blocks of BIG_BLOCK bytes and more come from malloc,
** and freed ones are kept (up to CACHE_BYTES) for the next of about
** their size, as the collector frees strings in bursts that malloc would
** give back to the system. The wrapper is installed late, so a set of
** the blocks it made tells them from LuaJIT's; small blocks (nearly all)
** go straight through, and a state that never reads large chunks pays
** nothing. */
#define BIG_BLOCK ((size_t)128 * 1024)
#define CACHE_SLOTS 128
#define CACHE_BYTES ((size_t)64 << 20)

typedef struct state_alloc {
  struct state_alloc *prev, *next;  /* in allocs */
  lua_Alloc f;   /* LuaJIT's allocator */
  void *ud;
  void **set;    /* the big blocks from malloc: open addressing */
  size_t setcap, setn;
  int n;         /* cached blocks */
  size_t bytes;  /* their size */
  struct { void *p; size_t size; } cache[CACHE_SLOTS];
} state_alloc;

/* Every wrapper installed: a program that exits without closing its
** state (os.exit) leaves its big blocks reachable from here, which leak
** checkers want. */
static pthread_mutex_t allocs_lock = PTHREAD_MUTEX_INITIALIZER;
static state_alloc *allocs;

static size_t slot_of(const state_alloc *a, const void *p) {
  return (size_t)(((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull) & (a->setcap - 1);
}

static int set_has(const state_alloc *a, const void *p) {
  size_t i;
  if (a->setn == 0) return 0;
  for (i = slot_of(a, p); a->set[i] != NULL; i = (i + 1) & (a->setcap - 1))
    if (a->set[i] == p) return 1;
  return 0;
}

/* 0, or -1 when the set cannot grow (p is then not added). */
static int set_add(state_alloc *a, void *p) {
  size_t i;
  if (2 * (a->setn + 1) > a->setcap) {
    size_t cap = a->setcap ? 2 * a->setcap : 64, j;
    void **old = a->set, **nw = calloc(cap, sizeof(*nw));
    if (nw == NULL) return -1;
    a->set = nw;
    j = a->setcap;
    a->setcap = cap;
    while (j-- > 0)
      if (old[j] != NULL) {
        for (i = slot_of(a, old[j]); nw[i] != NULL; i = (i + 1) & (cap - 1)) {
        }
        nw[i] = old[j];
      }
    free(old);
  }
  for (i = slot_of(a, p); a->set[i] != NULL; i = (i + 1) & (a->setcap - 1)) {
  }
  a->set[i] = p;
  a->setn++;
  return 0;
}

static void set_del(state_alloc *a, void *p) {
  size_t m = a->setcap - 1, i = slot_of(a, p), j, k;
  while (a->set[i] != p) i = (i + 1) & m;
  /* backward shift: move later entries of the run into the hole */
  for (j = (i + 1) & m; a->set[j] != NULL; j = (j + 1) & m) {
    k = slot_of(a, a->set[j]);
    if (((j - k) & m) >= ((j - i) & m)) {
      a->set[i] = a->set[j];
      i = j;
    }
  }
  a->set[i] = NULL;
  a->setn--;
}

/* A new big block (in the set), or NULL. */
static void *big_get(state_alloc *a, size_t size) {
  void *p = NULL;
  int i;
  for (i = 0; i < a->n; i++) {
    if (a->cache[i].size >= size && a->cache[i].size - size <= size / 4) {
      p = a->cache[i].p;
      a->bytes -= a->cache[i].size;
      a->cache[i] = a->cache[--a->n];
      break;
    }
  }
  if (p == NULL && (p = malloc(size)) == NULL) return NULL;
  if (set_add(a, p) != 0) {
    free(p);
    return NULL;
  }
  return p;
}

static void big_put(state_alloc *a, void *p, size_t size) {
  set_del(a, p);
  if (a->n < CACHE_SLOTS && a->bytes + size <= CACHE_BYTES) {
    a->cache[a->n].p = p;
    a->cache[a->n++].size = size;  /* at least; free() knows the rest */
    a->bytes += size;
  } else {
    free(p);
  }
}

#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void *alloc_slow(state_alloc *a, void *p, size_t osize, size_t nsize) {
  void *q;
  if (p == NULL) osize = 0;
  if (p != NULL && !set_has(a, p)) {
    /* LuaJIT's own block: it stays LuaJIT's, unless it grows big */
    if (osize >= BIG_BLOCK || nsize < BIG_BLOCK)
      return a->f(a->ud, p, osize, nsize);
    if ((q = big_get(a, nsize)) == NULL) return a->f(a->ud, p, osize, nsize);
    memcpy(q, p, osize);
    a->f(a->ud, p, osize, 0);
    return q;
  }
  if (p == NULL) {
    if (nsize < BIG_BLOCK) return a->f(a->ud, NULL, 0, nsize);
    /* a failed big_get (no memory for the set): LuaJIT's then */
    return (q = big_get(a, nsize)) != NULL ? q : a->f(a->ud, NULL, 0, nsize);
  }
  /* a block of ours */
  if (nsize == 0) {
    big_put(a, p, osize);
    return NULL;
  }
  if (nsize >= BIG_BLOCK) {
    /* out of the set first: p is not to be looked at after realloc.
    ** The set does not grow when one goes out and one comes back in. */
    set_del(a, p);
    q = realloc(p, nsize);
    (void)set_add(a, q != NULL ? q : p);
    return q;
  }
  if ((q = a->f(a->ud, NULL, 0, nsize)) == NULL) return NULL;
  memcpy(q, p, nsize);
  big_put(a, p, osize);
  return q;
}

static void *alloc_big(void *ud, void *p, size_t osize, size_t nsize) {
  state_alloc *a = ud;
  if ((osize | nsize) < BIG_BLOCK) return a->f(a->ud, p, osize, nsize);
  return alloc_slow(a, p, osize, nsize);
}

void corio__big_blocks(corio_rt *rt) {
  lua_State *L = rt->L;
  state_alloc *a;
  if (!rt->own_state || lua_getallocf(L, NULL) == alloc_big) return;
  if ((a = calloc(1, sizeof(*a))) == NULL) return;
  a->f = lua_getallocf(L, &a->ud);
  lua_setallocf(L, alloc_big, a);
  pthread_mutex_lock(&allocs_lock);
  a->next = allocs;
  if (allocs != NULL) allocs->prev = a;
  allocs = a;
  pthread_mutex_unlock(&allocs_lock);
}

static void close_state(lua_State *L) {
  void *ud;
  lua_Alloc f = lua_getallocf(L, &ud);
  lua_Alloc base_f = f;  /* the state's own allocator, under alloc_big */
  void *base_ud = ud;
  if (f == alloc_big) {
    base_f = ((state_alloc *)ud)->f;
    base_ud = ((state_alloc *)ud)->ud;
  }
  lua_close(L);
  if (f == alloc_big) {
    state_alloc *a = ud;
    pthread_mutex_lock(&allocs_lock);
    if (a->prev != NULL) a->prev->next = a->next;
    else allocs = a->next;
    if (a->next != NULL) a->next->prev = a->prev;
    pthread_mutex_unlock(&allocs_lock);
    while (a->n > 0) free(a->cache[--a->n].p);
    free(a->set);
    free(a);
  }
  corio__heap_release(base_f, base_ud);
}

struct corio_box {
  corio_rt *rt;
  int own_state;
};

/* The Lua part of corio_new, in lua_cpcall: a state without memory makes
** corio_new return NULL (was: LuaJIT's panic, which ends the host). */
typedef struct new_args {
  corio_rt *rt;
  int busy;    /* the state has a runtime already, or no package library */
} new_args;

static int new_check(lua_State *L) {
  new_args *a = (new_args *)lua_touserdata(L, 1);
  if (corio__rt(L) != NULL) {  /* one runtime per state */
    a->busy = 1;
    return 0;
  }
  if (!push_preload(L)) {
    /* an adopted state without the package library: corio could not be
    ** required (and indexing package would raise outside any pcall) */
    a->busy = 1;
    return 0;
  }
  return 0;
}

static int new_preload(lua_State *L) {
  corio_preload(L);
  return 0;
}

static int open_libs(lua_State *L) {
  luaL_openlibs(L);
  return 0;
}

corio_rt *corio_new(const corio_options *opts) {
  lua_State *L = opts != NULL ? opts->L : NULL;
  int own = L == NULL;
  corio_rt *rt;
  new_args a;
  if (own) {
    /* as CORIO_DEBUG: CORIO_LUAJIT_ALLOC=0 was taken as on */
    L = corio__env_flag("CORIO_LUAJIT_ALLOC") ? NULL : corio__heap_newstate(0);
    if (L == NULL) L = luaL_newstate();
    if (L == NULL) return NULL;
    if (lua_cpcall(L, open_libs, NULL) != 0) {
      close_state(L);
      return NULL;
    }
  }
  memset(&a, 0, sizeof(a));
  if (lua_cpcall(L, new_check, &a) != 0 || a.busy) {
    if (!a.busy) lua_pop(L, 1);   /* the memory error */
    if (own) close_state(L);
    return NULL;
  }
  rt = corio__rt_create(L, opts != NULL ? opts->loop : NULL);
  if (rt == NULL) {
    if (own) close_state(L);
    return NULL;
  }
  rt->own_state = own;
  rt->handle_signals = opts != NULL ? opts->handle_signals : 1;
  if (lua_cpcall(L, new_preload, NULL) != 0) {
    lua_pop(L, 1);
    corio__rt_destroy(rt, 1);
    if (own) close_state(L);
    return NULL;
  }
  return rt;
}

/* A state the host keeps after corio_free: put back the library
** functions corio replaced (coroutine.resume and wrap, see init.lua) and
** unload corio's modules, whose functions hold the freed runtime; a later
** require loads them afresh (for a new runtime of the state, or for one
** of their own, as in a stock luajit). */
/* [-0, +1|+0] Push the key of the registry's field `name` and return 1,
** or 0 if there is none: found by a walk, without making the string,
** which could raise a memory error (unload_modules runs in corio_free,
** which works without memory, outside any protected call). */
static int registry_key(lua_State *L, const char *name) {
  lua_pushnil(L);
  while (lua_next(L, LUA_REGISTRYINDEX)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), name) == 0)
      return 1;
  }
  return 0;
}

/* (Allocates nothing: the keys it reads and sets exist.) */
static void unload_modules(lua_State *L) {
  int top = lua_gettop(L), i;
  if (!registry_key(L, "corio.patched")) lua_pushnil(L);
  lua_pushvalue(L, top + 1);
  lua_rawget(L, LUA_REGISTRYINDEX);      /* [key patched] (nil key: nil) */
  if (lua_istable(L, top + 2)) {
    /* newest first: a function replaced twice gets its first original */
    for (i = (int)lua_objlen(L, top + 2); i >= 1; i--) {
      lua_rawgeti(L, top + 2, i);     /* {table, key, original, ours} */
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      if (lua_istable(L, -2) && !lua_isnil(L, -1)) {
        lua_pushvalue(L, -1);
        lua_rawget(L, -3);            /* what the table holds now */
        lua_rawgeti(L, -4, 4);
        if (lua_rawequal(L, -1, -2)) {
          lua_pop(L, 2);
          lua_rawgeti(L, -3, 3);
          lua_rawset(L, -3);
        }
      }
      lua_settop(L, top + 2);
    }
  }
  if (!lua_isnil(L, top + 1)) {
    lua_pushvalue(L, top + 1);
    lua_pushnil(L);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_settop(L, top);
  /* the table require looks in (package.loaded, unless a script replaced
  ** the global package or its loaded field) */
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      size_t n;
      const char *k = lua_type(L, -2) == LUA_TSTRING
                          ? lua_tolstring(L, -2, &n) : NULL;
      lua_pop(L, 1);
      if (k != NULL && (strcmp(k, "corio") == 0 ||
                        (n > 6 && memcmp(k, "corio.", 6) == 0))) {
        /* clearing a field during traversal is allowed */
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, -4);
      }
    }
  }
  lua_settop(L, top);
}

static void free_now(corio_rt *rt) {
  lua_State *L = rt->L;
  int own = rt->own_state;
  /* from here on, corio_free does nothing more and corio_step or
  ** corio_finish (from the cleanup below) are refused */
  rt->free_pending = 1;
  rt->api_step = 1;
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
  free(rt->errmsg_long);
  corio__rt_destroy(rt, 1);
  if (own) close_state(L);
  else unload_modules(L);
}

void corio_free(corio_rt *rt) {
  if (rt == NULL || rt->free_pending) return;
  if (rt->api_step) {
    /* Inside a step or finish of this runtime (a host function, a loop
    ** callback): the run is cancelled now, and the runtime freed when
    ** the outermost corio_step, corio_finish or corio_run_* returns. */
    rt->free_pending = 1;
    if (rt->running && rt->root != NULL)
      corio__scope_cancel(rt, &rt->root->root);
    return;
  }
  free_now(rt);
}

lua_State *corio_lua(corio_rt *rt) { return rt->L; }
uv_loop_t *corio_loop(corio_rt *rt) { return rt->loop; }
const char *corio_errmsg(corio_rt *rt) {
  return rt->errmsg_long != NULL ? rt->errmsg_long : rt->errmsg;
}
void corio_set_cli(corio_rt *rt, int on) { rt->cli_root = on; }

typedef struct paths_args {
  const char *lua_path, *c_path;
} paths_args;

static int add_paths(lua_State *L) {
  paths_args *a = (paths_args *)lua_touserdata(L, 1);
  if (!push_package(L)) return 0;   /* a state without the package library */
  if (a->lua_path != NULL) {
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s;%s", a->lua_path, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
  }
  if (a->c_path != NULL) {
    lua_getfield(L, -1, "cpath");
    lua_pushfstring(L, "%s;%s", a->c_path, lua_tostring(L, -1));
    lua_setfield(L, -3, "cpath");
    lua_pop(L, 1);
  }
  return 0;
}

static void set_msg(corio_rt *rt, const char *msg);

/* In a protected call: without memory the paths stay as they were and
** corio_errmsg says so. */
void corio_add_paths(corio_rt *rt, const char *lua_path,
                     const char *c_path) {
  paths_args a;
  a.lua_path = lua_path;
  a.c_path = c_path;
  if (lua_cpcall(rt->L, add_paths, &a) != 0) {
    char buf[256];
    snprintf(buf, sizeof(buf), "corio_add_paths: %s (package.path and "
             "package.cpath are unchanged)", lua_tostring(rt->L, -1));
    lua_pop(rt->L, 1);
    set_msg(rt, buf);
  }
}

/* The message corio_errmsg returns: whole, however long (an error's
** tracebacks often pass 512 bytes). */
static void set_msg(corio_rt *rt, const char *msg) {
  size_t n = strlen(msg);
  free(rt->errmsg_long);
  rt->errmsg_long = NULL;
  if (n >= sizeof(rt->errmsg) && (rt->errmsg_long = malloc(n + 1)) != NULL)
    memcpy(rt->errmsg_long, msg, n + 1);
  snprintf(rt->errmsg, sizeof(rt->errmsg), "%s", msg);  /* (cut without memory) */
}

/* In corio__pcall: [v] -> [] errmsg set to v's message: a string or
** number as it is, a value with __tostring (a corio error) as that gives
** it, else its type. */
static void errmsg_p(corio_rt *rt, lua_State *L, void *ud) {
  const char *msg = NULL;
  int t = lua_type(L, 1);
  (void)ud;
  if (t == LUA_TSTRING || t == LUA_TNUMBER) {
    lua_pushvalue(L, 1);   /* (lua_tostring converts a number in place) */
  } else if (!luaL_callmeta(L, 1, "__tostring")) {
    lua_pushnil(L);
  }
  if (lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)
    msg = lua_tostring(L, -1);
  if (msg != NULL) {
    set_msg(rt, msg);
  } else {
    char buf[64];
    snprintf(buf, sizeof(buf), "(error object is a %s value)",
             lua_typename(L, t));
    set_msg(rt, buf);
  }
}

/* Keep the message of the value on top in errmsg (errmsg_p). Was: the
** global tostring was called, so a script that set it to nil (or to its
** own function) left the host a message that was not the error's, e.g.
** "(error object is not a string)" for a syntax error or error("boom").
** The message must not depend on the script's globals. In a protected
** call: a __tostring that fails gives the type's message, and without
** memory the message says so. */
static void set_errmsg(corio_rt *rt, lua_State *L) {
  int t = lua_type(L, -1);
  lua_pushvalue(L, -1);
  if (corio__pcall(rt, L, 1, 0, errmsg_p, NULL) != 0) {
    char buf[128];
    const char *m = lua_tostring(L, -1);
    if (m != NULL && strcmp(m, "not enough memory") == 0)
      snprintf(buf, sizeof(buf), "not enough memory (for the message of "
               "an error that is a %s value)", lua_typename(L, t));
    else
      snprintf(buf, sizeof(buf), "(error object is a %s value)",
               lua_typename(L, t));
    set_msg(rt, buf);
    lua_pop(L, 1);
  }
}

/* Require "corio" so that the runtime's metatables and Lua surface exist
** before the root task runs. */
static int ensure_loaded(corio_rt *rt) {
  lua_State *L = rt->L;
  lua_getglobal(L, "require");
  lua_pushliteral(L, "corio");
  if (lua_pcall(L, 1, 0, 0) != 0) {
    set_errmsg(rt, L);   /* the error stays on top */
    return CORIO_ELUA;
  }
  return 0;
}

int corio_start(corio_rt *rt, int nargs) {
  lua_State *L = rt->L;
  int base, r;
  if (nargs < 0 || nargs >= lua_gettop(L)) {
    /* no function below the arguments (was: an empty stack made LuaJIT
    ** panic, which exits the process); the stack is left alone */
    set_msg(rt, "corio_start: no function below the arguments on the "
                "stack (nargs < 0, or the stack holds fewer than nargs + 1 "
                "values)");
    return UV_EINVAL;
  }
  base = lua_gettop(L) - nargs - 1;
  if (rt->running) {
    /* (a run from inside the run, e.g. by a host function: nothing of
    ** the running one is touched, require included) */
    set_msg(rt, "corio: the runtime is already running");
    lua_settop(L, base);
    lua_pushstring(L, corio_errmsg(rt));  /* the error value, as any */
    return UV_EBUSY;
  }
  if (rt->broken) {
    /* an earlier run was abandoned (its scheduler failed, e.g. without
    ** memory): the runtime's state is unknown */
    snprintf(rt->errmsg, sizeof(rt->errmsg), "corio: an earlier run of "
             "this runtime was abandoned (the scheduler failed: %s); "
             "corio_free it", rt->broken_msg);
    free(rt->errmsg_long);
    rt->errmsg_long = NULL;
    lua_settop(L, base);
    lua_pushstring(L, corio_errmsg(rt));  /* the error value, as any */
    return UV_EINVAL;
  }
  set_msg(rt, "");
  /* require runs Lua code (a host's own require, a finaliser) that may
  ** call corio_free: that is deferred to the end of the start, as in a
  ** step, and nothing is left on the stack */
  rt->api_step = 1;
  r = ensure_loaded(rt);
  if (r == 0 && !rt->free_pending && corio__run_start(rt, L, nargs) != 0) {
    /* no memory to start: the error is on top, where the function was */
    set_errmsg(rt, L);
    r = CORIO_ELUA;
  }
  rt->api_step = 0;
  if (rt->free_pending) {
    lua_settop(L, base);
    free_now(rt);
    return CORIO_EFREED;
  }
  if (r != 0) {
    /* the function and arguments are replaced by the error */
    lua_replace(L, base + 1);
    lua_settop(L, base + 1);
    return r;
  }
  return 0;
}

/* A step or finish from inside one (a host function a task called, or a
** loop callback of the host during our uv_run): the run's state is in
** the middle of a change, so it is refused. */
static int refuse_nested(corio_rt *rt) {
  if (!rt->api_step) return 0;
  set_msg(rt, "corio: corio_step or corio_finish called from inside a "
              "step of the same runtime");
  return 1;
}

int corio_step(corio_rt *rt, int wait) {
  int r;
  if (!rt->running || rt->root == NULL) return 0;
  if (refuse_nested(rt)) return UV_EBUSY;
  rt->api_step = 1;
  r = corio__run_step(rt, wait ? UV_RUN_ONCE : UV_RUN_NOWAIT);
  rt->api_step = 0;
  if (rt->free_pending) {   /* corio_free inside this step */
    free_now(rt);
    return 0;
  }
  return r;
}

int corio_finish(corio_rt *rt, int nresults) {
  lua_State *L = rt->L;
  int base = lua_gettop(L), n;
  if (refuse_nested(rt)) return UV_EBUSY;
  if (!rt->running || rt->root == NULL) {
    set_msg(rt, "corio: no run to finish");
    return UV_EINVAL;
  }
  rt->api_step = 1;
  while (corio__run_step(rt, UV_RUN_ONCE)) {
  }
  n = corio__run_finish(rt, L);
  rt->api_step = 0;
  if (rt->free_pending) {   /* corio_free inside this finish */
    lua_pop(L, n);
    free_now(rt);
    return CORIO_EFREED;
  }
  if (lua_toboolean(L, -n)) {
    /* empty after a success, even if a run tried from inside this one
    ** failed meanwhile (UV_EBUSY) */
    set_msg(rt, "");
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
  if (code == NULL) {
    set_msg(rt, "corio_run_string: code is NULL");
    return UV_EINVAL;
  }
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
