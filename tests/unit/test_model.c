/* Unit tests: UUID parsing and the record builders (model.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <ctype.h>
#include <string.h>

#include "model.h"
#include "test_util.h"

static void uuid_accepts_any_case(void **state) {
  (void)state;
  uint8_t a[16], b[16];
  char out[37];
  assert_int_equal(uuid_parse("9B2F0C1E-AAAA-4bbb-8ccc-0123456789ab", 36, a), 0);
  assert_int_equal(uuid_parse("9b2f0c1e-aaaa-4BBB-8CCC-0123456789AB", 36, b), 0);
  assert_memory_equal(a, b, 16);
  uuid_format(a, out);
  assert_string_equal(out, "9b2f0c1e-aaaa-4bbb-8ccc-0123456789ab");
}

static void uuid_rejects_non_uuids(void **state) {
  (void)state;
  uint8_t a[16];
  const char *bad[] = {"",
                       "x",
                       "9b2f0c1e-aaaa-4bbb-8ccc-0123456789a",
                       "9b2f0c1e-aaaa-4bbb-8ccc-0123456789abc",
                       "9b2f0c1eaaaa-4bbb-8ccc-0123456789ab-",
                       "9b2f0c1e-aaaa-4bbb-8ccc_0123456789ab",
                       "gb2f0c1e-aaaa-4bbb-8ccc-0123456789ab",
                       "9b2f0c1e-aaaa-4bbb-8ccc-0123456789a\xff"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(uuid_parse(bad[i], strlen(bad[i]), a), -1);
  /* Every byte value in a digit position (first and last): only hex digits. */
  char s[] = "9b2f0c1e-aaaa-4bbb-8ccc-0123456789ab";
  for (int c = 0; c < 256; c++) {
    int want = isxdigit(c) ? 0 : -1;
    s[0] = (char)c, s[35] = 'b';
    assert_int_equal(uuid_parse(s, 36, a), want);
    s[0] = '9', s[35] = (char)c;
    assert_int_equal(uuid_parse(s, 36, a), want);
  }
}

/* Every hex position, every byte: exactly 0-9, a-f and A-F parse, to the
 * right nibble; anything else (the neighbours of those ranges included) is
 * refused wherever it stands, and a refused id leaves out untouched. */
static void uuid_every_digit_and_byte(void **state) {
  (void)state;
  const char *base = "00000000-0000-0000-0000-000000000000";
  char s[37];
  uint8_t out[16], keep[16];
  for (size_t pos = 0; pos < 36; pos++) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) continue;
    size_t digit = pos - (pos > 8) - (pos > 13) - (pos > 18) - (pos > 23);
    for (int c = 0; c < 256; c++) {
      memcpy(s, base, 37);
      s[pos] = (char)c;
      memset(out, 0x5a, 16), memset(keep, 0x5a, 16);
      int v = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      int rc = uuid_parse(s, 36, out);
      if (v < 0) {
        assert_int_equal(rc, -1);
        assert_memory_equal(out, keep, 16);
        continue;
      }
      assert_int_equal(rc, 0);
      for (size_t i = 0; i < 16; i++) {
        int want = i == digit / 2 ? v << (digit % 2 ? 0 : 4) : 0;
        assert_int_equal(out[i], want);
      }
    }
  }
}

static void variant_fields_and_defaults(void **state) {
  (void)state;
  char id[37], pid[37], i1[37], i2[37], i3[37];
  const char *why = NULL;
  struct image_fields ims[3] = {{tid(0xe2, 3, i3), "u3", NULL, 2},
                                {tid(0xe2, 2, i2), "u2", "alt", 1},
                                {tid(0xe2, 1, i1), "u1", NULL, 1}};
  struct variant_fields f = {.id = tid(0xd2, 1, id),
                             .org = "org_a",
                             .product_id = tid(0xd1, 1, pid),
                             .sku = "S1",
                             .status = "active",
                             .warehouse_id = "W",
                             .sale_price = 29.99,
                             .version = 7,
                             .images = ims,
                             .n_images = 3};
  struct cat_variant *v = model_variant_new(&f, &why);
  assert_non_null(v);
  assert_string_equal(v->h.org, "org_a");
  assert_int_equal(v->h.keylen, 16 + 5);
  char text[UUID_STR_LEN + 1];
  uuid_format(v->h.key, text);
  assert_string_equal(text, id);
  assert_string_equal(v->barcode, ""); /* NULL column -> "" */
  assert_true(v->active);
  assert_true(v->sale_price == 29.99);
  assert_int_equal(v->h.version, 7);
  /* Sorted by position, then id. */
  assert_int_equal(v->n_images, 3);
  assert_string_equal(v->images[0].url, "u1");
  assert_string_equal(v->images[1].url, "u2");
  assert_string_equal(v->images[1].alt, "alt");
  assert_string_equal(v->images[2].url, "u3");
  model_free(&v->h);
}

static void variant_rejections(void **state) {
  (void)state;
  char id[37], pid[37], longorg[300];
  const char *why = NULL;
  struct variant_fields f = {.id = "nope",
                             .org = "o",
                             .product_id = tid(0xd1, 1, pid),
                             .sku = "S",
                             .status = "active",
                             .warehouse_id = "W"};
  assert_null(model_variant_new(&f, &why));
  assert_string_equal(why, "id is not a UUID");
  f.id = tid(0xd2, 1, id);
  f.sku = NULL;
  assert_null(model_variant_new(&f, &why));
  assert_string_equal(why, "sku is missing");
  f.sku = "S";
  f.org = "";
  assert_null(model_variant_new(&f, &why));
  memset(longorg, 'a', sizeof longorg - 1);
  longorg[sizeof longorg - 1] = '\0';
  f.org = longorg;
  assert_null(model_variant_new(&f, &why));
  assert_string_equal(why, "organization_id is too long");
  f.org = "o";
  f.status = "inactive";
  struct cat_variant *v = model_variant_new(&f, &why);
  assert_non_null(v);
  assert_false(v->active);
  model_free(&v->h);
}

static void product_with_links(void **state) {
  (void)state;
  char id[37], b[37], t1[37], c1[37];
  const char *why = NULL;
  const char *tags[] = {tid(0xc0, 1, t1)}, *cols[] = {tid(0xc1, 1, c1)}, *badtags[] = {"x"};
  struct product_fields f = {.id = tid(0xd1, 1, id),
                             .org = "org_a",
                             .title = "T",
                             .sku = "P",
                             .status = "activa",
                             .brand_id = tid(0xb0, 1, b),
                             .tag_ids = tags,
                             .n_tags = 1,
                             .collection_ids = cols,
                             .n_collections = 1};
  struct cat_product *p = model_product_new(&f, &why);
  assert_non_null(p);
  assert_true(p->active && p->has_brand);
  assert_int_equal(p->n_tags, 1);
  uint8_t x[16];
  assert_memory_equal(p->tag_ids[0], bid(0xc0, 1, x), 16);
  assert_memory_equal(p->collection_ids[0], bid(0xc1, 1, x), 16);
  assert_memory_equal(p->brand_id, bid(0xb0, 1, x), 16);
  model_free(&p->h);
  f.status = "borrador";
  f.brand_id = NULL;
  p = model_product_new(&f, &why);
  assert_false(p->active || p->has_brand);
  model_free(&p->h);
  f.tag_ids = badtags;
  assert_null(model_product_new(&f, &why));
}

/* Ids given binary (as a checkpoint holds them) build the same records as
 * their text: keys, product and brand ids, links, and the images' order
 * (same position: sorted by id, bytes against text). */
static void binary_ids_build_the_same_records(void **state) {
  (void)state;
  char id[37], pid[37], i1[37], i2[37], b[37], t1[37], c1[37];
  uint8_t bi[16], bp[16], bim[2][16], bb[16], bt[1][16], bc[1][16];
  const char *why = NULL;
  /* Same position: sorted by id, whose first bytes order them against the
   * order given (and the text in upper case for one). */
  struct image_fields txt[2] = {{tid(0xf0, 2, i2), "u2", NULL, 1},
                                {tid(0x10, 1, i1), "u1", NULL, 1}};
  for (char *c = i2; *c; c++)
    *c = (char)toupper((unsigned char)*c);
  struct image_fields bin[2] = {{NULL, "u2", NULL, 1}, {NULL, "u1", NULL, 1}};
  bid(0xf0, 2, bim[0]), bid(0x10, 1, bim[1]);
  struct variant_fields f = {.id = tid(0xd2, 1, id),
                             .org = "o",
                             .product_id = tid(0xd1, 1, pid),
                             .sku = "S",
                             .status = "active",
                             .warehouse_id = "W",
                             .images = txt,
                             .n_images = 2};
  struct variant_fields g = f;
  g.id = g.product_id = NULL, g.id_bin = bid(0xd2, 1, bi), g.product_id_bin = bid(0xd1, 1, bp);
  g.images = bin, g.image_ids_bin = (const uint8_t(*)[16])bim;
  struct cat_variant *v = model_variant_new(&f, &why), *w = model_variant_new(&g, &why);
  assert_non_null(v);
  assert_non_null(w);
  assert_memory_equal(v->h.key, w->h.key, v->h.keylen);
  assert_memory_equal(v->product_id, w->product_id, 16);
  for (int i = 0; i < 2; i++) {
    assert_memory_equal(v->images[i].id, w->images[i].id, 16);
    assert_string_equal(v->images[i].url, w->images[i].url);
  }
  assert_string_equal(w->images[0].url, "u1");
  model_free(&v->h), model_free(&w->h);

  const char *tags[] = {tid(0xc0, 1, t1)}, *cols[] = {tid(0xc1, 1, c1)};
  struct product_fields p = {.id = id,
                             .org = "o",
                             .title = "T",
                             .sku = "P",
                             .status = "activa",
                             .brand_id = tid(0xb0, 1, b),
                             .tag_ids = tags,
                             .n_tags = 1,
                             .collection_ids = cols,
                             .n_collections = 1};
  struct product_fields q = p;
  q.id = q.brand_id = NULL, q.tag_ids = q.collection_ids = NULL;
  q.id_bin = bi, q.brand_id_bin = bid(0xb0, 1, bb);
  bid(0xc0, 1, bt[0]), bid(0xc1, 1, bc[0]);
  q.tag_ids_bin = (const uint8_t(*)[16])bt, q.collection_ids_bin = (const uint8_t(*)[16])bc;
  struct cat_product *x = model_product_new(&p, &why), *y = model_product_new(&q, &why);
  assert_non_null(x);
  assert_non_null(y);
  assert_memory_equal(x->h.key, y->h.key, x->h.keylen);
  assert_true(y->has_brand);
  assert_memory_equal(x->brand_id, y->brand_id, 16);
  assert_memory_equal(x->tag_ids[0], y->tag_ids[0], 16);
  assert_memory_equal(x->collection_ids[0], y->collection_ids[0], 16);
  model_free(&x->h), model_free(&y->h);

  struct named_fields n = {.org = "o", .name = "n", .slug = "s", .id_bin = bi};
  struct cat_named *m = model_named_new(CAT_BRAND, &n, &why);
  assert_non_null(m);
  assert_memory_equal(m->h.key, bi, 16);
  model_free(&m->h);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(uuid_accepts_any_case),
      cmocka_unit_test(uuid_rejects_non_uuids),
      cmocka_unit_test(variant_fields_and_defaults),
      cmocka_unit_test(variant_rejections),
      cmocka_unit_test(product_with_links),
      cmocka_unit_test(uuid_every_digit_and_byte),
      cmocka_unit_test(binary_ids_build_the_same_records),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
