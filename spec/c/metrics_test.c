/* Unit tests for metrics.c's exposition text: samples, label escaping,
 * histograms and growth of the buffer. */
#include <stdlib.h>
#include <string.h>

#include "health/exposition.h"
#include "tap.h"

static void reset(struct metrics_out *out)
{
    free(out->text);
    memset(out, 0, sizeof *out);
    out->cap = 16; /* small: every test also grows the buffer */
    out->text = malloc(out->cap);
    out->text[0] = '\0';
}

int main(void)
{
    struct metrics_out out = {0};

    reset(&out);
    metrics_sample(&out, "daz_x_total", NULL, NULL, 42);
    is_str(out.text, "daz_x_total 42\n", "a sample without a label");

    reset(&out);
    metrics_sample(&out, "daz_y", "room", "lobby", 1.5);
    is_str(out.text, "daz_y{room=\"lobby\"} 1.5\n", "a sample with a label");

    reset(&out);
    metrics_sample(&out, "daz_y", "room", "a\"b\\c\nd", 0);
    is_str(out.text, "daz_y{room=\"a\\\"b\\\\c\\nd\"} 0\n", "quote, backslash and newline are escaped");

    reset(&out);
    metrics_one(&out, "daz_up", "gauge", "Whether daz is up.", 1);
    is_str(out.text, "# HELP daz_up Whether daz is up.\n# TYPE daz_up gauge\ndaz_up 1\n", "a one-sample family");

    reset(&out);
    const double bounds[] = {0.001, 0.01};
    const unsigned long long counts[] = {1, 2, 3};
    metrics_histogram(&out, "daz_h_seconds", "plugin", "p", bounds, counts, 2, 0.5);
    ok(strstr(out.text, "daz_h_seconds_bucket{plugin=\"p\",le=\"0.001\"} 1\n") != NULL &&
           strstr(out.text, "daz_h_seconds_bucket{plugin=\"p\",le=\"+Inf\"} 6\n") != NULL &&
           strstr(out.text, "daz_h_seconds_count{plugin=\"p\"} 6\n") != NULL,
       "a histogram is cumulative and ends with +Inf and the count");

    reset(&out);
    for (int i = 0; i < 1000; i++)
        metrics_sample(&out, "daz_many", "n", "value", i);
    ok(!out.oom && strlen(out.text) == out.len && out.len > 20000, "the text grows as needed");

    free(out.text);
    return tap_done();
}
