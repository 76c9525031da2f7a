/* spool: the on-disk journal for rows the database could not take. Records
 * are appended (and fsync'd) to numbered segment files in one directory and
 * read back in order; a position file remembers how far replay got. A record
 * is a 24-byte header (magic "DZS1", payload length, row count, CRC-32 of the
 * payload, wall-clock ms) and the payload. A size budget refuses appends
 * beyond it. Pure record codec plus file I/O; uses only libc. */
#ifndef DAZ_SPOOL_H
#define DAZ_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#define SPOOL_HEADER_SIZE 24
#define SPOOL_MAX_RECORD (64u * 1024 * 1024)

struct spool;

struct spool_stats {
    uint64_t records, rows, bytes;   /* pending (not yet replayed) */
    uint64_t oldest_ms;              /* wall-clock ms of the oldest pending record, 0 if none */
    uint64_t appended_records, appended_rows;
    uint64_t replayed_records, replayed_rows;
    uint64_t refused_records, refused_rows; /* over the budget */
    uint64_t corrupt_records;        /* skipped: bad checksum or torn */
    uint64_t max_bytes;
};

/* ---- the pure record format (tested alone) ---- */
uint32_t spool_crc32(const void *data, size_t len);
/* Writes the header for `payload` into hdr[SPOOL_HEADER_SIZE]. */
void spool_header_encode(unsigned char *hdr, const void *payload, uint32_t len, uint32_t rows, uint64_t time_ms);
/* Parses a header: 0 ok (fills len, rows, crc, time), -1 bad magic or length. */
int spool_header_decode(const unsigned char *hdr, uint32_t *len, uint32_t *rows, uint32_t *crc, uint64_t *time_ms);
/* Walks the records in buf[0..size): returns the offset just past the last
 * whole, valid record; *count gets how many there were. */
size_t spool_scan_buffer(const unsigned char *buf, size_t size, uint64_t *count);

/* ---- the journal ---- */
/* Opens (creating) the directory, validates the pending records (a torn
 * tail is cut off), and loads the replay position. NULL on error (err says why). */
struct spool *spool_open(const char *dir, uint64_t max_bytes, char *err, size_t errsz);
void spool_close(struct spool *s);

/* Appends one record and fsyncs it. 0 ok; -2 refused (over the budget,
 * counted); -1 I/O error (err filled). */
int spool_append(struct spool *s, const void *payload, size_t len, uint32_t rows, char *err, size_t errsz);

/* The oldest pending record: 1 and a malloc'd *payload (caller frees), 0
 * when the spool is empty, -1 on I/O error. Peeking twice gives the same record. */
int spool_peek(struct spool *s, char **payload, size_t *len, uint32_t *rows);
/* The record last peeked is done: advance and persist the position. 0 or -1. */
int spool_consume(struct spool *s);

int spool_empty(const struct spool *s);
void spool_get_stats(const struct spool *s, struct spool_stats *out);

#endif
