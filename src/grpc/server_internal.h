/*
 * server_internal.h - server.c's worker: one thread polling one completion
 * queue, with the state its unary calls share (arena, reply budget, log
 * rate limit, sampler). Included by server.c only.
 *
 * What streams need from a worker is the struct stream_env at its head,
 * handed to stream.c; health and reflection see only the struct rpc_ctx
 * inside it. Nothing outside server.c reaches a worker through this header.
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
#include "cq_tag.h"
#include "stream.h"

struct server;

struct worker {
  /* The queue, the metrics shard, the server's call counters and the
   * context template (arena, cfg, health, reflection) every handler on
   * this worker gets: filled once by server_start, read-only after. */
  struct stream_env env;
  struct server *srv;
  pthread_t thread;
  struct arena arena; /* env.ctx.arena; reset after every event */
  /* Bytes of packed replies handed to the core and not yet sent: bounds the
   * memory clients that never read can pin (see reply_reserve in server.c).
   * reply_bytes and reply_share are this worker's; *replies_pending (all
   * workers) never exceeds reply_budget (GRPC_MAX_PENDING_REPLY_MB). */
  size_t reply_bytes, reply_share, reply_budget;
  atomic_size_t *replies_pending;
  /* Worker-local state for logging, no lock: the rejected-request rate
   * limit (see log_rejected) and the access-log sampler's xorshift state. */
  time_t reject_last;
  long reject_suppressed;
  uint64_t rng;
};

#endif
