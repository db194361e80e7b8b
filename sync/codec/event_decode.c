/*
 * event_decode.c - JSON change events to records, in one pass over the
 * message.
 *
 * The key and the envelope must agree (organization, entity type and id):
 * a mismatch means a producer bug, and applying it could write one tenant's
 * data under another's key. Numeric columns may be JSON numbers or decimal
 * strings; absent nullable columns take the schema's defaults.
 *
 * How: json_scan.c walks the value once. The envelope's, data's and the
 * images' known keys are read into slots (struct jscan_value, one per key of
 * the schema), list elements straight into the image_fields / id arrays the
 * builders take, and every other key is validated and skipped. Only then
 * are the rules applied to the slots, in the order the jansson decoder
 * applied them to its DOM, so a rejected message gets the same reason as
 * before (any JSON error first, then the envelope, then data). All memory is
 * one scratch area sized from the message length: on the stack for usual
 * events, one xmalloc for large ones. tests/oracle keeps the jansson decoder;
 * the unit tests and the fuzz target require both to agree.
 */
#include "event_decode.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_scan.h"
#include "xalloc.h"

/* Messages up to about 2 KiB are decoded without any allocation. */
#define SCRATCH_LOCAL 32768

/* Position of the last '/' in [key, end), or NULL. */
static const char *last_slash(const char *key, const char *end) {
  for (const char *p = end; p > key; p--)
    if (p[-1] == '/') return p - 1;
  return NULL;
}

/* "<org>/<type>/<uuid>", parsed from the right: the type and the id never
 * contain '/', an organization id may (the schema does not forbid it). */
static const char *parse_key(const char *key, size_t n, struct event *ev) {
  if (key == NULL) return "message has no key";
  const char *s2 = last_slash(key, key + n);
  const char *s1 = s2 ? last_slash(key, s2) : NULL;
  if (s1 == NULL) return "key is not <org>/<type>/<id>";
  size_t orglen = (size_t)(s1 - key);
  if (orglen == 0 || orglen > CAT_ORG_MAX) return "key organization is empty or too long";
  memcpy(ev->org, key, orglen);
  ev->org[orglen] = '\0';
  if (memchr(ev->org, '\0', orglen)) return "key organization has a NUL byte";
  if (model_kind_parse(s1 + 1, (size_t)(s2 - s1 - 1), &ev->kind) != 0)
    return "key entity type unknown";
  ev->kind_known = true;
  if (uuid_parse(s2 + 1, (size_t)(key + n - s2 - 1), ev->id) != 0) return "key id is not a UUID";
  return NULL;
}

/* ---- The schema: known keys of each object ---- */

struct name {
  const char *s;
  size_t len;
};
#define NAME(x)                                                                                    \
  { (x), sizeof(x) - 1 }

/* In the order the outbox writes them (see key_index). */
enum env_key { ENV_EVENT_ID, ENV_EVENT_TYPE, ENV_ORG, ENV_ENTITY_ID, ENV_VERSION, ENV_DATA, ENV_N };
static const struct name env_names[ENV_N] = {
    [ENV_EVENT_TYPE] = NAME("event_type"), [ENV_ORG] = NAME("organization_id"),
    [ENV_ENTITY_ID] = NAME("entity_id"),   [ENV_EVENT_ID] = NAME("event_id"),
    [ENV_VERSION] = NAME("version"),       [ENV_DATA] = NAME("data"),
};

/* Every kind's data columns in one set: a column another kind has is read
 * and then ignored, as the jansson decoder never looked it up. */
/* In the order the outbox writes a variant's columns (then a product's),
 * so that the next key is usually the one after the last (key_index). */
enum data_key {
  D_ID,
  D_ORG,
  D_PRODUCT_ID,
  D_SKU,
  D_BARCODE,
  D_STATUS,
  D_SALE_PRICE,
  D_COST_PRICE,
  D_TAX,
  D_WEIGHT,
  D_DIM_LENGTH,
  D_DIM_WIDTH,
  D_DIM_HEIGHT,
  D_LOT_NUMBER,
  D_STOCK_TOTAL,
  D_STOCK_AVAILABLE,
  D_STOCK_RESERVED,
  D_WAREHOUSE_ID,
  D_VENDOR,
  D_TRACK_INVENTORY,
  D_MIN_STOCK,
  D_MAX_STOCK,
  D_IMAGES,
  D_LOCAL_ID,
  D_TITLE,
  D_DESCRIPTION,
  D_PRODUCT_TYPE,
  D_UNIT_OF_MEASURE,
  D_ALERT_STOCK,
  D_BRAND_ID,
  D_TAG_IDS,
  D_COLLECTION_IDS,
  D_NAME,
  D_SLUG,
  D_N
};
static const struct name data_names[D_N] = {
    [D_ID] = NAME("id"),
    [D_ORG] = NAME("organization_id"),
    [D_PRODUCT_ID] = NAME("product_id"),
    [D_SKU] = NAME("sku"),
    [D_BARCODE] = NAME("barcode"),
    [D_STATUS] = NAME("status"),
    [D_LOT_NUMBER] = NAME("lot_number"),
    [D_WAREHOUSE_ID] = NAME("warehouse_id"),
    [D_VENDOR] = NAME("vendor"),
    [D_SALE_PRICE] = NAME("sale_price"),
    [D_COST_PRICE] = NAME("cost_price"),
    [D_TAX] = NAME("tax"),
    [D_WEIGHT] = NAME("weight"),
    [D_DIM_LENGTH] = NAME("dim_length"),
    [D_DIM_WIDTH] = NAME("dim_width"),
    [D_DIM_HEIGHT] = NAME("dim_height"),
    [D_STOCK_TOTAL] = NAME("stock_total"),
    [D_STOCK_AVAILABLE] = NAME("stock_available"),
    [D_STOCK_RESERVED] = NAME("stock_reserved"),
    [D_TRACK_INVENTORY] = NAME("track_inventory"),
    [D_MIN_STOCK] = NAME("default_min_stock"),
    [D_MAX_STOCK] = NAME("default_max_stock"),
    [D_IMAGES] = NAME("images"),
    [D_LOCAL_ID] = NAME("local_id"),
    [D_TITLE] = NAME("title"),
    [D_DESCRIPTION] = NAME("description"),
    [D_PRODUCT_TYPE] = NAME("product_type"),
    [D_UNIT_OF_MEASURE] = NAME("unit_of_measure"),
    [D_BRAND_ID] = NAME("brand_id"),
    [D_ALERT_STOCK] = NAME("alert_stock"),
    [D_TAG_IDS] = NAME("tag_ids"),
    [D_COLLECTION_IDS] = NAME("collection_ids"),
    [D_NAME] = NAME("name"),
    [D_SLUG] = NAME("slug"),
};
_Static_assert(D_N <= 64, "data keys are tracked in a 64-bit mask");

enum image_key { IM_ID, IM_URL, IM_ALT, IM_POSITION, IM_N };
static const struct name image_names[IM_N] = {[IM_ID] = NAME("id"),
                                              [IM_URL] = NAME("url"),
                                              [IM_ALT] = NAME("alt"),
                                              [IM_POSITION] = NAME("position")};

/* A list the data object may hold, as the builders take it. */
struct list {
  void *v;  /* image_fields[] or const char *[], in the scratch area */
  size_t n; /* elements stored */
  bool bad; /* an element was of the wrong type */
};

/* What the scan found; slots of keys never seen stay JSCAN_ABSENT. */
struct msg {
  bool is_object; /* the value is an object (else an array) */
  struct jscan_value env[ENV_N];
  struct jscan_value data[D_N]; /* filled only if env[ENV_DATA] is an object */
  struct list images, tags, collections;
};

struct dec {
  struct jscan s;
  char *items; /* list elements, bump-allocated; one list grows at a time */
  size_t items_used, items_cap;
  struct msg m;
};

/* Index of key k in names[0, n), or -1. names[*next] is tried first, then
 * the others in turn, and *next moves past the one found: a producer writes
 * an object's keys in one order, the tables follow the outbox's, so the
 * first try usually hits (a scan from 0 compared ~17 names per key). The
 * length and first byte rule out nearly every other name before memcmp. */
static int key_index(const struct name *names, int n, const struct jscan_key *k, int *next) {
  for (int j = 0, i = *next < n ? *next : 0; j < n; j++, i = i + 1 < n ? i + 1 : 0)
    if (names[i].len == k->len && names[i].s[0] == k->p[0] &&
        memcmp(names[i].s, k->p, k->len) == 0) {
      *next = i + 1;
      return i;
    }
  return -1;
}

/* Room for one more element of size bytes of the list being built, or
 * NULL (cannot happen with items_cap from scratch_layout()). */
static void *item_push(struct dec *d, size_t size) {
  assert(d->items_used + size <= d->items_cap);
  if (d->items_used + size > d->items_cap) return NULL;
  void *p = d->items + d->items_used;
  d->items_used += size;
  return p;
}

/* ---- Typed reads of the slots (the jansson decoder's rules: j_str, ...) ---- */

/* String or NULL (absent, null); a non-string sets *bad. */
static const char *v_str(const struct jscan_value *v, int *bad) {
  if (v->type == JSCAN_ABSENT || v->type == JSCAN_NULL) return NULL;
  if (v->type != JSCAN_STRING) *bad = 1;
  return v->type == JSCAN_STRING ? v->s : NULL;
}

/* Number or decimal string; absent or null -> def. A string must be
 * written as a JSON number ("29.99", "-1e3"): strtod alone would also take
 * " 21", "0x1p3" (8.0), "+5". */
static int v_num(const struct jscan_value *v, double def, double *out) {
  char *e;
  switch (v->type) {
  case JSCAN_ABSENT:
  case JSCAN_NULL: *out = def; return 0;
  case JSCAN_INT: *out = (double)v->i; return 0;
  case JSCAN_REAL: *out = v->d; return 0;
  case JSCAN_STRING:
    if (!jscan_is_number(v->s, v->len)) return -1;
    *out = jscan_strtod(v->s, v->len, &e);
    return (e == v->s || *e || !isfinite(*out)) ? -1 : 0;
  default: return -1;
  }
}

static int v_i32(const struct jscan_value *v, int32_t def, int32_t *out) {
  double d;
  if (v_num(v, def, &d) != 0 || d != floor(d) || d < INT32_MIN || d > INT32_MAX) return -1;
  *out = (int32_t)d;
  return 0;
}

/* The event's version (contract: int64): a JSON integer (not a real), or
 * a string of decimal digits with no sign, blank or leading zero, as
 * int64 is written in JSON by proto3 mappers. Returns 0 with *out set,
 * -ENOENT if absent, -ERANGE for a digit string above INT64_MAX (never
 * clamped: a version clamped to INT64_MAX would make every later upsert
 * of the entity stale; a JSON number that large is not JSON already, as
 * jansson refused it), -EINVAL for anything else ("+50", " 50", "050",
 * "5e1", null, ...): strtoll's leniency would apply those as 50. The
 * caller refuses a value <= 0. */
static int v_version(const struct jscan_value *v, int64_t *out) {
  if (v->type == JSCAN_ABSENT) return -ENOENT;
  if (v->type == JSCAN_INT) {
    *out = v->i;
    return 0;
  }
  if (v->type != JSCAN_STRING || v->len == 0 || (v->s[0] == '0' && v->len > 1)) return -EINVAL;
  uint64_t x = 0;
  bool range = false;
  for (size_t i = 0; i < v->len; i++) {
    if (v->s[i] < '0' || v->s[i] > '9') return -EINVAL;
    uint64_t d = (uint64_t)(v->s[i] - '0');
    if (range || x > ((uint64_t)INT64_MAX - d) / 10)
      range = true;
    else
      x = x * 10 + d;
  }
  if (range) return -ERANGE;
  *out = (int64_t)x;
  return 0;
}

static int v_bool(const struct jscan_value *v, bool def, bool *out) {
  if (v->type == JSCAN_ABSENT || v->type == JSCAN_NULL)
    *out = def;
  else if (v->type == JSCAN_TRUE || v->type == JSCAN_FALSE)
    *out = v->type == JSCAN_TRUE;
  else
    return -1;
  return 0;
}

/* A list slot: absent or null is empty, an array is l, anything else (or
 * an array with a mistyped element) is an error. */
static int v_list(const struct jscan_value *v, const struct list *l, const void **out, size_t *n) {
  *out = NULL, *n = 0;
  if (v->type == JSCAN_ABSENT || v->type == JSCAN_NULL) return 0;
  if (v->type != JSCAN_ARRAY) return -1;
  *out = l->v, *n = l->n;
  return l->bad ? -1 : 0;
}

/* ---- Scanning ---- */

/* Reads the value of known key i of an object into slots[i] (or further,
 * for the keys with a structure); 0 or -EINVAL. */
typedef int (*member_fn)(struct dec *d, int i, struct jscan_value *slots);

/* Scans the object at the cursor: known keys (names) through read, the
 * others skipped. A known key seen twice is refused here, the others when
 * the object closes (jansson refused both). Returns 0 or -EINVAL. */
static int scan_object(struct dec *d, const struct name *names, int n, struct jscan_value *slots,
                       member_fn read) {
  struct jscan_obj o;
  struct jscan_key k;
  uint64_t seen = 0;
  int rc, next = 0;
  if (jscan_object_begin(&d->s, &o) < 0) return -EINVAL;
  while ((rc = jscan_object_next(&d->s, &o, &k)) == 1) {
    int i = key_index(names, n, &k, &next);
    if (i < 0)
      rc = jscan_object_unknown(&d->s, &k) < 0 ? -EINVAL : jscan_skip(&d->s);
    else if (seen & (1ULL << i))
      rc = -EINVAL;
    else
      seen |= 1ULL << i, rc = read(d, i, slots);
    if (rc < 0) return -EINVAL;
  }
  return rc;
}

/* member_fn for keys whose value is read as it is. */
static int read_plain(struct dec *d, int i, struct jscan_value *slots) {
  return jscan_value(&d->s, &slots[i]);
}

/* One element of images: an object is read into the next image_fields,
 * anything else skipped; a wrong type (of the element or of one of its
 * fields) marks l bad, as the jansson decoder refused it. */
static int scan_image(struct dec *d, struct list *l) {
  struct jscan_value im[IM_N] = {0};
  int bad = 0;
  if (jscan_peek(&d->s) != '{') {
    l->bad = true;
    return jscan_skip(&d->s);
  }
  struct image_fields *f = item_push(d, sizeof *f);
  if (f == NULL || scan_object(d, image_names, IM_N, im, read_plain) < 0) return -EINVAL;
  l->n++;
  *f = (struct image_fields){0};
  f->id = v_str(&im[IM_ID], &bad), f->url = v_str(&im[IM_URL], &bad);
  f->alt = v_str(&im[IM_ALT], &bad);
  if (bad || v_i32(&im[IM_POSITION], 0, &f->position) != 0) l->bad = true;
  return 0;
}

/* One element of tag_ids or collection_ids: a string is appended to l,
 * anything else marks l bad. */
static int scan_id(struct dec *d, struct list *l) {
  struct jscan_value v;
  if (jscan_value(&d->s, &v) < 0) return -EINVAL;
  if (v.type != JSCAN_STRING) {
    l->bad = true;
    return 0;
  }
  const char **slot = item_push(d, sizeof *slot);
  if (slot == NULL) return -EINVAL;
  *slot = v.s, l->n++;
  return 0;
}

/* Scans the array at the cursor into l (image objects if images, else id
 * strings). Elements are contiguous: nothing else is pushed meanwhile. */
static int scan_list(struct dec *d, struct list *l, bool images) {
  struct jscan_arr a;
  int rc;
  l->v = d->items + d->items_used;
  if (jscan_array_begin(&d->s, &a) < 0) return -EINVAL;
  while ((rc = jscan_array_next(&d->s, &a)) == 1)
    if ((images ? scan_image(d, l) : scan_id(d, l)) < 0) return -EINVAL;
  return rc;
}

/* member_fn of data: images, tag_ids and collection_ids arrays are read
 * element by element into their lists; a value of another type, and every
 * other key, into its slot. */
static int read_data_member(struct dec *d, int i, struct jscan_value *slots) {
  struct list *l = i == D_IMAGES           ? &d->m.images
                   : i == D_TAG_IDS        ? &d->m.tags
                   : i == D_COLLECTION_IDS ? &d->m.collections
                                           : NULL;
  if (l == NULL || jscan_peek(&d->s) != '[') return jscan_value(&d->s, &slots[i]);
  slots[i].type = JSCAN_ARRAY;
  return scan_list(d, l, i == D_IMAGES);
}

/* member_fn of the envelope: a data object is scanned into d->m.data. */
static int read_env_member(struct dec *d, int i, struct jscan_value *slots) {
  if (i != ENV_DATA || jscan_peek(&d->s) != '{') return jscan_value(&d->s, &slots[i]);
  slots[i].type = JSCAN_OBJECT;
  return scan_object(d, data_names, D_N, d->m.data, read_data_member);
}

/* Scans the whole value into d->m. Like jansson without JSON_DECODE_ANY,
 * the top level must be an object or an array. Returns 0 or -EINVAL. */
static int scan_value(struct dec *d) {
  char c = jscan_peek(&d->s);
  if (c == '[') return jscan_skip(&d->s) < 0 ? -EINVAL : jscan_end(&d->s);
  if (c != '{') return -EINVAL;
  d->m.is_object = true;
  if (scan_object(d, env_names, ENV_N, d->m.env, read_env_member) < 0) return -EINVAL;
  return jscan_end(&d->s);
}

/* ---- Records ---- */

/* decode_variant, decode_product, decode_named: build the record from the
 * data slots (id is the key's id as text). Return it (owned by the caller)
 * or NULL with *why set: a mistyped field, or the schema rule the builder
 * found broken (builders abort on out of memory: a good event is never
 * rejected for want of memory). */
static struct cat_hdr *decode_variant(const struct msg *m, const struct event *ev, const char *id,
                                      const char **why) {
  const struct jscan_value *d = m->data;
  const void *ims = NULL;
  int bad = 0;
  struct variant_fields f = {.id = id, .org = ev->org, .version = ev->version};
  f.product_id = v_str(&d[D_PRODUCT_ID], &bad), f.sku = v_str(&d[D_SKU], &bad);
  f.barcode = v_str(&d[D_BARCODE], &bad), f.status = v_str(&d[D_STATUS], &bad);
  f.lot_number = v_str(&d[D_LOT_NUMBER], &bad), f.warehouse_id = v_str(&d[D_WAREHOUSE_ID], &bad);
  f.vendor = v_str(&d[D_VENDOR], &bad);
  bad |= v_num(&d[D_SALE_PRICE], NAN, &f.sale_price) || isnan(f.sale_price);
  bad |= v_num(&d[D_COST_PRICE], 0, &f.cost_price) || v_num(&d[D_TAX], 0, &f.tax);
  bad |= v_num(&d[D_WEIGHT], 0, &f.weight) || v_num(&d[D_DIM_LENGTH], 0, &f.length);
  bad |= v_num(&d[D_DIM_WIDTH], 0, &f.width) || v_num(&d[D_DIM_HEIGHT], 0, &f.height);
  bad |= v_i32(&d[D_STOCK_TOTAL], 0, &f.stock_total) ||
         v_i32(&d[D_STOCK_AVAILABLE], 0, &f.stock_available) ||
         v_i32(&d[D_STOCK_RESERVED], 0, &f.stock_reserved);
  bad |= v_bool(&d[D_TRACK_INVENTORY], true, &f.track_inventory);
  bad |= v_i32(&d[D_MIN_STOCK], 0, &f.min_stock) || v_i32(&d[D_MAX_STOCK], 0, &f.max_stock);
  bad |= v_list(&d[D_IMAGES], &m->images, &ims, &f.n_images);
  f.images = ims;
  if (bad) {
    *why = "variant data has a missing or mistyped field";
    return NULL;
  }
  struct cat_variant *v = model_variant_new(&f, why);
  return v ? &v->h : NULL;
}

static struct cat_hdr *decode_product(const struct msg *m, const struct event *ev, const char *id,
                                      const char **why) {
  const struct jscan_value *d = m->data;
  const void *ims = NULL, *tags = NULL, *cols = NULL; /* set unless an earlier || failed */
  int bad = 0;
  struct product_fields f = {.id = id, .org = ev->org, .version = ev->version};
  f.local_id = v_str(&d[D_LOCAL_ID], &bad), f.title = v_str(&d[D_TITLE], &bad);
  f.sku = v_str(&d[D_SKU], &bad), f.barcode = v_str(&d[D_BARCODE], &bad);
  f.description = v_str(&d[D_DESCRIPTION], &bad), f.status = v_str(&d[D_STATUS], &bad);
  f.product_type = v_str(&d[D_PRODUCT_TYPE], &bad);
  f.unit_of_measure = v_str(&d[D_UNIT_OF_MEASURE], &bad);
  f.brand_id = v_str(&d[D_BRAND_ID], &bad);
  if (f.unit_of_measure == NULL) f.unit_of_measure = "unidad";
  bad |= v_i32(&d[D_ALERT_STOCK], 0, &f.alert_stock);
  bad |= v_list(&d[D_IMAGES], &m->images, &ims, &f.n_images);
  bad |= v_list(&d[D_TAG_IDS], &m->tags, &tags, &f.n_tags) ||
         v_list(&d[D_COLLECTION_IDS], &m->collections, &cols, &f.n_collections);
  f.images = ims, f.tag_ids = tags, f.collection_ids = cols;
  if (bad) {
    *why = "product data has a missing or mistyped field";
    return NULL;
  }
  struct cat_product *p = model_product_new(&f, why);
  return p ? &p->h : NULL;
}

static struct cat_hdr *decode_named(const struct msg *m, const struct event *ev, const char *id,
                                    const char **why) {
  int bad = 0;
  struct named_fields f = {.id = id, .org = ev->org, .version = ev->version};
  f.name = v_str(&m->data[D_NAME], &bad), f.slug = v_str(&m->data[D_SLUG], &bad);
  f.description = v_str(&m->data[D_DESCRIPTION], &bad);
  if (bad) {
    *why = "data has a mistyped field";
    return NULL;
  }
  struct cat_named *n = model_named_new(ev->kind, &f, why);
  return n ? &n->h : NULL;
}

/* True if the string slot v holds exactly org: compared with its length,
 * so that a string with a NUL byte could never pass as its prefix (the
 * scanner refuses \u0000 today; this does not depend on it). */
static bool same_org(const struct jscan_value *v, const char *org) {
  return v->type == JSCAN_STRING && v->len == strlen(org) && memcmp(v->s, org, v->len) == 0;
}

/* Copies the C string s into dst (cap > 0 bytes), cut if it must be
 * between whole UTF-8 characters (s is valid UTF-8: the JSON rules): the
 * byte after the cut must not be a continuation byte. */
static void copy_whole_chars(char *dst, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
      n--;
  }
  memcpy(dst, s, n);
  dst[n] = '\0';
}

/* Checks the envelope against the key; fills op and version. */
static const char *check_envelope(const struct msg *m, struct event *ev) {
  int bad = 0;
  const char *type = v_str(&m->env[ENV_EVENT_TYPE], &bad);
  const char *org = v_str(&m->env[ENV_ORG], &bad);
  const char *eid = v_str(&m->env[ENV_ENTITY_ID], &bad);
  const char *evid = v_str(&m->env[ENV_EVENT_ID], &bad);
  uint8_t id[16];
  if (!m->is_object) return "value is not a JSON object";
  if (type == NULL || org == NULL || eid == NULL || bad) return "envelope field missing";
  const char *dot = strchr(type, '.');
  enum cat_kind kind;
  if (dot == NULL || model_kind_parse(type, (size_t)(dot - type), &kind) != 0)
    return "unknown event_type";
  if (strcmp(dot + 1, "upserted") == 0)
    ev->op = EVENT_UPSERT;
  else if (strcmp(dot + 1, "deleted") == 0)
    ev->op = EVENT_DELETE;
  else
    return "unknown event_type";
  if (kind != ev->kind) return "event_type does not match the key";
  if (!same_org(&m->env[ENV_ORG], ev->org)) return "organization_id does not match the key";
  if (uuid_parse(eid, strlen(eid), id) != 0 || memcmp(id, ev->id, 16) != 0)
    return "entity_id does not match the key";
  int vrc = v_version(&m->env[ENV_VERSION], &ev->version);
  if (vrc == -ERANGE) return "version out of range";
  if (vrc == -ENOENT) return "version missing";
  if (vrc != 0 || ev->version <= 0) return "version is not a positive integer";
  if (evid) copy_whole_chars(ev->event_id, sizeof ev->event_id, evid);
  return NULL;
}

/* Builds the upsert's record from data; returns NULL or the reason. */
static const char *decode_upsert(const struct msg *m, struct event *ev) {
  const char *why = NULL, *dorg, *did;
  char idt[UUID_STR_LEN + 1];
  uint8_t x[16];
  int ignored = 0, dorg_bad = 0;
  uuid_format(ev->id, idt);
  dorg = v_str(&m->data[D_ORG], &dorg_bad); /* absent or null: the key's */
  did = v_str(&m->data[D_ID], &ignored);
  if (m->env[ENV_DATA].type != JSCAN_OBJECT)
    why = "upsert without a data object";
  else if (dorg_bad) /* a tenant written as 5 is a producer bug, not "no tenant" */
    why = "data organization_id is not a string";
  else if (dorg != NULL && !same_org(&m->data[D_ORG], ev->org))
    why = "data organization_id differs";
  else if (did != NULL && (uuid_parse(did, strlen(did), x) != 0 || memcmp(x, ev->id, 16) != 0))
    why = "data id differs from entity_id";
  else if (ev->kind == CAT_VARIANT)
    ev->record = decode_variant(m, ev, idt, &why);
  else if (ev->kind == CAT_PRODUCT)
    ev->record = decode_product(m, ev, idt, &why);
  else
    ev->record = decode_named(m, ev, idt, &why);
  if (ev->record == NULL && why == NULL) why = "data rejected";
  return why;
}

/* ---- Entry point ---- */

/* Carves the scratch area for a value of len bytes: key stack, list
 * elements (at most one per 3 bytes: "{}," or "\"\","), strings. Returns
 * its total size, or 0 if len is absurdly large. */
static size_t scratch_layout(size_t len, size_t *keys_cap, size_t *items_cap, size_t *str_cap) {
  if (len > SIZE_MAX / 64) return 0;
  *keys_cap = jscan_keys_cap(len);
  *items_cap = (len / 3 + 2) * sizeof(struct image_fields);
  *str_cap = jscan_str_cap(len);
  return *keys_cap * sizeof(struct jscan_key) + *items_cap + *str_cap;
}

/* Scans value into d using scratch (size from scratch_layout). */
static int scan(struct dec *d, const char *value, size_t len, char *scratch) {
  size_t keys_cap, items_cap, str_cap;
  scratch_layout(len, &keys_cap, &items_cap, &str_cap);
  struct jscan_key *keys = (struct jscan_key *)(void *)scratch;
  d->items = scratch + keys_cap * sizeof *keys, d->items_cap = items_cap;
  jscan_init(&d->s, value, len, d->items + items_cap, str_cap, keys, keys_cap);
  return scan_value(d);
}

int event_decode(const char *key, size_t keylen, const char *value, size_t valuelen,
                 struct event *ev, const char **why) {
  alignas(max_align_t) char local[SCRATCH_LOCAL];
  size_t keys_cap, items_cap, str_cap;
  char *scratch = local;
  struct dec d = {0};
  memset(ev, 0, sizeof *ev);
  if ((*why = parse_key(key, keylen, ev)) != NULL) return -EINVAL;
  if (value == NULL) { /* Kafka tombstone: delete what the key names */
    ev->op = EVENT_DELETE;
    return 0;
  }
  size_t need = scratch_layout(valuelen, &keys_cap, &items_cap, &str_cap);
  if (need == 0) { /* its size does not fit in size_t */
    *why = "value too large to decode";
    return -EINVAL;
  }
  if (need > sizeof local) scratch = xmalloc(need); /* aborts: never a rejected good event */
  if (scan(&d, value, valuelen, scratch) < 0)
    *why = "value is not valid JSON";
  else if ((*why = check_envelope(&d.m, ev)) == NULL && ev->op == EVENT_UPSERT)
    *why = decode_upsert(&d.m, ev);
  if (scratch != local) free(scratch);
  return *why == NULL ? 0 : -EINVAL;
}
