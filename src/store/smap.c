/*
 * smap.c - sharded copy-on-write record map (see smap.h for the model).
 *
 * A shard is one allocation: a header and a power-of-two array of entries
 * {hash, record}, filled by linear probing to at most 3/4 and emptied by
 * backward-shift deletion (no tombstones, so a probe ends at the first empty
 * entry). Why not uthash here: at 1M entries its chains of separately
 * allocated slots made a lookup 5-6 dependent cache misses (1.6-1.8 us,
 * bench/smap_lookup.c), and copying a shard meant one malloc per entry. In a
 * flat shard a lookup is a miss on the entry run plus one on the record's key,
 * copying a shard is one memcpy, and retiring it one free().
 *
 * The hash's top bits pick the shard and its low bits the home entry, so the
 * two stay independent while shards hold fewer than 2^(32 - bits) entries.
 * Keys are not copied: an entry's record holds its key, and the stored hash
 * filters out nearly every non-matching record before its key is read.
 */
#include "smap.h"

#include <assert.h>
#include <string.h>

#include "xalloc.h"

#define SHARD_MIN_CAP 8u

struct ent {
  uint32_t hash;
  struct cat_hdr *val; /* NULL = empty */
};

struct shard {
  uint64_t gen;
  uint32_t mask;  /* capacity - 1 */
  uint32_t count; /* entries in use; <= 3/4 of capacity */
  struct ent e[];
};

struct smap {
  unsigned bits;
  uint64_t gen;
  struct shard **shards; /* 2^bits entries; NULL = empty shard */
};

uint32_t smap_hash(const uint8_t *key, size_t len) {
  /* 64-bit multiply-xorshift over 8-byte words, folded to 32 bits. */
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (len * 0xff51afd7ed558ccdull);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    uint64_t w;
    memcpy(&w, key + i, 8);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
  }
  uint64_t w = 0;
  memcpy(&w, key + i, len - i);
  h = (h ^ w) * 0xff51afd7ed558ccdull;
  h ^= h >> 32;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 29;
  return (uint32_t)h;
}

static size_t shard_of(const struct smap *m, uint32_t hash) {
  return m->bits ? hash >> (32 - m->bits) : 0;
}

struct smap *smap_new(unsigned bits, uint64_t gen) {
  assert(bits <= 16);
  struct smap *m = xcalloc(1, sizeof *m);
  m->bits = bits;
  m->gen = gen;
  m->shards = xcalloc((size_t)1 << bits, sizeof *m->shards);
  return m;
}

/* Index of the entry holding key in sh, or of the empty entry that ends its
 * probe sequence (then sh->e[i].val == NULL). */
static uint32_t shard_probe(const struct shard *sh, const uint8_t *key, size_t len, uint32_t hash) {
  for (uint32_t i = hash & sh->mask;; i = (i + 1) & sh->mask) {
    const struct ent *e = &sh->e[i];
    if (e->val == NULL) return i;
    if (e->hash == hash && e->val->keylen == len && memcmp(e->val->key, key, len) == 0) return i;
  }
}

struct cat_hdr *smap_get(const struct smap *m, const uint8_t *key, size_t len, uint32_t hash) {
  const struct shard *sh = m->shards[shard_of(m, hash)];
  return sh ? sh->e[shard_probe(sh, key, len, hash)].val : NULL;
}

/* The entry where key's probe starts (the one at its home), or NULL if its
 * shard is empty. */
static const struct ent *home_of(const struct smap *m, uint32_t hash) {
  const struct shard *sh = m->shards[shard_of(m, hash)];
  return sh ? &sh->e[hash & sh->mask] : NULL;
}

void smap_prefetch_many(const struct smap *m, size_t n, const uint32_t hashes[]) {
  const struct ent *home[SMAP_GET_MANY_MAX];
  assert(n <= SMAP_GET_MANY_MAX);
  for (size_t i = 0; i < n; i++) /* shard headers (their masks) */
    __builtin_prefetch(m->shards[shard_of(m, hashes[i])]);
  for (size_t i = 0; i < n; i++) /* the home entries */
    if ((home[i] = home_of(m, hashes[i])) != NULL) __builtin_prefetch(home[i]);
  for (size_t i = 0; i < n; i++) /* the record a home entry points at */
    if (home[i] != NULL && home[i]->val != NULL) __builtin_prefetch(home[i]->val);
  for (size_t i = 0; i < n; i++) /* its key bytes */
    if (home[i] != NULL && home[i]->val != NULL) __builtin_prefetch(home[i]->val->key);
}

void smap_get_many(const struct smap *m, size_t n, const uint8_t *const keys[],
                   const uint32_t lens[], const uint32_t hashes[], struct cat_hdr *out[]) {
  smap_prefetch_many(m, n, hashes);
  for (size_t i = 0; i < n; i++)
    out[i] = smap_get(m, keys[i], lens[i], hashes[i]);
}

struct smap *smap_fork(const struct smap *base, uint64_t gen) {
  assert(gen > base->gen);
  struct smap *m = xmalloc(sizeof *m);
  size_t n = (size_t)1 << base->bits;
  *m = *base;
  m->gen = gen;
  m->shards = xmalloc(n * sizeof *m->shards);
  memcpy(m->shards, base->shards, n * sizeof *m->shards);
  return m;
}

uint64_t smap_gen(const struct smap *m) { return m->gen; }

/* A new empty shard of capacity cap (a power of two) owned by gen. */
static struct shard *shard_alloc(uint32_t cap, uint64_t gen) {
  assert(cap >= SHARD_MIN_CAP && (cap & (cap - 1)) == 0);
  struct shard *sh = xcalloc(1, sizeof *sh + (size_t)cap * sizeof(struct ent));
  sh->gen = gen;
  sh->mask = cap - 1;
  return sh;
}

/* A copy of old with capacity cap (>= old's), owned by gen: one memcpy when
 * the capacity is the same, a re-insertion of every entry when it grows. */
static struct shard *shard_copy(const struct shard *old, uint32_t cap, uint64_t gen) {
  if (cap == old->mask + 1) {
    size_t size = sizeof *old + (size_t)cap * sizeof(struct ent);
    struct shard *sh = xmalloc(size);
    memcpy(sh, old, size);
    sh->gen = gen;
    return sh;
  }
  struct shard *sh = shard_alloc(cap, gen);
  for (uint32_t i = 0; i <= old->mask; i++) {
    const struct ent *e = &old->e[i];
    if (e->val == NULL) continue;
    uint32_t j = e->hash & sh->mask;
    while (sh->e[j].val != NULL)
      j = (j + 1) & sh->mask;
    sh->e[j] = *e;
  }
  sh->count = old->count;
  return sh;
}

/* Returns shard i of m as a private (gen-owned) shard with room for `room`
 * (0 or 1) more entries: a shared shard is copied and retired, a full private
 * one grown (and freed at once: no reader has seen it). With room 0 the shard
 * keeps its capacity, so entry indexes found in the old shard stay valid. */
static struct shard *shard_writable(struct smap *m, size_t i, uint32_t room, struct retire *r) {
  struct shard *old = m->shards[i];
  if (old == NULL) return m->shards[i] = shard_alloc(SHARD_MIN_CAP, m->gen);
  uint32_t cap = old->mask + 1;
  int full = room && (old->count + room) * 4 > cap * 3;
  if (old->gen == m->gen && !full) return old;
  struct shard *sh = shard_copy(old, full ? 2 * cap : cap, m->gen);
  if (old->gen == m->gen)
    free(old);
  else
    retire_add(r, old, RETIRE_SHARD);
  return m->shards[i] = sh;
}

void smap_put(struct smap *m, struct cat_hdr *rec, uint32_t hash, struct cat_hdr **old,
              struct retire *r) {
  struct shard *sh = shard_writable(m, shard_of(m, hash), 1, r);
  struct ent *e = &sh->e[shard_probe(sh, rec->key, rec->keylen, hash)];
  *old = e->val;
  if (e->val == NULL) sh->count++;
  *e = (struct ent){.hash = hash, .val = rec};
}

/* The capacity (a power of two) that holds want entries at most 3/4 full. */
static uint32_t cap_for(size_t want) {
  uint32_t cap = SHARD_MIN_CAP;
  while ((size_t)cap * 3 < want * 4 && cap < (1u << 30))
    cap *= 2;
  return cap;
}

void smap_reserve(struct smap *m, size_t n, struct retire *r) {
  size_t shards = (size_t)1 << m->bits, per = n / shards;
  if (per < 4) return; /* a small map: growing costs little, empty shards cost memory */
  /* A shard's count is about Poisson(per): 4 standard deviations plus a
   * little covers every shard of a 4096-shard map nearly always (and one
   * that overflows just grows, as without the reserve). */
  size_t sd = 1;
  while (sd * sd < per)
    sd++;
  uint32_t cap = cap_for(per + 4 * sd + 8);
  for (size_t i = 0; i < shards; i++) {
    struct shard *old = m->shards[i];
    if (old == NULL) {
      m->shards[i] = shard_alloc(cap, m->gen);
      continue;
    }
    if (old->mask + 1 >= cap) continue;
    m->shards[i] = shard_copy(old, cap, m->gen);
    if (old->gen == m->gen)
      free(old);
    else
      retire_add(r, old, RETIRE_SHARD);
  }
}

void smap_prefetch(const struct smap *m, uint32_t hash, int stage) {
  const struct shard *sh = m->shards[shard_of(m, hash)];
  if (sh == NULL) return;
  if (stage == 0) {
    __builtin_prefetch(sh);
    return;
  }
  const struct ent *e = &sh->e[hash & sh->mask];
  if (stage == 1)
    __builtin_prefetch(e);
  else if (e->val != NULL)
    __builtin_prefetch(e->val);
}

/* Empties entry i of the private shard sh, shifting back the entries after
 * it whose probe sequences passed through i, so no probe stops early. */
static void shard_remove(struct shard *sh, uint32_t i) {
  for (uint32_t j = (i + 1) & sh->mask; sh->e[j].val != NULL; j = (j + 1) & sh->mask) {
    uint32_t home = sh->e[j].hash & sh->mask;
    /* Entry j may move to i iff its home is not cyclically in (i, j]. */
    if (((j - home) & sh->mask) >= ((j - i) & sh->mask)) {
      sh->e[i] = sh->e[j];
      i = j;
    }
  }
  sh->e[i] = (struct ent){0};
  sh->count--;
}

void smap_del(struct smap *m, const uint8_t *key, size_t len, uint32_t hash, struct cat_hdr **old,
              struct retire *r) {
  /* Probed once, in the shard as readers see it: a missing key copies
   * nothing, and the private copy (same capacity) has the entry at i too. */
  size_t si = shard_of(m, hash);
  *old = NULL;
  if (m->shards[si] == NULL) return;
  uint32_t i = shard_probe(m->shards[si], key, len, hash);
  if (m->shards[si]->e[i].val == NULL) return;
  struct shard *sh = shard_writable(m, si, 0, r);
  assert(sh->e[i].hash == hash && sh->e[i].val->keylen == len);
  *old = sh->e[i].val;
  shard_remove(sh, i);
}

size_t smap_slots(const struct smap *m) {
  size_t n = (size_t)1 << m->bits, slots = 0;
  for (size_t i = 0; i < n; i++)
    if (m->shards[i] != NULL) slots += m->shards[i]->mask + 1;
  return slots;
}

/* Records are prefetched this many records ahead of fn: a walk of a whole
 * snapshot (checkpoint encoder, digest) is otherwise a cache miss per
 * record, in hash order; fn reads the first lines of each. */
#define WALK_AHEAD 8
#define WALK_LINES 4

static void prefetch_record(const struct cat_hdr *h) {
  for (int l = 0; l < WALK_LINES; l++)
    __builtin_prefetch((const char *)h + 64 * l);
}

/* A position in a walk of m's entries. */
struct cursor {
  size_t i;   /* shard */
  uint32_t j; /* entry in it */
};

/* The next record from c on (moving c past it), or NULL at the end. */
static const struct cat_hdr *next_val(const struct smap *m, struct cursor *c) {
  for (size_t n = (size_t)1 << m->bits; c->i < n; c->i++, c->j = 0) {
    const struct shard *sh = m->shards[c->i];
    while (sh != NULL && c->j <= sh->mask) {
      const struct cat_hdr *h = sh->e[c->j++].val;
      if (h != NULL) return h;
    }
  }
  return NULL;
}

void smap_foreach(const struct smap *m, void (*fn)(const struct cat_hdr *, void *), void *arg) {
  struct cursor lead = {0, 0}, at = {0, 0};
  const struct cat_hdr *h;
  for (int k = 0; k < WALK_AHEAD && (h = next_val(m, &lead)) != NULL; k++)
    prefetch_record(h);
  while ((h = next_val(m, &at)) != NULL) {
    const struct cat_hdr *ahead = next_val(m, &lead);
    if (ahead != NULL) prefetch_record(ahead);
    fn(h, arg);
  }
}

struct cat_hdr *smap_sample(const struct smap *m, uint64_t r) {
  size_t n = (size_t)1 << m->bits;
  size_t first = (size_t)(r % n);
  for (size_t k = 0; k < n; k++) {
    const struct shard *sh = m->shards[(first + k) % n];
    if (sh == NULL || sh->count == 0) continue;
    uint32_t start = (uint32_t)(r >> 32) & sh->mask;
    for (uint32_t j = 0; j <= sh->mask; j++) {
      struct cat_hdr *h = sh->e[(start + j) & sh->mask].val;
      if (h != NULL) return h;
    }
  }
  return NULL;
}

/* Frees a shard and, when `all` is set, every record in it; otherwise the
 * records built by owner_gen (a private shard's own records). */
static void shard_free(struct shard *sh, uint64_t owner_gen, int all) {
  for (uint32_t i = 0; i <= sh->mask; i++) {
    struct cat_hdr *h = sh->e[i].val;
    if (h != NULL && (all || h->gen == owner_gen)) model_free(h);
  }
  free(sh);
}

void smap_destroy(struct smap *m, int all_gens) {
  if (m == NULL) return;
  size_t n = (size_t)1 << m->bits;
  for (size_t i = 0; i < n; i++) {
    struct shard *sh = m->shards[i];
    if (sh != NULL && (all_gens || sh->gen == m->gen)) shard_free(sh, m->gen, all_gens);
  }
  smap_free_shell(m);
}

void smap_free_shell(struct smap *m) {
  if (m == NULL) return;
  free(m->shards);
  free(m);
}

void retire_add(struct retire *r, void *p, int type) {
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    r->items = xrealloc(r->items, r->cap * sizeof *r->items);
  }
  r->items[r->n++] = (struct retire_item){.p = p, .type = type};
}

void retire_free(struct retire *r) {
  for (size_t i = 0; i < r->n; i++) {
    struct retire_item *it = &r->items[i];
    switch (it->type) {
    case RETIRE_SHARD: free(it->p); break; /* its records live on elsewhere */
    case RETIRE_REC: model_free(it->p); break;
    case RETIRE_SHELL: smap_free_shell(it->p); break;
    case RETIRE_MAP_ALL: smap_destroy(it->p, 1); break;
    case RETIRE_MEM: free(it->p); break;
    default: assert(0);
    }
  }
  r->n = 0;
}
