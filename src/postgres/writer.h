/* pg_writer: the batch log writer. Rows arrive as `log.request` events
 * ({table, row}) or through logger rules (events matching a pattern, fields
 * mapped to columns); each row is checked against the table's columns and
 * encoded as COPY text into a buffer per table. Buffers are flushed every
 * flush_ms or batch_size rows, one batch in flight at a time (so rows land in
 * order): COPY into a staging table and INSERT ... ON CONFLICT DO NOTHING
 * for tables with a unique key, plain COPY otherwise. Batches the database
 * cannot take go to the spool and are replayed first when it is back; a batch
 * that fails on bad data is split until the bad row is found and rejected.
 * Uses pool, spool, bus, event, jansson, log, and the pieces below.
 *
 * Files (each calls only those after it):
 *   writer.c       this API: counters, logging, the send/retry/split loop, drain
 *   log_rules.c    logger rules: checked, resolved, an event's row values
 *   row_buffer.c   rows per table and column set as COPY text -> batches
 *   spool_replay.c batches to and from spool records
 *   copy_batch.c   the pg_job for one batch (staging COPY + INSERT ON CONFLICT)
 *   batch.c        batches, queues, merging, splitting
 *   catalog.c      tables and columns from the server's catalog
 *   copy_text.c    COPY text encoding of values (pure) */
#ifndef DAZ_PG_WRITER_H
#define DAZ_PG_WRITER_H

#include <stdint.h>
#include <uv.h>

#include "core/bus.h"
#include "postgres/copy_text.h"   /* pg_copy_escape, pg_format_epoch_ms (the C tests use them) */
#include "postgres/log_rules.h"   /* struct pg_logger_rule */
#include "postgres/pool.h"
#include "postgres/spool.h"

struct pg_writer;

struct pg_writer_options {
    int flush_ms;
    int batch_size;
    long max_buffered_rows;   /* rows held in memory at most; beyond, batches go to the spool */
};

/* The writer takes ownership of neither pool nor spool (spool may be NULL:
 * then rows that cannot be written are counted as lost). */
struct pg_writer *pg_writer_new(uv_loop_t *loop, struct bus *bus, struct pg_pool *pool, struct spool *spool,
                                const struct pg_writer_options *opts);

/* Adds a rule (copied). Returns 0, or -1 with err filled (bad table name...). */
int pg_writer_add_rule(struct pg_writer *w, const struct pg_logger_rule *rule, char *err, size_t errsz);

/* Loads the columns of every daz_* table, checks the rules against them,
 * then subscribes to log.request and the rules' patterns and starts writing
 * (spooled rows first). `done(ok, error, ctx)` is called once: ok 1 started,
 * 0 a bad rule (fatal), -1 the connection failed (call start again later). */
typedef void (*pg_writer_ready_fn)(int ok, const char *error, void *ctx);
void pg_writer_start(struct pg_writer *w, pg_writer_ready_fn done, void *ctx);

/* The pool came up or went down (pg_pool_on_state forwards here). */
void pg_writer_pool_state(struct pg_writer *w, int connected);

/* Adds one row given as JSON object text (what log.request carries). Returns
 * 0, or -1 when rejected (counted and logged). For benchmarks and tests. */
int pg_writer_add_json(struct pg_writer *w, const char *table, const char *row_json);

/* Shutdown: unsubscribe, flush the buffers, wait (at most timeout_ms) for the
 * batches to be committed, spool what is left; then done(ctx). */
typedef void (*pg_writer_drained_fn)(void *ctx);
void pg_writer_drain(struct pg_writer *w, int timeout_ms, pg_writer_drained_fn done, void *ctx);
/* Releases everything; the loop must then run until the handles are closed. */
void pg_writer_close(struct pg_writer *w);
void pg_writer_free(struct pg_writer *w);

struct pg_writer_stats {
    uint64_t rows_received, rows_written, rows_rejected, rows_spooled, rows_lost;
    uint64_t batches_written, batches_failed, batches_split;
    uint64_t rows_buffered;  /* in memory, not yet committed */
    uint64_t rejected_unknown_table, rejected_bad_row, rejected_by_database;
    const char *last_error;
};
void pg_writer_get_stats(struct pg_writer *w, struct pg_writer_stats *out);

#endif
