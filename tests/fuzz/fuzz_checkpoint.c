/*
 * fuzz_checkpoint.c - the checkpoint reader (src/checkpoint/format.c) on
 * arbitrary bytes: no input crashes it, leaks, or is half-trusted.
 *
 * Input: byte 0 is a mode, the rest is the stream. Mode bit 0 set: before
 * decoding, the harness walks the frames (header, then blocks and trailer)
 * and rewrites every CRC-32C it finds, so mutations reach the header parser
 * and the record decoder instead of dying at the first checksum (a damaged
 * file's checksum is the reader's first line of defence, tested by the unit
 * test; this target tests the lines behind it). The stream is handed over
 * in pieces of 1 + (mode >> 1) bytes, as a socket would.
 *
 * Checks beyond "no crash": an accepted stream's decoded state has the
 * header's digest and counts (computed again here on the committed
 * snapshot), and encoding that snapshot again is accepted too, with the same
 * digest; a refused stream says why.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "crc32c.h"
#include "digest.h"
#include "fuzz_entry.h"
#include "store.h"

struct src {
  const uint8_t *p;
  size_t n, off, piece;
};

static ssize_t src_read(void *arg, void *p, size_t n) {
  struct src *s = arg;
  size_t k = s->n - s->off;
  if (k > n) k = n;
  if (k > s->piece) k = s->piece;
  memcpy(p, s->p + s->off, k);
  s->off += k;
  return (ssize_t)k;
}

struct sink {
  uint8_t *p;
  size_t n, cap;
};

static int sink_write(void *arg, const void *p, size_t n) {
  struct sink *s = arg;
  if (s->n + n > s->cap) {
    s->cap = (s->n + n) * 2;
    s->p = realloc(s->p, s->cap);
    if (s->p == NULL) abort();
  }
  memcpy(s->p + s->n, p, n);
  s->n += n;
  return 0;
}

static uint32_t le32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

/* Rewrites the CRC of every frame that fits in b: the header (16 bytes,
 * body, crc), then units of 9 bytes, payload, crc. */
static void fix_crcs(uint8_t *b, size_t n) {
  if (n < 16) return;
  size_t len = le32(b + 12), at;
  if (len > n - 16 || n - 16 - len < 4) return;
  put32(b + 16 + len, crc32c(0, b, 16 + len));
  for (at = 16 + len + 4; n - at >= 9;) {
    len = le32(b + at + 1);
    if (len > n - at - 9 || n - at - 9 - len < 4) return;
    put32(b + at + 9 + len, crc32c(0, b + at, 9 + len));
    at += 9 + len + 4;
  }
}

/* Decodes size bytes at data into a new store; returns it (committed) or
 * NULL if refused. *meta is filled on success. */
static struct store *decode(const uint8_t *data, size_t size, size_t piece,
                            struct ckpt_meta *meta) {
  struct src s = {data, size, 0, piece};
  struct store *st = store_new();
  struct store_txn *t = store_begin(st);
  struct ckpt_reader *rd = ckpt_reader_new(src_read, &s);
  char why[512] = "";
  int rc = ckpt_read_header(rd, meta, why, sizeof why);
  if (rc == 0) rc = ckpt_read_body(rd, meta, t, why, sizeof why);
  ckpt_reader_destroy(rd);
  if (rc != 0) {
    if (rc != -EBADMSG || why[0] == '\0') abort(); /* a refusal says why */
    ckpt_meta_clear(meta);
    store_abort(t);
    store_destroy(st);
    return NULL;
  }
  store_commit(t);
  return st;
}

/* The accepted state is what its header says, and survives a round trip. */
static void check_accepted(struct store *st, struct ckpt_meta *meta) {
  struct digest d;
  const struct snapshot *s = store_current(st);
  digest_compute(s, &d);
  if (memcmp(d.hex, meta->digest, 32) != 0) abort();
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    if (snap_count(s, (enum cat_kind)k) != meta->live[k]) abort();
  struct sink out = {0};
  struct ckpt_meta again = {.nparts = meta->nparts, .parts = meta->parts};
  memcpy(again.topic, meta->topic, sizeof again.topic);
  if (ckpt_encode(s, &again, sink_write, &out) != 0) abort();
  struct ckpt_meta m2;
  struct store *st2 = decode(out.p, out.n, 1 << 20, &m2);
  if (st2 == NULL || memcmp(m2.digest, d.hex, 32) != 0) abort();
  ckpt_meta_clear(&m2);
  store_destroy(st2);
  free(out.p);
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  rcu_init();
  rcu_register_thread(); /* the harness is the store's writer and reader */
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  uint8_t mode = data[0];
  uint8_t *b = malloc(size);
  if (b == NULL) return 0;
  memcpy(b, data + 1, size - 1);
  if (mode & 1) fix_crcs(b, size - 1);
  struct ckpt_meta meta;
  struct store *st = decode(b, size - 1, 1 + (mode >> 1), &meta);
  if (st != NULL) {
    check_accepted(st, &meta);
    ckpt_meta_clear(&meta);
    store_destroy(st);
  }
  free(b);
  return 0;
}
