/* pg_copy_batch: see copy_batch.h. */
#include "postgres/copy_batch.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres/catalog.h"

int pg_copy_batch_quote_cols(const char *cols, char *out, size_t outsz)
{
    size_t o = 0;
    const char *p = cols;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char name[64];
        if (n == 0 || n >= sizeof name)
            return -1;
        memcpy(name, p, n);
        name[n] = '\0';
        if (!pg_ident_ok(name))
            return -1;
        int w = snprintf(out + o, outsz - o, "%s\"%s\"", o ? "," : "", name);
        if (w < 0 || (size_t)w >= outsz - o)
            return -1;
        o += (size_t)w;
        p += n + (end ? 1 : 0);
    }
    return o ? 0 : -1;
}

/* The staging table is named after a hash of table and columns so it fits
 * in an identifier. */
struct pg_job *pg_copy_batch_job(const struct pg_batch *b, int dedupe, pg_job_fn done, void *ctx)
{
    char cols[PG_MAX_COLUMNS * 68];
    if (!pg_ident_ok(b->table) || pg_copy_batch_quote_cols(b->cols, cols, sizeof cols) != 0)
        return NULL;
    char *data = malloc(b->len + 1);
    if (!data)
        return NULL;
    memcpy(data, b->data, b->len + 1);
    struct pg_job *job;
    char sql[3 * sizeof cols + 512];
    if (dedupe) {
        uint32_t h = 2166136261u;
        for (const char *p = b->table; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        for (const char *p = b->cols; *p; p++)
            h = (h ^ (unsigned char)*p) * 16777619u;
        char stage[40];
        snprintf(stage, sizeof stage, "_daz_stage_%08x", h);
        job = pg_job_new(3, 1, done, ctx);
        if (!job) {
            free(data);
            return NULL;
        }
        snprintf(sql, sizeof sql,
                 "CREATE TEMP TABLE IF NOT EXISTS \"%s\" ON COMMIT DELETE ROWS AS SELECT %s FROM \"%s\" WITH NO DATA",
                 stage, cols, b->table);
        int rc = pg_job_set(job, 0, sql, 0, NULL);
        snprintf(sql, sizeof sql, "COPY \"%s\" (%s) FROM STDIN", stage, cols);
        rc |= pg_job_set(job, 1, sql, 0, NULL);
        snprintf(sql, sizeof sql, "INSERT INTO \"%s\" (%s) SELECT %s FROM \"%s\" ORDER BY ctid ON CONFLICT DO NOTHING",
                 b->table, cols, cols, stage);
        rc |= pg_job_set(job, 2, sql, 0, NULL);
        pg_job_set_copy_take(job, 1, data, b->len);
        if (rc != 0) {
            pg_job_free(job);
            return NULL;
        }
    } else {
        job = pg_job_new(1, 0, done, ctx);
        if (!job) {
            free(data);
            return NULL;
        }
        snprintf(sql, sizeof sql, "COPY \"%s\" (%s) FROM STDIN", b->table, cols);
        pg_job_set_copy_take(job, 0, data, b->len);
        if (pg_job_set(job, 0, sql, 0, NULL) != 0) {
            pg_job_free(job);
            return NULL;
        }
    }
    return job;
}

int pg_copy_batch_transient(const char *s)
{
    return strncmp(s, "08", 2) == 0 || strncmp(s, "40", 2) == 0 || strncmp(s, "53", 2) == 0 ||
           strncmp(s, "57", 2) == 0 || strncmp(s, "58", 2) == 0 || strcmp(s, "55P03") == 0;
}
