/* pg_copy_text: see copy_text.h. */
#include "postgres/copy_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int buf_reserve(char **buf, size_t *len, size_t *cap, size_t more)
{
    if (*len + more + 1 <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 256;
    while (ncap < *len + more + 1)
        ncap *= 2;
    char *n = realloc(*buf, ncap);
    if (!n)
        return -1;
    *buf = n;
    *cap = ncap;
    return 0;
}

int pg_copy_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (buf_reserve(buf, len, cap, n) != 0)
        return -1;
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return 0;
}

int pg_copy_escape(char **buf, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (buf_reserve(buf, len, cap, 2 * n) != 0)
        return -1;
    char *o = *buf + *len;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        switch (c) {
        case '\\': *o++ = '\\'; *o++ = '\\'; break;
        case '\n': *o++ = '\\'; *o++ = 'n'; break;
        case '\r': *o++ = '\\'; *o++ = 'r'; break;
        case '\t': *o++ = '\\'; *o++ = 't'; break;
        case '\b': *o++ = '\\'; *o++ = 'b'; break;
        case '\f': *o++ = '\\'; *o++ = 'f'; break;
        case '\v': *o++ = '\\'; *o++ = 'v'; break;
        default: *o++ = c;
        }
    }
    *len = (size_t)(o - *buf);
    (*buf)[*len] = '\0';
    return 0;
}

int pg_format_epoch_ms(double ms, char *out, size_t outsz)
{
    if (!isfinite(ms) || ms < -62135596800000.0 || ms > 253402300799999.0)
        return -1;
    double secs = floor(ms / 1000.0);
    int millis = (int)llround(ms - secs * 1000.0);
    if (millis >= 1000) {
        secs += 1;
        millis -= 1000;
    }
    /* Rows come in runs from the same second: the date and time part is
     * formatted once per second (gmtime_r and snprintf were most of a
     * logged line's cost in the writer). */
    static __thread double cached_secs = -1e300;
    static __thread char cached[80];
    if (secs != cached_secs) {
        time_t t = (time_t)secs;
        struct tm tm;
        if (!gmtime_r(&t, &tm))
            return -1;
        snprintf(cached, sizeof cached, "%04d-%02d-%02d %02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
        cached_secs = secs;
    }
    size_t n = strlen(cached);
    if (outsz < n + 8)
        return -1;
    memcpy(out, cached, n);
    out[n] = '.';
    out[n + 1] = (char)('0' + millis / 100);
    out[n + 2] = (char)('0' + millis / 10 % 10);
    out[n + 3] = (char)('0' + millis % 10);
    memcpy(out + n + 4, "+00", 4);
    return 0;
}

static int digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

int pg_copy_iso_timestamp_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
        return 0;
    const char *p = s + 10;
    if (*p == 'T' || *p == ' ') {
        p++;
        if (!digits(p, 2) || p[2] != ':' || !digits(p + 3, 2))
            return 0;
        p += 5;
        if (*p == ':') {
            if (!digits(p + 1, 2))
                return 0;
            p += 3;
            if (*p == '.') {
                int k = 0;
                for (p++; *p >= '0' && *p <= '9'; p++)
                    k++;
                if (k < 1 || k > 6)
                    return 0;
            }
        }
    }
    if (*p == 'Z')
        p++;
    else if (*p == '+' || *p == '-') {
        if (!digits(p + 1, 2))
            return 0;
        p += 3;
        if (*p == ':')
            p++;
        if (*p) {
            if (!digits(p, 2))
                return 0;
            p += 2;
        }
    }
    return *p == '\0';
}

enum {
    OID_BOOL = 16, OID_INT8 = 20, OID_INT2 = 21, OID_INT4 = 23, OID_TEXT = 25, OID_JSON = 114,
    OID_FLOAT4 = 700, OID_FLOAT8 = 701, OID_BPCHAR = 1042, OID_VARCHAR = 1043, OID_DATE = 1082,
    OID_TIMESTAMP = 1114, OID_TIMESTAMPTZ = 1184, OID_NUMERIC = 1700, OID_JSONB = 3802, OID_NAME = 19,
};

const char *pg_copy_encode_value(char **buf, size_t *len, size_t *cap, const char *column, unsigned oid,
                                 int notnull, json_t *v, char *why, size_t whysz)
{
    char tmp[64];
    if (!v || json_is_null(v)) {
        if (notnull) {
            snprintf(why, whysz, "missing field %s (the column is NOT NULL)", column);
            return why;
        }
        return pg_copy_buf_add(buf, len, cap, "\\N", 2) == 0 ? NULL : "out of memory";
    }
    switch (oid) {
    case OID_BOOL:
        if (!json_is_boolean(v))
            break;
        return pg_copy_buf_add(buf, len, cap, json_is_true(v) ? "t" : "f", 1) == 0 ? NULL : "out of memory";
    case OID_INT2: case OID_INT4: case OID_INT8: {
        json_int_t i;
        if (json_is_integer(v))
            i = json_integer_value(v);
        else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
            i = (json_int_t)json_real_value(v);
        else
            break;
        if ((oid == OID_INT2 && (i < -32768 || i > 32767)) ||
            (oid == OID_INT4 && (i < -2147483648LL || i > 2147483647LL))) {
            snprintf(why, whysz, "field %s: %lld is out of range", column, (long long)i);
            return why;
        }
        int n = snprintf(tmp, sizeof tmp, "%lld", (long long)i);
        return pg_copy_buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
    }
    case OID_FLOAT4: case OID_FLOAT8: case OID_NUMERIC: {
        if (!json_is_number(v))
            break;
        int n = json_is_integer(v) ? snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v))
                                   : snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
        return pg_copy_buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
    }
    case OID_JSON: case OID_JSONB: {
        /* CyTube's meta is mostly {}: no need to run the encoder for it. */
        if ((json_is_object(v) && json_object_size(v) == 0) || (json_is_array(v) && json_array_size(v) == 0))
            return pg_copy_buf_add(buf, len, cap, json_is_object(v) ? "{}" : "[]", 2) == 0 ? NULL : "out of memory";
        char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
            return "out of memory";
        if (strstr(text, "\\u0000")) {
            free(text);
            snprintf(why, whysz, "field %s: JSON with a NUL character", column);
            return why;
        }
        int rc = pg_copy_escape(buf, len, cap, text, strlen(text));
        free(text);
        return rc == 0 ? NULL : "out of memory";
    }
    case OID_TIMESTAMPTZ: case OID_TIMESTAMP: case OID_DATE:
        if (json_is_number(v)) {
            if (pg_format_epoch_ms(json_number_value(v), tmp, sizeof tmp) != 0) {
                snprintf(why, whysz, "field %s: time %g ms is out of range", column, json_number_value(v));
                return why;
            }
            return pg_copy_buf_add(buf, len, cap, tmp, strlen(tmp)) == 0 ? NULL : "out of memory";
        }
        if (json_is_string(v) && pg_copy_iso_timestamp_ok(json_string_value(v)))
            return pg_copy_buf_add(buf, len, cap, json_string_value(v), json_string_length(v)) == 0 ? NULL : "out of memory";
        snprintf(why, whysz, "field %s: expected epoch milliseconds or an ISO 8601 time", column);
        return why;
    default: /* text and everything else: strings (numbers and booleans as text) */
        if (json_is_string(v)) {
            if (strlen(json_string_value(v)) != json_string_length(v)) {
                snprintf(why, whysz, "field %s: text with a NUL character", column);
                return why;
            }
            return pg_copy_escape(buf, len, cap, json_string_value(v), json_string_length(v)) == 0 ? NULL
                                                                                                 : "out of memory";
        }
        if (json_is_integer(v)) {
            int n = snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
            return pg_copy_buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
        }
        if (json_is_real(v)) {
            int n = snprintf(tmp, sizeof tmp, "%.17g", json_real_value(v));
            return pg_copy_buf_add(buf, len, cap, tmp, (size_t)n) == 0 ? NULL : "out of memory";
        }
        if (json_is_boolean(v))
            return pg_copy_buf_add(buf, len, cap, json_is_true(v) ? "true" : "false", json_is_true(v) ? 4 : 5) == 0
                       ? NULL
                       : "out of memory";
        break;
    }
    snprintf(why, whysz, "field %s: wrong type (%s) for the column", column,
             json_is_object(v) ? "object" : json_is_array(v) ? "array" : json_is_string(v) ? "string"
             : json_is_boolean(v) ? "boolean" : "number");
    return why;
}
