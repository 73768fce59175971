/*
** cancel.c: cancel scopes. A scope is cancelled once (cancel() or its
** deadline); "effectively cancelled" (eff) flows down the scope tree,
** across task boundaries, and stops at shields. Checkpoints test only
** t->cur->eff, so they are O(1); cancelling walks the affected subtree
** once and wakes the tasks blocked in it. Deadlines are armed in timer.c.
*/
#include <string.h>

#include "internal.h"

void corio__scope_init(corio_scope *s, int kind, corio_task *owner,
                       corio_scope *parent) {
  memset(s, 0, sizeof(*s));
  s->kind = (uint8_t)kind;
  if (kind != CORIO_SCOPE_TASK) {
    corio_xscope *x = corio_container_of(s, corio_xscope, s);
    x->owner = owner;
    x->errs = LUA_NOREF;
    x->defers = LUA_NOREF;
  }
  s->parent = parent;
  s->shield = kind == CORIO_SCOPE_SHIELD;
  s->eff = parent != NULL && !s->shield && parent->eff;
  corio_list_init(&s->children);
}

/* Enter s inside t's innermost scope. */
void corio__scope_enter(corio_rt *rt, corio_task *t, corio_scope *s) {
  (void)rt;
  s->parent = t->cur;
  s->eff = !s->shield && t->cur->eff;
  t->cur->inner = s;
  t->cur = s;
}

/* Count an open scope entered by a user coroutine (delta +1 or -1), and
** mirror the count where init.lua reads it without a call into C. */
void corio__foreign_add(corio_rt *rt, int delta) {
  lua_State *L = rt->L;
  rt->nforeign += (uint32_t)delta;
  lua_rawgeti(L, LUA_REGISTRYINDEX, rt->foreign_tab);
  lua_pushinteger(L, (lua_Integer)rt->nforeign);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
}

int corio__scope_leave(corio_rt *rt, corio_task *t, corio_scope *s) {
  corio_scope *c;
  s->closed = 1;
  if (s->foreign) {
    s->foreign = 0;
    corio__foreign_add(rt, -1);
  }
  if (t->cur == s) {
    t->cur = s->parent;
    t->cur->inner = NULL;
    return 0;
  }
  /* Left out of order (scope_leave in bindings/core.c closes the scopes
  ** still open inside s first, so this is a fallback): take s out of the
  ** task's chain, so that no scope is left pointing at it once it is
  ** freed. Returns 1 so that the caller can raise. */
  for (c = t->cur; c != &t->root && c->parent != s; c = c->parent) {}
  if (c == &t->root) return 0;
  c->parent = s->parent;
  if (s->parent != NULL) s->parent->inner = c;
  s->inner = NULL;
  return 1;
}

/* Wake t with Cancelled if it is blocked in an operation that can be
** undone; otherwise note that Cancelled is owed. */
static void wake_blocked(corio_rt *rt, corio_task *t) {
  corio_abort_fn abort;
  /* whatever t waits on: an upload whose body iterator t runs ends now */
  if (rt->http_up_iter > 0) corio__http_cancelled(rt, t);
  if (t->state != CORIO_ST_BLOCKED || t->abort == NULL) return;
  abort = t->abort;
  if (!abort(rt, t)) return;
  t->abort = NULL;
  corio__ready(rt, t, corio__deliver_cancelled);
}

/* The scopes that s's cancel reaches directly ("children" of s in the
** cancel tree): scope chains a suspended user coroutine took with it out
** of s (bindings/core.c scope_detach: their tasks are inside s too), the
** tasks spawned into s, and the scope s's owner entered inside it. Those
** already effectively cancelled (their subtree is marked, or being
** marked) and shields are left out. mark visits them in this order: the
** parked chains newest first, the tasks newest first, the inner scope.
** Each of these finds the next child at or before link l of its list. */
static corio_scope *next_inner(corio_scope *p) {
  corio_scope *i = p->inner;
  return i != NULL && !i->shield && !i->eff ? i : NULL;
}

static corio_scope *next_task(corio_scope *p, corio_link *l) {
  for (; l != &p->children; l = l->prev) {
    corio_task *c = corio_container_of(l, corio_task, sibling);
    if (!c->root.eff) return &c->root;
  }
  return next_inner(p);
}

static corio_scope *next_parked(corio_rt *rt, corio_scope *p,
                                corio_link *l) {
  for (; l != &rt->parked; l = l->prev) {
    corio_scope *b = &corio_container_of(l, corio_xscope, parked)->s;
    if (b->parent == p && !b->shield && !b->eff) return b;
  }
  return next_task(p, p->children.prev);
}

/* The child of p to visit after n (one of p's children, just visited
** with its subtree), or NULL. A list link that is its own neighbour was
** unlinked meanwhile (e.g. by a host's cancel callback): the list is then
** scanned again from its end, which finds only children not visited yet,
** as the visited ones are effectively cancelled. */
static corio_scope *next_sibling(corio_rt *rt, corio_scope *p,
                                 corio_scope *n) {
  corio_link *l;
  if (n == p->inner) return NULL;
  if (n->kind == CORIO_SCOPE_TASK) {
    l = &corio_container_of(n, corio_task, root)->sibling;
    return next_task(p, l->next == l ? p->children.prev : l->prev);
  }
  l = &corio_container_of(n, corio_xscope, s)->parked;
  return next_parked(rt, p, l->next == l ? rt->parked.prev : l->prev);
}

/* s just became effectively cancelled: mark its subtree, waking the
** tasks blocked in it, in depth-first order. The walk keeps no stack: it
** goes down to a child and back up by the parent links (every child's
** parent is the scope it was reached from), so it needs no memory, and so
** cannot fail half done, however deep or wide the tree (was: a stack of
** the runtime's, grown by realloc while cancelling, and abort() when that
** failed). A scope is marked (eff) as the walk reaches it. An abort hook
** that cancels another scope marks that one's subtree before this goes
** on; this walk then skips it, as it is marked. */
static void mark(corio_rt *rt, corio_scope *s) {
  corio_scope *x = s, *n;
  s->eff = 1;
  for (;;) {
    corio_task *o = corio__scope_owner(x);
    if (o != NULL && o->cur == x) wake_blocked(rt, o);
    n = next_parked(rt, x, rt->parked.prev);
    while (n == NULL && x != s) {
      if (x->parent == NULL) return;   /* (the tree changed under a hook) */
      n = next_sibling(rt, x->parent, x);
      if (n == NULL) x = x->parent;
    }
    if (n == NULL) return;
    n->eff = 1;
    x = n;
  }
}

/* Put the chain of scopes bottom..top (linked by inner), which a user
** coroutine left open when it yielded out of their bodies, back on top of
** t's innermost scope: the coroutine was resumed there. The scopes now
** belong to t, and their cancel state follows their new surroundings (an
** outer cancel there reaches them and their tasks, one from where they
** were reaches them no more; their own cancel stays). */
void corio__scope_reattach(corio_rt *rt, corio_task *t, corio_scope *bottom,
                           corio_scope *top) {
  corio_scope *c;
  bottom->parent = t->cur;
  t->cur->inner = bottom;
  t->cur = top;
  for (c = bottom; c != NULL; c = c == top ? NULL : c->inner) {
    int want = c->cancelled || (!c->shield && c->parent->eff);
    corio_container_of(c, corio_xscope, s)->owner = t;
    if (want && !c->eff) mark(rt, c);
    else c->eff = (uint8_t)want;
  }
}

void corio__scope_cancel(corio_rt *rt, corio_scope *s) {
  if (s->cancelled) return;
  s->cancelled = 1;
  if (!s->eff) mark(rt, s);
}

/* Rule 5: the outermost cancelled scope below a shield absorbs Cancelled;
** a scope whose surroundings are cancelled too lets it pass. */
int corio__scope_absorbs(corio_scope *s) {
  if (!s->cancelled) return 0;
  if (s->shield || s->parent == NULL) return 1;
  return !s->parent->eff;
}

/* [-0, +0] Append the value at the top of L to the list at index list
** unless it is there already. */
static void list_add_once(lua_State *L, int list) {
  int n = (int)lua_objlen(L, list), i;
  for (i = 1; i <= n; i++) {
    int same;
    lua_rawgeti(L, list, i);
    same = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    if (same) {
      lua_pop(L, 1);
      return;
    }
  }
  lua_rawseti(L, list, n + 1);
}

void corio__scope_oom(corio_rt *rt, corio_scope *s) {
  int *errs = corio__scope_errs(rt, s);
  if (*errs == LUA_NOREF) *errs = rt->oom_ref;
}

/* [-0, +0] Append the error at idx to s's error list unless it is there.
** A corio error that already carries a list (one that crossed an inner scope
** or task boundary with several errors) brings that list along: the
** scope sets `errors` of its first error to its own list, so otherwise
** the inner errors after the first would be lost. */
void corio__scope_add_error(corio_rt *rt, lua_State *L, corio_scope *s,
                            int idx) {
  int list;
  int *errs = corio__scope_errs(rt, s);   /* stays put */
  if (*errs == rt->oom_ref) return;       /* failed for want of memory */
  idx = idx < 0 ? lua_gettop(L) + idx + 1 : idx;
  if (*errs == LUA_NOREF) {
    lua_createtable(L, 2, 0);
    *errs = corio__ref(rt, L);
  }
  corio__getref(rt, L, *errs);
  list = lua_gettop(L);
  lua_pushvalue(L, idx);
  list_add_once(L, list);
  if (corio__is_error(L, idx, NULL)) {   /* not a user's own table */
    lua_pushliteral(L, "errors");
    lua_rawget(L, idx);
    if (lua_istable(L, -1)) {
      int n = (int)lua_objlen(L, -1), i;
      for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        list_add_once(L, list);
      }
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* A child of s ended; when the last one ends, its waiting owner goes on. */
void corio__scope_child_ended(corio_rt *rt, corio_scope *s) {
  s->nchildren--;
  if (s->nchildren != 0 || !s->waiting) return;
  s->waiting = 0;
  if (s->kind == CORIO_SCOPE_TASK) {
    corio__task_try_finish(rt, corio__scope_owner(s));
  } else {
    corio_task *o = corio__scope_owner(s);
    o->abort = NULL;
    corio__ready(rt, o, corio__deliver_true);
  }
}

/* s is left before its children ended (its owner cannot wait for them):
** scope to waits for them instead; cancel: cancel them too. */
void corio__scope_hand_over(corio_rt *rt, corio_scope *s, corio_scope *to,
                            int cancel) {
  corio_link *l;
  while ((l = corio_list_shift(&s->children)) != NULL) {
    corio_task *c = corio_container_of(l, corio_task, sibling);
    c->root.parent = to;
    corio_list_push(&to->children, &c->sibling);
    to->nchildren++;
    s->nchildren--;
    if (cancel) corio__cancel_task(rt, c);
  }
}
