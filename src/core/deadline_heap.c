/* deadline_heap: see deadline_heap.h. */
#include "core/deadline_heap.h"

#include <stdlib.h>

static int less(const struct deadline_node *a, const struct deadline_node *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->id < b->id);
}

static void set(struct deadline_heap *h, size_t i, struct deadline_node *n)
{
    h->items[i] = n;
    n->index = i;
}

static void sift_up(struct deadline_heap *h, size_t i)
{
    struct deadline_node *n = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!less(n, h->items[parent]))
            break;
        set(h, i, h->items[parent]);
        i = parent;
    }
    set(h, i, n);
}

static void sift_down(struct deadline_heap *h, size_t i)
{
    struct deadline_node *n = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len && less(h->items[child + 1], h->items[child]))
            child++;
        if (!less(h->items[child], n))
            break;
        set(h, i, h->items[child]);
        i = child;
    }
    set(h, i, n);
}

int deadline_heap_reserve(struct deadline_heap *h)
{
    if (h->len < h->cap)
        return 0;
    size_t cap = h->cap ? h->cap * 2 : 16;
    struct deadline_node **items = realloc(h->items, cap * sizeof *items);
    if (!items)
        return -1;
    h->items = items;
    h->cap = cap;
    return 0;
}

int deadline_heap_push(struct deadline_heap *h, struct deadline_node *n)
{
    set(h, h->len++, n);
    sift_up(h, n->index);
    return n->index == 0;
}

void deadline_heap_remove(struct deadline_heap *h, struct deadline_node *n)
{
    size_t i = n->index;
    struct deadline_node *last = h->items[--h->len];
    if (last != n) {
        set(h, i, last);
        sift_up(h, i);
        sift_down(h, last->index);
    }
}

void deadline_heap_free(struct deadline_heap *h)
{
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}
