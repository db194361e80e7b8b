/*
 * sync.c - the writer thread (see sync.h): builds the first snapshot from
 * the configured source, tells the server it is ready, then keeps the
 * snapshot fresh from Kafka until asked to stop.
 *
 *   replay  Kafka from the beginning, no PostgreSQL (also the demo: the
 *           application starts its broker and names it as the source)
 *   warm    record Kafka high watermarks -> PostgreSQL COPY -> tail Kafka
 *           from the recorded offsets (see docs/ARCHITECTURE.md for why no
 *           change is lost at the hand-off)
 *
 *   with CHECKPOINT_DIR: the newest usable checkpoint first (its topic is
 *           the configured one, retention kept every event after its
 *           offsets, it decodes whole), then the tail from its offsets;
 *           then with BOOTSTRAP_PEERS: a ready peer's GET /snapshot (the
 *           same checks, streamed), then the tail from its offsets;
 *           otherwise the mode's own start
 *
 * A failed warm load is discarded whole (the transaction is aborted, never
 * published) and retried with capped exponential backoff; health stays
 * NOT_SERVING meanwhile because nothing has been published.
 */
#include "sync.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "clock.h"
#include "conditions.h"
#include "consumer.h"
#include "log.h"
#include "metrics.h"
#include "pg_load.h"
#include "pg_redact.h"
#include "prefault.h"
#include "publish.h"
#include "store.h"
#include "strbuf.h"
#include "xalloc.h"

extern char **environ;

struct sync {
  struct sync_deps d;
  const struct config *cfg; /* the caller's (sync_deps.cfg), outlives us */
  pthread_t thread;
  pthread_mutex_t mu; /* with cv, for interruptible waits */
  pthread_cond_t cv;
  atomic_bool stop;
  struct pgload *pg;
  struct consumer *consumer;
  bool ready;       /* the first snapshot was published (writer thread only) */
  double started_s; /* monotonic, when the thread started (start-up timing) */
  /* A peer transfer in progress, for /readyz (sync_startup_json): written
   * by the writer thread, read by the admin thread, under progress_mu. */
  pthread_mutex_t progress_mu;
  char progress_peer[320]; /* "" while no transfer runs */
  uint64_t progress_bytes;
  double progress_t0, progress_logged; /* monotonic s: the transfer's start, its last log */
  struct prefault *pf;                 /* during a bulk build (writer thread only) */
};

/* Sleeps up to ms unless stop is requested; returns true if stopping. */
static bool wait_or_stop(struct sync *s, long ms) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += ms / 1000;
  until.tv_nsec += (ms % 1000) * 1000000L;
  if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
  pthread_mutex_lock(&s->mu);
  while (!atomic_load(&s->stop) && pthread_cond_timedwait(&s->cv, &s->mu, &until) == 0) {
  }
  pthread_mutex_unlock(&s->mu);
  return atomic_load(&s->stop);
}

/* A whole-catalog build (warm load, replay) allocates ~0.5 GB on this
 * thread, whose malloc arena (not the main one) grows by mprotect()ing one
 * more page at a time: 171k mprotect calls at 1M variants. With a top pad as
 * large as an arena heap (64 MiB) each new heap is made writable whole when
 * it is created: 16k calls.
 *
 * A replay also decompresses ~1 MB record batches on librdkafka's broker
 * thread, one malloc per batch, freed here when the batch's last message is.
 * Setting M_TOP_PAD turns off glibc's adaptive mmap threshold, so those
 * buffers stayed above the fixed 128 KiB one: each was a fresh mmap, faulted
 * in (huge pages zeroed) while zstd wrote it, and munmap()ed again. A 1M
 * replay spent 14 % of its CPU there and the broker thread's CPU per event
 * halved without it (docs/performance.md, "Replay"). During a build the
 * threshold is an arena heap's half, so the buffers are recycled in the
 * broker thread's arena (the 64 MiB pad keeps it from being trimmed).
 *
 * All of this is set for the build only, then back to glibc's documented
 * defaults (the adaptive threshold stays off, as it was before), and the
 * build's freed scratch is given back (give_back, once the state serves:
 * trimming every arena takes ~0.1 s at 1M variants).
 *
 * During the build a prefaulter (prefault.h) zeroes the pages just ahead of
 * the records' allocations on another CPU. */
#define BULK_TOP_PAD         (64 << 20)
#define GLIBC_TOP_PAD        (128 * 1024)
#define BULK_MMAP_THRESHOLD  (32 << 20) /* glibc's maximum: HEAP_MAX_SIZE / 2 */
#define GLIBC_MMAP_THRESHOLD (128 * 1024)

/* The pad only sizes the heaps created after it is set: the heap this
 * thread's arena already has still grows a page at a time, an mprotect
 * each (8k calls in a 1M checkpoint load), and the prefaulter cannot run
 * ahead of memory that is not writable yet. Two allocations of nearly the
 * mmap threshold (the most one can take from a heap), freed at once, make
 * the heap writable to its end (64 MiB); the pad keeps free() from
 * shrinking it again. */
static void grow_heap_ahead(void) {
  char *volatile a = malloc(BULK_MMAP_THRESHOLD - (1 << 20));
  char *volatile b = malloc(BULK_MMAP_THRESHOLD - (1 << 20));
  if (a != NULL) a[0] = 0; /* used: not optimised away */
  if (b != NULL) b[0] = 0;
  free(b);
  free(a);
}

static void bulk_build(struct sync *s, bool starting) {
  mallopt(M_TOP_PAD, starting ? BULK_TOP_PAD : GLIBC_TOP_PAD);
  mallopt(M_MMAP_THRESHOLD, starting ? BULK_MMAP_THRESHOLD : GLIBC_MMAP_THRESHOLD);
  if (starting) grow_heap_ahead();
  if (starting && s->pf == NULL) {
    s->pf = prefault_start();
    store_set_prefault(s->d.store, s->pf);
  } else if (!starting && s->pf != NULL) {
    store_set_prefault(s->d.store, NULL);
    size_t n = prefault_stop(s->pf);
    s->pf = NULL;
    log_debug("bulk build done", LF_D("prefaulted_mb", (double)n / (1 << 20)));
  }
}

/* Gives the freed scratch of a bulk build back to the system. */
static void give_back(void) { malloc_trim(0); }

/* on_ready of a replay: the bulk build is over. The first one makes the
 * server ready; a later one ends a re-sync. */
static void replay_ready(void *arg) {
  struct sync *s = arg;
  bulk_build(s, false);
  if (s->ready) {
    log_info("re-sync done", LF_S("source", "kafka"));
    give_back();
    return;
  }
  s->ready = true;
  log_info("startup source", LF_S("source", "replay"),
           LF_D("seconds", clock_mono_s() - s->started_s));
  s->d.on_ready(s->d.arg);
  give_back();
}

/* Publishes t (a whole warm load), logged with its source. */
static void publish(struct sync *s, struct store_txn *t, const char *source) {
  size_t changes = store_txn_changes(t);
  uint64_t ns, v = publish_commit(t, s->d.metrics, &ns);
  log_info("snapshot published", LF_S("source", source), LF_I("version", v),
           LF_I("changes", changes), LF_D("publish_ms", (double)ns / 1e6));
}

/* Says why a warm load attempt failed, in the log and in the "postgres"
 * condition (/readyz). permanent counts the permanent failures in a row,
 * including this one; max is where the caller gives up. */
static void report_pg_failure(struct sync *s, const struct pgload_stats *st, int attempt,
                              int permanent, int max, long retry_ms) {
  char cond[600];
  const char *reason = st->reason;
  if (st->sqlstate[0])
    snprintf(cond, sizeof cond, "%s (SQLSTATE %s)", reason, st->sqlstate);
  else
    snprintf(cond, sizeof cond, "%s", reason);
  if (!st->permanent) {
    log_warn("warm load failed; will retry", LF_I("attempt", attempt), LF_S("error", reason),
             LF_S("sqlstate", st->sqlstate), LF_I("retry_ms", retry_ms));
    conditions_set(s->d.conditions, "postgres", "warn", cond);
    return;
  }
  log_error(permanent < max ? "warm load failed: postgres refuses it; will retry"
                            : "warm load failed: postgres refuses it; giving up",
            LF_I("attempt", attempt), LF_S("error", reason), LF_S("sqlstate", st->sqlstate),
            LF_I("permanent_failures", permanent), LF_I("max_permanent_failures", max),
            LF_I("retry_ms", permanent < max ? retry_ms : 0));
  conditions_set(s->d.conditions, "postgres", "error", cond);
}

/* Says that a warm load succeeded but holds no live entity (empty tables:
 * a schema-only or wrong-but-existing database, every row skipped), in the
 * log and in the "postgres" condition at error. Not a permanent failure:
 * the tables may be filled later. The database is named as
 * pg_redact_conninfo shows it (no secret). */
static void report_empty_load(struct sync *s, const struct pgload_stats *st, int attempt,
                              long retry_ms) {
  char db[512], cond[800];
  pg_redact_conninfo(s->cfg->database_url, db, sizeof db);
  log_error("warm load found an empty catalog; will retry", LF_S("database", db),
            LF_I("attempt", attempt), LF_I("rows", st->rows), LF_I("skipped", st->skipped),
            LF_I("retry_ms", retry_ms),
            LF_S("fix", "check that DATABASE_URL names the catalog database and its tables are "
                        "filled; set ALLOW_EMPTY_CATALOG=true if an empty catalog is expected"));
  snprintf(cond, sizeof cond,
           "warm load of %.400s found an empty catalog (%zu rows read, %zu skipped): not serving "
           "it; check DATABASE_URL (set ALLOW_EMPTY_CATALOG=true if an empty catalog is "
           "expected)",
           db, st->rows, st->skipped);
  conditions_set(s->d.conditions, "postgres", "error", cond);
}

/* Warm load with retries; returns 0 once published, -ECANCELED on stop or
 * after giving up. Transient failures (PostgreSQL down, a stall, a dropped
 * connection) are retried for ever with capped exponential backoff;
 * permanent ones (pgload_stats.permanent) too, but after
 * PG_PERMANENT_ERROR_ATTEMPTS of them in a row before the first publish the
 * process exits with 3 (on_fatal), so Kubernetes shows the failure instead
 * of an unready pod. A load that holds no live entity is not published
 * (unless ALLOW_EMPTY_CATALOG): retried like a transient failure, never
 * counted as permanent (the tables may be filled later). */
static int load_postgres(struct sync *s) {
  long backoff_ms = 100, cap_ms = s->cfg->pg_retry_max_s * 1000L;
  /* Exit only before the first publish: a replica re-syncing after a lost
   * position keeps serving its (flagged) snapshot and keeps trying; every
   * replica exiting at once over rotated credentials would be an outage. */
  int permanent = 0, max = s->ready ? INT_MAX : s->cfg->pg_permanent_attempts;
  struct pgload_opts o = {.stall_timeout_s = s->cfg->pg_stall_timeout_s,
                          .progress_interval_s = s->cfg->pg_progress_interval_s,
                          .metrics = s->d.metrics};
  for (int attempt = 1;; attempt++) {
    struct pgload_stats st = {0};
    struct store_txn *t = store_begin(s->d.store);
    int64_t t0 = clock_mono_ns(); /* about when the load's REPEATABLE READ snapshot is taken */
    metrics_add(s->d.metrics, MC_PG_ATTEMPTS, 1);
    log_info("warm load starting", LF_I("attempt", attempt));
    int rc = pgload_run(s->pg, &o, t, &st);
    if (rc == 0 && s->consumer) rc = consumer_load_deletes(s->consumer, t, &s->stop);
    bool empty = rc == 0 && store_txn_live(t) == 0 && !s->cfg->allow_empty_catalog;
    if (rc == 0 && !empty) {
      metrics_add(s->d.metrics, MC_PG_ROWS, st.rows);
      metrics_add(s->d.metrics, MC_PG_ROWS_SKIPPED, st.skipped);
      metrics_add(s->d.metrics, MC_PG_LOAD_NS, (uint64_t)(st.seconds * 1e9));
      log_info("warm load done", LF_I("rows", st.rows), LF_I("skipped", st.skipped),
               LF_D("seconds", st.seconds),
               LF_D("rows_per_s", st.seconds > 0 ? (double)st.rows / st.seconds : 0));
      if (s->consumer) consumer_stamp_positions(s->consumer, t); /* the hand-off offsets */
      publish(s, t, "postgres");
      /* As fresh as the load; the tail says when it has caught up. Without
       * a feed this is the staleness origin for ever. */
      store_set_stale_since(s->d.store, t0);
      conditions_set(s->d.conditions, "postgres", NULL, NULL);
      return 0;
    }
    store_abort(t); /* a partial load is never published */
    if (rc == -ECANCELED) return rc;
    permanent = st.permanent ? permanent + 1 : 0; /* an empty load is never permanent */
    if (empty)
      report_empty_load(s, &st, attempt, backoff_ms);
    else
      report_pg_failure(s, &st, attempt, permanent, max, backoff_ms);
    if (permanent >= max) {
      if (s->d.on_fatal) s->d.on_fatal(s->d.arg, 3);
      return -ECANCELED;
    }
    if (wait_or_stop(s, backoff_ms)) return -ECANCELED;
    backoff_ms = backoff_ms * 2 > cap_ms ? cap_ms : backoff_ms * 2;
  }
}

/* Records the Kafka hand-off offsets, retrying until the broker answers
 * (consumer_mark_start names the brokers and librdkafka's error, and sets
 * the "kafka" condition). A missing topic does not hold the warm load: the
 * catalog is served, the condition says there is no change feed, and the
 * tail picks the topic up from its beginning if it appears. */
static int mark_kafka(struct sync *s) {
  for (int attempt = 1;; attempt++) {
    int rc = consumer_mark_start(s->consumer, 5000);
    if (rc == 0 || rc == -ENOENT) return 0;
    log_debug("kafka hand-off retrying", LF_I("attempt", attempt));
    if (wait_or_stop(s, 1000)) return -ECANCELED;
  }
}

/* Warm mode after a lost position: the start sequence again (marks, a load
 * into an empty-state transaction so that deletes missed in the gap are not
 * kept, publish), the old snapshot serving until the swap. Returns 0 once
 * published, else load_postgres's error (-ECANCELED on stop). */
static int resync_warm(struct sync *s) {
  double t0 = clock_mono_s();
  log_warn("re-sync starting", LF_S("source", "postgres"),
           LF_S("why", "kafka position lost: events were missed"));
  consumer_reset(s->consumer);
  if (mark_kafka(s) != 0) return -ECANCELED;
  store_rebuild_next(s->d.store);
  bulk_build(s, true);
  int rc = load_postgres(s);
  bulk_build(s, false);
  give_back();
  if (rc != 0) return rc;
  consumer_resynced(s->consumer);
  log_info("re-sync done", LF_S("source", "postgres"), LF_D("seconds", clock_mono_s() - t0));
  return 0;
}

/* Tails the feed after a warm load; re-syncs from PostgreSQL whenever a
 * position is lost. */
static void follow_warm(struct sync *s) {
  while (consumer_run(s->consumer, s->d.store, false, &s->stop, NULL, NULL) == CONSUMER_LOST) {
    if (wait_or_stop(s, 500) || resync_warm(s) != 0) return;
  }
}

/* Replay mode: replays, then tails. After a lost position: a replay into
 * an empty-state transaction if the topic's history can be vouched for
 * (compacted, or the operator allowed an incomplete one), else the lost
 * partitions read on from their first offset and stay flagged. A position
 * lost before the first publish restarts the replay (which then checks the
 * history again). replay_first false: the state is already published (a
 * checkpoint), the first run only tails. */
static void follow_replay(struct sync *s, bool replay_first) {
  if (replay_first) bulk_build(s, true);
  int rc = consumer_run(s->consumer, s->d.store, replay_first, &s->stop, replay_ready, s);
  while (rc == CONSUMER_LOST && !wait_or_stop(s, 500)) {
    bool replay = !s->ready;
    if (s->ready) {
      int h = consumer_check_history(s->consumer);
      if (h == -ECANCELED) return;
      replay = h == 0;
      if (replay) {
        log_warn("re-sync starting", LF_S("source", "kafka"),
                 LF_S("why", "kafka position lost: events were missed"));
        store_rebuild_next(s->d.store);
      } else {
        consumer_resume_lost(s->consumer);
      }
    }
    if (replay) {
      consumer_reset(s->consumer);
      bulk_build(s, true);
    }
    rc = consumer_run(s->consumer, s->d.store, replay, &s->stop, replay_ready, s);
  }
}

/* ---- Start-up from a checkpoint ---- */

/* Waits up to ms, in short slices: true once s is stopping or *moot is set
 * (nothing signals s->cv for the latter). */
static bool wait_or_moot(struct sync *s, const atomic_bool *moot, long ms) {
  for (long waited = 0; waited < ms; waited += 100) {
    if (atomic_load(moot)) return true;
    if (wait_or_stop(s, ms - waited < 100 ? ms - waited : 100)) return true;
  }
  return atomic_load(moot);
}

/* ckpt_accept_fn: the checkpoint's topic is ours and the topic still holds
 * every event after its offsets (retried while the broker does not answer,
 * until *moot: the body failed, the answer is not needed).
 * A stop meanwhile is -ECANCELED: the consumer's discovery gives up on it,
 * which would otherwise read as "the topic does not exist" and send the
 * start-up on to the next source on its way out. */
static int accept_checkpoint(void *arg, const struct ckpt_meta *m, const atomic_bool *moot,
                             char *why, size_t cap) {
  struct sync *s = arg;
  if (strcmp(m->topic, s->cfg->kafka_topic) != 0) {
    snprintf(why, cap, "written for topic \"%.200s\", KAFKA_TOPIC is \"%.200s\"", m->topic,
             s->cfg->kafka_topic);
    return -ESTALE;
  }
  if (m->nparts > 0 && m->nparts > INT_MAX / 2) return -EBADMSG;
  struct consumer_pos *pos = xcalloc(m->nparts + 1, sizeof *pos);
  for (uint32_t i = 0; i < m->nparts; i++)
    pos[i] = (struct consumer_pos){.partition = m->parts[i].id, .next = m->parts[i].next};
  int rc;
  while ((rc = consumer_start_at(s->consumer, pos, (int)m->nparts, why, cap)) == -EIO) {
    consumer_reset(s->consumer);
    if (wait_or_moot(s, moot, 1000)) {
      rc = -ECANCELED;
      break;
    }
  }
  free(pos);
  if (rc != 0 && (atomic_load(&s->stop) || atomic_load(moot))) {
    snprintf(why, cap, "%s", atomic_load(&s->stop) ? "stopped" : "given up: the body failed");
    rc = -ECANCELED;
  }
  return rc;
}

/* A snapshot built elsewhere (a checkpoint, a peer) at built_wall_ns was at
 * best caught up then: staleness counts from that moment, so a bound a
 * caller sets (x-catalog-max-staleness-ms) refuses it until the tail has
 * caught up. */
static void fresh_as_of(struct sync *s, int64_t built_wall_ns) {
  int64_t age = clock_wall_ns() - built_wall_ns;
  int64_t since = clock_mono_ns() - (age > 0 ? age : 0);
  if (since <= 0) since = 1;
  consumer_caught_up_at(s->consumer, since);
  store_set_stale_since(s->d.store, since);
}

/* A checkpoint file being loaded: the arg of accept_file and stopping. */
struct file_load {
  struct sync *s;
  const char *path;
};

/* ckpt_accept_fn of a file: says the body's read begins (it is called as
 * it does: ckpt_read_body_accepting; how long it takes depends on the
 * catalog, a second at 1M variants), then accept_checkpoint. */
static int accept_file(void *arg, const struct ckpt_meta *m, const atomic_bool *moot, char *why,
                       size_t cap) {
  const struct file_load *f = arg;
  log_info("checkpoint load starting", LF_S("path", f->path),
           LF_I("variants", m->live[CAT_VARIANT]), LF_I("products", m->live[CAT_PRODUCT]));
  return accept_checkpoint(f->s, m, moot, why, cap);
}

/* ckpt_stop_fn: the writer is asked to stop (SIGTERM during the load). */
static bool stopping(void *arg) { return atomic_load(&((struct file_load *)arg)->s->stop); }

/* Loads one checkpoint file into a new transaction and publishes it.
 * Returns 0, or a negative errno with why filled (nothing published;
 * -ECANCELED when stopped meanwhile, between two blocks). */
static int load_checkpoint(struct sync *s, const char *path, char *why, size_t cap) {
  struct ckpt_meta meta;
  double t0 = clock_mono_s();
  struct store_txn *t = store_begin(s->d.store);
  struct file_load f = {.s = s, .path = path};
  int rc = ckpt_load_file(path, accept_file, stopping, &f, t, &meta, why, cap);
  if (rc == 0 && store_txn_live(t) == 0 && !s->cfg->allow_empty_catalog) {
    snprintf(why, cap,
             "it holds no live entity (set ALLOW_EMPTY_CATALOG=true if an empty "
             "catalog is expected)");
    rc = -ENODATA;
  }
  if (rc != 0) {
    store_abort(t);
    consumer_reset(s->consumer); /* the fallback learns the partitions afresh */
    return rc;
  }
  double load_s = clock_mono_s() - t0;
  fresh_as_of(s, meta.built_ns); /* before it is visible */
  publish(s, t, "checkpoint");
  log_info("startup source", LF_S("source", "checkpoint"), LF_S("path", path),
           LF_D("load_seconds", load_s), LF_D("seconds", clock_mono_s() - s->started_s),
           LF_I("partitions", meta.nparts), LF_I("checkpoint_snapshot_version", meta.snap_version),
           LF_D("age_seconds", (double)(clock_wall_ns() - meta.built_ns) / 1e9));
  ckpt_meta_clear(&meta);
  return 0;
}

/* Tries the checkpoints of CHECKPOINT_DIR, newest first. Returns 0 once one
 * is published, -ECANCELED on stop, -ENOENT if none is usable (each skipped
 * one is logged with why). */
static int start_from_checkpoint(struct sync *s) {
  char **paths, why[600];
  int n = ckpt_list(s->cfg->checkpoint_dir, &paths), rc = -ENOENT;
  if (n < 0) {
    log_warn("checkpoint directory unreadable", LF_S("dir", s->cfg->checkpoint_dir),
             LF_S("error", strerror(-n)));
    return -ENOENT;
  }
  bulk_build(s, true);
  for (int i = 0; i < n && rc != 0 && rc != -ECANCELED; i++) {
    if ((rc = load_checkpoint(s, paths[i], why, sizeof why)) == -ECANCELED)
      log_info("checkpoint load stopped: shutting down", LF_S("path", paths[i]));
    else if (rc != 0)
      log_warn("checkpoint skipped", LF_S("path", paths[i]), LF_S("why", why));
  }
  bulk_build(s, false);
  if (rc != 0 && rc != -ECANCELED)
    log_info("no usable checkpoint: starting from the source", LF_S("dir", s->cfg->checkpoint_dir),
             LF_I("files", n));
  ckpt_list_free(paths, n);
  return rc == 0 || rc == -ECANCELED ? rc : -ENOENT;
}

/* ---- Start-up from a peer ---- */

#define PEER_PROGRESS_LOG_S 5.0 /* period of the "peer transfer progress" line */

/* ckpt_peer_progress_fn: keeps the transfer's figures for /readyz and logs
 * them every PEER_PROGRESS_LOG_S (the first call, bytes 0, says it began).
 * @locality the writer thread. */
static void peer_progress(void *arg, const struct ckpt_peer_addr *p, uint64_t bytes) {
  struct sync *s = arg;
  double now = clock_mono_s();
  pthread_mutex_lock(&s->progress_mu);
  bool first = strcmp(s->progress_peer, p->name) != 0 || bytes == 0;
  if (first) {
    snprintf(s->progress_peer, sizeof s->progress_peer, "%s", p->name);
    s->progress_t0 = s->progress_logged = now;
  }
  s->progress_bytes = bytes;
  bool log_now = !first && now - s->progress_logged >= PEER_PROGRESS_LOG_S;
  if (log_now) s->progress_logged = now;
  double t0 = s->progress_t0;
  pthread_mutex_unlock(&s->progress_mu);
  if (first)
    log_info("peer transfer started", LF_S("peer", p->name));
  else if (log_now)
    log_info("peer transfer progress", LF_S("peer", p->name), LF_I("bytes", bytes),
             LF_D("seconds", now - t0));
}

/* No transfer runs any more (/readyz stops showing one). */
static void peer_progress_clear(struct sync *s) {
  pthread_mutex_lock(&s->progress_mu);
  s->progress_peer[0] = '\0';
  pthread_mutex_unlock(&s->progress_mu);
}

char *sync_startup_json(struct sync *s) {
  if (s == NULL) return NULL;
  struct strbuf sb = {0};
  pthread_mutex_lock(&s->progress_mu);
  if (s->progress_peer[0]) {
    sb_printf(&sb, "{\"phase\":\"peer transfer\",\"peer\":\"");
    sb_put_escaped(&sb, s->progress_peer);
    sb_printf(&sb, "\",\"bytes\":%llu,\"seconds\":%.3f}", (unsigned long long)s->progress_bytes,
              clock_mono_s() - s->progress_t0);
  }
  pthread_mutex_unlock(&s->progress_mu);
  return sb.len ? sb_take(&sb) : NULL;
}

/* Fetches p's snapshot into a new transaction and publishes it. Returns 0,
 * or a negative errno with why filled (nothing published). */
static int load_peer(struct sync *s, const struct ckpt_peer_addr *p, char *why, size_t cap) {
  struct ckpt_meta meta;
  struct ckpt_peer_stats st = {0};
  struct store_txn *t = store_begin(s->d.store);
  struct ckpt_peer_opts o = {.timeout_ms = s->cfg->bootstrap_peer_timeout_ms,
                             .transfer_ms = s->cfg->bootstrap_peer_transfer_timeout_ms,
                             .min_bps = s->cfg->bootstrap_peer_min_bps,
                             .stop = &s->stop,
                             .accept = accept_checkpoint,
                             .progress = peer_progress,
                             .arg = s};
  int rc = ckpt_load_peer(p, &o, t, &meta, &st, why, cap);
  peer_progress_clear(s);
  if (rc == 0 && store_txn_live(t) == 0 && !s->cfg->allow_empty_catalog) {
    snprintf(why, cap,
             "its snapshot holds no live entity (set ALLOW_EMPTY_CATALOG=true if an empty "
             "catalog is expected)");
    rc = -ENODATA;
  }
  if (rc != 0) {
    store_abort(t);
    consumer_reset(s->consumer); /* the next source learns the partitions afresh */
    return rc;
  }
  fresh_as_of(s, meta.built_ns); /* before it is visible */
  publish(s, t, "peer");
  log_info("startup source", LF_S("source", "peer"), LF_S("peer", p->name), LF_I("bytes", st.bytes),
           LF_D("connect_seconds", st.connect_s), LF_D("transfer_seconds", st.seconds),
           LF_D("seconds", clock_mono_s() - s->started_s), LF_I("partitions", meta.nparts),
           LF_I("peer_snapshot_version", meta.snap_version));
  ckpt_meta_clear(&meta);
  return 0;
}

#define PEER_BUSY_BACKOFF_MS     250  /* the first wait before busy peers are asked again */
#define PEER_BUSY_BACKOFF_MAX_MS 2000 /* doubling up to this */

/* One round over the addresses still marked in todo[] (all at first):
 * each is tried; one that answers busy stays marked, any other failure is
 * logged and unmarked. last says the round is the last: a busy answer is
 * then a failure too. Returns 0 once one is published, -ECANCELED on stop,
 * -EBUSY if some are still busy, else -ENOENT. */
static int peer_round(struct sync *s, const struct ckpt_peer_addr *peers, int n, bool *todo,
                      bool last) {
  char why[600];
  int rc = -ENOENT, still = 0;
  for (int i = 0; i < n && rc != 0 && rc != -ECANCELED; i++) {
    if (!todo[i]) continue;
    rc = load_peer(s, &peers[i], why, sizeof why);
    if (rc == -EBUSY && !last) {
      still++;
      log_info("peer busy; asking again shortly", LF_S("peer", peers[i].name), LF_S("why", why));
      continue;
    }
    todo[i] = false;
    if (rc == -EBUSY)
      log_warn("peer bootstrap failed", LF_S("peer", peers[i].name),
               LF_S("why", "still busy after BOOTSTRAP_PEER_BUSY_WAIT_MS (every transfer slot "
                           "taken)"));
    else if (rc != 0 && rc != -ECANCELED)
      log_warn("peer bootstrap failed", LF_S("peer", peers[i].name), LF_S("why", why));
  }
  return rc == 0 || rc == -ECANCELED ? rc : still > 0 ? -EBUSY : -ENOENT;
}

/* Tries every address of BOOTSTRAP_PEERS in turn; while some answered
 * "busy" (all their transfer slots taken: a scale-up of several replicas
 * at once), asks those again with a growing, jittered backoff for up to
 * BOOTSTRAP_PEER_BUSY_WAIT_MS before the mode's own start (a full warm
 * load is what peers are there to spare PostgreSQL). Returns 0 once one is
 * published, -ECANCELED on stop, -ENOENT if none could be used (each
 * failure logged with why). */
static int start_from_peer(struct sync *s) {
  struct ckpt_peer_addr *peers;
  int n = ckpt_peers_resolve(s->cfg->bootstrap_peers, &peers), rc = -ENOENT;
  bool *todo = xcalloc((size_t)n + 1, sizeof *todo);
  for (int i = 0; i < n; i++)
    todo[i] = true;
  int64_t until = clock_mono_ms() + s->cfg->bootstrap_peer_busy_wait_ms;
  long backoff = PEER_BUSY_BACKOFF_MS;
  bulk_build(s, true);
  for (bool last = s->cfg->bootstrap_peer_busy_wait_ms == 0;;) {
    rc = peer_round(s, peers, n, todo, last);
    if (rc != -EBUSY) break;
    int64_t left = until - clock_mono_ms();
    /* Jitter (half to all of the backoff) so that replicas turned away
     * together do not come back together. */
    long ms = backoff / 2 + (long)((uint64_t)clock_mono_ns() % (uint64_t)(backoff / 2 + 1));
    if (ms >= left) ms = left > 0 ? (long)left : 0, last = true;
    if (wait_or_stop(s, ms)) {
      rc = -ECANCELED;
      break;
    }
    backoff = backoff * 2 > PEER_BUSY_BACKOFF_MAX_MS ? PEER_BUSY_BACKOFF_MAX_MS : backoff * 2;
  }
  free(todo);
  bulk_build(s, false);
  if (rc != 0 && rc != -ECANCELED)
    log_info("no usable peer: starting from the source", LF_S("peers", s->cfg->bootstrap_peers),
             LF_I("addresses", n));
  free(peers);
  return rc == 0 || rc == -ECANCELED ? rc : -ENOENT;
}

/* The mode's own start: warm load then tail, or replay then tail. */
static void start_from_source(struct sync *s) {
  if (s->cfg->sync_mode != SYNC_WARM) {
    follow_replay(s, true);
    return;
  }
  bulk_build(s, true);
  int rc = s->consumer == NULL || mark_kafka(s) == 0 ? load_postgres(s) : -ECANCELED;
  bulk_build(s, false);
  if (rc != 0) return;
  s->ready = true;
  log_info("startup source", LF_S("source", "postgres"),
           LF_D("seconds", clock_mono_s() - s->started_s));
  s->d.on_ready(s->d.arg);
  give_back();
  if (s->consumer) follow_warm(s);
}

static void *sync_main(void *arg) {
  struct sync *s = arg;
  store_reader_register();
  int rc = s->cfg->checkpoint_dir[0] && s->consumer ? start_from_checkpoint(s) : -ENOENT;
  if (rc == -ENOENT && s->cfg->bootstrap_peers[0] && s->consumer) rc = start_from_peer(s);
  if (rc == 0) {
    s->ready = true;
    s->d.on_ready(s->d.arg);
    give_back();
    if (s->cfg->sync_mode == SYNC_WARM)
      follow_warm(s);
    else
      follow_replay(s, false);
  } else if (rc != -ECANCELED) {
    start_from_source(s);
  }
  bulk_build(s, false); /* a replay cut short by a stop */
  wait_or_stop(s, 1L << 30);
  store_reader_unregister();
  return NULL;
}

/* Sets up the sources on the calling thread, so a bad configuration is
 * reported at start-up. */
static int prepare(struct sync *s) {
  char err[512];
  if (s->cfg->sync_mode == SYNC_WARM && (s->pg = pgload_new(s->cfg->database_url)) == NULL) {
    /* A configuration error, said at start-up (exit 2), not an attempt to
     * retry; libpq's own message may quote the password: not shown. */
    log_error("bad configuration",
              LF_S("error", "DATABASE_URL is not a valid libpq connection string (libpq's "
                            "error is not shown: it may quote the password)"));
    return -EINVAL;
  }
  if (s->cfg->sync_mode == SYNC_WARM && s->cfg->kafka_bootstrap[0] == '\0') {
    log_warn("no change feed: the catalog will not change until restart",
             LF_S("fix", "set KAFKA_BOOTSTRAP_SERVERS (and KAFKA_TOPIC) to follow changes"));
    conditions_set(s->d.conditions, "feed", "warn",
                   "no change feed (KAFKA_BOOTSTRAP_SERVERS unset): the catalog is the warm "
                   "load and will not change until restart");
  }
  if (s->cfg->kafka_bootstrap[0] != '\0') {
    s->consumer =
        consumer_new(s->cfg, s->d.metrics, s->d.conditions, &s->stop, environ, err, sizeof err);
    if (s->consumer == NULL) {
      log_error("bad Kafka configuration", LF_S("error", err));
      return -EINVAL;
    }
  }
  return 0;
}

int sync_start(const struct sync_deps *d, struct sync **out) {
  struct sync *s = xcalloc(1, sizeof *s);
  pthread_condattr_t ca;
  s->d = *d;
  s->cfg = d->cfg;
  s->started_s = clock_mono_s();
  pthread_mutex_init(&s->mu, NULL);
  pthread_mutex_init(&s->progress_mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&s->cv, &ca);
  pthread_condattr_destroy(&ca);
  int rc = prepare(s);
  if (rc == 0) rc = -pthread_create(&s->thread, NULL, sync_main, s);
  if (rc != 0) {
    sync_destroy(s);
    return rc;
  }
  metrics_change_feed(s->d.metrics, s->consumer != NULL);
  *out = s;
  return 0;
}

void sync_request_stop(struct sync *s) {
  if (s == NULL) return;
  pthread_mutex_lock(&s->mu);
  atomic_store(&s->stop, true);
  pthread_cond_broadcast(&s->cv);
  pthread_mutex_unlock(&s->mu);
  if (s->pg) pgload_interrupt(s->pg); /* sets a flag: never blocks */
}

void sync_stop(struct sync *s) {
  sync_request_stop(s);
  pthread_join(s->thread, NULL);
  s->thread = 0;
}

int sync_checkpoint_position(void *arg, struct ckpt_meta *m) {
  struct sync *s = arg;
  if (s->consumer == NULL) return -EAGAIN;
  struct consumer_pos *pos = xcalloc(CKPT_MAX_PARTS, sizeof *pos);
  int n = consumer_published(s->consumer, pos, CKPT_MAX_PARTS);
  if (n > 0) {
    snprintf(m->topic, sizeof m->topic, "%s", s->cfg->kafka_topic);
    m->parts = xcalloc((size_t)n, sizeof *m->parts);
    for (int i = 0; i < n; i++)
      m->parts[i] = (struct ckpt_part){.id = pos[i].partition, .next = pos[i].next};
    m->nparts = (uint32_t)n;
  }
  free(pos);
  return n > 0 ? 0 : -EAGAIN;
}

char *sync_offsets_json(struct sync *s) {
  return s->consumer ? consumer_offsets_json(s->consumer) : NULL;
}

void sync_destroy(struct sync *s) {
  if (s == NULL) return;
  consumer_destroy(s->consumer);
  pgload_destroy(s->pg);
  pthread_cond_destroy(&s->cv);
  pthread_mutex_destroy(&s->mu);
  pthread_mutex_destroy(&s->progress_mu);
  free(s);
}
