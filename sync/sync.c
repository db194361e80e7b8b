/*
 * sync.c - the writer thread (see sync.h): builds the first snapshot from
 * the configured source, tells the server it is ready, then keeps the
 * snapshot fresh until asked to stop.
 *
 * A failed warm load is discarded whole (the transaction is aborted, never
 * published) and retried with capped exponential backoff; health stays
 * NOT_SERVING meanwhile because nothing has been published.
 */
#include "sync.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "demo.h"
#include "log.h"
#include "metrics.h"
#include "pg_load.h"
#include "store.h"
#include "xalloc.h"

struct sync {
  struct sync_deps d;
  pthread_t thread;
  pthread_mutex_t mu; /* guards stop, with cv */
  pthread_cond_t cv;
  bool stop;
  struct pgload *pg;
};

/* Sleeps up to ms unless stop is requested; returns true if stopping. */
static bool wait_or_stop(struct sync *s, long ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&s->mu);
  while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
  }
  bool stop = s->stop;
  pthread_mutex_unlock(&s->mu);
  return stop;
}

static void publish(struct sync *s, struct store_txn *t, const char *source) {
  struct timespec t0, t1;
  size_t changes = store_txn_changes(t);
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t v = store_commit(t);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  uint64_t ns = (uint64_t)((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
  metrics_add(s->d.metrics, MC_SNAPSHOTS_PUBLISHED, 1);
  metrics_add(s->d.metrics, MC_PUBLISH_NS_TOTAL, ns);
  log_info("snapshot published", LF_S("source", source), LF_I("version", v),
           LF_I("changes", changes), LF_D("publish_ms", (double)ns / 1e6));
}

static int load_demo(struct sync *s) {
  struct store_txn *t = store_begin(s->d.store);
  size_t n = demo_load(t);
  log_info("demo catalog built", LF_I("records", n));
  publish(s, t, "demo");
  return 0;
}

/* Warm load with retries; returns 0 once published, -ECANCELED on stop. */
static int load_postgres(struct sync *s) {
  long backoff_ms = 100, cap_ms = s->d.cfg->pg_retry_max_s * 1000L;
  for (int attempt = 1;; attempt++) {
    struct pgload_stats st = {0};
    struct store_txn *t = store_begin(s->d.store);
    metrics_add(s->d.metrics, MC_PG_ATTEMPTS, 1);
    log_info("warm load starting", LF_I("attempt", attempt));
    int rc = pgload_run(s->pg, t, &st);
    if (rc == 0) {
      metrics_add(s->d.metrics, MC_PG_ROWS, st.rows);
      metrics_add(s->d.metrics, MC_PG_ROWS_SKIPPED, st.skipped);
      metrics_add(s->d.metrics, MC_PG_LOAD_NS, (uint64_t)(st.seconds * 1e9));
      log_info("warm load done", LF_I("rows", st.rows), LF_I("skipped", st.skipped),
               LF_D("seconds", st.seconds),
               LF_D("rows_per_s", st.seconds > 0 ? (double)st.rows / st.seconds : 0));
      publish(s, t, "postgres");
      return 0;
    }
    store_abort(t); /* a partial load is never published */
    if (rc == -ECANCELED) return rc;
    log_warn("warm load failed; will retry", LF_I("attempt", attempt),
             LF_S("error", rc == -ECONNREFUSED ? "connect" : "query"), LF_I("retry_ms", backoff_ms));
    if (wait_or_stop(s, backoff_ms)) return -ECANCELED;
    backoff_ms = backoff_ms * 2 > cap_ms ? cap_ms : backoff_ms * 2;
  }
}

static void *sync_main(void *arg) {
  struct sync *s = arg;
  int rc = -EINVAL;
  store_reader_register();
  switch (s->d.cfg->sync_mode) {
  case SYNC_DEMO: rc = load_demo(s); break;
  case SYNC_WARM: rc = load_postgres(s); break;
  case SYNC_REPLAY: log_error("replay mode needs the Kafka consumer", ); break;
  }
  if (rc == 0) s->d.on_ready(s->d.arg);
  wait_or_stop(s, 1L << 30);
  store_reader_unregister();
  return NULL;
}

int sync_start(const struct sync_deps *d, struct sync **out) {
  struct sync *s = xcalloc(1, sizeof *s);
  pthread_condattr_t ca;
  s->d = *d;
  pthread_mutex_init(&s->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (d->cfg->sync_mode == SYNC_WARM) s->pg = pgload_new(d->cfg->database_url);
  int rc = pthread_create(&s->thread, NULL, sync_main, s);
  if (rc != 0) {
    sync_destroy(s);
    return -rc;
  }
  *out = s;
  return 0;
}

void sync_stop(struct sync *s) {
  pthread_mutex_lock(&s->mu);
  s->stop = true;
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->pg) pgload_interrupt(s->pg);
  pthread_join(s->thread, NULL);
}

void sync_destroy(struct sync *s) {
  if (s == NULL) return;
  pgload_destroy(s->pg);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  free(s);
}
