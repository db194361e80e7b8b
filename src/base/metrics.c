/*
 * metrics.c - the metrics registry (see metrics.h): per-worker RPC shards,
 * process-wide counters, and the change feed's small table.
 *
 * Shards are cache-line aligned so two workers never write the same line.
 * The feed table is replaced whole by the consumer (once per poll at most)
 * and copied out by a scrape, under its own mutex: neither is on the
 * request path.
 */
#include "metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

const uint64_t metrics_bucket_ns[METRICS_BUCKETS - 1] = {
    50000,    100000,   250000,    500000,    1000000,   2000000,    5000000,   10000000,
    25000000, 50000000, 100000000, 250000000, 500000000, 1000000000, 2500000000};

struct metrics_shard {
  _Alignas(64) _Atomic uint64_t req[MM_COUNT][METRICS_CODES];
  _Atomic uint64_t bucket[MM_COUNT][METRICS_BUCKETS];
  _Atomic uint64_t sum_ns[MM_COUNT];
  _Atomic int64_t in_flight;
};

struct metrics {
  int nshards;
  struct metrics_shard *shards;
  _Atomic uint64_t counters[MC_COUNT];
  _Atomic uint64_t events[METRICS_EVENT_KINDS][METRICS_EVENT_RESULTS];
  _Atomic uint64_t publish_bucket[METRICS_BUCKETS];
  _Atomic uint64_t publish_sum_ns;
  _Atomic int change_feed; /* -1 until the writer says */
  pthread_mutex_t feed_mu; /* guards the fields below */
  double replay_progress;
  int64_t last_event_ns;
  struct metrics_partition *parts;
  int nparts, parts_cap;
};

void metrics_event(struct metrics *m, int kind, int result) {
  if (kind < 0 || kind >= METRICS_EVENT_KINDS - 1) kind = METRICS_EVENT_KINDS - 1;
  atomic_fetch_add_explicit(&m->events[kind][result], 1, memory_order_relaxed);
}

struct metrics *metrics_new(int nshards) {
  struct metrics *m = xcalloc(1, sizeof *m);
  m->nshards = nshards;
  m->shards = aligned_alloc(64, sizeof(struct metrics_shard) * (size_t)nshards);
  if (m->shards == NULL) abort();
  memset(m->shards, 0, sizeof(struct metrics_shard) * (size_t)nshards);
  atomic_init(&m->change_feed, -1);
  pthread_mutex_init(&m->feed_mu, NULL);
  m->replay_progress = -1;
  return m;
}

void metrics_destroy(struct metrics *m) {
  if (m == NULL) return;
  pthread_mutex_destroy(&m->feed_mu);
  free(m->parts);
  free(m->shards);
  free(m);
}

struct metrics_shard *metrics_shard(struct metrics *m, int i) {
  return &m->shards[i];
}

/* Single-writer increment: no read-modify-write instruction needed. */
static inline void bump(_Atomic uint64_t *x, uint64_t v) {
  atomic_store_explicit(x, atomic_load_explicit(x, memory_order_relaxed) + v, memory_order_relaxed);
}

void metrics_rpc_done(struct metrics_shard *s, enum metrics_method method, int code, uint64_t ns) {
  int b = 0;
  while (b < METRICS_BUCKETS - 1 && ns > metrics_bucket_ns[b])
    b++;
  if (code < 0 || code >= METRICS_CODES) code = 2; /* UNKNOWN */
  bump(&s->req[method][code], 1);
  bump(&s->bucket[method][b], 1);
  bump(&s->sum_ns[method], ns);
}

void metrics_observe_publish(struct metrics *m, uint64_t ns) {
  int b = 0;
  while (b < METRICS_BUCKETS - 1 && ns > metrics_bucket_ns[b])
    b++;
  atomic_fetch_add_explicit(&m->publish_bucket[b], 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&m->publish_sum_ns, ns, memory_order_relaxed);
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

/* Sum over shards of requests for (method, code). */
static uint64_t rpc_count(struct metrics *m, enum metrics_method method, int code) {
  uint64_t n = 0;
  for (int i = 0; i < m->nshards; i++)
    n += atomic_load_explicit(&m->shards[i].req[method][code], memory_order_relaxed);
  return n;
}

uint64_t metrics_rpc_total(struct metrics *m) {
  uint64_t n = 0;
  for (int k = 0; k < MM_COUNT; k++)
    for (int c = 0; c < METRICS_CODES; c++)
      n += rpc_count(m, k, c);
  return n;
}

int64_t metrics_rpc_in_flight(struct metrics *m) {
  int64_t n = 0;
  for (int i = 0; i < m->nshards; i++)
    n += atomic_load_explicit(&m->shards[i].in_flight, memory_order_relaxed);
  return n;
}

void metrics_change_feed(struct metrics *m, bool enabled) {
  atomic_store(&m->change_feed, enabled ? 1 : 0);
}

void metrics_feed_update(struct metrics *m, const struct metrics_feed *f) {
  pthread_mutex_lock(&m->feed_mu);
  if (f->nparts > m->parts_cap) {
    m->parts_cap = f->nparts;
    m->parts = xrealloc(m->parts, (size_t)m->parts_cap * sizeof *m->parts);
  }
  if (f->nparts > 0) memcpy(m->parts, f->parts, (size_t)f->nparts * sizeof *m->parts);
  m->nparts = f->nparts;
  m->replay_progress = f->replay_progress;
  m->last_event_ns = f->last_event_ns;
  pthread_mutex_unlock(&m->feed_mu);
}

/* The RPC shards summed into v: requests first, then each method's buckets
 * and sum (a call is counted in that order too). */
static void view_rpcs(struct metrics *m, struct metrics_view *v) {
  for (int k = 0; k < MM_COUNT; k++)
    for (int c = 0; c < METRICS_CODES; c++)
      v->req[k][c] = rpc_count(m, k, c);
  for (int k = 0; k < MM_COUNT; k++) {
    for (int b = 0; b < METRICS_BUCKETS; b++)
      for (int i = 0; i < m->nshards; i++)
        v->bucket[k][b] += atomic_load_explicit(&m->shards[i].bucket[k][b], memory_order_relaxed);
    for (int i = 0; i < m->nshards; i++)
      v->sum_ns[k] += atomic_load_explicit(&m->shards[i].sum_ns[k], memory_order_relaxed);
  }
  v->in_flight = metrics_rpc_in_flight(m);
}

/* The consumer's table copied into v (v owns the copy). */
static void view_feed(struct metrics *m, struct metrics_view *v) {
  v->change_feed = atomic_load(&m->change_feed);
  pthread_mutex_lock(&m->feed_mu);
  v->replay_progress = m->replay_progress;
  v->last_event_ns = m->last_event_ns;
  v->nparts = m->nparts;
  if (m->nparts > 0) {
    v->parts = xmalloc((size_t)m->nparts * sizeof *v->parts);
    memcpy(v->parts, m->parts, (size_t)m->nparts * sizeof *v->parts);
  }
  pthread_mutex_unlock(&m->feed_mu);
}

struct metrics_view *metrics_view_new(struct metrics *m) {
  struct metrics_view *v = xcalloc(1, sizeof *v);
  view_rpcs(m, v);
  for (int k = 0; k < METRICS_EVENT_KINDS; k++)
    for (int r = 0; r < METRICS_EVENT_RESULTS; r++)
      v->events[k][r] = atomic_load(&m->events[k][r]);
  for (int b = 0; b < METRICS_BUCKETS; b++)
    v->publish_bucket[b] = atomic_load(&m->publish_bucket[b]);
  v->publish_sum_ns = atomic_load(&m->publish_sum_ns);
  for (int c = 0; c < MC_COUNT; c++)
    v->counters[c] = metrics_get(m, c);
  view_feed(m, v);
  return v;
}

void metrics_view_free(struct metrics_view *v) {
  if (v == NULL) return;
  free(v->parts);
  free(v);
}
