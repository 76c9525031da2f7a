/* cytube: see cytube.h. One room is a small state machine:
 *
 *   idle -> discovering -> waiting (server pacing) -> resolving -> connecting
 *        -> handshake (EIO open, SIO connect; held here until the plugins
 *        have started) -> joining (joinChannel, login delay) -> logging_in
 *        -> joined
 *   any failure -> backoff -> discovering ...;  bans and bad credentials -> stopped
 *
 * Everything runs on the libuv loop: libwebsockets uses it as a foreign
 * loop, discovery goes through http_client, name lookups through
 * uv_getaddrinfo (lws 4.1 here has no async DNS of its own). */
#include "cytube/rooms.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <libwebsockets.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/event.h"
#include "core/event_json.h"
#include "cytube/discovery.h"
#include "core/log.h"
#include "cytube/socketio.h"

#define FRAME_LIMIT (1 << 20)    /* CyTube's maxPayload: larger frames are refused */
#define MAX_SPLIT_LINES 64       /* one plugin message makes at most this many lines */
#define INFLIGHT_MAX 64          /* chat lines awaiting their echo */
#define INFLIGHT_TTL_MS 10000
#define MAX_RESENDS 5
#define ECHO_WAIT_MS 1500        /* past the burst, wait this long at most for a line's echo */
#define EVENT_NAME_MAX 64
#define WSI_CONNECTING ((struct lws *)1) /* r->wsi while lws_client_connect_via_info runs */
#define MAX_EARLY_FRAMES 64      /* server frames held while a connected room waits to join */

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

static const char *const STATE_NAMES[] = {
    "idle",       "discovering", "waiting", "resolving", "connecting", "handshake",
    "joining",    "logging_in",  "joined",  "backoff",   "stopped",    "closed",
};

enum out_kind { OUT_CHAT, OUT_PM };

struct outmsg {
    struct outmsg *next;
    enum out_kind kind;
    int cost;       /* flood-limiter hits on the server (2 for /me, /sp ...) */
    int track;      /* expects an echo (plain chat, pm) */
    int tries;
    uint64_t seq;   /* queue order; a re-sent line goes back to its place */
    uint64_t sent_ms;
    char *to;
    char *text;
};

struct frame {
    struct frame *next;
    size_t len;
    int chat; /* counts against the flood limit: timed when written */
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the frame */
};

/* A frame that arrived before the room could join (cytube_start_joining). */
struct early_frame {
    struct early_frame *next;
    size_t len;
    char data[]; /* NUL-terminated */
};

struct server_slot {
    struct server_slot *next;
    char key[300];  /* host:port */
    double tokens;
    uint64_t refilled_ms;
};

struct cytube;

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
    uv_getaddrinfo_t *resolving;
    struct lws *wsi;
    int tls;
    char host[256], path[256], address[64];
    int port;
    struct eio_open open;
    int sio_connected, want_close, want_kill;
    char *rx;
    size_t rx_len, rx_cap;
    struct frame *tx_head, *tx_tail;
    size_t tx_count;
    int chat_unwritten; /* paced lines queued but not yet on the wire */
    struct early_frame *early_head, *early_tail;
    int early_count;
    int status_held;    /* a status change happened before the plugins listened */
    int ahead;          /* discovery ahead of the backoff state: AHEAD_* */

    /* session */
    char kick_reason[300];
    int kicked, replaying, userlist_seen, login_sent, logged_in, password_sent;
    char *me;
    double rank;
    json_t *permissions, *options, *users, *media;
    int playlist_locked;
    long usercount;
    char *leader;
    json_t *current_uid;

    /* output */
    struct outmsg *out_head, *out_tail;
    int out_len;
    uint64_t out_seq;
    struct outmsg *inflight[INFLIGHT_MAX];
    int inflight_len;
    double flood_count;
    uint64_t flood_last_ms;
    double slow;
    uint64_t slow_until_ms;
    uint64_t echo_wait_seq;   /* last tracked line sent, until its echo arrives */
    uint64_t echo_wait_since;

    /* backoff */
    struct cytube_backoff_state backoff;
    uint64_t next_attempt_ms; /* loop time */
    uint64_t connected_since_ms;

    /* counters */
    uint64_t events_in, bad_frames, lines_sent, lines_dropped, cooldowns, resent, reconnects, connects;
};

struct cytube {
    uv_loop_t *loop;
    struct bus *bus;
    struct cytube_options o;
    struct room *rooms;
    int room_count;
    struct lws_context *lws;
    struct http_client *http;
    struct server_slot *slots;
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
    int lws_tls;          /* the lws context was made with TLS (some room is https) */
    int joining;          /* rooms may join: every plugin has started (cytube_start_joining) */
    int backoff_known;    /* the saved backoff state is loaded: rooms may connect (cytube_connect_all) */
};

static void room_connect(struct room *r);
static void room_lost(struct room *r, const char *why);
static void pump(struct room *r);

/* ------------------------------------------------------------ helpers */

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

static void publish_json(struct room *r, const char *type, int prio, json_t *data, int replayed, int own)
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
    publish_json(r, "cytube.room.status", EVENT_PRIO_HIGH, d, 0, 0);
    json_decref(d);
}

/* ------------------------------------------------------------ frames out */

static int queue_frame_ex(struct room *r, const char *data, size_t len, int chat)
{
    struct frame *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f)
        return -1;
    f->next = NULL;
    f->len = len;
    f->chat = chat;
    r->chat_unwritten += chat;
    memcpy(f->buf + LWS_PRE, data, len);
    if (r->tx_tail)
        r->tx_tail->next = f;
    else
        r->tx_head = f;
    r->tx_tail = f;
    r->tx_count++;
    if (r->wsi)
        lws_callback_on_writable(r->wsi);
    return 0;
}

static int queue_frame(struct room *r, const char *data, size_t len) { return queue_frame_ex(r, data, len, 0); }

static int emit_event_ex(struct room *r, const char *name, const json_t *arg, int chat)
{
    size_t n;
    char *frame = sio_encode_event(name, arg, -1, &n);
    if (!frame)
        return -1;
    int rc = queue_frame_ex(r, frame, n, chat);
    free(frame);
    return rc;
}

static int emit_event(struct room *r, const char *name, const json_t *arg) { return emit_event_ex(r, name, arg, 0); }

static void free_frames(struct room *r)
{
    while (r->tx_head) {
        struct frame *f = r->tx_head;
        r->tx_head = f->next;
        free(f);
    }
    r->tx_tail = NULL;
    r->tx_count = 0;
    r->chat_unwritten = 0;
}

static void outmsg_free(struct outmsg *m)
{
    if (!m)
        return;
    free(m->to);
    free(m->text);
    free(m);
}

static void clear_output(struct room *r, int count_as_dropped)
{
    while (r->out_head) {
        struct outmsg *m = r->out_head;
        r->out_head = m->next;
        outmsg_free(m);
        if (count_as_dropped)
            r->lines_dropped++;
    }
    r->out_tail = NULL;
    r->out_len = 0;
    for (int i = 0; i < r->inflight_len; i++)
        outmsg_free(r->inflight[i]);
    r->inflight_len = 0;
}

/* Close at the next writable turn (lws 4.1's LWS_TO_KILL_ASYNC did not
 * close on the libuv loop): `kill` drops the socket without a goodbye,
 * otherwise what is queued (e.g. a final "41") is written first. The timeout
 * is a backstop for a socket that never becomes writable; the lws close
 * callback does the rest. */
static void close_later(struct room *r, int kill)
{
    if (!r->wsi || r->wsi == WSI_CONNECTING)
        return;
    if (kill)
        r->want_kill = 1;
    else
        r->want_close = 1;
    lws_callback_on_writable(r->wsi);
    lws_set_timeout(r->wsi, PENDING_TIMEOUT_CLOSE_SEND, kill ? 3 : 2);
}

static void drop_socket(struct room *r) { close_later(r, 1); }
static void close_socket(struct room *r) { close_later(r, 0); }

/* ------------------------------------------------------------ session reset */

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

static void reset_session(struct room *r)
{
    r->sio_connected = r->want_close = r->want_kill = 0;
    free_early_frames(r);
    memset(&r->open, 0, sizeof r->open);
    r->rx_len = 0;
    free_frames(r);
    r->kicked = r->replaying = r->userlist_seen = r->login_sent = r->logged_in = r->password_sent = 0;
    r->kick_reason[0] = '\0';
    free(r->me);
    r->me = NULL;
    r->rank = -1;
    json_decref(r->permissions);
    json_decref(r->options);
    json_decref(r->users);
    json_decref(r->media);
    json_decref(r->current_uid);
    r->permissions = r->options = r->users = r->media = r->current_uid = NULL;
    r->playlist_locked = 1;
    r->usercount = 0;
    free(r->leader);
    r->leader = NULL;
    r->flood_count = 0;
    r->flood_last_ms = 0;
    r->echo_wait_seq = 0;
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

static void wait_then_connect(struct room *r, uint64_t delay)
{
    set_state(r, RS_BACKOFF);
    r->next_attempt_ms = now_ms(r) + delay;
    r->backoff.next_attempt_unix_ms = unix_ms() + (int64_t)delay;
    save_backoff(r);
    uv_timer_start(&r->t_stage, on_retry, delay, 0);
}

/* A failed attempt or a lost connection: wait 2 s, 4 s, ... up to the
 * maximum with ±25 % jitter; after reconnect_attempts failures in a row,
 * wait cooldown_minutes and start a new cycle. `at_least` raises the wait
 * (guest-login delay, Duplicate login). */
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
    wait_then_connect(r, (uint64_t)delay);
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

/* ------------------------------------------------------------ pacing */

static void flood_params(struct room *r, double *burst, double *sustained, double *cooldown_s)
{
    *burst = 20, *sustained = 10, *cooldown_s = 2;
    json_t *af = json_object_get(r->options, "chat_antiflood");
    if (json_is_true(af) && r->rank < 2) {
        json_t *p = json_object_get(r->options, "chat_antiflood_params");
        json_t *b = json_object_get(p, "burst"), *s = json_object_get(p, "sustained"), *c = json_object_get(p, "cooldown");
        if (json_is_number(b))
            *burst = json_number_value(b);
        if (json_is_number(s) && json_number_value(s) > 0)
            *sustained = json_number_value(s);
        *cooldown_s = json_is_number(c) ? json_number_value(c) : *burst / *sustained;
    }
}

/* How long until a message costing `cost` limiter hits may go (0: now).
 * This mirrors CyTube's limiter (burst back to back, then 1/sustained per
 * message since the last accepted one, reset after `cooldown` s of quiet)
 * with margins: two fewer in a burst, 25 % + 80 ms more between messages,
 * 500 ms more before assuming a reset. Past the burst, the gap is counted
 * from the echo of the previous line (so it starts after the server took
 * that line, whatever delays it had), or from its write when it has no
 * echo. */
static uint64_t pacer_wait(struct room *r, uint64_t now, int cost, int *reset)
{
    double burst, sustained, cooldown_s;
    flood_params(r, &burst, &sustained, &cooldown_s);
    if (r->slow > 1 && now > r->slow_until_ms)
        r->slow = 1;
    double eff_burst = floor(burst) - 2 < 1 ? 1 : floor(burst) - 2;
    double interval = 1000.0 / sustained * 1.25 * r->slow + 80;
    double reset_after = cooldown_s * 1000.0 * r->slow + 500;
    *reset = 0;
    if (r->flood_last_ms == 0 || (double)(now - r->flood_last_ms) > reset_after) {
        *reset = 1;
        return 0;
    }
    double since = (double)(now - r->flood_last_ms);
    if (cost <= 1) {
        if (r->flood_count < eff_burst)
            return 0;
        if (r->echo_wait_seq && now - r->echo_wait_since < ECHO_WAIT_MS)
            return ECHO_WAIT_MS - (now - r->echo_wait_since); /* the echo pumps sooner */
        if (since >= interval)
            return 0;
        return (uint64_t)ceil(interval - since);
    }
    if (r->flood_count + cost <= eff_burst)
        return 0;
    return (uint64_t)ceil(reset_after - since) + 1;
}

static void on_send_timer(uv_timer_t *t) { pump(t->data); }

static void inflight_push(struct room *r, struct outmsg *m)
{
    if (r->inflight_len == INFLIGHT_MAX) {
        outmsg_free(r->inflight[0]);
        memmove(r->inflight, r->inflight + 1, sizeof r->inflight[0] * (INFLIGHT_MAX - 1));
        r->inflight_len--;
    }
    r->inflight[r->inflight_len++] = m;
}

static void inflight_expire(struct room *r, uint64_t now)
{
    int k = 0;
    for (int i = 0; i < r->inflight_len; i++) {
        if (now - r->inflight[i]->sent_ms > INFLIGHT_TTL_MS)
            outmsg_free(r->inflight[i]);
        else
            r->inflight[k++] = r->inflight[i];
    }
    r->inflight_len = k;
}

/* Our own echo arrived: the oldest line of that kind was accepted. */
static void inflight_ack(struct room *r, enum out_kind kind)
{
    for (int i = 0; i < r->inflight_len; i++) {
        if (r->inflight[i]->kind == kind) {
            if (r->inflight[i]->seq == r->echo_wait_seq) {
                r->echo_wait_seq = 0;
                r->flood_last_ms = now_ms(r); /* the server took it no later than now */
            }
            outmsg_free(r->inflight[i]);
            memmove(r->inflight + i, r->inflight + i + 1, sizeof r->inflight[0] * (size_t)(r->inflight_len - i - 1));
            r->inflight_len--;
            return;
        }
    }
}

static void send_outmsg(struct room *r, struct outmsg *m)
{
    json_t *arg = m->kind == OUT_PM ? json_pack("{s:s, s:s, s:{}}", "to", m->to, "msg", m->text, "meta")
                                     : json_pack("{s:s, s:{}}", "msg", m->text, "meta");
    if (!arg || emit_event_ex(r, m->kind == OUT_PM ? "pm" : "chatMsg", arg, 1) != 0) {
        r->lines_dropped++;
        json_decref(arg);
        outmsg_free(m);
        return;
    }
    json_decref(arg);
    r->lines_sent++;
    m->sent_ms = now_ms(r);
    if (m->track) {
        r->echo_wait_seq = m->seq;
        r->echo_wait_since = m->sent_ms;
        inflight_push(r, m);
    }
    else
        outmsg_free(m);
}

/* Sends what the pacer allows now and arms the timer for the rest. */
static void pump(struct room *r)
{
    if (r->state != RS_JOINED || !r->logged_in || !r->wsi)
        return;
    uint64_t now = now_ms(r);
    inflight_expire(r, now);
    /* One paced line at a time: the next is timed from when the previous one
     * was written (the server measures arrival, not our intent). */
    while (r->out_head && r->chat_unwritten == 0) {
        struct outmsg *m = r->out_head;
        int reset;
        uint64_t wait = pacer_wait(r, now, m->cost, &reset);
        if (wait > 0) {
            uv_timer_start(&r->t_send, on_send_timer, wait, 0);
            return;
        }
        r->flood_count = reset ? m->cost : r->flood_count + m->cost;
        r->flood_last_ms = now;
        r->out_head = m->next;
        if (!r->out_head)
            r->out_tail = NULL;
        r->out_len--;
        m->next = NULL;
        send_outmsg(r, m);
    }
}

static int enqueue_line(struct room *r, enum out_kind kind, const char *to, char *text_take, int cost, int track,
                        int front)
{
    struct cytube *cy = r->cy;
    if (!front && r->out_len >= cy->o.outbound_queue_size) {
        r->lines_dropped++;
        free(text_take);
        return -1;
    }
    struct outmsg *m = calloc(1, sizeof *m);
    if (!m) {
        free(text_take);
        return -1;
    }
    m->kind = kind;
    m->cost = cost;
    m->track = track;
    m->text = text_take;
    m->to = to ? strdup(to) : NULL;
    m->seq = ++r->out_seq;
    if (front) {
        m->next = r->out_head;
        r->out_head = m;
        if (!r->out_tail)
            r->out_tail = m;
    } else {
        if (r->out_tail)
            r->out_tail->next = m;
        else
            r->out_head = m;
        r->out_tail = m;
    }
    r->out_len++;
    return 0;
}

/* The server dropped a line (`cooldown`): slow down and send it again. */
static void on_cooldown(struct room *r)
{
    uint64_t now = now_ms(r);
    r->cooldowns++;
    r->slow = r->slow < 1 ? 1.5 : (r->slow * 1.5 > 4 ? 4 : r->slow * 1.5);
    r->slow_until_ms = now + 60000;
    r->flood_count = 1e9; /* assume the burst is spent */
    r->flood_last_ms = now;
    r->echo_wait_seq = 0; /* the server has answered */
    inflight_expire(r, now);
    if (r->inflight_len > 0) {
        struct outmsg *m = r->inflight[0];
        memmove(r->inflight, r->inflight + 1, sizeof r->inflight[0] * (size_t)(r->inflight_len - 1));
        r->inflight_len--;
        if (++m->tries > MAX_RESENDS) {
            log_warn("cytube", "%s: a line was refused by the flood limit %d times; dropped", r->channel, MAX_RESENDS);
            r->lines_dropped++;
            outmsg_free(m);
        } else {
            r->resent++;
            /* back into the queue at its original place, before later lines */
            struct outmsg **at = &r->out_head;
            while (*at && (*at)->seq < m->seq)
                at = &(*at)->next;
            m->next = *at;
            *at = m;
            if (!m->next)
                r->out_tail = m;
            r->out_len++;
        }
    }
    log_warn("cytube", "%s: server flood limit hit (cooldown); slowing down x%.2f", r->channel, r->slow);
    if (r->timers_ready)
        uv_timer_stop(&r->t_send);
    pump(r);
}

/* ------------------------------------------------------------ state from events */

static int name_eq(const char *a, const char *b) { return a && b && strcasecmp(a, b) == 0; }

static json_t *user_entry(struct room *r, const char *name)
{
    if (!r->users || !name)
        return NULL;
    const char *key;
    json_t *v;
    json_object_foreach(r->users, key, v) {
        if (strcasecmp(key, name) == 0)
            return v;
    }
    return NULL;
}

static void users_put(struct room *r, json_t *u)
{
    json_t *name = json_object_get(u, "name");
    if (!json_is_string(name))
        return;
    if (!r->users)
        r->users = json_object();
    json_t *old = user_entry(r, json_string_value(name));
    if (old) {
        json_t *oldname = json_object_get(old, "name");
        if (json_is_string(oldname)) {
            char *k = strdup(json_string_value(oldname));
            if (k) {
                json_object_del(r->users, k);
                free(k);
            }
        }
    }
    json_object_set_new(r->users, json_string_value(name), json_deep_copy(u));
}

static void on_login_reply(struct room *r, json_t *arg);

/* Updates the room from a server event; returns 1 when the event ends the
 * replay of history (the first userlist after joining). */
static void track_state(struct room *r, const char *name, json_t *arg)
{
    if (strcmp(name, "rank") == 0 && json_is_number(arg)) {
        r->rank = json_number_value(arg);
    } else if (strcmp(name, "setPermissions") == 0 && json_is_object(arg)) {
        json_decref(r->permissions);
        r->permissions = json_deep_copy(arg);
    } else if (strcmp(name, "channelOpts") == 0 && json_is_object(arg)) {
        json_decref(r->options);
        r->options = json_deep_copy(arg);
    } else if (strcmp(name, "setPlaylistLocked") == 0) {
        r->playlist_locked = json_is_true(arg);
    } else if (strcmp(name, "userlist") == 0 && json_is_array(arg)) {
        json_decref(r->users);
        r->users = json_object();
        size_t i;
        json_t *u;
        json_array_foreach(arg, i, u) users_put(r, u);
    } else if (strcmp(name, "addUser") == 0 && json_is_object(arg)) {
        users_put(r, arg);
    } else if (strcmp(name, "userLeave") == 0) {
        json_t *u = user_entry(r, json_string_value(json_object_get(arg, "name")));
        if (u) {
            char *k = strdup(json_string_value(json_object_get(u, "name")));
            if (k) {
                json_object_del(r->users, k);
                free(k);
            }
        }
    } else if (strcmp(name, "setUserRank") == 0) {
        json_t *u = user_entry(r, json_string_value(json_object_get(arg, "name")));
        json_t *rank = json_object_get(arg, "rank");
        if (u && json_is_number(rank))
            json_object_set(u, "rank", rank);
    } else if (strcmp(name, "setUserMeta") == 0) {
        json_t *u = user_entry(r, json_string_value(json_object_get(arg, "name")));
        json_t *meta = json_object_get(arg, "meta");
        if (u && json_is_object(meta))
            json_object_set_new(u, "meta", json_deep_copy(meta));
    } else if (strcmp(name, "setAFK") == 0) {
        json_t *u = user_entry(r, json_string_value(json_object_get(arg, "name")));
        json_t *meta = json_object_get(u, "meta");
        if (json_is_object(meta))
            json_object_set(meta, "afk", json_is_true(json_object_get(arg, "afk")) ? json_true() : json_false());
    } else if (strcmp(name, "setUserProfile") == 0) {
        json_t *u = user_entry(r, json_string_value(json_object_get(arg, "name")));
        json_t *profile = json_object_get(arg, "profile");
        if (u && json_is_object(profile))
            json_object_set_new(u, "profile", json_deep_copy(profile));
    } else if (strcmp(name, "changeMedia") == 0 && json_is_object(arg)) {
        json_decref(r->media);
        r->media = json_deep_copy(arg);
    } else if (strcmp(name, "mediaUpdate") == 0 && json_is_object(arg) && r->media) {
        json_t *ct = json_object_get(arg, "currentTime"), *paused = json_object_get(arg, "paused");
        if (ct)
            json_object_set(r->media, "currentTime", ct);
        if (paused)
            json_object_set(r->media, "paused", paused);
    } else if (strcmp(name, "setCurrent") == 0 && arg) {
        json_decref(r->current_uid);
        r->current_uid = json_deep_copy(arg);
    } else if (strcmp(name, "usercount") == 0 && json_is_integer(arg)) {
        r->usercount = (long)json_integer_value(arg);
    } else if (strcmp(name, "setLeader") == 0 && json_is_string(arg)) {
        free(r->leader);
        r->leader = strdup(json_string_value(arg));
    }
}

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
    set_state(r, RS_JOINED);
    r->last_error[0] = '\0';
    r->backoff.attempts = 0;
    r->backoff.next_attempt_unix_ms = 0;
    save_backoff(r);
    uv_timer_stop(&r->t_stage);
    log_info("cytube", "%s: joined as %s (rank %g)", r->channel, r->me ? r->me : "(anonymous)", r->rank);
    publish_status(r, "joined");
    pump(r);
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
    if (!r->wsi || !r->sio_connected || r->login_sent)
        return;
    json_t *arg = r->password && r->password[0] ? json_pack("{s:s, s:s}", "name", r->username, "pw", r->password)
                                                  : json_pack("{s:s}", "name", r->username);
    emit_event(r, "login", arg);
    json_decref(arg);
    r->login_sent = 1;
    set_state(r, RS_LOGGING_IN);
    uv_timer_start(&r->t_stage, on_login_timeout, (uint64_t)r->cy->o.connect_timeout_ms, 0);
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
        log_info("cytube", "%s: logged in as %s%s", r->channel, r->me,
                 json_is_true(json_object_get(arg, "guest")) ? " (guest)" : "");
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

static void handle_event(struct room *r, const char *name, json_t *arg)
{
    r->events_in++;
    track_state(r, name, arg);

    int replayed = r->replaying;
    int own = 0;
    if (strcmp(name, "chatMsg") == 0 || strcmp(name, "pm") == 0) {
        const char *who = json_string_value(json_object_get(arg, "username"));
        own = name_eq(who, r->me ? r->me : r->username);
        if (own && !replayed)
            inflight_ack(r, name[0] == 'p' ? OUT_PM : OUT_CHAT);
    }

    int prio = EVENT_PRIO_NORMAL;
    if (strcmp(name, "chatMsg") == 0 || strcmp(name, "pm") == 0)
        prio = EVENT_PRIO_HIGH;
    else if (strcmp(name, "login") == 0 || strcmp(name, "kick") == 0 || strcmp(name, "errorMsg") == 0)
        prio = EVENT_PRIO_URGENT;

    char type[EVENT_NAME_MAX + 32];
    snprintf(type, sizeof type, "cytube.event.%s", name);
    publish_json(r, type, prio, arg, replayed, own);

    if (strcmp(name, "userlist") == 0) {
        size_t n = json_array_size(arg), i;
        json_t *start = json_pack("{s:I}", "count", (json_int_t)n);
        publish_json(r, "cytube.event.userlist.start", prio, start, replayed, 0);
        json_decref(start);
        json_t *u;
        json_array_foreach(arg, i, u) {
            json_t *copy = json_is_object(u) ? json_deep_copy(u) : json_object();
            json_object_set_new(copy, "from_userlist", json_true());
            publish_json(r, "cytube.event.addUser", prio, copy, replayed, 0);
            json_decref(copy);
        }
        json_t *end = json_pack("{s:I}", "count", (json_int_t)n);
        publish_json(r, "cytube.event.userlist.end", prio, end, replayed, 0);
        json_decref(end);
        r->replaying = 0;
        r->userlist_seen = 1;
        maybe_joined(r);
    } else if (strcmp(name, "login") == 0) {
        on_login_reply(r, arg);
    } else if (strcmp(name, "kick") == 0) {
        const char *reason = json_string_value(json_object_get(arg, "reason"));
        snprintf(r->kick_reason, sizeof r->kick_reason, "%s", reason ? reason : "");
        r->kicked = 1;
        log_warn("cytube", "%s: kicked: %s", r->channel, reason && reason[0] ? reason : "(no reason)");
    } else if (strcmp(name, "cooldown") == 0) {
        on_cooldown(r);
    } else if (strcmp(name, "needPassword") == 0 && json_is_boolean(arg)) {
        if (json_is_true(arg) || r->password_sent) {
            stop_room(r, "the channel password was refused (check channel_password)");
            close_socket(r);
        } else if (r->channel_password) {
            json_t *pw = json_string(r->channel_password);
            emit_event(r, "channelPassword", pw);
            json_decref(pw);
            r->password_sent = 1;
        } else {
            stop_room(r, "the channel needs a password (set channel_password)");
            close_socket(r);
        }
    } else if (strcmp(name, "errorMsg") == 0) {
        const char *msg = json_string_value(json_object_get(arg, "msg"));
        log_warn("cytube", "%s: server error: %s", r->channel, msg ? msg : "?");
        if (msg && strstr(msg, "blocked anonymous users") && !r->username) {
            stop_room(r, "the channel refuses anonymous users (set username)");
            close_socket(r);
        }
    } else if ((strcmp(name, "chatMsg") == 0 || strcmp(name, "pm") == 0) && own && !replayed) {
        pump(r);
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
    emit_event(r, "joinChannel", arg);
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
        log_warn("cytube", "%s: dropped a frame that came before joining (%d held)", r->channel, r->early_count);
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

static void handle_frame(struct room *r, const char *data, size_t len)
{
    char err[SIO_ERR_SIZE];
    enum eio_type type;
    const char *pl;
    size_t pn;
    arm_liveness(r);
    if (eio_decode(data, len, &type, &pl, &pn, err) != 0) {
        r->bad_frames++;
        log_warn("cytube", "%s: ignoring a bad frame: %s", r->channel, err);
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
        queue_frame(r, SIO_FRAME_CONNECT, 2);
        return;
    case EIO_PING:
        queue_frame(r, EIO_FRAME_PONG, 1);
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
        log_warn("cytube", "%s: ignoring a bad Socket.IO packet: %s", r->channel, err);
        return;
    }
    if (strcmp(p.nsp, "/") != 0) {
        sio_packet_clear(&p);
        return;
    }
    switch (p.type) {
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
        const char *msg = json_is_string(p.data) ? json_string_value(p.data)
                                                 : json_string_value(json_object_get(p.data, "message"));
        set_error(r, "connection refused by the server: %s", msg ? msg : "?");
        log_warn("cytube", "%s: %s", r->channel, r->last_error);
        close_socket(r);
        break;
    }
    case SIO_EVENT: {
        const char *name = sio_event_name(&p);
        if (!r->sio_connected || !name || !valid_event_name(name)) {
            r->bad_frames++;
            break;
        }
        handle_event(r, name, sio_event_arg(&p));
        break;
    }
    default:
        break; /* acks: CyTube only answers newPoll, which we send without one */
    }
    sio_packet_clear(&p);
}

/* ------------------------------------------------------------ libwebsockets */

static int lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct room *r = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (r && r->wsi != wsi && r->wsi != WSI_CONNECTING)
        r = NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (r) {
            char why[400];
            int n = in ? (int)(len > 0 && len < 200 ? len : strnlen(in, 200)) : 0;
            snprintf(why, sizeof why, "cannot connect to %.100s:%d: %.*s", r->host, r->port, n, in ? (const char *)in : "");
            room_lost(r, why);
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (r) {
            set_state(r, RS_HANDSHAKE);
            r->connected_since_ms = now_ms(r);
            log_debug("cytube", "%s: WebSocket open to %s:%d", r->channel, r->host, r->port);
        }
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!r)
            break;
        if (lws_frame_is_binary(wsi)) {
            r->bad_frames++;
            break;
        }
        if (r->rx_len + len > FRAME_LIMIT) {
            set_error(r, "a frame from the server exceeds %d bytes", FRAME_LIMIT);
            log_warn("cytube", "%s: %s", r->channel, r->last_error);
            r->rx_len = 0;
            return -1;
        }
        if (r->rx_len + len + 1 > r->rx_cap) {
            size_t cap = r->rx_cap ? r->rx_cap : 4096;
            while (cap < r->rx_len + len + 1)
                cap *= 2;
            char *b = realloc(r->rx, cap);
            if (!b)
                return -1;
            r->rx = b;
            r->rx_cap = cap;
        }
        memcpy(r->rx + r->rx_len, in, len);
        r->rx_len += len;
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            size_t n = r->rx_len;
            r->rx_len = 0;
            r->rx[n] = '\0';
            handle_frame(r, r->rx, n);
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!r)
            break;
        if (r->want_kill)
            return -1;
        if (r->tx_head) {
            struct frame *f = r->tx_head;
            r->tx_head = f->next;
            if (!r->tx_head)
                r->tx_tail = NULL;
            r->tx_count--;
            int w = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
            int chat = f->chat;
            free(f);
            if (w < 0)
                return -1;
            if (chat) {
                r->chat_unwritten--;
                uv_update_time(r->cy->loop);
                r->flood_last_ms = now_ms(r);
                pump(r);
            }
            if (r->tx_head || r->want_close)
                lws_callback_on_writable(wsi);
            break;
        }
        if (r->want_close) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (r)
            room_lost(r, r->last_error[0] ? r->last_error : "the connection closed");
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols PROTOCOLS[] = {
    {"daz-cytube", lws_callback, 0, 65536, 0, NULL, 0},
    HTTP_CLIENT_PROTOCOL, /* discovery */
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log(int level, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (level & LLL_ERR)
        log_warn("lws", "%s", buf);
    else
        log_debug("lws", "%s", buf);
}

static int ensure_lws(struct cytube *cy)
{
    if (cy->lws)
        return 0;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    static void *loops[1];
    loops[0] = cy->loop;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = PROTOCOLS;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.pcontext = &cy->lws;
    info.user = cy;
    /* TLS only when a room's server is https: loading the system CA bundle is
     * most of the start-up time and several MB of memory (make bench). */
    cy->lws_tls = 0;
    unsigned enabled = 0;
    for (struct room *r = cy->rooms; r; r = r->next) {
        cy->lws_tls |= r->enabled && strncasecmp(r->server, "https:", 6) == 0;
        enabled += r->enabled != 0;
    }
    /* Without a limit lws sizes its fd tables by `ulimit -n` and zeroes them:
     * 320 kB at 20,000 fds, 16 MB at 1,048,576. A room holds at most two
     * sockets (one closing, one opening); lws itself a few. */
    info.fd_limit_per_thread = 2 * enabled + 8;
    if (cy->lws_tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        /* Debian's lws 4.1 was built with LWS_OPENSSL_CLIENT_CERTS "../share":
         * without an explicit bundle no certificate would ever verify. */
        info.client_ssl_ca_filepath = cy->ca_file;
    }
    cy->lws = lws_create_context(&info);
    if (!cy->lws) {
        log_error("cytube", "cannot create the libwebsockets context (is libwebsockets-evlib-uv installed?)");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ connecting */

static void on_stage_timeout(uv_timer_t *t)
{
    struct room *r = t->data;
    set_error(r, "no session within %ld ms (state %s)", r->cy->o.connect_timeout_ms, STATE_NAMES[r->state]);
    log_warn("cytube", "%s: %s", r->channel, r->last_error);
    if (r->wsi)
        drop_socket(r);
    else
        room_lost(r, r->last_error);
}

static void ws_connect(struct room *r)
{
    struct cytube *cy = r->cy;
    if (ensure_lws(cy) != 0) {
        stop_room(r, "no WebSocket support (libwebsockets context)");
        return;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    char host_header[300];
    snprintf(host_header, sizeof host_header, "%s", r->host);
    ci.context = cy->lws;
    ci.address = r->address;
    ci.port = r->port;
    ci.path = r->path;
    ci.host = host_header;
    ci.origin = host_header;
    ci.protocol = NULL;
    ci.local_protocol_name = PROTOCOLS[0].name;
    ci.opaque_user_data = r;
    if (r->tls)
        ci.ssl_connection = LCCSCF_USE_SSL | (cy->o.verify_tls ? 0
                                                                : LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE |
                                                                      LCCSCF_ALLOW_EXPIRED |
                                                                      LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK);
    set_state(r, RS_CONNECTING);
    r->connects++;
    /* lws may report a failure from inside this call; the placeholder lets
     * the callback recognise the room until the call returns. */
    r->wsi = WSI_CONNECTING;
    struct lws *w = lws_client_connect_via_info(&ci);
    if (r->wsi != WSI_CONNECTING)
        return; /* already reported and handled */
    r->wsi = w;
    if (!w) {
        set_error(r, "cannot start a connection to %s:%d", r->host, r->port);
        room_lost(r, r->last_error);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct room *r = req->data;
    free(req);
    if (!r) { /* cancelled */
        uv_freeaddrinfo(res);
        return;
    }
    r->resolving = NULL;
    if (status != 0 || !res) {
        set_error(r, "cannot resolve %s: %s", r->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        room_lost(r, r->last_error);
        return;
    }
    const void *addr = res->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                                                  : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, addr, r->address, sizeof r->address);
    uv_freeaddrinfo(res);
    ws_connect(r);
}

static void resolve_and_connect(struct room *r)
{
    set_state(r, RS_RESOLVING);
    uv_getaddrinfo_t *req = calloc(1, sizeof *req);
    if (!req) {
        room_lost(r, "out of memory");
        return;
    }
    req->data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(r->cy->loop, req, on_resolved, r->host, NULL, &hints);
    if (rc != 0) {
        free(req);
        set_error(r, "cannot resolve %s: %s", r->host, uv_strerror(rc));
        room_lost(r, r->last_error);
        return;
    }
    r->resolving = req;
}

static struct server_slot *slot_for(struct cytube *cy, const char *key)
{
    for (struct server_slot *s = cy->slots; s; s = s->next)
        if (strcmp(s->key, key) == 0)
            return s;
    struct server_slot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->key, sizeof s->key, "%s", key);
    s->tokens = cy->o.server_connect_burst;
    s->refilled_ms = uv_now(cy->loop);
    s->next = cy->slots;
    cy->slots = s;
    return s;
}

static void on_slot_wait(uv_timer_t *t);

/* Connection attempts to one server address are paced like CyTube's
 * per-IP limit: a burst, then one per interval. */
static void acquire_slot_then_connect(struct room *r)
{
    struct cytube *cy = r->cy;
    char key[300];
    snprintf(key, sizeof key, "%s:%d", r->host, r->port);
    struct server_slot *s = slot_for(cy, key);
    if (s) {
        uint64_t now = uv_now(cy->loop);
        double interval = (double)cy->o.server_connect_interval_ms;
        s->tokens += (double)(now - s->refilled_ms) / (interval > 0 ? interval : 1);
        if (s->tokens > cy->o.server_connect_burst)
            s->tokens = cy->o.server_connect_burst;
        s->refilled_ms = now;
        if (s->tokens < 1) {
            uint64_t wait = (uint64_t)ceil((1 - s->tokens) * interval);
            set_state(r, RS_WAITING);
            log_info("cytube", "%s: pacing connections to %s: waiting %.1f s", r->channel, key, (double)wait / 1000);
            uv_timer_start(&r->t_stage, on_slot_wait, wait, 0);
            return;
        }
        s->tokens -= 1;
    }
    uv_timer_start(&r->t_stage, on_stage_timeout, (uint64_t)cy->o.connect_timeout_ms, 0);
    resolve_and_connect(r);
}

static void on_slot_wait(uv_timer_t *t) { acquire_slot_then_connect(t->data); }

/* Parses "http(s)://host[:port][/...]" into the room's target. */
static int set_target(struct room *r, const char *url)
{
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        r->tls = 1, p = url + 8, r->port = 443;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        r->tls = 0, p = url + 7, r->port = 80;
    } else {
        return -1;
    }
    const char *host_end;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close)
            return -1;
        snprintf(r->host, sizeof r->host, "%.*s", (int)(close - p - 1), p + 1);
        host_end = close + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        snprintf(r->host, sizeof r->host, "%.*s", (int)(host_end - p), p);
    }
    if (!r->host[0])
        return -1;
    if (*host_end == ':') {
        char *end;
        long port = strtol(host_end + 1, &end, 10);
        if (port <= 0 || port > 65535)
            return -1;
        r->port = (int)port;
    }
    snprintf(r->path, sizeof r->path, "/socket.io/?EIO=4&transport=websocket");
    return 0;
}

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
    json_t *servers = json_object_get(v, "servers");
    const char *pick = NULL;
    size_t i;
    json_t *s;
    json_array_foreach(servers, i, s) {
        const char *url = json_string_value(json_object_get(s, "url"));
        if (!url || json_is_true(json_object_get(s, "ipv6")))
            continue;
        /* Without TLS set up (no https room), only plain entries will do. */
        int secure = json_is_true(json_object_get(s, "secure")) || strncasecmp(url, "https:", 6) == 0;
        if (secure && !r->cy->lws_tls)
            continue;
        if (!pick)
            pick = url;
        if (secure) {
            pick = url;
            break;
        }
    }
    if (!v || !pick || set_target(r, pick) != 0) {
        set_error(r, "discovery: %s", !v ? "the answer is not JSON"
                                      : !r->cy->lws_tls ? "no plain ws:// server in the answer (use an https:// server "
                                                          "URL for TLS)"
                                                        : "no usable server in the answer");
        json_decref(v);
        discovery_failed(r);
        return;
    }
    json_decref(v);
    log_debug("cytube", "%s: discovered %s://%s:%d%s", r->channel, r->tls ? "wss" : "ws", r->host, r->port, r->path);
    if (ahead_hold(r, AHEAD_DONE))
        return;
    acquire_slot_then_connect(r);
}

static void room_connect(struct room *r)
{
    struct cytube *cy = r->cy;
    if (cy->closing || r->state == RS_STOPPED)
        return;
    reset_session(r);
    set_state(r, RS_DISCOVERING);
    char url[600];
    size_t sl = strlen(r->server);
    snprintf(url, sizeof url, "%.*s/socketconfig/%s.json", (int)(sl > 0 && r->server[sl - 1] == '/' ? sl - 1 : sl),
             r->server, r->channel);
    r->discovery = http_get(cy->http, url, cy->o.connect_timeout_ms, 64 * 1024, on_discovery, r);
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
    if (r->resolving) {
        r->resolving->data = NULL;
        uv_cancel((uv_req_t *)r->resolving);
        r->resolving = NULL;
    }
    if (r->wsi && r->wsi != WSI_CONNECTING)
        lws_set_opaque_user_data(r->wsi, NULL);
    r->wsi = NULL;
    free_early_frames(r);
    int was_joined = r->state == RS_JOINED;
    if (why != r->last_error && (!r->last_error[0] || r->state >= RS_JOINED))
        set_error(r, "%s", why);
    if (r->timers_ready) {
        uv_timer_stop(&r->t_ping);
        uv_timer_stop(&r->t_send);
        uv_timer_stop(&r->t_stage);
    }
    clear_output(r, 1);
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
            wait_then_connect(r, (uint64_t)cy->o.duplicate_login_backoff_ms);
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

/* ------------------------------------------------------------ commands from the bus */

static struct room *find_room(struct cytube *cy, const char *channel)
{
    if (!channel)
        return NULL;
    for (struct room *r = cy->rooms; r; r = r->next)
        if (strcasecmp(r->channel, channel) == 0)
            return r;
    return NULL;
}

static void answer(struct cytube *cy, struct event *ev, const char *error, json_t *value)
{
    if (error)
        log_warn("cytube", "%s refused: %s", ev->type, error);
    if (!ev->correlation_id)
        return;
    char *text = value ? json_dumps(value, JSON_COMPACT) : strdup("{\"ok\":true}");
    struct event *resp = event_new_take(ev->type, ev->room, ev->priority, text, text ? strlen(text) : 0);
    if (!resp) {
        free(text);
        return;
    }
    if (error)
        event_set_error(resp, error);
    bus_respond(cy->bus, ev->correlation_id, resp);
}

/* Is the bot allowed `node` in this room? Fills `why` when not. */
static int permitted(struct room *r, const char *node, char *why, size_t n)
{
    if (!r->permissions) {
        snprintf(why, n, "the channel's permissions are not known yet");
        return 0;
    }
    json_t *v = json_object_get(r->permissions, node);
    if (!json_is_number(v)) {
        snprintf(why, n, "refused: the channel has no '%s' permission (unregistered channel?)", node);
        return 0;
    }
    if (r->rank < json_number_value(v)) {
        snprintf(why, n, "refused: needs rank %g for '%s', the bot has %g", json_number_value(v), node, r->rank);
        return 0;
    }
    return 1;
}

static int min_rank(struct room *r, double need, const char *what, char *why, size_t n)
{
    if (r->rank >= need)
        return 1;
    snprintf(why, n, "refused: %s needs rank %g, the bot has %g", what, need, r->rank);
    return 0;
}

static const char *pl_node(struct room *r, const char *locked, const char *open)
{
    return r->playlist_locked ? locked : open;
}

struct chat_command {
    const char *name;
    const char *node; /* permission node, or NULL */
    double rank;      /* minimum rank when node is NULL */
    int cost;
};

static const struct chat_command CHAT_COMMANDS[] = {
    {"me", "chat", 0, 2},          {"sp", "chat", 0, 2},       {"say", NULL, 1.5, 2},
    {"shout", NULL, 1.5, 2},       {"rcv", NULL, 1.5, 2},      {"afk", NULL, 0, 1},
    {"clear", "chatclear", 0, 1},  {"kick", "kick", 0, 1},     {"kickanons", "kick", 0, 1},
    {"ban", "ban", 0, 1},          {"ipban", "ban", 0, 1},     {"banip", "ban", 0, 1},
    {"mute", "mute", 0, 1},        {"smute", "mute", 0, 1},    {"unmute", "mute", 0, 1},
    {"unsmute", "mute", 0, 1},     {"poll", "pollctl", 0, 1},  {"hpoll", "pollctl", 0, 1},
    {"rank", NULL, 3, 1},          {"clean", "playlistdelete", 0, 1},
    {"cleantitle", "playlistdelete", 0, 1},
};

static int room_ready(struct room *r, int need_login, char *why, size_t n)
{
    if (r->state == RS_STOPPED) {
        snprintf(why, n, "room down (stopped: %.200s)", r->last_error);
        return 0;
    }
    if (!r->sio_connected || !r->wsi) {
        snprintf(why, n, "room down (%s)", STATE_NAMES[r->state]);
        return 0;
    }
    if (need_login && !r->username) {
        snprintf(why, n, "refused: the bot is not logged in (no username configured)");
        return 0;
    }
    return 1;
}

/* A chat line or PM that could not be delivered because the room is down:
 * published as `<type>.failed` for the retry plugin (README "Retry"). Only
 * for plain publishes: a caller that used bus:request gets the error itself
 * and decides. */
static void publish_failed(struct room *r, struct event *ev, json_t *data, const char *why)
{
    static unsigned long long counter;
    static long long started_ms;
    if (ev->correlation_id)
        return;
    if (!started_ms) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        started_ms = (long long)tv.tv_sec * 1000 + tv.tv_usec / 1000;
    }
    /* Unique across processes and restarts: pid, start time, a counter. */
    char id[96];
    snprintf(id, sizeof id, "%s:%d:%lld:%llu", ev->type, (int)getpid(), started_ms, ++counter);
    char type[160];
    snprintf(type, sizeof type, "%s.failed", ev->type);
    json_t *failed = json_pack("{s:s, s:s, s:O, s:s, s:s, s:i, s:i}", "operation", "cytube_command", "event_type",
                               ev->type, "payload", data, "error", why, "correlation_id", id, "attempt", 1,
                               "priority", ev->priority);
    if (!failed)
        return;
    publish_json(r, type, EVENT_PRIO_URGENT, failed, 0, 0);
    json_decref(failed);
}

static void cmd_chat(struct room *r, struct event *ev, json_t *data, int pm)
{
    struct cytube *cy = r->cy;
    char why[300];
    const char *msg = json_string_value(json_object_get(data, "msg"));
    const char *to = json_string_value(json_object_get(data, "to"));
    if (!msg || (pm && !to)) {
        answer(cy, ev, pm ? "cytube.send.pm needs {room, to, msg}" : "cytube.send needs {room, msg}", NULL);
        return;
    }
    if (!room_ready(r, 1, why, sizeof why)) {
        answer(cy, ev, why, NULL);
        if (strncmp(why, "room down", 9) == 0)
            publish_failed(r, ev, data, why);
        return;
    }
    char *clean = cytube_clean_text(msg);
    char *lines[MAX_SPLIT_LINES];
    int n = clean ? cytube_split_text(clean, cy->o.chat_max_length, lines, MAX_SPLIT_LINES) : 0;
    free(clean);
    if (n == 0) {
        answer(cy, ev, "nothing to send (the text is empty after cleaning)", NULL);
        return;
    }
    if (r->out_len + n > cy->o.outbound_queue_size) {
        for (int i = 0; i < n; i++)
            free(lines[i]);
        r->lines_dropped += (uint64_t)n;
        answer(cy, ev, "dropped: the room's outbound queue is full", NULL);
        return;
    }
    for (int i = 0; i < n; i++)
        enqueue_line(r, pm ? OUT_PM : OUT_CHAT, to, lines[i], 1, 1, 0);
    json_t *ok = json_pack("{s:b, s:i}", "ok", 1, "lines", n);
    answer(cy, ev, NULL, ok);
    json_decref(ok);
    pump(r);
}

static void cmd_chat_command(struct room *r, struct event *ev, json_t *data)
{
    struct cytube *cy = r->cy;
    char why[300];
    const char *name = json_string_value(json_object_get(data, "command"));
    const char *args = json_string_value(json_object_get(data, "args"));
    if (name && name[0] == '/')
        name++;
    const struct chat_command *c = NULL;
    for (size_t i = 0; name && i < sizeof CHAT_COMMANDS / sizeof *CHAT_COMMANDS; i++)
        if (strcmp(CHAT_COMMANDS[i].name, name) == 0)
            c = &CHAT_COMMANDS[i];
    if (!c) {
        answer(cy, ev, "cytube.command needs {room, command, args}: command one of me, sp, say, afk, clear, kick, "
                       "kickanons, ban, ipban, mute, smute, unmute, unsmute, poll, hpoll, rank, clean, cleantitle",
               NULL);
        return;
    }
    if (!room_ready(r, 1, why, sizeof why) ||
        !(c->node ? permitted(r, c->node, why, sizeof why) : min_rank(r, c->rank, c->name, why, sizeof why))) {
        answer(cy, ev, why, NULL);
        return;
    }
    char *clean = cytube_clean_text(args ? args : "");
    if (!clean) {
        answer(cy, ev, "out of memory", NULL);
        return;
    }
    size_t n = strlen(name) + strlen(clean) + 3;
    char *text = malloc(n);
    if (!text) {
        free(clean);
        answer(cy, ev, "out of memory", NULL);
        return;
    }
    snprintf(text, n, "/%s%s%s", name, clean[0] ? " " : "", clean);
    free(clean);
    /* A command must go out in one piece. */
    char *lines[2];
    int pieces = cytube_split_text(text, 1 << 20, lines, 1);
    int units_ok = pieces == 1;
    if (pieces == 1) {
        char *check[2];
        int k = cytube_split_text(text, cy->o.chat_max_length, check, 2);
        units_ok = k == 1;
        for (int i = 0; i < k; i++)
            free(check[i]);
        free(lines[0]);
    }
    if (!units_ok) {
        free(text);
        answer(cy, ev, "refused: the command is longer than one chat line", NULL);
        return;
    }
    if (enqueue_line(r, OUT_CHAT, NULL, text, c->cost, strcmp(c->name, "me") == 0 || strcmp(c->name, "sp") == 0, 0) != 0) {
        answer(cy, ev, "dropped: the room's outbound queue is full", NULL);
        return;
    }
    answer(cy, ev, NULL, NULL);
    pump(r);
}

/* Playlist, poll and leader verbs: checked, then sent at once (their own
 * server throttles answer with queueFail/errorMsg, never with a kick). */
static void cmd_verb(struct room *r, struct event *ev, const char *verb, json_t *data)
{
    struct cytube *cy = r->cy;
    char why[300];
    json_t *arg = NULL;
    int ok = room_ready(r, 0, why, sizeof why);
    if (ok && strcmp(verb, "queue") == 0) {
        const char *id = json_string_value(json_object_get(data, "id"));
        const char *type = json_string_value(json_object_get(data, "type"));
        const char *pos = json_string_value(json_object_get(data, "pos"));
        if (!pos)
            pos = "end";
        if (!id || !type || (strcmp(pos, "end") != 0 && strcmp(pos, "next") != 0)) {
            snprintf(why, sizeof why, "cytube.queue needs {room, id, type, pos = \"end\"|\"next\"}");
            ok = 0;
        } else if (strcmp(pos, "next") == 0) {
            ok = permitted(r, pl_node(r, "playlistnext", "oplaylistnext"), why, sizeof why);
        } else {
            ok = permitted(r, pl_node(r, "playlistadd", "oplaylistadd"), why, sizeof why);
        }
        if (ok) {
            arg = json_pack("{s:s, s:s, s:s}", "id", id, "type", type, "pos", pos);
            const char *keys[] = {"title", "duration", "temp"};
            for (int i = 0; i < 3; i++)
                if (json_object_get(data, keys[i]))
                    json_object_set(arg, keys[i], json_object_get(data, keys[i]));
        }
    } else if (ok && strcmp(verb, "delete") == 0) {
        json_t *uid = json_object_get(data, "uid");
        if (!json_is_integer(uid)) {
            snprintf(why, sizeof why, "cytube.delete needs {room, uid (number)}");
            ok = 0;
        } else if ((ok = permitted(r, pl_node(r, "playlistdelete", "oplaylistdelete"), why, sizeof why))) {
            arg = json_deep_copy(uid);
        }
    } else if (ok && strcmp(verb, "moveMedia") == 0) {
        json_t *from = json_object_get(data, "from"), *after = json_object_get(data, "after");
        if (!json_is_integer(from) || !(json_is_integer(after) || json_is_string(after))) {
            snprintf(why, sizeof why, "cytube.moveMedia needs {room, from (uid), after (uid|\"prepend\"|\"append\")}");
            ok = 0;
        } else if ((ok = permitted(r, pl_node(r, "playlistmove", "oplaylistmove"), why, sizeof why))) {
            arg = json_pack("{s:O, s:O}", "from", from, "after", after);
        }
    } else if (ok && strcmp(verb, "jumpTo") == 0) {
        json_t *uid = json_object_get(data, "uid");
        if (!json_is_integer(uid) && !json_is_string(uid)) {
            snprintf(why, sizeof why, "cytube.jumpTo needs {room, uid}");
            ok = 0;
        } else if ((ok = permitted(r, pl_node(r, "playlistjump", "oplaylistjump"), why, sizeof why))) {
            arg = json_deep_copy(uid);
        }
    } else if (ok && strcmp(verb, "playNext") == 0) {
        ok = permitted(r, pl_node(r, "playlistjump", "oplaylistjump"), why, sizeof why);
    } else if (ok && strcmp(verb, "voteskip") == 0) {
        ok = permitted(r, "voteskip", why, sizeof why);
        if (ok && json_is_false(json_object_get(r->options, "allow_voteskip"))) {
            snprintf(why, sizeof why, "refused: the channel does not allow voteskips");
            ok = 0;
        }
    } else if (ok && strcmp(verb, "assignLeader") == 0) {
        const char *name = json_string_value(json_object_get(data, "name"));
        if (!name) {
            snprintf(why, sizeof why, "cytube.assignLeader needs {room, name} (\"\" to clear)");
            ok = 0;
        } else if ((ok = permitted(r, "leaderctl", why, sizeof why))) { /* else the server kicks */
            arg = json_pack("{s:s}", "name", name);
        }
    } else if (ok && strcmp(verb, "newPoll") == 0) {
        const char *title = json_string_value(json_object_get(data, "title"));
        json_t *opts = json_object_get(data, "opts");
        if (!title || !json_is_array(opts) || json_array_size(opts) == 0) {
            snprintf(why, sizeof why, "cytube.newPoll needs {room, title, opts = {...}, obscured?, timeout?}");
            ok = 0;
        } else if ((ok = permitted(r, "pollctl", why, sizeof why))) {
            arg = json_pack("{s:s, s:O, s:b}", "title", title, "opts", opts, "obscured",
                            json_is_true(json_object_get(data, "obscured")));
            json_t *timeout = json_object_get(data, "timeout");
            if (json_is_integer(timeout))
                json_object_set(arg, "timeout", timeout);
        }
    } else if (ok && strcmp(verb, "closePoll") == 0) {
        ok = permitted(r, "pollctl", why, sizeof why);
    }
    if (!ok) {
        answer(cy, ev, why, NULL);
        json_decref(arg);
        return;
    }
    int rc = emit_event(r, verb, arg);
    json_decref(arg);
    answer(cy, ev, rc == 0 ? NULL : "out of memory", NULL);
}

static const char *const VERBS[] = {"queue", "delete", "moveMedia", "jumpTo", "playNext",
                                    "voteskip", "assignLeader", "newPoll", "closePoll"};

static void on_command(struct event *ev, void *ctx)
{
    struct cytube *cy = ctx;
    if (cy->closing)
        return;
    size_t len;
    const char *text = event_json(ev, &len);
    json_t *data = text ? json_loadb(text, len, JSON_DECODE_ANY, NULL) : NULL;
    const char *channel = json_string_value(json_object_get(data, "room"));
    if (!channel)
        channel = ev->room;
    struct room *r = find_room(cy, channel);
    if (!json_is_object(data)) {
        answer(cy, ev, "the payload must be a table", NULL);
    } else if (!r) {
        char why[200];
        snprintf(why, sizeof why, "unknown room %s", channel ? channel : "(none given)");
        answer(cy, ev, why, NULL);
    } else if (strcmp(ev->type, "cytube.send") == 0) {
        cmd_chat(r, ev, data, 0);
    } else if (strcmp(ev->type, "cytube.send.pm") == 0) {
        cmd_chat(r, ev, data, 1);
    } else if (strcmp(ev->type, "cytube.command") == 0) {
        cmd_chat_command(r, ev, data);
    } else {
        cmd_verb(r, ev, ev->type + strlen("cytube."), data);
    }
    json_decref(data);
}

/* ------------------------------------------------------------ public */

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
    cy->ca_file = cy->o.tls_ca_file ? strdup(cy->o.tls_ca_file) : NULL;
    cy->o.tls_ca_file = cy->ca_file;
    srand((unsigned)unix_ms() ^ (unsigned)getpid());
    return cy;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

int cytube_add_room(struct cytube *cy, const struct cytube_room_config *rc)
{
    if (!rc->channel || find_room(cy, rc->channel))
        return -1;
    struct room *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->cy = cy;
    r->channel = strdup(rc->channel);
    r->server = strdup(rc->server ? rc->server : "https://cytu.be");
    r->username = rc->username && rc->username[0] ? strdup(rc->username) : NULL;
    r->password = dup_or_null(rc->password);
    r->channel_password = rc->channel_password && rc->channel_password[0] ? strdup(rc->channel_password) : NULL;
    r->enabled = rc->enabled;
    r->reconnect_attempts = rc->reconnect_attempts > 0 ? rc->reconnect_attempts : 10;
    r->cooldown_minutes = rc->cooldown_minutes;
    r->rank = -1;
    r->playlist_locked = 1;
    r->slow = 1;
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

int cytube_attach(struct cytube *cy)
{
    static const char *const types[] = {"cytube.send", "cytube.send.pm", "cytube.command"};
    for (size_t i = 0; i < 3; i++)
        cy->subs[cy->sub_count++] = bus_subscribe(cy->bus, types[i], NULL, 0, 0, on_command, cy);
    for (size_t i = 0; i < sizeof VERBS / sizeof *VERBS; i++) {
        char type[64];
        snprintf(type, sizeof type, "cytube.%s", VERBS[i]);
        cy->subs[cy->sub_count++] = bus_subscribe(cy->bus, type, NULL, 0, 0, on_command, cy);
    }
    for (int i = 0; i < cy->sub_count; i++)
        if (!cy->subs[i])
            return -1;
    return 0;
}

static void init_timers(struct room *r)
{
    if (r->timers_ready)
        return;
    uv_timer_init(r->cy->loop, &r->t_stage);
    uv_timer_init(r->cy->loop, &r->t_ping);
    uv_timer_init(r->cy->loop, &r->t_send);
    r->t_stage.data = r->t_ping.data = r->t_send.data = r;
    r->timers_ready = 1;
}

/* The libwebsockets context and the HTTP client, when some room is enabled.
 * Returns 1 ready, 0 no room to connect, -1 failed. */
static int setup_connections(struct cytube *cy)
{
    int any = 0;
    for (struct room *r = cy->rooms; r; r = r->next)
        any |= r->enabled;
    if (!any)
        return 0;
    /* Discovery runs on the lws context too (and shares its TLS setup). */
    if (!cy->http && ensure_lws(cy) == 0)
        cy->http = http_client_new(cy->loop, cy->lws, cy->lws_tls, cy->o.verify_tls);
    return cy->http ? 1 : -1;
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
        init_timers(r);
        r->ahead = AHEAD_RUNNING;
        room_connect(r);
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
    for (struct room *r = cy->rooms; r; r = r->next) {
        if (!r->enabled)
            continue;
        init_timers(r);
        int ahead = r->ahead;
        r->ahead = AHEAD_NONE;
        if (cy->backoff_load && cy->backoff_load(r->channel, &r->backoff, cy->backoff_ctx) == 0 &&
            r->backoff.next_attempt_unix_ms > unix_ms()) {
            if (r->discovery) {
                http_cancel(r->discovery);
                r->discovery = NULL;
            }
            uint64_t wait = (uint64_t)(r->backoff.next_attempt_unix_ms - unix_ms());
            log_info("cytube", "%s: backing off for %.1f s more (saved state)", r->channel, (double)wait / 1000);
            wait_then_connect(r, wait);
            continue;
        }
        if (ahead == AHEAD_RUNNING)
            continue; /* on_discovery goes on by itself */
        if (ahead == AHEAD_DONE)
            acquire_slot_then_connect(r);
        else if (ahead == AHEAD_FAILED)
            room_lost(r, r->last_error);
        else
            room_connect(r);
    }
}

void cytube_start_joining(struct cytube *cy)
{
    if (cy->joining || cy->closing)
        return;
    cy->joining = 1;
    for (struct room *r = cy->rooms; r; r = r->next) {
        if (r->status_held) {
            r->status_held = 0;
            publish_status(r, r->last_error);
        }
        if (!r->sio_connected || !r->wsi || r->wsi == WSI_CONNECTING || r->state != RS_HANDSHAKE)
            continue;
        /* joinChannel first: what the server sent before it is tagged as if it
         * had come after, as it did when rooms connected only now. */
        join_channel(r);
        while (r->early_head && r->wsi) {
            struct early_frame *f = r->early_head;
            r->early_head = f->next;
            if (!r->early_head)
                r->early_tail = NULL;
            r->early_count--;
            handle_frame(r, f->data, f->len);
            free(f);
        }
    }
}

static void timer_closed(uv_handle_t *h) { (void)h; }

static int any_socket(struct cytube *cy)
{
    for (struct room *r = cy->rooms; r; r = r->next)
        if (r->wsi)
            return 1;
    return 0;
}

static void finish_close(struct cytube *cy)
{
    uv_timer_stop(&cy->t_close);
    uv_close((uv_handle_t *)&cy->t_close, timer_closed);
    for (struct room *r = cy->rooms; r; r = r->next) {
        if (r->wsi == WSI_CONNECTING)
            r->wsi = NULL;
        if (r->wsi)
            lws_set_opaque_user_data(r->wsi, NULL);
        r->wsi = NULL;
        if (r->timers_ready) {
            uv_close((uv_handle_t *)&r->t_stage, timer_closed);
            uv_close((uv_handle_t *)&r->t_ping, timer_closed);
            uv_close((uv_handle_t *)&r->t_send, timer_closed);
        }
    }
    if (cy->http)
        http_client_close(cy->http); /* before lws goes: it lets go of its connections */
    if (cy->lws)
        lws_context_destroy(cy->lws); /* first half: closes lws' handles on the loop */
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
    for (struct room *r = cy->rooms; r; r = r->next) {
        if (r->discovery) {
            http_cancel(r->discovery);
            r->discovery = NULL;
        }
        if (r->resolving) {
            r->resolving->data = NULL;
            uv_cancel((uv_req_t *)r->resolving);
            r->resolving = NULL;
        }
        if (r->timers_ready) {
            uv_timer_stop(&r->t_stage);
            uv_timer_stop(&r->t_ping);
            uv_timer_stop(&r->t_send);
        }
        clear_output(r, 0);
        if (r->wsi && r->wsi != WSI_CONNECTING) {
            free_frames(r);
            if (r->sio_connected)
                queue_frame(r, SIO_FRAME_DISCONNECT, 2);
            close_socket(r);
            log_info("cytube", "%s: leaving", r->channel);
        }
    }
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
    if (cy->lws)
        lws_context_destroy(cy->lws); /* second half, after the loop has closed its handles */
    cy->lws = NULL;
    http_client_free(cy->http);
    while (cy->rooms) {
        struct room *r = cy->rooms;
        cy->rooms = r->next;
        reset_session(r);
        clear_output(r, 0);
        free(r->rx);
        free(r->channel);
        free(r->server);
        free(r->username);
        free(r->password);
        free(r->channel_password);
        free(r);
    }
    while (cy->slots) {
        struct server_slot *s = cy->slots;
        cy->slots = s->next;
        free(s);
    }
    free(cy->ca_file);
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
    struct room *r = find_room(cy, channel);
    if (!r)
        return NULL;
    json_t *o = json_object();
    if (!o)
        return NULL;
    double burst, sustained, cooldown_s;
    flood_params(r, &burst, &sustained, &cooldown_s);
    json_object_set_new(o, "channel", json_string(r->channel));
    json_object_set_new(o, "server", json_string(r->server));
    json_object_set_new(o, "enabled", json_boolean(r->enabled));
    json_object_set_new(o, "state", json_string(STATE_NAMES[r->state]));
    json_object_set_new(o, "joined", json_boolean(r->state == RS_JOINED));
    json_object_set_new(o, "connected", json_boolean(r->sio_connected && r->wsi));
    if (r->last_error[0])
        json_object_set_new(o, "error", json_string(r->last_error));
    if (r->me)
        json_object_set_new(o, "name", json_string(r->me));
    json_object_set_new(o, "logged_in", json_boolean(r->logged_in));
    json_object_set_new(o, "rank", json_real(r->rank));
    json_object_set_new(o, "permissions", r->permissions ? json_deep_copy(r->permissions) : json_object());
    json_object_set_new(o, "options", r->options ? json_deep_copy(r->options) : json_object());
    json_object_set_new(o, "users", r->users ? json_deep_copy(r->users) : json_object());
    if (r->media)
        json_object_set_new(o, "media", json_deep_copy(r->media));
    if (r->current_uid)
        json_object_set_new(o, "current_uid", json_deep_copy(r->current_uid));
    if (r->leader)
        json_object_set_new(o, "leader", json_string(r->leader));
    json_object_set_new(o, "playlist_locked", json_boolean(r->playlist_locked));
    json_object_set_new(o, "usercount", json_integer(r->usercount));
    json_object_set_new(o, "flood", json_pack("{s:f, s:f, s:f}", "burst", burst, "sustained", sustained, "slowdown", r->slow));
    json_object_set_new(o, "queue_depth", json_integer(r->out_len));
    json_object_set_new(o, "attempts", json_integer(r->backoff.attempts));
    if (r->state == RS_BACKOFF) {
        uint64_t now = uv_now(cy->loop);
        double left = r->next_attempt_ms > now ? (double)(r->next_attempt_ms - now) / 1000.0 : 0;
        json_object_set_new(o, "next_attempt_in", json_real(left));
    }
    json_object_set_new(o, "counters",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "events_in", (json_int_t)r->events_in,
                                  "bad_frames", (json_int_t)r->bad_frames, "lines_sent", (json_int_t)r->lines_sent,
                                  "lines_dropped", (json_int_t)r->lines_dropped, "cooldowns", (json_int_t)r->cooldowns,
                                  "resent", (json_int_t)r->resent, "reconnects", (json_int_t)r->reconnects,
                                  "connects", (json_int_t)r->connects));
    return o;
}
