/*
 * event_decode_compare.c - compares event_decode() against the jansson
 * oracle (event_decode_oracle.h): same verdict, same reason, same event
 * fields and an equal record, field by field. Any difference is a
 * behaviour change a producer or the dead-letter topic would see.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "event_decode_oracle.h"

static _Thread_local char g_diff[512];

/* Formats the difference into g_diff and returns it. */
static const char *diff(const char *what, const char *a, const char *b) {
  snprintf(g_diff, sizeof g_diff, "%.60s: new \"%.200s\", oracle \"%.200s\"", what,
           a ? a : "(null)", b ? b : "(null)");
  return g_diff;
}

#define SAME_STR(x, y, f)                                                                          \
  do {                                                                                             \
    if (strcmp((x)->f, (y)->f) != 0) return diff(#f, (x)->f, (y)->f);                              \
  } while (0)
#define SAME_BITS(x, y, f)                                                                         \
  do {                                                                                             \
    if (memcmp(&(x)->f, &(y)->f, sizeof(x)->f) != 0) return diff(#f, "bits differ", "");           \
  } while (0)

static const char *same_images(const struct cat_image *a, const struct cat_image *b, uint32_t n) {
  for (uint32_t i = 0; i < n; i++) {
    SAME_BITS(&a[i], &b[i], id);
    SAME_STR(&a[i], &b[i], url);
    SAME_STR(&a[i], &b[i], alt);
    SAME_BITS(&a[i], &b[i], position);
  }
  return NULL;
}

static const char *same_variant(const struct cat_variant *x, const struct cat_variant *y) {
  SAME_BITS(x, y, product_id);
  SAME_STR(x, y, sku);
  SAME_STR(x, y, barcode);
  SAME_STR(x, y, warehouse_id);
  SAME_STR(x, y, lot_number);
  SAME_STR(x, y, vendor);
  SAME_BITS(x, y, sale_price);
  SAME_BITS(x, y, cost_price);
  SAME_BITS(x, y, tax);
  SAME_BITS(x, y, weight);
  SAME_BITS(x, y, length);
  SAME_BITS(x, y, width);
  SAME_BITS(x, y, height);
  SAME_BITS(x, y, stock_total);
  SAME_BITS(x, y, stock_available);
  SAME_BITS(x, y, stock_reserved);
  SAME_BITS(x, y, min_stock);
  SAME_BITS(x, y, max_stock);
  SAME_BITS(x, y, active);
  SAME_BITS(x, y, track_inventory);
  SAME_BITS(x, y, n_images);
  return same_images(x->images, y->images, x->n_images);
}

static const char *same_product(const struct cat_product *x, const struct cat_product *y) {
  SAME_STR(x, y, local_id);
  SAME_STR(x, y, title);
  SAME_STR(x, y, sku);
  SAME_STR(x, y, barcode);
  SAME_STR(x, y, description);
  SAME_STR(x, y, status);
  SAME_STR(x, y, product_type);
  SAME_STR(x, y, unit_of_measure);
  SAME_BITS(x, y, alert_stock);
  SAME_BITS(x, y, active);
  SAME_BITS(x, y, has_brand);
  SAME_BITS(x, y, brand_id);
  SAME_BITS(x, y, n_images);
  SAME_BITS(x, y, n_tags);
  SAME_BITS(x, y, n_collections);
  if (memcmp(x->tag_ids, y->tag_ids, 16 * (size_t)x->n_tags) != 0)
    return diff("tag_ids", "differ", "");
  if (memcmp(x->collection_ids, y->collection_ids, 16 * (size_t)x->n_collections) != 0)
    return diff("collection_ids", "differ", "");
  return same_images(x->images, y->images, x->n_images);
}

static const char *same_named(const struct cat_named *x, const struct cat_named *y) {
  SAME_STR(x, y, name);
  SAME_STR(x, y, slug);
  SAME_STR(x, y, description);
  return NULL;
}

/* Compares two records of any kind; NULL if equal. */
static const char *same_record(const struct cat_hdr *a, const struct cat_hdr *b) {
  if (a == NULL || b == NULL) return a == b ? NULL : diff("record", a ? "set" : "NULL", "");
  if (a->kind != b->kind || a->version != b->version || a->deleted != b->deleted ||
      a->keylen != b->keylen || memcmp(a->key, b->key, a->keylen) != 0)
    return diff("record header", "differs", "");
  SAME_STR(a, b, org);
  if (a->kind == CAT_VARIANT) return same_variant((const void *)a, (const void *)b);
  if (a->kind == CAT_PRODUCT) return same_product((const void *)a, (const void *)b);
  return same_named((const void *)a, (const void *)b);
}

/* Compares the event fields (not the record). */
static const char *same_event(const struct event *a, const struct event *b) {
  if (a->op != b->op) return diff("op", "differs", "");
  if (a->kind_known != b->kind_known || (a->kind_known && a->kind != b->kind))
    return diff("kind", "differs", "");
  if (memcmp(a->id, b->id, 16) != 0) return diff("id", "differs", "");
  SAME_STR(a, b, org);
  if (a->version != b->version) return diff("version", "differs", "");
  SAME_STR(a, b, event_id);
  return NULL;
}

const char *oracle_compare(const char *key, size_t keylen, const char *value, size_t valuelen,
                           int rc, const char *why, const struct event *ev) {
  struct event old;
  const char *old_why = NULL, *d = NULL;
  int old_rc = oracle_event_decode(key, keylen, value, valuelen, &old, &old_why);
  if ((rc == 0) != (old_rc == 0))
    d = diff("verdict", rc == 0 ? "accepted" : why, old_rc == 0 ? "accepted" : old_why);
  else if (rc != 0 && strcmp(why, old_why) != 0)
    d = diff("reason", why, old_why);
  else if ((d = same_event(ev, &old)) == NULL)
    d = same_record(ev->record, old.record);
  model_free(old.record);
  return d;
}
