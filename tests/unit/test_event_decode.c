/* Unit tests: change-event decoding (event_decode.c) and its inverse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_decode.h"
#include "event_encode.h"

#define VID "9b2f0c1e-aaaa-4bbb-8ccc-0123456789ab"
#define PID "11111111-aaaa-4bbb-8ccc-0123456789ab"
#define KEY "org_1/variant/" VID

static int decode(const char *key, const char *value, struct event *ev, const char **why) {
  return event_decode(key, strlen(key), value, value ? strlen(value) : 0, ev, why);
}

/* Returns one of 16 rotating buffers, so several results can coexist. */
static const char *variant_json(const char *extra_data, const char *price) {
  static char bufs[16][2048];
  static unsigned next;
  char *buf = bufs[next++ % 16];
  snprintf(buf, sizeof bufs[0],
           "{\"event_id\":\"e1\",\"event_type\":\"variant.upserted\",\"organization_id\":"
           "\"org_1\",\"entity_id\":\"" VID "\",\"version\":7,\"occurred_at\":"
           "\"2026-01-01T00:00:00Z\",\"data\":{\"id\":\"" VID "\",\"product_id\":\"" PID
           "\",\"sku\":\"S1\",\"status\":\"active\",\"sale_price\":%s,\"warehouse_id\":\"W\","
           "\"images\":[{\"id\":\"" PID "\",\"url\":\"u\",\"alt\":null,\"position\":3}]%s}}",
           price, extra_data);
  return buf;
}

static void upsert_with_decimal_string_or_number(void **state) {
  (void)state;
  struct event ev;
  const char *why;
  const char *prices[] = {"29.99", "\"29.99\""};
  for (int i = 0; i < 2; i++) {
    assert_int_equal(decode(KEY, variant_json("", prices[i]), &ev, &why), 0);
    assert_int_equal(ev.op, EVENT_UPSERT);
    assert_int_equal(ev.kind, CAT_VARIANT);
    assert_int_equal(ev.version, 7);
    assert_string_equal(ev.event_id, "e1");
    const struct cat_variant *v = (const struct cat_variant *)ev.record;
    assert_true(v->sale_price == 29.99);
    assert_true(v->active && v->track_inventory); /* track_inventory defaults to true */
    assert_int_equal(v->n_images, 1);
    assert_string_equal(v->h.org, "org_1");
    model_free(ev.record);
  }
}

static void tombstone_and_deleted(void **state) {
  (void)state;
  struct event ev;
  const char *why;
  assert_int_equal(decode(KEY, NULL, &ev, &why), 0);
  assert_int_equal(ev.op, EVENT_DELETE);
  assert_int_equal(ev.version, 0);
  assert_null(ev.record);
  const char *del = "{\"event_type\":\"variant.deleted\",\"organization_id\":\"org_1\","
                    "\"entity_id\":\"" VID "\",\"version\":9,\"data\":null}";
  assert_int_equal(decode(KEY, del, &ev, &why), 0);
  assert_int_equal(ev.op, EVENT_DELETE);
  assert_int_equal(ev.version, 9);
  /* The key's id is matched case-insensitively. */
  assert_int_equal(decode("org_1/variant/9B2F0C1E-AAAA-4BBB-8CCC-0123456789AB", del, &ev, &why), 0);
}

static void rejects_bad_events(void **state) {
  (void)state;
  struct event ev;
  const char *why;
  struct {
    const char *key, *value, *why;
  } bad[] = {
      {KEY, "{not json", "value is not valid JSON"},
      {KEY, "[]", "value is not a JSON object"},
      {"org_1/variant", variant_json("", "1"), "key is not <org>/<type>/<id>"},
      {"org_1/widget/" VID, variant_json("", "1"), "key entity type unknown"},
      {"org_1/variant/nope", variant_json("", "1"), "key id is not a UUID"},
      {"org_2/variant/" VID, variant_json("", "1"), "organization_id does not match the key"},
      {"org_1/product/" VID, variant_json("", "1"), "event_type does not match the key"},
      {"org_1/variant/" PID, variant_json("", "1"), "entity_id does not match the key"},
      {KEY, variant_json(",\"stock_total\":\"many\"", "1"),
       "variant data has a missing or mistyped field"},
      {KEY, variant_json(",\"organization_id\":\"org_2\"", "1"), "data organization_id differs"},
      {KEY, variant_json("", "\"abc\""), "variant data has a missing or mistyped field"},
      {KEY,
       "{\"event_type\":\"variant.exploded\",\"organization_id\":\"org_1\",\"entity_id\":\"" VID
       "\",\"version\":1}",
       "unknown event_type"},
      {KEY,
       "{\"event_type\":\"variant.upserted\",\"organization_id\":\"org_1\",\"entity_id\":\"" VID
       "\"}",
       "version missing"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_not_equal(decode(bad[i].key, bad[i].value, &ev, &why), 0);
    assert_string_equal(why, bad[i].why);
    assert_null(ev.record);
  }
  assert_int_not_equal(event_decode(NULL, 0, "{}", 2, &ev, &why), 0);
  /* A NUL inside the key's organization would alias another tenant. */
  static const char nulkey[] = "org\0x/variant/" VID;
  assert_int_not_equal(event_decode(nulkey, sizeof nulkey - 1, NULL, 0, &ev, &why), 0);
}

/* Found by fuzzing: an organization id may contain '/' (PostgreSQL accepts
 * it), so the key is parsed from the right. */
static void organization_with_slash(void **state) {
  (void)state;
  struct event ev;
  const char *why;
  const char *del = "{\"event_type\":\"variant.deleted\",\"organization_id\":\"acme/eu\","
                    "\"entity_id\":\"" VID "\",\"version\":2,\"data\":null}";
  assert_int_equal(decode("acme/eu/variant/" VID, del, &ev, &why), 0);
  assert_string_equal(ev.org, "acme/eu");
  assert_int_equal(ev.kind, CAT_VARIANT);
}

static void encode_then_decode_round_trips(void **state) {
  (void)state;
  struct event ev, ev2;
  const char *why;
  char *key, *value;
  assert_int_equal(decode(KEY, variant_json(",\"vendor\":\"V\"", "\"12.50\""), &ev, &why), 0);
  assert_int_equal(event_encode(ev.record, &key, &value), 0);
  assert_string_equal(key, KEY);
  assert_int_equal(decode(key, value, &ev2, &why), 0);
  const struct cat_variant *a = (const void *)ev.record, *b = (const void *)ev2.record;
  assert_string_equal(a->vendor, b->vendor);
  assert_true(a->sale_price == b->sale_price);
  assert_int_equal(a->h.version, b->h.version);
  free(key);
  free(value);
  model_free(ev.record);
  model_free(ev2.record);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(upsert_with_decimal_string_or_number),
      cmocka_unit_test(tombstone_and_deleted),
      cmocka_unit_test(rejects_bad_events),
      cmocka_unit_test(organization_with_slash),
      cmocka_unit_test(encode_then_decode_round_trips),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
