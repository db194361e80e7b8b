/*
 * rpc_common.c - request checks and record-to-proto conversion shared by
 * the catalog methods.
 *
 * Conversions point proto string fields straight at snapshot strings: the
 * reply is packed before the read section ends, so no copy is needed.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "catalog.pb-c.h"
#include "rpc.h"
#include "rpc_convert.h"
#include "utf8.h"

void rpc_fail(struct rpc_ctx *ctx, struct rpc_result *out, grpc_status_code code, const char *fmt,
              ...) {
  va_list ap;
  char buf[512];
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  out->code = code;
  out->details = arena_printf(ctx->arena, "%s", buf);
  out->reply = NULL;
}

/* Copies s for echoing in a message: at most 64 bytes, control characters and
 * non-ASCII shown as '?', so a hostile id cannot bloat or corrupt a reply. */
static const char *echo(struct rpc_ctx *ctx, const char *s) {
  size_t n = strlen(s), cap = n > 64 ? 64 : n;
  char *e = arena_alloc(ctx->arena, cap + 4);
  for (size_t i = 0; i < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    e[i] = (c < 0x20 || c >= 0x7f || c == '\'') ? '?' : (char)c;
  }
  strcpy(e + cap, n > cap ? "..." : "");
  return e;
}

/* Reads a varint at *p (< end); returns -1 if truncated. */
static int varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  *v = 0;
  for (int shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return 0;
  }
  return -1;
}

/* Deepest nesting of unknown groups skipped (protobuf's own parsers stop
 * at 100 levels of any nesting); deeper is refused, the stack stays small. */
#define GROUP_DEPTH_MAX 64

static int skip_group(const uint8_t **p, const uint8_t *end, uint64_t fnum, int depth);

/* Skips the value of a field whose tag (wire type and number) was just read
 * at *p. Returns 0, or -1 if it is malformed: truncated, a length past the
 * end, an end-group without its start, wire type 6 or 7, a group not closed
 * by its own number or nested deeper than GROUP_DEPTH_MAX. */
static int skip_value(const uint8_t **p, const uint8_t *end, uint64_t tag, int depth) {
  uint64_t n;
  switch (tag & 7) {
  case 0: return varint(p, end, &n);
  case 1:
    if (end - *p < 8) return -1;
    *p += 8;
    return 0;
  case 5:
    if (end - *p < 4) return -1;
    *p += 4;
    return 0;
  case 2:
    if (varint(p, end, &n) != 0 || n > (uint64_t)(end - *p)) return -1;
    *p += n;
    return 0;
  case 3: return skip_group(p, end, tag >> 3, depth + 1);
  default: return -1;
  }
}

/* Skips the fields of the group fnum opened just before *p, and its
 * end-group tag. Returns 0 or -1 (see skip_value). */
static int skip_group(const uint8_t **p, const uint8_t *end, uint64_t fnum, int depth) {
  uint64_t tag;
  if (fnum == 0 || depth > GROUP_DEPTH_MAX) return -1; /* field 0 is invalid */
  for (;;) {
    if (*p >= end || varint(p, end, &tag) != 0) return -1; /* never closed */
    if ((tag & 7) == 4) return tag >> 3 == fnum ? 0 : -1;
    if (skip_value(p, end, tag, depth) != 0) return -1;
  }
}

/* Refuses a NUL byte in the value v[0, n) of known string field fnum
 * (1 or 2); returns -1 with out filled, else 0. */
static int check_nul(struct rpc_ctx *ctx, struct rpc_result *out, uint64_t fnum, const uint8_t *v,
                     uint64_t n, const char *field2) {
  if ((fnum != 1 && fnum != 2) || memchr(v, 0, n) == NULL) return 0;
  rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "%s contains a NUL byte",
           fnum == 1 ? "organization_id" : field2);
  return -1;
}

int rpc_precheck(struct rpc_ctx *ctx, struct rpc_result *out, const uint8_t **req, size_t *len,
                 const char *field2) {
  const uint8_t *p = *req, *end = *req + *len, *f;
  uint8_t *copy = NULL; /* the request without its groups, once one is seen */
  size_t used = 0;
  uint64_t tag, n;
  while (p < end) {
    f = p;
    if (varint(&p, end, &tag) != 0) return 0; /* malformed: unpack will reject it */
    if ((tag & 7) == 3) {
      if (skip_group(&p, end, tag >> 3, 1) != 0) return 0; /* unpack refuses any group */
      if (copy == NULL) {
        copy = arena_alloc(ctx->arena, *len ? *len : 1);
        used = (size_t)(f - *req);
        memcpy(copy, *req, used);
      }
      continue;
    }
    if ((tag & 7) == 2) {
      /* Only the known string fields: an unknown field (a newer client's)
       * is skipped by protobuf-c whatever its bytes (proto3 forward
       * compatibility); fields 3 and 4 are bools, never length-delimited. */
      if (varint(&p, end, &n) != 0 || n > (uint64_t)(end - p)) return 0;
      if (check_nul(ctx, out, tag >> 3, p, n, field2) != 0) return -1;
      p += n;
    } else if (skip_value(&p, end, tag, 0) != 0) {
      return 0;
    }
    if (copy != NULL) memcpy(copy + used, f, (size_t)(p - f)), used += (size_t)(p - f);
  }
  if (copy != NULL) *req = copy, *len = used;
  return 0;
}

/* Refuses a string field that is not UTF-8 (INVALID_ARGUMENT naming it). */
static int check_utf8(struct rpc_ctx *ctx, struct rpc_result *out, const char *field,
                      const char *s) {
  if (utf8_valid(s)) return 0;
  rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "%s is not valid UTF-8", field);
  return -1;
}

/* Checks organization_id: non-empty, at most CAT_ORG_MAX bytes, valid UTF-8
 * (as proto3 requires of a string; not an unknown tenant), the length first
 * so that an oversized one is refused without scanning it. On failure fills
 * out with INVALID_ARGUMENT and returns -1. */
static int check_org(struct rpc_ctx *ctx, struct rpc_result *out, const char *org) {
  size_t n = strlen(org);
  if (n == 0) {
    rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "organization_id is required");
    return -1;
  }
  if (n > CAT_ORG_MAX) {
    rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT,
             "organization_id is %zu bytes; the limit is %d", n, CAT_ORG_MAX);
    return -1;
  }
  return check_utf8(ctx, out, "organization_id", org);
}

/* organization_id of a catalog request: field 1, a string, in every one of
 * them. Read through the descriptor so that one prologue serves all
 * request types; protobuf-c lists fields by number, so it is fields[0]. */
static const char *request_org(const ProtobufCMessage *m) {
  const ProtobufCFieldDescriptor *f = &m->descriptor->fields[0];
  assert(m->descriptor->n_fields > 0 && f->id == 1 && f->type == PROTOBUF_C_TYPE_STRING &&
         f->label == PROTOBUF_C_LABEL_NONE);
  return *(char *const *)(const void *)((const char *)m + f->offset);
}

void *rpc_request(struct rpc_ctx *ctx, struct rpc_result *out, const uint8_t *req, size_t len,
                  const ProtobufCMessageDescriptor *desc, const char *field2) {
  if (rpc_precheck(ctx, out, &req, &len, field2) != 0) return NULL;
  ProtobufCMessage *m = protobuf_c_message_unpack(desc, &ctx->arena->pb, len, req);
  if (m == NULL) {
    rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "request is not a %s", desc->short_name);
    return NULL;
  }
  out->org = request_org(m);
  return check_org(ctx, out, out->org) == 0 ? m : NULL;
}

int rpc_parse_id(struct rpc_ctx *ctx, struct rpc_result *out, const char *field, const char *s,
                 uint8_t id[16]) {
  if (s[0] == '\0') {
    rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "%s is required", field);
    return -1;
  }
  if (uuid_parse(s, strlen(s), id) == 0) return 0;
  /* Only on the error path: say which of the two it is (a UUID is ASCII). */
  if (check_utf8(ctx, out, field, s) != 0) return -1;
  rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "%s '%s' is not a UUID", field, echo(ctx, s));
  return -1;
}

uint8_t (*rpc_parse_ids(struct rpc_ctx *ctx, struct rpc_result *out, char **ids, size_t n))[16] {
  if (n > (size_t)ctx->cfg->max_batch_ids) {
    rpc_fail(ctx, out, GRPC_STATUS_INVALID_ARGUMENT, "variant_ids has %zu ids; the limit is %d", n,
             ctx->cfg->max_batch_ids);
    return NULL;
  }
  uint8_t(*v)[16] = arena_alloc(ctx->arena, (n ? n : 1) * 16);
  for (size_t i = 0; i < n; i++) {
    if (ids[i][0] != '\0' && uuid_parse(ids[i], strlen(ids[i]), v[i]) == 0) continue;
    char field[48]; /* the error path only: name the offending element */
    snprintf(field, sizeof field, "variant_ids[%zu]", i);
    rpc_parse_id(ctx, out, field, ids[i], v[i]);
    return NULL;
  }
  return v;
}

/* ---- Conversions (rpc_convert.h) ---- */

bool rpc_variant_sellable(const struct snapshot *s, const struct cat_variant *v) {
  if (!v->active) return false;
  const struct cat_product *p = snap_product(s, v->product_id, v->h.org, v->h.keylen - 16);
  return p != NULL && p->active;
}

void rpc_sellable_many(struct rpc_ctx *ctx, const struct cat_variant *const *v, size_t n,
                       bool *sellable) {
  /* Only active variants need their product: look those up together. */
  size_t *at = arena_alloc(ctx->arena, (n + 1) * sizeof *at), k = 0;
  uint8_t(*pids)[16] = arena_alloc(ctx->arena, (n + 1) * 16);
  const struct cat_hdr **p = arena_alloc(ctx->arena, (n + 1) * sizeof *p);
  const char *org = NULL;
  for (size_t i = 0; i < n; i++) {
    sellable[i] = false;
    if (v[i] == NULL || !v[i]->active) continue;
    org = v[i]->h.org; /* one organization per call */
    memcpy(pids[k], v[i]->product_id, 16);
    at[k++] = i;
  }
  if (k == 0) return;
  snap_get_many(ctx->snap, CAT_PRODUCT, (const uint8_t(*)[16])pids, k, org, strlen(org), p);
  for (size_t j = 0; j < k; j++)
    sellable[at[j]] = p[j] != NULL && ((const struct cat_product *)p[j])->active;
}

char *rpc_uuid(struct arena *a, const uint8_t id[16]) {
  char *s = arena_alloc(a, UUID_STR_LEN + 1);
  uuid_format(id, s);
  return s;
}

Catalog__Variant *rpc_variant_msg(struct arena *a, const struct cat_variant *v) {
  Catalog__Variant *m = arena_alloc(a, sizeof *m);
  Catalog__Dimensions *d = arena_alloc(a, sizeof *d);
  *m = (Catalog__Variant)CATALOG__VARIANT__INIT;
  *d = (Catalog__Dimensions)CATALOG__DIMENSIONS__INIT;
  d->length = v->length, d->width = v->width, d->height = v->height;
  m->variant_id = rpc_uuid(a, v->h.key), m->product_id = rpc_uuid(a, v->product_id);
  m->sku = rpc_str(v->sku), m->barcode = rpc_str(v->barcode);
  m->sale_price = v->sale_price, m->cost_price = v->cost_price;
  m->tax = v->tax, m->weight = v->weight, m->dimensions = d;
  m->lot_number = rpc_str(v->lot_number);
  m->stock_total = v->stock_total, m->stock_available = v->stock_available;
  m->stock_reserved = v->stock_reserved;
  m->warehouse_id = rpc_str(v->warehouse_id), m->vendor = rpc_str(v->vendor);
  m->track_inventory = v->track_inventory;
  m->default_min_stock = v->min_stock, m->default_max_stock = v->max_stock;
  m->n_images = v->n_images;
  m->images = arena_alloc(a, (v->n_images ? v->n_images : 1) * sizeof *m->images);
  for (uint32_t i = 0; i < v->n_images; i++) {
    const struct cat_image *im = &v->images[i];
    Catalog__VariantImage *x = arena_alloc(a, sizeof *x);
    *x = (Catalog__VariantImage)CATALOG__VARIANT_IMAGE__INIT;
    x->image_id = rpc_uuid(a, im->id), x->url = rpc_str(im->url), x->alt = rpc_str(im->alt);
    x->position = im->position;
    m->images[i] = x;
  }
  return m;
}

int rpc_check_versions(struct rpc_ctx *ctx, struct rpc_result *out, enum cat_kind kind,
                       const uint8_t (*ids)[16], size_t n, const char *org) {
  if (ctx->check_only) return -1; /* the request passed its checks: stop here */
  if (ctx->min_version <= 0) return 0;
  size_t orglen = strlen(org);
  for (size_t i = 0; i < n; i++) {
    int64_t held = snap_held_version(ctx->snap, kind, ids[i], org, orglen);
    if (held >= ctx->min_version) continue;
    char text[UUID_STR_LEN + 1], at[40] = "not held";
    uuid_format(ids[i], text);
    if (held > 0) snprintf(at, sizeof at, "held at version %lld", (long long)held);
    rpc_fail(ctx, out, GRPC_STATUS_UNAVAILABLE,
             "x-catalog-min-version %lld not reached: %s %s is %s", (long long)ctx->min_version,
             kind == CAT_PRODUCT ? "product" : "variant", text, at);
    ctx->version_unmet = out->details;
    ctx->version_unmet_key = store_change_key(kind, ids[i], org, orglen);
    return -1;
  }
  return 0;
}
