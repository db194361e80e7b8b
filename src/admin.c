/*
 * admin.c - admin HTTP endpoints on libmicrohttpd (see admin.h).
 *
 * libmicrohttpd runs without threads of its own here: our thread drives it
 * with MHD_run_wait(), so it can register as an RCU reader for its whole
 * life and unregister cleanly on exit.
 */
#include "admin.h"

#include <errno.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "conditions.h"
#include "digest.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "strbuf.h"
#include "sync.h"
#include "xalloc.h"

struct admin {
  struct admin_deps d;
  struct MHD_Daemon *mhd;
  pthread_t thread;
  atomic_bool stop;
  _Atomic(struct sync *) sync;
};

static long rss_bytes(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

/* Snapshot and process gauges (read section inside). */
static char *gauges(struct admin *a) {
  static const char *kinds[] = {"variant", "product", "brand", "tag", "collection"};
  struct strbuf sb = {0};
  struct metrics *m = a->d.metrics;
  store_read_lock();
  const struct snapshot *s = store_current(a->d.store);
  uint64_t version = s ? snap_version(s) : 0;
  /* built_ns is wall time (it is also reported as a timestamp) */
  double age = s ? (double)(clock_wall_ns() - (int64_t)snap_built_ns(s)) / 1e9 : -1;
  if (age < 0 && s) age = 0;
  size_t counts[5] = {0};
  for (int k = 0; s && k < 5; k++)
    counts[k] = snap_count(s, (enum cat_kind)k);
  store_read_unlock();
  sb_printf(&sb,
            "# HELP catalogd_snapshot_version Version of the published snapshot (0: none).\n"
            "# TYPE catalogd_snapshot_version gauge\ncatalogd_snapshot_version %llu\n"
            "# HELP catalogd_snapshot_age_seconds Time since the snapshot was built.\n"
            "# TYPE catalogd_snapshot_age_seconds gauge\ncatalogd_snapshot_age_seconds %.3f\n"
            "# HELP catalogd_snapshot_entities Live entities in the snapshot.\n"
            "# TYPE catalogd_snapshot_entities gauge\n",
            (unsigned long long)version, age);
  for (int k = 0; k < 5; k++)
    sb_printf(&sb, "catalogd_snapshot_entities{type=\"%s\"} %zu\n", kinds[k], counts[k]);
  sb_printf(
      &sb,
      "# HELP catalogd_snapshots_published_total Snapshots published.\n"
      "# TYPE catalogd_snapshots_published_total counter\ncatalogd_snapshots_published_total %llu\n"
      "# HELP catalogd_warm_load_rows_total Rows read by the PostgreSQL warm load.\n"
      "# TYPE catalogd_warm_load_rows_total counter\ncatalogd_warm_load_rows_total %llu\n"
      "# HELP catalogd_warm_load_rows_skipped_total Rows skipped as invalid.\n"
      "# TYPE catalogd_warm_load_rows_skipped_total counter\n"
      "catalogd_warm_load_rows_skipped_total %llu\n"
      "# HELP catalogd_warm_load_duration_seconds Duration of the successful warm load.\n"
      "# TYPE catalogd_warm_load_duration_seconds gauge\n"
      "catalogd_warm_load_duration_seconds %.3f\n"
      "# HELP catalogd_warm_load_attempts_total Warm load attempts.\n"
      "# TYPE catalogd_warm_load_attempts_total counter\ncatalogd_warm_load_attempts_total %llu\n"
      "# HELP catalogd_bad_requests_total Requests rejected as invalid.\n"
      "# TYPE catalogd_bad_requests_total counter\ncatalogd_bad_requests_total %llu\n"
      "# HELP process_resident_memory_bytes Resident set size.\n"
      "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
      (unsigned long long)metrics_publishes(m), (unsigned long long)metrics_get(m, MC_PG_ROWS),
      (unsigned long long)metrics_get(m, MC_PG_ROWS_SKIPPED),
      (double)metrics_get(m, MC_PG_LOAD_NS) / 1e9,
      (unsigned long long)metrics_get(m, MC_PG_ATTEMPTS),
      (unsigned long long)metrics_get(m, MC_BAD_REQUESTS), rss_bytes());
  return sb_take(&sb);
}

static char *render_metrics(struct admin *a) {
  char *g = gauges(a);
  struct sync *sy = atomic_load(&a->sync);
  char *k = sy ? sync_metrics_text(sy) : NULL;
  char *cs = conditions_metrics(a->d.conditions);
  size_t n = strlen(g) + (k ? strlen(k) : 0) + strlen(cs) + 1;
  char *extra = xmalloc(n);
  snprintf(extra, n, "%s%s%s", g, k ? k : "", cs);
  char *out = metrics_render(a->d.metrics, extra);
  free(g);
  free(k);
  free(cs);
  free(extra);
  return out;
}

static char *render_digest(struct admin *a, unsigned *status) {
  struct digest d;
  store_read_lock();
  const struct snapshot *s = store_current(a->d.store);
  if (s != NULL) digest_compute(s, &d);
  store_read_unlock();
  if (s == NULL) {
    *status = MHD_HTTP_SERVICE_UNAVAILABLE;
    char *o = xmalloc(64);
    snprintf(o, 64, "{\"error\":\"no snapshot yet\"}\n");
    return o;
  }
  struct sync *sy = atomic_load(&a->sync);
  char *offs = sy ? sync_offsets_json(sy) : NULL;
  char *extra = NULL;
  if (offs) {
    size_t n = strlen(offs) + 16;
    extra = xmalloc(n);
    snprintf(extra, n, "\"offsets\":%s", offs);
  }
  char *out = digest_json(&d, extra);
  free(offs);
  free(extra);
  return out;
}

/* /readyz's body: {"status":"serving"|"not serving","conditions":[...]}.
 * The status is the probe's answer; the conditions say what an operator
 * should know either way (e.g. a stalled partition while still serving). */
static char *render_ready(struct admin *a, bool serving) {
  char *cs = conditions_json(a->d.conditions);
  struct strbuf sb = {0};
  sb_printf(&sb, "{\"status\":\"%s\",\"conditions\":%s}\n", serving ? "serving" : "not serving",
            cs);
  free(cs);
  return sb_take(&sb);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, char *body,
                             const char *type) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
  MHD_add_response_header(r, "Content-Type", type);
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

static char *text(const char *s) {
  char *o = xmalloc(strlen(s) + 1);
  strcpy(o, s);
  return o;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **state) {
  struct admin *a = cls;
  unsigned status = MHD_HTTP_OK;
  (void)version, (void)data, (void)size, (void)state;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text("method not allowed\n"), "text/plain");
  if (strcmp(url, "/metrics") == 0)
    return reply(c, status, render_metrics(a), "text/plain; version=0.0.4");
  if (strcmp(url, "/healthz") == 0) return reply(c, status, text("ok\n"), "text/plain");
  if (strcmp(url, "/readyz") == 0) {
    bool ok = health_is_serving(a->d.health);
    return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, render_ready(a, ok),
                 "application/json");
  }
  if (strcmp(url, "/digest") == 0) {
    char *body = render_digest(a, &status);
    return reply(c, status, body, "application/json");
  }
  return reply(c, MHD_HTTP_NOT_FOUND, text("not found\n"), "text/plain");
}

/* @locality its own thread, an RCU reader for its life. */
static void *admin_main(void *arg) {
  struct admin *a = arg;
  store_reader_register();
  while (!atomic_load(&a->stop))
    MHD_run_wait(a->mhd, 200);
  store_reader_unregister();
  return NULL;
}

int admin_start(const struct admin_deps *d, struct admin **out) {
  *out = NULL;
  if (d->cfg->admin_port == 0) return 0;
  struct admin *a = xcalloc(1, sizeof *a);
  a->d = *d;
  atomic_store(&a->sync, d->sync);
  a->mhd = MHD_start_daemon(MHD_USE_ERROR_LOG, (uint16_t)d->cfg->admin_port, NULL, NULL, on_request,
                            a, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_END);
  if (a->mhd == NULL) {
    log_error("cannot listen for admin HTTP", LF_I("port", d->cfg->admin_port));
    free(a);
    return -EADDRINUSE;
  }
  pthread_create(&a->thread, NULL, admin_main, a);
  *out = a;
  return 0;
}

void admin_set_sync(struct admin *a, struct sync *s) {
  if (a) atomic_store(&a->sync, s);
}

void admin_destroy(struct admin *a) {
  if (a == NULL) return;
  atomic_store(&a->stop, true);
  pthread_join(a->thread, NULL);
  MHD_stop_daemon(a->mhd);
  free(a);
}
