/* pg_batch: see batch.h. */
#include "postgres/batch.h"

#include <stdlib.h>
#include <string.h>

void pg_batch_free(struct pg_batch *b)
{
    if (!b)
        return;
    free(b->table);
    free(b->cols);
    free(b->data);
    free(b);
}

void pg_batch_push(struct pg_batch_queue *q, struct pg_batch *b)
{
    b->next = NULL;
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    q->rows += b->rows;
}

void pg_batch_push_front(struct pg_batch_queue *q, struct pg_batch *b)
{
    b->next = q->head;
    q->head = b;
    if (!q->tail)
        q->tail = b;
    q->rows += b->rows;
}

struct pg_batch *pg_batch_pop(struct pg_batch_queue *q)
{
    struct pg_batch *b = q->head;
    if (b) {
        q->head = b->next;
        if (!q->head)
            q->tail = NULL;
        q->rows -= b->rows;
        b->next = NULL;
    }
    return b;
}

/* Each commit costs a WAL flush and a round trip, so under a flood
 * 1,000-row batches leave the database waiting on fsync rather than
 * inserting; the bounds keep the spool's record limit far away. */
static int mergeable(const struct pg_batch *a, const struct pg_batch *b, uint32_t rows, size_t len)
{
    return rows + b->rows <= PG_BATCH_MERGE_MAX_ROWS && len + b->len <= PG_BATCH_MERGE_MAX_BYTES &&
           strcmp(a->table, b->table) == 0 && strcmp(a->cols, b->cols) == 0;
}

struct pg_batch *pg_batch_pop_merged(struct pg_batch_queue *q)
{
    struct pg_batch *b = pg_batch_pop(q);
    if (!b || !q->head || !mergeable(b, q->head, b->rows, b->len))
        return b;
    /* Size the joined batch first: one allocation, each row copied once. */
    uint32_t rows = b->rows;
    size_t len = b->len;
    for (struct pg_batch *n = q->head; n && mergeable(b, n, rows, len); n = n->next) {
        rows += n->rows;
        len += n->len;
    }
    char *data = realloc(b->data, len + 1);
    if (!data)
        return b; /* the smaller batch is still fine */
    b->data = data;
    while (b->rows < rows) {
        struct pg_batch *next = pg_batch_pop(q);
        memcpy(b->data + b->len, next->data, next->len + 1);
        b->len += next->len;
        b->rows += next->rows;
        pg_batch_free(next);
    }
    return b;
}

/* Splits b's rows into two batches (b keeps the first half). */
struct pg_batch *pg_batch_split(struct pg_batch *b)
{
    uint32_t keep = b->rows / 2;
    size_t off = 0;
    for (uint32_t r = 0; r < keep; r++) {
        char *nl = memchr(b->data + off, '\n', b->len - off);
        if (!nl)
            return NULL;
        off = (size_t)(nl - b->data) + 1;
    }
    struct pg_batch *second = calloc(1, sizeof *second);
    if (!second)
        return NULL;
    second->table = strdup(b->table);
    second->cols = strdup(b->cols);
    second->len = b->len - off;
    second->data = malloc(second->len + 1);
    if (!second->table || !second->cols || !second->data) {
        pg_batch_free(second);
        return NULL;
    }
    memcpy(second->data, b->data + off, second->len);
    second->data[second->len] = '\0';
    second->rows = b->rows - keep;
    second->source = PG_BATCH_FROM_SPLIT;
    b->len = off;
    b->data[off] = '\0';
    b->rows = keep;
    b->source = PG_BATCH_FROM_SPLIT;
    return second;
}
