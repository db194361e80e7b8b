/*
 * main.c - catalogd's entry point: configuration, start-up order, signals
 * and the shutdown sequence.
 *
 * Signals are blocked before grpc_init() so every thread (ours and the
 * core's) inherits the mask, and are taken synchronously here with
 * sigwait(): no async-signal-safety concerns anywhere else.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>
#include <grpc/grpc.h>
#include <grpc/support/log.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "admin.h"
#include "build_info.h"
#include "checkpoint.h"
#include "clock.h"
#include "conditions.h"
#include "config.h"
#include "demo.h"
#include "demo_broker.h"
#include "audit.h"
#include "digest.h"
#include "health.h"
#include "log.h"
#include "probe.h"
#include "metrics.h"
#include "pg_redact.h"
#include "server.h"
#include "store.h"
#include "sync.h"

/* The gRPC core's own messages, as JSON lines like ours. */
static void grpc_log_json(gpr_log_func_args *a) {
  enum log_level lvl = a->severity == GPR_LOG_SEVERITY_ERROR  ? LOG_ERROR
                       : a->severity == GPR_LOG_SEVERITY_INFO ? LOG_INFO
                                                              : LOG_DEBUG;
  log_emit(lvl, a->message,
           (struct logf[]){LF_S("source", "grpc"), LF_S("file", a->file), LF_I("line", a->line)},
           3);
}

struct ready_ctx {
  struct health *health;
  double t0;
  _Atomic int fatal_code; /* set by on_fatal before it raises SIGUSR2 */
  atomic_bool stopping;   /* shutdown began: never turn SERVING again */
};

static void on_ready(void *arg) {
  struct ready_ctx *r = arg;
  if (atomic_load(&r->stopping)) return;
  health_set_serving(r->health, true);
  log_info("startup phase done", LF_S("phase", "ready"), LF_D("seconds", clock_mono_s() - r->t0));
  log_info("serving", );
}

/* The writer cannot go on: main's sigwait() takes SIGUSR2 and shuts down
 * with this exit code (the writer has logged why). */
static void on_fatal(void *arg, int exit_code) {
  struct ready_ctx *r = arg;
  atomic_store(&r->fatal_code, exit_code);
  kill(getpid(), SIGUSR2);
}

/* --version: ours, then the libraries' as loaded at run time (the shared
 * objects may differ from the headers built against). */
static void print_version(void) {
  int pq = PQlibVersion(); /* e.g. 150018: 15.18 */
  printf("catalogd %s (commit %s)\n"
         "gRPC core %s\n"
         "librdkafka %s\n"
         "libpq %d.%d\n",
         CATALOGD_VERSION, CATALOGD_COMMIT, grpc_version_string(), rd_kafka_version_str(),
         pq / 10000, pq % 10000);
}

static void usage(void) {
  printf("usage: catalogd [--digest | --probe | --version | --help]\n"
         "Serves catalog.CatalogService from memory. Configured by environment\n"
         "variables; see README.md (GRPC_PORT, DATABASE_URL, KAFKA_BOOTSTRAP_SERVERS, ...).\n"
         "  --digest  load the catalog as configured (warm load or replay), print its\n"
         "            state digest as JSON on stdout, and exit\n"
         "  --probe   ask the local server (GRPC_PORT, the TLS files) for its gRPC health:\n"
         "            exit 0 when SERVING, 1 otherwise (for a container HEALTHCHECK)\n"
         "  --version print the version, commit and library versions, and exit\n");
}

/* The writer's configuration: cfg itself, except for the demo, whose
 * embedded broker (started here, seeded with the demo catalog) becomes the
 * Kafka source of a replay: the sync layer knows sources, not demos.
 * *broker is the started broker or NULL; the caller destroys it after the
 * writer. Returns 0, or -EIO if the broker could not start (logged). */
static int sync_source(const struct config *cfg, struct config *out, struct demo_broker **broker) {
  *out = *cfg;
  *broker = NULL;
  if (cfg->sync_mode != SYNC_DEMO) return 0;
  *broker =
      demo_broker_start(cfg->kafka_topic, 3, out->kafka_bootstrap, sizeof out->kafka_bootstrap);
  if (*broker == NULL) return -EIO;
  out->sync_mode = SYNC_REPLAY;
  log_info("demo broker: publish an event with kcat",
           LF_S("example", "kcat -P -b <bootstrap> -t catalog.changes -K '\\t' (see README)"),
           LF_S("bootstrap", out->kafka_bootstrap));
  return 0;
}

/* --digest: the ready callback wakes main through the signal mask. */
static void on_digest_ready(void *arg) {
  (void)arg;
  kill(getpid(), SIGUSR1);
}

static int run_digest(const struct config *cfg, struct store *store, struct metrics *metrics,
                      struct conditions *conds, sigset_t *sigs) {
  struct sync *sy = NULL;
  struct ready_ctx fatal = {.health = NULL};
  struct config scfg;
  struct demo_broker *broker = NULL;
  int sig = 0;
  struct sync_deps yd = {.cfg = &scfg,
                         .store = store,
                         .metrics = metrics,
                         .conditions = conds,
                         .on_ready = on_digest_ready,
                         .on_fatal = on_fatal,
                         .arg = &fatal};
  int rc = sync_source(cfg, &scfg, &broker);
  if (rc == 0) rc = sync_start(&yd, &sy);
  if (rc != 0) {
    demo_broker_destroy(broker);
    return rc == -EINVAL ? 2 : 1;
  }
  sigwait(sigs, &sig);
  if (sig == SIGUSR1) {
    struct digest d;
    store_read_lock();
    digest_compute(store_current(store), &d);
    store_read_unlock();
    char *offs = sync_offsets_json(sy);
    char *json = digest_json(&d, offs);
    printf("%s\n", json);
    fflush(stdout);
    free(json);
    free(offs);
  }
  sync_stop(sy);
  sync_destroy(sy);
  demo_broker_destroy(broker);
  if (sig == SIGUSR2) return atomic_load(&fatal.fatal_code);
  return sig == SIGUSR1 ? 0 : 1;
}

/* The demo's grpcurl example, for the address and port really served: a
 * wildcard listen address is reached as localhost; over TLS, -insecure
 * (a demo: the certificate's name need not match localhost). */
static void log_demo_example(const struct config *c, int port) {
  const char *host = c->listen_addr;
  if (strcmp(host, "0.0.0.0") == 0 || strcmp(host, "::") == 0) host = "localhost";
  char ex[512];
  snprintf(ex, sizeof ex,
           "grpcurl %s -d '{\"organization_id\":\"" DEMO_ORG "\",\"variant_id\":\"" DEMO_VARIANT_ID
           "\"}' %s%s%s:%d catalog.CatalogService/ValidateVariant",
           c->tls_cert_file[0] ? "-insecure" : "-plaintext", strchr(host, ':') ? "[" : "", host,
           strchr(host, ':') ? "]" : "", port);
  log_info("demo catalog: try it", LF_S("example", ex));
}

static void log_start(const struct config *c, int port) {
  static const char *modes[] = {"demo", "warm", "replay"};
  char url[1024] = "";
  if (c->database_url[0]) pg_redact_conninfo(c->database_url, url, sizeof url);
  log_info("listening", LF_S("version", CATALOGD_VERSION), LF_S("commit", CATALOGD_COMMIT),
           LF_S("address", c->listen_addr), LF_I("grpc_port", port),
           LF_S("admin_address", c->admin_listen_addr), LF_I("admin_port", c->admin_port),
           LF_I("workers", c->workers), LF_B("reflection", c->reflection),
           LF_S("sync_mode", modes[c->sync_mode]),
           LF_S("tls", !c->tls_cert_file[0]       ? "off"
                       : c->tls_client_ca_file[0] ? "mutual"
                                                  : "on"),
           LF_S("database_url", url), LF_I("max_batch_ids", c->max_batch_ids),
           LF_I("max_connection_age_ms", c->max_connection_age_ms));
  if (c->sync_mode == SYNC_DEMO) log_demo_example(c, port);
}

/* Everything main owns, in start-up order. */
struct app {
  struct config cfg;
  sigset_t sigs;
  double t0;
  struct store *store;
  struct metrics *metrics;
  struct health *health;
  struct conditions *conditions;
  struct admin *admin;
  struct server *srv;
  struct config sync_cfg;     /* the writer's: cfg, or the demo broker as a replay source */
  struct demo_broker *broker; /* SYNC_MODE=demo only; outlives the writer */
  struct sync *sy;
  struct audit *audit;      /* the consistency auditor; NULL: off */
  struct ckpt_writer *ckpt; /* CHECKPOINT_DIR only */
  struct ready_ctx ready;
};

/* Blocks the signals we sigwait() for, in every thread to come. */
static void block_signals(sigset_t *sigs) {
  sigemptyset(sigs);
  sigaddset(sigs, SIGTERM);
  sigaddset(sigs, SIGINT);
  sigaddset(sigs, SIGUSR1);
  sigaddset(sigs, SIGUSR2);
  pthread_sigmask(SIG_BLOCK, sigs, NULL);
  signal(SIGPIPE, SIG_IGN);
}

/* admin_deps.offsets_json: the writer's offsets (src is the struct sync). */
static char *sync_offsets_of(void *src) { return sync_offsets_json(src); }

/* admin_deps.startup_json: a peer transfer in progress (src is the struct
 * sync). */
static char *sync_startup_of(void *src) { return sync_startup_json(src); }

/* admin_deps.snapshot_stream: the published snapshot in the checkpoint
 * format, with the offsets it covers (asked of the writer before the pin:
 * they may lag the snapshot, never lead it). src is the struct sync.
 * Returns 0, -EAGAIN (no offsets to vouch for now), or sink's error.
 * @locality an admin transfer thread (registered RCU reader). */
static int snapshot_stream_of(void *src, struct store *store,
                              int (*sink)(void *, const void *, size_t), void *sink_arg) {
  struct ckpt_meta meta = {0};
  int rc = sync_checkpoint_position(src, &meta);
  if (sink == NULL) { /* the question only */
    ckpt_meta_clear(&meta);
    return rc;
  }
  const struct snapshot *s = rc == 0 ? store_pin(store) : NULL;
  if (rc == 0 && s == NULL) rc = -EAGAIN;
  if (s != NULL) rc = ckpt_encode(s, &meta, sink, sink_arg);
  store_unpin(store, s);
  ckpt_meta_clear(&meta);
  return rc;
}

/* admin_deps.is_serving: the gRPC health status (arg is the struct health). */
static bool health_serving_of(void *h) { return health_is_serving(h); }

/* Starts the checkpoint writer when CHECKPOINT_DIR is set (after the sync
 * thread: it asks the writer for the offsets). Returns 0 or 1 (logged). */
static int start_checkpoints(struct app *a) {
  if (a->cfg.checkpoint_dir[0] == '\0') return 0;
  struct ckpt_writer_deps cd = {.dir = a->cfg.checkpoint_dir,
                                .interval_s = a->cfg.checkpoint_interval_s,
                                .keep = a->cfg.checkpoint_keep,
                                .store = a->store,
                                .metrics = a->metrics,
                                .position = sync_checkpoint_position,
                                .arg = a->sy};
  int rc = ckpt_writer_start(&cd, &a->ckpt);
  if (rc != 0) log_error("cannot start the checkpoint thread", LF_S("error", strerror(-rc)));
  return rc != 0;
}

/* Starts admin, gRPC and sync. Returns 0 or 1 (logged). */
static int app_start(struct app *a) {
  struct admin_deps ad = {.cfg = &a->cfg,
                          .store = a->store,
                          .metrics = a->metrics,
                          .conditions = a->conditions,
                          .is_serving = health_serving_of,
                          .is_serving_arg = a->health,
                          .offsets_json = sync_offsets_of,
                          .startup_json = sync_startup_of,
                          .snapshot_stream = snapshot_stream_of};
  if (admin_start(&ad, &a->admin) != 0) return 1;
  struct server_deps sd = {
      .cfg = &a->cfg, .store = a->store, .metrics = a->metrics, .health = a->health};
  int rc = server_start(&sd, &a->srv);
  if (rc != 0) {
    /* server_start logged the cause (address, file, reason) just before. */
    log_error("cannot start the gRPC server", LF_S("error", "see the error just before"));
    return 1;
  }
  log_start(&a->cfg, server_port(a->srv));
  log_info("startup phase done", LF_S("phase", "grpc"), LF_D("seconds", clock_mono_s() - a->t0));
  a->ready.health = a->health;
  a->ready.t0 = a->t0;
  struct sync_deps yd = {.cfg = &a->sync_cfg,
                         .store = a->store,
                         .metrics = a->metrics,
                         .conditions = a->conditions,
                         .on_ready = on_ready,
                         .on_fatal = on_fatal,
                         .arg = &a->ready};
  if ((rc = sync_source(&a->cfg, &a->sync_cfg, &a->broker)) == 0) rc = sync_start(&yd, &a->sy);
  if (rc == -EINVAL) return 2; /* logged: a bad KAFKA_* */
  if (rc != 0) {
    log_error("cannot start the sync thread", LF_S("error", strerror(-rc)));
    return 1;
  }
  admin_set_offsets_source(a->admin, a->sy);
  struct audit_deps aud = {.cfg = &a->cfg, .store = a->store, .metrics = a->metrics};
  if ((rc = audit_start(&aud, &a->audit)) != 0) {
    log_error("cannot start the consistency auditor", LF_S("error", strerror(-rc)));
    return 1;
  }
  return start_checkpoints(a);
}

/* The time the last checkpoint may take: what is left of the shutdown
 * budget the deployment plans for (SHUTDOWN_DRAIN_MS + SHUTDOWN_GRACE_SECONDS
 * from t0, the start of the shutdown), so that it never makes shutdown
 * longer than a full drain would. 0: no time left. */
static int last_checkpoint_budget_ms(const struct config *cfg, int64_t t0) {
  int64_t left = (int64_t)cfg->shutdown_drain_ms + (int64_t)cfg->shutdown_grace_s * 1000 -
                 (clock_mono_ms() - t0);
  return left < 1000 ? 0 : (int)left;
}

/* Stops in dependency order: gRPC first (health NOT_SERVING, drain), then
 * the writer, the last checkpoint, then admin; frees everything. */
static void app_stop(struct app *a) {
  int64_t t0 = clock_mono_ms();
  /* The writer first, without waiting: a load in progress must not go on
   * (nor turn SERVING) while the server drains. */
  atomic_store(&a->ready.stopping, true);
  sync_request_stop(a->sy);
  audit_request_stop(a->audit); /* a query in flight is dropped within 0.1 s */
  if (a->srv) server_stop(a->srv);
  if (a->sy) sync_stop(a->sy);
  audit_stop(a->audit);
  /* The last checkpoint: the writer is stopped, so the state and its
   * offsets hold still. Within the shutdown budget only: the interval's
   * checkpoints stand if the drain used it all. */
  if (a->ckpt != NULL) {
    int budget = last_checkpoint_budget_ms(&a->cfg, t0);
    if (budget == 0)
      log_info("no time left for the last checkpoint; the newest one stands",
               LF_I("drain_ms", a->cfg.shutdown_drain_ms),
               LF_I("grace_seconds", a->cfg.shutdown_grace_s));
    ckpt_writer_stop(a->ckpt, budget > 0, budget);
  }
  ckpt_writer_destroy(a->ckpt);
  admin_destroy(a->admin);
  server_destroy(a->srv);
  sync_destroy(a->sy);
  demo_broker_destroy(a->broker);
  store_destroy(a->store);
  health_destroy(a->health);
  metrics_destroy(a->metrics);
  conditions_destroy(a->conditions);
}

/*
 * Asks glibc to back the heap with transparent huge pages (madvise), which
 * it only reads from GLIBC_TUNABLES at process start: so the first start
 * adds the tunable and re-executes itself, once. Why: the snapshot is ~0.5 GB
 * of small records read at random; with 4 KiB pages the 1M-variant warm
 * load spent a third of its time in page faults (6.4 s against 4.2 s with
 * huge pages, docs/performance.md) and every lookup risks TLB misses. An
 * operator who sets glibc.malloc.hugetlb in GLIBC_TUNABLES (0 to disable)
 * decides instead. A failed exec just continues with small pages.
 *
 * It executes the binary's real path (readlink of /proc/self/exe), not the
 * link itself: the kernel names the process (and every thread it starts)
 * after the file executed, and "exe" in ps, top, pgrep and per-thread
 * tools helps nobody. A binary deleted since (an upgrade in place) reads
 * as "PATH (deleted)", which fails to exec: small pages then.
 */
static void heap_hugepages(char **argv) {
  const char *t = getenv("GLIBC_TUNABLES");
  if (t != NULL && strstr(t, "glibc.malloc.hugetlb") != NULL) return;
  char self[4096];
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len <= 0 || (size_t)len >= sizeof self - 1) return;
  self[len] = '\0';
  char buf[1024];
  int n = snprintf(buf, sizeof buf, "%s%sglibc.malloc.hugetlb=1", t ? t : "", t ? ":" : "");
  if (n < 0 || (size_t)n >= sizeof buf || setenv("GLIBC_TUNABLES", buf, 1) != 0) return;
  execv(self, argv);
}

int main(int argc, char **argv) {
  struct app a = {.t0 = clock_mono_s()};
  /* First of all: a SIGTERM in the first milliseconds must wait for
   * sigwait(), not kill the process with the default action. The mask and
   * a pending signal survive the re-exec below. */
  block_signals(&a.sigs);
  if (argc == 2 && strcmp(argv[1], "--version") == 0) {
    print_version();
    return 0;
  }
  char err[512];
  if (argc == 2 && strcmp(argv[1], "--probe") == 0) {
    /* Only 0 or 1: docker reserves 2 in a HEALTHCHECK. */
    if (config_load_transport(&a.cfg, err, sizeof err) != 0) {
      printf("UNHEALTHY bad configuration: %s\n", err);
      return 1;
    }
    return probe_run(&a.cfg);
  }
  heap_hugepages(argv);
  int sig = 0, rc;
  bool digest_mode = argc == 2 && strcmp(argv[1], "--digest") == 0;
  if (digest_mode) log_set_fd(STDERR_FILENO); /* stdout is the digest's */
  if (argc > 1 && !digest_mode) {
    usage();
    return strcmp(argv[1], "--help") == 0 ? 0 : 2;
  }
  if (config_load(&a.cfg, err, sizeof err) != 0) {
    log_error("bad configuration", LF_S("error", err));
    return 2;
  }
  log_set_level(a.cfg.log_level);
  if (a.cfg.sync_mode == SYNC_REPLAY && a.cfg.database_url[0])
    log_warn("DATABASE_URL is ignored: SYNC_MODE=replay rebuilds the catalog from the topic alone",
             LF_S("fix", "unset SYNC_MODE for the warm load, or DATABASE_URL"));
  gpr_set_log_function(grpc_log_json);
  grpc_init();
  rcu_init();
  a.store = store_new();
  a.metrics = metrics_new(a.cfg.workers);
  a.health = health_new();
  a.conditions = conditions_new();
  if (digest_mode) {
    rc = run_digest(&a.cfg, a.store, a.metrics, a.conditions, &a.sigs);
  } else if ((rc = app_start(&a)) == 0) {
    do
      sigwait(&a.sigs, &sig);
    while (sig == SIGUSR1);
    if (sig == SIGUSR2) rc = atomic_load(&a.ready.fatal_code);
    log_info("shutting down",
             LF_S("signal", sig == SIGTERM  ? "SIGTERM"
                            : sig == SIGINT ? "SIGINT"
                                            : "none (fatal)"),
             LF_I("grace_seconds", a.cfg.shutdown_grace_s));
  }
  app_stop(&a);
  grpc_shutdown();
  log_info("stopped", LF_I("exit_code", rc));
  return rc;
}
