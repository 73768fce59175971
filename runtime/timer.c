/*
** timer.c: one uv_timer_t drives a min-heap of deadlines for all tasks
** (corio.sleep) and scopes (timeout, move_on_after). Deadlines are kept in
** nanoseconds of the runtime clock; ties fire in arming order.
** The uv callback only notes that timers are due: the scheduler fires them
** after uv_run returns, so no Lua work happens inside libuv.
*/
#include <stdlib.h>

#include "internal.h"

#define NOT_ARMED UINT32_MAX
#define ARITY 4

/* A heap entry carries its deadline, so that sifting compares entries
** that sit side by side in the array instead of reading the timers, which
** live in the tasks and scopes all over the heap: with 100,000 sleepers
** each comparison was a cache miss, and popping the earliest deadline
** took ~2 us (bench/README, session 6). Four children per node halve the
** levels, and the four children of a node share a cache line or two. */
typedef struct corio_heapent {
  uint64_t when;
  corio_timer *tm;
} corio_heapent;

static int before(const corio_heapent *a, const corio_heapent *b) {
  if (a->when != b->when) return a->when < b->when;
  return (int32_t)(a->tm->seq - b->tm->seq) < 0;
}

static void heap_set(corio_rt *rt, uint32_t i, corio_heapent e) {
  rt->heap[i] = e;
  e.tm->idx = i;
}

static void sift_up(corio_rt *rt, uint32_t i) {
  corio_heapent e = rt->heap[i];
  while (i > 0) {
    uint32_t p = (i - 1) / ARITY;
    if (!before(&e, &rt->heap[p])) break;
    heap_set(rt, i, rt->heap[p]);
    i = p;
  }
  heap_set(rt, i, e);
}

static void sift_down(corio_rt *rt, uint32_t i) {
  corio_heapent e = rt->heap[i];
  for (;;) {
    uint32_t c = ARITY * i + 1, k, end, best;
    if (c >= rt->nheap) break;
    end = c + ARITY < rt->nheap ? c + ARITY : rt->nheap;
    best = c;
    for (k = c + 1; k < end; k++)
      if (before(&rt->heap[k], &rt->heap[best])) best = k;
    if (!before(&rt->heap[best], &e)) break;
    heap_set(rt, i, rt->heap[best]);
    i = best;
  }
  heap_set(rt, i, e);
}

int corio__timer_start(corio_rt *rt, corio_timer *tm, uint64_t when) {
  if (rt->nheap == rt->heapcap) {
    uint32_t nc = rt->heapcap ? rt->heapcap * 2 : 256;
    corio_heapent *nh = realloc(rt->heap, sizeof(*nh) * nc);
    if (nh == NULL) return UV_ENOMEM;
    rt->heap = nh;
    rt->heapcap = nc;
  }
  tm->when = when;
  tm->seq = rt->seq++;
  rt->heap[rt->nheap].when = when;
  rt->heap[rt->nheap].tm = tm;
  tm->idx = rt->nheap++;
  sift_up(rt, tm->idx);
  return 0;
}

void corio__timer_stop(corio_rt *rt, corio_timer *tm) {
  uint32_t i = tm->idx;
  corio_heapent last;
  if (i == NOT_ARMED || i >= rt->nheap || rt->heap[i].tm != tm) return;
  tm->idx = NOT_ARMED;
  last = rt->heap[--rt->nheap];
  if (i == rt->nheap) return;
  heap_set(rt, i, last);
  if (i > 0 && before(&last, &rt->heap[(i - 1) / ARITY])) sift_up(rt, i);
  else sift_down(rt, i);
}

void corio__timers_rebase(corio_rt *rt, uint64_t from, uint64_t to) {
  uint32_t i;
  /* every deadline moves by the same amount (or to `to` if already
  ** passed, which keeps them before the others): the order holds */
  for (i = 0; i < rt->nheap; i++) {
    corio_heapent *e = &rt->heap[i];
    e->when = to + (e->when > from ? e->when - from : 0);
    e->tm->when = e->when;
  }
}

uint64_t corio__timers_next(corio_rt *rt) {
  return rt->nheap ? rt->heap[0].when : 0;
}

static void on_timer(uv_timer_t *h) {
  corio_rt *rt = h->data;
  rt->armed_when = 0;
  rt->timers_due = 1;
  /* the scheduler fires them when uv_run returns: do not block first */
  if (rt->in_uv) uv_stop(rt->loop);
}

/* Arm the uv timer for the earliest deadline; called before every poll.
** Under autojump the clock jumps (corio__step) unless real work is
** pending; while it is, the virtual clock runs at real speed (corio__step
** adds the time spent polling), so the timer is armed for what is left
** of the deadline on it, and a timeout around real work fires in time. */
void corio__timers_sync(corio_rt *rt) {
  uint64_t when, now, ms;
  if (rt->nheap == 0 || (rt->vclock && rt->nexternal == rt->nrealsleep)) {
    if (rt->armed_when) {
      uv_timer_stop(&rt->timer);
      rt->armed_when = 0;
    }
    return;
  }
  when = rt->heap[0].when;
  if (when == rt->armed_when) return;
  now = corio__now(rt);
  /* libuv counts whole milliseconds from its cached loop time; round up
  ** so the timer never fires before the deadline (early wake-ups would
  ** only re-arm). */
  ms = when > now ? (when - now + 999999) / 1000000 : 0;
  uv_update_time(rt->loop);
  uv_timer_start(&rt->timer, on_timer, ms, 0);
  rt->armed_when = when;
}

/* A checkpoint that need not wait for the loop (corio.yield, sleep(0),
** the entry check of gather/map/first) first fires the deadlines that
** have passed, so that a deadline that passed while the task ran without
** a checkpoint cancels that very checkpoint, as trio's do: the scheduler
** polls timers only when the ready queue empties or every few resumes,
** and a task alone in the queue that yields would otherwise go on.
** The coarse clock (a vDSO read of ~6 ns, against ~35 for the precise
** one on the VMs of bench/README) lags the precise one by at most its
** resolution, so an earliest deadline beyond coarse + 2 resolutions has
** not passed: only the last few ms before it read the precise clock, and
** a task yielding in a loop under a long timeout pays ~6 ns a yield, not
** 35-50. Were the coarse clock ever to lag more, the scheduler's own
** poll (loop.c, every 32 resumes after 2 ms) still fires the deadline. */
void corio__timers_catch_up(corio_rt *rt) {
  uint64_t when = rt->heap[0].when;  /* the caller saw nheap != 0 */
  if (!rt->vclock &&
      corio__coarse(rt) + rt->clock_off + 2 * rt->coarse_res < when)
    return;
  if (when <= corio__now(rt)) corio__timers_fire(rt);
}

int corio__deadline_near(corio_rt *rt) {
  return rt->vclock || corio__coarse(rt) + rt->clock_off +
                           2 * rt->coarse_res >= rt->heap[0].when;
}

/* Fire every deadline that has passed, earliest first. Sleepers become
** ready; scopes are cancelled (which may wake many tasks). */
void corio__timers_fire(corio_rt *rt) {
  uint64_t now = corio__now(rt);
  rt->timers_due = 0;
  while (rt->nheap && rt->heap[0].when <= now) {
    corio_timer *tm = rt->heap[0].tm;
    corio__timer_stop(rt, tm);
    if (tm->kind == CORIO_TIMER_SLEEP) {
      corio_task *t = corio_container_of(tm, corio_task, u.sleep);
      t->abort = NULL;
      corio__ready(rt, t, corio__deliver_true);
    } else {
      corio_xscope *x = corio_container_of(tm, corio_xscope, deadline);
      if (!x->s.cancelled) {
        x->s.fired = 1;
        corio__scope_cancel(rt, &x->s);
      }
    }
  }
}
