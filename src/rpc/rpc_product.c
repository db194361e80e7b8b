/*
 * rpc_product.c - GetProductDetails: a product with its brand, images,
 * variants, tags and collections, resolved from the snapshot at read time
 * (so a product always shows its current brand, tags and collections).
 *
 * Orders are fixed so that answers do not depend on how the snapshot was
 * built (warm load or replay): images by position then id (done at build
 * time), variants by sku then id, tags and collections by name then id.
 */
#include <stdlib.h>
#include <string.h>

#include "catalog.pb-c.h"
#include "rpc.h"
#include "rpc_convert.h"

static int variant_cmp(const void *a, const void *b) {
  const struct cat_variant *x = *(const struct cat_variant *const *)a;
  const struct cat_variant *y = *(const struct cat_variant *const *)b;
  int c = strcmp(x->sku, y->sku);
  return c ? c : memcmp(x->h.key, y->h.key, 16);
}

static int named_cmp(const void *a, const void *b) {
  const struct cat_named *x = *(const struct cat_named *const *)a;
  const struct cat_named *y = *(const struct cat_named *const *)b;
  int c = strcmp(x->name, y->name);
  return c ? c : memcmp(x->h.key, y->h.key, 16);
}

/* Resolves ids of kind (brand/tag/collection) to live records of the same
 * tenant, sorted by name; dangling ids are skipped. Returns the count. */
static size_t resolve_named(struct rpc_ctx *ctx, const struct cat_product *p, enum cat_kind kind,
                            const uint8_t (*ids)[16], size_t n, const struct cat_named ***out) {
  const struct cat_named **v = arena_alloc(ctx->arena, (n + 1) * sizeof *v);
  size_t k = 0, orglen = p->h.keylen - 16;
  for (size_t i = 0; i < n; i++) {
    const struct cat_hdr *h = snap_get(ctx->snap, kind, ids[i], p->h.org, orglen);
    if (h != NULL) v[k++] = (const struct cat_named *)h;
  }
  qsort(v, k, sizeof *v, named_cmp);
  *out = v;
  return k;
}

static void add_tags_collections(struct rpc_ctx *ctx, const struct cat_product *p,
                                 Catalog__Product *m) {
  const struct cat_named **v;
  size_t n = resolve_named(ctx, p, CAT_TAG, p->tag_ids, p->n_tags, &v);
  m->tags = arena_alloc(ctx->arena, (n + 1) * sizeof *m->tags);
  for (size_t i = 0; i < n; i++) {
    Catalog__Tag *t = arena_alloc(ctx->arena, sizeof *t);
    *t = (Catalog__Tag)CATALOG__TAG__INIT;
    t->tag_id = rpc_uuid(ctx->arena, v[i]->h.key), t->name = rpc_str(v[i]->name);
    m->tags[m->n_tags++] = t;
  }
  n = resolve_named(ctx, p, CAT_COLLECTION, p->collection_ids, p->n_collections, &v);
  m->collections = arena_alloc(ctx->arena, (n + 1) * sizeof *m->collections);
  for (size_t i = 0; i < n; i++) {
    Catalog__Collection *c = arena_alloc(ctx->arena, sizeof *c);
    *c = (Catalog__Collection)CATALOG__COLLECTION__INIT;
    c->collection_id = rpc_uuid(ctx->arena, v[i]->h.key), c->name = rpc_str(v[i]->name),
    c->slug = rpc_str(v[i]->slug);
    m->collections[m->n_collections++] = c;
  }
}

static void add_brand(struct rpc_ctx *ctx, const struct cat_product *p, Catalog__Product *m) {
  if (!p->has_brand) return;
  const struct cat_named *b = (const struct cat_named *)snap_get(ctx->snap, CAT_BRAND, p->brand_id,
                                                                 p->h.org, p->h.keylen - 16);
  if (b == NULL) return; /* brand deleted or not yet seen: absent */
  Catalog__Brand *x = arena_alloc(ctx->arena, sizeof *x);
  *x = (Catalog__Brand)CATALOG__BRAND__INIT;
  x->brand_id = rpc_uuid(ctx->arena, b->h.key), x->name = rpc_str(b->name),
  x->slug = rpc_str(b->slug);
  x->description = rpc_str(b->description);
  m->brand = x;
}

static void add_images(struct rpc_ctx *ctx, const struct cat_product *p, Catalog__Product *m) {
  m->images = arena_alloc(ctx->arena, (p->n_images + 1) * sizeof *m->images);
  for (uint32_t i = 0; i < p->n_images; i++) {
    Catalog__ProductImage *x = arena_alloc(ctx->arena, sizeof *x);
    *x = (Catalog__ProductImage)CATALOG__PRODUCT_IMAGE__INIT;
    x->image_id = rpc_uuid(ctx->arena, p->images[i].id), x->url = rpc_str(p->images[i].url);
    x->alt = rpc_str(p->images[i].alt), x->position = p->images[i].position;
    m->images[i] = x;
  }
  m->n_images = p->n_images;
}

static void add_variants(struct rpc_ctx *ctx, const struct cat_product *p, Catalog__Product *m) {
  size_t orglen = p->h.keylen - 16;
  const struct cat_idlist *l = (const struct cat_idlist *)snap_get(ctx->snap, CAT_PRODUCT_VARIANTS,
                                                                   p->h.key, p->h.org, orglen);
  size_t n = l ? l->n : 0, k = 0;
  const struct cat_variant **v = arena_alloc(ctx->arena, (n + 1) * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    const struct cat_variant *x = snap_variant(ctx->snap, l->ids[i], p->h.org, orglen);
    if (x != NULL) v[k++] = x;
  }
  qsort(v, k, sizeof *v, variant_cmp);
  m->variants = arena_alloc(ctx->arena, (k + 1) * sizeof *m->variants);
  for (size_t i = 0; i < k; i++)
    m->variants[i] = rpc_variant_msg(ctx->arena, v[i]);
  m->n_variants = k;
}

static Catalog__Product *product_msg(struct rpc_ctx *ctx, const struct cat_product *p, bool images,
                                     bool variants) {
  Catalog__Product *m = arena_alloc(ctx->arena, sizeof *m);
  *m = (Catalog__Product)CATALOG__PRODUCT__INIT;
  m->product_id = rpc_uuid(ctx->arena, p->h.key), m->organization_id = rpc_str(p->h.org);
  m->local_id = rpc_str(p->local_id), m->title = rpc_str(p->title), m->sku = rpc_str(p->sku);
  m->barcode = rpc_str(p->barcode), m->description = rpc_str(p->description),
  m->status = rpc_str(p->status);
  m->product_type = rpc_str(p->product_type), m->unit_of_measure = rpc_str(p->unit_of_measure);
  m->alert_stock = p->alert_stock;
  add_brand(ctx, p, m);
  if (images) add_images(ctx, p, m);
  if (variants) add_variants(ctx, p, m);
  add_tags_collections(ctx, p, m);
  return m;
}

void rpc_get_product_details(struct rpc_ctx *ctx, const uint8_t *req, size_t len,
                             struct rpc_result *out) {
  uint8_t id[16];
  const Catalog__GetProductDetailsRequest *rq = rpc_request(
      ctx, out, req, len, &catalog__get_product_details_request__descriptor, "product_id");
  if (rq == NULL || rpc_parse_id(ctx, out, "product_id", rq->product_id, id) != 0 ||
      rpc_check_versions(ctx, out, CAT_PRODUCT, (const uint8_t(*)[16])id, 1, rq->organization_id))
    return;
  Catalog__GetProductDetailsResponse *r = arena_alloc(ctx->arena, sizeof *r);
  *r = (Catalog__GetProductDetailsResponse)CATALOG__GET_PRODUCT_DETAILS_RESPONSE__INIT;
  const struct cat_product *p =
      snap_product(ctx->snap, id, rq->organization_id, strlen(rq->organization_id));
  if (p == NULL) {
    r->message = arena_printf(ctx->arena, "Product %s not found", rq->product_id);
  } else {
    r->success = 1;
    r->product = product_msg(ctx, p, rq->include_images, rq->include_variants);
    r->message = "Product retrieved successfully";
  }
  out->reply = &r->base;
}
