/*
 * strbuf.c - growable string (see strbuf.h).
 */
#include "strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "xalloc.h"

void sb_printf(struct strbuf *sb, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sb->p ? sb->p + sb->len : NULL, sb->cap - sb->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sb->cap - sb->len) {
      sb->len += (size_t)n;
      return;
    }
    sb->cap = 2 * sb->cap + (size_t)n + 256;
    sb->p = xrealloc(sb->p, sb->cap);
  }
}

void sb_reserve(struct strbuf *sb, size_t n) {
  size_t want = sb->len + n + 1;
  if (want <= sb->cap) return;
  sb->cap = 2 * sb->cap > want ? 2 * sb->cap : want + 256;
  sb->p = xrealloc(sb->p, sb->cap);
}

char *sb_take(struct strbuf *sb) {
  char *p = sb->p;
  if (p == NULL) {
    p = xmalloc(1);
    p[0] = '\0';
  }
  *sb = (struct strbuf){0};
  return p;
}

void sb_put_escaped(struct strbuf *sb, const char *s) {
  while (*s) {
    size_t run = strcspn(s, "\"\\");
    if (run > 0) sb_printf(sb, "%.*s", (int)run, s);
    s += run;
    if (*s) sb_printf(sb, "\\%c", *s++);
  }
}
