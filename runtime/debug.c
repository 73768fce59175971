/*
** debug.c: --debug / CORIO_DEBUG=1. A watchdog thread notices a task step
** that has held the loop longer than a threshold (CORIO_DEBUG_SLOW_MS,
** default 100) while it is still running, and makes it report where it is
** through a count hook (lua_sethook may be called from another thread).
** The loop thread pays two relaxed stores per step and no clock reads.
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

/* Runs on the loop thread, inside the slow step, once. */
static void slow_hook(lua_State *L, lua_Debug *unused) {
  corio_rt *rt = corio__rt(L);
  lua_Debug ar;
  int level;
  (void)unused;
  lua_sethook(L, NULL, 0, 0);
  if (rt == NULL) return;
  for (level = 0; lua_getstack(L, level, &ar); level++) {
    if (lua_getinfo(L, "Sl", &ar) && ar.currentline > 0) break;
  }
  if (rt->current != NULL) corio__task_name(rt, L, rt->current);
  else lua_pushliteral(L, "the main chunk");
  fprintf(stderr,
          "corio: slow step: %s has held the loop for over %d ms and is "
          "still running, now at %s:%d\n",
          lua_tostring(L, -1), rt->slow_ms,
          ar.currentline > 0 ? ar.short_src : "?",
          ar.currentline > 0 ? ar.currentline : 0);
  lua_pop(L, 1);
}

static void *watchdog(void *arg) {
  corio_rt *rt = arg;
  uint32_t last_seq = 0;
  uint64_t seen_at = 0, period = (uint64_t)rt->slow_ms * 1000000 / 4;
  struct timespec ts;
  if (period < 1000000) period = 1000000;
  pthread_mutex_lock(&rt->dbg_mu);
  while (!rt->dbg_stop) {
    uint64_t now;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += (long)(period % 1000000000);
    ts.tv_sec += (time_t)(period / 1000000000) + ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&rt->dbg_cv, &rt->dbg_mu, &ts);
    if (rt->dbg_stop) break;
    now = mono_ns();
    if (!__atomic_load_n(&rt->in_step, __ATOMIC_RELAXED)) {
      seen_at = 0;
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
    if (now - seen_at >= (uint64_t)rt->slow_ms * 1000000 &&
        !__atomic_load_n(&rt->step_flagged, __ATOMIC_RELAXED)) {
      rt->flagged_at = seen_at;
      __atomic_store_n(&rt->step_flagged, 1, __ATOMIC_RELEASE);
      lua_sethook(rt->L, slow_hook, LUA_MASKCOUNT, 1);
    }
  }
  pthread_mutex_unlock(&rt->dbg_mu);
  return NULL;
}

/* The step that was reported ended: say how long it held the loop. */
void corio__debug_step_end(corio_rt *rt) {
  uint64_t ms = (mono_ns() - rt->flagged_at) / 1000000;
  lua_sethook(rt->L, NULL, 0, 0);
  __atomic_store_n(&rt->step_flagged, 0, __ATOMIC_RELAXED);
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
