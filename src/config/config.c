/*
 * config.c - environment parsing with validation and defaults.
 *
 * A bad value is an error at start-up, never a silent default: an operator
 * who typed GRPC_PORT=5005x wants to hear about it before traffic does.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

/* Reads an integer env var in [lo, hi] into *out (def if unset or empty).
 * Whitespace is refused on both sides alike (strtol would skip it in front
 * only). */
static int env_int(const char *name, int def, int lo, int hi, int *out, char *err, size_t cap) {
  const char *v = getenv(name);
  *out = def;
  if (v == NULL || *v == '\0') return 0;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno != 0 || *end != '\0' || isspace((unsigned char)v[0]) || x < lo || x > hi) {
    snprintf(err, cap, "%s=%s: expected an integer in [%d, %d]", name, v, lo, hi);
    return -EINVAL;
  }
  *out = (int)x;
  return 0;
}

static int env_bool(const char *name, bool def, bool *out, char *err, size_t cap) {
  const char *v = getenv(name);
  *out = def;
  if (v == NULL || *v == '\0') return 0;
  if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes")) {
    *out = true;
  } else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no")) {
    *out = false;
  } else {
    snprintf(err, cap, "%s=%s: expected true or false", name, v);
    return -EINVAL;
  }
  return 0;
}

/* Copies an env var (or def) into out; too long is an error. */
static int env_str(const char *name, const char *def, char *out, size_t outcap, char *err,
                   size_t cap) {
  const char *v = getenv(name);
  if (v == NULL) v = def;
  if (strlen(v) >= outcap) {
    snprintf(err, cap, "%s is longer than %zu bytes", name, outcap - 1);
    return -EINVAL;
  }
  strcpy(out, v);
  return 0;
}

/* Like env_str for a source setting (DATABASE_URL, KAFKA_*): surrounding
 * whitespace is dropped, because a Secret written with a trailing newline
 * is a common mistake whose symptom (a database named "postgres\n") hides
 * the cause; a value of only whitespace is then empty, i.e. unset. */
static int env_source(const char *name, const char *def, char *out, size_t outcap, char *err,
                      size_t cap) {
  int rc = env_str(name, def, out, outcap, err, cap);
  if (rc != 0) return rc;
  size_t a = 0, n = strlen(out);
  while (a < n && isspace((unsigned char)out[a]))
    a++;
  while (n > a && isspace((unsigned char)out[n - 1]))
    n--;
  memmove(out, out + a, n - a);
  out[n - a] = '\0';
  return 0;
}

/* Kafka's rule for topic names: 1-249 of [A-Za-z0-9._-]. */
static int topic_name(const char *name, const char *v, char *err, size_t cap) {
  size_t n = strlen(v);
  bool ok = n > 0 && n <= 249 &&
            strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                      "0123456789._-") == n;
  if (ok) return 0;
  snprintf(err, cap, "%s=%s: not a Kafka topic name (1-249 of letters, digits, '.', '_', '-')",
           name, v);
  return -EINVAL;
}

/* Accepts "::1" and "[::1]" alike and stores the plain address: brackets
 * are a "host:port" matter, added where such a string is written. */
static int listen_addr(const char *name, char *out, size_t outcap, char *err, size_t cap) {
  char raw[128];
  size_t n = strlen(out);
  if (n >= 2 && out[0] == '[' && out[n - 1] == ']') {
    memcpy(raw, out + 1, n - 2);
    raw[n - 2] = '\0';
  } else {
    strcpy(raw, out);
  }
  if (raw[0] == '\0' || strchr(raw, '[') || strchr(raw, ']') || strlen(raw) + 3 > outcap) {
    snprintf(err, cap, "%s=%s: expected an address such as 0.0.0.0, ::, 127.0.0.1 or [::1]", name,
             out);
    return -EINVAL;
  }
  snprintf(out, outcap, "%s", raw);
  return 0;
}

/* True when s is an IPv4 or IPv6 literal (no brackets). */
static bool ip_literal(const char *s) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* `--probe`'s own settings (read with the server's, so a typo fails the
 * server's start too, not only the probe). */
static int load_probe(struct config *c, char *err, size_t cap) {
  int rc = env_int("PROBE_TIMEOUT_MS", 3000, 1, 600000, &c->probe_timeout_ms, err, cap);
  rc = rc
           ?: env_str("GRPC_PROBE_CERT_FILE", "", c->probe_cert_file, sizeof c->probe_cert_file,
                      err, cap);
  rc = rc
           ?: env_str("GRPC_PROBE_KEY_FILE", "", c->probe_key_file, sizeof c->probe_key_file, err,
                      cap);
  if (rc == 0 && (c->probe_cert_file[0] != '\0') != (c->probe_key_file[0] != '\0')) {
    snprintf(err, cap, "GRPC_PROBE_CERT_FILE and GRPC_PROBE_KEY_FILE must be set together");
    rc = -EINVAL;
  }
  return rc;
}

static int load_grpc(struct config *c, char *err, size_t cap) {
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int rc = 0;
  rc = rc
           ?: env_str("GRPC_LISTEN_ADDRESS", "0.0.0.0", c->listen_addr, sizeof c->listen_addr, err,
                      cap);
  rc = rc ?: listen_addr("GRPC_LISTEN_ADDRESS", c->listen_addr, sizeof c->listen_addr, err, cap);
  rc = rc ?: env_int("GRPC_PORT", 50052, 0, 65535, &c->grpc_port, err, cap);
  rc = rc ?: env_int("GRPC_MAX_WORKERS", cpus > 0 ? (int)cpus : 2, 1, 256, &c->workers, err, cap);
  rc = rc ?: env_bool("GRPC_REFLECTION", false, &c->reflection, err, cap);
  rc = rc
           ?: env_int("GRPC_MAX_RECV_MESSAGE_BYTES", 4 << 20, 1024, 1 << 30, &c->max_recv_bytes,
                      err, cap);
  rc = rc
           ?: env_int("GRPC_MAX_CONCURRENT_STREAMS", 1000, 1, 1 << 20, &c->max_concurrent_streams,
                      err, cap);
  /* Connections are closed (GOAWAY, then the grace for their calls) at this
   * age so that long-lived clients reconnect and reach replicas added since;
   * 0 = never (INT_MAX in the core). */
  rc = rc
           ?: env_int("GRPC_MAX_CONNECTION_AGE_MS", 300000, 0, 1 << 30, &c->max_connection_age_ms,
                      err, cap);
  rc = rc
           ?: env_int("GRPC_MAX_CONNECTION_AGE_GRACE_MS", 30000, 0, 1 << 30,
                      &c->max_connection_age_grace_ms, err, cap);
  int mib = 256;
  rc = rc ?: env_int("GRPC_MAX_PENDING_REPLY_MB", 256, 1, 1 << 20, &mib, err, cap);
  c->max_pending_reply_bytes = (long)mib << 20;
  rc = rc ?: env_int("SHUTDOWN_GRACE_SECONDS", 10, 0, 3600, &c->shutdown_grace_s, err, cap);
  rc = rc ?: env_int("SHUTDOWN_DRAIN_MS", 5000, 0, 600000, &c->shutdown_drain_ms, err, cap);
  rc = rc ?: env_int("MAX_BATCH_IDS", 1000, 1, 100000, &c->max_batch_ids, err, cap);
  rc = rc ?: env_int("MAX_WAIT_MS", 1000, 0, 60000, &c->max_wait_ms, err, cap);
  /* Each waiting call holds ~12.5 KiB (its context and the core's call):
   * the cap bounds that memory. The default leaves room for the 10,000
   * at once that issue 14 targets. */
  rc = rc ?: env_int("PARK_MAX_CALLS", 20000, 0, 1000000, &c->park_max_calls, err, cap);
  rc = rc ?: env_str("GRPC_TLS_CERT_FILE", "", c->tls_cert_file, sizeof c->tls_cert_file, err, cap);
  rc = rc ?: env_str("GRPC_TLS_KEY_FILE", "", c->tls_key_file, sizeof c->tls_key_file, err, cap);
  rc = rc
           ?: env_str("GRPC_TLS_CLIENT_CA_FILE", "", c->tls_client_ca_file,
                      sizeof c->tls_client_ca_file, err, cap);
  if (rc == 0 && (c->tls_cert_file[0] != '\0') != (c->tls_key_file[0] != '\0')) {
    snprintf(err, cap, "GRPC_TLS_CERT_FILE and GRPC_TLS_KEY_FILE must be set together");
    rc = -EINVAL;
  }
  return rc ?: load_probe(c, err, cap);
}

static int load_ops(struct config *c, char *err, size_t cap) {
  char level[16], sample[32];
  int rc = env_int("ADMIN_PORT", 9090, 0, 65535, &c->admin_port, err, cap);
  rc = rc
           ?: env_str("ADMIN_LISTEN_ADDRESS", "0.0.0.0", c->admin_listen_addr,
                      sizeof c->admin_listen_addr, err, cap);
  rc = rc
           ?: listen_addr("ADMIN_LISTEN_ADDRESS", c->admin_listen_addr, sizeof c->admin_listen_addr,
                          err, cap);
  if (rc == 0 && !ip_literal(c->admin_listen_addr)) {
    /* admin binds a sockaddr: a host name would fail only at bind time */
    snprintf(err, cap,
             "ADMIN_LISTEN_ADDRESS=%s: expected an IP address such as 0.0.0.0, ::, "
             "127.0.0.1 or ::1",
             c->admin_listen_addr);
    rc = -EINVAL;
  }
  rc = rc
           ?: env_int("ADMIN_REQUEST_TIMEOUT_SECONDS", 10, 1, 3600, &c->admin_request_timeout_s,
                      err, cap);
  rc = rc ?: env_str("LOG_LEVEL", "info", level, sizeof level, err, cap);
  if (rc == 0 && level[0] == '\0') strcpy(level, "info"); /* empty = unset, like the numbers */
  if (rc == 0 && (c->log_level = log_level_parse(level)) < 0) {
    snprintf(err, cap, "LOG_LEVEL=%s: expected debug, info, warn or error", level);
    rc = -EINVAL;
  }
  rc = rc ?: env_str("ACCESS_LOG_SAMPLE", "0", sample, sizeof sample, err, cap);
  if (rc == 0 && sample[0] == '\0') strcpy(sample, "0");
  if (rc == 0) {
    char *end;
    c->access_log_sample = strtod(sample, &end);
    /* A plain decimal only (strtod also takes hex, "inf", "nan" and leading
     * blanks); the range test is written so that NaN fails too. */
    if (strspn(sample, "0123456789.") != strlen(sample) || *end != '\0' ||
        !(c->access_log_sample >= 0 && c->access_log_sample <= 1)) {
      snprintf(err, cap, "ACCESS_LOG_SAMPLE=%s: expected a number in [0, 1]", sample);
      rc = -EINVAL;
    }
  }
  return rc;
}

/* Reads the sources' and the writer's settings from the environment into c,
 * and SYNC_MODE's text into mode (modecap bytes, "" if unset). Returns 0, or
 * -EINVAL with the first bad variable described in err. */
static int load_sync_env(struct config *c, char *mode, size_t modecap, char *err, size_t cap) {
  int rc = env_source("DATABASE_URL", "", c->database_url, sizeof c->database_url, err, cap);
  rc = rc ?: env_int("PG_RETRY_MAX_SECONDS", 30, 1, 3600, &c->pg_retry_max_s, err, cap);
  rc = rc ?: env_int("PG_STALL_TIMEOUT_SECONDS", 30, 1, 3600, &c->pg_stall_timeout_s, err, cap);
  rc = rc
           ?: env_int("PG_PERMANENT_ERROR_ATTEMPTS", 5, 1, 1000000, &c->pg_permanent_attempts, err,
                      cap);
  rc =
      rc ?: env_int("WARM_LOAD_PROGRESS_SECONDS", 5, 1, 3600, &c->pg_progress_interval_s, err, cap);
  rc = rc ?: env_int("AUDIT_ROWS_PER_SECOND", 20, 0, 10000, &c->audit_rows_per_second, err, cap);
  rc = rc ?: env_int("AUDIT_GRACE_SECONDS", 60, 1, 86400, &c->audit_grace_s, err, cap);
  rc = rc ?: env_bool("REPLAY_ALLOW_INCOMPLETE", false, &c->replay_allow_incomplete, err, cap);
  rc = rc ?: env_bool("ALLOW_EMPTY_CATALOG", false, &c->allow_empty_catalog, err, cap);
  /* REPLAY_ALLOW_EMPTY: the knob's first name (replay only), still accepted. */
  bool alias = false;
  rc = rc ?: env_bool("REPLAY_ALLOW_EMPTY", false, &alias, err, cap);
  c->allow_empty_catalog |= alias;
  rc = rc
           ?: env_source("KAFKA_BOOTSTRAP_SERVERS", "", c->kafka_bootstrap,
                         sizeof c->kafka_bootstrap, err, cap);
  rc = rc
           ?: env_source("KAFKA_TOPIC", "catalog.changes", c->kafka_topic, sizeof c->kafka_topic,
                         err, cap);
  rc = rc
           ?: env_source("KAFKA_DLQ_TOPIC", "", c->kafka_dlq_topic, sizeof c->kafka_dlq_topic, err,
                         cap);
  rc =
      rc ?: env_int("SYNC_MAX_BATCH_EVENTS", 1000, 1, 1000000, &c->sync_max_batch_events, err, cap);
  rc = rc ?: env_int("SYNC_MAX_BATCH_MS", 5, 0, 60000, &c->sync_max_batch_ms, err, cap);
  return rc ?: env_str("SYNC_MODE", "", mode, modecap, err, cap);
}

/* Sets c->sync_mode from SYNC_MODE's text (or, when it is empty, from the
 * configured source) and refuses a mode the sources contradict: no source at
 * all, the demo beside a real source, warm or replay without its source.
 * Returns 0, or -EINVAL with the reason in err. */
static int pick_sync_mode(struct config *c, const char *mode, char *err, size_t cap) {
  if (mode[0] == '\0' && !c->database_url[0] && !c->kafka_bootstrap[0]) {
    /* Never fake data to real callers: e.g. a Secret that failed to mount
     * leaves DATABASE_URL empty. The demo must be asked for. */
    snprintf(err, cap,
             "no catalog source configured: set DATABASE_URL (warm load from PostgreSQL), "
             "KAFKA_BOOTSTRAP_SERVERS (replay the change topic), or SYNC_MODE=demo for the "
             "built-in demo catalog");
    return -EINVAL;
  }
  if (mode[0] == '\0')
    c->sync_mode = c->database_url[0] ? SYNC_WARM : SYNC_REPLAY;
  else if (!strcasecmp(mode, "warm"))
    c->sync_mode = SYNC_WARM;
  else if (!strcasecmp(mode, "replay"))
    c->sync_mode = SYNC_REPLAY;
  else if (!strcasecmp(mode, "demo"))
    c->sync_mode = SYNC_DEMO;
  else {
    snprintf(err, cap, "SYNC_MODE=%s: expected warm, replay or demo", mode);
    return -EINVAL;
  }
  if (c->sync_mode == SYNC_DEMO && (c->database_url[0] || c->kafka_bootstrap[0])) {
    /* A leftover SYNC_MODE=demo must not put demo data in front of callers
     * of a replica configured with a real source. */
    snprintf(err, cap,
             "SYNC_MODE=demo with %s set: the demo would hide the configured source; unset "
             "SYNC_MODE (or the source)",
             c->database_url[0] ? "DATABASE_URL" : "KAFKA_BOOTSTRAP_SERVERS");
    return -EINVAL;
  }
  if (c->sync_mode == SYNC_WARM && c->database_url[0] == '\0') {
    snprintf(err, cap, "SYNC_MODE=warm needs DATABASE_URL");
    return -EINVAL;
  }
  if (c->sync_mode == SYNC_REPLAY && c->kafka_bootstrap[0] == '\0') {
    snprintf(err, cap, "SYNC_MODE=replay needs KAFKA_BOOTSTRAP_SERVERS");
    return -EINVAL;
  }
  return 0;
}

/* CHECKPOINT_DIR and its knobs. A checkpoint is brought up to date from the
 * change topic, so it needs one; the demo's broker starts empty every time,
 * so its offsets would mean nothing at the next start. Returns 0, or
 * -EINVAL with the reason in err. */
static int load_checkpoint(struct config *c, char *err, size_t cap) {
  int rc = env_source("CHECKPOINT_DIR", "", c->checkpoint_dir, sizeof c->checkpoint_dir, err, cap);
  rc = rc
           ?: env_int("CHECKPOINT_INTERVAL_SECONDS", 60, 1, 86400, &c->checkpoint_interval_s, err,
                      cap);
  rc = rc ?: env_int("CHECKPOINT_KEEP", 2, 1, 100, &c->checkpoint_keep, err, cap);
  if (rc != 0 || c->checkpoint_dir[0] == '\0') return rc;
  if (c->sync_mode == SYNC_DEMO || c->kafka_bootstrap[0] == '\0') {
    snprintf(err, cap,
             "CHECKPOINT_DIR needs KAFKA_BOOTSTRAP_SERVERS (and is not for SYNC_MODE=demo): a "
             "checkpoint is brought up to date from the change topic");
    return -EINVAL;
  }
  struct stat st;
  if (stat(c->checkpoint_dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
    snprintf(err, cap, "CHECKPOINT_DIR=%s: not a directory", c->checkpoint_dir);
    return -EINVAL;
  }
  if (access(c->checkpoint_dir, W_OK | X_OK) != 0) {
    snprintf(err, cap, "CHECKPOINT_DIR=%s: not a writable directory (%s)", c->checkpoint_dir,
             strerror(errno));
    return -EINVAL;
  }
  return 0;
}

/* The bounds of a snapshot transfer, on both sides: a whole transfer's
 * duration, a minimum rate (bytes per second over each 10 s window, so a
 * peer trickling a byte now and then cannot hold a start-up or a pinned
 * snapshot for ever), and how long busy peers are retried. Defaults suit a
 * 1M-variant catalog (~250 MB) on a slow network: 10 minutes, 64 KiB/s.
 * Returns 0, or -EINVAL with err. */
static int load_transfer_bounds(struct config *c, char *err, size_t cap) {
  int rc = env_int("BOOTSTRAP_PEER_TRANSFER_TIMEOUT_MS", 600000, 1000, 86400000,
                   &c->bootstrap_peer_transfer_timeout_ms, err, cap);
  rc = rc
           ?: env_int("BOOTSTRAP_PEER_MIN_BYTES_PER_SECOND", 65536, 0, 1 << 30,
                      &c->bootstrap_peer_min_bps, err, cap);
  rc = rc
           ?: env_int("BOOTSTRAP_PEER_BUSY_WAIT_MS", 30000, 0, 3600000,
                      &c->bootstrap_peer_busy_wait_ms, err, cap);
  rc = rc
           ?: env_int("SNAPSHOT_TRANSFER_TIMEOUT_SECONDS", 600, 1, 86400,
                      &c->snapshot_transfer_timeout_s, err, cap);
  return rc
             ?: env_int("SNAPSHOT_MIN_BYTES_PER_SECOND", 65536, 0, 1 << 30, &c->snapshot_min_bps,
                        err, cap);
}

/* Is host[0, n) a host name or an IP literal (IPv6 in brackets)? Refuses
 * what a name lookup would only fail on later, where the runbook says a
 * failure may be ignored: a URL ("http://peer:9090"), a path, another
 * separator ("a:1;b:2"). */
static bool peer_host_ok(const char *host, size_t n) {
  bool bracketed = n >= 2 && host[0] == '[' && host[n - 1] == ']';
  if (bracketed) host++, n -= 2;
  if (n == 0) return false;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)host[i];
    bool ok = isalnum(ch) || ch == '.' || ch == '-' || ch == '_' ||
              (bracketed && (ch == ':' || ch == '%'));
    if (!ok) return false;
  }
  return true;
}

/* SNAPSHOT_SERVE, BOOTSTRAP_PEERS and its timeout. A peer's snapshot is
 * brought up to date from the change topic like a checkpoint, so fetching
 * one needs Kafka. Every entry of BOOTSTRAP_PEERS must be host:port (a
 * bracketed IPv6 literal allowed). Returns 0, or -EINVAL with err. */
static int load_peers(struct config *c, char *err, size_t cap) {
  int rc = env_bool("SNAPSHOT_SERVE", false, &c->snapshot_serve, err, cap);
  rc = rc
           ?: env_source("BOOTSTRAP_PEERS", "", c->bootstrap_peers, sizeof c->bootstrap_peers, err,
                         cap);
  rc = rc
           ?: env_int("BOOTSTRAP_PEER_TIMEOUT_MS", 5000, 100, 600000, &c->bootstrap_peer_timeout_ms,
                      err, cap);
  rc = rc ?: load_transfer_bounds(c, err, cap);
  if (rc != 0 || c->bootstrap_peers[0] == '\0') return rc;
  if (c->sync_mode == SYNC_DEMO || c->kafka_bootstrap[0] == '\0') {
    snprintf(err, cap,
             "BOOTSTRAP_PEERS needs KAFKA_BOOTSTRAP_SERVERS (and is not for SYNC_MODE=demo): a "
             "peer's snapshot is brought up to date from the change topic");
    return -EINVAL;
  }
  char list[sizeof c->bootstrap_peers], *save = NULL;
  strcpy(list, c->bootstrap_peers);
  int entries = 0;
  for (char *e = strtok_r(list, ", ", &save); e != NULL; e = strtok_r(NULL, ", ", &save)) {
    entries++;
    char *colon = strrchr(e, ':'), *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : 0;
    if (colon == NULL || !peer_host_ok(e, (size_t)(colon - e)) || end == colon + 1 ||
        *end != '\0' || port < 1 || port > 65535) {
      snprintf(err, cap,
               "BOOTSTRAP_PEERS: \"%.200s\" is not host:port (a name or an IP address, IPv6 in "
               "brackets, and a port; entries separated by commas, no URL)",
               e);
      return -EINVAL;
    }
  }
  if (entries == 0) { /* only separators: a typo, not "no peers" (that is unset) */
    snprintf(err, cap, "BOOTSTRAP_PEERS names no host:port (\"%.200s\"); unset it for no peers",
             c->bootstrap_peers);
    return -EINVAL;
  }
  return 0;
}

/* The writer's settings: the environment, the topic names, then the mode.
 * Returns 0, or -EINVAL with the first problem described in err. */
static int load_sync(struct config *c, char *err, size_t cap) {
  char mode[16];
  int rc = load_sync_env(c, mode, sizeof mode, err, cap);
  if (rc != 0) return rc;
  if (c->kafka_topic[0] == '\0') {
    snprintf(err, cap, "KAFKA_TOPIC is empty: name the change topic (default catalog.changes)");
    return -EINVAL;
  }
  if ((rc = topic_name("KAFKA_TOPIC", c->kafka_topic, err, cap)) != 0) return rc;
  if (c->kafka_dlq_topic[0] && (rc = topic_name("KAFKA_DLQ_TOPIC", c->kafka_dlq_topic, err, cap)))
    return rc;
  return pick_sync_mode(c, mode, err, cap) ?: load_checkpoint(c, err, cap)
                                            ?: load_peers(c, err, cap);
}

int config_load_transport(struct config *c, char *err, size_t cap) {
  memset(c, 0, sizeof *c);
  return load_grpc(c, err, cap);
}

int config_load(struct config *c, char *err, size_t cap) {
  memset(c, 0, sizeof *c);
  int rc = load_grpc(c, err, cap);
  rc = rc ?: load_ops(c, err, cap);
  return rc ?: load_sync(c, err, cap);
}
