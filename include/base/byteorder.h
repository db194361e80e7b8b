/*
 * byteorder.h - fixed-order loads of unaligned 64-bit words, whatever the
 * host's byte order: the digest's definition reads little-endian words,
 * the store orders binary ids as big-endian numbers (memcmp's order).
 */
#ifndef CATALOGD_BYTEORDER_H
#define CATALOGD_BYTEORDER_H

#include <stdint.h>
#include <string.h>

/* The 8 bytes at p as a little-endian number. */
static inline uint64_t load_le64(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

/* The 8 bytes at p as a big-endian number: comparing two such loads orders
 * the bytes as memcmp does. */
static inline uint64_t load_be64(const void *p) {
  uint64_t v;
  memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  v = __builtin_bswap64(v);
#endif
  return v;
}

#endif
