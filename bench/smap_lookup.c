/*
 * smap_lookup.c - micro-benchmark of catalogd's snapshot map lookup (src/smap.c)
 * against the layout suggested in docs/performance.md: per shard, a flat
 * open-addressing array of {hash32, record pointer} (linear probing, load <= 0.5).
 *
 *   smap-lookup [N]     N records (default 1000000) with 16-byte ids + "org-001"
 *
 * Both tables hold the same records (same keys, same hash function smap_hash,
 * same 4096 shards) and both compare the key bytes in the record, so the
 * difference is the table layout: uthash chains of separately allocated slots
 * versus one contiguous array per shard. Prints one JSON line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smap.h"

#define SHARD_BITS 12 /* as src/store.c uses for variants */
#define KEYLEN     23

static uint64_t rs = 88172645463325252ULL;
static uint64_t rnd(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return rs;
}

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

struct ent {
  uint32_t h;
  const struct cat_hdr *p;
};

int main(int argc, char **argv) {
  int n = argc > 1 ? atoi(argv[1]) : 1000000;
  const int lookups = 2000000;
  if (n < 1) return 2;
  struct smap *m = smap_new(SHARD_BITS, 1);
  struct retire r = {0};
  struct cat_hdr **hs = malloc(sizeof *hs * (size_t)n);
  for (int i = 0; i < n; i++) {
    struct cat_hdr *h = calloc(1, sizeof *h + 64); /* stands in for a record */
    uint8_t *k = (uint8_t *)(h + 1);
    for (int j = 0; j < 16; j += 8) {
      uint64_t v = rnd();
      memcpy(k + j, &v, 8);
    }
    memcpy(k + 16, "org-001", 8);
    h->key = k, h->keylen = KEYLEN, h->gen = 1;
    hs[i] = h;
    struct cat_hdr *old;
    smap_put(m, h, smap_hash(k, KEYLEN), &old, &r);
  }
  double t0 = now();
  size_t found = 0;
  for (int i = 0; i < lookups; i++) {
    const struct cat_hdr *h = hs[rnd() % (uint64_t)n];
    found += smap_get(m, h->key, KEYLEN, smap_hash(h->key, KEYLEN)) != NULL;
  }
  double uthash_ns = (now() - t0) * 1e9 / lookups;

  unsigned per = 4;
  while (per < 2u * (unsigned)(n >> SHARD_BITS) + 2)
    per <<= 1;
  struct ent **tab = calloc((size_t)1 << SHARD_BITS, sizeof *tab);
  for (int s = 0; s < 1 << SHARD_BITS; s++)
    tab[s] = calloc(per, sizeof **tab);
  for (int i = 0; i < n; i++) {
    uint32_t h = smap_hash(hs[i]->key, KEYLEN);
    struct ent *t = tab[h >> (32 - SHARD_BITS)];
    unsigned j = h & (per - 1);
    while (t[j].p)
      j = (j + 1) & (per - 1);
    t[j] = (struct ent){h, hs[i]};
  }
  t0 = now();
  size_t found2 = 0;
  for (int i = 0; i < lookups; i++) {
    const struct cat_hdr *h = hs[rnd() % (uint64_t)n];
    uint32_t hv = smap_hash(h->key, KEYLEN);
    const struct ent *t = tab[hv >> (32 - SHARD_BITS)];
    for (unsigned j = hv & (per - 1); t[j].p; j = (j + 1) & (per - 1))
      if (t[j].h == hv && t[j].p->keylen == KEYLEN && !memcmp(t[j].p->key, h->key, KEYLEN)) {
        found2++;
        break;
      }
  }
  double flat_ns = (now() - t0) * 1e9 / lookups;
  printf("{\"entries\":%d,\"lookups\":%d,\"uthash_ns\":%.0f,\"flat_ns\":%.0f,"
         "\"flat_bytes_per_entry\":%.1f,\"found\":[%zu,%zu]}\n",
         n, lookups, uthash_ns, flat_ns, (double)per * 16 * (1 << SHARD_BITS) / n, found, found2);
  return found == (size_t)lookups && found2 == (size_t)lookups ? 0 : 1;
}
