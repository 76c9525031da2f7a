/* pg_log_rules and pg_row_buffer against a catalog built by hand: rules are
 * checked and resolved, an event gives the row's values, the row buffer
 * encodes it as COPY text and hands it over as a batch. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/event.h"
#include "postgres/log_rules.h"
#include "postgres/row_buffer.h"
#include "tap.h"

static struct pg_column cols[] = {
    {"id", 20, 1, 1, 0},          /* identity: not writable */
    {"room", 25, 1, 0, 1},
    {"body", 25, 0, 0, 1},
    {"meta", 3802, 0, 1, 1},
    {"kind", 25, 0, 0, 1},
};
static struct pg_table table = {"daz_chat", cols, 5, 0, NULL};
static struct pg_catalog cat = {&table};

int main(void)
{
    const char *columns[] = {"room", "body", "kind", "meta"};
    const char *fields[] = {"room", "data.msg.text", "=chat", "data.meta"};
    struct pg_logger_rule in = {"chat", "chat.message", "daz_chat", NULL, 0, columns, fields, 4};
    char err[256] = "";
    struct pg_log_rule *r = pg_log_rule_new(&in, err, sizeof err);
    ok(r != NULL, "a good rule is taken: %s", err);
    ok(pg_log_rule_resolve(r, &cat, err, sizeof err) == 0 && r->t == &table, "resolved against the catalog");
    ok(r->mask == ((1u << 1) | (1u << 2) | (1u << 4) | (1u << 3)), "the rule's columns");

    struct event *ev = event_new("chat.message", "lobby", 0, "{\"msg\":{\"text\":\"hi\\tthere\"},\"meta\":{}}", 38);
    json_t *owned[PG_MAX_COLUMNS], *vals[PG_MAX_COLUMNS];
    pg_log_rule_row(r, ev, owned, vals);
    ok(json_is_string(vals[1]) && strcmp(json_string_value(vals[1]), "lobby") == 0, "room from the event");
    ok(json_is_string(vals[2]) && strcmp(json_string_value(vals[2]), "hi\tthere") == 0, "a path into the data");
    ok(json_is_string(vals[4]) && strcmp(json_string_value(vals[4]), "chat") == 0, "a literal");

    struct pg_row_buffer *list = NULL;
    ok(pg_row_buffer_missing(&table, r->mask) == NULL, "nothing required is left out");
    ok(pg_row_buffer_missing(&table, 1u << 2) != NULL && strcmp(pg_row_buffer_missing(&table, 1u << 2), "room") == 0,
       "a NOT NULL column without default left out is named");
    struct pg_row_buffer *b = pg_row_buffer_get(&list, &table, r->mask);
    ok(b && pg_row_buffer_get(&list, &table, r->mask) == b, "one buffer per table and columns");
    char why[256];
    ok(pg_row_buffer_add(b, vals, why, sizeof why) == 0 && b->rows == 1, "row buffered");
    for (int i = 0; i < r->nfields; i++)
        json_decref(owned[i]);
    event_unref(ev);

    json_t *bad[PG_MAX_COLUMNS] = {0};
    bad[1] = json_integer(1);
    bad[2] = json_object();
    ok(pg_row_buffer_add(b, bad, why, sizeof why) == -1 && b->rows == 1, "a bad row is refused, the buffer unchanged");
    is_str(why, "field body: wrong type (object) for the column", "and says why");
    json_decref(bad[1]);
    json_decref(bad[2]);

    struct pg_batch *bt = pg_row_buffer_take(b);
    ok(bt && bt->rows == 1 && b->rows == 0 && b->len == 0, "taken as a batch; the buffer is empty");
    is_str(bt ? bt->cols : NULL, "room,body,meta,kind", "columns in table order");
    is_str(bt ? bt->data : NULL, "lobby\thi\\tthere\t{}\tchat\n", "the row as COPY text");
    pg_batch_free(bt);
    pg_row_buffer_free_all(&list);
    pg_log_rule_free(r);

    const char *badcol[] = {"Body"};
    const char *f1[] = {"room"};
    struct pg_logger_rule in2 = {"x", "chat.*", "daz_chat", NULL, 0, badcol, f1, 1};
    ok(!pg_log_rule_new(&in2, err, sizeof err), "a column name that is not plain is refused");
    is_str(err, "loggers.x.fields: Body is not a plain lower-case column name", "with the reason");
    const char *c3[] = {"body"};
    const char *f3[] = {"data..x"};
    struct pg_logger_rule in3 = {"y", "chat.*", "daz_chat", NULL, 0, c3, f3, 1};
    ok(!pg_log_rule_new(&in3, err, sizeof err) && strstr(err, "is not a field"), "a bad field path is refused");
    struct pg_logger_rule in4 = {"z", "chat.*", "daz_nope", NULL, 0, c3, f1, 1};
    r = pg_log_rule_new(&in4, err, sizeof err);
    ok(r && pg_log_rule_resolve(r, &cat, err, sizeof err) != 0 && strstr(err, "does not exist"),
       "a missing table is found at resolve");
    pg_log_rule_free(r);
    const char *c5[] = {"id"};
    struct pg_logger_rule in5 = {"w", "chat.*", "daz_chat", NULL, 0, c5, f1, 1};
    r = pg_log_rule_new(&in5, err, sizeof err);
    ok(r && pg_log_rule_resolve(r, &cat, err, sizeof err) != 0 && strstr(err, "no writable column id"),
       "a column that cannot be written is refused at resolve");
    pg_log_rule_free(r);
    return tap_done();
}
