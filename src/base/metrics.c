/*
 * metrics.c - per-worker RPC metrics and process counters (see metrics.h).
 *
 * Shards are cache-line aligned so two workers never write the same line.
 */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xalloc.h"

/* Upper bounds in nanoseconds; the last bucket is +Inf. */
static const uint64_t bucket_ns[METRICS_BUCKETS - 1] = {
    50000,    100000,   250000,    500000,    1000000,   2000000,    5000000,   10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000};

static const char *const method_names[MM_COUNT] = {
    "ValidateVariant", "GetProductDetails", "GetVariantsBatch", "ValidateVariantsBatch",
    "Health/Check",    "Health/Watch",      "ServerReflection", "unknown"};

static const char *const code_names[METRICS_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

struct metrics_shard {
  _Alignas(64) _Atomic uint64_t req[MM_COUNT][METRICS_CODES];
  _Atomic uint64_t bucket[MM_COUNT][METRICS_BUCKETS];
  _Atomic uint64_t sum_ns[MM_COUNT];
  _Atomic int64_t in_flight;
};

#define EVENT_KINDS 6 /* the five entity kinds, then "unknown" */

struct metrics {
  int nshards;
  struct metrics_shard *shards;
  _Atomic uint64_t counters[MC_COUNT];
  _Atomic uint64_t events[EVENT_KINDS][3];
  _Atomic uint64_t publish_bucket[METRICS_BUCKETS];
  _Atomic uint64_t publish_sum_ns;
};

static const char *const event_kinds[EVENT_KINDS] = {"variant", "product",    "brand",
                                                     "tag",     "collection", "unknown"};
static const char *const event_results[3] = {"applied", "stale", "rejected"};

void metrics_event(struct metrics *m, int kind, int result) {
  if (kind < 0 || kind >= EVENT_KINDS - 1) kind = EVENT_KINDS - 1;
  atomic_fetch_add_explicit(&m->events[kind][result], 1, memory_order_relaxed);
}

struct metrics *metrics_new(int nshards) {
  struct metrics *m = xcalloc(1, sizeof *m);
  m->nshards = nshards;
  m->shards = aligned_alloc(64, sizeof(struct metrics_shard) * (size_t)nshards);
  if (m->shards == NULL) abort();
  memset(m->shards, 0, sizeof(struct metrics_shard) * (size_t)nshards);
  return m;
}

void metrics_destroy(struct metrics *m) {
  if (m == NULL) return;
  free(m->shards);
  free(m);
}

struct metrics_shard *metrics_shard(struct metrics *m, int i) {
  return &m->shards[i];
}

const char *metrics_method_name(enum metrics_method method) { return method_names[method]; }

/* Single-writer increment: no read-modify-write instruction needed. */
static inline void bump(_Atomic uint64_t *x, uint64_t v) {
  atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + v, memory_order_relaxed);
}

void metrics_rpc_done(struct metrics_shard *s, enum metrics_method method, int code, uint64_t ns) {
  int b = 0;
  while (b < METRICS_BUCKETS - 1 && ns > bucket_ns[b])
    b++;
  if (code < 0 || code >= METRICS_CODES) code = 2; /* UNKNOWN */
  bump(&s->req[method][code], 1);
  bump(&s->bucket[method][b], 1);
  bump(&s->sum_ns[method], ns);
}

void metrics_observe_publish(struct metrics *m, uint64_t ns) {
  int b = 0;
  while (b < METRICS_BUCKETS - 1 && ns > bucket_ns[b])
    b++;
  atomic_fetch_add_explicit(&m->publish_bucket[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->publish_sum_ns, ns, memory_order_relaxed);
}

uint64_t metrics_publishes(struct metrics *m) {
  uint64_t n = 0;
  for (int k = 0; k < METRICS_BUCKETS; k++)
    n += atomic_load(&m->publish_bucket[k]);
  return n;
}

void metrics_in_flight(struct metrics_shard *s, int delta) {
  atomic_store_explicit(&s->in_flight,
                        atomic_load_explicit(&s->in_flight, memory_order_relaxed) + delta,
                        memory_order_relaxed);
}

void metrics_add(struct metrics *m, enum metrics_counter c, uint64_t v) {
  atomic_fetch_add_explicit(&m->counters[c], v, memory_order_relaxed);
}

void metrics_set(struct metrics *m, enum metrics_counter c, uint64_t v) {
  atomic_store_explicit(&m->counters[c], v, memory_order_relaxed);
}

uint64_t metrics_get(struct metrics *m, enum metrics_counter c) {
  return atomic_load_explicit(&m->counters[c], memory_order_relaxed);
}

uint64_t metrics_rpc_count(struct metrics *m, enum metrics_method method, int code) {
  uint64_t n = 0;
  for (int i = 0; i < m->nshards; i++)
    n += atomic_load_explicit(&m->shards[i].req[method][code], memory_order_relaxed);
  return n;
}

uint64_t metrics_rpc_total(struct metrics *m) {
  uint64_t n = 0;
  for (int k = 0; k < MM_COUNT; k++)
    for (int c = 0; c < METRICS_CODES; c++)
      n += metrics_rpc_count(m, k, c);
  return n;
}

int64_t metrics_rpc_in_flight(struct metrics *m) {
  int64_t n = 0;
  for (int i = 0; i < m->nshards; i++)
    n += atomic_load_explicit(&m->shards[i].in_flight, memory_order_relaxed);
  return n;
}

static void render_requests(struct metrics *m, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_rpc_requests_total RPCs finished, by method and gRPC code.\n"
               "# TYPE catalogd_rpc_requests_total counter\n");
  for (int k = 0; k < MM_COUNT; k++)
    for (int c = 0; c < METRICS_CODES; c++) {
      uint64_t n = metrics_rpc_count(m, k, c);
      if (n || c == 0)
        sb_printf(b, "catalogd_rpc_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                  method_names[k], code_names[c], (unsigned long long)n);
    }
}

static void render_histogram(struct metrics *m, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_rpc_duration_seconds RPC handling time, from the call's arrival "
               "to its reply being queued.\n# TYPE catalogd_rpc_duration_seconds histogram\n");
  for (int k = 0; k < MM_COUNT; k++) {
    uint64_t cum = 0, sum = 0;
    for (int bk = 0; bk < METRICS_BUCKETS; bk++) {
      for (int i = 0; i < m->nshards; i++)
        cum += atomic_load_explicit(&m->shards[i].bucket[k][bk], memory_order_relaxed);
      if (bk < METRICS_BUCKETS - 1)
        sb_printf(b, "catalogd_rpc_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n",
                  method_names[k], (double)bucket_ns[bk] / 1e9, (unsigned long long)cum);
      else
        sb_printf(b, "catalogd_rpc_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n",
                  method_names[k], (unsigned long long)cum);
    }
    for (int i = 0; i < m->nshards; i++)
      sum += atomic_load_explicit(&m->shards[i].sum_ns[k], memory_order_relaxed);
    sb_printf(b, "catalogd_rpc_duration_seconds_sum{method=\"%s\"} %.9f\n", method_names[k],
              (double)sum / 1e9);
    sb_printf(b, "catalogd_rpc_duration_seconds_count{method=\"%s\"} %llu\n", method_names[k],
              (unsigned long long)cum);
  }
}

/* The warm load's progress and stalls (its totals are rendered by admin.c). */
static void render_warm_load(struct metrics *m, struct strbuf *b) {
  sb_printf(b,
            "# HELP catalogd_warm_load_progress_ratio Share of the estimated rows (pg_class."
            "reltuples) the current warm load has read; 1 once loaded.\n"
            "# TYPE catalogd_warm_load_progress_ratio gauge\n"
            "catalogd_warm_load_progress_ratio %.6f\n"
            "# HELP catalogd_warm_load_progress_rows Rows read by the current warm load attempt.\n"
            "# TYPE catalogd_warm_load_progress_rows gauge\n"
            "catalogd_warm_load_progress_rows %llu\n"
            "# HELP catalogd_warm_load_stalls_total Warm load attempts abandoned because "
            "PostgreSQL sent nothing for PG_STALL_TIMEOUT_SECONDS.\n"
            "# TYPE catalogd_warm_load_stalls_total counter\n"
            "catalogd_warm_load_stalls_total %llu\n",
            (double)metrics_get(m, MC_PG_PROGRESS_PPM) / 1e6,
            (unsigned long long)metrics_get(m, MC_PG_PROGRESS_ROWS),
            (unsigned long long)metrics_get(m, MC_PG_STALLS));
}

char *metrics_render(struct metrics *m, const char *extra) {
  struct strbuf b = {0};
  render_requests(m, &b);
  render_histogram(m, &b);
  int64_t inflight = metrics_rpc_in_flight(m);
  sb_printf(&b,
            "# HELP catalogd_rpc_in_flight RPCs being handled now.\n"
            "# TYPE catalogd_rpc_in_flight gauge\ncatalogd_rpc_in_flight %lld\n",
            (long long)inflight);
  sb_printf(&b, "# HELP catalogd_events_total Change events, by entity type and result.\n"
                "# TYPE catalogd_events_total counter\n");
  for (int k = 0; k < EVENT_KINDS; k++)
    for (int r = 0; r < 3; r++)
      sb_printf(&b, "catalogd_events_total{type=\"%s\",result=\"%s\"} %llu\n", event_kinds[k],
                event_results[r], (unsigned long long)atomic_load(&m->events[k][r]));
  sb_printf(&b, "# HELP catalogd_snapshot_publish_duration_seconds Time to publish a snapshot "
                "(swap and grace period).\n"
                "# TYPE catalogd_snapshot_publish_duration_seconds histogram\n");
  uint64_t cum = 0;
  for (int k = 0; k < METRICS_BUCKETS; k++) {
    cum += atomic_load(&m->publish_bucket[k]);
    if (k < METRICS_BUCKETS - 1)
      sb_printf(&b, "catalogd_snapshot_publish_duration_seconds_bucket{le=\"%g\"} %llu\n",
                (double)bucket_ns[k] / 1e9, (unsigned long long)cum);
    else
      sb_printf(&b, "catalogd_snapshot_publish_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
  }
  sb_printf(&b,
            "catalogd_snapshot_publish_duration_seconds_sum %.9f\n"
            "catalogd_snapshot_publish_duration_seconds_count %llu\n",
            (double)atomic_load(&m->publish_sum_ns) / 1e9, (unsigned long long)cum);
  render_warm_load(m, &b);
  if (extra != NULL) sb_printf(&b, "%s", extra);
  return sb_take(&b);
}
