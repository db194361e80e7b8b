/*
 * metrics.h - counters and histograms for Prometheus, cheap on the hot path.
 *
 * Each worker thread owns a shard and is its only writer, so an update is a
 * relaxed load and store with no lock and no shared cache line; the admin
 * endpoint sums the shards when scraped. Process-wide figures (snapshot,
 * sync) live in struct metrics itself and are written by their one owner
 * thread.
 */
#ifndef CATALOGD_METRICS_H
#define CATALOGD_METRICS_H

#include <stdatomic.h>
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
#define METRICS_BUCKETS 16 /* latency buckets, 50 us .. 1 s, then +Inf */

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
  MC_COUNT
};

/* Adds v to counter c. @locality any thread (atomic add). */
void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t v);
uint64_t metrics_get(struct metrics *m, enum metrics_counter c);

/* Sets gauge c to v. @locality any thread (atomic store). */
void metrics_set(struct metrics *m, enum metrics_counter c, uint64_t v);

enum { METRICS_EVENT_APPLIED = 0, METRICS_EVENT_STALE, METRICS_EVENT_REJECTED };

/* Counts one change event of entity kind (enum cat_kind, or -1 if unknown)
 * with result METRICS_EVENT_*. @locality any thread. */
void metrics_event(struct metrics *m, int kind, int result);

/* Records one snapshot publish and its duration (the histogram's count is
 * the number of publishes). @locality the writer thread. */
void metrics_observe_publish(struct metrics *m, uint64_t ns);

/* Snapshots published so far. */
uint64_t metrics_publishes(struct metrics *m);

/* Sum over shards of requests for (method, code). */
uint64_t metrics_rpc_count(struct metrics *m, enum metrics_method method, int code);

/* All RPCs finished so far, and RPCs in flight now (sums over shards). */
uint64_t metrics_rpc_total(struct metrics *m);
int64_t metrics_rpc_in_flight(struct metrics *m);

/* Renders the Prometheus text exposition into a malloc'd string (caller
 * frees); extra (may be NULL) is appended verbatim. */
char *metrics_render(struct metrics *m, const char *extra);

/* The method's name as used in labels ("ValidateVariant", ...). */
const char *metrics_method_name(enum metrics_method method);

#endif
