/*
 * rpc.h - what the server gives a method handler, and what it expects back.
 *
 * Unary handlers are pure functions of (request bytes, snapshot): they run
 * inline on a worker thread inside an RCU read section, never block and
 * never do I/O. They build the reply in the call's arena, pointing straight
 * at snapshot strings (no copies); the server packs it before leaving the
 * read section. Streaming methods (health Watch, reflection) use stream.h.
 */
#ifndef CATALOGD_RPC_H
#define CATALOGD_RPC_H

#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stdint.h>

#include "arena.h"
#include "config.h"
#include "store.h"

struct rpc_ctx {
  struct arena *arena;         /* scratch, reset after the call */
  const struct snapshot *snap; /* non-NULL for catalog methods */
  const struct config *cfg;
  /* The method's own state, as the server's method table gives it (the
   * health service's status, the reflection index); NULL for the catalog
   * methods. Only the method that registered it knows its type. */
  void *service;
  /* Read-your-writes by version (x-catalog-min-version): > 0 asks that every
   * entity the request names by id be held at this version or later (live
   * or deleted). A handler that finds one held below it fails the call with
   * UNAVAILABLE and sets version_unmet (the failure's text): the server may
   * then park the call and run the handler again on a later snapshot.
   * version_unmet_key is then that entity's store_change_key: the call
   * cannot be met before a publish writes it. */
  int64_t min_version;
  const char *version_unmet;
  uint64_t version_unmet_key;
  /* Check the request, do not answer it: set by the server before a call
   * waits for x-catalog-min-position, so that a request that can never be
   * answered is INVALID_ARGUMENT at once instead of waiting. The handler
   * then stops at rpc_check_versions, after every check of the request,
   * leaving out as it was (code OK, no reply) when the request is valid. */
  bool check_only;
};

struct rpc_result {
  grpc_status_code code;         /* GRPC_STATUS_OK unless the handler says */
  const char *details;           /* arena or static string; NULL = none */
  const ProtobufCMessage *reply; /* required when code is OK */
  const char *org;               /* the request's organization_id, for the access log */
};

typedef void (*rpc_unary_fn)(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                             struct rpc_result *out);

/* Sets an error result: code, details formatted into the arena. */
void rpc_fail(struct rpc_ctx *ctx, struct rpc_result *out, grpc_status_code code, const char *fmt,
              ...) __attribute__((format(printf, 4, 5)));

/* The catalog methods (rpc_validate.c, rpc_variants.c, rpc_product.c). */
void rpc_validate_variant(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                          struct rpc_result *out);
void rpc_validate_variants_batch(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                                 struct rpc_result *out);
void rpc_get_variants_batch(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                            struct rpc_result *out);
void rpc_get_product_details(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                             struct rpc_result *out);

/* ---- Shared request checks (rpc_common.c) ---- */

/* Checks the request bytes *req[0, *len) before protobuf-c unpacks them.
 * Rejects a request whose known string fields hold a NUL byte: protobuf-c
 * hands strings over as C strings, so "org_a\0x" would silently become
 * "org_a" (another tenant's key). Every catalog request has exactly two
 * string fields: 1 (organization_id) and 2 (reported as field2). Unknown
 * fields are not looked at: protobuf-c skips them, and a newer client may
 * send any bytes there. Groups (wire types 3/4, which proto parsers skip
 * as unknown fields but protobuf-c refuses) are stripped: if the request
 * has any, well-formed and nested at most 64 deep, *req and *len are set
 * to an arena copy without them. Malformed input is left for unpack to
 * refuse. Returns -1 (out filled) or 0. */
int rpc_precheck(struct rpc_ctx *ctx, struct rpc_result *out, const uint8_t **req, size_t *len,
                 const char *field2);

/* The prologue every catalog request shares, in this order: rpc_precheck
 * (field2 names the request's field 2 in its error), unpack as desc into
 * the arena ("request is not a <type>" if it does not parse), record
 * organization_id (field 1 of every catalog request) in out->org for the
 * access log, and checks it (non-empty, at most CAT_ORG_MAX bytes, valid
 * UTF-8). Returns the message (arena memory, of
 * desc's type), or NULL with out filled. A new catalog method starts with
 * this one call. */
void *rpc_request(struct rpc_ctx *ctx, struct rpc_result *out, const uint8_t *req, size_t len,
                  const ProtobufCMessageDescriptor *desc, const char *field2);

/* Parses one id field named `field` into id. Empty, not valid UTF-8 or not
 * a UUID fills out with INVALID_ARGUMENT naming the field and returns -1. */
int rpc_parse_id(struct rpc_ctx *ctx, struct rpc_result *out, const char *field, const char *s,
                 uint8_t id[16]);

/* x-catalog-min-version: checks that each of the n ids of kind (org
 * organization) is held at ctx->min_version or later (rpc.h's rpc_ctx).
 * Returns 0 (also when no minimum is asked), or -1 with out filled
 * (UNAVAILABLE naming the first id that falls short and the version held)
 * and ctx->version_unmet and version_unmet_key set. Every handler calls it
 * right after its request checks: with ctx->check_only it returns -1 at
 * once with out untouched, so the handler stops there. */
int rpc_check_versions(struct rpc_ctx *ctx, struct rpc_result *out, enum cat_kind kind,
                       const uint8_t (*ids)[16], size_t n, const char *org);

/* Parses a batch of ids (count checked against cfg->max_batch_ids) into an
 * arena array. Returns the array, or NULL with out filled. */
uint8_t (*rpc_parse_ids(struct rpc_ctx *ctx, struct rpc_result *out, char **ids, size_t n))[16];

#endif
