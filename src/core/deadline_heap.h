/* deadline_heap: a binary min-heap of nodes ordered by deadline (then id),
 * the bus's pending requests by when they time out. Pure: the nodes live
 * in their owners' structs; the heap only keeps pointers. Uses libc. */
#ifndef DAZ_DEADLINE_HEAP_H
#define DAZ_DEADLINE_HEAP_H

#include <stddef.h>
#include <stdint.h>

struct deadline_node {
    uint64_t deadline;
    uint64_t id;     /* ties: the older first */
    size_t index;    /* position in the heap while in it */
};

struct deadline_heap {
    struct deadline_node **items;
    size_t len, cap;
};

/* Makes room for one more node, so that a push after it cannot fail.
 * Returns 0, or -1 when out of memory. */
int deadline_heap_reserve(struct deadline_heap *h);
/* Adds n (room reserved). Returns 1 when n is now the earliest. */
int deadline_heap_push(struct deadline_heap *h, struct deadline_node *n);
void deadline_heap_remove(struct deadline_heap *h, struct deadline_node *n);
/* The earliest node, or NULL when empty. */
static inline struct deadline_node *deadline_heap_top(const struct deadline_heap *h)
{
    return h->len ? h->items[0] : NULL;
}
void deadline_heap_free(struct deadline_heap *h);

#endif
