/* metrics: builds the /health, /health/ready and /metrics documents on the
 * loop thread from registered providers (the bus, the plugins, the process,
 * and later the database and the rooms), on a timer, and hands them to the
 * health server. Uses health, jansson, libuv. */
#ifndef DAZ_METRICS_H
#define DAZ_METRICS_H

#include <jansson.h>
#include <stddef.h>
#include <uv.h>

#include "health/server.h"

struct metrics;

enum metrics_status { METRICS_UP = 0, METRICS_DEGRADED = 1, METRICS_DOWN = 2 };

/* What a provider writes into, once per refresh. */
struct metrics_out {
    json_t *components;   /* add your component: json_object_set_new(components, "bus", ...) */
    json_t *not_ready;    /* reasons /health/ready is 503 */
    json_t *problems;     /* reasons for degraded/down, shown in /health */
    enum metrics_status status;
    char *text;           /* Prometheus exposition being built */
    size_t len, cap;
    int oom;
};

typedef void (*metrics_provider_fn)(struct metrics_out *out, void *ctx);

/* Refreshes every interval_ms; h may be NULL (no server: nothing is built). */
struct metrics *metrics_new(uv_loop_t *loop, struct health *h, long interval_ms);
int metrics_add_provider(struct metrics *m, metrics_provider_fn fn, void *ctx);
/* Builds and publishes now (also done by the timer). */
void metrics_refresh(struct metrics *m);
/* Marks shutdown (health turns "down"), stops the timer, closes its handle. */
void metrics_close(struct metrics *m);
void metrics_free(struct metrics *m);

/* For providers. */
void metrics_set_status(struct metrics_out *out, enum metrics_status status, const char *reason);
void metrics_not_ready(struct metrics_out *out, const char *reason);
/* "# HELP" and "# TYPE" lines for a family. */
void metrics_family(struct metrics_out *out, const char *name, const char *type, const char *help);
/* One sample: name{label="value"} value. label may be NULL; the value is
 * escaped as the exposition format requires. */
void metrics_sample(struct metrics_out *out, const char *name, const char *label, const char *label_value,
                    double value);
/* A family with a single unlabelled sample: the common case. */
void metrics_one(struct metrics_out *out, const char *name, const char *type, const char *help, double value);
/* A histogram from cumulative-free bucket counts: counts[i] observations
 * <= bounds[i], counts[n] the rest. */
void metrics_histogram(struct metrics_out *out, const char *name, const char *label, const char *label_value,
                       const double *bounds, const unsigned long long *counts, size_t n, double sum);

#endif
