/*
** bindings.h: helpers shared by the Lua C modules in bindings/: fetching
** the runtime, the prologue of every blocking call (loop check, yield
** check, checkpoint), argument errors in Lua's wording, and registration.
*/
#ifndef CORIO_BINDINGS_H
#define CORIO_BINDINGS_H

#include <math.h>

#include "../runtime/internal.h"

/* Every binding closure carries the runtime as upvalue 1. A binding
** called from the task the scheduler is resuming takes the runtime from
** the scheduler instead: LuaJIT spends ~45 instructions reading a light
** userdata out of an upvalue, and most binding calls come from the
** running task's own thread. That runtime is L's: a state has one
** runtime, and L is the thread it is resuming. */
static inline corio_rt *corio__rt_of(lua_State *L) {
  corio_rt *rt = corio__tls_rt;
  if (rt != NULL && rt->current != NULL && rt->current->co == L) return rt;
  return (corio_rt *)lua_touserdata(L, lua_upvalueindex(1));
}
#define RT(L) corio__rt_of(L)

/* Returned (as `false, NOLOOP`) by a blocking call made outside a
** running loop; the Lua wrapper then runs it under corio.run (rule 11). */
extern char corio__noloop;
#define CORIO_NOLOOP ((void *)&corio__noloop)

typedef struct corio_reg {
  const char *name;
  lua_CFunction fn;
} corio_reg;

/* [-0, +0] Set the functions of r into the table at idx as closures over
** the runtime. */
void corio__register(lua_State *L, corio_rt *rt, int idx,
                     const corio_reg *r);

/* Raise "bad argument #n to 'fname' (msg)" positioned at the caller
** `level` frames up (1: the code that called this C function; 2: its
** caller, for functions reached through a wrapper in lua/corio). */
int corio__argerror(lua_State *L, int level, int n, const char *fname,
                    const char *msg);
double corio__checkseconds(lua_State *L, int level, int idx, int n,
                           const char *fname);

/* The prologue of a blocking call named fname. Returns CORIO_GO when the
** call may go on (the running task in *pt), or what the C function must
** return: the number of values it pushed, `false, NOLOOP` outside a loop
** or `false, Cancelled` at a cancelled checkpoint (rule 3), or, for the
** latter, lua_yield's result: raising Cancelled is a fast path, so once
** the task's budget is spent it first yields to the back of the ready
** queue and gets the two values back on resume (rule 15: a task that
** swallows Cancelled in a loop cannot hold the loop). */
#define CORIO_GO (-1000)
int corio__enter(lua_State *L, corio_rt *rt, corio_task **pt,
                 const char *fname);
/* As corio__enter, after firing the deadlines that have passed
** (corio__timers_catch_up): for the checkpoints that may complete without
** waiting for the loop (yield, sleep, checkpoint), so that a deadline
** that passed while the task ran cancels the first of them. */
static inline int corio__enter_now(lua_State *L, corio_rt *rt,
                                   corio_task **pt, const char *fname) {
  /* inline: with no timer armed (W1, W6, W7) this is a load and a test */
  if (rt->nheap != 0 && rt->current != NULL) corio__timers_catch_up(rt);
  return corio__enter(L, rt, pt, fname);
}

/* The object at idx if it is a userdata of at least size bytes whose
** first word is magic, else NULL. The size first: the magic is read only
** inside the object (a zero-size userdata, newproxy's or another
** library's, has no first word). lua_objlen is 0 for a light userdata,
** whose pointer may be anything (corio.core's NOLOOP is a char; another
** library's may point nowhere), and lua_touserdata is NULL for every
** other type: one call and one compare check both type and size. */
static inline void *corio__toobj(lua_State *L, int idx, size_t size,
                                 uint32_t magic) {
  void *p = lua_touserdata(L, idx);
  if (p != NULL && lua_objlen(L, idx) >= size && *(uint32_t *)p == magic)
    return p;
  return NULL;
}
/* The object of type tname at idx (corio__toobj), or a "bad argument"
** error naming fname. Inline, so that the type check costs no more than
** the call it replaces. */
void *corio__checkobj_fail(lua_State *L, int idx, const char *tname);
static inline void *corio__checkobj(lua_State *L, int idx, size_t size,
                                   uint32_t magic, const char *tname) {
  void *p = corio__toobj(L, idx, size, magic);
  return p != NULL ? p : corio__checkobj_fail(L, idx, tname);
}
#define CORIO_CHECK(L, idx, type, magic, tname) \
  ((type *)corio__checkobj((L), (idx), sizeof(type), (magic), (tname)))

int corio__method(lua_State *L);

/* [-0, +1] Push task t's userdata (t must be alive). */
void corio__push_task(corio_rt *rt, lua_State *L, corio_task *t);
corio_task *corio__check_task(lua_State *L, int idx);

#endif
