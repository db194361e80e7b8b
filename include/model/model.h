/*
 * model.h - the catalog's immutable records, as stored in snapshots.
 *
 * A record is one allocation: the struct, then its key, strings and arrays
 * packed behind it, so freeing it is one free() and reading it touches few
 * cache lines. Records are built by model_*_new() from "fields" structs that
 * the PostgreSQL loader and the event decoder both fill, and are never
 * modified once handed to the store; snapshots share them.
 *
 * Every record starts with struct cat_hdr. Its key is the 16 bytes of the
 * entity's UUID followed by the organization id (not NUL-terminated in the
 * key length, but a NUL follows it, so hdr.org is a C string): lookups are
 * always scoped by tenant, byte for byte.
 *
 * Absent (NULL) text columns are stored as "", absent numbers as 0, which is
 * what the proto3 contract sends for them anyway.
 */
#ifndef CATALOGD_MODEL_H
#define CATALOGD_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAT_ORG_MAX  255 /* bytes; longer organization ids are rejected */
#define UUID_STR_LEN 36

/* The entity kinds (what the schema's tables and the change events name)
 * come first, then the derived indexes the store builds. A new entity kind
 * goes before CAT_ENTITY_KINDS, with its name in model.c's kind_names. */
enum cat_kind {
  CAT_VARIANT = 0,
  CAT_PRODUCT,
  CAT_BRAND,
  CAT_TAG,
  CAT_COLLECTION,
  CAT_ENTITY_KINDS,                        /* how many entity kinds there are; not a kind */
  CAT_PRODUCT_VARIANTS = CAT_ENTITY_KINDS, /* derived index: product -> its variants' ids */
  CAT_KIND_COUNT
};

struct cat_hdr {
  const uint8_t *key; /* id[16] then org bytes */
  uint32_t keylen;    /* 16 + strlen(org) */
  uint8_t kind;       /* enum cat_kind */
  bool deleted;       /* a tombstone: keeps the version, hides the entity */
  bool unversioned;   /* a tombstone from a versionless Kafka tombstone (see store_delete) */
  int64_t version;    /* the row's version column; 0 for derived records */
  uint64_t gen;       /* store generation that built it (writer only) */
  const char *org;    /* NUL-terminated, inside key */
};

/* Ids are kept binary only (the key's first 16 bytes for a record):
 * replies format them with uuid_format() when they are built, which costs
 * less than the 45 bytes per id that text would add to every record. */
struct cat_image {
  uint8_t id[16];
  int32_t position;
  const char *url, *alt;
};

struct cat_variant {
  struct cat_hdr h;
  uint8_t product_id[16];
  const char *sku, *barcode, *warehouse_id, *lot_number, *vendor;
  double sale_price, cost_price, tax, weight, length, width, height;
  int32_t stock_total, stock_available, stock_reserved, min_stock, max_stock;
  bool active; /* status == "active" */
  bool track_inventory;
  uint32_t n_images;
  const struct cat_image *images; /* sorted by position, then id */
};

struct cat_product {
  struct cat_hdr h;
  const char *local_id, *title, *sku, *barcode, *description, *status;
  const char *product_type, *unit_of_measure;
  int32_t alert_stock;
  bool active; /* status == "activa" */
  bool has_brand;
  uint8_t brand_id[16];
  uint32_t n_images, n_tags, n_collections;
  const struct cat_image *images; /* sorted by position, then id */
  const uint8_t (*tag_ids)[16];
  const uint8_t (*collection_ids)[16];
};

/* Brands, tags and collections share one shape; unused strings are "". */
struct cat_named {
  struct cat_hdr h;
  const char *name, *slug, *description;
};

/* Derived index record: the ids of a product's live variants, sorted. */
struct cat_idlist {
  struct cat_hdr h;
  uint32_t n, cap;
  uint8_t (*ids)[16];
};

/* ---- Inputs to the builders: borrowed C strings, NULL meaning absent. ----
 *
 * Ids come as UUID text (rows, events), or, from a source that holds them
 * binary (a checkpoint), as 16 bytes in the *_bin field, which then wins
 * over the text (left NULL): no format-and-parse round trip. Images' ids
 * come binary in image_ids_bin[i] (then images[i].id is not read), so that
 * struct image_fields, which the warm load's child index holds by the
 * million, keeps its size. */

struct image_fields {
  const char *id, *url, *alt;
  int32_t position;
};

struct variant_fields {
  const char *id, *org, *product_id, *sku, *barcode, *status, *lot_number;
  const char *warehouse_id, *vendor;
  double sale_price, cost_price, tax, weight, length, width, height;
  int32_t stock_total, stock_available, stock_reserved, min_stock, max_stock;
  bool track_inventory;
  int64_t version;
  const struct image_fields *images;
  size_t n_images;
  const uint8_t *id_bin, *product_id_bin; /* or NULL: id, product_id are text */
  const uint8_t (*image_ids_bin)[16];     /* or NULL: images[i].id is text */
};

struct product_fields {
  const char *id, *org, *local_id, *title, *sku, *barcode, *description;
  const char *status, *product_type, *unit_of_measure, *brand_id;
  int32_t alert_stock;
  int64_t version;
  const struct image_fields *images;
  size_t n_images;
  const char *const *tag_ids;
  size_t n_tags;
  const char *const *collection_ids;
  size_t n_collections;
  const uint8_t *id_bin, *brand_id_bin; /* or NULL: id, brand_id (NULL: none) are text */
  const uint8_t (*image_ids_bin)[16];   /* or NULL: images[i].id is text */
  /* Or NULL: tag_ids, collection_ids are text. */
  const uint8_t (*tag_ids_bin)[16], (*collection_ids_bin)[16];
};

struct named_fields {
  const char *id, *org, *name, *slug, *description;
  int64_t version;
  const uint8_t *id_bin; /* or NULL: id is text */
};

/*
 * Builders. Each validates what the schema promises (UUIDs parse, required
 * fields present, org non-empty and at most CAT_ORG_MAX bytes) and returns a
 * new record, or NULL with *why set to a static description of the first
 * violation. NULL means a schema violation and nothing else: running out of
 * memory aborts the process (xalloc.h), so a caller may treat NULL as a bad
 * row or event without ever dropping a good one. The caller owns the record
 * and frees it with model_free(), unless it hands it to the store, which
 * then owns it.
 */
struct cat_variant *model_variant_new(const struct variant_fields *f, const char **why);
struct cat_product *model_product_new(const struct product_fields *f, const char **why);
struct cat_named *model_named_new(enum cat_kind kind, const struct named_fields *f,
                                  const char **why);

/* A tombstone for (kind, id, org) at version; NULL only if orglen is 0 or
 * over CAT_ORG_MAX (out of memory aborts). */
struct cat_hdr *model_tombstone_new(enum cat_kind kind, const uint8_t id[16], const char *org,
                                    size_t orglen, int64_t version);

/* An id list for product (id, org) with room for cap ids, n = 0; NULL only
 * if orglen is 0 or over CAT_ORG_MAX (out of memory aborts). */
struct cat_idlist *model_idlist_new(const uint8_t id[16], const char *org, size_t orglen,
                                    uint32_t cap);

/* The name of an entity kind as keys, event types and metrics write it
 * ("variant", "product", "brand", "tag", "collection"); "?" for anything
 * that is not an entity kind (a derived index, a bad value). Static. */
const char *model_kind_name(enum cat_kind kind);

/* Parses an entity kind's name, exactly the n bytes at s. Returns 0 and
 * sets *out, or -1 if s names no entity kind. */
int model_kind_parse(const char *s, size_t n, enum cat_kind *out);

/* Frees any record; NULL is a no-op. */
void model_free(struct cat_hdr *h);

/* Builds the lookup key (id then org) into buf (>= 16 + CAT_ORG_MAX bytes).
 * Returns the key length, or 0 if orglen is 0 or over CAT_ORG_MAX. */
size_t model_key(uint8_t *buf, const uint8_t id[16], const char *org, size_t orglen);

/* ---- UUIDs ---- */

/* Parses the canonical 8-4-4-4-12 hex form, any letter case, exactly len
 * bytes. Returns 0, or -1 if s is not a UUID. */
int uuid_parse(const char *s, size_t len, uint8_t out[16]);

/* Writes the canonical lower-case form and a NUL (37 bytes). */
void uuid_format(const uint8_t id[16], char out[UUID_STR_LEN + 1]);

#endif
