/*
 * demo.c - generates the demo catalog deterministically (see demo.h).
 *
 * Id scheme: the first hex digit pair says what it is (b0 brand, c0 tag,
 * c1 collection, d1 product, d2 variant, e1/e2 images), the last twelve
 * digits count, so ids are readable in examples.
 */
#include "demo.h"

#include <assert.h>
#include <stdio.h>

#define NPRODUCTS            12
#define VARIANTS_PER_PRODUCT 3

static void demo_id(char out[37], unsigned kind, unsigned n) {
  snprintf(out, 37, "%02x000000-0000-4000-8000-%012x", kind, n);
}

struct sink {
  void (*emit)(struct cat_hdr *rec, void *arg);
  void *arg;
};

static size_t put(struct sink *t, struct cat_hdr *h) {
  assert(h != NULL);
  t->emit(h, t->arg);
  return 1;
}

static size_t demo_named(struct sink *t, const char *org) {
  static const char *brands[] = {"Acme", "Globex", "Initech"};
  static const char *tags[] = {"summer", "bestseller", "eco", "clearance"};
  static const char *cols[] = {"New arrivals", "Outdoor"};
  char id[37], slug[32];
  const char *why;
  size_t n = 0;
  for (unsigned i = 0; i < 3; i++) {
    demo_id(id, 0xb0, i + 1);
    snprintf(slug, sizeof slug, "brand-%u", i + 1);
    struct named_fields f = {.id = id,
                             .org = org,
                             .name = brands[i],
                             .slug = slug,
                             .description = "Demo brand",
                             .version = 1};
    n += put(t, &model_named_new(CAT_BRAND, &f, &why)->h);
  }
  for (unsigned i = 0; i < 4; i++) {
    demo_id(id, 0xc0, i + 1);
    struct named_fields f = {.id = id, .org = org, .name = tags[i], .version = 1};
    n += put(t, &model_named_new(CAT_TAG, &f, &why)->h);
  }
  for (unsigned i = 0; i < 2; i++) {
    demo_id(id, 0xc1, i + 1);
    snprintf(slug, sizeof slug, "collection-%u", i + 1);
    struct named_fields f = {.id = id, .org = org, .name = cols[i], .slug = slug, .version = 1};
    n += put(t, &model_named_new(CAT_COLLECTION, &f, &why)->h);
  }
  return n;
}

static size_t demo_variants(struct sink *t, const char *org, unsigned p, const char *pid) {
  char id[37], sku[32], url[64], imid[37];
  const char *why;
  size_t n = 0;
  for (unsigned k = 0; k < VARIANTS_PER_PRODUCT; k++) {
    unsigned v = p * VARIANTS_PER_PRODUCT + k + 1;
    demo_id(id, 0xd2, v);
    demo_id(imid, 0xe2, v);
    snprintf(sku, sizeof sku, "SKU-%03u-%c", p + 1, 'A' + k);
    snprintf(url, sizeof url, "https://img.example/v/%u.jpg", v);
    struct image_fields im = {.id = imid, .url = url, .alt = sku, .position = 0};
    struct variant_fields f = {.id = id,
                               .org = org,
                               .product_id = pid,
                               .sku = sku,
                               .barcode = "7501234567890",
                               .status = k == 2 && p % 4 == 3 ? "inactive" : "active",
                               .warehouse_id = "WH-1",
                               .sale_price = 10.0 + p + k * 0.5,
                               .cost_price = 6.0 + p,
                               .tax = 16,
                               .weight = 0.5,
                               .length = 10,
                               .width = 5,
                               .height = 2,
                               .stock_total = 100,
                               .stock_available = 90,
                               .stock_reserved = 10,
                               .min_stock = 5,
                               .max_stock = 200,
                               .track_inventory = true,
                               .version = 1,
                               .images = &im,
                               .n_images = 1};
    n += put(t, &model_variant_new(&f, &why)->h);
  }
  return n;
}

static size_t demo_products(struct sink *t, const char *org, unsigned base, unsigned count) {
  static const char *status[] = {"activa", "activa", "activa", "activa", "activa",   "activa",
                                 "activa", "activa", "activa", "activa", "inactiva", "borrador"};
  char pid[37], brand[37], title[64], sku[32], t0[37], t1[37], c0[37], i0[37], i1[37];
  const char *why;
  size_t n = 0;
  for (unsigned p = base; p < base + count; p++) {
    demo_id(pid, 0xd1, p + 1);
    demo_id(brand, 0xb0, p % 3 + 1);
    demo_id(t0, 0xc0, p % 4 + 1);
    demo_id(t1, 0xc0, (p + 1) % 4 + 1);
    demo_id(c0, 0xc1, p % 2 + 1);
    demo_id(i0, 0xe1, 2 * p + 1);
    demo_id(i1, 0xe1, 2 * p + 2);
    snprintf(title, sizeof title, "Demo product %u", p + 1);
    snprintf(sku, sizeof sku, "P-%03u", p + 1);
    struct image_fields ims[2] = {{i1, "https://img.example/p/back.jpg", "back", 2},
                                  {i0, "https://img.example/p/front.jpg", "front", 1}};
    const char *tags[2] = {t0, t1}, *cols[1] = {c0};
    struct product_fields f = {.id = pid,
                               .org = org,
                               .local_id = sku,
                               .title = title,
                               .sku = sku,
                               .description = "A product of the demo catalog",
                               .status = status[p % NPRODUCTS],
                               .product_type = "physical",
                               .unit_of_measure = "unidad",
                               .alert_stock = 5,
                               .brand_id = p % 5 == 4 ? NULL : brand,
                               .version = 1,
                               .images = ims,
                               .n_images = 2,
                               .tag_ids = tags,
                               .n_tags = 2,
                               .collection_ids = cols,
                               .n_collections = 1};
    n += put(t, &model_product_new(&f, &why)->h);
    n += demo_variants(t, org, p, pid);
  }
  return n;
}

size_t demo_build(void (*emit)(struct cat_hdr *rec, void *arg), void *arg) {
  struct sink sk = {emit, arg}, *t = &sk;
  size_t n = demo_named(t, DEMO_ORG) + demo_products(t, DEMO_ORG, 0, NPRODUCTS);
  /* A second tenant: same shapes, other ids; never visible to demo-org. */
  return n + demo_products(t, "other-org", NPRODUCTS, 2);
}
