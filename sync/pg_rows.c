/*
 * pg_rows.c - the warm load's row mapping (see pg_rows.h): one handler per
 * COPY, from a row's fields to a record put into the store transaction, or,
 * for images and tag and collection links, to the child index the products
 * and variants take them from; and the list of tables in load order.
 *
 * The handlers check what the schema promises (a version >= 1, numbers that
 * parse) and leave the rest to the builders (model.h), which the change
 * events use too, so both paths give the same records. copy_table() in
 * pg_load.c has checked the column count and UTF-8 before a handler runs.
 */
#include "pg_rows.h"

#include "copy_text.h"

/* A row version: present and >= 1, as change events require too. */
static int copy_version(const char *s, int64_t *out) {
  return s != NULL && copy_i64(s, 0, out) == 0 && *out >= 1 ? 0 : -1;
}

/* parent_id, id, url, alt, position (a kept row: the strings stay) */
static int image_row(struct children *kids, char **f, int nf, const char **why) {
  struct image_fields im;
  if (nf != 5 || copy_i32(f[4], 0, &im.position) != 0 || f[1] == NULL || f[2] == NULL) {
    *why = "bad image row";
    return -1;
  }
  im.id = f[1], im.url = f[2], im.alt = f[3];
  if (children_add(kids, CHILDREN_IMAGES, f[0], &im, NULL) != 0) {
    *why = "image parent id is not a UUID";
    return -1;
  }
  return 0;
}

static int product_image_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return image_row(rows->product_kids, f, nf, why);
}

static int variant_image_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return image_row(rows->variant_kids, f, nf, why);
}

/* product_id, tag_id  /  product_id, collection_id (a kept row) */
static int link_row(struct pgrows *rows, char **f, int nf, const char **why,
                    enum children_kind kind) {
  if (nf != 2 || f[1] == NULL || children_add(rows->product_kids, kind, f[0], NULL, f[1]) != 0) {
    *why = "bad link row";
    return -1;
  }
  return 0;
}

static int product_tag_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return link_row(rows, f, nf, why, CHILDREN_TAGS);
}

static int product_collection_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return link_row(rows, f, nf, why, CHILDREN_COLLECTIONS);
}

/* Puts a built record; NULL means the builder refused it (and set why):
 * the row breaks the schema, and is skipped and counted as a bad row. Never
 * a lack of memory: the builders abort on that (xalloc.h), so a load that
 * publishes has every row the schema allows. */
static int put_record(struct pgrows *rows, struct cat_hdr *h) {
  if (h == NULL) return -1;
  if (rows->sink != NULL) {
    rows->sink(rows->sink_arg, h);
    return 0;
  }
  rows->pending[rows->npending++] = h;
  if (rows->npending == STORE_PUT_MANY_MAX) pgrows_flush(rows);
  return 0;
}

void pgrows_flush(struct pgrows *rows) {
  int rc[STORE_PUT_MANY_MAX]; /* a stale row (a duplicate key) changes nothing, as before */
  if (rows->npending) store_put_many(rows->t, rows->pending, rows->npending, rc);
  rows->npending = 0;
}

/* id, organization_id, name, slug|NULL, description|NULL, version */
static int named_row(struct pgrows *rows, enum cat_kind kind, char **f, int nf, const char **why) {
  struct named_fields nfld = {
      .id = f[0], .org = f[1], .name = f[2], .slug = f[3], .description = f[4]};
  if (nf != 6 || copy_version(f[5], &nfld.version) != 0) {
    *why = "bad row";
    return -1;
  }
  struct cat_named *r = model_named_new(kind, &nfld, why);
  return put_record(rows, r ? &r->h : NULL);
}

static int brand_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return named_row(rows, CAT_BRAND, f, nf, why);
}
static int tag_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return named_row(rows, CAT_TAG, f, nf, why);
}
static int collection_row(struct pgrows *rows, char **f, int nf, const char **why) {
  return named_row(rows, CAT_COLLECTION, f, nf, why);
}

/* id, organization_id, local_id, title, sku, barcode, description, status,
 * product_type, unit_of_measure, alert_stock, brand_id, version */
static int product_row(struct pgrows *rows, char **f, int nf, const char **why) {
  struct product_fields p = {.id = f[0],
                             .org = f[1],
                             .local_id = f[2],
                             .title = f[3],
                             .sku = f[4],
                             .barcode = f[5],
                             .description = f[6],
                             .status = f[7],
                             .product_type = f[8],
                             .unit_of_measure = f[9],
                             .brand_id = f[11]};
  if (nf != 13 || copy_i32(f[10], 0, &p.alert_stock) != 0 || copy_version(f[12], &p.version) != 0) {
    *why = "bad product row";
    return -1;
  }
  struct children_of ch;
  children_get(rows->product_kids, f[0], &ch);
  p.images = ch.images, p.n_images = ch.n_images;
  p.tag_ids = ch.ids[CHILDREN_TAGS], p.n_tags = ch.n_ids[CHILDREN_TAGS];
  p.collection_ids = ch.ids[CHILDREN_COLLECTIONS], p.n_collections = ch.n_ids[CHILDREN_COLLECTIONS];
  struct cat_product *r = model_product_new(&p, why);
  return put_record(rows, r ? &r->h : NULL);
}

/* id, organization_id, product_id, sku, barcode, status, sale_price,
 * cost_price, tax, weight, dim_length, dim_width, dim_height, lot_number,
 * stock_total, stock_available, stock_reserved, warehouse_id, vendor,
 * track_inventory, default_min_stock, default_max_stock, version */
static int variant_row(struct pgrows *rows, char **f, int nf, const char **why) {
  struct variant_fields v = {.id = f[0],
                             .org = f[1],
                             .product_id = f[2],
                             .sku = f[3],
                             .barcode = f[4],
                             .status = f[5],
                             .lot_number = f[13],
                             .warehouse_id = f[17],
                             .vendor = f[18]};
  *why = "bad variant row";
  if (nf != 23 || f[6] == NULL) return -1;
  if (copy_f64(f[6], 0, &v.sale_price) || copy_f64(f[7], 0, &v.cost_price) ||
      copy_f64(f[8], 0, &v.tax) || copy_f64(f[9], 0, &v.weight) || copy_f64(f[10], 0, &v.length) ||
      copy_f64(f[11], 0, &v.width) || copy_f64(f[12], 0, &v.height) ||
      copy_i32(f[14], 0, &v.stock_total) || copy_i32(f[15], 0, &v.stock_available) ||
      copy_i32(f[16], 0, &v.stock_reserved) || copy_bool(f[19], true, &v.track_inventory) ||
      copy_i32(f[20], 0, &v.min_stock) || copy_i32(f[21], 0, &v.max_stock) ||
      copy_version(f[22], &v.version))
    return -1;
  struct children_of ch;
  children_get(rows->variant_kids, f[0], &ch);
  v.images = ch.images, v.n_images = ch.n_images;
  struct cat_variant *r = model_variant_new(&v, why);
  return put_record(rows, r ? &r->h : NULL);
}

/* ---- The tables, in load order: children before their parents ---- */

const struct pgrows_table pgrows_tables[] = {
    {"brands", "SELECT id, organization_id, name, slug, description, version FROM brands",
     brand_row, 6, PGROWS_KEEP_NONE, false, CAT_BRAND, "id"},
    {"tags", "SELECT id, organization_id, name, NULL, NULL, version FROM tags", tag_row, 6,
     PGROWS_KEEP_NONE, false, CAT_TAG, "id"},
    {"collections", "SELECT id, organization_id, name, slug, NULL, version FROM collections",
     collection_row, 6, PGROWS_KEEP_NONE, false, CAT_COLLECTION, "id"},
    {"product_images", "SELECT product_id, id, url, alt, position FROM product_images",
     product_image_row, 5, PGROWS_KEEP_PRODUCT, false, -1, "product_id"},
    {"product_tags", "SELECT product_id, tag_id FROM product_tags", product_tag_row, 2,
     PGROWS_KEEP_PRODUCT, false, -1, "product_id"},
    {"product_collections", "SELECT product_id, collection_id FROM product_collections",
     product_collection_row, 2, PGROWS_KEEP_PRODUCT, false, -1, "product_id"},
    {"products",
     "SELECT id, organization_id, local_id, title, sku, barcode, description, status, "
     "product_type, unit_of_measure, alert_stock, brand_id, version FROM products",
     product_row, 13, PGROWS_KEEP_NONE, true, CAT_PRODUCT, "id"},
    {"variant_images", "SELECT variant_id, id, url, alt, position FROM variant_images",
     variant_image_row, 5, PGROWS_KEEP_VARIANT, false, -1, "variant_id"},
    {"variants",
     "SELECT id, organization_id, product_id, sku, barcode, status, sale_price, cost_price, "
     "tax, weight, dim_length, dim_width, dim_height, lot_number, stock_total, "
     "stock_available, stock_reserved, warehouse_id, vendor, track_inventory, "
     "default_min_stock, default_max_stock, version FROM variants",
     variant_row, 23, PGROWS_KEEP_NONE, false, CAT_VARIANT, "id"},
};

const size_t pgrows_ntables = sizeof pgrows_tables / sizeof pgrows_tables[0];
