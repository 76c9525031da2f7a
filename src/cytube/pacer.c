/* pacer: see pacer.h. The limits mirror CyTube's (lib/flood.js): a burst of
 * lines back to back, then one per 1/sustained s since the last accepted
 * one, the count reset after `cooldown` s of quiet. */
#include "cytube/pacer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void pacer_init(struct pacer *p, int queue_max)
{
    memset(p, 0, sizeof *p);
    p->queue_max = queue_max;
    p->slow = 1;
}

void pacer_line_free(struct pacer_line *l)
{
    if (!l)
        return;
    free(l->to);
    free(l->text);
    free(l);
}

void pacer_clear(struct pacer *p, int count_as_dropped)
{
    while (p->head) {
        struct pacer_line *l = p->head;
        p->head = l->next;
        pacer_line_free(l);
        if (count_as_dropped)
            p->dropped++;
    }
    p->tail = NULL;
    p->len = 0;
    for (int i = 0; i < p->inflight_len; i++)
        pacer_line_free(p->inflight[i]);
    p->inflight_len = 0;
}

void pacer_new_session(struct pacer *p)
{
    p->flood_count = 0;
    p->flood_last_ms = 0;
    p->echo_wait_seq = 0;
}

int pacer_enqueue(struct pacer *p, enum pacer_kind kind, const char *to, char *text_take, int cost, int track)
{
    if (p->len >= p->queue_max) {
        p->dropped++;
        free(text_take);
        return -1;
    }
    struct pacer_line *l = calloc(1, sizeof *l);
    if (!l) {
        free(text_take);
        return -1;
    }
    l->kind = kind;
    l->cost = cost;
    l->track = track;
    l->text = text_take;
    l->to = to ? strdup(to) : NULL;
    l->seq = ++p->seq;
    if (p->tail)
        p->tail->next = l;
    else
        p->head = l;
    p->tail = l;
    p->len++;
    return 0;
}

int pacer_space(const struct pacer *p) { return p->queue_max - p->len; }

int pacer_queued(const struct pacer *p) { return p->len; }

/* Margins over the server's limiter: two fewer in a burst, 25 % + 80 ms more
 * between lines, 500 ms more before assuming a reset. Past the burst, the
 * gap is counted from the echo of the previous line (so it starts after the
 * server took that line, whatever delays it had), or from its write when it
 * has no echo. */
uint64_t pacer_wait(struct pacer *p, const struct pacer_limits *lim, uint64_t now, int cost, int *reset)
{
    if (p->slow > 1 && now > p->slow_until_ms)
        p->slow = 1;
    double eff_burst = floor(lim->burst) - 2 < 1 ? 1 : floor(lim->burst) - 2;
    double interval = 1000.0 / lim->sustained * 1.25 * p->slow + 80;
    double reset_after = lim->cooldown_s * 1000.0 * p->slow + 500;
    *reset = 0;
    if (p->flood_last_ms == 0 || (double)(now - p->flood_last_ms) > reset_after) {
        *reset = 1;
        return 0;
    }
    double since = (double)(now - p->flood_last_ms);
    if (cost <= 1) {
        if (p->flood_count < eff_burst)
            return 0;
        if (p->echo_wait_seq && now - p->echo_wait_since < PACER_ECHO_WAIT_MS)
            return PACER_ECHO_WAIT_MS - (now - p->echo_wait_since); /* the echo comes sooner */
        if (since >= interval)
            return 0;
        return (uint64_t)ceil(interval - since);
    }
    if (p->flood_count + cost <= eff_burst)
        return 0;
    return (uint64_t)ceil(reset_after - since) + 1;
}

void pacer_expire(struct pacer *p, uint64_t now)
{
    int k = 0;
    for (int i = 0; i < p->inflight_len; i++) {
        if (now - p->inflight[i]->sent_ms > PACER_INFLIGHT_TTL_MS)
            pacer_line_free(p->inflight[i]);
        else
            p->inflight[k++] = p->inflight[i];
    }
    p->inflight_len = k;
}

struct pacer_line *pacer_next(struct pacer *p, const struct pacer_limits *lim, uint64_t now, uint64_t *wait)
{
    *wait = 0;
    struct pacer_line *l = p->head;
    if (!l)
        return NULL;
    int reset;
    *wait = pacer_wait(p, lim, now, l->cost, &reset);
    if (*wait > 0)
        return NULL;
    p->flood_count = reset ? l->cost : p->flood_count + l->cost;
    p->flood_last_ms = now;
    p->head = l->next;
    if (!p->head)
        p->tail = NULL;
    p->len--;
    l->next = NULL;
    return l;
}

static void inflight_push(struct pacer *p, struct pacer_line *l)
{
    if (p->inflight_len == PACER_INFLIGHT_MAX) {
        pacer_line_free(p->inflight[0]);
        memmove(p->inflight, p->inflight + 1, sizeof p->inflight[0] * (PACER_INFLIGHT_MAX - 1));
        p->inflight_len--;
    }
    p->inflight[p->inflight_len++] = l;
}

void pacer_sent(struct pacer *p, struct pacer_line *l, uint64_t now)
{
    l->sent_ms = now;
    if (!l->track) {
        pacer_line_free(l);
        return;
    }
    p->echo_wait_seq = l->seq;
    p->echo_wait_since = now;
    inflight_push(p, l);
}

void pacer_written(struct pacer *p, uint64_t now) { p->flood_last_ms = now; }

void pacer_echo(struct pacer *p, enum pacer_kind kind, uint64_t now)
{
    for (int i = 0; i < p->inflight_len; i++) {
        if (p->inflight[i]->kind != kind)
            continue;
        if (p->inflight[i]->seq == p->echo_wait_seq) {
            p->echo_wait_seq = 0;
            p->flood_last_ms = now; /* the server took it no later than now */
        }
        pacer_line_free(p->inflight[i]);
        memmove(p->inflight + i, p->inflight + i + 1, sizeof p->inflight[0] * (size_t)(p->inflight_len - i - 1));
        p->inflight_len--;
        return;
    }
}

enum pacer_cooldown_result pacer_cooldown(struct pacer *p, uint64_t now)
{
    p->cooldowns++;
    p->slow = p->slow < 1 ? 1.5 : (p->slow * 1.5 > 4 ? 4 : p->slow * 1.5);
    p->slow_until_ms = now + 60000;
    p->flood_count = 1e9; /* assume the burst is spent */
    p->flood_last_ms = now;
    p->echo_wait_seq = 0; /* the server has answered */
    pacer_expire(p, now);
    if (p->inflight_len == 0)
        return PACER_NOTHING_TO_RESEND;
    struct pacer_line *l = p->inflight[0];
    memmove(p->inflight, p->inflight + 1, sizeof p->inflight[0] * (size_t)(p->inflight_len - 1));
    p->inflight_len--;
    if (++l->tries > PACER_MAX_RESENDS) {
        p->dropped++;
        pacer_line_free(l);
        return PACER_GAVE_UP;
    }
    p->resent++;
    /* back into the queue at its original place, before later lines */
    struct pacer_line **at = &p->head;
    while (*at && (*at)->seq < l->seq)
        at = &(*at)->next;
    l->next = *at;
    *at = l;
    if (!l->next)
        p->tail = l;
    p->len++;
    return PACER_RESEND;
}
