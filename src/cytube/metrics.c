/* cytube_metrics: see cytube_metrics.h. */
#include "cytube/metrics.h"

#include <stdio.h>
#include <string.h>

static double num(json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : 0;
}

void cytube_metrics(struct metrics_out *out, void *ctx)
{
    struct cytube *cy = ctx;
    json_t *list = cytube_room_list(cy);
    json_t *rooms = json_object();
    static const struct {
        const char *counter, *metric, *help;
    } COUNTERS[] = {
        {"events_in", "daz_messages_received_total", "Socket.IO events received from the room"},
        {"lines_sent", "daz_messages_sent_total", "chat and PM lines sent to the room"},
        {"lines_dropped", "daz_room_lines_dropped_total", "chat lines dropped (queue full, room down, refused)"},
        {"cooldowns", "daz_room_cooldowns_total", "cooldown events: the server's flood limit refused a line"},
        {"reconnects", "daz_room_reconnects_total", "reconnects scheduled"},
        {"bad_frames", "daz_room_bad_frames_total", "malformed frames from the server, ignored"},
    };
    json_t *snaps[256];
    size_t n = json_array_size(list) < 256 ? json_array_size(list) : 256;
    for (size_t i = 0; i < n; i++)
        snaps[i] = cytube_room_snapshot(cy, json_string_value(json_array_get(list, i)));

    metrics_family(out, "daz_room_connected", "gauge", "1 when the room is joined (logged in when configured)");
    for (size_t i = 0; i < n; i++) {
        json_t *s = snaps[i];
        if (!s)
            continue;
        const char *channel = json_string_value(json_object_get(s, "channel"));
        const char *state = json_string_value(json_object_get(s, "state"));
        const char *error = json_string_value(json_object_get(s, "error"));
        int enabled = json_is_true(json_object_get(s, "enabled"));
        int joined = json_is_true(json_object_get(s, "joined"));
        metrics_sample(out, "daz_room_connected", "room", channel, joined);
        json_t *c = json_pack("{s:s, s:b, s:O?, s:O?, s:O?, s:O?}", "state", state, "joined", joined, "error",
                              json_object_get(s, "error"), "attempts", json_object_get(s, "attempts"),
                              "next_attempt_in", json_object_get(s, "next_attempt_in"), "counters",
                              json_object_get(s, "counters"));
        if (c)
            json_object_set_new(rooms, channel, c);
        if (enabled && !joined) {
            char why[400];
            snprintf(why, sizeof why, "room %s is %s%s%.300s", channel, state, error ? ": " : "", error ? error : "");
            metrics_not_ready(out, why);
            metrics_set_status(out, METRICS_DEGRADED, why);
        }
    }
    for (size_t k = 0; k < sizeof COUNTERS / sizeof *COUNTERS; k++) {
        metrics_family(out, COUNTERS[k].metric, "counter", COUNTERS[k].help);
        for (size_t i = 0; i < n; i++) {
            if (!snaps[i])
                continue;
            metrics_sample(out, COUNTERS[k].metric, "room", json_string_value(json_object_get(snaps[i], "channel")),
                           num(json_object_get(snaps[i], "counters"), COUNTERS[k].counter));
        }
    }
    metrics_family(out, "daz_room_queue_depth", "gauge", "chat lines waiting to be sent");
    for (size_t i = 0; i < n; i++)
        if (snaps[i])
            metrics_sample(out, "daz_room_queue_depth", "room", json_string_value(json_object_get(snaps[i], "channel")),
                           num(snaps[i], "queue_depth"));
    json_object_set_new(out->components, "rooms", rooms);
    for (size_t i = 0; i < n; i++)
        json_decref(snaps[i]);
    json_decref(list);
}
