/*
 * admin.h - the admin HTTP listener (ADMIN_PORT): /metrics (Prometheus
 * text), /healthz (live), /readyz (serving, with the conditions as JSON),
 * /digest (state digest JSON), and with SNAPSHOT_SERVE /snapshot (the
 * published snapshot in the checkpoint format, for a peer's bootstrap).
 *
 * It runs its own thread, an RCU reader, separate from the gRPC workers so
 * a slow scrape never delays an RPC.
 */
#ifndef CATALOGD_ADMIN_H
#define CATALOGD_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct admin;
struct store;
struct metrics;
struct conditions;

struct admin_deps {
  const struct config *cfg;
  struct store *store;
  struct metrics *metrics;
  struct conditions *conditions; /* shown in /readyz and /metrics */
  /* /readyz's status: whether the gRPC health service says SERVING. A
   * callback, so that the admin room needs nothing of the transport's.
   * Called on the admin thread with is_serving_arg. Required. */
  bool (*is_serving)(void *arg);
  void *is_serving_arg;
  /* /digest's "offsets": a JSON array of the change-feed offsets the
   * published snapshot covers, or NULL (no feed); malloc'd, admin frees.
   * Called on the admin thread with the source set by
   * admin_set_offsets_source. May be NULL (never any offsets). */
  char *(*offsets_json)(void *src);
  /* /readyz's "startup": a JSON object saying what a start-up still in
   * progress is doing (a peer transfer: peer, bytes so far), or NULL;
   * malloc'd, admin frees. Same thread and source as offsets_json. May be
   * NULL. */
  char *(*startup_json)(void *src);
  /* /snapshot's body: writes the published snapshot, with the offsets it
   * covers, to sink in pieces (sink returns 0 or a negative errno, which
   * ends the writing and is returned). Returns 0 or a negative errno
   * (-EAGAIN: nothing that can be vouched for now). Called on a transfer
   * thread of admin's (an RCU reader, not inside a read section) with the
   * source set by admin_set_offsets_source and d->store. May be NULL (no
   * /snapshot: 404). The checkpoint room's encoder, wired by the
   * application, so that admin links nothing of it. With sink NULL it
   * writes nothing and only says whether a transfer could start now (0)
   * or not (-EAGAIN), before a 200 is promised. */
  int (*snapshot_stream)(void *src, struct store *store,
                         int (*sink)(void *sink_arg, const void *p, size_t n), void *sink_arg);
};

/* Starts listening on cfg->admin_port (0: no admin listener, *out = NULL).
 * Returns 0 or -EADDRINUSE. @locality the main thread. */
int admin_start(const struct admin_deps *d, struct admin **out);

/* Sets the argument of d->offsets_json (NULL: no offsets yet), e.g. once
 * the writer has started. a may be NULL (no listener). @locality any thread. */
void admin_set_offsets_source(struct admin *a, void *src);

/* Stops the listener and joins its thread. NULL is a no-op. */
void admin_destroy(struct admin *a);

#endif
