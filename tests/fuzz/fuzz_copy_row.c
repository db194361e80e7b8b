/*
 * fuzz_copy_row - libFuzzer target for the warm load's row path: COPY text
 * parsing (sync/copy_text.c) and the real row handlers of sync/pg_load.c,
 * which build records (src/model.c) and put them into a store transaction.
 *
 * The row handlers are static, so this file includes sync/pg_load.c itself
 * (its four public functions renamed so they can never clash with the copy
 * in catalogd_core); no PostgreSQL connection is made. Everything below
 * copy_table() runs exactly as in a load: copy_split() on a buffer with one
 * writable byte after the row (libpq's NUL), the table's row handler, the
 * side tables of images/tags/collections, model_*_new(), store_put().
 *
 * Input: rows separated by '\n'. The first byte of a row picks the table,
 * the rest (with its '\n', as PQgetCopyData returns it) is the COPY row:
 *   b brands  t tags  c collections  I product_images  T product_tags
 *   C product_collections  p products  i variant_images  v variants
 * (any other byte: byte % 9, in that order). Each row is freed after use
 * and the field array keeps the previous row's (dangling) pointers, as in
 * copy_table(), so a handler reading a field it did not get is caught.
 * Every field is also fed to the four value parsers. At the end the side
 * tables are freed and the store transaction is aborted: no leak allowed.
 */
#define pgload_new       fuzz_pgload_new
#define pgload_run       fuzz_pgload_run
#define pgload_interrupt fuzz_pgload_interrupt
#define pgload_destroy   fuzz_pgload_destroy
#include "pg_load.c"

#include <math.h>
#include <stdio.h>

#define NTABLES (sizeof tables / sizeof tables[0])

static struct store *g_store;
static int g_verbose; /* FUZZ_VERBOSE=1: print each row's outcome */

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  rcu_init();
  store_reader_register();
  log_set_level(LOG_ERROR);
  g_store = store_new(); /* never published: every input loads into an empty store */
  g_verbose = getenv("FUZZ_VERBOSE") != NULL;
  return 0;
}

static size_t table_of(uint8_t c) {
  static const char sel[] = "btcITCpiv"; /* same order as tables[] */
  const char *p = c ? strchr(sel, c) : NULL;
  return p ? (size_t)(p - sel) : c % NTABLES;
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  struct load L = {.t = store_begin(g_store)};
  char *fields[MAX_FIELDS] = {0};
  const uint8_t *p = data, *end = data + size;
  L.table = "fuzz";
  while (p < end) {
    const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
    const uint8_t *stop = nl ? nl + 1 : end; /* the row keeps its newline */
    const struct table *tb = &tables[table_of(*p)];
    size_t len = (size_t)(stop - p - 1);
    char *buf = malloc(len + 1); /* row + libpq's terminating NUL, nothing more */
    if (buf == NULL) abort();
    memcpy(buf, p + 1, len);
    buf[len] = '\0';
    int nf = copy_split(buf, len, fields, MAX_FIELDS);
    if (nf > MAX_FIELDS) abort();
    if (nf >= 0) {
      if (nf == 0) abort(); /* a row always has at least one field */
      for (int i = 0; i < nf; i++) {
        if (fields[i] != NULL && (fields[i] < buf || fields[i] > buf + len)) abort();
        parse_values(fields[i]);
      }
      const char *why = NULL;
      int rc = tb->row(&L, fields, nf, &why);
      if (rc != 0 && why == NULL) abort(); /* a rejected row must say why */
      if (g_verbose)
        fprintf(stderr, "fuzz_copy_row: %s nf=%d -> %s\n", tb->name, nf, rc ? why : "ok");
    } else if (g_verbose) {
      fprintf(stderr, "fuzz_copy_row: %s: more than %d fields\n", tb->name, MAX_FIELDS);
    }
    L.rows++;
    free(buf); /* PQfreemem: fields[] now dangles, as in copy_table() */
    p = stop;
  }
  if (g_verbose)
    fprintf(stderr, "fuzz_copy_row: %zu rows, %zu changes\n", L.rows, store_txn_changes(L.t));
  side_free_all(&L.product_side);
  side_free_all(&L.variant_side);
  store_abort(L.t);
  return 0;
}
