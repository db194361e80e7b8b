/*
 * digest.c - order-independent content digest of a snapshot (see digest.h).
 *
 * Canonical form: kind, key bytes, version, then every field in declaration
 * order (strings with their length, numbers as their IEEE bits); id lists
 * sorted. Two 64-bit hashes with different seeds give 128 bits.
 */
#include "digest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

struct canon {
  uint64_t h1, h2;
};

static void mix(struct canon *c, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) {
    c->h1 = (c->h1 ^ b[i]) * 0x100000001b3ull;
    c->h2 = (c->h2 ^ b[i]) * 0x9E3779B97F4A7C15ull;
    c->h2 ^= c->h2 >> 31;
  }
}

static void mix_str(struct canon *c, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  mix(c, &n, sizeof n);
  mix(c, s, n);
}

#define MIX(c, x) mix((c), &(x), sizeof(x))

static int id_cmp(const void *a, const void *b) { return memcmp(a, b, 16); }

/* Mixes an id list sorted (order of links carries no meaning). */
static void mix_ids(struct canon *c, const uint8_t (*ids)[16], uint32_t n) {
  uint8_t(*v)[16] = xmalloc((n + 1) * 16);
  memcpy(v, ids, (size_t)n * 16);
  qsort(v, n, 16, id_cmp);
  MIX(c, n);
  mix(c, v, (size_t)n * 16);
  free(v);
}

static void mix_images(struct canon *c, const struct cat_image *im, uint32_t n) {
  MIX(c, n);
  for (uint32_t i = 0; i < n; i++) {
    char idt[UUID_STR_LEN + 1];
    uuid_format(im[i].id, idt);
    mix_str(c, idt), mix_str(c, im[i].url), mix_str(c, im[i].alt);
    MIX(c, im[i].position);
  }
}

static void mix_variant(struct canon *c, const struct cat_variant *v) {
  mix(c, v->product_id, 16);
  mix_str(c, v->sku), mix_str(c, v->barcode), mix_str(c, v->warehouse_id);
  mix_str(c, v->lot_number), mix_str(c, v->vendor);
  double d[7] = {v->sale_price, v->cost_price, v->tax, v->weight, v->length, v->width, v->height};
  int32_t i[5] = {v->stock_total, v->stock_available, v->stock_reserved, v->min_stock,
                  v->max_stock};
  uint8_t f[2] = {v->active, v->track_inventory};
  MIX(c, d), MIX(c, i), MIX(c, f);
  mix_images(c, v->images, v->n_images);
}

static void mix_product(struct canon *c, const struct cat_product *p) {
  mix_str(c, p->local_id), mix_str(c, p->title), mix_str(c, p->sku), mix_str(c, p->barcode);
  mix_str(c, p->description), mix_str(c, p->status), mix_str(c, p->product_type);
  mix_str(c, p->unit_of_measure);
  MIX(c, p->alert_stock);
  uint8_t b = p->has_brand;
  MIX(c, b);
  if (b) mix(c, p->brand_id, 16);
  mix_images(c, p->images, p->n_images);
  mix_ids(c, p->tag_ids, p->n_tags);
  mix_ids(c, p->collection_ids, p->n_collections);
}

struct walk {
  struct canon *v;
  size_t n, cap;
};

/* The canonical hash of one record: kind, key, version and every field. */
static struct canon canon_record(const struct cat_hdr *h) {
  struct canon c = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
  uint8_t kind = h->kind;
  MIX(&c, kind);
  mix(&c, h->key, h->keylen);
  MIX(&c, h->version);
  if (h->kind == CAT_VARIANT)
    mix_variant(&c, (const struct cat_variant *)h);
  else if (h->kind == CAT_PRODUCT)
    mix_product(&c, (const struct cat_product *)h);
  else {
    const struct cat_named *n = (const struct cat_named *)h;
    mix_str(&c, n->name), mix_str(&c, n->slug), mix_str(&c, n->description);
  }
  return c;
}

void digest_record(const struct cat_hdr *h, uint64_t out[2]) {
  struct canon c = canon_record(h);
  out[0] = c.h1, out[1] = c.h2;
}

static void hash_record(const struct cat_hdr *h, void *arg) {
  struct walk *w = arg;
  struct canon c = canon_record(h);
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 1024;
    w->v = xrealloc(w->v, w->cap * sizeof *w->v);
  }
  w->v[w->n++] = c;
}

static int canon_cmp(const void *a, const void *b) {
  const struct canon *x = a, *y = b;
  if (x->h1 != y->h1) return x->h1 < y->h1 ? -1 : 1;
  return x->h2 < y->h2 ? -1 : x->h2 > y->h2;
}

void digest_compute(const struct snapshot *s, struct digest *out) {
  struct walk w = {0};
  struct canon all = {0xcbf29ce484222325ull, 0x84222325cbf29ce4ull};
  memset(out, 0, sizeof *out);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++) {
    size_t before = w.n;
    snap_foreach(s, (enum cat_kind)k, hash_record, &w);
    out->counts[k] = w.n - before;
  }
  qsort(w.v, w.n, sizeof *w.v, canon_cmp);
  mix(&all, w.v, w.n * sizeof *w.v);
  free(w.v);
  snprintf(out->hex, sizeof out->hex, "%016llx%016llx", (unsigned long long)all.h1,
           (unsigned long long)all.h2);
  out->version = snap_version(s);
}

char *digest_json(const struct digest *d, const char *offsets_json) {
  size_t cap = 512 + (offsets_json ? strlen(offsets_json) : 0);
  char *out = xmalloc(cap);
  snprintf(out, cap,
           "{\"digest\":\"%s\",\"snapshot_version\":%llu,\"counts\":{\"variants\":%zu,"
           "\"products\":%zu,\"brands\":%zu,\"tags\":%zu,\"collections\":%zu}%s%s}",
           d->hex, (unsigned long long)d->version, d->counts[CAT_VARIANT], d->counts[CAT_PRODUCT],
           d->counts[CAT_BRAND], d->counts[CAT_TAG], d->counts[CAT_COLLECTION],
           offsets_json ? ",\"offsets\":" : "", offsets_json ? offsets_json : "");
  return out;
}
