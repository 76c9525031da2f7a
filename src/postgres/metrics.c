/* sql_metrics: see sql_metrics.h. /health shows the database degraded
 * while no connection is up or the spool holds rows; /health/ready waits for
 * a connection, the migrations and the writer. */
#include "postgres/metrics.h"

#include <stdio.h>
#include <time.h>

void sql_metrics(struct metrics_out *out, void *ctx)
{
    const struct sql_health *sh = ctx;
    struct sql *s = sh->sql;
    if (!s)
        return;
    struct pg_stats ps;
    struct pg_writer_stats ws;
    struct spool_stats ss;
    pg_pool_stats(sql_pool(s), &ps);
    pg_writer_get_stats(sql_writer(s), &ws);
    spool_get_stats(sql_spool(s), &ss);
    double oldest_age = 0;
    if (ss.oldest_ms) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        oldest_age = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9 - (double)ss.oldest_ms / 1000.0;
        if (oldest_age < 0)
            oldest_age = 0;
    }
    int ready = sh->ready ? *sh->ready : sql_ready(s);

    json_t *db = json_pack("{s:s, s:i, s:i, s:i, s:I, s:I, s:I, s:I, s:I}", "state",
                           !ready ? "starting" : ps.connected > 0 ? "connected" : "unreachable", "connections",
                           ps.connected, "pool_size", ps.size, "in_use", ps.in_use, "queued", (json_int_t)ps.queued,
                           "queries", (json_int_t)ps.jobs, "errors", (json_int_t)ps.errors, "connection_errors",
                           (json_int_t)ps.connection_errors, "reconnects", (json_int_t)ps.reconnects);
    if (db && ps.last_error)
        json_object_set_new(db, "last_error", json_string(ps.last_error));
    json_t *writer = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "rows_written", (json_int_t)ws.rows_written,
                               "rows_rejected", (json_int_t)ws.rows_rejected, "rows_spooled",
                               (json_int_t)ws.rows_spooled, "rows_lost", (json_int_t)ws.rows_lost, "rows_buffered",
                               (json_int_t)ws.rows_buffered, "batches_written", (json_int_t)ws.batches_written,
                               "batches_failed", (json_int_t)ws.batches_failed);
    json_t *spool = json_pack("{s:I, s:I, s:I, s:f, s:I, s:I}", "rows", (json_int_t)ss.rows, "bytes",
                              (json_int_t)ss.bytes, "max_bytes", (json_int_t)ss.max_bytes, "oldest_age_seconds",
                              oldest_age, "refused_rows", (json_int_t)ss.refused_rows, "corrupt_records",
                              (json_int_t)ss.corrupt_records);
    if (db && writer)
        json_object_set_new(db, "writer", writer);
    else
        json_decref(writer);
    if (spool)
        json_object_set_new(out->components, "spool", spool); /* its own component (issue 6) */
    if (db) {
        json_object_set_new(db, "connected", json_boolean(ps.connected > 0));
        json_object_set_new(db, "migrated", json_boolean(ready));
        json_object_set_new(out->components, "database", db);
    }

    if (!ready)
        metrics_not_ready(out, "database: connecting or migrating");
    else if (ps.connected == 0)
        metrics_not_ready(out, "database: no connection");
    if (ready && ps.connected == 0)
        metrics_set_status(out, METRICS_DEGRADED, "database unreachable: rows go to the spool");
    else if (ss.rows > 0)
        metrics_set_status(out, METRICS_DEGRADED, "spool holds rows not yet in the database");

    metrics_one(out, "daz_db_connections", "gauge", "Database connections up.", ps.connected);
    metrics_one(out, "daz_db_connections_in_use", "gauge", "Database connections running a job.", ps.in_use);
    metrics_one(out, "daz_db_queued", "gauge", "Database jobs waiting for a connection.", (double)ps.queued);
    metrics_one(out, "daz_db_queries_total", "counter", "Database jobs submitted.", (double)ps.jobs);
    metrics_family(out, "daz_db_query_seconds", "histogram", "Time from submitting a statement to its result.");
    metrics_histogram(out, "daz_db_query_seconds", NULL, NULL, pg_hist_bounds, ps.hist, PG_HIST_BUCKETS, ps.seconds);
    metrics_family(out, "daz_db_errors_total", "counter", "Database jobs that failed.");
    metrics_sample(out, "daz_db_errors_total", "kind", "sql", (double)(ps.errors - ps.connection_errors));
    metrics_sample(out, "daz_db_errors_total", "kind", "connection", (double)ps.connection_errors);
    metrics_one(out, "daz_db_reconnects_total", "counter", "Database reconnections.", (double)ps.reconnects);
    metrics_one(out, "daz_log_rows_written_total", "counter", "Log rows committed by the batch writer.", (double)ws.rows_written);
    metrics_one(out, "daz_log_rows_rejected_total", "counter", "Malformed log rows refused.", (double)ws.rows_rejected);
    metrics_one(out, "daz_log_rows_spooled_total", "counter", "Log rows written to the spool.", (double)ws.rows_spooled);
    metrics_one(out, "daz_log_rows_lost_total", "counter", "Log rows lost (spool full or unwritable).", (double)ws.rows_lost);
    metrics_one(out, "daz_log_rows_buffered", "gauge", "Log rows held in memory, not yet committed.", (double)ws.rows_buffered);
    metrics_one(out, "daz_spool_rows", "gauge", "Rows in the spool waiting for the database.", (double)ss.rows);
    metrics_one(out, "daz_spool_bytes", "gauge", "Bytes in the spool.", (double)ss.bytes);
    metrics_one(out, "daz_spool_oldest_age_seconds", "gauge", "Age of the oldest spooled row.", oldest_age);
    metrics_one(out, "daz_spool_refused_rows_total", "counter", "Rows refused: the spool was full.", (double)ss.refused_rows);
}
