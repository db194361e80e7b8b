/*
 * store.c - snapshot publication (RCU) and the versioned apply rules.
 *
 * A snapshot is a small struct of one smap per record kind. A transaction
 * builds the next snapshot by forking only the maps it writes to; commit
 * swaps the store's pointer, waits one grace period, then frees what the new
 * snapshot no longer references: the old snapshot struct, the map shells
 * that were forked, and the shards and records that were replaced (the
 * retire list). Everything else is shared by the two versions.
 *
 * Pins (store_pin): a long reader outside any read section. While a pin is
 * held, what a commit would free after its grace period goes to the store's
 * deferred list instead; the last unpin frees it. Conservative (a commit's
 * retire list may hold things the pinned snapshot never saw) and simple:
 * nothing the pinned snapshot reaches can be freed, whichever snapshot of
 * the lineage was pinned. The pin mutex is held only to count and to move
 * list items, never across a grace period or a free of the deferred list.
 */
#include "store.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "byteorder.h"
#include "clock.h"
#include "smap.h"
#include "prefault.h"
#include "xalloc.h"

/* Shard counts: big tables get many small shards so that a one-entity
 * change copies a few hundred slots at most. */
static const unsigned kind_bits[CAT_KIND_COUNT] = {
    [CAT_VARIANT] = 12, [CAT_PRODUCT] = 11,   [CAT_BRAND] = 6,
    [CAT_TAG] = 6,      [CAT_COLLECTION] = 6, [CAT_PRODUCT_VARIANTS] = 11,
};

struct snapshot {
  uint64_t version;
  int64_t built_ns;
  size_t live[CAT_KIND_COUNT]; /* records that are not tombstones */
  struct smap *maps[CAT_KIND_COUNT];
  /* Change-feed positions covered; may be shared with the snapshot before
   * or after (a commit that sets none keeps its predecessor's array): the
   * one freeing a snapshot frees pos only if its successor does not hold it. */
  struct snap_pos *pos;
  size_t npos;
};

struct store {
  struct snapshot *current; /* RCU-published */
  uint64_t gen;             /* writer only */
  int rebuild;              /* writer only: store_begin starts empty */
  pthread_mutex_t pin_mu;   /* guards pins and deferred */
  int pins;                 /* snapshots pinned now (any of them) */
  struct retire deferred;   /* freed when pins drops to 0 */
  /* Monotonic ns of the last moment the snapshot was caught up, 0 while it
   * is: one atomic, so readers never see half an update. */
  _Atomic int64_t stale_since;
  void (*on_publish)(void *, const struct store_changes *); /* set before the writer starts */
  void *on_publish_arg;
  struct prefault *pf; /* writer only: a bulk build's (store_set_prefault), or NULL */
};

struct store_txn {
  struct store *st;
  struct snapshot *base; /* current at begin; NULL before the first publish */
  struct snapshot next;  /* being built; copied out at commit */
  uint64_t gen;
  size_t changes;
  int fresh; /* a rebuild: started empty, shares nothing with base */
  struct retire retired;
  struct snap_pos *pos; /* set by store_txn_set_positions (owned), else NULL */
  size_t npos;
  /* What the publish hook is told: the change keys of the entities written
   * (at most STORE_CHANGES_MAX, allocated on the first write), or all. */
  uint64_t *changed;
  size_t nchanged;
  bool changed_all;
  bool builder_notes; /* store_txn_note_builder: puts do not note to the prefaulter */
};

struct store *store_new(void) {
  struct store *st = xcalloc(1, sizeof(struct store));
  pthread_mutex_init(&st->pin_mu, NULL);
  /* Nothing is published yet: behind since now. */
  atomic_store_explicit(&st->stale_since, clock_mono_ns(), memory_order_relaxed);
  return st;
}

int64_t store_staleness_ns(const struct store *st, int64_t now_ns) {
  int64_t since = atomic_load_explicit(&st->stale_since, memory_order_relaxed);
  return since == 0 || now_ns < since ? 0 : now_ns - since;
}

void store_set_stale_since(struct store *st, int64_t since_ns) {
  atomic_store_explicit(&st->stale_since, since_ns, memory_order_relaxed);
}

void store_on_publish(struct store *st, void (*fn)(void *arg, const struct store_changes *changes),
                      void *arg) {
  st->on_publish = fn, st->on_publish_arg = arg;
}

/* The change key of a record key of kind whose smap hash is hash. */
static uint64_t change_key(enum cat_kind kind, uint32_t hash) {
  return (uint64_t)(kind + 1) << 32 | hash;
}

uint64_t store_change_key(enum cat_kind kind, const uint8_t id[16], const char *org,
                          size_t orglen) {
  uint8_t key[16 + CAT_ORG_MAX];
  size_t len = model_key(key, id, org, orglen);
  return len == 0 ? 0 : change_key(kind, smap_hash(key, len));
}

/* Notes that t wrote the entity of kind whose key hashes to hash, for the
 * publish hook. Past STORE_CHANGES_MAX the list gives way to "all": a big
 * batch (a warm load, a catch-up) costs no memory here. */
static void txn_note_change(struct store_txn *t, enum cat_kind kind, uint32_t hash) {
  if (t->changed_all) return;
  if (t->nchanged == STORE_CHANGES_MAX) {
    t->changed_all = true;
    return;
  }
  if (t->changed == NULL) t->changed = xmalloc(STORE_CHANGES_MAX * sizeof *t->changed);
  t->changed[t->nchanged++] = change_key(kind, hash);
}

void store_destroy(struct store *st) {
  if (st == NULL) return;
  assert(st->pins == 0);
  retire_free(&st->deferred);
  free(st->deferred.items);
  pthread_mutex_destroy(&st->pin_mu);
  struct snapshot *s = st->current;
  if (s != NULL) {
    for (int k = 0; k < CAT_KIND_COUNT; k++)
      smap_destroy(s->maps[k], 1);
    free(s->pos);
    free(s);
  }
  free(st);
}

#if defined(__SANITIZE_THREAD__)
char store__tsan_grace;
/* rcu_dereference is a volatile load TSan would flag against the xchg. */
const struct snapshot *store_current(struct store *st) {
  return __atomic_load_n(&st->current, __ATOMIC_ACQUIRE);
}
#define TSAN_GRACE_DONE() __tsan_acquire(&store__tsan_grace)
/* liburcu's xchg is inline assembly, invisible to TSan: use the builtin. */
#define PUBLISH(p, v) ((void)__atomic_exchange_n((p), (v), __ATOMIC_SEQ_CST))
#else
#define PUBLISH(p, v)     rcu_xchg_pointer((p), (v))
const struct snapshot *store_current(struct store *st) { return rcu_dereference(st->current); }
#define TSAN_GRACE_DONE() ((void)0)
#endif

const struct cat_hdr *snap_get(const struct snapshot *s, enum cat_kind kind, const uint8_t id[16],
                               const char *org, size_t orglen) {
  uint8_t key[16 + CAT_ORG_MAX];
  size_t len = model_key(key, id, org, orglen);
  if (len == 0) return NULL;
  const struct cat_hdr *h = smap_get(s->maps[kind], key, len, smap_hash(key, len));
  return h && !h->deleted ? h : NULL;
}

const struct cat_hdr *snap_get_any(const struct snapshot *s, enum cat_kind kind,
                                   const uint8_t id[16], const char *org, size_t orglen) {
  uint8_t key[16 + CAT_ORG_MAX];
  size_t len = model_key(key, id, org, orglen);
  return len == 0 ? NULL : smap_get(s->maps[kind], key, len, smap_hash(key, len));
}

const struct cat_hdr *snap_sample(const struct snapshot *s, enum cat_kind kind, uint64_t r) {
  return smap_sample(s->maps[kind], r);
}

void snap_get_many(const struct snapshot *s, enum cat_kind kind, const uint8_t (*ids)[16], size_t n,
                   const char *org, size_t orglen, const struct cat_hdr **out) {
  uint8_t keys[SMAP_GET_MANY_MAX][16 + CAT_ORG_MAX];
  const uint8_t *kp[SMAP_GET_MANY_MAX];
  uint32_t lens[SMAP_GET_MANY_MAX], hashes[SMAP_GET_MANY_MAX];
  struct cat_hdr *got[SMAP_GET_MANY_MAX];
  if (orglen == 0 || orglen > CAT_ORG_MAX) {
    memset(out, 0, n * sizeof *out);
    return;
  }
  for (size_t at = 0; at < n; at += SMAP_GET_MANY_MAX) {
    size_t g = n - at < SMAP_GET_MANY_MAX ? n - at : SMAP_GET_MANY_MAX;
    for (size_t i = 0; i < g; i++) {
      lens[i] = (uint32_t)model_key(keys[i], ids[at + i], org, orglen);
      kp[i] = keys[i];
      hashes[i] = smap_hash(keys[i], lens[i]);
    }
    smap_get_many(s->maps[kind], g, kp, lens, hashes, got);
    for (size_t i = 0; i < g; i++)
      out[at + i] = got[i] && !got[i]->deleted ? got[i] : NULL;
  }
}

int64_t snap_held_version(const struct snapshot *s, enum cat_kind kind, const uint8_t id[16],
                          const char *org, size_t orglen) {
  uint8_t key[16 + CAT_ORG_MAX];
  size_t len = model_key(key, id, org, orglen);
  if (len == 0) return 0;
  const struct cat_hdr *h = smap_get(s->maps[kind], key, len, smap_hash(key, len));
  return h ? h->version : 0;
}

size_t snap_positions(const struct snapshot *s, const struct snap_pos **out) {
  *out = s->pos;
  return s->npos;
}

int64_t snap_position(const struct snapshot *s, int32_t partition) {
  for (size_t i = 0; i < s->npos; i++)
    if (s->pos[i].partition == partition) return s->pos[i].next;
  return -1;
}

uint64_t snap_version(const struct snapshot *s) { return s->version; }
int64_t snap_built_ns(const struct snapshot *s) { return s->built_ns; }
size_t snap_count(const struct snapshot *s, enum cat_kind kind) { return s->live[kind]; }

struct foreach_live {
  void (*fn)(const struct cat_hdr *, void *);
  void *arg;
};

static void call_if_live(const struct cat_hdr *h, void *arg) {
  struct foreach_live *f = arg;
  if (!h->deleted) f->fn(h, f->arg);
}

void snap_foreach(const struct snapshot *s, enum cat_kind kind,
                  void (*fn)(const struct cat_hdr *, void *), void *arg) {
  struct foreach_live f = {fn, arg};
  smap_foreach(s->maps[kind], call_if_live, &f);
}

void snap_foreach_all(const struct snapshot *s, enum cat_kind kind,
                      void (*fn)(const struct cat_hdr *, void *), void *arg) {
  smap_foreach(s->maps[kind], fn, arg);
}

/* ---- Pins ---- */

const struct snapshot *store_pin(struct store *st) {
  /* Inside a read section, the snapshot read cannot be freed before the pin
   * is counted: a commit that replaced it waits for this section to end
   * before it looks at the count. */
  store_read_lock();
  const struct snapshot *s = store_current(st);
  if (s != NULL) {
    pthread_mutex_lock(&st->pin_mu);
    st->pins++;
    pthread_mutex_unlock(&st->pin_mu);
  }
  store_read_unlock();
  return s;
}

void store_unpin(struct store *st, const struct snapshot *s) {
  if (s == NULL) return;
  struct retire drop = {0};
  pthread_mutex_lock(&st->pin_mu);
  assert(st->pins > 0);
  if (--st->pins == 0) {
    drop = st->deferred; /* freed below, outside the mutex */
    st->deferred = (struct retire){0};
  }
  pthread_mutex_unlock(&st->pin_mu);
  retire_free(&drop);
  free(drop.items);
}

int store_pins(struct store *st) {
  pthread_mutex_lock(&st->pin_mu);
  int n = st->pins;
  pthread_mutex_unlock(&st->pin_mu);
  return n;
}

size_t store_deferred(struct store *st) {
  pthread_mutex_lock(&st->pin_mu);
  size_t n = st->deferred.n;
  pthread_mutex_unlock(&st->pin_mu);
  return n;
}

/* After a commit's grace period: frees r's items, or moves them to the
 * deferred list while a pin is held (a pinned snapshot may reach them). */
static void free_or_defer(struct store *st, struct retire *r) {
  pthread_mutex_lock(&st->pin_mu);
  if (st->pins > 0) {
    for (size_t i = 0; i < r->n; i++)
      retire_add(&st->deferred, r->items[i].p, r->items[i].type);
    r->n = 0;
  }
  pthread_mutex_unlock(&st->pin_mu);
  retire_free(r); /* nothing left if deferred */
}

struct store_txn *store_begin(struct store *st) {
  struct store_txn *t = xcalloc(1, sizeof *t);
  t->st = st;
  t->gen = ++st->gen;
  t->base = st->current; /* the writer is the only one who changes it */
  t->fresh = st->rebuild && t->base != NULL;
  if (t->base != NULL && !t->fresh) {
    t->next = *t->base;
  } else {
    for (int k = 0; k < CAT_KIND_COUNT; k++)
      t->next.maps[k] = smap_new(kind_bits[k], t->gen);
  }
  return t;
}

void store_rebuild_next(struct store *st) { st->rebuild = 1; }

int store_rebuilding(const struct store *st) { return st->rebuild; }

/* The map of kind, forked for this transaction on first use. */
static struct smap *txn_map(struct store_txn *t, enum cat_kind kind) {
  struct smap *m = t->next.maps[kind];
  if (smap_gen(m) != t->gen) t->next.maps[kind] = m = smap_fork(m, t->gen);
  return m;
}

/* Disposes of a record the transaction replaced: freed now if this
 * transaction built it (no reader has seen it), else retired. */
static void txn_drop(struct store_txn *t, struct cat_hdr *old) {
  if (old == NULL) return;
  if (old->gen == t->gen)
    model_free(old);
  else
    retire_add(&t->retired, old, RETIRE_REC);
}

static const struct cat_hdr *txn_lookup(struct store_txn *t, enum cat_kind kind, const uint8_t *key,
                                        size_t len, uint32_t *hash) {
  *hash = smap_hash(key, len);
  return smap_get(t->next.maps[kind], key, len, *hash);
}

const struct cat_hdr *store_txn_get(struct store_txn *t, enum cat_kind kind, const uint8_t id[16],
                                    const char *org, size_t orglen) {
  uint8_t key[16 + CAT_ORG_MAX];
  uint32_t hash;
  size_t len = model_key(key, id, org, orglen);
  return len ? txn_lookup(t, kind, key, len, &hash) : NULL;
}

/* ---- The product -> variants index ---- */

/* memcmp(a, b, 16)'s sign, inline: a build of 1M variants makes ~4M of
 * these comparisons, and the library call was most of their cost. */
static int id_cmp(const uint8_t a[16], const uint8_t b[16]) {
  uint64_t x = load_be64(a), y = load_be64(b);
  if (x == y) x = load_be64(a + 8), y = load_be64(b + 8);
  return (x > y) - (x < y);
}

/* Position of id in the sorted list, or where it would go. */
static uint32_t idlist_find(const struct cat_idlist *l, const uint8_t id[16], int *found) {
  uint32_t lo = 0, hi = l->n;
  while (lo < hi) {
    uint32_t mid = lo + (hi - lo) / 2;
    int c = id_cmp(l->ids[mid], id);
    if (c == 0) {
      *found = 1;
      return mid;
    }
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  *found = 0;
  return lo;
}

/* A private copy of list (or a new one for product/org) with room for one
 * more id, installed in the index map. */
static struct cat_idlist *idlist_private(struct store_txn *t, const struct cat_idlist *cur,
                                         const uint8_t pid[16], const char *org, size_t orglen,
                                         uint32_t hash) {
  struct cat_idlist *l = (struct cat_idlist *)cur;
  if (l != NULL && l->h.gen == t->gen) {
    if (l->n == l->cap) {
      l->cap *= 2;
      l->ids = xrealloc(l->ids, l->cap * sizeof *l->ids);
    }
    return l;
  }
  uint32_t n = cur ? cur->n : 0;
  l = model_idlist_new(pid, org, orglen, n + 4);
  if (l == NULL) abort(); /* org was validated with the variant */
  l->h.gen = t->gen;
  if (cur) memcpy(l->ids, cur->ids, n * sizeof *l->ids);
  l->n = n;
  struct cat_hdr *old;
  smap_put(txn_map(t, CAT_PRODUCT_VARIANTS), &l->h, hash, &old, &t->retired);
  txn_drop(t, old);
  return l;
}

/* Adds (add != 0) or removes variant vid under product pid of org. */
static void index_update(struct store_txn *t, const uint8_t pid[16], const char *org,
                         const uint8_t vid[16], int add) {
  uint8_t key[16 + CAT_ORG_MAX];
  uint32_t hash;
  size_t orglen = strlen(org), len = model_key(key, pid, org, orglen);
  assert(len != 0);
  const struct cat_idlist *cur =
      (const struct cat_idlist *)txn_lookup(t, CAT_PRODUCT_VARIANTS, key, len, &hash);
  int found = 0;
  uint32_t at = cur ? idlist_find(cur, vid, &found) : 0;
  if ((add != 0) == (found != 0)) return;
  if (!add && cur->n == 1) {
    struct cat_hdr *old;
    smap_del(txn_map(t, CAT_PRODUCT_VARIANTS), key, len, hash, &old, &t->retired);
    txn_drop(t, old);
    return;
  }
  struct cat_idlist *l = idlist_private(t, cur, pid, org, orglen, hash);
  if (add) {
    memmove(l->ids + at + 1, l->ids + at, (l->n - at) * sizeof *l->ids);
    memcpy(l->ids[at], vid, 16);
    l->n++;
  } else {
    memmove(l->ids + at, l->ids + at + 1, (l->n - at - 1) * sizeof *l->ids);
    l->n--;
  }
}

/* Keeps the index right when variant old (may be NULL/tombstone) becomes new
 * (may be a tombstone). */
static void index_variant(struct store_txn *t, const struct cat_hdr *old,
                          const struct cat_hdr *nw) {
  const struct cat_variant *o = old && !old->deleted ? (const struct cat_variant *)old : NULL;
  const struct cat_variant *n = !nw->deleted ? (const struct cat_variant *)nw : NULL;
  if (o && n && memcmp(o->product_id, n->product_id, 16) == 0) return;
  if (o) index_update(t, o->product_id, o->h.org, o->h.key, 0);
  if (n) index_update(t, n->product_id, n->h.org, n->h.key, 1);
}

/* ---- Apply ---- */

/* Installs rec (version already checked) and keeps counts and index. */
static void txn_install(struct store_txn *t, struct cat_hdr *rec, uint32_t hash) {
  enum cat_kind kind = rec->kind;
  struct cat_hdr *old;
  rec->gen = t->gen;
  if (t->st->pf != NULL && !t->builder_notes) /* a bulk build: its next records follow this one */
    prefault_note(t->st->pf, rec);
  smap_put(txn_map(t, kind), rec, hash, &old, &t->retired);
  if (old && !old->deleted) t->next.live[kind]--;
  if (!rec->deleted) t->next.live[kind]++;
  if (kind == CAT_VARIANT) index_variant(t, old, rec);
  txn_drop(t, old);
  txn_note_change(t, kind, hash);
  t->changes++;
}

/* Does rec replace cur (same key)? A newer version does. So does a live
 * record at the very version of an unversioned tombstone (see
 * store_delete_redelivered): that tombstone took the version it found, and
 * may have been a re-delivered delete of an older incarnation applied over
 * this one; the record that follows it in the log must then win again, or
 * the entity would be lost for good. */
static bool supersedes(const struct cat_hdr *rec, const struct cat_hdr *cur) {
  if (rec->version != cur->version) return rec->version > cur->version;
  return cur->deleted && cur->unversioned && !rec->deleted;
}

/* store_put with rec's key hash already computed. */
static int put_hashed(struct store_txn *t, struct cat_hdr *rec, uint32_t hash) {
  const struct cat_hdr *cur = smap_get(t->next.maps[rec->kind], rec->key, rec->keylen, hash);
  if (cur != NULL && !supersedes(rec, cur)) {
    model_free(rec);
    return STORE_STALE;
  }
  txn_install(t, rec, hash);
  return STORE_APPLIED;
}

int store_put(struct store_txn *t, struct cat_hdr *rec) {
  assert(rec->kind < CAT_ENTITY_KINDS);
  return put_hashed(t, rec, smap_hash(rec->key, rec->keylen));
}

void store_put_many(struct store_txn *t, struct cat_hdr *const recs[], size_t n, int rc[]) {
  uint32_t hash[STORE_PUT_MANY_MAX], ihash[STORE_PUT_MANY_MAX];
  assert(n <= STORE_PUT_MANY_MAX);
  const struct smap *idx = t->next.maps[CAT_PRODUCT_VARIANTS];
  for (size_t i = 0; i < n; i++) {
    const struct cat_hdr *h = recs[i];
    assert(h->kind < CAT_ENTITY_KINDS);
    hash[i] = smap_hash(h->key, h->keylen);
    smap_prefetch(t->next.maps[h->kind], hash[i], 0);
    if (h->kind == CAT_VARIANT && !h->deleted) { /* the product's id list, index_update's key */
      uint8_t key[16 + CAT_ORG_MAX];
      size_t len =
          model_key(key, ((const struct cat_variant *)h)->product_id, h->org, h->keylen - 16);
      ihash[i] = smap_hash(key, len);
      smap_prefetch(idx, ihash[i], 0);
    }
  }
  /* Each stage needs what the one before brought into the cache. */
  for (int stage = 1; stage <= 2; stage++)
    for (size_t i = 0; i < n; i++) {
      if (stage == 1) smap_prefetch(t->next.maps[recs[i]->kind], hash[i], 1);
      if (recs[i]->kind == CAT_VARIANT && !recs[i]->deleted) smap_prefetch(idx, ihash[i], stage);
    }
  for (size_t i = 0; i < n; i++)
    rc[i] = put_hashed(t, recs[i], hash[i]);
}

void store_txn_reserve(struct store_txn *t, enum cat_kind kind, size_t n) {
  assert(kind < CAT_ENTITY_KINDS);
  smap_reserve(txn_map(t, kind), n, &t->retired);
  if (kind == CAT_PRODUCT) smap_reserve(txn_map(t, CAT_PRODUCT_VARIANTS), n, &t->retired);
}

void store_txn_prefetch(struct store_txn *t, size_t n, const struct cat_hdr *const recs[]) {
  /* Grouped by map (the variant lists' is CAT_PRODUCT_VARIANTS). */
  uint32_t hashes[CAT_KIND_COUNT][STORE_PREFETCH_MAX];
  size_t count[CAT_KIND_COUNT] = {0};
  uint8_t key[16 + CAT_ORG_MAX];
  assert(n <= STORE_PREFETCH_MAX);
  for (size_t i = 0; i < n; i++) {
    const struct cat_hdr *h = recs[i];
    if (h == NULL || h->kind >= CAT_ENTITY_KINDS) continue;
    hashes[h->kind][count[h->kind]++] = smap_hash(h->key, h->keylen);
    if (h->kind != CAT_VARIANT || h->deleted) continue;
    const struct cat_variant *v = (const struct cat_variant *)h;
    size_t len = model_key(key, v->product_id, h->org, h->keylen - 16);
    if (len != 0) hashes[CAT_PRODUCT_VARIANTS][count[CAT_PRODUCT_VARIANTS]++] = smap_hash(key, len);
  }
  for (int k = 0; k < CAT_KIND_COUNT; k++)
    if (count[k] > 0) smap_prefetch_many(t->next.maps[k], count[k], hashes[k]);
}

/* store_delete and store_delete_redelivered: unversioned marks a tombstone
 * made by a versionless delete that may be a re-delivery. */
static int delete_at(struct store_txn *t, enum cat_kind kind, const uint8_t id[16], const char *org,
                     size_t orglen, int64_t version, bool unversioned) {
  uint8_t key[16 + CAT_ORG_MAX];
  uint32_t hash;
  assert(kind < CAT_ENTITY_KINDS);
  size_t len = model_key(key, id, org, orglen);
  if (len == 0) return -EINVAL;
  const struct cat_hdr *cur = txn_lookup(t, kind, key, len, &hash);
  if (version == 0) {
    if (cur == NULL || cur->deleted) return STORE_STALE; /* nothing to delete */
    version = cur->version;
  } else if (cur != NULL && cur->version >= version) {
    return STORE_STALE;
  }
  struct cat_hdr *tomb = model_tombstone_new(kind, id, org, orglen, version);
  if (tomb == NULL) abort(); /* only fails on a bad org, checked above */
  tomb->unversioned = unversioned;
  txn_install(t, tomb, hash);
  return STORE_APPLIED;
}

int store_delete(struct store_txn *t, enum cat_kind kind, const uint8_t id[16], const char *org,
                 size_t orglen, int64_t version) {
  return delete_at(t, kind, id, org, orglen, version, false);
}

int store_delete_redelivered(struct store_txn *t, enum cat_kind kind, const uint8_t id[16],
                             const char *org, size_t orglen) {
  return delete_at(t, kind, id, org, orglen, 0, true);
}

const struct snapshot *store_txn_view(const struct store_txn *t) { return &t->next; }

size_t store_txn_changes(const struct store_txn *t) { return t->changes; }

void store_txn_set_positions(struct store_txn *t, const struct snap_pos *p, size_t n) {
  free(t->pos);
  t->pos = n ? xmalloc(n * sizeof *p) : NULL;
  if (n) memcpy(t->pos, p, n * sizeof *p);
  t->npos = n;
  t->next.pos = NULL, t->next.npos = 0; /* set at commit */
}

/* Did t set positions other than base's? */
static bool positions_moved(const struct store_txn *t) {
  if (t->pos == NULL) return false; /* none set (or an empty set): base's are kept */
  if (t->base == NULL || t->base->pos == NULL || t->base->npos != t->npos) return true;
  return memcmp(t->base->pos, t->pos, t->npos * sizeof *t->pos) != 0;
}

size_t store_txn_live(const struct store_txn *t) {
  size_t n = 0;
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    n += t->next.live[k];
  return n;
}

uint64_t store_commit(struct store_txn *t) {
  struct store *st = t->st;
  struct snapshot *base = t->base;
  bool moved = positions_moved(t);
  if (base != NULL && t->changes == 0 && !t->fresh && !moved) {
    store_abort(t);
    return base->version;
  }
  struct snapshot *next = xmalloc(sizeof *next);
  *next = t->next;
  if (t->pos != NULL || t->npos > 0) {
    next->pos = t->pos, next->npos = t->npos; /* handed over */
    t->pos = NULL, t->npos = 0;
  } else {
    next->pos = base ? base->pos : NULL, next->npos = base ? base->npos : 0;
  }
  /* Only the positions moved: the same data, the same version. */
  bool same_data = base != NULL && t->changes == 0 && !t->fresh;
  next->version = base ? base->version + !same_data : 1;
  next->built_ns = same_data ? base->built_ns : clock_wall_ns();
  PUBLISH(&st->current, next);
  st->rebuild = 0; /* a rebuild (or a first publish) is complete */
  if (st->on_publish) {
    struct store_changes ch = {
        .keys = t->changed, .n = t->nchanged, .all = base == NULL || t->fresh || t->changed_all};
    st->on_publish(st->on_publish_arg, &ch);
  }
  synchronize_rcu();
  TSAN_GRACE_DONE();
  /* No reader holds base now: free what next does not share (a rebuild
   * shares nothing: all of base goes; its positions unless next kept
   * them), unless a pin still needs it. */
  struct retire *r = &t->retired;
  if (base != NULL) {
    if (base->pos != NULL && base->pos != next->pos) retire_add(r, base->pos, RETIRE_MEM);
    for (int k = 0; k < CAT_KIND_COUNT; k++)
      if (t->fresh)
        retire_add(r, base->maps[k], RETIRE_MAP_ALL);
      else if (next->maps[k] != base->maps[k])
        retire_add(r, base->maps[k], RETIRE_SHELL);
    retire_add(r, base, RETIRE_MEM);
  }
  free_or_defer(st, r);
  free(r->items);
  /* next is not leaked: PUBLISH stored it in st->current through
   * uatomic_xchg's inline asm, which the analyzer does not follow. */
  uint64_t v = next->version; // NOLINT(clang-analyzer-unix.Malloc): published above
  free(t->changed);
  free(t);
  return v;
}

void store_abort(struct store_txn *t) {
  if (t == NULL) return;
  for (int k = 0; k < CAT_KIND_COUNT; k++) {
    struct smap *m = t->next.maps[k];
    if (smap_gen(m) == t->gen) smap_destroy(m, 0);
  }
  /* The retire list holds parts of base, which stays published. */
  free(t->retired.items);
  free(t->pos);
  free(t->changed);
  free(t);
}

void store_set_prefault(struct store *st, struct prefault *pf) { st->pf = pf; }

void store_txn_note_builder(struct store_txn *t) { t->builder_notes = true; }

void store_txn_note(struct store_txn *t, const struct cat_hdr *h) {
  if (t->st->pf != NULL) prefault_note(t->st->pf, h);
}
