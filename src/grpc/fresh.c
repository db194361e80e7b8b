/*
 * fresh.c - parsing the freshness request headers and checking a
 * snapshot's positions against them (see fresh.h).
 *
 * Values are parsed strictly (digits only, no sign, no blanks inside, no
 * overflow) so that a typo is an INVALID_ARGUMENT naming the header rather
 * than a silently different requirement. Names too: any x-catalog-* header
 * catalogd does not know is refused, since a misspelt
 * x-catalog-min-position would otherwise mean no waiting at all (a silent
 * read-your-writes failure). The reply trailers' names are accepted (and
 * ignored): a proxy that forwards a reply's metadata must not fail.
 */
#include "fresh.h"

#include <grpc/slice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define PREFIX     "x-catalog-"
#define PREFIX_LEN (sizeof PREFIX - 1)
#define KNOWN_NAMES                                                                                \
  "x-catalog-min-position, x-catalog-min-version, x-catalog-max-staleness-ms (and the reply "      \
  "trailers x-catalog-snapshot-version, x-catalog-staleness-ms)"

/* Is the suffix k (kl bytes, after the prefix) this name? */
static bool is(const char *k, size_t kl, const char *name) {
  return kl == strlen(name) && memcmp(k, name, kl) == 0;
}

/* Parses the digits [*p, end) up to a byte not a digit into *out (at most
 * max). Returns 0 and advances *p, or -1 (no digit, or above max). */
static int parse_uint(const char **p, const char *end, int64_t max, int64_t *out) {
  const char *s = *p;
  int64_t v = 0;
  if (s == end || *s < '0' || *s > '9') return -1;
  for (; s < end && *s >= '0' && *s <= '9'; s++) {
    if (v > (max - (*s - '0')) / 10) return -1;
    v = v * 10 + (*s - '0');
  }
  *p = s, *out = v;
  return 0;
}

/* A whole value that is one integer in [min, max]. */
static int parse_whole(const char *s, size_t n, int64_t min, int64_t max, int64_t *out) {
  const char *p = s, *end = s + n;
  return parse_uint(&p, end, max, out) == 0 && p == end && *out >= min ? 0 : -1;
}

/* Appends the P:O[,P:O...] list of s (n bytes) to r. Returns 0 or -1. */
static int parse_positions(const char *s, size_t n, struct fresh_req *r) {
  const char *p = s, *end = s + n;
  for (;;) {
    int64_t part, off;
    if (r->npos == FRESH_MAX_POSITIONS || parse_uint(&p, end, INT32_MAX, &part) != 0 || p == end ||
        *p++ != ':' || parse_uint(&p, end, INT64_MAX - 1, &off) != 0)
      return -1;
    if (r->pos == NULL) r->pos = xmalloc(FRESH_MAX_POSITIONS * sizeof *r->pos);
    r->pos[r->npos++] = (struct snap_pos){.partition = (int32_t)part, .next = off};
    if (p == end) return 0;
    if (*p++ != ',') return -1;
  }
}

/* Fills err for a malformed header value. */
static int malformed(const char *key, const char *form, char *err, size_t cap) {
  snprintf(err, cap, "%s is malformed: expected %s", key, form);
  return -1;
}

/* One metadata entry whose key starts with the prefix. */
static int parse_one(const char *key, size_t klen, const char *val, size_t vlen,
                     struct fresh_req *r, char *err, size_t cap) {
  int64_t v;
  const char *k = key + PREFIX_LEN;
  size_t kl = klen - PREFIX_LEN;
  if (is(k, kl, "min-position")) {
    if (parse_positions(val, vlen, r) != 0)
      return malformed("x-catalog-min-position",
                       "PARTITION:OFFSET[,PARTITION:OFFSET...] with non-negative integers, at most "
                       "64 pairs",
                       err, cap);
  } else if (is(k, kl, "min-version")) {
    if (parse_whole(val, vlen, 1, INT64_MAX, &v) != 0)
      return malformed("x-catalog-min-version", "a positive integer (an entity version)", err, cap);
    if (v > r->min_version) r->min_version = v;
  } else if (is(k, kl, "max-staleness-ms")) {
    if (parse_whole(val, vlen, 0, INT64_MAX / 1000000, &v) != 0)
      return malformed("x-catalog-max-staleness-ms", "a non-negative integer (milliseconds)", err,
                       cap);
    if (r->max_staleness_ms < 0 || v < r->max_staleness_ms) r->max_staleness_ms = v;
  } else if (!is(k, kl, "snapshot-version") && !is(k, kl, "staleness-ms")) {
    snprintf(err, cap, "unknown request header %.*s: catalogd knows " KNOWN_NAMES,
             (int)(klen > 64 ? 64 : klen), key);
    return -1;
  }
  return 0;
}

int fresh_parse(const grpc_metadata_array *md, struct fresh_req *r, char *err, size_t cap) {
  *r = (struct fresh_req){.max_staleness_ms = -1};
  for (size_t i = 0; i < md->count; i++) {
    const grpc_slice *key = &md->metadata[i].key;
    size_t klen = GRPC_SLICE_LENGTH(*key);
    const char *k = (const char *)GRPC_SLICE_START_PTR(*key);
    if (klen < PREFIX_LEN || memcmp(k, PREFIX, PREFIX_LEN) != 0) continue;
    const grpc_slice *val = &md->metadata[i].value;
    if (parse_one(k, klen, (const char *)GRPC_SLICE_START_PTR(*val), GRPC_SLICE_LENGTH(*val), r,
                  err, cap) != 0)
      return -1;
  }
  return 0;
}

void fresh_req_clear(struct fresh_req *r) {
  if (r == NULL) return;
  free(r->pos);
  *r = (struct fresh_req){.max_staleness_ms = -1};
}

bool fresh_positions_met(const struct fresh_req *r, const struct snapshot *s, char *why,
                         size_t cap) {
  for (size_t i = 0; i < r->npos; i++) {
    int64_t at = snap_position(s, r->pos[i].partition);
    if (at > r->pos[i].next) continue;
    if (why == NULL) return false;
    if (at < 0)
      snprintf(why, cap,
               "partition %d is not known to this replica (no change feed, or no such "
               "partition)",
               (int)r->pos[i].partition);
    else
      snprintf(why, cap, "partition %d is at offset %lld (next offset applied), offset %lld is not",
               (int)r->pos[i].partition, (long long)at, (long long)r->pos[i].next);
    return false;
  }
  return true;
}
