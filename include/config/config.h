/*
 * config.h - catalogd's settings, read once from the environment.
 *
 * Every knob is an environment variable (twelve-factor, Helm-friendly). The
 * struct is filled at start-up and read-only afterwards, so any thread may
 * read it without synchronisation.
 */
#ifndef CATALOGD_CONFIG_H
#define CATALOGD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

enum sync_mode { SYNC_DEMO = 0, SYNC_WARM, SYNC_REPLAY };

struct config {
  /* gRPC */
  char listen_addr[128]; /* an IPv4 or IPv6 literal or a name, no brackets */
  int grpc_port;
  int workers;
  bool reflection;
  int max_recv_bytes;
  long max_pending_reply_bytes;
  int max_concurrent_streams;
  int max_connection_age_ms;       /* GOAWAY a connection this old (0 = never): clients spread */
  int max_connection_age_grace_ms; /* then give its calls this long before closing it */
  int shutdown_grace_s;
  int shutdown_drain_ms;
  int max_batch_ids;
  int max_wait_ms; /* a call waiting for a fresher snapshot (freshness headers) waits at most this
                    */
  int park_max_calls; /* at most this many calls wait at once (0: none may wait); more are
                         refused RESOURCE_EXHAUSTED */
  /* TLS (empty = plaintext) */
  char tls_cert_file[512], tls_key_file[512], tls_client_ca_file[512];
  /* Admin HTTP */
  char admin_listen_addr[128]; /* an IPv4 or IPv6 literal, no brackets */
  int admin_port;
  int admin_request_timeout_s; /* a request must be answered within this, trickled or not */
  /* Logs */
  int log_level;
  double access_log_sample;
  /* Sources */
  enum sync_mode sync_mode;
  char database_url[2048];
  int pg_retry_max_s;
  int pg_stall_timeout_s;       /* no COPY bytes for this long: abandon the load */
  int pg_permanent_attempts;    /* exit after this many attempts failing permanently */
  int pg_progress_interval_s;   /* "warm load progress" log period */
  int audit_rows_per_second;    /* consistency auditor's sampling rate; 0: off */
  int audit_grace_s;            /* held here, gone from PostgreSQL this long: divergent */
  bool replay_allow_incomplete; /* publish a replay of a truncated topic anyway */
  bool allow_empty_catalog;     /* a source with no live entity (empty topic or tables) may
                                   be served: ALLOW_EMPTY_CATALOG or REPLAY_ALLOW_EMPTY */
  char kafka_bootstrap[1024];
  char kafka_topic[256];
  char kafka_dlq_topic[256];
  int sync_max_batch_events;
  int sync_max_batch_ms;
  /* Checkpoints (empty dir = off) */
  char checkpoint_dir[1024];
  int checkpoint_interval_s;
  int checkpoint_keep;
  /* Peers: serve GET /snapshot on the admin port; fetch one at start */
  bool snapshot_serve;           /* SNAPSHOT_SERVE: every tenant's data, off by default */
  char bootstrap_peers[2048];    /* BOOTSTRAP_PEERS: host:port[,host:port...]; empty = off */
  int bootstrap_peer_timeout_ms; /* connect, and no byte for this long: the next peer */
  int bootstrap_peer_transfer_timeout_ms; /* a whole transfer at most this long: the next peer */
  int bootstrap_peer_min_bps;      /* body bytes per second over each 10 s window; 0: no check */
  int bootstrap_peer_busy_wait_ms; /* peers answering "busy" are retried this long; 0: never */
  int snapshot_transfer_timeout_s; /* GET /snapshot: a transfer is cut after this long */
  int snapshot_min_bps;            /* ... or below this many bytes/s over a 10 s window; 0: off */
  /* --probe: its deadline, and its client pair under mutual TLS (both or none) */
  int probe_timeout_ms;
  char probe_cert_file[512], probe_key_file[512];
};

/* Fills c from the environment (getenv), with defaults for what is unset.
 * Returns 0, or -EINVAL after writing a message naming the bad variable into
 * err (cap bytes). */
int config_load(struct config *c, char *err, size_t cap);

/* Only the gRPC transport's settings (address, port, TLS, limits, the
 * probe's), as config_load reads them; the catalog source is not asked for.
 * For `--probe`, which talks to a running server. Same returns. */
int config_load_transport(struct config *c, char *err, size_t cap);

#endif
