/*
 * format.c - the checkpoint stream: a snapshot to bytes and back (see
 * checkpoint.h; the layout is in docs/ARCHITECTURE.md, "Checkpoints").
 *
 *   header   "CATDCKPT" | u32 version | u32 body length | body | u32 crc
 *   block*   'B' | u32 payload length | u32 records | payload | u32 crc
 *   trailer  'E' | u32 length | u32 0 | u64 records | (u64 records, u64 live) per kind
 *            | 32 hex digits of the state digest | u32 crc
 *
 * The digest and the exact counts are in the trailer (format 3), so the
 * encoder hashes each record as it writes it and the first bytes leave at
 * once; before, a peer spent a whole pass over the snapshot on the digest
 * before its first byte. The header gives the live counts, to size the
 * reader's maps.
 *
 * Integers in bodies and payloads are LEB128 varints (signed ones zigzag),
 * fixed fields little-endian; every crc is CRC-32C of the bytes before it in
 * the same unit. A record is a flag byte (kind, tombstone, "same organization
 * as the previous record"), the 16-byte id, the organization unless the
 * flag says it repeats, the version, then its fields; strings are a length,
 * the bytes and a NUL (checked), so fields point into the block while it is
 * decoded. Doubles that are 0 are left out (a bitmask says which follow).
 *
 * Records are rebuilt through the model's builders, the path events and rows
 * take: a checkpoint cannot produce a record an event could not (ids are
 * handed to them binary, as stored). Decoded records are put in groups
 * (store_put_many) on a second thread (put_stage.h), into maps sized from
 * the header's live counts, as far as the stream's length or the records
 * that came vouch for them (put_stage_start).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "digest.h"
#include "put_stage.h"
#include "strbuf.h"
#include "xalloc.h"

#define MAGIC         "CATDCKPT"
#define BLOCK_TARGET  (64 * 1024)        /* a block is flushed once this full */
#define BLOCK_MAX     (16 * 1024 * 1024) /* a reader refuses larger blocks */
#define HEADER_MAX    (4 * 1024 * 1024)
#define F_KIND        0x07
#define F_DELETED     0x08
#define F_SAME_ORG    0x10
#define F_UNVERSIONED 0x20 /* with F_DELETED: store_delete's versionless tombstone */
#define MAX_IMAGES    100000
#define MAX_IDS       1000000

void ckpt_meta_clear(struct ckpt_meta *m) {
  if (m == NULL) return;
  free(m->parts);
  memset(m, 0, sizeof *m);
}

/* ---- Writing ---- */

struct enc {
  struct strbuf b; /* the block being built (or the header body) */
  uint32_t nrec;
  const char *prev_org; /* organization of the previous record in this block */
  ckpt_write_fn w;
  void *arg;
  int err;
  uint64_t total;
  uint64_t records[CAT_ENTITY_KINDS], live[CAT_ENTITY_KINDS];
  struct digest_acc *digest; /* of the live records written */
};

static void put_u8(struct strbuf *b, uint8_t v) { sb_append(b, (const char *)&v, 1); }

static void put_le(struct strbuf *b, uint64_t v, int n) {
  uint8_t x[8];
  for (int i = 0; i < n; i++)
    x[i] = (uint8_t)(v >> (8 * i));
  sb_append(b, (const char *)x, (size_t)n);
}

static void put_var(struct strbuf *b, uint64_t v) {
  uint8_t x[10];
  int n = 0;
  do {
    x[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    v >>= 7;
  } while (v);
  sb_append(b, (const char *)x, (size_t)n);
}

static void put_zz(struct strbuf *b, int64_t v) {
  put_var(b, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void put_str(struct strbuf *b, const char *s) {
  size_t n = strlen(s);
  put_var(b, n);
  sb_append(b, s, n + 1); /* with its NUL */
}

static void put_images(struct strbuf *b, const struct cat_image *im, uint32_t n) {
  put_var(b, n);
  for (uint32_t i = 0; i < n; i++) {
    sb_append(b, (const char *)im[i].id, 16);
    put_zz(b, im[i].position);
    put_str(b, im[i].url);
    put_str(b, im[i].alt);
  }
}

static void put_ids(struct strbuf *b, const uint8_t (*ids)[16], uint32_t n) {
  put_var(b, n);
  sb_append(b, (const char *)ids, (size_t)n * 16);
}

static void put_variant(struct strbuf *b, const struct cat_variant *v) {
  sb_append(b, (const char *)v->product_id, 16);
  put_str(b, v->sku), put_str(b, v->barcode), put_str(b, v->warehouse_id);
  put_str(b, v->lot_number), put_str(b, v->vendor);
  const double d[7] = {v->sale_price, v->cost_price, v->tax,   v->weight,
                       v->length,     v->width,      v->height};
  uint8_t mask = 0;
  for (int i = 0; i < 7; i++)
    if (d[i] != 0 || __builtin_signbit(d[i])) mask |= (uint8_t)(1u << i);
  put_u8(b, mask);
  for (int i = 0; i < 7; i++)
    if (mask & (1u << i)) sb_append(b, (const char *)&d[i], 8);
  const int32_t n[5] = {v->stock_total, v->stock_available, v->stock_reserved, v->min_stock,
                        v->max_stock};
  for (int i = 0; i < 5; i++)
    put_zz(b, n[i]);
  put_u8(b, (uint8_t)(v->active | v->track_inventory << 1));
  put_images(b, v->images, v->n_images);
}

static void put_product(struct strbuf *b, const struct cat_product *p) {
  put_str(b, p->local_id), put_str(b, p->title), put_str(b, p->sku), put_str(b, p->barcode);
  put_str(b, p->description), put_str(b, p->status), put_str(b, p->product_type);
  put_str(b, p->unit_of_measure);
  put_zz(b, p->alert_stock);
  put_u8(b, p->has_brand);
  if (p->has_brand) sb_append(b, (const char *)p->brand_id, 16);
  put_images(b, p->images, p->n_images);
  put_ids(b, p->tag_ids, p->n_tags);
  put_ids(b, p->collection_ids, p->n_collections);
}

/* Sends one framed unit: tag, length and count (blocks), body, crc. */
static void emit(struct enc *e, uint8_t tag, const char *body, size_t n, uint32_t nrec) {
  struct strbuf f = {0};
  put_u8(&f, tag);
  put_le(&f, n, 4);
  put_le(&f, nrec, 4);
  uint32_t crc = crc32c(crc32c(0, f.p, f.len), body, n);
  if (e->err == 0) e->err = e->w(e->arg, f.p, f.len);
  if (e->err == 0 && n) e->err = e->w(e->arg, body, n);
  put_le(&f, crc, 4);
  if (e->err == 0) e->err = e->w(e->arg, f.p + f.len - 4, 4);
  free(f.p);
}

static void flush_block(struct enc *e) {
  if (e->nrec == 0) return;
  emit(e, 'B', e->b.p, e->b.len, e->nrec);
  e->b.len = 0, e->nrec = 0, e->prev_org = NULL;
}

/* snap_foreach_all callback: appends one record, flushing full blocks. */
static void enc_record(const struct cat_hdr *h, void *arg) {
  struct enc *e = arg;
  if (e->err) return;
  uint8_t flags = (uint8_t)(h->kind | (h->deleted ? F_DELETED : 0) |
                            (h->deleted && h->unversioned ? F_UNVERSIONED : 0));
  bool same = e->prev_org != NULL && strcmp(e->prev_org, h->org) == 0;
  put_u8(&e->b, (uint8_t)(flags | (same ? F_SAME_ORG : 0)));
  sb_append(&e->b, (const char *)h->key, 16);
  if (!same) put_str(&e->b, h->org);
  e->prev_org = h->org;
  put_zz(&e->b, h->version);
  if (!h->deleted && h->kind == CAT_VARIANT) put_variant(&e->b, (const struct cat_variant *)h);
  if (!h->deleted && h->kind == CAT_PRODUCT) put_product(&e->b, (const struct cat_product *)h);
  if (!h->deleted && h->kind >= CAT_BRAND) {
    const struct cat_named *n = (const struct cat_named *)h;
    put_str(&e->b, n->name), put_str(&e->b, n->slug), put_str(&e->b, n->description);
  }
  if (!h->deleted) digest_acc_add(e->digest, h), e->live[h->kind]++; /* while in the cache */
  e->records[h->kind]++;
  e->nrec++, e->total++;
  if (e->b.len >= BLOCK_TARGET) flush_block(e);
}

/* The header body: topic, partitions, live counts, version, time. */
static void header_body(struct strbuf *b, const struct ckpt_meta *m) {
  put_var(b, strlen(m->topic));
  sb_append(b, m->topic, strlen(m->topic));
  put_var(b, m->nparts);
  for (uint32_t i = 0; i < m->nparts; i++)
    put_zz(b, m->parts[i].id), put_zz(b, m->parts[i].next);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    put_var(b, m->live[k]);
  put_var(b, m->snap_version);
  put_zz(b, m->built_ns);
}

#define TRAILER_LEN (8 + CAT_ENTITY_KINDS * 16 + 32)

/* The trailer: the counts and the digest of what was written, also into
 * meta. */
static void trailer(struct enc *e, struct ckpt_meta *meta) {
  struct strbuf t = {0};
  digest_acc_finish(e->digest, meta->digest);
  e->digest = NULL;
  put_le(&t, e->total, 8);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++) {
    meta->records[k] = e->records[k];
    put_le(&t, e->records[k], 8), put_le(&t, e->live[k], 8);
  }
  sb_append(&t, meta->digest, 32);
  if (e->err == 0) emit(e, 'E', t.p, t.len, 0);
  free(t.p);
}

/* Moves meta's offsets to those s itself was published with, where s names
 * the partition. The caller asked the writer for offsets before pinning s,
 * and the writer moves them only after it published: s may be newer than
 * they are. Offsets behind the state would make a restart apply events a
 * second time, which costs time and, for events without a version, must be
 * made harmless by the store (store_delete); exact ones avoid both. */
static void take_positions(struct ckpt_meta *meta, const struct snapshot *s) {
  for (uint32_t i = 0; i < meta->nparts; i++) {
    int64_t at = snap_position(s, meta->parts[i].id);
    if (at >= 0) meta->parts[i].next = at;
  }
}

int ckpt_encode(const struct snapshot *s, struct ckpt_meta *meta, ckpt_write_fn w, void *arg) {
  take_positions(meta, s);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    meta->live[k] = snap_count(s, (enum cat_kind)k);
  meta->snap_version = snap_version(s);
  meta->built_ns = snap_built_ns(s);
  struct enc e = {.w = w, .arg = arg, .digest = digest_acc_new()};
  struct strbuf h = {0};
  sb_append(&h, MAGIC, 8);
  put_le(&h, CKPT_FORMAT_VERSION, 4);
  header_body(&e.b, meta);
  put_le(&h, e.b.len, 4);
  sb_append(&h, e.b.p, e.b.len);
  put_le(&h, crc32c(0, h.p, h.len), 4);
  e.err = w(arg, h.p, h.len);
  free(h.p);
  e.b.len = 0;
  for (int k = 0; k < CAT_ENTITY_KINDS && e.err == 0; k++) {
    snap_foreach_all(s, (enum cat_kind)k, enc_record, &e);
    flush_block(&e);
  }
  trailer(&e, meta);
  digest_acc_destroy(e.digest); /* if the walk stopped early: the trailer took it otherwise */
  free(e.b.p);
  return e.err;
}

/* ---- Reading ---- */

struct ckpt_reader {
  ckpt_read_fn r;
  void *arg;
  uint8_t *buf; /* the current unit */
  size_t cap;
  struct image_fields *ims;
  uint8_t (*img_ids)[16]; /* the images' ids, binary (ims_cap of them) */
  size_t ims_cap;
  uint64_t total;  /* records decoded */
  uint64_t length; /* the whole stream's bytes, if known (ckpt_reader_set_length; 0: not) */
  /* The puts, on their own thread while the body is read (put_stage.h). */
  struct put_stage *stage;
  /* The digest of the live records decoded, each hashed right after it is
   * built (in the cache) rather than by a second walk of the whole state;
   * only when the body began with an empty state (from_empty). */
  struct digest_acc *digest;
  struct store_txn *t; /* the body's (for store_txn_note only: the stage owns it) */
  bool from_empty;     /* the txn held no live entity when the body began */
  ckpt_stop_fn stop;   /* asked before each unit of the body (NULL: never) */
  void *stop_arg;
};

/* A bounded view of a unit being decoded; bad is sticky. */
struct cur {
  const uint8_t *p, *end;
  bool bad;
};

struct ckpt_reader *ckpt_reader_new(ckpt_read_fn r, void *arg) {
  struct ckpt_reader *rd = xcalloc(1, sizeof *rd);
  rd->r = r, rd->arg = arg;
  return rd;
}

void ckpt_reader_set_length(struct ckpt_reader *rd, uint64_t bytes) { rd->length = bytes; }

void ckpt_reader_set_stop(struct ckpt_reader *rd, ckpt_stop_fn stop, void *arg) {
  rd->stop = stop, rd->stop_arg = arg;
}

void ckpt_reader_destroy(struct ckpt_reader *rd) {
  if (rd == NULL) return;
  free(rd->buf);
  free(rd->ims);
  free(rd->img_ids);
  struct put_stage_counts c;
  put_stage_finish(rd->stage, &c); /* only if a body read was cut short */
  digest_acc_destroy(rd->digest);
  free(rd);
}

/* Reads exactly n bytes into p. 0; -EBADMSG if the stream ends first
 * (truncated); the reader's error. */
static int read_full(struct ckpt_reader *rd, void *p, size_t n, char *why, size_t cap) {
  for (size_t got = 0; got < n;) {
    ssize_t k = rd->r(rd->arg, (char *)p + got, n - got);
    if (k < 0) {
      snprintf(why, cap, "read failed: %s", strerror((int)-k));
      return (int)k;
    }
    if (k == 0) {
      snprintf(why, cap, "truncated");
      return -EBADMSG;
    }
    got += (size_t)k;
  }
  return 0;
}

/* rd->buf with room for n bytes. */
static uint8_t *room(struct ckpt_reader *rd, size_t n) {
  if (n > rd->cap) {
    rd->buf = xrealloc(rd->buf, n);
    rd->cap = n;
  }
  return rd->buf;
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static const uint8_t *get_bytes(struct cur *c, size_t n) {
  if (c->bad || (size_t)(c->end - c->p) < n) {
    c->bad = true;
    return NULL;
  }
  const uint8_t *at = c->p;
  c->p += n;
  return at;
}

static uint8_t get_u8(struct cur *c) {
  const uint8_t *b = get_bytes(c, 1);
  return b ? *b : 0;
}

static uint64_t get_var(struct cur *c) {
  uint64_t v = 0;
  for (int sh = 0; sh < 64; sh += 7) {
    const uint8_t *b = get_bytes(c, 1);
    if (b == NULL) return 0;
    v |= (uint64_t)(*b & 0x7f) << sh;
    if (!(*b & 0x80)) return v;
  }
  c->bad = true;
  return 0;
}

static int64_t get_zz(struct cur *c) {
  uint64_t v = get_var(c);
  return (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
}

static int32_t get_i32(struct cur *c) {
  int64_t v = get_zz(c);
  if (v < INT32_MIN || v > INT32_MAX) c->bad = true;
  return (int32_t)v;
}

/* A string: its bytes and NUL in place, no NUL inside. NULL if bad. */
static const char *get_str(struct cur *c) {
  uint64_t n = get_var(c);
  if (c->bad || n >= (uint64_t)(c->end - c->p)) {
    c->bad = true;
    return NULL;
  }
  const char *s = (const char *)get_bytes(c, n + 1);
  if (s == NULL || s[n] != '\0' || memchr(s, 0, n) != NULL) {
    c->bad = true;
    return NULL;
  }
  return s;
}

/* n binary ids, in place in the block (NULL if short: c->bad is set). */
static const uint8_t (*get_ids(struct cur *c, size_t n))[16] {
  return (const uint8_t(*)[16])get_bytes(c, n * 16);
}

/* A count of items of at least min bytes each: bounded by what remains. */
static size_t get_count(struct cur *c, size_t min, size_t max) {
  uint64_t n = get_var(c);
  if (n > max || n > (uint64_t)(c->end - c->p) / min) c->bad = true;
  return c->bad ? 0 : (size_t)n;
}

/* n images into rd->ims, their ids into rd->img_ids (*ids). */
static const struct image_fields *get_images(struct cur *c, struct ckpt_reader *rd, size_t *n,
                                             const uint8_t (**ids)[16]) {
  *n = get_count(c, 16 + 1 + 2 + 2, MAX_IMAGES);
  if (*n > rd->ims_cap) {
    rd->ims = xrealloc(rd->ims, *n * sizeof *rd->ims);
    rd->img_ids = xrealloc(rd->img_ids, *n * sizeof *rd->img_ids);
    rd->ims_cap = *n;
  }
  for (size_t i = 0; i < *n && !c->bad; i++) {
    const uint8_t *b = get_bytes(c, 16);
    if (b == NULL) break;
    memcpy(rd->img_ids[i], b, 16);
    rd->ims[i] = (struct image_fields){.position = get_i32(c)};
    rd->ims[i].url = get_str(c);
    rd->ims[i].alt = get_str(c);
  }
  *ids = (const uint8_t(*)[16])rd->img_ids;
  return rd->ims;
}

/* The identity of a record being decoded (the id binary, in the block). */
struct rec_id {
  const uint8_t *bin;
  const char *org;
  int64_t version;
};

static struct cat_hdr *dec_variant(struct cur *c, struct ckpt_reader *rd, const struct rec_id *r,
                                   const char **why) {
  struct variant_fields f = {.id_bin = r->bin, .org = r->org, .version = r->version};
  f.product_id_bin = get_bytes(c, 16);
  f.sku = get_str(c), f.barcode = get_str(c), f.warehouse_id = get_str(c);
  f.lot_number = get_str(c), f.vendor = get_str(c);
  double *d[7] = {&f.sale_price, &f.cost_price, &f.tax, &f.weight, &f.length, &f.width, &f.height};
  uint8_t mask = get_u8(c);
  for (int i = 0; i < 7; i++) {
    const uint8_t *b = mask & (1u << i) ? get_bytes(c, 8) : NULL;
    if (b) memcpy(d[i], b, 8);
  }
  f.stock_total = get_i32(c), f.stock_available = get_i32(c), f.stock_reserved = get_i32(c);
  f.min_stock = get_i32(c), f.max_stock = get_i32(c);
  uint8_t flags = get_u8(c);
  f.status = flags & 1 ? "active" : "inactive";
  f.track_inventory = flags & 2;
  f.images = get_images(c, rd, &f.n_images, &f.image_ids_bin);
  if (c->bad || (mask & 0x80) || (flags & ~3u)) return NULL; /* also a short product id */
  struct cat_variant *v = model_variant_new(&f, why);
  return v ? &v->h : NULL;
}

static struct cat_hdr *dec_product(struct cur *c, struct ckpt_reader *rd, const struct rec_id *r,
                                   const char **why) {
  struct product_fields f = {.id_bin = r->bin, .org = r->org, .version = r->version};
  f.local_id = get_str(c), f.title = get_str(c), f.sku = get_str(c), f.barcode = get_str(c);
  f.description = get_str(c), f.status = get_str(c), f.product_type = get_str(c);
  f.unit_of_measure = get_str(c);
  f.alert_stock = get_i32(c);
  uint8_t has_brand = get_u8(c);
  f.brand_id_bin = has_brand == 1 ? get_bytes(c, 16) : NULL;
  f.images = get_images(c, rd, &f.n_images, &f.image_ids_bin);
  f.n_tags = get_count(c, 16, MAX_IDS);
  f.tag_ids_bin = get_ids(c, f.n_tags);
  f.n_collections = get_count(c, 16, MAX_IDS);
  f.collection_ids_bin = get_ids(c, f.n_collections);
  if (c->bad || has_brand > 1) return NULL;
  struct cat_product *p = model_product_new(&f, why);
  return p ? &p->h : NULL;
}

static struct cat_hdr *dec_named(struct cur *c, enum cat_kind kind, const struct rec_id *r,
                                 const char **why) {
  struct named_fields f = {.id_bin = r->bin, .org = r->org, .version = r->version};
  f.name = get_str(c), f.slug = get_str(c), f.description = get_str(c);
  if (c->bad) return NULL;
  struct cat_named *n = model_named_new(kind, &f, why);
  return n ? &n->h : NULL;
}

/* Gives the records decoded but not yet handed over (p, a put_group) to
 * the put stage and empties p. Returns 0, or
 * -EBADMSG with *why set once a record given before was not applied. */
static int give_pending(struct put_group *p, struct ckpt_reader *rd, const char **why) {
  int rc = p->n ? put_stage_give(rd->stage, p) : 0;
  p->n = 0;
  if (rc != 0) *why = "the same entity twice";
  return rc;
}

/* Frees the pending records that were never given (a block failed). */
static void drop_pending(struct put_group *p) {
  for (size_t i = 0; i < p->n; i++)
    model_free(p->h[i]);
  p->n = 0;
}

/* Decodes one record at c and adds it to p (putting p into t when full).
 * *prev_org: the previous record's organization in this block (updated).
 * Returns 0, or -EBADMSG with *why set to a static reason. */
static int dec_record(struct cur *c, struct ckpt_reader *rd, struct put_group *p,
                      const char **prev_org, const char **why) {
  struct rec_id r = {0};
  uint8_t flags = get_u8(c);
  enum cat_kind kind = (enum cat_kind)(flags & F_KIND);
  r.bin = get_bytes(c, 16);
  r.org = flags & F_SAME_ORG ? *prev_org : get_str(c);
  r.version = get_zz(c);
  if (c->bad || r.org == NULL || kind >= CAT_ENTITY_KINDS || (flags & ~0x3fu) ||
      ((flags & F_UNVERSIONED) && !(flags & F_DELETED))) {
    *why = "malformed record";
    return -EBADMSG;
  }
  *prev_org = r.org;
  struct cat_hdr *h = NULL;
  *why = "malformed record";
  if (flags & F_DELETED) {
    h = model_tombstone_new(kind, r.bin, r.org, strlen(r.org), r.version);
    if (h != NULL) h->unversioned = flags & F_UNVERSIONED;
  } else if (kind == CAT_VARIANT)
    h = dec_variant(c, rd, &r, why);
  else if (kind == CAT_PRODUCT)
    h = dec_product(c, rd, &r, why);
  else
    h = dec_named(c, kind, &r, why);
  if (h == NULL) return -EBADMSG;
  store_txn_note(rd->t, h); /* the prefaulter follows the builds, not the puts */
  if (rd->digest != NULL && !h->deleted) digest_acc_add(rd->digest, h); /* while in the cache */
  p->h[p->n++] = h;
  return p->n == STORE_PUT_MANY_MAX ? give_pending(p, rd, why) : 0;
}

/* Reads one framed unit (block or trailer) into rd->buf and checks its
 * crc. *tag, *len, *nrec describe it. */
static int read_unit(struct ckpt_reader *rd, uint8_t *tag, uint32_t *len, uint32_t *nrec, char *why,
                     size_t cap) {
  uint8_t f[9];
  int rc = read_full(rd, f, sizeof f, why, cap);
  if (rc != 0) return rc;
  *tag = f[0], *len = le32(f + 1), *nrec = le32(f + 5);
  if ((*tag != 'B' && *tag != 'E') || *len > BLOCK_MAX || (*tag == 'E' && *len != TRAILER_LEN)) {
    snprintf(why, cap, "damaged block frame");
    return -EBADMSG;
  }
  uint8_t *b = room(rd, (size_t)*len + 4);
  if ((rc = read_full(rd, b, (size_t)*len + 4, why, cap)) != 0) return rc;
  if (crc32c(crc32c(0, f, sizeof f), b, *len) != le32(b + *len)) {
    snprintf(why, cap, "block checksum mismatch");
    return -EBADMSG;
  }
  return 0;
}

/* Decodes the records of the block in rd->buf and gives them to the put
 * stage. */
static int dec_block(struct ckpt_reader *rd, uint32_t len, uint32_t nrec, char *why, size_t cap) {
  struct cur c = {rd->buf, rd->buf + len, false};
  const char *prev_org = NULL, *w = NULL;
  struct put_group p = {.n = 0};
  for (uint32_t i = 0; i <= nrec; i++) {
    /* A put that failed is named by end_stage, with its own index. */
    int rc = i < nrec ? dec_record(&c, rd, &p, &prev_org, &w) : give_pending(&p, rd, &w);
    if (rc != 0) {
      drop_pending(&p);
      snprintf(why, cap, "record %llu: %s", (unsigned long long)rd->total + i, w);
      return -EBADMSG;
    }
  }
  rd->total += nrec;
  if (c.p != c.end || nrec == 0) {
    snprintf(why, cap, "block length does not match its records");
    return -EBADMSG;
  }
  return 0;
}

/* Parses the trailer in rd->buf into m's records and digest; the live
 * counts must be the header's. */
static int parse_trailer(struct ckpt_reader *rd, struct ckpt_meta *m, char *why, size_t cap) {
  const uint8_t *p = rd->buf + 8;
  for (int k = 0; k < CAT_ENTITY_KINDS; k++, p += 16) {
    m->records[k] = le64(p);
    if (le64(p + 8) != m->live[k] || m->live[k] > m->records[k]) {
      snprintf(why, cap, "trailer's counts differ from the header");
      return -EBADMSG;
    }
  }
  memcpy(m->digest, p, 32);
  m->digest[32] = 0;
  if (strspn(m->digest, "0123456789abcdef") != 32) {
    snprintf(why, cap, "malformed trailer");
    return -EBADMSG;
  }
  return 0;
}

/* After the trailer: the stream must end, and the state must be what the
 * trailer says (counts per kind, live counts, digest). The digest is that
 * of the live records put: the state's own when its live count per kind
 * equals theirs (every put was applied, so each was a new entity or
 * replaced one; equal counts leave no live entity in the state that was not
 * put, and none put that a later put replaced), which is checked first,
 * and when the transaction began with no live entity (as at start-up);
 * otherwise the state is walked. c: what the put stage did. */
static int check_end(struct ckpt_reader *rd, const struct ckpt_meta *m, struct store_txn *t,
                     const struct put_stage_counts *c, char *why, size_t cap) {
  uint8_t extra;
  ssize_t k = rd->r(rd->arg, &extra, 1);
  if (k != 0) {
    snprintf(why, cap, k < 0 ? "read failed after the trailer" : "bytes after the trailer");
    return k < 0 ? (int)k : -EBADMSG;
  }
  const struct snapshot *view = store_txn_view(t);
  for (int i = 0; i < CAT_ENTITY_KINDS; i++)
    if (c->records[i] != m->records[i] || snap_count(view, (enum cat_kind)i) != m->live[i] ||
        c->live[i] != m->live[i]) {
      snprintf(why, cap, "%s count differs from the trailer", model_kind_name((enum cat_kind)i));
      return -EBADMSG;
    }
  char hex[33];
  if (rd->from_empty) {
    digest_acc_finish(rd->digest, hex);
    rd->digest = NULL;
  } else {
    struct digest d;
    digest_compute(view, &d);
    memcpy(hex, d.hex, sizeof hex);
  }
  if (memcmp(hex, m->digest, 32) != 0) {
    snprintf(why, cap, "state digest %s differs from the trailer's %.32s", hex, m->digest);
    return -EBADMSG;
  }
  return 0;
}

/* Reads blocks until the trailer, giving their records to the put stage;
 * checks the trailer's record count and parses it into m. Asks rd->stop
 * before each unit: a source that never waits (a file in the page cache)
 * gives no other chance to see it. Returns 0 at a good trailer,
 * -ECANCELED when stopped, or an error with why filled. */
static int read_blocks(struct ckpt_reader *rd, struct ckpt_meta *m, char *why, size_t cap) {
  for (;;) {
    uint8_t tag;
    uint32_t len, nrec;
    if (rd->stop != NULL && rd->stop(rd->stop_arg)) {
      snprintf(why, cap, "stopped");
      return -ECANCELED;
    }
    int rc = read_unit(rd, &tag, &len, &nrec, why, cap);
    if (rc != 0) return rc;
    if (tag == 'E') {
      if (nrec == 0 && le64(rd->buf) == rd->total) return parse_trailer(rd, m, why, cap);
      snprintf(why, cap, "trailer's record count differs");
      return -EBADMSG;
    }
    if ((rc = dec_block(rd, len, nrec, why, cap)) != 0) return rc;
  }
}

/* Waits for the put stage to put everything given (*c: what it did). A
 * record it could not apply is the first thing wrong with the stream (the
 * reader is ahead of it), so it replaces rc's reason. */
static int end_stage(struct ckpt_reader *rd, int rc, struct put_stage_counts *c, char *why,
                     size_t cap) {
  put_stage_finish(rd->stage, c);
  rd->stage = NULL;
  if (!c->failed) return rc;
  snprintf(why, cap, "record %llu: the same entity twice", (unsigned long long)c->failed_at);
  return -EBADMSG;
}

int ckpt_read_body(struct ckpt_reader *rd, struct ckpt_meta *meta, struct store_txn *t, char *why,
                   size_t cap) {
  struct put_stage_counts c;
  put_stage_finish(rd->stage, &c); /* a stage and a digest left by an earlier body */
  digest_acc_destroy(rd->digest);
  rd->from_empty = store_txn_live(t) == 0;
  rd->digest = rd->from_empty ? digest_acc_new() : NULL;
  /* A whole-state build: sized from the header's live counts so no shard
   * grows much while it runs (tombstones are few). The header is not
   * trusted yet (its counts are checked at the end): the stage reserves
   * at once only what the stream's length allows, the rest of a count once
   * the records come (put_stage_start). */
  rd->t = t;
  store_txn_note_builder(t);
  rd->stage = put_stage_start(t, rd->from_empty ? meta->live : NULL, rd->length);
  int rc = end_stage(rd, read_blocks(rd, meta, why, cap), &c, why, cap);
  return rc != 0 ? rc : check_end(rd, meta, t, &c, why, cap);
}

/* Parses the header body at c into m. */
static int parse_header(struct cur *c, struct ckpt_meta *m) {
  size_t tl = get_count(c, 1, CKPT_TOPIC_MAX);
  const uint8_t *tp = get_bytes(c, tl);
  if (tp) memcpy(m->topic, tp, tl);
  m->nparts = (uint32_t)get_count(c, 2, CKPT_MAX_PARTS);
  m->parts = xcalloc(m->nparts + 1, sizeof *m->parts);
  for (uint32_t i = 0; i < m->nparts && !c->bad; i++) {
    int64_t id = get_zz(c), next = get_zz(c);
    if (id < 0 || id > INT32_MAX || next < 0) c->bad = true;
    m->parts[i] = (struct ckpt_part){.id = (int32_t)id, .next = next};
  }
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    m->live[k] = get_var(c);
  m->snap_version = get_var(c);
  m->built_ns = get_zz(c);
  return c->bad || c->p != c->end || memchr(m->topic, 0, tl) ? -EBADMSG : 0;
}

int ckpt_read_header(struct ckpt_reader *rd, struct ckpt_meta *out, char *why, size_t cap) {
  uint8_t f[16];
  memset(out, 0, sizeof *out);
  int rc = read_full(rd, f, sizeof f, why, cap);
  if (rc != 0) return rc;
  if (memcmp(f, MAGIC, 8) != 0) {
    snprintf(why, cap, "not a catalogd checkpoint (bad magic)");
    return -EBADMSG;
  }
  if (le32(f + 8) != CKPT_FORMAT_VERSION) {
    snprintf(why, cap, "format version %u; this build reads %d", le32(f + 8), CKPT_FORMAT_VERSION);
    return -EBADMSG;
  }
  uint32_t len = le32(f + 12);
  if (len > HEADER_MAX) {
    snprintf(why, cap, "damaged header");
    return -EBADMSG;
  }
  uint8_t *b = room(rd, (size_t)len + 4);
  if ((rc = read_full(rd, b, (size_t)len + 4, why, cap)) != 0) return rc;
  if (crc32c(crc32c(0, f, sizeof f), b, len) != le32(b + len)) {
    snprintf(why, cap, "header checksum mismatch");
    return -EBADMSG;
  }
  struct cur c = {b, b + len, false};
  if (parse_header(&c, out) != 0) {
    ckpt_meta_clear(out);
    snprintf(why, cap, "malformed header");
    return -EBADMSG;
  }
  return 0;
}

/* ---- The header's check, while the body is read ---- */

/* An accept() running on a thread of its own. */
struct accept_job {
  ckpt_accept_fn fn;
  void *arg;
  const struct ckpt_meta *meta;
  int rc; /* fn's result, once done */
  atomic_bool done;
  atomic_bool moot;  /* the body failed on its own: fn's answer is not needed */
  char why[512];     /* fn's reason */
  ckpt_stop_fn stop; /* the reader's own stop, chained */
  void *stop_arg;
};

static void *accept_main(void *arg) {
  struct accept_job *j = arg;
  j->rc = j->fn(j->arg, j->meta, &j->moot, j->why, sizeof j->why);
  atomic_store_explicit(&j->done, true, memory_order_release);
  return NULL;
}

/* ckpt_stop_fn while the job runs: the reader's stop, or a refusal (the
 * body is then read for nothing: given up at the next block). */
static bool stop_or_refused(void *arg) {
  struct accept_job *j = arg;
  if (j->stop != NULL && j->stop(j->stop_arg)) return true;
  return atomic_load_explicit(&j->done, memory_order_acquire) && j->rc != 0;
}

int ckpt_read_body_accepting(struct ckpt_reader *rd, struct ckpt_meta *meta, ckpt_accept_fn accept,
                             void *arg, struct store_txn *t, char *why, size_t cap) {
  struct accept_job j = {
      .fn = accept, .arg = arg, .meta = meta, .stop = rd->stop, .stop_arg = rd->stop_arg};
  pthread_t th;
  if (accept == NULL) return ckpt_read_body(rd, meta, t, why, cap);
  if (pthread_create(&th, NULL, accept_main, &j) != 0) { /* serially, as it used to */
    int rc = accept(arg, meta, &j.moot, why, cap);
    return rc != 0 ? rc : ckpt_read_body(rd, meta, t, why, cap);
  }
  pthread_setname_np(th, "ckpt-accept");
  ckpt_reader_set_stop(rd, stop_or_refused, &j);
  int rc = ckpt_read_body(rd, meta, t, why, cap);
  ckpt_reader_set_stop(rd, j.stop, j.stop_arg);
  /* A damaged body is refused whatever the header's check says: that check
   * may wait for a broker that does not answer, and the damage must be said
   * (and the next source tried) now, not once the broker is back. */
  bool body_failed = rc != 0 && rc != -ECANCELED;
  if (body_failed) atomic_store(&j.moot, true);
  pthread_join(th, NULL);
  if (j.rc == 0 || (body_failed && j.rc == -ECANCELED)) return rc;
  snprintf(why, cap, "%s", j.why); /* the refusal, whatever the body came to */
  return j.rc;
}
