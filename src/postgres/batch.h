/* pg_batch: a batch of COPY text rows for one table and column list, FIFO
 * queues of them (joined into bigger batches for a backlog), and splitting a
 * batch in halves to find a bad row. Pure (no I/O); uses only libc. */
#ifndef DAZ_PG_BATCH_H
#define DAZ_PG_BATCH_H

#include <stddef.h>
#include <stdint.h>

enum pg_batch_source { PG_BATCH_FROM_MEMORY = 0, PG_BATCH_FROM_SPOOL, PG_BATCH_FROM_SPLIT };

struct pg_batch {
    char *table;
    char *cols;   /* "a,b,c" */
    char *data;   /* COPY text rows, each ending in '\n'; NUL-terminated */
    size_t len;
    uint32_t rows;
    int source;   /* enum pg_batch_source */
    struct pg_batch *next;
};

struct pg_batch_queue {
    struct pg_batch *head, *tail;
    uint64_t rows;
};

/* A backlog is written in bigger batches: consecutive batches of the same
 * table and columns are joined up to these bounds. */
#define PG_BATCH_MERGE_MAX_ROWS 20000
#define PG_BATCH_MERGE_MAX_BYTES (8u * 1024 * 1024)

void pg_batch_free(struct pg_batch *b);
void pg_batch_push(struct pg_batch_queue *q, struct pg_batch *b);
void pg_batch_push_front(struct pg_batch_queue *q, struct pg_batch *b);
struct pg_batch *pg_batch_pop(struct pg_batch_queue *q);
/* Pops the head joined with the batches after it that fit the bounds. */
struct pg_batch *pg_batch_pop_merged(struct pg_batch_queue *q);
/* Splits b's rows into two batches (b keeps the first half, both become
 * PG_BATCH_FROM_SPLIT); returns the second, or NULL out of memory. */
struct pg_batch *pg_batch_split(struct pg_batch *b);

#endif
