/* http_curl: HTTP requests on the libuv loop through libcurl's multi
 * interface (curl_multi_socket_action with uv_poll_t and a uv_timer_t), with
 * the limits (time, body size, redirects, requests in flight per owner and
 * overall, a bounded wait queue), the SSRF guard on every connection, and
 * counters for metrics. libcurl is dlopen'ed on the first request, so a bot
 * that never calls http pays nothing for it. Uses guard, libuv, libcurl
 * (dlopen), log. */
#ifndef DAZ_HTTP_CURL_LOOP_H
#define DAZ_HTTP_CURL_LOOP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http/guard.h"

struct http_curl;
struct http_call;

struct http_settings {
    long timeout_ms;           /* default per request */
    size_t max_bytes;          /* default body cap */
    long max_redirects;
    int max_in_flight;         /* overall */
    int max_in_flight_per_owner;
    int max_queued;            /* waiting beyond the caps; past it: "busy" */
    const char *user_agent;    /* copied */
    struct http_guard guard;   /* the allow list: taken over by http_curl_new */
    const char *const *resolve;/* "host:port:addr" (as curl --resolve), copied */
    int resolve_count;
};

enum http_outcome {
    HTTP_OK = 0,   /* an answer, whatever its status */
    HTTP_TIMEOUT,
    HTTP_TOO_LARGE,
    HTTP_REFUSED,
    HTTP_TLS,
    HTTP_DNS,
    HTTP_CONNECT,
    HTTP_BUSY,
    HTTP_CANCELLED,
    HTTP_ERROR,
    HTTP_OUTCOMES
};
extern const char *const http_outcome_names[HTTP_OUTCOMES];

#define HTTP_HIST_BUCKETS 10
extern const double http_hist_bounds[HTTP_HIST_BUCKETS];

/* A header of the answer, name in lower case. */
struct http_header {
    char *name, *value;
};

/* What a finished request holds (valid until http_call_free). */
struct http_response {
    long status;
    char *body;
    size_t body_len;
    char *url;                  /* after redirects */
    struct http_header *headers;
    size_t header_count;
    const char *error;          /* NULL on HTTP_OK: "timeout", "tls: ...", ... */
    enum http_outcome outcome;
};

typedef void (*http_done_fn)(struct http_call *r, void *ctx);

/* Creating the client costs a few hundred bytes; libcurl is loaded by the
 * first http_call_submit. */
struct http_curl *http_curl_new(uv_loop_t *loop, struct http_settings *s);

/* Builds a request. `owner` names who asks (a plugin), for the per-owner cap
 * and the metrics. timeout_ms/max_bytes 0: the defaults; follow: redirects.
 * Returns NULL when out of memory. */
struct http_call *http_call_new(struct http_curl *c, const char *owner, const char *method, const char *url);
int http_call_header(struct http_call *r, const char *name, const char *value);
int http_call_body(struct http_call *r, const char *body, size_t len);
void http_call_limits(struct http_call *r, long timeout_ms, size_t max_bytes, int follow);

/* Starts it (or queues it behind the caps). done(r, ctx) runs on the loop
 * when it ends, never from inside http_call_submit; the caller then reads
 * http_call_response and frees it. Returns 0, or -1 with *err set
 * ("busy", "http unavailable: ...", ...): then done never runs and the
 * request is still the caller's to free. */
int http_call_submit(struct http_call *r, http_done_fn done, void *ctx, const char **err);

/* Stops a submitted request and frees it; done will not run. */
void http_call_cancel(struct http_call *r);

const struct http_response *http_call_response(const struct http_call *r);
void http_call_free(struct http_call *r);

/* Counters for metrics and /health. */
struct http_owner_stats {
    const char *owner;
    int in_flight;
    uint64_t outcomes[HTTP_OUTCOMES];
};
struct http_curl_stats {
    int loaded;          /* libcurl is loaded */
    int in_flight, queued;
    uint64_t requests;
    unsigned long long hist[HTTP_HIST_BUCKETS + 1];
    double seconds_sum;
    const char *load_error;
};
void http_curl_stats(const struct http_curl *c, struct http_curl_stats *out);
typedef void (*http_owner_fn)(const struct http_owner_stats *s, void *ctx);
void http_curl_foreach_owner(const struct http_curl *c, http_owner_fn fn, void *ctx);

/* Cancels what is left and closes the loop handles (the loop must then run
 * until they close); http_curl_free after uv_run returns. */
void http_curl_close(struct http_curl *c);
void http_curl_free(struct http_curl *c);

#endif
