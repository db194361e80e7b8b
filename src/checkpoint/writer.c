/*
 * writer.c - the checkpoint thread (see checkpoint.h): every
 * CHECKPOINT_INTERVAL_SECONDS, if the published snapshot changed since the
 * last checkpoint, it asks the writer for the offsets the state covers,
 * pins the current snapshot (store_pin: no RCU read section is held while
 * the file is written, so grace periods and the sync thread's publishes go
 * on), writes it with ckpt_write_file and unpins it. The sync thread never
 * waits for it. On clean shutdown one last checkpoint is written, within a
 * budget.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "xalloc.h"

struct ckpt_writer {
  struct ckpt_writer_deps d;
  pthread_t thread;
  pthread_mutex_t mu; /* guards stop and final; with cv */
  pthread_cond_t cv;
  bool stop, final;
  _Atomic int64_t deadline_ms; /* 0 until stop: then a write in progress ends by it */
  uint64_t written_version;    /* the snapshot version last written (thread only) */
  bool started;
};

/* Writes one checkpoint if the state changed since the last one; abandoned
 * past w->deadline_ms once ckpt_writer_stop has set it. */
static void write_once(struct ckpt_writer *w) {
  struct ckpt_meta meta = {0};
  if (w->d.position(w->d.arg, &meta) != 0) { /* offsets first, then the pin */
    log_debug("checkpoint skipped: the state cannot be vouched for now");
    ckpt_meta_clear(&meta);
    return;
  }
  const struct snapshot *s = store_pin(w->d.store);
  if (s == NULL || snap_version(s) == w->written_version) {
    store_unpin(w->d.store, s);
    ckpt_meta_clear(&meta);
    return;
  }
  struct ckpt_written out;
  char why[512];
  uint64_t version = snap_version(s);
  int rc = ckpt_write_file(w->d.dir, s, &meta, w->d.keep, &w->deadline_ms, &out, why, sizeof why);
  store_unpin(w->d.store, s);
  if (rc == 0) {
    w->written_version = version;
    metrics_add(w->d.metrics, MC_CKPT_WRITES, 1);
    metrics_set(w->d.metrics, MC_CKPT_LAST_UNIX_MS, (uint64_t)(clock_wall_ns() / 1000000));
    metrics_set(w->d.metrics, MC_CKPT_LAST_BYTES, out.bytes);
    metrics_set(w->d.metrics, MC_CKPT_LAST_NS, (uint64_t)(out.seconds * 1e9));
    log_info("checkpoint written", LF_S("path", out.path), LF_I("bytes", out.bytes),
             LF_D("seconds", out.seconds), LF_I("snapshot_version", version),
             LF_I("partitions", meta.nparts));
  } else {
    metrics_add(w->d.metrics, MC_CKPT_FAILURES, 1);
    log_warn(rc == -ETIMEDOUT ? "checkpoint abandoned: shutdown budget spent"
                              : "checkpoint write failed",
             LF_S("dir", w->d.dir), LF_S("error", why));
  }
  ckpt_meta_clear(&meta);
}

/* Waits for the interval or a stop; returns true when stopping. */
static bool wait_interval(struct ckpt_writer *w) {
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += w->d.interval_s;
  pthread_mutex_lock(&w->mu);
  while (!w->stop && pthread_cond_timedwait(&w->cv, &w->mu, &until) == 0) {
  }
  bool stop = w->stop;
  pthread_mutex_unlock(&w->mu);
  return stop;
}

#define CKPT_NICE 10 /* nice value of the checkpoint thread */

static void *writer_main(void *arg) {
  struct ckpt_writer *w = arg;
  /* Background work: on a busy box a checkpoint takes longer rather than
   * the writer's publishes or the gRPC workers' calls (Linux: per thread). */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), CKPT_NICE) != 0)
    log_debug("checkpoint thread keeps its priority", LF_S("error", strerror(errno)));
  store_reader_register(); /* store_pin opens a read section */
  while (!wait_interval(w))
    write_once(w);
  pthread_mutex_lock(&w->mu);
  bool final = w->final;
  pthread_mutex_unlock(&w->mu);
  if (final) write_once(w);
  store_reader_unregister();
  return NULL;
}

int ckpt_writer_start(const struct ckpt_writer_deps *d, struct ckpt_writer **out) {
  struct ckpt_writer *w = xcalloc(1, sizeof *w);
  pthread_condattr_t ca;
  w->d = *d;
  pthread_mutex_init(&w->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&w->cv, &ca);
  pthread_condattr_destroy(&ca);
  int rc = -pthread_create(&w->thread, NULL, writer_main, w);
  if (rc != 0) {
    ckpt_writer_destroy(w);
    return rc;
  }
  w->started = true;
  log_info("checkpoints on", LF_S("dir", d->dir), LF_I("interval_s", d->interval_s),
           LF_I("keep", d->keep));
  *out = w;
  return 0;
}

void ckpt_writer_stop(struct ckpt_writer *w, bool final, int budget_ms) {
  if (w == NULL || !w->started) return;
  pthread_mutex_lock(&w->mu);
  w->stop = true, w->final = final;
  atomic_store(&w->deadline_ms, clock_mono_ms() + budget_ms);
  pthread_cond_broadcast(&w->cv);
  pthread_mutex_unlock(&w->mu);
  pthread_join(w->thread, NULL);
  w->started = false;
}

void ckpt_writer_destroy(struct ckpt_writer *w) {
  if (w == NULL) return;
  pthread_cond_destroy(&w->cv);
  pthread_mutex_destroy(&w->mu);
  free(w);
}
