/*
 * rpc_validate.c - ValidateVariant and ValidateVariantsBatch: "is this
 * variant known and sellable?", the hot path of Order and Inventory.
 *
 * Unknown ids are an answer (exists=false), not an error. Ids are echoed
 * exactly as the client sent them so clients can match answers to requests.
 */
#include <string.h>

#include "catalog.pb-c.h"
#include "rpc.h"
#include "rpc_convert.h"

void rpc_validate_variant(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                          struct rpc_result *out) {
  uint8_t id[16];
  const Catalog__ValidateVariantRequest *rq =
      rpc_request(ctx, out, req, len, &catalog__validate_variant_request__descriptor, "variant_id");
  if (rq == NULL || rpc_parse_id(ctx, out, "variant_id", rq->variant_id, id) != 0 ||
      rpc_check_versions(ctx, out, CAT_VARIANT, (const uint8_t(*)[16])id, 1, rq->organization_id))
    return;
  Catalog__ValidateVariantResponse *r = arena_alloc(ctx->arena, sizeof *r);
  *r = (Catalog__ValidateVariantResponse)CATALOG__VALIDATE_VARIANT_RESPONSE__INIT;
  r->variant_id = rq->variant_id;
  const struct cat_variant *v =
      snap_variant(ctx->snap, id, rq->organization_id, strlen(rq->organization_id));
  if (v == NULL) {
    r->message = arena_printf(ctx->arena, "Variant %s not found", rq->variant_id);
  } else {
    r->exists = 1;
    r->is_active = rpc_variant_sellable(ctx->snap, v);
    r->product_id = rpc_uuid(ctx->arena, v->product_id);
    r->sku = rpc_str(v->sku), r->barcode = rpc_str(v->barcode),
    r->warehouse_id = rpc_str(v->warehouse_id);
    r->track_inventory = v->track_inventory;
    r->default_min_stock = v->min_stock, r->default_max_stock = v->max_stock;
    r->price = v->sale_price;
    r->message = "Variant validated successfully";
  }
  out->reply = &r->base;
}

/* One validation entry for the id the client sent as `sent`, which names
 * variant v (NULL: unknown) whose sellability is `sellable`. */
static Catalog__VariantValidation *validation(struct rpc_ctx *ctx, const struct cat_variant *v,
                                              bool sellable, char *sent) {
  Catalog__VariantValidation *x = arena_alloc(ctx->arena, sizeof *x);
  *x = (Catalog__VariantValidation)CATALOG__VARIANT_VALIDATION__INIT;
  x->variant_id = sent;
  if (v != NULL) {
    x->exists = 1;
    x->is_active = sellable;
    x->sku = rpc_str(v->sku), x->barcode = rpc_str(v->barcode),
    x->warehouse_id = rpc_str(v->warehouse_id);
    x->track_inventory = v->track_inventory;
    x->default_min_stock = v->min_stock, x->default_max_stock = v->max_stock;
  }
  return x;
}

void rpc_validate_variants_batch(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                                 struct rpc_result *out) {
  const Catalog__ValidateVariantsBatchRequest *rq = rpc_request(
      ctx, out, req, len, &catalog__validate_variants_batch_request__descriptor, "variant_ids");
  if (rq == NULL) return;
  uint8_t(*ids)[16] = rpc_parse_ids(ctx, out, rq->variant_ids, rq->n_variant_ids);
  if (ids == NULL || rpc_check_versions(ctx, out, CAT_VARIANT, (const uint8_t(*)[16])ids,
                                        rq->n_variant_ids, rq->organization_id))
    return;
  size_t n = rq->n_variant_ids, orglen = strlen(rq->organization_id);
  const struct cat_variant **v = arena_alloc(ctx->arena, (n + 1) * sizeof *v);
  bool *sellable = arena_alloc(ctx->arena, n + 1);
  snap_get_many(ctx->snap, CAT_VARIANT, (const uint8_t(*)[16])ids, n, rq->organization_id, orglen,
                (const struct cat_hdr **)v);
  rpc_sellable_many(ctx, v, n, sellable);
  Catalog__ValidateVariantsBatchResponse *r = arena_alloc(ctx->arena, sizeof *r);
  *r = (Catalog__ValidateVariantsBatchResponse)CATALOG__VALIDATE_VARIANTS_BATCH_RESPONSE__INIT;
  r->validations = arena_alloc(ctx->arena, (n + 1) * sizeof *r->validations);
  for (size_t i = 0; i < n; i++)
    r->validations[i] = validation(ctx, v[i], sellable[i], rq->variant_ids[i]);
  r->n_validations = n;
  r->success = 1;
  r->message = arena_printf(ctx->arena, "Validated %zu variants", rq->n_variant_ids);
  out->reply = &r->base;
}
