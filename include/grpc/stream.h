/*
 * stream.h - server-streaming and bidi calls on the C core (health Watch,
 * reflection).
 *
 * The core allows one batch of each kind in flight per call, so a stream is
 * a small state machine: the handler asks for the next message
 * (stream_recv), sends one message at a time (stream_send, then waits for
 * on_send_done), and ends with stream_finish. A RECV_CLOSE_ON_SERVER batch
 * is kept posted from the start to learn when the client goes away. The
 * stream is freed when its last batch completes, after on_closed.
 *
 * The server owns the workers: it gives each one a struct stream_env (its
 * queue, counters and the context template handlers see) and posts stream
 * requests with it. This module never calls back into the server; the
 * worker only runs the struct cq_tag callbacks it finds on its queue.
 *
 * @locality callbacks run on the stream's worker thread. stream_send and
 * stream_finish may also be called from another thread (health updates),
 * as long as the caller serialises its own calls for one stream and does
 * not use it after on_closed returned.
 */
#ifndef CATALOGD_STREAM_H
#define CATALOGD_STREAM_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "rpc.h"

struct stream;
struct metrics_shard;

/* What streams need from the worker whose queue they are posted on. The
 * server fills one per worker before the worker starts; it must outlive
 * every stream posted with it, and is only read here. */
struct stream_env {
  grpc_server *server;
  grpc_completion_queue *cq;     /* the worker's queue: tags are struct cq_tag */
  struct metrics_shard *metrics; /* the worker's shard: calls are counted here */
  atomic_long *outstanding;      /* +1 per posted stream, -1 when it is freed */
  atomic_bool *stopping;         /* set: a stream that arrives posts no successor */
  /* Handed (as a copy, with the stream's service set) to every stream
   * callback: the worker's arena and cfg; snap is NULL (streams read no
   * snapshot). */
  struct rpc_ctx ctx;
};

struct stream_ops {
  /* The call arrived; typically stream_recv(s). */
  void (*on_start)(struct stream *s, struct rpc_ctx *ctx);
  /* A message arrived (bytes valid during the callback). */
  void (*on_message)(struct stream *s, struct rpc_ctx *ctx, const uint8_t *data, size_t len);
  /* The client finished sending. */
  void (*on_half_close)(struct stream *s, struct rpc_ctx *ctx);
  /* The last stream_send completed (ok = delivered to the transport). */
  void (*on_send_done)(struct stream *s, struct rpc_ctx *ctx, bool ok);
  /* The call is over (finished or cancelled). Drop every reference. */
  void (*on_closed)(struct stream *s);
};

/* Posts a request for one call of registered method `handle` on env's
 * queue; when it arrives, ops drive it and another request is posted in
 * its place (unless *env->stopping). The call is counted under
 * metrics_method (enum metrics_method) when it ends. Its callbacks get
 * service as ctx->service (the method's state; it must outlive the
 * server's calls). Returns 0, or -1 if the core refused (shutting down).
 * @locality env's worker thread, or before it starts. */
int stream_request(const struct stream_env *env, void *handle, const struct stream_ops *ops,
                   int metrics_method, void *service);

/* Asks for the next message (on_message or on_half_close follows). */
void stream_recv(struct stream *s);

/* Sends m (packed now; m may be freed on return). One send at a time. */
void stream_send(struct stream *s, const ProtobufCMessage *m);

/* Ends the call with a status. Later sends are dropped. */
void stream_finish(struct stream *s, grpc_status_code code, const char *details);

/* Opaque per-stream handler state. */
void *stream_user(struct stream *s);
void stream_set_user(struct stream *s, void *user);

#endif
