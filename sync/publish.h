/*
 * publish.h - the writer's one way to publish a snapshot: commit a store
 * transaction, timed into the publish histogram. Used by the warm load
 * (sync.c) and the Kafka consumer (consumer.c), so both count and time a
 * publish the same way.
 *
 * @locality the writer (sync) thread.
 */
#ifndef CATALOGD_PUBLISH_H
#define CATALOGD_PUBLISH_H

#include <stdint.h>

struct store_txn;
struct metrics;

/* Commits t (store_commit: the snapshot is published, the old one freed,
 * when it returns; t is consumed), records the commit's duration in m's
 * snapshot publish histogram, and returns the new snapshot version. *ns
 * gets the duration in nanoseconds. */
uint64_t publish_commit(struct store_txn *t, struct metrics *m, uint64_t *ns);

#endif
