/*
** heap.c: the allocator of the Lua states corio makes (corio_new without a
** state, so the corio CLI and `corio test`). A host's own state keeps the
** allocator the host gave it.
**
** Why: a task is two Lua objects (its thread with its stack, ~560 B, and
** the Task userdata), so 100,000 tasks touch ~80 MB that LuaJIT's
** allocator takes from the system 4 KiB page by page. On the VMs we
** measure on a page fault costs ~4.5 us: page faults were 40% of W1's
** time. Here the blocks come from one reserved range of address space,
** committed 1 MiB at a time and faulted in with one madvise call
** (MADV_POPULATE_WRITE) instead of 256 faults.
**
** Transparent huge pages were tried (MADV_HUGEPAGE on the range): alone,
** W1 took 25% less time than with LuaJIT's allocator; run after other
** programs, as in the benchmark harness, it took 20% more, as each fresh
** 2 MiB page then costs milliseconds (the VM's host backs it anew). This
** commit-and-populate way was the fastest of the four in that harness.
**
** How: LuaJIT always tells the allocator a block's size (osize) when it
** frees or resizes it, so blocks carry no header. Blocks up to SMALL_MAX
** are rounded up to a size class and come from the class's free list or
** from the bump pointer of the range; freed ones go back on their class's
** list and are reused for the life of the state (the range is unmapped
** when the state is closed). Bigger blocks are mapped on their own and
** unmapped when freed, as LuaJIT's allocator does from 128 KiB on.
** Everything lives in mappings, as with LuaJIT's allocator, so a program
** that exits without closing its state leaves nothing for leak checkers
** (but for small blocks made once the range is full, from malloc).
**
** The cost: freed small blocks are not given back to the system while the
** state lives, and a block freed in one class is not reused for another.
** A program whose peak was a million tasks keeps that memory for the
** next burst.
*/
#define _GNU_SOURCE 1 /* mremap */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <unistd.h>

#include <lauxlib.h>

#include "internal.h"

#define GROW ((size_t)1 << 20)       /* committed at a time */
#define SMALL_MAX ((size_t)128 << 10) /* bigger blocks are mapped alone */

/* Size classes: 16-byte steps to 1 KiB, then eight classes per power of
** two to SMALL_MAX, so a block is at most an eighth larger than asked. */
#define NCLASS (64 + 7 * 8 + 1)

typedef struct corio_heap {
  char *base;    /* the reserved range: [base, base + size) */
  size_t size;
  char *cur;     /* bump pointer */
  char *end;     /* committed: [base, end) */
  void *free[NCLASS];
} corio_heap;

static size_t page_size;
static pthread_once_t sys_once = PTHREAD_ONCE_INIT;

static void read_sys(void) { page_size = (size_t)sysconf(_SC_PAGESIZE); }

static int owns(const corio_heap *h, const void *p) {
  return (uintptr_t)p - (uintptr_t)h->base < h->size;
}

static unsigned class_of(size_t n) {
  unsigned e;
  size_t step;
  if (n <= 1024) return (unsigned)((n + 15) >> 4);
  e = 63u - (unsigned)__builtin_clzll((unsigned long long)(n - 1));
  step = (size_t)1 << (e - 3);  /* n in (2^e, 2^(e+1)], e >= 10 */
  return 64 + (e - 10) * 8 +
         (unsigned)((n - ((size_t)1 << e) + step - 1) / step);
}

static size_t class_size(unsigned c) {
  unsigned e, k;
  if (c <= 64) return (size_t)c << 4;
  e = 10 + (c - 65) / 8;
  k = (c - 65) % 8 + 1;
  return ((size_t)1 << e) + (size_t)k * ((size_t)1 << (e - 3));
}

/* Commit at least n more bytes after h->end. 0, or -1 (the range is
** full, or the system refused). */
static int grow(corio_heap *h, size_t n) {
  size_t add = n > GROW ? (n + GROW - 1) / GROW * GROW : GROW;
  if ((size_t)(h->base + h->size - h->end) < add) return -1;
  if (mprotect(h->end, add, PROT_READ | PROT_WRITE) != 0) return -1;
#ifdef MADV_POPULATE_WRITE
  /* Fault the pages in with one call instead of one fault per 4 KiB (the
  ** first 1 MiB, from heap_new, fault as they are used, so a small
  ** program stays small). Linux 5.14 and later; elsewhere the call fails
  ** and the pages fault as used. */
  (void)madvise(h->end, add, MADV_POPULATE_WRITE);
#endif
  h->end += add;
  return 0;
}

static size_t round_page(size_t n) {
  return (n + page_size - 1) & ~(page_size - 1);
}

static void *big_new(size_t nsize) {
  void *p = mmap(NULL, round_page(nsize), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static void big_free(void *p, size_t osize) {
  munmap(p, round_page(osize));
}

static void *small_new(corio_heap *h, size_t nsize) {
  unsigned c = class_of(nsize);
  void *p = h->free[c];
  size_t sz;
  if (p != NULL) {
    h->free[c] = *(void **)p;
    return p;
  }
  sz = class_size(c);
  if ((size_t)(h->end - h->cur) < sz && grow(h, sz) != 0)
    return malloc(nsize);  /* the range is full */
  p = h->cur;
  h->cur += sz;
  return p;
}

/* A small block is in the range, or (made when the range was full) from
** malloc. */
static void small_free(corio_heap *h, void *p, size_t osize) {
  unsigned c = class_of(osize);
  if (!owns(h, p)) {
    free(p);
    return;
  }
  *(void **)p = h->free[c];
  h->free[c] = p;
}

#if defined(__GNUC__)
__attribute__((noinline))
#endif
static void *heap_slow(corio_heap *h, void *p, size_t osize, size_t nsize) {
  void *q;
  if (p == NULL) {
    if (nsize == 0) return NULL;
    return nsize <= SMALL_MAX ? small_new(h, nsize) : big_new(nsize);
  }
  if (osize <= SMALL_MAX) {
    if (nsize == 0) {
      small_free(h, p, osize);
      return NULL;
    }
    if (nsize <= SMALL_MAX) {
      if (!owns(h, p)) return realloc(p, nsize);
      if (class_of(nsize) == class_of(osize)) return p;
    }
    q = nsize <= SMALL_MAX ? small_new(h, nsize) : big_new(nsize);
    if (q == NULL) return NULL;
    memcpy(q, p, osize < nsize ? osize : nsize);
    small_free(h, p, osize);
    return q;
  }
  if (nsize == 0) {
    big_free(p, osize);
    return NULL;
  }
  if (nsize > SMALL_MAX) {
    q = mremap(p, round_page(osize), round_page(nsize), MREMAP_MAYMOVE);
    return q == MAP_FAILED ? NULL : q;
  }
  if ((q = small_new(h, nsize)) == NULL) return NULL;
  memcpy(q, p, nsize);
  big_free(p, osize);
  return q;
}

/* The common cases first: a new block, or a freed one, of up to 1 KiB
** (threads, their first stacks, tasks, tables, most strings). */
static void *heap_alloc(void *ud, void *p, size_t osize, size_t nsize) {
  corio_heap *h = ud;
  if (p == NULL) {
    if (nsize - 1 < 1024) {
      unsigned c = (unsigned)((nsize + 15) >> 4);
      void *q = h->free[c];
      if (q != NULL) {
        h->free[c] = *(void **)q;
        return q;
      }
      if ((size_t)(h->end - h->cur) >= (size_t)c << 4) {
        q = h->cur;
        h->cur += (size_t)c << 4;
        return q;
      }
    }
  } else if (nsize == 0 && osize <= 1024 && owns(h, p)) {
    unsigned c = (unsigned)((osize + 15) >> 4);
    *(void **)p = h->free[c];
    h->free[c] = p;
    return NULL;
  }
  return heap_slow(h, p, osize, nsize);
}

/* Reserve the range: as much address space as the system lets us have
** (a limit on address space, RLIMIT_AS, may forbid the larger ones). */
static corio_heap *heap_new(size_t reserve) {
  static const size_t sizes[] = {(size_t)64 << 30, (size_t)8 << 30,
                                 (size_t)1 << 30};
  size_t i, n = sizeof(sizes) / sizeof(sizes[0]);
  pthread_once(&sys_once, read_sys);
  for (i = 0; i < n; i++) {
    size_t size = reserve != 0 ? reserve : sizes[i];
    char *base = mmap(NULL, size, PROT_NONE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    corio_heap *h;
    if (base == MAP_FAILED) {
      if (reserve != 0) break;
      continue;
    }
    if (mprotect(base, GROW, PROT_READ | PROT_WRITE) != 0) {
      munmap(base, size);
      return NULL;
    }
    /* the header is the range's first block; fresh pages are zeros */
    h = (corio_heap *)base;
    h->base = base;
    h->size = size;
    h->end = base + GROW;
    h->cur = base + ((sizeof(corio_heap) + 63) & ~(size_t)63);
    return h;
  }
  return NULL;
}

lua_State *corio__heap_newstate(size_t reserve) {
  corio_heap *h = heap_new(reserve);
  lua_State *L;
  if (h == NULL) return NULL;
  L = lua_newstate(heap_alloc, h);
  if (L == NULL) {
    munmap(h->base, h->size);
    return NULL;
  }
  return L;
}

void corio__heap_release(lua_Alloc f, void *ud) {
  corio_heap *h = ud;
  if (f != heap_alloc) return;
  munmap(h->base, h->size);
}

int corio__heap_owns(lua_State *L) {
  return lua_getallocf(L, NULL) == heap_alloc;
}

/* For the allocator's own test (tests/c/test_heap.c): the size of the
** block that holds n bytes. */
size_t corio__heap_class_size(size_t n) { return class_size(class_of(n)); }
