/*
 * rpc_convert.h - snapshot records to reply messages (internal to the RPCs).
 *
 * @locality worker threads, inside the read section that produced the
 * records; the messages borrow the records' strings.
 */
#ifndef CATALOGD_RPC_CONVERT_H
#define CATALOGD_RPC_CONVERT_H

#include <stdbool.h>

#include "arena.h"
#include "catalog.pb-c.h"
#include "store.h"

struct rpc_ctx;

/* A snapshot string for a reply's string field. protobuf-c types string
 * fields char *; snapshot strings are const. The reply is only packed,
 * never written through, so pointing it at the snapshot is safe. */
static inline char *rpc_str(const char *s) { return (char *)s; }

/* The original service's rule: variant status 'active' AND its product
 * exists (same tenant) AND product status 'activa'. */
bool rpc_variant_sellable(const struct snapshot *s, const struct cat_variant *v);

/* sellable[i] = rpc_variant_sellable(ctx->snap, v[i]) (false for NULL),
 * with the product lookups overlapped. */
void rpc_sellable_many(struct rpc_ctx *ctx, const struct cat_variant *const *v, size_t n,
                       bool *sellable);

/* The canonical text of id, in the arena (records keep ids binary). */
char *rpc_uuid(struct arena *a, const uint8_t id[16]);

/* A Variant message (with dimensions and images) for v, in the arena. */
Catalog__Variant *rpc_variant_msg(struct arena *a, const struct cat_variant *v);

#endif
