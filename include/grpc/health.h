/*
 * health.h - the grpc.health.v1.Health service.
 *
 * One status covers "" and "catalog.CatalogService": NOT_SERVING until the
 * first snapshot is published and again from the start of shutdown. Watch
 * streams get the current status at once and every change after.
 *
 * @locality health_set_serving / health_close_watchers: any thread, never
 * after the worker queues are shut down. Handlers: worker threads.
 */
#ifndef CATALOGD_HEALTH_H
#define CATALOGD_HEALTH_H

#include <stdbool.h>

#include "rpc.h"
#include "stream.h"

struct health;

/* A new health state, NOT_SERVING. Free with health_destroy (NULL ok). */
struct health *health_new(void);
void health_destroy(struct health *h);

/* Changes the status and pushes it to every Watch stream. */
void health_set_serving(struct health *h, bool serving);
bool health_is_serving(struct health *h);

/* Ends every Watch stream with OK (after its last update is sent); Watch
 * calls arriving later are ended at once. For shutdown. */
void health_close_watchers(struct health *h);

/* Check: unary handler (ctx->service: the struct health). Unknown service
 * -> NOT_FOUND. */
void health_check(struct rpc_ctx *ctx, const uint8_t *req, size_t len, struct rpc_result *out);

/* Watch: stream handler (ctx->service: the struct health). */
extern const struct stream_ops health_watch_ops;

#endif
