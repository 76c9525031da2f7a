/* room_backoff: see backoff_store.h. */
#include "cytube/backoff_store.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

struct room_backoff {
    struct pg_pool *pool;
    struct bus *bus;
    struct cytube *cy;
    json_t *saved;            /* channel -> [attempts, next_attempt_unix_ms] */
    json_t *unsaved;          /* channel -> true: changed before the database was ready */
    int db_ready;             /* room_backoff_db_ready was called */
    int retry_at_db_ready;    /* the first load failed early */
    int tries;                /* loads submitted */
    room_backoff_ready_fn done;
    void *ctx;
};

static const char LOAD_SQL[] =
    "SELECT channel, attempts, COALESCE((extract(epoch FROM next_attempt_at) * 1000)::bigint, 0) "
    "FROM daz_room_backoff";

static const char SAVE_SQL[] =
    "INSERT INTO daz_room_backoff (channel, attempts, next_attempt_at, updated_at) "
    "VALUES ($1, $2, CASE WHEN $3::bigint > 0 THEN to_timestamp($3::bigint / 1000.0) END, now()) "
    "ON CONFLICT (channel) DO UPDATE SET attempts = EXCLUDED.attempts, "
    "next_attempt_at = EXCLUDED.next_attempt_at, updated_at = now()";

static int load_hook(const char *channel, struct cytube_backoff_state *out, void *ctx)
{
    struct room_backoff *rb = ctx;
    json_t *v = json_object_get(rb->saved, channel);
    if (!json_is_array(v))
        return -1;
    out->attempts = (int)json_integer_value(json_array_get(v, 0));
    out->next_attempt_unix_ms = (int64_t)json_integer_value(json_array_get(v, 1));
    return 0;
}

/* Writes the saved state of one channel (sql.exec, answered by the SQL plugin). */
static void write_state(struct room_backoff *rb, const char *channel)
{
    json_t *v = json_object_get(rb->saved, channel);
    struct cytube_backoff_state st = {
        .attempts = (int)json_integer_value(json_array_get(v, 0)),
        .next_attempt_unix_ms = (int64_t)json_integer_value(json_array_get(v, 1)),
    };
    json_t *req = json_pack("{s:s, s:[s, i, I]}", "sql", SAVE_SQL, "params", channel, st.attempts,
                            (json_int_t)st.next_attempt_unix_ms);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    struct event *ev = text ? event_new_take("sql.exec", NULL, EVENT_PRIO_NORMAL, text, strlen(text)) : NULL;
    if (!ev) {
        free(text);
        log_warn("rooms", "%s: cannot save the backoff state (out of memory)", channel);
        return;
    }
    bus_publish(rb->bus, ev);
}

static void save_hook(const char *channel, const struct cytube_backoff_state *st, void *ctx)
{
    struct room_backoff *rb = ctx;
    json_t *v = json_pack("[i, I]", st->attempts, (json_int_t)st->next_attempt_unix_ms);
    if (!v || json_object_set_new(rb->saved, channel, v) != 0) {
        log_warn("rooms", "%s: cannot save the backoff state (out of memory)", channel);
        return;
    }
    /* Rooms connect before the SQL plugin subscribes to sql.exec: an early
     * change waits for room_backoff_db_ready instead of going unheard. */
    if (!rb->db_ready) {
        if (json_object_set_new(rb->unsaved, channel, json_true()) != 0)
            log_warn("rooms", "%s: cannot save the backoff state (out of memory)", channel);
        return;
    }
    write_state(rb, channel);
}

static int submit_load(struct room_backoff *rb);

static void on_loaded(struct pg_job *job, void *ctx)
{
    struct room_backoff *rb = ctx;
    if (job->error.message && rb->tries == 1) {
        log_debug("rooms", "cannot load saved backoff state yet (%s: %s); again once the database is ready",
                  job->error.sqlstate, job->error.message);
        if (!rb->db_ready) {
            rb->retry_at_db_ready = 1;
            return;
        }
        if (submit_load(rb) == 0)
            return;
        log_warn("rooms", "cannot load saved backoff state (out of memory)");
    } else if (job->error.message) {
        log_warn("rooms", "cannot load saved backoff state: ERROR %s: %s", job->error.sqlstate, job->error.message);
    } else {
        PGresult *res = job->results[0];
        int n = res ? PQntuples(res) : 0;
        for (int i = 0; i < n; i++) {
            json_t *v = json_pack("[I, I]", (json_int_t)strtoll(PQgetvalue(res, i, 1), NULL, 10),
                                  (json_int_t)strtoll(PQgetvalue(res, i, 2), NULL, 10));
            if (v)
                json_object_set_new(rb->saved, PQgetvalue(res, i, 0), v);
        }
        log_debug("rooms", "loaded the backoff state of %d room(s)", n);
    }
    cytube_set_backoff_store(rb->cy, load_hook, save_hook, rb);
    rb->done(rb->ctx);
}

/* Returns 0, or -1 when out of memory (nothing submitted). */
static int submit_load(struct room_backoff *rb)
{
    struct pg_job *job = pg_job_new(1, 0, on_loaded, rb);
    if (!job || pg_job_set(job, 0, LOAD_SQL, 0, NULL) != 0) {
        pg_job_free(job);
        return -1;
    }
    rb->tries++;
    pg_submit(rb->pool, job); /* on failure the callback has already run */
    return 0;
}

struct room_backoff *room_backoff_start(struct pg_pool *pool, struct bus *bus, struct cytube *cy,
                                        room_backoff_ready_fn done, void *ctx)
{
    struct room_backoff *rb = calloc(1, sizeof *rb);
    if (!rb || !(rb->saved = json_object()) || !(rb->unsaved = json_object())) {
        if (rb)
            json_decref(rb->saved);
        free(rb);
        return NULL;
    }
    rb->pool = pool;
    rb->bus = bus;
    rb->cy = cy;
    rb->done = done;
    rb->ctx = ctx;
    if (submit_load(rb) != 0) {
        room_backoff_free(rb);
        return NULL;
    }
    return rb;
}

void room_backoff_db_ready(struct room_backoff *rb)
{
    if (!rb || rb->db_ready)
        return;
    rb->db_ready = 1;
    const char *channel;
    json_t *v;
    json_object_foreach(rb->unsaved, channel, v) {
        (void)v;
        write_state(rb, channel);
    }
    json_object_clear(rb->unsaved);
    if (rb->retry_at_db_ready) {
        rb->retry_at_db_ready = 0;
        if (submit_load(rb) != 0) {
            log_warn("rooms", "cannot load saved backoff state (out of memory)");
            cytube_set_backoff_store(rb->cy, load_hook, save_hook, rb);
            rb->done(rb->ctx);
        }
    }
}

void room_backoff_free(struct room_backoff *rb)
{
    if (!rb)
        return;
    json_decref(rb->saved);
    json_decref(rb->unsaved);
    free(rb);
}

struct reset {
    room_backoff_reset_fn done;
    void *ctx;
};

static void on_reset(struct pg_job *job, void *ctx)
{
    struct reset *rs = ctx;
    if (job->error.message && strcmp(job->error.sqlstate, "42P01") == 0)
        rs->done(0, NULL, rs->ctx); /* undefined_table: never migrated, nothing saved */
    else if (job->error.message)
        rs->done(-1, job->error.message, rs->ctx);
    else
        rs->done(job->results[0] ? strtol(PQcmdTuples(job->results[0]), NULL, 10) : 0, NULL, rs->ctx);
    free(rs);
}

int room_backoff_reset(struct pg_pool *pool, const char *channel, room_backoff_reset_fn done, void *ctx)
{
    struct reset *rs = malloc(sizeof *rs);
    struct pg_job *job = rs ? pg_job_new(1, 0, on_reset, rs) : NULL;
    const char *params[] = {channel};
    int rc = !job ? -1
             : channel ? pg_job_set(job, 0, "DELETE FROM daz_room_backoff WHERE lower(channel) = lower($1)", 1, params)
                       : pg_job_set(job, 0, "DELETE FROM daz_room_backoff", 0, NULL);
    if (rc != 0) {
        pg_job_free(job);
        free(rs);
        return -1;
    }
    rs->done = done;
    rs->ctx = ctx;
    pg_submit(pool, job); /* on failure the callback has already run */
    return 0;
}
