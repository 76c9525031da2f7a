/* room_internal: what the component's own files share — struct cytube (the
 * rooms and what they have in common), struct room (one room's state
 * machine and its parts), and the state machine's entry points. Private to
 * src/cytube. Calls go one way:
 *   rooms.c (public API) -> room.c, commands.c, transport
 *   commands.c (commands from the bus) -> room.c, channel, pacer, text
 *   room.c (the state machine) -> transport, channel, pacer, socketio, discovery
 *   transport -> room.c only through struct transport_events
 * Uses transport, channel, pacer, discovery, socketio, bus. */
#ifndef DAZ_CYTUBE_ROOM_INTERNAL_H
#define DAZ_CYTUBE_ROOM_INTERNAL_H

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

#include "core/bus.h"
#include "core/log_repeat.h"
#include "cytube/channel.h"
#include "cytube/pacer.h"
#include "cytube/rooms.h"
#include "cytube/socketio.h"
#include "cytube/transport.h"

struct event;

/* Discovery started by cytube_prepare, ahead of the saved backoff state. */
enum { AHEAD_NONE, AHEAD_RUNNING, AHEAD_DONE, AHEAD_FAILED };

enum room_state {
    RS_IDLE,
    RS_DISCOVERING,
    RS_WAITING,
    RS_RESOLVING,
    RS_CONNECTING,
    RS_HANDSHAKE,
    RS_JOINING,
    RS_LOGGING_IN,
    RS_JOINED,
    RS_BACKOFF,
    RS_STOPPED,
    RS_CLOSED,
};

/* A frame that arrived before the room could join (cytube_start_joining). */
struct early_frame {
    struct early_frame *next;
    size_t len;
    char data[]; /* NUL-terminated */
};

struct room {
    struct cytube *cy;
    struct room *next;
    /* configuration */
    char *channel, *server, *username, *password, *channel_password;
    int enabled, reconnect_attempts;
    double cooldown_minutes;

    enum room_state state;
    char last_error[300];
    int timers_ready;
    uv_timer_t t_stage, t_ping, t_send;

    /* connection */
    struct http_request *discovery;
    struct transport_conn conn;
    struct eio_open open;
    int sio_connected;
    struct early_frame *early_head, *early_tail;
    int early_count;
    int status_held;    /* a status change happened before the plugins listened */
    int ahead;          /* discovery ahead of the backoff state: AHEAD_* */

    /* session */
    char kick_reason[300];
    int kicked, replaying, userlist_seen, login_sent, logged_in, password_sent;
    int rank_wait;      /* logged in with an account: its channel rank is on the way */
    char *me;
    struct channel ch;

    /* output */
    struct pacer pacer;

    /* backoff */
    struct cytube_backoff_state backoff;
    uint64_t next_attempt_ms; /* loop time */
    uint64_t connected_since_ms;

    /* counters (the pacer and the connection keep their own too) */
    uint64_t events_in, bad_frames, lines_sent, lines_dropped, reconnects, connects;
};

struct cytube {
    uv_loop_t *loop;
    struct bus *bus;
    struct cytube_options o;
    struct room *rooms;
    int room_count;
    struct transport *transport;
    struct bus_sub *subs[16];
    int sub_count;
    int closing;
    uv_timer_t t_close;
    int t_close_ready;
    uint64_t close_started_ms;
    cytube_backoff_load_fn backoff_load;
    cytube_backoff_save_fn backoff_save;
    void *backoff_ctx;
    char *ca_file;
    int joining;          /* rooms may join: every plugin has started (cytube_start_joining) */
    int backoff_known;    /* the saved backoff state is loaded: rooms may connect (cytube_connect_all) */
    struct log_repeat warnings; /* what can repeat at event rate: refused commands, bad frames */
};

/* room.c: the state machine's entry points, for rooms.c and commands.c. */
const char *room_state_name(enum room_state s);
struct room *room_find(struct cytube *cy, const char *channel);
extern const struct transport_events room_transport_events; /* a room's connection reports here */
void room_reset_session(struct room *r);
void room_init_timers(struct room *r);
void room_start_ahead(struct room *r);   /* discovery before the backoff state (cytube_prepare) */
void room_start(struct room *r);         /* the backoff state is known (cytube_connect_all) */
void room_start_joining(struct room *r); /* the plugins have started */
void room_publish(struct room *r, const char *type, int prio, json_t *data, int replayed, int own);
int room_emit(struct room *r, const char *name, const json_t *arg);
void room_pump(struct room *r);          /* sends what the pacer allows now */

/* commands.c: subscribes the room commands (cytube.send ...) on the bus. */
int commands_attach(struct cytube *cy);

#endif
