/*
 * event_decode_jansson.c - the change-event decoder as it was before the
 * single-pass scanner (sync/codec/event_decode.c), kept unchanged but for its
 * names as a test oracle: the unit tests, the fuzz target and the benchmark
 * decode the same bytes with both and require the same verdict, reason,
 * event and record. Not linked into catalogd.
 *
 * It builds a jansson DOM with JSON_REJECT_DUPLICATES and reads the fields
 * from it.
 *
 * The key and the envelope must agree (organization, entity type and id):
 * a mismatch means a producer bug, and applying it could write one tenant's
 * data under another's key. Numeric columns may be JSON numbers or decimal
 * strings; absent nullable columns take the schema's defaults.
 */
#include "event_decode_oracle.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
    [CAT_VARIANT] = "variant", [CAT_PRODUCT] = "product",       [CAT_BRAND] = "brand",
    [CAT_TAG] = "tag",         [CAT_COLLECTION] = "collection",
};

static int kind_parse(const char *s, size_t n, enum cat_kind *out) {
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    if (strlen(kind_names[k]) == n && memcmp(kind_names[k], s, n) == 0) {
      *out = (enum cat_kind)k;
      return 0;
    }
  return -1;
}

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
  if (kind_parse(s1 + 1, (size_t)(s2 - s1 - 1), &ev->kind) != 0) return "key entity type unknown";
  ev->kind_known = true;
  if (uuid_parse(s2 + 1, (size_t)(key + n - s2 - 1), ev->id) != 0) return "key id is not a UUID";
  return NULL;
}

/* Skips the digits at s. */
static const char *skip_digits(const char *s) {
  while (*s >= '0' && *s <= '9')
    s++;
  return s;
}

/* True if s is one JSON number and nothing else:
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_number_text(const char *s) {
  const char *p = s + (*s == '-');
  if (*p == '0')
    p++;
  else if (*p >= '1' && *p <= '9')
    p = skip_digits(p);
  else
    return false;
  if (*p == '.') {
    if (p[1] < '0' || p[1] > '9') return false;
    p = skip_digits(p + 1);
  }
  if (*p == 'e' || *p == 'E') {
    p += 1 + (p[1] == '+' || p[1] == '-');
    if (*p < '0' || *p > '9') return false;
    p = skip_digits(p);
  }
  return *p == '\0';
}

/* Number or decimal string (written as a JSON number); absent or null -> def. */
static int j_num(json_t *o, const char *k, double def, double *out) {
  json_t *v = json_object_get(o, k);
  if (v == NULL || json_is_null(v)) {
    *out = def;
    return 0;
  }
  if (json_is_number(v)) {
    *out = json_number_value(v);
    return 0;
  }
  if (json_is_string(v)) {
    char *e;
    const char *s = json_string_value(v);
    if (!json_number_text(s)) return -1;
    *out = strtod(s, &e);
    return (e == s || *e || !isfinite(*out)) ? -1 : 0;
  }
  return -1;
}

static int j_i32(json_t *o, const char *k, int32_t def, int32_t *out) {
  double d;
  if (j_num(o, k, def, &d) != 0 || d != floor(d) || d < INT32_MIN || d > INT32_MAX) return -1;
  *out = (int32_t)d;
  return 0;
}

/* True if s is one or more decimal digits and nothing else, without a
 * leading zero (but "0"): the contract's int64 as a string. */
static bool canonical_digits(const char *s) {
  if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0')) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

/* Integer or canonical digit string (see canonical_digits; strtoll alone
 * took " 50", "+50", "050"): 0, -ERANGE outside int64_t, -ENOENT if
 * absent, -EINVAL for any other string, -1 for any other type. */
static int j_i64(json_t *o, const char *k, int64_t *out) {
  json_t *v = json_object_get(o, k);
  if (v == NULL) return -ENOENT;
  if (json_is_integer(v)) {
    *out = json_integer_value(v);
    return 0;
  }
  if (json_is_string(v)) {
    char *e;
    const char *s = json_string_value(v);
    if (!canonical_digits(s)) return -EINVAL;
    errno = 0;
    long long x = strtoll(s, &e, 10);
    if (errno == ERANGE) return -ERANGE; /* never clamp (issue 11 #7) */
    *out = x;
    return 0;
  }
  return -1;
}

/* String or NULL (absent, null); a non-string is an error (*bad = 1). */
static const char *j_str(json_t *o, const char *k, int *bad) {
  json_t *v = json_object_get(o, k);
  if (v == NULL || json_is_null(v)) return NULL;
  if (!json_is_string(v)) *bad = 1;
  return json_string_value(v);
}

static int j_bool(json_t *o, const char *k, bool def, bool *out) {
  json_t *v = json_object_get(o, k);
  if (v == NULL || json_is_null(v))
    *out = def;
  else if (json_is_boolean(v))
    *out = json_is_true(v);
  else
    return -1;
  return 0;
}

/* images: [{id, url, alt, position}] into a malloc'd array (caller frees). */
static int j_images(json_t *o, struct image_fields **out, size_t *n) {
  json_t *a = json_object_get(o, "images");
  *out = NULL, *n = 0;
  if (a == NULL || json_is_null(a)) return 0;
  if (!json_is_array(a)) return -1;
  *out = calloc(json_array_size(a) + 1, sizeof **out);
  if (*out == NULL) return -1;
  int bad = 0;
  for (size_t i = 0; i < json_array_size(a); i++) {
    json_t *im = json_array_get(a, i);
    struct image_fields *f = &(*out)[(*n)++];
    f->id = j_str(im, "id", &bad), f->url = j_str(im, "url", &bad), f->alt = j_str(im, "alt", &bad);
    if (!json_is_object(im) || j_i32(im, "position", 0, &f->position) != 0) bad = 1;
  }
  return bad ? -1 : 0;
}

/* [uuid strings] into a malloc'd array of pointers (caller frees). */
static int j_ids(json_t *o, const char *k, const char ***out, size_t *n) {
  json_t *a = json_object_get(o, k);
  *out = NULL, *n = 0;
  if (a == NULL || json_is_null(a)) return 0;
  if (!json_is_array(a)) return -1;
  *out = calloc(json_array_size(a) + 1, sizeof **out);
  if (*out == NULL) return -1;
  for (size_t i = 0; i < json_array_size(a); i++) {
    const char *s = json_string_value(json_array_get(a, i));
    if (s == NULL) return -1;
    (*out)[(*n)++] = s;
  }
  return 0;
}

static struct cat_hdr *decode_variant(json_t *d, const struct event *ev, const char *id,
                                      const char **why) {
  int bad = 0;
  struct image_fields *ims = NULL;
  struct variant_fields f = {.id = id, .org = ev->org, .version = ev->version};
  f.product_id = j_str(d, "product_id", &bad), f.sku = j_str(d, "sku", &bad);
  f.barcode = j_str(d, "barcode", &bad), f.status = j_str(d, "status", &bad);
  f.lot_number = j_str(d, "lot_number", &bad), f.warehouse_id = j_str(d, "warehouse_id", &bad);
  f.vendor = j_str(d, "vendor", &bad);
  bad |= j_num(d, "sale_price", NAN, &f.sale_price) || isnan(f.sale_price);
  bad |= j_num(d, "cost_price", 0, &f.cost_price) || j_num(d, "tax", 0, &f.tax);
  bad |= j_num(d, "weight", 0, &f.weight) || j_num(d, "dim_length", 0, &f.length);
  bad |= j_num(d, "dim_width", 0, &f.width) || j_num(d, "dim_height", 0, &f.height);
  bad |= j_i32(d, "stock_total", 0, &f.stock_total) ||
         j_i32(d, "stock_available", 0, &f.stock_available) ||
         j_i32(d, "stock_reserved", 0, &f.stock_reserved);
  bad |= j_bool(d, "track_inventory", true, &f.track_inventory);
  bad |= j_i32(d, "default_min_stock", 0, &f.min_stock) ||
         j_i32(d, "default_max_stock", 0, &f.max_stock);
  bad |= j_images(d, &ims, &f.n_images);
  f.images = ims;
  struct cat_variant *v = NULL;
  if (bad)
    *why = "variant data has a missing or mistyped field";
  else
    v = model_variant_new(&f, why);
  free(ims);
  return v ? &v->h : NULL;
}

static struct cat_hdr *decode_product(json_t *d, const struct event *ev, const char *id,
                                      const char **why) {
  int bad = 0;
  struct image_fields *ims = NULL;
  const char **tags = NULL, **cols = NULL;
  struct product_fields f = {.id = id, .org = ev->org, .version = ev->version};
  f.local_id = j_str(d, "local_id", &bad), f.title = j_str(d, "title", &bad);
  f.sku = j_str(d, "sku", &bad), f.barcode = j_str(d, "barcode", &bad);
  f.description = j_str(d, "description", &bad), f.status = j_str(d, "status", &bad);
  f.product_type = j_str(d, "product_type", &bad);
  f.unit_of_measure = j_str(d, "unit_of_measure", &bad);
  f.brand_id = j_str(d, "brand_id", &bad);
  if (f.unit_of_measure == NULL) f.unit_of_measure = "unidad";
  bad |= j_i32(d, "alert_stock", 0, &f.alert_stock);
  bad |= j_images(d, &ims, &f.n_images);
  bad |=
      j_ids(d, "tag_ids", &tags, &f.n_tags) || j_ids(d, "collection_ids", &cols, &f.n_collections);
  f.images = ims, f.tag_ids = tags, f.collection_ids = cols;
  struct cat_product *p = NULL;
  if (bad)
    *why = "product data has a missing or mistyped field";
  else
    p = model_product_new(&f, why);
  free(ims);
  free(tags);
  free(cols);
  return p ? &p->h : NULL;
}

static struct cat_hdr *decode_named(json_t *d, const struct event *ev, const char *id,
                                    const char **why) {
  int bad = 0;
  struct named_fields f = {.id = id, .org = ev->org, .version = ev->version};
  f.name = j_str(d, "name", &bad), f.slug = j_str(d, "slug", &bad);
  f.description = j_str(d, "description", &bad);
  if (bad) {
    *why = "data has a mistyped field";
    return NULL;
  }
  struct cat_named *n = model_named_new(ev->kind, &f, why);
  return n ? &n->h : NULL;
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
static const char *check_envelope(json_t *root, struct event *ev) {
  int bad = 0;
  const char *type = j_str(root, "event_type", &bad);
  const char *org = j_str(root, "organization_id", &bad);
  const char *eid = j_str(root, "entity_id", &bad);
  const char *evid = j_str(root, "event_id", &bad);
  uint8_t id[16];
  if (!json_is_object(root)) return "value is not a JSON object";
  if (type == NULL || org == NULL || eid == NULL || bad) return "envelope field missing";
  const char *dot = strchr(type, '.');
  enum cat_kind kind;
  if (dot == NULL || kind_parse(type, (size_t)(dot - type), &kind) != 0)
    return "unknown event_type";
  if (strcmp(dot + 1, "upserted") == 0)
    ev->op = EVENT_UPSERT;
  else if (strcmp(dot + 1, "deleted") == 0)
    ev->op = EVENT_DELETE;
  else
    return "unknown event_type";
  if (kind != ev->kind) return "event_type does not match the key";
  if (json_string_length(json_object_get(root, "organization_id")) != strlen(ev->org) ||
      strcmp(org, ev->org) != 0)
    return "organization_id does not match the key";
  if (uuid_parse(eid, strlen(eid), id) != 0 || memcmp(id, ev->id, 16) != 0)
    return "entity_id does not match the key";
  int vrc = j_i64(root, "version", &ev->version);
  if (vrc == -ERANGE) return "version out of range";
  if (vrc == -ENOENT) return "version missing";
  if (vrc != 0 || ev->version <= 0) return "version is not a positive integer";
  if (evid) copy_whole_chars(ev->event_id, sizeof ev->event_id, evid);
  return NULL;
}

int oracle_event_decode(const char *key, size_t keylen, const char *value, size_t valuelen,
                        struct event *ev, const char **why) {
  memset(ev, 0, sizeof *ev);
  if ((*why = parse_key(key, keylen, ev)) != NULL) return -EINVAL;
  if (value == NULL) { /* Kafka tombstone: delete what the key names */
    ev->op = EVENT_DELETE;
    return 0;
  }
  json_error_t jerr;
  json_t *root = json_loadb(value, valuelen, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    *why = "value is not valid JSON";
    return -EINVAL;
  }
  if ((*why = check_envelope(root, ev)) == NULL && ev->op == EVENT_UPSERT) {
    json_t *d = json_object_get(root, "data");
    char idt[UUID_STR_LEN + 1];
    uuid_format(ev->id, idt);
    json_t *jorg = json_object_get(d, "organization_id");
    const char *dorg = json_string_value(jorg);
    const char *did = json_string_value(json_object_get(d, "id"));
    uint8_t x[16];
    if (!json_is_object(d))
      *why = "upsert without a data object";
    else if (jorg != NULL && !json_is_null(jorg) && !json_is_string(jorg))
      *why = "data organization_id is not a string";
    else if (dorg != NULL &&
             (json_string_length(jorg) != strlen(ev->org) || strcmp(dorg, ev->org) != 0))
      *why = "data organization_id differs";
    else if (did != NULL && (uuid_parse(did, strlen(did), x) != 0 || memcmp(x, ev->id, 16) != 0))
      *why = "data id differs from entity_id";
    else if (ev->kind == CAT_VARIANT)
      ev->record = decode_variant(d, ev, idt, why);
    else if (ev->kind == CAT_PRODUCT)
      ev->record = decode_product(d, ev, idt, why);
    else
      ev->record = decode_named(d, ev, idt, why);
    if (ev->record == NULL && *why == NULL) *why = "data rejected";
  }
  json_decref(root);
  return *why == NULL ? 0 : -EINVAL;
}
