/* sql_metrics: the SQL plugin's health and metrics provider — pool
 * connections, statements, the log writer's row counts and the spool's size
 * and age. Uses metrics, sql, pg, pg_writer, spool. */
#ifndef DAZ_SQL_METRICS_H
#define DAZ_SQL_METRICS_H

#include "health/exposition.h"
#include "postgres/sql_plugin.h"

/* What the provider reads: the service and whether startup finished
 * (migrations applied, writer running). */
struct sql_health {
    struct sql *sql;
    const int *ready;
};

/* A metrics_provider_fn; ctx is a struct sql_health. */
void sql_metrics(struct metrics_out *out, void *ctx);

#endif
