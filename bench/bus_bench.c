/* bus_bench: events per second through the EventBus — made, published,
 * dispatched to C subscribers and freed — printed as JSON lines.
 *
 * Build and run (from the repository root):
 *   mkdir -p build/bench && cc -O2 -g -D_GNU_SOURCE -Isrc -o build/bench/bus_bench \
 *     bench/bus_bench.c src/bus.c src/event.c src/log.c $(pkg-config --cflags --libs libuv)
 *   build/bench/bus_bench [events]        (default 5000000)
 *
 * Figures: published_per_s counts the publish phase alone (event_new +
 * bus_publish), events_per_s the whole round trip (publish, dispatch to the
 * subscriber, free). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/bus.h"

#define BATCH 1000

static const char payload[] = "{\"username\":\"someone\",\"msg\":\"hello there\",\"time\":1700000000000}";
static uint64_t received;

static void count_event(struct event *ev, void *ctx)
{
    (void)ctx;
    received += (uint64_t)ev->json_len != 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum drive { DRIVE_DISPATCH, DRIVE_LOOP };

/* Publishes `n` events in batches and drains each batch, either with
 * bus_dispatch or by turning the loop (the idle handle dispatches). */
static int run(const char *name, int extra_subs, const char *pattern, enum drive drive, size_t n)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct bus_options opts = {.default_capacity = BATCH, .dispatch_per_turn = BATCH, .max_types = 1024};
    struct bus *bus = bus_new(&loop, &opts);
    if (!bus)
        return -1;
    char type[64];
    for (int i = 0; i < extra_subs; i++) {
        snprintf(type, sizeof type, "cytube.event.other%d", i);
        bus_subscribe(bus, type, NULL, 0, 0, count_event, NULL);
    }
    bus_subscribe(bus, pattern, NULL, 0, 0, count_event, NULL);

    received = 0;
    double publish_time = 0, start = now_s();
    for (size_t done = 0; done < n; done += BATCH) {
        double t0 = now_s();
        for (int i = 0; i < BATCH; i++) {
            struct event *ev = event_new("cytube.event.chatMsg", NULL, EVENT_PRIO_NORMAL,
                                         payload, sizeof payload - 1);
            if (!ev || bus_publish(bus, ev) != 0) {
                fprintf(stderr, "%s: publish failed\n", name);
                return -1;
            }
        }
        publish_time += now_s() - t0;
        if (drive == DRIVE_DISPATCH)
            bus_dispatch(bus, 0);
        else
            uv_run(&loop, UV_RUN_NOWAIT);
    }
    double total = now_s() - start;
    size_t rounded = (n + BATCH - 1) / BATCH * BATCH;
    if (received != rounded) {
        fprintf(stderr, "%s: delivered %llu of %zu\n", name, (unsigned long long)received, rounded);
        return -1;
    }
    printf("{\"bench\":\"%s\",\"events\":%zu,\"events_per_s\":%.0f,\"published_per_s\":%.0f,"
           "\"ns_per_event\":%.1f}\n",
           name, rounded, (double)rounded / total, (double)rounded / publish_time, total * 1e9 / (double)rounded);
    fflush(stdout);

    bus_close(bus);
    while (!bus_closed(bus))
        uv_run(&loop, UV_RUN_NOWAIT);
    bus_free(bus);
    uv_loop_close(&loop);
    return 0;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 5000000;
    if (run("bus.c_delivery", 0, "cytube.event.chatMsg", DRIVE_DISPATCH, n) != 0 ||
        run("bus.pattern_delivery", 50, "cytube.event.*", DRIVE_DISPATCH, n) != 0 ||
        run("bus.star_delivery", 50, "*", DRIVE_DISPATCH, n) != 0 ||
        run("bus.loop_delivery", 0, "cytube.event.chatMsg", DRIVE_LOOP, n) != 0)
        return 1;
    return 0;
}
