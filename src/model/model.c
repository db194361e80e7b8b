/*
 * model.c - builds the packed, immutable catalog records.
 *
 * Each builder runs a "packer" twice over the same steps: once to measure
 * (base == NULL) and once to copy into the single allocation. Keeping both
 * passes in one function body means the layout can never disagree with the
 * size computed for it.
 *
 * Out of memory aborts (xalloc.h), as everywhere in catalogd: a builder
 * that returned NULL for it would be taken for a bad row or event, and a
 * catalog with rows missing could be published. NULL from a builder means
 * the input broke the schema's promises, nothing else.
 */
#include "model.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "xalloc.h"

#define PK_LENS 32 /* strings whose lengths the measuring pass keeps for the copy */

/* A record is laid out twice: once measuring (base NULL), once copying into
 * the allocation. The strings' lengths measured the first time are kept
 * (up to PK_LENS, in order), so the copy does not take strlen again. */
struct packer {
  char *base; /* NULL while measuring */
  size_t off;
  size_t lens[PK_LENS]; /* the first pass's string lengths, NUL included */
  unsigned nstr;        /* strings laid out in this pass */
};

/* The packer's first pass (lens is filled by it: not zeroed). */
static void pk_measure_pass(struct packer *p, size_t off) {
  p->base = NULL, p->off = off, p->nstr = 0;
}

/* The packer's second pass, into base. */
static void pk_copy_pass(struct packer *p, void *base, size_t off) {
  p->base = base, p->off = off, p->nstr = 0;
}

/* Reserves n bytes aligned to align; returns where they are (NULL while
 * measuring). */
static void *pk_reserve(struct packer *p, size_t n, size_t align) {
  p->off = (p->off + align - 1) & ~(align - 1);
  void *at = p->base ? p->base + p->off : NULL;
  p->off += n;
  return at;
}

/* Copies s (NULL -> "") with its NUL; returns the copy. */
static const char *pk_str(struct packer *p, const char *s) {
  if (s == NULL) s = "";
  unsigned i = p->nstr++;
  size_t n;
  if (p->base != NULL && i < PK_LENS) {
    n = p->lens[i];
    assert(n == strlen(s) + 1);
  } else {
    n = strlen(s) + 1;
    if (i < PK_LENS) p->lens[i] = n;
  }
  char *at = pk_reserve(p, n, 1);
  if (at) memcpy(at, s, n);
  return at;
}

/* Hex digit values plus one, so that 0 marks a non-digit. A table instead
 * of range tests: UUID digits are random, and branching on "digit or
 * letter" mispredicted about every other character (uuid_parse was a
 * quarter of event decoding and 8 % of the warm load). */
static const uint8_t hex1[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

int uuid_parse(const char *s, size_t len, uint8_t out[16]) {
  static const uint8_t at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
  uint8_t id[16];
  unsigned bad = 0;
  if (s == NULL || len != UUID_STR_LEN) return -1;
  if (s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return -1;
  for (int i = 0; i < 16; i++) {
    unsigned hi = hex1[(unsigned char)s[at[i]]], lo = hex1[(unsigned char)s[at[i] + 1]];
    bad |= (hi == 0) | (lo == 0);
    id[i] = (uint8_t)((hi - 1) << 4 | (lo - 1));
  }
  if (bad) return -1;
  memcpy(out, id, 16);
  return 0;
}

void uuid_format(const uint8_t id[16], char out[UUID_STR_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[id[i] >> 4];
    out[o++] = hex[id[i] & 15];
  }
  out[o] = '\0';
}

static int uuid_parse_cstr(const char *s, uint8_t out[16]) {
  return s ? uuid_parse(s, strlen(s), out) : -1;
}

/* An id given as 16 bytes (bin, when not NULL) or as text: its bytes into
 * out. 0, or -1 if the text is not a UUID. */
static int field_id(const char *txt, const uint8_t *bin, uint8_t out[16]) {
  if (bin == NULL) return uuid_parse_cstr(txt, out);
  memcpy(out, bin, 16);
  return 0;
}

size_t model_key(uint8_t *buf, const uint8_t id[16], const char *org, size_t orglen) {
  if (orglen == 0 || orglen > CAT_ORG_MAX) return 0;
  memcpy(buf, id, 16);
  memcpy(buf + 16, org, orglen);
  return 16 + orglen;
}

/* Lays out the header's key and org. */
static void pk_hdr(struct packer *p, struct cat_hdr *h, enum cat_kind kind, const uint8_t id[16],
                   const char *org, size_t orglen, int64_t version) {
  uint8_t *key = pk_reserve(p, 16 + orglen + 1, 1);
  if (p->base == NULL) return;
  memcpy(key, id, 16);
  memcpy(key + 16, org, orglen);
  key[16 + orglen] = '\0';
  *h = (struct cat_hdr){.key = key,
                        .keylen = (uint32_t)(16 + orglen),
                        .kind = (uint8_t)kind,
                        .version = version,
                        .org = (const char *)key + 16};
}

/* An image with its id's bytes (parsed once, or given binary). */
struct image_ref {
  const struct image_fields *f;
  uint8_t id[16];
};

/* By position, then id: the bytes sort as the canonical text does (any
 * letter case: the digits are in ASCII order). */
static int image_cmp(const void *a, const void *b) {
  const struct image_ref *x = a, *y = b;
  if (x->f->position != y->f->position) return x->f->position < y->f->position ? -1 : 1;
  return memcmp(x->id, y->id, 16);
}

#define IMAGES_ON_STACK 16 /* a record's images sorted without malloc up to this many */

/* Sorts v[0..n) by image_cmp: insertion sort for the few images a record
 * usually has (qsort's call and setup cost more than the sort). */
static void images_sort(struct image_ref *v, size_t n) {
  if (n > IMAGES_ON_STACK) {
    qsort(v, n, sizeof *v, image_cmp);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    struct image_ref x = v[i];
    size_t j = i;
    for (; j > 0 && image_cmp(&x, &v[j - 1]) < 0; j--)
      v[j] = v[j - 1];
    v[j] = x;
  }
}

/* Validates n images (ids from bin when not NULL, else their text) and
 * returns them sorted by (position, id): in stack (IMAGES_ON_STACK
 * entries) when they fit, else in a new array; free it with
 * images_release. NULL with *why set if one breaks the schema. */
static struct image_ref *images_sorted(const struct image_fields *im, const uint8_t (*bin)[16],
                                       size_t n, struct image_ref *stack, const char **why) {
  struct image_ref *v = n <= IMAGES_ON_STACK ? stack : xmalloc(n * sizeof *v);
  for (size_t i = 0; i < n; i++) {
    v[i].f = &im[i];
    if (field_id(im[i].id, bin ? bin[i] : NULL, v[i].id) != 0 || im[i].url == NULL) {
      *why = im[i].url ? "image id is not a UUID" : "image url is missing";
      if (v != stack) free(v);
      return NULL;
    }
  }
  images_sort(v, n);
  return v;
}

/* Frees what images_sorted allocated (nothing if it used stack). */
static void images_release(struct image_ref *v, struct image_ref *stack) {
  if (v != stack) free(v);
}

/* Lays out n images (already sorted); returns the array. */
static const struct cat_image *pk_images(struct packer *p, const struct image_ref *v, size_t n) {
  struct cat_image *out = pk_reserve(p, n * sizeof *out, _Alignof(struct cat_image));
  for (size_t i = 0; i < n; i++) {
    struct cat_image im = {
        .url = pk_str(p, v[i].f->url), .alt = pk_str(p, v[i].f->alt), .position = v[i].f->position};
    if (out == NULL) continue;
    memcpy(im.id, v[i].id, 16);
    out[i] = im;
  }
  return out;
}

static const char *check_org(const char *org) {
  if (org == NULL || org[0] == '\0') return "organization_id is missing";
  if (strlen(org) > CAT_ORG_MAX) return "organization_id is too long";
  return NULL;
}

static const char *check_variant(const struct variant_fields *f, uint8_t id[16], uint8_t pid[16]) {
  if (field_id(f->id, f->id_bin, id) != 0) return "id is not a UUID";
  if (field_id(f->product_id, f->product_id_bin, pid) != 0) return "product_id is not a UUID";
  if (f->sku == NULL) return "sku is missing";
  if (f->status == NULL) return "status is missing";
  if (f->warehouse_id == NULL) return "warehouse_id is missing";
  return check_org(f->org);
}

/* One pass of the variant layout (measure or copy). */
static void pk_variant(struct packer *p, struct cat_variant *v, const struct variant_fields *f,
                       const uint8_t id[16], const uint8_t pid[16], const struct image_ref *ims) {
  struct cat_variant r = {0};
  r.images = pk_images(p, ims, f->n_images);
  pk_hdr(p, &r.h, CAT_VARIANT, id, f->org, strlen(f->org), f->version);
  r.sku = pk_str(p, f->sku);
  r.barcode = pk_str(p, f->barcode);
  r.warehouse_id = pk_str(p, f->warehouse_id);
  r.lot_number = pk_str(p, f->lot_number);
  r.vendor = pk_str(p, f->vendor);
  if (v == NULL) return;
  memcpy(r.product_id, pid, 16);
  r.sale_price = f->sale_price, r.cost_price = f->cost_price, r.tax = f->tax;
  r.weight = f->weight, r.length = f->length, r.width = f->width, r.height = f->height;
  r.stock_total = f->stock_total, r.stock_available = f->stock_available;
  r.stock_reserved = f->stock_reserved;
  r.min_stock = f->min_stock, r.max_stock = f->max_stock;
  r.active = strcmp(f->status, "active") == 0;
  r.track_inventory = f->track_inventory;
  r.n_images = (uint32_t)f->n_images;
  *v = r;
}

struct cat_variant *model_variant_new(const struct variant_fields *f, const char **why) {
  uint8_t id[16], pid[16];
  struct cat_variant *v = NULL;
  struct image_ref stack[IMAGES_ON_STACK], *ims = stack;
  if ((*why = check_variant(f, id, pid)) != NULL) goto out;
  if ((ims = images_sorted(f->images, f->image_ids_bin, f->n_images, stack, why)) == NULL) goto out;
  struct packer p;
  pk_measure_pass(&p, sizeof *v);
  pk_variant(&p, NULL, f, id, pid, ims);
  v = xmalloc(p.off);
  pk_copy_pass(&p, v, sizeof *v);
  pk_variant(&p, v, f, id, pid, ims);
out:
  images_release(ims, stack);
  return v;
}

/* n ids into out: copied from bin when not NULL, else parsed from the
 * strings s. Returns 0 or -1 (a string is not a UUID). */
static int parse_ids(const char *const *s, const uint8_t (*bin)[16], size_t n, uint8_t (*out)[16]) {
  if (bin != NULL) {
    if (n) memcpy(out, bin, n * 16);
    return 0;
  }
  for (size_t i = 0; i < n; i++)
    if (uuid_parse_cstr(s[i], out[i]) != 0) return -1;
  return 0;
}

/* Does f name a brand (as text or bytes)? */
static bool has_brand(const struct product_fields *f) {
  return f->brand_id != NULL || f->brand_id_bin != NULL;
}

static const char *check_product(const struct product_fields *f, uint8_t id[16],
                                 uint8_t brand[16]) {
  if (field_id(f->id, f->id_bin, id) != 0) return "id is not a UUID";
  if (has_brand(f) && field_id(f->brand_id, f->brand_id_bin, brand) != 0)
    return "brand_id is not a UUID";
  if (f->title == NULL) return "title is missing";
  if (f->sku == NULL) return "sku is missing";
  if (f->status == NULL) return "status is missing";
  return check_org(f->org);
}

static void pk_product(struct packer *p, struct cat_product *v, const struct product_fields *f,
                       const uint8_t id[16], const uint8_t brand[16], const struct image_ref *ims) {
  struct cat_product r = {0};
  r.images = pk_images(p, ims, f->n_images);
  uint8_t(*tags)[16] = pk_reserve(p, f->n_tags * 16, 1);
  uint8_t(*cols)[16] = pk_reserve(p, f->n_collections * 16, 1);
  pk_hdr(p, &r.h, CAT_PRODUCT, id, f->org, strlen(f->org), f->version);
  r.local_id = pk_str(p, f->local_id);
  r.title = pk_str(p, f->title);
  r.sku = pk_str(p, f->sku);
  r.barcode = pk_str(p, f->barcode);
  r.description = pk_str(p, f->description);
  r.status = pk_str(p, f->status);
  r.product_type = pk_str(p, f->product_type);
  r.unit_of_measure = pk_str(p, f->unit_of_measure);
  if (v == NULL) return;
  parse_ids(f->tag_ids, f->tag_ids_bin, f->n_tags, tags);
  parse_ids(f->collection_ids, f->collection_ids_bin, f->n_collections, cols);
  r.tag_ids = (const uint8_t(*)[16])tags, r.n_tags = (uint32_t)f->n_tags;
  r.collection_ids = (const uint8_t(*)[16])cols, r.n_collections = (uint32_t)f->n_collections;
  r.alert_stock = f->alert_stock;
  r.active = strcmp(f->status, "activa") == 0;
  r.has_brand = has_brand(f);
  if (r.has_brand) memcpy(r.brand_id, brand, 16);
  r.n_images = (uint32_t)f->n_images;
  *v = r;
}

struct cat_product *model_product_new(const struct product_fields *f, const char **why) {
  uint8_t id[16], brand[16] = {0};
  struct cat_product *v = NULL;
  struct image_ref stack[IMAGES_ON_STACK], *ims = stack;
  /* Text ids are checked before anything is allocated for the record;
   * binary ones need no check (and no scratch). */
  bool text =
      (f->n_tags && f->tag_ids_bin == NULL) || (f->n_collections && f->collection_ids_bin == NULL);
  uint8_t(*scratch)[16] = text ? xmalloc((f->n_tags + f->n_collections + 1) * 16) : NULL;
  if ((*why = check_product(f, id, brand)) != NULL) goto out;
  if (text && (parse_ids(f->tag_ids, f->tag_ids_bin, f->n_tags, scratch) != 0 ||
               parse_ids(f->collection_ids, f->collection_ids_bin, f->n_collections,
                         scratch + f->n_tags) != 0)) {
    *why = "a tag or collection id is not a UUID";
    goto out;
  }
  if ((ims = images_sorted(f->images, f->image_ids_bin, f->n_images, stack, why)) == NULL) goto out;
  struct packer p;
  pk_measure_pass(&p, sizeof *v);
  pk_product(&p, NULL, f, id, brand, ims);
  v = xmalloc(p.off);
  pk_copy_pass(&p, v, sizeof *v);
  pk_product(&p, v, f, id, brand, ims);
out:
  free(scratch);
  images_release(ims, stack);
  return v;
}

static void pk_named(struct packer *p, struct cat_named *v, enum cat_kind kind,
                     const struct named_fields *f, const uint8_t id[16]) {
  struct cat_named r = {0};
  pk_hdr(p, &r.h, kind, id, f->org, strlen(f->org), f->version);
  r.name = pk_str(p, f->name);
  r.slug = pk_str(p, f->slug);
  r.description = pk_str(p, f->description);
  if (v) *v = r;
}

struct cat_named *model_named_new(enum cat_kind kind, const struct named_fields *f,
                                  const char **why) {
  uint8_t id[16];
  assert(kind == CAT_BRAND || kind == CAT_TAG || kind == CAT_COLLECTION);
  if (field_id(f->id, f->id_bin, id) != 0) {
    *why = "id is not a UUID";
    return NULL;
  }
  if (f->name == NULL) {
    *why = "name is missing";
    return NULL;
  }
  if (kind != CAT_TAG && f->slug == NULL) {
    *why = "slug is missing";
    return NULL;
  }
  if ((*why = check_org(f->org)) != NULL) return NULL;
  struct packer p;
  pk_measure_pass(&p, sizeof(struct cat_named));
  pk_named(&p, NULL, kind, f, id);
  struct cat_named *v = xmalloc(p.off);
  pk_copy_pass(&p, v, sizeof *v);
  pk_named(&p, v, kind, f, id);
  return v;
}

/* Allocates a bare header record of total size `size` (zeroed) with key
 * fields set. Returns NULL only if orglen is 0 or over CAT_ORG_MAX. */
static struct cat_hdr *hdr_alloc(size_t size, enum cat_kind kind, const uint8_t id[16],
                                 const char *org, size_t orglen, int64_t version) {
  if (orglen == 0 || orglen > CAT_ORG_MAX) return NULL;
  struct packer p;
  pk_measure_pass(&p, size);
  struct cat_hdr tmp;
  pk_hdr(&p, &tmp, kind, id, org, orglen, version);
  struct cat_hdr *h = xcalloc(1, p.off);
  pk_copy_pass(&p, h, size);
  pk_hdr(&p, h, kind, id, org, orglen, version);
  return h;
}

struct cat_hdr *model_tombstone_new(enum cat_kind kind, const uint8_t id[16], const char *org,
                                    size_t orglen, int64_t version) {
  struct cat_hdr *h = hdr_alloc(sizeof *h, kind, id, org, orglen, version);
  if (h) h->deleted = true;
  return h;
}

struct cat_idlist *model_idlist_new(const uint8_t id[16], const char *org, size_t orglen,
                                    uint32_t cap) {
  struct cat_idlist *l =
      (struct cat_idlist *)hdr_alloc(sizeof *l, CAT_PRODUCT_VARIANTS, id, org, orglen, 0);
  if (l == NULL) return NULL;
  l->ids = xmalloc((cap ? cap : 1) * sizeof *l->ids);
  l->cap = cap ? cap : 1;
  return l;
}

/* The one list of entity kind names (model_kind_name, model_kind_parse). */
static const char *const kind_names[CAT_ENTITY_KINDS] = {
    [CAT_VARIANT] = "variant", [CAT_PRODUCT] = "product",       [CAT_BRAND] = "brand",
    [CAT_TAG] = "tag",         [CAT_COLLECTION] = "collection",
};

const char *model_kind_name(enum cat_kind kind) {
  return (unsigned)kind < CAT_ENTITY_KINDS ? kind_names[kind] : "?";
}

int model_kind_parse(const char *s, size_t n, enum cat_kind *out) {
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    if (strlen(kind_names[k]) == n && memcmp(kind_names[k], s, n) == 0) {
      *out = (enum cat_kind)k;
      return 0;
    }
  return -1;
}

void model_free(struct cat_hdr *h) {
  if (h == NULL) return;
  if (h->kind == CAT_PRODUCT_VARIANTS) free(((struct cat_idlist *)h)->ids);
  free(h);
}
