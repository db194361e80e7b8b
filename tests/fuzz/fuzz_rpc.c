/*
 * fuzz_rpc - libFuzzer target for the four catalog RPC handlers (src/rpc/rpc_*.c)
 * run against a real snapshot, with the reply packed as src/grpc/server.c does.
 *
 * Input: byte 0 picks the handler (byte % 4):
 *   0 ValidateVariant  1 ValidateVariantsBatch  2 GetVariantsBatch
 *   3 GetProductDetails
 * and the rest is the request message (protobuf wire bytes), copied into a
 * buffer of its exact size.
 *
 * The snapshot is built once, in two commits, with the store API: two tenants
 * (org_a, org_b) plus one with a 255-byte organization id, an id present in
 * two tenants, tombstones, a variant moved between products, dangling brand,
 * tag and collection references and a variant whose product is missing.
 *
 * Checks, beyond "no crash, no UB, no leak":
 *   - a handler either succeeds with a reply of the method's response type,
 *     or fails with INVALID_ARGUMENT, a message and no reply;
 *   - the reply packs to exactly protobuf_c_message_get_packed_size() bytes
 *     and those bytes unpack again;
 *   - NUL guard (src/rpc/rpc_common.c rpc_precheck): a request accepted by a
 *     handler has no string that protobuf-c truncated at a NUL byte. The
 *     request (without the unknown groups rpc_precheck strips, which must
 *     leave no group behind) is unpacked a second time with an allocator that records the
 *     size of each allocation; protobuf-c allocates wire length + 1 for a
 *     string, so strlen + 1 != allocation size means an embedded NUL;
 *   - contract: ids are echoed as sent, batch answers have the right counts,
 *     GetProductDetails returns only the asked tenant's product, only with
 *     images/variants when asked, and every listed variant is the product's.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "fuzz_entry.h"
#include "catalog.pb-c.h"
#include "config.h"
#include "rpc.h"
#include "store.h"

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_rpc: check failed: %s: ", #cond);                                      \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

/* Small enough that the limit is reachable in a 4 KiB input, large enough
 * for real batches. */
#define FUZZ_MAX_BATCH_IDS 64

static struct store *g_store;
static struct arena g_arena;
static struct config g_cfg;
static int g_verbose; /* FUZZ_VERBOSE=1: print each input's outcome */

/* ---- The snapshot ---- */

static const char *ORG_A = "org_a", *ORG_B = "org_b";
static char g_org_long[CAT_ORG_MAX + 1]; /* CAT_ORG_MAX bytes of 'L' */

/* "<prefix 8 hex>-0000-0000-0000-<suffix padded to 12>" */
static const char *uid(const char *prefix, const char *suffix) {
  static char ring[64][UUID_STR_LEN + 1];
  static unsigned next;
  char *b = ring[next++ % 64];
  snprintf(b, UUID_STR_LEN + 1, "%s-0000-0000-0000-%012llx", prefix, strtoull(suffix, NULL, 16));
  return b;
}

static void put(struct store_txn *t, struct cat_hdr *h, const char *why) {
  CHECK(h != NULL, "snapshot record rejected: %s", why);
  CHECK(store_put(t, h) == STORE_APPLIED, "snapshot record stale");
}

static void named(struct store_txn *t, enum cat_kind k, const char *pre, const char *suf,
                  const char *org, const char *name, const char *slug, const char *desc) {
  const char *why = NULL;
  struct named_fields f = {.id = uid(pre, suf),
                           .org = org,
                           .name = name,
                           .slug = slug,
                           .description = desc,
                           .version = 1};
  struct cat_named *n = model_named_new(k, &f, &why);
  put(t, n ? &n->h : NULL, why);
}

static void variant(struct store_txn *t, const char *suf, const char *org, const char *psuf,
                    const char *sku, const char *status, int64_t version, size_t nimg) {
  const char *why = NULL;
  struct image_fields ims[3] = {
      {uid("ffffffff", "a1103"), "https://img.example.com/v/c.jpg", "En su caja", 11},
      {uid("ffffffff", "a1101"), "https://img.example.com/v/a.jpg", NULL, 3},
      {uid("ffffffff", "a1102"), "https://img.example.com/v/p.jpg", "Principal", 0}};
  struct variant_fields f = {.id = uid("dddddddd", suf),
                             .org = org,
                             .product_id = uid("aaaaaaaa", psuf),
                             .sku = sku,
                             .barcode = "7790000000028",
                             .status = status,
                             .sale_price = 29.99,
                             .cost_price = 18.5,
                             .tax = 21,
                             .weight = 2.35,
                             .length = 30.5,
                             .width = 8.25,
                             .height = 22,
                             .lot_number = "L-1",
                             .stock_total = 100,
                             .stock_available = 80,
                             .stock_reserved = 20,
                             .warehouse_id = "WH-CENTRAL",
                             .vendor = "Acme SA",
                             .track_inventory = true,
                             .min_stock = 10,
                             .max_stock = 200,
                             .version = version,
                             .images = ims,
                             .n_images = nimg};
  struct cat_variant *v = model_variant_new(&f, &why);
  put(t, v ? &v->h : NULL, why);
}

static void product(struct store_txn *t, const char *suf, const char *org, const char *status,
                    const char *brand, const char *const *tags, size_t ntags,
                    const char *const *cols, size_t ncols, size_t nimg) {
  const char *why = NULL;
  struct image_fields ims[3] = {
      {uid("eeeeeeee", "a103"), "https://img.example.com/p/d.jpg", NULL, 2},
      {uid("eeeeeeee", "a101"), "https://img.example.com/p/l.jpg", "Vista lateral", 10},
      {uid("eeeeeeee", "a102"), "https://img.example.com/p/f.jpg", "Vista frontal", 1}};
  struct product_fields f = {.id = uid("aaaaaaaa", suf),
                             .org = org,
                             .local_id = "A-001",
                             .title = "Taladro",
                             .sku = "TAL-750",
                             .barcode = "7790000000011",
                             .description = "Taladro percutor",
                             .status = status,
                             .product_type = "herramienta",
                             .unit_of_measure = "unidad",
                             .alert_stock = 5,
                             .brand_id = brand,
                             .version = 1,
                             .images = ims,
                             .n_images = nimg,
                             .tag_ids = tags,
                             .n_tags = ntags,
                             .collection_ids = cols,
                             .n_collections = ncols};
  struct cat_product *p = model_product_new(&f, &why);
  put(t, p ? &p->h : NULL, why);
}

static void build_snapshot(void) {
  memset(g_org_long, 'L', CAT_ORG_MAX);
  struct store_txn *t = store_begin(g_store);
  named(t, CAT_BRAND, "bbbbbbbb", "a1", ORG_A, "Acme", "acme", "Herramientas Acme");
  named(t, CAT_BRAND, "bbbbbbbb", "a2", ORG_A, "Sin Nombre", "sin-nombre", NULL);
  named(t, CAT_BRAND, "bbbbbbbb", "b1", ORG_B, "Borealis", "borealis", "Marca Borealis");
  named(t, CAT_TAG, "cccccccc", "a1", ORG_A, "ofertas", NULL, NULL);
  named(t, CAT_TAG, "cccccccc", "a2", ORG_A, "nuevo", NULL, NULL);
  named(t, CAT_TAG, "cccccccc", "a3", ORG_A, "sin-uso", NULL, NULL);
  named(t, CAT_TAG, "cccccccc", "a4", ORG_A, "nuevo", NULL, NULL); /* same name as a2 */
  named(t, CAT_TAG, "cccccccc", "b1", ORG_B, "importado", NULL, NULL);
  named(t, CAT_COLLECTION, "0c0c0c0c", "a1", ORG_A, "Herramientas", "herramientas", NULL);
  named(t, CAT_COLLECTION, "0c0c0c0c", "a2", ORG_A, "Verano 2024", "verano-2024", NULL);
  named(t, CAT_COLLECTION, "0c0c0c0c", "b1", ORG_B, "Importados", "importados", NULL);

  const char *a1_tags[] = {uid("cccccccc", "a2"), uid("cccccccc", "a1"), uid("cccccccc", "a4"),
                           uid("cccccccc", "a9") /* dangling */};
  const char *a1_cols[] = {uid("0c0c0c0c", "a2"), uid("0c0c0c0c", "a1"),
                           uid("0c0c0c0c", "b1") /* another tenant's */};
  product(t, "a1", ORG_A, "activa", uid("bbbbbbbb", "a1"), a1_tags, 4, a1_cols, 3, 3);
  const char *a2_tags[] = {uid("cccccccc", "a1")};
  product(t, "a2", ORG_A, "inactiva", NULL, a2_tags, 1, NULL, 0, 1);
  product(t, "a3", ORG_A, "borrador", uid("bbbbbbbb", "a2"), NULL, 0, NULL, 0, 0);
  product(t, "a4", ORG_A, "activa", uid("bbbbbbbb", "a9") /* dangling */, NULL, 0, NULL, 0, 0);
  const char *b1_tags[] = {uid("cccccccc", "b1")};
  const char *b1_cols[] = {uid("0c0c0c0c", "b1")};
  product(t, "b1", ORG_B, "activa", uid("bbbbbbbb", "b1"), b1_tags, 1, b1_cols, 1, 1);
  product(t, "c1", g_org_long, "activa", NULL, NULL, 0, NULL, 0, 2);

  variant(t, "a11", ORG_A, "a1", "TAL-750-AZ", "active", 1, 3);
  variant(t, "a12", ORG_A, "a1", "TAL-750-RJ", "inactive", 1, 0);
  variant(t, "a13", ORG_A, "a1", "TAL-750-VD", "active", 1, 1);
  variant(t, "a14", ORG_A, "a1", "TAL-750-XX", "active", 1, 0); /* deleted below */
  variant(t, "a15", ORG_A, "a1", "TAL-750-AZ", "active", 1, 0); /* same sku as a11 */
  variant(t, "a21", ORG_A, "a2", "CAJ-100-U", "active", 1, 0);
  variant(t, "a31", ORG_A, "a3", "LIJ-001-S", "active", 1, 2);
  variant(t, "a91", ORG_A, "a9", "HUERFANA", "active", 1, 0); /* product missing */
  variant(t, "b11", ORG_B, "b1", "BOREAL-TERMO-1L", "active", 1, 2);
  variant(t, "c1", ORG_A, "a1", "DOS-TENANTS-A", "active", 1, 0); /* same id in org_b */
  variant(t, "c1", ORG_B, "b1", "DOS-TENANTS-B", "active", 1, 0);
  variant(t, "c11", g_org_long, "c1", "LARGO", "active", 1, 1);
  store_commit(t);

  /* Second publish: tombstones and a variant moving to another product. */
  uint8_t id[16];
  t = store_begin(g_store);
  uuid_parse(uid("dddddddd", "a14"), UUID_STR_LEN, id);
  CHECK(store_delete(t, CAT_VARIANT, id, ORG_A, strlen(ORG_A), 2) == STORE_APPLIED, "delete");
  uuid_parse(uid("cccccccc", "a4"), UUID_STR_LEN, id);
  CHECK(store_delete(t, CAT_TAG, id, ORG_A, strlen(ORG_A), 0) == STORE_APPLIED, "delete");
  variant(t, "a12", ORG_A, "a2", "TAL-750-RJ", "inactive", 2, 0);
  store_commit(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  rcu_init();
  store_reader_register(); /* a worker registers for life, as server.c does */
  g_store = store_new();
  build_snapshot();
  arena_init(&g_arena, 64 * 1024); /* as server.c sizes a worker's arena */
  g_cfg.max_batch_ids = FUZZ_MAX_BATCH_IDS;
  g_verbose = getenv("FUZZ_VERBOSE") != NULL;
  return 0;
}

/* ---- The NUL oracle: an allocator that remembers sizes ---- */

struct alloc_rec {
  void *p;
  size_t n;
};
static struct alloc_rec *g_allocs;
static size_t g_nallocs, g_capallocs;

static void *track_alloc(void *data, size_t n) {
  (void)data;
  void *p = malloc(n ? n : 1);
  if (p == NULL) abort();
  if (g_nallocs == g_capallocs) {
    g_capallocs = g_capallocs ? 2 * g_capallocs : 64;
    g_allocs = realloc(g_allocs, g_capallocs * sizeof *g_allocs);
    if (g_allocs == NULL) abort();
  }
  g_allocs[g_nallocs++] = (struct alloc_rec){p, n};
  return p;
}

static void track_free(void *data, void *p) {
  (void)data;
  for (size_t i = 0; i < g_nallocs; i++)
    if (g_allocs[i].p == p) {
      g_allocs[i] = g_allocs[--g_nallocs];
      break;
    }
  free(p);
}

static ProtobufCAllocator g_track = {.alloc = track_alloc, .free = track_free};

/* 0 if s is not a tracked allocation (e.g. protobuf-c's static ""). */
static size_t alloc_size(const void *s) {
  for (size_t i = 0; i < g_nallocs; i++)
    if (g_allocs[i].p == s) return g_allocs[i].n;
  return 0;
}

static void check_no_truncated_string(const char *s, const char *what) {
  size_t n = alloc_size(s);
  CHECK(n == 0 || strlen(s) + 1 == n,
        "handler accepted a request whose %s held a NUL byte (\"%s\" is %zu bytes on the wire)",
        what, s, n - 1);
}

/* Every string field (top level: the catalog requests have no nesting). */
static void check_request_strings(const ProtobufCMessage *m) {
  const ProtobufCMessageDescriptor *d = m->descriptor;
  for (unsigned i = 0; i < d->n_fields; i++) {
    const ProtobufCFieldDescriptor *f = &d->fields[i];
    if (f->type != PROTOBUF_C_TYPE_STRING) continue;
    const char *base = (const char *)m;
    if (f->label == PROTOBUF_C_LABEL_REPEATED) {
      size_t n = *(const size_t *)(base + f->quantifier_offset);
      char *const *v = *(char *const *const *)(base + f->offset);
      for (size_t k = 0; k < n; k++)
        check_no_truncated_string(v[k], f->name);
    } else {
      check_no_truncated_string(*(char *const *)(base + f->offset), f->name);
    }
  }
}

/* ---- Per-method contract checks (rq: the request as protobuf-c sees it) ---- */

static void check_validate(const ProtobufCMessage *req, const ProtobufCMessage *rep) {
  const Catalog__ValidateVariantRequest *rq = (const void *)req;
  const Catalog__ValidateVariantResponse *r = (const void *)rep;
  CHECK(strcmp(r->variant_id, rq->variant_id) == 0, "variant_id not echoed");
  CHECK(r->message != NULL && r->message[0], "no message");
  CHECK(!r->is_active || r->exists, "active but not found");
}

static void check_validate_batch(const ProtobufCMessage *req, const ProtobufCMessage *rep) {
  const Catalog__ValidateVariantsBatchRequest *rq = (const void *)req;
  const Catalog__ValidateVariantsBatchResponse *r = (const void *)rep;
  CHECK(r->success && r->n_validations == rq->n_variant_ids, "%zu validations for %zu ids",
        r->n_validations, rq->n_variant_ids);
  CHECK(rq->n_variant_ids <= FUZZ_MAX_BATCH_IDS, "over the batch limit");
  for (size_t i = 0; i < r->n_validations; i++)
    CHECK(strcmp(r->validations[i]->variant_id, rq->variant_ids[i]) == 0, "id %zu not echoed", i);
}

static void check_get_batch(const ProtobufCMessage *req, const ProtobufCMessage *rep) {
  const Catalog__GetVariantsBatchRequest *rq = (const void *)req;
  const Catalog__GetVariantsBatchResponse *r = (const void *)rep;
  CHECK(r->success && r->n_variants + r->n_not_found_ids <= rq->n_variant_ids,
        "%zu found + %zu not found for %zu ids", r->n_variants, r->n_not_found_ids,
        rq->n_variant_ids);
  for (size_t i = 0; i < r->n_variants; i++)
    for (size_t j = 0; j < i; j++)
      CHECK(strcmp(r->variants[i]->variant_id, r->variants[j]->variant_id) != 0,
            "variant %s returned twice", r->variants[i]->variant_id);
}

static void check_product(const ProtobufCMessage *req, const ProtobufCMessage *rep) {
  const Catalog__GetProductDetailsRequest *rq = (const void *)req;
  const Catalog__GetProductDetailsResponse *r = (const void *)rep;
  if (!r->success) {
    CHECK(r->product == NULL, "product on failure");
    return;
  }
  const Catalog__Product *p = r->product;
  CHECK(p != NULL, "success without a product");
  CHECK(strcmp(p->organization_id, rq->organization_id) == 0, "tenant leak: asked %s, got %s",
        rq->organization_id, p->organization_id);
  CHECK(strcasecmp(p->product_id, rq->product_id) == 0, "asked %s, got %s", rq->product_id,
        p->product_id);
  CHECK(rq->include_images || p->n_images == 0, "images not asked for");
  CHECK(rq->include_variants || p->n_variants == 0, "variants not asked for");
  for (size_t i = 0; i < p->n_variants; i++)
    CHECK(strcmp(p->variants[i]->product_id, p->product_id) == 0,
          "variant %s of product %s listed under %s", p->variants[i]->variant_id,
          p->variants[i]->product_id, p->product_id);
  for (size_t i = 1; i < p->n_tags; i++)
    CHECK(strcmp(p->tags[i - 1]->name, p->tags[i]->name) <= 0, "tags not sorted");
  for (size_t i = 1; i < p->n_collections; i++)
    CHECK(strcmp(p->collections[i - 1]->name, p->collections[i]->name) <= 0,
          "collections not sorted");
}

struct method {
  rpc_unary_fn fn;
  const ProtobufCMessageDescriptor *req, *rep;
  void (*check)(const ProtobufCMessage *req, const ProtobufCMessage *rep);
};

static const struct method methods[4] = {
    {rpc_validate_variant, &catalog__validate_variant_request__descriptor,
     &catalog__validate_variant_response__descriptor, check_validate},
    {rpc_validate_variants_batch, &catalog__validate_variants_batch_request__descriptor,
     &catalog__validate_variants_batch_response__descriptor, check_validate_batch},
    {rpc_get_variants_batch, &catalog__get_variants_batch_request__descriptor,
     &catalog__get_variants_batch_response__descriptor, check_get_batch},
    {rpc_get_product_details, &catalog__get_product_details_request__descriptor,
     &catalog__get_product_details_response__descriptor, check_product},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const struct method *m = &methods[data[0] % 4];
  size_t len = size - 1;
  uint8_t *req = malloc(len ? len : 1);
  if (req == NULL) abort();
  if (len) memcpy(req, data + 1, len);

  struct rpc_ctx ctx = {.arena = &g_arena, .cfg = &g_cfg};
  struct rpc_result res = {.code = GRPC_STATUS_OK};
  store_read_lock();
  ctx.snap = store_current(g_store);
  m->fn(&ctx, req, len, &res);
  if (g_verbose)
    fprintf(stderr, "fuzz_rpc: %s -> %d %s\n", m->req->short_name, (int)res.code,
            res.code == GRPC_STATUS_OK ? "OK" : res.details);
  if (res.code == GRPC_STATUS_OK) {
    CHECK(res.reply != NULL && res.reply->descriptor == m->rep, "OK without the right reply");
    size_t n = protobuf_c_message_get_packed_size(res.reply);
    uint8_t *out = malloc(n ? n : 1);
    if (out == NULL) abort();
    CHECK(protobuf_c_message_pack(res.reply, out) == n, "packed size differs");
    ProtobufCMessage *back = protobuf_c_message_unpack(m->rep, NULL, n, out);
    CHECK(back != NULL, "the packed reply does not unpack");
    protobuf_c_message_free_unpacked(back, NULL);
    free(out);

    const uint8_t *plain = req;
    size_t plain_len = len;
    struct rpc_result pre = {.code = GRPC_STATUS_OK};
    CHECK(rpc_precheck(&ctx, &pre, &plain, &plain_len, "field2") == 0, "precheck differs");
    CHECK(plain_len <= len, "stripping groups grew the request");
    ProtobufCMessage *rq = protobuf_c_message_unpack(m->req, &g_track, plain_len, plain);
    CHECK(rq != NULL, "handler accepted a request protobuf-c cannot unpack");
    check_request_strings(rq);
    m->check(rq, res.reply);
    protobuf_c_message_free_unpacked(rq, &g_track);
  } else {
    CHECK(res.code == GRPC_STATUS_INVALID_ARGUMENT, "unexpected status %d", (int)res.code);
    CHECK(res.details != NULL && res.details[0] != '\0', "error without details");
    CHECK(res.reply == NULL, "error with a reply");
  }
  store_read_unlock();
  arena_reset(&g_arena);
  free(req);
  return 0;
}
