/*
 * digest.c - order-independent content digest of a snapshot (see digest.h).
 *
 * Canonical form: kind, key bytes, version, then every field in declaration
 * order (strings with their length, numbers as their IEEE bits); id lists
 * sorted. Two 64-bit hashes with different seeds give 128 bits.
 */
#include "digest.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"
#include "xalloc.h"

struct canon {
  uint64_t h1, h2;
};

#define SEED1 0xcbf29ce484222325ull
#define SEED2 0x84222325cbf29ce4ull
#define P1    0x100000001b3ull
#define P2    0x9E3779B97F4A7C15ull

/* One byte into the two hashes (the definition of the digest: changing it
 * changes every digest, so replicas of two builds would disagree). */
#define STEP(x1, x2, byte)                                                                         \
  do {                                                                                             \
    (x1) = ((x1) ^ (byte)) * P1;                                                                   \
    (x2) = ((x2) ^ (byte)) * P2;                                                                   \
    (x2) ^= (x2) >> 31;                                                                            \
  } while (0)

static void mix(struct canon *c, const void *p, size_t n) {
  const unsigned char *b = p;
  uint64_t h1 = c->h1, h2 = c->h2;
  for (size_t i = 0; i < n; i++)
    STEP(h1, h2, b[i]);
  c->h1 = h1, c->h2 = h2;
}

/* ---- A record's canonical form, as bytes ----
 *
 * Each byte goes through two dependent multiply chains, so hashing one
 * record is bound by their latency (~6 cycles a byte), not by the CPU's
 * throughput. The record is therefore first laid out as its canonical bytes
 * (cheap copies), and four records' bytes are hashed interleaved
 * (mix4): the same values, about three times the speed. */

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
  struct canon c = {SEED1, SEED2};
  canon_bytes(&b, h);
  mix(&c, b.p, b.len);
  free(b.p);
  out[0] = c.h1, out[1] = c.h2;
}

/* out[j] = the hash of b[j] for j < 4, interleaved: the four chains are
 * independent, so the CPU overlaps their multiplies. */
static void mix4(const struct strbuf b[4], struct canon out[4]) {
  size_t m = b[0].len;
  for (int j = 1; j < 4; j++)
    m = b[j].len < m ? b[j].len : m;
  uint64_t a1 = SEED1, a2 = SEED2, b1 = SEED1, b2 = SEED2;
  uint64_t c1 = SEED1, c2 = SEED2, d1 = SEED1, d2 = SEED2;
  const uint8_t *p0 = (const uint8_t *)b[0].p, *p1 = (const uint8_t *)b[1].p,
                *p2 = (const uint8_t *)b[2].p, *p3 = (const uint8_t *)b[3].p;
  for (size_t i = 0; i < m; i++) {
    STEP(a1, a2, p0[i]);
    STEP(b1, b2, p1[i]);
    STEP(c1, c2, p2[i]);
    STEP(d1, d2, p3[i]);
  }
  out[0] = (struct canon){a1, a2}, out[1] = (struct canon){b1, b2};
  out[2] = (struct canon){c1, c2}, out[3] = (struct canon){d1, d2};
  for (int j = 0; j < 4; j++) /* the rest of the longer ones */
    mix(&out[j], b[j].p + m, b[j].len - m);
}

/* ---- The digest of a set of records ---- */

struct digest_acc {
  struct canon *v; /* the hashes so far */
  size_t n, cap;
  struct strbuf b[4];
  int pending; /* records laid out in b[0..pending), not hashed yet */
};

struct digest_acc *digest_acc_new(void) {
  return xcalloc(1, sizeof(struct digest_acc));
}

static void push(struct digest_acc *a, struct canon c) {
  if (a->n == a->cap) {
    a->cap = a->cap ? 2 * a->cap : 1024;
    a->v = xrealloc(a->v, a->cap * sizeof *a->v);
  }
  a->v[a->n++] = c;
}

/* Hashes the records laid out so far (four interleaved, fewer one by one). */
static void drain(struct digest_acc *a) {
  struct canon c[4];
  if (a->pending == 4) {
    mix4(a->b, c);
  } else {
    for (int j = 0; j < a->pending; j++) {
      c[j] = (struct canon){SEED1, SEED2};
      mix(&c[j], a->b[j].p, a->b[j].len);
    }
  }
  for (int j = 0; j < a->pending; j++)
    push(a, c[j]);
  a->pending = 0;
}

void digest_acc_add(struct digest_acc *a, const struct cat_hdr *h) {
  canon_bytes(&a->b[a->pending++], h);
  if (a->pending == 4) drain(a);
}

void digest_acc_destroy(struct digest_acc *a) {
  if (a == NULL) return;
  free(a->v);
  for (int j = 0; j < 4; j++)
    free(a->b[j].p);
  free(a);
}

static int canon_cmp(const void *a, const void *b) {
  const struct canon *x = a, *y = b;
  if (x->h1 != y->h1) return x->h1 < y->h1 ? -1 : 1;
  return x->h2 < y->h2 ? -1 : x->h2 > y->h2;
}

static bool canon_less(const struct canon *x, const struct canon *y) {
  return x->h1 < y->h1 || (x->h1 == y->h1 && x->h2 < y->h2);
}

#define RADIX_BITS 16
#define SMALL_RUN  32 /* runs up to this long: insertion sort; longer: qsort */

/* Sorts v[0..n) as qsort with canon_cmp would (the order is total: equal
 * elements are identical), faster for big n: one counting pass on the top
 * RADIX_BITS of h1 (uniform: a hash), then each bucket sorted on its own,
 * nearly always a handful of elements. A skewed input (forged hashes) only
 * makes buckets fall back to qsort. */
static void canon_sort(struct canon *v, size_t n) {
  const size_t nb = (size_t)1 << RADIX_BITS;
  if (n < nb / 4) {
    qsort(v, n, sizeof *v, canon_cmp);
    return;
  }
  size_t *start = xcalloc(nb + 1, sizeof *start);
  struct canon *tmp = xmalloc(n * sizeof *tmp);
  for (size_t i = 0; i < n; i++)
    start[(v[i].h1 >> (64 - RADIX_BITS)) + 1]++;
  for (size_t k = 0; k < nb; k++)
    start[k + 1] += start[k];
  for (size_t i = 0; i < n; i++)
    tmp[start[v[i].h1 >> (64 - RADIX_BITS)]++] = v[i];
  /* start[k] is now the end of bucket k, i.e. the start of k + 1. */
  for (size_t k = 0, lo = 0; k < nb; lo = start[k++]) {
    struct canon *r = tmp + lo;
    size_t len = start[k] - lo;
    if (len > SMALL_RUN) {
      qsort(r, len, sizeof *r, canon_cmp);
      continue;
    }
    for (size_t i = 1; i < len; i++) {
      struct canon x = r[i];
      size_t j = i;
      for (; j > 0 && canon_less(&x, &r[j - 1]); j--)
        r[j] = r[j - 1];
      r[j] = x;
    }
  }
  memcpy(v, tmp, n * sizeof *v);
  free(tmp);
  free(start);
}

void digest_acc_finish(struct digest_acc *a, char hex[33]) {
  struct canon all = {SEED1, SEED2};
  drain(a);
  canon_sort(a->v, a->n);
  mix(&all, a->v, a->n * sizeof *a->v);
  snprintf(hex, 33, "%016llx%016llx", (unsigned long long)all.h1, (unsigned long long)all.h2);
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
