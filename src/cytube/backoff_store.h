/* room_backoff: keeps each room's reconnect backoff in daz_room_backoff, so
 * the timers survive a restart (issue 5). Loads every row once at startup
 * (before the rooms connect), answers the rooms' load hook from that, and
 * writes each change with a fire-and-forget sql.exec (a transient failure
 * goes to the retry queue). A wait after a "Duplicate login" kick is not
 * saved (see room.c). Uses cytube, pg, bus, jansson. */
#ifndef DAZ_ROOM_BACKOFF_H
#define DAZ_ROOM_BACKOFF_H

#include "core/bus.h"
#include "cytube/rooms.h"
#include "postgres/pool.h"

struct room_backoff;

/* Submits the load at once, so it runs on the first connection the pool
 * makes, ahead of the migrations; then installs the hooks on `cy` and calls
 * done(ctx). A load that fails before room_backoff_db_ready (a new database
 * has no table yet; no connection) runs again then; if that fails too it is
 * logged and done(ctx) still comes: the rooms start without saved state. */
typedef void (*room_backoff_ready_fn)(void *ctx);
struct room_backoff *room_backoff_start(struct pg_pool *pool, struct bus *bus, struct cytube *cy,
                                        room_backoff_ready_fn done, void *ctx);
/* The schema is migrated and the SQL plugin takes sql.exec: a failed load
 * is retried, and changes made before now are written. */
void room_backoff_db_ready(struct room_backoff *rb);
void room_backoff_free(struct room_backoff *rb);

/* `daz -reset-backoff [channel]`: deletes the saved backoff of `channel`
 * (any case; NULL: of every room). done(rows deleted, NULL, ctx), or
 * done(-1, error, ctx); a database never migrated has nothing to delete.
 * Returns 0, or -1 when out of memory (done is not called). */
typedef void (*room_backoff_reset_fn)(long deleted, const char *error, void *ctx);
int room_backoff_reset(struct pg_pool *pool, const char *channel, room_backoff_reset_fn done, void *ctx);

#endif
