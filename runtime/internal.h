/*
** internal.h: the runtime's data structures and the corio__ functions that
** the files of runtime/ and bindings/ share. Nothing here is public API; the
** public surface is corio.h.
**
** Ownership in one paragraph: a task is a full userdata (corio_task inline)
** whose Lua thread runs the task body. While the task is alive, both the
** userdata and the thread are pinned in the runtime's anchor table (slots
** 2k and 2k+1, k = task->slot); C pointers to a task are valid exactly
** while it is alive. When the task ends, the pins are dropped and its
** results move to task->rnum (a number, boolean or nothing) or to the weak
** results table keyed by the userdata.
*/
#ifndef CORIO_INTERNAL_H
#define CORIO_INTERNAL_H

#include <pthread.h>
#include <stdint.h>
#include <lua.h>
#include <lauxlib.h>
#include <uv.h>

#include "corio.h"
#include "queue.h"

typedef struct corio_task corio_task;
typedef struct corio_scope corio_scope;
typedef struct corio_timer corio_timer;
typedef struct corio_lock corio_lock;

/* A hook run when a blocked task is cancelled: undo what the blocking
** operation holds (leave a queue, stop a transfer). Returns 1 if the task
** can be woken now with Cancelled, 0 if the hook woke the task itself or
** the operation cannot be undone and will wake the task when it completes
** (its result stands; the cancel surfaces at the next checkpoint, as
** cur->eff stays set). Idempotent. */
typedef int (*corio_abort_fn)(corio_rt *rt, corio_task *t);
/* Pushes a woken task's resume values onto t->co just before it runs. */
typedef void (*corio_deliver_fn)(corio_task *t);

enum { CORIO_TIMER_SLEEP = 1, CORIO_TIMER_DEADLINE = 2 };

struct corio_timer {
  uint64_t when;      /* deadline in ns of the runtime clock */
  uint32_t idx;       /* heap position; UINT32_MAX while not armed */
  uint32_t seq : 30;  /* arming order: equal deadlines fire FIFO */
  uint32_t kind : 2;  /* CORIO_TIMER_*: what contains this timer */
};

enum {
  CORIO_SCOPE_TASK,   /* the body of a task */
  CORIO_SCOPE_GROUP,  /* corio.scope */
  CORIO_SCOPE_TIMEOUT,
  CORIO_SCOPE_MOVE_ON,
  CORIO_SCOPE_SHIELD
};

/* A cancel scope and task group in one. Scopes form a tree across tasks:
** a task's root scope has as parent the scope the task was spawned into. */
struct corio_scope {
  uint8_t eff;          /* effectively cancelled: cancelled, or parent->eff
                           and not shielded. Checkpoints read only this
                           (first: it sits next to the task's hot fields). */
  uint8_t kind : 3;     /* CORIO_SCOPE_* */
  uint8_t cancelled : 1; /* cancel() was called or the deadline fired */
  uint8_t shield : 1;
  uint8_t closed : 1;   /* returned: takes no new children */
  uint8_t fired : 1;    /* its own deadline fired */
  uint8_t waiting : 1;  /* owner is blocked until nchildren == 0 */
  uint8_t caught : 1;   /* a Cancelled belonging to this scope was absorbed */
  uint8_t child_cancelled : 1; /* a child task ended cancelled */
  uint8_t foreign : 1;  /* entered by a user coroutine, not the owner's
                           own thread: counted in rt->nforeign while open */
  uint32_t nchildren;
  corio_scope *parent;  /* enclosing scope; NULL for the root task's root */
  corio_scope *inner;   /* scope the owner entered inside this one, or NULL */
  corio_link children;  /* live tasks spawned into this scope */
  /* Errors recorded and deferred functions: in the corio_xscope, or for a
  ** task's root scope in its side record (corio_tside). */
};

/* A scope entered by corio.scope/timeout/move_on_after/shield: a userdata
** of type "corio.Scope", pinned through ref while entered. */
typedef struct corio_xscope {
  uint32_t magic;        /* CORIO_MAGIC_SCOPE */
  corio_scope s;
  corio_task *owner;     /* task whose body runs in this scope (a task's
                            root scope has none: corio__scope_owner) */
  int errs;              /* anchor ref: array of errors recorded, or NOREF */
  int defers;            /* anchor ref: array of deferred functions, or
                            NOREF */
  corio_timer deadline;  /* armed when the scope has a deadline */
  double seconds;        /* the relative timeout asked for, for messages */
  lua_State *L;          /* the coroutine whose body entered it */
  int ref;               /* anchor ref to this userdata while entered (and
                            while it waits in rt->scope_pool) */
  uint8_t exposed;       /* the userdata may be held by code that could use
                            it after the scope is left (corio.scope gives
                            it to the body; scope_top and scope_detach hand
                            it out): never reused (rt->scope_pool) */
  uint8_t body;          /* a body of its own (gather.lua's own_body) */
  uint8_t pooled;        /* a body scope in init.lua's pool (counted in
                            rt->nbody_pool), for ffi_body_enter */
  corio_link parked;     /* in rt->parked while the outermost scope of a
                            chain a user coroutine took with it when it
                            yielded out (bindings/core.c scope_detach) */
} corio_xscope;

enum { /* task->status, as task:status() names them */
  CORIO_PENDING, CORIO_RUNNING, CORIO_DONE, CORIO_FAILED, CORIO_CANCELLED
};
enum { /* task->state: where the scheduler has the task */
  CORIO_ST_READY,    /* in the ready queue */
  CORIO_ST_RUNNING,  /* being resumed */
  CORIO_ST_BLOCKED,  /* suspended, woken by its operation or by cancel */
  CORIO_ST_ENDING,   /* body returned; waits for children or defers */
  CORIO_ST_ENDED
};
enum { /* task->rtype: where the ended task's results are */
  CORIO_R_NONE, CORIO_R_NIL, CORIO_R_BOOL, CORIO_R_NUM, CORIO_R_TABLE
};

/* Each Lua-visible object starts with a magic number, so bindings can
** check an argument's type with a load and a compare instead of a
** registry lookup by name (luaL_checkudata) on every call. */
enum {
  CORIO_MAGIC_TASK = 0x7a534b31, CORIO_MAGIC_SCOPE = 0x7a53434f,
  CORIO_MAGIC_SEM = 0x7a53454d, CORIO_MAGIC_LOCK = 0x7a4c434b,
  CORIO_MAGIC_EVENT = 0x7a45564e, CORIO_MAGIC_CHANNEL = 0x7a43484e,
  CORIO_MAGIC_THREADFN = 0x7a544846
};

/* A host's C function for corio.to_thread (corio_push_thread_fn). */
typedef struct corio_threadfn {
  uint32_t magic;          /* CORIO_MAGIC_THREADFN */
  lua_CFunction fn;
} corio_threadfn;

struct corio_task {
  /* The fields a switch touches come first, so that waking and resuming
  ** a task reads few cache lines of it (a W1 or W7 task is cold by the
  ** time it runs). */
  uint32_t magic;         /* CORIO_MAGIC_TASK */
  uint8_t status;         /* CORIO_PENDING.. */
  uint8_t state;          /* CORIO_ST_* */
  uint8_t rtype;          /* CORIO_R_* */
  uint8_t in_defers : 1;  /* the thread running is the defer thread */
  uint8_t fresh : 1;      /* spawned by a task on the real clock, its
                             first run not ended: see born */
  uint8_t side : 1;       /* its side record (corio_tside) is in use */
  uint8_t named : 1;      /* has an entry in the runtime's names table */
  uint8_t cpwatch : 1;    /* counts its checkpoints (side->checkpoints) */
  /* Next to the status: read on a task's first resume (born) and by a
  ** join of an ended task (rnum), when the rest of the record is cold. */
  union {
    void *wait_obj;       /* the object waited on (lock, channel, host op) */
    uint64_t born;        /* while fresh: the coarse clock at its spawn
                             burst's start, then from its first resume
                             the time from there to it (corio__base) */
    double rnum;          /* after the end: result if rtype is NUM/BOOL */
  };
  lua_State *co;          /* the thread resumed by the scheduler */
  union {
    corio_task *ready_next; /* ready queue link, while ready */
    const char *wait_what;  /* "sleep", "channel recv"..., while blocked */
  };
  corio_scope *cur;       /* innermost scope: checkpoints test cur->eff */
  union {                 /* a blocked task has no deliver hook, and a
                             ready one no abort hook */
    corio_abort_fn abort;     /* set while blocked and abortable */
    corio_deliver_fn deliver; /* set while ready with values to push */
  };
  uint16_t budget;        /* fast-path completions left before a yield */
  uint16_t nlocks;        /* locks held (they are in rt->held_locks) */
  int slot;               /* anchor slot pair, -1 once ended */
  lua_State *wait_L;      /* thread that blocked (co, or a user coroutine) */
  corio_scope root;       /* the task body's scope (eff at byte 64) */
  union {
    corio_timer sleep;    /* CORIO_TIMER_SLEEP while in corio.sleep */
    corio_link wait;      /* in a waiter queue while blocked on an object */
  } u;
  corio_link sibling;     /* in root.parent->children while alive */
  uint32_t site;          /* spawn site (corio__task_site), 0 if unknown */
  uint32_t id;
};

/* 144 bytes: with LuaJIT's 48-byte userdata header the block is 192
** bytes, three cache lines (heap.c's classes are 16-byte steps). W1 and
** W7 took 12-22% less CPU time than with 240 bytes, and 208 gained
** nothing: keep it so (docs/internals.md). */
_Static_assert(sizeof(corio_task) <= 144,
               "corio_task outgrew its 192-byte block (docs/internals.md)");

/* What few tasks need, kept out of the Task record (which every task's
** spawn writes and its switches read) in the runtime's side table, by
** task slot, while t->side. Only a live task has one (it has a slot);
** finalize ends it. Entries never move (the table grows by chunks). */
typedef struct corio_tside {
  corio_link *joiners;    /* ring of tasks blocked in join() on this one */
  int errs;               /* root scope: anchor ref, errors recorded */
  int defers;             /* root scope: anchor ref, deferred functions */
  uint32_t checkpoints;   /* while t->cpwatch: checkpoints passed since
                             the task's first core.checkpoints()
                             (corio.testing's assert_checkpoints) */
} corio_tside;

#define CORIO_SIDE_CHUNK 256

enum { CORIO_SITE_NONE, CORIO_SITE_KEEP /* task_keep of a task's results */ };

/* The task whose body runs in s: for a task's root scope the task that
** contains it, else the owner its corio_xscope records (NULL if none). */
static inline corio_task *corio__scope_owner(corio_scope *s) {
  if (s->kind == CORIO_SCOPE_TASK)
    return corio_container_of(s, corio_task, root);
  return corio_container_of(s, corio_xscope, s)->owner;
}

struct corio_lock {
  uint32_t magic;         /* CORIO_MAGIC_LOCK */
  corio_task *owner;      /* holder, or NULL */
  corio_link held;        /* in rt->held_locks while owned */
  corio_link waiters;
  int broken_ref;         /* anchor ref: message naming the dead owner */
};

typedef struct corio_sem {
  uint32_t magic;         /* CORIO_MAGIC_SEM */
  double count;
  corio_link waiters;
} corio_sem;

typedef struct corio_event {
  uint32_t magic;         /* CORIO_MAGIC_EVENT */
  int set;
  corio_link waiters;
} corio_event;

typedef struct corio_channel {
  uint32_t magic;         /* CORIO_MAGIC_CHANNEL */
  uint32_t cap, n, head;
  corio_rt *rt;           /* runtime of the state that made it */  /* ring of values in the userdata's env table */
  int closed;
  corio_link recvq, sendq;
} corio_channel;

/* A spawn site's function and its chunk name (see task.c). */
#define CORIO_SRCCACHE 8
typedef struct corio_srccache {
  const void *fn;     /* the function, pinned by ref for a GC cycle */
  const char *src;    /* interned chunk name, NULL for corio's own */
  int own;
  int ref;
  int line;           /* the last spawn line seen in it (0: none), and */
  uint32_t site;      /* its corio__intern_site id */
} corio_srccache;

/* Bounds of the interned chunk names and spawn sites, kept for the
** runtime's life (docs/internals.md "Spawn sites"): past them a new
** chunk name or site is not kept and the task's site is unknown. */
#define CORIO_MAX_SRCS 1024
#define CORIO_MAX_SITES 65536

/* A spawn site: task->site - 1 indexes rt->sites. */
typedef struct corio_site {
  const char *src;    /* interned chunk name */
  int line;
} corio_site;

/* Scopes left through the FFI fast path (bindings/core.c ffi_scope_leave)
** that no code can reach any more wait here for reuse, still pinned; the
** refs of other scopes left that way wait in rt->scope_refs until the next
** scope entered takes them over (an FFI call cannot touch Lua state). */
#define CORIO_SCOPE_POOL 16

#define CORIO_BUDGET 64       /* fast paths a task may take between yields */
#define CORIO_POLL_EVERY 1024 /* resumes between libuv polls while busy */
#define CORIO_POLL_NS 2000000 /* ...or this long (default), every 32 resumes */
#define CORIO_BURST_GAP 50000000u   /* a spawn this long after the last */
#define CORIO_BURST_MAX 1000000000u /* or this long after the burst's first
                                       starts a burst (corio__burst) */

struct corio_rt {
  lua_State *L;             /* main state the runtime lives in */
  uv_loop_t *loop;
  uv_loop_t own_loop;       /* used when the host gave no loop */
  uv_timer_t timer;         /* fires the earliest heap deadline */
  uv_async_t sigint;        /* woken by loop.c's own SIGINT handler */
  uv_async_t sigusr1;       /* and by its SIGUSR1 handler */
  struct corio_heapent *heap; /* 4-ary min-heap of armed deadlines
                               (timer.c) */
  uint32_t nheap, heapcap, seq;
  uint64_t armed_when;      /* deadline the uv timer is set for, or 0 */
  uint64_t poll_ns;         /* busy queue: poll at least this often (0: by
                               count only; CORIO_POLL_MS, bench/README) */
  corio_task *ready_head, *ready_tail;
  corio_task *current;      /* task being resumed, or NULL */
  corio_task *root;         /* root task of the running corio.run */
  int anchor;               /* registry ref: table pinning tasks */
  int refs;                 /* registry ref: table of corio__ref values */
  int names;                /* registry ref: weak-keyed task names */
  corio_link http_clients;  /* live HTTP clients (http.c) */
  uint32_t http_up_iter;    /* uploads whose task runs its body iterator
                               (http.c): while 0, a cancel skips them */
  int foreign_tab;          /* registry ref: {nforeign}, read by init.lua */
  uint32_t nforeign;        /* open scopes entered by user coroutines
                               (scope.foreign), parked chains included: while
                               0, init.lua's coroutine wrappers skip the
                               scope bookkeeping of rule 13 */
  int *free_slots;          /* free task slot pairs */
  int nfree, freecap, next_slot;
  int *free_refs;           /* free single anchor refs (negative space) */
  int nfreerefs, freerefscap, next_ref;
  uint32_t next_id;
  uint32_t ntasks;          /* live tasks */
  uint32_t nexternal;       /* pending operations that wake tasks from
                               outside: fs, curl, threads, host ops */
  uint32_t nrealsleep;      /* of those, sleep_real timers: they do not
                               hold the virtual clock back */
  uint32_t nidle;           /* tasks in wait_all_tasks_blocked */
  corio_link held_locks;    /* locks that have an owner (lock->held) */
  corio_link parked;        /* detached scope chains (corio_xscope.parked):
                               walk_tasks visits their tasks too */
  corio_link idle_waiters;
  int running;              /* inside corio__run_root */
  int interrupted;          /* SIGINT seen */
  int cli_root;             /* the root task is the CLI main chunk */
  int vclock;               /* autojump bodies running: the virtual
                               clock is on while > 0 */
  uint64_t vnow;            /* virtual clock, ns */
  uint64_t clock_off;       /* added to uv_hrtime() for the real clock:
                               where the virtual clock left it, so that
                               corio.now() never goes back (corio__now) */
  uint64_t coarse_res;      /* resolution of corio__coarse, ns */
  uint64_t burst_born;      /* first spawn of the current burst, and */
  uint64_t burst_last;      /* the last one (corio__burst) */
  int timers_due;           /* the uv timer fired; process after uv_run */
  int in_uv;                /* inside corio's own uv_run */
  int api_step;             /* inside corio_step or corio_finish: a host
                               function (or loop callback) calling them
                               again gets UV_EBUSY */
  int own_state;             /* corio_new created rt->L */
  int nclosing;              /* handles of rt closing (corio__close_handle) */
  int free_on_close;         /* destroyed: the last close frees rt */
  int handle_signals;        /* SIGINT cancels the root; SIGUSR1 dumps */
  int root_ref;              /* ref to the root task's userdata in a run */
  uv_async_t async;           /* wakes the loop for corio_op_post */
  pthread_mutex_t post_lock;  /* guards posted */
  struct corio_op *posted;    /* ops posted from other threads */
  uint32_t nops;              /* host ops counted as pending work */
  struct corio_op *ops;       /* every host op not freed yet (host.c) */
  struct corio_host_call *hcall; /* the innermost call of a host function
                                 made by corio_push_async, or NULL */
  int free_pending;           /* corio_free was called inside a step: free
                                 when the outermost API call returns */
  /* --debug: the watchdog (debug.c) and what the loop tells it */
  int debug, slow_ms, dbg_stop;
  pthread_t dbg_thread;
  pthread_mutex_t dbg_mu;
  pthread_cond_t dbg_cv;
  uint32_t step_seq;          /* bumped at each resume (atomic) */
  int in_step;                /* 1: a task is being resumed; 2: the
                                 watchdog took that step (atomic) */
  int hook_ran;               /* the slow-step hook reported (atomic) */
  uint64_t flagged_at;        /* when that step began, about */
  char dbg_name[128];         /* the resumed task's name, for the watchdog */
  int dump_due;               /* SIGUSR1 seen: print the task tree */
  struct corio_work_state *work_states; /* to_thread's worker pool */
  int deadlock;             /* a deadlock was found in this run */
  /* The CLI main chunk's corio.run(fn) (rule 11) runs fn in a child scope
  ** of the root: a deadlock found while it runs cancels that scope, not
  ** the root, and that corio.run raises the deadlock error, as under
  ** luajit (bindings/core.c run_nested). */
  corio_scope *nested_run;  /* that scope, pinned by nested_ref, or NULL */
  int nested_ref;           /* anchor ref to its userdata, or NOREF */
  int nested_deadlock;      /* the deadlock error is in "corio.deadlock" */
  corio_tside **side;       /* side records of tasks, by slot, in chunks
                               of CORIO_SIDE_CHUNK (corio__task_side) */
  int nside;                /* chunks in side */
  const char **own_srcs;    /* chunk names of corio's own Lua files */
  int nown;
  char errmsg[512];         /* last error of the C API */
  char *errmsg_long;        /* ... when it does not fit (malloc'd), or NULL */
  /* interned spawn-site chunk names (strdup'd, freed with the runtime),
  ** at most CORIO_MAX_SRCS of them */
  char **srcs;
  uint32_t nsrcs, srcscap;
  uint16_t *srchash;        /* 2 * CORIO_MAX_SRCS slots: index + 1, 0 = empty */
  corio_site *sites;        /* spawn sites (corio__intern_site) */
  uint32_t nsites, sitescap;
  uint32_t *sitehash;       /* open addressing: site id, 0 = empty */
  uint32_t sitehcap;        /* a power of 2, or 0 */
  corio_srccache srccache[CORIO_SRCCACHE]; /* see spawn_site in task.c */
  int srccache_armed;       /* a sentinel will empty it (srccache_gc) */
  int ud_tasks;             /* registry ref of the Task metatable */
  corio_xscope *scope_pool[CORIO_SCOPE_POOL]; /* closed, unreachable scope
                               records, pinned by their ref, for reuse */
  int nscope_pool;
  int scope_refs[CORIO_SCOPE_POOL]; /* anchor refs that still pin a scope
                               left through the FFI: the next scope entered
                               reuses the slot */
  int nscope_refs;
  int nbody_pool;           /* body scopes in init.lua's pool (M._body) */
  lua_CFunction isyieldable;
  int pcall_ref;            /* registry ref: the function of corio__pcall */
  int oom_ref;              /* ref: {"not enough memory"}, shared, never
                               changed (corio__scope_oom) */
  /* A step runs in one protected call (corio__run_step): an error that
  ** leaves the scheduler is caught there. A hot path that may raise one
  ** names itself here while it may (two stores instead of a pcall of its
  ** own), so that the step can finish its work; from anywhere else the
  ** run is abandoned (broken) with the error's message. */
  uint8_t oom_site;         /* CORIO_SITE_*: what was being done */
  uint8_t broken;           /* the run was abandoned: see broken_msg */
  corio_task *oom_task;     /* the task it was being done for */
  char broken_msg[160];
};

/* Every corio suspension leaves its task blocked or in the ready queue
** before it yields; a bare coroutine.yield leaves it running. So whoever
** sees a yield come out of a task's thread (the scheduler, or init.lua's
** coroutine.resume for a user coroutine inside the task) can tell the
** two apart without marking the yielded values. */
#define CORIO_OWN_YIELD(t) ((t)->state != CORIO_ST_RUNNING)

/* rt.c */
/* Out of memory in the scheduler (docs/errors.md): code that runs outside
** any protected call (the resume loop, a task's end, waking a task with
** Cancelled, corio_new, corio_start) must not raise, as LuaJIT's panic
** then ends the process. Its allocating parts run in corio__pcall:
** [-(nargs), +(nresults) or +1] fn(rt, L, ud) in a protected call on L
** with the nargs values on top of L as its stack; returns 0 (nresults
** values left) or a LUA_ERR* status, with the error value (for a memory
** error LuaJIT's preallocated "not enough memory" string) on top. It
** allocates nothing before the call is protected. Not for hot paths: a
** pcall costs ~100 instructions. */
typedef void (*corio_pfn)(corio_rt *rt, lua_State *L, void *ud);
int corio__pcall(corio_rt *rt, lua_State *L, int nargs, int nresults,
                 corio_pfn fn, void *ud);
corio_rt *corio__rt(lua_State *L);  /* the runtime of L's state, or NULL */
int corio__ref(corio_rt *rt, lua_State *L);          /* [-1, +0] */
void corio__unref(corio_rt *rt, lua_State *L, int ref);
void corio__getref(corio_rt *rt, lua_State *L, int ref); /* [-0, +1] */
void corio__setref(corio_rt *rt, lua_State *L, int ref); /* [-1, +0] */
void corio__push_anchor(corio_rt *rt, lua_State *L);     /* [-0, +1] */
uint64_t corio__now(corio_rt *rt);
uint64_t corio__base(corio_rt *rt, corio_task *t);
uint64_t corio__coarse(corio_rt *rt);
uint64_t corio__burst(corio_rt *rt);
const char *corio__intern_src(corio_rt *rt, const char *src);
/* The id of spawn site src:line (src interned), made if new; 0 if src is
** NULL, memory ran out or CORIO_MAX_SITES are kept (the site is then
** unknown). corio__intern_src returns NULL past CORIO_MAX_SRCS names. */
uint32_t corio__intern_site(corio_rt *rt, const char *src, int line);
/* Where t was spawned, or NULL if unknown. */
static inline const corio_site *corio__task_site(corio_rt *rt,
                                                 corio_task *t) {
  return t->site != 0 ? &rt->sites[t->site - 1] : NULL;
}

/* A chunk name as messages show it: without Lua's '@' (a file) or '='
** (a literal name) prefix. */
static inline const char *corio__src_shown(const char *src) {
  return src[0] == '@' || src[0] == '=' ? src + 1 : src;
}

int corio__is_own_src(corio_rt *rt, const char *src);
void corio__add_own_src(corio_rt *rt, const char *src);
int corio__slot_alloc(corio_rt *rt);
void corio__slot_free(corio_rt *rt, int slot);
corio_rt *corio__rt_create(lua_State *L, uv_loop_t *loop);
/* A switch from the environment variable name (rt.c): 1 for 1, true, yes,
** on; 0 for 0, false, no, off (any case), unset or empty; any other value
** is 0 with a warning on stderr naming it. */
int corio__env_flag(const char *name);
void corio__rt_destroy(corio_rt *rt, int lua_alive);
/* In a state corio made, allocate big blocks with malloc from now on
** (api.c; corio.fs calls it before reading large chunks). */
void corio__big_blocks(corio_rt *rt);

/* heap.c: the allocator of the states corio makes. A new state with all
** its blocks on corio's heap (reserve: bytes of address space, 0 for
** the default), or NULL (no address space: use LuaJIT's);
** after lua_close, release the heap of a state whose allocator was f, ud
** (nothing if f is another allocator). */
lua_State *corio__heap_newstate(size_t reserve);
void corio__heap_release(lua_Alloc f, void *ud);
int corio__heap_owns(lua_State *L);
size_t corio__heap_class_size(size_t n);

/* loop.c */
void corio__ready(corio_rt *rt, corio_task *t, corio_deliver_fn fn);
int corio__run_root(corio_rt *rt, lua_State *L, int nargs);
int corio__run_start(corio_rt *rt, lua_State *L, int nargs);
void corio__sigint_cb(uv_async_t *h);
void corio__sigusr1_cb(uv_async_t *h);
void corio__signals_release(corio_rt *rt);
int corio__run_step(corio_rt *rt, int mode);
int corio__run_finish(corio_rt *rt, lua_State *L);
int corio__suspend(corio_rt *rt, lua_State *L, corio_task *t,
                   corio_abort_fn abort, const char *what, void *obj);
int corio__suspend_keep(corio_rt *rt, lua_State *L, corio_task *t,
                        corio_abort_fn abort, const char *what, void *obj,
                        int nkeep);
int corio__yieldable(corio_rt *rt, lua_State *L);
int corio__resumed_by_corio(lua_State *L, corio_task *t);
/* t's side record, or NULL if it has none. */
static inline corio_tside *corio__task_side_get(corio_rt *rt, corio_task *t) {
  if (!t->side) return NULL;
  return &rt->side[t->slot / CORIO_SIDE_CHUNK][t->slot % CORIO_SIDE_CHUNK];
}
/* t passed a checkpoint: counted only for a task that asked (cpwatch),
** so that the count takes no room in every Task. */
static inline void corio__checkpoint(corio_rt *rt, corio_task *t) {
  if (t->cpwatch) corio__task_side_get(rt, t)->checkpoints++;
}
/* FFI fast paths (init.lua calls them from JIT-compiled code; they touch
** no Lua state): the running task if it may complete a blocking call at
** once, as corio__enter + corio__fast would let it (not cancelled, budget
** left), else NULL: the caller then takes the Lua C function. The caller
** commits with corio__ffi_done once it knows its operation completes. */
static inline corio_task *corio__ffi_task(corio_rt *rt) {
  corio_task *me = rt->current;
  if (me == NULL || me->cur->eff || me->budget <= 1) return NULL;
  return me;
}
static inline void corio__ffi_done(corio_rt *rt, corio_task *me) {
  corio__checkpoint(rt, me);
  me->budget--;
}

/* Whether the running task can suspend from L: LuaJIT can yield there,
** and a yield from L reaches the scheduler (L is the task's thread, or a
** user coroutine resumed through corio's coroutine.resume/wrap). */
static inline int corio__can_suspend(corio_rt *rt, lua_State *L) {
  corio_task *t = rt->current;
  if (rt->isyieldable != NULL && !corio__yieldable(rt, L)) return 0;
  return t == NULL || L == t->co || corio__resumed_by_corio(L, t);
}
int corio__cannot_suspend(lua_State *L, const char *what);
void corio__push_cannot_suspend(lua_State *L, const char *what);
int corio__fast(corio_rt *rt, lua_State *L, corio_task *t, int nvals);
void corio__walk_tasks(corio_rt *rt, void (*fn)(corio_task *, void *),
                       void *ud);
void corio__deliver_true(corio_task *t);
void corio__deliver_cancelled(corio_task *t);
int corio__step(corio_rt *rt, int mode);

/* task.c */
corio_task *corio__spawn(corio_rt *rt, lua_State *L, corio_scope *parent,
                         int nargs, int anchor);
void corio__task_body_ended(corio_rt *rt, corio_task *t, int status);
int corio__task_push_results(corio_rt *rt, lua_State *L, corio_task *t,
                             int ud);
void corio__task_try_finish(corio_rt *rt, corio_task *t);
int corio__push_results_safe(corio_rt *rt, lua_State *L, corio_task *t,
                             int ud);
/* [-1, +0] After CORIO_SITE_KEEP failed for t with the error on top: the
** task fails with it (loop.c's step recovery). */
void corio__task_keep_failed(corio_rt *rt, lua_State *L, corio_task *t);
/* Make the side table's chunk for slot, so that a task given the slot
** can have its side record without allocating: 0, or -1 without memory.
** corio__spawn calls it for the slot it took when corio__side_ready says
** the chunk is not there (a freed slot's chunk always is). */
int corio__side_reserve(corio_rt *rt, int slot);
static inline int corio__side_ready(const corio_rt *rt, int slot) {
  int c = slot / CORIO_SIDE_CHUNK;
  return c < rt->nside && rt->side[c] != NULL;
}
/* http.c: t's innermost scope was just cancelled (effectively): an
** upload whose body iterator t runs there ends */
void corio__http_cancelled(corio_rt *rt, corio_task *t);
/* t's side record, made if it has none (t is alive). Allocates nothing
** and cannot fail (corio__side_reserve). */
corio_tside *corio__task_side(corio_rt *rt, corio_task *t);
/* Where s keeps the anchor ref of its errors or of its deferred functions
** (a task's root scope: in its side record, made if need be). */
int *corio__scope_errs(corio_rt *rt, corio_scope *s);
int *corio__scope_defers(corio_rt *rt, corio_scope *s);
int corio__where(corio_rt *rt, corio_task *t, char *buf, size_t len);
void corio__task_name(corio_rt *rt, lua_State *L, corio_task *t);
/* [-0, +1] The name as the reports show it (debug.c); [-1, +1] the
** string on top of the stack made so. */
void corio__name_shown(lua_State *L);
void corio__task_name_shown(corio_rt *rt, lua_State *L, corio_task *t);
void corio__task_name_at(corio_rt *rt, lua_State *L, corio_task *t, int ud);
void corio__task_set_name(corio_rt *rt, lua_State *L, corio_task *t, int ud);
int corio__cancel_task(corio_rt *rt, corio_task *t);

/* cancel.c */
void corio__scope_init(corio_scope *s, int kind, corio_task *owner,
                       corio_scope *parent);
void corio__scope_enter(corio_rt *rt, corio_task *t, corio_scope *s);
int corio__scope_leave(corio_rt *rt, corio_task *t, corio_scope *s);
void corio__scope_cancel(corio_rt *rt, corio_scope *s);
void corio__foreign_add(corio_rt *rt, int delta);
void corio__scope_reattach(corio_rt *rt, corio_task *t, corio_scope *bottom,
                           corio_scope *top);
int corio__scope_absorbs(corio_scope *s);
void corio__scope_add_error(corio_rt *rt, lua_State *L, corio_scope *s,
                            int idx);
/* s failed for want of memory, and had no memory to record an error: if
** it has no error list yet, it gets the shared {"not enough memory"}
** (rt->oom_ref: corio__unref and corio__scope_add_error leave it alone).
** Allocates nothing. */
void corio__scope_oom(corio_rt *rt, corio_scope *s);
void corio__scope_child_ended(corio_rt *rt, corio_scope *s);
void corio__scope_hand_over(corio_rt *rt, corio_scope *s, corio_scope *to,
                            int cancel);

/* timer.c */
int corio__timer_start(corio_rt *rt, corio_timer *tm, uint64_t when);
void corio__timer_stop(corio_rt *rt, corio_timer *tm);
void corio__timers_sync(corio_rt *rt);
void corio__timers_fire(corio_rt *rt);
void corio__timers_catch_up(corio_rt *rt);
/* Whether corio__timers_catch_up might fire a deadline now: the earliest
** one is within two coarse ticks (or the virtual clock runs). The caller
** saw nheap != 0. For the FFI checks, which must not fire timers (a scope
** cancelled there aborts waiters, which may reach libcurl): near, they
** take the Lua C function, which catches up. */
int corio__deadline_near(corio_rt *rt);
uint64_t corio__timers_next(corio_rt *rt);
/* Move every armed deadline by the same amount, keeping what is left of
** it counted from `from` now counted from `to` (the virtual clock). */
void corio__timers_rebase(corio_rt *rt, uint64_t from, uint64_t to);

/* error.c (bindings) builds error tables; the runtime only needs these */
void corio__push_class(lua_State *L, const char *kind);
void corio__push_error(lua_State *L, const char *kind, const char *msg);
void corio__push_cancelled(lua_State *L, lua_State *co, const char *msg);
int corio__is_error(lua_State *L, int idx, const char *kind);
void corio__wrap_error(corio_rt *rt, lua_State *L, lua_State *co,
                       corio_task *t);

/* thread.c (requests: thread.h) */
extern corio_abort_fn corio__abort_work_hook;

/* The runtime resuming a task on this thread, or NULL: set by the
** scheduler around each resume (loop.c), so that a binding called from
** the running task finds its runtime without reading upvalue 1 (see
** RT in bindings/bindings.h). */
extern _Thread_local corio_rt *corio__tls_rt;
void corio__work_states_free(corio_rt *rt);
int corio__pool_size(int n);
/* The size the pools take (or took) from UV_THREADPOOL_SIZE: 1..1024. */
int corio__pool_size_now(void);
void corio__pool_used(void);

/* debug.c */
int corio__debug_start(corio_rt *rt, int slow_ms);
void corio__debug_stop(corio_rt *rt);
void corio__debug_step_begin(corio_rt *rt, corio_task *t);
void corio__debug_step_end(corio_rt *rt);

/* host.c */
extern char corio__opmark;
int corio__host_init(corio_rt *rt);
void corio__host_close(corio_rt *rt);
void corio__close_handle(corio_rt *rt, uv_handle_t *h);
void corio__host_free(corio_rt *rt);

/* wait.c */
int corio__abort_wait(corio_rt *rt, corio_task *t);
corio_task *corio__wq_shift(corio_link *q);
void corio__wq_wake_all(corio_rt *rt, corio_link *q, corio_deliver_fn fn);
void corio__lock_unlink(corio_lock *k);
void corio__lock_hold(corio_rt *rt, corio_lock *k, corio_task *t);
void corio__locks_release_dead(corio_rt *rt, lua_State *L, corio_task *t);

#endif
