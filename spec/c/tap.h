/* tap: a tiny TAP producer for the C unit tests in spec/c; scripts/test
 * counts their "ok"/"not ok" lines. Uses stdio. */
#ifndef DAZ_TAP_H
#define DAZ_TAP_H

#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

#define ok(cond, ...)                                                        \
    do {                                                                     \
        int ok_ = (cond) ? 1 : 0; /* evaluated once: it may have effects */  \
        tap_count++;                                                         \
        if (ok_) {                                                           \
            printf("ok %d - ", tap_count);                                   \
        } else {                                                             \
            tap_failed++;                                                    \
            printf("not ok %d - ", tap_count);                               \
        }                                                                    \
        printf(__VA_ARGS__);                                                 \
        printf("\n");                                                        \
        if (!ok_)                                                            \
            printf("# failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
    } while (0)

#define is_str(got, want, ...)                                               \
    do {                                                                     \
        const char *g_ = (got), *w_ = (want);                                \
        int same_ = g_ && w_ && strcmp(g_, w_) == 0;                         \
        ok(same_, __VA_ARGS__);                                              \
        if (!same_)                                                          \
            printf("#   got:  '%s'\n#   want: '%s'\n", g_ ? g_ : "(null)", w_ ? w_ : "(null)"); \
    } while (0)

static inline int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

#endif
