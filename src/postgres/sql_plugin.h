/* sql: the SQL plugin in C (DESIGN §6) put together — reads core.database,
 * spool and loggers from the config, opens the spool, connects the pool,
 * applies migrations, starts the batch log writer, and answers the bus
 * requests sql.query, sql.exec and sql.batch. Uses pg, migrate, pg_writer,
 * spool, bus, event, jansson, Lua (to read the config), log. */
#ifndef DAZ_SQL_H
#define DAZ_SQL_H

#include <lua.h>
#include <uv.h>

#include "core/bus.h"
#include "postgres/pool.h"
#include "postgres/writer.h"
#include "postgres/spool.h"

struct sql;

/* Reads the validated config (registry ref config_ref in L) and builds the
 * service; nothing connects yet. NULL on error, with err filled (e.g. no
 * database configured and no DAZ_LOCAL_DATABASE_URL). */
struct sql *sql_new(uv_loop_t *loop, struct bus *bus, lua_State *L, int config_ref, char *err, size_t errsz);

/* Connects (retrying with backoff while the server is unreachable, logging
 * as it waits), migrates, starts the writer and the bus requests, then calls
 * ready(1, NULL, ctx). A fatal problem (a changed or failing migration, a bad
 * logger rule) calls ready(0, message, ctx). */
typedef void (*sql_ready_fn)(int ok, const char *message, void *ctx);
void sql_start(struct sql *s, sql_ready_fn ready, void *ctx);

/* Shutdown: stops answering requests, drains the writer (spooling what the
 * database does not take within the timeout), closes the pool; then
 * stopped(ctx). Safe at any stage of startup. */
typedef void (*sql_stopped_fn)(void *ctx);
void sql_stop(struct sql *s, sql_stopped_fn stopped, void *ctx);
/* After the loop has closed every handle. */
void sql_free(struct sql *s);

/* Migrated and writing (startup finished). */
int sql_ready(struct sql *s);

struct pg_pool *sql_pool(struct sql *s);
struct pg_writer *sql_writer(struct sql *s);
struct spool *sql_spool(struct sql *s);

#endif
