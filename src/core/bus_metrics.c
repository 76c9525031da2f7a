/* bus_metrics: the bus's part of /health and /metrics (queues, drops per
 * type, pending requests). A bus that dropped events since the last refresh
 * makes Daz degraded for that refresh. Uses bus, health/exposition. */
#include "core/bus_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bus_walk {
    struct metrics_out *out;
    json_t *types;
    int pass;
};

static void bus_type_json(const struct bus_type_stats *s, void *ctx)
{
    struct bus_walk *w = ctx;
    json_object_set_new(w->types, s->type,
                        json_pack("{s:I, s:I, s:I, s:I, s:I}", "published", (json_int_t)s->published,
                                  "delivered", (json_int_t)s->delivered, "dropped", (json_int_t)s->dropped,
                                  "depth", (json_int_t)s->depth, "capacity", (json_int_t)s->capacity));
}

static void bus_type_metric(const struct bus_type_stats *s, void *ctx)
{
    struct bus_walk *w = ctx;
    static const char *const names[] = {"daz_events_received_total", "daz_events_processed_total",
                                        "daz_events_dropped_total", "daz_bus_queue_depth"};
    double values[] = {(double)s->published, (double)s->delivered, (double)s->dropped, (double)s->depth};
    metrics_sample(w->out, names[w->pass], "type", s->type, values[w->pass]);
}

void bus_metrics(struct metrics_out *out, void *bus_ptr)
{
    struct bus *bus = bus_ptr;
    static unsigned long long last_dropped;
    struct bus_walk w = {out, json_object(), 0};
    bus_foreach_type(bus, bus_type_json, &w);
    struct bus_totals t;
    bus_totals(bus, &t);
    json_object_set_new(out->components, "bus",
                        json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o}", "published", (json_int_t)t.published,
                                  "delivered", (json_int_t)t.delivered, "dropped", (json_int_t)t.dropped,
                                  "depth", (json_int_t)t.depth, "pending_requests",
                                  (json_int_t)t.pending_requests, "late_responses",
                                  (json_int_t)t.late_responses, "types", w.types));
    if (t.dropped > last_dropped) {
        char why[96];
        snprintf(why, sizeof why, "bus dropped %llu event(s) since the last check",
                 (unsigned long long)(t.dropped - last_dropped));
        metrics_set_status(out, METRICS_DEGRADED, why);
    }
    last_dropped = t.dropped;

    static const char *const help[][3] = {
        {"daz_events_received_total", "counter", "Events accepted by the bus, by type."},
        {"daz_events_processed_total", "counter", "Events dispatched to their subscribers, by type."},
        {"daz_events_dropped_total", "counter", "Events dropped or shed because a queue was full, by type."},
        {"daz_bus_queue_depth", "gauge", "Events waiting in the bus queue, by type."},
    };
    for (w.pass = 0; w.pass < 4; w.pass++) {
        metrics_family(out, help[w.pass][0], help[w.pass][1], help[w.pass][2]);
        bus_foreach_type(bus, bus_type_metric, &w);
    }
    metrics_one(out, "daz_bus_late_responses_total", "counter", "Responses that came after their request timed out.", (double)t.late_responses);
}
