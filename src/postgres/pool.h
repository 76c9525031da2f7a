/* pg: a pool of non-blocking libpq connections on the libuv loop. Callers
 * submit jobs (one or more parameterised statements, optionally in one
 * transaction, optionally feeding COPY FROM STDIN); each job runs on one
 * connection and its callback gets the results or an error with SQLSTATE.
 * Reconnects with backoff; counts what it did for health. Uses libpq, libuv, log. */
#ifndef DAZ_PG_H
#define DAZ_PG_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct pg_pool;
struct pg_job;

struct pg_options {
    const char *conninfo;     /* a libpq URI or key=value string */
    int pool_size;            /* connections, >= 1 */
    int connect_timeout_ms;   /* one connection attempt at most */
    int queue_timeout_ms;     /* a job waiting this long for a connection fails */
    size_t max_queued;        /* jobs queued at most; more are refused */
};

/* One statement: SQL with $1..$n and n text parameters (NULL entry = SQL NULL). */
struct pg_stmt {
    char *sql;                /* owned */
    int nparams;
    char **params;            /* owned array of owned strings (entries may be NULL) */
    char *copy_data;          /* owned: rows fed to a COPY ... FROM STDIN statement */
    size_t copy_len;
    int simple;               /* no parameters: sent with the simple protocol, so the text may
                               * hold several statements (migrations only, never user input) */
};

struct pg_error {
    char sqlstate[6];         /* "42P01"; "08006" when the connection was lost */
    char *message;            /* owned */
    int connection;           /* the connection failed (or none was available) */
};

typedef void (*pg_job_fn)(struct pg_job *job, void *ctx);

struct pg_job {
    struct pg_stmt *stmts;    /* owned */
    int nstmts;
    int transaction;          /* BEGIN ... COMMIT around the statements; ROLLBACK on error */
    PGresult **results;       /* one per statement, set when done (owned, may be NULL) */
    struct pg_error error;    /* error.message != NULL when the job failed */
    pg_job_fn done;           /* called once unless cancelled; the pool frees the job after */
    void *ctx;
    int keep_connection;      /* after success the connection stays reserved: job->session */
    uint64_t session;         /* set when keep_connection and the job succeeded */
    /* Pool-private. */
    int cancelled;
    uint64_t queued_at_ms;
    double submitted;         /* monotonic seconds, for daz_db_query_seconds */
    struct pg_job *next;
};

struct pg_pool *pg_pool_new(uv_loop_t *loop, const struct pg_options *opts);
/* Starts connecting, with one slot: startup's queries (migrations, the
 * writer's catalog) run on it. pg_pool_fill then connects the other slots,
 * one after another. Until then a backend starting on the server would only
 * compete with those queries (and the server starts backends one at a time:
 * all four at once made the first connection ~3x slower). */
void pg_pool_start(struct pg_pool *pool);
void pg_pool_fill(struct pg_pool *pool);
/* Fails queued and running jobs ("pool closed"), closes connections and
 * handles. Run the loop until they are closed, then pg_pool_free. */
void pg_pool_close(struct pg_pool *pool);
void pg_pool_free(struct pg_pool *pool);

/* Called whenever a connection comes up or goes down. */
typedef void (*pg_state_fn)(struct pg_pool *pool, int connected, void *ctx);
void pg_pool_on_state(struct pg_pool *pool, pg_state_fn fn, void *ctx);

/* A new job with room for `nstmts` statements; fill them with pg_job_set. */
struct pg_job *pg_job_new(int nstmts, int transaction, pg_job_fn done, void *ctx);
/* Sets statement i: copies sql and params; takes ownership of copy_data. */
int pg_job_set(struct pg_job *job, int i, const char *sql, int nparams, const char *const *params);
void pg_job_set_copy_take(struct pg_job *job, int i, char *copy_data, size_t copy_len);
void pg_job_free(struct pg_job *job);

/* Queues the job (the pool owns it from now on). Returns 0, or -1 when the
 * queue is full or the pool is closed: then the job's callback has already
 * run with the error and the job is freed. */
int pg_submit(struct pg_pool *pool, struct pg_job *job);
/* Like pg_submit but ahead of every queued job: for a caller that has at
 * most one job queued at a time (the batch writer), so plugins that flood
 * the pool cannot starve it and it cannot starve them. */
int pg_submit_first(struct pg_pool *pool, struct pg_job *job);
/* The callback will not be called; the job is freed when the pool is done with it. */
void pg_job_cancel(struct pg_job *job);

/* Sessions: a job with keep_connection = 1 leaves its connection reserved
 * (job->session) so that later jobs run on the same connection (session-level
 * locks, temporary tables). pg_submit_on fails the job with a connection
 * error when that connection was lost meanwhile. Release when done. */
int pg_submit_on(struct pg_pool *pool, uint64_t session, struct pg_job *job);
void pg_session_release(struct pg_pool *pool, uint64_t session);

/* Query time histogram bounds, seconds (submit to result, queueing included). */
#define PG_HIST_BUCKETS 10
extern const double pg_hist_bounds[PG_HIST_BUCKETS];

struct pg_stats {
    unsigned long long hist[PG_HIST_BUCKETS + 1];
    double seconds;           /* sum of all query times */
    int size, connected, in_use;
    size_t queued;
    uint64_t jobs, errors, connection_errors, reconnects;
    const char *last_error; /* owned by the pool, valid until the next pool call */
};
void pg_pool_stats(struct pg_pool *pool, struct pg_stats *out);
int pg_pool_connected(struct pg_pool *pool);

/* Monotonic milliseconds (the loop's clock is not updated inside long turns). */
uint64_t pg_now_ms(void);

/* Value helpers shared by the Lua and JSON views of a result. */
enum pg_type_class { PG_CLASS_TEXT = 0, PG_CLASS_INT, PG_CLASS_FLOAT, PG_CLASS_NUMERIC, PG_CLASS_BOOL,
                     PG_CLASS_JSON, PG_CLASS_TIMESTAMP };
enum pg_type_class pg_type_class(Oid oid);
/* PostgreSQL's ISO output ("2026-11-27 06:51:02.5+00", timestamp or
 * timestamptz) as epoch seconds. 0 ok, -1 when not in that form. */
int pg_parse_timestamp(const char *s, double *secs);
/* A numeric's text: 0 and *i when it is a whole number that fits 64 bits;
 * 1 and *d when it has at most 15 significant digits (a double holds it
 * exactly as written); 2 when only the text keeps its precision. */
int pg_numeric_kind(const char *s, long long *i, double *d);

/* Is `name` a plain lower-case identifier (^[a-z_][a-z0-9_]*$, at most 63 bytes)? */
int pg_ident_ok(const char *name);

#endif
