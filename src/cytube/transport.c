/* transport: see transport.h. libwebsockets runs on the libuv loop as a
 * foreign loop; name lookups go through uv_getaddrinfo (lws 4.1 here has no
 * async DNS of its own). */
#include "cytube/transport.h"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <math.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "cytube/discovery.h"

#define FRAME_LIMIT (1 << 20)    /* CyTube's maxPayload: larger frames are refused */
#define WSI_CONNECTING ((struct lws *)1) /* c->wsi while lws_client_connect_via_info runs */

struct transport_frame {
    struct transport_frame *next;
    size_t len;
    int chat;
    unsigned char buf[]; /* LWS_PRE bytes of headroom, then the frame */
};

struct server_slot {
    struct server_slot *next;
    char key[300];  /* host:port */
    double tokens;
    uint64_t refilled_ms;
};

struct transport {
    uv_loop_t *loop;
    struct lws_context *lws;
    struct http_client *http;
    int tls;
    int verify_tls;
    char *ca_file;
    int connect_burst;
    long connect_interval_ms;
    struct server_slot *slots;
};

static void conn_lost(struct transport_conn *c, const char *why) { c->ev->lost(c->ctx, why); }

static int lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct transport_conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    if (c && c->wsi != wsi && c->wsi != WSI_CONNECTING)
        c = NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (c) {
            char why[400];
            int n = in ? (int)(len > 0 && len < 200 ? len : strnlen(in, 200)) : 0;
            snprintf(why, sizeof why, "cannot connect to %.100s:%d: %.*s", c->host, c->port, n, in ? (const char *)in : "");
            conn_lost(c, why);
        }
        break;
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (c)
            c->ev->established(c->ctx);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE:
        if (!c)
            break;
        if (lws_frame_is_binary(wsi)) {
            c->binary_frames++;
            break;
        }
        if (c->rx_len + len > FRAME_LIMIT) {
            char why[100];
            snprintf(why, sizeof why, "a frame from the server exceeds %d bytes", FRAME_LIMIT);
            c->ev->trouble(c->ctx, why);
            c->rx_len = 0;
            return -1;
        }
        if (c->rx_len + len + 1 > c->rx_cap) {
            size_t cap = c->rx_cap ? c->rx_cap : 4096;
            while (cap < c->rx_len + len + 1)
                cap *= 2;
            char *b = realloc(c->rx, cap);
            if (!b)
                return -1;
            c->rx = b;
            c->rx_cap = cap;
        }
        memcpy(c->rx + c->rx_len, in, len);
        c->rx_len += len;
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0) {
            size_t n = c->rx_len;
            c->rx_len = 0;
            c->rx[n] = '\0';
            c->ev->frame(c->ctx, c->rx, n);
        }
        break;
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!c)
            break;
        if (c->want_kill)
            return -1;
        if (c->tx_head) {
            struct transport_frame *f = c->tx_head;
            c->tx_head = f->next;
            if (!c->tx_head)
                c->tx_tail = NULL;
            c->tx_count--;
            int w = lws_write(wsi, f->buf + LWS_PRE, f->len, LWS_WRITE_TEXT);
            int chat = f->chat;
            free(f);
            if (w < 0)
                return -1;
            if (chat) {
                c->chat_unwritten--;
                c->ev->chat_written(c->ctx);
            }
            if (c->tx_head || c->want_close)
                lws_callback_on_writable(wsi);
            break;
        }
        if (c->want_close) {
            lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
            return -1;
        }
        break;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (c)
            conn_lost(c, NULL);
        break;
    default:
        break;
    }
    return 0;
}

static const struct lws_protocols PROTOCOLS[] = {
    {"daz-cytube", lws_callback, 0, 65536, 0, NULL, 0},
    HTTP_CLIENT_PROTOCOL, /* discovery */
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void lws_log(int level, const char *line)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", line);
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    if (level & LLL_ERR)
        log_warn("lws", "%s", buf);
    else
        log_debug("lws", "%s", buf);
}

struct transport *transport_new(uv_loop_t *loop, int connect_burst, long connect_interval_ms, int verify_tls,
                                const char *ca_file)
{
    struct transport *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->loop = loop;
    t->connect_burst = connect_burst;
    t->connect_interval_ms = connect_interval_ms;
    t->verify_tls = verify_tls;
    t->ca_file = ca_file ? strdup(ca_file) : NULL;
    return t;
}

static int ensure_lws(struct transport *t, int tls, unsigned sockets)
{
    if (t->lws)
        return 0;
    lws_set_log_level(LLL_ERR | LLL_WARN, lws_log);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    static void *loops[1];
    loops[0] = t->loop;
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = PROTOCOLS;
    info.options = LWS_SERVER_OPTION_LIBUV;
    info.foreign_loops = loops;
    info.pcontext = &t->lws;
    info.user = t;
    /* TLS only when a room's server is https: loading the system CA bundle is
     * most of the start-up time and several MB of memory (make bench). */
    t->tls = tls;
    /* Without a limit lws sizes its fd tables by `ulimit -n` and zeroes them:
     * 320 kB at 20,000 fds, 16 MB at 1,048,576. Lws itself needs a few. */
    info.fd_limit_per_thread = sockets + 8;
    if (t->tls) {
        info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
        /* Debian's lws 4.1 was built with LWS_OPENSSL_CLIENT_CERTS "../share":
         * without an explicit bundle no certificate would ever verify. */
        info.client_ssl_ca_filepath = t->ca_file;
    }
    t->lws = lws_create_context(&info);
    if (!t->lws) {
        log_error("cytube", "cannot create the libwebsockets context (is libwebsockets-evlib-uv installed?)");
        return -1;
    }
    return 0;
}

int transport_setup(struct transport *t, int tls, unsigned sockets)
{
    /* Discovery runs on the lws context too (and shares its TLS setup). */
    if (!t->http && ensure_lws(t, tls, sockets) == 0)
        t->http = http_client_new(t->loop, t->lws, t->tls, t->verify_tls);
    return t->http ? 0 : -1;
}

struct http_client *transport_http(const struct transport *t) { return t->http; }

int transport_tls(const struct transport *t) { return t->tls; }

static struct server_slot *slot_for(struct transport *t, const char *key)
{
    for (struct server_slot *s = t->slots; s; s = s->next)
        if (strcmp(s->key, key) == 0)
            return s;
    struct server_slot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    snprintf(s->key, sizeof s->key, "%s", key);
    s->tokens = t->connect_burst;
    s->refilled_ms = uv_now(t->loop);
    s->next = t->slots;
    t->slots = s;
    return s;
}

uint64_t transport_slot_wait(struct transport *t, const char *host, int port)
{
    char key[300];
    snprintf(key, sizeof key, "%s:%d", host, port);
    struct server_slot *s = slot_for(t, key);
    if (!s)
        return 0;
    uint64_t now = uv_now(t->loop);
    double interval = (double)t->connect_interval_ms;
    s->tokens += (double)(now - s->refilled_ms) / (interval > 0 ? interval : 1);
    if (s->tokens > t->connect_burst)
        s->tokens = t->connect_burst;
    s->refilled_ms = now;
    if (s->tokens < 1)
        return (uint64_t)ceil((1 - s->tokens) * interval);
    s->tokens -= 1;
    return 0;
}

void transport_close(struct transport *t)
{
    if (t->http)
        http_client_close(t->http); /* before lws goes: it lets go of its connections */
    if (t->lws)
        lws_context_destroy(t->lws); /* first half: closes lws' handles on the loop */
}

void transport_free(struct transport *t)
{
    if (!t)
        return;
    if (t->lws)
        lws_context_destroy(t->lws); /* second half, after the loop has closed its handles */
    t->lws = NULL;
    http_client_free(t->http);
    while (t->slots) {
        struct server_slot *s = t->slots;
        t->slots = s->next;
        free(s);
    }
    free(t->ca_file);
    free(t);
}

void transport_conn_init(struct transport_conn *c, struct transport *t, const struct transport_events *ev, void *ctx)
{
    memset(c, 0, sizeof *c);
    c->t = t;
    c->ev = ev;
    c->ctx = ctx;
}

void transport_conn_free(struct transport_conn *c)
{
    transport_reset(c);
    free(c->rx);
    c->rx = NULL;
    c->rx_cap = 0;
}

int transport_set_target(struct transport_conn *c, const char *url)
{
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        c->tls = 1, p = url + 8, c->port = 443;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        c->tls = 0, p = url + 7, c->port = 80;
    } else {
        return -1;
    }
    const char *host_end;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (!close)
            return -1;
        snprintf(c->host, sizeof c->host, "%.*s", (int)(close - p - 1), p + 1);
        host_end = close + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        snprintf(c->host, sizeof c->host, "%.*s", (int)(host_end - p), p);
    }
    if (!c->host[0])
        return -1;
    if (*host_end == ':') {
        char *end;
        long port = strtol(host_end + 1, &end, 10);
        if (port <= 0 || port > 65535)
            return -1;
        c->port = (int)port;
    }
    snprintf(c->path, sizeof c->path, "/socket.io/?EIO=4&transport=websocket");
    return 0;
}

static void ws_connect(struct transport_conn *c)
{
    struct transport *t = c->t;
    if (!t->lws) {
        c->ev->unusable(c->ctx, "no WebSocket support (libwebsockets context)");
        return;
    }
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    char host_header[300];
    snprintf(host_header, sizeof host_header, "%s", c->host);
    ci.context = t->lws;
    ci.address = c->address;
    ci.port = c->port;
    ci.path = c->path;
    ci.host = host_header;
    ci.origin = host_header;
    ci.protocol = NULL;
    ci.local_protocol_name = PROTOCOLS[0].name;
    ci.opaque_user_data = c;
    if (c->tls)
        ci.ssl_connection = LCCSCF_USE_SSL | (t->verify_tls ? 0
                                                            : LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE |
                                                                  LCCSCF_ALLOW_EXPIRED |
                                                                  LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK);
    c->ev->connecting(c->ctx);
    /* lws may report a failure from inside this call; the placeholder lets
     * the callback recognise the connection until the call returns. */
    c->wsi = WSI_CONNECTING;
    struct lws *w = lws_client_connect_via_info(&ci);
    if (c->wsi != WSI_CONNECTING)
        return; /* already reported and handled */
    c->wsi = w;
    if (!w) {
        char why[400];
        snprintf(why, sizeof why, "cannot start a connection to %s:%d", c->host, c->port);
        c->ev->failed(c->ctx, why);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct transport_conn *c = req->data;
    free(req);
    if (!c) { /* cancelled */
        uv_freeaddrinfo(res);
        return;
    }
    c->resolving = NULL;
    if (status != 0 || !res) {
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", c->host, uv_strerror(status));
        uv_freeaddrinfo(res);
        c->ev->failed(c->ctx, why);
        return;
    }
    const void *addr = res->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                                                  : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    inet_ntop(res->ai_family, addr, c->address, sizeof c->address);
    uv_freeaddrinfo(res);
    ws_connect(c);
}

void transport_open(struct transport_conn *c)
{
    uv_getaddrinfo_t *req = calloc(1, sizeof *req);
    if (!req) {
        conn_lost(c, "out of memory");
        return;
    }
    req->data = c;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(c->t->loop, req, on_resolved, c->host, NULL, &hints);
    if (rc != 0) {
        free(req);
        char why[400];
        snprintf(why, sizeof why, "cannot resolve %s: %s", c->host, uv_strerror(rc));
        c->ev->failed(c->ctx, why);
        return;
    }
    c->resolving = req;
}

void transport_cancel_lookup(struct transport_conn *c)
{
    if (!c->resolving)
        return;
    c->resolving->data = NULL;
    uv_cancel((uv_req_t *)c->resolving);
    c->resolving = NULL;
}

void transport_detach(struct transport_conn *c)
{
    if (c->wsi && c->wsi != WSI_CONNECTING)
        lws_set_opaque_user_data(c->wsi, NULL);
    c->wsi = NULL;
}

void transport_drop_output(struct transport_conn *c)
{
    while (c->tx_head) {
        struct transport_frame *f = c->tx_head;
        c->tx_head = f->next;
        free(f);
    }
    c->tx_tail = NULL;
    c->tx_count = 0;
    c->chat_unwritten = 0;
}

void transport_reset(struct transport_conn *c)
{
    c->want_close = c->want_kill = 0;
    c->rx_len = 0;
    transport_drop_output(c);
}

int transport_send(struct transport_conn *c, const char *data, size_t len, int chat)
{
    struct transport_frame *f = malloc(sizeof *f + LWS_PRE + len);
    if (!f)
        return -1;
    f->next = NULL;
    f->len = len;
    f->chat = chat;
    c->chat_unwritten += chat;
    memcpy(f->buf + LWS_PRE, data, len);
    if (c->tx_tail)
        c->tx_tail->next = f;
    else
        c->tx_head = f;
    c->tx_tail = f;
    c->tx_count++;
    if (c->wsi)
        lws_callback_on_writable(c->wsi);
    return 0;
}

/* lws 4.1's LWS_TO_KILL_ASYNC did not close on the libuv loop, so the close
 * happens at the next writable turn. The timeout is a backstop for a socket
 * that never becomes writable; the lws close callback does the rest. */
void transport_shut(struct transport_conn *c, int kill)
{
    if (!c->wsi || c->wsi == WSI_CONNECTING)
        return;
    if (kill)
        c->want_kill = 1;
    else
        c->want_close = 1;
    lws_callback_on_writable(c->wsi);
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, kill ? 3 : 2);
}

int transport_has_socket(const struct transport_conn *c) { return c->wsi != NULL; }

int transport_is_open(const struct transport_conn *c) { return c->wsi && c->wsi != WSI_CONNECTING; }
