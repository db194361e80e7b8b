/*
 * admin.c - admin HTTP endpoints on libmicrohttpd (see admin.h).
 *
 * libmicrohttpd runs without threads of its own here: our thread drives it
 * with MHD_run_wait(), so it can register as an RCU reader for its whole
 * life and unregister cleanly on exit. Every callback below runs on that
 * thread, so the connection table needs no lock.
 *
 * Probes must be answered whatever other clients do. libmicrohttpd's own
 * idle timeout restarts on every byte received, so a client trickling one
 * header byte a second holds a connection forever, and 64 of them used to
 * fill the connection limit. So each connection is tracked from accept to
 * close: a request must be answered within ADMIN_REQUEST_TIMEOUT_SECONDS of
 * the connection's start (or of the previous answer on a kept-alive one),
 * else the socket is shut down; and beyond ADMIN_MAX_CONNS a new connection
 * evicts the one that has waited longest for its request to complete.
 *
 * GET /snapshot (SNAPSHOT_SERVE, only while serving) streams the published
 * snapshot in the checkpoint format to a peer that bootstraps from it. The
 * encoder pushes bytes, libmicrohttpd pulls them, and the admin thread must
 * never wait for the encoder (probes): so each transfer has a thread of its
 * own that runs the encoder into a bounded ring (XFER_RING bytes; it waits
 * while the ring is full), and the response's content reader takes what is
 * there, or suspends the connection until the transfer thread resumes it.
 * At most XFER_MAX transfers run at once (503 with Retry-After beyond, so
 * the peer knows to come back), so peers cannot swamp a replica; a peer
 * that stops reading is cut by the request timeout like any client (the
 * deadline moves on with every piece sent). A transfer pins its snapshot,
 * and what the writer replaces meanwhile stays in memory until it ends: so
 * a transfer is also cut past SNAPSHOT_TRANSFER_TIMEOUT_SECONDS, or when a
 * window of XFER_RATE_WINDOW_S moved less than SNAPSHOT_MIN_BYTES_PER_SECOND
 * (a reader taking a few bytes now and then, which the request timeout
 * never cuts).
 */
#include "admin.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "conditions.h"
#include "digest.h"
#include "log.h"
#include "metrics.h"
#include "metrics_text.h"
#include "store.h"
#include "strbuf.h"
#include "xalloc.h"

/* Connections kept at once; one more evicts the longest-waiting. Probes,
 * scrapes and a few humans need far fewer; each costs an fd and ~32 KiB. */
#define ADMIN_MAX_CONNS 256
/* libmicrohttpd's own limit: room for the evicted ones it has yet to close. */
#define ADMIN_HARD_CONNS (ADMIN_MAX_CONNS + 64)
/* Snapshot transfers at once, and the bytes each may hold between its
 * encoder and the socket (plus the encoder's own block of about 64 KiB).
 * The ring is large and libmicrohttpd takes XFER_BLOCK at a time so that
 * the connection is rarely suspended for want of bytes: a resumed
 * connection waits for the next turn of the admin loop (admin_main).
 * 256 KiB / 64 KiB: a 1M-variant GET took 1.25-1.30 s; 4 MiB / 256 KiB:
 * 1.14-1.20 s (same minutes, curl to /dev/null). Once the encoder got
 * faster (inline sb_append) 1 MiB did as well as 4 (0.37-0.57 s against
 * 0.41-0.46 s) and keeps a serving peer's growth within its bound
 * (test_peer_bootstrap test_e: two transfers of a 20 MB catalog). */
#define XFER_MAX   2
#define XFER_RING  (1024 * 1024)
#define XFER_BLOCK (256 * 1024)
/* The window over which SNAPSHOT_MIN_BYTES_PER_SECOND is measured. */
#define XFER_RATE_WINDOW_S 10.0

/* One accepted connection (the socket context), in a list oldest first. */
struct aconn {
  struct aconn *prev, *next;
  int fd;
  double deadline; /* monotonic seconds: the pending request's answer is due */
  bool answering;  /* the handler ran; the answer is being sent */
  bool cut;        /* shut down by us; libmicrohttpd closes it next */
};

struct admin;

/* One /snapshot transfer: shared by its thread (the encoder, producing into
 * ring) and the admin thread (the content reader, consuming), under mu. */
struct xfer {
  struct admin *a;
  struct MHD_Connection *c;
  int slot; /* index in admin.xfers */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* the producer waits for room */
  char *ring;
  size_t head, len; /* ring[head..head+len) (mod XFER_RING) holds bytes to send */
  bool done;        /* the encoder returned (err is its result) */
  bool cancel;      /* the response is gone or admin stops: the encoder ends */
  bool suspended;   /* the connection waits for bytes; the producer resumes it */
  int err;
  uint64_t sent;
  double t0;
  /* Admin thread only: the rate window, and why we cut it (NULL: not cut). */
  double win_t0;
  uint64_t win_sent;
  const char *cut;
};

struct admin {
  struct admin_deps d;
  struct MHD_Daemon *mhd;
  pthread_t thread;
  atomic_bool stop;
  _Atomic(void *) offsets_src; /* the argument of d.offsets_json; NULL: none yet */
  struct aconn conns;          /* list sentinel */
  unsigned nconns;             /* tracked (not yet closed), cut ones included; admin thread only */
  /* libmicrohttpd's log lines, rate-limited (clients can cause them at will):
   * the start-up thread, then the admin thread only. */
  double mhd_log_window;
  unsigned mhd_log_lines, mhd_log_suppressed;
  struct xfer *xfers[XFER_MAX]; /* running transfers (admin thread; main once it is joined) */
};

static char *render_metrics(struct admin *a) {
  return metrics_text(a->d.metrics, a->d.store, a->d.conditions,
                      a->d.is_serving(a->d.is_serving_arg));
}

/* Appends the consistency auditor's figures to the digest's JSON object
 * (json ends with "}\n"): "audit":{"checks":{...},"consistency_ratio":r}
 * with null for r before the first check. Returns the new string; json is
 * freed. */
static char *with_audit(struct admin *a, char *json) {
  uint64_t eq = metrics_get(a->d.metrics, MC_AUDIT_EQUAL);
  uint64_t lag = metrics_get(a->d.metrics, MC_AUDIT_LAGGING);
  uint64_t div = metrics_get(a->d.metrics, MC_AUDIT_DIVERGENT);
  uint64_t window = metrics_get(a->d.metrics, MC_AUDIT_WINDOW);
  char ratio[32] = "null";
  if (window > 0)
    snprintf(ratio, sizeof ratio, "%.6f",
             (double)metrics_get(a->d.metrics, MC_AUDIT_RATIO_PPM) / 1e6);
  char *end = strrchr(json, '}');
  if (end == NULL) return json;
  *end = '\0';
  struct strbuf sb = {0};
  sb_printf(&sb,
            "%s,\"audit\":{\"checks\":{\"equal\":%llu,\"lagging\":%llu,\"divergent\":%llu},"
            "\"window\":%llu,\"consistency_ratio\":%s}}\n",
            json, (unsigned long long)eq, (unsigned long long)lag, (unsigned long long)div,
            (unsigned long long)window, ratio);
  free(json);
  return sb_take(&sb);
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
  void *src = atomic_load(&a->offsets_src);
  char *offs = src && a->d.offsets_json ? a->d.offsets_json(src) : NULL;
  char *out = with_audit(a, digest_json(&d, offs));
  free(offs);
  return out;
}

/* /readyz's body: {"status":"serving"|"not serving","staleness_seconds":s,
 * "conditions":[...]} (staleness: see catalogd_staleness_seconds).
 * The status is the probe's answer; the conditions say what an operator
 * should know either way (e.g. a stalled partition while still serving). */
static char *render_ready(struct admin *a, bool serving) {
  char *cs = conditions_json(a->d.conditions);
  struct strbuf sb = {0};
  double stale = (double)store_staleness_ns(a->d.store, clock_mono_ns()) / 1e9;
  void *src = atomic_load(&a->offsets_src);
  char *startup = src && a->d.startup_json ? a->d.startup_json(src) : NULL;
  sb_printf(&sb, "{\"status\":\"%s\",\"staleness_seconds\":%.3f,",
            serving ? "serving" : "not serving", stale);
  if (startup != NULL) sb_printf(&sb, "\"startup\":%s,", startup);
  sb_printf(&sb, "\"conditions\":%s}\n", cs);
  free(startup);
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

/* A text/plain answer with a static body and one more header (name,
 * value): the 503 with Retry-After, the 405 with Allow. */
static enum MHD_Result reply_static(struct MHD_Connection *c, unsigned status, const char *body,
                                    const char *name, const char *value) {
  struct MHD_Response *r =
      MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(r, "Content-Type", "text/plain");
  MHD_add_response_header(r, name, value);
  enum MHD_Result rc = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return rc;
}

/* 405 with the methods the resource allows (RFC 9110 asks for Allow). */
static enum MHD_Result reply_not_allowed(struct MHD_Connection *c, const char *allow) {
  return reply_static(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "Allow", allow);
}

/* Shuts a connection's socket down; libmicrohttpd sees EOF on its next
 * poll and closes it (closing the fd ourselves would race its reuse). */
static void conn_cut(struct aconn *ac) {
  ac->cut = true;
  shutdown(ac->fd, SHUT_RDWR);
}

/* Evicts the connection whose request has waited longest (not one being
 * answered, not `keep`). @locality admin thread. */
static void conn_evict_oldest(struct admin *a, const struct aconn *keep) {
  struct aconn *victim = NULL;
  for (struct aconn *p = a->conns.next; p != &a->conns; p = p->next)
    if (p != keep && !p->cut && !p->answering && (!victim || p->deadline < victim->deadline))
      victim = p;
  if (victim == NULL) return;
  conn_cut(victim);
  metrics_add(a->d.metrics, MC_ADMIN_CUT_EVICTED, 1);
}

static struct aconn *conn_of(struct MHD_Connection *c);
static void xfer_cut(struct admin *a, struct xfer *x, const char *why);

#define XFER_STALLED "stalled: nothing taken for ADMIN_REQUEST_TIMEOUT_SECONDS"

/* The /snapshot transfer answered on ac, or NULL. @locality admin thread. */
static struct xfer *xfer_on(struct admin *a, const struct aconn *ac) {
  for (int i = 0; i < XFER_MAX; i++)
    if (a->xfers[i] != NULL && conn_of(a->xfers[i]->c) == ac) return a->xfers[i];
  return NULL;
}

/* Cuts every connection past its deadline; one that carries a /snapshot
 * transfer (a reader that stopped: the socket's buffers full, nothing
 * taken) is cut as a transfer, logged and counted. @locality admin thread. */
static void conn_sweep(struct admin *a) {
  double now = clock_mono_s();
  for (struct aconn *p = a->conns.next; p != &a->conns; p = p->next)
    if (!p->cut && now > p->deadline) {
      struct xfer *x = xfer_on(a, p);
      if (x != NULL && x->cut == NULL) xfer_cut(a, x, XFER_STALLED);
      if (!p->cut) conn_cut(p);
      metrics_add(a->d.metrics, MC_ADMIN_CUT_DEADLINE, 1);
    }
}

/* MHD_OPTION_NOTIFY_CONNECTION: tracks a connection from accept to close.
 * @locality admin thread. */
static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
  struct admin *a = cls;
  if (code == MHD_CONNECTION_NOTIFY_STARTED) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    struct aconn *ac = xcalloc(1, sizeof *ac);
    ac->fd = ci ? ci->connect_fd : -1;
    ac->deadline = clock_mono_s() + a->d.cfg->admin_request_timeout_s;
    ac->prev = a->conns.prev, ac->next = &a->conns;
    a->conns.prev->next = ac, a->conns.prev = ac;
    *socket_context = ac;
    metrics_set(a->d.metrics, MC_ADMIN_CONNECTIONS, ++a->nconns);
    if (a->nconns > ADMIN_MAX_CONNS) conn_evict_oldest(a, ac);
  } else if (code == MHD_CONNECTION_NOTIFY_CLOSED && *socket_context != NULL) {
    struct aconn *ac = *socket_context;
    ac->prev->next = ac->next, ac->next->prev = ac->prev;
    metrics_set(a->d.metrics, MC_ADMIN_CONNECTIONS, --a->nconns);
    free(ac);
    *socket_context = NULL;
  }
}

/* The tracked state of c (NULL if unknown). */
static struct aconn *conn_of(struct MHD_Connection *c) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
  return ci ? ci->socket_context : NULL;
}

/* MHD_OPTION_NOTIFY_COMPLETED: the answer is out; a kept-alive connection's
 * next request gets a full budget again. @locality admin thread. */
static void on_completed(void *cls, struct MHD_Connection *c, void **req,
                         enum MHD_RequestTerminationCode toe) {
  struct admin *a = cls;
  struct aconn *ac = conn_of(c);
  (void)req, (void)toe;
  if (ac == NULL) return;
  ac->answering = false;
  ac->deadline = clock_mono_s() + a->d.cfg->admin_request_timeout_s;
}

/* libmicrohttpd's own idle timeout is only a backstop, this much later than
 * ADMIN_REQUEST_TIMEOUT_SECONDS: the sweep (conn_sweep), which logs and
 * counts the cut and cancels a /snapshot encoder, is the one owner of idle
 * cuts. With both at the same value, libmicrohttpd sometimes closed a
 * stalled /snapshot reader first, unlogged. */
#define MHD_BACKSTOP_S 5

#define MHD_LOG_WINDOW_S 10.0
#define MHD_LOG_LINES    5

/* MHD_OPTION_EXTERNAL_LOGGER: libmicrohttpd's messages (e.g. a failed
 * bind) as JSON lines like ours, never raw text on stderr. Clients can make
 * libmicrohttpd complain at will (a closed socket mid-request, oversized
 * headers), so at most MHD_LOG_LINES lines per MHD_LOG_WINDOW_S are written;
 * the next one written says how many were dropped. */
static void mhd_log_json(void *cls, const char *fmt, va_list ap) {
  struct admin *a = cls;
  double now = clock_mono_s();
  if (now - a->mhd_log_window >= MHD_LOG_WINDOW_S) a->mhd_log_window = now, a->mhd_log_lines = 0;
  if (a->mhd_log_lines >= MHD_LOG_LINES) {
    a->mhd_log_suppressed++;
    return;
  }
  a->mhd_log_lines++;
  char buf[512];
  vsnprintf(buf, sizeof buf, fmt, ap);
  size_t n = strlen(buf);
  while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
    buf[--n] = '\0';
  log_warn("libmicrohttpd", LF_S("source", "libmicrohttpd"), LF_S("message", buf),
           LF_I("suppressed", a->mhd_log_suppressed));
  a->mhd_log_suppressed = 0;
}

/* ---- GET /snapshot ---- */

/* Resumes x's connection if it waits for bytes. Called with x->mu held:
 * the reader suspends under it too, so a resume never precedes its suspend.
 * @locality a transfer thread, or main in admin_destroy. */
static void xfer_wake(struct xfer *x) {
  if (!x->suspended) return;
  x->suspended = false;
  MHD_resume_connection(x->c);
}

/* The encoder's sink: copies p into the ring, waiting while it is full.
 * Returns 0, or -ECANCELED once the transfer is cancelled. @locality the
 * transfer thread. */
static int xfer_push(void *arg, const void *p, size_t n) {
  struct xfer *x = arg;
  const char *b = p;
  pthread_mutex_lock(&x->mu);
  while (n > 0) {
    while (x->len == XFER_RING && !x->cancel)
      pthread_cond_wait(&x->cv, &x->mu);
    if (x->cancel) break;
    size_t at = (x->head + x->len) % XFER_RING, k = XFER_RING - x->len;
    if (k > XFER_RING - at) k = XFER_RING - at;
    if (k > n) k = n;
    memcpy(x->ring + at, b, k);
    x->len += k, b += k, n -= k;
    xfer_wake(x);
  }
  int rc = x->cancel ? -ECANCELED : 0;
  pthread_mutex_unlock(&x->mu);
  return rc;
}

/* The transfer thread: runs the encoder into the ring, then says it is
 * done (waking the reader). */
#define XFER_NICE 10 /* as the checkpoint thread's: the serving replica's calls come first */

static void *xfer_main(void *arg) {
  struct xfer *x = arg;
  /* A peer's copy may take longer on a busy replica rather than its gRPC
   * workers' calls (Linux: per thread). Back-to-back transfers of 1M
   * variants raised the replica's p99 from 2.7 to 11.7 ms at the median of
   * 4 rounds before (docs/performance.md, "The serving peer's latency"). */
  if (setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), XFER_NICE) != 0)
    log_debug("snapshot transfer thread keeps its priority", LF_S("error", strerror(errno)));
  store_reader_register(); /* the encoder pins the snapshot */
  void *src = atomic_load(&x->a->offsets_src);
  int rc = src ? x->a->d.snapshot_stream(src, x->a->d.store, xfer_push, x) : -EAGAIN;
  store_reader_unregister();
  pthread_mutex_lock(&x->mu);
  x->done = true, x->err = rc;
  xfer_wake(x);
  pthread_mutex_unlock(&x->mu);
  return NULL;
}

/* MHD_ContentReaderCallback: what the ring holds, else the end, else
 * suspends the connection until the producer resumes it. @locality admin
 * thread. */
static ssize_t xfer_read(void *cls, uint64_t pos, char *buf, size_t max) {
  struct xfer *x = cls;
  (void)pos;
  pthread_mutex_lock(&x->mu);
  ssize_t out = 0;
  if (x->len > 0) {
    size_t k = XFER_RING - x->head;
    if (k > x->len) k = x->len;
    if (k > max) k = max;
    memcpy(buf, x->ring + x->head, k);
    x->head = (x->head + k) % XFER_RING, x->len -= k, x->sent += k;
    metrics_add(x->a->d.metrics, MC_SNAP_XFER_BYTES, k);
    pthread_cond_signal(&x->cv);
    out = (ssize_t)k;
    struct aconn *ac = conn_of(x->c); /* progress: a slow but moving peer is not cut */
    if (ac != NULL) ac->deadline = clock_mono_s() + x->a->d.cfg->admin_request_timeout_s;
  } else if (x->done) {
    out = x->err == 0 ? MHD_CONTENT_READER_END_OF_STREAM : MHD_CONTENT_READER_END_WITH_ERROR;
  } else {
    x->suspended = true;
    MHD_suspend_connection(x->c);
  }
  pthread_mutex_unlock(&x->mu);
  return out;
}

/* Stops x's thread (cancelling its encoder) and joins it. @locality admin
 * thread, or main once the admin thread is joined. */
static void xfer_join(struct xfer *x) {
  pthread_mutex_lock(&x->mu);
  x->cancel = true;
  pthread_cond_signal(&x->cv);
  pthread_mutex_unlock(&x->mu);
  pthread_join(x->thread, NULL);
  x->thread = 0;
}

/* MHD_ContentReaderFreeCallback: the response is done (sent, failed, or its
 * connection closed). Logs the outcome and frees the transfer. @locality
 * admin thread (or main, from MHD_stop_daemon). */
static void xfer_free(void *cls) {
  struct xfer *x = cls;
  if (x->thread) xfer_join(x);
  bool whole = x->done && x->err == 0 && x->len == 0 && x->cut == NULL;
  metrics_add(x->a->d.metrics,
              whole    ? MC_SNAP_XFER_SENT
              : x->cut ? MC_SNAP_XFER_CUT
                       : MC_SNAP_XFER_FAILED,
              1);
  /* The encoder has returned (joined above): its pin is released. */
  log_info("snapshot transfer ended",
           LF_S("outcome", whole    ? "sent"
                           : x->cut ? "cut"
                                    : "incomplete"),
           LF_I("bytes", x->sent), LF_D("seconds", clock_mono_s() - x->t0),
           LF_S("error", x->err ? strerror(-x->err) : ""));
  x->a->xfers[x->slot] = NULL;
  pthread_cond_destroy(&x->cv);
  pthread_mutex_destroy(&x->mu);
  free(x->ring);
  free(x);
}

/* A free transfer slot, or -1. */
static int xfer_slot(const struct admin *a) {
  for (int i = 0; i < XFER_MAX; i++)
    if (a->xfers[i] == NULL) return i;
  return -1;
}

/* 503 for a /snapshot beyond XFER_MAX: Retry-After tells the peer it is
 * busy, not unready, and worth asking again shortly (BOOTSTRAP_PEER_BUSY_
 * WAIT_MS on its side) rather than warm-loading from PostgreSQL. */
static enum MHD_Result reply_busy(struct admin *a, struct MHD_Connection *c) {
  metrics_add(a->d.metrics, MC_SNAP_XFER_BUSY, 1);
  return reply_static(c, MHD_HTTP_SERVICE_UNAVAILABLE, "busy: transfers at their limit\n",
                      "Retry-After", "1");
}

/* The peer's address, for logs ("?" if unknown). */
static void client_addr(struct MHD_Connection *c, char *out, size_t cap) {
  const union MHD_ConnectionInfo *ci =
      MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
  snprintf(out, cap, "?");
  if (ci == NULL || ci->client_addr == NULL) return;
  char ip[INET6_ADDRSTRLEN] = "?";
  const struct sockaddr *sa = ci->client_addr;
  if (sa->sa_family == AF_INET)
    inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof ip);
  else if (sa->sa_family == AF_INET6)
    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof ip);
  snprintf(out, cap, "%s", ip);
}

/* Cuts transfer x (why: a static reason): its encoder is cancelled (so the
 * pin goes now, not when libmicrohttpd gets round to the socket) and its
 * socket shut down. Logged as a warning. @locality admin thread. */
static void xfer_cut(struct admin *a, struct xfer *x, const char *why) {
  char peer[INET6_ADDRSTRLEN + 2];
  client_addr(x->c, peer, sizeof peer);
  x->cut = why;
  pthread_mutex_lock(&x->mu);
  x->cancel = true;
  pthread_cond_signal(&x->cv);
  uint64_t sent = x->sent;
  bool suspended = x->suspended;
  pthread_mutex_unlock(&x->mu);
  struct aconn *ac = suspended ? NULL : conn_of(x->c); /* a suspended one is resumed by the
                                                          encoder's end */
  if (ac != NULL && !ac->cut) conn_cut(ac);
  log_warn("snapshot transfer cut", LF_S("why", why), LF_S("peer", peer), LF_I("bytes", sent),
           LF_D("seconds", clock_mono_s() - x->t0),
           LF_I("timeout_seconds", a->d.cfg->snapshot_transfer_timeout_s),
           LF_I("min_bytes_per_second", a->d.cfg->snapshot_min_bps));
}

/* Cuts every transfer past SNAPSHOT_TRANSFER_TIMEOUT_SECONDS, or whose
 * rate window just ended below
 * SNAPSHOT_MIN_BYTES_PER_SECOND while the reader, not our encoder, was what
 * it waited for (a suspended connection waits for the encoder).
 * @locality admin thread. */
static void xfer_sweep(struct admin *a) {
  double now = clock_mono_s();
  const struct config *cfg = a->d.cfg;
  for (int i = 0; i < XFER_MAX; i++) {
    struct xfer *x = a->xfers[i];
    if (x == NULL || x->cut != NULL) continue;
    pthread_mutex_lock(&x->mu);
    uint64_t sent = x->sent;
    bool waits_for_us = x->suspended;
    pthread_mutex_unlock(&x->mu);
    if (now - x->t0 > cfg->snapshot_transfer_timeout_s) {
      xfer_cut(a, x, "longer than SNAPSHOT_TRANSFER_TIMEOUT_SECONDS");
      continue;
    }
    double span = now - x->win_t0;
    if (span < XFER_RATE_WINDOW_S) continue;
    bool slow = cfg->snapshot_min_bps > 0 && !waits_for_us &&
                (double)(sent - x->win_sent) < (double)cfg->snapshot_min_bps * span;
    x->win_t0 = now, x->win_sent = sent;
    if (slow) xfer_cut(a, x, "slower than SNAPSHOT_MIN_BYTES_PER_SECOND over 10 s");
  }
}

/* GET /snapshot: 404 unless SNAPSHOT_SERVE, 503 unless serving or when
 * XFER_MAX transfers run; else starts a transfer and queues its streamed
 * response. @locality admin thread. */
static enum MHD_Result serve_snapshot(struct admin *a, struct MHD_Connection *c) {
  if (!a->d.cfg->snapshot_serve || a->d.snapshot_stream == NULL)
    return reply(c, MHD_HTTP_NOT_FOUND, text("not found (SNAPSHOT_SERVE is off)\n"), "text/plain");
  void *src = atomic_load(&a->offsets_src);
  if (!a->d.is_serving(a->d.is_serving_arg) || src == NULL)
    return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, text("not serving\n"), "text/plain");
  /* Asked before a 200 is promised: a snapshot whose change-feed positions
   * cannot be vouched for (no feed, a lost position, an incomplete replay)
   * is no snapshot a peer could bring up to date. */
  if (a->d.snapshot_stream(src, a->d.store, NULL, NULL) != 0)
    return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE,
                 text("no snapshot to serve: its change-feed positions cannot be vouched for\n"),
                 "text/plain");
  int slot = xfer_slot(a);
  if (slot < 0) return reply_busy(a, c);
  struct xfer *x = xcalloc(1, sizeof *x);
  x->a = a, x->c = c, x->slot = slot, x->t0 = x->win_t0 = clock_mono_s();
  x->ring = xmalloc(XFER_RING);
  pthread_mutex_init(&x->mu, NULL);
  pthread_cond_init(&x->cv, NULL);
  if (pthread_create(&x->thread, NULL, xfer_main, x) != 0) {
    x->thread = 0, x->done = true, x->err = -EAGAIN;
  }
  a->xfers[slot] = x;
  struct MHD_Response *r =
      MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, XFER_BLOCK, xfer_read, x, xfer_free);
  MHD_add_response_header(r, "Content-Type", "application/octet-stream");
  MHD_add_response_header(r, "Cache-Control", "no-store");
  enum MHD_Result rc = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r); /* the last reference, if queueing failed: xfer_free runs */
  int running = 0;
  for (int i = 0; i < XFER_MAX; i++)
    running += a->xfers[i] != NULL;
  log_info("snapshot transfer started", LF_I("transfers", running));
  return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **state) {
  struct admin *a = cls;
  unsigned status = MHD_HTTP_OK;
  (void)version, (void)data, (void)size, (void)state;
  struct aconn *ac = conn_of(c);
  if (ac != NULL) ac->answering = true;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply_not_allowed(c, "GET, HEAD");
  if (strcmp(url, "/metrics") == 0)
    return reply(c, status, render_metrics(a), "text/plain; version=0.0.4");
  if (strcmp(url, "/healthz") == 0) return reply(c, status, text("ok\n"), "text/plain");
  if (strcmp(url, "/readyz") == 0) {
    bool ok = a->d.is_serving(a->d.is_serving_arg);
    return reply(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, render_ready(a, ok),
                 "application/json");
  }
  if (strcmp(url, "/snapshot") == 0) { /* HEAD: the length is known only once encoded */
    if (strcmp(method, "GET") == 0 || !a->d.cfg->snapshot_serve) return serve_snapshot(a, c);
    return reply_not_allowed(c, "GET");
  }
  if (strcmp(url, "/digest") == 0) {
    char *body = render_digest(a, &status);
    return reply(c, status, body, "application/json");
  }
  return reply(c, MHD_HTTP_NOT_FOUND, text("not found\n"), "text/plain");
}

/* Whether a snapshot transfer runs. @locality admin thread (the only one
 * that fills or empties a->xfers while it runs). */
static bool xfer_running(const struct admin *a) {
  for (int i = 0; i < XFER_MAX; i++)
    if (a->xfers[i] != NULL) return true;
  return false;
}

/* @locality its own thread, an RCU reader for its life. While a transfer
 * runs the wait is 1 ms, not 200: libmicrohttpd (0.9.75, external epoll)
 * does not end MHD_run_wait when xfer_wake resumes a suspended connection,
 * so every refill of the ring waited out the whole timeout (a 24 MB
 * snapshot took 18 s instead of 1 s, bench/lifecycle.py). */
static void *admin_main(void *arg) {
  struct admin *a = arg;
  store_reader_register();
  while (!atomic_load(&a->stop)) {
    MHD_run_wait(a->mhd, xfer_running(a) ? 1 : 200);
    conn_sweep(a);
    xfer_sweep(a);
  }
  store_reader_unregister();
  return NULL;
}

/* Fills *ss with addr:port (an IP literal, checked by config). Returns the
 * address length, or 0 if addr is not a literal. */
static socklen_t admin_sockaddr(const char *addr, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
  struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
  if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET, v4->sin_port = htons((uint16_t)port);
    return sizeof *v4;
  }
  if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6, v6->sin6_port = htons((uint16_t)port);
    return sizeof *v6;
  }
  return 0;
}

int admin_start(const struct admin_deps *d, struct admin **out) {
  assert(d->is_serving != NULL);
  *out = NULL;
  if (d->cfg->admin_port == 0) return 0;
  struct sockaddr_storage ss;
  if (admin_sockaddr(d->cfg->admin_listen_addr, d->cfg->admin_port, &ss) == 0) {
    log_error("cannot listen for admin HTTP", LF_S("address", d->cfg->admin_listen_addr),
              LF_I("port", d->cfg->admin_port), LF_S("error", "not an IP address"));
    return -EINVAL;
  }
  struct admin *a = xcalloc(1, sizeof *a);
  a->d = *d;
  a->conns.prev = a->conns.next = &a->conns;
  /* epoll: no FD_SETSIZE ceiling on the sockets' numbers */
  /* suspend/resume: a /snapshot response waits for its encoder that way */
  unsigned flags = MHD_USE_ERROR_LOG | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                   (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  a->mhd = MHD_start_daemon(
      /* The logger first: libmicrohttpd warns (on its own logger) otherwise. */
      flags, (uint16_t)d->cfg->admin_port, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
      mhd_log_json, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_CONNECTION,
      on_connection, a, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)(d->cfg->admin_request_timeout_s + MHD_BACKSTOP_S), MHD_OPTION_CONNECTION_LIMIT,
      (unsigned)ADMIN_HARD_CONNS, MHD_OPTION_END);
  if (a->mhd == NULL) {
    log_error(
        "cannot listen for admin HTTP", LF_S("address", d->cfg->admin_listen_addr),
        LF_I("port", d->cfg->admin_port),
        LF_S("hint", "is ADMIN_PORT in use, or ADMIN_LISTEN_ADDRESS not an address of this host?"));
    free(a);
    return -EADDRINUSE;
  }
  pthread_create(&a->thread, NULL, admin_main, a);
  *out = a;
  return 0;
}

void admin_set_offsets_source(struct admin *a, void *src) {
  if (a) atomic_store(&a->offsets_src, src);
}

void admin_destroy(struct admin *a) {
  if (a == NULL) return;
  atomic_store(&a->stop, true);
  pthread_join(a->thread, NULL);
  /* Transfers' threads first: none may resume a connection while
   * libmicrohttpd closes it. A suspended one is resumed here, so that the
   * daemon finishes it (with an error: the stream stops short). */
  for (int i = 0; i < XFER_MAX; i++) {
    struct xfer *x = a->xfers[i];
    if (x == NULL) continue;
    if (x->thread) xfer_join(x);
    pthread_mutex_lock(&x->mu);
    x->err = x->err ? x->err : -ECANCELED, x->done = true;
    xfer_wake(x);
    pthread_mutex_unlock(&x->mu);
  }
  MHD_stop_daemon(a->mhd); /* closes (and un-tracks) every connection */
  while (a->conns.next != &a->conns) {
    struct aconn *ac = a->conns.next;
    a->conns.next = ac->next;
    free(ac);
  }
  free(a);
}
