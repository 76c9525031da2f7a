/* cytube: the component's public face (see rooms.h) — the set of rooms,
 * their start in three steps (prepare, connect, join), shutdown, and the
 * snapshots plugins and /health read. Each room's own work is in room.c. */
#include "cytube/rooms.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/log.h"
#include "cytube/discovery.h"
#include "cytube/room_internal.h"

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static struct room *room_new(struct cytube *cy, const struct cytube_room_config *rc)
{
    struct room *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->cy = cy;
    r->channel = strdup(rc->channel);
    r->server = strdup(rc->server ? rc->server : "https://cytu.be");
    r->username = rc->username && rc->username[0] ? strdup(rc->username) : NULL;
    r->password = dup_or_null(rc->password);
    r->channel_password = rc->channel_password && rc->channel_password[0] ? strdup(rc->channel_password) : NULL;
    r->enabled = rc->enabled;
    r->reconnect_attempts = rc->reconnect_attempts > 0 ? rc->reconnect_attempts : 10;
    r->cooldown_minutes = rc->cooldown_minutes;
    transport_conn_init(&r->conn, cy->transport, &room_transport_events, r);
    channel_init(&r->ch);
    pacer_init(&r->pacer, cy->o.outbound_queue_size);
    return r;
}

static void room_free(struct room *r)
{
    room_reset_session(r);
    pacer_clear(&r->pacer, 0);
    transport_conn_free(&r->conn);
    free(r->channel);
    free(r->server);
    free(r->username);
    free(r->password);
    free(r->channel_password);
    free(r);
}

/* Shutdown: cancels what is in flight, says goodbye (`41`) and closes. */
static void room_leave(struct room *r)
{
    if (r->discovery) {
        http_cancel(r->discovery);
        r->discovery = NULL;
    }
    transport_cancel_lookup(&r->conn);
    if (r->timers_ready) {
        uv_timer_stop(&r->t_stage);
        uv_timer_stop(&r->t_ping);
        uv_timer_stop(&r->t_send);
    }
    pacer_clear(&r->pacer, 0);
    if (transport_is_open(&r->conn)) {
        transport_drop_output(&r->conn);
        if (r->sio_connected)
            transport_send(&r->conn, SIO_FRAME_DISCONNECT, 2, 0);
        transport_shut(&r->conn, 0);
        log_info("cytube", "%s: leaving", r->channel);
    }
}

static void timer_closed(uv_handle_t *h) { (void)h; }

/* Shutdown, the last turn: forgets the socket, closes the timers. */
static void room_release(struct room *r)
{
    transport_detach(&r->conn);
    if (r->timers_ready) {
        uv_close((uv_handle_t *)&r->t_stage, timer_closed);
        uv_close((uv_handle_t *)&r->t_ping, timer_closed);
        uv_close((uv_handle_t *)&r->t_send, timer_closed);
    }
}

static json_t *room_snapshot(struct room *r)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    double burst, sustained, cooldown_s;
    channel_flood_limits(&r->ch, &burst, &sustained, &cooldown_s);
    json_object_set_new(o, "channel", json_string(r->channel));
    json_object_set_new(o, "server", json_string(r->server));
    json_object_set_new(o, "enabled", json_boolean(r->enabled));
    json_object_set_new(o, "state", json_string(room_state_name(r->state)));
    json_object_set_new(o, "joined", json_boolean(r->state == RS_JOINED));
    json_object_set_new(o, "connected", json_boolean(r->sio_connected && transport_has_socket(&r->conn)));
    if (r->last_error[0])
        json_object_set_new(o, "error", json_string(r->last_error));
    if (r->me)
        json_object_set_new(o, "name", json_string(r->me));
    json_object_set_new(o, "logged_in", json_boolean(r->logged_in));
    channel_snapshot(&r->ch, o);
    json_object_set_new(o, "flood", json_pack("{s:f, s:f, s:f}", "burst", burst, "sustained", sustained,
                                              "slowdown", r->pacer.slow));
    json_object_set_new(o, "queue_depth", json_integer(pacer_queued(&r->pacer)));
    json_object_set_new(o, "attempts", json_integer(r->backoff.attempts));
    if (r->state == RS_BACKOFF) {
        uint64_t now = uv_now(r->cy->loop);
        double left = r->next_attempt_ms > now ? (double)(r->next_attempt_ms - now) / 1000.0 : 0;
        json_object_set_new(o, "next_attempt_in", json_real(left));
    }
    json_object_set_new(
        o, "counters",
        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "events_in", (json_int_t)r->events_in, "bad_frames",
                  (json_int_t)(r->bad_frames + r->conn.binary_frames), "lines_sent", (json_int_t)r->lines_sent,
                  "lines_dropped", (json_int_t)(r->lines_dropped + r->pacer.dropped), "cooldowns",
                  (json_int_t)r->pacer.cooldowns, "resent", (json_int_t)r->pacer.resent, "reconnects",
                  (json_int_t)r->reconnects, "connects", (json_int_t)r->connects));
    return o;
}

void cytube_default_options(struct cytube_options *o)
{
    o->login_delay_ms = 2000;
    o->connect_timeout_ms = 30000;
    o->backoff_initial_ms = 2000;
    o->backoff_max_ms = 300000;
    o->duplicate_login_backoff_ms = 900000;
    o->guest_retry_ms = 65000;
    o->server_connect_burst = 5;
    o->server_connect_interval_ms = 10000;
    o->outbound_queue_size = 1000;
    o->chat_max_length = 320;
    o->verify_tls = 1;
    o->tls_ca_file = access("/etc/ssl/certs/ca-certificates.crt", R_OK) == 0 ? "/etc/ssl/certs/ca-certificates.crt" : NULL;
}

struct cytube *cytube_new(uv_loop_t *loop, struct bus *bus, const struct cytube_options *opts)
{
    struct cytube *cy = calloc(1, sizeof *cy);
    if (!cy)
        return NULL;
    cy->loop = loop;
    cy->bus = bus;
    cytube_default_options(&cy->o);
    if (opts)
        cy->o = *opts;
    log_repeat_init(&cy->warnings, LOG_WARN, "cytube", NULL, 10, 32);
    cy->ca_file = cy->o.tls_ca_file ? strdup(cy->o.tls_ca_file) : NULL;
    cy->o.tls_ca_file = cy->ca_file;
    cy->transport = transport_new(loop, cy->o.server_connect_burst, cy->o.server_connect_interval_ms, cy->o.verify_tls,
                                  cy->ca_file);
    if (!cy->transport) {
        free(cy->ca_file);
        log_repeat_free(&cy->warnings);
        free(cy);
        return NULL;
    }
    log_repeat_attach(&cy->warnings, loop);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    srand((unsigned)((int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000) ^ (unsigned)getpid());
    return cy;
}

int cytube_add_room(struct cytube *cy, const struct cytube_room_config *rc)
{
    if (!rc->channel || room_find(cy, rc->channel))
        return -1;
    struct room *r = room_new(cy, rc);
    if (!r)
        return -1;
    /* append, keeping config order */
    struct room **tail = &cy->rooms;
    while (*tail)
        tail = &(*tail)->next;
    *tail = r;
    cy->room_count++;

    int sharing = 0;
    for (struct room *o = cy->rooms; o; o = o->next)
        sharing += o->enabled && strcasecmp(o->server, r->server) == 0;
    if (r->enabled && sharing == 11)
        log_warn("cytube", "more than 10 rooms use %s: CyTube allows 10 connections per address; "
                           "expect \"Too many connections\" kicks", r->server);
    return 0;
}

int cytube_attach(struct cytube *cy) { return commands_attach(cy); }

/* The libwebsockets context and the HTTP client, when some room is enabled.
 * Returns 1 ready, 0 no room to connect, -1 failed. */
static int setup_connections(struct cytube *cy)
{
    int tls = 0;
    unsigned enabled = 0;
    for (struct room *r = cy->rooms; r; r = r->next) {
        tls |= r->enabled && strncasecmp(r->server, "https:", 6) == 0;
        enabled += r->enabled != 0;
    }
    if (!enabled)
        return 0;
    /* A room holds at most two sockets (one closing, one opening). */
    return transport_setup(cy->transport, tls, 2 * enabled) == 0 ? 1 : -1;
}

void cytube_prepare(struct cytube *cy)
{
    if (setup_connections(cy) <= 0)
        return; /* a failure is reported by cytube_connect_all, which tries again */
    /* Discovery is an HTTP GET of the channel's socket config, not a
     * connection to the channel: it runs while the saved backoff state
     * loads; the WebSocket waits for that (cytube_connect_all). */
    for (struct room *r = cy->rooms; r; r = r->next) {
        if (!r->enabled || cy->backoff_known || r->state != RS_IDLE)
            continue;
        room_start_ahead(r);
    }
}

void cytube_connect_all(struct cytube *cy)
{
    int ready = setup_connections(cy);
    if (ready <= 0) {
        if (ready < 0)
            log_error("cytube", "cannot start the CyTube connections");
        return;
    }
    cy->backoff_known = 1;
    for (struct room *r = cy->rooms; r; r = r->next)
        if (r->enabled)
            room_start(r);
}

void cytube_start_joining(struct cytube *cy)
{
    if (cy->joining || cy->closing)
        return;
    cy->joining = 1;
    for (struct room *r = cy->rooms; r; r = r->next)
        room_start_joining(r);
}

static int any_socket(struct cytube *cy)
{
    for (struct room *r = cy->rooms; r; r = r->next)
        if (transport_has_socket(&r->conn))
            return 1;
    return 0;
}

static void finish_close(struct cytube *cy)
{
    uv_timer_stop(&cy->t_close);
    uv_close((uv_handle_t *)&cy->t_close, timer_closed);
    for (struct room *r = cy->rooms; r; r = r->next)
        room_release(r);
    transport_close(cy->transport);
}

static void on_close_tick(uv_timer_t *t)
{
    struct cytube *cy = t->data;
    if (!any_socket(cy) || uv_now(cy->loop) - cy->close_started_ms > 1500)
        finish_close(cy);
}

void cytube_close(struct cytube *cy)
{
    if (!cy || cy->closing)
        return;
    cy->closing = 1;
    for (int i = 0; i < cy->sub_count; i++)
        if (cy->subs[i])
            bus_unsubscribe(cy->bus, cy->subs[i]);
    cy->sub_count = 0;
    for (struct room *r = cy->rooms; r; r = r->next)
        room_leave(r);
    log_repeat_close(&cy->warnings, timer_closed);
    uv_timer_init(cy->loop, &cy->t_close);
    cy->t_close.data = cy;
    cy->t_close_ready = 1;
    cy->close_started_ms = uv_now(cy->loop);
    uv_timer_start(&cy->t_close, on_close_tick, 0, 20);
}

void cytube_free(struct cytube *cy)
{
    if (!cy)
        return;
    transport_free(cy->transport); /* finishes libwebsockets' teardown */
    while (cy->rooms) {
        struct room *r = cy->rooms;
        cy->rooms = r->next;
        room_free(r);
    }
    free(cy->ca_file);
    log_repeat_free(&cy->warnings);
    free(cy);
}

void cytube_set_backoff_store(struct cytube *cy, cytube_backoff_load_fn load, cytube_backoff_save_fn save, void *ctx)
{
    cy->backoff_load = load;
    cy->backoff_save = save;
    cy->backoff_ctx = ctx;
}

json_t *cytube_room_list(struct cytube *cy)
{
    json_t *a = json_array();
    for (struct room *r = cy->rooms; r && a; r = r->next)
        json_array_append_new(a, json_string(r->channel));
    return a;
}

json_t *cytube_room_snapshot(struct cytube *cy, const char *channel)
{
    struct room *r = room_find(cy, channel);
    return r ? room_snapshot(r) : NULL;
}
