/* transport: the rooms' sockets — one libwebsockets context on the libuv
 * loop (shared with discovery's HTTP client), name lookups, connection
 * attempts paced per server address, and per connection a queue of text
 * frames out and whole frames in. It knows nothing of rooms: a connection
 * reports to its owner through struct transport_events.
 * Uses libwebsockets, libuv, discovery (the HTTP client), log. */
#ifndef DAZ_CYTUBE_TRANSPORT_H
#define DAZ_CYTUBE_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct lws;
struct http_client;
struct transport;
struct transport_frame;

/* What a connection tells its owner (ctx); each may end or replace the
 * connection (transport_detach) before it returns. */
struct transport_events {
    void (*connecting)(void *ctx);                 /* resolved: the WebSocket connection starts */
    void (*established)(void *ctx);                /* the WebSocket is open */
    void (*frame)(void *ctx, const char *data, size_t len); /* a whole text frame, NUL-terminated */
    void (*chat_written)(void *ctx);               /* a frame sent with chat = 1 reached the wire */
    void (*trouble)(void *ctx, const char *why);   /* a problem that closes the connection; the close follows */
    void (*failed)(void *ctx, const char *why);    /* the attempt failed: this is the error */
    void (*lost)(void *ctx, const char *why);      /* gone: why, or NULL for a plain close */
    void (*unusable)(void *ctx, const char *why);  /* no WebSocket support at all */
};

struct transport_conn {
    struct transport *t;
    const struct transport_events *ev;
    void *ctx;
    /* target, from transport_set_target */
    int tls, port;
    char host[256], path[256], address[64];
    /* the socket */
    uv_getaddrinfo_t *resolving;
    struct lws *wsi;
    int want_close, want_kill;
    char *rx;
    size_t rx_len, rx_cap;
    struct transport_frame *tx_head, *tx_tail;
    size_t tx_count;
    int chat_unwritten;      /* frames sent with chat = 1 not yet on the wire */
    uint64_t binary_frames;  /* refused: CyTube speaks text */
};

struct transport *transport_new(uv_loop_t *loop, int connect_burst, long connect_interval_ms, int verify_tls,
                                const char *ca_file);
/* Makes the libwebsockets context (with TLS when `tls`, sized for `sockets`
 * connections) and the HTTP client on it, once. Returns 0, or -1. */
int transport_setup(struct transport *t, int tls, unsigned sockets);
struct http_client *transport_http(const struct transport *t);
int transport_tls(const struct transport *t); /* the context was made with TLS */
/* Connection attempts to one server address are paced like CyTube's per-IP
 * limit: a burst, then one per interval. Returns 0 when an attempt may start
 * now (and counts it), else the ms to wait. */
uint64_t transport_slot_wait(struct transport *t, const char *host, int port);
/* Shutdown, first half: lets go of every HTTP connection and closes
 * libwebsockets' handles on the loop. transport_free, after the loop has
 * run, finishes. */
void transport_close(struct transport *t);
void transport_free(struct transport *t);

void transport_conn_init(struct transport_conn *c, struct transport *t, const struct transport_events *ev, void *ctx);
void transport_conn_free(struct transport_conn *c);
/* Parses "http(s)://host[:port][/...]" into the connection's target.
 * Returns 0, or -1. */
int transport_set_target(struct transport_conn *c, const char *url);
/* Looks the host up, then opens the WebSocket; the outcome comes as events. */
void transport_open(struct transport_conn *c);
void transport_cancel_lookup(struct transport_conn *c);
/* Forgets the socket (its late callbacks are ignored). */
void transport_detach(struct transport_conn *c);
/* A fresh session: no frames queued, none half-received. */
void transport_reset(struct transport_conn *c);
void transport_drop_output(struct transport_conn *c);
/* Queues a text frame (copied); `chat` frames are reported when written.
 * Returns 0, or -1. */
int transport_send(struct transport_conn *c, const char *data, size_t len, int chat);
/* Closes at the next writable turn: after what is queued, or at once
 * without a goodbye when `kill`. */
void transport_shut(struct transport_conn *c, int kill);
int transport_has_socket(const struct transport_conn *c); /* open or being opened */
int transport_is_open(const struct transport_conn *c);    /* past lws_client_connect_via_info */

#endif
