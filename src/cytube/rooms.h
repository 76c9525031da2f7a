/* cytube: the CyTube rooms — per room discovery, the WebSocket connection
 * (libwebsockets on the libuv loop), Engine.IO/Socket.IO handshake,
 * join/login, server events onto the bus, paced commands from the bus,
 * reconnect with backoff, and the room state plugins read.
 * Uses bus, event, log, libwebsockets, libuv, jansson.
 *
 * The files of src/cytube, and which calls which (never back):
 *   rooms.c      this API: the set of rooms, start, shutdown, snapshots
 *                -> room.c, commands.c, transport.c
 *   commands.c   commands from the bus (cytube.send, cytube.queue ...):
 *                checks, then queues or sends -> room.c, channel, pacer, text
 *   room.c       one room's state machine (discovery, connect, handshake,
 *                join, login, joined, backoff) -> transport, channel, pacer,
 *                socketio, discovery; room_internal.h is what these share
 *   transport.c  sockets: the lws context, DNS, per-server connection slots,
 *                frames in and out; reports to room.c through callbacks
 *   channel.c    pure: the room's view of the channel (users, ranks,
 *                options, permissions, media) and the checks on it
 *   pacer.c      pure: the outbound limiter (CyTube's flood limit with
 *                margins, echoes, the cooldown response)
 *   text.c       pure: cleaning and splitting chat text
 *   socketio.c   pure: the Engine.IO/Socket.IO codec
 *   discovery.c  the HTTP client for /socketconfig
 *   backoff_store.c, metrics.c  users of this API (PostgreSQL, /metrics) */
#ifndef DAZ_CYTUBE_H
#define DAZ_CYTUBE_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "core/bus.h"

struct cytube;

struct cytube_room_config {
    const char *channel;
    const char *server;           /* base URL, e.g. https://cytu.be */
    const char *username;         /* NULL: stay anonymous (read only) */
    const char *password;         /* NULL/empty: guest login */
    const char *channel_password; /* NULL: none */
    int enabled;
    int reconnect_attempts;       /* per cycle */
    double cooldown_minutes;      /* between cycles */
};

struct cytube_options {
    long login_delay_ms;             /* joinChannel -> login (2000) */
    long connect_timeout_ms;         /* discovery + connect + handshake (30000) */
    long backoff_initial_ms;         /* 2000 */
    long backoff_max_ms;             /* 300000 */
    long duplicate_login_backoff_ms; /* after a "Duplicate login" kick (900000) */
    long guest_retry_ms;             /* after a guest-login refusal that time heals (65000) */
    int server_connect_burst;        /* per server address (5) */
    long server_connect_interval_ms; /* then one per interval (10000) */
    int outbound_queue_size;         /* chat lines waiting per room (1000) */
    int chat_max_length;             /* UTF-16 units per line (320) */
    int verify_tls;                  /* 1: verify certificates (default) */
    const char *tls_ca_file;         /* CA bundle for wss:// and https:// (copied) */
};

void cytube_default_options(struct cytube_options *o);

struct cytube *cytube_new(uv_loop_t *loop, struct bus *bus, const struct cytube_options *opts);
/* Adds a room (strings are copied). Returns 0, or -1 (duplicate channel,
 * out of memory). */
int cytube_add_room(struct cytube *cy, const struct cytube_room_config *rc);
/* Attaches to the bus: subscribes to the command events. Call before the
 * plugins start so their first commands find a subscriber. */
int cytube_attach(struct cytube *cy);
/* Sets up what connecting needs (the libwebsockets context, the HTTP
 * client) and starts each room's discovery (an HTTP GET, not a connection
 * to the channel) ahead of cytube_connect_all, while the database connects.
 * Optional: cytube_connect_all does it all otherwise. */
void cytube_prepare(struct cytube *cy);
/* Connects every enabled room (once the saved backoff state is loaded):
 * discovery, WebSocket, Engine.IO/Socket.IO handshake. A connected room
 * joins its channel only after cytube_start_joining; until then it holds
 * what the server sends and publishes nothing. */
void cytube_connect_all(struct cytube *cy);
/* Every plugin has started and subscribed: rooms join (connected ones now,
 * the others as soon as they are connected), held frames and status changes
 * are published. */
void cytube_start_joining(struct cytube *cy);

/* Shutdown: unsubscribes from the bus, sends `41` on every joined room and
 * closes the sockets. The loop then runs until they are closed; after
 * uv_run returns call cytube_free (it finishes libwebsockets' teardown). */
void cytube_close(struct cytube *cy);
void cytube_free(struct cytube *cy);

/* A snapshot of one room for plugins and health: a new JSON object (caller
 * owns it) or NULL for an unknown channel. */
json_t *cytube_room_snapshot(struct cytube *cy, const char *channel);
/* The configured channel names, in order: a new JSON array. */
json_t *cytube_room_list(struct cytube *cy);

/* Backoff state per room, kept in memory; a store (the SQL plugin, later)
 * can persist it across restarts by installing these hooks. */
struct cytube_backoff_state {
    int attempts;                 /* failures in the current cycle */
    int64_t next_attempt_unix_ms; /* 0: no wait pending */
};
typedef int (*cytube_backoff_load_fn)(const char *channel, struct cytube_backoff_state *out, void *ctx);
typedef void (*cytube_backoff_save_fn)(const char *channel, const struct cytube_backoff_state *st, void *ctx);
void cytube_set_backoff_store(struct cytube *cy, cytube_backoff_load_fn load, cytube_backoff_save_fn save, void *ctx);

#endif
