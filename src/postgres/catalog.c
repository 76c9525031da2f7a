/* pg_catalog: see catalog.h. */
#include "postgres/catalog.h"

#include <stdlib.h>
#include <string.h>

#include "postgres/pool.h"

const char PG_CATALOG_COLUMNS[] =
    "SELECT c.relname, a.attname, a.atttypid::int, a.attnotnull, a.atthasdef OR a.attidentity <> '', "
    "a.attidentity <> 'a' AND a.attgenerated = '' "
    "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname LIKE 'daz\\_%' "
    "AND a.attnum > 0 AND NOT a.attisdropped ORDER BY c.relname, a.attnum";
const char PG_CATALOG_UNIQUE[] =
    "SELECT DISTINCT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
    "JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE n.nspname = current_schema() AND i.indisunique AND NOT i.indisprimary AND c.relname LIKE 'daz\\_%'";

struct pg_table *pg_catalog_find(const struct pg_catalog *cat, const char *name)
{
    for (struct pg_table *t = cat->tables; t; t = t->next)
        if (strcmp(t->name, name) == 0)
            return t;
    return NULL;
}

int pg_catalog_column(const struct pg_table *t, const char *name)
{
    for (int i = 0; i < t->ncols; i++)
        if (strcmp(t->cols[i].name, name) == 0)
            return i;
    return -1;
}

void pg_catalog_free(struct pg_catalog *cat)
{
    while (cat->tables) {
        struct pg_table *t = cat->tables;
        cat->tables = t->next;
        for (int i = 0; i < t->ncols; i++)
            free(t->cols[i].name);
        free(t->cols);
        free(t->name);
        free(t);
    }
}

int pg_catalog_load(struct pg_catalog *cat, PGresult *cols, PGresult *uniq)
{
    pg_catalog_free(cat);
    struct pg_table *t = NULL, **tail = &cat->tables;
    for (int i = 0; i < PQntuples(cols); i++) {
        const char *rel = PQgetvalue(cols, i, 0);
        if (!t || strcmp(t->name, rel) != 0) {
            t = calloc(1, sizeof *t);
            if (!t || !(t->name = strdup(rel))) {
                free(t);
                return -1;
            }
            *tail = t;
            tail = &t->next;
        }
        struct pg_column *nc = realloc(t->cols, (size_t)(t->ncols + 1) * sizeof *nc);
        if (!nc)
            return -1;
        t->cols = nc;
        struct pg_column *c = &t->cols[t->ncols];
        if (!(c->name = strdup(PQgetvalue(cols, i, 1))))
            return -1;
        t->ncols++;
        c->oid = (unsigned)strtoul(PQgetvalue(cols, i, 2), NULL, 10);
        c->notnull = PQgetvalue(cols, i, 3)[0] == 't';
        c->hasdef = PQgetvalue(cols, i, 4)[0] == 't';
        c->insertable = PQgetvalue(cols, i, 5)[0] == 't' && pg_ident_ok(c->name);
    }
    for (int i = 0; i < PQntuples(uniq); i++) {
        struct pg_table *u = pg_catalog_find(cat, PQgetvalue(uniq, i, 0));
        if (u)
            u->dedupe = 1;
    }
    return 0;
}
