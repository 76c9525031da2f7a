/* log_repeat: see log_repeat.h. The clock is libuv's high-resolution one so
 * lines logged before the loop runs count the same way. */
#include "core/log_repeat.h"

#include <stdio.h>
#include <string.h>

static double now_s(void) { return (double)uv_hrtime() / 1e9; }

static void emit(const struct ratelog_site *site, uint64_t count, double seconds, void *ctx)
{
    const struct log_repeat *lr = ctx;
    char n[32];
    ratelog_format_count(count, n, sizeof n);
    log_msg(lr->level, lr->component, "%s more %s in the last %.3g s: %s", n, lr->what, seconds, site->msg);
}

void log_repeat_init(struct log_repeat *lr, enum log_level level, const char *component, const char *what,
                     int burst, int max_sites)
{
    memset(lr, 0, sizeof *lr);
    lr->level = level;
    lr->component = component;
    lr->what = what ? what : "like this";
    ratelog_init(&lr->rl, burst, 0, max_sites);
}

static void on_due(uv_timer_t *t);

static void arm(struct log_repeat *lr)
{
    if (!lr->loop || lr->armed || lr->closed)
        return;
    double due = ratelog_next_due(&lr->rl, now_s());
    if (due < 0)
        return;
    lr->armed = 1;
    uv_timer_start(&lr->timer, on_due, (uint64_t)(due * 1000.0) + 1, 0);
}

static void on_due(uv_timer_t *t)
{
    struct log_repeat *lr = t->data;
    lr->armed = 0;
    ratelog_flush(&lr->rl, now_s(), 0, emit, lr);
    arm(lr);
}

void log_repeat_attach(struct log_repeat *lr, uv_loop_t *loop)
{
    if (lr->loop || uv_timer_init(loop, &lr->timer) != 0)
        return;
    lr->timer.data = lr;
    lr->loop = loop;
    arm(lr);
}

int log_repeat(struct log_repeat *lr, const char *site, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ratelog_hit(&lr->rl, site ? site : fmt, msg, now_s(), emit, lr)) {
        log_msg(lr->level, lr->component, "%s", msg);
        return 1;
    }
    arm(lr);
    return 0;
}

int log_repeat_close(struct log_repeat *lr, uv_close_cb closed_cb)
{
    if (lr->closed)
        return 0;
    lr->closed = 1;
    ratelog_flush(&lr->rl, now_s(), 1, emit, lr); /* what is still counted is said now, not lost */
    if (!lr->loop)
        return 0;
    uv_close((uv_handle_t *)&lr->timer, closed_cb);
    return 1;
}

void log_repeat_free(struct log_repeat *lr) { ratelog_free(&lr->rl); }
