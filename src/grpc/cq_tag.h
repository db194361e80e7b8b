/*
 * cq_tag.h - the completion-queue tag protocol shared by the server's
 * worker loop and the call state machines that post batches on its queues
 * (unary and unknown-method calls in server.c, streams in stream.c).
 *
 * Every tag handed to the gRPC core on a worker's queue is one of these,
 * embedded in the call that owns it; the worker calls fn with the event's
 * success flag and knows nothing else about the call.
 */
#ifndef CATALOGD_CQ_TAG_H
#define CATALOGD_CQ_TAG_H

#include <stdbool.h>

struct cq_tag {
  /* Runs on the worker thread that polled the event. ok: the operation
   * succeeded (the core's grpc_event.success). */
  void (*fn)(struct cq_tag *t, bool ok);
};

#endif
