/*
 * audit.h - the consistency auditor: a background thread that samples
 * entities from PostgreSQL and compares each with the published snapshot
 * (equal, lagging: PostgreSQL holds a newer version whose event has not
 * been applied yet, or divergent: same version and other content, or held
 * here but gone there for longer than AUDIT_GRACE_SECONDS). It counts the
 * results in the metrics registry (catalogd_audit_checks_total{result},
 * the rolling consistency ratio) and logs each divergence with its key.
 *
 * It is cheap for PostgreSQL (one connection, indexed range and point
 * reads, AUDIT_ROWS_PER_SECOND) and for serving (an RCU read section only
 * around each lookup, never around a query; it never writes the store).
 */
#ifndef CATALOGD_AUDIT_H
#define CATALOGD_AUDIT_H

#include "config.h"

struct audit;
struct store;
struct metrics;

struct audit_deps {
  const struct config *cfg; /* DATABASE_URL, AUDIT_*, PG_*; borrowed, outlives the auditor */
  struct store *store;
  struct metrics *metrics;
};

/* Starts the auditor thread if cfg has a DATABASE_URL and a rate > 0;
 * otherwise sets *out to NULL and starts nothing. Returns 0 or a negative
 * errno (the URL does not parse: -EINVAL; no thread: the pthread error).
 * @locality the main thread. */
int audit_start(const struct audit_deps *d, struct audit **out);

/* Asks the thread to stop: a query in flight is abandoned within 0.1 s.
 * NULL is a no-op. @locality any thread. */
void audit_request_stop(struct audit *a);

/* Stops (if not yet asked), joins and frees. NULL is a no-op. */
void audit_stop(struct audit *a);

#endif
