/* Unit tests for bus.c: queues, priorities, shedding, capacities, pattern and
 * tag matching, subscriber order, changes during dispatch, request/response
 * on a real libuv loop, the per-turn cap, stats and shutdown. */
#include <stdlib.h>

#include "core/bus.h"
#include "tap.h"

/* tap.h's ok() evaluates its condition twice; these conditions publish,
 * respond and unref, so evaluate them once. */
#define check(cond, ...)                                                     \
    do {                                                                     \
        int check_ = !!(cond);                                               \
        ok(check_, __VA_ARGS__);                                             \
        if (!check_)                                                         \
            printf("#   condition: %s\n", #cond);                            \
    } while (0)

/* What handlers saw, as "label=payload " words. */
static char seen[4096];

static void record(const char *label, struct event *ev)
{
    size_t len = strlen(seen);
    snprintf(seen + len, sizeof seen - len, "%s=%s ", label, event_json(ev, NULL));
}

static void recorder(struct event *ev, void *ctx)
{
    record(ctx, ev);
}

static int released;
static void count_release(struct event *ev)
{
    (void)ev;
    released++;
}

static uv_loop_t loop;

static struct bus *setup(size_t capacity, int per_turn, size_t max_types)
{
    seen[0] = '\0';
    uv_loop_init(&loop);
    struct bus_options opts = {capacity, per_turn, max_types};
    return bus_new(&loop, &opts);
}

/* Close, let the close callbacks run, free; the loop must end up empty. */
static void teardown(struct bus *bus)
{
    bus_close(bus);
    for (int i = 0; i < 10 && !bus_closed(bus); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    check(bus_closed(bus), "the bus reports closed after its close callbacks");
    bus_free(bus);
    check(uv_loop_close(&loop) == 0, "no handle is left open on the loop");
}

static int publish(struct bus *bus, const char *type, int prio, const char *json)
{
    return bus_publish(bus, event_new(type, NULL, prio, json, strlen(json)));
}

static int publish_room(struct bus *bus, const char *type, const char *room, const char *json)
{
    return bus_publish(bus, event_new(type, room, EVENT_PRIO_NORMAL, json, strlen(json)));
}

struct type_stats_find {
    const char *type;
    struct bus_type_stats stats;
    int found;
};

static void find_stats(const struct bus_type_stats *s, void *ctx)
{
    struct type_stats_find *f = ctx;
    if (strcmp(s->type, f->type) == 0) {
        f->stats = *s;
        f->found = 1;
    }
}

static struct bus_type_stats stats_of(struct bus *bus, const char *type)
{
    struct type_stats_find f = {.type = type};
    bus_foreach_type(bus, find_stats, &f);
    return f.stats;
}

static void test_priority_order(void)
{
    struct bus *bus = setup(100, 100, 100);
    bus_subscribe(bus, "*", NULL, 0, 0, recorder, "s");
    publish(bus, "a.x", EVENT_PRIO_NORMAL, "\"a1\"");
    publish(bus, "b.y", EVENT_PRIO_URGENT, "\"b1\"");
    publish(bus, "a.x", EVENT_PRIO_NORMAL, "\"a2\"");
    publish(bus, "a.x", EVENT_PRIO_CRITICAL, "\"a3\"");
    publish(bus, "b.y", EVENT_PRIO_NORMAL, "\"b2\"");
    publish(bus, "c.z", EVENT_PRIO_HIGH, "\"c1\"");
    check(bus_dispatch(bus, 0) == 6, "bus_dispatch(0) dispatches everything");
    is_str(seen, "s=\"a3\" s=\"b1\" s=\"c1\" s=\"a1\" s=\"a2\" s=\"b2\" ",
           "highest priority first across types, publish order within a priority across types");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.published == 6 && t.delivered == 6 && t.depth == 0 && t.types == 3, "totals add up");
    teardown(bus);
}

static void test_drop_when_full(void)
{
    struct bus *bus = setup(2, 100, 100);
    check(publish(bus, "full.t", 1, "1") == 0, "first event queued");
    check(publish(bus, "full.t", 1, "2") == 0, "second event queued");
    check(publish(bus, "full.t", 1, "3") == -1, "third event dropped: the queue is full");
    check(publish(bus, "full.t", 0, "4") == -1, "a lower priority is dropped too");
    check(publish(bus, "other.t", 1, "5") == 0, "another type has its own queue");
    struct bus_type_stats s = stats_of(bus, "full.t");
    check(s.dropped == 2 && s.published == 2 && s.depth == 2 && s.capacity == 2,
       "the drops are counted for the type");
    check(stats_of(bus, "other.t").dropped == 0, "and not for other types");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.dropped == 2 && t.depth == 3, "the totals count the drops");
    teardown(bus);
}

static void test_shedding(void)
{
    struct bus *bus = setup(3, 100, 100);
    bus_subscribe(bus, "shed.t", NULL, 0, 0, recorder, "s");
    publish(bus, "shed.t", EVENT_PRIO_NORMAL, "\"n1\"");
    publish(bus, "shed.t", EVENT_PRIO_NORMAL, "\"n2\"");
    publish(bus, "shed.t", EVENT_PRIO_HIGH, "\"h1\"");
    check(publish(bus, "shed.t", EVENT_PRIO_URGENT, "\"u1\"") == 0,
       "a full queue takes a higher-priority event");
    check(publish(bus, "shed.t", EVENT_PRIO_CRITICAL, "\"c1\"") == 0, "and another one");
    check(publish(bus, "shed.t", EVENT_PRIO_HIGH, "\"h2\"") == -1,
       "an event no higher than everything queued is dropped");
    struct bus_type_stats s = stats_of(bus, "shed.t");
    check(s.dropped == 3 && s.depth == 3, "shed and dropped events are counted");
    bus_dispatch(bus, 0);
    is_str(seen, "s=\"c1\" s=\"u1\" s=\"h1\" ",
           "the oldest of the lowest priority went first, then the next lowest");
    s = stats_of(bus, "shed.t");
    check(s.published == s.delivered + 2, "published = delivered + shed");
    teardown(bus);
}

static void test_capacity_prefix(void)
{
    struct bus *bus = setup(7, 100, 100);
    publish(bus, "cytube.event.chatMsg", 0, "1");
    check(bus_set_capacity(bus, "cytube.", 5) == 0, "a prefix capacity is accepted");
    check(bus_set_capacity(bus, "cytube.event.", 3) == 0, "a longer prefix too");
    check(bus_set_capacity(bus, "cytube.", 0) == -1, "capacity 0 is refused");
    check(stats_of(bus, "cytube.event.chatMsg").capacity == 3,
       "an existing type gets the longest prefix's capacity");
    publish(bus, "cytube.send", 0, "1");
    publish(bus, "sql.query", 0, "1");
    check(stats_of(bus, "cytube.send").capacity == 5, "a new type gets its prefix's capacity");
    check(stats_of(bus, "sql.query").capacity == 7, "a type without a prefix gets the default");
    bus_set_capacity(bus, "cytube.event.", 2);
    check(stats_of(bus, "cytube.event.chatMsg").capacity == 2, "a prefix can be set again");
    for (int i = 0; i < 5; i++)
        publish(bus, "cytube.event.chatMsg", 0, "1");
    check(stats_of(bus, "cytube.event.chatMsg").depth == 2, "the queue is bounded by it");
    teardown(bus);
}

static void test_matching(void)
{
    struct bus *bus = setup(100, 100, 100);
    bus_subscribe(bus, "cytube.event.chatMsg", NULL, 0, 0, recorder, "exact");
    bus_subscribe(bus, "cytube.event.*", NULL, 0, 0, recorder, "prefix");
    bus_subscribe(bus, "*.failed", NULL, 0, 0, recorder, "suffix");
    bus_subscribe(bus, "a.*.c", NULL, 0, 0, recorder, "middle");
    bus_subscribe(bus, "*a*b*", NULL, 0, 0, recorder, "multi");
    bus_subscribe(bus, "*", NULL, 0, -10, recorder, "all");
    check(bus_subscriber_count(bus, "cytube.event.chatMsg") == 3, "exact, prefix pattern and *");
    check(bus_subscriber_count(bus, "cytube.event.") == 2, "a trailing * matches the empty run");
    check(bus_subscriber_count(bus, "cytube.events") == 1, "a pattern is not a prefix match");
    check(bus_subscriber_count(bus, "sql.query.failed") == 2, "*.failed spans dots");
    check(bus_subscriber_count(bus, "failed") == 1, "*.failed needs the dot");
    check(bus_subscriber_count(bus, "a.b.c") == 3, "a.*.c and *a*b* match a.b.c");
    check(bus_subscriber_count(bus, "a.x.y.c") == 2, "a.*.c matches across dots");
    check(bus_subscriber_count(bus, "a.c") == 1, "a.*.c needs both dots");
    check(bus_subscriber_count(bus, "xxaxxbxx") == 2, "several stars backtrack");
    check(bus_subscriber_count(bus, "xxbxxaxx") == 1, "stars keep their order");
    check(bus_pattern_match("a.*.c", "a.b.c") && !bus_pattern_match("a.*.c", "a.b.d") &&
       bus_pattern_match("*", "") && !bus_pattern_match("", "x") && bus_pattern_match("**x", "x"),
       "bus_pattern_match agrees");
    publish(bus, "cytube.event.chatMsg", 0, "1");
    publish(bus, "x.failed", 0, "2");
    publish(bus, "a.bb.c", 0, "3");
    bus_dispatch(bus, 0);
    is_str(seen, "exact=1 prefix=1 all=1 suffix=2 all=2 middle=3 multi=3 all=3 ",
           "each event reaches exactly its matching subscriptions");
    teardown(bus);
}

static void test_tags(void)
{
    struct bus *bus = setup(100, 100, 100);
    const char *lobby[] = {"room:lobby"};
    const char *both[] = {"room:lobby", "mod"};
    bus_subscribe(bus, "chat", lobby, 1, 0, recorder, "lobby");
    bus_subscribe(bus, "chat", both, 2, 0, recorder, "both");
    bus_subscribe(bus, "chat", NULL, 0, 0, recorder, "any");
    check(bus_subscriber_count(bus, "chat") == 3, "subscriber_count ignores tags");
    publish_room(bus, "chat", "lobby", "1");
    publish_room(bus, "chat", "other", "2");
    publish(bus, "chat", 0, "3");
    struct event *ev = event_new("chat", "lobby", 0, "4", 1);
    event_add_tag(ev, "mod");
    bus_publish(bus, ev);
    bus_dispatch(bus, 0);
    is_str(seen, "lobby=1 any=1 any=2 any=3 lobby=4 both=4 any=4 ",
           "a subscription sees only events carrying all its tags");
    teardown(bus);
}

static void test_sub_priority(void)
{
    struct bus *bus = setup(100, 100, 100);
    bus_subscribe(bus, "p", NULL, 0, 0, recorder, "zero");
    bus_subscribe(bus, "p", NULL, 0, 5, recorder, "five-a");
    bus_subscribe(bus, "*", NULL, 0, -1, recorder, "minus");
    bus_subscribe(bus, "p", NULL, 0, 5, recorder, "five-b");
    bus_subscribe(bus, "p*", NULL, 0, 9, recorder, "nine");
    bus_subscribe(bus, "p", NULL, 0, 0, recorder, "zero-b");
    publish(bus, "p", 0, "1");
    bus_dispatch(bus, 0);
    is_str(seen, "nine=1 five-a=1 five-b=1 zero=1 zero-b=1 minus=1 ",
           "higher priority first, then subscription order");
    teardown(bus);
}

static struct bus *cur_bus;
static struct bus_sub *victim_sub;
static int self_calls;

static void unsubscribe_self(struct event *ev, void *ctx)
{
    record("self", ev);
    self_calls++;
    bus_unsubscribe(cur_bus, *(struct bus_sub **)ctx);
}

static void unsubscribe_other(struct event *ev, void *ctx)
{
    record("killer", ev);
    bus_unsubscribe(cur_bus, victim_sub);
    victim_sub = NULL;
    (void)ctx;
}

static void test_unsubscribe_in_handler(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    static struct bus_sub *self;
    bus_subscribe(bus, "u", NULL, 0, 10, recorder, "first");
    self = bus_subscribe(bus, "u", NULL, 0, 5, unsubscribe_self, &self);
    bus_subscribe(bus, "u", NULL, 0, 0, recorder, "last");
    publish(bus, "u", 0, "1");
    publish(bus, "u", 0, "2");
    bus_dispatch(bus, 0);
    is_str(seen, "first=1 self=1 last=1 first=2 last=2 ",
           "a handler can unsubscribe itself; later subscribers still run");
    check(self_calls == 1, "the removed subscription runs no more");
    check(bus_subscriber_count(bus, "u") == 2, "and is not counted");

    seen[0] = '\0';
    bus_subscribe(bus, "v", NULL, 0, 10, unsubscribe_other, NULL);
    victim_sub = bus_subscribe(bus, "v", NULL, 0, 0, recorder, "victim");
    bus_subscribe(bus, "v", NULL, 0, 0, recorder, "after");
    publish(bus, "v", 0, "1");
    bus_dispatch(bus, 0);
    is_str(seen, "killer=1 after=1 ",
           "a subscription removed by an earlier handler misses the event being delivered");
    teardown(bus);
}

static int chain_left;
static void republish(struct event *ev, void *ctx)
{
    record("chain", ev);
    if (chain_left-- > 0) {
        char json[16];
        snprintf(json, sizeof json, "%d", chain_left);
        check(publish(cur_bus, "chain", 0, json) == 0, "publish from inside a handler is queued");
    }
    (void)ctx;
}

static struct event *kept;
static void keep_and_republish(struct event *ev, void *ctx)
{
    record("keep", ev);
    if (!kept) {
        kept = event_ref(ev);
        check(bus_publish(cur_bus, event_ref(ev)) == 0, "the delivered event itself can be published again");
    }
    (void)ctx;
}

static void test_publish_in_handler(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    bus_subscribe(bus, "chain", NULL, 0, 0, republish, NULL);
    chain_left = 2;
    publish(bus, "chain", 0, "x");
    check(bus_dispatch(bus, 0) == 3, "events published while dispatching are dispatched too");
    is_str(seen, "chain=x chain=1 chain=0 ", "in order");

    seen[0] = '\0';
    bus_subscribe(bus, "keep", NULL, 0, 0, keep_and_republish, NULL);
    publish(bus, "keep", 0, "k");
    bus_dispatch(bus, 0);
    is_str(seen, "keep=k keep=k ", "a re-published event is delivered again");
    check(kept->refcount == 1, "and only our reference is left");
    event_unref(kept);
    teardown(bus);
}

static void subscribe_more(struct event *ev, void *ctx)
{
    record("adder", ev);
    bus_subscribe(cur_bus, "late.*", NULL, 0, 100, recorder, "added");
    (void)ctx;
}

static void test_cache_invalidation(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    bus_subscribe(bus, "c.t", NULL, 0, 0, recorder, "x");
    publish(bus, "c.t", 0, "1");
    bus_dispatch(bus, 0);
    bus_subscribe(bus, "c.*", NULL, 0, 0, recorder, "y");
    publish(bus, "c.t", 0, "2");
    bus_dispatch(bus, 0);
    is_str(seen, "x=1 x=2 y=2 ", "a subscription made after the type was resolved is seen");

    seen[0] = '\0';
    struct bus_sub *adder = bus_subscribe(bus, "late.t", NULL, 0, 0, subscribe_more, NULL);
    publish(bus, "late.t", 0, "1");
    publish(bus, "late.t", 0, "2");
    bus_dispatch(bus, 0);
    bus_unsubscribe(bus, adder);
    is_str(seen, "adder=1 added=2 adder=2 ",
           "a subscription made inside a handler starts with the next event");
    teardown(bus);
}

struct reply {
    int calls;
    char json[64];
    char error[64];
    uint64_t correlation_id;
};

static void on_reply(struct event *response, const char *error, void *ctx)
{
    struct reply *r = ctx;
    r->calls++;
    snprintf(r->json, sizeof r->json, "%s", response ? event_json(response, NULL) : "");
    snprintf(r->error, sizeof r->error, "%s", error ? error : "");
    r->correlation_id = response ? response->correlation_id : 0;
}

static struct reply *watched_reply;
static int responded_inline;
static void echo_responder(struct event *ev, void *ctx)
{
    size_t len;
    const char *json = event_json(ev, &len);
    int calls_before = watched_reply->calls;
    check(ev->correlation_id != 0, "the request carries a correlation id");
    check(bus_respond(cur_bus, ev->correlation_id, event_new("svc.echo.reply", NULL, 0, json, len)) == 0,
       "bus_respond finds the waiting request");
    responded_inline += watched_reply->calls != calls_before;
    (void)ctx;
}

static uint64_t slow_id;
static void remember_id(struct event *ev, void *ctx)
{
    slow_id = ev->correlation_id;
    (void)ctx;
}

static void test_request_response(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    struct reply r = {0};
    watched_reply = &r;
    bus_subscribe(bus, "svc.echo", NULL, 0, 0, echo_responder, NULL);
    const char *err = "unset";
    uint64_t id = bus_request(bus, event_new("svc.echo", NULL, 0, "{\"q\":42}", 8), 1000,
                              on_reply, &r, &err);
    check(id != 0 && err == NULL, "bus_request returns a correlation id");
    uint64_t id2 = bus_request(bus, event_new("svc.echo", NULL, 0, "2", 1), 1000, on_reply, &r, &err);
    check(id2 > id, "correlation ids increase");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.pending_requests == 2 && t.requests == 2, "two requests are pending");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(responded_inline == 0, "the callback does not run inside bus_respond");
    check(r.calls == 2, "both callbacks ran and the loop ended by itself");
    is_str(r.json, "2", "the response payload reaches the caller");
    is_str(r.error, "", "without an error");
    check(r.correlation_id == id2, "the response carries the correlation id");
    bus_totals(bus, &t);
    check(t.pending_requests == 0 && t.timeouts == 0 && t.late_responses == 0, "nothing pending, nothing late");
    teardown(bus);
}

static void test_request_timeout_and_late(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    struct reply r = {0};
    bus_subscribe(bus, "svc.slow", NULL, 0, 0, remember_id, NULL);
    const char *err = NULL;
    uint64_t start = uv_now(&loop);
    uint64_t id = bus_request(bus, event_new("svc.slow", NULL, 0, NULL, 0), 30, on_reply, &r, &err);
    check(id != 0, "the request is published");
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_update_time(&loop);
    check(r.calls == 1, "the callback ran once");
    is_str(r.error, "timeout", "with a timeout error");
    check(uv_now(&loop) - start >= 30, "not before the timeout");
    check(slow_id == id, "the responder saw the request");
    check(bus_respond(bus, slow_id, event_new("svc.slow.reply", NULL, 0, NULL, 0)) == -1,
       "a response after the timeout is refused");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(r.calls == 1, "and calls nobody");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.timeouts == 1 && t.late_responses == 1 && t.pending_requests == 0,
       "the timeout and the late response are counted");

    /* Deadlines in any order: each request times out by its own. */
    struct reply a = {0}, b = {0}, c = {0};
    bus_request(bus, event_new("svc.slow", NULL, 0, NULL, 0), 60, on_reply, &a, &err);
    bus_request(bus, event_new("svc.slow", NULL, 0, NULL, 0), 10, on_reply, &b, &err);
    uint64_t cid = bus_request(bus, event_new("svc.slow", NULL, 0, NULL, 0), 5000, on_reply, &c, &err);
    uv_run(&loop, UV_RUN_ONCE);
    while (a.calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    check(b.calls == 1 && a.calls == 1 && c.calls == 0, "the two short requests timed out, the long one waits");
    check(bus_respond(bus, cid, event_new("r", NULL, 0, "\"late but in time\"", 18)) == 0,
       "the long one can still be answered");
    uv_run(&loop, UV_RUN_DEFAULT);
    is_str(c.json, "\"late but in time\"", "and gets its answer");
    teardown(bus);
}

static void test_no_responder(void)
{
    struct bus *bus = setup(100, 100, 100);
    struct reply r = {0};
    const char *err = NULL;
    bus_subscribe(bus, "svc.*", NULL, 0, 0, recorder, "svc");
    uint64_t id = bus_request(bus, event_new("nobody.home", NULL, 0, "1", 1), 1000, on_reply, &r, &err);
    check(id == 0, "a request nobody subscribes to returns 0");
    is_str(err, "no responder", "with 'no responder'");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(r.calls == 0, "and no callback");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.pending_requests == 0 && t.published == 0, "nothing was published or left pending");
    teardown(bus);
}

static void test_request_dropped(void)
{
    struct bus *bus = setup(1, 100, 100);
    struct reply r = {0};
    const char *err = NULL;
    bus_subscribe(bus, "svc.full", NULL, 0, 0, recorder, "svc");
    publish(bus, "svc.full", EVENT_PRIO_CRITICAL, "1");
    uint64_t id = bus_request(bus, event_new("svc.full", NULL, 0, "2", 1), 1000, on_reply, &r, &err);
    check(id == 0, "a request that cannot be queued returns 0");
    is_str(err, "dropped", "with 'dropped'");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.pending_requests == 0, "and leaves nothing pending");
    teardown(bus);
}

static void test_cancel(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    struct reply r = {0};
    const char *err = NULL;
    bus_subscribe(bus, "svc.slow", NULL, 0, 0, remember_id, NULL);
    uint64_t id = bus_request(bus, event_new("svc.slow", NULL, 0, NULL, 0), 20, on_reply, &r, &err);
    check(bus_cancel_request(bus, id) == 0, "a pending request can be cancelled");
    check(bus_cancel_request(bus, id) == -1, "but only once");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(r.calls == 0, "a cancelled request never calls back, not even on timeout");
    check(bus_respond(bus, id, event_new("x", NULL, 0, NULL, 0)) == -1, "its response is late");

    /* Answered, then cancelled before the completion ran. */
    id = bus_request(bus, event_new("svc.slow", NULL, 0, NULL, 0), 1000, on_reply, &r, &err);
    check(bus_respond(bus, id, event_new("x", NULL, 0, NULL, 0)) == 0, "answered");
    check(bus_respond(bus, id, event_new("x", NULL, 0, NULL, 0)) == -1, "a second answer is refused");
    check(bus_cancel_request(bus, id) == 0, "cancelled after the answer");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(r.calls == 0, "the queued answer is released without a callback");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.pending_requests == 0 && t.late_responses == 2, "nothing pending, two late responses");
    teardown(bus);
}

static int turn_count;
static void count_turn(struct event *ev, void *ctx)
{
    turn_count++;
    (void)ev;
    (void)ctx;
}

static void test_dispatch_cap(void)
{
    struct bus *bus = setup(100, 3, 100);
    bus_subscribe(bus, "*", NULL, 0, 0, count_turn, NULL);
    turn_count = 0;
    for (int i = 0; i < 10; i++)
        publish(bus, i % 2 ? "cap.a" : "cap.b", 0, "1");
    check(turn_count == 0, "publish does not dispatch");
    uv_run(&loop, UV_RUN_NOWAIT);
    check(turn_count == 3, "one loop turn dispatches dispatch_per_turn events");
    uv_run(&loop, UV_RUN_NOWAIT);
    check(turn_count == 6, "and the next turn three more");
    check(bus_dispatch(bus, 2) == 2 && turn_count == 8, "bus_dispatch honours its own cap");
    check(uv_run(&loop, UV_RUN_DEFAULT) == 0 && turn_count == 10,
       "the loop drains the rest and stops once the bus is empty");
    check(uv_loop_alive(&loop) == 0, "an empty bus keeps the loop no longer alive");
    publish(bus, "cap.a", 0, "1");
    check(uv_loop_alive(&loop) != 0, "a queued event wakes the dispatcher again");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(turn_count == 11, "and it is dispatched");
    teardown(bus);
}

static void test_close(void)
{
    struct event_lua_hooks hooks = {.release = count_release};
    event_set_lua_hooks(&hooks);
    released = 0;
    struct bus *bus = setup(100, 100, 100);
    struct reply r1 = {0}, r2 = {0};
    const char *err;
    bus_subscribe(bus, "svc", NULL, 0, 0, recorder, "svc");
    bus_subscribe(bus, "q.*", (const char *[]){"t"}, 1, 0, recorder, "q");
    for (int i = 0; i < 5; i++)
        publish(bus, "q.x", i % 4, "1");
    uint64_t id1 = bus_request(bus, event_new("svc", NULL, 0, NULL, 0), 1000, on_reply, &r1, &err);
    uint64_t id2 = bus_request(bus, event_new("svc", NULL, 0, NULL, 0), 1000, on_reply, &r2, &err);
    check(bus_respond(bus, id2, event_new("answer", NULL, 0, NULL, 0)) == 0, "one request answered, not yet delivered");
    bus_close(bus);
    check(released == 8, "queued events, requests and the undelivered answer are released");
    check(r1.calls == 1 && r2.calls == 1, "every waiting caller is called back once");
    is_str(r1.error, "bus closed", "with 'bus closed'");
    is_str(r2.error, "bus closed", "also the one whose answer was not yet delivered");
    check(bus_publish(bus, event_new("q.x", NULL, 0, NULL, 0)) == -1, "a closed bus refuses events");
    check(bus_request(bus, event_new("svc", NULL, 0, NULL, 0), 10, on_reply, &r1, &err) == 0,
       "and requests");
    check(bus_respond(bus, id1, event_new("x", NULL, 0, NULL, 0)) == -1, "and responses");
    check(bus_dispatch(bus, 0) == 0, "nothing is dispatched after close");
    check(released == 11, "refused events are released");
    check(!bus_closed(bus), "closed only after the close callbacks ran");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.depth == 0 && t.pending_requests == 0, "nothing queued or pending");
    teardown(bus);
    check(r1.calls == 1, "no callback after close");
    event_set_lua_hooks(NULL);
}

static int after_close_calls;
static void close_from_handler(struct event *ev, void *ctx)
{
    bus_close(cur_bus);
    (void)ev;
    (void)ctx;
}

static void after_close(struct event *ev, void *ctx)
{
    after_close_calls++;
    (void)ev;
    (void)ctx;
}

static void test_close_in_handler(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    bus_subscribe(bus, "x", NULL, 0, 1, close_from_handler, NULL);
    bus_subscribe(bus, "x", NULL, 0, 0, after_close, NULL);
    publish(bus, "x", 0, "1");
    publish(bus, "x", 0, "2");
    uv_run(&loop, UV_RUN_DEFAULT);
    check(after_close_calls == 0, "subscriptions removed by a close in a handler are not called");
    check(bus_closed(bus), "the loop ran the close callbacks");
    teardown(bus);
}

static void count_from_handler(struct event *ev, void *ctx)
{
    int *counts = ctx;
    struct bus_sub *extra = bus_subscribe(cur_bus, "cnt", NULL, 0, 0, recorder, "extra");
    counts[0] = bus_subscriber_count(cur_bus, "cnt");
    bus_unsubscribe(cur_bus, extra);
    counts[1] = bus_subscriber_count(cur_bus, "cnt");
    (void)ev;
}

static void test_count_during_delivery(void)
{
    struct bus *bus = cur_bus = setup(100, 100, 100);
    int counts[2] = {0};
    const char *never[] = {"never"};
    bus_subscribe(bus, "cnt", NULL, 0, 1, count_from_handler, counts);
    /* Enough subscribers that a rebuild would move the array being walked. */
    for (int i = 0; i < 3; i++)
        bus_subscribe(bus, "cnt", never, 1, 0, recorder, "never");
    publish(bus, "cnt", 0, "1");
    bus_dispatch(bus, 0);
    check(counts[0] == 5 && counts[1] == 4, "bus_subscriber_count is right inside a handler of that type");
    is_str(seen, "", "the extra subscription never saw the event");
    teardown(bus);
}

static void test_max_types(void)
{
    struct bus *bus = setup(100, 100, 2);
    check(publish(bus, "t.1", 0, "1") == 0, "first type");
    check(publish(bus, "t.2", 0, "1") == 0, "second type");
    check(publish(bus, "t.3", 0, "1") == -1, "a type beyond max_types is dropped");
    check(publish(bus, "t.1", 0, "1") == 0, "known types still work");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.types == 2 && t.dropped == 1, "the drop is counted in the totals");
    check(bus_subscriber_count(bus, "t.9") == 0 && (bus_totals(bus, &t), t.types == 2),
       "asking about a type does not create it");
    teardown(bus);
}

static void test_stats(void)
{
    struct bus *bus = setup(2, 100, 100);
    bus_subscribe(bus, "s.a", NULL, 0, 0, count_turn, NULL);
    for (int i = 0; i < 3; i++)
        publish(bus, "s.a", 0, "1");
    publish(bus, "s.b", 0, "1");
    bus_dispatch(bus, 1);
    struct bus_type_stats a = stats_of(bus, "s.a"), b = stats_of(bus, "s.b");
    check(a.published == 2 && a.delivered == 1 && a.dropped == 1 && a.depth == 1 && a.capacity == 2,
       "per-type published/delivered/dropped/depth/capacity");
    check(b.published == 1 && b.delivered == 0 && b.depth == 1, "another type's own figures");
    struct bus_totals t;
    bus_totals(bus, &t);
    check(t.published == 3 && t.delivered == 1 && t.dropped == 1 && t.depth == 2 && t.types == 2,
       "totals are the sums");
    teardown(bus);
}

int main(void)
{
    test_priority_order();
    test_drop_when_full();
    test_shedding();
    test_capacity_prefix();
    test_matching();
    test_tags();
    test_sub_priority();
    test_unsubscribe_in_handler();
    test_publish_in_handler();
    test_cache_invalidation();
    test_request_response();
    test_request_timeout_and_late();
    test_no_responder();
    test_request_dropped();
    test_cancel();
    test_dispatch_cap();
    test_close();
    test_close_in_handler();
    test_count_during_delivery();
    test_max_types();
    test_stats();
    return tap_done();
}
