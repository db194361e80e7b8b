/*
 * metrics.h - the metrics registry: every number /metrics shows that is not
 * read from the snapshot or the process itself, cheap on the hot path.
 *
 * Each worker thread owns a shard and is its only writer, so an update is a
 * relaxed load and store with no lock and no shared cache line; a reader
 * sums the shards. Process-wide figures live in struct metrics itself and
 * are written by their one owner thread: the writer (warm load, events,
 * publishes, whether there is a change feed), the Kafka consumer (a small
 * table of per-partition figures, replay progress, last event time), the
 * admin thread (its connections). Nothing here writes text: the one
 * Prometheus renderer (metrics_text.h) reads a metrics_view.
 */
#ifndef CATALOGD_METRICS_H
#define CATALOGD_METRICS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum metrics_method {
  MM_VALIDATE_VARIANT = 0,
  MM_GET_PRODUCT_DETAILS,
  MM_GET_VARIANTS_BATCH,
  MM_VALIDATE_VARIANTS_BATCH,
  MM_HEALTH_CHECK,
  MM_HEALTH_WATCH,
  MM_REFLECTION,
  MM_UNKNOWN,
  MM_COUNT
};

#define METRICS_CODES   17 /* gRPC status codes 0..16 */
#define METRICS_BUCKETS 16 /* latency buckets, 50 us .. 2.5 s, then +Inf */

/* Upper bounds of the latency buckets in nanoseconds (the last, +Inf, has
 * none). */
extern const uint64_t metrics_bucket_ns[METRICS_BUCKETS - 1];

struct metrics_shard;
struct metrics;

/* Creates metrics with nshards worker shards. Free with metrics_destroy. */
struct metrics *metrics_new(int nshards);
void metrics_destroy(struct metrics *m);

/* Shard i (0 <= i < nshards). */
struct metrics_shard *metrics_shard(struct metrics *m, int i);

/* Records one finished RPC. @locality the shard's worker thread. */
void metrics_rpc_done(struct metrics_shard *s, enum metrics_method method, int code, uint64_t ns);

/* In-flight calls, +1 / -1. @locality the shard's worker thread. */
void metrics_in_flight(struct metrics_shard *s, int delta);

/* Process-wide gauges and counters, named in metrics.c's table. */
enum metrics_counter {
  MC_PG_ROWS = 0,
  MC_PG_ROWS_SKIPPED,
  MC_PG_LOAD_NS,
  MC_PG_ATTEMPTS,
  MC_PG_STALLS,        /* warm load attempts abandoned: no byte for PG_STALL_TIMEOUT_SECONDS */
  MC_PG_PROGRESS_ROWS, /* gauge: rows read by the current (or last) warm load attempt */
  MC_PG_PROGRESS_PPM,  /* gauge: its share of the estimated total, in millionths */
  MC_BAD_REQUESTS,
  MC_ADMIN_CONNECTIONS,  /* gauge: open admin HTTP connections (admin thread) */
  MC_ADMIN_CUT_DEADLINE, /* admin connections closed: request not answered in time */
  MC_ADMIN_CUT_EVICTED,  /* admin connections closed: evicted beyond the limit */
  MC_DLQ_DELIVERED,      /* rejected events the broker took on the dead-letter topic */
  MC_DLQ_FAILED,         /* rejected events that could not be copied there */
  MC_CKPT_WRITES,        /* checkpoints written (checkpoint thread) */
  MC_CKPT_FAILURES,      /* checkpoint writes that failed or were abandoned */
  MC_CKPT_LAST_UNIX_MS,  /* gauge: wall time the last checkpoint was written (0: none) */
  MC_CKPT_LAST_BYTES,    /* gauge: its size */
  MC_CKPT_LAST_NS,       /* gauge: how long writing it took */
  MC_PARKED_NOW,         /* gauge: calls waiting for a fresher snapshot (freshness headers) */
  MC_PARKED_TOTAL,       /* calls that waited (parked at least once) */
  MC_PARK_EXPIRED,       /* parked calls answered UNAVAILABLE after MAX_WAIT_MS */
  MC_PARK_DROPPED,       /* parked calls cancelled or past their deadline while waiting */
  MC_PARK_REJECTED,      /* calls that would have waited, refused: PARK_MAX_CALLS already wait */
  MC_PARK_REPARKED,      /* parked calls handed back, checked again and parked again */
  MC_AUDIT_EQUAL,        /* auditor checks: the snapshot holds what PostgreSQL holds */
  MC_AUDIT_LAGGING,      /* ... PostgreSQL holds a newer version (its event not applied yet) */
  MC_AUDIT_DIVERGENT,    /* ... same version, other content; or gone there past the grace */
  MC_AUDIT_RATIO_PPM,    /* gauge: equal share of the last checks, in millionths */
  MC_AUDIT_WINDOW,       /* gauge: how many checks that share is over (0: none yet) */
  MC_AUDIT_LAG_MS,       /* gauge: age of the oldest lagging row of the last round */
  MC_AUDIT_ERRORS,       /* auditor rounds that failed on PostgreSQL (then backed off) */
  MC_SNAP_XFER_SENT,     /* GET /snapshot transfers sent whole (admin thread) */
  MC_SNAP_XFER_CUT,      /* ... cut by us: past SNAPSHOT_TRANSFER_TIMEOUT_SECONDS or too slow */
  MC_SNAP_XFER_FAILED,   /* ... ended short otherwise (the peer went away, the encoder failed) */
  MC_SNAP_XFER_BUSY,     /* ... refused with 503: every transfer slot taken */
  MC_SNAP_XFER_BYTES,    /* bytes handed to /snapshot responses */
  MC_COUNT
};

/* Adds v to counter c. @locality any thread (atomic add). */
void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t v);
uint64_t metrics_get(struct metrics *m, enum metrics_counter c);

/* Sets gauge c to v. @locality any thread (atomic store). */
void metrics_set(struct metrics *m, enum metrics_counter c, uint64_t v);

enum {
  METRICS_EVENT_APPLIED = 0,
  METRICS_EVENT_STALE,
  METRICS_EVENT_REJECTED,
  METRICS_EVENT_RESULTS
};
#define METRICS_EVENT_KINDS 6 /* the five entity kinds (enum cat_kind), then "unknown" */

/* Counts one change event of entity kind (enum cat_kind, or -1 if unknown)
 * with result METRICS_EVENT_*. @locality any thread. */
void metrics_event(struct metrics *m, int kind, int result);

/* Records one snapshot publish and its duration (the histogram's count is
 * the number of publishes). @locality the writer thread. */
void metrics_observe_publish(struct metrics *m, uint64_t ns);

/* All RPCs finished so far, and RPCs in flight now (sums over shards). */
uint64_t metrics_rpc_total(struct metrics *m);
int64_t metrics_rpc_in_flight(struct metrics *m);

/* Says whether the writer follows a change feed (Kafka): until called, the
 * registry has no change-feed figures to show (the writer has not started).
 * @locality the thread that starts the writer. */
void metrics_change_feed(struct metrics *m, bool enabled);

/* One partition of the change topic as the consumer last saw it. */
struct metrics_partition {
  int32_t id;
  bool known;   /* discovered by the consumer (has a lag); false: only flagged stalled */
  int64_t lag;  /* messages not yet applied (>= 0) */
  bool stalled; /* its position was deleted before it was read, not recovered */
};

/* The consumer's figures, as of one moment. */
struct metrics_feed {
  double replay_progress;                /* 0..1; < 0: no replay yet */
  int64_t last_event_ns;                 /* wall clock of the last applied event; 0: none */
  const struct metrics_partition *parts; /* known ones first, in the consumer's order */
  int nparts;
};

/* Replaces the consumer's figures with f's (copied). @locality the writer
 * thread (takes the registry's feed mutex briefly). */
void metrics_feed_update(struct metrics *m, const struct metrics_feed *f);

/* Every number of the registry, read at one moment (shards summed). */
struct metrics_view {
  uint64_t req[MM_COUNT][METRICS_CODES];
  uint64_t bucket[MM_COUNT][METRICS_BUCKETS]; /* per bucket, not cumulative */
  uint64_t sum_ns[MM_COUNT];
  int64_t in_flight;
  uint64_t events[METRICS_EVENT_KINDS][METRICS_EVENT_RESULTS];
  uint64_t publish_bucket[METRICS_BUCKETS]; /* per bucket, not cumulative */
  uint64_t publish_sum_ns;
  uint64_t counters[MC_COUNT];
  int change_feed;        /* -1: not known yet; 0: none; 1: Kafka */
  double replay_progress; /* as in struct metrics_feed */
  int64_t last_event_ns;
  struct metrics_partition *parts; /* owned by the view */
  int nparts;
};

/* Reads the registry into a new view. Free with metrics_view_free (NULL is
 * a no-op). @locality any thread. */
struct metrics_view *metrics_view_new(struct metrics *m);
void metrics_view_free(struct metrics_view *v);

#endif
