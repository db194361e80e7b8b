/*
 * server.h - the gRPC server: catalog.CatalogService, grpc.health.v1.Health
 * and (optionally) server reflection, on the gRPC C core.
 *
 * GRPC_MAX_WORKERS threads each poll their own completion queue and run
 * handlers inline; handlers never block. See docs/ARCHITECTURE.md.
 */
#ifndef CATALOGD_SERVER_H
#define CATALOGD_SERVER_H

#include "config.h"

struct server;
struct store;
struct metrics;
struct health;

/* What the server reads; all must outlive it. metrics has one shard per
 * worker (cfg->workers). */
struct server_deps {
  const struct config *cfg;
  struct store *store;
  struct metrics *metrics;
  struct health *health;
};

/* Binds the port, starts the workers and returns the server in *out.
 * Returns 0, or a negative errno: -EADDRINUSE (or other bind failure),
 * -EINVAL (bad TLS files), -ENOMEM. grpc_init() must have been called.
 * @locality the main thread. */
int server_start(const struct server_deps *d, struct server **out);

/* The bound port (useful with GRPC_PORT=0). */
int server_port(const struct server *s);

/* Graceful stop: health NOT_SERVING, Watch streams ended, no new calls,
 * in-flight calls given cfg->shutdown_grace_s to finish, then cancelled;
 * returns when every call is freed and the workers have exited.
 * @locality the main thread. */
void server_stop(struct server *s);

/* Frees a stopped server. NULL is a no-op. */
void server_destroy(struct server *s);

#endif
