/* core_metrics: the health and metrics providers of the core — the event
 * bus (queues, drops per type) and the plugins (state, errors, handler time,
 * their own status()). Uses metrics, bus, lua_host. */
#ifndef DAZ_CORE_METRICS_H
#define DAZ_CORE_METRICS_H

#include "core/bus.h"
#include "host/host.h"
#include "health/exposition.h"

void core_metrics_bus(struct metrics_out *out, void *bus);
void core_metrics_plugins(struct metrics_out *out, void *host);

#endif
