/* cytube_metrics: the rooms' part of /health, /health/ready and /metrics —
 * each room's state, last error and counters. Uses cytube, metrics. */
#ifndef DAZ_CYTUBE_METRICS_H
#define DAZ_CYTUBE_METRICS_H

#include "cytube/rooms.h"
#include "health/exposition.h"

/* A metrics provider; ctx is the struct cytube. */
void cytube_metrics(struct metrics_out *out, void *cy);

#endif
