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
 *
 * Trust: a replay is only published if the topic's whole history is there
 * (every partition starts at offset 0, or the topic is compacted), and a
 * position deleted by retention before it was read (auto.offset.reset=error
 * surfaces it) is flagged and handed back to the writer, which re-syncs the
 * whole state. Topics are never created: existence is checked in the
 * all-topics metadata (a single-topic metadata request creates the topic on
 * brokers with auto-creation, whatever allow.auto.create.topics says).
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
#include "conditions.h"
#include "event_decode.h"
#include "log.h"
#include "metrics.h"
#include "publish.h"
#include "strbuf.h"
#include "xalloc.h"

#define MAX_PARTITIONS 1024
#define BATCH_READ     1024
#define REFRESH_MS     5000
#define PROGRESS_MS    3000  /* replay progress log period */
#define RECHECK_MS     5000  /* a refused replay / missing topic is checked again */
#define RELOG_MS       60000 /* an unchanged problem is logged again after this */
#define DESCRIBE_MS    3000  /* DescribeConfigs budget (the mock never answers) */
#define MAX_SECRETS    16
#define MIN_SECRET_LEN 4 /* shorter values are not scrubbed from library text */

struct part {
  int32_t id;
  int64_t start;     /* offset to start from (or RD_KAFKA_OFFSET_BEGINNING) */
  int64_t next;      /* next offset to read (-1 unknown) */
  int64_t lo0;       /* low watermark seen at start (replay progress) */
  int64_t hw0;       /* high watermark seen at start (replay catch-up target) */
  int64_t hw;        /* last known high watermark (lag) */
  int64_t published; /* next offset covered by the published snapshot (-1 none) */
  int64_t covered;   /* the same, as the snapshot's positions say it (see covered_at) */
  /* Offsets below this may re-deliver events the state already reflects:
   * after a warm load, the feed is read from offsets recorded before
   * PostgreSQL's snapshot. INT64_MAX from consumer_mark_start until the
   * partition's first end (then that offset); -1 otherwise. Versionless
   * deletes below it go through store_delete_redelivered. */
  int64_t redo_end;
  bool caught;
  bool assigned; /* in the consumer's assignment (at start) */
};

/* A partition whose position was deleted before it was read. */
struct lost {
  bool on;
  int64_t offset; /* the offset we needed */
};

struct consumer {
  const struct config *cfg;
  struct metrics *m;
  struct conditions *conds;
  atomic_bool *stop;
  rd_kafka_t *rk, *dlq;
  rd_kafka_queue_t *queue;
  pthread_mutex_t mu; /* guards parts, nparts, last_event_ns, lost, progress, kafka_err, rows */
  struct part parts[MAX_PARTITIONS];
  int nparts;
  int nlost;                    /* flags on in lost[] */
  int64_t last_event_ns;        /* wall clock of the last applied event (stamped once per poll) */
  uint64_t applied;             /* events applied so far (consumer thread only) */
  int64_t dlq_failed_logged_ms; /* consumer thread only: last 'dead-letter copy failed' line */
  atomic_bool partial; /* serving a replay of an incomplete history (REPLAY_ALLOW_INCOMPLETE) */
  unsigned long dlq_failed_unlogged; /* failures since that line */
  uint64_t rejected_logged;
  struct lost lost[MAX_PARTITIONS];                  /* by partition id */
  struct metrics_partition rows[2 * MAX_PARTITIONS]; /* export_metrics' scratch (under mu) */
  double progress;                                   /* replay progress 0..1; < 0: no replay */
  char kafka_err[256];                               /* librdkafka's last error (error_cb) */
  char err_logged[256];                              /* the last one logged, with when */
  int64_t err_logged_ms;
  int state;                  /* what the "kafka" condition says (enum feed_state) */
  int64_t state_ms;           /* when the current state was last logged */
  int history;                /* what the "replay" condition says (enum history_state) */
  const char *history_level;  /* ... at this level (a literal; NULL: no condition) */
  char history_msg[512];      /* ... with this text (restored after an empty-catalog refusal) */
  bool empty_refused;         /* the caught-up replay holds no live entity: not published */
  int64_t empty_logged_ms;    /* when that was last logged */
  char *secrets[MAX_SECRETS]; /* values of secret properties, scrubbed from text */
  int nsecrets;
  /* Freshness (store_set_stale_since): librdkafka's error callback stamps
   * when the brokers went away (monotonic ns, 0: reachable as far as we
   * know); the consumer thread keeps the last moment it was caught up and
   * when it last looked at the high watermarks. */
  _Atomic int64_t down_since;
  int64_t last_caught_ns, fresh_checked_ns, probe_ns;
  struct snap_pos *pos; /* publish()'s scratch: MAX_PARTITIONS entries */
};

enum feed_state { FEED_OK = 0, FEED_UNREACHABLE, FEED_MISSING };
enum history_state { HIST_UNKNOWN = 0, HIST_OK, HIST_ALLOWED, HIST_REFUSED };

/* ---- Secrets ---- */

/* Is the librdkafka property prop (dotted) one whose value must never be
 * shown? Passwords, secrets, private keys and credentials (the team's notes
 * on librdkafka 2.0.2 list them); a name merely containing one of the words
 * counts too, so a misspelt secret property is not shown either. */
static bool secret_property(const char *prop) {
  static const char *words[] = {"password", "secret",        "ssl.key",     "ssl_key",
                                "pem",      "sasl.username", "oauthbearer", "keytab"};
  for (size_t i = 0; i < sizeof words / sizeof *words; i++)
    if (strstr(prop, words[i]) != NULL) return true;
  return false;
}

/* Copies src into dst (cap bytes) with every occurrence of a secret value
 * replaced by "[redacted]". */
static void scrub(const struct consumer *c, const char *src, char *dst, size_t cap) {
  size_t o = 0;
  if (cap == 0) return;
  while (*src != '\0' && o + 1 < cap) {
    size_t hit = 0;
    for (int i = 0; c != NULL && i < c->nsecrets && hit == 0; i++)
      if (strncmp(src, c->secrets[i], strlen(c->secrets[i])) == 0) hit = strlen(c->secrets[i]);
    if (hit > 0) {
      o += (size_t)snprintf(dst + o, cap - o, "[redacted]");
      if (o >= cap) o = cap - 1;
      src += hit;
    } else {
      dst[o++] = *src++;
    }
  }
  dst[o] = '\0';
}

/* Remembers value as a secret (copied) for scrub(). */
static void add_secret(struct consumer *c, const char *value) {
  if (strlen(value) < MIN_SECRET_LEN || c->nsecrets == MAX_SECRETS) return;
  size_t n = strlen(value) + 1;
  c->secrets[c->nsecrets] = memcpy(xmalloc(n), value, n);
  c->nsecrets++;
}

/* ---- librdkafka callbacks (its threads) ---- */

static void on_kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf) {
  char clean[1024];
  if (level == 5 || level == 6) return; /* notices: librdkafka's own chatter */
  scrub(rd_kafka_opaque(rk), buf, clean, sizeof clean);
  /* Level 7 comes only from the debug contexts an operator asked for
   * (KAFKA_DEBUG): shown at info, so no second switch is needed. */
  if (level >= 7) {
    log_info("kafka debug", LF_S("facility", fac), LF_S("message", clean));
    return;
  }
  /* AUTOCREATE: an old broker cannot be told not to create topics. That
   * is no risk here (the topic's existence is checked in the all-topics
   * metadata before it is assigned), so it is not an operator's warning. */
  if (strcmp(fac, "AUTOCREATE") == 0)
    log_info("kafka", LF_S("facility", fac), LF_S("message", clean));
  else
    log_warn("kafka", LF_S("facility", fac), LF_S("message", clean));
}

/* Keeps librdkafka's last error for the reports below and logs it, the same
 * text at most once a minute (a down broker repeats it every second). */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
  struct consumer *c = opaque;
  char clean[256];
  (void)rk;
  scrub(c, reason, clean, sizeof clean);
  int64_t now = clock_mono_ms();
  pthread_mutex_lock(&c->mu);
  snprintf(c->kafka_err, sizeof c->kafka_err, "%s", clean);
  bool show = strcmp(c->err_logged, clean) != 0 || now - c->err_logged_ms > RELOG_MS;
  if (show) {
    snprintf(c->err_logged, sizeof c->err_logged, "%s", clean);
    c->err_logged_ms = now;
  }
  pthread_mutex_unlock(&c->mu);
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    int64_t zero = 0; /* the first failure counts: keep an earlier stamp */
    atomic_compare_exchange_strong(&c->down_since, &zero, clock_mono_ns());
  }
  if (show)
    log_warn("kafka error", LF_S("error", clean),
             LF_S("code", rd_kafka_err2name((rd_kafka_resp_err_t)err)));
}

/* ---- Configuration ---- */

/* Is KAFKA_<name> (name: the n upper-case bytes after "KAFKA_") one of the
 * variables Kubernetes injects for a Service whose name starts with kafka
 * (enableServiceLinks): <S>_SERVICE_HOST, <S>_SERVICE_PORT[_<NAME>],
 * <S>_PORT, <S>_PORT_<num>_<TCP|UDP|SCTP>[_PROTO|_PORT|_ADDR]? None of them
 * is a librdkafka property. */
static bool service_link(const char *name, size_t n) {
  char s[256];
  if (n >= sizeof s) return false;
  memcpy(s + 1, name, n);
  s[0] = '_', s[n + 1] = '\0'; /* a leading '_' makes "_X" match at the start */
  size_t len = n + 1;
  if ((len >= 13 && strcmp(s + len - 13, "_SERVICE_HOST") == 0) ||
      (len >= 5 && strcmp(s + len - 5, "_PORT") == 0) || strstr(s, "_SERVICE_PORT_") != NULL)
    return true;
  for (const char *p = strstr(s, "_PORT_"); p != NULL; p = strstr(p + 1, "_PORT_")) {
    const char *q = p + 6;
    if (!isdigit((unsigned char)*q)) continue;
    while (isdigit((unsigned char)*q))
      q++;
    if (strncmp(q, "_TCP", 4) == 0 || strncmp(q, "_UDP", 4) == 0)
      q += 4;
    else if (strncmp(q, "_SCTP", 5) == 0)
      q += 5;
    else
      continue;
    if (*q == '\0' || strcmp(q, "_PROTO") == 0 || strcmp(q, "_PORT") == 0 ||
        strcmp(q, "_ADDR") == 0)
      return true;
  }
  return false;
}

/* Sets KAFKA_<PROPERTY> env vars on conf; returns -1 with err on a bad one
 * (the value of a secret property is never in err). log: log what is
 * skipped (once: the DLQ producer reads the same list). */
static int passthrough(struct consumer *c, rd_kafka_conf_t *conf, char **env, bool log, char *err,
                       size_t cap) {
  static const char *own[] = {"KAFKA_BOOTSTRAP_SERVERS=", "KAFKA_TOPIC=", "KAFKA_DLQ_TOPIC="};
  for (char **e = env; e && *e; e++) {
    if (strncmp(*e, "KAFKA_", 6) != 0) continue;
    bool skip = false;
    for (size_t i = 0; i < 3; i++)
      skip |= strncmp(*e, own[i], strlen(own[i])) == 0;
    const char *eq = strchr(*e, '=');
    if (skip || eq == NULL || eq - *e - 6 <= 0 || eq - *e - 6 > 200) continue;
    size_t n = (size_t)(eq - *e - 6);
    if (service_link(*e + 6, n)) {
      char var[256];
      snprintf(var, sizeof var, "%.*s", (int)(eq - *e), *e);
      if (log) log_debug("kafka: Kubernetes service-link variable ignored", LF_S("variable", var));
      continue;
    }
    char prop[256];
    for (size_t i = 0; i < n; i++) {
      char ch = (*e)[6 + i];
      prop[i] = ch == '_' ? '.' : (char)tolower((unsigned char)ch);
    }
    prop[n] = '\0';
    bool secret = secret_property(prop);
    if (secret && log) add_secret(c, eq + 1);
    char kerr[256], clean[256];
    if (rd_kafka_conf_set(conf, prop, eq + 1, kerr, sizeof kerr) != RD_KAFKA_CONF_OK) {
      scrub(c, kerr, clean, sizeof clean);
      bool shows = secret && eq[1] != '\0' && strstr(kerr, eq + 1) != NULL;
      snprintf(err, cap, "KAFKA_%.*s: %s", (int)n, *e + 6,
               shows ? "rejected (the value is secret and not shown)" : clean);
      return -1;
    }
  }
  return 0;
}

static rd_kafka_conf_t *base_conf(struct consumer *c, char **env, bool log, char *err, size_t cap) {
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, on_kafka_log);
  rd_kafka_conf_set_error_cb(conf, on_kafka_error);
  rd_kafka_conf_set_opaque(conf, c);
  if (rd_kafka_conf_set(conf, "bootstrap.servers", c->cfg->kafka_bootstrap, err, cap) != 0 ||
      rd_kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", err, cap) != 0 ||
      passthrough(c, conf, env, log, err, cap) != 0) {
    rd_kafka_conf_destroy(conf);
    return NULL;
  }
  return conf;
}

/* Counts each dead-letter copy once librdkafka knows its fate: delivered,
 * or failed (retries exhausted, topic missing, not authorised), for
 * catalogd_dead_letters_total. opaque is the consumer (base_conf).
 * @locality the consumer thread, in rd_kafka_poll/flush of c->dlq. */
static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
  struct consumer *c = opaque;
  (void)rk;
  metrics_add(c->m, m->err ? MC_DLQ_FAILED : MC_DLQ_DELIVERED, 1);
  if (!m->err) return;
  /* Why matters (a missing topic, a missing ACL): said at most once a
   * minute, with how many failed since. */
  c->dlq_failed_unlogged++;
  int64_t now = clock_mono_ms();
  if (c->dlq_failed_logged_ms != 0 && now - c->dlq_failed_logged_ms < RELOG_MS) return;
  log_warn("dead-letter copy failed", LF_S("topic", c->cfg->kafka_dlq_topic),
           LF_S("error", rd_kafka_err2str(m->err)),
           LF_I("failed", (long long)c->dlq_failed_unlogged));
  c->dlq_failed_logged_ms = now, c->dlq_failed_unlogged = 0;
}

static int set_all(rd_kafka_conf_t *conf, const char *const *kv, char *err, size_t cap) {
  for (; kv[0] != NULL; kv += 2)
    if (rd_kafka_conf_set(conf, kv[0], kv[1], err, cap) != RD_KAFKA_CONF_OK) return -1;
  return 0;
}

struct consumer *consumer_new(const struct config *cfg, struct metrics *m, struct conditions *conds,
                              atomic_bool *stop, char **env, char *err, size_t cap) {
  char group[128], host[64] = "host";
  gethostname(host, sizeof host - 1);
  snprintf(group, sizeof group, "catalogd-%s-%d", host, (int)getpid());
  const char *const kv[] = {"group.id", group, "enable.auto.commit", "false",
                            "enable.auto.offset.store", "false", "auto.offset.reset", "error",
                            /* Never create the topic (brokers that honour it). */
                            "allow.auto.create.topics", "false", "enable.partition.eof", "true",
                            "fetch.wait.max.ms", "10", "fetch.error.backoff.ms", "100",
                            "queued.max.messages.kbytes", "65536", NULL};
  struct consumer *c = xcalloc(1, sizeof *c);
  c->pos = xcalloc(MAX_PARTITIONS, sizeof *c->pos);
  c->last_caught_ns = clock_mono_ns(); /* never 0: 0 says "caught up" to the store */
  char raw[512];
  c->cfg = cfg, c->m = m, c->conds = conds, c->stop = stop, c->progress = -1;
  pthread_mutex_init(&c->mu, NULL);
  rd_kafka_conf_t *conf = base_conf(c, env, true, raw, sizeof raw);
  if (conf == NULL || set_all(conf, kv, raw, sizeof raw) != 0) goto fail;
  if ((c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, raw, sizeof raw)) == NULL) goto fail;
  conf = NULL;
  c->queue = rd_kafka_queue_get_consumer(c->rk);
  if (cfg->kafka_dlq_topic[0] != '\0') {
    rd_kafka_conf_t *pc = base_conf(c, env, false, raw, sizeof raw);
    if (pc) rd_kafka_conf_set_dr_msg_cb(pc, on_dlq_delivery);
    if (pc == NULL || (c->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, pc, raw, sizeof raw)) == NULL) {
      if (pc) rd_kafka_conf_destroy(pc);
      goto fail;
    }
  }
  return c;
fail:
  scrub(c, raw, err, cap);
  if (conf) rd_kafka_conf_destroy(conf);
  consumer_destroy(c);
  return NULL;
}

void consumer_destroy(struct consumer *c) {
  if (c == NULL) return;
  /* Half the grace period for the network at most: nothing here is worth
   * more (offsets are never committed, so no consumer close either). */
  int budget_ms = c->cfg->shutdown_grace_s * 1000 / 2;
  if (c->queue) rd_kafka_queue_destroy(c->queue);
  if (c->rk) rd_kafka_destroy_flags(c->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  if (c->dlq) {
    rd_kafka_flush(c->dlq, budget_ms < 5000 ? budget_ms : 5000);
    int left = rd_kafka_outq_len(c->dlq);
    if (left > 0) {
      log_warn("dead-letter messages not delivered before shutdown", LF_I("count", left),
               LF_S("topic", c->cfg->kafka_dlq_topic));
      rd_kafka_purge(c->dlq, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    }
    rd_kafka_destroy(c->dlq);
  }
  for (int i = 0; i < c->nsecrets; i++)
    free(c->secrets[i]);
  free(c->pos);
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* ---- Reports: the "kafka" condition ---- */

/* librdkafka's last error text, or fallback. */
static void last_error(struct consumer *c, const char *fallback, char *out, size_t cap) {
  pthread_mutex_lock(&c->mu);
  snprintf(out, cap, "%s%s%s", fallback, c->kafka_err[0] ? "; last broker error: " : "",
           c->kafka_err);
  pthread_mutex_unlock(&c->mu);
}

/* Moves the feed to state (with why for the log), logging on a change and
 * once a minute while it lasts, and keeps the "kafka" condition in step. */
static void feed_state(struct consumer *c, int state, const char *why) {
  int64_t now = clock_mono_ms();
  bool again = state != FEED_OK && (c->state != state || now - c->state_ms > RELOG_MS);
  char msg[512];
  if (state == FEED_OK) {
    if (c->state != FEED_OK) {
      log_info("kafka reachable again", LF_S("brokers", c->cfg->kafka_bootstrap),
               LF_S("topic", c->cfg->kafka_topic));
      conditions_set(c->conds, "kafka", NULL, NULL);
    }
  } else if (state == FEED_UNREACHABLE) {
    snprintf(msg, sizeof msg, "Kafka brokers %.200s not reachable: %.250s", c->cfg->kafka_bootstrap,
             why);
    conditions_set(c->conds, "kafka", "error", msg);
    if (again)
      log_warn("kafka not reachable", LF_S("brokers", c->cfg->kafka_bootstrap),
               LF_S("topic", c->cfg->kafka_topic), LF_S("error", why));
  } else {
    snprintf(msg, sizeof msg,
             "topic %.150s does not exist on %.200s (catalogd never creates it): check KAFKA_TOPIC",
             c->cfg->kafka_topic, c->cfg->kafka_bootstrap);
    conditions_set(c->conds, "kafka", "error", msg);
    if (again)
      log_error("kafka topic does not exist", LF_S("topic", c->cfg->kafka_topic),
                LF_S("brokers", c->cfg->kafka_bootstrap),
                LF_S("fix", "check KAFKA_TOPIC; catalogd never creates topics"));
  }
  if (again) c->state_ms = now;
  c->state = state;
}

/* ---- Partitions ---- */

/* Partition ids of the topic from all-topics metadata (asking for the one
 * topic would create it on brokers that auto-create). Returns the count,
 * -ENOENT if the topic is absent (or listed with an error: treated as
 * absent), -EIO if the broker did not answer (why filled). */
static int topic_partitions(struct consumer *c, int32_t *ids, int cap, int timeout_ms, char *why,
                            size_t whycap) {
  const struct rd_kafka_metadata *md = NULL;
  rd_kafka_resp_err_t e = rd_kafka_metadata(c->rk, 1, NULL, &md, timeout_ms);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    last_error(c, rd_kafka_err2str(e), why, whycap);
    return -EIO;
  }
  int n = -ENOENT;
  for (int t = 0; t < md->topic_cnt; t++) {
    const rd_kafka_metadata_topic_t *mt = &md->topics[t];
    if (strcmp(mt->topic, c->cfg->kafka_topic) != 0 || mt->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
        mt->partition_cnt == 0)
      continue;
    n = 0;
    for (int i = 0; i < mt->partition_cnt && n < cap; i++)
      if (mt->partitions[i].id >= 0 && mt->partitions[i].id < MAX_PARTITIONS)
        ids[n++] = mt->partitions[i].id;
  }
  rd_kafka_metadata_destroy(md);
  return n;
}

static struct part *find_part(struct consumer *c, int32_t id) {
  for (int i = 0; i < c->nparts; i++)
    if (c->parts[i].id == id) return &c->parts[i];
  return NULL;
}

/* Sets the consumer's figures in the metrics registry, as of now: lag and
 * stalled flag of every known partition, the partitions flagged stalled but
 * not (re)discovered yet, replay progress and the last event's time. Called
 * after every change of them (once per poll on the consuming path, not per
 * event). Takes c->mu. */
static void export_metrics(struct consumer *c) {
  int n = 0;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++) {
    const struct part *p = &c->parts[i];
    int64_t lag = p->next < 0 ? (p->caught ? 0 : p->hw0) : p->hw - p->next;
    c->rows[n++] = (struct metrics_partition){
        .id = p->id, .known = true, .lag = lag < 0 ? 0 : lag, .stalled = c->lost[p->id].on};
  }
  for (int id = 0; c->nlost > 0 && id < MAX_PARTITIONS; id++)
    if (c->lost[id].on && find_part(c, id) == NULL)
      c->rows[n++] = (struct metrics_partition){.id = id, .stalled = true};
  struct metrics_feed f = {.replay_progress = c->progress,
                           .last_event_ns = c->last_event_ns,
                           .parts = c->rows,
                           .nparts = n};
  metrics_feed_update(c->m, &f);
  pthread_mutex_unlock(&c->mu);
}

/* Adds partitions not known yet, starting at `start` (an offset < 0 such as
 * RD_KAFKA_OFFSET_BEGINNING, or 0 for "at the high watermark"), with their
 * watermarks. Keeps the "kafka" condition in step. Returns how many were
 * added, or -ENOENT / -EIO (see topic_partitions). */
static int discover(struct consumer *c, int64_t start, int timeout_ms) {
  int32_t ids[MAX_PARTITIONS];
  char why[512];
  int n = topic_partitions(c, ids, MAX_PARTITIONS, timeout_ms, why, sizeof why), added = 0;
  if (n < 0) {
    feed_state(c, n == -ENOENT ? FEED_MISSING : FEED_UNREACHABLE, why);
    return n;
  }
  feed_state(c, FEED_OK, NULL);
  for (int i = 0; i < n && !atomic_load(c->stop); i++) {
    if (find_part(c, ids[i]) != NULL) continue;
    int64_t lo = 0, hi = 0;
    if (rd_kafka_query_watermark_offsets(c->rk, c->cfg->kafka_topic, ids[i], &lo, &hi,
                                         timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
      continue; /* next refresh will retry */
    pthread_mutex_lock(&c->mu);
    c->parts[c->nparts++] = (struct part){.id = ids[i],
                                          .start = start < 0 ? start : hi,
                                          .published = start < 0 ? -1 : hi,
                                          .covered = start < 0 ? lo : hi,
                                          .next = -1,
                                          .redo_end = -1,
                                          .lo0 = lo,
                                          .hw0 = hi,
                                          .hw = hi,
                                          .caught = hi <= lo};
    pthread_mutex_unlock(&c->mu);
    added++;
  }
  if (added > 0) export_metrics(c);
  return added;
}

int consumer_mark_start(struct consumer *c, int timeout_ms) {
  int64_t deadline = clock_mono_ms() + timeout_ms;
  int rc;
  while ((rc = discover(c, 0 /* = at the high watermark */, 2000)) >= 0 && c->nparts == 0) {
    if (clock_mono_ms() > deadline || atomic_load(c->stop)) return -ETIMEDOUT;
    usleep(200000);
  }
  if (rc < 0) return rc;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++)
    c->parts[i].redo_end = INT64_MAX; /* the load's snapshot comes later: see struct part */
  pthread_mutex_unlock(&c->mu);
  log_info("kafka start offsets recorded", LF_S("topic", c->cfg->kafka_topic),
           LF_I("partitions", c->nparts));
  return 0;
}

/* Assigns every partition not assigned yet, at its start offset. */
static void assign_new(struct consumer *c) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->nparts);
  for (int i = 0; i < c->nparts; i++)
    if (!c->parts[i].assigned)
      rd_kafka_topic_partition_list_add(l, c->cfg->kafka_topic, c->parts[i].id)->offset =
          c->parts[i].start;
  rd_kafka_error_t *e = l->cnt > 0 ? rd_kafka_incremental_assign(c->rk, l) : NULL;
  if (e) {
    log_error("kafka assign failed", LF_S("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
  } else if (l->cnt > 0) {
    for (int i = 0; i < c->nparts; i++)
      c->parts[i].assigned = true;
    log_info("kafka partitions assigned", LF_I("count", l->cnt), LF_I("total", c->nparts));
  }
  rd_kafka_topic_partition_list_destroy(l);
}

void consumer_reset(struct consumer *c) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(c->nparts + 1);
  for (int i = 0; i < c->nparts; i++)
    if (c->parts[i].assigned)
      rd_kafka_topic_partition_list_add(l, c->cfg->kafka_topic, c->parts[i].id);
  rd_kafka_error_t *e = l->cnt > 0 ? rd_kafka_incremental_unassign(c->rk, l) : NULL;
  if (e) {
    log_warn("kafka unassign failed", LF_S("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(l);
  /* Whatever was fetched for the old assignment is dropped. */
  rd_kafka_message_t *msgs[BATCH_READ];
  ssize_t n;
  while ((n = rd_kafka_consume_batch_queue(c->queue, 0, msgs, BATCH_READ)) > 0)
    for (ssize_t i = 0; i < n; i++)
      rd_kafka_message_destroy(msgs[i]);
  pthread_mutex_lock(&c->mu);
  c->nparts = 0;
  pthread_mutex_unlock(&c->mu);
  export_metrics(c);
}

/* ---- Can a replay be vouched for? ---- */

/* Is the topic compacted (cleanup.policy lists compact and not delete),
 * read with DescribeConfigs? 1 yes, 0 no, -1 unknown (why filled: error or
 * no answer in DESCRIBE_MS), -ECANCELED on stop. */
static int topic_compacted(struct consumer *c, char *why, size_t cap) {
  char e[256];
  int rc = -1;
  rd_kafka_ConfigResource_t *res =
      rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, c->cfg->kafka_topic);
  rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(c->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
  rd_kafka_AdminOptions_set_request_timeout(o, DESCRIBE_MS, e, sizeof e);
  rd_kafka_queue_t *q = rd_kafka_queue_new(c->rk);
  rd_kafka_DescribeConfigs(c->rk, &res, 1, o, q);
  rd_kafka_event_t *ev = NULL;
  int64_t deadline = clock_mono_ms() + DESCRIBE_MS + 500;
  while (ev == NULL && !atomic_load(c->stop) && clock_mono_ms() < deadline)
    ev = rd_kafka_queue_poll(q, 100);
  if (ev == NULL) {
    snprintf(why, cap, "%s", atomic_load(c->stop) ? "stopping" : "DescribeConfigs: no answer");
    rc = atomic_load(c->stop) ? -ECANCELED : -1;
  } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    snprintf(why, cap, "DescribeConfigs: %s", rd_kafka_event_error_string(ev));
  } else {
    size_t n = 0, nc = 0;
    const rd_kafka_ConfigResource_t **rs =
        rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &n);
    const rd_kafka_ConfigEntry_t **ce = n ? rd_kafka_ConfigResource_configs(rs[0], &nc) : NULL;
    snprintf(why, cap, "DescribeConfigs: %s",
             n == 0 ? "empty answer" : rd_kafka_ConfigResource_error_string(rs[0]) ?: "no cleanup.policy");
    for (size_t i = 0; n > 0 && rd_kafka_ConfigResource_error(rs[0]) == 0 && i < nc; i++) {
      const char *v = rd_kafka_ConfigEntry_value(ce[i]);
      if (strcmp(rd_kafka_ConfigEntry_name(ce[i]), "cleanup.policy") != 0 || v == NULL) continue;
      char list[128];
      bool compact = false, del = false;
      snprintf(list, sizeof list, "%s", v);
      for (char *sv = NULL, *t = strtok_r(list, ", ", &sv); t; t = strtok_r(NULL, ", ", &sv))
        compact |= strcmp(t, "compact") == 0, del |= strcmp(t, "delete") == 0;
      snprintf(why, cap, "cleanup.policy=%s", v);
      rc = compact && !del;
    }
  }
  if (ev) rd_kafka_event_destroy(ev);
  rd_kafka_queue_destroy(q);
  rd_kafka_AdminOptions_destroy(o);
  rd_kafka_ConfigResource_destroy(res);
  return rc;
}

/* Moves the replay trust to state, keeping the "replay" condition in step
 * (msg: its sentence; NULL clears it). */
static void history_state(struct consumer *c, int state, const char *level, const char *msg) {
  conditions_set(c->conds, "replay", msg ? level : NULL, msg);
  atomic_store(&c->partial, state == HIST_ALLOWED);
  c->history = state;
  c->history_level = msg ? level : NULL;
  snprintf(c->history_msg, sizeof c->history_msg, "%s", msg ? msg : "");
}

/* Refreshes every partition's watermarks (start of a replay: the catch-up
 * target). Returns 0 or -EIO. */
static int refresh_watermarks(struct consumer *c) {
  for (int i = 0; i < c->nparts && !atomic_load(c->stop); i++) {
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(c->rk, c->cfg->kafka_topic,
                                                             c->parts[i].id, &lo, &hi, 2000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      char why[512];
      last_error(c, rd_kafka_err2str(e), why, sizeof why);
      feed_state(c, FEED_UNREACHABLE, why);
      export_metrics(c); /* the partitions refreshed before this one */
      return -EIO;
    }
    pthread_mutex_lock(&c->mu);
    struct part *p = &c->parts[i];
    p->lo0 = lo, p->hw0 = hi, p->hw = hi;
    p->caught = hi <= lo || (p->next >= 0 && p->next >= hi);
    pthread_mutex_unlock(&c->mu);
  }
  export_metrics(c);
  return atomic_load(c->stop) ? -ECANCELED : 0;
}

int consumer_check_history(struct consumer *c) {
  char first[512] = "", msg[512], why[256];
  size_t o = 0;
  int rc = refresh_watermarks(c);
  if (rc != 0) return rc;
  for (int i = 0; i < c->nparts; i++) {
    const struct part *p = &c->parts[i];
    if (p->lo0 > 0 && o < sizeof first)
      o += (size_t)snprintf(first + o, sizeof first - o, "%s%d@%lld", o ? "," : "", p->id,
                            (long long)p->lo0);
  }
  /* An empty topic (total == 0) is replayed: the caught-up state is then
   * refused as an empty catalog (replay_publishable), whatever made it empty. */
  if (o == 0) {
    history_state(c, HIST_OK, NULL, NULL);
    return 0;
  }
  int compacted = topic_compacted(c, why, sizeof why);
  if (compacted == -ECANCELED) return compacted;
  if (compacted == 1) {
    if (c->history != HIST_OK)
      log_info("replaying a compacted topic whose first offsets are not 0",
               LF_S("topic", c->cfg->kafka_topic), LF_S("first_offsets", first),
               LF_S("policy", why));
    history_state(c, HIST_OK, NULL, NULL);
    return 0;
  }
  if (compacted < 0 && c->history == HIST_UNKNOWN)
    log_warn("topic cleanup.policy unknown: treated as not compacted",
             LF_S("topic", c->cfg->kafka_topic), LF_S("error", why));
  if (c->cfg->replay_allow_incomplete) {
    if (c->history != HIST_ALLOWED)
      log_error("REPLAY_ALLOW_INCOMPLETE=true: replaying a topic whose oldest events were "
                "deleted; the catalog may lack entities and keep deleted ones",
                LF_S("topic", c->cfg->kafka_topic), LF_S("first_offsets", first),
                LF_S("policy", why));
    snprintf(msg, sizeof msg,
             "REPLAY_ALLOW_INCOMPLETE=true: serving a replay of %.100s whose history starts after "
             "offset 0 (partition@first offset: %.150s); it may be incomplete",
             c->cfg->kafka_topic, first);
    history_state(c, HIST_ALLOWED, "warn", msg);
    return 0;
  }
  if (c->history != HIST_REFUSED)
    log_error("replay refused: the topic history is incomplete", LF_S("topic", c->cfg->kafka_topic),
              LF_S("first_offsets", first), LF_S("policy", why),
              LF_S("fix", "use warm mode (DATABASE_URL) or a compacted topic "
                          "(cleanup.policy=compact); REPLAY_ALLOW_INCOMPLETE=true serves a "
                          "partial catalog"));
  snprintf(msg, sizeof msg,
           "replay refused: topic %.100s lost its oldest events (partition@first offset: %.150s; "
           "%.100s); "
           "use DATABASE_URL (warm mode) or a compacted topic",
           c->cfg->kafka_topic, first, why);
  history_state(c, HIST_REFUSED, "error", msg);
  return -EAGAIN;
}

/* Replay start: waits (NOT_SERVING) until the topic exists, is reachable
 * and its history can be vouched for. Returns 0 or -ECANCELED. */
static int start_replay(struct consumer *c) {
  while (!atomic_load(c->stop)) {
    int rc = discover(c, RD_KAFKA_OFFSET_BEGINNING, 2000);
    if (rc >= 0 && c->nparts > 0 && (rc = consumer_check_history(c)) == 0) {
      return 0;
    }
    if (rc == -ECANCELED) break;
    for (int64_t until = clock_mono_ms() + (rc == -EIO ? 1000 : RECHECK_MS);
         clock_mono_ms() < until && !atomic_load(c->stop);)
      usleep(50000);
  }
  return -ECANCELED;
}

/* ---- Lost positions ---- */

/* The "partition_stalled" condition from the lost flags; why_stays: NULL
 * while a re-sync is pending, else why the flags stay. */
static void lost_condition(struct consumer *c, const char *why_stays) {
  char ids[256] = "", msg[512];
  size_t o = 0;
  pthread_mutex_lock(&c->mu);
  for (int id = 0; id < MAX_PARTITIONS && o < sizeof ids; id++)
    if (c->lost[id].on)
      o += (size_t)snprintf(ids + o, sizeof ids - o, "%s%d@%lld", o ? "," : "", id,
                            (long long)c->lost[id].offset);
  pthread_mutex_unlock(&c->mu);
  if (o == 0) {
    conditions_set(c->conds, "partition_stalled", NULL, NULL);
    return;
  }
  snprintf(msg, sizeof msg,
           "events deleted by retention before they were read (partition@offset: %s); %s", ids,
           why_stays ? why_stays : "re-syncing the whole state in the background");
  conditions_set(c->conds, "partition_stalled", "error", msg);
}

/* A partition's position was deleted from the log: flag it. */
static void position_lost(struct consumer *c, const rd_kafka_message_t *msg) {
  if (msg->partition < 0 || msg->partition >= MAX_PARTITIONS) return;
  pthread_mutex_lock(&c->mu);
  c->nlost += !c->lost[msg->partition].on;
  c->lost[msg->partition] = (struct lost){.on = true, .offset = msg->offset};
  pthread_mutex_unlock(&c->mu);
  export_metrics(c);
  log_error("kafka position lost: events were deleted before they were read",
            LF_S("topic", c->cfg->kafka_topic), LF_I("partition", msg->partition),
            LF_I("offset", msg->offset), LF_S("error", rd_kafka_message_errstr(msg)),
            LF_S("action", "re-syncing the whole state; the current snapshot keeps serving"));
  lost_condition(c, NULL);
}

void consumer_resynced(struct consumer *c) {
  bool any = false;
  pthread_mutex_lock(&c->mu);
  for (int id = 0; id < MAX_PARTITIONS; id++)
    any |= c->lost[id].on, c->lost[id].on = false;
  c->nlost = 0;
  pthread_mutex_unlock(&c->mu);
  if (!any) return;
  export_metrics(c);
  lost_condition(c, NULL);
}

void consumer_resume_lost(struct consumer *c) {
  rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++)
    if (c->lost[c->parts[i].id].on && c->parts[i].assigned)
      rd_kafka_topic_partition_list_add(l, c->cfg->kafka_topic, c->parts[i].id);
  pthread_mutex_unlock(&c->mu);
  /* A seek fails after the reset ("Erroneous state"); unassign + assign
   * works (the team's librdkafka notes). */
  rd_kafka_error_t *e = l->cnt ? rd_kafka_incremental_unassign(c->rk, l) : NULL;
  for (int i = 0; i < l->cnt; i++)
    l->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
  if (e == NULL && l->cnt) e = rd_kafka_incremental_assign(c->rk, l);
  if (e) {
    log_error("kafka re-assign failed", LF_S("error", rd_kafka_error_string(e)));
    rd_kafka_error_destroy(e);
  }
  rd_kafka_topic_partition_list_destroy(l);
  log_error("cannot re-sync after a lost position: the topic history is incomplete",
            LF_S("topic", c->cfg->kafka_topic),
            LF_S("fix", "restart with DATABASE_URL (warm mode) or use a compacted topic; the "
                        "catalog may lack changes until then"));
  lost_condition(c, "cannot re-sync: the topic history is incomplete (replay mode); reading on "
                    "from the first offset; restart with DATABASE_URL to recover");
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
  if (e) {
    metrics_add(c->m, MC_DLQ_FAILED, 1);
    log_warn("dead-letter produce failed", LF_S("error", rd_kafka_err2str(e)));
  }
}

/* Deletes what ev names; a versionless delete that may be a re-delivery
 * (below p's redo_end) leaves a tombstone its re-creation can replace. */
static int apply_delete(struct store_txn *t, const struct event *ev, const struct part *p,
                        int64_t offset) {
  size_t orglen = strlen(ev->org);
  if (ev->version == 0 && offset < p->redo_end)
    return store_delete_redelivered(t, ev->kind, ev->id, ev->org, orglen);
  return store_delete(t, ev->kind, ev->id, ev->org, orglen, ev->version);
}

/* A message decoded ahead of its turn (decode_group). */
struct decoded {
  struct part *p;  /* the message's partition; NULL: not assigned any more */
  int rc;          /* event_decode's (messages without an error only) */
  const char *why; /* its reason when rc != 0 */
  struct event ev; /* its event when rc == 0 (the record is owned here until applied) */
};

/* Events decoded and looked up together (see decode_group). */
#define APPLY_GROUP STORE_PREFETCH_MAX

/* Decodes the n (<= APPLY_GROUP) messages msgs into d, then asks the store
 * to fetch what their puts will read while the caller applies them in
 * order. Why: at 1M entities a put's map lookups are cache and TLB misses
 * (shard_probe was a fifth of the apply thread's replay profile); looked up
 * one at a time, each waits on memory alone. Decoding does not depend on
 * the state, so doing it first changes nothing but the timing. */
static void decode_group(struct consumer *c, struct batch *b, rd_kafka_message_t *const *msgs,
                         size_t n, struct decoded *d) {
  const struct cat_hdr *recs[APPLY_GROUP];
  struct part *last = NULL; /* messages come in runs of one partition */
  for (size_t i = 0; i < n; i++) {
    const rd_kafka_message_t *m = msgs[i];
    d[i].p = last != NULL && last->id == m->partition ? last : find_part(c, m->partition);
    last = d[i].p;
    recs[i] = NULL;
    if (d[i].p == NULL || m->err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    d[i].rc = event_decode(m->key, m->key ? m->key_len : 0, m->payload, m->payload ? m->len : 0,
                           &d[i].ev, &d[i].why);
    if (d[i].rc == 0 && d[i].ev.op == EVENT_UPSERT) recs[i] = d[i].ev.record;
  }
  if (b->t != NULL) store_txn_prefetch(b->t, n, recs);
}

/* Applies the decoded message d (msg) to the open batch, or rejects it. */
static void apply(struct consumer *c, struct store *st, struct batch *b, struct decoded *d,
                  const rd_kafka_message_t *msg) {
  const struct event *ev = &d->ev;
  if (d->rc != 0) {
    reject(c, msg, ev->kind_known ? (int)ev->kind : -1, d->why, ev->event_id);
    return;
  }
  if (b->t == NULL) {
    b->t = store_begin(st);
    b->opened_ms = clock_mono_ms();
  }
  int rc = ev->op == EVENT_UPSERT ? store_put(b->t, ev->record)
                                  : apply_delete(b->t, ev, d->p, msg->offset);
  metrics_event(c->m, ev->kind, rc == STORE_APPLIED ? METRICS_EVENT_APPLIED : METRICS_EVENT_STALE);
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

/* The next offset of p that a snapshot built now covers: the next one to
 * read, or before any was read the start offset (a warm load covers what
 * lies below its hand-off point) or the low watermark (nothing below it
 * exists any more). */
static int64_t covered_at(const struct part *p) {
  if (p->next >= 0) return p->next;
  return p->start >= 0 ? p->start : p->lo0;
}

/* Stamps t with the positions it covers (every known partition).
 * @locality the consumer thread (parts are only written there). */
static void stamp_positions(struct consumer *c, struct store_txn *t) {
  for (int i = 0; i < c->nparts; i++)
    c->pos[i] = (struct snap_pos){.partition = c->parts[i].id, .next = covered_at(&c->parts[i])};
  store_txn_set_positions(t, c->pos, (size_t)c->nparts);
}

void consumer_stamp_positions(struct consumer *c, struct store_txn *t) { stamp_positions(c, t); }

/* Publishes the batch's transaction and moves the offsets reported with
 * the digest to those the published state covers. */
static void publish(struct consumer *c, struct batch *b) {
  stamp_positions(c, b->t);
  uint64_t ns, v = publish_commit(b->t, c->m, &ns);
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++) {
    if (c->parts[i].next >= 0) c->parts[i].published = c->parts[i].next;
    c->parts[i].covered = covered_at(&c->parts[i]);
  }
  pthread_mutex_unlock(&c->mu);
  log_debug("snapshot published", LF_S("source", "kafka"), LF_I("version", v), LF_I("events", b->n),
            LF_D("publish_ms", (double)ns / 1e6));
  *b = (struct batch){0};
}

static void mark_position(struct consumer *c, struct part *p, int64_t next, bool eof) {
  pthread_mutex_lock(&c->mu);
  p->next = next;
  if (eof || next >= p->hw0) p->caught = true;
  if (eof && p->redo_end == INT64_MAX) p->redo_end = next;
  pthread_mutex_unlock(&c->mu);
}

/* Handles one message, decoded ahead in d (decode_group); returns true if
 * it reports a lost position. */
static bool handle(struct consumer *c, struct store *st, struct batch *b,
                   const rd_kafka_message_t *msg, struct decoded *d) {
  struct part *p = d->p;
  if (p == NULL) return false; /* left over from an assignment since dropped */
  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    apply(c, st, b, d, msg);
    mark_position(c, p, msg->offset + 1, false);
  } else if (msg->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
    mark_position(c, p, msg->offset, true);
  } else if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
    position_lost(c, msg);
    return true;
  } else {
    log_warn("kafka consume error", LF_S("error", rd_kafka_message_errstr(msg)));
  }
  return false;
}

/* May the caught-up state t of a replay, built from events messages of
 * which rejected were rejected, be published? Not if it holds no live
 * entity (an empty topic; every event rejected: KAFKA_TOPIC is probably
 * another service's topic; only deletes and tombstones) unless
 * ALLOW_EMPTY_CATALOG: catalogd would be Ready on an empty catalog. A refusal
 * is logged at error (again every RELOG_MS while it lasts) and shown in the
 * "replay" condition with the counts; the caller keeps reading and asks
 * again. Once the state holds entities the condition goes back to what the
 * history check said. */
static bool replay_publishable(struct consumer *c, struct store_txn *t, size_t events,
                               uint64_t rejected) {
  char msg[512];
  const char *topic = c->cfg->kafka_topic;
  if (store_txn_live(t) > 0 || c->cfg->allow_empty_catalog) {
    if (store_txn_live(t) == 0)
      log_info("replayed an empty catalog (ALLOW_EMPTY_CATALOG=true)", LF_S("topic", topic),
               LF_I("events", events), LF_I("rejected", rejected));
    if (c->empty_refused)
      conditions_set(c->conds, "replay", c->history_level,
                     c->history_level ? c->history_msg : NULL);
    c->empty_refused = false;
    return true;
  }
  int64_t now = clock_mono_ms();
  bool again = !c->empty_refused || now - c->empty_logged_ms > RELOG_MS;
  if (events == 0) {
    snprintf(msg, sizeof msg,
             "topic %.150s is empty: not serving an empty catalog (check KAFKA_TOPIC; set "
             "ALLOW_EMPTY_CATALOG=true if an empty catalog is expected)",
             topic);
    if (again)
      log_error("replay refused: the topic is empty", LF_S("topic", topic),
                LF_S("brokers", c->cfg->kafka_bootstrap),
                LF_S("fix", "check KAFKA_TOPIC, or set ALLOW_EMPTY_CATALOG=true if an empty "
                            "catalog is expected; catalogd serves once events arrive"));
  } else {
    const char *cause = rejected == events
                            ? "every event was rejected: KAFKA_TOPIC is probably not the "
                              "catalog's change topic"
                            : "the events were rejected or delete every entity they create: "
                              "check KAFKA_TOPIC";
    snprintf(msg, sizeof msg,
             "replay of topic %.120s read %zu events (%llu rejected) and holds no live entity: "
             "not serving an empty catalog; %s (set ALLOW_EMPTY_CATALOG=true if an empty catalog "
             "is expected)",
             topic, events, (unsigned long long)rejected, cause);
    if (again)
      log_error("replay refused: the replayed catalog is empty", LF_S("topic", topic),
                LF_S("brokers", c->cfg->kafka_bootstrap), LF_I("events", events),
                LF_I("rejected", rejected), LF_S("cause", cause),
                LF_S("fix", "check KAFKA_TOPIC, or set ALLOW_EMPTY_CATALOG=true if an empty "
                            "catalog is expected; catalogd serves once the state holds entities"));
  }
  conditions_set(c->conds, "replay", "error", msg);
  if (again) c->empty_logged_ms = now;
  c->empty_refused = true;
  return false;
}

/* ---- Freshness ---- */

#define FRESH_CHECK_NS (10 * 1000000LL)  /* high watermarks looked at this often */
#define PROBE_NS       (200 * 1000000LL) /* a broker reported down is asked this often */

/* Did a partition move past what the published snapshot covers without a
 * batch to publish it (only rejected events, an end of partition)? */
static bool positions_behind(const struct consumer *c) {
  for (int i = 0; i < c->nparts; i++)
    if (covered_at(&c->parts[i]) != c->parts[i].covered) return true;
  return false;
}

/* Is the published snapshot at the high watermark of every partition, as
 * last fetched (or past what was read, if that is further)? */
static bool published_caught_up(struct consumer *c) {
  bool all = c->nparts > 0;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; all && i < c->nparts; i++) {
    struct part *p = &c->parts[i];
    int64_t lo, hi;
    if (rd_kafka_get_watermark_offsets(c->rk, c->cfg->kafka_topic, p->id, &lo, &hi) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi > p->hw)
      p->hw = hi; /* the cached value of the last fetch: no network */
    all = p->covered >= (p->hw > p->next ? p->hw : p->next);
  }
  pthread_mutex_unlock(&c->mu);
  return all;
}

/* While the brokers are reported down, asks for metadata (brokers and the
 * topics already known: it never names, so never creates, a topic; at most
 * 100 ms, every PROBE_NS): an answer means the feed is back. (A watermark
 * query was tried: librdkafka 2.0 overruns its timeout while no broker is
 * up.) */
static void probe_feed(struct consumer *c, int64_t now) {
  if (atomic_load(&c->down_since) == 0 || now - c->probe_ns < PROBE_NS) return;
  c->probe_ns = now;
  const struct rd_kafka_metadata *md = NULL;
  if (rd_kafka_metadata(c->rk, 0, NULL, &md, 100) == RD_KAFKA_RESP_ERR_NO_ERROR)
    atomic_store(&c->down_since, 0);
  if (md) rd_kafka_metadata_destroy(md);
}

/* Keeps the store's staleness in step with the tail, every FRESH_CHECK_NS:
 * caught up while the brokers answer and the published snapshot is at
 * every high watermark fetched; otherwise behind since the last moment it
 * was (or since the brokers went away, if that was earlier). */
static void freshness(struct consumer *c, struct store *st) {
  int64_t now = clock_mono_ns();
  if (now - c->fresh_checked_ns < FRESH_CHECK_NS) return;
  c->fresh_checked_ns = now;
  probe_feed(c, now);
  int64_t down = atomic_load(&c->down_since);
  if (down == 0 && published_caught_up(c)) {
    c->last_caught_ns = now;
    store_set_stale_since(st, 0);
    return;
  }
  store_set_stale_since(st, down != 0 && down < c->last_caught_ns ? down : c->last_caught_ns);
}

void consumer_caught_up_at(struct consumer *c, int64_t mono_ns) {
  c->last_caught_ns = mono_ns > 0 ? mono_ns : 1; /* never 0: 0 says "caught up" */
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
 * start point; also a topic created after a warm start) and refreshes the
 * cached high watermarks for lag. */
static void refresh(struct consumer *c) {
  if (discover(c, RD_KAFKA_OFFSET_BEGINNING, 500) > 0) assign_new(c);
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++) {
    int64_t lo, hi;
    if (rd_kafka_get_watermark_offsets(c->rk, c->cfg->kafka_topic, c->parts[i].id, &lo, &hi) ==
            RD_KAFKA_RESP_ERR_NO_ERROR &&
        hi >= 0)
      c->parts[i].hw = hi;
  }
  pthread_mutex_unlock(&c->mu);
  export_metrics(c);
}

/* Replay progress: share of the events between the low and high watermarks
 * seen at start that were read; logged every PROGRESS_MS with the rate and
 * the estimated time left, and exported. */
static void replay_progress(struct consumer *c, size_t events, double seconds, bool log) {
  int64_t total = 0, done = 0;
  pthread_mutex_lock(&c->mu);
  for (int i = 0; i < c->nparts; i++) {
    const struct part *p = &c->parts[i];
    int64_t span = p->hw0 > p->lo0 ? p->hw0 - p->lo0 : 0;
    int64_t got = p->caught ? span : p->next > p->lo0 ? p->next - p->lo0 : 0;
    total += span, done += got < span ? got : span;
  }
  c->progress = total > 0 ? (double)done / (double)total : 1.0;
  double ratio = c->progress;
  pthread_mutex_unlock(&c->mu);
  export_metrics(c);
  double rate = seconds > 0 ? (double)events / seconds : 0;
  if (log)
    log_info("replay progress", LF_I("events", events), LF_D("events_per_s", rate),
             LF_D("ratio", ratio), LF_D("eta_s", rate > 0 ? (double)(total - done) / rate : -1));
}

/* A replay's progress while consumer_run catches up: its clock (monotonic
 * ms), the messages read and the rejections counted before it began. */
struct replay_run {
  int64_t t_start, next_progress;
  size_t replayed;
  uint64_t rejected0;
};

/* One pass of a replay that is catching up, after a read of n messages at
 * now: logs progress every PROGRESS_MS; once every partition has caught up,
 * publishes b's transaction unless it is an empty catalog (then reading goes
 * on and the question is asked again when messages arrive). Returns true
 * when the replay was published (a whole state: lost flags are cleared). */
static bool replay_step(struct consumer *c, struct store *st, struct batch *b, struct replay_run *r,
                        ssize_t n, int64_t now) {
  if (now >= r->next_progress && !c->empty_refused) {
    replay_progress(c, r->replayed, (double)(now - r->t_start) / 1e3, true);
    r->next_progress = now + PROGRESS_MS;
  }
  bool done = all_caught(c) && (n > 0 || !c->empty_refused);
  if (done && b->t == NULL) b->t = store_begin(st); /* every event may have been rejected */
  if (!done || !replay_publishable(c, b->t, r->replayed, c->rejected_logged - r->rejected0))
    return false;
  double s = (double)(now - r->t_start) / 1e3;
  publish(c, b);
  replay_progress(c, r->replayed, s, false);
  log_info("replay caught up", LF_I("messages", r->replayed), LF_D("seconds", s),
           LF_D("events_per_s", s > 0 ? (double)r->replayed / s : 0));
  consumer_resynced(c); /* a whole state */
  return true;
}

/* One pass of the tail after a read, at now (monotonic ms): publishes the
 * open batch once SYNC_MAX_BATCH_MS old (opening one if only the positions
 * moved: rejected events, so that callers waiting for them are released),
 * and keeps the staleness in step. */
static void tail_step(struct consumer *c, struct store *st, struct batch *b, int64_t now) {
  if (b->t == NULL && positions_behind(c)) {
    b->t = store_begin(st);
    b->opened_ms = now;
  }
  if (b->t != NULL && now - b->opened_ms >= c->cfg->sync_max_batch_ms) publish(c, b);
  freshness(c, st);
}

/* Applies the n messages of one read (decoded APPLY_GROUP ahead of their
 * puts) into b, publishing each full batch unless catching up; destroys
 * them. *replayed counts the events among them. Returns true if one
 * reported a lost position. @locality the consumer thread. */
static bool apply_read(struct consumer *c, struct store *st, struct batch *b,
                       rd_kafka_message_t **msgs, ssize_t n, bool catching, size_t *replayed) {
  bool lost = false;
  for (ssize_t i = 0; i < n; i += APPLY_GROUP) {
    struct decoded d[APPLY_GROUP];
    size_t g = n - i < APPLY_GROUP ? (size_t)(n - i) : APPLY_GROUP;
    decode_group(c, b, msgs + i, g, d);
    for (size_t j = 0; j < g; j++) {
      rd_kafka_message_t *m = msgs[i + (ssize_t)j];
      *replayed += m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
      lost |= handle(c, st, b, m, &d[j]);
      rd_kafka_message_destroy(m);
      /* A batch closes exactly at SYNC_MAX_BATCH_EVENTS (not at the end
       * of whatever librdkafka handed over), so batch boundaries are
       * exact (the events decoded ahead go to the next batch). */
      if (!catching && b->t != NULL && b->n >= (size_t)c->cfg->sync_max_batch_events) publish(c, b);
    }
  }
  return lost;
}

int consumer_run(struct consumer *c, struct store *st, bool replay, atomic_bool *stop,
                 void (*on_ready)(void *), void *arg) {
  rd_kafka_message_t *msgs[BATCH_READ];
  struct batch b = {0};
  bool catching = replay, lost = false;
  int64_t next_refresh = clock_mono_ms() + REFRESH_MS;
  struct replay_run r = {.rejected0 = c->rejected_logged};
  if (replay) {
    c->empty_refused = false;
    if (start_replay(c) != 0) return 0;
    r.t_start = clock_mono_ms(), r.next_progress = r.t_start + PROGRESS_MS;
    replay_progress(c, 0, 0, false);
  } else if (c->nparts == 0) {
    /* The topic was missing at the hand-off: whatever it holds when it
     * appears is newer than the load, so refresh() assigns its partitions
     * from the beginning. (Recording its high watermark here skipped the
     * events produced during the load.) */
    log_warn("tailing without start offsets: partitions are picked up as they appear",
             LF_S("topic", c->cfg->kafka_topic));
  }
  assign_new(c);
  while (!atomic_load(stop) && !lost) {
    ssize_t n = rd_kafka_consume_batch_queue(c->queue, 5, msgs, BATCH_READ);
    uint64_t applied = c->applied;
    lost |= apply_read(c, st, &b, msgs, n, catching, &r.replayed);
    if (c->applied != applied) stamp_applied(c);
    if (n > 0) export_metrics(c); /* positions, lag, lost flags, event time */
    int64_t now = clock_mono_ms();
    if (catching && !lost) {
      if (replay_step(c, st, &b, &r, n, now)) {
        catching = false;
        if (on_ready) on_ready(arg);
      }
    } else {
      tail_step(c, st, &b, now);
    }
    if (now >= next_refresh) {
      refresh(c);
      next_refresh = now + REFRESH_MS;
    }
    if (c->dlq) rd_kafka_poll(c->dlq, 0);
    /* Serves librdkafka's error callback (its main queue): a broker going
     * away is how freshness() learns the feed is down. */
    rd_kafka_poll(c->rk, 0);
  }
  if (b.t != NULL) {
    if (catching)
      store_abort(b.t); /* never publish half a replay */
    else
      publish(c, &b); /* what was read is true, gap or not */
  }
  if (lost) store_set_stale_since(st, c->last_caught_ns); /* events were missed */
  return lost && !atomic_load(stop) ? CONSUMER_LOST : 0;
}

/* ---- Checkpoints ---- */

/* Checks partition p (watermarks known) against a checkpoint naming next
 * for it (-1: not named) and sets where the tail starts. 0 or -ESTALE. */
static int start_one(struct consumer *c, struct part *p, int64_t next, char *why, size_t cap) {
  if (next < 0 && p->lo0 > 0) {
    snprintf(why, cap,
             "partition %d is not in the checkpoint and retention deleted its offsets "
             "below %lld",
             p->id, (long long)p->lo0);
    return -ESTALE;
  }
  if (next >= 0 && next < p->lo0) {
    snprintf(why, cap,
             "partition %d: the checkpoint covers offsets below %lld, the topic now "
             "starts at %lld (retention deleted events it needs)",
             p->id, (long long)next, (long long)p->lo0);
    return -ESTALE;
  }
  if (next > p->hw0) {
    snprintf(why, cap,
             "partition %d: the checkpoint is at offset %lld, past the topic's end %lld "
             "(another topic or cluster)",
             p->id, (long long)next, (long long)p->hw0);
    return -ESTALE;
  }
  pthread_mutex_lock(&c->mu);
  p->start = next < 0 ? RD_KAFKA_OFFSET_BEGINNING : next;
  p->published = next < 0 ? 0 : next;
  pthread_mutex_unlock(&c->mu);
  return 0;
}

int consumer_start_at(struct consumer *c, const struct consumer_pos *pos, int n, char *why,
                      size_t cap) {
  int rc = discover(c, RD_KAFKA_OFFSET_BEGINNING, 2000);
  if (rc < 0 || c->nparts == 0) {
    snprintf(why, cap, "%s", rc == -EIO ? "kafka unreachable" : "the topic does not exist");
    return rc < 0 ? rc : -ENOENT;
  }
  for (int i = 0; i < c->nparts; i++) {
    int64_t next = -1;
    for (int j = 0; j < n; j++)
      if (pos[j].partition == c->parts[i].id) next = pos[j].next;
    if ((rc = start_one(c, &c->parts[i], next, why, cap)) != 0) return rc;
  }
  return 0;
}

int consumer_published(struct consumer *c, struct consumer_pos *pos, int cap) {
  int n = -EAGAIN;
  /* A replay served under REPLAY_ALLOW_INCOMPLETE is no state to hand on:
   * a checkpoint or a peer would serve it without the warning. */
  if (atomic_load(&c->partial)) return n;
  pthread_mutex_lock(&c->mu);
  if (c->nparts > 0 && c->nlost == 0) {
    for (n = 0; n < c->nparts && n < cap; n++)
      pos[n] = (struct consumer_pos){.partition = c->parts[n].id,
                                     .next = c->parts[n].published < 0 ? 0 : c->parts[n].published};
  }
  pthread_mutex_unlock(&c->mu);
  return n;
}

/* ---- Observability ---- */

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
