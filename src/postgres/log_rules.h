/* pg_log_rules: logger rules (events matching a pattern become rows of a
 * table, fields mapped to columns): checked from the config, resolved
 * against the catalog, and the row an event gives. Pure (no I/O); uses
 * catalog, event, event_json, jansson and pool's pg_ident_ok. */
#ifndef DAZ_PG_LOG_RULES_H
#define DAZ_PG_LOG_RULES_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/event.h"
#include "postgres/catalog.h"

/* One logger rule: events matching `pattern` (and carrying every tag) become
 * rows of `table`; fields[i] maps column columns[i] to a path in the event:
 * "room", "type", "tags", "priority", "data", "data.a.b", or "=text" (a literal). */
struct pg_logger_rule {
    const char *name;
    const char *pattern;
    const char *table;
    const char *const *tags;
    int tag_count;
    const char *const *columns;
    const char *const *fields;
    int field_count;
};

struct pg_log_field;
struct bus_sub;

struct pg_log_rule {
    char *name, *pattern, *table_name;
    char **tags;
    int tag_count;
    char **columns;
    struct pg_log_field *fields;
    int nfields;
    struct pg_table *t;  /* resolved with the catalog, like: */
    int *colidx;         /* each field's column index in t */
    uint64_t mask;       /* the columns the rule writes */
    struct bus_sub *sub; /* the owner's, for its subscription */
    void *owner;
    struct pg_log_rule *next;
};

/* A copy of `in`, checked; NULL with err filled (bad name, bad field...). */
struct pg_log_rule *pg_log_rule_new(const struct pg_logger_rule *in, char *err, size_t errsz);
void pg_log_rule_free(struct pg_log_rule *r);

/* Finds the rule's table and columns; 0, or -1 with err filled. */
int pg_log_rule_resolve(struct pg_log_rule *r, const struct pg_catalog *cat, char *err, size_t errsz);

/* The row event ev gives a resolved rule: owned[i] is field i's value (a
 * new reference or NULL; the caller drops each of the r->nfields), and
 * vals[r->colidx[i]] the same value, by column. */
void pg_log_rule_row(const struct pg_log_rule *r, struct event *ev, json_t **owned, json_t **vals);

#endif
