/*
 * strbuf.h - a growable string for building text responses (metrics,
 * JSON). Allocation failure aborts (xalloc). The caller owns sb.p and frees
 * it with free().
 */
#ifndef CATALOGD_STRBUF_H
#define CATALOGD_STRBUF_H

#include <stddef.h>

struct strbuf {
  char *p; /* NUL-terminated once anything was written */
  size_t len, cap;
};

/* Appends formatted text, growing as needed. */
void sb_printf(struct strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Returns the string (never NULL) and leaves sb empty; caller frees. */
char *sb_take(struct strbuf *sb);

#endif
