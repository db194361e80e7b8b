/*
 * digest.c - order-independent content digest of a snapshot (see digest.h).
 *
 * Canonical form: kind, key bytes, version, then every field in declaration
 * order (strings with their length, numbers as their IEEE bits); id lists
 * sorted. Each record's canonical bytes are hashed to 128 bits (two 64-bit
 * lanes, 8 bytes a step); the digest is the hash of the lanes' sums over
 * the live records and their count.
 *
 * Version 2 of the definition (checkpoint format 3). Version 1 hashed a
 * byte at a time and sorted the records' hashes: ten times the work for the
 * same purpose (docs/performance.md, "The digest, version 2"). Changing the
 * definition changes every digest: replicas of builds with different
 * versions disagree on /digest, and checkpoints carry the format version
 * that names the definition.
 */
#include "digest.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "byteorder.h"
#include "strbuf.h"
#include "xalloc.h"

#define SEED1 0xcbf29ce484222325ull
#define SEED2 0x84222325cbf29ce4ull
#define K1    0x87c37b91114253d5ull
#define K2    0x4cf5ad432745937full
#define K3    0x9E3779B97F4A7C15ull

static uint64_t rotl(uint64_t x, int r) { return x << r | x >> (64 - r); }

/* A strong 64-bit finalizer (every input bit moves every output bit). */
static uint64_t avalanche(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

/* The last n < 8 bytes, zero-padded. */
static uint64_t load_tail(const unsigned char *p, size_t n) {
  unsigned char b[8] = {0};
  memcpy(b, p, n);
  return load_le64(b);
}

/* The 128-bit hash of n bytes (the definition of the digest). Two lanes,
 * one 8-byte word a step each; the words' products are off the lanes'
 * dependency chains, so a step costs about one multiply's latency. */
static void hash_bytes(const void *data, size_t n, uint64_t out[2]) {
  const unsigned char *p = data;
  uint64_t h1 = SEED1 ^ n, h2 = SEED2 ^ (n * K3);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w = load_le64(p + i);
    h1 = rotl(h1 ^ (w * K1), 31) * K2;
    h2 = rotl(h2 ^ (w * K2), 29) * K1;
  }
  if (i < n) {
    uint64_t w = load_tail(p + i, n - i);
    h1 = rotl(h1 ^ (w * K1), 31) * K2;
    h2 = rotl(h2 ^ (w * K2), 29) * K1;
  }
  h1 += h2, h2 += h1;
  h1 = avalanche(h1), h2 = avalanche(h2);
  h1 += h2, h2 += h1;
  out[0] = h1, out[1] = h2;
}

/* ---- A record's canonical form, as bytes ---- */

static void put_str(struct strbuf *b, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  sb_append(b, &n, sizeof n);
  sb_append(b, s, n);
}

#define PUT(b, x) sb_append((b), &(x), sizeof(x))

static int id_cmp(const void *a, const void *b) { return memcmp(a, b, 16); }

/* An id list, sorted (the order of links carries no meaning). */
static void put_ids(struct strbuf *b, const uint8_t (*ids)[16], uint32_t n) {
  PUT(b, n);
  size_t at = b->len;
  sb_append(b, ids, (size_t)n * 16);
  qsort(b->p + at, n, 16, id_cmp);
}

static void put_images(struct strbuf *b, const struct cat_image *im, uint32_t n) {
  PUT(b, n);
  for (uint32_t i = 0; i < n; i++) {
    char idt[UUID_STR_LEN + 1];
    uuid_format(im[i].id, idt);
    put_str(b, idt), put_str(b, im[i].url), put_str(b, im[i].alt);
    PUT(b, im[i].position);
  }
}

static void put_variant(struct strbuf *b, const struct cat_variant *v) {
  sb_append(b, v->product_id, 16);
  put_str(b, v->sku), put_str(b, v->barcode), put_str(b, v->warehouse_id);
  put_str(b, v->lot_number), put_str(b, v->vendor);
  double d[7] = {v->sale_price, v->cost_price, v->tax, v->weight, v->length, v->width, v->height};
  int32_t i[5] = {v->stock_total, v->stock_available, v->stock_reserved, v->min_stock,
                  v->max_stock};
  uint8_t f[2] = {v->active, v->track_inventory};
  PUT(b, d), PUT(b, i), PUT(b, f);
  put_images(b, v->images, v->n_images);
}

static void put_product(struct strbuf *b, const struct cat_product *p) {
  put_str(b, p->local_id), put_str(b, p->title), put_str(b, p->sku), put_str(b, p->barcode);
  put_str(b, p->description), put_str(b, p->status), put_str(b, p->product_type);
  put_str(b, p->unit_of_measure);
  PUT(b, p->alert_stock);
  uint8_t has = p->has_brand;
  PUT(b, has);
  if (has) sb_append(b, p->brand_id, 16);
  put_images(b, p->images, p->n_images);
  put_ids(b, p->tag_ids, p->n_tags);
  put_ids(b, p->collection_ids, p->n_collections);
}

/* b = the canonical form of h: kind, key, version and every field. */
static void canon_bytes(struct strbuf *b, const struct cat_hdr *h) {
  uint8_t kind = h->kind;
  b->len = 0;
  PUT(b, kind);
  sb_append(b, h->key, h->keylen);
  PUT(b, h->version);
  if (h->kind == CAT_VARIANT)
    put_variant(b, (const struct cat_variant *)h);
  else if (h->kind == CAT_PRODUCT)
    put_product(b, (const struct cat_product *)h);
  else {
    const struct cat_named *n = (const struct cat_named *)h;
    put_str(b, n->name), put_str(b, n->slug), put_str(b, n->description);
  }
}

void digest_record(const struct cat_hdr *h, uint64_t out[2]) {
  struct strbuf b = {0};
  canon_bytes(&b, h);
  hash_bytes(b.p, b.len, out);
  free(b.p);
}

/* ---- The digest of a set of records ----
 *
 * The records' hashes are summed per lane (mod 2^64): the sum does not
 * depend on the order, needs no list of hashes and no sort, and a set
 * that differs by any record differs in the sums but with a chance of
 * 2^-128 for hashes this well mixed. */

struct digest_acc {
  uint64_t sum[2];
  uint64_t n;
  struct strbuf b; /* the record being hashed (reused) */
};

struct digest_acc *digest_acc_new(void) {
  return xcalloc(1, sizeof(struct digest_acc));
}

void digest_acc_add(struct digest_acc *a, const struct cat_hdr *h) {
  uint64_t x[2];
  canon_bytes(&a->b, h);
  hash_bytes(a->b.p, a->b.len, x);
  a->sum[0] += x[0], a->sum[1] += x[1];
  a->n++;
}

void digest_acc_destroy(struct digest_acc *a) {
  if (a == NULL) return;
  free(a->b.p);
  free(a);
}

void digest_acc_finish(struct digest_acc *a, char hex[33]) {
  unsigned char w[24];
  uint64_t v[3] = {a->sum[0], a->sum[1], a->n}, out[2];
  for (int i = 0; i < 24; i++) /* little-endian, as hash_bytes reads */
    w[i] = (unsigned char)(v[i / 8] >> (8 * (i % 8)));
  hash_bytes(w, sizeof w, out);
  snprintf(hex, 33, "%016llx%016llx", (unsigned long long)out[0], (unsigned long long)out[1]);
  digest_acc_destroy(a);
}

/* ---- The whole snapshot ---- */

/* One kind's records (tombstones included), as the map gives them. */
struct walk {
  const struct cat_hdr **recs;
  size_t n, cap;
};

static void collect(const struct cat_hdr *h, void *arg) {
  struct walk *w = arg;
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 1024;
    w->recs = xrealloc(w->recs, w->cap * sizeof *w->recs);
  }
  w->recs[w->n++] = h;
}

#define AHEAD 8 /* records prefetched ahead: each is a cache miss somewhere in the heap */

void digest_compute(const struct snapshot *s, struct digest *out) {
  struct walk w = {0};
  struct digest_acc *a = digest_acc_new();
  memset(out, 0, sizeof *out);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++) {
    w.n = 0;
    snap_foreach_all(s, (enum cat_kind)k, collect, &w);
    out->records[k] = w.n;
    for (size_t i = 0; i < w.n; i++) {
      if (i + AHEAD < w.n) __builtin_prefetch(w.recs[i + AHEAD]);
      if (w.recs[i]->deleted) continue;
      out->counts[k]++;
      digest_acc_add(a, w.recs[i]);
    }
  }
  free(w.recs);
  digest_acc_finish(a, out->hex);
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
