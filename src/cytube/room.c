/* room: one room's state machine (see room_internal.h):
 *
 *   idle -> discovering -> waiting (server pacing) -> resolving -> connecting
 *        -> handshake (EIO open, SIO connect; held here until the plugins
 *        have started) -> joining (joinChannel, login delay) -> logging_in
 *        -> joined
 *   any failure -> backoff -> discovering ...;  bans and bad credentials -> stopped
 *
 * It drives the transport, feeds server events to the channel view and the
 * pacer, and publishes what happens on the bus. */
#include "cytube/room_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "core/event.h"
#include "core/event_json.h"
#include "core/log.h"
#include "cytube/discovery.h"

#define EVENT_NAME_MAX 64
#define MAX_EARLY_FRAMES 64      /* server frames held while a connected room waits to join */
#define RANK_WAIT_MS 5000        /* after a registered login, wait this long at most for the channel rank */

static const char *const STATE_NAMES[] = {
    "idle",       "discovering", "waiting", "resolving", "connecting", "handshake",
    "joining",    "logging_in",  "joined",  "backoff",   "stopped",    "closed",
};

static void room_connect(struct room *r);
static void room_lost(struct room *r, const char *why);

const char *room_state_name(enum room_state s) { return STATE_NAMES[s]; }

static uint64_t now_ms(struct room *r) { return uv_now(r->cy->loop); }

static int64_t unix_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static void set_state(struct room *r, enum room_state s)
{
    if (r->state == s)
        return;
    log_debug("cytube", "%s: %s -> %s", r->channel, STATE_NAMES[r->state], STATE_NAMES[s]);
    r->state = s;
}

static void set_error(struct room *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_error(struct room *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    va_end(ap);
}

static int valid_event_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!isalnum((unsigned char)s[n]) && s[n] != '_' && s[n] != '-')
            return 0;
    return n > 0 && n <= EVENT_NAME_MAX;
}

struct room *room_find(struct cytube *cy, const char *channel)
{
    if (!channel)
        return NULL;
    for (struct room *r = cy->rooms; r; r = r->next)
        if (strcasecmp(r->channel, channel) == 0)
            return r;
    return NULL;
}

void room_publish(struct room *r, const char *type, int prio, json_t *data, int replayed, int own)
{
    struct cytube *cy = r->cy;
    if (cy->closing || !cy->bus)
        return;
    /* The parsed value travels as it is: no text unless someone needs it. */
    struct event *ev = event_new_json(type, r->channel, prio, data);
    if (!ev)
        return;
    if (replayed)
        event_add_tag(ev, "replayed");
    if (own)
        event_add_tag(ev, "own");
    bus_publish(cy->bus, ev);
}

static void publish_status(struct room *r, const char *what)
{
    if (!r->cy->joining) {
        r->status_held = 1; /* no plugin listens yet: cytube_start_joining tells them */
        return;
    }
    json_t *d = json_pack("{s:s, s:s, s:s}", "channel", r->channel, "state", STATE_NAMES[r->state], "detail", what);
    room_publish(r, "cytube.room.status", EVENT_PRIO_HIGH, d, 0, 0);
    json_decref(d);
}

static int emit_event_ex(struct room *r, const char *name, const json_t *arg, int chat)
{
    size_t n;
    char *frame = sio_encode_event(name, arg, -1, &n);
    if (!frame)
        return -1;
    int rc = transport_send(&r->conn, frame, n, chat);
    free(frame);
    return rc;
}

int room_emit(struct room *r, const char *name, const json_t *arg) { return emit_event_ex(r, name, arg, 0); }

static void drop_socket(struct room *r) { transport_shut(&r->conn, 1); }
static void close_socket(struct room *r) { transport_shut(&r->conn, 0); }

static void free_early_frames(struct room *r)
{
    while (r->early_head) {
        struct early_frame *f = r->early_head;
        r->early_head = f->next;
        free(f);
    }
    r->early_tail = NULL;
    r->early_count = 0;
}

void room_reset_session(struct room *r)
{
    r->sio_connected = 0;
    free_early_frames(r);
    memset(&r->open, 0, sizeof r->open);
    transport_reset(&r->conn);
    r->kicked = r->replaying = r->userlist_seen = r->login_sent = r->logged_in = r->password_sent = 0;
    r->rank_wait = 0;
    r->kick_reason[0] = '\0';
    free(r->me);
    r->me = NULL;
    channel_clear(&r->ch);
    if (!r->username)
        channel_settle_rank(&r->ch); /* anonymous: -1 it is */
    pacer_new_session(&r->pacer);
    if (r->timers_ready) {
        uv_timer_stop(&r->t_ping);
        uv_timer_stop(&r->t_send);
    }
}

/* ------------------------------------------------------------ backoff */

static void save_backoff(struct room *r)
{
    struct cytube *cy = r->cy;
    if (cy->backoff_save)
        cy->backoff_save(r->channel, &r->backoff, cy->backoff_ctx);
}

static void on_retry(uv_timer_t *t)
{
    struct room *r = t->data;
    r->backoff.next_attempt_unix_ms = 0;
    save_backoff(r);
    room_connect(r);
}

/* `saved`: the wait is kept across restarts, to stop reconnect storms over
 * a crash loop; otherwise the store is told no wait is pending. */
static void wait_then_connect(struct room *r, uint64_t delay, int saved)
{
    set_state(r, RS_BACKOFF);
    r->next_attempt_ms = now_ms(r) + delay;
    r->backoff.next_attempt_unix_ms = saved ? unix_ms() + (int64_t)delay : 0;
    save_backoff(r);
    uv_timer_start(&r->t_stage, on_retry, delay, 0);
}

/* A failed attempt or a lost connection: wait 2 s, 4 s, ... up to the
 * maximum with ±25 % jitter; after reconnect_attempts failures in a row,
 * wait cooldown_minutes and start a new cycle. `at_least` raises the wait
 * (guest-login delay). */
static void schedule_reconnect(struct room *r, uint64_t at_least)
{
    struct cytube *cy = r->cy;
    if (cy->closing || r->state == RS_STOPPED)
        return;
    r->backoff.attempts++;
    double delay;
    if (r->backoff.attempts > r->reconnect_attempts) {
        delay = r->cooldown_minutes * 60000.0;
        log_warn("cytube", "%s: %d attempts failed; cooling down for %.1f min", r->channel,
                 r->backoff.attempts - 1, r->cooldown_minutes);
        r->backoff.attempts = 0;
    } else {
        delay = (double)cy->o.backoff_initial_ms * pow(2.0, r->backoff.attempts - 1);
        if (delay > (double)cy->o.backoff_max_ms)
            delay = (double)cy->o.backoff_max_ms;
        delay *= 0.75 + 0.5 * ((double)rand() / ((double)RAND_MAX + 1.0));
    }
    if (delay < (double)at_least)
        delay = (double)at_least;
    r->reconnects++;
    log_info("cytube", "%s: reconnecting in %.1f s (attempt %d)%s%s", r->channel, delay / 1000.0,
             r->backoff.attempts, r->last_error[0] ? ": " : "", r->last_error);
    wait_then_connect(r, (uint64_t)delay, 1);
    publish_status(r, r->last_error);
}

static void stop_room(struct room *r, const char *why)
{
    set_error(r, "%s", why);
    set_state(r, RS_STOPPED);
    log_error("cytube", "%s: stopped: %s", r->channel, why);
    if (r->timers_ready)
        uv_timer_stop(&r->t_stage);
    publish_status(r, why);
}

/* ------------------------------------------------------------ output */

static void flood_limits(struct room *r, struct pacer_limits *lim)
{
    channel_flood_limits(&r->ch, &lim->burst, &lim->sustained, &lim->cooldown_s);
}

static void on_send_timer(uv_timer_t *t) { room_pump(t->data); }

static void send_line(struct room *r, struct pacer_line *l, uint64_t now)
{
    json_t *arg = l->kind == PACER_PM ? json_pack("{s:s, s:s, s:{}}", "to", l->to, "msg", l->text, "meta")
                                      : json_pack("{s:s, s:{}}", "msg", l->text, "meta");
    if (!arg || emit_event_ex(r, l->kind == PACER_PM ? "pm" : "chatMsg", arg, 1) != 0) {
        r->lines_dropped++;
        json_decref(arg);
        pacer_line_free(l);
        return;
    }
    json_decref(arg);
    r->lines_sent++;
    pacer_sent(&r->pacer, l, now);
}

/* Sends what the pacer allows now and arms the timer for the rest. One paced
 * line at a time: the next is timed from when the previous one was written
 * (the server measures arrival, not our intent). */
void room_pump(struct room *r)
{
    if (r->state != RS_JOINED || !r->logged_in || !transport_has_socket(&r->conn))
        return;
    uint64_t now = now_ms(r);
    pacer_expire(&r->pacer, now);
    struct pacer_limits lim;
    flood_limits(r, &lim);
    while (r->conn.chat_unwritten == 0) {
        uint64_t wait;
        struct pacer_line *l = pacer_next(&r->pacer, &lim, now, &wait);
        if (!l) {
            if (wait > 0)
                uv_timer_start(&r->t_send, on_send_timer, wait, 0);
            return;
        }
        send_line(r, l, now);
    }
}

/* The server dropped a line (`cooldown`): slow down and send it again. */
static void on_cooldown(struct room *r)
{
    if (pacer_cooldown(&r->pacer, now_ms(r)) == PACER_GAVE_UP)
        log_warn("cytube", "%s: a line was refused by the flood limit %d times; dropped", r->channel,
                 PACER_MAX_RESENDS);
    log_warn("cytube", "%s: server flood limit hit (cooldown); slowing down x%.2f", r->channel, r->pacer.slow);
    if (r->timers_ready)
        uv_timer_stop(&r->t_send);
    room_pump(r);
}

/* ------------------------------------------------------------ session */

static int name_eq(const char *a, const char *b) { return a && b && strcasecmp(a, b) == 0; }

static int is_ban_reason(const char *reason)
{
    return strcmp(reason, "You are banned from this channel.") == 0 || strcmp(reason, "You're banned!") == 0 ||
           strncmp(reason, "Channel was banned", 18) == 0 || strcmp(reason, "Invalid channel name") == 0 ||
           strcmp(reason, "Channel deleted") == 0;
}

static void maybe_joined(struct room *r)
{
    if (r->state >= RS_JOINED || !r->userlist_seen)
        return;
    if (r->username && !r->logged_in)
        return;
    if (!r->ch.rank_settled)
        return; /* no pacing or permission check on the account's global rank */
    set_state(r, RS_JOINED);
    r->last_error[0] = '\0';
    r->backoff.attempts = 0;
    r->backoff.next_attempt_unix_ms = 0;
    save_backoff(r);
    uv_timer_stop(&r->t_stage);
    log_info("cytube", "%s: joined as %s (rank %g)", r->channel, r->me ? r->me : "(anonymous)", r->ch.rank);
    publish_status(r, "joined");
    room_pump(r);
}

static void on_login_timeout(uv_timer_t *t)
{
    struct room *r = t->data;
    set_error(r, "no answer to login within %ld ms", r->cy->o.connect_timeout_ms);
    log_warn("cytube", "%s: %s", r->channel, r->last_error);
    drop_socket(r);
}

static void send_login(uv_timer_t *t)
{
    struct room *r = t->data;
    if (!transport_has_socket(&r->conn) || !r->sio_connected || r->login_sent)
        return;
    json_t *arg = r->password && r->password[0] ? json_pack("{s:s, s:s}", "name", r->username, "pw", r->password)
                                                  : json_pack("{s:s}", "name", r->username);
    room_emit(r, "login", arg);
    json_decref(arg);
    r->login_sent = 1;
    set_state(r, RS_LOGGING_IN);
    uv_timer_start(&r->t_stage, on_login_timeout, (uint64_t)r->cy->o.connect_timeout_ms, 0);
}

static void on_rank_timeout(uv_timer_t *t)
{
    struct room *r = t->data;
    r->rank_wait = 0;
    log_warn("cytube", "%s: no channel rank from the server within %d ms of the login; going on with rank %g",
             r->channel, RANK_WAIT_MS, r->ch.rank);
    channel_settle_rank(&r->ch);
    maybe_joined(r);
}

/* A registered login: CyTube sends the account's global rank before the
 * login reply and the channel rank (from its database) after it; a guest's
 * rank 0 is final. */
static void settle_rank_after_login(struct room *r, int guest)
{
    if (guest) {
        channel_settle_rank(&r->ch);
        return;
    }
    r->rank_wait = 1;
    uv_timer_start(&r->t_stage, on_rank_timeout, RANK_WAIT_MS, 0);
}

static void on_rank(struct room *r)
{
    if (!r->rank_wait)
        return;
    r->rank_wait = 0;
    uv_timer_stop(&r->t_stage);
    channel_settle_rank(&r->ch);
    maybe_joined(r);
}

static void on_login_reply(struct room *r, json_t *arg)
{
    if (!r->login_sent)
        return; /* a cookie login at connect: we send none */
    if (json_is_true(json_object_get(arg, "success"))) {
        const char *name = json_string_value(json_object_get(arg, "name"));
        free(r->me);
        r->me = strdup(name ? name : r->username);
        r->logged_in = 1;
        uv_timer_stop(&r->t_stage);
        int guest = json_is_true(json_object_get(arg, "guest"));
        log_info("cytube", "%s: logged in as %s%s", r->channel, r->me, guest ? " (guest)" : "");
        settle_rank_after_login(r, guest);
        maybe_joined(r);
        return;
    }
    const char *err = json_string_value(json_object_get(arg, "error"));
    if (!err)
        err = "(no reason given)";
    int guest = !(r->password && r->password[0]);
    /* Time heals these two (guest delay, a ghost session holding the name);
     * everything else needs the operator. */
    if (guest && (strstr(err, "one per IP") || strstr(err, "already in use"))) {
        set_error(r, "guest login refused: %s", err);
        log_warn("cytube", "%s: %s; retrying in %ld s", r->channel, r->last_error, r->cy->o.guest_retry_ms / 1000);
        r->kicked = 2; /* reconnect no sooner than guest_retry_ms */
        close_socket(r);
        return;
    }
    char why[300];
    snprintf(why, sizeof why, "login as %s failed: %s", r->username, err);
    stop_room(r, why);
    close_socket(r);
}

static void publish_userlist(struct room *r, json_t *arg, int prio, int replayed)
{
    size_t n = json_array_size(arg), i;
    json_t *start = json_pack("{s:I}", "count", (json_int_t)n);
    room_publish(r, "cytube.event.userlist.start", prio, start, replayed, 0);
    json_decref(start);
    json_t *u;
    json_array_foreach(arg, i, u) {
        json_t *copy = json_is_object(u) ? json_deep_copy(u) : json_object();
        json_object_set_new(copy, "from_userlist", json_true());
        room_publish(r, "cytube.event.addUser", prio, copy, replayed, 0);
        json_decref(copy);
    }
    json_t *end = json_pack("{s:I}", "count", (json_int_t)n);
    room_publish(r, "cytube.event.userlist.end", prio, end, replayed, 0);
    json_decref(end);
}

static void on_need_password(struct room *r, json_t *arg)
{
    if (json_is_true(arg) || r->password_sent) {
        stop_room(r, "the channel password was refused (check channel_password)");
        close_socket(r);
    } else if (r->channel_password) {
        json_t *pw = json_string(r->channel_password);
        room_emit(r, "channelPassword", pw);
        json_decref(pw);
        r->password_sent = 1;
    } else {
        stop_room(r, "the channel needs a password (set channel_password)");
        close_socket(r);
    }
}

static void handle_event(struct room *r, const char *name, json_t *arg)
{
    r->events_in++;
    channel_apply(&r->ch, name, arg);

    int replayed = r->replaying;
    int own = 0;
    int chat = strcmp(name, "chatMsg") == 0 || strcmp(name, "pm") == 0;
    if (chat) {
        const char *who = json_string_value(json_object_get(arg, "username"));
        own = name_eq(who, r->me ? r->me : r->username);
        if (own && !replayed)
            pacer_echo(&r->pacer, name[0] == 'p' ? PACER_PM : PACER_CHAT, now_ms(r));
    }

    int prio = EVENT_PRIO_NORMAL;
    if (chat)
        prio = EVENT_PRIO_HIGH;
    else if (strcmp(name, "login") == 0 || strcmp(name, "kick") == 0 || strcmp(name, "errorMsg") == 0)
        prio = EVENT_PRIO_URGENT;

    char type[EVENT_NAME_MAX + 32];
    snprintf(type, sizeof type, "cytube.event.%s", name);
    room_publish(r, type, prio, arg, replayed, own);

    if (strcmp(name, "userlist") == 0) {
        publish_userlist(r, arg, prio, replayed);
        r->replaying = 0;
        r->userlist_seen = 1;
        maybe_joined(r);
    } else if (strcmp(name, "login") == 0) {
        on_login_reply(r, arg);
    } else if (strcmp(name, "rank") == 0 && json_is_number(arg)) {
        on_rank(r);
    } else if (strcmp(name, "kick") == 0) {
        const char *reason = json_string_value(json_object_get(arg, "reason"));
        snprintf(r->kick_reason, sizeof r->kick_reason, "%s", reason ? reason : "");
        r->kicked = 1;
        log_warn("cytube", "%s: kicked: %s", r->channel, reason && reason[0] ? reason : "(no reason)");
    } else if (strcmp(name, "cooldown") == 0) {
        on_cooldown(r);
    } else if (strcmp(name, "needPassword") == 0 && json_is_boolean(arg)) {
        on_need_password(r, arg);
    } else if (strcmp(name, "errorMsg") == 0) {
        const char *msg = json_string_value(json_object_get(arg, "msg"));
        log_warn("cytube", "%s: server error: %s", r->channel, msg ? msg : "?");
        if (msg && strstr(msg, "blocked anonymous users") && !r->username) {
            stop_room(r, "the channel refuses anonymous users (set username)");
            close_socket(r);
        }
    } else if (chat && own && !replayed) {
        room_pump(r);
    }
}

/* ------------------------------------------------------------ frames in */

static void on_ping_timeout(uv_timer_t *t)
{
    struct room *r = t->data;
    set_error(r, "the server went silent (no packet in %ld ms)", r->open.ping_interval_ms + r->open.ping_timeout_ms);
    log_warn("cytube", "%s: %s", r->channel, r->last_error);
    drop_socket(r);
}

static void arm_liveness(struct room *r)
{
    if (r->open.ping_interval_ms > 0)
        uv_timer_start(&r->t_ping, on_ping_timeout,
                       (uint64_t)(r->open.ping_interval_ms + r->open.ping_timeout_ms), 0);
}

static void join_channel(struct room *r)
{
    set_state(r, RS_JOINING);
    r->replaying = 1;
    json_t *arg = r->channel_password ? json_pack("{s:s, s:s}", "name", r->channel, "pw", r->channel_password)
                                      : json_pack("{s:s}", "name", r->channel);
    room_emit(r, "joinChannel", arg);
    json_decref(arg);
    if (r->channel_password)
        r->password_sent = 1;
    if (r->username)
        uv_timer_start(&r->t_stage, send_login, (uint64_t)r->cy->o.login_delay_ms, 0);
    else
        uv_timer_stop(&r->t_stage);
}

/* Connected (Socket.IO `40`). Rooms connect while the plugins are still
 * starting; joinChannel, which makes the server send the channel's state and
 * userlist, waits for them (cytube_start_joining), and so does whatever the
 * server sends meanwhile (held in order, see hold_early_frame). The session
 * timeout does not run while we wait for our own start-up. */
static void on_connected_ns(struct room *r)
{
    r->sio_connected = 1;
    if (r->cy->joining) {
        join_channel(r);
        return;
    }
    uv_timer_stop(&r->t_stage);
    log_debug("cytube", "%s: connected; joining once the plugins have started", r->channel);
}

static void hold_early_frame(struct room *r, const char *data, size_t len)
{
    struct early_frame *f = r->early_count < MAX_EARLY_FRAMES ? malloc(sizeof *f + len + 1) : NULL;
    if (!f) {
        r->bad_frames++;
        log_repeat(&r->cy->warnings, NULL, "%s: dropped a frame that came before joining (%d held)", r->channel,
                   r->early_count);
        return;
    }
    f->next = NULL;
    f->len = len;
    memcpy(f->data, data, len);
    f->data[len] = '\0';
    if (r->early_tail)
        r->early_tail->next = f;
    else
        r->early_head = f;
    r->early_tail = f;
    r->early_count++;
}

static void handle_sio(struct room *r, const struct sio_packet *p)
{
    switch (p->type) {
    case SIO_CONNECT:
        if (!r->sio_connected)
            on_connected_ns(r);
        break;
    case SIO_DISCONNECT:
        /* CyTube leaves the WebSocket open after a kick: close it ourselves. */
        if (!r->kicked)
            set_error(r, "the server ended the session");
        close_socket(r);
        break;
    case SIO_CONNECT_ERROR: {
        const char *msg = json_is_string(p->data) ? json_string_value(p->data)
                                                  : json_string_value(json_object_get(p->data, "message"));
        set_error(r, "connection refused by the server: %s", msg ? msg : "?");
        log_warn("cytube", "%s: %s", r->channel, r->last_error);
        close_socket(r);
        break;
    }
    case SIO_EVENT: {
        const char *name = sio_event_name(p);
        if (!r->sio_connected || !name || !valid_event_name(name)) {
            r->bad_frames++;
            break;
        }
        handle_event(r, name, sio_event_arg(p));
        break;
    }
    default:
        break; /* acks: CyTube only answers newPoll, which we send without one */
    }
}

static void handle_frame(struct room *r, const char *data, size_t len)
{
    char err[SIO_ERR_SIZE];
    enum eio_type type;
    const char *pl;
    size_t pn;
    arm_liveness(r);
    if (eio_decode(data, len, &type, &pl, &pn, err) != 0) {
        r->bad_frames++;
        log_repeat(&r->cy->warnings, NULL, "%s: ignoring a bad frame: %s", r->channel, err);
        return;
    }
    switch (type) {
    case EIO_OPEN:
        if (r->open.ping_interval_ms > 0) { /* only the first one counts */
            r->bad_frames++;
            return;
        }
        if (eio_parse_open(pl, pn, &r->open, err) != 0) {
            r->bad_frames++;
            set_error(r, "bad Engine.IO open packet: %s", err);
            log_warn("cytube", "%s: %s", r->channel, r->last_error);
            drop_socket(r);
            return;
        }
        arm_liveness(r);
        transport_send(&r->conn, SIO_FRAME_CONNECT, 2, 0);
        return;
    case EIO_PING:
        transport_send(&r->conn, EIO_FRAME_PONG, 1, 0);
        return;
    case EIO_CLOSE:
        set_error(r, "the server closed the Engine.IO session");
        drop_socket(r);
        return;
    case EIO_MESSAGE:
        break;
    default:
        return; /* pong, upgrade, noop: nothing to do */
    }
    if (r->sio_connected && !r->cy->joining) {
        hold_early_frame(r, data, len); /* Engine.IO pings above are still answered */
        return;
    }
    struct sio_packet p;
    if (sio_decode(pl, pn, &p, err) != 0) {
        r->bad_frames++;
        log_repeat(&r->cy->warnings, NULL, "%s: ignoring a bad Socket.IO packet: %s", r->channel, err);
        return;
    }
    if (strcmp(p.nsp, "/") == 0)
        handle_sio(r, &p);
    sio_packet_clear(&p);
}

/* ------------------------------------------------------------ transport events */

static void on_tr_connecting(void *ctx)
{
    struct room *r = ctx;
    set_state(r, RS_CONNECTING);
    r->connects++;
}

static void on_tr_established(void *ctx)
{
    struct room *r = ctx;
    set_state(r, RS_HANDSHAKE);
    r->connected_since_ms = now_ms(r);
    log_debug("cytube", "%s: WebSocket open to %s:%d", r->channel, r->conn.host, r->conn.port);
}

static void on_tr_frame(void *ctx, const char *data, size_t len) { handle_frame(ctx, data, len); }

static void on_tr_chat_written(void *ctx)
{
    struct room *r = ctx;
    uv_update_time(r->cy->loop);
    pacer_written(&r->pacer, now_ms(r));
    room_pump(r);
}

static void on_tr_trouble(void *ctx, const char *why)
{
    struct room *r = ctx;
    set_error(r, "%s", why);
    log_warn("cytube", "%s: %s", r->channel, r->last_error);
}

static void on_tr_failed(void *ctx, const char *why)
{
    struct room *r = ctx;
    set_error(r, "%s", why);
    room_lost(r, r->last_error);
}

static void on_tr_lost(void *ctx, const char *why)
{
    struct room *r = ctx;
    room_lost(r, why ? why : r->last_error[0] ? r->last_error : "the connection closed");
}

static void on_tr_unusable(void *ctx, const char *why) { stop_room(ctx, why); }

const struct transport_events room_transport_events = {
    on_tr_connecting, on_tr_established, on_tr_frame, on_tr_chat_written,
    on_tr_trouble,    on_tr_failed,      on_tr_lost,  on_tr_unusable,
};

/* ------------------------------------------------------------ connecting */

static void on_stage_timeout(uv_timer_t *t)
{
    struct room *r = t->data;
    set_error(r, "no session within %ld ms (state %s)", r->cy->o.connect_timeout_ms, STATE_NAMES[r->state]);
    log_warn("cytube", "%s: %s", r->channel, r->last_error);
    if (transport_has_socket(&r->conn))
        drop_socket(r);
    else
        room_lost(r, r->last_error);
}

static void on_slot_wait(uv_timer_t *t);

static void acquire_slot_then_connect(struct room *r)
{
    struct cytube *cy = r->cy;
    uint64_t wait = transport_slot_wait(cy->transport, r->conn.host, r->conn.port);
    if (wait > 0) {
        set_state(r, RS_WAITING);
        log_info("cytube", "%s: pacing connections to %s:%d: waiting %.1f s", r->channel, r->conn.host, r->conn.port,
                 (double)wait / 1000);
        uv_timer_start(&r->t_stage, on_slot_wait, wait, 0);
        return;
    }
    uv_timer_start(&r->t_stage, on_stage_timeout, (uint64_t)cy->o.connect_timeout_ms, 0);
    set_state(r, RS_RESOLVING);
    transport_open(&r->conn);
}

static void on_slot_wait(uv_timer_t *t) { acquire_slot_then_connect(t->data); }

/* Discovery that ran ahead of the saved backoff state (cytube_prepare) stops
 * here with its outcome; cytube_connect_all goes on from it. Returns 1 then. */
static int ahead_hold(struct room *r, int outcome)
{
    if (r->cy->backoff_known || r->ahead != AHEAD_RUNNING)
        return 0;
    r->ahead = outcome;
    return 1;
}

static void discovery_failed(struct room *r)
{
    if (!ahead_hold(r, AHEAD_FAILED))
        room_lost(r, r->last_error);
}

/* The server to use from a socketconfig answer: the first secure one, else
 * the first plain one; none when TLS is not set up and all are secure. */
static const char *pick_server(json_t *answer, int tls)
{
    const char *pick = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(json_object_get(answer, "servers"), i, s) {
        const char *url = json_string_value(json_object_get(s, "url"));
        if (!url || json_is_true(json_object_get(s, "ipv6")))
            continue;
        /* Without TLS set up (no https room), only plain entries will do. */
        int secure = json_is_true(json_object_get(s, "secure")) || strncasecmp(url, "https:", 6) == 0;
        if (secure && !tls)
            continue;
        if (!pick)
            pick = url;
        if (secure)
            return url;
    }
    return pick;
}

static void on_discovery(long status, const char *body, size_t len, const char *error, void *ctx)
{
    struct room *r = ctx;
    r->discovery = NULL;
    if (error) {
        set_error(r, "discovery failed: %s", error);
        discovery_failed(r);
        return;
    }
    json_error_t jerr;
    json_t *v = json_loadb(body, len, 0, &jerr);
    if (status != 200) {
        const char *msg = json_string_value(json_object_get(v, "error"));
        set_error(r, "discovery: HTTP %ld%s%s%s", status, status == 404 ? " (the server does not know this channel name)" : "",
                  msg ? ": " : "", msg ? msg : "");
        json_decref(v);
        discovery_failed(r);
        return;
    }
    int tls = transport_tls(r->cy->transport);
    const char *pick = pick_server(v, tls);
    if (!v || !pick || transport_set_target(&r->conn, pick) != 0) {
        set_error(r, "discovery: %s", !v ? "the answer is not JSON"
                                      : !tls ? "no plain ws:// server in the answer (use an https:// server "
                                               "URL for TLS)"
                                             : "no usable server in the answer");
        json_decref(v);
        discovery_failed(r);
        return;
    }
    json_decref(v);
    log_debug("cytube", "%s: discovered %s://%s:%d%s", r->channel, r->conn.tls ? "wss" : "ws", r->conn.host,
              r->conn.port, r->conn.path);
    if (ahead_hold(r, AHEAD_DONE))
        return;
    acquire_slot_then_connect(r);
}

static void room_connect(struct room *r)
{
    struct cytube *cy = r->cy;
    if (cy->closing || r->state == RS_STOPPED)
        return;
    room_reset_session(r);
    set_state(r, RS_DISCOVERING);
    char url[600];
    size_t sl = strlen(r->server);
    snprintf(url, sizeof url, "%.*s/socketconfig/%s.json", (int)(sl > 0 && r->server[sl - 1] == '/' ? sl - 1 : sl),
             r->server, r->channel);
    r->discovery = http_get(transport_http(cy->transport), url, cy->o.connect_timeout_ms, 64 * 1024, on_discovery, r);
    if (!r->discovery) {
        set_error(r, "cannot start discovery (%s)", url);
        if (!ahead_hold(r, AHEAD_FAILED))
            schedule_reconnect(r, 0);
    }
}

/* The connection is gone (or never came): decide what happens next. */
static void room_lost(struct room *r, const char *why)
{
    struct cytube *cy = r->cy;
    /* A stage timeout can strike while discovery or a lookup is in flight:
     * cancel them so a late answer cannot start a second connection. */
    if (r->discovery) {
        http_cancel(r->discovery);
        r->discovery = NULL;
    }
    transport_cancel_lookup(&r->conn);
    transport_detach(&r->conn);
    free_early_frames(r);
    int was_joined = r->state == RS_JOINED;
    if (why != r->last_error && (!r->last_error[0] || r->state >= RS_JOINED))
        set_error(r, "%s", why);
    if (r->timers_ready) {
        uv_timer_stop(&r->t_ping);
        uv_timer_stop(&r->t_send);
        uv_timer_stop(&r->t_stage);
    }
    pacer_clear(&r->pacer, 1);
    if (cy->closing) {
        set_state(r, RS_CLOSED);
        return;
    }
    if (was_joined)
        log_warn("cytube", "%s: disconnected: %s", r->channel, r->last_error);
    if (r->state == RS_STOPPED)
        return;
    if (r->kicked == 1) {
        if (strcmp(r->kick_reason, "Duplicate login") == 0) {
            set_error(r, "kicked: Duplicate login (another session uses this account); backing off");
            log_error("cytube", "%s: %s for %ld s", r->channel, r->last_error, cy->o.duplicate_login_backoff_ms / 1000);
            r->reconnects++;
            /* Not saved: the kick was about another session holding the
             * account, and a process started later is meant to take over. */
            wait_then_connect(r, (uint64_t)cy->o.duplicate_login_backoff_ms, 0);
            publish_status(r, r->last_error);
            return;
        }
        if (is_ban_reason(r->kick_reason)) {
            char stop_why[400];
            snprintf(stop_why, sizeof stop_why, "kicked for good: %s", r->kick_reason);
            stop_room(r, stop_why);
            return;
        }
        set_error(r, "kicked: %s", r->kick_reason[0] ? r->kick_reason : "(no reason)");
    }
    schedule_reconnect(r, r->kicked == 2 ? (uint64_t)cy->o.guest_retry_ms : 0);
}

/* ------------------------------------------------------------ lifecycle */

void room_init_timers(struct room *r)
{
    if (r->timers_ready)
        return;
    uv_timer_init(r->cy->loop, &r->t_stage);
    uv_timer_init(r->cy->loop, &r->t_ping);
    uv_timer_init(r->cy->loop, &r->t_send);
    r->t_stage.data = r->t_ping.data = r->t_send.data = r;
    r->timers_ready = 1;
}

void room_start_ahead(struct room *r)
{
    room_init_timers(r);
    r->ahead = AHEAD_RUNNING;
    room_connect(r);
}

void room_start(struct room *r)
{
    struct cytube *cy = r->cy;
    room_init_timers(r);
    int ahead = r->ahead;
    r->ahead = AHEAD_NONE;
    if (cy->backoff_load && cy->backoff_load(r->channel, &r->backoff, cy->backoff_ctx) == 0 &&
        r->backoff.next_attempt_unix_ms > unix_ms()) {
        if (r->discovery) {
            http_cancel(r->discovery);
            r->discovery = NULL;
        }
        uint64_t wait = (uint64_t)(r->backoff.next_attempt_unix_ms - unix_ms());
        log_info("cytube", "%s: backing off for %.1f s more (saved state; `daz -reset-backoff %s` clears it)",
                 r->channel, (double)wait / 1000, r->channel);
        wait_then_connect(r, wait, 1);
        return;
    }
    if (ahead == AHEAD_RUNNING)
        return; /* on_discovery goes on by itself */
    if (ahead == AHEAD_DONE)
        acquire_slot_then_connect(r);
    else if (ahead == AHEAD_FAILED)
        room_lost(r, r->last_error);
    else
        room_connect(r);
}

void room_start_joining(struct room *r)
{
    if (r->status_held) {
        r->status_held = 0;
        publish_status(r, r->last_error);
    }
    if (!r->sio_connected || !transport_is_open(&r->conn) || r->state != RS_HANDSHAKE)
        return;
    /* joinChannel first: what the server sent before it is tagged as if it
     * had come after, as it did when rooms connected only now. */
    join_channel(r);
    while (r->early_head && transport_has_socket(&r->conn)) {
        struct early_frame *f = r->early_head;
        r->early_head = f->next;
        if (!r->early_head)
            r->early_tail = NULL;
        r->early_count--;
        handle_frame(r, f->data, f->len);
        free(f);
    }
}
