/*
** queue.h: intrusive circular doubly linked lists (waiter queues, child
** lists). Every function is static inline; nothing here allocates.
*/
#ifndef CORIO_QUEUE_H
#define CORIO_QUEUE_H

#include <stddef.h>

typedef struct corio_link {
  struct corio_link *prev, *next;
} corio_link;

#define corio_container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void corio_list_init(corio_link *h) { h->prev = h->next = h; }

static inline int corio_list_empty(const corio_link *h) { return h->next == h; }

/* Append n at the tail of h (FIFO order). */
static inline void corio_list_push(corio_link *h, corio_link *n) {
  n->prev = h->prev;
  n->next = h;
  h->prev->next = n;
  h->prev = n;
}

/* Unlink n and make it a list of its own, so removing twice is harmless. */
static inline void corio_list_remove(corio_link *n) {
  n->prev->next = n->next;
  n->next->prev = n->prev;
  n->prev = n->next = n;
}

static inline corio_link *corio_list_shift(corio_link *h) {
  corio_link *n = h->next;
  if (n == h) return NULL;
  corio_list_remove(n);
  return n;
}

#endif
