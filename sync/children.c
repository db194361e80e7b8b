/*
 * children.c - the warm load's child rows, indexed by parent id text (see
 * children.h).
 *
 * Three kinds of memory, none of it from malloc's arena for anything big:
 * kept rows go to CHUNK_BYTES chunks, parents and children to blocks of
 * NODE_BLOCK nodes, the hash table to one power-of-two array; all three
 * are mmap'd directly, so a load's few hundred MB of temporary children
 * neither grow the heap the records live in page by page nor stay in it
 * afterwards (children_clear() unmaps them). Only the small gather vectors
 * handed to children_get()'s caller are malloc'd, and reused.
 *
 * The hash table holds 8 bytes per slot (a hash tag and a parent's node
 * index), so that it mostly stays in cache: most lookups are for parents
 * without children (three in four variants have no image) and end there.
 * A parent's children of one kind form a list threaded through the nodes
 * by index, newest first; children_get() fills its vector from the back so
 * the caller sees them in the order they were added.
 */
#include "children.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "xalloc.h"

/* Under AddressSanitizer kept rows get poisoned gaps between them, so a
 * read past a row's NUL is reported as it would be for malloc'd rows. */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CHILDREN_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CHILDREN_ASAN 1
#endif
#ifdef CHILDREN_ASAN
#include <sanitizer/asan_interface.h>
#define REDZONE 16
#define GRANULE 8 /* ASan's shadow granule: rows start on one */
#else
#define ASAN_POISON_MEMORY_REGION(a, n)   ((void)(a), (void)(n))
#define ASAN_UNPOISON_MEMORY_REGION(a, n) ((void)(a), (void)(n))
#define REDZONE                           0
#define GRANULE                           1
#endif

#define HUGE_PAGE   ((size_t)2 << 20)
#define CHUNK_BYTES ((size_t)4 << 20)
#define NODE_BLOCK  ((size_t)1 << 18) /* 10 MiB of 40-byte nodes: whole huge pages */
#define NO_NODE     UINT32_MAX
#define MIN_SLOTS   ((size_t)1 << 12)
#define FOLD64      0x2020202020202020ull /* ASCII lower-casing of hex digits, '-' unchanged */
#define FOLD32      0x20202020u

/* A span of kept rows; the header sits at the start of its own mapping. */
struct chunk {
  struct chunk *next;
  size_t size, used;
};

/* A child (an image, or with im.id only a linked entity's id), or a
 * parent: its id text (36 bytes, borrowed from a kept row) and the head
 * and length of its list of each kind. */
union node {
  struct {
    struct image_fields im;
    uint32_t next;
  } kid;
  struct {
    const char *key;
    uint32_t head[CHILDREN_KINDS], n[CHILDREN_KINDS];
  } parent;
};

/* A hash table slot: 0 (empty), or the high half of the key's hash (most
 * mismatches need not read the key) above the parent's node index + 1. */
typedef uint64_t slot_t;

struct children {
  struct chunk *chunks;
  union node **blocks;
  size_t nblocks, capblocks, nnodes;
  slot_t *slots;
  size_t nslots, used; /* nslots is 0 or a power of two */
  struct image_fields *ims;
  const char **ids[CHILDREN_KINDS];
  size_t capims, capids[CHILDREN_KINDS];
};

/* The size big_alloc(n) really maps: regions of a huge page or more are
 * whole huge pages. */
static size_t big_size(size_t n) {
  return n >= HUGE_PAGE ? (n + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1) : n;
}

/* Maps n bytes of zeroed memory; aborts when the system has none, as
 * xmalloc() does. Regions of a huge page or more are aligned to one and
 * asked to be backed by transparent huge pages: the index is written once
 * and read in random order, and with 4 KiB pages a load spent more time in
 * page faults and TLB misses on it than in the index's own code. */
static void *big_alloc(size_t n) {
  size_t size = big_size(n), extra = size >= HUGE_PAGE ? HUGE_PAGE : 0;
  char *p = mmap(NULL, size + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "catalogd: out of memory (mmap %zu bytes)\n", size + extra);
    abort();
  }
  if (extra == 0) return p;
  char *at = (char *)(((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
  if (at > p) munmap(p, (size_t)(at - p));
  if (at + size < p + size + extra) munmap(at + size, (size_t)(p + size + extra - (at + size)));
  (void)madvise(at, size, MADV_HUGEPAGE); /* advice only: 4 KiB pages still work */
  return at;
}

/* Unmaps what big_alloc(n) gave; NULL is a no-op. */
static void big_free(void *p, size_t n) {
  if (p == NULL) return;
  ASAN_UNPOISON_MEMORY_REGION(p, big_size(n)); /* the next mapping there starts clean */
  munmap(p, big_size(n));
}

/* Hash of 36 bytes of UUID text, the same for any letter case. */
static uint64_t key_hash(const char *k) {
  uint64_t h = 0x9e3779b97f4a7c15ull, w;
  uint32_t t;
  for (int i = 0; i < 32; i += 8) {
    memcpy(&w, k + i, 8);
    h = (h ^ (w | FOLD64)) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  memcpy(&t, k + 32, 4);
  h = (h ^ (t | FOLD32)) * 0xc4ceb9fe1a85ec53ull;
  return h ^ (h >> 29);
}

/* Whether two 36-byte UUID texts are equal ignoring letter case. */
static bool key_eq(const char *a, const char *b) {
  uint64_t x, y;
  uint32_t s, t;
  for (int i = 0; i < 32; i += 8) {
    memcpy(&x, a + i, 8), memcpy(&y, b + i, 8);
    if ((x | FOLD64) != (y | FOLD64)) return false;
  }
  memcpy(&s, a + 32, 4), memcpy(&t, b + 32, 4);
  return (s | FOLD32) == (t | FOLD32);
}

struct children *children_new(void) {
  return xcalloc(1, sizeof(struct children));
}

char *children_keep(struct children *c, const char *row, size_t len) {
  struct chunk *k = c->chunks;
  size_t need = len + 1 + REDZONE;
  if (k != NULL) k->used = (k->used + GRANULE - 1) & ~(size_t)(GRANULE - 1);
  if (k == NULL || k->size - k->used < need) {
    size_t size =
        need + sizeof *k > CHUNK_BYTES ? (need + sizeof *k + 7) & ~(size_t)7 : CHUNK_BYTES;
    k = big_alloc(size);
    *k = (struct chunk){.next = c->chunks, .size = size, .used = sizeof *k};
    c->chunks = k;
    ASAN_POISON_MEMORY_REGION((char *)k + k->used, size - k->used);
  }
  char *at = (char *)k + k->used;
  ASAN_UNPOISON_MEMORY_REGION(at, len + 1);
  memcpy(at, row, len);
  at[len] = '\0';
  k->used += need;
  return at;
}

/* The node at index i (< nnodes). */
static union node *node_at(struct children *c, uint32_t i) {
  assert(i < c->nnodes);
  return &c->blocks[i / NODE_BLOCK][i % NODE_BLOCK];
}

/* A new node's index; its content is the caller's to set. */
static uint32_t node_new(struct children *c) {
  if (c->nnodes == c->nblocks * NODE_BLOCK) {
    if (c->nblocks == c->capblocks) {
      c->capblocks = c->capblocks ? 2 * c->capblocks : 16;
      c->blocks = xrealloc(c->blocks, c->capblocks * sizeof *c->blocks);
    }
    c->blocks[c->nblocks++] = big_alloc(NODE_BLOCK * sizeof(union node));
  }
  if (c->nnodes >= NO_NODE) {
    fprintf(stderr, "catalogd: more than %u child rows\n", NO_NODE - 1);
    abort();
  }
  return (uint32_t)c->nnodes++;
}

/* The parent whose key is key (hash h): the existing one, or a new one
 * without children when insert is set (the table has room: see grow());
 * NULL if absent. */
static union node *parent_find(struct children *c, const char *key, uint64_t h, bool insert) {
  if (c->nslots == 0) return NULL;
  uint64_t tag = h & 0xffffffff00000000ull;
  for (size_t i = h & (c->nslots - 1);; i = (i + 1) & (c->nslots - 1)) {
    slot_t s = c->slots[i];
    if (s == 0) {
      if (!insert) return NULL;
      uint32_t at = node_new(c);
      union node *p = node_at(c, at);
      p->parent.key = key;
      for (int k = 0; k < CHILDREN_KINDS; k++)
        p->parent.head[k] = NO_NODE, p->parent.n[k] = 0;
      c->slots[i] = tag | ((uint64_t)at + 1);
      c->used++;
      return p;
    }
    if ((s & 0xffffffff00000000ull) == tag) {
      union node *p = node_at(c, (uint32_t)(s - 1));
      if (key_eq(p->parent.key, key)) return p;
    }
  }
}

/* Makes room for one more parent: keeps the table at most half full. */
static void grow(struct children *c) {
  if (2 * (c->used + 1) <= c->nslots) return;
  slot_t *old = c->slots;
  size_t n = c->nslots;
  c->nslots = n ? 2 * n : MIN_SLOTS;
  c->slots = big_alloc(c->nslots * sizeof *c->slots);
  for (size_t i = 0; i < n; i++) {
    if (old[i] == 0) continue;
    uint64_t h = key_hash(node_at(c, (uint32_t)(old[i] - 1))->parent.key);
    size_t j = h & (c->nslots - 1);
    while (c->slots[j] != 0)
      j = (j + 1) & (c->nslots - 1);
    c->slots[j] = old[i];
  }
  big_free(old, n * sizeof *old);
}

int children_add(struct children *c, enum children_kind kind, const char *parent_id,
                 const struct image_fields *im, const char *id) {
  uint8_t bin[16];
  assert((unsigned)kind < CHILDREN_KINDS);
  assert(kind != CHILDREN_IMAGES || im != NULL);
  if (parent_id == NULL || uuid_parse(parent_id, strlen(parent_id), bin) != 0) return -1;
  grow(c);
  union node *p = parent_find(c, parent_id, key_hash(parent_id), true);
  uint32_t i = node_new(c); /* may move no node: blocks stay where they are */
  union node *n = node_at(c, i);
  n->kid.im = kind == CHILDREN_IMAGES ? *im : (struct image_fields){.id = id};
  n->kid.next = p->parent.head[kind];
  p->parent.head[kind] = i;
  p->parent.n[kind]++;
  return 0;
}

/* The next index of a parent's list of kind, filled from the back: the
 * lists are newest first, callers see children in the order added. */
static uint32_t list_next(struct children *c, uint32_t i, size_t *k) {
  assert(*k > 0);
  (*k)--;
  return node_at(c, i)->kid.next;
}

/* Copies s's images into the reused image vector and points out at it. */
static void gather_images(struct children *c, const union node *p, struct children_of *out) {
  size_t n = p->parent.n[CHILDREN_IMAGES], k = n;
  if (n > c->capims) {
    c->capims = n > 2 * c->capims ? n : 2 * c->capims;
    c->ims = xrealloc(c->ims, c->capims * sizeof *c->ims);
  }
  for (uint32_t i = p->parent.head[CHILDREN_IMAGES]; i != NO_NODE;) {
    const union node *nd = node_at(c, i);
    i = list_next(c, i, &k);
    c->ims[k] = nd->kid.im;
  }
  assert(k == 0);
  out->images = c->ims, out->n_images = n;
}

/* Copies s's ids of kind into that kind's reused vector; points out at it. */
static void gather_ids(struct children *c, const union node *p, int kind, struct children_of *out) {
  size_t n = p->parent.n[kind], k = n;
  if (n > c->capids[kind]) {
    c->capids[kind] = n > 2 * c->capids[kind] ? n : 2 * c->capids[kind];
    c->ids[kind] = xrealloc(c->ids[kind], c->capids[kind] * sizeof *c->ids[kind]);
  }
  for (uint32_t i = p->parent.head[kind]; i != NO_NODE;) {
    const union node *nd = node_at(c, i);
    i = list_next(c, i, &k);
    c->ids[kind][k] = nd->kid.im.id;
  }
  assert(k == 0);
  out->ids[kind] = c->ids[kind], out->n_ids[kind] = n;
}

void children_get(struct children *c, const char *parent_id, struct children_of *out) {
  *out = (struct children_of){0};
  /* Only 36-byte text can equal a key; the builder judges the id itself. */
  if (parent_id == NULL || strnlen(parent_id, UUID_STR_LEN + 1) != UUID_STR_LEN) return;
  const union node *p = parent_find(c, parent_id, key_hash(parent_id), false);
  if (p == NULL) return;
  if (p->parent.n[CHILDREN_IMAGES] > 0) gather_images(c, p, out);
  for (int k = CHILDREN_TAGS; k < CHILDREN_KINDS; k++)
    if (p->parent.n[k] > 0) gather_ids(c, p, k, out);
}

void children_clear(struct children *c) {
  while (c->chunks != NULL) {
    struct chunk *k = c->chunks;
    c->chunks = k->next;
    big_free(k, k->size);
  }
  for (size_t i = 0; i < c->nblocks; i++)
    big_free(c->blocks[i], NODE_BLOCK * sizeof(union node));
  big_free(c->slots, c->nslots * sizeof *c->slots);
  c->nblocks = c->nnodes = c->nslots = c->used = 0;
  c->slots = NULL;
}

void children_free(struct children *c) {
  if (c == NULL) return;
  children_clear(c);
  free(c->blocks);
  free(c->ims);
  for (int k = 0; k < CHILDREN_KINDS; k++)
    free(c->ids[k]);
  free(c);
}
