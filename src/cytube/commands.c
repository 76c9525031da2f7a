/* commands: what plugins ask of a room over the bus — chat lines and PMs
 * (cleaned, split, queued on the pacer), chat commands (/me, /kick ...) and
 * playlist, poll and leader verbs, each checked against the channel's
 * permissions before it goes; answered on the bus. A chat line for a room
 * that is down is also published as `<type>.failed` for the retry plugin.
 * Calls room.c (publish, emit, pump), channel, pacer, text; nothing calls
 * back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "core/event.h"
#include "core/event_json.h"
#include "core/log.h"
#include "cytube/room_internal.h"
#include "cytube/text.h"

#define MAX_SPLIT_LINES 64       /* one plugin message makes at most this many lines */

static void answer(struct cytube *cy, struct event *ev, const char *error, json_t *value)
{
    if (error)
        log_repeat(&cy->warnings, ev->type, "%s refused: %s", ev->type, error);
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
    if (!r->sio_connected || !transport_has_socket(&r->conn)) {
        snprintf(why, n, "room down (%s)", room_state_name(r->state));
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
    room_publish(r, type, EVENT_PRIO_URGENT, failed, 0, 0);
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
    if (n > pacer_space(&r->pacer)) {
        for (int i = 0; i < n; i++)
            free(lines[i]);
        r->lines_dropped += (uint64_t)n;
        answer(cy, ev, "dropped: the room's outbound queue is full", NULL);
        return;
    }
    for (int i = 0; i < n; i++)
        pacer_enqueue(&r->pacer, pm ? PACER_PM : PACER_CHAT, to, lines[i], 1, 1);
    json_t *ok = json_pack("{s:b, s:i}", "ok", 1, "lines", n);
    answer(cy, ev, NULL, ok);
    json_decref(ok);
    room_pump(r);
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
        !(c->node ? channel_permitted(&r->ch, c->node, why, sizeof why) : channel_min_rank(&r->ch, c->rank, c->name, why, sizeof why))) {
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
    int track = strcmp(c->name, "me") == 0 || strcmp(c->name, "sp") == 0;
    if (pacer_enqueue(&r->pacer, PACER_CHAT, NULL, text, c->cost, track) != 0) {
        answer(cy, ev, "dropped: the room's outbound queue is full", NULL);
        return;
    }
    answer(cy, ev, NULL, NULL);
    room_pump(r);
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
            ok = channel_permitted(&r->ch, channel_playlist_node(&r->ch, "playlistnext", "oplaylistnext"), why, sizeof why);
        } else {
            ok = channel_permitted(&r->ch, channel_playlist_node(&r->ch, "playlistadd", "oplaylistadd"), why, sizeof why);
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
        } else if ((ok = channel_permitted(&r->ch, channel_playlist_node(&r->ch, "playlistdelete", "oplaylistdelete"), why, sizeof why))) {
            arg = json_deep_copy(uid);
        }
    } else if (ok && strcmp(verb, "moveMedia") == 0) {
        json_t *from = json_object_get(data, "from"), *after = json_object_get(data, "after");
        if (!json_is_integer(from) || !(json_is_integer(after) || json_is_string(after))) {
            snprintf(why, sizeof why, "cytube.moveMedia needs {room, from (uid), after (uid|\"prepend\"|\"append\")}");
            ok = 0;
        } else if ((ok = channel_permitted(&r->ch, channel_playlist_node(&r->ch, "playlistmove", "oplaylistmove"), why, sizeof why))) {
            arg = json_pack("{s:O, s:O}", "from", from, "after", after);
        }
    } else if (ok && strcmp(verb, "jumpTo") == 0) {
        json_t *uid = json_object_get(data, "uid");
        if (!json_is_integer(uid) && !json_is_string(uid)) {
            snprintf(why, sizeof why, "cytube.jumpTo needs {room, uid}");
            ok = 0;
        } else if ((ok = channel_permitted(&r->ch, channel_playlist_node(&r->ch, "playlistjump", "oplaylistjump"), why, sizeof why))) {
            arg = json_deep_copy(uid);
        }
    } else if (ok && strcmp(verb, "playNext") == 0) {
        ok = channel_permitted(&r->ch, channel_playlist_node(&r->ch, "playlistjump", "oplaylistjump"), why, sizeof why);
    } else if (ok && strcmp(verb, "voteskip") == 0) {
        ok = channel_permitted(&r->ch, "voteskip", why, sizeof why);
        if (ok && !channel_allows_voteskip(&r->ch)) {
            snprintf(why, sizeof why, "refused: the channel does not allow voteskips");
            ok = 0;
        }
    } else if (ok && strcmp(verb, "assignLeader") == 0) {
        const char *name = json_string_value(json_object_get(data, "name"));
        if (!name) {
            snprintf(why, sizeof why, "cytube.assignLeader needs {room, name} (\"\" to clear)");
            ok = 0;
        } else if ((ok = channel_permitted(&r->ch, "leaderctl", why, sizeof why))) { /* else the server kicks */
            arg = json_pack("{s:s}", "name", name);
        }
    } else if (ok && strcmp(verb, "newPoll") == 0) {
        const char *title = json_string_value(json_object_get(data, "title"));
        json_t *opts = json_object_get(data, "opts");
        if (!title || !json_is_array(opts) || json_array_size(opts) == 0) {
            snprintf(why, sizeof why, "cytube.newPoll needs {room, title, opts = {...}, obscured?, timeout?}");
            ok = 0;
        } else if ((ok = channel_permitted(&r->ch, "pollctl", why, sizeof why))) {
            arg = json_pack("{s:s, s:O, s:b}", "title", title, "opts", opts, "obscured",
                            json_is_true(json_object_get(data, "obscured")));
            json_t *timeout = json_object_get(data, "timeout");
            if (json_is_integer(timeout))
                json_object_set(arg, "timeout", timeout);
        }
    } else if (ok && strcmp(verb, "closePoll") == 0) {
        ok = channel_permitted(&r->ch, "pollctl", why, sizeof why);
    }
    if (!ok) {
        answer(cy, ev, why, NULL);
        json_decref(arg);
        return;
    }
    int rc = room_emit(r, verb, arg);
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
    struct room *r = room_find(cy, channel);
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


int commands_attach(struct cytube *cy)
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
