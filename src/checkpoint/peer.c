/*
 * peer.c - fetching a peer's snapshot (BOOTSTRAP_PEERS, see checkpoint.h):
 * resolves the peer list (a name may resolve to several addresses, e.g. a
 * headless Service), then for one address a plain blocking HTTP/1.0
 * GET /snapshot over a socket whose every wait is a poll() in 100 ms slices
 * that checks the stop flag, with a connect timeout, a no-progress timeout,
 * an overall deadline and a minimum rate (a peer trickling a byte every few
 * seconds would otherwise hold the start-up for ever). HTTP/1.0: the body is the bytes until the
 * peer closes, no chunking; the checkpoint format's trailer and end check say whether it is whole.
 * The body goes straight into the checkpoint reader: nothing is buffered beyond the reader's
 * current block.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "log.h"
#include "xalloc.h"

#define SLICE_MS   100
#define HEADER_CAP 8192
#define MAX_PEERS  256

/* Adds host:port's addresses to *out (n, cap grown). Logs a name that does
 * not resolve. */
static void resolve_one(const char *entry, struct ckpt_peer_addr **out, int *n, int *cap) {
  char host[256], port[8];
  const char *colon = strrchr(entry, ':');
  size_t hl = colon ? (size_t)(colon - entry) : 0;
  if (hl == 0 || hl >= sizeof host || strlen(colon + 1) >= sizeof port) return;
  memcpy(host, entry, hl), host[hl] = '\0';
  snprintf(port, sizeof port, "%s", colon + 1);
  if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') /* [v6]:port */
    memmove(host, host + 1, hl - 2), host[hl - 2] = '\0';
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
  int e = getaddrinfo(host, port, &hints, &res);
  if (e != 0) {
    log_warn("bootstrap peer not resolved", LF_S("peer", entry), LF_S("error", gai_strerror(e)));
    return;
  }
  for (struct addrinfo *ai = res; ai != NULL && *n < MAX_PEERS; ai = ai->ai_next) {
    if (*n == *cap) *out = xrealloc(*out, (size_t)(*cap = *cap ? *cap * 2 : 8) * sizeof **out);
    struct ckpt_peer_addr *p = &(*out)[(*n)++];
    memset(p, 0, sizeof *p);
    memcpy(&p->sa, ai->ai_addr, ai->ai_addrlen);
    p->len = ai->ai_addrlen;
    char ip[64] = "?";
    getnameinfo(ai->ai_addr, ai->ai_addrlen, ip, sizeof ip, NULL, 0, NI_NUMERICHOST);
    snprintf(p->host, sizeof p->host, "%s", host);
    snprintf(p->name, sizeof p->name, "%s (%s)", entry, ip);
  }
  freeaddrinfo(res);
}

int ckpt_peers_resolve(const char *list, struct ckpt_peer_addr **out) {
  char *copy = xmalloc(strlen(list) + 1), *save = NULL;
  strcpy(copy, list);
  int n = 0, cap = 0;
  *out = NULL;
  for (char *e = strtok_r(copy, ", ", &save); e != NULL; e = strtok_r(NULL, ", ", &save))
    resolve_one(e, out, &n, &cap);
  free(copy);
  return n;
}

/* A connection to one peer, read by peer_read. */
struct peer_conn {
  int fd;
  const struct ckpt_peer_opts *o;
  const struct ckpt_peer_addr *p;
  int64_t deadline_ms;   /* monotonic; 0: none */
  bool rate_on;          /* the body is being read: the minimum rate applies */
  int64_t win_t0_ms;     /* the rate window's start */
  uint64_t win_bytes;    /* bytes at its start */
  int64_t progress_ms;   /* when progress was last reported */
  char why[200];         /* set when one of our bounds ended the transfer */
  char head[HEADER_CAP]; /* the response head; body bytes read with it come first */
  size_t pre_at, pre_len;
  uint64_t bytes; /* body bytes read */
};

/* Waits until fd is ready for ev: 0, -ETIMEDOUT after timeout_ms without
 * it, -ECANCELED once *stop is set (NULL: never). */
static int wait_fd(int fd, short ev, int timeout_ms, const atomic_bool *stop) {
  for (int waited = 0; waited < timeout_ms; waited += SLICE_MS) {
    if (stop != NULL && atomic_load(stop)) return -ECANCELED;
    struct pollfd pf = {.fd = fd, .events = ev};
    int k = poll(&pf, 1, SLICE_MS);
    if (k > 0) return 0;
    if (k < 0 && errno != EINTR) return -errno;
  }
  return -ETIMEDOUT;
}

/* Connects c->fd to p within the timeout. 0 or a negative errno. */
static int peer_connect(struct peer_conn *c, const struct ckpt_peer_addr *p) {
  c->fd = socket(p->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c->fd < 0) return -errno;
  if (connect(c->fd, (const struct sockaddr *)&p->sa, p->len) != 0 && errno != EINPROGRESS)
    return -errno;
  int rc = wait_fd(c->fd, POLLOUT, c->o->timeout_ms, c->o->stop), err = 0;
  socklen_t el = sizeof err;
  if (rc == 0 && getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0) err = errno;
  return rc ? rc : -err;
}

/* The overall deadline and, while the body is read, the minimum rate over
 * the window just ended. Returns 0, or -ETIMEDOUT with c->why filled. */
static int peer_limits(struct peer_conn *c) {
  int64_t now = clock_mono_ms();
  if (c->deadline_ms && now > c->deadline_ms) {
    snprintf(c->why, sizeof c->why,
             "the transfer took longer than BOOTSTRAP_PEER_TRANSFER_TIMEOUT_MS (%d ms) with %llu "
             "bytes received",
             c->o->transfer_ms, (unsigned long long)c->bytes);
    return -ETIMEDOUT;
  }
  int64_t span = now - c->win_t0_ms;
  if (!c->rate_on || c->o->min_bps <= 0 || span < CKPT_PEER_RATE_WINDOW_MS) return 0;
  uint64_t got = c->bytes - c->win_bytes;
  if (got * 1000 < (uint64_t)c->o->min_bps * (uint64_t)span) {
    snprintf(c->why, sizeof c->why,
             "too slow: %llu bytes in the last %.1f s, below "
             "BOOTSTRAP_PEER_MIN_BYTES_PER_SECOND (%d)",
             (unsigned long long)got, (double)span / 1e3, c->o->min_bps);
    return -ETIMEDOUT;
  }
  c->win_t0_ms = now, c->win_bytes = c->bytes;
  return 0;
}

/* recv with the no-progress timeout and peer_limits checked every slice:
 * bytes read, 0 at the end, or a negative errno. */
static ssize_t peer_recv(struct peer_conn *c, void *p, size_t n) {
  int64_t idle_from = clock_mono_ms();
  for (;;) {
    ssize_t k = recv(c->fd, p, n, 0);
    if (k >= 0) return k;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
    int rc = peer_limits(c);
    if (rc != 0) return rc;
    if (clock_mono_ms() - idle_from >= c->o->timeout_ms) return -ETIMEDOUT;
    rc = wait_fd(c->fd, POLLIN, SLICE_MS, c->o->stop);
    if (rc != 0 && rc != -ETIMEDOUT) return rc;
  }
}

/* Reports the bytes so far to o->progress, at most every
 * CKPT_PEER_PROGRESS_MS unless force. */
static void peer_progress(struct peer_conn *c, bool force) {
  int64_t now = clock_mono_ms();
  if (c->o->progress == NULL || (!force && now - c->progress_ms < CKPT_PEER_PROGRESS_MS)) return;
  c->progress_ms = now;
  c->o->progress(c->o->arg, c->p, c->bytes);
}

/* ckpt_read_fn: the body, first what came with the head. */
static ssize_t peer_read(void *arg, void *p, size_t n) {
  struct peer_conn *c = arg;
  ssize_t k;
  if (c->pre_len > 0) {
    k = (ssize_t)(n < c->pre_len ? n : c->pre_len);
    memcpy(p, c->head + c->pre_at, (size_t)k);
    c->pre_at += (size_t)k, c->pre_len -= (size_t)k;
  } else {
    k = peer_recv(c, p, n);
  }
  if (k > 0) c->bytes += (uint64_t)k;
  peer_progress(c, false);
  if (k > 0) {
    int rc = peer_limits(c); /* a peer that always has a byte ready is checked too */
    if (rc != 0) return rc;
  }
  return k;
}

/* ckpt_stop_fn: the transfer's stop flag, asked by the reader between
 * blocks (a peer that always has a byte ready never makes wait_fd look). */
static bool peer_stopping(void *arg) {
  const struct peer_conn *c = arg;
  return c->o->stop != NULL && atomic_load(c->o->stop);
}

/* Sends the request and reads the response head; the status must be 200.
 * Returns 0 (body bytes already read are in c->head), -EBUSY with why (503
 * with Retry-After: the peer's transfer slots are taken), -EPROTO with why
 * (not 200, not HTTP), or a negative errno. */
static int peer_request(struct peer_conn *c, const struct ckpt_peer_addr *p, char *why,
                        size_t cap) {
  char req[512];
  int len =
      snprintf(req, sizeof req,
               "GET /snapshot HTTP/1.0\r\nHost: %.255s\r\nUser-Agent: catalogd\r\n\r\n", p->host);
  for (int off = 0; off < len;) {
    ssize_t k = send(c->fd, req + off, (size_t)(len - off), MSG_NOSIGNAL);
    if (k < 0 && errno != EAGAIN && errno != EINTR) return -errno;
    if (k < 0) {
      int rc = wait_fd(c->fd, POLLOUT, c->o->timeout_ms, c->o->stop);
      if (rc != 0) return rc;
    } else {
      off += (int)k;
    }
  }
  size_t got = 0;
  char *end = NULL;
  while (end == NULL) {
    if (got == sizeof c->head - 1) {
      snprintf(why, cap, "response head longer than %d bytes", HEADER_CAP);
      return -EPROTO;
    }
    ssize_t k = peer_recv(c, c->head + got, sizeof c->head - 1 - got);
    if (k == 0) {
      snprintf(why, cap, "connection closed before the response head");
      return -EPROTO;
    }
    if (k < 0) { /* the peer kept the connection and said nothing, or worse */
      if (k == -ETIMEDOUT && c->why[0] == '\0')
        snprintf(why, cap, "no response head within BOOTSTRAP_PEER_TIMEOUT_MS (%d ms)",
                 c->o->timeout_ms);
      return (int)k;
    }
    got += (size_t)k;
    c->head[got] = '\0';
    end = strstr(c->head, "\r\n\r\n");
  }
  int status = 0;
  sscanf(c->head, "HTTP/1.%*d %d", &status);
  if (status == 503 && strcasestr(c->head, "\r\nRetry-After:") != NULL) {
    /* A serving peer with every transfer slot taken says when to come
     * back; one that is not serving (yet) does not. */
    snprintf(why, cap, "HTTP status 503 with Retry-After: busy, its transfer slots are taken");
    return -EBUSY;
  }
  if (status != 200) {
    snprintf(why, cap,
             "HTTP status %d (a peer answers 200 only while it serves, with SNAPSHOT_SERVE=true)",
             status);
    return -EPROTO;
  }
  c->pre_at = (size_t)(end + 4 - c->head), c->pre_len = got - c->pre_at;
  return 0;
}

int ckpt_load_peer(const struct ckpt_peer_addr *p, const struct ckpt_peer_opts *o,
                   struct store_txn *t, struct ckpt_meta *meta, struct ckpt_peer_stats *st,
                   char *why, size_t cap) {
  struct peer_conn *c = xcalloc(1, sizeof *c);
  c->fd = -1, c->o = o, c->p = p;
  memset(meta, 0, sizeof *meta);
  double t0 = clock_mono_s();
  if (o->transfer_ms > 0) c->deadline_ms = clock_mono_ms() + o->transfer_ms;
  peer_progress(c, true);
  snprintf(why, cap, "?");
  int rc = peer_connect(c, p);
  if (rc != 0) snprintf(why, cap, "connect: %s", strerror(-rc));
  st->connect_s = clock_mono_s() - t0;
  if (rc == 0) rc = peer_request(c, p, why, cap);
  if (rc < 0 && rc != -EPROTO && strcmp(why, "?") == 0)
    snprintf(why, cap, "request: %s", strerror(-rc));
  struct ckpt_reader *rd = rc == 0 ? ckpt_reader_new(peer_read, c) : NULL;
  if (rd != NULL) ckpt_reader_set_stop(rd, peer_stopping, c);
  if (rc == 0) rc = ckpt_read_header(rd, meta, why, cap);
  /* The rate is the peer's from here. The header's check (accept: a
   * broker round trip) runs meanwhile. */
  c->rate_on = true, c->win_t0_ms = clock_mono_ms(), c->win_bytes = c->bytes;
  if (rc == 0) rc = ckpt_read_body_accepting(rd, meta, o->accept, o->arg, t, why, cap);
  if (rc != 0 && c->why[0]) snprintf(why, cap, "%s", c->why); /* our bound, not the stream */
  if (rc != 0) ckpt_meta_clear(meta);
  ckpt_reader_destroy(rd);
  st->bytes = c->bytes;
  st->seconds = clock_mono_s() - t0;
  if (c->fd >= 0) close(c->fd);
  free(c);
  return rc;
}
