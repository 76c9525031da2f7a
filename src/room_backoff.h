/* room_backoff: keeps each room's reconnect backoff in daz_room_backoff, so
 * the timers survive a restart (issue 5). Loads every row once at startup
 * (before the rooms connect), answers the rooms' load hook from that, and
 * writes each change with a fire-and-forget sql.exec (a transient failure
 * goes to the retry queue). Uses cytube, pg, bus, jansson. */
#ifndef DAZ_ROOM_BACKOFF_H
#define DAZ_ROOM_BACKOFF_H

#include "bus.h"
#include "cytube.h"
#include "pg.h"

struct room_backoff;

/* Loads the table, installs the hooks on `cy`, then calls done(ctx) — also
 * when the load failed (logged: the rooms then start without saved state). */
typedef void (*room_backoff_ready_fn)(void *ctx);
struct room_backoff *room_backoff_start(struct pg_pool *pool, struct bus *bus, struct cytube *cy,
                                        room_backoff_ready_fn done, void *ctx);
void room_backoff_free(struct room_backoff *rb);

#endif
