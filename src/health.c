/* health: see health.h.
 *
 * The documents are immutable, reference-counted blobs; a request takes a
 * reference under the mutex and serves it without holding the lock, so a
 * slow client never holds up health_publish on the loop.
 *
 * The server is a libuv loop of its own, run by its own thread. It serves
 * GET and HEAD of four fixed paths, one request per connection (answered
 * with "Connection: close"); the request head is bounded by
 * CONNECTION_MEMORY and the whole exchange by CONNECTION_TIMEOUT_MS. (It was
 * libmicrohttpd, whose constructor initialises GnuTLS for HTTPS this server
 * never offers: ~0.9 MB of RSS; see README, Performance.) */
#include "health.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "log.h"

#define CONNECTION_LIMIT 256
#define CONNECTION_TIMEOUT_MS 5000
#define CONNECTION_MEMORY 16384 /* bytes per connection: bounds the request head */

struct doc {
    atomic_int refs;
    int code;
    size_t len;
    char text[];
};

struct health {
    uv_loop_t loop;      /* the HTTP thread's own */
    uv_tcp_t listener;
    uv_async_t stop;
    pthread_t thread;
    int connections;
    long live_timeout_ms;
    atomic_llong heartbeat_ms;
    pthread_mutex_t lock;
    struct doc *health, *ready, *metrics;
};

/* One connection: its request head, then the answer being written. */
struct conn {
    uv_tcp_t tcp;
    uv_timer_t deadline;
    uv_write_t write;
    uv_shutdown_t shutdown;
    struct health *h;
    int open_handles;   /* tcp and deadline: the conn is freed when both closed */
    int closing;
    int answered;       /* from here on, input is read and dropped until the client closes */
    int writing;        /* the answer is being written */
    int eof;            /* the client has sent all it will: close once the answer is out */
    struct doc *doc;    /* the body being written, a reference */
    char head[320];
    char body[192];     /* a small answer's body (the doc's text otherwise) */
    size_t len;
    char req[CONNECTION_MEMORY]; /* not zeroed: only what a request uses is touched */
};

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct doc *doc_new(const char *text, int code)
{
    size_t len = text ? strlen(text) : 0;
    struct doc *d = malloc(sizeof *d + len + 1);
    if (!d)
        return NULL;
    atomic_init(&d->refs, 1);
    d->code = code;
    d->len = len;
    memcpy(d->text, text ? text : "", len + 1);
    return d;
}

static void doc_unref(struct doc *d)
{
    if (d && atomic_fetch_sub(&d->refs, 1) == 1)
        free(d);
}

/* Takes a reference to *slot under the lock. */
static struct doc *doc_get(struct health *h, struct doc **slot)
{
    pthread_mutex_lock(&h->lock);
    struct doc *d = *slot;
    if (d)
        atomic_fetch_add(&d->refs, 1);
    pthread_mutex_unlock(&h->lock);
    return d;
}

/* ------------------------------------------------------------ connections */

static void conn_handle_closed(uv_handle_t *handle)
{
    struct conn *c = handle->data;
    if (--c->open_handles > 0)
        return;
    c->h->connections--;
    doc_unref(c->doc);
    free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    uv_close((uv_handle_t *)&c->tcp, conn_handle_closed);
    uv_close((uv_handle_t *)&c->deadline, conn_handle_closed);
}

static void on_deadline(uv_timer_t *t) { conn_close(t->data); }

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct conn *c = req->data;
    if (status < 0 || c->eof)
        conn_close(c);
    /* else: read on until the client closes (or the deadline), so that
     * closing never turns a request body still arriving into a reset */
}

static void on_written(uv_write_t *req, int status)
{
    struct conn *c = req->data;
    doc_unref(c->doc);
    c->doc = NULL;
    c->writing = 0;
    if (status < 0 || c->closing || c->eof) {
        conn_close(c);
        return;
    }
    c->shutdown.data = c;
    if (uv_shutdown(&c->shutdown, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
        conn_close(c);
}

static const char *reason(int code)
{
    switch (code) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
    }
}

/* Writes the answer: `doc` (a reference, taken over) or c->body. */
static void answer(struct conn *c, int code, const char *type, struct doc *doc, int head_only, const char *extra)
{
    c->answered = 1;
    c->doc = doc;
    const char *body = doc ? doc->text : c->body;
    size_t len = doc ? doc->len : strlen(c->body);
    int n = snprintf(c->head, sizeof c->head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nCache-Control: no-store\r\n%s"
                     "Connection: close\r\n\r\n",
                     code, reason(code), type, len, extra ? extra : "");
    if (n < 0 || (size_t)n >= sizeof c->head) { /* cannot happen: the head's parts are ours */
        conn_close(c);
        return;
    }
    uv_buf_t bufs[2] = {uv_buf_init(c->head, (unsigned)n), uv_buf_init((char *)body, (unsigned)len)};
    c->write.data = c;
    if (uv_write(&c->write, (uv_stream_t *)&c->tcp, bufs, head_only || len == 0 ? 1 : 2, on_written) != 0)
        conn_close(c);
    else
        c->writing = 1;
}

static void answer_text(struct conn *c, int code, const char *type, int head_only, const char *extra,
                        const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void answer_text(struct conn *c, int code, const char *type, int head_only, const char *extra,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->body, sizeof c->body, fmt, ap);
    va_end(ap);
    answer(c, code, type, NULL, head_only, extra);
}

static void serve_doc(struct conn *c, struct doc *d, const char *type, int head_only)
{
    if (!d)
        answer_text(c, 503, "application/json", head_only, NULL, "{\"status\":\"down\",\"reasons\":[\"starting\"]}\n");
    else
        answer(c, d->code, type, d, head_only, NULL);
}

/* The request head is complete: "METHOD SP target SP HTTP/x.y" first. */
static void handle_request(struct conn *c)
{
    struct health *h = c->h;
    const char *p = c->req, *end = c->req + c->len;
    const char *sp1 = memchr(p, ' ', (size_t)(end - p));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || sp1 == p || sp2 == sp1 + 1 || end - sp2 < 6 || memcmp(sp2 + 1, "HTTP/", 5) != 0) {
        answer_text(c, 400, "application/json", 0, NULL, "{\"error\":\"bad request\"}\n");
        return;
    }
    size_t mlen = (size_t)(sp1 - p);
    int get = mlen == 3 && memcmp(p, "GET", 3) == 0;
    int head_only = mlen == 4 && memcmp(p, "HEAD", 4) == 0;
    if (!get && !head_only) {
        answer_text(c, 405, "application/json", 0, "Allow: GET, HEAD\r\n", "%s", "");
        return;
    }
    const char *path = sp1 + 1;
    size_t plen = strcspn(path, "? ");
    if (plen > (size_t)(sp2 - path))
        plen = (size_t)(sp2 - path);
#define IS(s) (plen == sizeof(s) - 1 && memcmp(path, s, plen) == 0)
    if (IS("/health")) {
        serve_doc(c, doc_get(h, &h->health), "application/json", head_only);
    } else if (IS("/health/ready")) {
        serve_doc(c, doc_get(h, &h->ready), "application/json", head_only);
    } else if (IS("/metrics")) {
        serve_doc(c, doc_get(h, &h->metrics), "text/plain; version=0.0.4; charset=utf-8", head_only);
    } else if (IS("/health/live")) {
        long long age = monotonic_ms() - atomic_load(&h->heartbeat_ms);
        if (age > h->live_timeout_ms)
            answer_text(c, 503, "application/json", head_only, NULL,
                        "{\"status\":\"down\",\"reason\":\"event loop stalled for %lld ms\"}\n", age);
        else
            answer_text(c, 200, "application/json", head_only, NULL, "{\"status\":\"up\",\"heartbeat_age_ms\":%lld}\n",
                        age);
    } else {
        answer_text(c, 404, "application/json", head_only, NULL, "{\"error\":\"not found\"}\n");
    }
#undef IS
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = handle->data;
    if (c->answered) /* input after the request is dropped: reuse the head's space */
        *buf = uv_buf_init(c->req, sizeof c->req);
    else
        *buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof c->req - c->len));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = stream->data;
    if (c->closing)
        return;
    if (nread == UV_ENOBUFS && !c->answered) {
        answer_text(c, 431, "application/json", 0, NULL, "{\"error\":\"request too large\"}\n");
        return;
    }
    if (nread < 0) { /* the client closed its side, or an error */
        if (nread == UV_EOF && c->writing) {
            c->eof = 1; /* the answer still goes out */
            uv_read_stop(stream);
            return;
        }
        conn_close(c);
        return;
    }
    if (c->answered || nread == 0)
        return;
    size_t from = c->len > 3 ? c->len - 3 : 0;
    c->len += (size_t)nread;
    if (memmem(c->req + from, c->len - from, "\r\n\r\n", 4) || memmem(c->req + from, c->len - from, "\n\n", 2))
        handle_request(c);
    else if (c->len == sizeof c->req)
        answer_text(c, 431, "application/json", 0, NULL, "{\"error\":\"request too large\"}\n");
}

static void on_refused_closed(uv_handle_t *handle) { free(handle); }

static void on_connection(uv_stream_t *server, int status)
{
    struct health *h = server->data;
    if (status < 0)
        return;
    struct conn *c = h->connections < CONNECTION_LIMIT ? malloc(sizeof *c) : NULL;
    if (!c) {
        /* Over the limit: accept and close at once rather than let it wait. */
        uv_tcp_t *t = malloc(sizeof *t);
        if (!t)
            return;
        uv_tcp_init(&h->loop, t); /* cannot fail */
        (void)uv_accept(server, (uv_stream_t *)t); /* cannot fail right after the callback */
        uv_close((uv_handle_t *)t, on_refused_closed);
        return;
    }
    memset(c, 0, offsetof(struct conn, req));
    c->h = h;
    uv_tcp_init(&h->loop, &c->tcp);
    uv_timer_init(&h->loop, &c->deadline);
    c->tcp.data = c->deadline.data = c;
    c->open_handles = 2;
    h->connections++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->deadline, on_deadline, CONNECTION_TIMEOUT_MS, 0);
}

/* ------------------------------------------------------------ the thread */

static void close_any(uv_handle_t *handle, void *arg)
{
    struct health *h = arg;
    if (uv_is_closing(handle))
        return;
    if (handle == (uv_handle_t *)&h->listener || handle == (uv_handle_t *)&h->stop)
        uv_close(handle, NULL);
    else
        conn_close(handle->data);
}

static void on_stop(uv_async_t *a)
{
    struct health *h = a->data;
    uv_walk(&h->loop, close_any, h); /* uv_run ends once they are closed */
}

static void *serve(void *arg)
{
    struct health *h = arg;
    uv_run(&h->loop, UV_RUN_DEFAULT);
    return NULL;
}

/* Our own listening socket, so that "address in use" is a clear error. */
static int open_listener(const char *bind_addr, int port, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    socklen_t sslen;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, bind_addr, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        sslen = sizeof *sin;
    } else if (inet_pton(AF_INET6, bind_addr, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        sslen = sizeof *sin6;
    } else {
        snprintf(err, errlen, "health.bind %s: not an IPv4 or IPv6 address", bind_addr);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "health server: socket: %s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, sslen) != 0 || listen(fd, 64) != 0) {
        snprintf(err, errlen, "health server cannot listen on %s:%d: %s", bind_addr, port, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* Closes what health_start opened on the loop, then the loop. */
static void loop_teardown(struct health *h)
{
    uv_walk(&h->loop, close_any, h);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    uv_loop_close(&h->loop);
}

struct health *health_start(const char *bind_addr, int port, long live_timeout_ms, char *err, size_t errlen)
{
    struct health *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "health server: out of memory");
        return NULL;
    }
    h->live_timeout_ms = live_timeout_ms > 0 ? live_timeout_ms : 5000;
    atomic_init(&h->heartbeat_ms, monotonic_ms());
    pthread_mutex_init(&h->lock, NULL);
    int fd = open_listener(bind_addr, port, err, errlen);
    if (fd < 0) {
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    int rc = uv_loop_init(&h->loop);
    if (rc != 0) {
        snprintf(err, errlen, "health server: %s", uv_strerror(rc));
        close(fd);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    uv_tcp_init(&h->loop, &h->listener); /* cannot fail */
    h->listener.data = h;
    rc = uv_tcp_open(&h->listener, fd);
    if (rc != 0)
        close(fd); /* not the handle's yet */
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&h->listener, 64, on_connection);
    if (rc == 0) {
        rc = uv_async_init(&h->loop, &h->stop, on_stop);
        h->stop.data = h;
    }
    if (rc == 0) {
        /* Signals are the loop thread's: this one takes none. */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        rc = -pthread_create(&h->thread, NULL, serve, h);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc != 0) {
        snprintf(err, errlen, "health server on %s:%d could not start: %s", bind_addr, port,
                 rc < 0 && rc > -4096 ? uv_strerror(rc) : "?");
        loop_teardown(h);
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    log_info("health", "serving /health, /health/live, /health/ready, /metrics on %s:%d", bind_addr, port);
    return h;
}

void health_stop(struct health *h)
{
    if (!h)
        return;
    uv_async_send(&h->stop);
    pthread_join(h->thread, NULL);
    int rc = uv_loop_close(&h->loop);
    if (rc != 0)
        log_warn("health", "loop closed with handles still open: %s", uv_strerror(rc));
    doc_unref(h->health);
    doc_unref(h->ready);
    doc_unref(h->metrics);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

void health_publish(struct health *h, const struct health_docs *docs)
{
    struct doc *nh = doc_new(docs->health_json, docs->health_code);
    struct doc *nr = doc_new(docs->ready_json, docs->ready_code);
    struct doc *nm = doc_new(docs->metrics_text, 200);
    if (!nh || !nr || !nm) {
        doc_unref(nh), doc_unref(nr), doc_unref(nm);
        return; /* keep serving the previous snapshot */
    }
    pthread_mutex_lock(&h->lock);
    struct doc *oh = h->health, *orr = h->ready, *om = h->metrics;
    h->health = nh, h->ready = nr, h->metrics = nm;
    pthread_mutex_unlock(&h->lock);
    doc_unref(oh), doc_unref(orr), doc_unref(om);
}

void health_heartbeat(struct health *h)
{
    atomic_store(&h->heartbeat_ms, monotonic_ms());
}
