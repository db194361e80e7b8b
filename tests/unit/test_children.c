/* Unit tests: the warm load's child index (sync/children.c), fed as the
 * loader feeds it: COPY text rows kept, split in place, then added. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "children.h"
#include "copy_text.h"

#define P1 "aaaaaaaa-0000-4000-8000-000000000001"
#define P2 "aaaaaaaa-0000-4000-8000-000000000002"
#define P3 "aaaaaaaa-0000-4000-8000-000000000003"

/* Keeps a COPY row given as a C string (from a scratch buffer that is then
 * overwritten, as libpq's is freed) and splits it; returns nf. */
static int keep(struct children *c, const char *row, char **f) {
  char scratch[512];
  size_t n = strlen(row);
  assert_true(n < sizeof scratch);
  memcpy(scratch, row, n + 1);
  char *kept = children_keep(c, scratch, n);
  memset(scratch, 'Z', sizeof scratch);
  return copy_split(kept, n, f, 8);
}

/* parent_id, id, url, alt, position, as image_row() adds it. */
static int add_image_row(struct children *c, const char *row) {
  char *f[8];
  struct image_fields im;
  assert_int_equal(keep(c, row, f), 5);
  im = (struct image_fields){.id = f[1], .url = f[2], .alt = f[3]};
  assert_int_equal(copy_i32(f[4], 0, &im.position), 0);
  return children_add(c, CHILDREN_IMAGES, f[0], &im, NULL);
}

static int add_link_row(struct children *c, enum children_kind kind, const char *row) {
  char *f[8];
  assert_int_equal(keep(c, row, f), 2);
  return children_add(c, kind, f[0], NULL, f[1]);
}

static void keeps_nasty_values_byte_for_byte(void **state) {
  (void)state;
  struct children *c = children_new();
  struct children_of got;
  /* COPY text escapes: tab, newline, CR, backslash; and characters that
   * would matter to array or CSV syntax, which COPY text leaves alone. */
  assert_int_equal(add_image_row(c, P1 "\tid-1\thttps://x/a\\tb\\nc\\rd\\\\e.jpg\t\\N\t7\n"), 0);
  assert_int_equal(add_image_row(c, P1 "\tid-2\t{\"q\",u}\tNULL\t-3\n"), 0);
  assert_int_equal(add_image_row(c, P1 "\tid-3\t \t\t0"), 0); /* url " ", alt "" */
  children_get(c, P1, &got);
  assert_int_equal(got.n_images, 3);
  assert_string_equal(got.images[0].id, "id-1");
  assert_string_equal(got.images[0].url, "https://x/a\tb\nc\rd\\e.jpg");
  assert_null(got.images[0].alt);
  assert_int_equal(got.images[0].position, 7);
  assert_string_equal(got.images[1].url, "{\"q\",u}");
  assert_string_equal(got.images[1].alt, "NULL"); /* the text, not a NULL */
  assert_int_equal(got.images[1].position, -3);
  assert_string_equal(got.images[2].url, " ");
  assert_string_equal(got.images[2].alt, "");
  children_free(c);
}

static void gives_each_parent_its_children_in_order(void **state) {
  (void)state;
  struct children *c = children_new();
  struct children_of got;
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, P1 "\ttag-b\n"), 0);
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, P2 "\ttag-x\n"), 0);
  assert_int_equal(add_link_row(c, CHILDREN_COLLECTIONS, P1 "\tcol-1\n"), 0);
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, P1 "\ttag-a\n"), 0);
  assert_int_equal(add_image_row(c, P2 "\tim\tu\t\\N\t1\n"), 0);
  children_get(c, P1, &got);
  assert_int_equal(got.n_images, 0);
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 2);
  assert_string_equal(got.ids[CHILDREN_TAGS][0], "tag-b"); /* as added, not sorted */
  assert_string_equal(got.ids[CHILDREN_TAGS][1], "tag-a");
  assert_int_equal(got.n_ids[CHILDREN_COLLECTIONS], 1);
  assert_string_equal(got.ids[CHILDREN_COLLECTIONS][0], "col-1");
  children_get(c, P2, &got);
  assert_int_equal(got.n_images, 1);
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 1);
  assert_string_equal(got.ids[CHILDREN_TAGS][0], "tag-x");
  assert_int_equal(got.n_ids[CHILDREN_COLLECTIONS], 0);
  children_get(c, P3, &got); /* a parent without children */
  assert_int_equal(got.n_images + got.n_ids[CHILDREN_TAGS] + got.n_ids[CHILDREN_COLLECTIONS], 0);
  children_free(c);
}

static void matches_ids_as_uuids_and_refuses_non_uuids(void **state) {
  (void)state;
  struct children *c = children_new();
  struct children_of got;
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, "AAAAAAAA-0000-4000-8000-00000000000A\tt1"), 0);
  children_get(c, "aaaaaaaa-0000-4000-8000-00000000000a", &got);
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 1); /* same UUID, other letter case */
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, "not-a-uuid\tt2"), -1);
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, "\\N\tt3"), -1);
  assert_int_equal(add_link_row(c, CHILDREN_TAGS, P1 "x\tt4"), -1); /* 37 bytes */
  children_get(c, NULL, &got);
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 0);
  children_get(c, "aaaaaaaa-0000-4000-8000-00000000000", &got); /* 35 bytes */
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 0);
  children_get(c, "aaaaaaaa-0000-4000-8000-00000000000a-", &got); /* 37 bytes */
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 0);
  children_free(c);
}

/* Enough parents and children to grow the table several times and fill
 * more than one node block and row chunk, and one row larger than a
 * chunk; then clear and reuse. */
static void grows_clears_and_is_reusable(void **state) {
  (void)state;
  enum { PARENTS = 70000, KIDS = 4 };
  struct children *c = children_new();
  struct children_of got;
  char row[128], id[40];
  for (int k = 0; k < KIDS; k++)
    for (int p = 0; p < PARENTS; p++) {
      snprintf(row, sizeof row, "aaaaaaaa-0000-4000-8000-%012d\ttag-%d-%d\n", p, p, k);
      assert_int_equal(add_link_row(c, CHILDREN_TAGS, row), 0);
    }
  size_t big = (size_t)5 << 20;
  char *huge = malloc(big + 64);
  assert_non_null(huge);
  int n = snprintf(huge, 64, "%s\tid\t", P1);
  memset(huge + n, 'u', big);
  memcpy(huge + n + big, "\t\\N\t0\n", 7);
  char *kept = children_keep(c, huge, strlen(huge)), *f[8];
  free(huge);
  assert_int_equal(copy_split(kept, strlen(kept), f, 8), 5);
  struct image_fields im = {.id = f[1], .url = f[2], .alt = f[3]};
  assert_int_equal(children_add(c, CHILDREN_IMAGES, f[0], &im, NULL), 0);
  for (int p = 0; p < PARENTS; p += 997) {
    snprintf(id, sizeof id, "aaaaaaaa-0000-4000-8000-%012d", p);
    children_get(c, id, &got);
    assert_int_equal(got.n_ids[CHILDREN_TAGS], KIDS);
    for (int k = 0; k < KIDS; k++) {
      snprintf(row, sizeof row, "tag-%d-%d", p, k);
      assert_string_equal(got.ids[CHILDREN_TAGS][k], row);
    }
  }
  children_get(c, P1, &got);
  assert_int_equal(got.n_images, 1);
  assert_int_equal(strlen(got.images[0].url), big);
  children_clear(c);
  children_get(c, P1, &got);
  assert_int_equal(got.n_images, 0);
  snprintf(id, sizeof id, "aaaaaaaa-0000-4000-8000-%012d", 0);
  children_get(c, id, &got);
  assert_int_equal(got.n_ids[CHILDREN_TAGS], 0);
  assert_int_equal(add_link_row(c, CHILDREN_COLLECTIONS, P1 "\tcol"), 0);
  children_get(c, P1, &got);
  assert_int_equal(got.n_ids[CHILDREN_COLLECTIONS], 1);
  children_free(c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keeps_nasty_values_byte_for_byte),
      cmocka_unit_test(gives_each_parent_its_children_in_order),
      cmocka_unit_test(matches_ids_as_uuids_and_refuses_non_uuids),
      cmocka_unit_test(grows_clears_and_is_reusable),
  };
  children_free(NULL);
  return cmocka_run_group_tests(tests, NULL, NULL);
}
