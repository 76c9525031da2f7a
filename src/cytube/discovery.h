/* http_client: HTTP GETs on the libuv loop through libwebsockets' HTTP client,
 * on the rooms' lws context (so https shares its TLS setup and CA bundle);
 * names are looked up with uv_getaddrinfo, redirects followed here, so
 * nothing blocks the loop. Used for CyTube discovery. Uses libwebsockets,
 * libuv.
 *
 * (Not libcurl: its global init sets up OpenSSL and libssh2 even for
 * http:// and loading it maps a dozen more libraries, ~3 MB of RSS for one
 * GET per room; see README, Performance.) */
#ifndef DAZ_HTTP_CLIENT_H
#define DAZ_HTTP_CLIENT_H

#include <libwebsockets.h>
#include <stddef.h>
#include <uv.h>

struct http_client;
struct http_request;

/* The lws protocol of the client's connections: list it among the protocols
 * of the context passed to http_client_new. */
int http_client_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
#define HTTP_CLIENT_PROTOCOL_NAME "daz-http"
#define HTTP_CLIENT_PROTOCOL {HTTP_CLIENT_PROTOCOL_NAME, http_client_lws_callback, 0, 0, 0, NULL, 0}

/* Completion: `status` is the HTTP status (0 when there was no answer) and
 * `error` NULL on a transport success (any status), else a short reason
 * ("timeout", "cannot connect to ...: ...", "response too large"). `body` is
 * NUL-terminated and valid only during the call. */
typedef void (*http_done_fn)(long status, const char *body, size_t len, const char *error, void *ctx);

/* `tls`: the context was created with TLS (else https:// URLs fail at once);
 * `verify`: check certificates and names (against the context's CA bundle). */
struct http_client *http_client_new(uv_loop_t *loop, struct lws_context *lws, int tls, int verify);

/* Starts a GET. Returns a handle (valid until the callback runs or
 * http_cancel), or NULL when the request could not be started (bad URL, out
 * of memory). The callback always runs from the loop, never inside http_get.
 * Up to 3 redirects are followed, to http:// or https:// only. */
struct http_request *http_get(struct http_client *c, const char *url, long timeout_ms, size_t max_body,
                              http_done_fn fn, void *ctx);
/* Abandons a request; its callback will not run. */
void http_cancel(struct http_request *r);

/* Cancels everything and closes the handles; run the loop until
 * http_client_closed() is true (the loop ends by itself), then free. Call it
 * before the lws context is destroyed. */
void http_client_close(struct http_client *c);
int http_client_closed(const struct http_client *c);
void http_client_free(struct http_client *c);

#endif
