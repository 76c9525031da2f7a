/* pg_writer: see pg_writer.h.
 *
 * Order: rows of one table with the same columns are written in the order
 * they arrived. Batches go out one at a time, from three places in this
 * order: the split queue (halves of a batch that failed on bad data), the
 * spool (older rows the database could not take), then memory. While the
 * spool holds rows, a memory batch is never sent ahead of them.
 *
 * A spool record is "<table>\n<col>,<col>...\n<COPY text rows>". */
#include "postgres/writer.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/event_json.h"
#include "core/log.h"

#define MAX_COLUMNS 64
#define RETRY_MS 500

enum batch_source { FROM_MEMORY = 0, FROM_SPOOL, FROM_SPLIT };

struct column {
    char *name;
    unsigned oid;
    int notnull, hasdef, insertable;
};

struct table {
    char *name;
    struct column *cols;
    int ncols;
    int dedupe; /* has a unique key besides the primary key */
    struct table *next;
};

struct field {
    int kind; /* FIELD_* */
    char *literal;
    char **path; /* data.a.b -> {"a","b"} */
    int depth;
};
enum { FIELD_ROOM, FIELD_TYPE, FIELD_TAGS, FIELD_PRIORITY, FIELD_DATA, FIELD_LITERAL };

struct rule {
    char *name, *pattern, *table_name;
    char **tags;
    int tag_count;
    char **columns;
    struct field *fields;
    int nfields;
    struct table *t;   /* resolved with the catalog, like: */
    int *colidx;       /* each field's column index in t */
    uint64_t mask;     /* the columns the rule writes */
    struct bus_sub *sub;
    struct pg_writer *w;
    struct rule *next;
};

/* Rows being collected for one table and column set. */
struct buffer {
    struct table *t;
    uint64_t mask;
    char *data;
    size_t len, cap;
    uint32_t rows;
    struct buffer *next;
};

struct batch {
    char *table;
    char *cols;   /* "a,b,c" */
    char *data;
    size_t len;
    uint32_t rows;
    int source;
    struct batch *next;
};

struct batch_queue {
    struct batch *head, *tail;
    uint64_t rows;
};

struct pg_writer {
    uv_loop_t *loop;
    struct bus *bus;
    struct pg_pool *pool;
    struct spool *spool;
    struct pg_writer_options opt;
    struct table *tables;
    struct rule *rules;
    struct bus_sub *log_sub;
    struct buffer *buffers;
    uint64_t buffered_rows;
    struct batch_queue mem, split;
    struct batch *inflight;
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
    time_t log_second;
    int logs_this_second;
};

static void pump(struct pg_writer *w);
static void flush_all(struct pg_writer *w);
static void check_drained(struct pg_writer *w);

/* ------------------------------------------------------------ helpers */

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

/* Log a problem at warn, at most 20 lines a second; the rest at debug. */
static void complain(struct pg_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void complain(struct pg_writer *w, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(w->last_error);
    w->last_error = strdup(msg);
    time_t now = time(NULL);
    if (now != w->log_second) {
        w->log_second = now;
        w->logs_this_second = 0;
    }
    if (w->logs_this_second++ < 20)
        log_warn("pg.writer", "%s", msg);
    else
        log_debug("pg.writer", "%s", msg);
}

static int buf_reserve(char **buf, size_t *len, size_t *cap, size_t more)
{
    if (*len + more + 1 <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < *len + more + 1)
        ncap *= 2;
    char *n = realloc(*buf, ncap);
    if (!n)
        return -1;
    *buf = n;
    *cap = ncap;
    return 0;
}

static int buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (buf_reserve(buf, len, cap, n) != 0)
        return -1;
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

int pg_copy_escape(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (buf_reserve(buf, len, cap, 2 * n) != 0)
        return -1;
    char *o = *buf + *len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        case '\v': *o++ = '\\'; *o++ = 'v'; break;
        default: *o++ = c;
        }
    }
    *len = (size_t)(o - *buf);
    (*buf)[*len] = '\0';
    return 0;
}

int pg_format_epoch_ms(double ms, char *out, size_t outsz)
{
    if (!isfinite(ms) || ms < -62135596800000.0 || ms > 253402300799999.0)
        return -1;
    double secs = floor(ms / 1000.0);
    int millis = (int)llround(ms - secs * 1000.0);
    if (millis >= 1000) {
        secs += 1;
        millis -= 1000;
    }
    /* Rows come in runs from the same second: the date and time part is
     * formatted once per second (gmtime_r and snprintf were most of a
     * logged line's cost in the writer). */
    static __thread double cached_secs = -1e300;
    static __thread char cached[80];
    if (secs != cached_secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&t, &tm))
            return -1;
        snprintf(cached, sizeof cached, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_secs = secs;
    }
    size_t n = strlen(cached);
    if (outsz < n + 8)
        return -1;
    memcpy(out, cached, n);
    out[n] = '.';
    out[n + 1] = (char)('0' + millis / 100);
    out[n + 2] = (char)('0' + millis / 10 % 10);
    out[n + 3] = (char)('0' + millis % 10);
    memcpy(out + n + 4, "+00", 4);
    return 0;
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* YYYY-MM-DD[( |T)HH:MM[:SS[.f{1,6}]]][Z|(+|-)HH[[:]MM]] */
static int iso_timestamp_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
        return 0;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2))
            return 0;
        p += 5;
        if (*p == ':') {
            if (!digits(p + 1, 2))
                return 0;
            p += 3;
            if (*p == '.') {
                int k = 0;
                for (p++; *p >= '0' && *p <= '9'; p++)
                    k++;
                if (k < 1 || k > 6)
                    return 0;
            }
        }
    }
    if (*p == 'Z')
        p++;
    else if (*p == '+' || *p == '-') {
        if (!digits(p + 1, 2))
            return 0;
        p += 3;
        if (*p == ':')
            p++;
        if (*p) {
            if (!digits(p, 2))
                return 0;
            p += 2;
        }
    }
    return *p == '\0';
}

/* ------------------------------------------------------------ tables */

static struct table *find_table(struct pg_writer *w, const char *name)
{
    for (struct table *t = w->tables; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

static int find_column(const struct table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return i;
    return -1;
}

static void free_tables(struct pg_writer *w)
{
    while (w->tables) {
        struct table *t = w->tables;
        w->tables = t->next;
        for (int i = 0; i < t->ncols; i++)
            free(t->cols[i].name);
        free(t->cols);
        free(t->name);
        free(t);
    }
}

/* ------------------------------------------------------------ rows */

enum {
    OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25, OID_JSON = 114,
    OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_BPCHAR = 1042, OID_VARCHAR = 1043, OID_DATE = 1082,
    OID_TIMESTAMP = 1114, OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700, OID_JSONB = 3802, OID_NAME = 19,
};

/* Appends column c's COPY field for value v; returns NULL or why it is refused. */
static const char *encode_value(char **buf, size_t *len, size_t *cap, const struct column *c, json_t *v,
                                char *why, size_t whysz)
{
    char tmp[64];
    if (!v || json_is_null(v)) {
        if (c->notnull) {
            snprintf(why, whysz, "missing field %s (the column is NOT NULL)", c->name);
            return why;
        }
        return buf_add(buf, len, cap, "\\N", 2) == 0 ? NULL : "out of memory";
    }
    switch (c->oid) {
    case OID_BOOL:
        if (!json_is_boolean(v))
            break;
        return buf_add(buf, len, cap, json_is_true(v) ? "t" : "f", 1) == 0 ? NULL : "out of memory";
    case OID_INT2: case OID_INT4: case OID_INT8: {
        json_int_t i;
        if (json_is_integer(v))
            i = json_integer_value(v);
        else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
            i = (json_int_t)json_real_value(v);
        else
            break;
        if ((c->oid == OID_INT2 && (i < -32768 || i > 32767)) ||
            (c->oid == OID_INT4 && (i < -2147483648LL || i > 2147483647LL))) {
            snprintf(why, whysz, "field %s: %lld is out of range", c->name, (long long)i);
            return why;
        }
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)i);
        return buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
    }
    case OID_FLOAT4: case OID_FLOAT8: case OID_NUMERIC: {
        if (!json_is_number(v))
            break;
        int n = json_is_integer(v) ? snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v))
                                   : snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
        return buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
    }
    case OID_JSON: case OID_JSONB: {
        /* CyTube's meta is mostly {}: no need to run the encoder for it. */
        if ((json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0))
            return buf_add(buf, len, cap, json_is_object(v) ? "{}" : "[]", 2) == 0 ? NULL : "out of memory";
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            return "out of memory";
        if (strstr(text, "\\u0000")) {
            free(text);
            snprintf(why, whysz, "field %s: JSON with a NUL character", c->name);
            return why;
        }
        int rc = pg_copy_escape(buf, len, cap, text, strlen(text));
        free(text);
        return rc == 0 ? NULL : "out of memory";
    }
    case OID_TIMESTAMPTZ: case OID_TIMESTAMP: case OID_DATE:
        if (json_is_number(v)) {
            if (pg_format_epoch_ms(json_number_value(v), tmp, sizeof tmp) != 0) {
                snprintf(why, whysz, "field %s: time %g ms is out of range", c->name, json_number_value(v));
                return why;
            }
            return buf_add(buf, len, cap, tmp, strlen(tmp)) == 0 ? NULL : "out of memory";
        }
        if (json_is_string(v) && iso_timestamp_ok(json_string_value(v)))
            return buf_add(buf, len, cap, json_string_value(v), json_string_length(v)) == 0 ? NULL : "out of memory";
        snprintf(why, whysz, "field %s: expected epoch milliseconds or an ISO 8601 time", c->name);
        return why;
    default: /* text and everything else: strings (numbers and booleans as text) */
        if (json_is_string(v)) {
            if (strlen(json_string_value(v)) != json_string_length(v)) {
                snprintf(why, whysz, "field %s: text with a NUL character", c->name);
                return why;
            }
            return pg_copy_escape(buf, len, cap, json_string_value(v), json_string_length(v)) == 0 ? NULL
                                                                                                 : "out of memory";
        }
        if (json_is_integer(v)) {
            int n = snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
            return buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
        }
        if (json_is_real(v)) {
            int n = snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
            return buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
        }
        if (json_is_boolean(v))
            return buf_add(buf, len, cap, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5) == 0
                       ? NULL
                       : "out of memory";
        break;
    }
    snprintf(why, whysz, "field %s: wrong type (%s) for the column", c->name,
             json_is_object(v) ? "object" : json_is_array(v) ? "array" : json_is_string(v) ? "string"
             : json_is_boolean(v) ? "boolean" : "number");
    return why;
}

static struct buffer *get_buffer(struct pg_writer *w, struct table *t, uint64_t mask)
{
    struct buffer **pp = &w->buffers;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->t == t && (*pp)->mask == mask)
            return *pp;
    struct buffer *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->t = t;
    b->mask = mask;
    *pp = b;
    return b;
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
    complain(w, "%s", msg);
    return -1;
}

/* Buffers one row of table t: vals[i] is column i's value (NULL: SQL NULL)
 * for each column i in mask. Returns 0 or -1 (rejected and counted). */
static int buffer_row(struct pg_writer *w, struct table *t, uint64_t mask, json_t *const *vals)
{
    /* Columns left out must be nullable or have a default. */
    for (int i = 0; i < t->ncols && i < MAX_COLUMNS; i++) {
        const struct column *c = &t->cols[i];
        if (!(mask & (1ull << i)) && c->insertable && c->notnull && !c->hasdef)
            return reject(w, &w->st.rejected_bad_row, "row for %s rejected: missing field %s", t->name, c->name);
    }
    if (mask == 0)
        return reject(w, &w->st.rejected_bad_row, "row for %s rejected: no fields", t->name);
    struct buffer *b = get_buffer(w, t, mask);
    if (!b)
        return reject(w, NULL, "row for %s rejected: out of memory", t->name);
    size_t mark = b->len;
    char why[256];
    int first = 1;
    for (int i = 0; i < t->ncols && i < MAX_COLUMNS; i++) {
        if (!(mask & (1ull << i)))
            continue;
        if (!first && buf_add(&b->data, &b->len, &b->cap, "\t", 1) != 0)
            goto oom;
        first = 0;
        const char *err = encode_value(&b->data, &b->len, &b->cap, &t->cols[i], vals[i], why, sizeof why);
        if (err) {
            b->len = mark;
            if (b->data)
                b->data[mark] = '\0';
            return reject(w, &w->st.rejected_bad_row, "row for %s rejected: %s", t->name, err);
        }
    }
    if (buf_add(&b->data, &b->len, &b->cap, "\n", 1) != 0)
        goto oom;
    b->rows++;
    w->buffered_rows++;
    if (b->rows >= (uint32_t)w->opt.batch_size)
        flush_all(w);
    else
        arm_flush(w);
    return 0;
oom:
    b->len = mark;
    if (b->data)
        b->data[mark] = '\0';
    return reject(w, NULL, "row for %s rejected: out of memory", t->name);
}

/* One row as a JSON object (log.request, pg_writer_add_json): its keys
 * name the columns. Logger rules have theirs resolved once, at start. */
static int add_row(struct pg_writer *w, const char *table, json_t *row)
{
    w->st.rows_received++;
    struct table *t = table ? find_table(w, table) : NULL;
    if (!t)
        return reject(w, &w->st.rejected_unknown_table, "row rejected: unknown table %s", table ? table : "(none)");
    if (!json_is_object(row))
        return reject(w, &w->st.rejected_bad_row, "row for %s rejected: the row must be an object", t->name);
    uint64_t mask = 0;
    json_t *vals[MAX_COLUMNS];
    const char *key;
    json_t *v;
    json_object_foreach(row, key, v) {
        int i = find_column(t, key);
        if (i < 0 || i >= MAX_COLUMNS || !t->cols[i].insertable)
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

/* ------------------------------------------------------------ batches */

static void batch_free(struct batch *b)
{
    if (!b)
        return;
    free(b->table);
    free(b->cols);
    free(b->data);
    free(b);
}

static void q_push(struct batch_queue *q, struct batch *b)
{
    b->next = NULL;
    if (q->tail)
        q->tail->next = b;
    else
        q->head = b;
    q->tail = b;
    q->rows += b->rows;
}

static void q_push_front(struct batch_queue *q, struct batch *b)
{
    b->next = q->head;
    q->head = b;
    if (!q->tail)
        q->tail = b;
    q->rows += b->rows;
}

static struct batch *q_pop(struct batch_queue *q)
{
    struct batch *b = q->head;
    if (b) {
        q->head = b->next;
        if (!q->head)
            q->tail = NULL;
        q->rows -= b->rows;
        b->next = NULL;
    }
    return b;
}

/* A backlog is written in bigger batches: each commit costs a WAL flush and
 * a round trip, so under a flood 1,000-row batches leave the database
 * waiting on fsync rather than inserting. Consecutive batches of the same
 * table and columns are joined up to these bounds (the spool's record limit
 * stays far away). */
#define MERGE_MAX_ROWS 20000
#define MERGE_MAX_BYTES (8u * 1024 * 1024)

static int mergeable(const struct batch *a, const struct batch *b, uint32_t rows, size_t len)
{
    return rows + b->rows <= MERGE_MAX_ROWS && len + b->len <= MERGE_MAX_BYTES && strcmp(a->table, b->table) == 0 &&
           strcmp(a->cols, b->cols) == 0;
}

static struct batch *q_pop_merged(struct batch_queue *q)
{
    struct batch *b = q_pop(q);
    if (!b || !q->head || !mergeable(b, q->head, b->rows, b->len))
        return b;
    /* Size the joined batch first: one allocation, each row copied once. */
    uint32_t rows = b->rows;
    size_t len = b->len;
    for (struct batch *n = q->head; n && mergeable(b, n, rows, len); n = n->next) {
        rows += n->rows;
        len += n->len;
    }
    char *data = realloc(b->data, len + 1);
    if (!data)
        return b; /* the smaller batch is still fine */
    b->data = data;
    while (b->rows < rows) {
        struct batch *next = q_pop(q);
        memcpy(b->data + b->len, next->data, next->len + 1);
        b->len += next->len;
        b->rows += next->rows;
        batch_free(next);
    }
    return b;
}

static char *column_list(const struct table *t, uint64_t mask)
{
    char *s = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < t->ncols && i < MAX_COLUMNS; i++) {
        if (!(mask & (1ull << i)))
            continue;
        if ((len && buf_add(&s, &len, &cap, ",", 1) != 0) ||
            buf_add(&s, &len, &cap, t->cols[i].name, strlen(t->cols[i].name)) != 0) {
            free(s);
            return NULL;
        }
    }
    return s;
}

/* Moves every buffer into a batch on the memory queue. */
static void flush_all(struct pg_writer *w)
{
    for (struct buffer *b = w->buffers; b; b = b->next) {
        if (b->rows == 0)
            continue;
        struct batch *bt = calloc(1, sizeof *bt);
        char *cols = column_list(b->t, b->mask);
        char *table = strdup(b->t->name);
        if (!bt || !cols || !table) {
            free(bt);
            free(cols);
            free(table);
            w->st.rows_lost += b->rows;
            complain(w, "out of memory: %u rows for %s lost", b->rows, b->t->name);
        } else {
            bt->table = table;
            bt->cols = cols;
            bt->data = b->data;
            bt->len = b->len;
            bt->rows = b->rows;
            bt->source = FROM_MEMORY;
            q_push(&w->mem, bt);
            b->data = NULL;
            b->cap = 0;
        }
        w->buffered_rows -= b->rows;
        b->len = 0;
        b->rows = 0;
        free(b->data);
        b->data = NULL;
        b->cap = 0;
    }
    pump(w);
}

static void on_flush_timer(uv_timer_t *t)
{
    struct pg_writer *w = t->data;
    w->flush_armed = 0;
    flush_all(w);
}

/* The spool record of a batch. */
static char *batch_payload(const struct batch *b, size_t *len)
{
    size_t tl = strlen(b->table), cl = strlen(b->cols);
    char *p = malloc(tl + cl + 2 + b->len + 1);
    if (!p)
        return NULL;
    memcpy(p, b->table, tl);
    p[tl] = '\n';
    memcpy(p + tl + 1, b->cols, cl);
    p[tl + 1 + cl] = '\n';
    memcpy(p + tl + cl + 2, b->data, b->len);
    *len = tl + cl + 2 + b->len;
    p[*len] = '\0';
    return p;
}

static struct batch *batch_from_payload(char *p, size_t len, uint32_t rows)
{
    char *nl1 = memchr(p, '\n', len);
    char *nl2 = nl1 ? memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - p)) : NULL;
    if (!nl2)
        return NULL;
    struct batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->table = strndup(p, (size_t)(nl1 - p));
    b->cols = strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    b->len = len - (size_t)(nl2 + 1 - p);
    b->data = malloc(b->len + 1);
    if (!b->table || !b->cols || !b->data) {
        batch_free(b);
        return NULL;
    }
    memcpy(b->data, nl2 + 1, b->len);
    b->data[b->len] = '\0';
    b->rows = rows;
    b->source = FROM_SPOOL;
    return b;
}

/* Appends a batch to the spool; the batch is freed either way. */
static void spool_batch(struct pg_writer *w, struct batch *b)
{
    if (!w->spool) {
        w->st.rows_lost += b->rows;
        complain(w, "%u rows for %s lost: the database is unavailable and no spool is configured", b->rows, b->table);
        batch_free(b);
        return;
    }
    size_t len;
    char *p = batch_payload(b, &len);
    char err[256] = "";
    int rc = p ? spool_append(w->spool, p, len, b->rows, err, sizeof err) : -1;
    free(p);
    if (rc == 0) {
        w->st.rows_spooled += b->rows;
    } else if (rc == -2) {
        w->st.rows_lost += b->rows;
        complain(w, "spool full: refused %u rows for %s (spool.max_bytes reached)", b->rows, b->table);
    } else {
        w->st.rows_lost += b->rows;
        complain(w, "%u rows for %s lost: %s", b->rows, b->table, err[0] ? err : "out of memory");
    }
    batch_free(b);
}

/* Splits b's rows into two batches (b keeps the first half). */
static struct batch *batch_split(struct batch *b)
{
    uint32_t keep = b->rows / 2;
    size_t off = 0;
    for (uint32_t r = 0; r < keep; r++) {
        char *nl = memchr(b->data + off, '\n', b->len - off);
        if (!nl)
            return NULL;
        off = (size_t)(nl - b->data) + 1;
    }
    struct batch *second = calloc(1, sizeof *second);
    if (!second)
        return NULL;
    second->table = strdup(b->table);
    second->cols = strdup(b->cols);
    second->len = b->len - off;
    second->data = malloc(second->len + 1);
    if (!second->table || !second->cols || !second->data) {
        batch_free(second);
        return NULL;
    }
    memcpy(second->data, b->data + off, second->len);
    second->data[second->len] = '\0';
    second->rows = b->rows - keep;
    second->source = FROM_SPLIT;
    b->len = off;
    b->data[off] = '\0';
    b->rows = keep;
    b->source = FROM_SPLIT;
    return second;
}

static int quote_cols(const char *cols, char *out, size_t outsz)
{
    size_t o = 0;
    const char *p = cols;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[64];
        if (n == 0 || n >= sizeof name)
            return -1;
        memcpy(name, p, n);
        name[n] = '\0';
        if (!pg_ident_ok(name))
            return -1;
        int w = snprintf(out + o, outsz - o, "%s\"%s\"", o ? "," : "", name);
        if (w < 0 || (size_t)w >= outsz - o)
            return -1;
        o += (size_t)w;
        p += n + (end ? 1 : 0);
    }
    return o ? 0 : -1;
}

static void on_batch_done(struct pg_job *job, void *ctx);

/* Builds the job that commits batch b. The staging table is named after a
 * hash of table and columns so it fits in an identifier. */
static struct pg_job *batch_job(struct pg_writer *w, struct batch *b)
{
    char cols[MAX_COLUMNS * 68];
    if (!pg_ident_ok(b->table) || quote_cols(b->cols, cols, sizeof cols) != 0)
        return NULL;
    struct table *t = find_table(w, b->table);
    char *data = malloc(b->len + 1);
    if (!data)
        return NULL;
    memcpy(data, b->data, b->len + 1);
    struct pg_job *job;
    char sql[3 * sizeof cols + 512];
    if (t && t->dedupe) {
        uint32_t h = 2166136261u;
        for (const char *p = b->table; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        for (const char *p = b->cols; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        char stage[40];
        snprintf(stage, sizeof stage, "_daz_stage_%08x", h);
        job = pg_job_new(3, 1, on_batch_done, w);
        if (!job) {
            free(data);
            return NULL;
        }
        snprintf(sql, sizeof sql,
                 "CREATE TEMP TABLE IF NOT EXISTS \"%s\" ON COMMIT DELETE ROWS AS SELECT %s FROM \"%s\" WITH NO DATA",
                 stage, cols, b->table);
        int rc = pg_job_set(job, 0, sql, 0, NULL);
        snprintf(sql, sizeof sql, "COPY \"%s\" (%s) FROM STDIN", stage, cols);
        rc |= pg_job_set(job, 1, sql, 0, NULL);
        snprintf(sql, sizeof sql, "INSERT INTO \"%s\" (%s) SELECT %s FROM \"%s\" ORDER BY ctid ON CONFLICT DO NOTHING",
                 b->table, cols, cols, stage);
        rc |= pg_job_set(job, 2, sql, 0, NULL);
        pg_job_set_copy_take(job, 1, data, b->len);
        if (rc != 0) {
            pg_job_free(job);
            return NULL;
        }
    } else {
        job = pg_job_new(1, 0, on_batch_done, w);
        if (!job) {
            free(data);
            return NULL;
        }
        snprintf(sql, sizeof sql, "COPY \"%s\" (%s) FROM STDIN", b->table, cols);
        pg_job_set_copy_take(job, 0, data, b->len);
        if (pg_job_set(job, 0, sql, 0, NULL) != 0) {
            pg_job_free(job);
            return NULL;
        }
    }
    return job;
}

/* Is this SQLSTATE about the server or the moment rather than the rows? */
static int transient_state(const char *s)
{
    return strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 || strncmp(s, "53", 2) == 0 ||
           strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0 || strcmp(s, "55P03") == 0;
}

static void on_retry_timer(uv_timer_t *t)
{
    pump(t->data);
}

static void on_batch_done(struct pg_job *job, void *ctx)
{
    struct pg_writer *w = ctx;
    struct batch *b = w->inflight;
    w->inflight = NULL;
    w->inflight_job = NULL;
    if (!b)
        return;
    if (!job->error.message) {
        w->st.rows_written += b->rows;
        w->st.batches_written++;
        if (b->source == FROM_SPOOL)
            spool_consume(w->spool);
        batch_free(b);
        pump(w);
        check_drained(w);
        return;
    }
    w->st.batches_failed++;
    const char *state = job->error.sqlstate;
    if (job->error.connection || transient_state(state)) {
        complain(w, "batch of %u rows for %s not written (%s %s); %s", b->rows, b->table, state, job->error.message,
                 b->source == FROM_MEMORY ? "spooling it" : "will retry");
        if (b->source == FROM_MEMORY && w->spool)
            spool_batch(w, b);
        else if (b->source == FROM_SPLIT || b->source == FROM_MEMORY)
            q_push_front(b->source == FROM_SPLIT ? &w->split : &w->mem, b);
        else
            batch_free(b); /* still in the spool */
        if (!w->closed && w->timers)
            uv_timer_start(&w->retry_timer, on_retry_timer, RETRY_MS, 0);
        check_drained(w);
        return;
    }
    /* The data: split until the bad rows are found; they alone are dropped. */
    if (b->source == FROM_SPOOL)
        spool_consume(w->spool);
    if (b->rows <= 1) {
        w->st.rows_rejected++;
        w->st.rejected_by_database++;
        complain(w, "row for %s rejected by the database: %s %s", b->table, state, job->error.message);
        batch_free(b);
    } else {
        struct batch *second = batch_split(b);
        if (!second) {
            w->st.rows_lost += b->rows;
            complain(w, "out of memory splitting a failed batch: %u rows for %s lost", b->rows, b->table);
            batch_free(b);
        } else {
            w->st.batches_split++;
            q_push_front(&w->split, second);
            q_push_front(&w->split, b);
        }
    }
    pump(w);
    check_drained(w);
}

static void send_batch(struct pg_writer *w, struct batch *b)
{
    struct pg_job *job = batch_job(w, b);
    if (!job) {
        w->st.rows_rejected += b->rows;
        w->st.rejected_bad_row += b->rows;
        complain(w, "batch for %s dropped: bad table or column names, or out of memory", b->table);
        if (b->source == FROM_SPOOL)
            spool_consume(w->spool);
        batch_free(b);
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
                spool_batch(w, q_pop(&w->mem));
        if (!w->spool && w->mem.rows > (uint64_t)w->opt.max_buffered_rows) {
            struct batch *b = q_pop(&w->mem);
            w->st.rows_lost += b->rows;
            complain(w, "%u rows for %s lost: too many rows buffered and no spool", b->rows, b->table);
            batch_free(b);
            continue;
        }
        if (!connected)
            return;
        if (w->split.head) {
            send_batch(w, q_pop(&w->split));
            continue;
        }
        if (spooled && !w->draining) {
            char *payload;
            size_t len;
            uint32_t rows;
            int rc = spool_peek(w->spool, &payload, &len, &rows);
            if (rc < 0) {
                complain(w, "cannot read the spool; will retry");
                uv_timer_start(&w->retry_timer, on_retry_timer, RETRY_MS * 4, 0);
                return;
            }
            if (rc == 0)
                continue; /* it was empty after all */
            struct batch *b = batch_from_payload(payload, len, rows);
            free(payload);
            if (!b) {
                complain(w, "unreadable spool record of %u rows skipped", rows);
                spool_consume(w->spool);
                continue;
            }
            send_batch(w, b);
            continue;
        }
        if (spooled && w->draining) {
            /* Shutting down: newer rows join the spool behind older ones. */
            while (w->mem.head)
                spool_batch(w, q_pop(&w->mem));
            return;
        }
        if (w->mem.head) {
            send_batch(w, q_pop_merged(&w->mem));
            continue;
        }
        return;
    }
    /* A batch is in flight: only the overflow can go to the spool now, and
     * only when the batch in flight is not from memory (order). */
    if (!w->closed && w->inflight && w->inflight->source != FROM_MEMORY && w->spool)
        while (w->mem.head && w->mem.rows > (uint64_t)w->opt.max_buffered_rows)
            spool_batch(w, q_pop(&w->mem));
}

void pg_writer_pool_state(struct pg_writer *w, int connected)
{
    if (w && w->started)
        pump(w);
}

/* ------------------------------------------------------------ events */

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

static json_t *event_field(struct event *ev, json_t *data, const struct field *f)
{
    switch (f->kind) {
    case FIELD_ROOM:
        return ev->room ? json_string(ev->room) : NULL;
    case FIELD_TYPE:
        return json_string(ev->type);
    case FIELD_PRIORITY:
        return json_integer(ev->priority);
    case FIELD_LITERAL:
        return json_string(f->literal);
    case FIELD_TAGS: {
        json_t *a = json_array();
        for (int i = 0; a && i < ev->tag_count; i++)
            json_array_append_new(a, json_string(ev->tags[i]));
        return a;
    }
    default: {
        json_t *v = data;
        for (int i = 0; v && i < f->depth; i++)
            v = json_is_object(v) ? json_object_get(v, f->path[i]) : NULL;
        return v ? json_incref(v) : NULL;
    }
    }
}

static void on_rule_event(struct event *ev, void *ctx)
{
    struct rule *r = ctx;
    /* Events from the rooms carry their parsed payload; others are parsed here. */
    json_t *data = event_json_value(ev);
    if (data) {
        json_incref(data);
    } else {
        size_t len;
        const char *text = event_json(ev, &len);
        data = text ? json_loadb(text, len, JSON_DECODE_ANY, NULL) : NULL;
    }
    json_t *values[MAX_COLUMNS], *vals[MAX_COLUMNS];
    for (int i = 0; i < r->nfields; i++) {
        values[i] = event_field(ev, data, &r->fields[i]);
        vals[r->colidx[i]] = values[i];
    }
    r->w->st.rows_received++;
    buffer_row(r->w, r->t, r->mask, vals);
    for (int i = 0; i < r->nfields; i++)
        json_decref(values[i]);
    json_decref(data);
}

/* ------------------------------------------------------------ rules */

static void free_rule(struct rule *r)
{
    free(r->name);
    free(r->pattern);
    free(r->table_name);
    for (int i = 0; i < r->tag_count; i++)
        free(r->tags[i]);
    free(r->tags);
    for (int i = 0; i < r->nfields; i++) {
        free(r->columns[i]);
        free(r->fields[i].literal);
        for (int k = 0; k < r->fields[i].depth; k++)
            free(r->fields[i].path[k]);
        free(r->fields[i].path);
    }
    free(r->columns);
    free(r->fields);
    free(r->colidx);
    free(r);
}

static int parse_field(struct field *f, const char *spec)
{
    if (spec[0] == '=') {
        f->kind = FIELD_LITERAL;
        return (f->literal = strdup(spec + 1)) ? 0 : -1;
    }
    if (strcmp(spec, "room") == 0) f->kind = FIELD_ROOM;
    else if (strcmp(spec, "type") == 0) f->kind = FIELD_TYPE;
    else if (strcmp(spec, "tags") == 0) f->kind = FIELD_TAGS;
    else if (strcmp(spec, "priority") == 0) f->kind = FIELD_PRIORITY;
    else if (strcmp(spec, "data") == 0) f->kind = FIELD_DATA;
    else if (strncmp(spec, "data.", 5) == 0) {
        f->kind = FIELD_DATA;
        const char *p = spec + 5;
        int n = 1;
        for (const char *q = p; *q; q++)
            n += *q == '.';
        f->path = calloc((size_t)n, sizeof *f->path);
        if (!f->path)
            return -1;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t len = dot ? (size_t)(dot - p) : strlen(p);
            if (len == 0)
                return -1;
            if (!(f->path[f->depth++] = strndup(p, len)))
                return -1;
            p += len + (dot ? 1 : 0);
            if (dot && !*p)
                return -1;
        }
    } else {
        return -1;
    }
    return 0;
}

int pg_writer_add_rule(struct pg_writer *w, const struct pg_logger_rule *in, char *err, size_t errsz)
{
    if (!pg_ident_ok(in->table)) {
        snprintf(err, errsz, "loggers.%s.table: %s is not a plain lower-case table name", in->name, in->table);
        return -1;
    }
    if (in->field_count > MAX_COLUMNS) {
        snprintf(err, errsz, "loggers.%s.fields: %d fields, at most %d", in->name, in->field_count, MAX_COLUMNS);
        return -1;
    }
    struct rule *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->w = w;
    r->name = xstrdup(in->name);
    r->pattern = xstrdup(in->pattern);
    r->table_name = xstrdup(in->table);
    r->tags = calloc((size_t)in->tag_count + 1, sizeof *r->tags);
    r->columns = calloc((size_t)in->field_count + 1, sizeof *r->columns);
    r->fields = calloc((size_t)in->field_count + 1, sizeof *r->fields);
    r->colidx = calloc((size_t)in->field_count + 1, sizeof *r->colidx);
    if (!r->name || !r->pattern || !r->table_name || !r->tags || !r->columns || !r->fields || !r->colidx)
        goto oom;
    for (int i = 0; i < in->tag_count; i++) {
        if (!(r->tags[i] = strdup(in->tags[i])))
            goto oom;
        r->tag_count++;
    }
    for (int i = 0; i < in->field_count; i++) {
        r->nfields++;
        if (!pg_ident_ok(in->columns[i])) {
            snprintf(err, errsz, "loggers.%s.fields: %s is not a plain lower-case column name", in->name,
                     in->columns[i]);
            free_rule(r);
            return -1;
        }
        if (!(r->columns[i] = strdup(in->columns[i])))
            goto oom;
        if (parse_field(&r->fields[i], in->fields[i]) != 0) {
            snprintf(err, errsz,
                     "loggers.%s.fields.%s: %s is not a field (room, type, tags, priority, data, data.<path>, =literal)",
                     in->name, in->columns[i], in->fields[i]);
            free_rule(r);
            return -1;
        }
    }
    r->next = w->rules;
    w->rules = r;
    return 0;
oom:
    if (r)
        free_rule(r);
    snprintf(err, errsz, "out of memory");
    return -1;
}

/* ------------------------------------------------------------ catalog */

static const char CATALOG_COLUMNS[] =
    "SELECT c.relname, a.attname, a.atttypid::int, a.attnotnull, a.atthasdef OR a.attidentity <> '', "
    "a.attidentity <> 'a' AND a.attgenerated = '' "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname LIKE 'daz\\_%' "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum";
static const char CATALOG_UNIQUE[] =
    "SELECT DISTINCT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND i.indisunique AND NOT i.indisprimary AND c.relname LIKE 'daz\\_%'";

static int load_catalog(struct pg_writer *w, PGresult *cols, PGresult *uniq)
{
    free_tables(w);
    struct table *t = NULL, **tail = &w->tables;
    for (int i = 0; i < PQntuples(cols); i++) {
        const char *rel = PQgetvalue(cols, i, 0);
        if (!t || strcmp(t->name, rel) != 0) {
            t = calloc(1, sizeof *t);
            if (!t || !(t->name = strdup(rel))) {
                free(t);
                return -1;
            }
            *tail = t;
            tail = &t->next;
        }
        struct column *nc = realloc(t->cols, (size_t)(t->ncols + 1) * sizeof *nc);
        if (!nc)
            return -1;
        t->cols = nc;
        struct column *c = &t->cols[t->ncols];
        if (!(c->name = strdup(PQgetvalue(cols, i, 1))))
            return -1;
        t->ncols++;
        c->oid = (unsigned)strtoul(PQgetvalue(cols, i, 2), NULL, 10);
        c->notnull = PQgetvalue(cols, i, 3)[0] == 't';
        c->hasdef = PQgetvalue(cols, i, 4)[0] == 't';
        c->insertable = PQgetvalue(cols, i, 5)[0] == 't' && pg_ident_ok(c->name);
    }
    for (int i = 0; i < PQntuples(uniq); i++) {
        struct table *u = find_table(w, PQgetvalue(uniq, i, 0));
        if (u)
            u->dedupe = 1;
    }
    return 0;
}

static void subscribe_all(struct pg_writer *w)
{
    w->log_sub = bus_subscribe(w->bus, "log.request", NULL, 0, 0, on_log_request, w);
    for (struct rule *r = w->rules; r; r = r->next)
        if (r->t)
            r->sub = bus_subscribe(w->bus, r->pattern, (const char *const *)r->tags, r->tag_count, 0, on_rule_event, r);
}

static void on_catalog(struct pg_job *job, void *ctx)
{
    struct pg_writer *w = ctx;
    char err[512] = "";
    if (job->error.message) {
        snprintf(err, sizeof err, "cannot read the table catalog: %s %s", job->error.sqlstate, job->error.message);
    } else if (load_catalog(w, job->results[0], job->results[1]) != 0) {
        snprintf(err, sizeof err, "out of memory reading the catalog");
    } else {
        for (struct rule *r = w->rules; r && !err[0]; r = r->next) {
            r->t = find_table(w, r->table_name);
            if (!r->t) {
                snprintf(err, sizeof err, "logger %s: table %s does not exist (add a migration in sql/)", r->name,
                         r->table_name);
                break;
            }
            for (int i = 0; i < r->nfields; i++) {
                int c = find_column(r->t, r->columns[i]);
                if (c < 0 || c >= MAX_COLUMNS || !r->t->cols[c].insertable) {
                    snprintf(err, sizeof err, "logger %s: table %s has no writable column %s", r->name, r->table_name,
                             r->columns[i]);
                    break;
                }
                r->colidx[i] = c;
                r->mask |= 1ull << c;
            }
        }
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
    for (struct rule *r = w->rules; r; r = r->next)
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
    }
    w->ready = done;
    w->ready_ctx = ctx;
    struct pg_job *job = pg_job_new(2, 0, on_catalog, w);
    if (!job || pg_job_set(job, 0, CATALOG_COLUMNS, 0, NULL) != 0 || pg_job_set(job, 1, CATALOG_UNIQUE, 0, NULL) != 0) {
        pg_job_free(job);
        w->ready = NULL;
        done(0, "out of memory", ctx);
        return;
    }
    pg_submit(w->pool, job);
}

/* ------------------------------------------------------------ lifecycle */

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
    return w;
}

static void unsubscribe_all(struct pg_writer *w)
{
    if (w->log_sub)
        bus_unsubscribe(w->bus, w->log_sub);
    w->log_sub = NULL;
    for (struct rule *r = w->rules; r; r = r->next) {
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
        struct batch *b = w->inflight;
        w->inflight = NULL;
        w->inflight_job = NULL;
        if (b->source == FROM_SPOOL)
            batch_free(b);
        else
            spool_batch(w, b);
    }
    while (w->split.head)
        spool_batch(w, q_pop(&w->split));
    while (w->mem.head)
        spool_batch(w, q_pop(&w->mem));
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
}

void pg_writer_free(struct pg_writer *w)
{
    if (!w)
        return;
    batch_free(w->inflight);
    struct batch *b;
    while ((b = q_pop(&w->mem)) != NULL)
        batch_free(b);
    while ((b = q_pop(&w->split)) != NULL)
        batch_free(b);
    while (w->buffers) {
        struct buffer *bf = w->buffers;
        w->buffers = bf->next;
        free(bf->data);
        free(bf);
    }
    while (w->rules) {
        struct rule *r = w->rules;
        w->rules = r->next;
        free_rule(r);
    }
    free_tables(w);
    free(w->last_error);
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
