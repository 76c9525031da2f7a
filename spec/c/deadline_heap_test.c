/* deadline_heap: nodes come out earliest first (ties: lower id first),
 * removal from the middle keeps the order, and push says when a node
 * became the earliest. */
#include <stdlib.h>

#include "core/deadline_heap.h"
#include "tap.h"

#define N 500

static int pop_in_order(struct deadline_heap *h, size_t expect)
{
    uint64_t last_d = 0, last_id = 0;
    size_t n = 0;
    int ordered = 1;
    struct deadline_node *top;
    while ((top = deadline_heap_top(h)) != NULL) {
        if (n && (top->deadline < last_d || (top->deadline == last_d && top->id < last_id)))
            ordered = 0;
        last_d = top->deadline;
        last_id = top->id;
        deadline_heap_remove(h, top);
        n++;
    }
    return ordered && n == expect;
}

int main(void)
{
    static struct deadline_node nodes[N];
    struct deadline_heap h = {0};
    srand(7);

    ok(deadline_heap_top(&h) == NULL, "empty: no top");
    int earliest_claims = 0;
    uint64_t min = UINT64_MAX;
    for (int i = 0; i < N; i++) {
        nodes[i].id = (uint64_t)i + 1;
        nodes[i].deadline = (uint64_t)(rand() % 100); /* many ties */
        if (deadline_heap_reserve(&h) != 0)
            break;
        int first = deadline_heap_push(&h, &nodes[i]);
        int should = nodes[i].deadline < min;
        if (should)
            min = nodes[i].deadline;
        if (first != should)
            earliest_claims++;
    }
    ok(h.len == N, "%d nodes pushed (%zu)", N, h.len);
    ok(earliest_claims == 0, "push says exactly when a node became the earliest (%d wrong)", earliest_claims);
    ok(deadline_heap_top(&h)->deadline == min, "top is the earliest deadline");

    /* Remove every third node from wherever it sits. */
    size_t removed = 0;
    for (int i = 0; i < N; i += 3, removed++)
        deadline_heap_remove(&h, &nodes[i]);
    int indexes_ok = 1;
    for (size_t i = 0; i < h.len; i++)
        if (h.items[i]->index != i)
            indexes_ok = 0;
    ok(indexes_ok, "every node knows its position after removals");
    ok(pop_in_order(&h, N - removed), "the rest come out by deadline, ties by id");

    /* Equal deadlines: the older (lower id) first. */
    struct deadline_node a = {.deadline = 5, .id = 2}, b = {.deadline = 5, .id = 1};
    deadline_heap_reserve(&h);
    deadline_heap_push(&h, &a);
    deadline_heap_reserve(&h);
    ok(deadline_heap_push(&h, &b) == 1, "an older node with the same deadline goes first");
    ok(deadline_heap_top(&h) == &b, "its top");
    deadline_heap_free(&h);
    ok(h.items == NULL && h.len == 0, "freed");
    return tap_done();
}
