/* http_client: HTTP requests with libcurl's multi interface on the libuv
 * loop (curl_multi_socket_action driven by uv_poll_t and a uv_timer_t), so
 * nothing blocks the loop. Used for CyTube discovery. Uses libcurl, libuv. */
#ifndef DAZ_HTTP_CLIENT_H
#define DAZ_HTTP_CLIENT_H

#include <stddef.h>
#include <uv.h>

struct http_client;
struct http_request;

/* Completion: `status` is the HTTP status (0 when there was no answer) and
 * `error` NULL on a transport success (any status), else a short reason
 * ("timeout", "connection refused: ...", "response too large"). `body` is
 * NUL-terminated and valid only during the call. */
typedef void (*http_done_fn)(long status, const char *body, size_t len, const char *error, void *ctx);

struct http_client *http_client_new(uv_loop_t *loop);

/* TLS for later requests: verify certificates (default on) against
 * `ca_file` (NULL: libcurl's default bundle). The string is copied. */
void http_client_set_tls(struct http_client *c, int verify, const char *ca_file);

/* Starts a GET. Returns a handle (valid until the callback runs or
 * http_cancel), or NULL when the request could not be started. The callback
 * always runs from the loop, never inside http_get. */
struct http_request *http_get(struct http_client *c, const char *url, long timeout_ms, size_t max_body,
                              http_done_fn fn, void *ctx);
/* Abandons a request; its callback will not run. */
void http_cancel(struct http_request *r);

/* Cancels everything and closes the handles; run the loop until
 * http_client_closed() is true (the loop ends by itself), then free. */
void http_client_close(struct http_client *c);
int http_client_closed(const struct http_client *c);
void http_client_free(struct http_client *c);

#endif
