/* health: the HTTP server for /health, /health/live, /health/ready and
 * /metrics, in libmicrohttpd's own thread. It never touches Lua or loop data:
 * the loop hands it finished documents (health_publish) and stamps a
 * heartbeat (health_heartbeat) that /health/live checks. Uses libmicrohttpd. */
#ifndef DAZ_HEALTH_H
#define DAZ_HEALTH_H

#include <stddef.h>

struct health;

/* Binds bind:port (IPv4 or IPv6 literal) and starts serving. On failure
 * returns NULL and writes the reason (e.g. "127.0.0.1:8080: Address already
 * in use") to err. live_timeout_ms: heartbeat age after which /health/live
 * fails. */
struct health *health_start(const char *bind, int port, long live_timeout_ms, char *err, size_t errlen);
void health_stop(struct health *h);

/* A new set of documents from the loop; the strings are copied. */
struct health_docs {
    const char *health_json;
    int health_code; /* 200 up/degraded, 503 down */
    const char *ready_json;
    int ready_code;  /* 200 ready, 503 not */
    const char *metrics_text;
};
void health_publish(struct health *h, const struct health_docs *docs);

/* Called by the loop at least every few hundred ms. */
void health_heartbeat(struct health *h);

#endif
