/* pg_copy_batch: the job that commits one batch — COPY into a staging table
 * and INSERT ... ON CONFLICT DO NOTHING for tables with a unique key, plain
 * COPY otherwise — and which failures are the moment's rather than the rows'.
 * Uses pool (pg_job, pg_ident_ok) and batch; builds SQL only, no I/O. */
#ifndef DAZ_PG_COPY_BATCH_H
#define DAZ_PG_COPY_BATCH_H

#include <stddef.h>

#include "postgres/batch.h"
#include "postgres/pool.h"

/* The job for b (its rows are copied), calling done(job, ctx) when it is
 * over; NULL for a bad table or column name, or out of memory. */
struct pg_job *pg_copy_batch_job(const struct pg_batch *b, int dedupe, pg_job_fn done, void *ctx);

/* "a,b" as "\"a\",\"b\"" in out; 0, or -1 for a bad name or too small an out. */
int pg_copy_batch_quote_cols(const char *cols, char *out, size_t outsz);

/* Is this SQLSTATE about the server or the moment rather than the rows? */
int pg_copy_batch_transient(const char *sqlstate);

#endif
