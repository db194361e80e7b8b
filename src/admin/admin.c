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

/* One accepted connection (the socket context), in a list oldest first. */
struct aconn {
  struct aconn *prev, *next;
  int fd;
  double deadline; /* monotonic seconds: the pending request's answer is due */
  bool answering;  /* the handler ran; the answer is being sent */
  bool cut;        /* shut down by us; libmicrohttpd closes it next */
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

/* Cuts every connection past its deadline. @locality admin thread. */
static void conn_sweep(struct admin *a) {
  double now = clock_mono_s();
  for (struct aconn *p = a->conns.next; p != &a->conns; p = p->next)
    if (!p->cut && now > p->deadline) {
      conn_cut(p);
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

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *data,
                                  size_t *size, void **state) {
  struct admin *a = cls;
  unsigned status = MHD_HTTP_OK;
  (void)version, (void)data, (void)size, (void)state;
  struct aconn *ac = conn_of(c);
  if (ac != NULL) ac->answering = true;
  if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
    return reply(c, MHD_HTTP_METHOD_NOT_ALLOWED, text("method not allowed\n"), "text/plain");
  if (strcmp(url, "/metrics") == 0)
    return reply(c, status, render_metrics(a), "text/plain; version=0.0.4");
  if (strcmp(url, "/healthz") == 0) return reply(c, status, text("ok\n"), "text/plain");
  if (strcmp(url, "/readyz") == 0) {
    bool ok = a->d.is_serving(a->d.is_serving_arg);
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
  while (!atomic_load(&a->stop)) {
    MHD_run_wait(a->mhd, 200);
    conn_sweep(a);
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
  unsigned flags =
      MHD_USE_ERROR_LOG | MHD_USE_EPOLL | (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
  a->mhd = MHD_start_daemon(
      /* The logger first: libmicrohttpd warns (on its own logger) otherwise. */
      flags, (uint16_t)d->cfg->admin_port, NULL, NULL, on_request, a, MHD_OPTION_EXTERNAL_LOGGER,
      mhd_log_json, a, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_CONNECTION,
      on_connection, a, MHD_OPTION_NOTIFY_COMPLETED, on_completed, a, MHD_OPTION_CONNECTION_TIMEOUT,
      (unsigned)d->cfg->admin_request_timeout_s, MHD_OPTION_CONNECTION_LIMIT,
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
  MHD_stop_daemon(a->mhd); /* closes (and un-tracks) every connection */
  while (a->conns.next != &a->conns) {
    struct aconn *ac = a->conns.next;
    a->conns.next = ac->next;
    free(ac);
  }
  free(a);
}
