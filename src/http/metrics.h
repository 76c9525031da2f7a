/* http_metrics: the HTTP client's part of /health (requests in flight and
 * queued, whether libcurl is loaded) and /metrics (daz_http_requests_total
 * by plugin and outcome, daz_http_request_seconds, daz_http_in_flight).
 * Uses http_curl, metrics. */
#ifndef DAZ_HTTP_METRICS_H
#define DAZ_HTTP_METRICS_H

#include "health/exposition.h"
#include "http/curl_loop.h"

/* A metrics provider; ctx is the struct http_curl (NULL: nothing). */
void http_metrics(struct metrics_out *out, void *client);

#endif
