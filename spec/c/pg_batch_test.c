/* pg_batch, pg_spool_replay's record format and pg_copy_batch's pure parts:
 * queues keep order, backlogs merge by table and columns within bounds, a
 * split halves the rows, spool records round-trip, column quoting. */
#include <stdlib.h>
#include <string.h>

#include "postgres/batch.h"
#include "postgres/copy_batch.h"
#include "postgres/spool_replay.h"
#include "tap.h"

static struct pg_batch *mk(const char *table, const char *cols, const char *data, uint32_t rows)
{
    struct pg_batch *b = calloc(1, sizeof *b);
    b->table = strdup(table);
    b->cols = strdup(cols);
    b->data = strdup(data);
    b->len = strlen(data);
    b->rows = rows;
    return b;
}

int main(void)
{
    struct pg_batch_queue q = {0};
    pg_batch_push(&q, mk("daz_a", "x", "1\n", 1));
    pg_batch_push(&q, mk("daz_a", "x", "2\n3\n", 2));
    pg_batch_push(&q, mk("daz_b", "x", "4\n", 1));
    pg_batch_push(&q, mk("daz_a", "x", "5\n", 1));
    ok(q.rows == 5, "queue counts rows");
    struct pg_batch *m = pg_batch_pop_merged(&q);
    ok(m && m->rows == 3 && strcmp(m->data, "1\n2\n3\n") == 0 && m->len == 6, "same table and columns merge in order");
    ok(q.rows == 2 && strcmp(q.head->table, "daz_b") == 0, "merging stops at another table");
    pg_batch_free(m);
    m = pg_batch_pop_merged(&q);
    ok(m && m->rows == 1 && strcmp(m->table, "daz_b") == 0, "the other table alone");
    pg_batch_free(m);
    pg_batch_push_front(&q, mk("daz_c", "y", "0\n", 1));
    m = pg_batch_pop(&q);
    ok(m && strcmp(m->table, "daz_c") == 0, "push_front goes first");
    pg_batch_free(m);
    pg_batch_free(pg_batch_pop(&q));
    ok(!q.head && !q.tail && q.rows == 0 && !pg_batch_pop(&q), "queue empty");

    struct pg_batch *b = mk("daz_a", "x,y", "1\ta\n2\tb\n3\tc\n", 3);
    struct pg_batch *second = pg_batch_split(b);
    ok(second && b->rows == 1 && second->rows == 2, "split: 1 and 2 rows");
    is_str(b->data, "1\ta\n", "first half");
    is_str(second->data, "2\tb\n3\tc\n", "second half");
    ok(b->source == PG_BATCH_FROM_SPLIT && second->source == PG_BATCH_FROM_SPLIT, "both marked split");

    size_t len;
    char *rec = pg_spool_record_encode(second, &len);
    is_str(rec, "daz_a\nx,y\n2\tb\n3\tc\n", "spool record");
    struct pg_batch *back = pg_spool_record_decode(rec, len, 2);
    ok(back && strcmp(back->table, "daz_a") == 0 && strcmp(back->cols, "x,y") == 0 && back->rows == 2 &&
           back->len == second->len && strcmp(back->data, second->data) == 0 && back->source == PG_BATCH_FROM_SPOOL,
       "spool record round trip");
    ok(!pg_spool_record_decode("daz_a only", 10, 1), "a record without its lines is unreadable");
    free(rec);
    pg_batch_free(back);
    pg_batch_free(b);
    pg_batch_free(second);

    char cols[256];
    ok(pg_copy_batch_quote_cols("a,b_c", cols, sizeof cols) == 0, "quote columns");
    is_str(cols, "\"a\",\"b_c\"", "quoted column list");
    ok(pg_copy_batch_quote_cols("a,B", cols, sizeof cols) != 0, "a name that is not plain is refused");
    ok(pg_copy_batch_quote_cols("a,,b", cols, sizeof cols) != 0, "an empty name is refused");
    ok(pg_copy_batch_quote_cols("abc", cols, 4) != 0, "too small an output is refused");
    ok(pg_copy_batch_transient("08006") && pg_copy_batch_transient("40001") && pg_copy_batch_transient("55P03"),
       "connection, serialization and lock errors are transient");
    ok(!pg_copy_batch_transient("23505") && !pg_copy_batch_transient("22P02"), "data errors are not");
    return tap_done();
}
