/* plugin_metrics: the metrics provider for the Lua plugins (state, errors,
 * handler time, status()). Uses host and health/exposition. */
#ifndef DAZ_PLUGIN_METRICS_H
#define DAZ_PLUGIN_METRICS_H

#include "health/exposition.h"
#include "host/host.h"

void plugin_metrics(struct metrics_out *out, void *host);

#endif
