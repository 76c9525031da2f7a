/* pg_row_buffer: rows being collected as COPY text, one buffer per table and
 * column set, each turned into a batch when flushed. Pure (no I/O); uses
 * catalog (the columns), copy_text (the encoding) and batch. */
#ifndef DAZ_PG_ROW_BUFFER_H
#define DAZ_PG_ROW_BUFFER_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "postgres/batch.h"
#include "postgres/catalog.h"

struct pg_row_buffer {
    const struct pg_table *t;
    uint64_t mask; /* bit i: column i of t */
    char *data;
    size_t len, cap;
    uint32_t rows;
    struct pg_row_buffer *next;
};

/* The buffer for t and mask in *list (made and appended if new), or NULL. */
struct pg_row_buffer *pg_row_buffer_get(struct pg_row_buffer **list, const struct pg_table *t, uint64_t mask);

/* A writable NOT NULL column without a default that mask leaves out, or NULL. */
const char *pg_row_buffer_missing(const struct pg_table *t, uint64_t mask);

/* Appends one row: vals[i] is column i's value (NULL: SQL NULL) for each
 * column i in the mask. 0; -1 the row is refused (why says why: a bad
 * value, or "out of memory" encoding one); -2 out of memory. On failure
 * the buffer is as before. */
int pg_row_buffer_add(struct pg_row_buffer *b, json_t *const *vals, char *why, size_t whysz);

/* The buffer's rows as a PG_BATCH_FROM_MEMORY batch, or NULL out of memory
 * (the rows are then gone). The buffer is empty afterwards either way. */
struct pg_batch *pg_row_buffer_take(struct pg_row_buffer *b);

void pg_row_buffer_free_all(struct pg_row_buffer **list);

#endif
