/*
 * fuzz_copy_row - libFuzzer target for the warm load's row path: COPY text
 * parsing (sync/copy_text.c) and the real row handlers of sync/pg_rows.c,
 * which build records (src/model/model.c) and put them into a store
 * transaction.
 *
 * The handlers are reached through the writer's private header pg_rows.h
 * (the table list pg_load.c walks); no PostgreSQL connection is made.
 * Every record they put reaches cross_path_put() first: this target is
 * linked with -Wl,--wrap=store_put,--wrap=store_put_many
 * (tests/fuzz/CMakeLists.txt), which sends the library's calls of those to
 * the __wrap_ functions below (the handlers put in groups, as in a load;
 * the rest are flushed at the end of the input).
 * Everything below copy_table() runs exactly as in a load: copy_split() on a buffer with one
 * writable byte after the row (libpq's NUL) or, for child tables, on its
 * copy kept in the child index (sync/children.c), the table's row handler,
 * the index of images/tags/collections, model_*_new(), store_put_many().
 *
 * Input: rows separated by '\n'. The first byte of a row picks the table,
 * the rest (with its '\n', as PQgetCopyData returns it) is the COPY row:
 *   b brands  t tags  c collections  I product_images  T product_tags
 *   C product_collections  p products  i variant_images  v variants
 *   X (the rest ignored) clear both child indexes, as the load does after
 *     the products
 * (any other byte: byte % 9, in that order). Each row is freed after use
 * and the field array keeps the previous row's (dangling) pointers, as in
 * copy_table(), so a handler reading a field it did not get is caught.
 * Every field is also fed to the four value parsers. At the end the child
 * indexes are freed and the store transaction is aborted: no leak allowed.
 *
 * Child index check: every child the handlers accept is also recorded in a
 * plain list; before each product or variant row whose id is UUID text,
 * children_get() must give exactly the list's children of that parent
 * (ids equal ignoring case), each kind in the order added, and the very
 * strings the handler was given.
 * (The transaction sits on an empty published snapshot rather than on a
 * never-published store, as the first warm load does; the row path is the
 * same, only the maps are forked instead of created.)
 *
 * Cross-path check (docs/ARCHITECTURE.md: "Records are built by the same
 * builders from PostgreSQL rows and from change events, so both paths give
 * identical state"): every record the loader puts is also encoded as a
 * change event (event_encode) and decoded again (event_decode); the event
 * must be accepted and give a record equal field for field. Rows PostgreSQL
 * cannot send are skipped: strings that are not UTF-8 (JSON cannot carry
 * them; a UTF8 database never sends them) and versions below 1 (the
 * schema's versions start at 1; events require > 0). FUZZ_KNOWN=org-slash
 * skips organization ids containing '/', a divergence already reported
 * (tests/fuzz/regressions/fuzz_copy_row/), so fuzzing can look further.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "copy_text.h"
#include "event_decode.h"
#include "event_encode.h"
#include "fuzz_entry.h"
#include "log.h"
#include "pg_rows.h"
#include "store.h"

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "fuzz_copy_row: check failed: %s: ", #cond);                                 \
      fprintf(stderr, __VA_ARGS__);                                                                \
      fputc('\n', stderr);                                                                         \
      abort();                                                                                     \
    }                                                                                              \
  } while (0)

#define MAX_FIELDS PGROWS_MAX_FIELDS

static struct store *g_store;
static int g_verbose;        /* FUZZ_VERBOSE=1: print each row's outcome */
static int g_skip_org_slash; /* FUZZ_KNOWN contains "org-slash" */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  rcu_init();
  store_reader_register();
  log_set_level(LOG_ERROR);
  /* An empty snapshot is published once, so each input's transaction forks
   * only the maps it writes to: a fresh store would allocate and zero every
   * map (about 70 KiB) per input, which dominated the run time. */
  g_store = store_new();
  store_commit(store_begin(g_store));
  g_verbose = getenv("FUZZ_VERBOSE") != NULL;
  const char *known = getenv("FUZZ_KNOWN");
  g_skip_org_slash = known != NULL && strstr(known, "org-slash") != NULL;
  return 0;
}

/* ---- Cross-path check: warm-load record == change-event record ---- */

/* Well-formed UTF-8 as jansson accepts it (no surrogates, no overlongs). */
static bool utf8_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned c = *p++, n;
    uint32_t cp;
    if (c < 0x80) continue;
    if (c >= 0xc2 && c <= 0xdf)
      n = 1, cp = c & 0x1f;
    else if (c >= 0xe0 && c <= 0xef)
      n = 2, cp = c & 0x0f;
    else if (c >= 0xf0 && c <= 0xf4)
      n = 3, cp = c & 0x07;
    else
      return false;
    for (unsigned i = 0; i < n; i++, p++) {
      if ((*p & 0xc0) != 0x80) return false;
      cp = cp << 6 | (*p & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
  }
  return true;
}

static bool images_utf8(const struct cat_image *im, uint32_t n) {
  for (uint32_t i = 0; i < n; i++)
    if (!utf8_ok(im[i].url) || !utf8_ok(im[i].alt)) return false;
  return true;
}

/* Whether every string of rec could travel in a JSON event. */
static bool rec_utf8(const struct cat_hdr *h) {
  if (!utf8_ok(h->org)) return false;
  if (h->kind == CAT_VARIANT) {
    const struct cat_variant *v = (const void *)h;
    return utf8_ok(v->sku) && utf8_ok(v->barcode) && utf8_ok(v->warehouse_id) &&
           utf8_ok(v->lot_number) && utf8_ok(v->vendor) && images_utf8(v->images, v->n_images);
  }
  if (h->kind == CAT_PRODUCT) {
    const struct cat_product *p = (const void *)h;
    return utf8_ok(p->local_id) && utf8_ok(p->title) && utf8_ok(p->sku) && utf8_ok(p->barcode) &&
           utf8_ok(p->description) && utf8_ok(p->status) && utf8_ok(p->product_type) &&
           utf8_ok(p->unit_of_measure) && images_utf8(p->images, p->n_images);
  }
  const struct cat_named *n = (const void *)h;
  return utf8_ok(n->name) && utf8_ok(n->slug) && utf8_ok(n->description);
}

#define SAME_S(a, b, f) CHECK(strcmp((a)->f, (b)->f) == 0, #f ": \"%s\" vs \"%s\"", (a)->f, (b)->f)
#define SAME_N(a, b, f) CHECK(memcmp(&(a)->f, &(b)->f, sizeof(a)->f) == 0, #f " differs")

static void same_images(const struct cat_image *a, const struct cat_image *b, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    SAME_N(&a[i], &b[i], id);
    SAME_S(&a[i], &b[i], url);
    SAME_S(&a[i], &b[i], alt);
    SAME_N(&a[i], &b[i], position);
  }
}

/* What the event path gives must equal what the loader built. Events carry
 * no tag slug and no tag or collection description: the loader's queries
 * select NULL for them, so only fuzzed rows have them. */
static void same_record(const struct cat_hdr *a, const struct cat_hdr *b) {
  CHECK(a->kind == b->kind && a->version == b->version && a->deleted == b->deleted &&
            a->keylen == b->keylen && memcmp(a->key, b->key, a->keylen) == 0,
        "header differs");
  if (a->kind == CAT_VARIANT) {
    const struct cat_variant *x = (const void *)a, *y = (const void *)b;
    SAME_N(x, y, product_id);
    SAME_S(x, y, sku);
    SAME_S(x, y, barcode);
    SAME_S(x, y, warehouse_id);
    SAME_S(x, y, lot_number);
    SAME_S(x, y, vendor);
    SAME_N(x, y, sale_price);
    SAME_N(x, y, cost_price);
    SAME_N(x, y, tax);
    SAME_N(x, y, weight);
    SAME_N(x, y, length);
    SAME_N(x, y, width);
    SAME_N(x, y, height);
    SAME_N(x, y, stock_total);
    SAME_N(x, y, stock_available);
    SAME_N(x, y, stock_reserved);
    SAME_N(x, y, min_stock);
    SAME_N(x, y, max_stock);
    SAME_N(x, y, active);
    SAME_N(x, y, track_inventory);
    SAME_N(x, y, n_images);
    same_images(x->images, y->images, x->n_images);
  } else if (a->kind == CAT_PRODUCT) {
    const struct cat_product *x = (const void *)a, *y = (const void *)b;
    SAME_S(x, y, local_id);
    SAME_S(x, y, title);
    SAME_S(x, y, sku);
    SAME_S(x, y, barcode);
    SAME_S(x, y, description);
    SAME_S(x, y, status);
    SAME_S(x, y, product_type);
    SAME_S(x, y, unit_of_measure);
    SAME_N(x, y, alert_stock);
    SAME_N(x, y, active);
    SAME_N(x, y, has_brand);
    SAME_N(x, y, brand_id);
    SAME_N(x, y, n_images);
    SAME_N(x, y, n_tags);
    SAME_N(x, y, n_collections);
    same_images(x->images, y->images, x->n_images);
    CHECK(memcmp(x->tag_ids, y->tag_ids, 16 * (size_t)x->n_tags) == 0, "tag_ids differ");
    CHECK(memcmp(x->collection_ids, y->collection_ids, 16 * (size_t)x->n_collections) == 0,
          "collection_ids differ");
  } else {
    const struct cat_named *x = (const void *)a, *y = (const void *)b;
    SAME_S(x, y, name);
    if (a->kind != CAT_TAG) SAME_S(x, y, slug);
    if (a->kind == CAT_BRAND) SAME_S(x, y, description);
  }
}

static void cross_path(const struct cat_hdr *rec) {
  if (rec->version < 1 || !rec_utf8(rec)) return; /* PostgreSQL never sends these */
  if (g_skip_org_slash && strchr(rec->org, '/') != NULL) return;
  char *key = NULL, *val = NULL;
  struct event ev;
  const char *why = NULL;
  CHECK(event_encode(rec, &key, &val) == 0, "a loaded %s cannot be encoded as an event",
        model_kind_name(rec->kind));
  int rc = event_decode(key, strlen(key), val, strlen(val), &ev, &why);
  CHECK(rc == 0 && ev.record != NULL,
        "the change feed rejects what the warm load accepted: %s\nkey: %s\nvalue: %s", why, key,
        val);
  same_record(rec, ev.record);
  model_free(ev.record);
  free(key);
  free(val);
}

/* The linker's --wrap=store_put: the handlers' puts come here, the real
 * store_put is __real_store_put. */
int __real_store_put(struct store_txn *t, struct cat_hdr *rec);
int __wrap_store_put(struct store_txn *t, struct cat_hdr *rec);

int __wrap_store_put(struct store_txn *t, struct cat_hdr *rec) {
  cross_path(rec);
  return __real_store_put(t, rec);
}

/* The same for --wrap=store_put_many: each record of the group is checked. */
void __real_store_put_many(struct store_txn *t, struct cat_hdr *const recs[], size_t n, int rc[]);
void __wrap_store_put_many(struct store_txn *t, struct cat_hdr *const recs[], size_t n, int rc[]);

void __wrap_store_put_many(struct store_txn *t, struct cat_hdr *const recs[], size_t n, int rc[]) {
  for (size_t i = 0; i < n; i++)
    cross_path(recs[i]);
  __real_store_put_many(t, recs, n, rc);
}

static size_t table_of(uint8_t c) {
  static const char sel[] = "btcITCpiv"; /* same order as pgrows_tables[] */
  const char *p = c ? strchr(sel, c) : NULL;
  return p ? (size_t)(p - sel) : c % pgrows_ntables;
}

/* The value parsers on one field (results unused: only crashes matter). */
static void parse_values(const char *s) {
  int32_t i32;
  int64_t i64;
  double d;
  bool b;
  if (copy_i32(s, 7, &i32) == 0 && s == NULL && i32 != 7) abort();
  if (copy_i64(s, 7, &i64) == 0 && s == NULL && i64 != 7) abort();
  if (copy_f64(s, 7, &d) == 0 && s != NULL && !isfinite(d)) abort();
  (void)copy_bool(s, true, &b);
}

/* ---- Child index check: the index against a plain list ---- */

struct kid_rec {
  bool product;
  enum children_kind kind;
  const char *parent; /* in a kept row, like the strings below */
  struct image_fields im;
};

static struct kid_rec *g_kids;
static size_t g_nkids, g_capkids;

/* True if tb is the table called name. */
static bool is_table(const struct pgrows_table *tb, const char *name) {
  return strcmp(tb->name, name) == 0;
}

/* Records the child a handler just accepted (fields f of table tb). */
static void kid_record(const struct pgrows_table *tb, char **f) {
  if (g_nkids == g_capkids) {
    g_capkids = g_capkids ? 2 * g_capkids : 64;
    g_kids = realloc(g_kids, g_capkids * sizeof *g_kids);
    if (g_kids == NULL) abort();
  }
  struct kid_rec k = {.product = tb->keep == PGROWS_KEEP_PRODUCT, .parent = f[0]};
  if (is_table(tb, "product_images") || is_table(tb, "variant_images")) {
    k.kind = CHILDREN_IMAGES;
    k.im = (struct image_fields){.id = f[1], .url = f[2], .alt = f[3]};
    CHECK(copy_i32(f[4], 0, &k.im.position) == 0, "an accepted image has a bad position");
  } else {
    k.kind = is_table(tb, "product_tags") ? CHILDREN_TAGS : CHILDREN_COLLECTIONS;
    k.im.id = f[1];
  }
  g_kids[g_nkids++] = k;
}

/* The index's children of parent id (UUID text) must be the list's. */
static void kids_check(struct children *kids, bool product, const char *id) {
  struct children_of got;
  size_t at[CHILDREN_KINDS] = {0};
  children_get(kids, id, &got);
  for (size_t i = 0; i < g_nkids; i++) {
    const struct kid_rec *k = &g_kids[i];
    if (k->product != product || strncasecmp(k->parent, id, UUID_STR_LEN) != 0) continue;
    size_t j = at[k->kind]++;
    if (k->kind == CHILDREN_IMAGES) {
      CHECK(j < got.n_images, "image %zu of %s missing", j, id);
      const struct image_fields *g = &got.images[j];
      CHECK(g->id == k->im.id && g->url == k->im.url && g->alt == k->im.alt &&
                g->position == k->im.position,
            "image %zu of %s differs", j, id);
    } else {
      CHECK(j < got.n_ids[k->kind], "link %zu of %s missing", j, id);
      CHECK(got.ids[k->kind][j] == k->im.id, "link %zu of %s differs", j, id);
    }
  }
  CHECK(at[CHILDREN_IMAGES] == got.n_images && at[CHILDREN_TAGS] == got.n_ids[CHILDREN_TAGS] &&
            at[CHILDREN_COLLECTIONS] == got.n_ids[CHILDREN_COLLECTIONS],
        "the index gives %s children the list does not have", id);
}

/* Runs the index check for a parent row (product or variant) about to be
 * handled, if its id is a UUID (others get no children from either). */
static void parent_check(struct pgrows *L, const struct pgrows_table *tb, char **f, int nf) {
  uint8_t bin[16];
  bool product = is_table(tb, "products");
  if ((!product && !is_table(tb, "variants")) || nf < 1 || f[0] == NULL ||
      uuid_parse(f[0], strlen(f[0]), bin) != 0)
    return;
  kids_check(product ? L->product_kids : L->variant_kids, product, f[0]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct pgrows L = {.t = store_begin(g_store)};
  size_t rows = 0;
  char *fields[MAX_FIELDS] = {0};
  const uint8_t *p = data, *end = data + size;
  L.product_kids = children_new();
  L.variant_kids = children_new();
  g_nkids = 0;
  while (p < end) {
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    const uint8_t *stop = nl ? nl + 1 : end; /* the row keeps its newline */
    if (*p == 'X') {
      children_clear(L.product_kids);
      children_clear(L.variant_kids);
      g_nkids = 0;
      p = stop;
      continue;
    }
    const struct pgrows_table *tb = &pgrows_tables[table_of(*p)];
    size_t len = (size_t)(stop - p - 1);
    char *buf = malloc(len + 1); /* row + libpq's terminating NUL, nothing more */
    if (buf == NULL) abort();
    memcpy(buf, p + 1, len);
    buf[len] = '\0';
    char *row = buf; /* as load_row(): a child row is split in its index's copy */
    if (tb->keep != PGROWS_KEEP_NONE)
      row = children_keep(tb->keep == PGROWS_KEEP_PRODUCT ? L.product_kids : L.variant_kids, buf,
                          len);
    int nf = copy_split(row, len, fields, MAX_FIELDS);
    if (nf > MAX_FIELDS) abort();
    if (nf >= 0) {
      if (nf == 0) abort(); /* a row always has at least one field */
      for (int i = 0; i < nf; i++) {
        if (fields[i] != NULL && (fields[i] < row || fields[i] > row + len)) abort();
        parse_values(fields[i]);
      }
      const char *why = NULL;
      parent_check(&L, tb, fields, nf);
      int rc = tb->row(&L, fields, nf, &why);
      if (rc != 0 && why == NULL) abort(); /* a rejected row must say why */
      if (rc == 0 && tb->keep != PGROWS_KEEP_NONE) kid_record(tb, fields);
      if (g_verbose)
        fprintf(stderr, "fuzz_copy_row: %s nf=%d -> %s\n", tb->name, nf, rc ? why : "ok");
    } else if (g_verbose) {
      fprintf(stderr, "fuzz_copy_row: %s: more than %d fields\n", tb->name, MAX_FIELDS);
    }
    rows++;
    free(buf); /* PQfreemem: fields[] now dangles (but for kept rows), as in copy_table() */
    p = stop;
  }
  pgrows_flush(&L); /* as copy_table()'s end: the last group */
  if (g_verbose)
    fprintf(stderr, "fuzz_copy_row: %zu rows, %zu changes\n", rows, store_txn_changes(L.t));
  children_free(L.product_kids);
  children_free(L.variant_kids);
  store_abort(L.t);
  return 0;
}
