/* pg_log_rules: see log_rules.h. */
#include "postgres/log_rules.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/event_json.h"
#include "postgres/pool.h"

struct pg_log_field {
    int kind; /* FIELD_* */
    char *literal;
    char **path; /* data.a.b -> {"a","b"} */
    int depth;
};
enum { FIELD_ROOM, FIELD_TYPE, FIELD_TAGS, FIELD_PRIORITY, FIELD_DATA, FIELD_LITERAL };

static char *xstrdup(const char *s) { return s ? strdup(s) : NULL; }

void pg_log_rule_free(struct pg_log_rule *r)
{
    free(r->name);
    free(r->pattern);
    free(r->table_name);
    for (int i = 0; i < r->tag_count; i++)
        free(r->tags[i]);
    free(r->tags);
    for (int i = 0; i < r->nfields; i++) {
        free(r->columns[i]);
        free(r->fields[i].literal);
        for (int k = 0; k < r->fields[i].depth; k++)
            free(r->fields[i].path[k]);
        free(r->fields[i].path);
    }
    free(r->columns);
    free(r->fields);
    free(r->colidx);
    free(r);
}

static int parse_field(struct pg_log_field *f, const char *spec)
{
    if (spec[0] == '=') {
        f->kind = FIELD_LITERAL;
        return (f->literal = strdup(spec + 1)) ? 0 : -1;
    }
    if (strcmp(spec, "room") == 0) f->kind = FIELD_ROOM;
    else if (strcmp(spec, "type") == 0) f->kind = FIELD_TYPE;
    else if (strcmp(spec, "tags") == 0) f->kind = FIELD_TAGS;
    else if (strcmp(spec, "priority") == 0) f->kind = FIELD_PRIORITY;
    else if (strcmp(spec, "data") == 0) f->kind = FIELD_DATA;
    else if (strncmp(spec, "data.", 5) == 0) {
        f->kind = FIELD_DATA;
        const char *p = spec + 5;
        int n = 1;
        for (const char *q = p; *q; q++)
            n += *q == '.';
        f->path = calloc((size_t)n, sizeof *f->path);
        if (!f->path)
            return -1;
        while (*p) {
            const char *dot = strchr(p, '.');
            size_t len = dot ? (size_t)(dot - p) : strlen(p);
            if (len == 0)
                return -1;
            if (!(f->path[f->depth++] = strndup(p, len)))
                return -1;
            p += len + (dot ? 1 : 0);
            if (dot && !*p)
                return -1;
        }
    } else {
        return -1;
    }
    return 0;
}

struct pg_log_rule *pg_log_rule_new(const struct pg_logger_rule *in, char *err, size_t errsz)
{
    if (!pg_ident_ok(in->table)) {
        snprintf(err, errsz, "loggers.%s.table: %s is not a plain lower-case table name", in->name, in->table);
        return NULL;
    }
    if (in->field_count > PG_MAX_COLUMNS) {
        snprintf(err, errsz, "loggers.%s.fields: %d fields, at most %d", in->name, in->field_count, PG_MAX_COLUMNS);
        return NULL;
    }
    struct pg_log_rule *r = calloc(1, sizeof *r);
    if (!r)
        goto oom;
    r->name = xstrdup(in->name);
    r->pattern = xstrdup(in->pattern);
    r->table_name = xstrdup(in->table);
    r->tags = calloc((size_t)in->tag_count + 1, sizeof *r->tags);
    r->columns = calloc((size_t)in->field_count + 1, sizeof *r->columns);
    r->fields = calloc((size_t)in->field_count + 1, sizeof *r->fields);
    r->colidx = calloc((size_t)in->field_count + 1, sizeof *r->colidx);
    if (!r->name || !r->pattern || !r->table_name || !r->tags || !r->columns || !r->fields || !r->colidx)
        goto oom;
    for (int i = 0; i < in->tag_count; i++) {
        if (!(r->tags[i] = strdup(in->tags[i])))
            goto oom;
        r->tag_count++;
    }
    for (int i = 0; i < in->field_count; i++) {
        r->nfields++;
        if (!pg_ident_ok(in->columns[i])) {
            snprintf(err, errsz, "loggers.%s.fields: %s is not a plain lower-case column name", in->name,
                     in->columns[i]);
            pg_log_rule_free(r);
            return NULL;
        }
        if (!(r->columns[i] = strdup(in->columns[i])))
            goto oom;
        if (parse_field(&r->fields[i], in->fields[i]) != 0) {
            snprintf(err, errsz,
                     "loggers.%s.fields.%s: %s is not a field (room, type, tags, priority, data, data.<path>, =literal)",
                     in->name, in->columns[i], in->fields[i]);
            pg_log_rule_free(r);
            return NULL;
        }
    }
    return r;
oom:
    if (r)
        pg_log_rule_free(r);
    snprintf(err, errsz, "out of memory");
    return NULL;
}

static json_t *event_field(struct event *ev, json_t *data, const struct pg_log_field *f)
{
    switch (f->kind) {
    case FIELD_ROOM:
        return ev->room ? json_string(ev->room) : NULL;
    case FIELD_TYPE:
        return json_string(ev->type);
    case FIELD_PRIORITY:
        return json_integer(ev->priority);
    case FIELD_LITERAL:
        return json_string(f->literal);
    case FIELD_TAGS: {
        json_t *a = json_array();
        for (int i = 0; a && i < ev->tag_count; i++)
            json_array_append_new(a, json_string(ev->tags[i]));
        return a;
    }
    default: {
        json_t *v = data;
        for (int i = 0; v && i < f->depth; i++)
            v = json_is_object(v) ? json_object_get(v, f->path[i]) : NULL;
        return v ? json_incref(v) : NULL;
    }
    }
}

int pg_log_rule_resolve(struct pg_log_rule *r, const struct pg_catalog *cat, char *err, size_t errsz)
{
    r->t = pg_catalog_find(cat, r->table_name);
    if (!r->t) {
        snprintf(err, errsz, "logger %s: table %s does not exist (add a migration in sql/)", r->name, r->table_name);
        return -1;
    }
    for (int i = 0; i < r->nfields; i++) {
        int c = pg_catalog_column(r->t, r->columns[i]);
        if (c < 0 || c >= PG_MAX_COLUMNS || !r->t->cols[c].insertable) {
            snprintf(err, errsz, "logger %s: table %s has no writable column %s", r->name, r->table_name,
                     r->columns[i]);
            return -1;
        }
        r->colidx[i] = c;
        r->mask |= 1ull << c;
    }
    return 0;
}

void pg_log_rule_row(const struct pg_log_rule *r, struct event *ev, json_t **owned, json_t **vals)
{
    /* Events from the rooms carry their parsed payload; others are parsed here. */
    json_t *data = event_json_value(ev);
    if (data) {
        json_incref(data);
    } else {
        size_t len;
        const char *text = event_json(ev, &len);
        data = text ? json_loadb(text, len, JSON_DECODE_ANY, NULL) : NULL;
    }
    for (int i = 0; i < r->nfields; i++) {
        owned[i] = event_field(ev, data, &r->fields[i]);
        vals[r->colidx[i]] = owned[i];
    }
    json_decref(data);
}
