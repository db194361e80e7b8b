/*
 * smap_lookup.c - micro-benchmark of catalogd's snapshot map (src/store/smap.c).
 *
 *   smap-lookup [N]     N records (default 1000000) with 16-byte ids + "org-001"
 *
 * Measures, on one set of records (same keys, same hash function smap_hash,
 * same 4096 shards as the store uses for variants):
 *   smap_ns     - smap_get, the flat open-addressing shards catalogd uses;
 *   many_ns     - the same lookups through smap_get_many, 16 at a time (what
 *                 the batch RPCs do);
 *   uthash_ns   - the same lookups in a uthash table per shard, the layout
 *                 smap had before (kept as the reference the change is
 *                 measured against);
 *   fork_put_ns - the map part of a one-entity publish: smap_fork, one
 *                 smap_put (copying one shard), then freeing what the
 *                 superseded version no longer shares.
 * Prints one JSON line; exits 1 if a lookup missed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#undef uthash_fatal
#define uthash_fatal(msg) abort()
#include <uthash.h>

#include "clock.h"
#include "smap.h"

#define SHARD_BITS 12 /* as src/store/store.c uses for variants */
#define KEYLEN     23
#define LOOKUPS    2000000
#define PUBLISHES  20000

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return rs;
}

struct uslot {
  UT_hash_handle hh;
  const struct cat_hdr *val;
};

/* n records standing in for catalog records: random 16-byte ids + org. */
static struct cat_hdr **make_records(int n) {
  struct cat_hdr **hs = malloc(sizeof *hs * (size_t)n);
  for (int i = 0; i < n; i++) {
    struct cat_hdr *h = calloc(1, sizeof *h + 64);
    uint8_t *k = (uint8_t *)(h + 1);
    for (int j = 0; j < 16; j += 8) {
      uint64_t v = rnd();
      memcpy(k + j, &v, 8);
    }
    memcpy(k + 16, "org-001", 8);
    h->key = k, h->keylen = KEYLEN, h->gen = 1;
    hs[i] = h;
  }
  return hs;
}

static double time_smap(struct smap *m, struct cat_hdr **hs, int n, size_t *found) {
  double t0 = clock_mono_s();
  for (int i = 0; i < LOOKUPS; i++) {
    const struct cat_hdr *h = hs[rnd() % (uint64_t)n];
    *found += smap_get(m, h->key, KEYLEN, smap_hash(h->key, KEYLEN)) != NULL;
  }
  return (clock_mono_s() - t0) * 1e9 / LOOKUPS;
}

static double time_many(struct smap *m, struct cat_hdr **hs, int n, size_t *found) {
  const uint8_t *keys[SMAP_GET_MANY_MAX];
  uint32_t lens[SMAP_GET_MANY_MAX], hashes[SMAP_GET_MANY_MAX];
  struct cat_hdr *out[SMAP_GET_MANY_MAX];
  double t0 = clock_mono_s();
  for (int i = 0; i < LOOKUPS; i += SMAP_GET_MANY_MAX) {
    for (int j = 0; j < SMAP_GET_MANY_MAX; j++) {
      const struct cat_hdr *h = hs[rnd() % (uint64_t)n];
      keys[j] = h->key, lens[j] = KEYLEN, hashes[j] = smap_hash(h->key, KEYLEN);
    }
    smap_get_many(m, SMAP_GET_MANY_MAX, keys, lens, hashes, out);
    for (int j = 0; j < SMAP_GET_MANY_MAX; j++)
      *found += out[j] != NULL;
  }
  return (clock_mono_s() - t0) * 1e9 / LOOKUPS;
}

static double time_uthash(struct cat_hdr **hs, int n, size_t *found) {
  struct uslot **tab = calloc((size_t)1 << SHARD_BITS, sizeof *tab);
  for (int i = 0; i < n; i++) {
    struct uslot *s = calloc(1, sizeof *s);
    uint32_t hv = smap_hash(hs[i]->key, KEYLEN);
    s->val = hs[i];
    HASH_ADD_KEYPTR_BYHASHVALUE(hh, tab[hv >> (32 - SHARD_BITS)], hs[i]->key, KEYLEN, hv, s);
  }
  double t0 = clock_mono_s();
  for (int i = 0; i < LOOKUPS; i++) {
    const struct cat_hdr *h = hs[rnd() % (uint64_t)n];
    uint32_t hv = smap_hash(h->key, KEYLEN);
    struct uslot *s = NULL;
    HASH_FIND_BYHASHVALUE(hh, tab[hv >> (32 - SHARD_BITS)], h->key, KEYLEN, hv, s);
    *found += s != NULL;
  }
  double ns = (clock_mono_s() - t0) * 1e9 / LOOKUPS;
  for (int i = 0; i < 1 << SHARD_BITS; i++) {
    struct uslot *s, *tmp;
    HASH_ITER(hh, tab[i], s, tmp) {
      HASH_DELETE(hh, tab[i], s);
      free(s);
    }
  }
  free(tab);
  return ns;
}

/* Re-puts existing records (no record is freed: *old is the same record). */
static double time_fork_put(struct smap **m, struct cat_hdr **hs, int n) {
  struct retire r = {0};
  double t0 = clock_mono_s();
  for (uint64_t gen = 2; gen < 2 + PUBLISHES; gen++) {
    struct smap *next = smap_fork(*m, gen);
    struct cat_hdr *h = hs[rnd() % (uint64_t)n], *old;
    smap_put(next, h, smap_hash(h->key, KEYLEN), &old, &r);
    smap_free_shell(*m);
    retire_free(&r);
    *m = next;
  }
  free(r.items);
  return (clock_mono_s() - t0) * 1e9 / PUBLISHES;
}

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000000;
  if (n < 1) return 2;
  struct cat_hdr **hs = make_records(n);
  struct smap *m = smap_new(SHARD_BITS, 1);
  struct retire r = {0};
  for (int i = 0; i < n; i++) {
    struct cat_hdr *old;
    smap_put(m, hs[i], smap_hash(hs[i]->key, KEYLEN), &old, &r);
  }
  size_t found = 0, found_many = 0, found_ut = 0;
  double smap_ns = time_smap(m, hs, n, &found);
  double many_ns = time_many(m, hs, n, &found_many);
  double uthash_ns = time_uthash(hs, n, &found_ut);
  double fork_ns = time_fork_put(&m, hs, n);
  printf("{\"entries\":%d,\"lookups\":%d,\"smap_ns\":%.0f,\"many_ns\":%.0f,"
         "\"uthash_ns\":%.0f,\"fork_put_ns\":%.0f,\"found\":[%zu,%zu,%zu]}\n",
         n, LOOKUPS, smap_ns, many_ns, uthash_ns, fork_ns, found, found_many, found_ut);
  smap_destroy(m, 1); /* frees the records too */
  free(hs);
  return found == LOOKUPS && found_many == LOOKUPS && found_ut == LOOKUPS ? 0 : 1;
}
