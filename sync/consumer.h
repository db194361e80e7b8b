/*
 * consumer.h - the Kafka change-feed consumer: reads every partition of the
 * catalog topic (assign, not a group: every replica holds the whole
 * catalog), applies events in batches, one snapshot per batch.
 *
 * It never creates a topic and reports what an operator must know as
 * conditions: "kafka" (broker unreachable, topic missing), "replay" (a replay
 * refused or allowed on a topic it cannot vouch for), "partition_stalled"
 * (events deleted by retention before they were read).
 *
 * Its figures (lag per partition, lost positions, replay progress, last
 * event time) are set in the metrics registry as they change; the admin
 * endpoint renders them from there.
 *
 * @locality the sync thread, except consumer_offsets_json (any thread).
 */
#ifndef CATALOGD_CONSUMER_H
#define CATALOGD_CONSUMER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "store.h"

struct consumer;
struct metrics;
struct conditions;

/* consumer_run's answer when a partition's position was deleted from the
 * log before it was read: events were missed, the caller must re-sync. */
#define CONSUMER_LOST 1

/* Creates the consumer (no network yet). KAFKA_<PROPERTY> variables in env
 * (NULL-terminated "K=V" list) are passed to librdkafka as <property>,
 * except Kubernetes service-link variables (KAFKA_SERVICE_HOST, KAFKA_PORT,
 * KAFKA_PORT_9092_TCP_ADDR, ...: skipped, logged at debug). stop is the
 * writer's stop flag, checked inside every wait (borrowed). conds may be
 * NULL. Returns NULL with a message in err on a bad configuration; err
 * never holds the value of a secret property. */
struct consumer *consumer_new(const struct config *cfg, struct metrics *m, struct conditions *conds,
                              atomic_bool *stop, char **env, char *err, size_t cap);

/* Records every partition's high watermark as the start offsets (the warm
 * load's hand-off point: call before the PostgreSQL transaction starts).
 * Returns 0; -ENOENT if the topic does not exist (logged, condition "kafka";
 * the tail then picks the topic up from its beginning once it exists);
 * -ETIMEDOUT/-EIO if the broker cannot be reached in time (logged with the
 * broker list and librdkafka's error, condition "kafka"). */
int consumer_mark_start(struct consumer *c, int timeout_ms);

/* Warm mode, before the loaded snapshot is published: reads the topic from
 * the beginning up to the start offsets and applies the versioned deletes
 * found there to t. PostgreSQL has no row for a deleted entity, so without
 * this a late re-send of an older upsert could resurrect it (docs/contract/events.md:
 * deletes leave a version marker). Returns 0 or -ECANCELED. */
int consumer_load_deletes(struct consumer *c, struct store_txn *t, atomic_bool *stop);

/* Consumes until *stop or a lost position. replay: waits until the topic
 * exists and its history can be vouched for (consumer_check_history),
 * starts every partition at the beginning, keeps one transaction until the
 * high watermarks seen at start are reached, publishes it (clearing any
 * lost-position flags: it is a whole state), then calls on_ready (may be
 * NULL). A caught-up state with no live entity (empty topic, every event
 * rejected, only deletes) is not published unless ALLOW_EMPTY_CATALOG:
 * logged at error, condition "replay"; reading goes on and it is published
 * once it holds an entity. Otherwise starts at the marked offsets and publishes every
 * SYNC_MAX_BATCH_EVENTS / SYNC_MAX_BATCH_MS. Returns 0 once stopped, or
 * CONSUMER_LOST after a partition's position was deleted by retention
 * (logged, flagged, what was applied before it published; a replay still
 * catching up is discarded). */
int consumer_run(struct consumer *c, struct store *st, bool replay, atomic_bool *stop,
                 void (*on_ready)(void *), void *arg);

/* Can a replay of the topic be published? 0 if every partition starts at
 * offset 0, the topic is compacted (cleanup.policy has compact and not
 * delete), or REPLAY_ALLOW_INCOMPLETE says so (logged loudly, condition
 * "replay" at warn). An empty topic passes here: consumer_run refuses its
 * caught-up state as an empty catalog, like any replay that ends with no
 * live entity. -EAGAIN if not (logged at error with
 * the partitions and their first offsets, condition "replay" at error);
 * -ENOENT/-EIO if the topic is missing or the broker unreachable;
 * -ECANCELED on stop. Needs the partitions known (consumer_run did it). */
int consumer_check_history(struct consumer *c);

/* The state just published was last caught up with the feed at mono_ns
 * (CLOCK_MONOTONIC; e.g. a checkpoint's build time): staleness counts from
 * there until the tail catches up, not from this process's start. */
void consumer_caught_up_at(struct consumer *c, int64_t mono_ns);

/* Forgets every partition (unassigned, dropped) so that the next
 * consumer_mark_start / replay starts afresh; lost-position flags stay. */
void consumer_reset(struct consumer *c);

/* A re-sync published a whole new state: clears the lost-position flags
 * and their condition. */
void consumer_resynced(struct consumer *c);

/* A lost position that cannot be re-synced (replay mode, incomplete
 * history): reads the flagged partitions on from their first offset (newer
 * events still apply) and keeps the flags and the condition, saying why
 * they stay. */
void consumer_resume_lost(struct consumer *c);

/* One partition's position: every event before next is in the state. */
struct consumer_pos {
  int32_t partition;
  int64_t next;
};

/* Start-up from a checkpoint covering pos[0..n): learns the topic's
 * partitions and makes the tail start each at its checkpoint offset, or at
 * the beginning for a partition the checkpoint does not name. Refuses
 * (-ESTALE, why filled) if retention deleted events the checkpoint needs (a
 * partition's first offset above its checkpoint offset, or above 0 for an
 * unnamed one) or if the checkpoint is ahead of the topic (another topic or
 * cluster); -ENOENT if the topic is missing; -EIO if the broker did not
 * answer. On refusal the caller calls consumer_reset. */
int consumer_start_at(struct consumer *c, const struct consumer_pos *pos, int n, char *why,
                      size_t cap);

/* The positions the published snapshot covers, into pos (cap entries).
 * Returns the count, or -EAGAIN when they cannot be vouched for (no
 * partition known, a lost position not re-synced, a replay of an
 * incomplete history served under REPLAY_ALLOW_INCOMPLETE). @locality any
 * thread. */
int consumer_published(struct consumer *c, struct consumer_pos *pos, int cap);
/* Sets the positions a state built now covers on t (every known
 * partition: the next offset to read, or the start offset before any was
 * read). The warm load calls it before publishing. */
void consumer_stamp_positions(struct consumer *c, struct store_txn *t);

/* JSON array of {"partition":p,"next_offset":o}: the offsets the published
 * snapshot covers (malloc'd, caller frees). */
char *consumer_offsets_json(struct consumer *c);

/* Closes without waiting on the network longer than about half of
 * SHUTDOWN_GRACE_SECONDS (dead-letter messages still queued then are
 * counted in a warning and dropped). NULL is a no-op. */
void consumer_destroy(struct consumer *c);

#endif
