/* pg_spool_replay: see spool_replay.h. */
#include "postgres/spool_replay.h"

#include <stdlib.h>
#include <string.h>

char *pg_spool_record_encode(const struct pg_batch *b, size_t *len)
{
    size_t tl = strlen(b->table), cl = strlen(b->cols);
    char *p = malloc(tl + cl + 2 + b->len + 1);
    if (!p)
        return NULL;
    memcpy(p, b->table, tl);
    p[tl] = '\n';
    memcpy(p + tl + 1, b->cols, cl);
    p[tl + 1 + cl] = '\n';
    memcpy(p + tl + cl + 2, b->data, b->len);
    *len = tl + cl + 2 + b->len;
    p[*len] = '\0';
    return p;
}

struct pg_batch *pg_spool_record_decode(const char *p, size_t len, uint32_t rows)
{
    const char *nl1 = memchr(p, '\n', len);
    const char *nl2 = nl1 ? memchr(nl1 + 1, '\n', len - (size_t)(nl1 + 1 - p)) : NULL;
    if (!nl2)
        return NULL;
    struct pg_batch *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->table = strndup(p, (size_t)(nl1 - p));
    b->cols = strndup(nl1 + 1, (size_t)(nl2 - nl1 - 1));
    b->len = len - (size_t)(nl2 + 1 - p);
    b->data = malloc(b->len + 1);
    if (!b->table || !b->cols || !b->data) {
        pg_batch_free(b);
        return NULL;
    }
    memcpy(b->data, nl2 + 1, b->len);
    b->data[b->len] = '\0';
    b->rows = rows;
    b->source = PG_BATCH_FROM_SPOOL;
    return b;
}

int pg_spool_replay_put(struct spool *sp, const struct pg_batch *b, char *err, size_t errsz)
{
    size_t len;
    char *p = pg_spool_record_encode(b, &len);
    if (errsz)
        err[0] = '\0';
    int rc = p ? spool_append(sp, p, len, b->rows, err, errsz) : -1;
    free(p);
    return rc == 0 ? 0 : rc == -2 ? -2 : -1;
}

int pg_spool_replay_next(struct spool *sp, struct pg_batch **out, uint32_t *rows)
{
    char *payload;
    size_t len;
    *out = NULL;
    int rc = spool_peek(sp, &payload, &len, rows);
    if (rc <= 0)
        return rc < 0 ? -1 : 0;
    *out = pg_spool_record_decode(payload, len, *rows);
    free(payload);
    if (!*out) {
        spool_consume(sp);
        return -2;
    }
    return 1;
}
