/* http_curl: see curl_loop.h. libcurl is not linked: the first request
 * dlopen()s libcurl.so.4 and looks up the few functions used here. */
#define CURL_DISABLE_TYPECHECK
#include "http/curl_loop.h"

#include <ctype.h>
#include <curl/curl.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "core/log.h"

#define MAX_HEADERS 200

const char *const http_outcome_names[HTTP_OUTCOMES] = {
    "ok", "timeout", "too_large", "refused", "tls", "dns", "connect", "busy", "cancelled", "error",
};
const double http_hist_bounds[HTTP_HIST_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10};

/* The libcurl functions, looked up once per process. */
static struct {
    int tried;
    void *lib;
    char error[256];
    CURLcode (*global_init)(long);
    void (*global_cleanup)(void);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *, CURLoption, ...);
    CURLcode (*easy_getinfo)(CURL *, CURLINFO, ...);
    void (*easy_cleanup)(CURL *);
    const char *(*easy_strerror)(CURLcode);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *, CURLMoption, ...);
    CURLMcode (*multi_add_handle)(CURLM *, CURL *);
    CURLMcode (*multi_remove_handle)(CURLM *, CURL *);
    CURLMcode (*multi_socket_action)(CURLM *, curl_socket_t, int, int *);
    CURLMsg *(*multi_info_read)(CURLM *, int *);
    CURLMcode (*multi_cleanup)(CURLM *);
    CURLMcode (*multi_assign)(CURLM *, curl_socket_t, void *);
    struct curl_slist *(*slist_append)(struct curl_slist *, const char *);
    void (*slist_free_all)(struct curl_slist *);
} C;

struct http_owner {
    char *name;
    int in_flight;
    uint64_t outcomes[HTTP_OUTCOMES];
    struct http_owner *next;
};

struct sock {
    uv_poll_t poll;
    struct http_curl *c;
    curl_socket_t fd;
    struct sock *prev, *next;
};

enum req_state { REQ_NEW, REQ_QUEUED, REQ_RUNNING, REQ_FAILED };

struct http_call {
    struct http_curl *c;
    struct http_owner *owner;
    enum req_state state;
    struct http_call *prev, *next; /* in the client's list for its state */
    char *method, *url;
    char **header_lines;
    int header_lines_count;
    struct curl_slist *headers;
    char *body;
    size_t body_len;
    long timeout_ms;
    size_t max_bytes;
    int follow;
    CURL *easy;
    http_done_fn done;
    void *ctx;
    double started;
    long left_ms;      /* of timeout_ms when it starts (it may have waited in the queue) */
    int refused, too_large;
    size_t body_cap, header_cap;
    struct http_response resp;
    char errbuf[CURL_ERROR_SIZE];
    char errmsg[CURL_ERROR_SIZE + 32];
};

struct list {
    struct http_call *head, *tail;
    int count;
};

struct http_curl {
    uv_loop_t *loop;
    long timeout_ms;
    size_t max_bytes;
    long max_redirects;
    int max_in_flight, max_per_owner, max_queued;
    char *user_agent;
    struct http_guard guard;
    char **resolve;
    int resolve_count;
    struct curl_slist *resolve_list;
    CURLM *multi;
    uv_timer_t timer;       /* libcurl's */
    uv_timer_t queue_timer; /* expires queued requests, delivers failed ones */
    int timer_open;
    int closing;
    struct list running, queued, failed;
    struct sock *socks;
    struct http_owner *owners;
    struct http_curl_stats stats;
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void list_push(struct list *l, struct http_call *r)
{
    r->next = NULL;
    r->prev = l->tail;
    if (l->tail)
        l->tail->next = r;
    else
        l->head = r;
    l->tail = r;
    l->count++;
}

static void list_remove(struct list *l, struct http_call *r)
{
    if (r->prev)
        r->prev->next = r->next;
    else
        l->head = r->next;
    if (r->next)
        r->next->prev = r->prev;
    else
        l->tail = r->prev;
    r->prev = r->next = NULL;
    l->count--;
}

static struct list *list_of(struct http_curl *c, struct http_call *r)
{
    switch (r->state) {
    case REQ_QUEUED: return &c->queued;
    case REQ_RUNNING: return &c->running;
    case REQ_FAILED: return &c->failed;
    default: return NULL;
    }
}

/* ------------------------------------------------------------ loading */

static int load_curl(void)
{
    if (C.tried)
        return C.lib ? 0 : -1;
    C.tried = 1;
    void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(C.error, sizeof C.error, "http unavailable: %s", dlerror());
        return -1;
    }
    struct {
        const char *name;
        void **slot;
    } syms[] = {
        {"curl_global_init", (void **)&C.global_init},
        {"curl_global_cleanup", (void **)&C.global_cleanup},
        {"curl_easy_init", (void **)&C.easy_init},
        {"curl_easy_setopt", (void **)&C.easy_setopt},
        {"curl_easy_getinfo", (void **)&C.easy_getinfo},
        {"curl_easy_cleanup", (void **)&C.easy_cleanup},
        {"curl_easy_strerror", (void **)&C.easy_strerror},
        {"curl_multi_init", (void **)&C.multi_init},
        {"curl_multi_setopt", (void **)&C.multi_setopt},
        {"curl_multi_add_handle", (void **)&C.multi_add_handle},
        {"curl_multi_remove_handle", (void **)&C.multi_remove_handle},
        {"curl_multi_socket_action", (void **)&C.multi_socket_action},
        {"curl_multi_info_read", (void **)&C.multi_info_read},
        {"curl_multi_cleanup", (void **)&C.multi_cleanup},
        {"curl_multi_assign", (void **)&C.multi_assign},
        {"curl_slist_append", (void **)&C.slist_append},
        {"curl_slist_free_all", (void **)&C.slist_free_all},
    };
    for (size_t i = 0; i < sizeof syms / sizeof *syms; i++) {
        *syms[i].slot = dlsym(lib, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(C.error, sizeof C.error, "http unavailable: libcurl.so.4 lacks %s", syms[i].name);
            dlclose(lib);
            return -1;
        }
    }
    if (C.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(C.error, sizeof C.error, "http unavailable: curl_global_init failed");
        dlclose(lib);
        return -1;
    }
    C.lib = lib;
    return 0;
}

static void check_done(struct http_curl *c);
static void deliver_failed(struct http_curl *c);
static void arm_queue_timer(struct http_curl *c);

static void on_sock_closed(uv_handle_t *h)
{
    free(h->data);
}

static void sock_close(struct http_curl *c, struct sock *sk)
{
    if (sk->prev)
        sk->prev->next = sk->next;
    else
        c->socks = sk->next;
    if (sk->next)
        sk->next->prev = sk->prev;
    uv_poll_stop(&sk->poll);
    uv_close((uv_handle_t *)&sk->poll, on_sock_closed);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct sock *sk = h->data;
    struct http_curl *c = sk->c;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    C.multi_socket_action(c->multi, sk->fd, flags, &running);
    check_done(c);
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
    struct http_curl *c = userp;
    struct sock *sk = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (sk) {
            C.multi_assign(c->multi, s, NULL);
            sock_close(c, sk);
        }
        return 0;
    }
    if (!sk) {
        sk = calloc(1, sizeof *sk);
        if (!sk)
            return -1;
        if (uv_poll_init_socket(c->loop, &sk->poll, s) != 0) {
            free(sk);
            return -1;
        }
        sk->c = c;
        sk->fd = s;
        sk->poll.data = sk;
        sk->next = c->socks;
        if (c->socks)
            c->socks->prev = sk;
        c->socks = sk;
        C.multi_assign(c->multi, s, sk);
    }
    int ev = (what & CURL_POLL_IN ? UV_READABLE : 0) | (what & CURL_POLL_OUT ? UV_WRITABLE : 0);
    uv_poll_start(&sk->poll, ev, on_poll);
    return 0;
}

static void on_timer(uv_timer_t *t)
{
    struct http_curl *c = t->data;
    int running;
    C.multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(c);
}

static int on_timer_set(CURLM *m, long timeout_ms, void *userp)
{
    struct http_curl *c = userp;
    if (c->closing)
        return 0;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static int ensure_multi(struct http_curl *c, const char **err)
{
    if (c->multi)
        return 0;
    if (load_curl() != 0) {
        c->stats.load_error = C.error;
        *err = C.error;
        return -1;
    }
    if (c->resolve_count > 0 && !c->resolve_list) { /* once, even if a later step fails */
        struct curl_slist *list = NULL;
        for (int i = 0; i < c->resolve_count; i++) {
            struct curl_slist *l = C.slist_append(list, c->resolve[i]);
            if (!l) {
                C.slist_free_all(list);
                *err = "out of memory";
                return -1;
            }
            list = l;
        }
        c->resolve_list = list;
    }
    c->multi = C.multi_init();
    if (!c->multi) {
        *err = "http unavailable: curl_multi_init failed";
        return -1;
    }
    if (C.multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        C.multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        C.multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer_set) != CURLM_OK ||
        C.multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK) {
        C.multi_cleanup(c->multi);
        c->multi = NULL;
        *err = "http unavailable: curl_multi_setopt failed";
        return -1;
    }
    uv_timer_init(c->loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(c->loop, &c->queue_timer);
    c->queue_timer.data = c;
    c->timer_open = 1;
    c->stats.loaded = 1;
    log_info("http", "libcurl loaded");
    return 0;
}

/* ------------------------------------------------------------ client */

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

struct http_curl *http_curl_new(uv_loop_t *loop, struct http_settings *s)
{
    struct http_curl *c = calloc(1, sizeof *c);
    if (!c) {
        http_guard_free(&s->guard);
        return NULL;
    }
    c->loop = loop;
    c->timeout_ms = s->timeout_ms;
    c->max_bytes = s->max_bytes;
    c->max_redirects = s->max_redirects;
    c->max_in_flight = s->max_in_flight;
    c->max_per_owner = s->max_in_flight_per_owner;
    c->max_queued = s->max_queued;
    c->guard = s->guard;
    memset(&s->guard, 0, sizeof s->guard);
    c->user_agent = dup_or_null(s->user_agent);
    if (s->resolve_count > 0) {
        c->resolve = calloc((size_t)s->resolve_count, sizeof *c->resolve);
        if (!c->resolve) {
            http_curl_free(c);
            return NULL;
        }
        for (int i = 0; i < s->resolve_count; i++) {
            c->resolve[i] = strdup(s->resolve[i]);
            if (!c->resolve[i]) {
                http_curl_free(c);
                return NULL;
            }
            c->resolve_count = i + 1;
        }
    }
    return c;
}

static struct http_owner *owner_of(struct http_curl *c, const char *name)
{
    for (struct http_owner *o = c->owners; o; o = o->next)
        if (strcmp(o->name, name) == 0)
            return o;
    struct http_owner *o = calloc(1, sizeof *o);
    if (!o || !(o->name = strdup(name))) {
        free(o);
        return NULL;
    }
    o->next = c->owners;
    c->owners = o;
    return o;
}

/* ------------------------------------------------------------ requests */

struct http_call *http_call_new(struct http_curl *c, const char *owner, const char *method, const char *url)
{
    struct http_call *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->c = c;
    r->owner = owner_of(c, owner ? owner : "?");
    r->method = strdup(method);
    r->url = strdup(url);
    r->follow = 1;
    if (!r->owner || !r->method || !r->url) {
        http_call_free(r);
        return NULL;
    }
    for (char *p = r->method; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return r;
}

int http_call_header(struct http_call *r, const char *name, const char *value)
{
    size_t n = strlen(name) + strlen(value) + 3;
    char *line = malloc(n);
    char **lines = realloc(r->header_lines, (size_t)(r->header_lines_count + 1) * sizeof *lines);
    if (!line || !lines) {
        free(line);
        if (lines)
            r->header_lines = lines;
        return -1;
    }
    r->header_lines = lines;
    /* "Name:" with nothing after it would remove a header curl adds. */
    if (*value)
        snprintf(line, n, "%s: %s", name, value);
    else
        snprintf(line, n, "%s;", name);
    r->header_lines[r->header_lines_count++] = line;
    return 0;
}

int http_call_body(struct http_call *r, const char *body, size_t len)
{
    free(r->body);
    r->body = malloc(len ? len : 1);
    if (!r->body)
        return -1;
    memcpy(r->body, body, len);
    r->body_len = len;
    return 0;
}

void http_call_limits(struct http_call *r, long timeout_ms, size_t max_bytes, int follow)
{
    r->timeout_ms = timeout_ms;
    r->max_bytes = max_bytes;
    r->follow = follow;
}

const struct http_response *http_call_response(const struct http_call *r)
{
    return &r->resp;
}

static void response_clear(struct http_response *resp)
{
    for (size_t i = 0; i < resp->header_count; i++) {
        free(resp->headers[i].name);
        free(resp->headers[i].value);
    }
    free(resp->headers);
    resp->headers = NULL;
    resp->header_count = 0;
}

void http_call_free(struct http_call *r)
{
    if (!r)
        return;
    if (r->easy)
        C.easy_cleanup(r->easy);
    if (r->headers)
        C.slist_free_all(r->headers);
    for (int i = 0; i < r->header_lines_count; i++)
        free(r->header_lines[i]);
    free(r->header_lines);
    response_clear(&r->resp);
    free(r->resp.body);
    free(r->resp.url);
    free(r->method);
    free(r->url);
    free(r->body);
    free(r);
}

static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    struct http_call *r = ud;
    size_t len = size * n;
    if (r->resp.body_len + len > r->max_bytes) {
        r->too_large = 1;
        return 0; /* stops the transfer */
    }
    if (r->resp.body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->resp.body_len + len + 1)
            cap *= 2;
        char *b = realloc(r->resp.body, cap);
        if (!b)
            return 0;
        r->resp.body = b;
        r->body_cap = cap;
    }
    memcpy(r->resp.body + r->resp.body_len, data, len);
    r->resp.body_len += len;
    r->resp.body[r->resp.body_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
    struct http_call *r = ud;
    size_t len = size * n;
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
        response_clear(&r->resp); /* a new answer (after a redirect or 100) */
        return len;
    }
    const char *colon = memchr(data, ':', len);
    if (!colon || r->resp.header_count >= MAX_HEADERS)
        return len;
    if (r->resp.header_count == r->header_cap) {
        size_t cap = r->header_cap ? r->header_cap * 2 : 16;
        struct http_header *h = realloc(r->resp.headers, cap * sizeof *h);
        if (!h)
            return 0;
        r->resp.headers = h;
        r->header_cap = cap;
    }
    if (r->resp.headers == NULL)
        return len;
    size_t nl = (size_t)(colon - data);
    const char *v = colon + 1, *end = data + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    char *name = strndup(data, nl), *value = strndup(v, (size_t)(end - v));
    if (!name || !value) {
        free(name);
        free(value);
        return 0;
    }
    for (char *p = name; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    r->resp.headers[r->resp.header_count++] = (struct http_header){name, value};
    return len;
}

/* Every connection, the first and each redirect hop's: the SSRF guard on
 * the address actually connected to. */
static curl_socket_t on_open(void *ud, curlsocktype purpose, struct curl_sockaddr *a)
{
    struct http_call *r = ud;
    char host[HTTP_GUARD_HOST_MAX];
    const char *url_host = NULL;
    char *eff = NULL;
    int port;
    if (C.easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff) == CURLE_OK && eff &&
        http_url_host_port(eff, host, sizeof host, &port) == 0)
        url_host = host;
    if (!http_guard_allows(&r->c->guard, &a->addr, url_host)) {
        r->refused = 1;
        return CURL_SOCKET_BAD;
    }
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

static int setup_easy(struct http_call *r)
{
    struct http_curl *c = r->c;
    CURL *e = C.easy_init();
    if (!e)
        return -1;
    r->easy = e;
    r->errbuf[0] = '\0';
    int bad = 0; /* any option libcurl refuses (an old libcurl) fails the request */
    bad |= C.easy_setopt(e, CURLOPT_URL, r->url) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_PRIVATE, r) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_FOLLOWLOCATION, r->follow ? 1L : 0L) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_MAXREDIRS, c->max_redirects) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_TIMEOUT_MS, r->left_ms) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max_bytes) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_WRITEDATA, r) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_HEADERDATA, r) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_open) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_OPENSOCKETDATA, r) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) != CURLE_OK;
    bad |= C.easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "") != CURLE_OK;
    if (c->user_agent)
        bad |= C.easy_setopt(e, CURLOPT_USERAGENT, c->user_agent) != CURLE_OK;
    for (int i = 0; i < r->header_lines_count; i++) {
        struct curl_slist *l = C.slist_append(r->headers, r->header_lines[i]);
        if (!l)
            return -1;
        r->headers = l;
    }
    if (r->headers)
        bad |= C.easy_setopt(e, CURLOPT_HTTPHEADER, r->headers) != CURLE_OK;
    if (c->resolve_list)
        bad |= C.easy_setopt(e, CURLOPT_RESOLVE, c->resolve_list) != CURLE_OK;
    if (strcmp(r->method, "HEAD") == 0) {
        bad |= C.easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
    } else if (r->body) {
        bad |= C.easy_setopt(e, CURLOPT_POSTFIELDS, r->body) != CURLE_OK;
        bad |= C.easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len) != CURLE_OK;
        if (strcmp(r->method, "POST") != 0)
            bad |= C.easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method) != CURLE_OK;
    } else if (strcmp(r->method, "GET") != 0) {
        bad |= C.easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method) != CURLE_OK;
    }
    if (bad || C.multi_add_handle(c->multi, e) != CURLM_OK)
        return -1;
    return 0;
}

static void count(struct http_call *r, enum http_outcome o)
{
    r->resp.outcome = o;
    r->owner->outcomes[o]++;
}

/* The error is `prefix` followed by libcurl's detail (may be NULL). */
static void fail(struct http_call *r, enum http_outcome o, const char *prefix, const char *detail)
{
    count(r, o);
    snprintf(r->errmsg, sizeof r->errmsg, "%s%s", prefix, detail ? detail : "");
    r->resp.error = r->errmsg;
}

static void start_queued(struct http_curl *c);

static int start(struct http_call *r)
{
    struct http_curl *c = r->c;
    r->left_ms = r->timeout_ms - (long)((now_seconds() - r->started) * 1000);
    if (r->left_ms < 1)
        r->left_ms = 1;
    if (setup_easy(r) != 0) {
        if (r->easy) {
            C.easy_cleanup(r->easy);
            r->easy = NULL;
        }
        return -1;
    }
    r->state = REQ_RUNNING;
    list_push(&c->running, r);
    r->owner->in_flight++;
    return 0;
}

static int has_room(struct http_curl *c, struct http_call *r)
{
    return c->running.count < c->max_in_flight && r->owner->in_flight < c->max_per_owner;
}

int http_call_submit(struct http_call *r, http_done_fn done, void *ctx, const char **err)
{
    struct http_curl *c = r->c;
    if (c->closing) {
        *err = "http unavailable: shutting down";
        return -1;
    }
    if (ensure_multi(c, err) != 0) {
        count(r, HTTP_ERROR);
        return -1;
    }
    if (r->timeout_ms <= 0)
        r->timeout_ms = c->timeout_ms;
    if (r->max_bytes == 0)
        r->max_bytes = c->max_bytes;
    r->done = done;
    r->ctx = ctx;
    r->started = now_seconds();
    c->stats.requests++;
    if (has_room(c, r) && c->queued.count == 0) {
        if (start(r) != 0) {
            *err = "http: cannot set up the request";
            count(r, HTTP_ERROR);
            return -1;
        }
        return 0;
    }
    if (c->queued.count >= c->max_queued) {
        *err = "busy";
        count(r, HTTP_BUSY);
        return -1;
    }
    r->state = REQ_QUEUED;
    list_push(&c->queued, r);
    arm_queue_timer(c);
    return 0;
}

static void to_failed(struct http_curl *c, struct http_call *r, enum http_outcome o, const char *why)
{
    fail(r, o, why, NULL);
    r->state = REQ_FAILED;
    list_push(&c->failed, r);
}

/* Queued requests: those past their timeout fail, those whose owner and the
 * client have room start, in order. */
static void start_queued(struct http_curl *c)
{
    double now = now_seconds();
    struct http_call *r = c->queued.head;
    while (r) {
        struct http_call *next = r->next;
        if ((now - r->started) * 1000 >= (double)r->timeout_ms) {
            list_remove(&c->queued, r);
            to_failed(c, r, HTTP_TIMEOUT, "timeout");
        } else if (c->running.count < c->max_in_flight && r->owner->in_flight < c->max_per_owner) {
            list_remove(&c->queued, r);
            if (start(r) != 0)
                to_failed(c, r, HTTP_ERROR, "http: cannot set up the request");
        }
        r = next;
    }
    arm_queue_timer(c);
}

static void on_queue_timer(uv_timer_t *t)
{
    struct http_curl *c = t->data;
    start_queued(c);
    deliver_failed(c); /* done callbacks: nothing of ours is used after them */
    arm_queue_timer(c);
}

/* Failed requests are delivered on the next turn (never from inside
 * http_call_submit or http_call_cancel); queued ones are looked at every
 * 100 ms for their timeout. */
static void arm_queue_timer(struct http_curl *c)
{
    if (c->closing || !c->timer_open)
        return;
    if (c->failed.count > 0)
        uv_timer_start(&c->queue_timer, on_queue_timer, 0, 0);
    else if (c->queued.count > 0)
        uv_timer_start(&c->queue_timer, on_queue_timer, 100, 0);
    else
        uv_timer_stop(&c->queue_timer);
}

static void deliver_failed(struct http_curl *c)
{
    while (c->failed.head) {
        struct http_call *r = c->failed.head;
        list_remove(&c->failed, r);
        r->state = REQ_NEW;
        r->done(r, r->ctx);
    }
}

static int is_tls_error(CURLcode rc)
{
    switch (rc) {
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
        return 1;
    default:
        return 0;
    }
}

static void finish(struct http_call *r, CURLcode rc)
{
    struct http_curl *c = r->c;
    const char *detail = r->errbuf[0] ? r->errbuf : C.easy_strerror(rc);
    if (rc == CURLE_OK) {
        count(r, HTTP_OK);
        C.easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->resp.status);
        char *eff = NULL;
        C.easy_getinfo(r->easy, CURLINFO_EFFECTIVE_URL, &eff);
        r->resp.url = strdup(eff ? eff : r->url);
        if (!r->resp.body) {
            r->resp.body = strdup("");
            r->body_cap = 1;
        }
        if (!r->resp.url || !r->resp.body) {
            r->owner->outcomes[HTTP_OK]--;
            fail(r, HTTP_ERROR, "out of memory", NULL);
        }
    } else if (r->refused) {
        fail(r, HTTP_REFUSED, "refused: private address", NULL);
    } else if (r->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
        fail(r, HTTP_TOO_LARGE, "too large", NULL);
    } else if (rc == CURLE_OPERATION_TIMEDOUT) {
        fail(r, HTTP_TIMEOUT, "timeout", NULL);
    } else if (rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY) {
        fail(r, HTTP_DNS, "dns: ", detail);
    } else if (rc == CURLE_COULDNT_CONNECT) {
        fail(r, HTTP_CONNECT, "connect: ", detail);
    } else if (is_tls_error(rc)) {
        fail(r, HTTP_TLS, "tls: ", detail);
    } else if (rc == CURLE_TOO_MANY_REDIRECTS) {
        fail(r, HTTP_ERROR, "too many redirects", NULL);
    } else {
        fail(r, HTTP_ERROR, "http: ", detail);
    }
    if (rc == CURLE_OK && r->resp.error) {
        free(r->resp.body);
        r->resp.body = NULL;
    }
    double took = now_seconds() - r->started;
    size_t b = 0;
    while (b < HTTP_HIST_BUCKETS && took > http_hist_bounds[b])
        b++;
    c->stats.hist[b]++;
    c->stats.seconds_sum += took;
}

static void check_done(struct http_curl *c)
{
    CURLMsg *m;
    int left;
    while ((m = C.multi_info_read(c->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        CURL *e = m->easy_handle;
        CURLcode rc = m->data.result;
        struct http_call *r = NULL;
        C.easy_getinfo(e, CURLINFO_PRIVATE, (char **)&r);
        C.multi_remove_handle(c->multi, e);
        if (!r)
            continue;
        list_remove(&c->running, r);
        r->state = REQ_NEW;
        r->owner->in_flight--;
        finish(r, rc);
        r->done(r, r->ctx); /* the caller frees r */
    }
    start_queued(c);
}

void http_call_cancel(struct http_call *r)
{
    struct http_curl *c = r->c;
    struct list *l = list_of(c, r);
    if (l)
        list_remove(l, r);
    if (r->state == REQ_RUNNING) {
        C.multi_remove_handle(c->multi, r->easy);
        r->owner->in_flight--;
    }
    if (r->state != REQ_FAILED)
        count(r, HTTP_CANCELLED);
    r->state = REQ_NEW;
    http_call_free(r);
    if (!c->closing && c->multi)
        start_queued(c);
}

/* ------------------------------------------------------------ stats, close */

void http_curl_stats(const struct http_curl *c, struct http_curl_stats *out)
{
    *out = c->stats;
    out->in_flight = c->running.count;
    out->queued = c->queued.count;
}

void http_curl_foreach_owner(const struct http_curl *c, http_owner_fn fn, void *ctx)
{
    for (const struct http_owner *o = c->owners; o; o = o->next) {
        struct http_owner_stats s = {.owner = o->name, .in_flight = o->in_flight};
        memcpy(s.outcomes, o->outcomes, sizeof s.outcomes);
        fn(&s, ctx);
    }
}

void http_curl_close(struct http_curl *c)
{
    if (!c || c->closing)
        return;
    c->closing = 1;
    while (c->running.head)
        http_call_cancel(c->running.head);
    while (c->queued.head)
        http_call_cancel(c->queued.head);
    while (c->failed.head)
        http_call_cancel(c->failed.head);
    if (c->multi) {
        C.multi_cleanup(c->multi);
        c->multi = NULL;
    }
    while (c->socks)
        sock_close(c, c->socks);
    if (c->timer_open) {
        uv_timer_stop(&c->timer);
        uv_close((uv_handle_t *)&c->timer, NULL);
        uv_timer_stop(&c->queue_timer);
        uv_close((uv_handle_t *)&c->queue_timer, NULL);
        c->timer_open = 0;
    }
}

void http_curl_free(struct http_curl *c)
{
    if (!c)
        return;
    if (c->resolve_list)
        C.slist_free_all(c->resolve_list);
    for (int i = 0; i < c->resolve_count; i++)
        free(c->resolve[i]);
    free(c->resolve);
    http_guard_free(&c->guard);
    while (c->owners) {
        struct http_owner *o = c->owners;
        c->owners = o->next;
        free(o->name);
        free(o);
    }
    free(c->user_agent);
    free(c);
    if (C.lib)
        C.global_cleanup();
}
