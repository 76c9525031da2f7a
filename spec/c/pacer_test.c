/* pacer_test: the outbound limiter — the burst, then the sustained rate, with
 * the margins over CyTube's limiter; the reset after quiet; costly commands;
 * the limits a rank gets from the channel; echoes; lines whose echo never
 * came; the cooldown response (slower, the line again, give up); the queue
 * bound. */
#include <stdlib.h>

#include "cytube/channel.h"
#include "cytube/pacer.h"
#include "tap.h"

static const struct pacer_limits DEFAULTS = {20, 10, 2}; /* CyTube's defaults */

static void fill(struct pacer *p, int n, int cost, int track)
{
    for (int i = 0; i < n; i++) {
        char text[32];
        snprintf(text, sizeof text, "line %d", i + 1);
        pacer_enqueue(p, PACER_CHAT, NULL, strdup(text), cost, track);
    }
}

/* Takes every line that may go at `now`; returns how many. */
static int drain(struct pacer *p, const struct pacer_limits *lim, uint64_t now, uint64_t *wait)
{
    int n = 0;
    struct pacer_line *l;
    while ((l = pacer_next(p, lim, now, wait))) {
        pacer_sent(p, l, now);
        n++;
    }
    return n;
}

static void test_burst_then_rate(void)
{
    struct pacer p;
    pacer_init(&p, 1000);
    fill(&p, 25, 1, 0);
    uint64_t wait;
    /* burst 20 less the margin of two */
    ok(drain(&p, &DEFAULTS, 1000, &wait) == 18, "18 of a burst of 20 go at once");
    /* then 1/sustained with 25 % + 80 ms more: 100 * 1.25 + 80 = 205 ms */
    ok(wait == 205, "the next waits 205 ms (got %llu)", (unsigned long long)wait);
    ok(drain(&p, &DEFAULTS, 1204, &wait) == 0 && wait == 1, "1 ms early it still waits (got %llu)",
       (unsigned long long)wait);
    ok(drain(&p, &DEFAULTS, 1205, &wait) == 1, "at 205 ms one line goes");
    ok(wait == 205, "and the next is 205 ms after it");
    ok(drain(&p, &DEFAULTS, 1410, &wait) == 1 && pacer_queued(&p) == 5, "one per interval (5 left)");
    /* quiet for longer than cooldown (2 s) + 500 ms: the server's count reset */
    ok(drain(&p, &DEFAULTS, 1410 + 2500, &wait) == 1 && p.flood_count == 21,
       "2500 ms of quiet is not yet a reset: one line, the count goes on (%g)", p.flood_count);
    ok(drain(&p, &DEFAULTS, 3910 + 2501, &wait) == 4, "after 2501 ms of quiet a new burst goes");
    ok(p.flood_count == 4, "the new burst counts from zero (%g)", p.flood_count);
    pacer_clear(&p, 0);
}

static void test_margins(void)
{
    struct pacer p;
    uint64_t wait;
    struct pacer_limits small = {5, 2, 3};
    pacer_init(&p, 100);
    fill(&p, 10, 1, 0);
    ok(drain(&p, &small, 0 + 1, &wait) == 3, "burst 5 lets 3 go");
    /* 1000 / 2 * 1.25 + 80 = 705 */
    ok(wait == 705, "sustained 2/s: 705 ms between lines (got %llu)", (unsigned long long)wait);
    pacer_clear(&p, 0);

    struct pacer_limits tiny = {2, 1, 1};
    pacer_init(&p, 100);
    fill(&p, 3, 1, 0);
    ok(drain(&p, &tiny, 1, &wait) == 1, "burst 2 still lets 1 go (never less than one)");
    ok(wait == 1330, "sustained 1/s: 1330 ms (got %llu)", (unsigned long long)wait);
    pacer_clear(&p, 0);

    /* a command costing 2 (/me) past the burst waits for the reset */
    pacer_init(&p, 100);
    fill(&p, 17, 1, 0);
    fill(&p, 2, 2, 0);
    ok(drain(&p, &DEFAULTS, 10, &wait) == 17, "17 plain lines");
    ok(pacer_next(&p, &DEFAULTS, 10, &wait) == NULL && wait == 2501,
       "a cost-2 line that would pass 18 waits for the reset: 2 s + 500 ms + 1 (got %llu)", (unsigned long long)wait);
    ok(drain(&p, &DEFAULTS, 10 + 2501, &wait) == 2, "after it both cost-2 lines go (2 + 2 <= 18)");
    pacer_clear(&p, 0);
}

static void test_rank_limits(void)
{
    struct channel ch;
    channel_init(&ch);
    struct pacer_limits lim;
    channel_flood_limits(&ch, &lim.burst, &lim.sustained, &lim.cooldown_s);
    ok(lim.burst == 20 && lim.sustained == 10 && lim.cooldown_s == 2, "no options: CyTube's defaults");
    json_t *opts = json_pack("{s:b, s:{s:i, s:i, s:i}}", "chat_antiflood", 1, "chat_antiflood_params", "burst", 4,
                             "sustained", 1, "cooldown", 4);
    channel_apply(&ch, "channelOpts", opts);
    json_t *rank = json_integer(1);
    channel_apply(&ch, "rank", rank);
    channel_flood_limits(&ch, &lim.burst, &lim.sustained, &lim.cooldown_s);
    ok(lim.burst == 4 && lim.sustained == 1 && lim.cooldown_s == 4, "rank 1 with antiflood: the channel's limits");

    struct pacer p;
    uint64_t wait;
    pacer_init(&p, 100);
    fill(&p, 5, 1, 0);
    ok(drain(&p, &lim, 5, &wait) == 2 && wait == 1330, "the channel's limits pace: 2 at once, then 1330 ms");
    pacer_clear(&p, 0);

    json_decref(rank);
    rank = json_integer(2);
    channel_apply(&ch, "rank", rank);
    channel_flood_limits(&ch, &lim.burst, &lim.sustained, &lim.cooldown_s);
    ok(lim.burst == 4, "rank 2 not yet settled: still the channel's antiflood");
    channel_settle_rank(&ch);
    channel_flood_limits(&ch, &lim.burst, &lim.sustained, &lim.cooldown_s);
    ok(lim.burst == 20 && lim.sustained == 10 && lim.cooldown_s == 2, "rank 2 is exempt from the channel's antiflood");

    json_decref(opts);
    opts = json_pack("{s:b, s:{s:i, s:i}}", "chat_antiflood", 1, "chat_antiflood_params", "burst", 6, "sustained", 3);
    channel_apply(&ch, "channelOpts", opts);
    json_decref(rank);
    rank = json_integer(0);
    channel_apply(&ch, "rank", rank);
    channel_flood_limits(&ch, &lim.burst, &lim.sustained, &lim.cooldown_s);
    ok(lim.burst == 6 && lim.sustained == 3 && lim.cooldown_s == 2, "no cooldown given: burst / sustained (%g)",
       lim.cooldown_s);
    json_decref(opts);
    json_decref(rank);
    channel_clear(&ch);
}

static void test_echo(void)
{
    struct pacer p;
    uint64_t wait;
    pacer_init(&p, 100);
    fill(&p, 20, 1, 1); /* tracked: each expects its echo */
    ok(drain(&p, &DEFAULTS, 1000, &wait) == 18, "18 tracked lines go at once");
    ok(p.inflight_len == 18, "all 18 await their echo");
    ok(wait == PACER_ECHO_WAIT_MS, "past the burst the next waits for the last line's echo (%llu)",
       (unsigned long long)wait);
    ok(pacer_next(&p, &DEFAULTS, 1400, &wait) == NULL && wait == 1100, "400 ms later: 1100 ms more at most");
    pacer_echo(&p, PACER_PM, 1450);
    ok(p.inflight_len == 18, "a pm echo does not match chat lines");
    for (int i = 0; i < 17; i++)
        pacer_echo(&p, PACER_CHAT, 1450);
    ok(p.inflight_len == 1 && p.echo_wait_seq != 0, "older echoes leave the last line waiting");
    pacer_echo(&p, PACER_CHAT, 1500);
    ok(p.inflight_len == 0 && p.echo_wait_seq == 0 && p.flood_last_ms == 1500,
       "the last line's echo ends the wait and times the gap from the echo");
    ok(pacer_next(&p, &DEFAULTS, 1600, &wait) == NULL && wait == 105, "205 ms from the echo: 105 ms more");
    pacer_clear(&p, 0);

    /* no echo: the wait ends after PACER_ECHO_WAIT_MS, then the interval from the write */
    pacer_init(&p, 100);
    fill(&p, 19, 1, 1);
    drain(&p, &DEFAULTS, 0 + 1, &wait);
    pacer_written(&p, 1);
    ok(drain(&p, &DEFAULTS, 1 + PACER_ECHO_WAIT_MS, &wait) == 1, "without an echo the line goes after the echo wait");
    pacer_clear(&p, 0);
}

static void test_expiry(void)
{
    struct pacer p;
    uint64_t wait;
    pacer_init(&p, 100);
    fill(&p, 2, 1, 1);
    drain(&p, &DEFAULTS, 100, &wait);
    pacer_expire(&p, 100 + PACER_INFLIGHT_TTL_MS);
    ok(p.inflight_len == 2, "at the TTL the lines still await their echo");
    pacer_expire(&p, 100 + PACER_INFLIGHT_TTL_MS + 1);
    ok(p.inflight_len == 0, "past it they are forgotten");
    pacer_echo(&p, PACER_CHAT, 20000);
    ok(p.inflight_len == 0, "a late echo matches nothing");
    pacer_clear(&p, 0);

    pacer_init(&p, 1000);
    for (int round = 0; round < 4; round++) {
        fill(&p, 18, 1, 1);
        drain(&p, &DEFAULTS, 100000 + (uint64_t)round * 3000, &wait);
    }
    ok(p.inflight_len == PACER_INFLIGHT_MAX, "at most %d lines await echoes (%d)", PACER_INFLIGHT_MAX, p.inflight_len);
    ok(p.inflight[0]->seq == 72 - PACER_INFLIGHT_MAX + 1, "the oldest made way (%llu)",
       (unsigned long long)p.inflight[0]->seq);
    pacer_clear(&p, 0);
}

static void test_cooldown(void)
{
    struct pacer p;
    uint64_t wait;
    pacer_init(&p, 100);
    ok(pacer_cooldown(&p, 500) == PACER_NOTHING_TO_RESEND && p.cooldowns == 1, "a cooldown with nothing in flight");
    ok(p.slow == 1.5, "slows down x1.5 (%g)", p.slow);
    pacer_clear(&p, 0);

    pacer_init(&p, 100);
    fill(&p, 3, 1, 1);
    struct pacer_line *a = pacer_next(&p, &DEFAULTS, 1000, &wait);
    pacer_sent(&p, a, 1000);
    ok(pacer_cooldown(&p, 1100) == PACER_RESEND && p.resent == 1, "the refused line is sent again");
    ok(pacer_queued(&p) == 3 && p.head->seq == 1 && p.head->next->seq == 2, "back at its place, before later lines");
    ok(p.slow == 1.5 && p.slow_until_ms == 61100, "slower for a minute");
    /* the burst is assumed spent: 100 * 1.25 * 1.5 + 80 = 267.5 ms from the cooldown */
    ok(pacer_next(&p, &DEFAULTS, 1100 + 267, &wait) == NULL && wait == 1, "267 ms later: 1 ms more");
    a = pacer_next(&p, &DEFAULTS, 1100 + 268, &wait);
    ok(a && a->seq == 1 && a->tries == 1, "268 ms later the refused line goes again");
    pacer_sent(&p, a, 1368);

    ok(pacer_cooldown(&p, 2000) == PACER_RESEND && p.slow == 2.25, "a second cooldown: x2.25 (%g)", p.slow);
    pacer_cooldown(&p, 2100);
    ok(p.slow == 3.375, "a third: x3.375 (%g)", p.slow);
    pacer_cooldown(&p, 2200);
    ok(p.slow == 4, "the slowdown stops at x4 (%g)", p.slow);
    int reset;
    /* x4: 100 * 1.25 * 4 + 80 = 580 ms between lines, 2 s * 4 + 500 ms before a reset */
    ok(pacer_wait(&p, &DEFAULTS, 2200 + 500, 1, &reset) == 80 && !reset, "at x4 lines are 580 ms apart");
    ok(pacer_wait(&p, &DEFAULTS, 2200 + 8500, 1, &reset) == 0 && !reset, "8500 ms of quiet is not a reset at x4");
    ok(pacer_wait(&p, &DEFAULTS, 2200 + 8501, 1, &reset) == 0 && reset, "8501 ms is");
    pacer_wait(&p, &DEFAULTS, 2200 + 60000, 1, &reset);
    ok(p.slow == 4, "still slow a minute after the last cooldown");
    pacer_wait(&p, &DEFAULTS, 2200 + 60001, 1, &reset);
    ok(p.slow == 1, "past the minute the slowdown ends");

    /* refused PACER_MAX_RESENDS + 1 times: dropped */
    pacer_clear(&p, 0);
    pacer_init(&p, 100);
    fill(&p, 1, 1, 1);
    enum pacer_cooldown_result res = PACER_NOTHING_TO_RESEND;
    for (int i = 0; i <= PACER_MAX_RESENDS; i++) {
        a = pacer_next(&p, &DEFAULTS, 1000000 + (uint64_t)i * 10000, &wait);
        if (!a)
            break;
        pacer_sent(&p, a, 1000000 + (uint64_t)i * 10000);
        res = pacer_cooldown(&p, 1000000 + (uint64_t)i * 10000 + 1);
    }
    ok(res == PACER_GAVE_UP && p.dropped == 1 && pacer_queued(&p) == 0 && p.resent == PACER_MAX_RESENDS,
       "refused %d times the line is dropped (resent %llu)", PACER_MAX_RESENDS + 1, (unsigned long long)p.resent);
    pacer_clear(&p, 0);
}

static void test_queue(void)
{
    struct pacer p;
    pacer_init(&p, 3);
    fill(&p, 3, 1, 1);
    ok(pacer_space(&p) == 0, "three lines fill a queue of three");
    ok(pacer_enqueue(&p, PACER_PM, "bob", strdup("x"), 1, 1) == -1 && p.dropped == 1, "the fourth is dropped");
    p.flood_count = 7;
    p.flood_last_ms = 99;
    p.slow = 2;
    pacer_new_session(&p);
    ok(p.flood_count == 0 && p.flood_last_ms == 0 && p.slow == 2, "a new session resets the count, keeps the slowdown");
    pacer_clear(&p, 1);
    ok(p.dropped == 4 && pacer_queued(&p) == 0 && pacer_space(&p) == 3, "clearing counts the queued lines as dropped");
    pacer_enqueue(&p, PACER_PM, "bob", strdup("hi"), 1, 1);
    uint64_t wait;
    struct pacer_line *l = pacer_next(&p, &DEFAULTS, 5, &wait);
    ok(l && l->kind == PACER_PM && strcmp(l->to, "bob") == 0 && strcmp(l->text, "hi") == 0, "a pm keeps its target");
    pacer_line_free(l);
    ok(pacer_next(&p, &DEFAULTS, 5, &wait) == NULL && wait == 0, "an empty queue: nothing, no wait");
    pacer_clear(&p, 0);
}

int main(void)
{
    test_burst_then_rate();
    test_margins();
    test_rank_limits();
    test_echo();
    test_expiry();
    test_cooldown();
    test_queue();
    return tap_done();
}
