/* ratelog: the first few per site in full, then one summary per interval
 * with the exact count; sites apart; a quiet site starts over; bounded
 * sites; error sites from Lua messages; counts with separators. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/log_repeat.h"
#include "core/ratelog.h"
#include "tap.h"

static uint64_t summed;
static int summaries;
static char last_key[RATELOG_KEY_MAX], last_msg[RATELOG_MSG_MAX];
static double last_seconds;

static void emit(const struct ratelog_site *s, uint64_t count, double seconds, void *ctx)
{
    (void)ctx;
    summed += count;
    summaries++;
    snprintf(last_key, sizeof last_key, "%s", s->key);
    snprintf(last_msg, sizeof last_msg, "%s", s->msg);
    last_seconds = seconds;
}

int main(void)
{
    struct ratelog rl;
    ratelog_init(&rl, 3, 10.0, 4);
    int full = 0;
    for (int i = 0; i < 1000; i++)
        full += ratelog_hit(&rl, "a.lua:1:", "a.lua:1: boom\nstack traceback:", 0.001 * i, emit, NULL);
    ok(full == 3, "the first 3 in full (%d)", full);
    ok(summaries == 0, "no summary before the interval");
    ok(fabs(ratelog_next_due(&rl, 1.0) - 9.003) < 1e-9, "due 10 s after the first counted one");
    ok(ratelog_flush(&rl, 5.0, 0, emit, NULL) == 1 && summaries == 0, "not due at 5 s: still pending");
    ok(ratelog_flush(&rl, 10.01, 0, emit, NULL) == 0 && summaries == 1 && summed == 997, "one summary, exact count");
    is_str(last_key, "a.lua:1:", "of the site");
    is_str(last_msg, "a.lua:1: boom", "with the message's first line");
    ok(last_seconds > 9.9 && last_seconds < 10.1, "over the interval");
    ok(ratelog_next_due(&rl, 11) < 0, "nothing pending");

    /* Still failing: only summaries, one per interval, counted in the hit. */
    full = ratelog_hit(&rl, "a.lua:1:", "a.lua:1: boom", 10.5, emit, NULL);
    ok(full == 0, "still failing: not in full again");
    ratelog_hit(&rl, "a.lua:1:", "a.lua:1: boom again", 12, emit, NULL);
    ratelog_hit(&rl, "a.lua:1:", "a.lua:1: boom", 21.5, emit, NULL);
    ok(summaries == 2 && summed == 999, "the due summary is emitted by the next hit (%d, %llu)", summaries,
       (unsigned long long)summed);
    is_str(last_msg, "a.lua:1: boom again", "the latest message");
    ok(ratelog_flush(&rl, 22, 1, emit, NULL) == 0 && summaries == 3 && summed == 1000, "forced: the rest now");

    /* Another site is apart; a quiet site starts over. */
    ok(ratelog_hit(&rl, "b.lua:2:", "b.lua:2: x", 22, emit, NULL) == 1, "another site is logged in full");
    ok(ratelog_hit(&rl, "a.lua:1:", "a.lua:1: boom", 40, emit, NULL) == 1, "quiet for an interval: in full again");

    /* Bounded: beyond 3 sites they share one. */
    ratelog_hit(&rl, "c:3:", "c", 41, emit, NULL);
    for (int i = 0; i < 10; i++) {
        char key[32];
        snprintf(key, sizeof key, "k%d:%d:", i, i);
        ratelog_hit(&rl, key, "many", 41, emit, NULL);
    }
    ok(rl.nsites == 3, "sites are bounded (%d)", rl.nsites);
    is_str(rl.sites[1].key, "k0:0:", "the first new one takes the place of a site quiet for an interval");
    is_str(rl.sites[3].key, "(other sites)", "the rest share one");
    ok(rl.sites[3].full == 3 && rl.sites[3].counted == 6, "and are limited together");
    ok(ratelog_hit(&rl, "new:1:", "new", 60, emit, NULL) == 1 && strcmp(rl.sites[0].key, "new:1:") == 0,
       "a site quiet for an interval makes room for a new one");
    ratelog_free(&rl);

    char site[64];
    ratelog_error_site("[string \"plugins/bar.lua\"]:12: attempt to index nil\nstack traceback:\n...", site,
                       sizeof site);
    is_str(site, "[string \"plugins/bar.lua\"]:12:", "site of a Lua error");
    ratelog_error_site("plugins/bar.lua:7: boom", site, sizeof site);
    is_str(site, "plugins/bar.lua:7:", "site of a plain file error");
    ratelog_error_site("no location here\nmore", site, sizeof site);
    is_str(site, "no location here", "no location: the first line");
    ratelog_error_site("x:y: 12:34", site, 6);
    is_str(site, "x:y: ", "cut to the buffer");
    char n[32];
    ratelog_format_count(199990, n, sizeof n);
    is_str(n, "199,990", "thousands");
    ratelog_format_count(1234567, n, sizeof n);
    is_str(n, "1,234,567", "millions");
    ratelog_format_count(999, n, sizeof n);
    is_str(n, "999", "small");
    ratelog_format_count(0, n, sizeof n);
    is_str(n, "0", "zero");

    /* log_repeat: the same through the logger (lines go to stderr); not
     * attached to a loop, so summaries come with the next line or at close. */
    struct log_repeat lr;
    log_repeat_init(&lr, LOG_WARN, "test", NULL, 2, 4);
    int logged = 0;
    for (int i = 0; i < 50; i++)
        logged += log_repeat(&lr, NULL, "send failed: %d", i);
    ok(logged == 2, "log_repeat: the first 2 in full (%d)", logged);
    ok(lr.rl.nsites == 1 && lr.rl.sites[0].counted == 48, "the other 48 counted (%llu)",
       (unsigned long long)(lr.rl.nsites ? lr.rl.sites[0].counted : 0));
    ok(log_repeat(&lr, "other", "x") == 1, "a site of its own");
    ok(log_repeat_close(&lr, NULL) == 0, "closed without a timer to close");
    ok(lr.rl.sites[0].counted == 0, "close wrote the pending summary");
    log_repeat_free(&lr);
    return tap_done();
}
