/* pg_spool_replay: batches the database could not take, kept in the spool
 * as records "<table>\n<col>,<col>...\n<COPY text rows>" and read back in
 * order. Uses spool and batch. */
#ifndef DAZ_PG_SPOOL_REPLAY_H
#define DAZ_PG_SPOOL_REPLAY_H

#include <stddef.h>
#include <stdint.h>

#include "postgres/batch.h"
#include "postgres/spool.h"

/* The spool record of a batch (malloc'd, NUL-terminated), or NULL. */
char *pg_spool_record_encode(const struct pg_batch *b, size_t *len);
/* A PG_BATCH_FROM_SPOOL batch from a record, or NULL (unreadable, out of memory). */
struct pg_batch *pg_spool_record_decode(const char *p, size_t len, uint32_t rows);

/* Appends b to the spool (b stays the caller's). Returns 0, -2 the spool is full,
 * -1 another failure (err says why; empty when out of memory). */
int pg_spool_replay_put(struct spool *sp, const struct pg_batch *b, char *err, size_t errsz);

/* The oldest record as a batch (left in the spool until spool_consume):
 * 1 *out set, 0 the spool is empty, -1 it cannot be read, -2 its oldest
 * record is unreadable (consumed; *rows says how many rows it held). */
int pg_spool_replay_next(struct spool *sp, struct pg_batch **out, uint32_t *rows);

#endif
