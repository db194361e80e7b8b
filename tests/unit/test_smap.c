/*
 * Unit tests of the snapshot map (src/store/smap.c) against a plain array model:
 * random puts, replacements and deletes in few shards (long probe runs, so
 * backward-shift deletion and growth are exercised), each round in a fork;
 * after every round the fork must match the model exactly and the map it was
 * forked from must still match the previous round's model (copy-on-write
 * never touches a published version).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "smap.h"

#define NKEYS  3000
#define ROUNDS 60
#define OPS    400

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
  rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17;
  return (uint32_t)(rs >> 11);
}

/* A tombstone-shaped record for key n of org "o", built by generation gen. */
static struct cat_hdr *rec(unsigned n, uint64_t gen, int64_t version) {
  uint8_t id[16] = {0};
  memcpy(id, &n, sizeof n);
  struct cat_hdr *h = model_tombstone_new(CAT_BRAND, id, "o", 1, version);
  h->gen = gen;
  return h;
}

/* The map key of rec(n, ...): its 16-byte id, then the org. */
#define KEYLEN 17
static void key_of(uint8_t key[KEYLEN], unsigned n) {
  memset(key, 0, KEYLEN);
  memcpy(key, &n, sizeof n);
  key[16] = 'o';
}

static int64_t lookup(const struct smap *m, unsigned n) {
  uint8_t key[KEYLEN];
  key_of(key, n);
  const struct cat_hdr *h = smap_get(m, key, KEYLEN, smap_hash(key, KEYLEN));
  return h ? h->version : 0;
}

/* Removes key n from m; returns the record it held (NULL if none). */
static struct cat_hdr *del(struct smap *m, unsigned n, struct retire *r) {
  uint8_t key[KEYLEN];
  struct cat_hdr *old;
  key_of(key, n);
  smap_del(m, key, KEYLEN, smap_hash(key, KEYLEN), &old, r);
  return old;
}

/* Stores h in m; returns the record it replaced (NULL if none). */
static struct cat_hdr *put(struct smap *m, struct cat_hdr *h, struct retire *r) {
  struct cat_hdr *old;
  smap_put(m, h, smap_hash(h->key, h->keylen), &old, r);
  return old;
}

static size_t counted;
static void count_one(const struct cat_hdr *h, void *arg) {
  (void)h, (void)arg;
  counted++;
}

/* Every key's lookup gives the model's version (0 = absent), and iteration
 * visits exactly the live keys. */
static void assert_matches(const struct smap *m, const int64_t *model) {
  size_t live = 0;
  for (unsigned n = 0; n < NKEYS; n++) {
    assert_int_equal(lookup(m, n), model[n]);
    live += model[n] != 0;
  }
  counted = 0;
  smap_foreach(m, count_one, NULL);
  assert_int_equal(counted, live);
}

/* One round of random operations on fork m (gen), mirrored in model. */
static void round_ops(struct smap *m, uint64_t gen, int64_t *model, struct retire *r) {
  for (int i = 0; i < OPS; i++) {
    unsigned n = rnd() % NKEYS;
    struct cat_hdr *old;
    if (rnd() % 3 == 0) {
      old = del(m, n, r);
      assert_int_equal(old ? old->version : 0, model[n]);
      model[n] = 0;
    } else {
      struct cat_hdr *h = rec(n, gen, (int64_t)gen * 1000 + i + 1);
      old = put(m, h, r);
      assert_int_equal(old ? old->version : 0, model[n]);
      model[n] = h->version;
    }
    if (old != NULL && old->gen == gen)
      model_free(old);
    else if (old != NULL)
      retire_add(r, old, RETIRE_REC);
  }
}

static void forks_match_the_model_and_never_change_the_base(void **state) {
  (void)state;
  static int64_t model[NKEYS], prev[NKEYS];
  struct retire r = {0};
  struct smap *m = smap_new(2, 1); /* 4 shards: ~750 entries each at the end */
  round_ops(m, 1, model, &r);
  assert_matches(m, model);
  for (uint64_t gen = 2; gen < 2 + ROUNDS; gen++) {
    memcpy(prev, model, sizeof model);
    struct smap *next = smap_fork(m, gen);
    round_ops(next, gen, model, &r);
    assert_matches(next, model);
    assert_matches(m, prev); /* still the published version */
    smap_free_shell(m);
    retire_free(&r);
    m = next;
  }
  free(r.items);
  smap_destroy(m, 1);
}

/* An unpublished fork is dropped: its own shards and records go, the base's
 * stay intact (valgrind/ASan check the frees). */
static void destroying_a_fork_keeps_the_base(void **state) {
  (void)state;
  static int64_t model[NKEYS], base_model[NKEYS];
  struct retire r = {0};
  struct smap *m = smap_new(3, 1);
  round_ops(m, 1, model, &r);
  memcpy(base_model, model, sizeof model);
  struct smap *f = smap_fork(m, 2);
  struct retire fr = {0};
  round_ops(f, 2, model, &fr);
  smap_destroy(f, 0);
  free(fr.items); /* its entries belong to m, which stays */
  assert_matches(m, base_model);
  retire_free(&r);
  free(r.items);
  smap_destroy(m, 1);
}

/* A delete never grows a shard: one shard filled to its load limit (6 of 8
 * slots), then a key deleted in a fork (shard shared, so copied) and another
 * in the same fork (shard now private). Deletes used to ask for room for one
 * more entry and doubled a full shard. */
static void a_delete_never_grows_a_shard(void **state) {
  (void)state;
  struct retire r = {0};
  struct smap *m = smap_new(0, 1);
  for (unsigned n = 0; n < 6; n++)
    assert_null(put(m, rec(n, 1, 1), &r));
  assert_int_equal(smap_slots(m), 8);
  struct smap *f = smap_fork(m, 2);
  for (unsigned n = 0; n < 2; n++) {
    struct cat_hdr *old = del(f, n, &r);
    assert_non_null(old);
    retire_add(&r, old, RETIRE_REC); /* m's record, as a commit would retire it */
    assert_int_equal(smap_slots(f), 8);
    assert_int_equal(lookup(f, n), 0);
    assert_int_equal(lookup(m, n), 1); /* the published map is untouched */
  }
  for (unsigned n = 2; n < 6; n++)
    assert_int_equal(lookup(f, n), 1);
  smap_free_shell(m); /* f took over every shard m had; m's old one is in r */
  retire_free(&r);
  free(r.items);
  smap_destroy(f, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(forks_match_the_model_and_never_change_the_base),
      cmocka_unit_test(destroying_a_fork_keeps_the_base),
      cmocka_unit_test(a_delete_never_grows_a_shard),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
