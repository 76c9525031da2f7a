/* pacer: one room's outbound chat limiter — a bounded queue of lines sent as
 * CyTube's flood limiter (chat_antiflood) allows, with margins; echoes
 * matched to the lines sent; the answer to a `cooldown` (slow down, send the
 * refused line again). Pure: times are numbers (ms), no I/O. Uses nothing. */
#ifndef DAZ_CYTUBE_PACER_H
#define DAZ_CYTUBE_PACER_H

#include <stdint.h>

#define PACER_INFLIGHT_MAX 64    /* lines awaiting their echo */
#define PACER_INFLIGHT_TTL_MS 10000
#define PACER_MAX_RESENDS 5
#define PACER_ECHO_WAIT_MS 1500  /* past the burst, wait this long at most for a line's echo */

enum pacer_kind { PACER_CHAT, PACER_PM };

/* The channel's limiter settings (chat_antiflood_params). */
struct pacer_limits {
    double burst, sustained, cooldown_s;
};

struct pacer_line {
    struct pacer_line *next;
    enum pacer_kind kind;
    int cost;       /* flood-limiter hits on the server (2 for /me, /sp ...) */
    int track;      /* expects an echo (plain chat, pm) */
    int tries;
    uint64_t seq;   /* queue order; a re-sent line goes back to its place */
    uint64_t sent_ms;
    char *to;
    char *text;
};

struct pacer {
    int queue_max;
    struct pacer_line *head, *tail;
    int len;
    uint64_t seq;
    struct pacer_line *inflight[PACER_INFLIGHT_MAX];
    int inflight_len;
    double flood_count;       /* hits in the server's current burst, as we count them */
    uint64_t flood_last_ms;   /* 0: no line yet this session */
    double slow;              /* >1 after a cooldown, until slow_until_ms */
    uint64_t slow_until_ms;
    uint64_t echo_wait_seq;   /* last tracked line sent, until its echo arrives */
    uint64_t echo_wait_since;
    uint64_t dropped, resent, cooldowns;
};

void pacer_init(struct pacer *p, int queue_max);
/* Frees the queue and the lines awaiting echoes (queued ones counted as
 * dropped when asked). */
void pacer_clear(struct pacer *p, int count_as_dropped);
/* A new connection: the server's limiter starts afresh (the slowdown stays). */
void pacer_new_session(struct pacer *p);
void pacer_line_free(struct pacer_line *l);

/* Queues a line (text is taken, `to` copied). Returns 0, or -1 when the queue
 * is full (counted as dropped) or out of memory. */
int pacer_enqueue(struct pacer *p, enum pacer_kind kind, const char *to, char *text_take, int cost, int track);
int pacer_space(const struct pacer *p); /* lines the queue still takes */
int pacer_queued(const struct pacer *p);

/* How long until a line costing `cost` may go at `now` (0: now); *reset is
 * set when the server's burst will have reset by then. */
uint64_t pacer_wait(struct pacer *p, const struct pacer_limits *lim, uint64_t now, int cost, int *reset);
/* Forgets lines whose echo is overdue. */
void pacer_expire(struct pacer *p, uint64_t now);
/* The next line when it may go now: taken off the queue and counted against
 * the limit (the caller writes it, then calls pacer_sent). Otherwise NULL,
 * and *wait is how long until it may (0: the queue is empty). */
struct pacer_line *pacer_next(struct pacer *p, const struct pacer_limits *lim, uint64_t now, uint64_t *wait);
/* The line was handed to the socket at `now`: kept for its echo when
 * tracked, else freed. */
void pacer_sent(struct pacer *p, struct pacer_line *l, uint64_t now);
/* A paced line reached the wire: the next gap counts from here. */
void pacer_written(struct pacer *p, uint64_t now);
/* Our own line of that kind came back: the oldest one was accepted. */
void pacer_echo(struct pacer *p, enum pacer_kind kind, uint64_t now);

enum pacer_cooldown_result {
    PACER_NOTHING_TO_RESEND, /* no line awaited an echo */
    PACER_RESEND,            /* the refused line is queued again at its place */
    PACER_GAVE_UP,           /* refused PACER_MAX_RESENDS times: dropped */
};
/* The server refused a line (`cooldown`): slow down for a minute, assume the
 * burst is spent, and queue the oldest unechoed line again. */
enum pacer_cooldown_result pacer_cooldown(struct pacer *p, uint64_t now);

#endif
