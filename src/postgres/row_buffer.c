/* pg_row_buffer: see row_buffer.h. */
#include "postgres/row_buffer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "postgres/copy_text.h"

struct pg_row_buffer *pg_row_buffer_get(struct pg_row_buffer **list, const struct pg_table *t, uint64_t mask)
{
    struct pg_row_buffer **pp = list;
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->t == t && (*pp)->mask == mask)
            return *pp;
    struct pg_row_buffer *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->t = t;
    b->mask = mask;
    *pp = b;
    return b;
}

const char *pg_row_buffer_missing(const struct pg_table *t, uint64_t mask)
{
    for (int i = 0; i < t->ncols && i < PG_MAX_COLUMNS; i++) {
        const struct pg_column *c = &t->cols[i];
        if (!(mask & (1ull << i)) && c->insertable && c->notnull && !c->hasdef)
            return c->name;
    }
    return NULL;
}

int pg_row_buffer_add(struct pg_row_buffer *b, json_t *const *vals, char *why, size_t whysz)
{
    const struct pg_table *t = b->t;
    size_t mark = b->len;
    int first = 1;
    for (int i = 0; i < t->ncols && i < PG_MAX_COLUMNS; i++) {
        if (!(b->mask & (1ull << i)))
            continue;
        if (!first && pg_copy_buf_add(&b->data, &b->len, &b->cap, "\t", 1) != 0)
            goto oom;
        first = 0;
        const struct pg_column *c = &t->cols[i];
        const char *err =
            pg_copy_encode_value(&b->data, &b->len, &b->cap, c->name, c->oid, c->notnull, vals[i], why, whysz);
        if (err) {
            if (err != why)
                snprintf(why, whysz, "%s", err);
            b->len = mark;
            if (b->data)
                b->data[mark] = '\0';
            return -1;
        }
    }
    if (pg_copy_buf_add(&b->data, &b->len, &b->cap, "\n", 1) != 0)
        goto oom;
    b->rows++;
    return 0;
oom:
    b->len = mark;
    if (b->data)
        b->data[mark] = '\0';
    return -2;
}

/* "a,b,c": the names of the columns in the mask. */
static char *column_list(const struct pg_table *t, uint64_t mask)
{
    char *s = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < t->ncols && i < PG_MAX_COLUMNS; i++) {
        if (!(mask & (1ull << i)))
            continue;
        if ((len && pg_copy_buf_add(&s, &len, &cap, ",", 1) != 0) ||
            pg_copy_buf_add(&s, &len, &cap, t->cols[i].name, strlen(t->cols[i].name)) != 0) {
            free(s);
            return NULL;
        }
    }
    return s;
}

struct pg_batch *pg_row_buffer_take(struct pg_row_buffer *b)
{
    struct pg_batch *bt = calloc(1, sizeof *bt);
    char *cols = column_list(b->t, b->mask);
    char *table = strdup(b->t->name);
    if (!bt || !cols || !table) {
        free(bt);
        free(cols);
        free(table);
        bt = NULL;
    } else {
        bt->table = table;
        bt->cols = cols;
        bt->data = b->data;
        bt->len = b->len;
        bt->rows = b->rows;
        bt->source = PG_BATCH_FROM_MEMORY;
        b->data = NULL;
    }
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->rows = 0;
    return bt;
}

void pg_row_buffer_free_all(struct pg_row_buffer **list)
{
    while (*list) {
        struct pg_row_buffer *b = *list;
        *list = b->next;
        free(b->data);
        free(b);
    }
}
