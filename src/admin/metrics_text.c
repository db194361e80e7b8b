/*
 * metrics_text.c - the one Prometheus renderer (see metrics_text.h).
 *
 * A scrape reads the registry once (metrics_view_new), the snapshot's
 * counts once (a read section), the conditions once and /proc, then writes
 * text from those copies: no lock is held while formatting, and the
 * families appear in a fixed order (RPCs, events, publishes, warm load,
 * snapshot, admin, process, change feed, conditions) that dashboards and
 * tests need not but may rely on.
 */
#include "metrics_text.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "build_info.h"
#include "clock.h"
#include "conditions.h"
#include "metrics.h"
#include "store.h"
#include "strbuf.h"

static const char *const method_names[MM_COUNT] = {
    "ValidateVariant", "GetProductDetails", "GetVariantsBatch", "ValidateVariantsBatch",
    "Health/Check",    "Health/Watch",      "ServerReflection", "unknown"};

static const char *const code_names[METRICS_CODES] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS", "UNAUTHENTICATED"};

/* The registry counts events per entity kind, then those of no known kind;
 * a new kind must grow its table too. */
_Static_assert(METRICS_EVENT_KINDS == CAT_ENTITY_KINDS + 1,
               "metrics.h's METRICS_EVENT_KINDS must be CAT_ENTITY_KINDS + 1");

/* A kind's label: the model's one name list, "unknown" past the entities. */
static const char *kind_label(int k) {
  return k < CAT_ENTITY_KINDS ? model_kind_name((enum cat_kind)k) : "unknown";
}
static const char *const event_results[METRICS_EVENT_RESULTS] = {"applied", "stale", "rejected"};

/* ---- The registry's families ---- */

static void render_requests(const struct metrics_view *v, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_rpc_requests_total RPCs finished, by method and gRPC code.\n"
               "# TYPE catalogd_rpc_requests_total counter\n");
  for (int k = 0; k < MM_COUNT; k++)
    for (int c = 0; c < METRICS_CODES; c++)
      if (v->req[k][c] || c == 0)
        sb_printf(b, "catalogd_rpc_requests_total{method=\"%s\",code=\"%s\"} %llu\n",
                  method_names[k], code_names[c], (unsigned long long)v->req[k][c]);
}

static void render_histogram(const struct metrics_view *v, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_rpc_duration_seconds RPC handling time, from the call's arrival "
               "to its reply being queued.\n# TYPE catalogd_rpc_duration_seconds histogram\n");
  for (int k = 0; k < MM_COUNT; k++) {
    uint64_t cum = 0;
    for (int bk = 0; bk < METRICS_BUCKETS; bk++) {
      cum += v->bucket[k][bk];
      if (bk < METRICS_BUCKETS - 1)
        sb_printf(b, "catalogd_rpc_duration_seconds_bucket{method=\"%s\",le=\"%g\"} %llu\n",
                  method_names[k], (double)metrics_bucket_ns[bk] / 1e9, (unsigned long long)cum);
      else
        sb_printf(b, "catalogd_rpc_duration_seconds_bucket{method=\"%s\",le=\"+Inf\"} %llu\n",
                  method_names[k], (unsigned long long)cum);
    }
    sb_printf(b, "catalogd_rpc_duration_seconds_sum{method=\"%s\"} %.9f\n", method_names[k],
              (double)v->sum_ns[k] / 1e9);
    sb_printf(b, "catalogd_rpc_duration_seconds_count{method=\"%s\"} %llu\n", method_names[k],
              (unsigned long long)cum);
  }
}

static void render_events(const struct metrics_view *v, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_events_total Change events, by entity type and result.\n"
               "# TYPE catalogd_events_total counter\n");
  for (int k = 0; k < METRICS_EVENT_KINDS; k++)
    for (int r = 0; r < METRICS_EVENT_RESULTS; r++)
      sb_printf(b, "catalogd_events_total{type=\"%s\",result=\"%s\"} %llu\n", kind_label(k),
                event_results[r], (unsigned long long)v->events[k][r]);
}

/* Snapshots published so far: the publish histogram's count. */
static uint64_t publishes(const struct metrics_view *v) {
  uint64_t n = 0;
  for (int k = 0; k < METRICS_BUCKETS; k++)
    n += v->publish_bucket[k];
  return n;
}

static void render_publish(const struct metrics_view *v, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_snapshot_publish_duration_seconds Time to publish a snapshot "
               "(swap and grace period).\n"
               "# TYPE catalogd_snapshot_publish_duration_seconds histogram\n");
  uint64_t cum = 0;
  for (int k = 0; k < METRICS_BUCKETS; k++) {
    cum += v->publish_bucket[k];
    if (k < METRICS_BUCKETS - 1)
      sb_printf(b, "catalogd_snapshot_publish_duration_seconds_bucket{le=\"%g\"} %llu\n",
                (double)metrics_bucket_ns[k] / 1e9, (unsigned long long)cum);
    else
      sb_printf(b, "catalogd_snapshot_publish_duration_seconds_bucket{le=\"+Inf\"} %llu\n",
                (unsigned long long)cum);
  }
  sb_printf(b,
            "catalogd_snapshot_publish_duration_seconds_sum %.9f\n"
            "catalogd_snapshot_publish_duration_seconds_count %llu\n",
            (double)v->publish_sum_ns / 1e9, (unsigned long long)cum);
}

/* The warm load's progress and stalls (its totals follow the snapshot). */
static void render_warm_load(const struct metrics_view *v, struct strbuf *b) {
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
            (double)v->counters[MC_PG_PROGRESS_PPM] / 1e6,
            (unsigned long long)v->counters[MC_PG_PROGRESS_ROWS],
            (unsigned long long)v->counters[MC_PG_STALLS]);
}

/* The consistency auditor's checks and its rolling ratio (the ratio only
 * once there are checks: no data is not "consistent"). */
static void render_audit(const struct metrics_view *v, struct strbuf *b) {
  const uint64_t *c = v->counters;
  sb_printf(b,
            "# HELP catalogd_audit_checks_total Entities the consistency auditor compared with "
            "PostgreSQL, by result.\n"
            "# TYPE catalogd_audit_checks_total counter\n"
            "catalogd_audit_checks_total{result=\"equal\"} %llu\n"
            "catalogd_audit_checks_total{result=\"lagging\"} %llu\n"
            "catalogd_audit_checks_total{result=\"divergent\"} %llu\n"
            "# HELP catalogd_audit_errors_total Auditor rounds that failed on PostgreSQL (then "
            "backed off).\n"
            "# TYPE catalogd_audit_errors_total counter\ncatalogd_audit_errors_total %llu\n"
            "# HELP catalogd_audit_lag_seconds Age of the oldest lagging row the auditor saw in "
            "its last round (0: none).\n"
            "# TYPE catalogd_audit_lag_seconds gauge\ncatalogd_audit_lag_seconds %.3f\n",
            (unsigned long long)c[MC_AUDIT_EQUAL], (unsigned long long)c[MC_AUDIT_LAGGING],
            (unsigned long long)c[MC_AUDIT_DIVERGENT], (unsigned long long)c[MC_AUDIT_ERRORS],
            (double)c[MC_AUDIT_LAG_MS] / 1e3);
  if (c[MC_AUDIT_WINDOW] > 0)
    sb_printf(b,
              "# HELP catalogd_audit_consistency_ratio Share of the auditor's last checks that "
              "found the snapshot equal to PostgreSQL.\n"
              "# TYPE catalogd_audit_consistency_ratio gauge\n"
              "catalogd_audit_consistency_ratio %.6f\n",
              (double)c[MC_AUDIT_RATIO_PPM] / 1e6);
}

/* ---- The published snapshot ---- */

/* Version, age and entity counts of the published snapshot, read in one
 * read section (so they describe the same snapshot a reader sees). */
static void render_snapshot(struct store *store, struct strbuf *b) {
  store_read_lock();
  const struct snapshot *s = store_current(store);
  uint64_t version = s ? snap_version(s) : 0;
  /* built_ns is wall time (it is also reported as a timestamp) */
  double age = s ? (double)(clock_wall_ns() - (int64_t)snap_built_ns(s)) / 1e9 : -1;
  if (age < 0 && s) age = 0;
  size_t counts[CAT_ENTITY_KINDS] = {0};
  for (int k = 0; s && k < CAT_ENTITY_KINDS; k++)
    counts[k] = snap_count(s, (enum cat_kind)k);
  store_read_unlock();
  sb_printf(b,
            "# HELP catalogd_snapshot_version Version of the published snapshot (0: none).\n"
            "# TYPE catalogd_snapshot_version gauge\ncatalogd_snapshot_version %llu\n"
            "# HELP catalogd_snapshot_age_seconds Time since the snapshot was built.\n"
            "# TYPE catalogd_snapshot_age_seconds gauge\ncatalogd_snapshot_age_seconds %.3f\n"
            "# HELP catalogd_snapshot_entities Live entities in the snapshot.\n"
            "# TYPE catalogd_snapshot_entities gauge\n",
            (unsigned long long)version, age);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    sb_printf(b, "catalogd_snapshot_entities{type=\"%s\"} %zu\n", kind_label(k), counts[k]);
}

/* ---- The process ---- */

static long rss_bytes(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

/* Seconds since the epoch at which the process started (the first exec,
 * before the huge-page re-exec: same pid): boot time (/proc/stat btime)
 * plus the start tick of /proc/self/stat (field 22). 0 if unreadable. */
static double start_time_s(void) {
  char line[1024];
  double btime = 0, ticks = 0;
  FILE *f = fopen("/proc/stat", "r");
  if (f == NULL) return 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "btime %lf", &btime) == 1) break;
  fclose(f);
  if ((f = fopen("/proc/self/stat", "r")) == NULL) return 0;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = '\0';
  /* fields after the command name, which may hold spaces: from the last ')' */
  char *p = strrchr(line, ')');
  if (p == NULL || sscanf(p + 2,
                          "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                          "%*d %*d %*d %lf",
                          &ticks) != 1)
    return 0;
  return btime + ticks / (double)sysconf(_SC_CLK_TCK);
}

/* User plus system CPU seconds of the whole process (every thread). */
static double cpu_seconds(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
  return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Open file descriptors (entries of /proc/self/fd, less the one reading it). */
static long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  long n = 0;
  if (d == NULL) return 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n > 0 ? n - 1 : 0;
}

/* The soft limit on open files; -1 if unlimited or unknown. */
static long max_fds(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return -1;
  return (long)rl.rlim_cur;
}

/* Freshness: how far behind its change feed the snapshot is, and the
 * calls that waited for a fresher one (x-catalog-min-position /
 * x-catalog-min-version). */
static void render_freshness(const struct metrics_view *v, struct store *store, struct strbuf *b) {
  const uint64_t *c = v->counters;
  double stale = (double)store_staleness_ns(store, clock_mono_ns()) / 1e9;
  sb_printf(b,
            "# HELP catalogd_staleness_seconds How far behind its change feed the snapshot is: "
            "0 while it holds everything up to the high watermarks fetched, else the time since "
            "it last did (without a feed: since the warm load).\n"
            "# TYPE catalogd_staleness_seconds gauge\ncatalogd_staleness_seconds %.3f\n"
            "# HELP catalogd_parked_calls Calls waiting for a fresher snapshot.\n"
            "# TYPE catalogd_parked_calls gauge\ncatalogd_parked_calls %lld\n"
            "# HELP catalogd_parked_calls_total Calls that waited for a fresher snapshot, by "
            "outcome: all, expired (UNAVAILABLE after MAX_WAIT_MS or at shutdown), dropped "
            "(cancelled or past their deadline while waiting).\n"
            "# TYPE catalogd_parked_calls_total counter\n"
            "catalogd_parked_calls_total{result=\"all\"} %llu\n"
            "catalogd_parked_calls_total{result=\"expired\"} %llu\n"
            "catalogd_parked_calls_total{result=\"dropped\"} %llu\n"
            "# HELP catalogd_parked_calls_rejected_total Calls that would have waited for a "
            "fresher snapshot, refused RESOURCE_EXHAUSTED: PARK_MAX_CALLS calls were waiting.\n"
            "# TYPE catalogd_parked_calls_rejected_total counter\n"
            "catalogd_parked_calls_rejected_total %llu\n"
            "# HELP catalogd_parked_call_reparks_total Times a waiting call was handed back to "
            "its worker, checked again and found still unmet (it waits on).\n"
            "# TYPE catalogd_parked_call_reparks_total counter\n"
            "catalogd_parked_call_reparks_total %llu\n",
            stale, (long long)(int64_t)c[MC_PARKED_NOW], (unsigned long long)c[MC_PARKED_TOTAL],
            (unsigned long long)c[MC_PARK_EXPIRED], (unsigned long long)c[MC_PARK_DROPPED],
            (unsigned long long)c[MC_PARK_REJECTED], (unsigned long long)c[MC_PARK_REPARKED]);
}

/* Warm load totals, rejected requests, admin connections and the resident
 * set. */
static void render_totals(const struct metrics_view *v, struct strbuf *b) {
  const uint64_t *c = v->counters;
  sb_printf(
      b,
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
      "# HELP catalogd_admin_connections Open admin HTTP connections.\n"
      "# TYPE catalogd_admin_connections gauge\ncatalogd_admin_connections %u\n"
      "# HELP catalogd_admin_connections_closed_total Admin connections closed by catalogd: "
      "request not answered by ADMIN_REQUEST_TIMEOUT_SECONDS (deadline), or evicted for a new "
      "one beyond the connection limit (evicted).\n"
      "# TYPE catalogd_admin_connections_closed_total counter\n"
      "catalogd_admin_connections_closed_total{reason=\"deadline\"} %llu\n"
      "catalogd_admin_connections_closed_total{reason=\"evicted\"} %llu\n"
      "# HELP catalogd_checkpoints_written_total Checkpoints written to CHECKPOINT_DIR.\n"
      "# TYPE catalogd_checkpoints_written_total counter\ncatalogd_checkpoints_written_total %llu\n"
      "# HELP catalogd_checkpoint_failures_total Checkpoint writes that failed or were "
      "abandoned.\n"
      "# TYPE catalogd_checkpoint_failures_total counter\n"
      "catalogd_checkpoint_failures_total %llu\n"
      "# HELP catalogd_checkpoint_last_timestamp_seconds When the last checkpoint was written "
      "(0: none yet).\n"
      "# TYPE catalogd_checkpoint_last_timestamp_seconds gauge\n"
      "catalogd_checkpoint_last_timestamp_seconds %.3f\n"
      "# HELP catalogd_checkpoint_last_bytes Size of the last checkpoint.\n"
      "# TYPE catalogd_checkpoint_last_bytes gauge\ncatalogd_checkpoint_last_bytes %llu\n"
      "# HELP catalogd_checkpoint_last_duration_seconds How long writing the last checkpoint "
      "took.\n"
      "# TYPE catalogd_checkpoint_last_duration_seconds gauge\n"
      "catalogd_checkpoint_last_duration_seconds %.3f\n"
      "# HELP process_resident_memory_bytes Resident set size.\n"
      "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n",
      (unsigned long long)publishes(v), (unsigned long long)c[MC_PG_ROWS],
      (unsigned long long)c[MC_PG_ROWS_SKIPPED], (double)c[MC_PG_LOAD_NS] / 1e9,
      (unsigned long long)c[MC_PG_ATTEMPTS], (unsigned long long)c[MC_BAD_REQUESTS],
      (unsigned)c[MC_ADMIN_CONNECTIONS], (unsigned long long)c[MC_ADMIN_CUT_DEADLINE],
      (unsigned long long)c[MC_ADMIN_CUT_EVICTED], (unsigned long long)c[MC_CKPT_WRITES],
      (unsigned long long)c[MC_CKPT_FAILURES], (double)c[MC_CKPT_LAST_UNIX_MS] / 1e3,
      (unsigned long long)c[MC_CKPT_LAST_BYTES], (double)c[MC_CKPT_LAST_NS] / 1e9, rss_bytes());
}

/* The standard process metrics (Prometheus client conventions) and build info. */
static void render_process(struct strbuf *b) {
  long maxfd = max_fds();
  sb_printf(b,
            "# HELP catalogd_build_info catalogd's version and commit.\n"
            "# TYPE catalogd_build_info gauge\n"
            "catalogd_build_info{version=\"%s\",commit=\"%s\"} 1\n"
            "# HELP process_start_time_seconds Start time of the process since unix epoch in "
            "seconds.\n"
            "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.2f\n"
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.3f\n"
            "# HELP process_open_fds Number of open file descriptors.\n"
            "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
            CATALOGD_VERSION, CATALOGD_COMMIT, start_time_s(), cpu_seconds(), open_fds());
  if (maxfd >= 0)
    sb_printf(b,
              "# HELP process_max_fds Maximum number of open file descriptors.\n"
              "# TYPE process_max_fds gauge\nprocess_max_fds %ld\n",
              maxfd);
}

/* ---- The change feed ---- */

/* Lag and stalled flags per partition: every known partition, then the
 * ones flagged stalled that are not (re)discovered yet. */
static void render_partitions(const struct metrics_view *v, struct strbuf *b) {
  sb_printf(b, "# HELP catalogd_consumer_lag_messages Messages not yet applied, by "
               "partition.\n# TYPE catalogd_consumer_lag_messages gauge\n");
  for (int i = 0; i < v->nparts; i++)
    if (v->parts[i].known)
      sb_printf(b, "catalogd_consumer_lag_messages{partition=\"%d\"} %lld\n", v->parts[i].id,
                (long long)v->parts[i].lag);
  sb_printf(b, "# HELP catalogd_partition_stalled 1: events of the partition were deleted "
               "before they were read and no re-sync has recovered them yet.\n"
               "# TYPE catalogd_partition_stalled gauge\n");
  for (int i = 0; i < v->nparts; i++)
    if (v->parts[i].known)
      sb_printf(b, "catalogd_partition_stalled{partition=\"%d\"} %d\n", v->parts[i].id,
                v->parts[i].stalled ? 1 : 0);
  for (int i = 0; i < v->nparts; i++)
    if (!v->parts[i].known && v->parts[i].stalled)
      sb_printf(b, "catalogd_partition_stalled{partition=\"%d\"} 1\n", v->parts[i].id);
}

/* Nothing until the writer has started; then whether there is a feed and,
 * with Kafka, the consumer's figures (replay progress and event time only
 * once there are some). */
static void render_feed(const struct metrics_view *v, struct strbuf *b) {
  if (v->change_feed < 0) return;
  sb_printf(b,
            "# HELP catalogd_change_feed_enabled 1 if a Kafka change feed is configured "
            "(KAFKA_BOOTSTRAP_SERVERS), 0 if the catalog never changes after the load.\n"
            "# TYPE catalogd_change_feed_enabled gauge\ncatalogd_change_feed_enabled %d\n",
            v->change_feed);
  if (v->change_feed == 0) return;
  render_partitions(v, b);
  sb_printf(b,
            "# HELP catalogd_dead_letters_total Rejected events copied to KAFKA_DLQ_TOPIC: "
            "delivered, or failed (not queued, or not delivered).\n"
            "# TYPE catalogd_dead_letters_total counter\n"
            "catalogd_dead_letters_total{result=\"delivered\"} %llu\n"
            "catalogd_dead_letters_total{result=\"failed\"} %llu\n",
            (unsigned long long)v->counters[MC_DLQ_DELIVERED],
            (unsigned long long)v->counters[MC_DLQ_FAILED]);
  if (v->replay_progress >= 0)
    sb_printf(b,
              "# HELP catalogd_replay_progress_ratio Share of the replay read (events between "
              "the low and high watermarks seen at its start).\n"
              "# TYPE catalogd_replay_progress_ratio gauge\ncatalogd_replay_progress_ratio %.4f\n",
              v->replay_progress);
  if (v->last_event_ns) {
    double age = (double)(clock_wall_ns() - v->last_event_ns) / 1e9;
    sb_printf(b,
              "# HELP catalogd_last_event_timestamp_seconds Unix time of the last applied "
              "event.\n# TYPE catalogd_last_event_timestamp_seconds gauge\n"
              "catalogd_last_event_timestamp_seconds %.3f\n"
              "# HELP catalogd_last_event_age_seconds Time since the last applied event "
              "(absent until one was applied).\n# TYPE catalogd_last_event_age_seconds gauge\n"
              "catalogd_last_event_age_seconds %.3f\n",
              (double)v->last_event_ns / 1e9, age < 0 ? 0 : age);
  }
}

/* ---- Conditions ---- */

/* Appends s as a label value: '"' and '\\' escaped (conditions hold
 * printable ASCII only). */
static void render_conditions(struct conditions *conds, struct strbuf *b) {
  struct condition_name cs[CONDITIONS_MAX];
  int n = conditions_list(conds, cs);
  sb_printf(b, "# HELP catalogd_condition An operator-visible condition is set (see /readyz "
               "and docs/operations.md).\n# TYPE catalogd_condition gauge\n");
  for (int i = 0; i < n; i++) {
    sb_printf(b, "catalogd_condition{name=\"");
    sb_put_escaped(b, cs[i].name);
    sb_printf(b, "\",level=\"%s\"} 1\n", cs[i].level);
  }
}

/* GET /snapshot transfers by outcome, their bytes, and the snapshot pins
 * held now (a transfer or a checkpoint being written: what the writer
 * replaces meanwhile is kept until the last pin goes). */
static void render_transfers(const struct metrics_view *v, struct store *store, struct strbuf *b) {
  const uint64_t *c = v->counters;
  sb_printf(b,
            "# HELP catalogd_snapshot_transfers_total GET /snapshot transfers by result: sent "
            "whole, cut (past SNAPSHOT_TRANSFER_TIMEOUT_SECONDS or below "
            "SNAPSHOT_MIN_BYTES_PER_SECOND), failed (the peer went away, an error), busy (503: "
            "every transfer slot taken).\n"
            "# TYPE catalogd_snapshot_transfers_total counter\n"
            "catalogd_snapshot_transfers_total{result=\"sent\"} %llu\n"
            "catalogd_snapshot_transfers_total{result=\"cut\"} %llu\n"
            "catalogd_snapshot_transfers_total{result=\"failed\"} %llu\n"
            "catalogd_snapshot_transfers_total{result=\"busy\"} %llu\n"
            "# HELP catalogd_snapshot_transfer_bytes_total Bytes sent by GET /snapshot.\n"
            "# TYPE catalogd_snapshot_transfer_bytes_total counter\n"
            "catalogd_snapshot_transfer_bytes_total %llu\n"
            "# HELP catalogd_snapshot_pins Snapshots pinned now (transfers, a checkpoint being "
            "written); replaced records are kept until the last pin goes.\n"
            "# TYPE catalogd_snapshot_pins gauge\ncatalogd_snapshot_pins %d\n"
            "# HELP catalogd_snapshot_deferred_frees Objects replaced while pinned, waiting "
            "for the last pin to go.\n"
            "# TYPE catalogd_snapshot_deferred_frees gauge\ncatalogd_snapshot_deferred_frees "
            "%zu\n",
            (unsigned long long)c[MC_SNAP_XFER_SENT], (unsigned long long)c[MC_SNAP_XFER_CUT],
            (unsigned long long)c[MC_SNAP_XFER_FAILED], (unsigned long long)c[MC_SNAP_XFER_BUSY],
            (unsigned long long)c[MC_SNAP_XFER_BYTES], store_pins(store), store_deferred(store));
}

char *metrics_text(struct metrics *m, struct store *store, struct conditions *conds, bool serving) {
  struct strbuf b = {0};
  struct metrics_view *v = metrics_view_new(m);
  sb_printf(&b,
            "# HELP catalogd_ready 1 while health (/readyz, grpc.health.v1) says SERVING.\n"
            "# TYPE catalogd_ready gauge\ncatalogd_ready %d\n",
            serving ? 1 : 0);
  render_requests(v, &b);
  render_histogram(v, &b);
  sb_printf(&b,
            "# HELP catalogd_rpc_in_flight RPCs being handled now.\n"
            "# TYPE catalogd_rpc_in_flight gauge\ncatalogd_rpc_in_flight %lld\n",
            (long long)v->in_flight);
  render_events(v, &b);
  render_publish(v, &b);
  render_warm_load(v, &b);
  render_audit(v, &b);
  render_snapshot(store, &b);
  render_freshness(v, store, &b);
  render_totals(v, &b);
  render_transfers(v, store, &b);
  render_process(&b);
  render_feed(v, &b);
  render_conditions(conds, &b);
  metrics_view_free(v);
  return sb_take(&b);
}
