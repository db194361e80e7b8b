/*
 * Unit tests: the store's apply rules, the product->variants index, abort,
 * and (label "concurrency") readers never seeing a half-applied batch while
 * a writer publishes continuously; pins: a pinned snapshot stays whole and
 * readable outside any read section while the writer replaces everything in
 * it, and what was deferred is freed by the last unpin.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

#include "store.h"
#include "test_util.h"

static int setup(void **state) {
  *state = store_new();
  return 0;
}

static int teardown(void **state) {
  store_destroy(*state);
  return 0;
}

static const struct cat_variant *get_variant(struct store *st, const char *org, unsigned n) {
  uint8_t id[16];
  const struct snapshot *s = store_current(st);
  return s ? snap_variant(s, bid(0xd2, n, id), org, strlen(org)) : NULL;
}

static void first_publish_even_if_empty(void **state) {
  struct store *st = *state;
  assert_null(store_current(st));
  assert_int_equal(store_commit(store_begin(st)), 1);
  assert_non_null(store_current(st));
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 0);
  /* A later transaction with no change publishes nothing. */
  assert_int_equal(store_commit(store_begin(st)), 1);
}

/* What the publish hook was told last (the parked calls' releaser relies
 * on it: a version waiter is handed back only when its entity is listed). */
struct seen_changes {
  int calls;
  bool all;
  size_t n;
  uint64_t keys[8];
};

static void record_changes(void *arg, const struct store_changes *ch) {
  struct seen_changes *sc = arg;
  sc->calls++, sc->all = ch->all, sc->n = ch->n;
  for (size_t i = 0; i < ch->n && i < 8; i++)
    sc->keys[i] = ch->keys[i];
}

static void publish_hook_lists_the_entities_written(void **state) {
  struct store *st = *state;
  struct seen_changes sc = {0};
  uint8_t id[16];
  store_on_publish(st, record_changes, &sc);
  struct store_txn *t = store_begin(st);
  store_put(t, mk_variant("o", 1, 1, 1, "active"));
  store_commit(t);
  assert_true(sc.all); /* the first publish: anything may have changed */
  t = store_begin(st);
  store_put(t, mk_variant("o", 2, 1, 1, "active"));
  assert_int_equal(store_delete(t, CAT_VARIANT, bid(0xd2, 1, id), "o", 1, 2), STORE_APPLIED);
  store_commit(t);
  assert_int_equal(sc.calls, 2);
  assert_false(sc.all);
  assert_int_equal(sc.n, 2);
  assert_true(sc.keys[0] == store_change_key(CAT_VARIANT, bid(0xd2, 2, id), "o", 1));
  assert_true(sc.keys[1] == store_change_key(CAT_VARIANT, bid(0xd2, 1, id), "o", 1));
  assert_true(sc.keys[0] != store_change_key(CAT_VARIANT, bid(0xd2, 2, id), "p", 1));
  assert_true(sc.keys[0] != store_change_key(CAT_PRODUCT, bid(0xd2, 2, id), "o", 1));
  /* A stale write publishes nothing; moved positions alone list nothing. */
  t = store_begin(st);
  assert_int_equal(store_put(t, mk_variant("o", 2, 1, 1, "active")), STORE_STALE);
  store_txn_set_positions(t, &(struct snap_pos){.partition = 0, .next = 5}, 1);
  store_commit(t);
  assert_int_equal(sc.calls, 3);
  assert_false(sc.all);
  assert_int_equal(sc.n, 0);
  /* Too many to list: all. */
  t = store_begin(st);
  for (unsigned i = 0; i <= STORE_CHANGES_MAX; i++)
    store_put(t, mk_variant("o", 100 + i, 1, 1, "active"));
  store_commit(t);
  assert_true(sc.all);
  /* A rebuild: all. */
  store_rebuild_next(st);
  t = store_begin(st);
  store_put(t, mk_variant("o", 1, 1, 9, "active"));
  store_commit(t);
  assert_true(sc.all);
}

static void tenant_scoped_lookup(void **state) {
  struct store *st = *state;
  struct store_txn *t = store_begin(st);
  assert_int_equal(store_put(t, mk_variant("org_a", 1, 1, 1, "active")), STORE_APPLIED);
  store_commit(t);
  assert_non_null(get_variant(st, "org_a", 1));
  assert_null(get_variant(st, "org_b", 1));
  assert_null(get_variant(st, "ORG_A", 1));
  assert_null(get_variant(st, "org_a ", 1));
  assert_null(get_variant(st, "org_a", 2));
}

static void stale_and_duplicate_versions(void **state) {
  struct store *st = *state;
  struct store_txn *t = store_begin(st);
  store_put(t, mk_variant("o", 1, 1, 5, "active"));
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 5, "inactive")), STORE_STALE);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 4, "inactive")), STORE_STALE);
  store_commit(t);
  assert_true(get_variant(st, "o", 1)->active);
  assert_int_equal(get_variant(st, "o", 1)->h.version, 5);
  t = store_begin(st);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 6, "inactive")), STORE_APPLIED);
  assert_int_equal(store_commit(t), 2);
  assert_false(get_variant(st, "o", 1)->active);
}

static void deletes_leave_a_version_marker(void **state) {
  struct store *st = *state;
  uint8_t id[16];
  struct store_txn *t = store_begin(st);
  store_put(t, mk_variant("o", 1, 1, 3, "active"));
  store_commit(t);
  t = store_begin(st);
  assert_int_equal(store_delete(t, CAT_VARIANT, bid(0xd2, 1, id), "o", 1, 4), STORE_APPLIED);
  store_commit(t);
  assert_null(get_variant(st, "o", 1));
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 0);
  /* A late, older upsert cannot resurrect it; a newer one can. */
  t = store_begin(st);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 4, "active")), STORE_STALE);
  assert_int_equal(store_delete(t, CAT_VARIANT, id, "o", 1, 2), STORE_STALE);
  store_commit(t);
  assert_null(get_variant(st, "o", 1));
  t = store_begin(st);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 9, "active")), STORE_APPLIED);
  store_commit(t);
  assert_non_null(get_variant(st, "o", 1));
  /* A Kafka tombstone (version 0) deletes what is there, keeping its version. */
  t = store_begin(st);
  assert_int_equal(store_delete(t, CAT_VARIANT, id, "o", 1, 0), STORE_APPLIED);
  assert_int_equal(store_txn_get(t, CAT_VARIANT, id, "o", 1)->version, 9);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 9, "active")), STORE_STALE);
  store_commit(t);
  assert_null(get_variant(st, "o", 1));
}

/* Events applied a second time (the warm hand-off re-reads the feed from
 * offsets recorded before PostgreSQL's snapshot) converge: a re-applied
 * versionless tombstone of an entity deleted and re-created since must not
 * lose the re-created entity (its own upsert, re-applied right after, used
 * to be stale against the tombstone's borrowed version). */
static void redelivered_tombstone_yields_to_its_recreation(void **state) {
  struct store *st = *state;
  uint8_t id[16];
  bid(0xd2, 1, id);
  struct store_txn *t = store_begin(st); /* what the warm load found: re-created at v3 */
  store_put(t, mk_variant("o", 1, 1, 3, "active"));
  store_commit(t);
  t = store_begin(st); /* the log re-read: deleted v2, tombstone, upserted v3 */
  assert_int_equal(store_delete(t, CAT_VARIANT, id, "o", 1, 2), STORE_STALE);
  assert_int_equal(store_delete_redelivered(t, CAT_VARIANT, id, "o", 1), STORE_APPLIED);
  assert_true(store_txn_get(t, CAT_VARIANT, id, "o", 1)->unversioned);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 3, "active")), STORE_APPLIED);
  store_commit(t);
  assert_non_null(get_variant(st, "o", 1));
  assert_int_equal(get_variant(st, "o", 1)->h.version, 3);
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 1);
  /* A real delete re-delivered alone still deletes, and older upserts stay stale. */
  t = store_begin(st);
  assert_int_equal(store_delete_redelivered(t, CAT_VARIANT, id, "o", 1), STORE_APPLIED);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 2, "active")), STORE_STALE);
  assert_int_equal(store_delete_redelivered(t, CAT_VARIANT, id, "o", 1), STORE_STALE);
  store_commit(t);
  assert_null(get_variant(st, "o", 1));
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 0);
  /* A versioned delete over it is a newer delete, and hard again. */
  t = store_begin(st);
  assert_int_equal(store_delete(t, CAT_VARIANT, id, "o", 1, 4), STORE_APPLIED);
  assert_false(store_txn_get(t, CAT_VARIANT, id, "o", 1)->unversioned);
  assert_int_equal(store_put(t, mk_variant("o", 1, 1, 4, "active")), STORE_STALE);
  store_commit(t);
  assert_null(get_variant(st, "o", 1));
}

/* The batched lookup answers exactly as one lookup per id: for more ids
 * than one group, with ids absent, deleted, repeated, and of another org. */
static void many_lookups_answer_as_single_ones(void **state) {
  struct store *st = *state;
  struct store_txn *t = store_begin(st);
  for (unsigned v = 1; v <= 60; v += 2) /* odd ids exist in "o" */
    store_put(t, mk_variant("o", v, v, 1, "active"));
  store_put(t, mk_variant("other", 2, 2, 1, "active"));
  store_commit(t);
  t = store_begin(st);
  uint8_t id[16];
  store_delete(t, CAT_VARIANT, bid(0xd2, 7, id), "o", 1, 2);
  store_commit(t);
  enum { N = 70 };
  uint8_t ids[N][16];
  for (unsigned i = 0; i < N; i++)
    bid(0xd2, i < 64 ? i : 5, ids[i]); /* 64..69 repeat id 5 */
  const struct cat_hdr *got[N];
  const struct snapshot *s = store_current(st);
  snap_get_many(s, CAT_VARIANT, (const uint8_t(*)[16])ids, N, "o", 1, got);
  size_t found = 0;
  for (unsigned i = 0; i < N; i++) {
    assert_ptr_equal(got[i], snap_get(s, CAT_VARIANT, ids[i], "o", 1));
    found += got[i] != NULL;
  }
  assert_int_equal(found, 29 + 6); /* 30 odd ids below 60, minus 7, plus 6 repeats */
  snap_get_many(s, CAT_VARIANT, (const uint8_t(*)[16])ids, N, "", 0, got);
  for (unsigned i = 0; i < N; i++)
    assert_null(got[i]);
}

static uint32_t variants_of(struct store *st, const char *org, unsigned product) {
  uint8_t pid[16];
  const struct cat_idlist *l = (const struct cat_idlist *)snap_get(
      store_current(st), CAT_PRODUCT_VARIANTS, bid(0xd1, product, pid), org, strlen(org));
  return l ? l->n : 0;
}

static void product_variant_index(void **state) {
  struct store *st = *state;
  uint8_t id[16];
  struct store_txn *t = store_begin(st);
  for (unsigned v = 1; v <= 40; v++)
    store_put(t, mk_variant("o", v, 1, 1, "active"));
  store_put(t, mk_variant("other", 41, 1, 1, "active"));
  store_commit(t);
  assert_int_equal(variants_of(st, "o", 1), 40);
  assert_int_equal(variants_of(st, "other", 1), 1);
  t = store_begin(st);
  store_put(t, mk_variant("o", 3, 2, 2, "active"));          /* moves to product 2 */
  store_delete(t, CAT_VARIANT, bid(0xd2, 4, id), "o", 1, 2); /* deleted */
  store_put(t, mk_variant("o", 5, 1, 2, "inactive"));        /* same product */
  store_commit(t);
  assert_int_equal(variants_of(st, "o", 1), 38);
  assert_int_equal(variants_of(st, "o", 2), 1);
  t = store_begin(st);
  store_delete(t, CAT_VARIANT, bid(0xd2, 3, id), "o", 1, 3);
  store_commit(t);
  assert_int_equal(variants_of(st, "o", 2), 0);
}

/* A bulk build: maps reserved for more records than come, the puts in
 * groups (store_put_many) answer as single puts would: a stale duplicate
 * inside a group is refused, the later version of one entity wins, every
 * variant is found and indexed under its product. Then a second, forked
 * transaction reserves again (shards shared with the published snapshot
 * are copied, not changed) and the first snapshot's records stay intact. */
static void grouped_puts_into_reserved_maps(void **state) {
  struct store *st = *state;
  enum { N = 3000 };
  struct store_txn *t = store_begin(st);
  store_txn_reserve(t, CAT_VARIANT, 20 * N); /* ~15 a shard: every shard allocated */
  store_txn_reserve(t, CAT_PRODUCT, 10 * N);
  struct cat_hdr *g[STORE_PUT_MANY_MAX];
  int rc[STORE_PUT_MANY_MAX], stale = 0;
  size_t n = 0;
  for (unsigned v = 1; v <= N; v++) {
    g[n++] = mk_variant("o", v, v % 100, 2, "active");
    if (v % 7 == 0) g[n++] = mk_variant("o", v, v % 100, 1, "active");      /* older: stale */
    if (v % 11 == 0) g[n++] = mk_variant("o", v, v % 100 + 1, 3, "active"); /* newer: moves */
    if (n + 3 > STORE_PUT_MANY_MAX || v == N) {
      store_put_many(t, g, n, rc);
      for (size_t i = 0; i < n; i++)
        stale += rc[i] == STORE_STALE;
      n = 0;
    }
  }
  store_commit(t);
  assert_int_equal(stale, N / 7);
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), N);
  uint32_t indexed = 0;
  for (unsigned p = 0; p <= 100; p++)
    indexed += variants_of(st, "o", p);
  assert_int_equal(indexed, N);
  for (unsigned v = 1; v <= N; v++)
    assert_int_equal(get_variant(st, "o", v)->h.version, v % 11 == 0 ? 3 : 2);
  const struct snapshot *s1 = store_pin(st);
  t = store_begin(st);
  store_txn_reserve(t, CAT_VARIANT, 64 * N); /* larger: the shared shards are copied */
  store_put(t, mk_variant("o", 1, 5, 9, "active"));
  store_commit(t);
  assert_int_equal(get_variant(st, "o", 1)->h.version, 9);
  uint8_t id[16];
  assert_int_equal(snap_get(s1, CAT_VARIANT, bid(0xd2, 1, id), "o", 1)->version, 2);
  assert_int_equal(snap_count(s1, CAT_VARIANT), N);
  store_unpin(st, s1);
}

static void abort_discards_everything(void **state) {
  struct store *st = *state;
  struct store_txn *t = store_begin(st);
  store_put(t, mk_variant("o", 1, 1, 1, "active"));
  store_commit(t);
  t = store_begin(st);
  for (unsigned v = 2; v < 500; v++)
    store_put(t, mk_variant("o", v, 1, 1, "active"));
  store_put(t, mk_variant("o", 1, 1, 2, "inactive"));
  store_abort(t);
  assert_int_equal(snap_version(store_current(st)), 1);
  assert_true(get_variant(st, "o", 1)->active);
  assert_null(get_variant(st, "o", 2));
  assert_int_equal(variants_of(st, "o", 1), 1);
}

/* A rebuild starts from an empty state: what the new transaction does not
 * put is gone at commit (a delete missed by the feed), tombstones too; the
 * old snapshot serves until then; an aborted rebuild changes nothing and the
 * next transaction is empty again; after the commit, transactions are
 * incremental again. */
static void rebuild_starts_empty_and_replaces_whole(void **state) {
  struct store *st = *state;
  uint8_t id[16];
  struct store_txn *t = store_begin(st);
  for (unsigned v = 1; v <= 300; v++)
    store_put(t, mk_variant("o", v, 1, 1, "active"));
  store_delete(t, CAT_VARIANT, bid(0xd2, 400, id), "o", 1, 5); /* a tombstone */
  store_commit(t);
  assert_false(store_rebuilding(st));
  store_rebuild_next(st);
  assert_true(store_rebuilding(st));
  t = store_begin(st);
  assert_null(store_txn_get(t, CAT_VARIANT, bid(0xd2, 1, id), "o", 1));
  store_put(t, mk_variant("o", 1, 1, 1, "active"));
  store_abort(t);
  assert_true(store_rebuilding(st));
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 300);
  t = store_begin(st);
  assert_null(store_txn_get(t, CAT_VARIANT, bid(0xd2, 2, id), "o", 1));
  store_put(t, mk_variant("o", 2, 1, 1, "inactive"));
  /* The tombstone is gone too: an older version applies. */
  assert_int_equal(store_put(t, mk_variant("o", 400, 1, 1, "active")), STORE_APPLIED);
  assert_non_null(get_variant(st, "o", 1)); /* old snapshot still served */
  assert_int_equal(store_commit(t), 2);
  assert_false(store_rebuilding(st));
  assert_null(get_variant(st, "o", 1));
  assert_false(get_variant(st, "o", 2)->active);
  assert_non_null(get_variant(st, "o", 400));
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 2);
  assert_int_equal(variants_of(st, "o", 1), 2);
  /* Incremental again. */
  t = store_begin(st);
  store_put(t, mk_variant("o", 3, 1, 1, "active"));
  store_commit(t);
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 3);
  /* An empty rebuild publishes an empty catalog. */
  store_rebuild_next(st);
  assert_int_equal(store_commit(store_begin(st)), 4);
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 0);
}

static void many_records_survive_many_publishes(void **state) {
  struct store *st = *state;
  struct store_txn *t = store_begin(st);
  for (unsigned v = 1; v <= 20000; v++)
    store_put(t, mk_variant("o", v, v % 100, 1, "active"));
  store_commit(t);
  for (int round = 2; round <= 30; round++) {
    t = store_begin(st);
    store_put(t, mk_variant("o", (unsigned)round * 7, 1, round, "inactive"));
    store_commit(t);
  }
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 20000);
  for (unsigned v = 1; v <= 20000; v++)
    assert_non_null(get_variant(st, "o", v));
  assert_false(get_variant(st, "o", 14)->active);
  assert_true(get_variant(st, "o", 15)->active);
}

/* ---- Torn reads ---- */

#define NVAR 50
struct race {
  struct store *st;
  atomic_bool done;
  atomic_long checks, torn;
};

/* Every batch writes product 1 and all its variants with one version: a
 * reader must always see them all at the same version. */
static void *reader(void *arg) {
  struct race *r = arg;
  uint8_t id[16];
  store_reader_register();
  while (!atomic_load(&r->done)) {
    store_read_lock();
    const struct snapshot *s = store_current(r->st);
    const struct cat_product *p = snap_product(s, bid(0xd1, 1, id), "o", 1);
    for (unsigned v = 1; v <= NVAR; v++) {
      const struct cat_variant *x = snap_variant(s, bid(0xd2, v, id), "o", 1);
      if (x == NULL || x->h.version != p->h.version) atomic_fetch_add(&r->torn, 1);
    }
    store_read_unlock();
    atomic_fetch_add(&r->checks, 1);
  }
  store_reader_unregister();
  return NULL;
}

static void readers_never_see_half_a_batch(void **state) {
  struct race r = {.st = *state};
  pthread_t th[2];
  store_reader_register();
  /* At least 300 publishes, and on until the readers have checked 100 times
   * (under valgrind, which runs one thread at a time, the writer can finish
   * 300 cheap publishes before a reader is scheduled); bounded in count. */
  for (int64_t ver = 1; ver <= 300 || (atomic_load(&r.checks) < 100 && ver <= 200000); ver++) {
    struct store_txn *t = store_begin(r.st);
    store_put(t, mk_product("o", 1, ver, "activa"));
    for (unsigned v = 1; v <= NVAR; v++)
      store_put(t, mk_variant("o", v, 1, ver, "active"));
    store_commit(t);
    if (ver == 1)
      for (int i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, reader, &r);
  }
  atomic_store(&r.done, true);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  store_reader_unregister();
  assert_true(atomic_load(&r.checks) > 0);
  assert_int_equal(atomic_load(&r.torn), 0);
}

/* ---- Pins ---- */

/* A pinned snapshot keeps its records through commits that replace them
 * and through a rebuild; the writer never waits; unpin frees the rest. */
static void pinned_snapshot_outlives_commits(void **state) {
  struct store *st = *state;
  store_reader_register();
  assert_null(store_pin(st)); /* nothing published: nothing pinned */
  assert_int_equal(store_pins(st), 0);
  struct store_txn *t = store_begin(st);
  for (unsigned v = 1; v <= 500; v++)
    store_put(t, mk_variant("o", v, 1, 1, "active"));
  store_commit(t);
  const struct snapshot *pin = store_pin(st);
  assert_non_null(pin);
  assert_int_equal(store_pins(st), 1);
  uint8_t id[16];
  const struct cat_variant *held = snap_variant(pin, bid(0xd2, 7, id), "o", 1);
  for (int64_t ver = 2; ver <= 5; ver++) { /* replace every record */
    t = store_begin(st);
    for (unsigned v = 1; v <= 500; v++)
      store_put(t, mk_variant("o", v, 1, ver, "inactive"));
    store_commit(t);
  }
  store_rebuild_next(st);
  t = store_begin(st);
  store_put(t, mk_variant("o", 9999, 1, 1, "active"));
  store_commit(t);
  assert_true(store_deferred(st) > 500);
  /* Read outside any read section: still the version-1 state, whole. */
  assert_ptr_equal(snap_variant(pin, bid(0xd2, 7, id), "o", 1), held);
  assert_int_equal(held->h.version, 1);
  assert_true(held->active);
  assert_int_equal(snap_count(pin, CAT_VARIANT), 500);
  assert_int_equal(snap_count(store_current(st), CAT_VARIANT), 1);
  const struct snapshot *pin2 = store_pin(st); /* two pins at once */
  store_unpin(st, pin);
  assert_true(store_deferred(st) > 500); /* pin2 still held */
  store_unpin(st, pin2);
  assert_int_equal(store_pins(st), 0);
  assert_int_equal(store_deferred(st), 0);
  store_unpin(st, NULL); /* no-op */
  store_reader_unregister();
}

struct pin_race {
  struct store *st;
  atomic_bool done;
  atomic_long walks, torn;
};

/* Pins, walks the whole pinned snapshot slowly (no read section), checks
 * that product 1 and its variants are all at one version, unpins; again. */
static void *pin_walker(void *arg) {
  struct pin_race *r = arg;
  uint8_t id[16];
  store_reader_register();
  while (!atomic_load(&r->done)) {
    const struct snapshot *s = store_pin(r->st);
    const struct cat_product *p = snap_product(s, bid(0xd1, 1, id), "o", 1);
    for (int pass = 0; pass < 20; pass++) {
      for (unsigned v = 1; v <= NVAR; v++) {
        const struct cat_variant *x = snap_variant(s, bid(0xd2, v, id), "o", 1);
        if (x == NULL || x->h.version != p->h.version || strcmp(x->sku, "SKU") != 0)
          atomic_fetch_add(&r->torn, 1);
      }
      sched_yield(); /* let the writer replace what we hold */
    }
    store_unpin(r->st, s);
    atomic_fetch_add(&r->walks, 1);
  }
  store_reader_unregister();
  return NULL;
}

static void pinned_walk_while_writer_publishes(void **state) {
  struct pin_race r = {.st = *state};
  pthread_t th;
  store_reader_register();
  for (int64_t ver = 1; ver <= 300 || (atomic_load(&r.walks) < 20 && ver <= 200000); ver++) {
    struct store_txn *t = store_begin(r.st);
    store_put(t, mk_product("o", 1, ver, "activa"));
    for (unsigned v = 1; v <= NVAR; v++)
      store_put(t, mk_variant("o", v, 1, ver, "active"));
    store_commit(t);
    if (ver == 1) pthread_create(&th, NULL, pin_walker, &r);
  }
  atomic_store(&r.done, true);
  pthread_join(th, NULL);
  store_reader_unregister();
  assert_true(atomic_load(&r.walks) > 0);
  assert_int_equal(atomic_load(&r.torn), 0);
  assert_int_equal(store_pins(r.st), 0);
  assert_int_equal(store_deferred(r.st), 0);
}

int main(void) {
  rcu_init();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(first_publish_even_if_empty, setup, teardown),
      cmocka_unit_test_setup_teardown(tenant_scoped_lookup, setup, teardown),
      cmocka_unit_test_setup_teardown(stale_and_duplicate_versions, setup, teardown),
      cmocka_unit_test_setup_teardown(deletes_leave_a_version_marker, setup, teardown),
      cmocka_unit_test_setup_teardown(redelivered_tombstone_yields_to_its_recreation, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(product_variant_index, setup, teardown),
      cmocka_unit_test_setup_teardown(many_lookups_answer_as_single_ones, setup, teardown),
      cmocka_unit_test_setup_teardown(grouped_puts_into_reserved_maps, setup, teardown),
      cmocka_unit_test_setup_teardown(abort_discards_everything, setup, teardown),
      cmocka_unit_test_setup_teardown(rebuild_starts_empty_and_replaces_whole, setup, teardown),
      cmocka_unit_test_setup_teardown(many_records_survive_many_publishes, setup, teardown),
      cmocka_unit_test_setup_teardown(readers_never_see_half_a_batch, setup, teardown),
      cmocka_unit_test_setup_teardown(pinned_snapshot_outlives_commits, setup, teardown),
      cmocka_unit_test_setup_teardown(pinned_walk_while_writer_publishes, setup, teardown),
      cmocka_unit_test_setup_teardown(publish_hook_lists_the_entities_written, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
