/*
 * server.c - gRPC C core plumbing: method registration, worker threads,
 * unary dispatch, unknown methods, graceful stop.
 *
 * A unary call is two completion-queue events: the new call (with its
 * request already read, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER) and the
 * completion of the one batch that sends the reply, the status and
 * RECV_CLOSE_ON_SERVER. The handler runs between them, on the worker,
 * inside one RCU read section that also covers packing the reply. A call
 * is counted (and access-logged) when that batch ends: only then is it
 * known whether the client got our status or went away first.
 * Streaming methods are handed to stream.c.
 *
 * The server owns the method table and the workers. What handlers and
 * streams get from a worker (queue, counters, a context template with cfg,
 * health and reflection) is its struct stream_env, filled once at start:
 * health, reflection and stream.c never call back into this file.
 */
#include "server.h"

#include <assert.h>
#include <errno.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <netdb.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fresh.h"
#include "health.h"
#include "log.h"
#include "metrics.h"
#include "park.h"
#include "reflection.h"
#include "server_internal.h"
#include "stream.h"
#include "tls.h"
#include "xalloc.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

enum { NEEDS_SNAPSHOT = 1, REFLECTION_ONLY = 2 };
/* Which of the server's services a method's handlers get as ctx->service. */
enum method_service { SVC_NONE, SVC_HEALTH, SVC_REFLECTION };

struct method_def {
  const char *path;
  rpc_unary_fn fn;              /* unary, or NULL */
  const struct stream_ops *ops; /* streaming, or NULL */
  enum metrics_method mm;
  int flags;
  int preposted; /* requests kept posted per worker */
  enum method_service service;
};

static const struct method_def methods[] = {
    {"/catalog.CatalogService/ValidateVariant", rpc_validate_variant, NULL, MM_VALIDATE_VARIANT,
     NEEDS_SNAPSHOT, 16, SVC_NONE},
    {"/catalog.CatalogService/GetProductDetails", rpc_get_product_details, NULL,
     MM_GET_PRODUCT_DETAILS, NEEDS_SNAPSHOT, 8, SVC_NONE},
    {"/catalog.CatalogService/GetVariantsBatch", rpc_get_variants_batch, NULL,
     MM_GET_VARIANTS_BATCH, NEEDS_SNAPSHOT, 8, SVC_NONE},
    {"/catalog.CatalogService/ValidateVariantsBatch", rpc_validate_variants_batch, NULL,
     MM_VALIDATE_VARIANTS_BATCH, NEEDS_SNAPSHOT, 8, SVC_NONE},
    {"/grpc.health.v1.Health/Check", health_check, NULL, MM_HEALTH_CHECK, 0, 2, SVC_HEALTH},
    {"/grpc.health.v1.Health/Watch", NULL, &health_watch_ops, MM_HEALTH_WATCH, 0, 2, SVC_HEALTH},
    {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", NULL, &reflection_ops,
     MM_REFLECTION, REFLECTION_ONLY, 1, SVC_REFLECTION},
    {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", NULL, &reflection_ops,
     MM_REFLECTION, REFLECTION_ONLY, 1, SVC_REFLECTION},
};
#define NMETHODS             (sizeof methods / sizeof methods[0])
#define SHUTDOWN_TAIL_MS     5000 /* after the grace: the core's end and the calls' frees */
#define UNKNOWN_PREPOSTED    2
#define SNAPSHOT_VERSION_KEY "x-catalog-snapshot-version"
#define STALENESS_KEY        "x-catalog-staleness-ms"

struct server {
  const struct config *cfg;
  struct store *store;
  struct metrics *metrics;
  struct health *health;
  struct reflection *reflection;
  struct tls *tls;   /* NULL: plaintext */
  struct park *park; /* calls waiting for a fresher snapshot */
  grpc_server *srv;
  grpc_completion_queue *shutdown_cq;
  void *handles[NMETHODS]; /* NULL when not registered */
  struct worker *workers;
  int nworkers, port;
  atomic_long outstanding;
  atomic_bool stopping;
  atomic_size_t replies_pending; /* packed reply bytes not yet sent, all workers */
};

/* The state a method's handlers get as ctx->service. */
static void *service_of(struct server *s, enum method_service which) {
  switch (which) {
  case SVC_HEALTH: return s->health;
  case SVC_REFLECTION: return s->reflection;
  case SVC_NONE: break;
  }
  return NULL;
}

/* A unary call from request to reply. A call whose freshness headers the
 * snapshot does not meet yet is parked (park.h): it then has its own
 * RECV_CLOSE_ON_SERVER batch (t_close), comes back through t_wake, and is
 * freed when refs (batches and the park's hold) drops to 0. */
struct ucall {
  struct cq_tag t_new, t_done, t_close, t_wake;
  struct worker *w;
  int mi; /* index in methods[] */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload, *reply;
  grpc_slice details;
  grpc_metadata trailer[2];
  char version[24], staleness[24];
  int cancelled, code;
  int refs;           /* batches in flight on the call, plus 1 while parked */
  bool close_started; /* its own RECV_CLOSE_ON_SERVER batch (parked once) */
  bool closed;        /* ... completed: cancelled, or after the reply */
  bool want_park;     /* the last run found the requirement unmet and may wait */
  bool wait_by_key;   /* ... for the entity whose store_change_key is wait_key (a version) */
  uint64_t wait_key;
  bool fx_any;        /* the call carries a freshness header */
  bool no_wait;       /* the parked set refused it (shutting down) */
  bool park_full;     /* the parked set refused it (PARK_MAX_CALLS reached) */
  bool parked_once;   /* it waited: an UNAVAILABLE answer is counted as expired */
  uint64_t seen_pubs; /* park_publishes() before the last run's snapshot */
  struct fresh_req fx;
  struct parked pk;
  size_t reply_size; /* counted in w->reply_bytes until the reply batch ends */
  int64_t t0;        /* clock_mono_ns() when the call arrived */
  uint64_t ns;       /* handler time */
  char *org;         /* sampled for the access log: its organization_id (owned) */
};

/* A call to a method nobody registered: answered UNIMPLEMENTED. */
struct gcall {
  struct cq_tag t_new, t_done;
  struct worker *w;
  grpc_call *call;
  grpc_call_details details;
  grpc_metadata_array md;
  grpc_slice msg;
  int cancelled;
  int64_t t0;
};

static uint64_t elapsed_ns(int64_t t0) { return (uint64_t)(clock_mono_ns() - t0); }

/* ---- Unary calls ---- */

static void unary_new(struct cq_tag *t, bool ok);
static void unary_done(struct cq_tag *t, bool ok);
static void unary_closed(struct cq_tag *t, bool ok);
static void unary_woken(struct cq_tag *t, bool ok);

/* Reserves size bytes of the reply budget for one reply. Returns NULL, or
 * why not (arena text, for RESOURCE_EXHAUSTED). The budget
 * (GRPC_MAX_PENDING_REPLY_MB) bounds the memory that clients that never
 * read can pin, server-wide. Each worker also keeps to its share once it
 * holds unread replies, so one worker's stalled clients cannot take it all;
 * but a worker with nothing pending may send one reply up to the whole
 * budget (a share is not a wall: an idle server must answer a big call).
 * @locality w's thread. */
static const char *reply_reserve(struct worker *w, struct arena *a, size_t size) {
  const double mib = 1024.0 * 1024.0;
  if (size > w->reply_budget)
    return arena_printf(a,
                        "reply is %.2f MiB, more than GRPC_MAX_PENDING_REPLY_MB (%.0f MiB) "
                        "allows; ask for less or raise GRPC_MAX_PENDING_REPLY_MB",
                        (double)size / mib, (double)w->reply_budget / mib);
  if (w->reply_bytes > 0 && w->reply_bytes + size > w->reply_share)
    return arena_printf(a,
                        "unread replies on this connection's worker hold %.2f MiB, its share "
                        "of GRPC_MAX_PENDING_REPLY_MB is %.2f MiB; retry later",
                        (double)w->reply_bytes / mib, (double)w->reply_share / mib);
  /* A plain byte count: relaxed is enough (it orders nothing else). */
  size_t before = atomic_fetch_add_explicit(w->replies_pending, size, memory_order_relaxed);
  if (before + size > w->reply_budget) {
    atomic_fetch_sub_explicit(w->replies_pending, size, memory_order_relaxed);
    return arena_printf(a,
                        "unread replies hold %.2f MiB of GRPC_MAX_PENDING_REPLY_MB (%.0f MiB) "
                        "on this server; retry later",
                        (double)before / mib, (double)w->reply_budget / mib);
  }
  w->reply_bytes += size;
  return NULL;
}

static void ucall_free(struct ucall *c) {
  c->w->reply_bytes -= c->reply_size;
  if (c->reply_size > 0)
    atomic_fetch_sub_explicit(c->w->replies_pending, c->reply_size, memory_order_relaxed);
  free(c->org);
  grpc_metadata_array_destroy(&c->md);
  if (c->payload) grpc_byte_buffer_destroy(c->payload);
  if (c->reply) grpc_byte_buffer_destroy(c->reply);
  grpc_slice_unref(c->details);
  fresh_req_clear(&c->fx);
  park_leave(c->w->srv->park, &c->pk); /* its place under PARK_MAX_CALLS, if it had one */
  if (c->call) grpc_call_unref(c->call);
  atomic_fetch_sub(c->w->env.outstanding, 1);
  free(c);
}

/* Posts one request for method mi on w's queue. */
static void unary_request(struct worker *w, int mi) {
  struct ucall *c = xcalloc(1, sizeof *c);
  c->w = w, c->mi = mi;
  c->t_new.fn = unary_new, c->t_done.fn = unary_done;
  c->t_close.fn = unary_closed, c->t_wake.fn = unary_woken;
  c->details = grpc_empty_slice();
  c->fx.max_staleness_ms = -1;
  grpc_metadata_array_init(&c->md);
  atomic_fetch_add(w->env.outstanding, 1);
  grpc_call_error e = grpc_server_request_registered_call(
      w->env.server, w->srv->handles[mi], &c->call, &c->deadline, &c->md, &c->payload, w->env.cq,
      w->env.cq, &c->t_new);
  if (e != GRPC_CALL_OK) ucall_free(c);
}

/* Logs a rejected request, at most once a second per worker (abuse must
 * not turn into a log flood); every one is counted. Never called for a
 * call the client cancelled: that is not a bad request. */
static void log_rejected(struct worker *w, const char *path, int code, grpc_slice details) {
  metrics_add(w->srv->metrics, MC_BAD_REQUESTS, 1);
  time_t now = time(NULL);
  if (now == w->reject_last) {
    w->reject_suppressed++;
    return;
  }
  char *text = grpc_slice_to_c_string(details); /* only for a line that is written */
  log_warn("request rejected", LF_S("method", path), LF_I("code", code), LF_S("details", text),
           LF_I("suppressed", w->reject_suppressed));
  gpr_free(text);
  w->reject_last = now, w->reject_suppressed = 0;
}

/* Worker-local xorshift for access-log sampling: no shared state, no lock. */
static bool sample(struct worker *w, double rate) {
  if (rate <= 0) return false;
  if (rate >= 1) return true;
  uint64_t x = w->rng ? w->rng : (uint64_t)(uintptr_t)w | 1;
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  w->rng = x;
  return (double)(x >> 11) / 9007199254740992.0 < rate;
}

/* Decides whether c goes to the access log (ACCESS_LOG_SAMPLE) and keeps
 * what the line needs from the arena (org may be NULL). */
static void access_log_sample(struct ucall *c, const char *org) {
  if (!sample(c->w, c->w->srv->cfg->access_log_sample)) return;
  size_t n = org ? strlen(org) : 0;
  c->org = xmalloc(n + 1); /* only sampled calls pay for the copy */
  memcpy(c->org, org ? org : "", n + 1);
}

/* Returns true if deadline (any clock) is not in the future. Most calls
 * carry no deadline: those cost no clock read. */
static bool deadline_passed(gpr_timespec deadline) {
  if (gpr_time_cmp(deadline, gpr_inf_future(deadline.clock_type)) == 0) return false;
  return gpr_time_cmp(deadline, gpr_now(deadline.clock_type)) <= 0;
}

/* The code a finished call is counted and logged with, as the client saw
 * it: the code we sent, unless the client went away before our status
 * reached it. RECV_CLOSE_ON_SERVER only says "cancelled"; the C core has
 * no public way to tell a deadline from a client's RST_STREAM, so a
 * cancelled call whose deadline has passed is counted DEADLINE_EXCEEDED
 * (what the core sends, and what the client sees, when the deadline
 * fires), any other cancelled call CANCELLED. */
static int final_code(int sent, int cancelled, gpr_timespec deadline) {
  if (!cancelled) return sent;
  return deadline_passed(deadline) ? GRPC_STATUS_DEADLINE_EXCEEDED : GRPC_STATUS_CANCELLED;
}

/* Returns true for codes that say a client sent something we refuse (logged
 * as "request rejected"), false for OK, our own unavailability, and calls
 * the client cancelled or let expire. */
static bool is_rejection(int code) {
  return code != GRPC_STATUS_OK && code != GRPC_STATUS_UNAVAILABLE &&
         code != GRPC_STATUS_CANCELLED && code != GRPC_STATUS_DEADLINE_EXCEEDED;
}

/* Counts the call, logs it if rejected (not if cancelled or expired) and
 * writes its access-log line if sampled. Called once per call, when its
 * reply batch ended (or could not start). @locality c's worker. */
static void unary_account(struct ucall *c) {
  int code = final_code(c->code, c->cancelled, c->deadline);
  metrics_rpc_done(c->w->env.metrics, methods[c->mi].mm, code, c->ns);
  if (is_rejection(code)) log_rejected(c->w, methods[c->mi].path, code, c->details);
  if (c->org != NULL)
    log_info("rpc", LF_S("method", methods[c->mi].path), LF_I("code", code),
             LF_I("us", c->ns / 1000), LF_S("organization_id", c->org),
             LF_S("snapshot_version", c->version));
}

/* Why a call whose freshness requirement is unmet cannot wait any longer
 * (the text ends its refusal_code message), or NULL if it may park: it may
 * until MAX_WAIT_MS after its arrival, unless the server is stopping or
 * PARK_MAX_CALLS calls wait already. */
static const char *wait_refusal(struct ucall *c, struct arena *a) {
  if (c->park_full)
    return arena_printf(a,
                        "(cannot wait: PARK_MAX_CALLS=%d calls are waiting on this replica; "
                        "retry after a backoff or on another replica)",
                        c->w->srv->cfg->park_max_calls);
  if (c->no_wait || atomic_load(c->w->env.stopping)) return "(the server is shutting down)";
  int64_t now = clock_mono_ns();
  if (now < c->pk.until_ns) return NULL;
  return arena_printf(a, "after %lld ms (MAX_WAIT_MS %d)", (long long)((now - c->t0) / 1000000),
                      c->w->srv->cfg->max_wait_ms);
}

/* The status of a call whose requirement is unmet and that cannot wait:
 * RESOURCE_EXHAUSTED if the parked set was full (a load limit, like the
 * reply budget), else UNAVAILABLE (this replica cannot answer in time). */
static grpc_status_code refusal_code(const struct ucall *c) {
  return c->park_full ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_UNAVAILABLE;
}

/* Runs the request checks of c's method only (rpc_ctx.check_only), for a
 * call the freshness gate is about to refuse or park. Returns true if the
 * request is valid (res left as it was), false with res filled
 * (INVALID_ARGUMENT naming the field): a request that can never be
 * answered must be told so at once, not wait MAX_WAIT_MS holding a place
 * under PARK_MAX_CALLS and end UNAVAILABLE, which clients retry. */
static bool request_valid(const struct ucall *c, struct rpc_ctx *ctx, struct rpc_result *res,
                          const grpc_slice *req) {
  ctx->check_only = true;
  methods[c->mi].fn(ctx, GRPC_SLICE_START_PTR(*req), GRPC_SLICE_LENGTH(*req), res);
  ctx->check_only = false;
  return res->code == GRPC_STATUS_OK;
}

/* The freshness gate before the handler: x-catalog-max-staleness-ms
 * refuses at once; an uncovered x-catalog-min-position parks the call
 * (returns 1) unless cannot_wait says why it may not (then refused). An
 * invalid request (req) is refused as such before either. Returns 0 to run
 * the handler, -1 with res filled. */
static int fresh_gate(struct ucall *c, struct rpc_ctx *ctx, struct rpc_result *res,
                      const struct snapshot *snap, const char *cannot_wait, const grpc_slice *req) {
  int64_t ms = -1;
  if (c->fx.max_staleness_ms >= 0)
    ms = store_staleness_ns(c->w->srv->store, clock_mono_ns()) / 1000000;
  bool stale = ms > c->fx.max_staleness_ms;
  char why[200];
  if (!stale && (c->fx.npos == 0 || fresh_positions_met(&c->fx, snap, why, sizeof why))) return 0;
  if (!request_valid(c, ctx, res, req)) return -1;
  if (stale) {
    rpc_fail(ctx, res, GRPC_STATUS_UNAVAILABLE,
             "x-catalog-max-staleness-ms %lld: this replica is %lld ms behind its change feed; "
             "try another replica",
             (long long)c->fx.max_staleness_ms, (long long)ms);
    return -1;
  }
  if (cannot_wait == NULL) return 1;
  rpc_fail(ctx, res, refusal_code(c), "x-catalog-min-position not reached %s: %s", cannot_wait,
           why);
  return -1;
}

/* Runs the method on snap (non-NULL for catalog methods), through the
 * freshness gate if the call carries a header. Sets c->want_park instead of
 * an answer when the call should wait for a later snapshot. */
static void unary_dispatch(struct ucall *c, struct rpc_ctx *ctx, struct rpc_result *res,
                           const struct snapshot *snap, const grpc_slice *req) {
  const struct method_def *m = &methods[c->mi];
  const char *cannot_wait = NULL;
  ctx->snap = snap;
  if (c->fx_any && (m->flags & NEEDS_SNAPSHOT)) {
    cannot_wait = wait_refusal(c, ctx->arena);
    int g = fresh_gate(c, ctx, res, snap, cannot_wait, req);
    if (g != 0) {
      c->want_park = g > 0;
      return;
    }
    ctx->min_version = c->fx.min_version;
  }
  m->fn(ctx, GRPC_SLICE_START_PTR(*req), GRPC_SLICE_LENGTH(*req), res);
  if (ctx->version_unmet == NULL) return;
  if (cannot_wait == NULL) {
    /* Only a publish that writes this entity can change the answer: the
     * releaser hands the call back on such a publish only. */
    c->want_park = true;
    c->wait_by_key = true, c->wait_key = ctx->version_unmet_key;
  } else {
    rpc_fail(ctx, res, refusal_code(c), "%s %s", ctx->version_unmet, cannot_wait);
  }
}

/* Packs an OK reply into c->reply within the reply budget (or turns res
 * into RESOURCE_EXHAUSTED). @locality c's worker, inside the read section
 * that res points into. */
static void unary_pack(struct ucall *c, struct rpc_ctx *ctx, struct rpc_result *res) {
  size_t size = res->code == GRPC_STATUS_OK ? protobuf_c_message_get_packed_size(res->reply) : 0;
  const char *over = size > 0 ? reply_reserve(c->w, ctx->arena, size) : NULL;
  if (over != NULL) rpc_fail(ctx, res, GRPC_STATUS_RESOURCE_EXHAUSTED, "%s", over);
  if (res->code != GRPC_STATUS_OK) return;
  assert(res->reply != NULL);
  c->reply_size = size; /* reserved: released in ucall_free */
  grpc_slice out = grpc_slice_malloc(size);
  protobuf_c_message_pack(res->reply, GRPC_SLICE_START_PTR(out));
  c->reply = grpc_raw_byte_buffer_create(&out, 1);
  grpc_slice_unref(out);
}

/* Runs the handler in a read section and packs the reply there. Returns
 * the request's organization (arena memory, valid until the arena reset).
 * fx_err: why the call's freshness headers are malformed, or NULL. If the
 * call should wait instead (c->want_park), nothing is packed. */
static const char *unary_handle(struct ucall *c, const char *fx_err) {
  const struct method_def *m = &methods[c->mi];
  struct rpc_ctx ctx = c->w->env.ctx;
  ctx.service = service_of(c->w->srv, m->service);
  struct rpc_result res = {.code = GRPC_STATUS_OK};
  grpc_byte_buffer_reader r;
  grpc_slice req = grpc_empty_slice();
  if (c->payload != NULL && grpc_byte_buffer_reader_init(&r, c->payload)) {
    req = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
  }
  c->want_park = false, c->wait_by_key = false;
  if (c->fx_any) c->seen_pubs = park_publishes(c->w->srv->park); /* before the snapshot */
  store_read_lock();
  const struct snapshot *snap = store_current(c->w->srv->store);
  if (c->payload == NULL)
    rpc_fail(&ctx, &res, GRPC_STATUS_INVALID_ARGUMENT, "request message is missing");
  else if (deadline_passed(c->deadline)) /* nobody waits for the answer: do not compute it */
    rpc_fail(&ctx, &res, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded before the call ran");
  else if ((m->flags & NEEDS_SNAPSHOT) && fx_err != NULL)
    rpc_fail(&ctx, &res, GRPC_STATUS_INVALID_ARGUMENT, "%s", fx_err);
  else if ((m->flags & NEEDS_SNAPSHOT) && snap == NULL)
    rpc_fail(&ctx, &res, GRPC_STATUS_UNAVAILABLE, "catalog is loading; retry shortly");
  else
    unary_dispatch(c, &ctx, &res, snap, &req);
  if (!c->want_park) unary_pack(c, &ctx, &res);
  c->version[0] = '\0';
  if (snap != NULL && (m->flags & NEEDS_SNAPSHOT)) {
    snprintf(c->version, sizeof c->version, "%" PRIu64, snap_version(snap));
    snprintf(c->staleness, sizeof c->staleness, "%lld",
             (long long)(store_staleness_ns(c->w->srv->store, clock_mono_ns()) / 1000000));
  }
  store_read_unlock();
  grpc_slice_unref(req);
  if (c->want_park) return NULL;
  c->code = res.code;
  if (res.details != NULL) c->details = grpc_slice_from_copied_string(res.details);
  return res.org;
}

static void unary_send(struct ucall *c) {
  grpc_op ops[4];
  size_t n = 0;
  memset(ops, 0, sizeof ops);
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (c->reply != NULL) {
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->reply;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n].data.send_status_from_server.status = c->code;
  ops[n].data.send_status_from_server.status_details = &c->details;
  if (c->version[0] != '\0') {
    c->trailer[0].key = grpc_slice_from_static_string(SNAPSHOT_VERSION_KEY);
    c->trailer[0].value = grpc_slice_from_static_string(c->version);
    c->trailer[1].key = grpc_slice_from_static_string(STALENESS_KEY);
    c->trailer[1].value = grpc_slice_from_static_string(c->staleness);
    ops[n].data.send_status_from_server.trailing_metadata = c->trailer;
    ops[n].data.send_status_from_server.trailing_metadata_count = 2;
  }
  n++;
  if (!c->close_started) { /* a parked call has its own */
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  }
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, &c->t_done, NULL);
  if (e == GRPC_CALL_OK) {
    c->refs++;
    return;
  }
  log_error("reply batch refused", LF_I("grpc_call_error", e));
  if (c->refs == 0) {
    unary_account(c);
    metrics_in_flight(c->w->env.metrics, -1);
    ucall_free(c);
  }
}

/* Counts, logs and frees c once nothing is in flight on it any more. */
static void unary_release(struct ucall *c) {
  if (--c->refs > 0) return;
  if (c->ns == 0) c->ns = elapsed_ns(c->t0);
  unary_account(c);
  metrics_in_flight(c->w->env.metrics, -1);
  ucall_free(c);
}

/* Parks c: starts its own RECV_CLOSE_ON_SERVER (the cancel and deadline
 * detector; the reply batch then holds only send ops) and adds it to the
 * parked set. Returns 0, or if it cannot wait (the caller answers now):
 * -ENOSPC (PARK_MAX_CALLS calls wait), -ESHUTDOWN (the set is closed) or
 * -EIO (the core refused the batch). */
static int park_call(struct ucall *c) {
  if (!c->close_started) {
    grpc_op op = {.op = GRPC_OP_RECV_CLOSE_ON_SERVER};
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) != GRPC_CALL_OK) return -EIO;
    c->close_started = true;
    c->refs++;
  }
  c->pk.call = c->call, c->pk.wake = &c->t_wake;
  c->pk.need = c->fx.npos > 0 ? &c->fx : NULL;
  c->pk.by_key = c->wait_by_key, c->pk.key = c->wait_key;
  int rc = park_add(c->w->srv->park, &c->pk, c->seen_pubs);
  if (rc != 0) return rc;
  c->parked_once = true;
  c->refs++; /* the park's hold, dropped when it comes back or is taken out */
  return 0;
}

/* Runs c (again, after a wait) and answers it, or parks it. fx_err: see
 * unary_handle. */
static void unary_run(struct ucall *c, const char *fx_err) {
  const char *org = unary_handle(c, fx_err);
  if (c->want_park) {
    int rc = park_call(c);
    if (rc == 0) return;
    if (rc == -ENOSPC)
      c->park_full = true; /* the next run answers RESOURCE_EXHAUSTED, unless met by now */
    else
      c->no_wait = true; /* the parked set is closed: the next run answers */
    org = unary_handle(c, NULL);
  }
  if (c->parked_once && c->code == GRPC_STATUS_UNAVAILABLE)
    metrics_add(c->w->srv->metrics, MC_PARK_EXPIRED, 1);
  c->ns = elapsed_ns(c->t0);
  if (org != NULL && c->org == NULL) access_log_sample(c, org);
  unary_send(c);
}

static void unary_new(struct cq_tag *t, bool ok) {
  struct ucall *c = container_of(t, struct ucall, t_new);
  if (!ok) { /* shutting down: the request was never matched */
    ucall_free(c);
    return;
  }
  c->t0 = clock_mono_ns();
  if (!atomic_load(c->w->env.stopping)) unary_request(c->w, c->mi);
  metrics_in_flight(c->w->env.metrics, +1);
  char fx_err[400]; /* a message naming a header and the known names */
  const char *bad = NULL;
  if (c->md.count > 0) { /* a call without metadata pays nothing */
    if (fresh_parse(&c->md, &c->fx, fx_err, sizeof fx_err) != 0) bad = fx_err;
    c->fx_any =
        bad == NULL && (c->fx.npos > 0 || c->fx.min_version > 0 || c->fx.max_staleness_ms >= 0);
    c->pk.until_ns = c->t0 + (int64_t)c->w->srv->cfg->max_wait_ms * 1000000;
  }
  unary_run(c, bad);
}

/* The reply batch ended: the call is counted now, when RECV_CLOSE_ON_SERVER
 * tells whether the client got our status. A call the client cancelled, or
 * whose deadline passed, before the status reached it is CANCELLED or
 * DEADLINE_EXCEEDED (not logged), whatever we computed; that includes a
 * client that reset the stream before its message arrived, while one that
 * really sent none is INVALID_ARGUMENT "request message is missing"
 * (logged). A client may thus get its answer a moment before /metrics
 * counts it. (A call that was parked is counted when the later of its
 * reply and its own close batch ends.) */
static void unary_done(struct cq_tag *t, bool ok) {
  struct ucall *c = container_of(t, struct ucall, t_done);
  (void)ok;
  unary_release(c);
}

/* A parked (or once parked) call's RECV_CLOSE_ON_SERVER completed: after
 * its reply, or because the client cancelled or its deadline passed. A
 * call still in the parked set is then dropped there (counted, never
 * computed); one already handed back is dropped when its wake arrives. */
static void unary_closed(struct cq_tag *t, bool ok) {
  struct ucall *c = container_of(t, struct ucall, t_close);
  (void)ok;
  c->closed = true;
  if (c->cancelled && park_remove(c->w->srv->park, &c->pk)) {
    metrics_add(c->w->srv->metrics, MC_PARK_DROPPED, 1);
    c->refs--; /* the park's hold */
  }
  unary_release(c);
}

/* A parked call was handed back (a publish may satisfy it, MAX_WAIT_MS is
 * over, or the server is stopping): run it again, unless the client went
 * away meanwhile. */
static void unary_woken(struct cq_tag *t, bool ok) {
  struct ucall *c = container_of(t, struct ucall, t_wake);
  (void)ok;
  park_claim(c->w->srv->park, &c->pk);
  if (c->closed) { /* cancelled or expired while the wake was on its way */
    metrics_add(c->w->srv->metrics, MC_PARK_DROPPED, 1);
    unary_release(c);
    return;
  }
  c->refs--; /* the park's hold; the close batch still holds the call */
  unary_run(c, NULL);
}

/* ---- Unknown methods ---- */

static void generic_new(struct cq_tag *t, bool ok);
static void generic_done(struct cq_tag *t, bool ok);

static void gcall_free(struct gcall *c) {
  grpc_call_details_destroy(&c->details);
  grpc_metadata_array_destroy(&c->md);
  grpc_slice_unref(c->msg);
  if (c->call) grpc_call_unref(c->call);
  atomic_fetch_sub(c->w->env.outstanding, 1);
  free(c);
}

static void generic_request(struct worker *w) {
  struct gcall *c = xcalloc(1, sizeof *c);
  c->w = w;
  c->t_new.fn = generic_new, c->t_done.fn = generic_done;
  c->msg = grpc_empty_slice();
  grpc_call_details_init(&c->details);
  grpc_metadata_array_init(&c->md);
  atomic_fetch_add(w->env.outstanding, 1);
  if (grpc_server_request_call(w->env.server, &c->call, &c->details, &c->md, w->env.cq, w->env.cq,
                               &c->t_new) != GRPC_CALL_OK)
    gcall_free(c);
}

static void generic_new(struct cq_tag *t, bool ok) {
  struct gcall *c = container_of(t, struct gcall, t_new);
  if (!ok) {
    gcall_free(c);
    return;
  }
  c->t0 = clock_mono_ns();
  if (!atomic_load(c->w->env.stopping)) generic_request(c->w);
  char *path = grpc_slice_to_c_string(c->details.method);
  char msg[300];
  snprintf(msg, sizeof msg, "unknown method %.256s", path);
  c->msg = grpc_slice_from_copied_string(msg);
  log_rejected(c->w, path, GRPC_STATUS_UNIMPLEMENTED, c->msg);
  gpr_free(path);
  grpc_op ops[3];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[1].data.send_status_from_server.status = GRPC_STATUS_UNIMPLEMENTED;
  ops[1].data.send_status_from_server.status_details = &c->msg;
  ops[2].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[2].data.recv_close_on_server.cancelled = &c->cancelled;
  if (grpc_call_start_batch(c->call, ops, 3, &c->t_done, NULL) != GRPC_CALL_OK) gcall_free(c);
}

/* Counted once the status batch ended: CANCELLED if the client went away
 * first. (Logged at arrival: an unknown method is a bad request either way.) */
static void generic_done(struct cq_tag *t, bool ok) {
  struct gcall *c = container_of(t, struct gcall, t_done);
  (void)ok;
  metrics_rpc_done(c->w->env.metrics, MM_UNKNOWN,
                   final_code(GRPC_STATUS_UNIMPLEMENTED, c->cancelled, c->details.deadline),
                   elapsed_ns(c->t0));
  gcall_free(c);
}

/* ---- Workers ---- */

static void post_requests(struct worker *w) {
  struct server *s = w->srv;
  for (size_t mi = 0; mi < NMETHODS; mi++) {
    if (s->handles[mi] == NULL) continue;
    for (int k = 0; k < methods[mi].preposted; k++) {
      if (methods[mi].fn != NULL)
        unary_request(w, (int)mi);
      else
        stream_request(&w->env, s->handles[mi], methods[mi].ops, methods[mi].mm,
                       service_of(s, methods[mi].service));
    }
  }
  for (int k = 0; k < UNKNOWN_PREPOSTED; k++)
    generic_request(w);
}

/* @locality its own thread; an RCU reader for its whole life. */
static void *worker_main(void *arg) {
  struct worker *w = arg;
  store_reader_register();
  post_requests(w);
  for (;;) {
    grpc_event ev =
        grpc_completion_queue_next(w->env.cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    struct cq_tag *t = ev.tag;
    t->fn(t, ev.success != 0);
    arena_reset(&w->arena);
  }
  store_reader_unregister();
  return NULL;
}

/* ---- Lifecycle ---- */

/* The core server with our channel args: no SO_REUSEPORT (a second server
 * on the port is an error, not a silent split), the message and stream
 * limits, and the connection age (GRPC_MAX_CONNECTION_AGE_MS, 0 = off): an
 * aged connection gets a GOAWAY, its calls get the grace to finish, and the
 * client reconnects, through the Service, possibly to a replica added since
 * it first connected. Returns the server (the core aborts on no memory). */
static grpc_server *create_core_server(const struct config *cfg) {
  grpc_arg args[5];
  size_t n = 0;
  args[n++] =
      (grpc_arg){.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0};
  args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
                         .value.integer = cfg->max_recv_bytes};
  args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                         .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
                         .value.integer = cfg->max_concurrent_streams};
  if (cfg->max_connection_age_ms > 0) {
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_CONNECTION_AGE_MS,
                           .value.integer = cfg->max_connection_age_ms};
    args[n++] = (grpc_arg){.type = GRPC_ARG_INTEGER,
                           .key = GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                           .value.integer = cfg->max_connection_age_grace_ms};
  }
  grpc_channel_args ch = {.num_args = n, .args = args};
  return grpc_server_create(&ch, NULL);
}

static void register_methods(struct server *s) {
  for (size_t mi = 0; mi < NMETHODS; mi++) {
    if ((methods[mi].flags & REFLECTION_ONLY) && !s->cfg->reflection) continue;
    grpc_server_register_method_payload_handling ph =
        methods[mi].fn ? GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER : GRPC_SRM_PAYLOAD_NONE;
    s->handles[mi] = grpc_server_register_method(s->srv, methods[mi].path, NULL, ph, 0);
    assert(s->handles[mi] != NULL);
  }
}

/* Tries to bind (and release) a TCP socket on every address host resolves
 * to, as the core is about to, so that a port conflict or an address not
 * on this host is reported by us, in one clear line, before the core logs
 * its error tree. Returns 0 if one address binds (the core will then
 * listen), else the first bind's -errno (or -EADDRNOTAVAIL if host does
 * not resolve), with the reason text in why. */
static int probe_bind(const char *host, int port, char *why, size_t cap) {
  char p[16];
  struct addrinfo hints = {
      .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
  struct addrinfo *res = NULL;
  int rc = 0;
  snprintf(p, sizeof p, "%d", port);
  int gai = getaddrinfo(host, p, &hints, &res);
  if (gai != 0) {
    snprintf(why, cap, "cannot resolve the address: %s", gai_strerror(gai));
    return -EADDRNOTAVAIL;
  }
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol), one = 1;
    int e = 0;
    if (fd < 0) {
      e = errno;
    } else {
      /* As the core binds: SO_REUSEADDR, and SO_REUSEPORT off (see
       * create_core_server), so a listener already there is a conflict. */
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(fd, a->ai_addr, a->ai_addrlen) != 0) e = errno;
      close(fd);
    }
    if (e == 0) {
      rc = 0;
      break;
    }
    if (rc == 0) {
      rc = -e;
      snprintf(why, cap, "%s", strerror(e));
    }
  }
  freeaddrinfo(res);
  return rc;
}

static int bind_port(struct server *s) {
  char addr[256], why[160] = "";
  const char *host = s->cfg->listen_addr;
  snprintf(addr, sizeof addr, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, s->cfg->grpc_port);
  int rc = probe_bind(s->cfg->listen_addr, s->cfg->grpc_port, why, sizeof why);
  if (rc != 0) {
    log_error("cannot listen on the gRPC port", LF_S("address", addr), LF_S("error", why),
              LF_S("hint", rc == -EADDRINUSE ? "another process holds GRPC_PORT on this address"
                                             : "check GRPC_LISTEN_ADDRESS and GRPC_PORT"));
    return rc;
  }
  grpc_server_credentials *creds =
      s->tls ? tls_credentials(s->tls) : grpc_insecure_server_credentials_create();
  s->port = grpc_server_add_http2_port(s->srv, addr, creds);
  grpc_server_credentials_release(creds);
  if (s->port <= 0) { /* lost a race for the port, or a core failure: see its log above */
    log_error("cannot listen on the gRPC port", LF_S("address", addr),
              LF_S("error", "the gRPC core refused the address (its error is logged above)"));
    return -EIO;
  }
  return 0;
}

/* Fills what worker i hands to its handlers and streams: its queue,
 * metrics shard and arena, the server's call counters, and the context
 * template (arena, cfg) that every call copies. The server
 * owns all of it; it outlives the worker's calls. */
static void worker_env_init(struct server *s, struct worker *w, int i) {
  w->env = (struct stream_env){
      .server = s->srv,
      .cq = grpc_completion_queue_create_for_next(NULL),
      .metrics = metrics_shard(s->metrics, i),
      .outstanding = &s->outstanding,
      .stopping = &s->stopping,
      .ctx = {.arena = &w->arena, .snap = NULL, .cfg = s->cfg, .service = NULL}};
}

int server_start(const struct server_deps *d, struct server **out) {
  struct server *s = xcalloc(1, sizeof *s);
  int rc = 0;
  s->cfg = d->cfg, s->store = d->store, s->metrics = d->metrics, s->health = d->health;
  if ((s->park = park_new(s->store, s->metrics, s->cfg->park_max_calls)) == NULL) {
    rc = -ENOMEM;
    goto fail;
  }
  if (s->cfg->reflection && (s->reflection = reflection_new()) == NULL) {
    rc = -EINVAL;
    goto fail;
  }
  if (s->cfg->tls_cert_file[0] != '\0') {
    char err[2048]; /* two paths of up to 512 bytes and a reason */
    if ((s->tls = tls_new(s->cfg, err, sizeof err)) == NULL) {
      log_error("bad TLS configuration", LF_S("error", err));
      rc = -EINVAL;
      goto fail;
    }
  }
  s->srv = create_core_server(s->cfg);
  register_methods(s);
  s->nworkers = s->cfg->workers;
  s->workers = xcalloc((size_t)s->nworkers, sizeof *s->workers);
  for (int i = 0; i < s->nworkers; i++) {
    struct worker *w = &s->workers[i];
    *w = (struct worker){.srv = s,
                         .reply_share =
                             (size_t)s->cfg->max_pending_reply_bytes / (size_t)s->nworkers,
                         .reply_budget = (size_t)s->cfg->max_pending_reply_bytes,
                         .replies_pending = &s->replies_pending};
    worker_env_init(s, w, i);
    grpc_server_register_completion_queue(s->srv, w->env.cq, NULL);
    arena_init(&w->arena, 64 * 1024);
  }
  s->shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
  if ((rc = bind_port(s)) != 0) goto fail;
  grpc_server_start(s->srv);
  for (int i = 0; i < s->nworkers; i++)
    pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
  *out = s;
  return 0;
fail:
  server_destroy(s);
  return rc;
}

int server_port(const struct server *s) { return s->port; }

/* Waits on the shutdown queue until deadline; returns 1 if the server's
 * shutdown tag arrived. */
static int await_shutdown(struct server *s, gpr_timespec deadline) {
  grpc_event ev = grpc_completion_queue_pluck(s->shutdown_cq, s, deadline, NULL);
  return ev.type == GRPC_OP_COMPLETE;
}

static gpr_timespec in_ms(long ms) {
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Keeps serving (already NOT_SERVING) until calls stop arriving: no call
 * finished for QUIET_MS and none in flight, or SHUTDOWN_DRAIN_MS (at most the
 * grace period) passed. The core's shutdown cancels calls that arrived but
 * were not yet matched to a posted request, so stopping at once would fail
 * calls clients sent before the signal. */
#define QUIET_MS 200
static void drain(struct server *s) {
  int64_t budget = s->cfg->shutdown_drain_ms, t0 = clock_mono_ms(), quiet_since = t0;
  if (budget > s->cfg->shutdown_grace_s * 1000L) budget = s->cfg->shutdown_grace_s * 1000L;
  uint64_t last = metrics_rpc_total(s->metrics);
  while (clock_mono_ms() - t0 < budget) {
    usleep(20000);
    uint64_t n = metrics_rpc_total(s->metrics);
    if (n != last || metrics_rpc_in_flight(s->metrics) > 0) {
      last = n;
      quiet_since = clock_mono_ms();
    } else if (clock_mono_ms() - quiet_since >= QUIET_MS) {
      break;
    }
  }
  log_info("drained", LF_I("ms", clock_mono_ms() - t0));
}

void server_stop(struct server *s) {
  park_close(s->park); /* parked calls are answered now (the workers still poll) */
  health_set_serving(s->health, false);
  health_close_watchers(s->health);
  drain(s);
  atomic_store(&s->stopping, true);
  grpc_server_shutdown_and_notify(s->srv, s->shutdown_cq, s);
  /* After the grace, at most SHUTDOWN_TAIL_MS more for the core and the
   * call contexts together: the chart's shutdown budget counts on it. */
  int64_t tail_end;
  if (!await_shutdown(s, in_ms(s->cfg->shutdown_grace_s * 1000L))) {
    /* With no call running, what held the core is an idle client connection
     * (the core waits for its peers to go away): nothing an operator must act
     * on, so no warning. */
    if (metrics_rpc_in_flight(s->metrics) > 0)
      log_warn("grace period over; cancelling remaining calls",
               LF_I("grace_seconds", s->cfg->shutdown_grace_s));
    else
      log_info("grace period over; closing idle connections",
               LF_I("grace_seconds", s->cfg->shutdown_grace_s));
    grpc_server_cancel_all_calls(s->srv);
    tail_end = clock_mono_ms() + SHUTDOWN_TAIL_MS;
    if (!await_shutdown(s, in_ms(SHUTDOWN_TAIL_MS)))
      log_error("server shutdown did not complete", );
  } else {
    tail_end = clock_mono_ms() + SHUTDOWN_TAIL_MS;
  }
  /* Every call context must be freed while the workers still poll. */
  while (atomic_load(&s->outstanding) > 0 && clock_mono_ms() < tail_end)
    usleep(1000);
  if (atomic_load(&s->outstanding) > 0)
    log_error("calls still outstanding at shutdown", LF_I("calls", atomic_load(&s->outstanding)));
  for (int i = 0; i < s->nworkers; i++) {
    grpc_completion_queue_shutdown(s->workers[i].env.cq);
    pthread_join(s->workers[i].thread, NULL);
  }
}

void server_destroy(struct server *s) {
  if (s == NULL) return;
  for (int i = 0; s->workers && i < s->nworkers; i++) {
    grpc_completion_queue_destroy(s->workers[i].env.cq);
    arena_destroy(&s->workers[i].arena);
  }
  if (s->srv) grpc_server_destroy(s->srv);
  if (s->shutdown_cq) {
    grpc_completion_queue_shutdown(s->shutdown_cq);
    grpc_completion_queue_destroy(s->shutdown_cq);
  }
  free(s->workers);
  reflection_destroy(s->reflection);
  tls_destroy(s->tls);
  park_destroy(s->park);
  free(s);
}
