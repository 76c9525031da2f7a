/* pg_writer: see writer.h.
 *
 * Order: rows of one table with the same columns are written in the order
 * they arrived. Batches go out one at a time, from three places in this
 * order: the split queue (halves of a batch that failed on bad data), the
 * spool (older rows the database could not take), then memory. While the
 * spool holds rows, a memory batch is never sent ahead of them. */
#include "postgres/writer.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event_json.h"
#include "core/log.h"
#include "core/log_repeat.h"
#include "postgres/batch.h"
#include "postgres/catalog.h"
#include "postgres/copy_batch.h"
#include "postgres/log_rules.h"
#include "postgres/row_buffer.h"
#include "postgres/spool_replay.h"

#define RETRY_MS 500

struct pg_writer {
    uv_loop_t *loop;
    struct bus *bus;
    struct pg_pool *pool;
    struct spool *spool;
    struct pg_writer_options opt;
    struct pg_catalog catalog;
    struct pg_log_rule *rules;
    struct bus_sub *log_sub;
    struct pg_row_buffer *buffers;
    uint64_t buffered_rows;
    struct pg_batch_queue mem, split;
    struct pg_batch *inflight;
    struct pg_job *inflight_job;
    uv_timer_t flush_timer, retry_timer, drain_timer;
    int flush_armed;
    int timers; /* the uv timers exist (from pg_writer_start on) */
    int started, closing, closed;
    int draining;
    pg_writer_drained_fn drained;
    void *drained_ctx;
    pg_writer_ready_fn ready;
    void *ready_ctx;
    struct pg_writer_stats st;
    char *last_error;
    struct log_repeat complaints; /* per site (format): the first few in full, then summaries */
};

static void pump(struct pg_writer *w);
static void flush_all(struct pg_writer *w);
static void check_drained(struct pg_writer *w);


/* Logs a problem at warn: per site (the format it was made with) the first
 * few in full, then one summary per interval; the rest at debug. */
static void complain_at(struct pg_writer *w, const char *site, const char *msg)
{
    free(w->last_error);
    w->last_error = strdup(msg);
    if (!log_repeat(&w->complaints, site, "%s", msg))
        log_debug("pg.writer", "%s", msg);
}

static void complain(struct pg_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(struct pg_writer *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    complain_at(w, fmt, msg);
}

static void on_flush_timer(uv_timer_t *t);

static void arm_flush(struct pg_writer *w)
{
    if (!w->flush_armed && !w->closed && w->timers) {
        w->flush_armed = 1;
        uv_timer_start(&w->flush_timer, on_flush_timer, (uint64_t)w->opt.flush_ms, 0);
    }
}

static int reject(struct pg_writer *w, uint64_t *counter, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int reject(struct pg_writer *w, uint64_t *counter, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    w->st.rows_rejected++;
    if (counter)
        (*counter)++;
    complain_at(w, fmt, msg);
    return -1;
}

/* Buffers one row of table t: vals[i] is column i's value (NULL: SQL NULL)
 * for each column i in mask. Returns 0 or -1 (rejected and counted). */
static int buffer_row(struct pg_writer *w, struct pg_table *t, uint64_t mask, json_t *const *vals)
{
    /* Columns left out must be nullable or have a default. */
    const char *missing = pg_row_buffer_missing(t, mask);
    if (missing)
        return reject(w, &w->st.rejected_bad_row, "row for %s rejected: missing field %s", t->name, missing);
    if (mask == 0)
        return reject(w, &w->st.rejected_bad_row, "row for %s rejected: no fields", t->name);
    struct pg_row_buffer *b = pg_row_buffer_get(&w->buffers, t, mask);
    if (!b)
        return reject(w, NULL, "row for %s rejected: out of memory", t->name);
    char why[256];
    int rc = pg_row_buffer_add(b, vals, why, sizeof why);
    if (rc == -1)
        return reject(w, &w->st.rejected_bad_row, "row for %s rejected: %s", t->name, why);
    if (rc != 0)
        return reject(w, NULL, "row for %s rejected: out of memory", t->name);
    w->buffered_rows++;
    if (b->rows >= (uint32_t)w->opt.batch_size)
        flush_all(w);
    else
        arm_flush(w);
    return 0;
}

/* One row as a JSON object (log.request, pg_writer_add_json): its keys
 * name the columns. Logger rules have theirs resolved once, at start. */
static int add_row(struct pg_writer *w, const char *table, json_t *row)
{
    w->st.rows_received++;
    struct pg_table *t = table ? pg_catalog_find(&w->catalog, table) : NULL;
    if (!t)
        return reject(w, &w->st.rejected_unknown_table, "row rejected: unknown table %s", table ? table : "(none)");
    if (!json_is_object(row))
        return reject(w, &w->st.rejected_bad_row, "row for %s rejected: the row must be an object", t->name);
    uint64_t mask = 0;
    json_t *vals[PG_MAX_COLUMNS];
    const char *key;
    json_t *v;
    json_object_foreach(row, key, v) {
        int i = pg_catalog_column(t, key);
        if (i < 0 || i >= PG_MAX_COLUMNS || !t->cols[i].insertable)
            return reject(w, &w->st.rejected_bad_row, "row for %s rejected: %s column %s", t->name,
                          i < 0 ? "no" : "cannot write", key);
        mask |= 1ull << i;
        vals[i] = v;
    }
    return buffer_row(w, t, mask, vals);
}

int pg_writer_add_json(struct pg_writer *w, const char *table, const char *row_json)
{
    json_error_t jerr;
    json_t *row = json_loads(row_json, JSON_DECODE_ANY, &jerr);
    if (!row) {
        w->st.rows_received++;
        w->st.rows_rejected++;
        w->st.rejected_bad_row++;
        complain(w, "row for %s rejected: invalid JSON: %s", table ? table : "?", jerr.text);
        return -1;
    }
    int rc = add_row(w, table, row);
    json_decref(row);
    return rc;
}

/* Moves every buffer into a batch on the memory queue. */
static void flush_all(struct pg_writer *w)
{
    for (struct pg_row_buffer *b = w->buffers; b; b = b->next) {
        if (b->rows == 0)
            continue;
        uint32_t rows = b->rows;
        w->buffered_rows -= rows;
        struct pg_batch *bt = pg_row_buffer_take(b);
        if (bt) {
            pg_batch_push(&w->mem, bt);
        } else {
            w->st.rows_lost += rows;
            complain(w, "out of memory: %u rows for %s lost", rows, b->t->name);
        }
    }
    pump(w);
}

static void on_flush_timer(uv_timer_t *t)
{
    struct pg_writer *w = t->data;
    w->flush_armed = 0;
    flush_all(w);
}

/* Appends a batch to the spool; the batch is freed either way. */
static void spool_batch(struct pg_writer *w, struct pg_batch *b)
{
    if (!w->spool) {
        w->st.rows_lost += b->rows;
        complain(w, "%u rows for %s lost: the database is unavailable and no spool is configured", b->rows, b->table);
        pg_batch_free(b);
        return;
    }
    char err[256];
    int rc = pg_spool_replay_put(w->spool, b, err, sizeof err);
    if (rc == 0) {
        w->st.rows_spooled += b->rows;
    } else if (rc == -2) {
        w->st.rows_lost += b->rows;
        complain(w, "spool full: refused %u rows for %s (spool.max_bytes reached)", b->rows, b->table);
    } else {
        w->st.rows_lost += b->rows;
        complain(w, "%u rows for %s lost: %s", b->rows, b->table, err[0] ? err : "out of memory");
    }
    pg_batch_free(b);
}

static void on_batch_done(struct pg_job *job, void *ctx);

static void on_retry_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void on_batch_done(struct pg_job *job, void *ctx)
{
    struct pg_writer *w = ctx;
    struct pg_batch *b = w->inflight;
    w->inflight = NULL;
    w->inflight_job = NULL;
    if (!b)
        return;
    if (!job->error.message) {
        w->st.rows_written += b->rows;
        w->st.batches_written++;
        if (b->source == PG_BATCH_FROM_SPOOL)
            spool_consume(w->spool);
        pg_batch_free(b);
        pump(w);
        check_drained(w);
        return;
    }
    w->st.batches_failed++;
    const char *state = job->error.sqlstate;
    if (job->error.connection || pg_copy_batch_transient(state)) {
        complain(w, "batch of %u rows for %s not written (%s %s); %s", b->rows, b->table, state, job->error.message,
                 b->source == PG_BATCH_FROM_MEMORY ? "spooling it" : "will retry");
        if (b->source == PG_BATCH_FROM_MEMORY && w->spool)
            spool_batch(w, b);
        else if (b->source == PG_BATCH_FROM_SPLIT || b->source == PG_BATCH_FROM_MEMORY)
            pg_batch_push_front(b->source == PG_BATCH_FROM_SPLIT ? &w->split : &w->mem, b);
        else
            pg_batch_free(b); /* still in the spool */
        if (!w->closed && w->timers)
            uv_timer_start(&w->retry_timer, on_retry_timer, RETRY_MS, 0);
        check_drained(w);
        return;
    }
    /* The data: split until the bad rows are found; they alone are dropped. */
    if (b->source == PG_BATCH_FROM_SPOOL)
        spool_consume(w->spool);
    if (b->rows <= 1) {
        w->st.rows_rejected++;
        w->st.rejected_by_database++;
        complain(w, "row for %s rejected by the database: %s %s", b->table, state, job->error.message);
        pg_batch_free(b);
    } else {
        struct pg_batch *second = pg_batch_split(b);
        if (!second) {
            w->st.rows_lost += b->rows;
            complain(w, "out of memory splitting a failed batch: %u rows for %s lost", b->rows, b->table);
            pg_batch_free(b);
        } else {
            w->st.batches_split++;
            pg_batch_push_front(&w->split, second);
            pg_batch_push_front(&w->split, b);
        }
    }
    pump(w);
    check_drained(w);
}

static void send_batch(struct pg_writer *w, struct pg_batch *b)
{
    struct pg_table *t = pg_catalog_find(&w->catalog, b->table);
    struct pg_job *job = pg_copy_batch_job(b, t && t->dedupe, on_batch_done, w);
    if (!job) {
        w->st.rows_rejected += b->rows;
        w->st.rejected_bad_row += b->rows;
        complain(w, "batch for %s dropped: bad table or column names, or out of memory", b->table);
        if (b->source == PG_BATCH_FROM_SPOOL)
            spool_consume(w->spool);
        pg_batch_free(b);
        return;
    }
    w->inflight = b;
    w->inflight_job = job;
    pg_submit_first(w->pool, job); /* on failure on_batch_done has run */
}

static void pump(struct pg_writer *w)
{
    while (!w->closed && !w->inflight) {
        int connected = pg_pool_connected(w->pool) > 0;
        int spooled = !spool_empty(w->spool);
        /* Rows in memory beyond the bound, or while nothing can be written,
         * go to the spool (after what is there: the order holds). */
        if (w->spool && (!connected || w->mem.rows > (uint64_t)w->opt.max_buffered_rows))
            while (w->mem.head && (!connected || w->mem.rows > (uint64_t)w->opt.max_buffered_rows))
                spool_batch(w, pg_batch_pop(&w->mem));
        if (!w->spool && w->mem.rows > (uint64_t)w->opt.max_buffered_rows) {
            struct pg_batch *b = pg_batch_pop(&w->mem);
            w->st.rows_lost += b->rows;
            complain(w, "%u rows for %s lost: too many rows buffered and no spool", b->rows, b->table);
            pg_batch_free(b);
            continue;
        }
        if (!connected)
            return;
        if (w->split.head) {
            send_batch(w, pg_batch_pop(&w->split));
            continue;
        }
        if (spooled && !w->draining) {
            struct pg_batch *b;
            uint32_t rows;
            int rc = pg_spool_replay_next(w->spool, &b, &rows);
            if (rc == -1) {
                complain(w, "cannot read the spool; will retry");
                uv_timer_start(&w->retry_timer, on_retry_timer, RETRY_MS * 4, 0);
                return;
            }
            if (rc == 0)
                continue; /* it was empty after all */
            if (rc == -2) {
                complain(w, "unreadable spool record of %u rows skipped", rows);
                continue;
            }
            send_batch(w, b);
            continue;
        }
        if (spooled && w->draining) {
            /* Shutting down: newer rows join the spool behind older ones. */
            while (w->mem.head)
                spool_batch(w, pg_batch_pop(&w->mem));
            return;
        }
        if (w->mem.head) {
            send_batch(w, pg_batch_pop_merged(&w->mem));
            continue;
        }
        return;
    }
    /* A batch is in flight: only the overflow can go to the spool now, and
     * only when the batch in flight is not from memory (order). */
    if (!w->closed && w->inflight && w->inflight->source != PG_BATCH_FROM_MEMORY && w->spool)
        while (w->mem.head && w->mem.rows > (uint64_t)w->opt.max_buffered_rows)
            spool_batch(w, pg_batch_pop(&w->mem));
}

void pg_writer_pool_state(struct pg_writer *w, int connected)
{
    if (w && w->started)
        pump(w);
}

static void on_log_request(struct event *ev, void *ctx)
{
    struct pg_writer *w = ctx;
    size_t len;
    const char *text = event_json(ev, &len);
    json_error_t jerr;
    json_t *root = text ? json_loadb(text, len, 0, &jerr) : NULL;
    json_t *table = root ? json_object_get(root, "table") : NULL;
    json_t *row = root ? json_object_get(root, "row") : NULL;
    if (!json_is_string(table) || !json_is_object(row)) {
        w->st.rows_received++;
        w->st.rows_rejected++;
        w->st.rejected_bad_row++;
        complain(w, "log.request rejected: expected {table = <name>, row = {...}}");
    } else {
        add_row(w, json_string_value(table), row);
    }
    json_decref(root);
}

static void on_rule_event(struct event *ev, void *ctx)
{
    struct pg_log_rule *r = ctx;
    struct pg_writer *w = r->owner;
    json_t *owned[PG_MAX_COLUMNS], *vals[PG_MAX_COLUMNS];
    pg_log_rule_row(r, ev, owned, vals);
    w->st.rows_received++;
    buffer_row(w, r->t, r->mask, vals);
    for (int i = 0; i < r->nfields; i++)
        json_decref(owned[i]);
}

int pg_writer_add_rule(struct pg_writer *w, const struct pg_logger_rule *in, char *err, size_t errsz)
{
    struct pg_log_rule *r = pg_log_rule_new(in, err, errsz);
    if (!r)
        return -1;
    r->owner = w;
    r->next = w->rules;
    w->rules = r;
    return 0;
}


static void subscribe_all(struct pg_writer *w)
{
    w->log_sub = bus_subscribe(w->bus, "log.request", NULL, 0, 0, on_log_request, w);
    for (struct pg_log_rule *r = w->rules; r; r = r->next)
        if (r->t)
            r->sub = bus_subscribe(w->bus, r->pattern, (const char *const *)r->tags, r->tag_count, 0, on_rule_event, r);
}

static void on_catalog(struct pg_job *job, void *ctx)
{
    struct pg_writer *w = ctx;
    char err[512] = "";
    if (job->error.message) {
        snprintf(err, sizeof err, "cannot read the table catalog: %s %s", job->error.sqlstate, job->error.message);
    } else if (pg_catalog_load(&w->catalog, job->results[0], job->results[1]) != 0) {
        snprintf(err, sizeof err, "out of memory reading the catalog");
    } else {
        for (struct pg_log_rule *r = w->rules; r; r = r->next)
            if (pg_log_rule_resolve(r, &w->catalog, err, sizeof err) != 0)
                break;
    }
    pg_writer_ready_fn ready = w->ready;
    w->ready = NULL;
    if (err[0]) {
        if (ready)
            ready(job->error.message && job->error.connection ? -1 : 0, err, w->ready_ctx);
        return;
    }
    subscribe_all(w);
    w->started = 1;
    int n = 0;
    for (struct pg_log_rule *r = w->rules; r; r = r->next)
        n++;
    struct spool_stats ss;
    spool_get_stats(w->spool, &ss);
    log_info("pg.writer", "writing: %d logger rule(s); flush every %d ms or %d rows%s", n, w->opt.flush_ms,
             w->opt.batch_size, ss.records ? "; replaying the spool first" : "");
    if (ss.records)
        log_info("pg.writer", "spool holds %llu rows in %llu batches", (unsigned long long)ss.rows,
                 (unsigned long long)ss.records);
    pump(w);
    if (ready)
        ready(1, NULL, w->ready_ctx);
}

void pg_writer_start(struct pg_writer *w, pg_writer_ready_fn done, void *ctx)
{
    if (!w->timers) {
        w->timers = 1;
        uv_timer_init(w->loop, &w->flush_timer);
        uv_timer_init(w->loop, &w->retry_timer);
        uv_timer_init(w->loop, &w->drain_timer);
        w->flush_timer.data = w->retry_timer.data = w->drain_timer.data = w;
        log_repeat_attach(&w->complaints, w->loop);
    }
    w->ready = done;
    w->ready_ctx = ctx;
    struct pg_job *job = pg_job_new(2, 0, on_catalog, w);
    if (!job || pg_job_set(job, 0, PG_CATALOG_COLUMNS, 0, NULL) != 0 || pg_job_set(job, 1, PG_CATALOG_UNIQUE, 0, NULL) != 0) {
        pg_job_free(job);
        w->ready = NULL;
        done(0, "out of memory", ctx);
        return;
    }
    pg_submit(w->pool, job);
}

struct pg_writer *pg_writer_new(uv_loop_t *loop, struct bus *bus, struct pg_pool *pool, struct spool *spool,
                                const struct pg_writer_options *opts)
{
    struct pg_writer *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->loop = loop;
    w->bus = bus;
    w->pool = pool;
    w->spool = spool;
    w->opt = *opts;
    if (w->opt.flush_ms <= 0)
        w->opt.flush_ms = 200;
    if (w->opt.batch_size <= 0)
        w->opt.batch_size = 1000;
    if (w->opt.max_buffered_rows <= 0)
        w->opt.max_buffered_rows = 100000;
    log_repeat_init(&w->complaints, LOG_WARN, "pg.writer", NULL, 10, 32);
    return w;
}

static void unsubscribe_all(struct pg_writer *w)
{
    if (w->log_sub)
        bus_unsubscribe(w->bus, w->log_sub);
    w->log_sub = NULL;
    for (struct pg_log_rule *r = w->rules; r; r = r->next) {
        if (r->sub)
            bus_unsubscribe(w->bus, r->sub);
        r->sub = NULL;
    }
}

static void finish_drain(struct pg_writer *w)
{
    if (!w->draining)
        return;
    w->draining = 0;
    uv_timer_stop(&w->drain_timer);
    pg_writer_drained_fn done = w->drained;
    w->drained = NULL;
    if (done)
        done(w->drained_ctx);
}

static void check_drained(struct pg_writer *w)
{
    if (w->draining && !w->inflight && !w->split.head && !w->mem.head && w->buffered_rows == 0)
        finish_drain(w);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct pg_writer *w = t->data;
    if (!w->draining)
        return;
    log_warn("pg.writer", "shutdown: the database did not take every row in time; spooling the rest");
    if (w->inflight) {
        /* It may still commit; the spool copy is then a duplicate that the
         * unique keys absorb on replay. */
        pg_job_cancel(w->inflight_job);
        struct pg_batch *b = w->inflight;
        w->inflight = NULL;
        w->inflight_job = NULL;
        if (b->source == PG_BATCH_FROM_SPOOL)
            pg_batch_free(b);
        else
            spool_batch(w, b);
    }
    while (w->split.head)
        spool_batch(w, pg_batch_pop(&w->split));
    while (w->mem.head)
        spool_batch(w, pg_batch_pop(&w->mem));
    finish_drain(w);
}

void pg_writer_drain(struct pg_writer *w, int timeout_ms, pg_writer_drained_fn done, void *ctx)
{
    unsubscribe_all(w);
    w->drained = done;
    w->drained_ctx = ctx;
    w->draining = 1;
    uv_timer_stop(&w->flush_timer);
    w->flush_armed = 0;
    flush_all(w);
    uv_timer_start(&w->drain_timer, on_drain_timeout, (uint64_t)(timeout_ms > 0 ? timeout_ms : 1), 0);
    if (!pg_pool_connected(w->pool))
        on_drain_timeout(&w->drain_timer); /* nothing can be written: spool it all now */
    else
        check_drained(w);
}

static void on_timer_closed(uv_handle_t *h) { (void)h; }

void pg_writer_close(struct pg_writer *w)
{
    if (!w || w->closed)
        return;
    unsubscribe_all(w);
    w->closed = 1;
    if (w->inflight_job)
        pg_job_cancel(w->inflight_job);
    if (w->timers) {
        uv_close((uv_handle_t *)&w->flush_timer, on_timer_closed);
        uv_close((uv_handle_t *)&w->retry_timer, on_timer_closed);
        uv_close((uv_handle_t *)&w->drain_timer, on_timer_closed);
    }
    log_repeat_close(&w->complaints, on_timer_closed);
}

void pg_writer_free(struct pg_writer *w)
{
    if (!w)
        return;
    pg_batch_free(w->inflight);
    struct pg_batch *b;
    while ((b = pg_batch_pop(&w->mem)) != NULL)
        pg_batch_free(b);
    while ((b = pg_batch_pop(&w->split)) != NULL)
        pg_batch_free(b);
    pg_row_buffer_free_all(&w->buffers);
    while (w->rules) {
        struct pg_log_rule *r = w->rules;
        w->rules = r->next;
        pg_log_rule_free(r);
    }
    pg_catalog_free(&w->catalog);
    free(w->last_error);
    log_repeat_free(&w->complaints);
    free(w);
}

void pg_writer_get_stats(struct pg_writer *w, struct pg_writer_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!w)
        return;
    *out = w->st;
    out->rows_buffered = w->buffered_rows + w->mem.rows + w->split.rows + (w->inflight ? w->inflight->rows : 0);
    out->last_error = w->last_error;
}
