/* pg_copy_text: COPY text encoding of one value per column type, the
 * refusals (NOT NULL, range, wrong type, NUL characters) and ISO times. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "postgres/copy_text.h"
#include "tap.h"

enum { BOOL = 16, INT8 = 20, INT2 = 21, INT4 = 23, TEXT = 25, JSONB = 3802, TSTZ = 1184, FLOAT8 = 701 };

/* The COPY field for v (a JSON text) in a column of type oid, or "ERR: <why>". */
static char out[512];
static const char *enc(unsigned oid, int notnull, const char *json)
{
    json_t *v = json ? json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
    char *buf = NULL, why[256];
    size_t len = 0, cap = 0;
    const char *err = pg_copy_encode_value(&buf, &len, &cap, "col", oid, notnull, v, why, sizeof why);
    if (err)
        snprintf(out, sizeof out, "ERR: %s", err);
    else
        snprintf(out, sizeof out, "%s", buf ? buf : "");
    free(buf);
    json_decref(v);
    return out;
}

int main(void)
{
    is_str(enc(TEXT, 0, NULL), "\\N", "missing value: NULL");
    is_str(enc(TEXT, 0, "null"), "\\N", "JSON null: NULL");
    is_str(enc(TEXT, 1, NULL), "ERR: missing field col (the column is NOT NULL)", "NOT NULL refuses a missing value");
    is_str(enc(TEXT, 0, "\"a\\tb\\nc\\\\\""), "a\\tb\\nc\\\\", "text is escaped");
    is_str(enc(TEXT, 0, "\"a\\u0000b\""), "ERR: field col: text with a NUL character", "text with NUL refused");
    is_str(enc(TEXT, 0, "12"), "12", "a number as text");
    is_str(enc(TEXT, 0, "true"), "true", "a boolean as text");
    is_str(enc(TEXT, 0, "{}"), "ERR: field col: wrong type (object) for the column", "an object is not text");
    is_str(enc(BOOL, 0, "false"), "f", "boolean");
    is_str(enc(BOOL, 0, "1"), "ERR: field col: wrong type (number) for the column", "a number is not a boolean");
    is_str(enc(INT4, 0, "42"), "42", "integer");
    is_str(enc(INT8, 0, "3.0"), "3", "a whole real as integer");
    is_str(enc(INT4, 0, "2.5"), "ERR: field col: wrong type (number) for the column", "a fraction is not an integer");
    is_str(enc(INT2, 0, "40000"), "ERR: field col: 40000 is out of range", "smallint range");
    is_str(enc(INT4, 0, "3000000000"), "ERR: field col: 3000000000 is out of range", "integer range");
    is_str(enc(FLOAT8, 0, "0.5"), "0.5", "float");
    is_str(enc(JSONB, 0, "{}"), "{}", "empty object as JSON");
    is_str(enc(JSONB, 0, "{\"a\":\"x\\ty\"}"), "{\"a\":\"x\\\\ty\"}", "JSON is COPY-escaped");
    is_str(enc(JSONB, 0, "\"a\\u0000\""), "ERR: field col: JSON with a NUL character", "JSON with NUL refused");
    is_str(enc(TSTZ, 0, "1700000000123"), "2023-11-14 22:13:20.123+00", "epoch ms as a time");
    is_str(enc(TSTZ, 0, "\"2024-01-02T03:04:05.5Z\""), "2024-01-02T03:04:05.5Z", "ISO time kept");
    is_str(enc(TSTZ, 0, "\"yesterday\""), "ERR: field col: expected epoch milliseconds or an ISO 8601 time",
           "not a time");
    ok(pg_copy_iso_timestamp_ok("2024-01-02"), "date only");
    ok(pg_copy_iso_timestamp_ok("2024-01-02 03:04+05:30"), "offset with colon");
    ok(pg_copy_iso_timestamp_ok("2024-01-02T03:04:05-0800"), "offset without colon");
    ok(!pg_copy_iso_timestamp_ok("2024-01-02T03:04:05.1234567"), "seven fraction digits refused");
    ok(!pg_copy_iso_timestamp_ok("2024-1-02"), "one-digit month refused");
    ok(!pg_copy_iso_timestamp_ok("2024-01-02x"), "trailing text refused");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    ok(pg_copy_buf_add(&buf, &len, &cap, "ab", 2) == 0 && pg_copy_buf_add(&buf, &len, &cap, "c", 1) == 0 &&
           len == 3 && strcmp(buf, "abc") == 0,
       "buffer append");
    free(buf);
    return tap_done();
}
