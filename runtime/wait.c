/*
** wait.c: FIFO waiter queues shared by the sync objects: the abort hook
** that leaves a queue, waking the oldest waiter, and breaking the locks of
** a task that ended while holding them (rule 8). The Lua-facing objects
** are in bindings/sync.c and bindings/channel.c.
*/
#include "internal.h"

int corio__abort_wait(corio_rt *rt, corio_task *t) {
  (void)rt;
  corio_list_remove(&t->u.wait);
  return 1;
}

/* Take the oldest waiter of q, or NULL. Its abort hook is cleared: it is
** no longer in a queue that cancel could take it out of. */
corio_task *corio__wq_shift(corio_link *q) {
  corio_link *l = corio_list_shift(q);
  corio_task *t;
  if (l == NULL) return NULL;
  t = corio_container_of(l, corio_task, u.wait);
  t->abort = NULL;
  return t;
}

void corio__wq_wake_all(corio_rt *rt, corio_link *q, corio_deliver_fn fn) {
  corio_task *t;
  while ((t = corio__wq_shift(q)) != NULL) corio__ready(rt, t, fn);
}

void corio__lock_hold(corio_rt *rt, corio_lock *k, corio_task *t) {
  k->owner = t;
  t->nlocks++;
  corio_list_push(&rt->held_locks, &k->held);
}

void corio__lock_unlink(corio_lock *k) {
  if (k->owner == NULL) return;
  k->owner->nlocks--;
  k->owner = NULL;
  corio_list_remove(&k->held);
}

/* Task t ended holding locks: each becomes broken. Its waiters, and every
** later acquire, get an error of kind "broken" naming t. Tasks rarely end
** holding a lock, so finding them by a scan of the held locks is fine. */
void corio__locks_release_dead(corio_rt *rt, lua_State *L, corio_task *t) {
  corio_link *l = rt->held_locks.next;
  while (t->nlocks > 0 && l != &rt->held_locks) {
    corio_lock *k = corio_container_of(l, corio_lock, held);
    corio_task *w;
    l = l->next;
    if (k->owner != t) continue;
    corio__lock_unlink(k);
    corio__task_name(rt, L, t);
    lua_pushfstring(L, "lock broken: its owner (%s) ended while holding "
                    "it", lua_tostring(L, -1));
    lua_remove(L, -2);
    if (k->broken_ref <= 0) k->broken_ref = corio__ref(rt, L);
    else lua_pop(L, 1);
    while ((w = corio__wq_shift(&k->waiters)) != NULL) {
      lua_pushboolean(w->co, 0);
      corio__getref(rt, L, k->broken_ref);
      corio__push_error(L, "broken", lua_tostring(L, -1));
      lua_remove(L, -2);
      lua_xmove(L, w->co, 1);
      corio__ready(rt, w, NULL);
    }
  }
}
