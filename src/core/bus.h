/* bus: the EventBus — per-type bounded priority queues, dispatch on the libuv
 * loop (highest priority first across types, capped per turn), exact and
 * `*` pattern subscriptions with tag filters and subscriber priority, and
 * request/response with correlation ids and timeouts. Uses event, libuv. */
#ifndef DAZ_BUS_H
#define DAZ_BUS_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/event.h"

struct bus;
struct bus_sub;

struct bus_options {
    size_t default_capacity;    /* queue bound for types without a prefix rule */
    int dispatch_per_turn;      /* events dispatched per loop turn at most */
    size_t max_types;           /* distinct event types tracked at most */
};

struct bus *bus_new(uv_loop_t *loop, const struct bus_options *opts);
/* Stops dispatch, releases queued events, pending requests (their callbacks
 * get "bus closed"), subscriptions and handles. Call bus_close, then run the
 * loop until bus_closed() is true, then bus_free. */
void bus_close(struct bus *bus);
int bus_closed(const struct bus *bus);
void bus_free(struct bus *bus);

/* Queue bound for every type starting with `prefix`; the longest matching
 * prefix wins. Applies to types created later and to existing ones. */
int bus_set_capacity(struct bus *bus, const char *prefix, size_t capacity);

/* Publish: never blocks. Takes ownership of the caller's reference.
 * Returns 0 when queued, -1 when dropped (the drop is counted per type).
 * When the type's queue is full, a lower-priority queued event is shed
 * (counted) to make room; if none is lower, the new event is dropped. */
int bus_publish(struct bus *bus, struct event *ev);

/* A handler gets a borrowed event (ref it to keep it). */
typedef void (*bus_handler_fn)(struct event *ev, void *ctx);

/* Subscribe to a type or a pattern: `*` matches any run of characters, dots
 * included ("cytube.event.*", "*.failed", "*"). The subscriber only sees
 * events carrying every tag in `tags` (may be NULL/0). Higher `priority`
 * subscribers run first; equal ones in subscription order. Returns NULL on
 * out of memory. The subscriber list per type is resolved once and cached
 * until subscriptions change. */
struct bus_sub *bus_subscribe(struct bus *bus, const char *pattern, const char *const *tags,
                              int tag_count, int priority, bus_handler_fn fn, void *ctx);
/* Safe to call from inside a handler (even for the running subscription). */
void bus_unsubscribe(struct bus *bus, struct bus_sub *sub);

/* Does `type` match `pattern` (`*` = any run of characters, dots included)? */
int bus_pattern_match(const char *pattern, const char *type);

/* How many subscriptions would receive an event of this type (tags ignored). */
int bus_subscriber_count(struct bus *bus, const char *type);

/* Request/response. The callback gets either a response event (borrowed) and
 * error NULL, or response NULL and an error ("timeout", "bus closed").
 * Returns the correlation id, or 0 with *error set to "no responder" (nobody
 * subscribes to the type: the caller learns at once, no callback) or
 * "dropped" (queue full; no callback). Takes ownership of `req`. */
typedef void (*bus_response_fn)(struct event *response, const char *error, void *ctx);
uint64_t bus_request(struct bus *bus, struct event *req, uint64_t timeout_ms,
                     bus_response_fn fn, void *ctx, const char **error);
/* Forget a pending request; its callback will not be called. */
int bus_cancel_request(struct bus *bus, uint64_t correlation_id);
/* Answer request `correlation_id`. Takes ownership of `response`. Returns 0
 * when a caller was waiting (its callback runs on the next dispatch turn),
 * -1 when the request is unknown or already timed out (counted as late). */
int bus_respond(struct bus *bus, uint64_t correlation_id, struct event *response);

/* Dispatch now, up to `max` events (0: until the queues are empty). Returns
 * how many were dispatched. The loop does this by itself; shutdown and
 * benchmarks call it directly. */
size_t bus_dispatch(struct bus *bus, size_t max);

struct bus_type_stats {
    const char *type;
    uint64_t published, delivered, dropped;
    size_t depth, capacity;
};
typedef void (*bus_stats_fn)(const struct bus_type_stats *stats, void *ctx);
void bus_foreach_type(struct bus *bus, bus_stats_fn fn, void *ctx);

struct bus_totals {
    uint64_t published, delivered, dropped, late_responses, requests, timeouts;
    size_t depth, pending_requests, types;
};
void bus_totals(struct bus *bus, struct bus_totals *out);

#endif
