/*
 * pg_load.c - warm load from PostgreSQL by COPY (see pg_load.h).
 *
 * One connection can run one COPY at a time, so child rows (images, tag and
 * collection links) are read first, raw, into the child index (children.h,
 * which says why not joins or merged streams); each product or variant row
 * then takes its children from there and becomes one complete record.
 * Tables are read in dependency order only for that reason: the store
 * resolves relations at read time.
 */
#include "pg_load.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "children.h"
#include "clock.h"
#include "copy_text.h"
#include "log.h"
#include "xalloc.h"

#define MAX_FIELDS    32
#define LOG_FIRST_BAD 5

struct pgload {
  char *url;
  pthread_mutex_t mu; /* guards cancel */
  PGcancel *cancel;
  atomic_bool interrupted;
};

struct load {
  PGconn *conn;
  struct store_txn *t;
  struct children *product_kids, *variant_kids; /* children of the parents to come */
  size_t rows, skipped;
  const char *table;
};

typedef int (*row_fn)(struct load *L, char **f, int nf, const char **why);

struct pgload *pgload_new(const char *url) {
  struct pgload *p = xcalloc(1, sizeof *p);
  p->url = xmalloc(strlen(url) + 1);
  strcpy(p->url, url);
  pthread_mutex_init(&p->mu, NULL);
  return p;
}

void pgload_destroy(struct pgload *p) {
  if (p == NULL) return;
  pthread_mutex_destroy(&p->mu);
  free(p->url);
  free(p);
}

void pgload_interrupt(struct pgload *p) {
  char err[256];
  atomic_store(&p->interrupted, true);
  pthread_mutex_lock(&p->mu);
  if (p->cancel) PQcancel(p->cancel, err, sizeof err);
  pthread_mutex_unlock(&p->mu);
}

/* ---- Row handlers, one per COPY; copy_table checks the column count ---- */

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

static int product_image_row(struct load *L, char **f, int nf, const char **why) {
  return image_row(L->product_kids, f, nf, why);
}

static int variant_image_row(struct load *L, char **f, int nf, const char **why) {
  return image_row(L->variant_kids, f, nf, why);
}

/* product_id, tag_id  /  product_id, collection_id (a kept row) */
static int link_row(struct load *L, char **f, int nf, const char **why, enum children_kind kind) {
  if (nf != 2 || f[1] == NULL || children_add(L->product_kids, kind, f[0], NULL, f[1]) != 0) {
    *why = "bad link row";
    return -1;
  }
  return 0;
}

static int product_tag_row(struct load *L, char **f, int nf, const char **why) {
  return link_row(L, f, nf, why, CHILDREN_TAGS);
}

static int product_collection_row(struct load *L, char **f, int nf, const char **why) {
  return link_row(L, f, nf, why, CHILDREN_COLLECTIONS);
}

/* Puts a built record; NULL means the builder refused it (and set why). */
static int put_record(struct load *L, struct cat_hdr *h) {
  if (h == NULL) return -1;
  store_put(L->t, h);
  return 0;
}

/* id, organization_id, name, slug|NULL, description|NULL, version */
static int named_row(struct load *L, enum cat_kind kind, char **f, int nf, const char **why) {
  struct named_fields nfld = {
      .id = f[0], .org = f[1], .name = f[2], .slug = f[3], .description = f[4]};
  if (nf != 6 || copy_version(f[5], &nfld.version) != 0) {
    *why = "bad row";
    return -1;
  }
  struct cat_named *r = model_named_new(kind, &nfld, why);
  return put_record(L, r ? &r->h : NULL);
}

static int brand_row(struct load *L, char **f, int nf, const char **why) {
  return named_row(L, CAT_BRAND, f, nf, why);
}
static int tag_row(struct load *L, char **f, int nf, const char **why) {
  return named_row(L, CAT_TAG, f, nf, why);
}
static int collection_row(struct load *L, char **f, int nf, const char **why) {
  return named_row(L, CAT_COLLECTION, f, nf, why);
}

/* id, organization_id, local_id, title, sku, barcode, description, status,
 * product_type, unit_of_measure, alert_stock, brand_id, version */
static int product_row(struct load *L, char **f, int nf, const char **why) {
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
  children_get(L->product_kids, f[0], &ch);
  p.images = ch.images, p.n_images = ch.n_images;
  p.tag_ids = ch.ids[CHILDREN_TAGS], p.n_tags = ch.n_ids[CHILDREN_TAGS];
  p.collection_ids = ch.ids[CHILDREN_COLLECTIONS], p.n_collections = ch.n_ids[CHILDREN_COLLECTIONS];
  struct cat_product *r = model_product_new(&p, why);
  return put_record(L, r ? &r->h : NULL);
}

/* id, organization_id, product_id, sku, barcode, status, sale_price,
 * cost_price, tax, weight, dim_length, dim_width, dim_height, lot_number,
 * stock_total, stock_available, stock_reserved, warehouse_id, vendor,
 * track_inventory, default_min_stock, default_max_stock, version */
static int variant_row(struct load *L, char **f, int nf, const char **why) {
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
  children_get(L->variant_kids, f[0], &ch);
  v.images = ch.images, v.n_images = ch.n_images;
  struct cat_variant *r = model_variant_new(&v, why);
  return put_record(L, r ? &r->h : NULL);
}

/* ---- COPY driving ---- */

struct table {
  const char *name;
  const char *query;
  row_fn row;
  int nfields; /* rows with another count never reach row() */
  enum { KEEP_NONE, KEEP_PRODUCT, KEEP_VARIANT } keep; /* child rows: split in that index */
};

static const struct table tables[] = {
    {"brands", "SELECT id, organization_id, name, slug, description, version FROM brands",
     brand_row, 6, KEEP_NONE},
    {"tags", "SELECT id, organization_id, name, NULL, NULL, version FROM tags", tag_row, 6,
     KEEP_NONE},
    {"collections", "SELECT id, organization_id, name, slug, NULL, version FROM collections",
     collection_row, 6, KEEP_NONE},
    {"product_images", "SELECT product_id, id, url, alt, position FROM product_images",
     product_image_row, 5, KEEP_PRODUCT},
    {"product_tags", "SELECT product_id, tag_id FROM product_tags", product_tag_row, 2,
     KEEP_PRODUCT},
    {"product_collections", "SELECT product_id, collection_id FROM product_collections",
     product_collection_row, 2, KEEP_PRODUCT},
    {"products",
     "SELECT id, organization_id, local_id, title, sku, barcode, description, status, "
     "product_type, unit_of_measure, alert_stock, brand_id, version FROM products",
     product_row, 13, KEEP_NONE},
    {"variant_images", "SELECT variant_id, id, url, alt, position FROM variant_images",
     variant_image_row, 5, KEEP_VARIANT},
    {"variants",
     "SELECT id, organization_id, product_id, sku, barcode, status, sale_price, cost_price, "
     "tax, weight, dim_length, dim_width, dim_height, lot_number, stock_total, "
     "stock_available, stock_reserved, warehouse_id, vendor, track_inventory, "
     "default_min_stock, default_max_stock, version FROM variants",
     variant_row, 23, KEEP_NONE},
};

static int exec_ok(PGconn *c, const char *sql, ExecStatusType want) {
  PGresult *r = PQexec(c, sql);
  int ok = PQresultStatus(r) == want;
  if (!ok) log_error("postgres command failed", LF_S("sql", sql), LF_S("error", PQerrorMessage(c)));
  PQclear(r);
  return ok ? 0 : -EIO;
}

static void bad_row(struct load *L, const char *why) {
  if (L->skipped++ < LOG_FIRST_BAD)
    log_warn("skipping row that breaks the schema", LF_S("table", L->table), LF_S("why", why),
             LF_I("row", (long long)L->rows));
}

/* Splits one COPY row of tb (buf, n bytes, as PQgetCopyData returns it;
 * the caller frees buf after) and feeds it to tb->row; counts it, and
 * counts and logs it if it is bad. A child row is split in its index's copy,
 * where its fields stay for the parents to come. */
static void load_row(struct load *L, const struct table *tb, char *buf, size_t n) {
  char *fields[MAX_FIELDS];
  const char *why = "bad row";
  if (tb->keep != KEEP_NONE)
    buf = children_keep(tb->keep == KEEP_PRODUCT ? L->product_kids : L->variant_kids, buf, n);
  int nf = copy_split(buf, n, fields, MAX_FIELDS);
  if (nf != tb->nfields)
    bad_row(L, "wrong number of columns");
  else if (tb->row(L, fields, nf, &why) != 0)
    bad_row(L, why);
  L->rows++;
}

/* Runs one COPY and feeds each row to load_row(). */
static int copy_table(struct pgload *p, struct load *L, const struct table *tb) {
  char sql[1024], *buf = NULL;
  snprintf(sql, sizeof sql, "COPY (%s) TO STDOUT", tb->query);
  if (exec_ok(L->conn, sql, PGRES_COPY_OUT) != 0) return -EIO;
  double t0 = clock_mono_s();
  size_t before = L->rows;
  int n;
  L->table = tb->name;
  while ((n = PQgetCopyData(L->conn, &buf, 0)) > 0) {
    load_row(L, tb, buf, (size_t)n);
    PQfreemem(buf);
    if (atomic_load(&p->interrupted)) break;
  }
  PGresult *r = PQgetResult(L->conn);
  int ok = n == -1 && PQresultStatus(r) == PGRES_COMMAND_OK;
  PQclear(r);
  while ((r = PQgetResult(L->conn)) != NULL)
    PQclear(r);
  if (atomic_load(&p->interrupted)) return -ECANCELED;
  if (!ok) {
    log_error("COPY failed", LF_S("table", tb->name), LF_S("error", PQerrorMessage(L->conn)));
    return -EIO;
  }
  double dt = clock_mono_s() - t0;
  size_t rows = L->rows - before;
  log_info("table loaded", LF_S("table", tb->name), LF_I("rows", rows), LF_D("seconds", dt),
           LF_D("rows_per_s", dt > 0 ? (double)rows / dt : 0));
  return 0;
}

static PGconn *connect_db(struct pgload *p) {
  const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
  const char *vals[] = {"10", "catalogd", p->url, NULL};
  PGconn *c = PQconnectdbParams(keys, vals, 1);
  if (c == NULL || PQstatus(c) != CONNECTION_OK) {
    log_warn("cannot connect to postgres", LF_S("error", c ? PQerrorMessage(c) : "no memory"));
    PQfinish(c);
    return NULL;
  }
  pthread_mutex_lock(&p->mu);
  p->cancel = PQgetCancel(c);
  pthread_mutex_unlock(&p->mu);
  return c;
}

static void disconnect_db(struct pgload *p, PGconn *c) {
  pthread_mutex_lock(&p->mu);
  PQfreeCancel(p->cancel);
  p->cancel = NULL;
  pthread_mutex_unlock(&p->mu);
  PQfinish(c);
}

int pgload_run(struct pgload *p, struct store_txn *t, struct pgload_stats *st) {
  struct load L = {.t = t};
  int rc = 0;
  double t0 = clock_mono_s();
  if (atomic_load(&p->interrupted)) return -ECANCELED;
  if ((L.conn = connect_db(p)) == NULL) return -ECONNREFUSED;
  L.product_kids = children_new();
  L.variant_kids = children_new();
  rc = exec_ok(L.conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", PGRES_COMMAND_OK);
  for (size_t i = 0; rc == 0 && i < sizeof tables / sizeof tables[0]; i++) {
    rc = copy_table(p, &L, &tables[i]);
    /* Products have taken their children: drop them before the variants. */
    if (tables[i].row == product_row) children_clear(L.product_kids);
  }
  if (rc == 0) rc = exec_ok(L.conn, "COMMIT", PGRES_COMMAND_OK);
  if (rc != 0 && atomic_load(&p->interrupted)) rc = -ECANCELED;
  children_free(L.product_kids);
  children_free(L.variant_kids);
  disconnect_db(p, L.conn);
  *st = (struct pgload_stats){.rows = L.rows, .skipped = L.skipped, .seconds = clock_mono_s() - t0};
  return rc;
}
