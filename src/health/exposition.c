/* metrics: see metrics.h. */
#include "health/exposition.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/version.h"

#define MAX_PROVIDERS 16

struct provider {
    metrics_provider_fn fn;
    void *ctx;
};

struct metrics {
    uv_loop_t *loop;
    struct health *health;
    uv_timer_t timer;
    uv_timer_t heartbeat; /* separate and frequent: /health/live reacts fast */
    struct provider providers[MAX_PROVIDERS];
    int nproviders;
    int closing;
    double started;
};

static double monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------ text */

static void append(struct metrics_out *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void append(struct metrics_out *out, const char *fmt, ...)
{
    if (out->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(out->text + out->len, out->cap - out->len, fmt, ap);
        va_end(ap);
        if (n < 0)
            return;
        if ((size_t)n < out->cap - out->len) {
            out->len += (size_t)n;
            return;
        }
        size_t cap = out->cap * 2 + (size_t)n + 1;
        char *text = realloc(out->text, cap);
        if (!text) {
            out->oom = 1;
            return;
        }
        out->text = text;
        out->cap = cap;
    }
}

/* Appends n bytes as they are: most of the exposition is names and label
 * values, and a printf call per piece (or per character) made the
 * once-a-second rebuild hold the loop for a millisecond or more. */
static void append_raw(struct metrics_out *out, const char *s, size_t n)
{
    if (out->oom)
        return;
    if (out->len + n + 1 > out->cap) {
        size_t cap = out->cap * 2 + n + 1;
        char *text = realloc(out->text, cap);
        if (!text) {
            out->oom = 1;
            return;
        }
        out->text = text;
        out->cap = cap;
    }
    memcpy(out->text + out->len, s, n);
    out->len += n;
    out->text[out->len] = '\0';
}

static void append_str(struct metrics_out *out, const char *s)
{
    append_raw(out, s, strlen(s));
}

void metrics_family(struct metrics_out *out, const char *name, const char *type, const char *help)
{
    append(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values: backslash, double quote and newline are escaped. */
static void append_label(struct metrics_out *out, const char *label, const char *value)
{
    append_str(out, label);
    append_raw(out, "=\"", 2);
    const char *run = value;
    for (const char *p = value; *p; p++) {
        const char *esc = *p == '\\' ? "\\\\" : *p == '"' ? "\\\"" : *p == '\n' ? "\\n" : NULL;
        if (!esc)
            continue;
        append_raw(out, run, (size_t)(p - run));
        append_raw(out, esc, 2);
        run = p + 1;
    }
    append_str(out, run);
    append_raw(out, "\"", 1);
}

static void append_value(struct metrics_out *out, double value)
{
    if (value == (double)(long long)value && value < 1e15 && value > -1e15)
        append(out, " %lld\n", (long long)value);
    else
        append(out, " %.9g\n", value);
}

/* name{label="value"} value — or name value without a label. */
static void append_sample(struct metrics_out *out, const char *name, const char *suffix, const char *label,
                          const char *label_value, double value)
{
    append_str(out, name);
    append_str(out, suffix);
    if (label) {
        append_raw(out, "{", 1);
        append_label(out, label, label_value);
        append_raw(out, "}", 1);
    }
    append_value(out, value);
}

void metrics_sample(struct metrics_out *out, const char *name, const char *label, const char *label_value,
                    double value)
{
    append_sample(out, name, "", label, label_value, value);
}

void metrics_one(struct metrics_out *out, const char *name, const char *type, const char *help, double value)
{
    metrics_family(out, name, type, help);
    metrics_sample(out, name, NULL, NULL, value);
}

void metrics_histogram(struct metrics_out *out, const char *name, const char *label, const char *label_value,
                       const double *bounds, const unsigned long long *counts, size_t n, double sum)
{
    unsigned long long cumulative = 0;
    for (size_t i = 0; i <= n; i++) {
        cumulative += counts[i];
        append(out, "%s_bucket{", name);
        if (label) {
            append_label(out, label, label_value);
            append(out, ",");
        }
        if (i < n)
            append(out, "le=\"%g\"}", bounds[i]);
        else
            append(out, "le=\"+Inf\"}");
        append_value(out, (double)cumulative);
    }
    append_sample(out, name, "_sum", label, label_value, sum);
    append_sample(out, name, "_count", label, label_value, (double)cumulative);
}

void metrics_set_status(struct metrics_out *out, enum metrics_status status, const char *reason)
{
    if (status > out->status)
        out->status = status;
    if (reason)
        json_array_append_new(out->problems, json_string(reason));
}

void metrics_not_ready(struct metrics_out *out, const char *reason)
{
    json_array_append_new(out->not_ready, json_string(reason));
}

/* ------------------------------------------------------------ process */

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

static long rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    long pages_total, pages_rss;
    int ok = fscanf(f, "%ld %ld", &pages_total, &pages_rss) == 2;
    fclose(f);
    return ok ? pages_rss * sysconf(_SC_PAGESIZE) : -1;
}

static void process_provider(struct metrics_out *out, struct metrics *m)
{
    double uptime = monotonic() - m->started;
    metrics_one(out, "daz_uptime_seconds", "gauge", "Seconds since daz started.", uptime);
    long rss = rss_bytes();
    if (rss >= 0) {
        metrics_one(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", (double)rss);
    }
    long fds = open_fds();
    if (fds >= 0) {
        metrics_one(out, "process_open_fds", "gauge", "Number of open file descriptors.", (double)fds);
    }
}

/* ------------------------------------------------------------ refresh */

static const char *status_name(enum metrics_status s)
{
    return s == METRICS_UP ? "up" : s == METRICS_DEGRADED ? "degraded" : "down";
}

void metrics_refresh(struct metrics *m)
{
    if (!m->health)
        return;
    health_heartbeat(m->health);
    struct metrics_out out = {0};
    out.components = json_object();
    out.not_ready = json_array();
    out.problems = json_array();
    out.cap = 8192;
    out.text = malloc(out.cap);
    if (!out.components || !out.not_ready || !out.problems || !out.text)
        goto cleanup;
    out.text[0] = '\0';

    process_provider(&out, m);
    for (int i = 0; i < m->nproviders; i++)
        m->providers[i].fn(&out, m->providers[i].ctx);
    if (m->closing) {
        metrics_set_status(&out, METRICS_DOWN, "shutting down");
        metrics_not_ready(&out, "shutting down");
    }
    if (out.oom)
        goto cleanup;

    json_t *health = json_pack("{s:s, s:f, s:s, s:s, s:O, s:O}", "status", status_name(out.status),
                               "uptime_seconds", monotonic() - m->started, "version", DAZ_VERSION, "build",
                               DAZ_BUILD, "problems", out.problems, "components", out.components);
    size_t nr = json_array_size(out.not_ready);
    json_t *ready = json_pack("{s:b, s:O}", "ready", nr == 0, "reasons", out.not_ready);
    char *health_text = health ? json_dumps(health, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    char *ready_text = ready ? json_dumps(ready, JSON_INDENT(2)) : NULL;
    if (health_text && ready_text) {
        struct health_docs docs = {
            .health_json = health_text,
            .health_code = out.status == METRICS_DOWN ? 503 : 200,
            .ready_json = ready_text,
            .ready_code = nr == 0 ? 200 : 503,
            .metrics_text = out.text,
        };
        health_publish(m->health, &docs);
    }
    free(health_text);
    free(ready_text);
    json_decref(health);
    json_decref(ready);
cleanup:
    if (out.oom)
        log_warn("metrics", "out of memory building the health documents; serving the previous ones");
    json_decref(out.components);
    json_decref(out.not_ready);
    json_decref(out.problems);
    free(out.text);
}

static void on_timer(uv_timer_t *t)
{
    metrics_refresh(t->data);
}

static void on_heartbeat(uv_timer_t *t)
{
    struct metrics *m = t->data;
    health_heartbeat(m->health);
}

struct metrics *metrics_new(uv_loop_t *loop, struct health *h, long interval_ms)
{
    struct metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->loop = loop;
    m->health = h;
    m->started = monotonic();
    uv_timer_init(loop, &m->timer); /* cannot fail */
    uv_timer_init(loop, &m->heartbeat);
    m->timer.data = m->heartbeat.data = m;
    if (h) {
        uv_timer_start(&m->timer, on_timer, 0, (uint64_t)(interval_ms > 0 ? interval_ms : 1000));
        uv_timer_start(&m->heartbeat, on_heartbeat, 100, 100);
    }
    return m;
}

int metrics_add_provider(struct metrics *m, metrics_provider_fn fn, void *ctx)
{
    if (m->nproviders == MAX_PROVIDERS)
        return -1;
    m->providers[m->nproviders++] = (struct provider){fn, ctx};
    return 0;
}

static void on_closed(uv_handle_t *handle) { (void)handle; }

void metrics_close(struct metrics *m)
{
    if (!m || m->closing)
        return;
    m->closing = 1;
    m->nproviders = 0; /* the components are going away */
    metrics_refresh(m);
    uv_timer_stop(&m->timer);
    uv_timer_stop(&m->heartbeat);
    uv_close((uv_handle_t *)&m->timer, on_closed);
    uv_close((uv_handle_t *)&m->heartbeat, on_closed);
}

void metrics_free(struct metrics *m)
{
    free(m);
}
