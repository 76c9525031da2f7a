/* http_metrics: see metrics.h. */
#include "http/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Two labels per sample, which metrics_sample does not do: the text is
 * appended here the way the exposition grows it. Plugin names are
 * [A-Za-z0-9_-] and outcomes fixed words, so nothing needs escaping. */
static void append_line(struct metrics_out *out, const char *line)
{
    size_t n = strlen(line);
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
    memcpy(out->text + out->len, line, n + 1);
    out->len += n;
}

static void owner_samples(const struct http_owner_stats *s, void *ctx)
{
    struct metrics_out *out = ctx;
    char line[400];
    for (int o = 0; o < HTTP_OUTCOMES; o++) {
        if (s->outcomes[o] == 0 && o != HTTP_OK)
            continue;
        snprintf(line, sizeof line, "daz_http_requests_total{plugin=\"%.200s\",outcome=\"%s\"} %llu\n", s->owner,
                 http_outcome_names[o], (unsigned long long)s->outcomes[o]);
        append_line(out, line);
    }
}

void http_metrics(struct metrics_out *out, void *ctx)
{
    struct http_curl *c = ctx;
    if (!c)
        return;
    struct http_curl_stats st;
    http_curl_stats(c, &st);
    json_t *comp = json_pack("{s:b, s:i, s:i, s:I}", "loaded", st.loaded, "in_flight", st.in_flight, "queued",
                             st.queued, "requests", (json_int_t)st.requests);
    if (comp && st.load_error)
        json_object_set_new(comp, "error", json_string(st.load_error));
    if (comp)
        json_object_set_new(out->components, "http", comp);
    metrics_family(out, "daz_http_requests_total", "counter", "HTTP requests from plugins by outcome");
    http_curl_foreach_owner(c, owner_samples, out);
    metrics_family(out, "daz_http_request_seconds", "histogram", "HTTP request time, seconds");
    metrics_histogram(out, "daz_http_request_seconds", NULL, NULL, http_hist_bounds, st.hist, HTTP_HIST_BUCKETS,
                      st.seconds_sum);
    metrics_one(out, "daz_http_in_flight", "gauge", "HTTP requests in flight", st.in_flight);
    metrics_one(out, "daz_http_queued", "gauge", "HTTP requests waiting for a free slot", st.queued);
}
