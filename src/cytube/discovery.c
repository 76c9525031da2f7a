/* http_client: see http_client.h. A request: parse the URL, look the host up
 * (uv_getaddrinfo), connect with lws to that address with the name as Host
 * (and, for TLS, as SNI and the name the certificate must carry), collect
 * the body; a redirect starts over at its Location. One timer per request
 * bounds all of it, and its close frees the request. */
#include "cytube/discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"

#define MAX_REDIRECTS 3
#define USER_AGENT "daz (CyTube bot)"

struct http_request {
    struct http_client *client;
    struct lws *wsi;          /* the connection; NULL while looking up or between redirects */
    uv_getaddrinfo_t *lookup; /* in flight; its data points back here (NULL once abandoned) */
    uv_timer_t deadline;      /* the whole request, redirects included */
    int tls, port;
    char host[256];
    char path[1024];
    char error[320];
    long status;
    int redirects;
    int in_connect;     /* inside lws_client_connect_via_info: a failure is recorded, not reported */
    int connect_failed;
    int done;           /* reported or cancelled: nothing more happens but the close */
    char *body;
    size_t len, cap, max;
    http_done_fn fn;
    void *ctx;
    struct http_request *prev, *next;
};

struct http_client {
    uv_loop_t *loop;
    struct lws_context *lws;
    int tls, verify;
    struct http_request *requests;
    int open_handles; /* request timers not yet closed */
    int closing;
};

/* "http(s)://host[:port][/path][?query]" -> the request's target. */
static int parse_url(struct http_request *r, const char *url)
{
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        r->tls = 1, r->port = 443, p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        r->tls = 0, r->port = 80, p = url + 7;
    } else {
        return -1;
    }
    size_t authority = strcspn(p, "/?#");
    if (memchr(p, '@', authority))
        return -1; /* credentials in the URL: not supported */
    const char *host = p, *host_end;
    if (*p == '[') {
        const char *close = memchr(p, ']', authority);
        if (!close)
            return -1;
        host = p + 1;
        host_end = close;
        p = close + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        p = host_end;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len >= sizeof r->host)
        return -1;
    memcpy(r->host, host, host_len);
    r->host[host_len] = '\0';
    if (*p == ':') {
        char *end;
        long port = strtol(p + 1, &end, 10);
        if (end == p + 1 || port <= 0 || port > 65535)
            return -1;
        r->port = (int)port;
        p = end;
    }
    if (*p && !strchr("/?#", *p))
        return -1;
    int n = (int)strcspn(p, "#");
    int len = snprintf(r->path, sizeof r->path, "%s%.*s", *p == '/' ? "" : "/", n, p);
    return len < 0 || (size_t)len >= sizeof r->path ? -1 : 0;
}

/* A redirect's Location, absolute or relative to the current URL. */
static int follow(struct http_request *r, const char *location)
{
    char url[1600];
    const char *scheme = r->tls ? "https" : "http";
    int v6 = strchr(r->host, ':') != NULL;
    if (strncasecmp(location, "http://", 7) == 0 || strncasecmp(location, "https://", 8) == 0) {
        snprintf(url, sizeof url, "%s", location);
    } else if (location[0] == '/' && location[1] == '/') {
        snprintf(url, sizeof url, "%s:%s", scheme, location);
    } else if (strcspn(location, ":") < strcspn(location, "/?#")) {
        return -1; /* another scheme */
    } else if (location[0] == '/') {
        snprintf(url, sizeof url, "%s://%s%s%s:%d%s", scheme, v6 ? "[" : "", r->host, v6 ? "]" : "", r->port,
                 location);
    } else {
        int dir = (int)strcspn(r->path, "?");
        while (dir > 0 && r->path[dir - 1] != '/')
            dir--;
        snprintf(url, sizeof url, "%s://%s%s%s:%d%.*s%s", scheme, v6 ? "[" : "", r->host, v6 ? "]" : "", r->port,
                 dir, r->path, location);
    }
    return parse_url(r, url);
}

static void unlink_request(struct http_request *r)
{
    struct http_client *c = r->client;
    if (r->prev)
        r->prev->next = r->next;
    else if (c->requests == r)
        c->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void request_closed(uv_handle_t *h)
{
    struct http_request *r = h->data;
    r->client->open_handles--;
    free(r->body);
    free(r);
}

/* Lets go of the connection and the lookup; the request itself is freed
 * once its timer has closed. */
static void release(struct http_request *r)
{
    r->done = 1;
    unlink_request(r);
    if (r->wsi) {
        lws_set_opaque_user_data(r->wsi, NULL);
        lws_set_timeout(r->wsi, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        r->wsi = NULL;
    }
    if (r->lookup) {
        r->lookup->data = NULL;
        uv_cancel((uv_req_t *)r->lookup); /* its callback still runs, and frees it */
        r->lookup = NULL;
    }
    uv_timer_stop(&r->deadline);
    uv_close((uv_handle_t *)&r->deadline, request_closed);
}

/* Reports once, then releases. */
static void finish(struct http_request *r, long status, const char *error)
{
    if (r->done)
        return;
    r->done = 1;
    unlink_request(r);
    r->fn(status, r->body ? r->body : "", r->len, error, r->ctx);
    release(r);
}

/* The connection stops belonging to the request (lws closes it, or already did). */
static void detach(struct http_request *r, struct lws *wsi)
{
    lws_set_opaque_user_data(wsi, NULL);
    if (r->wsi == wsi)
        r->wsi = NULL;
}

static void on_deadline(uv_timer_t *t) { finish(t->data, 0, "timeout"); }

static void connect_to(struct http_request *r, const char *address)
{
    struct http_client *c = r->client;
    if (r->tls && !c->tls) {
        finish(r, 0, "https:// needs TLS, which is set up only when a room's server is https://");
        return;
    }
    char host[300];
    int v6 = strchr(r->host, ':') != NULL;
    if (r->port == (r->tls ? 443 : 80))
        snprintf(host, sizeof host, "%s%s%s", v6 ? "[" : "", r->host, v6 ? "]" : "");
    else
        snprintf(host, sizeof host, "%s%s%s:%d", v6 ? "[" : "", r->host, v6 ? "]" : "", r->port);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = c->lws;
    ci.address = address;
    ci.port = r->port;
    ci.path = r->path;
    ci.host = host;
    ci.method = "GET";
    ci.alpn = "http/1.1";
    ci.local_protocol_name = HTTP_CLIENT_PROTOCOL_NAME;
    ci.opaque_user_data = r;
    ci.ssl_connection = LCCSCF_HTTP_NO_FOLLOW_REDIRECT; /* followed here: lws would look names up blocking */
    if (r->tls)
        ci.ssl_connection |= LCCSCF_USE_SSL | (c->verify ? 0
                                                          : LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_INSECURE |
                                                                LCCSCF_ALLOW_EXPIRED |
                                                                LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK);
    r->status = 0;
    r->len = 0;
    r->connect_failed = 0;
    r->in_connect = 1;
    struct lws *w = lws_client_connect_via_info(&ci);
    r->in_connect = 0;
    if (!w || r->connect_failed) {
        if (!r->connect_failed)
            snprintf(r->error, sizeof r->error, "cannot start a connection to %s:%d", r->host, r->port);
        finish(r, 0, r->error);
        return;
    }
    r->wsi = w;
}

static void on_resolved(uv_getaddrinfo_t *q, int status, struct addrinfo *res)
{
    struct http_request *r = q->data;
    free(q);
    if (!r) { /* abandoned */
        uv_freeaddrinfo(res);
        return;
    }
    r->lookup = NULL;
    if (status != 0 || !res) {
        uv_freeaddrinfo(res);
        snprintf(r->error, sizeof r->error, "cannot resolve %s: %s", r->host, uv_strerror(status));
        finish(r, 0, r->error);
        return;
    }
    char address[INET6_ADDRSTRLEN];
    const void *a = res->ai_family == AF_INET6 ? (const void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr
                                               : (const void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr;
    const char *ok = inet_ntop(res->ai_family, a, address, sizeof address);
    uv_freeaddrinfo(res);
    if (!ok) {
        snprintf(r->error, sizeof r->error, "cannot resolve %s: unusable address", r->host);
        finish(r, 0, r->error);
        return;
    }
    connect_to(r, address);
}

static int start_lookup(struct http_request *r)
{
    uv_getaddrinfo_t *q = calloc(1, sizeof *q);
    if (!q)
        return UV_ENOMEM;
    q->data = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = uv_getaddrinfo(r->client->loop, q, on_resolved, r->host, NULL, &hints);
    if (rc != 0) {
        free(q);
        return rc;
    }
    r->lookup = q;
    return 0;
}

static int append_body(struct http_request *r, const void *data, size_t n)
{
    if (r->len + n > r->max)
        return -1;
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return -1;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return 0;
}

/* A 3xx with a Location: returns 1 when the request went on elsewhere (or
 * failed and was reported), 0 to take the answer as it is. */
static int redirect(struct http_request *r, struct lws *wsi)
{
    long s = r->status;
    if (s != 301 && s != 302 && s != 303 && s != 307 && s != 308)
        return 0;
    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_LOCATION);
    if (total <= 0)
        return 0;
    char location[1024];
    detach(r, wsi);
    if (total >= (int)sizeof location || lws_hdr_copy(wsi, location, sizeof location, WSI_TOKEN_HTTP_LOCATION) < 0) {
        finish(r, s, "redirect: the Location is too long");
        return 1;
    }
    if (++r->redirects > MAX_REDIRECTS) {
        finish(r, s, "too many redirects");
        return 1;
    }
    if (follow(r, location) != 0) {
        snprintf(r->error, sizeof r->error, "redirect to an unsupported URL: %.200s", location);
        finish(r, s, r->error);
        return 1;
    }
    int rc = start_lookup(r);
    if (rc != 0) {
        snprintf(r->error, sizeof r->error, "cannot resolve %s: %s", r->host, uv_strerror(rc));
        finish(r, 0, r->error);
    }
    return 1;
}

int http_client_lws_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
    struct http_request *r = wsi ? lws_get_opaque_user_data(wsi) : NULL;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (r) {
            int n = in ? (int)strnlen(in, 200) : 0;
            /* lws 4.1 says "connect SSL err 1: error:00000001:lib(0)::reason(1)"
             * for a certificate it refused; OpenSSL still knows why. */
            SSL *ssl = r->tls ? lws_get_ssl(wsi) : NULL;
            long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
            if (verify != X509_V_OK)
                snprintf(r->error, sizeof r->error, "cannot connect to %s:%d: TLS: the server's certificate: %s",
                         r->host, r->port, X509_verify_cert_error_string(verify));
            else
                snprintf(r->error, sizeof r->error, "cannot connect to %s:%d: %.*s", r->host, r->port, n,
                         in ? (const char *)in : "");
            detach(r, wsi);
            if (r->in_connect)
                r->connect_failed = 1; /* connect_to reports it when lws returns */
            else
                finish(r, 0, r->error);
        }
        return 0;
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        unsigned char **p = in, *end = *p + len;
        if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_USER_AGENT, (const unsigned char *)USER_AGENT,
                                         (int)strlen(USER_AGENT), p, end))
            return -1;
        return 0;
    }
    case LWS_CALLBACK_ESTABLISHED_CLIENT_HTTP:
        if (!r)
            return -1;
        r->status = (long)lws_http_client_http_response(wsi);
        if (redirect(r, wsi))
            return -1; /* this connection is done */
        return 0;
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP: {
        if (!r)
            return -1;
        char buf[LWS_PRE + 4096];
        char *px = buf + LWS_PRE;
        int n = (int)sizeof buf - LWS_PRE;
        return lws_http_client_read(wsi, &px, &n) < 0 ? -1 : 0; /* the body comes as ..._HTTP_READ */
    }
    case LWS_CALLBACK_RECEIVE_CLIENT_HTTP_READ:
        if (!r)
            return -1;
        if (append_body(r, in, len) != 0) {
            detach(r, wsi);
            finish(r, r->status, "response too large");
            return -1;
        }
        return 0;
    case LWS_CALLBACK_COMPLETED_CLIENT_HTTP:
        if (!r)
            return -1;
        detach(r, wsi);
        finish(r, r->status, NULL);
        return -1; /* one request per connection: no idle sockets to keep */
    case LWS_CALLBACK_CLOSED_CLIENT_HTTP:
        if (r) {
            detach(r, wsi);
            /* An answer without a length ends with the connection. */
            finish(r, r->status, r->status ? NULL : "the connection closed before an answer");
        }
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

struct http_client *http_client_new(uv_loop_t *loop, struct lws_context *lws, int tls, int verify)
{
    if (!lws)
        return NULL;
    struct http_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->lws = lws;
    c->tls = tls;
    c->verify = verify;
    return c;
}

struct http_request *http_get(struct http_client *c, const char *url, long timeout_ms, size_t max_body,
                              http_done_fn fn, void *ctx)
{
    if (!c || c->closing)
        return NULL;
    struct http_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->client = c;
    r->fn = fn;
    r->ctx = ctx;
    r->max = max_body;
    if (parse_url(r, url) != 0 || start_lookup(r) != 0) {
        free(r);
        return NULL;
    }
    uv_timer_init(c->loop, &r->deadline); /* cannot fail */
    r->deadline.data = r;
    c->open_handles++;
    uv_timer_start(&r->deadline, on_deadline, (uint64_t)(timeout_ms > 0 ? timeout_ms : 30000), 0);
    r->next = c->requests;
    if (c->requests)
        c->requests->prev = r;
    c->requests = r;
    return r;
}

void http_cancel(struct http_request *r)
{
    if (r && !r->done)
        release(r);
}

void http_client_close(struct http_client *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    while (c->requests)
        http_cancel(c->requests);
}

int http_client_closed(const struct http_client *c)
{
    return !c || (c->closing && c->open_handles == 0);
}

void http_client_free(struct http_client *c)
{
    if (!c)
        return;
    if (!http_client_closed(c))
        log_warn("http", "client freed with %d handle(s) still open", c->open_handles);
    free(c);
}
