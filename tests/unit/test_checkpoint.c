/*
 * Unit tests of the checkpoint stream (src/checkpoint/format.c): a snapshot
 * encoded and decoded gives the same state (digest, counts, tombstones with
 * their versions, offsets); a small checkpoint with any one byte flipped,
 * or cut at any point, is refused, never trusted and never a crash; a
 * foreign file and another format version are refused, and so is a forged
 * stream naming one entity twice. Also the files:
 * written crash-safe, the newest listed first, only CHECKPOINT_KEEP kept;
 * a load asked to stop between two blocks ends there (-ECANCELED), nothing
 * published, nothing leaked (the ASan build checks that).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "digest.h"
#include "store.h"
#include "test_util.h"

/* ---- An in-memory stream ---- */

struct mem {
  uint8_t *p;
  size_t n, cap, off;
};

static int mem_write(void *arg, const void *p, size_t n) {
  struct mem *m = arg;
  if (m->n + n > m->cap) {
    m->cap = (m->n + n) * 2;
    m->p = realloc(m->p, m->cap);
  }
  memcpy(m->p + m->n, p, n);
  m->n += n;
  return 0;
}

/* Reads in odd-sized pieces, as a socket would hand them over. */
static ssize_t mem_read(void *arg, void *p, size_t n) {
  struct mem *m = arg;
  size_t k = m->n - m->off < n ? m->n - m->off : n;
  if (k > 7) k = k / 2 + 1;
  memcpy(p, m->p + m->off, k);
  m->off += k;
  return (ssize_t)k;
}

/* ---- A catalog with every kind, field shape and a tombstone ---- */

static struct cat_hdr *rich_variant(const char *org, unsigned n, int64_t version) {
  char id[37], pid[37], im1[37], im2[37];
  const char *why;
  struct image_fields ims[2] = {{.id = tid(0xe1, n, im1), .url = "https://x/1.jpg", .position = 2},
                                {.id = tid(0xe1, n + 1000, im2), .url = "u2", .alt = "alt"}};
  struct variant_fields f = {.id = tid(0xd2, n, id),
                             .org = org,
                             .product_id = tid(0xd1, 1, pid),
                             .sku = "SKU-ü",
                             .barcode = "779",
                             .status = n % 2 ? "active" : "inactive",
                             .warehouse_id = "WH",
                             .vendor = "V",
                             .version = version,
                             .sale_price = 12.5,
                             .cost_price = -0.0,
                             .height = -3.25,
                             .stock_total = -7,
                             .max_stock = 2147483647,
                             .track_inventory = true,
                             .images = ims,
                             .n_images = n % 3 == 0 ? 0 : 2};
  struct cat_variant *v = model_variant_new(&f, &why);
  return &v->h;
}

static struct cat_hdr *rich_product(const char *org, unsigned n) {
  char id[37], brand[37], t1[37], t2[37], c1[37], im[37];
  const char *why;
  const char *tags[2] = {tid(0xa1, 2, t1), tid(0xa1, 1, t2)}, *cols[1] = {tid(0xc1, 1, c1)};
  struct image_fields ims[1] = {{.id = tid(0xe2, n, im), .url = "p.jpg", .position = -1}};
  struct product_fields f = {.id = tid(0xd1, n, id),
                             .org = org,
                             .title = "Title",
                             .sku = "P-1",
                             .status = "activa",
                             .description = "desc",
                             .brand_id = n % 2 ? tid(0xb1, 1, brand) : NULL,
                             .alert_stock = 3,
                             .version = 9,
                             .images = ims,
                             .n_images = 1,
                             .tag_ids = tags,
                             .n_tags = 2,
                             .collection_ids = cols,
                             .n_collections = 1};
  return &model_product_new(&f, &why)->h;
}

static struct cat_hdr *named(enum cat_kind kind, unsigned idkind, const char *org, unsigned n) {
  char id[37];
  const char *why;
  struct named_fields f = {
      .id = tid(idkind, n, id), .org = org, .name = "Name", .slug = "slug", .version = 4};
  return &model_named_new(kind, &f, &why)->h;
}

/* Fills st with nvar variants (and a bit of everything) in two orgs. */
static void fill(struct store *st, unsigned nvar) {
  uint8_t id[16];
  struct store_txn *t = store_begin(st);
  for (unsigned v = 1; v <= nvar; v++)
    store_put(t, rich_variant(v % 4 ? "org-a" : "org-b", v, v));
  store_put(t, rich_product("org-a", 1));
  store_put(t, rich_product("org-a", 2));
  store_put(t, named(CAT_BRAND, 0xb1, "org-a", 1));
  store_put(t, named(CAT_TAG, 0xa1, "org-a", 1));
  store_put(t, named(CAT_COLLECTION, 0xc1, "org-b", 1));
  store_delete(t, CAT_VARIANT, bid(0xd2, 777777, id), "org-a", 5, 42); /* a tombstone */
  store_put(t, rich_variant("org-a", 888888, 7)); /* deleted by a re-delivered Kafka tombstone */
  store_delete_redelivered(t, CAT_VARIANT, bid(0xd2, 888888, id), "org-a", 5);
  /* The snapshot's own positions: partition 0 ahead of what encode's meta says. */
  store_txn_set_positions(t, (const struct snap_pos[]){{0, 20}, {7, 3}}, 2);
  store_commit(t);
}

static const struct ckpt_part parts[3] = {{0, 17}, {1, 0}, {5, 123456789012}};

/* Encodes st's current snapshot into m. */
static void encode(struct store *st, struct mem *m) {
  struct ckpt_part own[3];
  memcpy(own, parts, sizeof own); /* ckpt_encode moves offsets to the snapshot's */
  struct ckpt_meta meta = {.nparts = 3, .parts = own};
  strcpy(meta.topic, "catalog.changes");
  *m = (struct mem){0};
  assert_int_equal(ckpt_encode(store_current(st), &meta, mem_write, m), 0);
}

/* Decodes m into a fresh store; returns the result, *out the store (NULL
 * if refused). why gets the reason. */
static int decode(struct mem *m, struct store **out, struct ckpt_meta *meta, char *why,
                  size_t cap) {
  struct store *st = store_new();
  struct store_txn *t = store_begin(st);
  m->off = 0;
  struct ckpt_reader *rd = ckpt_reader_new(mem_read, m);
  int rc = ckpt_read_header(rd, meta, why, cap);
  if (rc == 0) rc = ckpt_read_body(rd, meta, t, why, cap);
  ckpt_reader_destroy(rd);
  if (rc != 0) {
    ckpt_meta_clear(meta);
    store_abort(t);
    store_destroy(st);
    *out = NULL;
    return rc;
  }
  store_commit(t);
  *out = st;
  return 0;
}

static void digest_of(struct store *st, struct digest *d) {
  store_read_lock();
  digest_compute(store_current(st), d);
  store_read_unlock();
}

static void round_trip_keeps_the_state(void **state) {
  (void)state;
  assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u); /* the standard check value */
  assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
  struct store *a = store_new(), *b;
  fill(a, 3000); /* several 64 KiB blocks */
  struct mem m;
  encode(a, &m);
  struct ckpt_meta meta;
  char why[256] = "";
  assert_int_equal(decode(&m, &b, &meta, why, sizeof why), 0);
  struct digest da, db;
  digest_of(a, &da), digest_of(b, &db);
  assert_string_equal(da.hex, db.hex);
  assert_string_equal(meta.digest, da.hex);
  assert_int_equal(snap_count(store_current(b), CAT_VARIANT), 3000);
  assert_int_equal(snap_count(store_current(b), CAT_PRODUCT), 2);
  assert_int_equal(meta.records[CAT_VARIANT], 3002); /* the tombstones too */
  assert_string_equal(meta.topic, "catalog.changes");
  assert_int_equal(meta.nparts, 3);
  /* Offsets are those the snapshot was published with where it has them
   * (partition 0), else the ones asked for (1 and 5). */
  assert_int_equal(meta.parts[0].next, 20);
  assert_int_equal(meta.parts[1].next, 0);
  assert_int_equal(meta.parts[2].id, 5);
  assert_int_equal(meta.parts[2].next, 123456789012);
  /* The tombstone kept its version: an older upsert stays stale, and so does
   * one of the same version; the re-delivered tombstone stays unversioned:
   * its re-creation at that version is applied. */
  struct store_txn *t = store_begin(b);
  assert_int_equal(store_put(t, rich_variant("org-a", 777777, 41)), STORE_STALE);
  assert_int_equal(store_put(t, rich_variant("org-a", 777777, 42)), STORE_STALE);
  assert_int_equal(store_put(t, rich_variant("org-a", 888888, 6)), STORE_STALE);
  assert_int_equal(store_put(t, rich_variant("org-a", 888888, 7)), STORE_APPLIED);
  store_abort(t);
  const struct cat_variant *v;
  uint8_t id[16];
  v = snap_variant(store_current(b), bid(0xd2, 5, id), "org-a", 5);
  assert_non_null(v);
  assert_true(v->active && v->track_inventory && v->n_images == 2);
  assert_true(__builtin_signbit(v->cost_price) && v->height == -3.25);
  printf("# %zu bytes for 3000 variants: %.0f B/variant\n", m.n, (double)m.n / 3000);
  ckpt_meta_clear(&meta);
  store_destroy(a);
  store_destroy(b);
  free(m.p);
}

static void every_flipped_byte_is_refused(void **state) {
  (void)state;
  struct store *a = store_new(), *b;
  fill(a, 6);
  struct mem m;
  encode(a, &m);
  uint8_t *orig = malloc(m.n);
  memcpy(orig, m.p, m.n);
  int refused = 0;
  for (size_t i = 0; i < m.n; i++) {
    memcpy(m.p, orig, m.n);
    m.p[i] ^= (uint8_t)(1u << (i % 8)); /* one bit, a different one per position */
    struct ckpt_meta meta;
    char why[256];
    int rc = decode(&m, &b, &meta, why, sizeof why);
    if (rc == 0) {
      fail_msg("byte %zu of %zu flipped: accepted", i, m.n);
      store_destroy(b);
      ckpt_meta_clear(&meta);
    }
    assert_int_equal(rc, -EBADMSG);
    refused++;
  }
  printf("# %d flipped positions refused\n", refused);
  store_destroy(a);
  free(orig);
  free(m.p);
}

static void every_truncation_is_refused(void **state) {
  (void)state;
  struct store *a = store_new(), *b;
  fill(a, 6);
  struct mem m;
  encode(a, &m);
  size_t full = m.n;
  for (size_t cut = 0; cut < full; cut++) {
    m.n = cut;
    struct ckpt_meta meta;
    char why[256];
    int rc = decode(&m, &b, &meta, why, sizeof why);
    if (rc == 0) fail_msg("cut at %zu of %zu: accepted", cut, full);
    assert_int_equal(rc, -EBADMSG);
  }
  /* And one byte too many. */
  m.n = full;
  uint8_t extra = 0;
  mem_write(&m, &extra, 1);
  struct ckpt_meta meta;
  char why[256];
  assert_int_equal(decode(&m, &b, &meta, why, sizeof why), -EBADMSG);
  assert_string_equal(why, "bytes after the trailer");
  store_destroy(a);
  free(m.p);
}

static void foreign_and_other_versions_are_refused(void **state) {
  (void)state;
  struct store *a = store_new(), *b;
  fill(a, 2);
  struct mem m;
  encode(a, &m);
  struct ckpt_meta meta;
  char why[256];
  m.p[8] = 1; /* format version 1: its tombstones do not say whether they were versionless */
  assert_int_equal(decode(&m, &b, &meta, why, sizeof why), -EBADMSG);
  assert_string_equal(why, "format version 1; this build reads 3");
  m.p[8] = 2; /* format version 2: digest version 1, in the header */
  assert_int_equal(decode(&m, &b, &meta, why, sizeof why), -EBADMSG);
  assert_string_equal(why, "format version 2; this build reads 3");
  m.p[8] = 4;
  assert_int_equal(decode(&m, &b, &meta, why, sizeof why), -EBADMSG);
  assert_string_equal(why, "format version 4; this build reads 3");
  memcpy(m.p, "PK\003\004junk", 8); /* a zip file, say */
  assert_int_equal(decode(&m, &b, &meta, why, sizeof why), -EBADMSG);
  assert_string_equal(why, "not a catalogd checkpoint (bad magic)");
  store_destroy(a);
  free(m.p);
}

static void files_are_kept_newest_first(void **state) {
  (void)state;
  char dir[] = "/tmp/ckpt-unit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  struct store *a = store_new();
  fill(a, 10);
  char stray[4200];
  snprintf(stray, sizeof stray, "%s/.tmp-checkpoint-1-2", dir); /* a crashed write, old */
  fclose(fopen(stray, "w"));
  struct timeval old[2] = {{.tv_sec = time(NULL) - 3600}, {.tv_sec = time(NULL) - 3600}};
  assert_int_equal(utimes(stray, old), 0);
  char young[4200]; /* another replica's write in progress (a shared directory) */
  snprintf(young, sizeof young, "%s/.tmp-checkpoint-3-4", dir);
  fclose(fopen(young, "w"));
  char notfile[4200]; /* a directory under a newer checkpoint's name takes no place */
  snprintf(notfile, sizeof notfile, "%s/checkpoint-99999999999999999999.ckpt", dir);
  assert_int_equal(mkdir(notfile, 0700), 0);
  char first[4096] = "";
  for (int i = 0; i < 4; i++) {
    struct ckpt_meta meta = {.nparts = 0};
    struct ckpt_written out;
    char why[256];
    assert_int_equal(ckpt_write_file(dir, store_current(a), &meta, 2, NULL, &out, why, sizeof why),
                     0);
    if (i == 0) strcpy(first, out.path);
    assert_true(out.bytes > 0);
  }
  char **v;
  int n = ckpt_list(dir, &v);
  assert_int_equal(n, 2); /* CHECKPOINT_KEEP */
  assert_true(strcmp(v[0], v[1]) > 0);
  assert_int_not_equal(access(first, F_OK), 0);
  assert_int_not_equal(access(stray, F_OK), 0);
  assert_int_equal(access(young, F_OK), 0);
  assert_int_equal(unlink(young), 0);
  assert_int_equal(rmdir(notfile), 0);
  struct store *b = store_new();
  struct store_txn *t = store_begin(b);
  struct ckpt_meta meta;
  char why[256];
  assert_int_equal(ckpt_load_file(v[0], NULL, NULL, NULL, t, &meta, why, sizeof why), 0);
  store_commit(t);
  struct digest da, db;
  digest_of(a, &da), digest_of(b, &db);
  assert_string_equal(da.hex, db.hex);
  for (int i = 0; i < n; i++)
    unlink(v[i]);
  ckpt_list_free(v, n);
  rmdir(dir);
  ckpt_meta_clear(&meta);
  store_destroy(a);
  store_destroy(b);
}

/* fsync of a directory fails while this is set (the linker routes the
 * checkpoint room's fsync calls here: -Wl,--wrap=fsync). */
static bool fail_dir_fsync;
int __real_fsync(int fd);
int __wrap_fsync(int fd);
int __wrap_fsync(int fd) {
  struct stat sb;
  if (fail_dir_fsync && fstat(fd, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    errno = EIO;
    return -1;
  }
  return __real_fsync(fd);
}

static int count_checkpoints(const char *dir) {
  char **v;
  int n = ckpt_list(dir, &v);
  ckpt_list_free(v, n > 0 ? n : 0);
  return n;
}

/* Writes one checkpoint of a into dir; returns ckpt_write_file's result. */
static int write_one(const char *dir, struct store *a, int keep, struct ckpt_written *out,
                     char *why, size_t cap) {
  struct ckpt_meta meta = {.nparts = 0};
  int rc = ckpt_write_file(dir, store_current(a), &meta, keep, NULL, out, why, cap);
  ckpt_meta_clear(&meta);
  return rc;
}

/* A failed fsync of the directory: an error naming it, the new file kept,
 * the directory still pruned (to keep + 1: it must not fill the disk while
 * the failure lasts, nor leave the new file alone), and the next good write
 * prunes to keep. */
static void failed_directory_fsync_still_prunes(void **state) {
  (void)state;
  char dir[] = "/tmp/ckpt-unit-XXXXXX";
  assert_non_null(mkdtemp(dir));
  struct store *a = store_new();
  fill(a, 10);
  struct ckpt_written out;
  char why[1024];
  /* keep 1: a failure leaves the older checkpoint beside the new one */
  assert_int_equal(write_one(dir, a, 1, &out, why, sizeof why), 0);
  char first[4096];
  strcpy(first, out.path);
  fail_dir_fsync = true;
  assert_int_equal(write_one(dir, a, 1, &out, why, sizeof why), -EIO);
  assert_non_null(strstr(why, "fsync of the directory"));
  assert_int_equal(access(first, F_OK), 0);
  assert_int_equal(access(out.path, F_OK), 0);
  assert_int_equal(count_checkpoints(dir), 2);
  /* keep 2, failing for a while: never more than 3 */
  for (int i = 0; i < 5; i++) {
    usleep(1000); /* names are wall ns: distinct */
    assert_int_equal(write_one(dir, a, 2, &out, why, sizeof why), -EIO);
    assert_int_equal(access(out.path, F_OK), 0);
    assert_true(count_checkpoints(dir) <= 3);
  }
  fail_dir_fsync = false;
  assert_int_equal(write_one(dir, a, 2, &out, why, sizeof why), 0);
  char **v;
  int n = ckpt_list(dir, &v);
  assert_int_equal(n, 2);
  assert_string_equal(v[0], out.path);
  for (int i = 0; i < n; i++)
    unlink(v[i]);
  ckpt_list_free(v, n);
  assert_int_equal(rmdir(dir), 0);
  store_destroy(a);
}

/* ---- A load stopped between two blocks ---- */

/* ckpt_stop_fn of the test: counts the reader's questions and says stop
 * from question stop_at on (0: never). */
struct stopper {
  int calls, stop_at;
};

static bool stop_after(void *arg) {
  struct stopper *s = arg;
  return ++s->calls >= s->stop_at && s->stop_at > 0;
}

/* Units (blocks, then the trailer) of the checkpoint file at path, and the
 * records of its first block. */
static int units_of(const char *path, uint32_t *first_nrec) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  uint8_t h[16], fr[9];
  assert_int_equal(fread(h, 1, 16, f), 16);
  long at = 16 + (long)(h[12] | h[13] << 8 | h[14] << 16 | (uint32_t)h[15] << 24) + 4;
  int n = 0;
  while (fseek(f, at, SEEK_SET) == 0 && fread(fr, 1, 9, f) == 9) {
    uint32_t len = fr[1] | fr[2] << 8 | fr[3] << 16 | (uint32_t)fr[4] << 24;
    if (n++ == 0) *first_nrec = fr[5] | fr[6] << 8 | fr[7] << 16 | (uint32_t)fr[8] << 24;
    at += 9 + (long)len + 4;
  }
  fclose(f);
  return n;
}

/* A checkpoint file of 3000 variants (several 64 KiB blocks) written from
 * src into a directory of its own, and an empty store dst to load it into:
 * the set-up of the load tests below (sample_file_drop undoes it). */
struct sample_file {
  char dir[32];
  struct store *src, *dst;
  struct ckpt_written out;
};

static void sample_file_make(struct sample_file *f) {
  char why[256] = "";
  snprintf(f->dir, sizeof f->dir, "/tmp/ckpt-unit-XXXXXX");
  assert_non_null(mkdtemp(f->dir));
  f->src = store_new(), f->dst = store_new();
  fill(f->src, 3000);
  assert_int_equal(write_one(f->dir, f->src, 1, &f->out, why, sizeof why), 0);
}

static void sample_file_drop(struct sample_file *f) {
  unlink(f->out.path);
  rmdir(f->dir);
  store_destroy(f->src);
  store_destroy(f->dst);
}

/* A SIGTERM during a checkpoint load must not wait for the whole file (a
 * second at 1M variants): the reader asks before every unit; asked to stop
 * after the first block, it ends there with -ECANCELED and "stopped", its
 * transaction holding that block's records at most; once aborted, nothing
 * was published and (ASan) nothing leaked. Without a stop, it is asked once
 * per unit and loads the whole file. */
static void a_load_stops_between_blocks(void **state) {
  (void)state;
  struct sample_file sf;
  sample_file_make(&sf);
  const char *path = sf.out.path;
  struct store *b = sf.dst;
  char why[256] = "";
  uint32_t first = 0;
  int units = units_of(path, &first);
  assert_true(units > 3 && first > 0 && first < 3000);
  struct ckpt_meta meta;
  struct stopper st = {.stop_at = 2}; /* the question before the second block */
  struct store_txn *t = store_begin(b);
  assert_int_equal(ckpt_load_file(path, NULL, stop_after, &st, t, &meta, why, sizeof why),
                   -ECANCELED);
  assert_string_equal(why, "stopped");
  assert_int_equal(st.calls, 2);
  assert_null(meta.parts);
  assert_true(store_txn_live(t) <= first);
  store_abort(t);
  assert_null(store_current(b)); /* nothing was ever published */
  /* Asked and never told to stop: the whole file, one question per unit. */
  st = (struct stopper){.stop_at = 0};
  t = store_begin(b);
  assert_int_equal(ckpt_load_file(path, NULL, stop_after, &st, t, &meta, why, sizeof why), 0);
  assert_int_equal(st.calls, units);
  store_commit(t);
  assert_int_equal(snap_count(store_current(b), CAT_VARIANT), 3000);
  ckpt_meta_clear(&meta);
  sample_file_drop(&sf);
}

/* ---- The header's check runs while the body is read ---- */

/* Both sides of the_header_is_judged_while_the_body_is_read: the reader's
 * stop question before the second unit (the body is under way) and the
 * header's check, each waiting (bounded) for the other. */
struct overlap {
  atomic_int questions;   /* stop questions asked by the reader */
  atomic_bool body_going; /* the reader is past its first block */
  atomic_bool judged;     /* accept has seen it and is returning */
  atomic_bool accept_saw_body;
};

static bool wait_flag(atomic_bool *f) {
  for (int i = 0; i < 5000 && !atomic_load(f); i++)
    usleep(1000);
  return atomic_load(f);
}

static bool overlap_stop(void *arg) {
  struct overlap *o = arg;
  if (atomic_fetch_add(&o->questions, 1) + 1 == 2) { /* before the second unit */
    atomic_store(&o->body_going, true);
    wait_flag(&o->judged);
  }
  return false;
}

static int overlap_accept(void *arg, const struct ckpt_meta *m, const atomic_bool *moot, char *why,
                          size_t cap) {
  struct overlap *o = arg;
  (void)moot;
  assert_int_equal(m->live[CAT_VARIANT], 3000); /* the header's fields are there */
  atomic_store(&o->accept_saw_body, wait_flag(&o->body_going));
  atomic_store(&o->judged, true);
  snprintf(why, cap, "too old");
  return -ESTALE;
}

/* The header's check (a broker round trip in catalogd) is made on another
 * thread while the body is read, no longer before it: the accept here sees
 * the reader past its first block (with the check made first it would
 * wait 5 s and see nothing). Its refusal is the load's result and reason,
 * whatever the body came to; the transaction is aborted, nothing leaks. */
static void the_header_is_judged_while_the_body_is_read(void **state) {
  (void)state;
  struct sample_file sf;
  sample_file_make(&sf);
  char why[256] = "";
  struct ckpt_meta meta;
  struct overlap o = {0};
  struct store_txn *t = store_begin(sf.dst);
  assert_int_equal(
      ckpt_load_file(sf.out.path, overlap_accept, overlap_stop, &o, t, &meta, why, sizeof why),
      -ESTALE);
  assert_string_equal(why, "too old");
  assert_true(atomic_load(&o.accept_saw_body));
  assert_null(meta.parts);
  store_abort(t);
  assert_null(store_current(sf.dst));
  sample_file_drop(&sf);
}

/* An accept that never decides on its own (a broker that does not answer),
 * bounded at 10 s: what it saw. */
struct undecided {
  atomic_bool saw_moot;
};

static int undecided_accept(void *arg, const struct ckpt_meta *m, const atomic_bool *moot,
                            char *why, size_t cap) {
  struct undecided *u = arg;
  (void)m;
  for (int i = 0; i < 10000 && !atomic_load(moot); i++)
    usleep(1000);
  atomic_store(&u->saw_moot, atomic_load(moot));
  snprintf(why, cap, "given up");
  return -ECANCELED;
}

/* A damaged body is the load's result at once, even while the header's
 * check still waits (for a broker that is down): the check is told its
 * answer is moot and the body's error and reason are returned. Seen failing
 * without the moot flag: the load waited the accept's 10 s and returned
 * its -ECANCELED. */
static void a_damaged_body_does_not_wait_for_the_check(void **state) {
  (void)state;
  struct sample_file sf;
  sample_file_make(&sf);
  const struct ckpt_written out = sf.out;
  char why[256] = "";
  FILE *f = fopen(out.path, "r+b");
  assert_non_null(f);
  assert_int_equal(fseek(f, (long)(out.bytes / 2), SEEK_SET), 0);
  int c = fgetc(f);
  assert_int_equal(fseek(f, (long)(out.bytes / 2), SEEK_SET), 0);
  fputc(c ^ 0x10, f);
  fclose(f);
  struct ckpt_meta meta;
  struct undecided u = {0};
  struct store_txn *t = store_begin(sf.dst);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(ckpt_load_file(out.path, undecided_accept, NULL, &u, t, &meta, why, sizeof why),
                   -EBADMSG);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  assert_non_null(strstr(why, "checksum"));
  assert_true(atomic_load(&u.saw_moot));
  assert_true(t1.tv_sec - t0.tv_sec < 5);
  store_abort(t);
  assert_null(store_current(sf.dst));
  sample_file_drop(&sf);
}

/* ---- A stream naming one entity twice ---- */

static void put_var(struct mem *m, uint64_t v) {
  do {
    uint8_t b = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
    mem_write(m, &b, 1);
    v >>= 7;
  } while (v);
}

static void put_le32(struct mem *m, uint32_t v) {
  uint8_t x[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
  mem_write(m, x, 4);
}

/* The trailer's frame: 'E', length, count; then its payload (the records,
 * per kind records and live, the digest's 32 hex digits) and its crc. */
#define TRAILER_PAYLOAD (8 + CAT_ENTITY_KINDS * 16 + 32)
#define TRAILER_BYTES   (9 + TRAILER_PAYLOAD + 4)

static void put_le64(struct mem *m, uint64_t v) {
  put_le32(m, (uint32_t)v), put_le32(m, (uint32_t)(v >> 32));
}

/* The blocks of an encoded stream (between its header and its trailer). */
static void append_blocks(struct mem *to, const struct mem *from) {
  uint32_t hl =
      16 + (from->p[12] | from->p[13] << 8 | from->p[14] << 16 | (uint32_t)from->p[15] << 24) + 4;
  mem_write(to, from->p + hl, from->n - hl - TRAILER_BYTES);
}

/* The reader hashes each record as it decodes it: a forged stream holding
 * variant X at version 1 and again at version 2 (the second replaces the
 * first in the state), with a header and trailer that say two variant
 * records, one live (as the state holds) and the digest of the two records
 * decoded (not the state's), must be refused. */
static void an_entity_twice_is_refused(void **state) {
  (void)state;
  struct store *a = store_new(), *b = store_new(), *c;
  struct store_txn *t = store_begin(a);
  store_put(t, rich_variant("org-a", 9, 1));
  store_commit(t);
  t = store_begin(b);
  store_put(t, rich_variant("org-a", 9, 2));
  store_commit(t);
  struct mem ma, mb, body = {0}, m = {0};
  encode(a, &ma), encode(b, &mb);
  /* The digest of the two records as the reader would hash them. */
  struct digest_acc *acc = digest_acc_new();
  store_read_lock();
  uint8_t id[16];
  digest_acc_add(acc, snap_get(store_current(a), CAT_VARIANT, bid(0xd2, 9, id), "org-a", 5));
  digest_acc_add(acc, snap_get(store_current(b), CAT_VARIANT, bid(0xd2, 9, id), "org-a", 5));
  store_read_unlock();
  char hex[33];
  digest_acc_finish(acc, hex);
  /* Header body: no topic or partitions; 1 live variant. */
  put_var(&body, 0), put_var(&body, 0);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    put_var(&body, k == CAT_VARIANT ? 1 : 0);
  put_var(&body, 1), put_var(&body, 0);
  mem_write(&m, "CATDCKPT", 8);
  put_le32(&m, CKPT_FORMAT_VERSION);
  put_le32(&m, (uint32_t)body.n);
  mem_write(&m, body.p, body.n);
  put_le32(&m, crc32c(0, m.p, m.n));
  append_blocks(&m, &ma), append_blocks(&m, &mb);
  size_t at = m.n;
  uint8_t frame[9] = {'E', TRAILER_PAYLOAD};
  mem_write(&m, frame, sizeof frame);
  put_le64(&m, 2);                           /* records */
  for (int k = 0; k < CAT_ENTITY_KINDS; k++) /* variants: 2 records, 1 live */
    put_le64(&m, k == CAT_VARIANT ? 2 : 0), put_le64(&m, k == CAT_VARIANT ? 1 : 0);
  mem_write(&m, hex, 32);
  put_le32(&m, crc32c(0, m.p + at, m.n - at));
  struct ckpt_meta meta;
  char why[256] = "";
  assert_int_equal(decode(&m, &c, &meta, why, sizeof why), -EBADMSG);
  assert_string_equal(why, "variant count differs from the trailer");
  store_destroy(a);
  store_destroy(b);
  free(ma.p), free(mb.p), free(body.p), free(m.p);
}

int main(void) {
  rcu_init();
  rcu_register_thread();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(round_trip_keeps_the_state),
      cmocka_unit_test(every_flipped_byte_is_refused),
      cmocka_unit_test(every_truncation_is_refused),
      cmocka_unit_test(foreign_and_other_versions_are_refused),
      cmocka_unit_test(files_are_kept_newest_first),
      cmocka_unit_test(failed_directory_fsync_still_prunes),
      cmocka_unit_test(an_entity_twice_is_refused),
      cmocka_unit_test(a_load_stops_between_blocks),
      cmocka_unit_test(the_header_is_judged_while_the_body_is_read),
      cmocka_unit_test(a_damaged_body_does_not_wait_for_the_check),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  rcu_unregister_thread();
  return rc;
}
