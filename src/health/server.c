/* health: see health.h.
 *
 * The documents are immutable, reference-counted blobs; a request takes a
 * reference under the mutex and serves it without holding the lock, so a
 * slow client never holds up health_publish on the loop. */
#include "health/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define CONNECTION_LIMIT 256
#define CONNECTION_TIMEOUT_S 5
#define CONNECTION_MEMORY 16384 /* bytes per connection: bounds request size */

struct doc {
    atomic_int refs;
    int code;
    size_t len;
    char text[];
};

struct health {
    struct MHD_Daemon *daemon;
    int listen_fd;
    long live_timeout_ms;
    atomic_llong heartbeat_ms;
    pthread_mutex_t lock;
    struct doc *health, *ready, *metrics;
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

static void doc_free_callback(void *cls)
{
    doc_unref(cls);
}

static enum MHD_Result send_text(struct MHD_Connection *conn, int code, const char *type, const char *text)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_doc(struct MHD_Connection *conn, struct doc *d, const char *type)
{
    if (!d)
        return send_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json",
                         "{\"status\":\"down\",\"reasons\":[\"starting\"]}\n");
    struct MHD_Response *r =
        MHD_create_response_from_buffer_with_free_callback_cls(d->len, d->text, doc_free_callback, d);
    if (!r) {
        doc_unref(d);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)d->code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    (void)version;
    (void)upload_data;
    struct health *h = cls;
    /* First call per request: headers only. Answer on the second call, after
     * any body has been read and discarded (the memory limit bounds it). */
    if (*req_cls == NULL) {
        *req_cls = h;
        return MHD_YES;
    }
    if (*upload_data_size != 0) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, "Allow", "GET, HEAD");
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(url, "/health") == 0)
        return send_doc(conn, doc_get(h, &h->health), "application/json");
    if (strcmp(url, "/health/ready") == 0)
        return send_doc(conn, doc_get(h, &h->ready), "application/json");
    if (strcmp(url, "/metrics") == 0)
        return send_doc(conn, doc_get(h, &h->metrics), "text/plain; version=0.0.4; charset=utf-8");
    if (strcmp(url, "/health/live") == 0) {
        long long age = monotonic_ms() - atomic_load(&h->heartbeat_ms);
        char body[160];
        if (age > h->live_timeout_ms) {
            snprintf(body, sizeof body, "{\"status\":\"down\",\"reason\":\"event loop stalled for %lld ms\"}\n",
                     age);
            return send_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body);
        }
        snprintf(body, sizeof body, "{\"status\":\"up\",\"heartbeat_age_ms\":%lld}\n", age);
        return send_text(conn, MHD_HTTP_OK, "application/json", body);
    }
    return send_text(conn, MHD_HTTP_NOT_FOUND, "application/json", "{\"error\":\"not found\"}\n");
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
        int e = errno;
        snprintf(err, errlen, "health server cannot listen on %s:%d: %s%s", bind_addr, port, strerror(e),
                 e == EADDRINUSE || e == EACCES
                     ? " (choose another port with -health-port, DAZ_HEALTH__PORT or health.port; 0 turns it off)"
                     : "");
        close(fd);
        return -1;
    }
    return fd;
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
    h->listen_fd = open_listener(bind_addr, port, err, errlen);
    if (h->listen_fd < 0) {
        pthread_mutex_destroy(&h->lock);
        free(h);
        return NULL;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    if (strchr(bind_addr, ':'))
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                 MHD_OPTION_LISTEN_SOCKET, h->listen_fd,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT_S,
                                 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY,
                                 MHD_OPTION_END);
    if (!h->daemon) {
        snprintf(err, errlen, "health server on %s:%d could not start", bind_addr, port);
        close(h->listen_fd);
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
    MHD_stop_daemon(h->daemon);
    close(h->listen_fd);
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
