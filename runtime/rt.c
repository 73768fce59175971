/*
** rt.c: creating and freeing a runtime, the anchor tables that pin Lua
** values for C (tasks, refs), the clock, and interned chunk names.
** The scheduler lives in loop.c; tasks in task.c.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"
#include "http.h"


static const char RT_KEY[] = "corio.rt";

corio_rt *corio__rt(lua_State *L) {
  corio_rt *rt;
  lua_getfield(L, LUA_REGISTRYINDEX, RT_KEY);
  rt = (corio_rt *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return rt;
}

/* Grow an int stack; returns 0 or UV_ENOMEM. */
static int push_int(int **v, int *n, int *cap, int x) {
  if (*n == *cap) {
    int nc = *cap ? *cap * 2 : 64;
    int *nv = realloc(*v, sizeof(int) * (size_t)nc);
    if (nv == NULL) return UV_ENOMEM;
    *v = nv;
    *cap = nc;
  }
  (*v)[(*n)++] = x;
  return 0;
}

/* [-1, +0] Pin the value on top of L; returns its ref (>= 1). Refs live in
** their own table so that task slots stay a dense array. */
int corio__ref(corio_rt *rt, lua_State *L) {
  int ref;
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return LUA_REFNIL;
  }
  ref = rt->nfreerefs ? rt->free_refs[--rt->nfreerefs] : ++rt->next_ref;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->refs);
  lua_insert(L, -2);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  return ref;
}

void corio__unref(corio_rt *rt, lua_State *L, int ref) {
  if (ref <= 0 || ref == rt->oom_ref) return;  /* (shared: never freed) */
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->refs);
  lua_pushnil(L);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
  /* On ENOMEM the ref number is just never reused. */
  (void)push_int(&rt->free_refs, &rt->nfreerefs, &rt->freerefscap, ref);
}

void corio__getref(corio_rt *rt, lua_State *L, int ref) {
  if (ref <= 0) {
    lua_pushnil(L);
    return;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->refs);
  lua_rawgeti(L, -1, ref);
  lua_remove(L, -2);
}

void corio__setref(corio_rt *rt, lua_State *L, int ref) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->refs);
  lua_insert(L, -2);
  lua_rawseti(L, -2, ref);
  lua_pop(L, 1);
}

void corio__push_anchor(corio_rt *rt, lua_State *L) {
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->anchor);
}

/* The clock, read now (corio.now, sleeps, firing timers). The real
** clock is uv_hrtime() plus clock_off: when an autojump ends, the real
** clock goes on from the virtual time it reached (bindings/core.c
** l_vclock), since corio.now() is monotonic (SPEC §1) and the virtual
** clock is usually ahead of the real one by then. */
uint64_t corio__now(corio_rt *rt) {
  return rt->vclock ? rt->vnow : uv_hrtime() + rt->clock_off;
}

/* A cheap clock for the spawn-to-start wait of corio__base: the kernel's
** tick-resolution CLOCK_MONOTONIC_COARSE (a read of the vDSO page, where
** CLOCK_MONOTONIC costs ~60 instructions more a spawn). */
uint64_t corio__coarse(corio_rt *rt) {
  struct timespec ts;
  (void)rt;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* When a spawn happens, for corio__base: the first spawn of its burst,
** the spawns one resume of a task makes, each less than CORIO_BURST_GAP
** after the one before (a collector cycle of 100,000 live tasks can take
** 10 ms), for at most CORIO_BURST_MAX. A spawn after a pause (the spawner
** computed or waited) or after a corio.now() (bindings/core.c now_secs)
** starts a burst of its own. */
uint64_t corio__burst(corio_rt *rt) {
  uint64_t c = corio__coarse(rt);
  if (c - rt->burst_last > CORIO_BURST_GAP ||
      c - rt->burst_born > CORIO_BURST_MAX)
    rt->burst_born = c;
  rt->burst_last = c;
  return rt->burst_born;
}

/* What a sleep or deadline of task t, made now, counts from: the clock
** read now (trio's rule), but in a task's first run less the time from
** its spawn's burst (corio__burst) to its start, which t->born holds
** then (see resume in loop.c). Tasks spawned together so count from the
** same time, however long the spawn loop and the queue they wait in:
** 100,000 sleepers of 0-999 ms end 1.0 s after the spawn loop began, not
** after the last of them started (0.07-0.14 s later). The task's own
** running time still counts, so a first run that computes for a while
** and then sleeps sleeps its whole time. The wait is taken on the coarse
** clock less one of its ticks. corio.now() ends the discount
** (bindings/core.c now_secs): a sleep never ends sooner than d after a
** corio.now() its task read, or its spawner read before the spawn. The
** virtual clock has no discount (a task spawned or started on it has
** none). */
uint64_t corio__base(corio_rt *rt, corio_task *t) {
  uint64_t now = corio__now(rt);
  if (t != NULL && t->fresh && !rt->vclock && t->born < now)
    return now - t->born;
  return now;
}

static uint32_t src_hash(const char *s) {
  uint32_t h = 2166136261u;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
  return h;
}

const char *corio__intern_src(corio_rt *rt, const char *src) {
  uint32_t i, m = 2 * CORIO_MAX_SRCS - 1;
  char *copy;
  if (src == NULL) return NULL;
  /* Was: a linear scan of every name, and no bound: a program that
  ** spawned from load()ed chunks of distinct names kept ~70 bytes a name
  ** for good, and each such spawn scanned them all. */
  if (rt->srchash == NULL) {
    rt->srchash = calloc(2 * CORIO_MAX_SRCS, sizeof(*rt->srchash));
    if (rt->srchash == NULL) return NULL;
  }
  for (i = src_hash(src) & m; rt->srchash[i] != 0; i = (i + 1) & m) {
    char *s = rt->srcs[rt->srchash[i] - 1];
    if (s == src || strcmp(s, src) == 0) return s;
  }
  if (rt->nsrcs >= CORIO_MAX_SRCS) return NULL;   /* full: unknown */
  if (rt->nsrcs == rt->srcscap) {
    uint32_t nc = rt->srcscap ? rt->srcscap * 2 : 16;
    char **nv = realloc(rt->srcs, sizeof(char *) * nc);
    if (nv == NULL) return NULL;
    rt->srcs = nv;
    rt->srcscap = nc;
  }
  copy = strdup(src);
  if (copy == NULL) return NULL;
  rt->srcs[rt->nsrcs++] = copy;
  rt->srchash[i] = (uint16_t)rt->nsrcs;
  return copy;
}

static uint32_t site_hash(const char *src, int line) {
  uint64_t h = (uint64_t)(uintptr_t)src * 0x9e3779b97f4a7c15u;
  return (uint32_t)(h >> 32) ^ (uint32_t)line * 0x85ebca6bu;
}

uint32_t corio__intern_site(corio_rt *rt, const char *src, int line) {
  uint32_t i, m;
  if (src == NULL) return 0;
  if (rt->sitehcap != 0) {
    m = rt->sitehcap - 1;
    for (i = site_hash(src, line) & m; rt->sitehash[i] != 0; i = (i + 1) & m) {
      corio_site *s = &rt->sites[rt->sitehash[i] - 1];
      if (s->src == src && s->line == line) return rt->sitehash[i];
    }
  }
  if (rt->nsites >= CORIO_MAX_SITES) return 0;   /* full: unknown */
  if (rt->nsites == rt->sitescap) {
    uint32_t nc = rt->sitescap ? rt->sitescap * 2 : 16;
    corio_site *nv = realloc(rt->sites, sizeof(*nv) * nc);
    if (nv == NULL) return 0;
    rt->sites = nv;
    rt->sitescap = nc;
  }
  if (2 * (rt->nsites + 1) > rt->sitehcap) {
    /* at most half full: rehash into twice the room */
    uint32_t nc = rt->sitehcap ? rt->sitehcap * 2 : 32, k;
    uint32_t *nh = calloc(nc, sizeof(*nh));
    if (nh == NULL) return 0;
    m = nc - 1;
    for (k = 0; k < rt->nsites; k++) {
      corio_site *s = &rt->sites[k];
      for (i = site_hash(s->src, s->line) & m; nh[i] != 0; i = (i + 1) & m) {}
      nh[i] = k + 1;
    }
    free(rt->sitehash);
    rt->sitehash = nh;
    rt->sitehcap = nc;
  }
  m = rt->sitehcap - 1;
  for (i = site_hash(src, line) & m; rt->sitehash[i] != 0; i = (i + 1) & m) {}
  rt->sites[rt->nsites].src = src;
  rt->sites[rt->nsites].line = line;
  rt->sitehash[i] = ++rt->nsites;
  return rt->nsites;
}

int corio__is_own_src(corio_rt *rt, const char *src) {
  int i;
  if (src == NULL || strcmp(src, "=[C]") == 0) return 1;
  for (i = 0; i < rt->nown; i++)
    if (strcmp(rt->own_srcs[i], src) == 0) return 1;
  return 0;
}

void corio__add_own_src(corio_rt *rt, const char *src) {
  const char **nv;
  char *copy;
  if (corio__is_own_src(rt, src)) return;
  nv = realloc(rt->own_srcs, sizeof(char *) * (size_t)(rt->nown + 1));
  if (nv == NULL) return;
  rt->own_srcs = nv;
  copy = strdup(src);
  if (copy == NULL) return;
  rt->own_srcs[rt->nown++] = copy;
}

int corio__side_reserve(corio_rt *rt, int slot) {
  int c = slot / CORIO_SIDE_CHUNK;
  if (c >= rt->nside) {
    int nc = c + 1 > 2 * rt->nside ? c + 1 : 2 * rt->nside, i;
    corio_tside **nv = realloc(rt->side, sizeof(*nv) * (size_t)nc);
    if (nv == NULL) return -1;
    for (i = rt->nside; i < nc; i++) nv[i] = NULL;
    rt->side = nv;
    rt->nside = nc;
  }
  if (rt->side[c] == NULL &&
      (rt->side[c] = malloc(sizeof(corio_tside) * CORIO_SIDE_CHUNK)) == NULL)
    return -1;
  return 0;
}

/* The entry's chunk was made before the task got its slot (corio__spawn:
** corio__side_reserve), so this allocates nothing and cannot fail: its
** callers include the end of a task body and finalize, which run in the
** scheduler, where no Lua error can be raised (was: a luaL_error there
** when malloc failed, on the runtime's main state outside any pcall). */
corio_tside *corio__task_side(corio_rt *rt, corio_task *t) {
  corio_tside *e;
  if (t->side) return corio__task_side_get(rt, t);
  e = &rt->side[t->slot / CORIO_SIDE_CHUNK][t->slot % CORIO_SIDE_CHUNK];
  e->joiners = NULL;
  e->errs = LUA_NOREF;
  e->defers = LUA_NOREF;
  e->checkpoints = 0;
  t->side = 1;
  return e;
}

int *corio__scope_errs(corio_rt *rt, corio_scope *s) {
  if (s->kind == CORIO_SCOPE_TASK)
    return &corio__task_side(rt, corio__scope_owner(s))->errs;
  return &corio_container_of(s, corio_xscope, s)->errs;
}

int *corio__scope_defers(corio_rt *rt, corio_scope *s) {
  if (s->kind == CORIO_SCOPE_TASK)
    return &corio__task_side(rt, corio__scope_owner(s))->defers;
  return &corio_container_of(s, corio_xscope, s)->defers;
}

int corio__slot_alloc(corio_rt *rt) {
  if (rt->nfree) return rt->free_slots[--rt->nfree];
  return rt->next_slot++;
}

void corio__slot_free(corio_rt *rt, int slot) {
  (void)push_int(&rt->free_slots, &rt->nfree, &rt->freecap, slot);
}

static void close_walk(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

/* The handles embedded in rt (timer, sigint, sigusr1, async) close
** through here: rt stays allocated until libuv ran their close
** callbacks. Was: on an adopted loop corio_free closed them, ran the
** host's loop once (UV_RUN_NOWAIT) and freed rt; with a uv_stop of the
** host pending, that run did nothing, and the host's next uv_run read the
** closing handles in freed memory (libuv keeps them queued until then). */
static void rt_handle_closed(uv_handle_t *h) {
  corio_rt *rt = h->data;
  if (--rt->nclosing == 0 && rt->free_on_close) free(rt);
}

void corio__close_handle(corio_rt *rt, uv_handle_t *h) {
  h->data = rt;
  rt->nclosing++;
  uv_close(h, rt_handle_closed);
}

/* Free rt itself now, or from the last close callback of its handles. */
static void rt_release(corio_rt *rt) {
  if (rt->nclosing > 0) rt->free_on_close = 1;
  else free(rt);
}

/* A whole number of milliseconds, min to a day, from the environment
** variable name, or dflt when it is unset or empty. A value that is not
** one (a word, a fractional number, out of range) is not taken silently
** as 0 or as a huge wait: it is ignored with a warning that names it. */
static long env_ms(const char *name, long min, long dflt) {
  const char *p = getenv(name);
  char *end;
  long v;
  if (p == NULL || *p == 0) return dflt;
  errno = 0;
  v = strtol(p, &end, 10);
  if (errno == 0 && end != p && *end == 0 && v >= min && v <= 86400000L &&
      (*p >= '0' && *p <= '9'))
    return v;
  fprintf(stderr,
          "corio: ignoring %s='%s' (a whole number of milliseconds, %ld to "
          "86400000, expected); using %ld\n", name, p, min, dflt);
  return dflt;
}

/* A switch from the environment variable name: 1 for 1, true, yes or
** on, 0 for 0, false, no or off (any case), unset or empty. Any other
** value is not taken as on (CORIO_DEBUG=banana turned debugging on): it
** is ignored with a warning that names it, as env_ms does, and is 0. */
int corio__env_flag(const char *name) {
  static const char *const on[] = {"1", "true", "yes", "on"};
  static const char *const off[] = {"0", "false", "no", "off"};
  const char *p = getenv(name);
  size_t i;
  if (p == NULL || *p == 0) return 0;
  for (i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
    if (strcasecmp(p, on[i]) == 0) return 1;
    if (strcasecmp(p, off[i]) == 0) return 0;
  }
  fprintf(stderr,
          "corio: ignoring %s='%s' (1, true, yes or on, or 0, false, no or "
          "off expected); using off\n", name, p);
  return 0;
}

/* The function corio__pcall calls (made once, in corio__rt_create, so
** that a protected call allocates nothing before it is protected):
** [pcall_args, args...] -> what the C function leaves. */
typedef struct pcall_args {
  corio_pfn fn;
  corio_rt *rt;
  void *ud;
} pcall_args;

static int l_protected(lua_State *L) {
  pcall_args *a = (pcall_args *)lua_touserdata(L, 1);
  lua_remove(L, 1);
  a->fn(a->rt, L, a->ud);
  return lua_gettop(L);
}

int corio__pcall(corio_rt *rt, lua_State *L, int nargs, int nresults,
                 corio_pfn fn, void *ud) {
  pcall_args a;
  int base = lua_gettop(L) - nargs;
  a.fn = fn;
  a.rt = rt;
  a.ud = ud;
  /* pushes of a function from the registry and of a light userdata
  ** allocate nothing (a free slot of the stack is guaranteed) */
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->pcall_ref);
  lua_insert(L, base + 1);
  lua_pushlightuserdata(L, &a);
  lua_insert(L, base + 2);
  return lua_pcall(L, nargs + 1, nresults, 0);
}

/* The Lua part of corio__rt_create, run by lua_cpcall (rt at index 1):
** a memory error leaves the refs made so far, which the caller drops. */
static int rt_lua_init(lua_State *L) {
  corio_rt *rt = (corio_rt *)lua_touserdata(L, 1);
  lua_newtable(L);                  /* anchor: task slots */
  rt->anchor = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);                  /* refs */
  rt->refs = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_newtable(L);                  /* task names, weak keys */
  lua_newtable(L);
  lua_pushliteral(L, "k");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  rt->names = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_createtable(L, 1, 0);         /* {nforeign} */
  lua_pushinteger(L, 0);
  lua_rawseti(L, -2, 1);
  rt->foreign_tab = luaL_ref(L, LUA_REGISTRYINDEX);

  lua_getglobal(L, "coroutine");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "isyieldable");
    rt->isyieldable = lua_tocfunction(L, -1);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);

  lua_pushcfunction(L, l_protected);
  rt->pcall_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  /* the error list of a scope that could not record its error for want
  ** of memory (corio__scope_oom), and what a task that could not keep
  ** its error keeps: {LuaJIT's "not enough memory"} */
  lua_createtable(L, 1, 0);
  lua_pushliteral(L, "not enough memory");
  lua_rawseti(L, -2, 1);
  rt->oom_ref = corio__ref(rt, L);
  /* last: once it is set, nothing here fails */
  lua_pushlightuserdata(L, rt);
  lua_setfield(L, LUA_REGISTRYINDEX, RT_KEY);
  return 0;
}

/* Create the runtime of L's state. loop may be NULL (own loop). */
corio_rt *corio__rt_create(lua_State *L, uv_loop_t *loop) {
  corio_rt *rt = calloc(1, sizeof(*rt));
  if (rt == NULL) return NULL;
  rt->L = L;
  {
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) == 0)
      rt->coarse_res = (uint64_t)res.tv_sec * 1000000000u +
                       (uint64_t)res.tv_nsec;
    else
      rt->coarse_res = 10000000;  /* unknown: count a 10 ms tick */
  }
  if (loop == NULL) {
    if (uv_loop_init(&rt->own_loop) != 0) {
      free(rt);
      return NULL;
    }
    rt->loop = &rt->own_loop;
  } else {
    rt->loop = loop;
  }
  /* The timer stays referenced: while a deadline is armed, it is what
  ** keeps uv_run(UV_RUN_ONCE) waiting. */
  if (uv_timer_init(rt->loop, &rt->timer) != 0) goto fail;
  rt->timer.data = rt;
  if (uv_async_init(rt->loop, &rt->sigint, corio__sigint_cb) != 0) goto fail;
  rt->sigint.data = rt;
  uv_unref((uv_handle_t *)&rt->sigint);
  if (uv_async_init(rt->loop, &rt->sigusr1, corio__sigusr1_cb) != 0)
    goto fail;
  rt->sigusr1.data = rt;
  uv_unref((uv_handle_t *)&rt->sigusr1);
  if (corio__host_init(rt) != 0) goto fail;
  corio_list_init(&rt->idle_waiters);
  corio_list_init(&rt->http_clients);
  corio_list_init(&rt->held_locks);
  corio_list_init(&rt->parked);
  rt->handle_signals = 1;
  rt->root_ref = LUA_NOREF;
  rt->nested_ref = LUA_NOREF;
  rt->next_id = 1;

  rt->anchor = rt->refs = rt->names = rt->foreign_tab = LUA_NOREF;
  rt->pcall_ref = LUA_NOREF;
  rt->oom_ref = LUA_NOREF;
  rt->ud_tasks = LUA_NOREF;
  /* the Lua part, protected: without memory corio_new returns NULL
  ** (was: LuaJIT's panic, which ends the host) */
  if (lua_cpcall(L, rt_lua_init, rt) != 0) {
    lua_pop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->anchor);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->refs);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->names);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->foreign_tab);
    luaL_unref(L, LUA_REGISTRYINDEX, rt->pcall_ref);
    goto fail;
  }
  /* CORIO_POLL_MS=0 polls a busy queue by count only: instruction counts
  ** under valgrind, where the clock runs ~50x slower, then do not depend
  ** on time (bench/callgrind.sh sets it). */
  rt->poll_ns = (uint64_t)env_ms("CORIO_POLL_MS", 0, CORIO_POLL_NS / 1000000) *
                1000000u;
  if (corio__env_flag("CORIO_DEBUG"))
    (void)corio__debug_start(rt, (int)env_ms("CORIO_DEBUG_SLOW_MS", 1, 100));
  return rt;
fail:
  if (rt->loop == &rt->own_loop) {
    uv_walk(rt->loop, close_walk, NULL);
    uv_run(rt->loop, UV_RUN_DEFAULT);
    uv_loop_close(rt->loop);
  } else {
    /* the handles made on the host's loop (a handle's type is set by its
    ** init; rt was zeroed) close when the host runs it */
    uv_handle_t *hs[3];
    int i;
    hs[0] = (uv_handle_t *)&rt->timer;
    hs[1] = (uv_handle_t *)&rt->sigint;
    hs[2] = (uv_handle_t *)&rt->sigusr1;
    for (i = 0; i < 3; i++)
      if (hs[i]->type != UV_UNKNOWN_HANDLE) corio__close_handle(rt, hs[i]);
  }
  rt_release(rt);
  return NULL;
}

/* Free the runtime's C memory and close its handles. The Lua state is not
** touched beyond the registry (it may be closing). */
void corio__rt_destroy(corio_rt *rt, int lua_alive) {
  uint32_t i;
  int j;
  if (rt == NULL) return;
  corio__debug_stop(rt);
  corio__signals_release(rt);
  corio__close_handle(rt, (uv_handle_t *)&rt->timer);
  corio__close_handle(rt, (uv_handle_t *)&rt->sigint);
  corio__close_handle(rt, (uv_handle_t *)&rt->sigusr1);
  corio__host_close(rt);
  corio__http_rt_free(rt, rt->loop == &rt->own_loop);
  if (rt->loop == &rt->own_loop) {
    int tries;
    uv_walk(rt->loop, close_walk, NULL);
    /* A uv_stop left over from outside corio's own uv_run would end the
    ** first run before the close callbacks: run again until it closes. */
    for (tries = 0; tries < 4; tries++) {
      uv_run(rt->loop, UV_RUN_DEFAULT);
      if (uv_loop_close(rt->loop) != UV_EBUSY) break;
      uv_walk(rt->loop, close_walk, NULL);
    }
  } else {
    /* An adopted loop runs our close callbacks when its host runs it; the
    ** handles need no callback, so nothing refers to rt afterwards. */
    uv_run(rt->loop, UV_RUN_NOWAIT);
  }
  if (lua_alive) {
    if (rt->ntasks > 0) {
      /* corio.spawn and scope:spawn hold the anchor table (an upvalue),
      ** so dropping its ref alone would no longer drop the pins of the
      ** tasks a run abandoned: clear their slots (2k+1, 2k+2). */
      int k;
      lua_rawgeti(rt->L, LUA_REGISTRYINDEX, rt->anchor);
      for (k = 1; k <= 2 * rt->next_slot; k++) {
        lua_pushnil(rt->L);
        lua_rawseti(rt->L, -2, k);
      }
      lua_pop(rt->L, 1);
    }
    lua_pushnil(rt->L);
    lua_setfield(rt->L, LUA_REGISTRYINDEX, RT_KEY);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, rt->anchor);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, rt->refs);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, rt->names);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, rt->foreign_tab);
    luaL_unref(rt->L, LUA_REGISTRYINDEX, rt->pcall_ref);
  }
  corio__work_states_free(rt);
  corio__host_free(rt);
  for (i = 0; i < rt->nsrcs; i++) free(rt->srcs[i]);
  for (j = 0; j < rt->nown; j++) free((void *)rt->own_srcs[j]);
  free(rt->srcs);
  free(rt->srchash);
  free(rt->sites);
  free(rt->sitehash);
  free(rt->own_srcs);
  free(rt->heap);
  free(rt->free_slots);
  free(rt->free_refs);
  for (j = 0; j < rt->nside; j++) free(rt->side[j]);
  free(rt->side);
  rt_release(rt);
}
