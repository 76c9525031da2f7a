/* ratelog: rate limiting for log lines that can repeat at event rate. Per
 * site (a key: an error's "file:line:", a queue's name...), the first
 * `burst` occurrences are logged in full; after that they are only counted,
 * and one summary per interval is due ("N more ... in the last 10 s: <msg>").
 * A site quiet for an interval starts over. Sites are bounded (beyond, they
 * share one "other" site). Pure apart from the clock value the caller
 * passes; the caller writes the lines. Uses only libc. */
#ifndef DAZ_RATELOG_H
#define DAZ_RATELOG_H

#include <stddef.h>
#include <stdint.h>

#define RATELOG_KEY_MAX 160
#define RATELOG_MSG_MAX 300

struct ratelog_site {
    char key[RATELOG_KEY_MAX];
    char msg[RATELOG_MSG_MAX]; /* the latest counted occurrence's message */
    uint64_t full;             /* logged in full since the site started over */
    uint64_t counted;          /* not logged, since the last summary */
    double window_start;       /* the first of those */
    double last_seen;
};

struct ratelog {
    int burst;
    double interval_s;
    int max_sites;
    int nsites;
    struct ratelog_site *sites; /* max_sites, allocated on first use */
};

/* Called with each summary due: `count` occurrences of `site` were not
 * logged over the last `seconds`; msg is the latest one's. */
typedef void (*ratelog_emit_fn)(const struct ratelog_site *site, uint64_t count, double seconds, void *ctx);

/* burst <= 0: 5; interval_s <= 0: ratelog_default_interval(); max_sites < 2: 16. */
void ratelog_init(struct ratelog *rl, int burst, double interval_s, int max_sites);
void ratelog_free(struct ratelog *rl);

/* One occurrence at `now` (seconds, any monotonic clock). Emits this site's
 * summary first if it is due. Returns 1: log this one in full; 0: it was
 * counted for a summary (or there is no memory: then it is not logged). */
int ratelog_hit(struct ratelog *rl, const char *key, const char *msg, double now, ratelog_emit_fn emit, void *ctx);

/* Emits the summaries due at `now` (every pending one when `force`).
 * Returns how many sites still have counted occurrences pending. */
int ratelog_flush(struct ratelog *rl, double now, int force, ratelog_emit_fn emit, void *ctx);

/* Seconds until the next summary is due (a timer's timeout), or -1 when none is pending. */
double ratelog_next_due(const struct ratelog *rl, double now);

/* The site of an error message: its first line up to and including the
 * first "<file>:<line>:" when it has one (Lua's "x.lua:12: boom"), else the
 * whole first line; cut to outsz - 1 bytes. */
void ratelog_error_site(const char *msg, char *out, size_t outsz);

/* The first line of msg (no traceback), cut to outsz - 1 bytes. */
void ratelog_first_line(const char *msg, char *out, size_t outsz);

/* n with thousands separators: "199,990". */
void ratelog_format_count(uint64_t n, char *out, size_t outsz);

/* The interval every ratelog uses by default: 10 s, or DAZ_LOG_REPEAT_INTERVAL_MS
 * from the environment (read once; for tests). */
double ratelog_default_interval(void);

#endif
