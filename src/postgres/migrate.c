/* migrate: see migrate.h. The run is one query when every file is already
 * applied (the usual start); otherwise a chain of jobs on one reserved
 * connection: lock + bookkeeping table + what is applied, then one
 * transaction per new file, then unlock. */
#include "postgres/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "postgres/sha256.h"

#define LOCK_KEY "7235010001" /* pg_advisory_lock key shared by every Daz instance */

struct mfile {
    char *name;   /* "001_core.sql" */
    char *path;
    char *text;
    char checksum[65];
    char applied[65]; /* recorded checksum, "" if new */
};

struct migration_run {
    struct pg_pool *pool;
    char *dir;
    struct mfile *files;
    int nfiles;
    int next;          /* the file being applied */
    int applied_now;
    uint64_t session;
    migrate_done_fn done;
    void *ctx;
};

static void run_free(struct migration_run *r)
{
    for (int i = 0; i < r->nfiles; i++) {
        free(r->files[i].name);
        free(r->files[i].path);
        free(r->files[i].text);
    }
    free(r->files);
    free(r->dir);
    free(r);
}

/* Reports the outcome (once) and frees the run. */
static void finish(struct migration_run *r, enum migrate_outcome outcome, const char *msg)
{
    if (r->session)
        pg_session_release(r->pool, r->session);
    r->session = 0;
    if (r->done)
        r->done(outcome, msg, r->ctx);
    run_free(r);
}

static int cmp_files(const void *a, const void *b)
{
    const struct mfile *x = a, *y = b;
    long nx = strtol(x->name, NULL, 10), ny = strtol(y->name, NULL, 10);
    if (nx != ny)
        return nx < ny ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int valid_name(const char *n)
{
    const char *p = n;
    if (*p < '0' || *p > '9')
        return 0;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p++ != '_')
        return 0;
    size_t len = strlen(p);
    if (len <= 4 || strcmp(p + len - 4, ".sql") != 0)
        return 0;
    for (const char *q = p; q < p + len - 4; q++)
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') || *q == '_' ||
              *q == '-'))
            return 0;
    return 1;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    char chunk[8192];
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + len, chunk, n);
        len += n;
    }
    fclose(f);
    if (!buf)
        buf = calloc(1, 1);
    else
        buf[len] = '\0';
    if (buf && strlen(buf) != len) { /* a NUL byte: not SQL text */
        free(buf);
        return NULL;
    }
    return buf;
}

int migrate_check_dir(const char *dir, char *err, size_t errsz)
{
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, "?");
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errsz, "migrations_dir %s: cannot open: %s (working directory %s)", dir, strerror(errno), cwd);
        return -1;
    }
    int found = 0;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL)
        found = valid_name(e->d_name);
    closedir(d);
    if (!found) {
        snprintf(err, errsz, "migrations_dir %s: no migrations (NNN_name.sql) in it (working directory %s)", dir, cwd);
        return -1;
    }
    return 0;
}

static int load_files(struct migration_run *r, char *err, size_t errsz)
{
    DIR *d = opendir(r->dir);
    if (!d) {
        if (errno == ENOENT)
            return 0; /* no migrations at all */
        snprintf(err, errsz, "cannot open the migrations directory %s: %s", r->dir, strerror(errno));
        return -1;
    }
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !strstr(e->d_name, ".sql"))
            continue;
        if (!valid_name(e->d_name)) {
            log_warn("migrate", "%s/%s: ignored (migrations are named NNN_name.sql)", r->dir, e->d_name);
            continue;
        }
        struct mfile *nf = realloc(r->files, (size_t)(r->nfiles + 1) * sizeof *nf);
        if (!nf) {
            rc = -1;
            snprintf(err, errsz, "out of memory");
            break;
        }
        r->files = nf;
        struct mfile *f = &r->files[r->nfiles];
        memset(f, 0, sizeof *f);
        r->nfiles++;
        f->name = strdup(e->d_name);
        size_t plen = strlen(r->dir) + strlen(e->d_name) + 2;
        f->path = malloc(plen);
        if (f->path)
            snprintf(f->path, plen, "%s/%s", r->dir, e->d_name);
        f->text = f->path ? read_all(f->path) : NULL;
        if (!f->name || !f->text) {
            snprintf(err, errsz, "cannot read migration %s/%s (unreadable, or not text)", r->dir, e->d_name);
            rc = -1;
            break;
        }
    }
    closedir(d);
    if (rc == 0 && r->nfiles > 1)
        qsort(r->files, (size_t)r->nfiles, sizeof *r->files, cmp_files);
    for (int i = 1; rc == 0 && i < r->nfiles; i++) {
        if (strtol(r->files[i].name, NULL, 10) == strtol(r->files[i - 1].name, NULL, 10)) {
            snprintf(err, errsz, "migrations %s and %s have the same number", r->files[i - 1].name, r->files[i].name);
            rc = -1;
        }
    }
    return rc;
}

static enum migrate_outcome outcome_of(const struct pg_job *job)
{
    return job->error.connection ? MIGRATE_RETRY : MIGRATE_FATAL;
}

static void apply_next(struct migration_run *r);

static void on_unlocked(struct pg_job *job, void *ctx)
{
    struct migration_run *r = ctx;
    if (job->error.message) {
        /* The lock goes with the session anyway. */
        log_debug("migrate", "unlock failed: %s", job->error.message);
    }
    if (r->applied_now)
        log_info("migrate", "%d migration(s) applied, %d already in place", r->applied_now,
                 r->nfiles - r->applied_now);
    else
        log_info("migrate", "schema up to date (%d migration(s))", r->nfiles);
    finish(r, MIGRATE_OK, NULL);
}

static void on_applied(struct pg_job *job, void *ctx)
{
    struct migration_run *r = ctx;
    struct mfile *f = &r->files[r->next];
    if (job->error.message) {
        char msg[1024];
        snprintf(msg, sizeof msg, "migration %s failed: %s %s (nothing of it was applied)", f->path,
                 job->error.sqlstate, job->error.message);
        finish(r, outcome_of(job), msg);
        return;
    }
    log_info("migrate", "applied %s", f->name);
    r->applied_now++;
    r->next++;
    apply_next(r);
}

static void apply_next(struct migration_run *r)
{
    while (r->next < r->nfiles && r->files[r->next].applied[0])
        r->next++;
    struct pg_job *job;
    if (r->next >= r->nfiles) {
        job = pg_job_new(1, 0, on_unlocked, r);
        if (!job || pg_job_set(job, 0, "SELECT pg_advisory_unlock(" LOCK_KEY ")", 0, NULL) != 0) {
            pg_job_free(job);
            finish(r, MIGRATE_OK, NULL);
            return;
        }
        uint64_t s = r->session;
        r->session = 0; /* the unlock job ends the reservation */
        pg_submit_on(r->pool, s, job);
        return;
    }
    struct mfile *f = &r->files[r->next];
    job = pg_job_new(2, 1, on_applied, r);
    const char *params[2] = {f->name, f->checksum};
    if (!job || pg_job_set(job, 0, f->text, 0, NULL) != 0 ||
        pg_job_set(job, 1, "INSERT INTO daz_schema_migrations (name, checksum) VALUES ($1, $2)", 2, params) != 0) {
        pg_job_free(job);
        finish(r, MIGRATE_FATAL, "out of memory");
        return;
    }
    job->stmts[0].simple = 1;
    job->keep_connection = 1;
    pg_submit_on(r->pool, r->session, job);
}

/* Takes in what daz_schema_migrations records. Returns the number of files
 * not applied yet, or -1 (msg filled) when an applied file has changed. */
static int note_applied(struct migration_run *r, PGresult *applied, char *msg, size_t msgsz)
{
    int missing = 0;
    for (int i = 0; i < r->nfiles; i++) {
        r->files[i].applied[0] = '\0';
        for (int k = 0; applied && k < PQntuples(applied); k++) {
            if (strcmp(PQgetvalue(applied, k, 0), r->files[i].name) == 0)
                snprintf(r->files[i].applied, sizeof r->files[i].applied, "%s", PQgetvalue(applied, k, 1));
        }
        if (!r->files[i].applied[0]) {
            missing++;
        } else if (strcmp(r->files[i].applied, r->files[i].checksum) != 0) {
            snprintf(msg, msgsz,
                     "migration %s was changed after it was applied (recorded sha256 %.12s..., file now %.12s...): "
                     "restore the file and put the change in a new migration",
                     r->files[i].path, r->files[i].applied, r->files[i].checksum);
            return -1;
        }
    }
    return missing;
}

static void on_inspected(struct pg_job *job, void *ctx)
{
    struct migration_run *r = ctx;
    if (job->error.message) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot inspect the migrations table: %s %s", job->error.sqlstate,
                 job->error.message);
        finish(r, outcome_of(job), msg);
        return;
    }
    r->session = job->session;
    char msg[1024];
    if (note_applied(r, job->results[2], msg, sizeof msg) < 0) {
        finish(r, MIGRATE_FATAL, msg);
        return;
    }
    apply_next(r);
}

/* Under the lock (so two instances do not race): the bookkeeping table, what
 * is applied now, then apply_next. */
static void inspect_locked(struct migration_run *r)
{
    struct pg_job *job = pg_job_new(3, 0, on_inspected, r);
    if (!job) {
        finish(r, MIGRATE_FATAL, "out of memory");
        return;
    }
    int rc = pg_job_set(job, 0, "SELECT pg_advisory_lock(" LOCK_KEY ")", 0, NULL);
    rc |= pg_job_set(job, 1,
                     "CREATE TABLE IF NOT EXISTS daz_schema_migrations (name text PRIMARY KEY, "
                     "checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
                     0, NULL);
    rc |= pg_job_set(job, 2, "SELECT name, checksum FROM daz_schema_migrations", 0, NULL);
    if (rc != 0) {
        pg_job_free(job);
        finish(r, MIGRATE_FATAL, "out of memory");
        return;
    }
    job->keep_connection = 1;
    pg_submit(r->pool, job);
}

/* The check without the lock. A file and its row in daz_schema_migrations
 * are committed together, so when every file has its row (with the same
 * checksum) the schema is complete whatever another instance is doing, and
 * nothing needs the lock. Anything else (a new file, no table yet, an error)
 * goes the locked way, which decides and reports as before. */
static void on_checked(struct pg_job *job, void *ctx)
{
    struct migration_run *r = ctx;
    if (job->error.message && job->error.connection) {
        char msg[1024];
        snprintf(msg, sizeof msg, "cannot inspect the migrations table: %s %s", job->error.sqlstate,
                 job->error.message);
        finish(r, MIGRATE_RETRY, msg);
        return;
    }
    if (!job->error.message) {
        char msg[1024];
        int missing = note_applied(r, job->results[0], msg, sizeof msg);
        if (missing < 0) {
            finish(r, MIGRATE_FATAL, msg);
            return;
        }
        if (missing == 0) {
            log_info("migrate", "schema up to date (%d migration(s))", r->nfiles);
            finish(r, MIGRATE_OK, NULL);
            return;
        }
    }
    inspect_locked(r);
}

void migrate_start(struct pg_pool *pool, const char *dir, migrate_done_fn done, void *ctx)
{
    struct migration_run *r = calloc(1, sizeof *r);
    char err[512];
    if (!r || !(r->dir = strdup(dir))) {
        free(r);
        done(MIGRATE_FATAL, "out of memory", ctx);
        return;
    }
    r->pool = pool;
    r->done = done;
    r->ctx = ctx;
    if (load_files(r, err, sizeof err) != 0) {
        finish(r, MIGRATE_FATAL, err);
        return;
    }
    for (int i = 0; i < r->nfiles; i++)
        sha256_hex(r->files[i].text, strlen(r->files[i].text), r->files[i].checksum);
    struct pg_job *job = pg_job_new(1, 0, on_checked, r);
    if (!job || pg_job_set(job, 0, "SELECT name, checksum FROM daz_schema_migrations", 0, NULL) != 0) {
        pg_job_free(job);
        finish(r, MIGRATE_FATAL, "out of memory");
        return;
    }
    pg_submit(pool, job);
}
