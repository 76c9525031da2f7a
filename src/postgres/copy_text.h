/* pg_copy_text: COPY text encoding of values: field escaping, times (epoch
 * milliseconds, ISO 8601) and a JSON value checked against a column's type.
 * Pure (no I/O); uses jansson. */
#ifndef DAZ_PG_COPY_TEXT_H
#define DAZ_PG_COPY_TEXT_H

#include <jansson.h>
#include <stddef.h>

/* Appends n bytes of s to *buf (realloc'd, kept NUL-terminated); 0 or -1. */
int pg_copy_buf_add(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* COPY text escaping of one field: appends to *buf (realloc'd), returns 0 or -1. */
int pg_copy_escape(char **buf, size_t *len, size_t *cap, const char *s, size_t n);

/* Epoch milliseconds as "YYYY-MM-DD HH:MM:SS.mmm+00"; out needs 40 bytes. */
int pg_format_epoch_ms(double ms, char *out, size_t outsz);

/* YYYY-MM-DD[( |T)HH:MM[:SS[.f{1,6}]]][Z|(+|-)HH[[:]MM]]: 1 or 0. */
int pg_copy_iso_timestamp_ok(const char *s);

/* Appends the COPY field for value v (NULL or JSON null: SQL NULL) of a
 * column named `column` with type `oid`. Returns NULL, or why the value is
 * refused (why, or the constant "out of memory"). */
const char *pg_copy_encode_value(char **buf, size_t *len, size_t *cap, const char *column, unsigned oid,
                                 int notnull, json_t *v, char *why, size_t whysz);

#endif
