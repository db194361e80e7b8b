/*
 * consumer.h - the Kafka change-feed consumer: reads every partition of the
 * catalog topic (assign, not a group: every replica holds the whole
 * catalog), applies events in batches, one snapshot per batch.
 *
 * @locality the sync thread, except consumer_render_metrics (any thread).
 */
#ifndef CATALOGD_CONSUMER_H
#define CATALOGD_CONSUMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "store.h"

struct consumer;
struct metrics;

/* Creates the consumer (no network yet). KAFKA_<PROPERTY> variables in env
 * (NULL-terminated "K=V" list) are passed to librdkafka as <property>.
 * Returns NULL with a message in err on a bad configuration. */
struct consumer *consumer_new(const struct config *cfg, struct metrics *m, char **env, char *err,
                              size_t cap);

/* Records every partition's high watermark as the start offsets (the warm
 * load's hand-off point: call before the PostgreSQL transaction starts).
 * Returns 0, or -ETIMEDOUT/-EIO if the broker cannot be reached in time. */
int consumer_mark_start(struct consumer *c, int timeout_ms);

/* Warm mode, before the loaded snapshot is published: reads the topic from
 * the beginning up to the start offsets and applies the versioned deletes
 * found there to t. PostgreSQL has no row for a deleted entity, so without
 * this a late re-send of an older upsert could resurrect it (events.md:
 * deletes leave a version marker). Returns 0 or -ECANCELED. */
int consumer_load_deletes(struct consumer *c, struct store_txn *t, atomic_bool *stop);

/* Consumes until *stop. replay: start every partition at the beginning, keep
 * one transaction until the high watermarks seen at start are reached,
 * publish, then call on_ready. Otherwise start at the marked offsets and
 * publish every SYNC_MAX_BATCH_EVENTS / SYNC_MAX_BATCH_MS. */
void consumer_run(struct consumer *c, struct store *st, bool replay, atomic_bool *stop,
                  void (*on_ready)(void *), void *arg);

/* Appends Prometheus text for lag per partition and event age to out
 * (malloc'd, caller frees); NULL if nothing yet. */
char *consumer_render_metrics(struct consumer *c);

/* JSON array of {"partition":p,"next_offset":o}: the offsets the published
 * snapshot covers (malloc'd, caller frees). */
char *consumer_offsets_json(struct consumer *c);

/* NULL is a no-op. */
void consumer_destroy(struct consumer *c);

#endif
