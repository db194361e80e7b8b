/*
 * rpc_variants.c - GetVariantsBatch: many variants in one call.
 *
 * Found variants come back in request order, each once even if asked for
 * twice (as the original's SQL IN did); unknown ids are listed, in request
 * order and as sent, in not_found_ids.
 */
#include <string.h>

#include "catalog.pb-c.h"
#include "rpc.h"
#include "rpc_convert.h"

/* A tiny open-addressing set of record pointers, for "each once". */
struct ptrset {
  const void **slot;
  size_t mask;
};

static void ptrset_init(struct ptrset *s, struct arena *a, size_t n) {
  size_t cap = 8;
  while (cap < 2 * n)
    cap *= 2;
  s->slot = arena_alloc(a, cap * sizeof *s->slot);
  memset(s->slot, 0, cap * sizeof *s->slot);
  s->mask = cap - 1;
}

/* Adds p; returns 1 if it was new, 0 if already there. */
static int ptrset_add(struct ptrset *s, const void *p) {
  size_t i = ((uintptr_t)p >> 4) * 0x9E3779B97F4A7C15ull & s->mask;
  for (;; i = (i + 1) & s->mask) {
    if (s->slot[i] == p) return 0;
    if (s->slot[i] == NULL) {
      s->slot[i] = p;
      return 1;
    }
  }
}

void rpc_get_variants_batch(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                            struct rpc_result *out) {
  const Catalog__GetVariantsBatchRequest *rq = rpc_request(
      ctx, out, req, len, &catalog__get_variants_batch_request__descriptor, "variant_ids");
  if (rq == NULL) return;
  size_t n = rq->n_variant_ids, orglen = strlen(rq->organization_id);
  uint8_t(*ids)[16] = rpc_parse_ids(ctx, out, rq->variant_ids, n);
  if (ids == NULL ||
      rpc_check_versions(ctx, out, CAT_VARIANT, (const uint8_t(*)[16])ids, n, rq->organization_id))
    return;
  Catalog__GetVariantsBatchResponse *r = arena_alloc(ctx->arena, sizeof *r);
  *r = (Catalog__GetVariantsBatchResponse)CATALOG__GET_VARIANTS_BATCH_RESPONSE__INIT;
  r->variants = arena_alloc(ctx->arena, (n + 1) * sizeof *r->variants);
  r->not_found_ids = arena_alloc(ctx->arena, (n + 1) * sizeof *r->not_found_ids);
  struct ptrset seen;
  ptrset_init(&seen, ctx->arena, n);
  const struct cat_hdr **found = arena_alloc(ctx->arena, (n + 1) * sizeof *found);
  snap_get_many(ctx->snap, CAT_VARIANT, (const uint8_t(*)[16])ids, n, rq->organization_id, orglen,
                found);
  for (size_t i = 0; i < n; i++) {
    const struct cat_variant *v = (const struct cat_variant *)found[i];
    if (v == NULL)
      r->not_found_ids[r->n_not_found_ids++] = rq->variant_ids[i];
    else if (ptrset_add(&seen, v))
      r->variants[r->n_variants++] = rpc_variant_msg(ctx->arena, v);
  }
  r->success = 1;
  r->message = arena_printf(ctx->arena, "Retrieved %zu of %zu variants", r->n_variants, n);
  out->reply = &r->base;
}
