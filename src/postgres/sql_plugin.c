/* sql: see sql.h.
 *
 * Startup stages: WAITING (no connection yet; a timer logs every 10 s what
 * the last error was), MIGRATING, CATALOG (the writer reads the tables),
 * READY. A lost connection during migrations goes back to WAITING. */
#include "postgres/sql_plugin.h"

#include <jansson.h>
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "postgres/migrate.h"

#define WAIT_LOG_MS 10000
#define RETRY_MS 1000
#define MAX_RULES 64
#define MAX_FIELDS 64

enum stage { STAGE_NEW = 0, STAGE_WAITING, STAGE_MIGRATING, STAGE_CATALOG, STAGE_READY, STAGE_STOPPING };
enum req_kind { REQ_QUERY, REQ_EXEC, REQ_BATCH };

struct sql {
    uv_loop_t *loop;
    struct bus *bus;
    struct pg_pool *pool;
    struct pg_writer *writer;
    struct spool *spool;
    char *migrations_dir;
    int shutdown_timeout_ms;
    enum stage stage;
    uv_timer_t timer;
    uint64_t waiting_since;
    struct bus_sub *subs[3];
    sql_ready_fn ready;
    void *ready_ctx;
    sql_stopped_fn stopped;
    void *stopped_ctx;
    int writer_started;
};

static const char *const REQ_TYPES[3] = {"sql.query", "sql.exec", "sql.batch"};

/* ------------------------------------------------------------ config */

static char *field_str(lua_State *L, int t, const char *key)
{
    lua_getfield(L, t, key);
    const char *v = lua_tostring(L, -1);
    char *copy = v ? strdup(v) : NULL;
    lua_pop(L, 1);
    return copy;
}

static long long field_int(lua_State *L, int t, const char *key, long long def)
{
    lua_getfield(L, t, key);
    long long v = lua_isinteger(L, -1) ? (long long)lua_tointeger(L, -1) : def;
    lua_pop(L, 1);
    return v;
}

/* Appends key='value' (libpq quoting) to a conninfo string. */
static int conninfo_add(char *out, size_t outsz, const char *key, const char *value)
{
    if (!value)
        return 0;
    size_t o = strlen(out);
    int w = snprintf(out + o, outsz - o, "%s%s='", o ? " " : "", key);
    if (w < 0 || (size_t)w >= outsz - o)
        return -1;
    o += (size_t)w;
    for (const char *p = value; *p; p++) {
        if (o + 3 >= outsz)
            return -1;
        if (*p == '\'' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    if (o + 2 >= outsz)
        return -1;
    out[o++] = '\'';
    out[o] = '\0';
    return 0;
}

/* core.database as a libpq connection string: url, or the separate fields,
 * or the private cluster of `make run` (DAZ_LOCAL_DATABASE_URL). */
static char *conninfo_from(lua_State *L, int db, char *err, size_t errsz)
{
    char *url = field_str(L, db, "url");
    if (url)
        return url;
    char buf[4096] = "";
    static const char *const keys[][2] = {{"host", "host"}, {"database", "dbname"}, {"user", "user"},
                                          {"password", "password"}, {"sslmode", "sslmode"}};
    int any = 0;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char *v = field_str(L, db, keys[i][0]);
        if (v)
            any = 1;
        int rc = conninfo_add(buf, sizeof buf, keys[i][1], v);
        free(v);
        if (rc != 0) {
            snprintf(err, errsz, "core.database: the connection settings are too long");
            return NULL;
        }
    }
    long long port = field_int(L, db, "port", 0);
    if (port) {
        char p[16];
        snprintf(p, sizeof p, "%lld", port);
        conninfo_add(buf, sizeof buf, "port", p);
        any = 1;
    }
    if (any)
        return strdup(buf);
    const char *local = getenv("DAZ_LOCAL_DATABASE_URL");
    if (local && *local)
        return strdup(local);
    snprintf(err, errsz,
             "no database configured: set core.database.url (or host, port, database, user, password) in the "
             "config, or start daz with `make run`, which starts the private PostgreSQL and sets "
             "DAZ_LOCAL_DATABASE_URL");
    return NULL;
}

/* loggers.<name> -> writer rules (the config checker already merged the
 * defaults and validated the shapes). */
static int add_rules(struct sql *s, lua_State *L, int cfg, char *err, size_t errsz)
{
    lua_getfield(L, cfg, "loggers");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    int loggers = lua_gettop(L);
    /* Sorted names, so rules subscribe in a stable order. */
    lua_newtable(L);
    int names = lua_gettop(L);
    int n = 0;
    lua_pushnil(L);
    while (lua_next(L, loggers) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) == LUA_TSTRING) {
            lua_pushvalue(L, -1);
            lua_rawseti(L, names, ++n);
        }
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, names);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    int rc = 0;
    for (int i = 1; i <= n && rc == 0; i++) {
        lua_rawgeti(L, names, i);
        const char *name = lua_tostring(L, -1);
        lua_gettable(L, loggers);
        int r = lua_gettop(L);
        lua_getfield(L, r, "enabled");
        int enabled = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 1);
        lua_rawgeti(L, names, i);
        name = lua_tostring(L, -1);
        if (enabled) {
            struct pg_logger_rule rule = {0};
            const char *tags[16], *columns[MAX_FIELDS], *fields[MAX_FIELDS];
            rule.name = name;
            lua_getfield(L, r, "event_pattern");
            rule.pattern = lua_tostring(L, -1);
            lua_getfield(L, r, "table");
            rule.table = lua_tostring(L, -1);
            lua_getfield(L, r, "tags");
            if (lua_istable(L, -1)) {
                for (lua_Integer k = 1; k <= luaL_len(L, -1) && rule.tag_count < 16; k++) {
                    lua_rawgeti(L, -1, k);
                    tags[rule.tag_count++] = lua_tostring(L, -1);
                    lua_pop(L, 1); /* the table keeps it */
                }
            }
            rule.tags = tags;
            lua_getfield(L, r, "fields");
            if (lua_istable(L, -1)) {
                int ft = lua_gettop(L);
                lua_pushnil(L);
                while (lua_next(L, ft) != 0 && rule.field_count < MAX_FIELDS) {
                    columns[rule.field_count] = lua_tostring(L, -2);
                    fields[rule.field_count] = lua_tostring(L, -1);
                    rule.field_count++;
                    lua_pop(L, 1);
                }
            }
            rule.columns = columns;
            rule.fields = fields;
            if (!rule.pattern || !rule.table || rule.field_count == 0) {
                snprintf(err, errsz, "loggers.%s: needs event_pattern, table and fields", name);
                rc = -1;
            } else {
                rc = pg_writer_add_rule(s->writer, &rule, err, errsz);
            }
        }
        lua_settop(L, names);
    }
    lua_settop(L, loggers - 1);
    return rc;
}

/* ------------------------------------------------------------ results as JSON */

static json_t *json_value(const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col))
        return json_null();
    const char *v = PQgetvalue(res, row, col);
    long long i;
    double d;
    switch (pg_type_class(PQftype(res, col))) {
    case PG_CLASS_INT:
        return json_integer(strtoll(v, NULL, 10));
    case PG_CLASS_FLOAT:
        d = strtod(v, NULL);
        return isfinite(d) ? json_real(d) : json_string(v);
    case PG_CLASS_NUMERIC:
        switch (pg_numeric_kind(v, &i, &d)) {
        case 0: return json_integer(i);
        case 1: return isfinite(d) ? json_real(d) : json_string(v);
        default: return json_string(v);
        }
    case PG_CLASS_BOOL:
        return json_boolean(v[0] == 't');
    case PG_CLASS_TIMESTAMP:
        return pg_parse_timestamp(v, &d) == 0 ? json_real(d) : json_string(v);
    case PG_CLASS_JSON: {
        json_t *j = json_loads(v, JSON_DECODE_ANY, NULL);
        return j ? j : json_string(v);
    }
    default:
        return json_stringn(v, (size_t)PQgetlength(res, row, col));
    }
}

static json_t *json_rows(const PGresult *res)
{
    json_t *rows = json_array();
    int nr = res ? PQntuples(res) : 0, nc = res ? PQnfields(res) : 0;
    for (int r = 0; rows && r < nr; r++) {
        json_t *o = json_object();
        for (int c = 0; o && c < nc; c++)
            json_object_set_new(o, PQfname(res, c), json_value(res, r, c));
        json_array_append_new(rows, o);
    }
    return rows;
}

static long long json_count(const PGresult *res)
{
    if (!res)
        return 0;
    const char *n = PQcmdTuples((PGresult *)res);
    if (n && *n)
        return strtoll(n, NULL, 10);
    return PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
}

/* ------------------------------------------------------------ bus requests */

struct bus_req {
    struct sql *s;
    uint64_t id;         /* 0: a plain sql.exec publish (fire and forget) */
    enum req_kind kind;
    char *type;
    char *payload;       /* the published {sql, params}, for sql.exec.failed */
};

/* Failures worth trying again later: the connection, serialization and
 * deadlocks, resources, an administrator's shutdown. */
static int transient(const struct pg_error *e)
{
    static const char *const classes[] = {"08", "40", "53", "57", "58"};
    if (e->connection)
        return 1;
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; i++)
        if (strncmp(e->sqlstate, classes[i], 2) == 0)
            return 1;
    return 0;
}

/* A published (not requested) sql.exec that failed on a transient error goes
 * to the retry plugin as sql.exec.failed (README "Retry"); the retry replays
 * it as a request. A requester gets its error and decides itself. */
static void publish_failed(struct sql *s, struct bus_req *rq, const struct pg_error *e)
{
    static unsigned long long counter;
    json_t *payload = rq->payload ? json_loads(rq->payload, 0, NULL) : NULL;
    if (!payload)
        return;
    char id[96], msg[1024];
    snprintf(id, sizeof id, "sql.exec:%d:%llu:%llu", (int)getpid(), (unsigned long long)pg_now_ms(), ++counter);
    snprintf(msg, sizeof msg, "ERROR %s: %s", e->sqlstate, e->message);
    json_t *failed = json_pack("{s:s, s:s, s:o, s:s, s:s, s:i}", "operation", "sql_exec", "event_type", "sql.exec",
                               "payload", payload, "error", msg, "correlation_id", id, "attempt", 1);
    char *text = failed ? json_dumps(failed, JSON_COMPACT) : NULL;
    json_decref(failed);
    struct event *ev = text ? event_new_take("sql.exec.failed", NULL, EVENT_PRIO_URGENT, text, strlen(text)) : NULL;
    if (ev)
        bus_publish(s->bus, ev);
    else
        free(text);
}

static void respond_error(struct sql *s, uint64_t id, const char *type, const char *msg)
{
    struct event *resp = event_new(type, NULL, EVENT_PRIO_NORMAL, NULL, 0);
    if (!resp)
        return;
    event_set_error(resp, msg);
    bus_respond(s->bus, id, resp);
}

static void on_req_done(struct pg_job *job, void *ctx)
{
    struct bus_req *rq = ctx;
    struct sql *s = rq->s;
    if (rq->id == 0) {
        if (job->error.message) {
            log_warn("sql", "sql.exec failed: ERROR %s: %s", job->error.sqlstate, job->error.message);
            if (transient(&job->error))
                publish_failed(s, rq, &job->error);
        }
    } else if (job->error.message) {
        char msg[1024];
        snprintf(msg, sizeof msg, "ERROR %s: %s", job->error.sqlstate, job->error.message);
        respond_error(s, rq->id, rq->type, msg);
    } else {
        json_t *out = json_object();
        if (rq->kind == REQ_BATCH) {
            json_t *results = json_array();
            for (int i = 0; i < job->nstmts; i++) {
                json_t *r = json_object();
                json_object_set_new(r, "rows", json_rows(job->results[i]));
                json_object_set_new(r, "count", json_integer(json_count(job->results[i])));
                json_array_append_new(results, r);
            }
            json_object_set_new(out, "results", results);
        } else {
            if (rq->kind == REQ_QUERY)
                json_object_set_new(out, "rows", json_rows(job->results[0]));
            json_object_set_new(out, "count", json_integer(json_count(job->results[0])));
        }
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        json_decref(out);
        struct event *resp = text ? event_new_take(rq->type, NULL, EVENT_PRIO_NORMAL, text, strlen(text)) : NULL;
        if (resp)
            bus_respond(s->bus, rq->id, resp);
        else {
            free(text);
            respond_error(s, rq->id, rq->type, "out of memory");
        }
    }
    free(rq->type);
    free(rq->payload);
    free(rq);
}

/* Statement i from {sql, params}; returns NULL or what is wrong. */
static const char *stmt_from_json(struct pg_job *job, int i, json_t *st)
{
    json_t *sql = json_object_get(st, "sql");
    json_t *params = json_object_get(st, "params");
    if (!json_is_string(sql))
        return "sql must be a string";
    /* An empty Lua table reaches us as {} (lua-cjson cannot tell): no params. */
    if (json_is_object(params) && json_object_size(params) == 0)
        params = NULL;
    if (params && !json_is_array(params) && !json_is_null(params))
        return "params must be a list";
    size_t n = json_is_array(params) ? json_array_size(params) : 0;
    if (n > 1000)
        return "at most 1000 parameters";
    const char *vals[1000];
    char *owned[1000];
    size_t nowned = 0;
    const char *bad = NULL;
    for (size_t k = 0; k < n; k++) {
        json_t *v = json_array_get(params, k);
        char num[64];
        vals[k] = NULL;
        if (json_is_null(v))
            continue;
        if (json_is_string(v)) {
            if (strlen(json_string_value(v)) != json_string_length(v))
                bad = "a parameter contains a NUL byte";
            vals[k] = json_string_value(v);
        } else if (json_is_true(v) || json_is_false(v)) {
            vals[k] = json_is_true(v) ? "t" : "f";
        } else {
            char *text = NULL;
            if (json_is_integer(v)) {
                snprintf(num, sizeof num, "%lld", (long long)json_integer_value(v));
                text = strdup(num);
            } else if (json_is_real(v)) {
                snprintf(num, sizeof num, "%.17g", json_real_value(v));
                text = strdup(num);
            } else {
                text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
            }
            if (!text) {
                bad = "out of memory";
                break;
            }
            owned[nowned++] = text;
            vals[k] = text;
        }
    }
    if (!bad && pg_job_set(job, i, json_string_value(sql), (int)n, vals) != 0)
        bad = "out of memory";
    for (size_t k = 0; k < nowned; k++)
        free(owned[k]);
    return bad;
}

static void on_sql_request(struct event *ev, void *ctx)
{
    struct sql *s = ctx;
    enum req_kind kind = strcmp(ev->type, "sql.batch") == 0 ? REQ_BATCH
                         : strcmp(ev->type, "sql.exec") == 0 ? REQ_EXEC : REQ_QUERY;
    /* A plain publish is only meaningful for sql.exec: nobody reads rows. */
    if (!ev->correlation_id && kind != REQ_EXEC) {
        log_debug("sql", "%s published without a request: ignored", ev->type);
        return;
    }
    size_t len;
    const char *text = event_json(ev, &len);
    json_t *root = text ? json_loadb(text, len, 0, NULL) : NULL;
    const char *bad = NULL;
    struct pg_job *job = NULL;
    struct bus_req *rq = calloc(1, sizeof *rq);
    if (!rq || !(rq->type = strdup(ev->type))) {
        bad = "out of memory";
    } else if (!json_is_object(root)) {
        bad = kind == REQ_BATCH ? "expected {statements = {{sql = ..., params = {...}}, ...}}"
                                : "expected {sql = ..., params = {...}}";
    } else if (kind == REQ_BATCH) {
        json_t *list = json_object_get(root, "statements");
        size_t n = json_is_array(list) ? json_array_size(list) : 0;
        if (n == 0 || n > 1000)
            bad = "statements must be a list of 1..1000 {sql, params}";
        else if (!(job = pg_job_new((int)n, 1, on_req_done, rq)))
            bad = "out of memory";
        for (size_t i = 0; !bad && i < n; i++) {
            json_t *st = json_array_get(list, i);
            bad = json_is_object(st) ? stmt_from_json(job, (int)i, st) : "each statement must be {sql, params}";
        }
    } else {
        if (!(job = pg_job_new(1, 0, on_req_done, rq)))
            bad = "out of memory";
        else
            bad = stmt_from_json(job, 0, root);
    }
    json_decref(root);
    if (!bad && !ev->correlation_id && !(rq->payload = strndup(text, len)))
        bad = "out of memory";
    if (bad) {
        char msg[256];
        snprintf(msg, sizeof msg, "bad %s request: %s", ev->type, bad);
        if (ev->correlation_id)
            respond_error(s, ev->correlation_id, ev->type, msg);
        else
            log_warn("sql", "%s", msg);
        pg_job_free(job);
        if (rq) {
            free(rq->type);
            free(rq->payload);
        }
        free(rq);
        return;
    }
    rq->s = s;
    rq->id = ev->correlation_id;
    rq->kind = kind;
    pg_submit(s->pool, job);
}

/* ------------------------------------------------------------ startup */

static void begin_migrations(struct sql *s);

static void on_timer(uv_timer_t *t)
{
    struct sql *s = t->data;
    if (s->stage != STAGE_WAITING)
        return;
    if (pg_pool_connected(s->pool) > 0) {
        begin_migrations(s);
        return;
    }
    struct pg_stats st;
    pg_pool_stats(s->pool, &st);
    log_warn("sql", "waiting for the database (%llu s so far): %s",
             (unsigned long long)((pg_now_ms() - s->waiting_since) / 1000),
             st.last_error ? st.last_error : "connecting");
}

static void enter_waiting(struct sql *s)
{
    s->stage = STAGE_WAITING;
    s->waiting_since = pg_now_ms();
    uv_timer_start(&s->timer, on_timer, pg_pool_connected(s->pool) ? RETRY_MS : WAIT_LOG_MS, WAIT_LOG_MS);
}

static void report_ready(struct sql *s, int ok, const char *msg)
{
    sql_ready_fn ready = s->ready;
    s->ready = NULL;
    if (ready)
        ready(ok, msg, s->ready_ctx);
}

static void on_writer_ready(int ok, const char *error, void *ctx)
{
    struct sql *s = ctx;
    if (s->stage != STAGE_CATALOG)
        return;
    if (ok < 0) {
        log_warn("sql", "%s; retrying", error);
        enter_waiting(s);
        return;
    }
    if (ok == 0) {
        report_ready(s, 0, error);
        return;
    }
    s->writer_started = 1;
    for (int i = 0; i < 3; i++)
        s->subs[i] = bus_subscribe(s->bus, REQ_TYPES[i], NULL, 0, 0, on_sql_request, s);
    s->stage = STAGE_READY;
    uv_timer_stop(&s->timer);
    pg_pool_fill(s->pool); /* the other connections, now that startup's queries are done */
    log_info("sql", "database ready");
    report_ready(s, 1, NULL);
}

static void on_migrated(enum migrate_outcome outcome, const char *message, void *ctx)
{
    struct sql *s = ctx;
    if (s->stage != STAGE_MIGRATING)
        return;
    if (outcome == MIGRATE_FATAL) {
        report_ready(s, 0, message);
        return;
    }
    if (outcome == MIGRATE_RETRY) {
        log_warn("sql", "%s; retrying", message ? message : "migrations interrupted");
        enter_waiting(s);
        return;
    }
    s->stage = STAGE_CATALOG;
    pg_writer_start(s->writer, on_writer_ready, s);
}

static void begin_migrations(struct sql *s)
{
    uv_timer_stop(&s->timer);
    s->stage = STAGE_MIGRATING;
    migrate_start(s->pool, s->migrations_dir, on_migrated, s);
}

static void on_pool_state(struct pg_pool *pool, int connected, void *ctx)
{
    struct sql *s = ctx;
    if (s->stage == STAGE_WAITING && connected > 0) {
        /* On the next turn: not from inside the pool's callback. */
        uv_timer_start(&s->timer, on_timer, 0, WAIT_LOG_MS);
    }
    if (s->writer_started)
        pg_writer_pool_state(s->writer, connected);
}

void sql_start(struct sql *s, sql_ready_fn ready, void *ctx)
{
    s->ready = ready;
    s->ready_ctx = ctx;
    pg_pool_on_state(s->pool, on_pool_state, s);
    enter_waiting(s);
    pg_pool_start(s->pool);
}

struct sql *sql_new(uv_loop_t *loop, struct bus *bus, lua_State *L, int config_ref, char *err, size_t errsz)
{
    struct sql *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errsz, "out of memory");
        return NULL;
    }
    s->loop = loop;
    s->bus = bus;
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, config_ref);
    int cfg = lua_gettop(L);
    lua_getfield(L, cfg, "core");
    lua_getfield(L, -1, "database");
    if (!lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    int db = lua_gettop(L);
    char *conninfo = conninfo_from(L, db, err, errsz);
    if (!conninfo)
        goto fail;
    struct pg_options po = {
        .conninfo = conninfo,
        .pool_size = (int)field_int(L, db, "pool_size", 4),
        .connect_timeout_ms = (int)field_int(L, db, "connect_timeout_s", 10) * 1000,
        .queue_timeout_ms = (int)field_int(L, db, "query_timeout_ms", 30000),
        .max_queued = (size_t)field_int(L, db, "max_queued", 10000),
    };
    s->pool = pg_pool_new(loop, &po);
    free(conninfo);
    s->migrations_dir = field_str(L, db, "migrations_dir");
    if (!s->migrations_dir)
        s->migrations_dir = strdup("sql");
    s->shutdown_timeout_ms = (int)field_int(L, db, "shutdown_timeout_ms", 5000);
    struct pg_writer_options wo = {
        .flush_ms = (int)field_int(L, db, "flush_ms", 200),
        .batch_size = (int)field_int(L, db, "batch_size", 1000),
        .max_buffered_rows = (long)field_int(L, db, "max_buffered_rows", 100000),
    };
    if (!s->pool || !s->migrations_dir) {
        snprintf(err, errsz, "out of memory");
        goto fail;
    }
    if (migrate_check_dir(s->migrations_dir, err, errsz) != 0)
        goto fail;

    lua_getfield(L, cfg, "spool");
    char *dir = lua_istable(L, -1) ? field_str(L, lua_gettop(L), "dir") : NULL;
    long long max_bytes = lua_istable(L, -1) ? field_int(L, lua_gettop(L), "max_bytes", 256LL << 20) : 256LL << 20;
    lua_pop(L, 1);
    char serr[512];
    s->spool = spool_open(dir ? dir : "var/spool", (uint64_t)max_bytes, serr, sizeof serr);
    free(dir);
    if (!s->spool) {
        snprintf(err, errsz, "spool: %s", serr);
        goto fail;
    }
    s->writer = pg_writer_new(loop, bus, s->pool, s->spool, &wo);
    if (!s->writer || add_rules(s, L, cfg, err, errsz) != 0) {
        if (!s->writer)
            snprintf(err, errsz, "out of memory");
        goto fail;
    }
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    lua_settop(L, top);
    return s;
fail:
    lua_settop(L, top);
    /* Nothing has a libuv handle before start: plain frees. */
    pg_writer_free(s->writer);
    pg_pool_free(s->pool);
    spool_close(s->spool);
    free(s->migrations_dir);
    free(s);
    return NULL;
}

/* ------------------------------------------------------------ shutdown */

static void on_handle_closed(uv_handle_t *h) { (void)h; }

static void on_drained(void *ctx)
{
    struct sql *s = ctx;
    pg_writer_close(s->writer);
    pg_pool_close(s->pool);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    struct spool_stats ss;
    spool_get_stats(s->spool, &ss);
    if (ss.records)
        log_info("sql", "%llu rows wait in the spool for the next start", (unsigned long long)ss.rows);
    sql_stopped_fn stopped = s->stopped;
    s->stopped = NULL;
    if (stopped)
        stopped(s->stopped_ctx);
}

void sql_stop(struct sql *s, sql_stopped_fn stopped, void *ctx)
{
    if (s->stage == STAGE_STOPPING)
        return;
    int writer_started = s->writer_started;
    s->stage = STAGE_STOPPING;
    s->ready = NULL;
    s->stopped = stopped;
    s->stopped_ctx = ctx;
    uv_timer_stop(&s->timer);
    for (int i = 0; i < 3; i++) {
        if (s->subs[i])
            bus_unsubscribe(s->bus, s->subs[i]);
        s->subs[i] = NULL;
    }
    if (writer_started)
        pg_writer_drain(s->writer, s->shutdown_timeout_ms, on_drained, s);
    else
        on_drained(s);
}

void sql_free(struct sql *s)
{
    if (!s)
        return;
    pg_writer_free(s->writer);
    pg_pool_free(s->pool);
    spool_close(s->spool);
    free(s->migrations_dir);
    free(s);
}

int sql_ready(struct sql *s) { return s && s->stage == STAGE_READY; }
struct pg_pool *sql_pool(struct sql *s) { return s ? s->pool : NULL; }
struct pg_writer *sql_writer(struct sql *s) { return s ? s->writer : NULL; }
struct spool *sql_spool(struct sql *s) { return s ? s->spool : NULL; }
