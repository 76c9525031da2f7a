/* bus: see bus.h.
 *
 * Counters per type: published = events accepted into the queue, dropped =
 * events refused or shed, delivered = events taken off the queue and handed
 * to their subscribers; so published = delivered + shed + depth. The totals
 * also count events of types beyond max_types as dropped, and `requests`
 * counts requests that were published. */
#include "core/bus.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/deadline_heap.h"
#include "core/log.h"
#include "core/log_repeat.h"

#define DEFAULT_CAPACITY 1000
#define DEFAULT_PER_TURN 1000
#define DEFAULT_MAX_TYPES 4096

struct bus_type {
    char *name;
    size_t name_len;
    uint64_t hash;
    struct event *head[EVENT_PRIO_COUNT], *tail[EVENT_PRIO_COUNT];
    size_t depth, capacity;
    uint64_t published, delivered, dropped;
    /* Subscribers resolved for this type, valid while subs_version equals
     * the bus's sub_version. */
    struct bus_sub **subs;
    size_t nsubs, subs_cap;
    uint64_t subs_version;
};

struct bus_sub {
    char *pattern;
    int is_pattern;
    char **tags;
    int tag_count;
    int priority;
    int dead;
    bus_handler_fn fn;
    void *ctx;
    /* Global list in delivery order; reused as the dead list once removed. */
    struct bus_sub *prev, *next;
};

struct bus_pending {
    struct deadline_node node;  /* id and deadline; first, so a node is its pending */
    bus_response_fn fn;
    void *ctx;
    struct event *response;     /* set once answered */
    int answered;
    struct bus_pending *hnext;  /* id hash chain */
    struct bus_pending *cnext;  /* completion FIFO */
};

struct capacity_rule {
    char *prefix;
    size_t len;
    size_t capacity;
};

struct bus {
    uv_loop_t *loop;
    struct bus_options opts;
    uv_idle_t idle;
    uv_timer_t timer;
    int idle_active;
    int closing;
    int handles_open;
    int dispatching;            /* inside bus_dispatch: no nesting */
    struct bus_type *delivering; /* its subs array is being walked */

    /* Interned types: open addressing for lookup, an array for stats order. */
    struct bus_type **table;
    size_t table_size;          /* power of two */
    struct bus_type **types;
    size_t ntypes, types_cap;

    struct capacity_rule *rules;
    size_t nrules;

    /* Every queued event is also in one bus-wide FIFO per priority, so that
     * events of different types leave in the order they were published
     * (userlist.start, addUser..., userlist.end must not be reordered). The
     * per-type queues only bound and shed. */
    struct event *ghead[EVENT_PRIO_COUNT], *gtail[EVENT_PRIO_COUNT];
    size_t depth;
    uint64_t seq;

    struct bus_sub *subs_head, *subs_tail;
    struct bus_sub *dead_subs;  /* unsubscribed while a delivery was running */
    uint64_t sub_version;

    /* Pending requests: by id in a chained hash, by deadline in a heap. */
    struct bus_pending **pending;
    size_t pending_buckets;     /* power of two */
    size_t npending;
    struct deadline_heap heap;
    struct bus_pending *done_head, *done_tail;
    uint64_t next_id;

    uint64_t published, delivered, dropped, late_responses, requests, timeouts;
    int warned_max_types;

    /* Drops from full queues can happen at event rate: logged per type the
     * first few times, then in one summary line per interval. */
    struct log_repeat droplog; /* queue-full drops: the first few in full, then summaries */
};

static void on_idle(uv_idle_t *handle);
static void on_timer(uv_timer_t *handle);
static void pending_unhash(struct bus *bus, struct bus_pending *p);

/* Word-at-a-time hash: the type is hashed on every publish. */
static uint64_t hash_bytes(const char *s, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15ull ^ len;
    while (len >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
        s += 8;
        len -= 8;
    }
    if (len) {
        uint64_t w = 0;
        memcpy(&w, s, len);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
    }
    h ^= h >> 29;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 32;
    return h;
}

/* Backtracking to the last star only is enough for `*`-only patterns. */
int bus_pattern_match(const char *pat, const char *s)
{
    const char *star = NULL, *resume = NULL;
    while (*s) {
        if (*pat == '*') {
            star = pat++;
            resume = s;
        } else if (*pat == *s) {
            pat++;
            s++;
        } else if (star) {
            pat = star + 1;
            s = ++resume;
        } else {
            return 0;
        }
    }
    while (*pat == '*')
        pat++;
    return *pat == '\0';
}

static int sub_matches(const struct bus_sub *sub, const char *type)
{
    return sub->is_pattern ? bus_pattern_match(sub->pattern, type) : strcmp(sub->pattern, type) == 0;
}

static int sub_wants(const struct bus_sub *sub, const struct event *ev)
{
    for (int i = 0; i < sub->tag_count; i++) {
        if (!event_has_tag(ev, sub->tags[i]))
            return 0;
    }
    return 1;
}

static void start_idle(struct bus *bus)
{
    if (!bus->idle_active && !bus->closing) {
        uv_idle_start(&bus->idle, on_idle);
        bus->idle_active = 1;
    }
}

struct bus *bus_new(uv_loop_t *loop, const struct bus_options *opts)
{
    struct bus *bus = calloc(1, sizeof *bus);
    if (!bus)
        return NULL;
    bus->loop = loop;
    if (opts)
        bus->opts = *opts;
    if (!bus->opts.default_capacity)
        bus->opts.default_capacity = DEFAULT_CAPACITY;
    if (bus->opts.dispatch_per_turn <= 0)
        bus->opts.dispatch_per_turn = DEFAULT_PER_TURN;
    if (!bus->opts.max_types)
        bus->opts.max_types = DEFAULT_MAX_TYPES;
    bus->table_size = 64;
    bus->table = calloc(bus->table_size, sizeof *bus->table);
    bus->pending_buckets = 64;
    bus->pending = calloc(bus->pending_buckets, sizeof *bus->pending);
    if (!bus->table || !bus->pending)
        goto fail;
    bus->sub_version = 1;
    /* These only link the handle into the loop; they cannot fail. */
    uv_idle_init(loop, &bus->idle);
    uv_timer_init(loop, &bus->timer);
    bus->idle.data = bus;
    bus->timer.data = bus;
    log_repeat_init(&bus->droplog, LOG_WARN, "bus", "events dropped", 10, 32);
    log_repeat_attach(&bus->droplog, loop);
    bus->handles_open = 3;
    return bus;
fail:
    free(bus->table);
    free(bus->pending);
    free(bus);
    return NULL;
}

static size_t capacity_for(const struct bus *bus, const char *name)
{
    size_t best_len = 0, cap = bus->opts.default_capacity;
    int found = 0;
    for (size_t i = 0; i < bus->nrules; i++) {
        const struct capacity_rule *r = &bus->rules[i];
        if ((!found || r->len > best_len) && strncmp(name, r->prefix, r->len) == 0) {
            best_len = r->len;
            cap = r->capacity;
            found = 1;
        }
    }
    return cap;
}

static struct bus_type *type_find(const struct bus *bus, const char *name, size_t len, uint64_t h)
{
    size_t mask = bus->table_size - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct bus_type *t = bus->table[i];
        if (!t)
            return NULL;
        if (t->hash == h && t->name_len == len && memcmp(t->name, name, len) == 0)
            return t;
    }
}

static void table_put(struct bus_type **table, size_t size, struct bus_type *t)
{
    size_t mask = size - 1;
    size_t i = t->hash & mask;
    while (table[i])
        i = (i + 1) & mask;
    table[i] = t;
}

/* Returns NULL when out of memory or when max_types is reached. */
static struct bus_type *type_intern(struct bus *bus, const char *name)
{
    size_t len = strlen(name);
    uint64_t h = hash_bytes(name, len);
    struct bus_type *t = type_find(bus, name, len, h);
    if (t)
        return t;
    if (bus->ntypes >= bus->opts.max_types) {
        if (!bus->warned_max_types) {
            log_warn("bus", "more than %zu event types: dropping events of new types such as %s",
                     bus->opts.max_types, name);
            bus->warned_max_types = 1;
        }
        return NULL;
    }
    /* Grow first so that nothing below can fail after the type exists. */
    if ((bus->ntypes + 1) * 2 > bus->table_size) {
        size_t size = bus->table_size * 2;
        struct bus_type **table = calloc(size, sizeof *table);
        if (!table)
            return NULL;
        for (size_t i = 0; i < bus->ntypes; i++)
            table_put(table, size, bus->types[i]);
        free(bus->table);
        bus->table = table;
        bus->table_size = size;
    }
    if (bus->ntypes == bus->types_cap) {
        size_t cap = bus->types_cap ? bus->types_cap * 2 : 16;
        struct bus_type **types = realloc(bus->types, cap * sizeof *types);
        if (!types)
            return NULL;
        bus->types = types;
        bus->types_cap = cap;
    }
    t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->name = malloc(len + 1);
    if (!t->name) {
        free(t);
        return NULL;
    }
    memcpy(t->name, name, len + 1);
    t->name_len = len;
    t->hash = h;
    t->capacity = capacity_for(bus, name);
    table_put(bus->table, bus->table_size, t);
    bus->types[bus->ntypes++] = t;
    return t;
}

int bus_set_capacity(struct bus *bus, const char *prefix, size_t capacity)
{
    if (!bus || !prefix || capacity == 0)
        return -1;
    struct capacity_rule *rule = NULL;
    for (size_t i = 0; i < bus->nrules; i++) {
        if (strcmp(bus->rules[i].prefix, prefix) == 0)
            rule = &bus->rules[i];
    }
    if (!rule) {
        char *copy = strdup(prefix);
        if (!copy)
            return -1;
        struct capacity_rule *rules = realloc(bus->rules, (bus->nrules + 1) * sizeof *rules);
        if (!rules) {
            free(copy);
            return -1;
        }
        bus->rules = rules;
        rule = &bus->rules[bus->nrules++];
        rule->prefix = copy;
        rule->len = strlen(copy);
    }
    rule->capacity = capacity;
    /* A smaller bound does not evict: the queue drains below it first. */
    for (size_t i = 0; i < bus->ntypes; i++)
        bus->types[i]->capacity = capacity_for(bus, bus->types[i]->name);
    return 0;
}

static struct event *queue_pop(struct bus *bus, struct bus_type *t, int prio)
{
    struct event *ev = t->head[prio];
    t->head[prio] = ev->next;
    if (!t->head[prio])
        t->tail[prio] = NULL;
    ev->next = NULL;
    ev->btype = NULL;
    t->depth--;
    bus->depth--;
    return ev;
}

static void global_append(struct bus *bus, struct event *ev, int prio)
{
    ev->gnext = NULL;
    ev->gprev = bus->gtail[prio];
    if (bus->gtail[prio])
        bus->gtail[prio]->gnext = ev;
    else
        bus->ghead[prio] = ev;
    bus->gtail[prio] = ev;
}

static void global_unlink(struct bus *bus, struct event *ev, int prio)
{
    if (ev->gprev)
        ev->gprev->gnext = ev->gnext;
    else
        bus->ghead[prio] = ev->gnext;
    if (ev->gnext)
        ev->gnext->gprev = ev->gprev;
    else
        bus->gtail[prio] = ev->gprev;
    ev->gprev = ev->gnext = NULL;
}

/* Removes the oldest event of type t at prio from both queues. */
static struct event *queue_take(struct bus *bus, struct bus_type *t, int prio)
{
    struct event *ev = t->head[prio];
    global_unlink(bus, ev, prio);
    return queue_pop(bus, t, prio);
}

/* The next event to dispatch: highest priority first; within a priority,
 * publish order across all types. The oldest event of a priority is also
 * the head of its type's queue at that priority. */
static struct event *next_event(struct bus *bus)
{
    for (int prio = EVENT_PRIO_COUNT - 1; prio >= 0; prio--) {
        struct event *ev = bus->ghead[prio];
        if (!ev)
            continue;
        struct bus_type *t = ev->btype;
        queue_take(bus, t, prio);
        ev->btype = t; /* queue_pop cleared it; delivery needs it */
        return ev;
    }
    return NULL;
}

static void log_drop(struct bus *bus, const struct bus_type *t, int prio)
{
    char msg[200];
    snprintf(msg, sizeof msg, "queue of %s full (%zu): dropped an event of priority %d", t->name, t->capacity, prio);
    log_repeat(&bus->droplog, t->name, "%s", msg);
}

int bus_publish(struct bus *bus, struct event *ev)
{
    if (!ev)
        return -1;
    if (!bus || bus->closing || ev->btype) {
        /* Closed bus, or the event is queued already (its link is in use). */
        event_unref(ev);
        return -1;
    }
    struct bus_type *t = type_intern(bus, ev->type);
    if (!t) {
        bus->dropped++;
        event_unref(ev);
        return -1;
    }
    if (ev->priority < EVENT_PRIO_NORMAL)
        ev->priority = EVENT_PRIO_NORMAL;
    else if (ev->priority > EVENT_PRIO_CRITICAL)
        ev->priority = EVENT_PRIO_CRITICAL;
    int prio = ev->priority;
    while (t->depth >= t->capacity) {
        int lower = 0;
        while (lower < prio && !t->head[lower])
            lower++;
        t->dropped++;
        bus->dropped++;
        log_drop(bus, t, lower >= prio ? prio : lower);
        if (lower >= prio) {
            event_unref(ev);
            return -1;
        }
        event_unref(queue_take(bus, t, lower));
    }
    ev->next = NULL;
    ev->btype = t;
    ev->seq = ++bus->seq;
    if (t->tail[prio])
        t->tail[prio]->next = ev;
    else
        t->head[prio] = ev;
    t->tail[prio] = ev;
    global_append(bus, ev, prio);
    t->depth++;
    t->published++;
    bus->published++;
    if (bus->depth++ == 0)
        start_idle(bus);
    return 0;
}

/* Rebuilds t->subs from the global list, which is already in delivery order. */
static int resolve_subs(struct bus *bus, struct bus_type *t)
{
    size_t n = 0;
    for (struct bus_sub *s = bus->subs_head; s; s = s->next) {
        if (!sub_matches(s, t->name))
            continue;
        if (n == t->subs_cap) {
            size_t cap = t->subs_cap ? t->subs_cap * 2 : 4;
            struct bus_sub **subs = realloc(t->subs, cap * sizeof *subs);
            if (!subs)
                return -1;
            t->subs = subs;
            t->subs_cap = cap;
        }
        t->subs[n++] = s;
    }
    t->nsubs = n;
    t->subs_version = bus->sub_version;
    return 0;
}

static void sub_free(struct bus_sub *sub)
{
    for (int i = 0; i < sub->tag_count; i++)
        free(sub->tags[i]);
    free(sub->tags);
    free(sub->pattern);
    free(sub);
}

static void free_dead_subs(struct bus *bus)
{
    while (bus->dead_subs) {
        struct bus_sub *s = bus->dead_subs;
        bus->dead_subs = s->next;
        sub_free(s);
    }
}

struct bus_sub *bus_subscribe(struct bus *bus, const char *pattern, const char *const *tags,
                              int tag_count, int priority, bus_handler_fn fn, void *ctx)
{
    if (!bus || bus->closing || !pattern || !*pattern || !fn || tag_count < 0 ||
        (tag_count > 0 && !tags))
        return NULL;
    struct bus_sub *sub = calloc(1, sizeof *sub);
    if (!sub)
        return NULL;
    sub->pattern = strdup(pattern);
    if (!sub->pattern)
        goto fail;
    sub->is_pattern = strchr(pattern, '*') != NULL;
    if (tag_count > 0) {
        sub->tags = calloc((size_t)tag_count, sizeof *sub->tags);
        if (!sub->tags)
            goto fail;
        for (int i = 0; i < tag_count; i++) {
            if (!tags[i] || !(sub->tags[i] = strdup(tags[i])))
                goto fail;
            sub->tag_count = i + 1;
        }
    }
    sub->priority = priority;
    sub->fn = fn;
    sub->ctx = ctx;
    /* Insert after the last subscription of equal or higher priority. */
    struct bus_sub *after = bus->subs_tail;
    while (after && after->priority < priority)
        after = after->prev;
    sub->prev = after;
    sub->next = after ? after->next : bus->subs_head;
    if (sub->next)
        sub->next->prev = sub;
    else
        bus->subs_tail = sub;
    if (after)
        after->next = sub;
    else
        bus->subs_head = sub;
    bus->sub_version++;
    return sub;
fail:
    sub_free(sub);
    return NULL;
}

static void sub_unlink(struct bus *bus, struct bus_sub *sub)
{
    if (sub->prev)
        sub->prev->next = sub->next;
    else
        bus->subs_head = sub->next;
    if (sub->next)
        sub->next->prev = sub->prev;
    else
        bus->subs_tail = sub->prev;
    sub->prev = NULL;
    sub->dead = 1;
    bus->sub_version++;
    /* A delivery may be walking an array that holds it: free afterwards. */
    if (bus->delivering) {
        sub->next = bus->dead_subs;
        bus->dead_subs = sub;
    } else {
        sub_free(sub);
    }
}

void bus_unsubscribe(struct bus *bus, struct bus_sub *sub)
{
    if (bus && sub && !sub->dead)
        sub_unlink(bus, sub);
}

int bus_subscriber_count(struct bus *bus, const char *type)
{
    if (!bus || !type)
        return 0;
    size_t len = strlen(type);
    struct bus_type *t = type_find(bus, type, len, hash_bytes(type, len));
    if (t && t != bus->delivering &&
        (t->subs_version == bus->sub_version || resolve_subs(bus, t) == 0))
        return (int)t->nsubs;
    /* Unknown type (not interned just for asking), or its array is in use. */
    int n = 0;
    for (struct bus_sub *s = bus->subs_head; s; s = s->next)
        n += sub_matches(s, type);
    return n;
}

static void deliver(struct bus *bus, struct event *ev)
{
    struct bus_type *t = ev->btype;
    ev->btype = NULL;
    if (t->subs_version != bus->sub_version && resolve_subs(bus, t) != 0) {
        log_error("bus", "out of memory resolving subscribers of %s: event dropped", t->name);
        t->dropped++;
        bus->dropped++;
        event_unref(ev);
        return;
    }
    t->delivered++;
    bus->delivered++;
    /* The array is not rebuilt while delivering (see bus_subscriber_count);
     * subscriptions made meanwhile see the next event, removed ones are
     * marked dead and freed below. */
    bus->delivering = t;
    struct bus_sub **subs = t->subs;
    size_t n = t->nsubs;
    for (size_t i = 0; i < n; i++) {
        struct bus_sub *s = subs[i];
        if (s->dead || (s->tag_count && !sub_wants(s, ev)))
            continue;
        s->fn(ev, s->ctx);
    }
    bus->delivering = NULL;
    free_dead_subs(bus);
    event_unref(ev);
}

static void run_completion(struct bus *bus, struct bus_pending *p)
{
    bus->done_head = p->cnext;
    if (!bus->done_head)
        bus->done_tail = NULL;
    struct event *response = p->response;
    bus_response_fn fn = p->fn;
    void *ctx = p->ctx;
    /* Cancelled after the answer came: it is in the FIFO but not the hash. */
    int cancelled = fn == NULL;
    if (!cancelled)
        pending_unhash(bus, p);
    free(p);
    if (!cancelled)
        fn(response, NULL, ctx);
    event_unref(response);
}

static size_t dispatch(struct bus *bus, size_t max)
{
    if (bus->dispatching || bus->closing)
        return 0;
    bus->dispatching = 1;
    size_t n = 0;
    while (!bus->closing && (max == 0 || n < max)) {
        if (bus->done_head) {
            run_completion(bus, bus->done_head);
        } else {
            struct event *ev = next_event(bus);
            if (!ev)
                break;
            deliver(bus, ev);
        }
        n++;
    }
    bus->dispatching = 0;
    return n;
}

size_t bus_dispatch(struct bus *bus, size_t max)
{
    return bus ? dispatch(bus, max) : 0;
}

static void on_idle(uv_idle_t *handle)
{
    struct bus *bus = handle->data;
    dispatch(bus, (size_t)bus->opts.dispatch_per_turn);
    if (!bus->closing && bus->depth == 0 && !bus->done_head && bus->idle_active) {
        uv_idle_stop(&bus->idle);
        bus->idle_active = 0;
    }
}

/* The pending request whose node n is (the node is its first member). */
static struct bus_pending *pending_of(struct deadline_node *n) { return (struct bus_pending *)n; }

static void heap_remove(struct bus *bus, struct bus_pending *p)
{
    deadline_heap_remove(&bus->heap, &p->node);
    if (bus->heap.len == 0)
        uv_timer_stop(&bus->timer);
}

static void arm_timer(struct bus *bus)
{
    if (bus->heap.len == 0 || bus->closing)
        return;
    uint64_t now = uv_now(bus->loop);
    uint64_t deadline = deadline_heap_top(&bus->heap)->deadline;
    uv_timer_start(&bus->timer, on_timer, deadline > now ? deadline - now : 0, 0);
}

static struct bus_pending *pending_find(struct bus *bus, uint64_t id)
{
    struct bus_pending *p = bus->pending[id & (bus->pending_buckets - 1)];
    while (p && p->node.id != id)
        p = p->hnext;
    return p;
}

static void pending_unhash(struct bus *bus, struct bus_pending *p)
{
    struct bus_pending **pp = &bus->pending[p->node.id & (bus->pending_buckets - 1)];
    while (*pp != p)
        pp = &(*pp)->hnext;
    *pp = p->hnext;
    bus->npending--;
}

/* Growing is best effort: a failed resize only makes the chains longer. */
static void pending_hash(struct bus *bus, struct bus_pending *p)
{
    if (bus->npending >= bus->pending_buckets) {
        size_t size = bus->pending_buckets * 2;
        struct bus_pending **buckets = calloc(size, sizeof *buckets);
        if (buckets) {
            for (size_t i = 0; i < bus->pending_buckets; i++) {
                struct bus_pending *q = bus->pending[i];
                while (q) {
                    struct bus_pending *next = q->hnext;
                    q->hnext = buckets[q->node.id & (size - 1)];
                    buckets[q->node.id & (size - 1)] = q;
                    q = next;
                }
            }
            free(bus->pending);
            bus->pending = buckets;
            bus->pending_buckets = size;
        }
    }
    p->hnext = bus->pending[p->node.id & (bus->pending_buckets - 1)];
    bus->pending[p->node.id & (bus->pending_buckets - 1)] = p;
    bus->npending++;
}

static void on_timer(uv_timer_t *handle)
{
    struct bus *bus = handle->data;
    uint64_t now = uv_now(bus->loop);
    while (!bus->closing && bus->heap.len && deadline_heap_top(&bus->heap)->deadline <= now) {
        struct bus_pending *p = pending_of(deadline_heap_top(&bus->heap));
        heap_remove(bus, p);
        pending_unhash(bus, p);
        bus->timeouts++;
        bus_response_fn fn = p->fn;
        void *ctx = p->ctx;
        free(p);
        fn(NULL, "timeout", ctx);
    }
    arm_timer(bus);
}

uint64_t bus_request(struct bus *bus, struct event *req, uint64_t timeout_ms,
                     bus_response_fn fn, void *ctx, const char **error)
{
    const char *err_dummy;
    if (!error)
        error = &err_dummy;
    if (!bus || !req || !fn) {
        event_unref(req);
        *error = "invalid request";
        return 0;
    }
    if (bus->closing) {
        event_unref(req);
        *error = "bus closed";
        return 0;
    }
    if (bus_subscriber_count(bus, req->type) == 0) {
        event_unref(req);
        *error = "no responder";
        return 0;
    }
    /* Reserve the heap slot first: after a successful publish nothing may fail. */
    if (deadline_heap_reserve(&bus->heap) != 0) {
        event_unref(req);
        *error = "out of memory";
        return 0;
    }
    struct bus_pending *p = calloc(1, sizeof *p);
    if (!p) {
        event_unref(req);
        *error = "out of memory";
        return 0;
    }
    uint64_t id = ++bus->next_id;
    req->correlation_id = id;
    if (bus_publish(bus, req) != 0) {
        free(p);
        *error = "dropped";
        return 0;
    }
    uint64_t now = uv_now(bus->loop);
    p->node.id = id;
    p->node.deadline = timeout_ms > UINT64_MAX - now ? UINT64_MAX : now + timeout_ms;
    p->fn = fn;
    p->ctx = ctx;
    pending_hash(bus, p);
    if (deadline_heap_push(&bus->heap, &p->node))
        arm_timer(bus);
    bus->requests++;
    *error = NULL;
    return id;
}

int bus_cancel_request(struct bus *bus, uint64_t correlation_id)
{
    if (!bus)
        return -1;
    struct bus_pending *p = pending_find(bus, correlation_id);
    if (!p)
        return -1;
    pending_unhash(bus, p);
    if (p->answered) {
        /* Already in the completion FIFO: it is released from there. */
        p->fn = NULL;
    } else {
        heap_remove(bus, p);
        free(p);
    }
    return 0;
}

int bus_respond(struct bus *bus, uint64_t correlation_id, struct event *response)
{
    if (!bus) {
        event_unref(response);
        return -1;
    }
    struct bus_pending *p = bus->closing ? NULL : pending_find(bus, correlation_id);
    if (!p || p->answered) {
        /* Unknown, timed out, cancelled, or answered twice. */
        bus->late_responses++;
        event_unref(response);
        return -1;
    }
    if (!response) {
        /* An answer must carry an event; make one so the caller is not left
         * waiting for a timeout. */
        response = event_new("bus.response", NULL, EVENT_PRIO_NORMAL, NULL, 0);
        if (!response)
            return -1;
    }
    response->correlation_id = correlation_id;
    heap_remove(bus, p);
    p->answered = 1;
    p->response = response;
    p->cnext = NULL;
    if (bus->done_tail)
        bus->done_tail->cnext = p;
    else
        bus->done_head = p;
    bus->done_tail = p;
    start_idle(bus);
    return 0;
}

void bus_foreach_type(struct bus *bus, bus_stats_fn fn, void *ctx)
{
    if (!bus || !fn)
        return;
    /* Indexing (not a saved pointer): the callback may add types. */
    for (size_t i = 0; i < bus->ntypes; i++) {
        const struct bus_type *t = bus->types[i];
        struct bus_type_stats stats = {
            .type = t->name,
            .published = t->published,
            .delivered = t->delivered,
            .dropped = t->dropped,
            .depth = t->depth,
            .capacity = t->capacity,
        };
        fn(&stats, ctx);
    }
}

void bus_totals(struct bus *bus, struct bus_totals *out)
{
    memset(out, 0, sizeof *out);
    if (!bus)
        return;
    out->published = bus->published;
    out->delivered = bus->delivered;
    out->dropped = bus->dropped;
    out->late_responses = bus->late_responses;
    out->requests = bus->requests;
    out->timeouts = bus->timeouts;
    out->depth = bus->depth;
    out->pending_requests = bus->npending;
    out->types = bus->ntypes;
}

static void on_handle_closed(uv_handle_t *handle)
{
    struct bus *bus = handle->data;
    bus->handles_open--;
}

static void on_droplog_closed(uv_handle_t *h)
{
    struct bus *bus = (struct bus *)((char *)h->data - offsetof(struct bus, droplog));
    bus->handles_open--;
}

void bus_close(struct bus *bus)
{
    if (!bus || bus->closing)
        return;
    bus->closing = 1;
    bus->idle_active = 0;
    for (size_t i = 0; i < bus->ntypes; i++) {
        struct bus_type *t = bus->types[i];
        for (int prio = 0; prio < EVENT_PRIO_COUNT; prio++) {
            while (t->head[prio])
                event_unref(queue_take(bus, t, prio));
        }
    }
    /* One at a time, unlinked before the call: a callback may cancel or
     * answer other requests. */
    while (bus->heap.len) {
        struct bus_pending *p = pending_of(deadline_heap_top(&bus->heap));
        heap_remove(bus, p);
        pending_unhash(bus, p);
        bus_response_fn fn = p->fn;
        void *ctx = p->ctx;
        free(p);
        fn(NULL, "bus closed", ctx);
    }
    while (bus->done_head) {
        struct bus_pending *p = bus->done_head;
        bus->done_head = p->cnext;
        if (!bus->done_head)
            bus->done_tail = NULL;
        bus_response_fn fn = p->fn;
        void *ctx = p->ctx;
        if (fn)
            pending_unhash(bus, p);
        event_unref(p->response);
        free(p);
        if (fn)
            fn(NULL, "bus closed", ctx);
    }
    while (bus->subs_head)
        sub_unlink(bus, bus->subs_head);
    uv_close((uv_handle_t *)&bus->idle, on_handle_closed);
    uv_close((uv_handle_t *)&bus->timer, on_handle_closed);
    log_repeat_close(&bus->droplog, on_droplog_closed);
}

int bus_closed(const struct bus *bus)
{
    return bus && bus->closing && bus->handles_open == 0;
}

void bus_free(struct bus *bus)
{
    if (!bus)
        return;
    if (!bus_closed(bus)) {
        /* Freeing before the close callbacks ran would corrupt the loop. */
        log_error("bus", "bus_free before bus_closed(): leaking the bus");
        return;
    }
    free_dead_subs(bus);
    for (size_t i = 0; i < bus->ntypes; i++) {
        free(bus->types[i]->subs);
        free(bus->types[i]->name);
        free(bus->types[i]);
    }
    free(bus->types);
    free(bus->table);
    for (size_t i = 0; i < bus->nrules; i++)
        free(bus->rules[i].prefix);
    free(bus->rules);
    free(bus->pending);
    deadline_heap_free(&bus->heap);
    log_repeat_free(&bus->droplog);
    free(bus);
}
