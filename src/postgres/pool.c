/* pg: see pg.h.
 *
 * Each slot owns at most one PGconn and one uv_poll_t on its socket. A job
 * runs as a sequence of steps on one connection: BEGIN (in a transaction),
 * the statements, COMMIT; after an error in a transaction, ROLLBACK. A
 * statement whose result is PGRES_COPY_IN is fed the job's copy data. */
#include "postgres/pool.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"

#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 5000
#define COPY_CHUNK (256 * 1024)

enum conn_state { CONN_DOWN = 0, CONN_CONNECTING, CONN_IDLE, CONN_BUSY, CONN_PINNED };

struct pg_poll {
    uv_poll_t handle;
    struct pg_conn *conn; /* NULL once detached */
    int fd;
    int events;
};

struct pg_conn {
    struct pg_pool *pool;
    int index;
    enum conn_state state;
    PGconn *pg;
    struct pg_poll *poll;
    uv_timer_t timer;      /* reconnect backoff and connect timeout */
    int backoff_ms;
    struct pg_job *job;
    int step;              /* index into the job's steps */
    int rolling_back;
    int copy_state;        /* 0 none, 1 sending data, 2 sending end */
    size_t copy_off;
    int job_failed;
    int ever_connected;
    int tried;             /* the first connection attempt is over */
    uint32_t generation;   /* bumped on every new connection: stale sessions fail */
};

struct pg_pool {
    uv_loop_t *loop;
    char *conninfo;
    int size;
    int connect_timeout_ms, queue_timeout_ms;
    size_t max_queued;
    struct pg_conn *conns;
    struct pg_job *head, *tail;
    size_t queued;
    uv_timer_t queue_timer;
    int closing;
    int started;
    int launched;          /* slots whose first connection attempt has begun */
    int filling;           /* pg_pool_fill: launch every slot */
    int connected, in_use;
    uint64_t jobs, errors, connection_errors, reconnects;
    unsigned long long hist[PG_HIST_BUCKETS + 1];
    double seconds;
    char *last_error;
    pg_state_fn on_state;
    void *on_state_ctx;
};

static void conn_io(struct pg_conn *c, int events);
static void conn_connect_io(struct pg_conn *c);
static void conn_start(struct pg_conn *c);
static void conn_lost(struct pg_conn *c, const char *why);
static void pool_pump(struct pg_pool *pool);
static int send_step(struct pg_conn *c);

const double pg_hist_bounds[PG_HIST_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2.5};

static double monotonic_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t pg_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int pg_ident_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 63)
        return 0;
    if (!((name[0] >= 'a' && name[0] <= 'z') || name[0] == '_'))
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return 0;
    return 1;
}

enum pg_type_class pg_type_class(Oid oid)
{
    switch (oid) {
    case 20: case 21: case 23: case 26: return PG_CLASS_INT;      /* int8 int2 int4 oid */
    case 700: case 701: return PG_CLASS_FLOAT;                     /* float4 float8 */
    case 1700: return PG_CLASS_NUMERIC;
    case 16: return PG_CLASS_BOOL;
    case 114: case 3802: return PG_CLASS_JSON;                     /* json jsonb */
    case 1114: case 1184: return PG_CLASS_TIMESTAMP;               /* timestamp timestamptz */
    default: return PG_CLASS_TEXT;
    }
}

static int days_from_civil(int y, int m, int d, long long *out)
{
    if (m < 1 || m > 12 || d < 1 || d > 31)
        return -1;
    y -= m <= 2;
    long long era = (y >= 0 ? y : y - 399) / 400;
    long long yoe = y - era * 400;
    long long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    *out = era * 146097 + doe - 719468;
    return 0;
}

int pg_parse_timestamp(const char *s, double *secs)
{
    int y, mo, d, h, mi, n = 0;
    double sec;
    if (sscanf(s, "%4d-%2d-%2d %2d:%2d:%lf%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6)
        return -1;
    const char *p = s + n;
    int off = 0;
    if (*p == '+' || *p == '-') {
        int sign = *p == '-' ? -1 : 1, oh = 0, om = 0, os = 0;
        if (sscanf(p + 1, "%2d:%2d:%2d", &oh, &om, &os) < 1)
            return -1;
        off = sign * (oh * 3600 + om * 60 + os);
        p++;
        while (*p && ((*p >= '0' && *p <= '9') || *p == ':'))
            p++;
    }
    if (*p != '\0')
        return -1; /* " BC" and anything else unusual */
    long long days;
    if (days_from_civil(y, mo, d, &days) != 0)
        return -1;
    *secs = (double)(days * 86400 + h * 3600 + mi * 60 - off) + sec;
    return 0;
}

int pg_numeric_kind(const char *s, long long *i, double *d)
{
    const char *p = s;
    if (*p == '-' || *p == '+')
        p++;
    int digits = 0, significant = 0, dot = 0, started = 0, trailing_zeros = 0;
    for (; *p; p++) {
        if (*p == '.') {
            if (dot++)
                return 2;
            continue;
        }
        if (*p < '0' || *p > '9')
            break;
        digits++;
        if (*p != '0' || started) {
            started = 1;
            significant++;
        }
        trailing_zeros = *p == '0' && dot ? trailing_zeros + 1 : 0;
    }
    if (*p != '\0') {
        if (strcmp(s, "NaN") == 0) {
            *d = NAN;
            return 1;
        }
        return 2;
    }
    if (digits == 0)
        return 2;
    if (!dot) {
        errno = 0;
        char *end;
        long long v = strtoll(s, &end, 10);
        if (errno == 0 && *end == '\0') {
            *i = v;
            return 0;
        }
        return 2;
    }
    if (significant - trailing_zeros <= 15) {
        *d = strtod(s, NULL);
        return 1;
    }
    return 2;
}

static void set_last_error(struct pg_pool *pool, const char *msg)
{
    char *copy = strdup(msg ? msg : "?");
    if (!copy)
        return;
    /* libpq messages end with a newline. */
    size_t n = strlen(copy);
    while (n > 0 && (copy[n - 1] == '\n' || copy[n - 1] == ' '))
        copy[--n] = '\0';
    free(pool->last_error);
    pool->last_error = copy;
}

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    log_debug("pg", "notice: %s", message);
}

/* ------------------------------------------------------------ jobs */

struct pg_job *pg_job_new(int nstmts, int transaction, pg_job_fn done, void *ctx)
{
    struct pg_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->stmts = calloc((size_t)(nstmts > 0 ? nstmts : 1), sizeof *job->stmts);
    job->results = calloc((size_t)(nstmts > 0 ? nstmts : 1), sizeof *job->results);
    if (!job->stmts || !job->results) {
        free(job->stmts);
        free(job->results);
        free(job);
        return NULL;
    }
    job->nstmts = nstmts;
    job->transaction = transaction;
    job->done = done;
    job->ctx = ctx;
    return job;
}

int pg_job_set(struct pg_job *job, int i, const char *sql, int nparams, const char *const *params)
{
    struct pg_stmt *s = &job->stmts[i];
    s->sql = strdup(sql);
    if (!s->sql)
        return -1;
    if (nparams > 0) {
        s->params = calloc((size_t)nparams, sizeof *s->params);
        if (!s->params)
            return -1;
        s->nparams = nparams;
        for (int k = 0; k < nparams; k++) {
            if (params[k] && !(s->params[k] = strdup(params[k])))
                return -1;
        }
    }
    return 0;
}

void pg_job_set_copy_take(struct pg_job *job, int i, char *copy_data, size_t copy_len)
{
    free(job->stmts[i].copy_data);
    job->stmts[i].copy_data = copy_data;
    job->stmts[i].copy_len = copy_len;
}

void pg_job_free(struct pg_job *job)
{
    if (!job)
        return;
    for (int i = 0; i < job->nstmts; i++) {
        struct pg_stmt *s = &job->stmts[i];
        free(s->sql);
        for (int k = 0; k < s->nparams; k++)
            free(s->params[k]);
        free(s->params);
        free(s->copy_data);
        if (job->results[i])
            PQclear(job->results[i]);
    }
    free(job->stmts);
    free(job->results);
    free(job->error.message);
    free(job);
}

static void job_set_error(struct pg_job *job, const char *sqlstate, const char *message, int connection)
{
    if (job->error.message)
        return; /* keep the first */
    snprintf(job->error.sqlstate, sizeof job->error.sqlstate, "%s", sqlstate ? sqlstate : "XX000");
    job->error.message = strdup(message ? message : "unknown error");
    if (job->error.message) {
        size_t n = strlen(job->error.message);
        while (n > 0 && (job->error.message[n - 1] == '\n' || job->error.message[n - 1] == ' '))
            job->error.message[--n] = '\0';
    }
    job->error.connection = connection;
}

/* Calls the callback (unless cancelled) and frees the job. */
static void job_finish(struct pg_pool *pool, struct pg_job *job)
{
    if (job->submitted > 0) {
        double took = monotonic_s() - job->submitted;
        int b = 0;
        while (b < PG_HIST_BUCKETS && took > pg_hist_bounds[b])
            b++;
        pool->hist[b]++;
        pool->seconds += took;
    }
    if (job->error.message) {
        pool->errors++;
        if (job->error.connection)
            pool->connection_errors++;
    }
    if (!job->cancelled && job->done)
        job->done(job, job->ctx);
    pg_job_free(job);
}

void pg_job_cancel(struct pg_job *job)
{
    if (job)
        job->cancelled = 1;
}

static int submit(struct pg_pool *pool, struct pg_job *job, int first)
{
    if (pool->closing || pool->queued >= pool->max_queued) {
        job_set_error(job, "08006", pool->closing ? "database pool closed" : "too many queued database jobs", 1);
        job_finish(pool, job);
        return -1;
    }
    job->queued_at_ms = pg_now_ms();
    job->submitted = monotonic_s();
    if (first) {
        /* Keeps the queue ordered by age, which the queue timeout relies on. */
        if (pool->head && pool->head->queued_at_ms < job->queued_at_ms)
            job->queued_at_ms = pool->head->queued_at_ms;
        job->next = pool->head;
        pool->head = job;
        if (!pool->tail)
            pool->tail = job;
    } else {
        job->next = NULL;
        if (pool->tail)
            pool->tail->next = job;
        else
            pool->head = job;
        pool->tail = job;
    }
    pool->queued++;
    pool->jobs++;
    pool_pump(pool);
    return 0;
}

int pg_submit(struct pg_pool *pool, struct pg_job *job) { return submit(pool, job, 0); }

int pg_submit_first(struct pg_pool *pool, struct pg_job *job) { return submit(pool, job, 1); }

static struct pg_job *queue_pop(struct pg_pool *pool)
{
    struct pg_job *job = pool->head;
    if (job) {
        pool->head = job->next;
        if (!pool->head)
            pool->tail = NULL;
        pool->queued--;
        job->next = NULL;
    }
    return job;
}

/* ------------------------------------------------------------ polling */

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct pg_poll *pp = h->data;
    if (!pp->conn)
        return;
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE; /* let libpq find out what is wrong */
    conn_io(pp->conn, events);
}

static void poll_detach(struct pg_conn *c)
{
    if (!c->poll)
        return;
    c->poll->conn = NULL;
    uv_close((uv_handle_t *)&c->poll->handle, on_poll_closed); /* stops watching now */
    c->poll = NULL;
}

/* Watch the connection's socket for `events` (re-creating the poll when the
 * socket changed). Returns 0 or -1. */
static int poll_want(struct pg_conn *c, int events)
{
    int fd = PQsocket(c->pg);
    if (fd < 0)
        return -1;
    if (c->poll && c->poll->fd != fd)
        poll_detach(c);
    if (!c->poll) {
        struct pg_poll *pp = calloc(1, sizeof *pp);
        if (!pp)
            return -1;
        if (uv_poll_init(c->pool->loop, &pp->handle, fd) != 0) {
            free(pp);
            return -1;
        }
        pp->handle.data = pp;
        pp->conn = c;
        pp->fd = fd;
        pp->events = -1;
        c->poll = pp;
    }
    if (c->poll->events != events) {
        if (uv_poll_start(&c->poll->handle, events, on_poll) != 0)
            return -1;
        c->poll->events = events;
    }
    return 0;
}

/* ------------------------------------------------------------ connections */

static void on_conn_timer(uv_timer_t *t)
{
    struct pg_conn *c = t->data;
    if (c->pool->closing)
        return;
    if (c->state == CONN_DOWN) {
        conn_start(c);
    } else if (c->state == CONN_CONNECTING) {
        conn_lost(c, "connection attempt timed out");
    }
}

/* Starts the first connection attempt of the next slot. One at a time: the
 * server starts backends one after another, so four simultaneous attempts
 * made the first connection (the one startup waits for) wait for all four
 * (~90 ms instead of ~25 ms on the 2-core VM). */
static void launch_next(struct pg_pool *pool)
{
    if (!pool->closing && pool->launched < pool->size)
        conn_start(&pool->conns[pool->launched++]);
}

/* The slot's first attempt is over (up or failed): once the pool fills, the
 * next may begin. */
static void first_attempt_over(struct pg_conn *c)
{
    if (c->tried)
        return;
    c->tried = 1;
    if (c->pool->filling && c->index == c->pool->launched - 1)
        launch_next(c->pool);
}

static void notify_state(struct pg_pool *pool)
{
    if (pool->on_state)
        pool->on_state(pool, pool->connected, pool->on_state_ctx);
}

/* Tear the connection down and schedule a new attempt with backoff. */
static void conn_lost(struct pg_conn *c, const char *why)
{
    struct pg_pool *pool = c->pool;
    int was_up = c->state == CONN_IDLE || c->state == CONN_BUSY || c->state == CONN_PINNED;
    const char *msg = why ? why : (c->pg ? PQerrorMessage(c->pg) : "connection failed");
    set_last_error(pool, msg && *msg ? msg : "connection failed");
    if (was_up || !c->ever_connected || c->backoff_ms >= BACKOFF_MAX_MS / 2)
        log_warn("pg", "connection %d: %s", c->index, pool->last_error);
    else
        log_debug("pg", "connection %d: %s", c->index, pool->last_error);
    struct pg_job *job = c->job;
    c->job = NULL;
    if (c->state == CONN_BUSY || c->state == CONN_PINNED)
        pool->in_use--;
    if (was_up)
        pool->connected--;
    poll_detach(c);
    if (c->pg)
        PQfinish(c->pg);
    c->pg = NULL;
    c->state = CONN_DOWN;
    if (job) {
        job_set_error(job, "08006", pool->last_error, 1);
        job_finish(pool, job);
    }
    if (!pool->closing) {
        int delay = c->backoff_ms ? c->backoff_ms : BACKOFF_MIN_MS;
        c->backoff_ms = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2;
        delay += rand() % (delay / 4 + 1);
        uv_timer_start(&c->timer, on_conn_timer, (uint64_t)delay, 0);
    }
    if (was_up)
        notify_state(pool);
    first_attempt_over(c);
}

static void conn_start(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    const char *keys[] = {"dbname", "application_name", "options", "connect_timeout", NULL};
    char timeout[16];
    snprintf(timeout, sizeof timeout, "%d", (pool->connect_timeout_ms + 999) / 1000);
    const char *vals[] = {pool->conninfo, "daz", "-c TimeZone=UTC -c DateStyle=ISO,YMD -c extra_float_digits=3 -c synchronous_commit=on",
                          timeout, NULL};
    c->pg = PQconnectStartParams(keys, vals, 1);
    c->state = CONN_CONNECTING;
    if (!c->pg || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, c->pg ? NULL : "out of memory");
        return;
    }
    PQsetNoticeProcessor(c->pg, quiet_notices, NULL);
    uv_timer_start(&c->timer, on_conn_timer, (uint64_t)pool->connect_timeout_ms, 0);
    if (poll_want(c, UV_WRITABLE) != 0) {
        conn_lost(c, "cannot watch the database socket");
        return;
    }
    /* libpq: once the socket is writable, poll. A Unix socket is at once:
     * then the startup packet goes out now, not a loop turn later, and the
     * server sets the backend up while we go on with our own start. */
    struct pollfd pfd = {.fd = PQsocket(c->pg), .events = POLLOUT};
    if (pfd.fd >= 0 && poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLOUT))
        conn_connect_io(c);
}

static void conn_connect_io(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (poll_want(c, UV_READABLE) != 0)
            conn_lost(c, "cannot watch the database socket");
        return;
    case PGRES_POLLING_WRITING:
        if (poll_want(c, UV_WRITABLE) != 0)
            conn_lost(c, "cannot watch the database socket");
        return;
    case PGRES_POLLING_OK:
        break;
    default:
        conn_lost(c, NULL);
        return;
    }
    uv_timer_stop(&c->timer);
    if (PQsetnonblocking(c->pg, 1) != 0 || poll_want(c, UV_READABLE) != 0) {
        conn_lost(c, "cannot make the connection non-blocking");
        return;
    }
    if (c->ever_connected || c->backoff_ms)
        pool->reconnects++;
    c->ever_connected = 1;
    c->generation++;
    c->backoff_ms = 0;
    c->state = CONN_IDLE;
    pool->connected++;
    log_info("pg", "connection %d up (%d/%d, server %d)", c->index, pool->connected, pool->size,
             PQserverVersion(c->pg));
    notify_state(pool);
    pool_pump(pool);
    first_attempt_over(c);
}

/* The SQL and parameters of the connection's current step. */
static const char *step_sql(struct pg_conn *c, const struct pg_stmt **stmt)
{
    struct pg_job *job = c->job;
    *stmt = NULL;
    if (c->rolling_back)
        return "ROLLBACK";
    if (job->transaction) {
        if (c->step == 0)
            return "BEGIN";
        if (c->step == job->nstmts + 1)
            return "COMMIT";
        *stmt = &job->stmts[c->step - 1];
    } else {
        *stmt = &job->stmts[c->step];
    }
    return (*stmt)->sql;
}

static int stmt_index(struct pg_conn *c)
{
    if (c->rolling_back)
        return -1;
    int i = c->job->transaction ? c->step - 1 : c->step;
    return i >= 0 && i < c->job->nstmts ? i : -1;
}

static int flush_out(struct pg_conn *c)
{
    int rc = PQflush(c->pg);
    if (rc < 0)
        return -1;
    return poll_want(c, rc == 1 ? (UV_READABLE | UV_WRITABLE) : UV_READABLE);
}

static int send_step(struct pg_conn *c)
{
    const struct pg_stmt *s;
    const char *sql = step_sql(c, &s);
    int ok = s && !s->simple ? PQsendQueryParams(c->pg, sql, s->nparams, NULL, (const char *const *)s->params, NULL, NULL, 0)
               : PQsendQuery(c->pg, s ? s->sql : sql);
    if (!ok)
        return -1;
    return flush_out(c);
}

static void conn_job_done(struct pg_conn *c)
{
    struct pg_pool *pool = c->pool;
    struct pg_job *job = c->job;
    c->job = NULL;
    if (job->keep_connection && !job->error.message && !job->cancelled) {
        c->state = CONN_PINNED;
        job->session = (uint64_t)c->generation << 16 | (uint64_t)(c->index + 1);
    } else {
        c->state = CONN_IDLE;
        pool->in_use--;
    }
    job_finish(pool, job);
    pool_pump(pool);
}

/* Feed the COPY data; returns 0 (maybe waiting for writability) or -1. */
static int copy_pump(struct pg_conn *c)
{
    int i = stmt_index(c);
    const struct pg_stmt *s = i >= 0 ? &c->job->stmts[i] : NULL;
    if (c->copy_state == 1) {
        while (s && c->copy_off < s->copy_len) {
            size_t n = s->copy_len - c->copy_off;
            if (n > COPY_CHUNK)
                n = COPY_CHUNK;
            int rc = PQputCopyData(c->pg, s->copy_data + c->copy_off, (int)n);
            if (rc < 0)
                return -1;
            if (rc == 0)
                return poll_want(c, UV_READABLE | UV_WRITABLE);
            c->copy_off += n;
        }
        c->copy_state = 2;
    }
    if (c->copy_state == 2) {
        int rc = PQputCopyEnd(c->pg, s ? NULL : "no copy data for this statement");
        if (rc < 0)
            return -1;
        if (rc == 0)
            return poll_want(c, UV_READABLE | UV_WRITABLE);
        c->copy_state = 0;
    }
    return flush_out(c);
}

/* The current step's results are all in: go on to the next step, or finish. */
static void step_complete(struct pg_conn *c)
{
    struct pg_job *job = c->job;
    if (c->rolling_back) {
        conn_job_done(c);
        return;
    }
    if (c->job_failed) {
        if (job->transaction && c->step > 0) {
            c->rolling_back = 1;
            if (send_step(c) != 0)
                conn_lost(c, NULL);
            return;
        }
        conn_job_done(c);
        return;
    }
    int last = job->transaction ? job->nstmts + 1 : job->nstmts - 1;
    if (c->step >= last) {
        conn_job_done(c);
        return;
    }
    c->step++;
    if (send_step(c) != 0)
        conn_lost(c, NULL);
}

static void conn_busy_io(struct pg_conn *c, int events)
{
    if (events & UV_WRITABLE) {
        int rc = c->copy_state ? copy_pump(c) : flush_out(c);
        if (rc != 0) {
            conn_lost(c, NULL);
            return;
        }
    }
    if (!(events & UV_READABLE))
        return;
    if (!PQconsumeInput(c->pg)) {
        conn_lost(c, NULL);
        return;
    }
    while (c->job && !c->copy_state && !PQisBusy(c->pg)) {
        PGresult *res = PQgetResult(c->pg);
        if (!res) {
            step_complete(c);
            return; /* the next step waits for its own input */
        }
        ExecStatusType st = PQresultStatus(res);
        int i = stmt_index(c);
        if (st == PGRES_COPY_IN) {
            PQclear(res);
            c->copy_state = 1;
            c->copy_off = 0;
            if (copy_pump(c) != 0) {
                conn_lost(c, NULL);
                return;
            }
            continue;
        }
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
            if (!c->rolling_back && !c->job_failed) {
                const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
                const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
                int connection = state && strncmp(state, "08", 2) == 0;
                /* admin_shutdown, crash_shutdown, cannot_connect_now */
                if (state && (strcmp(state, "57P01") == 0 || strcmp(state, "57P02") == 0 ||
                              strcmp(state, "57P03") == 0))
                    connection = 1;
                job_set_error(c->job, state ? state : "XX000", msg ? msg : PQresultErrorMessage(res), connection);
                c->job_failed = 1;
            }
            PQclear(res);
            continue;
        }
        if (i >= 0 && !c->job_failed) {
            if (c->job->results[i])
                PQclear(c->job->results[i]);
            c->job->results[i] = res;
        } else {
            PQclear(res);
        }
    }
    if (c->pg && PQstatus(c->pg) == CONNECTION_BAD)
        conn_lost(c, NULL);
}

static void conn_idle_io(struct pg_conn *c)
{
    /* Idle: only the server closing the connection (or a notice) arrives. */
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        conn_lost(c, NULL);
        return;
    }
    PGresult *res;
    while (!PQisBusy(c->pg) && (res = PQgetResult(c->pg)) != NULL)
        PQclear(res);
}

static void conn_io(struct pg_conn *c, int events)
{
    switch (c->state) {
    case CONN_CONNECTING:
        conn_connect_io(c);
        break;
    case CONN_BUSY:
        conn_busy_io(c, events);
        break;
    case CONN_IDLE:
    case CONN_PINNED:
        conn_idle_io(c);
        break;
    default:
        break;
    }
}

static void conn_run(struct pg_conn *c, struct pg_job *job)
{
    if (c->state == CONN_PINNED)
        c->pool->in_use--; /* counted again below */
    c->job = job;
    c->step = 0;
    c->rolling_back = 0;
    c->copy_state = 0;
    c->copy_off = 0;
    c->job_failed = 0;
    c->state = CONN_BUSY;
    c->pool->in_use++;
    if (job->nstmts == 0) {
        conn_job_done(c);
        return;
    }
    if (send_step(c) != 0)
        conn_lost(c, NULL);
}

static void pool_pump(struct pg_pool *pool)
{
    if (pool->closing)
        return;
    for (int i = 0; i < pool->size && pool->head; i++) {
        struct pg_conn *c = &pool->conns[i];
        if (c->state != CONN_IDLE)
            continue;
        struct pg_job *job = queue_pop(pool);
        while (job && job->cancelled) {
            pg_job_free(job);
            job = queue_pop(pool);
        }
        if (!job)
            break;
        conn_run(c, job);
    }
}

static struct pg_conn *session_conn(struct pg_pool *pool, uint64_t session)
{
    int index = (int)(session & 0xFFFF) - 1;
    if (index < 0 || index >= pool->size)
        return NULL;
    struct pg_conn *c = &pool->conns[index];
    if (c->state != CONN_PINNED || c->generation != (uint32_t)(session >> 16))
        return NULL;
    return c;
}

int pg_submit_on(struct pg_pool *pool, uint64_t session, struct pg_job *job)
{
    struct pg_conn *c = pool->closing ? NULL : session_conn(pool, session);
    if (!c) {
        job_set_error(job, "08006", "the session's database connection was lost", 1);
        job_finish(pool, job);
        return -1;
    }
    pool->jobs++;
    conn_run(c, job);
    return 0;
}

void pg_session_release(struct pg_pool *pool, uint64_t session)
{
    struct pg_conn *c = session_conn(pool, session);
    if (!c)
        return;
    c->state = CONN_IDLE;
    pool->in_use--;
    pool_pump(pool);
}

/* Jobs that waited too long for a connection fail. */
static void on_queue_timer(uv_timer_t *t)
{
    struct pg_pool *pool = t->data;
    uint64_t now = pg_now_ms();
    while (pool->head && (pool->head->cancelled || now - pool->head->queued_at_ms >= (uint64_t)pool->queue_timeout_ms)) {
        struct pg_job *job = queue_pop(pool);
        char msg[160];
        snprintf(msg, sizeof msg, "database unavailable (no connection for %d ms)%s%s", pool->queue_timeout_ms,
                 pool->last_error ? ": " : "", pool->last_error ? pool->last_error : "");
        job_set_error(job, "08006", msg, 1);
        job_finish(pool, job);
    }
}

/* ------------------------------------------------------------ pool */

struct pg_pool *pg_pool_new(uv_loop_t *loop, const struct pg_options *opts)
{
    struct pg_pool *pool = calloc(1, sizeof *pool);
    if (!pool)
        return NULL;
    pool->loop = loop;
    pool->size = opts->pool_size > 0 ? opts->pool_size : 1;
    pool->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 10000;
    pool->queue_timeout_ms = opts->queue_timeout_ms > 0 ? opts->queue_timeout_ms : 30000;
    pool->max_queued = opts->max_queued ? opts->max_queued : 10000;
    pool->conninfo = strdup(opts->conninfo ? opts->conninfo : "");
    pool->conns = calloc((size_t)pool->size, sizeof *pool->conns);
    if (!pool->conninfo || !pool->conns) {
        free(pool->conninfo);
        free(pool->conns);
        free(pool);
        return NULL;
    }
    for (int i = 0; i < pool->size; i++) {
        pool->conns[i].pool = pool;
        pool->conns[i].index = i;
    }
    return pool;
}

void pg_pool_on_state(struct pg_pool *pool, pg_state_fn fn, void *ctx)
{
    pool->on_state = fn;
    pool->on_state_ctx = ctx;
}

void pg_pool_start(struct pg_pool *pool)
{
    if (pool->started)
        return;
    pool->started = 1;
    for (int i = 0; i < pool->size; i++) {
        uv_timer_init(pool->loop, &pool->conns[i].timer);
        pool->conns[i].timer.data = &pool->conns[i];
    }
    uv_timer_init(pool->loop, &pool->queue_timer);
    pool->queue_timer.data = pool;
    uv_timer_start(&pool->queue_timer, on_queue_timer, 250, 250);
    launch_next(pool); /* the others at pg_pool_fill */
}

void pg_pool_fill(struct pg_pool *pool)
{
    if (!pool->started || pool->filling)
        return;
    pool->filling = 1;
    if (pool->launched > 0 && pool->conns[pool->launched - 1].tried)
        launch_next(pool);
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

void pg_pool_close(struct pg_pool *pool)
{
    if (!pool || pool->closing)
        return;
    pool->closing = 1;
    struct pg_job *job;
    while ((job = queue_pop(pool)) != NULL) {
        job_set_error(job, "08006", "database pool closed", 1);
        job_finish(pool, job);
    }
    for (int i = 0; i < pool->size; i++) {
        struct pg_conn *c = &pool->conns[i];
        if (c->job) {
            job = c->job;
            c->job = NULL;
            job_set_error(job, "08006", "database pool closed", 1);
            job_finish(pool, job);
        }
        poll_detach(c);
        if (c->pg)
            PQfinish(c->pg);
        c->pg = NULL;
        c->state = CONN_DOWN;
        if (pool->started)
            uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    }
    pool->connected = pool->in_use = 0;
    if (pool->started)
        uv_close((uv_handle_t *)&pool->queue_timer, on_handle_closed);
}

void pg_pool_free(struct pg_pool *pool)
{
    if (!pool)
        return;
    free(pool->conns);
    free(pool->conninfo);
    free(pool->last_error);
    free(pool);
}

void pg_pool_stats(struct pg_pool *pool, struct pg_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!pool)
        return;
    out->size = pool->size;
    out->connected = pool->connected;
    out->in_use = pool->in_use;
    out->queued = pool->queued;
    out->jobs = pool->jobs;
    out->errors = pool->errors;
    out->connection_errors = pool->connection_errors;
    out->reconnects = pool->reconnects;
    out->last_error = pool->last_error;
    memcpy(out->hist, pool->hist, sizeof out->hist);
    out->seconds = pool->seconds;
}

int pg_pool_connected(struct pg_pool *pool)
{
    return pool && !pool->closing ? pool->connected : 0;
}
