/* log_repeat: a rate-limited log line on the libuv loop — log_limited (core/log.h)
 * plus the timer that writes each summary when it is due, and at close.
 * Uses log, ratelog, libuv. */
#ifndef DAZ_LOG_REPEAT_H
#define DAZ_LOG_REPEAT_H

#include <uv.h>

#include "core/log.h"
#include "core/ratelog.h"

struct log_repeat {
    struct ratelog rl;
    uv_loop_t *loop;     /* NULL until log_repeat_attach: summaries wait for the next line */
    uv_timer_t timer;
    int armed, closed;
    enum log_level level;
    const char *component;
    const char *what;    /* summaries read "<N> more <what> in the last <S> s: <latest>" */
};

/* No I/O yet: lines can be logged (and counted) before the loop is running.
 * what NULL: "like this". burst, max_sites: as ratelog_init. */
void log_repeat_init(struct log_repeat *lr, enum log_level level, const char *component, const char *what,
                     int burst, int max_sites);
/* Starts the summary timer on loop. */
void log_repeat_attach(struct log_repeat *lr, uv_loop_t *loop);

/* One occurrence of `site` (NULL: the format): logged in full (returns 1)
 * or counted for a summary (returns 0). */
int log_repeat(struct log_repeat *lr, const char *site, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes every summary still pending and closes the timer; `closed_cb` runs
 * when it is closed (only when the timer was attached: returns 1 then). */
int log_repeat_close(struct log_repeat *lr, uv_close_cb closed_cb);
/* After the close callback (or when never attached). */
void log_repeat_free(struct log_repeat *lr);

#endif
