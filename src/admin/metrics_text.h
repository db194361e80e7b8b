/*
 * metrics_text.h - the one Prometheus renderer: writes the whole /metrics
 * text exposition (format 0.0.4) from the metrics registry, the published
 * snapshot, the conditions and the process's own figures.
 *
 * Every metric name, label, HELP and TYPE line lives here and nowhere else;
 * the threads that own the numbers only set them in the registry
 * (metrics.h), so no module writes text for another.
 */
#ifndef CATALOGD_METRICS_TEXT_H
#define CATALOGD_METRICS_TEXT_H

#include <stdbool.h>

struct metrics;
struct store;
struct conditions;

/* Renders /metrics into a malloc'd string (caller frees). Reads the
 * published snapshot inside a read section, so the caller must be a
 * registered RCU reader. conds may be NULL (no condition shown). serving:
 * what /readyz says now (catalogd_ready), so alerts need no probe of their own.
 * @locality the admin thread. */
char *metrics_text(struct metrics *m, struct store *store, struct conditions *conds, bool serving);

#endif
