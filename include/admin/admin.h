/*
 * admin.h - the admin HTTP listener (ADMIN_PORT): /metrics (Prometheus
 * text), /healthz (live), /readyz (serving, with the conditions as JSON),
 * /digest (state digest JSON).
 *
 * It runs its own thread, an RCU reader, separate from the gRPC workers so
 * a slow scrape never delays an RPC.
 */
#ifndef CATALOGD_ADMIN_H
#define CATALOGD_ADMIN_H

#include "config.h"

struct admin;
struct store;
struct metrics;
struct health;
struct sync;
struct conditions;

struct admin_deps {
  const struct config *cfg;
  struct store *store;
  struct metrics *metrics;
  struct health *health;
  struct conditions *conditions; /* shown in /readyz and /metrics */
  struct sync *sync;             /* may be NULL until started; read each request */
};

/* Starts listening on cfg->admin_port (0: no admin listener, *out = NULL).
 * Returns 0 or -EADDRINUSE. @locality the main thread. */
int admin_start(const struct admin_deps *d, struct admin **out);

/* Sets the sync whose consumer metrics and offsets are reported. */
void admin_set_sync(struct admin *a, struct sync *s);

/* Stops the listener and joins its thread. NULL is a no-op. */
void admin_destroy(struct admin *a);

#endif
