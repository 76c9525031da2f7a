/* lua_db: the `db` global plugins use — db:query, db:exec, db:batch (which
 * wait on the plugin host's waiting mechanism), db.null, db.stats — with
 * the type mapping from result columns to Lua values. Uses lua_host, pg,
 * pg_writer, spool, lua-cjson. */
#ifndef DAZ_LUA_DB_H
#define DAZ_LUA_DB_H

#include <lua.h>

#include "host/host.h"
#include "postgres/pool.h"
#include "postgres/writer.h"
#include "postgres/spool.h"

/* Sets the global `db` (and `daz.db`). pool/writer/spool are borrowed and
 * must outlive every plugin. Returns 0, or -1 after logging why. */
int lua_db_open(lua_State *L, struct host *h, struct pg_pool *pool, struct pg_writer *writer, struct spool *spool);
/* Releases the registry refs lua_db_open took. */
void lua_db_close(struct host *h);

/* Pushes the Lua value of field (row, col) of `res` per the type mapping. */
void lua_db_push_value(lua_State *L, const PGresult *res, int row, int col);

#endif
