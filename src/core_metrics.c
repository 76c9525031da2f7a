/* core_metrics: see core_metrics.h. The health rules for these components
 * (README "Health"): a plugin that failed or is degraded makes Daz degraded;
 * a plugin that has not started makes it not ready; events dropped by the
 * bus since the last refresh make it degraded for that refresh. */
#include "core_metrics.h"

#include <stdio.h>
#include <stdlib.h>

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

void core_metrics_bus(struct metrics_out *out, void *bus_ptr)
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
    metrics_family(out, "daz_bus_late_responses_total", "counter", "Responses that came after their request timed out.");
    metrics_sample(out, "daz_bus_late_responses_total", NULL, NULL, (double)t.late_responses);
}

struct plugin_walk {
    struct metrics_out *out;
    int pass;
};

static void plugin_metric(const struct plugin_stats *s, void *ctx)
{
    struct plugin_walk *w = ctx;
    struct metrics_out *out = w->out;
    switch (w->pass) {
    case 0:
        metrics_histogram(out, "daz_plugin_handler_seconds", "plugin", s->name, host_hist_bounds, s->hist,
                          HOST_HIST_BUCKETS, s->handler_seconds);
        break;
    case 1:
        metrics_sample(out, "daz_plugin_errors_total", "plugin", s->name, (double)s->errors);
        break;
    case 2:
        metrics_sample(out, "daz_plugin_events_handled_total", "plugin", s->name, (double)s->handled);
        break;
    case 3:
        metrics_sample(out, "daz_plugin_dropped_total", "plugin", s->name, (double)s->dropped);
        break;
    default: {
        char why[160];
        if (s->state == PLUGIN_FAILED) {
            snprintf(why, sizeof why, "plugin %s failed", s->name);
            metrics_set_status(out, METRICS_DEGRADED, why);
        } else if (s->degraded) {
            snprintf(why, sizeof why, "plugin %s is degraded (repeated errors)", s->name);
            metrics_set_status(out, METRICS_DEGRADED, why);
        }
        if (s->state != PLUGIN_STARTED) {
            snprintf(why, sizeof why, "plugin %s is not started", s->name);
            metrics_not_ready(out, why);
        }
    }
    }
}

void core_metrics_plugins(struct metrics_out *out, void *host_ptr)
{
    struct host *h = host_ptr;
    char *text = host_status_json(h);
    json_t *plugins = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    json_object_set_new(out->components, "plugins", plugins ? plugins : json_object());

    static const char *const help[][3] = {
        {"daz_plugin_handler_seconds", "histogram", "Time plugin handlers ran, by plugin."},
        {"daz_plugin_errors_total", "counter", "Handler errors and aborts, by plugin."},
        {"daz_plugin_events_handled_total", "counter", "Deliveries handled, by plugin."},
        {"daz_plugin_dropped_total", "counter", "Deliveries dropped because a plugin's inbox was full."},
    };
    struct plugin_walk w = {out, 0};
    for (w.pass = 0; w.pass < 5; w.pass++) {
        if (w.pass < 4)
            metrics_family(out, help[w.pass][0], help[w.pass][1], help[w.pass][2]);
        host_foreach_plugin(h, plugin_metric, &w);
    }
}
