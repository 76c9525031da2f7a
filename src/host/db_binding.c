/* lua_db: see lua_db.h.
 *
 *   local rows, err = db:query(sql, ...)   -- rows: list of {column = value}
 *   local n, err    = db:exec(sql, ...)    -- n: affected rows
 *   local res, err  = db:batch({ {sql, ...}, "sql", ... })  -- one transaction
 *
 * Parameters: nil / db.null -> NULL, booleans, integers, floats, strings,
 * tables -> JSON. Errors are tables {message, sqlstate} that print as
 * "ERROR <sqlstate>: <message>". */
#include "host/db_binding.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

#define ERROR_MT "daz.db.error"
#define MAX_PARAMS 1000
#define MAX_BATCH 1000

static struct pg_pool *the_pool;
static struct pg_writer *the_writer;
static struct spool *the_spool;
static int encode_ref = LUA_NOREF, decode_ref = LUA_NOREF, error_mt_ref = LUA_NOREF;

enum db_kind { DB_QUERY, DB_EXEC, DB_BATCH };

struct db_wait {
    struct host_wait *w;
    struct pg_job *job;
    enum db_kind kind;
};

/* ------------------------------------------------------------ results */

void lua_db_push_value(lua_State *L, const PGresult *res, int row, int col)
{
    if (PQgetisnull(res, row, col)) {
        lua_pushlightuserdata(L, NULL); /* db.null, the same value as cjson.null */
        return;
    }
    const char *v = PQgetvalue(res, row, col);
    int len = PQgetlength(res, row, col);
    long long i;
    double d;
    switch (pg_type_class(PQftype(res, col))) {
    case PG_CLASS_INT:
        lua_pushinteger(L, (lua_Integer)strtoll(v, NULL, 10));
        return;
    case PG_CLASS_FLOAT:
        lua_pushnumber(L, strtod(v, NULL)); /* NaN, Infinity, -Infinity too */
        return;
    case PG_CLASS_NUMERIC:
        switch (pg_numeric_kind(v, &i, &d)) {
        case 0: lua_pushinteger(L, (lua_Integer)i); return;
        case 1: lua_pushnumber(L, d); return;
        default: lua_pushlstring(L, v, (size_t)len); return;
        }
    case PG_CLASS_BOOL:
        lua_pushboolean(L, v[0] == 't');
        return;
    case PG_CLASS_TIMESTAMP:
        if (strcmp(v, "infinity") == 0)
            lua_pushnumber(L, HUGE_VAL);
        else if (strcmp(v, "-infinity") == 0)
            lua_pushnumber(L, -HUGE_VAL);
        else if (pg_parse_timestamp(v, &d) == 0)
            lua_pushnumber(L, d);
        else
            lua_pushlstring(L, v, (size_t)len);
        return;
    case PG_CLASS_JSON:
        lua_rawgeti(L, LUA_REGISTRYINDEX, decode_ref);
        lua_pushlstring(L, v, (size_t)len);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
            lua_pop(L, 1);
            lua_pushlstring(L, v, (size_t)len);
        }
        return;
    default:
        lua_pushlstring(L, v, (size_t)len);
        return;
    }
}

static void push_rows(lua_State *L, const PGresult *res)
{
    int nrows = res ? PQntuples(res) : 0, ncols = res ? PQnfields(res) : 0;
    lua_createtable(L, nrows, 0);
    for (int r = 0; r < nrows; r++) {
        lua_createtable(L, 0, ncols);
        for (int c = 0; c < ncols; c++) {
            lua_db_push_value(L, res, r, c);
            lua_setfield(L, -2, PQfname(res, c));
        }
        lua_rawseti(L, -2, r + 1);
    }
}

static lua_Integer affected(const PGresult *res)
{
    if (!res)
        return 0;
    const char *n = PQcmdTuples((PGresult *)res);
    if (n && *n)
        return (lua_Integer)strtoll(n, NULL, 10);
    return PQresultStatus(res) == PGRES_TUPLES_OK ? PQntuples(res) : 0;
}

static void push_error(lua_State *L, const struct pg_error *e)
{
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e->message ? e->message : "unknown error");
    lua_setfield(L, -2, "message");
    lua_pushstring(L, e->sqlstate);
    lua_setfield(L, -2, "sqlstate");
    lua_pushboolean(L, e->connection);
    lua_setfield(L, -2, "connection");
    lua_rawgeti(L, LUA_REGISTRYINDEX, error_mt_ref);
    lua_setmetatable(L, -2);
}

static int push_outcome(lua_State *co, void *arg)
{
    struct db_wait *dw = arg;
    struct pg_job *job = dw->job;
    if (job->error.message) {
        lua_pushnil(co);
        push_error(co, &job->error);
        return 2;
    }
    switch (dw->kind) {
    case DB_QUERY:
        push_rows(co, job->results[0]);
        return 1;
    case DB_EXEC:
        lua_pushinteger(co, affected(job->results[0]));
        return 1;
    case DB_BATCH:
        lua_createtable(co, job->nstmts, 0);
        for (int i = 0; i < job->nstmts; i++) {
            lua_createtable(co, 0, 2);
            push_rows(co, job->results[i]);
            lua_setfield(co, -2, "rows");
            lua_pushinteger(co, affected(job->results[i]));
            lua_setfield(co, -2, "count");
            lua_rawseti(co, -2, i + 1);
        }
        return 1;
    }
    return 0;
}

static void on_db_done(struct pg_job *job, void *ctx)
{
    struct db_wait *dw = ctx;
    struct host_wait *w = dw->w;
    host_wait_complete(w, push_outcome, dw);
    free(dw);
}

static void db_cancel(void *ctx)
{
    struct db_wait *dw = ctx;
    pg_job_cancel(dw->job); /* the pool frees it; on_db_done will not run */
    free(dw);
}

/* ------------------------------------------------------------ parameters */

static int error_tostring_l(lua_State *L)
{
    lua_getfield(L, 1, "sqlstate");
    lua_getfield(L, 1, "message");
    lua_pushfstring(L, "ERROR %s: %s", luaL_optstring(L, -2, "?"), luaL_optstring(L, -1, "?"));
    return 1;
}

/* The text of parameter at `idx` (kept alive on the stack: a table's JSON is
 * pushed and left there), or NULL for SQL NULL. Raises on misuse. */
static const char *param_text(lua_State *L, int idx, int n)
{
    idx = lua_absindex(L, idx);
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
    case LUA_TNONE:
        return NULL;
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL)
            return NULL; /* db.null */
        break;
    case LUA_TBOOLEAN:
        return lua_toboolean(L, idx) ? "t" : "f";
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_pushfstring(L, "%I", lua_tointeger(L, idx));
        } else {
            double d = lua_tonumber(L, idx);
            char buf[64];
            if (isnan(d))
                snprintf(buf, sizeof buf, "NaN");
            else if (isinf(d))
                snprintf(buf, sizeof buf, "%sInfinity", d < 0 ? "-" : "");
            else
                snprintf(buf, sizeof buf, "%.17g", d);
            lua_pushstring(L, buf);
        }
        lua_replace(L, idx);
        return lua_tostring(L, idx);
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (strlen(s) != len)
            luaL_error(L, "parameter %d contains a NUL byte (PostgreSQL text cannot hold one)", n);
        return s;
    }
    case LUA_TTABLE:
        lua_rawgeti(L, LUA_REGISTRYINDEX, encode_ref);
        lua_pushvalue(L, idx);
        if (lua_pcall(L, 1, 1, 0) != LUA_OK)
            luaL_error(L, "parameter %d: cannot encode the table as JSON: %s", n, lua_tostring(L, -1));
        lua_replace(L, idx);
        return lua_tostring(L, idx);
    default:
        break;
    }
    luaL_error(L, "parameter %d: a %s cannot be a query parameter", n, luaL_typename(L, idx));
    return NULL;
}

/* Fills statement i of job from the SQL at `sql_idx` and `count` params
 * starting at `first`. The params array lives in a userdata (raise-safe). */
static void set_stmt(lua_State *L, struct pg_job *job, int i, int sql_idx, int first, int count)
{
    const char *sql = lua_tostring(L, sql_idx);
    if (count > MAX_PARAMS)
        luaL_error(L, "at most %d parameters", MAX_PARAMS);
    const char **params = count ? lua_newuserdatauv(L, sizeof *params * (size_t)count, 0) : NULL;
    for (int k = 0; k < count; k++)
        params[k] = param_text(L, first + k, k + 1);
    if (pg_job_set(job, i, sql, count, params) != 0)
        luaL_error(L, "out of memory");
    if (count)
        lua_pop(L, 1);
}

/* The job userdata: freed by __gc unless handed to the pool. */
struct job_box {
    struct pg_job *job;
};

static int job_box_gc(lua_State *L)
{
    struct job_box *b = lua_touserdata(L, 1);
    if (b->job)
        pg_job_free(b->job);
    b->job = NULL;
    return 0;
}

static struct job_box *new_job_box(lua_State *L, int nstmts, int transaction)
{
    struct job_box *b = lua_newuserdatauv(L, sizeof *b, 0);
    b->job = NULL;
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, job_box_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    b->job = pg_job_new(nstmts, transaction, on_db_done, NULL);
    if (!b->job)
        luaL_error(L, "out of memory");
    return b;
}

/* Hands the job to the pool and yields until it is done. */
static int submit_and_wait(lua_State *L, struct job_box *box, enum db_kind kind, const char *what)
{
    if (!the_pool)
        return luaL_error(L, "%s: the database is not available in this process", what);
    struct db_wait *dw = calloc(1, sizeof *dw);
    if (!dw)
        return luaL_error(L, "out of memory");
    struct host_wait *w = host_wait_begin(L, db_cancel, dw);
    if (!w) {
        free(dw);
        return luaL_error(L, "%s can only wait inside a handler or timer (not in init/start/stop)", what);
    }
    dw->w = w;
    dw->kind = kind;
    dw->job = box->job;
    box->job = NULL;
    dw->job->ctx = dw;
    if (pg_submit(the_pool, dw->job) != 0) {
        /* on_db_done ran already and completed the wait: yield to pick it up. */
        return host_wait_yield(L);
    }
    return host_wait_yield(L);
}

/* db:query / db:exec: (self, sql, ...) with self optional. */
static int sql_call(lua_State *L, enum db_kind kind, const char *what)
{
    int base = lua_istable(L, 1) ? 2 : 1;
    luaL_checktype(L, base, LUA_TSTRING);
    int nparams = lua_gettop(L) - base;
    struct job_box *box = new_job_box(L, 1, 0);
    int box_idx = lua_gettop(L);
    set_stmt(L, box->job, 0, base, base + 1, nparams);
    lua_settop(L, box_idx);
    return submit_and_wait(L, box, kind, what);
}

static int db_query_l(lua_State *L) { return sql_call(L, DB_QUERY, "db:query"); }
static int db_exec_l(lua_State *L) { return sql_call(L, DB_EXEC, "db:exec"); }

/* db:batch(list): each entry is "sql", {sql, p1, p2, ..., n = count}, or
 * {sql = "...", params = {...}}; all run in one transaction. */
static int db_batch_l(lua_State *L)
{
    int base = lua_istable(L, 1) && lua_istable(L, 2) ? 2 : 1;
    luaL_checktype(L, base, LUA_TTABLE);
    lua_Integer n = luaL_len(L, base);
    luaL_argcheck(L, n >= 1 && n <= MAX_BATCH, base, "a list of 1..1000 statements");
    struct job_box *box = new_job_box(L, (int)n, 1);
    int box_idx = lua_gettop(L);
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, base, i);
        int e = lua_gettop(L);
        if (lua_type(L, e) == LUA_TSTRING) {
            set_stmt(L, box->job, (int)i - 1, e, e + 1, 0);
        } else if (lua_istable(L, e)) {
            lua_getfield(L, e, "sql");
            if (lua_type(L, -1) == LUA_TSTRING) {
                int sql_idx = lua_gettop(L);
                lua_getfield(L, e, "params");
                int count = 0;
                if (lua_istable(L, -1)) {
                    lua_getfield(L, -1, "n");
                    count = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : (int)luaL_len(L, -2);
                    lua_pop(L, 1);
                    int pt = lua_gettop(L);
                    for (int k = 1; k <= count; k++)
                        lua_rawgeti(L, pt, k);
                    set_stmt(L, box->job, (int)i - 1, sql_idx, pt + 1, count);
                } else {
                    set_stmt(L, box->job, (int)i - 1, sql_idx, sql_idx + 2, 0);
                }
            } else {
                lua_pop(L, 1);
                lua_rawgeti(L, e, 1);
                if (lua_type(L, -1) != LUA_TSTRING)
                    return luaL_error(L, "db:batch: statement %d needs its SQL first ({sql, params...})", (int)i);
                int sql_idx = lua_gettop(L);
                lua_getfield(L, e, "n");
                int count = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) - 1 : (int)luaL_len(L, e) - 1;
                lua_pop(L, 1);
                for (int k = 0; k < count; k++)
                    lua_rawgeti(L, e, k + 2);
                set_stmt(L, box->job, (int)i - 1, sql_idx, sql_idx + 1, count);
            }
        } else {
            return luaL_error(L, "db:batch: statement %d must be a string or a table", (int)i);
        }
        lua_settop(L, box_idx);
    }
    return submit_and_wait(L, box, DB_BATCH, "db:batch");
}

/* ------------------------------------------------------------ stats */

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static int db_stats_l(lua_State *L)
{
    lua_createtable(L, 0, 3);
    struct pg_stats ps;
    pg_pool_stats(the_pool, &ps);
    lua_createtable(L, 0, 9);
    set_int(L, "size", (uint64_t)ps.size);
    set_int(L, "connected", (uint64_t)ps.connected);
    set_int(L, "in_use", (uint64_t)ps.in_use);
    set_int(L, "queued", ps.queued);
    set_int(L, "jobs", ps.jobs);
    set_int(L, "errors", ps.errors);
    set_int(L, "connection_errors", ps.connection_errors);
    set_int(L, "reconnects", ps.reconnects);
    if (ps.last_error) {
        lua_pushstring(L, ps.last_error);
        lua_setfield(L, -2, "last_error");
    }
    lua_setfield(L, -2, "pool");

    struct pg_writer_stats ws;
    pg_writer_get_stats(the_writer, &ws);
    lua_createtable(L, 0, 14);
    set_int(L, "rows_received", ws.rows_received);
    set_int(L, "rows_written", ws.rows_written);
    set_int(L, "rows_rejected", ws.rows_rejected);
    set_int(L, "rows_spooled", ws.rows_spooled);
    set_int(L, "rows_lost", ws.rows_lost);
    set_int(L, "rows_buffered", ws.rows_buffered);
    set_int(L, "batches_written", ws.batches_written);
    set_int(L, "batches_failed", ws.batches_failed);
    set_int(L, "batches_split", ws.batches_split);
    set_int(L, "rejected_unknown_table", ws.rejected_unknown_table);
    set_int(L, "rejected_bad_row", ws.rejected_bad_row);
    set_int(L, "rejected_by_database", ws.rejected_by_database);
    if (ws.last_error) {
        lua_pushstring(L, ws.last_error);
        lua_setfield(L, -2, "last_error");
    }
    lua_setfield(L, -2, "writer");

    struct spool_stats ss;
    spool_get_stats(the_spool, &ss);
    lua_createtable(L, 0, 10);
    set_int(L, "records", ss.records);
    set_int(L, "rows", ss.rows);
    set_int(L, "bytes", ss.bytes);
    set_int(L, "max_bytes", ss.max_bytes);
    set_int(L, "refused_rows", ss.refused_rows);
    set_int(L, "refused_records", ss.refused_records);
    set_int(L, "appended_rows", ss.appended_rows);
    set_int(L, "replayed_rows", ss.replayed_rows);
    set_int(L, "corrupt_records", ss.corrupt_records);
    lua_pushnumber(L, ss.oldest_ms ? (double)ss.oldest_ms / 1000.0 : 0);
    lua_setfield(L, -2, "oldest_time");
    lua_setfield(L, -2, "spool");
    return 1;
}

/* ------------------------------------------------------------ module */

int lua_db_open(lua_State *L, struct host *h, struct pg_pool *pool, struct pg_writer *writer, struct spool *spool)
{
    the_pool = pool;
    the_writer = writer;
    the_spool = spool;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        log_error("db", "lua-cjson is required: %s", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    lua_getfield(L, -1, "encode");
    encode_ref = host_ref(h, L);
    lua_getfield(L, -1, "decode");
    decode_ref = host_ref(h, L);
    lua_pop(L, 1);

    lua_createtable(L, 0, 2);
    lua_pushcfunction(L, error_tostring_l);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "db.error");
    lua_setfield(L, -2, "__name");
    error_mt_ref = host_ref(h, L);

    static const luaL_Reg fns[] = {
        {"query", db_query_l}, {"exec", db_exec_l}, {"batch", db_batch_l}, {"stats", db_stats_l}, {NULL, NULL},
    };
    luaL_newlib(L, fns);
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
    lua_pushvalue(L, -1);
    lua_setglobal(L, "db");
    lua_getglobal(L, "daz");
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, "db");
    }
    lua_pop(L, 2);
    return 0;
}

void lua_db_close(struct host *h)
{
    host_unref(h, encode_ref);
    host_unref(h, decode_ref);
    host_unref(h, error_mt_ref);
    encode_ref = decode_ref = error_mt_ref = LUA_NOREF;
    the_pool = NULL;
    the_writer = NULL;
    the_spool = NULL;
}
