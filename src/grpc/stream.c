/*
 * stream.c - the streaming-call state machine (see stream.h).
 *
 * Reference counting: each batch in flight holds one reference; the stream
 * is freed when the count returns to zero. RECV_CLOSE_ON_SERVER is posted
 * first and completes only when the call is over, so the count cannot reach
 * zero while the call is still usable.
 */
#include "stream.h"

#include <assert.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "cq_tag.h"
#include "metrics.h"
#include "xalloc.h"

struct stream_tag {
  struct cq_tag t;
  struct stream *s;
};

struct stream {
  struct stream_tag t_new, t_recv, t_send, t_close, t_status;
  const struct stream_env *env; /* the worker's; outlives the stream */
  void *handle;
  const struct stream_ops *ops;
  int mm;        /* enum metrics_method */
  void *service; /* ctx->service of every callback */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  pthread_mutex_t mu; /* guards refs, md_sent, finished, code */
  int refs;
  bool md_sent, finished;
  grpc_status_code code;
  grpc_byte_buffer *recv_buf, *send_buf;
  int cancelled;
  grpc_slice details;
  void *user;
  int64_t t0; /* clock_mono_ns() when the call arrived */
};

static void on_new(struct cq_tag *t, bool ok);
static void on_recv(struct cq_tag *t, bool ok);
static void on_send(struct cq_tag *t, bool ok);
static void on_close(struct cq_tag *t, bool ok);
static void on_status(struct cq_tag *t, bool ok);

void *stream_user(struct stream *s) { return s->user; }
void stream_set_user(struct stream *s, void *user) { s->user = user; }

static void stream_free(struct stream *s) {
  grpc_metadata_array_destroy(&s->md);
  if (s->recv_buf) grpc_byte_buffer_destroy(s->recv_buf);
  if (s->send_buf) grpc_byte_buffer_destroy(s->send_buf);
  grpc_slice_unref(s->details);
  if (s->call) grpc_call_unref(s->call);
  pthread_mutex_destroy(&s->mu);
  atomic_fetch_sub(s->env->outstanding, 1);
  free(s);
}

static void stream_unref(struct stream *s) {
  pthread_mutex_lock(&s->mu);
  int left = --s->refs;
  pthread_mutex_unlock(&s->mu);
  if (left == 0) stream_free(s);
}

static void tag_init(struct stream_tag *st, struct stream *s, void (*fn)(struct cq_tag *, bool)) {
  st->t.fn = fn;
  st->s = s;
}

/* The context a callback of s gets: the worker's template and s's service. */
static struct rpc_ctx stream_ctx(const struct stream *s) {
  struct rpc_ctx ctx = s->env->ctx;
  ctx.service = s->service;
  return ctx;
}

int stream_request(const struct stream_env *env, void *handle, const struct stream_ops *ops,
                   int metrics_method, void *service) {
  struct stream *s = xcalloc(1, sizeof *s);
  s->env = env, s->handle = handle, s->ops = ops, s->mm = metrics_method, s->service = service;
  s->details = grpc_empty_slice();
  pthread_mutex_init(&s->mu, NULL);
  grpc_metadata_array_init(&s->md);
  tag_init(&s->t_new, s, on_new);
  tag_init(&s->t_recv, s, on_recv);
  tag_init(&s->t_send, s, on_send);
  tag_init(&s->t_close, s, on_close);
  tag_init(&s->t_status, s, on_status);
  atomic_fetch_add(env->outstanding, 1);
  grpc_call_error e = grpc_server_request_registered_call(
      env->server, handle, &s->call, &s->deadline, &s->md, NULL, env->cq, env->cq, &s->t_new);
  if (e != GRPC_CALL_OK) {
    stream_free(s);
    return -1;
  }
  return 0;
}

/* Starts a batch holding a reference; prepends initial metadata to the
 * first batch that sends anything. Called with s->mu held. */
static void start_locked(struct stream *s, grpc_op *ops, size_t n, struct stream_tag *st,
                         bool sends) {
  grpc_op all[4];
  size_t k = 0;
  assert(n < 4);
  if (sends && !s->md_sent) {
    memset(&all[k], 0, sizeof all[k]);
    all[k++].op = GRPC_OP_SEND_INITIAL_METADATA;
    s->md_sent = true;
  }
  memcpy(all + k, ops, n * sizeof *ops);
  k += n;
  s->refs++;
  grpc_call_error e = grpc_call_start_batch(s->call, all, k, &st->t, NULL);
  if (e != GRPC_CALL_OK) {
    s->refs--;
    log_error("stream batch refused", LF_I("grpc_call_error", e));
  }
}

static void on_new(struct cq_tag *t, bool ok) {
  struct stream *s = ((struct stream_tag *)t)->s;
  if (!ok) { /* server shutting down: no call came */
    stream_free(s);
    return;
  }
  s->t0 = clock_mono_ns();
  if (!atomic_load(s->env->stopping)) stream_request(s->env, s->handle, s->ops, s->mm, s->service);
  metrics_in_flight(s->env->metrics, +1);
  grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
  op.data.recv_close_on_server.cancelled = &s->cancelled;
  pthread_mutex_lock(&s->mu);
  start_locked(s, &op, 1, &s->t_close, false);
  pthread_mutex_unlock(&s->mu);
  struct rpc_ctx ctx = stream_ctx(s);
  s->ops->on_start(s, &ctx);
}

void stream_recv(struct stream *s) {
  grpc_op op = {.op = GRPC_OP_RECV_MESSAGE};
  op.data.recv_message.recv_message = &s->recv_buf;
  pthread_mutex_lock(&s->mu);
  start_locked(s, &op, 1, &s->t_recv, false);
  pthread_mutex_unlock(&s->mu);
}

static void on_recv(struct cq_tag *t, bool ok) {
  struct stream *s = ((struct stream_tag *)t)->s;
  struct rpc_ctx ctx = stream_ctx(s);
  if (!ok || s->recv_buf == NULL) {
    if (ok) s->ops->on_half_close(s, &ctx);
  } else {
    grpc_byte_buffer_reader r;
    grpc_slice sl = grpc_empty_slice();
    if (grpc_byte_buffer_reader_init(&r, s->recv_buf)) {
      sl = grpc_byte_buffer_reader_readall(&r);
      grpc_byte_buffer_reader_destroy(&r);
    }
    grpc_byte_buffer_destroy(s->recv_buf);
    s->recv_buf = NULL;
    s->ops->on_message(s, &ctx, GRPC_SLICE_START_PTR(sl), GRPC_SLICE_LENGTH(sl));
    grpc_slice_unref(sl);
  }
  stream_unref(s);
}

void stream_send(struct stream *s, const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  grpc_slice sl = grpc_slice_malloc(n);
  protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(sl));
  pthread_mutex_lock(&s->mu);
  if (s->finished || s->send_buf != NULL) {
    pthread_mutex_unlock(&s->mu);
    grpc_slice_unref(sl);
    return;
  }
  s->send_buf = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  grpc_op op = {.op = GRPC_OP_SEND_MESSAGE};
  op.data.send_message.send_message = s->send_buf;
  start_locked(s, &op, 1, &s->t_send, true);
  pthread_mutex_unlock(&s->mu);
}

static void on_send(struct cq_tag *t, bool ok) {
  struct stream *s = ((struct stream_tag *)t)->s;
  pthread_mutex_lock(&s->mu);
  grpc_byte_buffer_destroy(s->send_buf);
  s->send_buf = NULL;
  pthread_mutex_unlock(&s->mu);
  struct rpc_ctx ctx = stream_ctx(s);
  if (s->ops->on_send_done) s->ops->on_send_done(s, &ctx, ok);
  stream_unref(s);
}

void stream_finish(struct stream *s, grpc_status_code code, const char *details) {
  pthread_mutex_lock(&s->mu);
  if (s->finished) {
    pthread_mutex_unlock(&s->mu);
    return;
  }
  s->finished = true;
  s->code = code;
  grpc_slice_unref(s->details);
  s->details = grpc_slice_from_copied_string(details ? details : "");
  grpc_op op = {.op = GRPC_OP_SEND_STATUS_FROM_SERVER};
  op.data.send_status_from_server.status = code;
  op.data.send_status_from_server.status_details = &s->details;
  start_locked(s, &op, 1, &s->t_status, true);
  pthread_mutex_unlock(&s->mu);
}

static void on_status(struct cq_tag *t, bool ok) {
  (void)ok;
  stream_unref(((struct stream_tag *)t)->s);
}

static void on_close(struct cq_tag *t, bool ok) {
  struct stream *s = ((struct stream_tag *)t)->s;
  int64_t t1 = clock_mono_ns();
  (void)ok;
  s->ops->on_closed(s);
  pthread_mutex_lock(&s->mu);
  int code = s->finished && !s->cancelled ? (int)s->code : GRPC_STATUS_CANCELLED;
  s->finished = true; /* no more sends after the call is over */
  pthread_mutex_unlock(&s->mu);
  uint64_t ns = (uint64_t)(t1 - s->t0);
  metrics_rpc_done(s->env->metrics, s->mm, code, ns);
  metrics_in_flight(s->env->metrics, -1);
  stream_unref(s);
}
