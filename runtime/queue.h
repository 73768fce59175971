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

/* A queue known by a pointer to its first node (NULL when empty), for
** owners that cannot spare a whole list head: the nodes form a circle. */
static inline void corio_ring_push(corio_link **head, corio_link *n) {
  if (*head == NULL) {
    n->prev = n->next = n;
    *head = n;
  } else {
    n->next = *head;
    n->prev = (*head)->prev;
    (*head)->prev->next = n;
    (*head)->prev = n;
  }
}

static inline void corio_ring_remove(corio_link **head, corio_link *n) {
  if (*head == n) *head = n->next == n ? NULL : n->next;
  corio_list_remove(n);
}

static inline corio_link *corio_ring_shift(corio_link **head) {
  corio_link *n = *head;
  if (n != NULL) corio_ring_remove(head, n);
  return n;
}

#endif
