/*
 * fuzz_event_decode - libFuzzer target for the Kafka change-event decoder
 * (sync/codec/event_decode.c) and, through round trips, the encoder
 * (sync/codec/event_encode.c) and the store's apply rules.
 *
 * Input: byte 0 is a mode byte, then the Kafka key up to the first '\n',
 * then the value (everything after that newline).
 *   (mode & 3) == 0    the value is NULL: a Kafka tombstone ('T' is one)
 *   (mode & 8) != 0    an empty key is passed as NULL (message without a key)
 * Key and value are copied into buffers of their exact size, so a read past
 * either is caught by ASan.
 *
 * Checks, beyond "no crash, no UB, no leak":
 *   - differential: the jansson decoder that event_decode() replaced
 *     (tests/oracle) decodes the same message to the same verdict, reason,
 *     event fields and record, field by field; so does it for the round
 *     trip's message below. One known difference is allowed: jansson drops
 *     a raw NUL byte that follows a number or a literal (its reader pushes
 *     the byte back and loses it), event_decode() refuses any raw NUL as
 *     not JSON;
 *   - a rejection carries a reason and no record; an accepted message has no
 *     reason, a known kind, and for an upsert a record whose kind, key
 *     (id, org) and version are the event's;
 *   - round trip: event_encode(record) succeeds and event_decode of its
 *     output accepts it again with the same kind, key and version;
 *   - fixpoint: encoding that second record gives the same JSON byte for
 *     byte (decode o encode loses nothing the encoder writes);
 *   - the record then goes through store_put (or the delete through
 *     store_delete) on top of a small published snapshot that shares ids
 *     with the seed corpus, exactly as sync/consumer.c applies it; the
 *     transaction is aborted, which must free everything it built.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_decode.h"
#include "fuzz_entry.h"
#include "event_decode_oracle.h"
#include "event_encode.h"
#include "store.h"

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_event_decode: check failed: %s: ", #cond);                             \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

static struct store *g_store;
static int g_verbose; /* FUZZ_VERBOSE=1: print each input's outcome */

/* A small base snapshot: ids of the seed corpus (org_a), so that fuzzed
 * events hit existing entries (stale versions, replaced variants moving
 * between products, tombstones over live records). */
static void build_base(void) {
  const char *why;
  struct store_txn *t = store_begin(g_store);
  struct variant_fields v = {.id = "dddddddd-0000-0000-0000-000000000a11",
                             .org = "org_a",
                             .product_id = "aaaaaaaa-0000-0000-0000-0000000000a1",
                             .sku = "S1",
                             .status = "active",
                             .warehouse_id = "WH",
                             .version = 5,
                             .sale_price = 1.5};
  struct cat_variant *cv = model_variant_new(&v, &why);
  CHECK(cv != NULL, "%s", why);
  store_put(t, &cv->h);
  v.id = "dddddddd-0000-0000-0000-000000000a12", v.version = 1;
  cv = model_variant_new(&v, &why);
  CHECK(cv != NULL, "%s", why);
  store_put(t, &cv->h);
  struct product_fields p = {.id = "aaaaaaaa-0000-0000-0000-0000000000a1",
                             .org = "org_a",
                             .title = "T",
                             .sku = "P",
                             .status = "activa",
                             .version = 3};
  struct cat_product *cp = model_product_new(&p, &why);
  CHECK(cp != NULL, "%s", why);
  store_put(t, &cp->h);
  struct named_fields b = {.id = "bbbbbbbb-0000-0000-0000-0000000000a1",
                           .org = "org_a",
                           .name = "Acme",
                           .slug = "acme",
                           .version = 2};
  struct cat_named *cn = model_named_new(CAT_BRAND, &b, &why);
  CHECK(cn != NULL, "%s", why);
  store_put(t, &cn->h);
  uint8_t id[16];
  uuid_parse("cccccccc-0000-0000-0000-0000000000a1", UUID_STR_LEN, id);
  store_delete(t, CAT_TAG, id, "org_a", 5, 7); /* a tombstone at version 7 */
  store_commit(t);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  rcu_init();
  store_reader_register(); /* the writer registers, as sync.c does */
  g_store = store_new();
  build_base();
  g_verbose = getenv("FUZZ_VERBOSE") != NULL;
  return 0;
}

/* The allowed difference (see above): a value with a raw NUL byte that
 * event_decode() refused as not JSON. */
static int nul_refused(const char *val, size_t n, int rc, const char *why) {
  return val != NULL && memchr(val, '\0', n) != NULL && rc != 0 &&
         strcmp(why, "value is not valid JSON") == 0;
}

static char *dup_exact(const uint8_t *p, size_t n) {
  char *d = malloc(n ? n : 1);
  if (d == NULL) abort();
  if (n) memcpy(d, p, n);
  return d;
}

static int same_key(const struct cat_hdr *h, const struct event *ev) {
  size_t orglen = strlen(ev->org);
  return h->keylen == 16 + orglen && memcmp(h->key, ev->id, 16) == 0 &&
         memcmp(h->key + 16, ev->org, orglen) == 0 && strcmp(h->org, ev->org) == 0;
}

/* Checks one successful decode; returns its record (or NULL for a delete). */
static void check_accepted(const struct event *ev, const char *why) {
  CHECK(why == NULL, "accepted with a reason: %s", why);
  CHECK(ev->kind_known && ev->kind < CAT_ENTITY_KINDS, "kind %d", (int)ev->kind);
  CHECK(ev->org[0] != '\0' && strlen(ev->org) <= CAT_ORG_MAX, "org length %zu", strlen(ev->org));
  if (ev->op == EVENT_DELETE) {
    CHECK(ev->record == NULL, "delete with a record");
    CHECK(ev->version >= 0, "delete version %lld", (long long)ev->version);
    return;
  }
  CHECK(ev->op == EVENT_UPSERT, "op %d", (int)ev->op);
  CHECK(ev->record != NULL, "upsert without a record");
  CHECK(ev->version > 0, "upsert version %lld", (long long)ev->version);
  const struct cat_hdr *h = ev->record;
  CHECK(h->kind == ev->kind, "record kind %d, event kind %d", h->kind, (int)ev->kind);
  CHECK(h->version == ev->version, "record version %lld, event %lld", (long long)h->version,
        (long long)ev->version);
  CHECK(!h->deleted, "upsert built a tombstone");
  CHECK(same_key(h, ev), "record key differs from the event key");
}

/* encode(rec) must decode again to the same kind/key/version, and encoding
 * that copy must give the same bytes. */
static void round_trip(const struct cat_hdr *rec) {
  char *key = NULL, *val = NULL, *key2 = NULL, *val2 = NULL;
  struct event ev2;
  const char *why;
  CHECK(event_encode(rec, &key, &val) == 0, "event_encode failed (kind %d)", rec->kind);
  int rc = event_decode(key, strlen(key), val, strlen(val), &ev2, &why);
  CHECK(rc == 0, "re-decode rejected its own encoding: %s\nkey: %s\nvalue: %s", why, key, val);
  const char *d = oracle_compare(key, strlen(key), val, strlen(val), rc, why, &ev2);
  CHECK(d == NULL, "round trip: oracle differs: %s\nvalue: %s", d, val);
  check_accepted(&ev2, why);
  CHECK(ev2.op == EVENT_UPSERT, "re-decode is not an upsert");
  const struct cat_hdr *h2 = ev2.record;
  CHECK(h2->kind == rec->kind && h2->version == rec->version && h2->keylen == rec->keylen &&
            memcmp(h2->key, rec->key, rec->keylen) == 0,
        "round trip changed kind/key/version\nkey: %s\nvalue: %s", key, val);
  CHECK(event_encode(h2, &key2, &val2) == 0, "second event_encode failed");
  CHECK(strcmp(key, key2) == 0, "keys differ: %s / %s", key, key2);
  CHECK(strcmp(val, val2) == 0, "encode(decode(encode(r))) != encode(r)\n1: %s\n2: %s", val, val2);
  model_free(ev2.record);
  free(key), free(val), free(key2), free(val2);
}

/* Applies the event as sync/consumer.c does, then throws the change away. */
static void apply(struct event *ev) {
  struct store_txn *t = store_begin(g_store);
  int rc = ev->op == EVENT_UPSERT
               ? store_put(t, ev->record) /* takes ownership */
               : store_delete(t, ev->kind, ev->id, ev->org, strlen(ev->org), ev->version);
  CHECK(rc == STORE_APPLIED || rc == STORE_STALE, "store rc %d", rc);
  if (g_verbose) fprintf(stderr, "fuzz_event_decode: store %s\n", rc ? "stale" : "applied");
  if (rc == STORE_APPLIED) {
    const struct cat_hdr *h = store_txn_get(t, ev->kind, ev->id, ev->org, strlen(ev->org));
    CHECK(h != NULL, "applied change not visible in its transaction");
    CHECK(h->deleted == (ev->op == EVENT_DELETE), "applied change has the wrong liveness");
  }
  ev->record = NULL;
  store_abort(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  uint8_t mode = data[0];
  const uint8_t *rest = data + 1, *nl = memchr(rest, '\n', size - 1);
  size_t keylen = nl ? (size_t)(nl - rest) : size - 1;
  const uint8_t *vp = nl ? nl + 1 : rest + size - 1;
  size_t vallen = (size_t)(data + size - vp);
  char *key = (keylen == 0 && (mode & 8)) ? NULL : dup_exact(rest, keylen);
  char *val = (mode & 3) == 0 ? NULL : dup_exact(vp, vallen);

  struct event ev;
  const char *why = NULL;
  int rc = event_decode(key, key ? keylen : 0, val, val ? vallen : 0, &ev, &why);
  if (g_verbose)
    fprintf(stderr, "fuzz_event_decode: rc=%d op=%d kind=%d version=%lld why=%s\n", rc, (int)ev.op,
            (int)ev.kind, (long long)ev.version, why ? why : "-");
  const char *d = oracle_compare(key, key ? keylen : 0, val, val ? vallen : 0, rc, why, &ev);
  CHECK(d == NULL || nul_refused(val, vallen, rc, why),
        "the jansson oracle decodes this differently: %s", d);
  if (rc != 0) {
    CHECK(why != NULL, "rejected without a reason (rc %d)", rc);
    CHECK(ev.record == NULL, "rejected but a record was built");
  } else {
    check_accepted(&ev, why);
    if (val == NULL) CHECK(ev.op == EVENT_DELETE && ev.version == 0, "tombstone decoded oddly");
    if (ev.record != NULL) round_trip(ev.record);
    apply(&ev);
  }
  model_free(ev.record); /* NULL unless something above went wrong */
  free(key);
  free(val);
  return 0;
}
