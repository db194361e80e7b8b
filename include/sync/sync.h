/*
 * sync.h - the writer thread: loads the catalog (PostgreSQL warm load or
 * Kafka replay), publishes the first snapshot, then keeps it fresh. It
 * knows sources, not demos: the application starts the demo's broker and
 * names it as a replay's Kafka source.
 *
 * It is the only thread that opens store transactions.
 */
#ifndef CATALOGD_SYNC_H
#define CATALOGD_SYNC_H

#include "config.h"

struct sync;
struct store;
struct metrics;
struct conditions;

struct sync_deps {
  /* The sources and knobs (SYNC_WARM: DATABASE_URL, and Kafka if set;
   * otherwise a replay of KAFKA_BOOTSTRAP_SERVERS). Borrowed: must outlive
   * the sync (sync_destroy). */
  const struct config *cfg;
  struct store *store;
  struct metrics *metrics;
  struct conditions *conditions; /* what the writer reports to operators */
  /* Called on the sync thread once the first snapshot is published. */
  void (*on_ready)(void *arg);
  /* Called on the sync thread when it cannot go on (e.g. a permanent
   * PostgreSQL error after the configured attempts, a missing topic in
   * replay mode): the application exits with exit_code after logging why.
   * The sync thread then waits to be stopped. */
  void (*on_fatal)(void *arg, int exit_code);
  void *arg;
};

/* Starts the writer thread. Returns 0 or a negative errno. Once started,
 * says in d->metrics whether it follows a change feed (the writer and its
 * consumer keep their figures there). @locality the main thread. */
int sync_start(const struct sync_deps *d, struct sync **out);

/* Asks the thread to stop (interrupting a PostgreSQL load or a retry wait)
 * and joins it. */
void sync_stop(struct sync *s);

/* Asks the thread to stop without waiting for it: a warm load or replay in
 * progress is abandoned (never published) while the caller drains the gRPC
 * server. sync_stop() then joins. NULL is a no-op. @locality any thread. */
void sync_request_stop(struct sync *s);

struct ckpt_meta;

/* The checkpoint writer's position callback (ckpt_writer_deps.position; arg
 * is the struct sync): the topic and the offsets the published snapshot
 * covers, or -EAGAIN without a change feed or while a lost position is not
 * re-synced. @locality any thread. */
int sync_checkpoint_position(void *arg, struct ckpt_meta *m);

/* JSON array of per-partition next offsets; NULL without Kafka. Caller
 * frees. @locality any thread. */
char *sync_offsets_json(struct sync *s);

/* /readyz's "startup": a JSON object saying what the start-up is doing
 * while it copies a peer's snapshot ({"phase":"peer transfer","peer",
 * "bytes" so far,"seconds"}), NULL otherwise (also for s NULL). Caller
 * frees. @locality any thread. */
char *sync_startup_json(struct sync *s);

/* Frees a stopped sync. NULL is a no-op. */
void sync_destroy(struct sync *s);

#endif
