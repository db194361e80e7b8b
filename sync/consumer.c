/*
 * consumer.c - librdkafka consumer for the change feed (see consumer.h).
 *
 * Ordering: Kafka orders events only within a partition, and the store's
 * version gate makes the order across partitions irrelevant: an event is
 * applied iff it is newer than what is held, tombstones included. So the
 * consumer can apply whatever arrives, in any interleaving, and converge.
 *
 * Offsets are never committed: every replica keeps its own position in
 * memory, starting at the warm load's recorded watermarks or at the
 * beginning (replay).
 */
#include "consumer.h"

#include <ctype.h>
#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "event_decode.h"
#include "log.h"
#include "metrics.h"
#include "strbuf.h"
#include "xalloc.h"

#define MAX_PARTITIONS 1024
#define BATCH_READ     1024
#define REPLAY_BATCH   200000 /* events per publish while replaying */
#define REFRESH_MS     5000

struct part {
  int32_t id;
  int64_t start;     /* offset to start from (or RD_KAFKA_OFFSET_BEGINNING) */
  int64_t next;      /* next offset to read (-1 unknown) */
  int64_t hw0;       /* high watermark seen at start (replay catch-up target) */
  int64_t hw;        /* last known high watermark (lag) */
  int64_t published; /* next offset covered by the published snapshot (-1 none) */
  bool caught;
};

struct consumer {
  const struct config *cfg;
  struct metrics *m;
  rd_kafka_t *rk, *dlq;
  rd_kafka_queue_t *queue;
  pthread_mutex_t mu; /* guards parts, nparts, last_event_ns for the admin thread */
  struct part parts[MAX_PARTITIONS];
  int nparts;
  int64_t last_event_ns; /* wall clock of the last applied event (stamped once per poll) */
  uint64_t applied;      /* events applied so far (consumer thread only) */
  bool marked;
  uint64_t rejected_logged;
};

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  (void)rk;
  if (level <= 4) log_warn("kafka", LF_S("facility", fac), LF_S("message", buf));
}

/* Sets KAFKA_<PROPERTY> env vars on conf; returns -1 with err on a bad one. */
static int passthrough(rd_kafka_conf_t *conf, char **env, char *err, size_t cap) {
  static const char *own[] = {"KAFKA_BOOTSTRAP_SERVERS=", "KAFKA_TOPIC=", "KAFKA_DLQ_TOPIC="};
  for (char **e = env; e && *e; e++) {
    if (strncmp(*e, "KAFKA_", 6) != 0) continue;
    bool skip = false;
    for (size_t i = 0; i < 3; i++)
      skip |= strncmp(*e, own[i], strlen(own[i])) == 0;
    const char *eq = strchr(*e, '=');
    if (skip || eq == NULL || eq - *e - 6 <= 0 || eq - *e - 6 > 200) continue;
    char prop[256];
    size_t n = (size_t)(eq - *e - 6);
    for (size_t i = 0; i < n; i++) {
      char ch = (*e)[6 + i];
      prop[i] = ch == '_' ? '.' : (char)tolower((unsigned char)ch);
    }
    prop[n] = '\0';
    char kerr[256];
    if (rd_kafka_conf_set(conf, prop, eq + 1, kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
      snprintf(err, cap, "KAFKA_%.*s: %s", (int)n, *e + 6, kerr);
      return -1;
    }
  }
  return 0;
}

static rd_kafka_conf_t *base_conf(const struct config *cfg, char **env, char *err, size_t cap) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, on_kafka_log);
  if (rd_kafka_conf_set(conf, "bootstrap.servers", cfg->kafka_bootstrap, err, cap) != 0 ||
      rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", err, cap) != 0 ||
      passthrough(conf, env, err, cap) != 0) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return conf;
}

static int set_all(rd_kafka_conf_t *conf, const char *const *kv, char *err, size_t cap) {
  for (; kv[0] != NULL; kv += 2)
    if (rd_kafka_conf_set(conf, kv[0], kv[1], err, cap) != RD_KAFKA_CONF_OK) return -1;
  return 0;
}

struct consumer *consumer_new(const struct config *cfg, struct metrics *m, char **env, char *err,
                              size_t cap) {
  char group[128], host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(group, sizeof group, "catalogd-%s-%d", host, (int)getpid());
  const char *const kv[] = {"group.id",
                            group,
                            "enable.auto.commit",
                            "false",
                            "enable.auto.offset.store",
                            "false",
                            "auto.offset.reset",
                            "error",
                            "enable.partition.eof",
                            "true",
                            "fetch.wait.max.ms",
                            "10",
                            "fetch.error.backoff.ms",
                            "100",
                            "queued.max.messages.kbytes",
                            "65536",
                            NULL};
  struct consumer *c = xcalloc(1, sizeof *c);
  c->cfg = cfg, c->m = m;
  pthread_mutex_init(&c->mu, NULL);
  rd_kafka_conf_t *conf = base_conf(cfg, env, err, cap);
  if (conf == NULL || set_all(conf, kv, err, cap) != 0) goto fail;
  if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, cap)) == NULL) goto fail;
  conf = NULL;
  c->queue = rd_kafka_queue_get_consumer(c->rk);
  if (cfg->kafka_dlq_topic[0] != '\0') {
    rd_kafka_conf_t *pc = base_conf(cfg, env, err, cap);
    if (pc == NULL || (c->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pc, err, cap)) == NULL) {
      if (pc) rd_kafka_conf_destroy(pc);
      goto fail;
    }
  }
  return c;
fail:
  if (conf) rd_kafka_conf_destroy(conf);
  consumer_destroy(c);
  return NULL;
}

void consumer_destroy(struct consumer *c) {
  if (c == NULL) return;
  if (c->queue) rd_kafka_queue_destroy(c->queue);
  if (c->rk) {
    rd_kafka_consumer_close(c->rk);
    rd_kafka_destroy(c->rk);
  }
  if (c->dlq) {
    rd_kafka_flush(c->dlq, 5000);
    rd_kafka_destroy(c->dlq);
  }
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Partition ids of the topic from fresh metadata; -1 on failure. */
static int topic_partitions(struct consumer *c, int32_t *ids, int cap, int timeout_ms) {
  rd_kafka_topic_t *t = rd_kafka_topic_new(c->rk, c->cfg->kafka_topic, NULL);
  const struct rd_kafka_metadata *md = NULL;
  int n = -1;
  if (t && rd_kafka_metadata(c->rk, 0, t, &md, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR &&
      md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    n = 0;
    for (int i = 0; i < md->topics[0].partition_cnt && n < cap; i++)
      ids[n++] = md->topics[0].partitions[i].id;
  }
  if (md) rd_kafka_metadata_destroy(md);
  if (t) rd_kafka_topic_destroy(t);
  return n;
}

static struct part *find_part(struct consumer *c, int32_t id) {
  for (int i = 0; i < c->nparts; i++)
    if (c->parts[i].id == id) return &c->parts[i];
  return NULL;
}

/* Adds partitions not known yet, starting at `start`, with their high
 * watermarks; returns how many were added (their entries are the last). */
static int discover(struct consumer *c, int64_t start, int timeout_ms) {
  int32_t ids[MAX_PARTITIONS];
  int n = topic_partitions(c, ids, MAX_PARTITIONS, timeout_ms), added = 0;
  for (int i = 0; i < n; i++) {
    if (find_part(c, ids[i]) != NULL) continue;
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(c->rk, c->cfg->kafka_topic, ids[i], &lo, &hi,
                                         timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
      continue; /* next refresh will retry */
    pthread_mutex_lock(&c->mu);
    c->parts[c->nparts++] = (struct part){.id = ids[i],
                                          .start = start < 0 ? start : hi,
                                          .published = start < 0 ? -1 : hi,
                                          .next = -1,
                                          .hw0 = hi,
                                          .hw = hi,
                                          .caught = hi <= lo};
    pthread_mutex_unlock(&c->mu);
    added++;
  }
  return added;
}

int consumer_mark_start(struct consumer *c, int timeout_ms) {
  int64_t deadline = clock_mono_ms() + timeout_ms;
  while (discover(c, 0 /* = at the high watermark */, 2000) >= 0 && c->nparts == 0) {
    if (clock_mono_ms() > deadline) return -ETIMEDOUT;
    usleep(200000);
  }
  c->marked = true;
  log_info("kafka start offsets recorded", LF_S("topic", c->cfg->kafka_topic),
           LF_I("partitions", c->nparts));
  return c->nparts > 0 ? 0 : -EIO;
}

/* Assigns partitions [from, nparts) at their start offsets. */
static void assign_from(struct consumer *c, int from) {
  if (from >= c->nparts) return;
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->nparts - from);
  for (int i = from; i < c->nparts; i++)
    rd_kafka_topic_partition_list_add(l, c->cfg->kafka_topic, c->parts[i].id)->offset =
        c->parts[i].start;
  rd_kafka_error_t *e = rd_kafka_incremental_assign(c->rk, l);
  if (e) {
    log_error("kafka assign failed", LF_S("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(l);
  log_info("kafka partitions assigned", LF_I("count", c->nparts - from), LF_I("total", c->nparts));
}

/* ---- Deletes below the hand-off point (warm mode) ---- */

/* (Un)assigns every partition that has history below its start offset,
 * reading from the beginning. Returns how many. */
static int assign_history(struct consumer *c, bool assign) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->nparts);
  for (int i = 0; i < c->nparts; i++)
    if (c->parts[i].start > 0)
      rd_kafka_topic_partition_list_add(l, c->cfg->kafka_topic, c->parts[i].id)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
  int n = l->cnt;
  rd_kafka_error_t *e = n == 0   ? NULL
                        : assign ? rd_kafka_incremental_assign(c->rk, l)
                                 : rd_kafka_incremental_unassign(c->rk, l);
  if (e) {
    log_error("kafka (un)assign failed", LF_S("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(l);
  return n;
}

/* Applies one message below the hand-off point: only versioned deletes
 * count (upserts there are older than the loaded rows; a versionless Kafka
 * tombstone could delete a row re-created since). Returns 1 if applied. */
static int apply_history(struct store_txn *t, const rd_kafka_message_t *msg) {
  struct event ev;
  const char *why;
  if (event_decode(msg->key, msg->key ? msg->key_len : 0, msg->payload, msg->payload ? msg->len : 0,
                   &ev, &why) != 0)
    return 0;
  model_free(ev.record);
  if (ev.op != EVENT_DELETE || ev.version <= 0) return 0;
  return store_delete(t, ev.kind, ev.id, ev.org, strlen(ev.org), ev.version) == STORE_APPLIED;
}

int consumer_load_deletes(struct consumer *c, struct store_txn *t, atomic_bool *stop) {
  double t0 = clock_mono_s();
  size_t seen = 0, applied = 0;
  int pending = assign_history(c, true);
  bool done[MAX_PARTITIONS] = {false};
  for (int i = 0; i < c->nparts; i++)
    done[i] = c->parts[i].start <= 0;
  rd_kafka_message_t *msgs[BATCH_READ];
  while (pending > 0 && !atomic_load(stop)) {
    ssize_t n = rd_kafka_consume_batch_queue(c->queue, 100, msgs, BATCH_READ);
    for (ssize_t k = 0; k < n; k++) {
      const rd_kafka_message_t *m = msgs[k];
      struct part *p = find_part(c, m->partition);
      int i = p ? (int)(p - c->parts) : -1;
      bool eof = m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF;
      if (i >= 0 && !done[i] && m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->offset < p->start) {
        seen++;
        applied += (size_t)apply_history(t, m);
      }
      if (i >= 0 && !done[i] && (eof || m->offset + 1 >= p->start)) done[i] = true, pending--;
      rd_kafka_message_destroy(msgs[k]);
    }
  }
  assign_history(c, false);
  if (atomic_load(stop)) return -ECANCELED;
  log_info("history below the hand-off read for deletes", LF_I("messages", seen),
           LF_I("deletes_applied", applied), LF_D("seconds", clock_mono_s() - t0));
  return 0;
}

/* ---- Applying events ---- */

struct batch {
  struct store_txn *t;
  size_t n;
  int64_t opened_ms;
};

/* Logs (the first 20, then every 1000th), counts and optionally copies a
 * message that cannot be applied to the dead-letter topic. */
static void reject(struct consumer *c, const rd_kafka_message_t *msg, int kind, const char *why,
                   const char *event_id) {
  metrics_event(c->m, kind, METRICS_EVENT_REJECTED);
  uint64_t k = c->rejected_logged++;
  if (k < 20 || k % 1000 == 0)
    log_warn("event rejected", LF_S("why", why), LF_S("topic", c->cfg->kafka_topic),
             LF_I("partition", msg->partition), LF_I("offset", msg->offset),
             LF_S("event_id", event_id), LF_I("rejected_total", k + 1));
  if (c->dlq == NULL) return;
  rd_kafka_resp_err_t e = rd_kafka_producev(
      c->dlq, RD_KAFKA_V_TOPIC(c->cfg->kafka_dlq_topic), RD_KAFKA_V_KEY(msg->key, msg->key_len),
      RD_KAFKA_V_VALUE(msg->payload, msg->len), RD_KAFKA_V_HEADER("x-catalogd-reason", why, -1),
      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
  if (e) log_warn("dead-letter produce failed", LF_S("error", rd_kafka_err2str(e)));
}

static void apply(struct consumer *c, struct store *st, struct batch *b,
                  const rd_kafka_message_t *msg) {
  struct event ev;
  const char *why;
  if (event_decode(msg->key, msg->key ? msg->key_len : 0, msg->payload, msg->payload ? msg->len : 0,
                   &ev, &why) != 0) {
    reject(c, msg, ev.kind_known ? (int)ev.kind : -1, why, ev.event_id);
    return;
  }
  if (b->t == NULL) {
    b->t = store_begin(st);
    b->opened_ms = clock_mono_ms();
  }
  int rc = ev.op == EVENT_UPSERT
               ? store_put(b->t, ev.record)
               : store_delete(b->t, ev.kind, ev.id, ev.org, strlen(ev.org), ev.version);
  metrics_event(c->m, ev.kind, rc == STORE_APPLIED ? METRICS_EVENT_APPLIED : METRICS_EVENT_STALE);
  b->n++;
  c->applied++;
}

/* Stamps the time of the last applied event for the admin thread: once per
 * poll, not per event (a lock and a clock read per event on the replay path). */
static void stamp_applied(struct consumer *c) {
  int64_t now = clock_wall_ns();
  pthread_mutex_lock(&c->mu);
  c->last_event_ns = now;
  pthread_mutex_unlock(&c->mu);
}

static void publish(struct consumer *c, struct batch *b) {
  int64_t t0 = clock_mono_ns();
  uint64_t v = store_commit(b->t);
  /* Offsets reported with the digest are those the published state covers. */
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++)
    if (c->parts[i].next >= 0) c->parts[i].published = c->parts[i].next;
  pthread_mutex_unlock(&c->mu);
  uint64_t ns = (uint64_t)(clock_mono_ns() - t0);
  metrics_observe_publish(c->m, ns);
  log_debug("snapshot published", LF_S("source", "kafka"), LF_I("version", v), LF_I("events", b->n),
            LF_D("publish_ms", (double)ns / 1e6));
  *b = (struct batch){0};
}

static void mark_position(struct consumer *c, int32_t partition, int64_t next, bool eof) {
  pthread_mutex_lock(&c->mu);
  struct part *p = find_part(c, partition);
  if (p != NULL) {
    p->next = next;
    if (eof || next >= p->hw0) p->caught = true;
  }
  pthread_mutex_unlock(&c->mu);
}

static void rewind_partition(struct consumer *c, int32_t partition) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(l, c->cfg->kafka_topic, partition)->offset =
      RD_KAFKA_OFFSET_BEGINNING;
  rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 2000);
  if (e) rd_kafka_error_destroy(e);
  rd_kafka_topic_partition_list_destroy(l);
}

static void handle(struct consumer *c, struct store *st, struct batch *b,
                   const rd_kafka_message_t *msg) {
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    apply(c, st, b, msg);
    mark_position(c, msg->partition, msg->offset + 1, false);
  } else if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    mark_position(c, msg->partition, msg->offset, true);
  } else if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
    /* Our position was deleted from the log: replay the partition; the
     * version gate makes the re-read harmless. */
    log_error("kafka position lost; replaying the partition", LF_I("partition", msg->partition),
              LF_S("error", rd_kafka_message_errstr(msg)));
    rewind_partition(c, msg->partition);
  } else {
    log_warn("kafka consume error", LF_S("error", rd_kafka_message_errstr(msg)));
  }
}

static bool all_caught(struct consumer *c) {
  bool all = c->nparts > 0;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++)
    all &= c->parts[i].caught;
  pthread_mutex_unlock(&c->mu);
  return all;
}

/* Picks up new partitions (from the beginning: they are newer than any
 * start point) and refreshes the cached high watermarks for lag. */
static void refresh(struct consumer *c) {
  int before = c->nparts;
  if (discover(c, RD_KAFKA_OFFSET_BEGINNING, 500) > 0) assign_from(c, before);
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++) {
    int64_t lo, hi;
    if (rd_kafka_get_watermark_offsets(c->rk, c->cfg->kafka_topic, c->parts[i].id, &lo, &hi) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
      c->parts[i].hw = hi;
  }
  pthread_mutex_unlock(&c->mu);
}

static int start_replay(struct consumer *c, atomic_bool *stop) {
  while (!atomic_load(stop)) {
    if (discover(c, RD_KAFKA_OFFSET_BEGINNING, 2000) > 0 || c->nparts > 0) return 0;
    log_warn("kafka topic not reachable yet; retrying", LF_S("topic", c->cfg->kafka_topic));
    usleep(500000);
  }
  return -ECANCELED;
}

void consumer_run(struct consumer *c, struct store *st, bool replay, atomic_bool *stop,
                  void (*on_ready)(void *), void *arg) {
  rd_kafka_message_t *msgs[BATCH_READ];
  struct batch b = {0};
  bool catching = replay;
  int64_t t_start = clock_mono_ms(), next_refresh = t_start + REFRESH_MS;
  size_t replayed = 0;
  if (replay ? start_replay(c, stop) != 0 : (!c->marked && consumer_mark_start(c, 30000) != 0))
    return;
  assign_from(c, 0);
  while (!atomic_load(stop)) {
    ssize_t n = rd_kafka_consume_batch_queue(c->queue, 5, msgs, BATCH_READ);
    uint64_t applied = c->applied;
    for (ssize_t i = 0; i < n; i++) {
      replayed += msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR;
      handle(c, st, &b, msgs[i]);
      rd_kafka_message_destroy(msgs[i]);
      /* A batch closes exactly at SYNC_MAX_BATCH_EVENTS (not at the end of
       * whatever librdkafka handed over), so batch boundaries are exact. */
      if (!catching && b.t != NULL && b.n >= (size_t)c->cfg->sync_max_batch_events) publish(c, &b);
    }
    if (c->applied != applied) stamp_applied(c);
    int64_t now = clock_mono_ms();
    if (catching) {
      if (all_caught(c)) {
        if (b.t == NULL) b.t = store_begin(st); /* an empty topic still publishes */
        double s = (double)(now - t_start) / 1e3;
        publish(c, &b);
        log_info("replay caught up", LF_I("messages", replayed), LF_D("seconds", s),
                 LF_D("events_per_s", s > 0 ? (double)replayed / s : 0));
        catching = false;
        if (on_ready) on_ready(arg);
      }
    } else if (b.t != NULL && now - b.opened_ms >= c->cfg->sync_max_batch_ms) {
      publish(c, &b);
    }
    if (now >= next_refresh) {
      refresh(c);
      next_refresh = now + REFRESH_MS;
    }
    if (c->dlq) rd_kafka_poll(c->dlq, 0);
  }
  if (b.t != NULL) {
    if (catching)
      store_abort(b.t); /* never publish half a replay */
    else
      publish(c, &b);
  }
}

/* ---- Observability ---- */

char *consumer_render_metrics(struct consumer *c) {
  struct strbuf sb = {0};
  pthread_mutex_lock(&c->mu);
  sb_printf(&sb, "# HELP catalogd_consumer_lag_messages Messages not yet applied, by "
                 "partition.\n# TYPE catalogd_consumer_lag_messages gauge\n");
  for (int i = 0; i < c->nparts; i++) {
    const struct part *p = &c->parts[i];
    int64_t lag = p->next < 0 ? (p->caught ? 0 : p->hw0) : p->hw - p->next;
    sb_printf(&sb, "catalogd_consumer_lag_messages{partition=\"%d\"} %lld\n", p->id,
              (long long)(lag < 0 ? 0 : lag));
  }
  double age = c->last_event_ns ? (double)(clock_wall_ns() - c->last_event_ns) / 1e9 : -1;
  sb_printf(&sb,
            "# HELP catalogd_last_event_age_seconds Time since the last applied "
            "event (-1: none yet).\n# TYPE catalogd_last_event_age_seconds gauge\n"
            "catalogd_last_event_age_seconds %.3f\n",
            age);
  pthread_mutex_unlock(&c->mu);
  return sb_take(&sb);
}

char *consumer_offsets_json(struct consumer *c) {
  struct strbuf sb = {0};
  pthread_mutex_lock(&c->mu);
  sb_printf(&sb, "[");
  for (int i = 0; i < c->nparts; i++)
    sb_printf(&sb, "%s{\"partition\":%d,\"next_offset\":%lld}", i ? "," : "", c->parts[i].id,
              (long long)c->parts[i].published);
  sb_printf(&sb, "]");
  pthread_mutex_unlock(&c->mu);
  return sb_take(&sb);
}
