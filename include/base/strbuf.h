/*
 * strbuf.h - a growable string for building text responses (metrics,
 * JSON). Allocation failure aborts (xalloc). The caller owns sb.p and frees
 * it with free().
 */
#ifndef CATALOGD_STRBUF_H
#define CATALOGD_STRBUF_H

#include <stddef.h>
#include <string.h>

struct strbuf {
  char *p; /* NUL-terminated once anything was written */
  size_t len, cap;
};

/* Makes room for n more bytes and the NUL after them. */
void sb_reserve(struct strbuf *sb, size_t n);

/* Appends the n bytes at p (any bytes: the buffer may hold binary data,
 * still NUL-terminated after them), growing as needed. Inline: the
 * checkpoint encoder and the digest append a few bytes at a time, millions
 * of times (a call each was a tenth of a peer transfer's encoder). */
static inline void sb_append(struct strbuf *sb, const void *p, size_t n) {
  if (sb->cap - sb->len <= n) sb_reserve(sb, n); /* also when nothing is allocated yet */
  if (n) memcpy(sb->p + sb->len, p, n);
  sb->len += n;
  sb->p[sb->len] = '\0';
}

/* Appends formatted text, growing as needed. */
void sb_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends s with '"' and '\\' backslash-escaped: the one escape JSON strings
 * and Prometheus label values share, for text already free of control
 * bytes (the caller's job). */
void sb_put_escaped(struct strbuf *sb, const char *s);

/* Returns the string (never NULL) and leaves sb empty; caller frees. */
char *sb_take(struct strbuf *sb);

#endif
