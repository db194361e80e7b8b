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
 * @locality callbacks run on the stream's worker thread. stream_send and
 * stream_finish may also be called from another thread (health updates),
 * as long as the caller serialises its own calls for one stream and does
 * not use it after on_closed returned.
 */
#ifndef CATALOGD_STREAM_H
#define CATALOGD_STREAM_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

#include "rpc.h"

struct stream;
struct worker;

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

/* Posts a request for one call of registered method `handle` on w's queue;
 * when it arrives, ops drive it. Returns 0, or -1 if the server refused
 * (shutting down). */
int stream_request(struct worker *w, grpc_server *server, void *handle,
                   const struct stream_ops *ops, int metrics_method);

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
