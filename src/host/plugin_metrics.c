/* plugin_metrics: the plugins' part of /health and /metrics (state, errors,
 * handler time, their own status()). A plugin that failed or is degraded
 * makes Daz degraded; one that has not started makes it not ready.
 * Uses host, health/exposition. */
#include "host/plugin_metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* A plugin's status() may return metrics = { {name, type, help, labels =
 * {one = "label"}, value}, ... } (README "Writing plugins"): exported as
 * they are, grouped by name, when the name is daz_<lowercase> and the type
 * a gauge or counter. The core's own families cannot be claimed. */
static int plugin_metric_ok(json_t *m)
{
    const char *name = json_string_value(json_object_get(m, "name"));
    const char *type = json_string_value(json_object_get(m, "type"));
    if (!name || !type || strncmp(name, "daz_", 4) != 0 || strncmp(name, "daz_plugin_", 11) == 0 ||
        strncmp(name, "daz_events_", 11) == 0 || !json_is_number(json_object_get(m, "value")))
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
            return 0;
    return strcmp(type, "gauge") == 0 || strcmp(type, "counter") == 0;
}

static void export_plugin_metrics(struct metrics_out *out, json_t *plugins)
{
    json_t *done = json_object(); /* family names already written */
    const char *pname, *fname;
    json_t *plugin, *unused;
    json_object_foreach(plugins, pname, plugin) {
        json_t *list = json_object_get(json_object_get(plugin, "custom"), "metrics");
        size_t i;
        json_t *m;
        json_array_foreach(list, i, m) {
            if (!plugin_metric_ok(m))
                continue;
            const char *name = json_string_value(json_object_get(m, "name"));
            if (json_object_get(done, name))
                continue;
            json_object_set_new(done, name, json_true());
            const char *help = json_string_value(json_object_get(m, "help"));
            metrics_family(out, name, json_string_value(json_object_get(m, "type")), help ? help : name);
            /* Every sample of this family, from every plugin. */
            const char *p2;
            json_t *plugin2;
            json_object_foreach(plugins, p2, plugin2) {
                size_t k;
                json_t *m2;
                json_array_foreach(json_object_get(json_object_get(plugin2, "custom"), "metrics"), k, m2) {
                    const char *n2 = json_string_value(json_object_get(m2, "name"));
                    if (!n2 || strcmp(n2, name) != 0 || !plugin_metric_ok(m2))
                        continue;
                    const char *label = NULL, *lvalue = NULL;
                    json_t *labels = json_object_get(m2, "labels");
                    json_object_foreach(labels, fname, unused) {
                        if (json_is_string(unused)) {
                            label = fname;
                            lvalue = json_string_value(unused);
                        }
                        break; /* one label */
                    }
                    metrics_sample(out, name, label, lvalue, json_number_value(json_object_get(m2, "value")));
                }
            }
        }
    }
    json_decref(done);
}

void plugin_metrics(struct metrics_out *out, void *host_ptr)
{
    struct host *h = host_ptr;
    char *text = host_status_json(h);
    json_t *plugins = text ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (!plugins)
        plugins = json_object();
    export_plugin_metrics(out, plugins);
    json_object_set_new(out->components, "plugins", plugins);

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
