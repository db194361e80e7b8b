/*
 * smap.c - sharded copy-on-write record map (see smap.h for the model).
 *
 * Slots carry the uthash handle, so one record can sit in the tables of
 * several published maps at once: each map version has its own slots, the
 * records are shared. Keys are not copied: a slot's key points into its
 * record, which lives at least as long as the slot.
 */
#include "smap.h"

#include <assert.h>
#include <string.h>

#undef uthash_fatal
#define uthash_fatal(msg) abort()
#include <uthash.h>

#include "xalloc.h"

struct slot {
  UT_hash_handle hh;
  struct cat_hdr *val;
};

struct shard {
  struct slot *head;
  uint64_t gen;
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

struct cat_hdr *smap_get(const struct smap *m, const uint8_t *key, size_t len, uint32_t hash) {
  const struct shard *sh = m->shards[shard_of(m, hash)];
  struct slot *s = NULL;
  if (sh == NULL) return NULL;
  HASH_FIND_BYHASHVALUE(hh, sh->head, key, len, hash, s);
  return s ? s->val : NULL;
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

static void slot_add(struct shard *sh, struct cat_hdr *val, uint32_t hash) {
  struct slot *s = xmalloc(sizeof *s);
  s->val = val;
  HASH_ADD_KEYPTR_BYHASHVALUE(hh, sh->head, val->key, val->keylen, hash, s);
}

/* Returns shard i of m as a private (gen-owned) shard, copying a shared one
 * and retiring the original. */
static struct shard *shard_private(struct smap *m, size_t i, struct retire *r) {
  struct shard *old = m->shards[i];
  if (old != NULL && old->gen == m->gen) return old;
  struct shard *sh = xcalloc(1, sizeof *sh);
  sh->gen = m->gen;
  if (old != NULL) {
    for (struct slot *s = old->head; s != NULL; s = s->hh.next)
      slot_add(sh, s->val, s->hh.hashv);
    retire_add(r, old, RETIRE_SHARD);
  }
  m->shards[i] = sh;
  return sh;
}

void smap_put(struct smap *m, struct cat_hdr *rec, uint32_t hash, struct cat_hdr **old,
              struct retire *r) {
  struct shard *sh = shard_private(m, shard_of(m, hash), r);
  struct slot *s = NULL;
  HASH_FIND_BYHASHVALUE(hh, sh->head, rec->key, rec->keylen, hash, s);
  *old = s ? s->val : NULL;
  if (s != NULL) {
    /* Same key bytes, so the table need not change; repoint the key. */
    s->val = rec;
    s->hh.key = rec->key;
    return;
  }
  slot_add(sh, rec, hash);
}

void smap_del(struct smap *m, const uint8_t *key, size_t len, uint32_t hash, struct cat_hdr **old,
              struct retire *r) {
  *old = NULL;
  if (smap_get(m, key, len, hash) == NULL) return;
  struct shard *sh = shard_private(m, shard_of(m, hash), r);
  struct slot *s = NULL;
  HASH_FIND_BYHASHVALUE(hh, sh->head, key, len, hash, s);
  assert(s != NULL);
  *old = s->val;
  HASH_DELETE(hh, sh->head, s);
  free(s);
}

void smap_foreach(const struct smap *m, void (*fn)(const struct cat_hdr *, void *), void *arg) {
  size_t n = (size_t)1 << m->bits;
  for (size_t i = 0; i < n; i++) {
    if (m->shards[i] == NULL) continue;
    for (struct slot *s = m->shards[i]->head; s != NULL; s = s->hh.next)
      fn(s->val, arg);
  }
}

/* Frees a shard's table and slots. Records are freed too when `all` is set,
 * or when they were built by owner_gen (store generations start at 1, so
 * owner_gen 0 frees no record). */
static void shard_free(struct shard *sh, uint64_t owner_gen, int all) {
  struct slot *first = sh->head, *next;
  struct slot *tmp = sh->head;
  HASH_CLEAR(hh, tmp); /* frees the table only; slots keep their links */
  for (struct slot *s = first; s != NULL; s = next) {
    next = s->hh.next;
    /* owner_gen 0 (a retired shard): its records live on; don't touch them
     * (reading their gen would be a cache miss per record for nothing). */
    if (all || (owner_gen != 0 && s->val->gen == owner_gen)) model_free(s->val);
    free(s);
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
    case RETIRE_SHARD: shard_free(it->p, 0, 0); break; /* records live on */
    case RETIRE_REC: model_free(it->p); break;
    case RETIRE_MAP: smap_free_shell(it->p); break;
    default: assert(0);
    }
  }
  r->n = 0;
}
