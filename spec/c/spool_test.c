/* The pure parts of the SQL plugin: the spool's record format and journal
 * (append, replay in order, torn tails, the budget), COPY text escaping,
 * time formatting and the result value helpers. */
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "postgres/pool.h"
#include "postgres/writer.h"
#include "postgres/spool.h"
#include "tap.h"

static char dir[256];

static void rm_dir(const char *d)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    if (system(cmd) != 0)
        printf("# cannot remove %s\n", d);
}

static void test_format(void)
{
    ok(spool_crc32("123456789", 9) == 0xCBF43926u, "crc32 check value");
    unsigned char buf[256];
    const char *a = "hello", *b = "world!";
    spool_header_encode(buf, a, 5, 3, 1234567890123ull);
    memcpy(buf + SPOOL_HEADER_SIZE, a, 5);
    size_t second = SPOOL_HEADER_SIZE + 5;
    spool_header_encode(buf + second, b, 6, 1, 42);
    memcpy(buf + second + SPOOL_HEADER_SIZE, b, 6);
    size_t total = second + SPOOL_HEADER_SIZE + 6;
    uint32_t len, rows, crc;
    uint64_t t;
    ok(spool_header_decode(buf, &len, &rows, &crc, &t) == 0 && len == 5 && rows == 3 && t == 1234567890123ull,
       "header round trip");
    uint64_t count;
    ok(spool_scan_buffer(buf, total, &count) == total && count == 2, "two whole records scan");
    ok(spool_scan_buffer(buf, total - 1, &count) == second && count == 1, "a torn tail is cut at the last whole record");
    buf[second + SPOOL_HEADER_SIZE + 2] ^= 1;
    ok(spool_scan_buffer(buf, total, &count) == second && count == 1, "a flipped bit fails the checksum");
    memcpy(buf, "XXXX", 4);
    ok(spool_scan_buffer(buf, total, &count) == 0 && count == 0, "bad magic is not a record");
}

static int append_str(struct spool *s, const char *text, uint32_t rows)
{
    char err[256];
    return spool_append(s, text, strlen(text), rows, err, sizeof err);
}

static void test_journal(void)
{
    char err[256];
    char path[512];
    snprintf(dir, sizeof dir, "/tmp/daz-spool-test.%d", (int)getpid());
    rm_dir(dir);
    struct spool *s = spool_open(dir, 1 << 20, err, sizeof err);
    ok(s != NULL, "opens (creating the directory)");
    if (!s)
        return;
    ok(spool_empty(s), "a new spool is empty");
    ok(append_str(s, "one", 1) == 0 && append_str(s, "two", 2) == 0 && append_str(s, "three", 3) == 0,
       "appends three records");
    struct spool_stats st;
    spool_get_stats(s, &st);
    ok(st.records == 3 && st.rows == 6 && st.bytes == 3 * SPOOL_HEADER_SIZE + 11 && st.oldest_ms > 0,
       "counts records, rows, bytes and the oldest time");

    char *payload;
    size_t len;
    uint32_t rows;
    ok(spool_peek(s, &payload, &len, &rows) == 1 && len == 3 && memcmp(payload, "one", 3) == 0 && rows == 1,
       "peek gives the oldest record");
    free(payload);
    ok(spool_peek(s, &payload, &len, &rows) == 1 && memcmp(payload, "one", 3) == 0, "peeking again gives the same");
    free(payload);
    ok(spool_consume(s) == 0, "consume");
    spool_close(s);

    /* A restart resumes after the consumed record; a torn tail is cut. */
    snprintf(path, sizeof path, "%s/seg-%016llu.spool", dir, 1ull);
    int fd = open(path, O_WRONLY | O_APPEND);
    ok(fd >= 0 && write(fd, "DZS1\x10\x00", 6) == 6, "simulate a torn write");
    if (fd >= 0)
        close(fd);
    s = spool_open(dir, 1 << 20, err, sizeof err);
    ok(s != NULL, "reopens");
    if (!s)
        return;
    spool_get_stats(s, &st);
    ok(st.records == 2 && st.rows == 5 && st.corrupt_records == 1, "two records pending after restart, tail cut");
    ok(spool_peek(s, &payload, &len, &rows) == 1 && len == 3 && memcmp(payload, "two", 3) == 0,
       "replay resumes with the second record");
    free(payload);
    spool_consume(s);
    ok(append_str(s, "four", 4) == 0, "appends after the cut tail");
    ok(spool_peek(s, &payload, &len, &rows) == 1 && len == 5 && memcmp(payload, "three", 5) == 0, "then the third");
    free(payload);
    spool_consume(s);
    ok(spool_peek(s, &payload, &len, &rows) == 1 && len == 4 && memcmp(payload, "four", 4) == 0, "then the new one");
    free(payload);
    spool_consume(s);
    ok(spool_empty(s) && spool_peek(s, &payload, &len, &rows) == 0, "empty when caught up");
    struct stat sb;
    ok(stat(path, &sb) != 0, "caught up: the segments are removed");
    spool_close(s);

    /* The budget. */
    s = spool_open(dir, 1024, err, sizeof err);
    char big[600];
    memset(big, 'x', sizeof big);
    ok(spool_append(s, big, sizeof big, 10, err, sizeof err) == 0, "a record within the budget");
    ok(spool_append(s, big, sizeof big, 10, err, sizeof err) == -2, "a record beyond the budget is refused");
    spool_get_stats(s, &st);
    ok(st.refused_records == 1 && st.refused_rows == 10 && st.records == 1, "the refusal is counted");
    spool_close(s);
    rm_dir(dir);
}

static void test_copy_and_values(void)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    const char in[] = "a\\b\tc\nd\re";
    ok(pg_copy_escape(&buf, &len, &cap, in, sizeof in - 1) == 0, "escape");
    is_str(buf, "a\\\\b\\tc\\nd\\re", "COPY text escaping of backslash, tab, newline, CR");
    free(buf);

    char t[64];
    ok(pg_format_epoch_ms(1700000000123.0, t, sizeof t) == 0, "format ms");
    is_str(t, "2023-11-14 22:13:20.123+00", "epoch ms as a timestamptz literal");
    ok(pg_format_epoch_ms(-1.0, t, sizeof t) == 0, "before 1970");
    is_str(t, "1969-12-31 23:59:59.999+00", "negative ms");
    ok(pg_format_epoch_ms(NAN, t, sizeof t) != 0, "NaN is refused");
    /* The date part is cached per second: the same second again, another
     * second, and back must each come out whole. */
    pg_format_epoch_ms(1700000000007.0, t, sizeof t);
    is_str(t, "2023-11-14 22:13:20.007+00", "same second, other milliseconds");
    pg_format_epoch_ms(1700000061999.0, t, sizeof t);
    is_str(t, "2023-11-14 22:14:21.999+00", "next minute");
    pg_format_epoch_ms(1700000000000.0, t, sizeof t);
    is_str(t, "2023-11-14 22:13:20.000+00", "back to the cached second's neighbour");
    ok(pg_format_epoch_ms(1700000000123.0, t, 20) != 0, "too small a buffer is refused");

    double secs = 0;
    ok(pg_parse_timestamp("2024-03-01 12:34:56.789+00", &secs) == 0 && fabs(secs - 1709296496.789) < 1e-6,
       "timestamptz text to epoch seconds");
    ok(pg_parse_timestamp("2024-03-01 14:34:56+02", &secs) == 0 && fabs(secs - 1709296496.0) < 1e-6,
       "an offset is applied");
    ok(pg_parse_timestamp("0044-03-15 12:00:00+00 BC", &secs) != 0, "BC dates are left as text");

    long long i = 0;
    double d = 0;
    ok(pg_numeric_kind("12345678901234", &i, &d) == 0 && i == 12345678901234LL, "whole numeric -> integer");
    ok(pg_numeric_kind("12.50", &i, &d) == 1 && d == 12.5, "short numeric -> number");
    ok(pg_numeric_kind("123456789012345678901234.5", &i, &d) == 2, "long numeric stays text");
    ok(pg_numeric_kind("99999999999999999999", &i, &d) == 2, "whole numeric beyond 64 bits stays text");
    ok(pg_ident_ok("daz_chat_log") && !pg_ident_ok("Daz") && !pg_ident_ok("a;b") && !pg_ident_ok("1a") &&
           !pg_ident_ok(""),
       "identifier check");
}

int main(void)
{
    test_format();
    test_journal();
    test_copy_and_values();
    return tap_done();
}
