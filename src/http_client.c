/* http_client: see http_client.h. The shape follows curl's multi-uv.c
 * example: one uv_poll_t per socket curl asks about, one timer for curl's
 * timeouts, and a sweep of finished transfers after every action. */
#include "http_client.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

struct http_request {
    struct http_client *client;
    CURL *easy;
    char *body;
    size_t len, cap, max;
    int too_large;
    char errbuf[CURL_ERROR_SIZE];
    http_done_fn fn;
    void *ctx;
    struct http_request *prev, *next;
};

struct poll_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct http_client *client;
};

struct http_client {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct http_request *requests;
    int open_handles; /* timer + polls not yet closed */
    int tls_verify;
    char *ca_file;
    int closing;
};

static int curl_ready;

static void handle_closed(uv_handle_t *h)
{
    if (h->type == UV_POLL) {
        struct poll_ctx *p = h->data;
        p->client->open_handles--;
        free(p);
    } else {
        struct http_client *c = h->data;
        c->open_handles--;
    }
}

static void unlink_request(struct http_request *r)
{
    struct http_client *c = r->client;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

static void request_free(struct http_request *r)
{
    if (r->easy) {
        curl_multi_remove_handle(r->client->multi, r->easy);
        curl_easy_cleanup(r->easy);
    }
    free(r->body);
    free(r);
}

static void sweep(struct http_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct http_request *r = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
        if (!r)
            continue;
        CURLcode res = msg->data.result;
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        char why[CURL_ERROR_SIZE + 64];
        const char *error = NULL;
        if (r->too_large) {
            error = "response too large";
        } else if (res == CURLE_OPERATION_TIMEDOUT) {
            error = "timeout";
        } else if (res != CURLE_OK) {
            snprintf(why, sizeof why, "%s%s%s", curl_easy_strerror(res), r->errbuf[0] ? ": " : "", r->errbuf);
            error = why;
        }
        unlink_request(r);
        http_done_fn fn = r->fn;
        void *ctx = r->ctx;
        const char *body = r->body ? r->body : "";
        size_t len = r->len;
        /* Call last, after unlinking: the callback may start new requests. */
        fn(status, body, len, error, ctx);
        request_free(r);
    }
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct poll_ctx *p = h->data;
    struct http_client *c = p->client;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(c->multi, p->fd, flags, &running);
    sweep(c);
}

static void on_timeout(uv_timer_t *t)
{
    struct http_client *c = t->data;
    int running;
    curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    sweep(c);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct http_client *c = userp;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_client *c = userp;
    struct poll_ctx *p = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (p) {
            uv_poll_stop(&p->poll);
            uv_close((uv_handle_t *)&p->poll, handle_closed);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p)
            return -1;
        if (uv_poll_init_socket(c->loop, &p->poll, s) != 0) {
            free(p);
            return -1;
        }
        p->fd = s;
        p->client = c;
        p->poll.data = p;
        c->open_handles++;
        curl_multi_assign(c->multi, s, p);
    }
    p->poll.data = p;
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&p->poll, events, on_poll);
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    struct http_request *r = userdata;
    size_t n = size * nmemb;
    if (r->len + n > r->max) {
        r->too_large = 1;
        return 0; /* aborts the transfer */
    }
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 1024;
        while (cap < r->len + n + 1)
            cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b)
            return 0;
        r->body = b;
        r->cap = cap;
    }
    memcpy(r->body + r->len, ptr, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

struct http_client *http_client_new(uv_loop_t *loop)
{
    if (!curl_ready) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return NULL;
        curl_ready = 1;
    }
    struct http_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->loop = loop;
    c->tls_verify = 1;
    c->multi = curl_multi_init();
    if (!c->multi) {
        free(c);
        return NULL;
    }
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    c->open_handles = 1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

struct http_request *http_get(struct http_client *c, const char *url, long timeout_ms, size_t max_body,
                              http_done_fn fn, void *ctx)
{
    if (c->closing)
        return NULL;
    struct http_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->client = c;
    r->fn = fn;
    r->ctx = ctx;
    r->max = max_body;
    r->easy = curl_easy_init();
    if (!r->easy) {
        free(r);
        return NULL;
    }
    CURL *e = r->easy;
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, r);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FORBID_REUSE, 1L); /* one request per discovery: no idle sockets to keep */
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 3L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_USERAGENT, "daz (CyTube bot; libcurl)");
    curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, c->tls_verify ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, c->tls_verify ? 2L : 0L);
    if (c->ca_file)
        curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        free(r);
        return NULL;
    }
    r->next = c->requests;
    if (c->requests)
        c->requests->prev = r;
    c->requests = r;
    return r;
}

void http_client_set_tls(struct http_client *c, int verify, const char *ca_file)
{
    c->tls_verify = verify;
    free(c->ca_file);
    c->ca_file = ca_file ? strdup(ca_file) : NULL;
}

void http_cancel(struct http_request *r)
{
    if (!r)
        return;
    unlink_request(r);
    request_free(r);
}

void http_client_close(struct http_client *c)
{
    if (!c || c->closing)
        return;
    while (c->requests)
        http_cancel(c->requests);
    c->closing = 1;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
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
    free(c->ca_file);
    free(c);
}
