/*
 * catalog_gen.c - deterministic benchmark catalog (bench/README.md).
 *
 *   catalog-gen --out DIR [--variants N] [--products P] [--orgs O] [--seed S]
 *               [--samples-per-org K] [--updates U] [--no-events]
 *
 * Writes into DIR (created if missing):
 *   <table>.copy    COPY text rows for every table of docs/contract/schema.sql
 *   load.sql        psql script: \copy of each file, in dependency order
 *   events.tsv      the same rows as change events, "KEY<TAB>JSON" per line
 *                   (docs/contract/events.md; the shape tests/integration/kafka.py builds)
 *   updates.tsv     U variant upserts with newer versions and new prices, for
 *                   the change-feed scenarios (distinct variants, version 2,
 *                   then 3 once every variant has been used, ...)
 *   samples.tsv     per organization: "org<TAB>variant_id<TAB>product_id<TAB>class"
 *                   with class hit (90 %), miss (ids that exist nowhere, 5 %)
 *                   and foreign (another organization's ids, 5 %)
 *   meta.json       the row counts
 *
 * Every id and value is a pure function of (seed, kind, index), so two runs
 * with the same arguments write the same bytes. Relations: product p belongs
 * to organization p % O; variant v belongs to product v % P (so products have
 * V/P variants each, and a variant's organization is its product's).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum {
  K_BRAND = 1,
  K_PRODUCT,
  K_PIMAGE,
  K_VARIANT,
  K_VIMAGE,
  K_TAG,
  K_COLLECTION,
  K_MISSING_V = 90,
  K_MISSING_P
};

#define BRANDS_PER_ORG      25
#define TAGS_PER_ORG        50
#define COLLECTIONS_PER_ORG 20
#define PIMAGES_PER_PRODUCT 2
#define TAGS_PER_PRODUCT    3
#define UPDATED_AT          "2026-01-01 00:00:00+00"
#define UPDATED_AT_JSON     "2026-01-01T00:00:00+00:00"

static uint64_t g_seed = 1;

static uint64_t mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/* A deterministic value for (kind, index, salt). */
static uint64_t h3(uint64_t kind, uint64_t idx, uint64_t salt) {
  return mix64(mix64(g_seed ^ (kind << 56) ^ salt) ^ idx);
}

/* A version-4-looking UUID, lower case, 36 chars + NUL. */
static void uuid_of(int kind, uint64_t idx, char out[37]) {
  uint64_t a = h3((uint64_t)kind, idx, 1), b = h3((uint64_t)kind, idx, 2);
  a = (a & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  b = (b & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  snprintf(out, 37, "%08" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%04" PRIx64 "-%012" PRIx64, a >> 32,
           (a >> 16) & 0xffff, a & 0xffff, b >> 48, (uint64_t)(b & 0xffffffffffffULL));
}

struct cfg {
  uint64_t variants, products, orgs, samples_per_org, updates;
  int events;
  const char *out;
};

static char g_org[64];
static const char *org_name(uint64_t o) {
  snprintf(g_org, sizeof g_org, "org-%03" PRIu64, o);
  return g_org;
}

static FILE *open_out(const struct cfg *c, const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", c->out, name);
  FILE *f = fopen(path, "w");
  if (f == NULL) {
    fprintf(stderr, "catalog-gen: %s: %s\n", path, strerror(errno));
    exit(1);
  }
  static char *bufs[32];
  static int nb;
  if (nb < 32) {
    bufs[nb] = malloc(1 << 20);
    setvbuf(f, bufs[nb++], _IOFBF, 1 << 20);
  }
  return f;
}

static void close_out(FILE *f) {
  if (fclose(f) != 0) {
    perror("catalog-gen: write");
    exit(1);
  }
}

/* ---- Entity attributes (pure functions of the index) ---- */

static uint64_t product_org(const struct cfg *c, uint64_t p) { return p % c->orgs; }
static uint64_t variant_product(const struct cfg *c, uint64_t v) { return v % c->products; }
static uint64_t variant_org(const struct cfg *c, uint64_t v) {
  return product_org(c, variant_product(c, v));
}
/* Global index of an organization's local brand/tag/collection j. */
static uint64_t local_idx(const struct cfg *c, uint64_t org, uint64_t j) {
  return j * c->orgs + org;
}

static const char *product_status(uint64_t p) {
  uint64_t r = h3(K_PRODUCT, p, 10) % 100;
  return r < 85 ? "activa" : r < 95 ? "inactiva" : "borrador";
}

/* Brand local index, or -1 for none (10 %). */
static int64_t product_brand(uint64_t p) {
  uint64_t r = h3(K_PRODUCT, p, 11);
  return r % 10 == 0 ? -1 : (int64_t)((r >> 8) % BRANDS_PER_ORG);
}

struct variant_vals {
  char id[37], pid[37], sku[32], barcode[16], price[24], cost[24], tax[8], weight[24];
  char dl[16], dw[16], dh[16], lot[24], wh[16], vendor[24];
  const char *status;
  int has_barcode, has_lot, has_vendor, track, has_image;
  int32_t st_total, st_avail, st_res, min_s, max_s;
};

static void variant_vals(const struct cfg *c, uint64_t v, struct variant_vals *x) {
  uint64_t p = variant_product(c, v), k = v / c->products;
  uint64_t r = h3(K_VARIANT, v, 20), r2 = h3(K_VARIANT, v, 21);
  uuid_of(K_VARIANT, v, x->id);
  uuid_of(K_PRODUCT, p, x->pid);
  snprintf(x->sku, sizeof x->sku, "SKU-%07" PRIu64 "-%02" PRIu64, p, k);
  x->has_barcode = r % 5 != 0;
  snprintf(x->barcode, sizeof x->barcode, "779%010" PRIu64, (uint64_t)(v % 10000000000ULL));
  x->status = (r >> 8) % 10 == 0 ? "inactive" : "active";
  uint64_t cents = 100 + (r >> 16) % 99900;
  snprintf(x->price, sizeof x->price, "%" PRIu64 ".%02" PRIu64, cents / 100, cents % 100);
  uint64_t cc = cents * 6 / 10;
  snprintf(x->cost, sizeof x->cost, "%" PRIu64 ".%02" PRIu64, cc / 100, cc % 100);
  snprintf(x->tax, sizeof x->tax, "%s", (r >> 40) % 3 == 0 ? "0.00" : "19.00");
  uint64_t g = 50 + r2 % 20000;
  snprintf(x->weight, sizeof x->weight, "%" PRIu64 ".%03" PRIu64, g / 1000, g % 1000);
  snprintf(x->dl, sizeof x->dl, "%" PRIu64 ".00", 5 + (r2 >> 16) % 95);
  snprintf(x->dw, sizeof x->dw, "%" PRIu64 ".50", 5 + (r2 >> 24) % 60);
  snprintf(x->dh, sizeof x->dh, "%" PRIu64 ".25", 1 + (r2 >> 32) % 40);
  x->has_lot = (r2 >> 40) % 10 < 3;
  snprintf(x->lot, sizeof x->lot, "LOT-%06" PRIu64, (r2 >> 8) % 1000000);
  x->st_total = (int32_t)((r2 >> 44) % 1000);
  x->st_res = (int32_t)((r2 >> 54) % 10) % (x->st_total + 1);
  x->st_avail = x->st_total - x->st_res;
  snprintf(x->wh, sizeof x->wh, "WH-%02" PRIu64, (r >> 48) % 8);
  x->has_vendor = (r >> 52) % 4 != 0;
  snprintf(x->vendor, sizeof x->vendor, "Vendor %" PRIu64, (r >> 20) % 500);
  x->track = (r >> 56) % 8 != 0;
  x->min_s = (int32_t)((r >> 24) % 20);
  x->max_s = x->min_s + 100 + (int32_t)((r >> 32) % 900);
  x->has_image = v % 4 == 0;
}

/* ---- COPY text ---- */

#define NUL "\\N"

static void copy_named(FILE *f, const char *id, const char *org, const char *name, const char *slug,
                       const char *desc) {
  fprintf(f, "%s\t%s\t%s", id, org, name);
  if (slug) fprintf(f, "\t%s", slug);
  if (desc) fprintf(f, "\t%s", desc);
  fputs("\t1\n", f);
}

static void write_copy(const struct cfg *c) {
  char id[37], id2[37], name[64], slug[64];
  FILE *f = open_out(c, "brands.copy");
  for (uint64_t o = 0; o < c->orgs; o++)
    for (uint64_t j = 0; j < BRANDS_PER_ORG; j++) {
      uint64_t b = local_idx(c, o, j);
      uuid_of(K_BRAND, b, id);
      snprintf(name, sizeof name, "Marca %03" PRIu64, j);
      snprintf(slug, sizeof slug, "marca-%03" PRIu64, j);
      fprintf(f, "%s\t%s\t%s\t%s\t%s\t1\t" UPDATED_AT "\n", id, org_name(o), name, slug,
              j % 3 ? "Descripcion de la marca" : NUL);
    }
  close_out(f);
  f = open_out(c, "tags.copy");
  for (uint64_t o = 0; o < c->orgs; o++)
    for (uint64_t j = 0; j < TAGS_PER_ORG; j++) {
      uuid_of(K_TAG, local_idx(c, o, j), id);
      snprintf(name, sizeof name, "tag-%02" PRIu64, j);
      copy_named(f, id, org_name(o), name, NULL, NULL);
    }
  close_out(f);
  f = open_out(c, "collections.copy");
  for (uint64_t o = 0; o < c->orgs; o++)
    for (uint64_t j = 0; j < COLLECTIONS_PER_ORG; j++) {
      uuid_of(K_COLLECTION, local_idx(c, o, j), id);
      snprintf(name, sizeof name, "Coleccion %02" PRIu64, j);
      snprintf(slug, sizeof slug, "coleccion-%02" PRIu64, j);
      copy_named(f, id, org_name(o), name, slug, NULL);
    }
  close_out(f);

  FILE *fp = open_out(c, "products.copy"), *fi = open_out(c, "product_images.copy");
  FILE *ft = open_out(c, "product_tags.copy"), *fc = open_out(c, "product_collections.copy");
  for (uint64_t p = 0; p < c->products; p++) {
    uint64_t o = product_org(c, p), r = h3(K_PRODUCT, p, 12);
    int64_t b = product_brand(p);
    uuid_of(K_PRODUCT, p, id);
    fprintf(fp,
            "%s\t%s\tL-%07" PRIu64 "\tProducto %" PRIu64 " modelo %" PRIu64 "\tP-%07" PRIu64 "\t",
            id, org_name(o), p, p, r % 1000, p);
    if (r % 4)
      fprintf(fp, "780%010" PRIu64, p);
    else
      fputs(NUL, fp);
    fprintf(fp, "\t%s\t%s\t%s\t%s\t%d\t", r % 3 ? "Descripcion breve del producto" : NUL,
            product_status(p), (r >> 8) % 2 ? "simple" : "variable",
            (r >> 9) % 5 ? "unidad" : "caja", (int)((r >> 12) % 20));
    if (b >= 0) {
      uuid_of(K_BRAND, local_idx(c, o, (uint64_t)b), id2);
      fputs(id2, fp);
    } else {
      fputs(NUL, fp);
    }
    fputs("\t1\t" UPDATED_AT "\n", fp);
    for (int i = 0; i < PIMAGES_PER_PRODUCT; i++) {
      uuid_of(K_PIMAGE, p * PIMAGES_PER_PRODUCT + (uint64_t)i, id2);
      fprintf(fi, "%s\t%s\thttps://cdn.example.com/p/%07" PRIu64 "-%d.jpg\t%s\t%d\n", id2, id, p, i,
              i ? NUL : "Foto principal", PIMAGES_PER_PRODUCT - i);
    }
    for (int i = 0; i < TAGS_PER_PRODUCT; i++) {
      uuid_of(K_TAG, local_idx(c, o, (p / c->orgs + (uint64_t)i * 7) % TAGS_PER_ORG), id2);
      fprintf(ft, "%s\t%s\n", id, id2);
    }
    uuid_of(K_COLLECTION, local_idx(c, o, (p / c->orgs) % COLLECTIONS_PER_ORG), id2);
    fprintf(fc, "%s\t%s\n", id, id2);
  }
  close_out(fp), close_out(fi), close_out(ft), close_out(fc);

  FILE *fv = open_out(c, "variants.copy");
  fi = open_out(c, "variant_images.copy");
  struct variant_vals x;
  for (uint64_t v = 0; v < c->variants; v++) {
    variant_vals(c, v, &x);
    fprintf(fv,
            "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\t%s"
            "\t%d\t%d\t1\t" UPDATED_AT "\n",
            x.id, org_name(variant_org(c, v)), x.pid, x.sku, x.has_barcode ? x.barcode : NUL,
            x.status, x.price, x.cost, x.tax, x.weight, x.dl, x.dw, x.dh, x.has_lot ? x.lot : NUL,
            x.st_total, x.st_avail, x.st_res, x.wh, x.has_vendor ? x.vendor : NUL,
            x.track ? "t" : "f", x.min_s, x.max_s);
    if (x.has_image) {
      uuid_of(K_VIMAGE, v, id2);
      fprintf(fi, "%s\t%s\thttps://cdn.example.com/v/%08" PRIu64 ".jpg\tVariante\t0\n", id2, x.id,
              v);
    }
  }
  close_out(fv), close_out(fi);

  f = open_out(c, "load.sql");
  fputs("-- generated by catalog-gen: run with psql in the output directory\n"
        "\\copy brands (id, organization_id, name, slug, description, version, updated_at) "
        "FROM 'brands.copy'\n"
        "\\copy tags (id, organization_id, name, version) FROM 'tags.copy'\n"
        "\\copy collections (id, organization_id, name, slug, version) FROM 'collections.copy'\n"
        "\\copy products (id, organization_id, local_id, title, sku, barcode, description, "
        "status, product_type, unit_of_measure, alert_stock, brand_id, version, updated_at) "
        "FROM 'products.copy'\n"
        "\\copy product_images (id, product_id, url, alt, position) FROM 'product_images.copy'\n"
        "\\copy product_tags (product_id, tag_id) FROM 'product_tags.copy'\n"
        "\\copy product_collections (product_id, collection_id) FROM "
        "'product_collections.copy'\n"
        "\\copy variants (id, organization_id, product_id, sku, barcode, status, sale_price, "
        "cost_price, tax, weight, dim_length, dim_width, dim_height, lot_number, stock_total, "
        "stock_available, stock_reserved, warehouse_id, vendor, track_inventory, "
        "default_min_stock, default_max_stock, version, updated_at) FROM 'variants.copy'\n"
        "\\copy variant_images (id, variant_id, url, alt, position) FROM 'variant_images.copy'\n",
        f);
  close_out(f);
}

/* ---- Change events ---- */

static void jstr(FILE *f, const char *k, const char *s) {
  if (s == NULL)
    fprintf(f, "\"%s\":null", k);
  else
    fprintf(f, "\"%s\":\"%s\"", k, s); /* generated strings need no escaping */
}

static void envelope(FILE *f, const char *org, const char *kind, const char *id, long version) {
  fprintf(f,
          "%s/%s/%s\t{\"event_id\":\"%s-%s-%ld\",\"event_type\":\"%s.upserted\","
          "\"organization_id\":\"%s\",\"entity_id\":\"%s\",\"version\":%ld,"
          "\"occurred_at\":\"" UPDATED_AT_JSON "\",\"data\":{\"id\":\"%s\","
          "\"organization_id\":\"%s\",\"version\":%ld",
          org, kind, id, kind, id, version, kind, org, id, version, id, org, version);
}

static void variant_event(FILE *f, const struct cfg *c, uint64_t v, long version,
                          const char *price_override) {
  struct variant_vals x;
  char iid[37];
  variant_vals(c, v, &x);
  envelope(f, org_name(variant_org(c, v)), "variant", x.id, version);
  fputc(',', f), jstr(f, "product_id", x.pid), fputc(',', f), jstr(f, "sku", x.sku);
  fputc(',', f), jstr(f, "barcode", x.has_barcode ? x.barcode : NULL);
  fputc(',', f), jstr(f, "status", x.status);
  fprintf(f,
          ",\"sale_price\":%s,\"cost_price\":%s,\"tax\":%s,\"weight\":%s,\"dim_length\":%s,"
          "\"dim_width\":%s,\"dim_height\":%s,",
          price_override ? price_override : x.price, x.cost, x.tax, x.weight, x.dl, x.dw, x.dh);
  jstr(f, "lot_number", x.has_lot ? x.lot : NULL);
  fprintf(f, ",\"stock_total\":%d,\"stock_available\":%d,\"stock_reserved\":%d,", x.st_total,
          x.st_avail, x.st_res);
  jstr(f, "warehouse_id", x.wh), fputc(',', f), jstr(f, "vendor", x.has_vendor ? x.vendor : NULL);
  fprintf(f,
          ",\"track_inventory\":%s,\"default_min_stock\":%d,\"default_max_stock\":%d,"
          "\"updated_at\":\"" UPDATED_AT_JSON "\",\"images\":[",
          x.track ? "true" : "false", x.min_s, x.max_s);
  if (x.has_image) {
    uuid_of(K_VIMAGE, v, iid);
    fprintf(f,
            "{\"id\":\"%s\",\"url\":\"https://cdn.example.com/v/%08" PRIu64
            ".jpg\",\"alt\":\"Variante\",\"position\":0}",
            iid, v);
  }
  fputs("]}}\n", f);
}

static void write_events(const struct cfg *c) {
  char id[37], id2[37], name[64], slug[64];
  FILE *f = open_out(c, "events.tsv");
  for (uint64_t o = 0; o < c->orgs; o++) {
    for (uint64_t j = 0; j < BRANDS_PER_ORG; j++) {
      uuid_of(K_BRAND, local_idx(c, o, j), id);
      snprintf(name, sizeof name, "Marca %03" PRIu64, j);
      snprintf(slug, sizeof slug, "marca-%03" PRIu64, j);
      envelope(f, org_name(o), "brand", id, 1);
      fprintf(f, ",\"name\":\"%s\",\"slug\":\"%s\",", name, slug);
      jstr(f, "description", j % 3 ? "Descripcion de la marca" : NULL);
      fputs(",\"updated_at\":\"" UPDATED_AT_JSON "\"}}\n", f);
    }
    for (uint64_t j = 0; j < TAGS_PER_ORG; j++) {
      uuid_of(K_TAG, local_idx(c, o, j), id);
      envelope(f, org_name(o), "tag", id, 1);
      fprintf(f, ",\"name\":\"tag-%02" PRIu64 "\"}}\n", j);
    }
    for (uint64_t j = 0; j < COLLECTIONS_PER_ORG; j++) {
      uuid_of(K_COLLECTION, local_idx(c, o, j), id);
      envelope(f, org_name(o), "collection", id, 1);
      fprintf(f, ",\"name\":\"Coleccion %02" PRIu64 "\",\"slug\":\"coleccion-%02" PRIu64 "\"}}\n",
              j, j);
    }
  }
  for (uint64_t p = 0; p < c->products; p++) {
    uint64_t o = product_org(c, p), r = h3(K_PRODUCT, p, 12);
    int64_t b = product_brand(p);
    uuid_of(K_PRODUCT, p, id);
    envelope(f, org_name(o), "product", id, 1);
    fprintf(f,
            ",\"local_id\":\"L-%07" PRIu64 "\",\"title\":\"Producto %" PRIu64 " modelo %" PRIu64
            "\",\"sku\":\"P-%07" PRIu64 "\",",
            p, p, r % 1000, p);
    if (r % 4)
      fprintf(f, "\"barcode\":\"780%010" PRIu64 "\",", p);
    else
      fputs("\"barcode\":null,", f);
    jstr(f, "description", r % 3 ? "Descripcion breve del producto" : NULL);
    fprintf(f,
            ",\"status\":\"%s\",\"product_type\":\"%s\",\"unit_of_measure\":\"%s\","
            "\"alert_stock\":%d,",
            product_status(p), (r >> 8) % 2 ? "simple" : "variable",
            (r >> 9) % 5 ? "unidad" : "caja", (int)((r >> 12) % 20));
    if (b >= 0) uuid_of(K_BRAND, local_idx(c, o, (uint64_t)b), id2);
    jstr(f, "brand_id", b >= 0 ? id2 : NULL);
    fputs(",\"updated_at\":\"" UPDATED_AT_JSON "\",\"images\":[", f);
    for (int i = 0; i < PIMAGES_PER_PRODUCT; i++) {
      uuid_of(K_PIMAGE, p * PIMAGES_PER_PRODUCT + (uint64_t)i, id2);
      fprintf(f, "%s{\"id\":\"%s\",\"url\":\"https://cdn.example.com/p/%07" PRIu64 "-%d.jpg\",",
              i ? "," : "", id2, p, i);
      jstr(f, "alt", i ? NULL : "Foto principal");
      fprintf(f, ",\"position\":%d}", PIMAGES_PER_PRODUCT - i);
    }
    fputs("],\"tag_ids\":[", f);
    for (int i = 0; i < TAGS_PER_PRODUCT; i++) {
      uuid_of(K_TAG, local_idx(c, o, (p / c->orgs + (uint64_t)i * 7) % TAGS_PER_ORG), id2);
      fprintf(f, "%s\"%s\"", i ? "," : "", id2);
    }
    uuid_of(K_COLLECTION, local_idx(c, o, (p / c->orgs) % COLLECTIONS_PER_ORG), id2);
    fprintf(f, "],\"collection_ids\":[\"%s\"]}}\n", id2);
  }
  for (uint64_t v = 0; v < c->variants; v++)
    variant_event(f, c, v, 1, NULL);
  close_out(f);
}

static void write_updates(const struct cfg *c) {
  FILE *f = open_out(c, "updates.tsv");
  char price[32];
  for (uint64_t i = 0; i < c->updates; i++) {
    /* Visit variants in a scattered but complete order (stride coprime-ish to V). */
    uint64_t v = (i * 2654435761ULL + 12345) % c->variants;
    long version = 2 + (long)(i / c->variants);
    uint64_t cents = 100000000ULL + i; /* unique: a probe can tell its own change */
    snprintf(price, sizeof price, "%" PRIu64 ".%02" PRIu64, cents / 100, cents % 100);
    variant_event(f, c, v, version, price);
  }
  close_out(f);
}

/* ---- Samples for the load generator ---- */

static uint64_t rnd_state;
static uint64_t rnd(void) { return mix64(rnd_state++); }

/* A random variant of organization o (and its product). */
static uint64_t pick_variant(const struct cfg *c, uint64_t o) {
  uint64_t nprod = (c->products - o + c->orgs - 1) / c->orgs;
  uint64_t p = o + c->orgs * (rnd() % nprod);
  uint64_t nvar = (c->variants - p + c->products - 1) / c->products;
  return p + c->products * (rnd() % nvar);
}

static void write_samples(const struct cfg *c) {
  FILE *f = open_out(c, "samples.tsv");
  char vid[37], pid[37];
  rnd_state = g_seed * 7919;
  fputs("# org\tvariant_id\tproduct_id\tclass (hit | miss | foreign)\n", f);
  for (uint64_t o = 0; o < c->orgs; o++) {
    for (uint64_t i = 0; i < c->samples_per_org; i++) {
      uint64_t r = rnd() % 100;
      const char *cls = r < 90 ? "hit" : r < 95 ? "miss" : "foreign";
      if (r < 90 || r >= 95) {
        uint64_t other = r < 90 ? o : (o + 1) % c->orgs;
        uint64_t v = pick_variant(c, other);
        uuid_of(K_VARIANT, v, vid);
        uuid_of(K_PRODUCT, variant_product(c, v), pid);
      } else {
        uint64_t k = rnd();
        uuid_of(K_MISSING_V, k, vid);
        uuid_of(K_MISSING_P, k, pid);
      }
      fprintf(f, "%s\t%s\t%s\t%s\n", org_name(o), vid, pid, cls);
    }
  }
  close_out(f);
}

static void usage(void) {
  fprintf(stderr, "usage: catalog-gen --out DIR [--variants N] [--products P] [--orgs O] "
                  "[--seed S] [--samples-per-org K] [--updates U] [--no-events]\n");
  exit(2);
}

static uint64_t num(const char *s) {
  char *e;
  errno = 0;
  unsigned long long x = strtoull(s, &e, 10);
  if (errno || *e || x == 0) usage();
  return x;
}

int main(int argc, char **argv) {
  struct cfg c = {
      .variants = 1000000, .orgs = 20, .samples_per_org = 2000, .updates = 100000, .events = 1};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--no-events")) {
      c.events = 0;
      continue;
    }
    if (v == NULL) usage();
    i++;
    if (!strcmp(a, "--out"))
      c.out = v;
    else if (!strcmp(a, "--variants"))
      c.variants = num(v);
    else if (!strcmp(a, "--products"))
      c.products = num(v);
    else if (!strcmp(a, "--orgs"))
      c.orgs = num(v);
    else if (!strcmp(a, "--seed"))
      g_seed = num(v);
    else if (!strcmp(a, "--samples-per-org"))
      c.samples_per_org = num(v);
    else if (!strcmp(a, "--updates"))
      c.updates = num(v);
    else
      usage();
  }
  if (c.out == NULL) usage();
  if (c.products == 0) c.products = c.variants / 5 ? c.variants / 5 : 1;
  if (c.products > c.variants || c.orgs > c.products || c.orgs > 999) {
    fprintf(stderr, "catalog-gen: need orgs <= products <= variants and orgs <= 999\n");
    return 2;
  }
  if (mkdir(c.out, 0755) != 0 && errno != EEXIST) {
    fprintf(stderr, "catalog-gen: %s: %s\n", c.out, strerror(errno));
    return 1;
  }
  write_copy(&c);
  if (c.events) write_events(&c);
  write_updates(&c);
  write_samples(&c);
  uint64_t vimages = (c.variants + 3) / 4;
  FILE *f = open_out(&c, "meta.json");
  fprintf(f,
          "{\"seed\":%" PRIu64 ",\"organizations\":%" PRIu64 ",\"variants\":%" PRIu64
          ",\"products\":%" PRIu64 ",\"brands\":%" PRIu64 ",\"tags\":%" PRIu64
          ",\"collections\":%" PRIu64 ",\"product_images\":%" PRIu64 ",\"variant_images\":%" PRIu64
          ",\"product_tags\":%" PRIu64 ",\"product_collections\":%" PRIu64 ",\"events\":%" PRIu64
          ",\"updates\":%" PRIu64 ",\"samples\":%" PRIu64 "}\n",
          g_seed, c.orgs, c.variants, c.products, c.orgs * BRANDS_PER_ORG, c.orgs * TAGS_PER_ORG,
          c.orgs * COLLECTIONS_PER_ORG, c.products * PIMAGES_PER_PRODUCT, vimages,
          c.products * TAGS_PER_PRODUCT, c.products,
          c.events ? c.orgs * (BRANDS_PER_ORG + TAGS_PER_ORG + COLLECTIONS_PER_ORG) + c.products +
                         c.variants
                   : 0,
          c.updates, c.orgs * c.samples_per_org);
  close_out(f);
  return 0;
}
