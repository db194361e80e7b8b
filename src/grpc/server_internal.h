/*
 * server_internal.h - the server's shared internals: completion-queue tags,
 * workers, and the counters that decide when shutdown may tear queues down.
 * Used by server.c, stream.c, health.c and reflection.c only.
 */
#ifndef CATALOGD_SERVER_INTERNAL_H
#define CATALOGD_SERVER_INTERNAL_H

#include <grpc/grpc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "arena.h"
#include "config.h"
#include "metrics.h"
#include "rpc.h"

/* Every completion-queue tag is one of these; the worker calls fn. */
struct tag {
  void (*fn)(struct tag *t, bool ok);
};

struct server;

struct worker {
  struct server *srv;
  int idx;
  pthread_t thread;
  grpc_completion_queue *cq;
  struct arena arena;
  struct metrics_shard *metrics;
  /* The server's count of call contexts (posted requests and live calls):
   * worker queues may only be shut down once it is zero. */
  atomic_long *outstanding;
  /* Set when shutdown begins: stop posting new call requests. */
  atomic_bool *stopping;
  /* Worker-local state for logging: rejected-request rate limit, and the
   * access-log sampler's xorshift state. */
  /* Bytes of packed replies handed to the core and not yet sent: bounds the
   * memory clients that never read can pin (see reply_reserve in server.c).
   * reply_bytes and reply_share are this worker's; *replies_pending (all
   * workers) never exceeds reply_budget (GRPC_MAX_PENDING_REPLY_MB). */
  size_t reply_bytes, reply_share, reply_budget;
  atomic_size_t *replies_pending;
  time_t reject_last;
  long reject_suppressed;
  uint64_t rng;
};

/* Context handed to stream handlers by the server (see stream.h). */
struct rpc_ctx server__ctx(struct worker *w);

#endif
