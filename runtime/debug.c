/*
** debug.c: --debug / CORIO_DEBUG=1. A watchdog thread notices a task step
** that has held the loop longer than a threshold (CORIO_DEBUG_SLOW_MS,
** default 100) while it is still running, and makes it report where it is
** through a count hook (lua_sethook may be called from another thread).
** The loop thread pays, per step, a copy of the task's name and two
** atomic stores, and no clock reads.
** LuaJIT's compiled code never calls hooks, so a loop the JIT compiled
** would be reported only after it ended (at the line after it): while
** the watchdog runs, the runtime's Lua state runs interpreted.
*/
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <luajit.h>

#include "internal.h"

static uint64_t mono_ns(void) { return uv_hrtime(); }

/* [-0, +1] t's name as the one-line-per-task reports show it (the
** deadlock error, SIGUSR1's tree, the spawn-site line of tracebacks, the
** slow-step report): control characters escaped as "\n", "\t", "\ddd",
** so a name cannot break a report into lines of its own or end it early
** (an embedded NUL), and cut after CORIO_NAME_SHOWN bytes with "...", so
** that a very long name does not make each line of a report that long.
** task.name and corio.tasks() keep the name as it was set. */
#define CORIO_NAME_SHOWN 200
void corio__name_shown(lua_State *L) {
  size_t n, i;
  const char *s;
  luaL_Buffer b;
  s = lua_tolstring(L, -1, &n);
  if (s == NULL) return;
  for (i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch < 0x20 || ch == 0x7f) break;
  }
  if (i == n && n <= CORIO_NAME_SHOWN) return;   /* as it is: the usual */
  luaL_buffinit(L, &b);
  for (i = 0; i < n && i < CORIO_NAME_SHOWN; i++) {
    unsigned char ch = (unsigned char)s[i];
    char esc[8];
    if (ch == '\n') luaL_addstring(&b, "\\n");
    else if (ch == '\t') luaL_addstring(&b, "\\t");
    else if (ch == '\r') luaL_addstring(&b, "\\r");
    else if (ch < 0x20 || ch == 0x7f) {
      snprintf(esc, sizeof(esc), "\\%d", ch);
      luaL_addstring(&b, esc);
    } else luaL_addchar(&b, (char)ch);
  }
  if (n > CORIO_NAME_SHOWN) luaL_addstring(&b, "...");
  luaL_pushresult(&b);
  lua_remove(L, -2);
}

void corio__task_name_shown(corio_rt *rt, lua_State *L, corio_task *t) {
  corio__task_name(rt, L, t);
  corio__name_shown(L);
}

/* Runs on the loop thread, inside the slow step, once. */
static void slow_hook(lua_State *L, lua_Debug *unused) {
  corio_rt *rt = corio__rt(L);
  lua_Debug ar, first;
  int level, found = 0;
  (void)unused;
  lua_sethook(L, NULL, 0, 0);
  if (rt == NULL) return;
  __atomic_store_n(&rt->hook_ran, 1, __ATOMIC_RELAXED);
  /* the innermost line outside corio's own Lua (a corio.now in the loop
  ** is not where the user looks), else the innermost line */
  first.currentline = 0;
  for (level = 0; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0) continue;
    if (first.currentline <= 0) first = ar;
    if (!corio__is_own_src(rt, ar.source)) {
      found = 1;
      break;
    }
  }
  if (!found) ar = first;
  if (rt->current != NULL) corio__task_name_shown(rt, L, rt->current);
  else lua_pushliteral(L, "the main chunk");
  fprintf(stderr,
          "corio: slow step: %s has held the loop for over %d ms and is "
          "still running, now at %s:%d\n",
          lua_tostring(L, -1), rt->slow_ms,
          ar.currentline > 0 ? ar.short_src : "?",
          ar.currentline > 0 ? ar.currentline : 0);
  lua_pop(L, 1);
}

/* A step begins (loop thread, debug mode only): its task's name where the
** watchdog may read it, then the step's mark. */
void corio__debug_step_begin(corio_rt *rt, corio_task *t) {
  lua_State *L = rt->L;
  corio__task_name_shown(rt, L, t);
  snprintf(rt->dbg_name, sizeof(rt->dbg_name), "%s",
           lua_tostring(L, -1) ? lua_tostring(L, -1) : "a task");
  lua_pop(L, 1);
  __atomic_add_fetch(&rt->step_seq, 1, __ATOMIC_RELAXED);
  __atomic_store_n(&rt->in_step, 1, __ATOMIC_RELEASE);
}

/* The watchdog takes a step by turning in_step from 1 to 2, under
** dbg_mu; the loop thread, ending a step it finds taken, goes through
** corio__debug_step_end, which waits for dbg_mu. So while the watchdog
** holds dbg_mu and sees 2, the step has not ended and dbg_name is that
** step's. If the hook has not run a period after the step was taken,
** the task is inside a C call (Lua runs interpreted here, so a Lua loop
** would have run it): that is reported at once, from this thread, with
** the name; the hook gives the line when the call returns. */
static void *watchdog(void *arg) {
  corio_rt *rt = arg;
  uint32_t last_seq = 0;
  uint64_t seen_at = 0, taken_at = 0,
           period = (uint64_t)rt->slow_ms * 1000000 / 4;
  int c_said = 0;
  struct timespec ts;
  if (period < 1000000) period = 1000000;
  pthread_mutex_lock(&rt->dbg_mu);
  while (!rt->dbg_stop) {
    uint64_t now;
    int in;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(period % 1000000000);
    ts.tv_sec += (time_t)(period / 1000000000) + ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&rt->dbg_cv, &rt->dbg_mu, &ts);
    if (rt->dbg_stop) break;
    now = mono_ns();
    in = __atomic_load_n(&rt->in_step, __ATOMIC_ACQUIRE);
    if (in == 0) {
      seen_at = 0;
      continue;
    }
    if (in == 2) {   /* taken, not ended */
      if (!c_said && now - taken_at >= period &&
          !__atomic_load_n(&rt->hook_ran, __ATOMIC_RELAXED)) {
        c_said = 1;
        fprintf(stderr,
                "corio: slow step: %s has held the loop for over %d ms and "
                "is still running, inside a C call (its Lua line follows "
                "when the call returns)\n",
                rt->dbg_name, (int)((now - seen_at) / 1000000));
      }
      continue;
    }
    {
      uint32_t seq = __atomic_load_n(&rt->step_seq, __ATOMIC_RELAXED);
      if (seq != last_seq || seen_at == 0) {
        last_seq = seq;
        seen_at = now - period;  /* it started up to a period ago */
        continue;
      }
    }
    if (now - seen_at >= (uint64_t)rt->slow_ms * 1000000) {
      int one = 1;
      __atomic_store_n(&rt->hook_ran, 0, __ATOMIC_RELAXED);
      if (__atomic_compare_exchange_n(&rt->in_step, &one, 2, 0,
                                      __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        rt->flagged_at = seen_at;
        taken_at = now;
        c_said = 0;
        lua_sethook(rt->L, slow_hook, LUA_MASKCOUNT, 1);
      }
    }
  }
  pthread_mutex_unlock(&rt->dbg_mu);
  return NULL;
}

/* The step the watchdog took ended: say how long it held the loop. */
void corio__debug_step_end(corio_rt *rt) {
  uint64_t ms;
  pthread_mutex_lock(&rt->dbg_mu);
  ms = (mono_ns() - rt->flagged_at) / 1000000;
  lua_sethook(rt->L, NULL, 0, 0);
  pthread_mutex_unlock(&rt->dbg_mu);
  fprintf(stderr, "corio: slow step: the loop was blocked for about %d ms "
          "in total\n", (int)ms);
}

int corio__debug_start(corio_rt *rt, int slow_ms) {
  if (rt->debug) return 0;
  rt->slow_ms = slow_ms > 0 ? slow_ms : 100;
  rt->dbg_stop = 0;
  if (pthread_mutex_init(&rt->dbg_mu, NULL) != 0) return UV_ENOMEM;
  if (pthread_cond_init(&rt->dbg_cv, NULL) != 0) {
    pthread_mutex_destroy(&rt->dbg_mu);
    return UV_ENOMEM;
  }
  if (pthread_create(&rt->dbg_thread, NULL, watchdog, rt) != 0) {
    pthread_cond_destroy(&rt->dbg_cv);
    pthread_mutex_destroy(&rt->dbg_mu);
    return UV_EAGAIN;
  }
  rt->debug = 1;
  luaJIT_setmode(rt->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_FLUSH);
  luaJIT_setmode(rt->L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);
  return 0;
}

void corio__debug_stop(corio_rt *rt) {
  if (!rt->debug) return;
  pthread_mutex_lock(&rt->dbg_mu);
  rt->dbg_stop = 1;
  pthread_cond_signal(&rt->dbg_cv);
  pthread_mutex_unlock(&rt->dbg_mu);
  pthread_join(rt->dbg_thread, NULL);
  pthread_cond_destroy(&rt->dbg_cv);
  pthread_mutex_destroy(&rt->dbg_mu);
  rt->debug = 0;
}
