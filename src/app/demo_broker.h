/*
 * demo_broker.h - an embedded Kafka-protocol broker (librdkafka's mock
 * cluster) seeded with the demo catalog as change events, so that
 * `make run` exercises the real replay path with no external server, and a
 * newcomer can publish events to it (kcat) and watch answers change.
 *
 * @locality the main thread (start, destroy); the broker runs its own
 * threads.
 */
#ifndef CATALOGD_DEMO_BROKER_H
#define CATALOGD_DEMO_BROKER_H

#include <stddef.h>

struct demo_broker;

/* Starts the broker on 127.0.0.1 (kernel-chosen port), creates topic with
 * `partitions` partitions and produces the demo catalog into it. Writes the
 * bootstrap address into bootstrap (cap bytes). NULL on failure (logged). */
struct demo_broker *demo_broker_start(const char *topic, int partitions, char *bootstrap,
                                      size_t cap);

/* Stops the broker. NULL is a no-op. */
void demo_broker_destroy(struct demo_broker *b);

#endif
