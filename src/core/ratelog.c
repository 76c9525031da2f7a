/* ratelog: see ratelog.h. */
#include "core/ratelog.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char OTHER_KEY[] = "(other sites)";

double ratelog_default_interval(void)
{
    static double interval = -1;
    if (interval < 0) {
        const char *env = getenv("DAZ_LOG_REPEAT_INTERVAL_MS");
        long ms = env ? strtol(env, NULL, 10) : 0;
        interval = ms > 0 ? (double)ms / 1000.0 : 10.0;
    }
    return interval;
}

void ratelog_init(struct ratelog *rl, int burst, double interval_s, int max_sites)
{
    memset(rl, 0, sizeof *rl);
    rl->burst = burst > 0 ? burst : 5;
    rl->interval_s = interval_s > 0 ? interval_s : ratelog_default_interval();
    rl->max_sites = max_sites >= 2 ? max_sites : 16;
}

void ratelog_free(struct ratelog *rl)
{
    free(rl->sites);
    rl->sites = NULL;
    rl->nsites = 0;
}

static void copy_cut(char *out, size_t outsz, const char *s, size_t n)
{
    if (outsz == 0)
        return;
    if (n > outsz - 1)
        n = outsz - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

void ratelog_first_line(const char *msg, char *out, size_t outsz)
{
    if (!msg)
        msg = "?";
    copy_cut(out, outsz, msg, strcspn(msg, "\n"));
}

void ratelog_error_site(const char *msg, char *out, size_t outsz)
{
    if (!msg)
        msg = "?";
    size_t line = strcspn(msg, "\n");
    /* The first ":<digits>:" ends the location. */
    for (size_t i = 0; i < line; i++) {
        if (msg[i] != ':')
            continue;
        size_t j = i + 1;
        while (j < line && msg[j] >= '0' && msg[j] <= '9')
            j++;
        if (j > i + 1 && j < line && msg[j] == ':') {
            copy_cut(out, outsz, msg, j + 1);
            return;
        }
    }
    copy_cut(out, outsz, msg, line);
}

void ratelog_format_count(uint64_t n, char *out, size_t outsz)
{
    char digits[32];
    int len = snprintf(digits, sizeof digits, "%llu", (unsigned long long)n);
    char buf[48];
    int o = 0;
    for (int i = 0; i < len; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    snprintf(out, outsz, "%s", buf);
}

static struct ratelog_site *find_site(struct ratelog *rl, const char *key, double now)
{
    if (!rl->sites) {
        rl->sites = calloc((size_t)rl->max_sites, sizeof *rl->sites);
        if (!rl->sites)
            return NULL;
    }
    for (int i = 0; i < rl->nsites; i++)
        if (strncmp(rl->sites[i].key, key, RATELOG_KEY_MAX - 1) == 0)
            return &rl->sites[i];
    /* A new site: a free slot, else one quiet for an interval (it would
     * start over anyway), else the last slot, kept for every site beyond
     * the bound. */
    struct ratelog_site *s = NULL;
    if (rl->nsites < rl->max_sites - 1)
        s = &rl->sites[rl->nsites++];
    for (int i = 0; !s && i < rl->nsites; i++)
        if (rl->sites[i].counted == 0 && now - rl->sites[i].last_seen >= rl->interval_s)
            s = &rl->sites[i];
    if (s) {
        memset(s, 0, sizeof *s);
        copy_cut(s->key, sizeof s->key, key, strlen(key));
    } else {
        s = &rl->sites[rl->max_sites - 1];
        if (!s->key[0])
            copy_cut(s->key, sizeof s->key, OTHER_KEY, sizeof OTHER_KEY - 1);
    }
    return s;
}

static void summarize(struct ratelog_site *s, double seconds, ratelog_emit_fn emit, void *ctx)
{
    uint64_t n = s->counted;
    s->counted = 0;
    if (emit)
        emit(s, n, seconds, ctx);
}

int ratelog_hit(struct ratelog *rl, const char *key, const char *msg, double now, ratelog_emit_fn emit, void *ctx)
{
    struct ratelog_site *s = find_site(rl, key ? key : "?", now);
    if (!s)
        return 0;
    if (s->counted > 0 && now - s->window_start >= rl->interval_s)
        summarize(s, now - s->window_start, emit, ctx);
    if (s->counted == 0 && s->full > 0 && now - s->last_seen >= rl->interval_s)
        s->full = 0; /* quiet for an interval: start over */
    s->last_seen = now;
    if (s->full < (uint64_t)rl->burst) {
        s->full++;
        return 1;
    }
    if (s->counted++ == 0)
        s->window_start = now;
    ratelog_first_line(msg, s->msg, sizeof s->msg);
    return 0;
}

int ratelog_flush(struct ratelog *rl, double now, int force, ratelog_emit_fn emit, void *ctx)
{
    int pending = 0;
    for (int i = 0; rl->sites && i < rl->max_sites; i++) {
        struct ratelog_site *s = &rl->sites[i];
        if (s->counted == 0)
            continue;
        if (force || now - s->window_start >= rl->interval_s)
            summarize(s, now - s->window_start, emit, ctx);
        else
            pending++;
    }
    return pending;
}

double ratelog_next_due(const struct ratelog *rl, double now)
{
    double next = -1;
    for (int i = 0; rl->sites && i < rl->max_sites; i++) {
        const struct ratelog_site *s = &rl->sites[i];
        if (s->counted == 0)
            continue;
        double due = s->window_start + rl->interval_s - now;
        if (due < 0)
            due = 0;
        if (next < 0 || due < next)
            next = due;
    }
    return next;
}
