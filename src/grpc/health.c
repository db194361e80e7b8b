/*
 * health.c - health Check and Watch (see health.h).
 *
 * Watchers sit in a list under the health mutex. A watcher sends at most one
 * update at a time; a change arriving while a send is in flight is picked up
 * when that send completes, so a client always ends on the latest status.
 * Lock order: health mutex, then a stream's own mutex (inside stream_send);
 * stream callbacks are never called with a stream mutex held.
 */
#include "health.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"
#include "xalloc.h"

#define ST_SERVING     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
#define ST_NOT_SERVING GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
#define ST_UNKNOWN     GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN

struct watcher {
  struct watcher *prev, *next;
  struct stream *s;
  struct health *h;
  int last_sent; /* -1 before the first send */
  bool known;    /* service name is one we serve */
  bool busy;     /* a send is in flight */
};

struct health {
  pthread_mutex_t mu;
  bool serving, closing;
  int nwatchers;
  struct watcher *watchers;
};

struct health *health_new(void) {
  struct health *h = xcalloc(1, sizeof *h);
  pthread_mutex_init(&h->mu, NULL);
  return h;
}

void health_destroy(struct health *h) {
  if (h == NULL) return;
  pthread_mutex_destroy(&h->mu);
  free(h);
}

static bool service_known(const char *name) {
  return name[0] == '\0' || strcmp(name, "catalog.CatalogService") == 0;
}

static int current(struct health *h, bool known) {
  return !known ? ST_UNKNOWN : h->serving ? ST_SERVING : ST_NOT_SERVING;
}

/* Sends the current status to w if it changed and no send is in flight;
 * finishes the stream when closing. Called with h->mu held. */
static void watcher_push_locked(struct watcher *w) {
  if (w->busy) return;
  int st = current(w->h, w->known);
  if (st != w->last_sent) {
    Grpc__Health__V1__HealthCheckResponse r = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    r.status = st;
    w->busy = true;
    w->last_sent = st;
    stream_send(w->s, &r.base);
  } else if (w->h->closing) {
    stream_finish(w->s, GRPC_STATUS_OK, NULL);
  }
}

void health_set_serving(struct health *h, bool serving) {
  pthread_mutex_lock(&h->mu);
  h->serving = serving && !h->closing; /* once shutting down, never SERVING again */
  for (struct watcher *w = h->watchers; w != NULL; w = w->next)
    watcher_push_locked(w);
  pthread_mutex_unlock(&h->mu);
}

bool health_is_serving(struct health *h) {
  pthread_mutex_lock(&h->mu);
  bool s = h->serving;
  pthread_mutex_unlock(&h->mu);
  return s;
}

void health_close_watchers(struct health *h) {
  pthread_mutex_lock(&h->mu);
  h->closing = true;
  h->serving = false;
  for (struct watcher *w = h->watchers; w != NULL; w = w->next)
    watcher_push_locked(w);
  pthread_mutex_unlock(&h->mu);
}

void health_check(struct rpc_ctx *ctx, const uint8_t *req, size_t len, struct rpc_result *out) {
  Grpc__Health__V1__HealthCheckRequest *rq =
      grpc__health__v1__health_check_request__unpack(&ctx->arena->pb, len, req);
  if (rq == NULL) {
    rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "request is not a HealthCheckRequest");
    return;
  }
  if (!service_known(rq->service)) {
    rpc_fail(ctx, out, GRPC_STATUS_NOT_FOUND, "unknown service");
    return;
  }
  Grpc__Health__V1__HealthCheckResponse *r = arena_alloc(ctx->arena, sizeof *r);
  *r = (Grpc__Health__V1__HealthCheckResponse)GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  r->status = health_is_serving(ctx->service) ? ST_SERVING : ST_NOT_SERVING;
  out->reply = &r->base;
}

/* ---- Watch ---- */

static void watch_start(struct stream *s, struct rpc_ctx *ctx) {
  (void)ctx;
  stream_recv(s);
}

static void watch_message(struct stream *s, struct rpc_ctx *ctx, const uint8_t *data, size_t len) {
  if (stream_user(s) != NULL) return; /* one request per Watch; ignore more */
  Grpc__Health__V1__HealthCheckRequest *rq =
      grpc__health__v1__health_check_request__unpack(&ctx->arena->pb, len, data);
  if (rq == NULL) {
    stream_finish(s, GRPC_STATUS_INVALID_ARGUMENT, "request is not a HealthCheckRequest");
    return;
  }
  struct health *h = ctx->service;
  struct watcher *w = xcalloc(1, sizeof *w);
  w->s = s, w->h = h, w->last_sent = -1, w->known = service_known(rq->service);
  stream_set_user(s, w);
  pthread_mutex_lock(&h->mu);
  w->next = h->watchers;
  if (h->watchers) h->watchers->prev = w;
  h->watchers = w;
  h->nwatchers++;
  watcher_push_locked(w);
  pthread_mutex_unlock(&h->mu);
  stream_recv(s); /* to see the half-close; further messages are ignored */
}

static void watch_half_close(struct stream *s, struct rpc_ctx *ctx) {
  (void)ctx;
  if (stream_user(s) == NULL)
    stream_finish(s, GRPC_STATUS_INVALID_ARGUMENT, "Watch needs a HealthCheckRequest");
}

static void watch_send_done(struct stream *s, struct rpc_ctx *ctx, bool ok) {
  struct watcher *w = stream_user(s);
  (void)ctx;
  if (w == NULL) return; /* the call ended while this send was in flight */
  pthread_mutex_lock(&w->h->mu);
  w->busy = false;
  if (ok) watcher_push_locked(w);
  pthread_mutex_unlock(&w->h->mu);
}

static void watch_closed(struct stream *s) {
  struct watcher *w = stream_user(s);
  if (w == NULL) return;
  struct health *h = w->h;
  pthread_mutex_lock(&h->mu);
  if (w->prev)
    w->prev->next = w->next;
  else
    h->watchers = w->next;
  if (w->next) w->next->prev = w->prev;
  h->nwatchers--;
  pthread_mutex_unlock(&h->mu);
  stream_set_user(s, NULL);
  free(w);
}

const struct stream_ops health_watch_ops = {
    .on_start = watch_start,
    .on_message = watch_message,
    .on_half_close = watch_half_close,
    .on_send_done = watch_send_done,
    .on_closed = watch_closed,
};
