/* migrate: applies sql/NNN_name.sql files in order at start. Under a
 * session advisory lock (so two instances do not race), each file not yet
 * recorded in daz_schema_migrations runs in its own transaction and is
 * recorded with its SHA-256; an applied file whose checksum changed stops
 * the start. When every file is recorded already, one query (without the
 * lock) is the whole check. Uses pg, sha256, log. */
#ifndef DAZ_MIGRATE_H
#define DAZ_MIGRATE_H

#include "postgres/pool.h"

enum migrate_outcome {
    MIGRATE_OK = 0,
    MIGRATE_RETRY,   /* the connection failed: try again later */
    MIGRATE_FATAL,   /* a changed or failing migration, or unreadable files: do not start */
};

/* done(outcome, message, ctx): message explains a failure (NULL on success). */
typedef void (*migrate_done_fn)(enum migrate_outcome outcome, const char *message, void *ctx);

/* Reads `dir` (files named <digits>_<name>.sql) and applies them through the
 * pool. Calls done exactly once, perhaps before returning; when the pool is
 * closed meanwhile, done gets MIGRATE_RETRY. */
/* Checks before anything connects that `dir` holds at least one migration;
 * returns 0, or -1 with a message naming the folder and the working directory. */
int migrate_check_dir(const char *dir, char *err, size_t errsz);

void migrate_start(struct pg_pool *pool, const char *dir, migrate_done_fn done, void *ctx);

#endif
