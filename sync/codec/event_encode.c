/*
 * event_encode.c - builds change events (docs/contract/events.md) from
 * records with jansson.
 */
#include "event_encode.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *str_or_null(const char *s) { return s && s[0] ? json_string(s) : json_null(); }

static json_t *images_json(const struct cat_image *im, uint32_t n) {
  json_t *a = json_array();
  char id[UUID_STR_LEN + 1];
  for (uint32_t i = 0; i < n; i++) {
    uuid_format(im[i].id, id);
    json_array_append_new(a, json_pack("{s:s, s:s, s:o, s:i}", "id", id, "url", im[i].url, "alt",
                                       str_or_null(im[i].alt), "position", im[i].position));
  }
  return a;
}

static json_t *ids_json(const uint8_t (*ids)[16], uint32_t n) {
  json_t *a = json_array();
  char buf[UUID_STR_LEN + 1];
  for (uint32_t i = 0; i < n; i++) {
    uuid_format(ids[i], buf);
    json_array_append_new(a, json_string(buf));
  }
  return a;
}

static json_t *variant_data(const struct cat_variant *v) {
  char id[UUID_STR_LEN + 1], pid[UUID_STR_LEN + 1];
  uuid_format(v->h.key, id);
  uuid_format(v->product_id, pid);
  json_t *d = json_pack(
      "{s:s, s:s, s:s, s:s, s:o, s:s, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:o, s:i, s:i, s:i, "
      "s:s, s:o, s:b, s:i, s:i}",
      "id", id, "organization_id", v->h.org, "product_id", pid, "sku", v->sku, "barcode",
      str_or_null(v->barcode), "status", v->active ? "active" : "inactive", "sale_price",
      v->sale_price, "cost_price", v->cost_price, "tax", v->tax, "weight", v->weight, "dim_length",
      v->length, "dim_width", v->width, "dim_height", v->height, "lot_number",
      str_or_null(v->lot_number), "stock_total", v->stock_total, "stock_available",
      v->stock_available, "stock_reserved", v->stock_reserved, "warehouse_id", v->warehouse_id,
      "vendor", str_or_null(v->vendor), "track_inventory", v->track_inventory, "default_min_stock",
      v->min_stock, "default_max_stock", v->max_stock);
  json_object_set_new(d, "images", images_json(v->images, v->n_images));
  return d;
}

static json_t *product_data(const struct cat_product *p) {
  char id[UUID_STR_LEN + 1], brand[UUID_STR_LEN + 1];
  uuid_format(p->h.key, id);
  if (p->has_brand) uuid_format(p->brand_id, brand);
  json_t *d = json_pack(
      "{s:s, s:s, s:o, s:s, s:s, s:o, s:o, s:s, s:o, s:s, s:i, s:o}", "id", id, "organization_id",
      p->h.org, "local_id", str_or_null(p->local_id), "title", p->title, "sku", p->sku, "barcode",
      str_or_null(p->barcode), "description", str_or_null(p->description), "status", p->status,
      "product_type", str_or_null(p->product_type), "unit_of_measure", p->unit_of_measure,
      "alert_stock", p->alert_stock, "brand_id", p->has_brand ? json_string(brand) : json_null());
  json_object_set_new(d, "images", images_json(p->images, p->n_images));
  json_object_set_new(d, "tag_ids", ids_json(p->tag_ids, p->n_tags));
  json_object_set_new(d, "collection_ids", ids_json(p->collection_ids, p->n_collections));
  return d;
}

static json_t *named_data(const struct cat_named *n) {
  char id[UUID_STR_LEN + 1];
  uuid_format(n->h.key, id);
  json_t *d = json_pack("{s:s, s:s, s:s}", "id", id, "organization_id", n->h.org, "name", n->name);
  if (n->h.kind != CAT_TAG) json_object_set_new(d, "slug", json_string(n->slug));
  if (n->h.kind == CAT_BRAND) json_object_set_new(d, "description", str_or_null(n->description));
  return d;
}

int event_encode(const struct cat_hdr *rec, char **key, char **value) {
  const char *kind = model_kind_name(rec->kind);
  char type[32], evid[64], id[UUID_STR_LEN + 1];
  uuid_format(rec->key, id);
  json_t *data = json_null();
  if (!rec->deleted) {
    if (rec->kind == CAT_VARIANT)
      data = variant_data((const struct cat_variant *)rec);
    else if (rec->kind == CAT_PRODUCT)
      data = product_data((const struct cat_product *)rec);
    else
      data = named_data((const struct cat_named *)rec);
  }
  snprintf(type, sizeof type, "%s.%s", kind, rec->deleted ? "deleted" : "upserted");
  snprintf(evid, sizeof evid, "%s-%s-%lld", kind, id, (long long)rec->version);
  json_t *ev =
      json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:o}", "event_id", evid, "event_type", type,
                "organization_id", rec->org, "entity_id", id, "version", (json_int_t)rec->version,
                "occurred_at", "2026-01-01T00:00:00Z", "data", data);
  *value = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
  json_decref(ev);
  size_t klen = strlen(rec->org) + strlen(kind) + UUID_STR_LEN + 3;
  *key = malloc(klen);
  if (*key) snprintf(*key, klen, "%s/%s/%s", rec->org, kind, id);
  if (*key == NULL || *value == NULL) {
    free(*key);
    free(*value);
    return -ENOMEM;
  }
  return 0;
}
