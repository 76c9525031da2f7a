/* pg_catalog: the daz_* tables and their columns (type, NOT NULL, default,
 * writable) and which have a unique key, read from the server's catalog.
 * Uses libpq results (the caller runs the queries) and pool's pg_ident_ok. */
#ifndef DAZ_PG_CATALOG_H
#define DAZ_PG_CATALOG_H

#include <libpq-fe.h>

#define PG_MAX_COLUMNS 64 /* columns per table the writer can address (a bit mask) */

struct pg_column {
    char *name;
    unsigned oid;
    int notnull, hasdef, insertable;
};

struct pg_table {
    char *name;
    struct pg_column *cols;
    int ncols;
    int dedupe; /* has a unique key besides the primary key */
    struct pg_table *next;
};

struct pg_catalog {
    struct pg_table *tables;
};

/* The two queries whose results pg_catalog_load reads. */
extern const char PG_CATALOG_COLUMNS[];
extern const char PG_CATALOG_UNIQUE[];

/* Replaces the catalog with the queries' results; 0, or -1 out of memory. */
int pg_catalog_load(struct pg_catalog *cat, PGresult *cols, PGresult *uniq);
struct pg_table *pg_catalog_find(const struct pg_catalog *cat, const char *name);
/* The index of column `name` in t, or -1. */
int pg_catalog_column(const struct pg_table *t, const char *name);
void pg_catalog_free(struct pg_catalog *cat);

#endif
