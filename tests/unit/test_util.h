/* Helpers shared by the unit tests: building records tersely. */
#ifndef CATALOGD_TEST_UTIL_H
#define CATALOGD_TEST_UTIL_H

#include <stdio.h>

#include "model.h"

/* A deterministic UUID text for (kind, n). */
static inline const char *tid(unsigned kind, unsigned n, char buf[37]) {
  snprintf(buf, 37, "%08x-0000-4000-8000-%012x", kind, n);
  return buf;
}

static inline struct cat_hdr *mk_variant(const char *org, unsigned n, unsigned product,
                                         int64_t version, const char *status) {
  char id[37], pid[37];
  const char *why;
  struct variant_fields f = {.id = tid(0xd2, n, id),
                             .org = org,
                             .product_id = tid(0xd1, product, pid),
                             .sku = "SKU",
                             .status = status,
                             .warehouse_id = "WH",
                             .version = version,
                             .sale_price = 9.99};
  struct cat_variant *v = model_variant_new(&f, &why);
  return v ? &v->h : NULL;
}

static inline struct cat_hdr *mk_product(const char *org, unsigned n, int64_t version,
                                         const char *status) {
  char id[37];
  const char *why;
  struct product_fields f = {.id = tid(0xd1, n, id),
                             .org = org,
                             .title = "T",
                             .sku = "P",
                             .status = status,
                             .version = version};
  struct cat_product *p = model_product_new(&f, &why);
  return p ? &p->h : NULL;
}

static inline const uint8_t *bid(unsigned kind, unsigned n, uint8_t out[16]) {
  char buf[37];
  tid(kind, n, buf);
  uuid_parse(buf, 36, out);
  return out;
}

#endif
