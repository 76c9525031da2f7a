/* bus_metrics: the metrics provider for the event bus (queues, drops, requests).
 * Uses bus and the exposition text of health/exposition. */
#ifndef DAZ_BUS_METRICS_H
#define DAZ_BUS_METRICS_H

#include "core/bus.h"
#include "health/exposition.h"

void bus_metrics(struct metrics_out *out, void *bus);

#endif
