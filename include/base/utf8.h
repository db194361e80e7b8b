/*
 * utf8.h - the one UTF-8 well-formedness check (RFC 3629), used wherever
 * bytes from outside become text we hand on: log lines, request strings,
 * change events, PostgreSQL rows.
 *
 * Well-formed means what proto3 parsers and jansson require: no stray
 * continuation byte, no truncated sequence, no overlong form (C0, C1, and
 * the second-byte bounds after E0/F0), no UTF-16 surrogate (after ED),
 * nothing above U+10FFFF (after F4, and F5..FF). Inline: the change-event
 * scanner calls it per non-ASCII byte.
 */
#ifndef CATALOGD_UTF8_H
#define CATALOGD_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Size (2..4) of the well-formed multi-byte sequence at p, whose first byte
 * is >= 0x80, or 0 if it is not one or does not fit in the avail bytes
 * from p. On a NUL-terminated string avail may be SIZE_MAX: a NUL is never
 * a continuation byte, so the check stops there without reading past it. */
static inline size_t utf8_seq_len(const unsigned char *p, size_t avail) {
  unsigned c = p[0], lo = 0x80, hi = 0xBF;
  size_t n;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
  else
    return 0; /* a continuation byte, C0/C1 (overlong) or F5..FF */
  if (avail < n || p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  return n;
}

/* True if the NUL-terminated s is well-formed UTF-8. */
static inline bool utf8_valid(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    size_t n = *p < 0x80 ? 1 : utf8_seq_len(p, (size_t)-1);
    if (n == 0) return false;
    p += n;
  }
  return true;
}

#endif
