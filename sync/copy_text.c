/*
 * copy_text.c - COPY text format rows and values (see copy_text.h).
 */
#include "copy_text.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Decodes one escape at s (after the backslash); returns the byte and sets
 * *used to the characters consumed. */
static char unescape(const char *s, const char *end, size_t *used) {
  *used = 1;
  switch (*s) {
  case 't': return '\t';
  case 'n': return '\n';
  case 'r': return '\r';
  case 'b': return '\b';
  case 'f': return '\f';
  case 'v': return '\v';
  case 'x': {
    int v = 0, k = 0;
    while (k < 2 && s + 1 + k < end && strchr("0123456789abcdefABCDEF", s[1 + k]) && s[1 + k]) {
      char c = s[1 + k];
      v = v * 16 + (c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
      k++;
    }
    *used = 1 + (size_t)k;
    return k ? (char)v : 'x';
  }
  default:
    if (*s >= '0' && *s <= '7') {
      int v = 0, k = 0;
      while (k < 3 && s + k < end && s[k] >= '0' && s[k] <= '7')
        v = v * 8 + (s[k++] - '0');
      *used = (size_t)k;
      return (char)v;
    }
    return *s; /* \\ and any other char stand for themselves */
  }
}

int copy_split(char *row, size_t len, char **fields, int maxf) {
  char *end = row + len;
  if (len > 0 && end[-1] == '\n') end--;
  int n = 0;
  char *r = row;
  for (;;) {
    char *w = r, *start = r;
    if (n == maxf) return -1;
    /* The analyzer reports r as NULL on the next two lines only on a path it
     * cannot take: an empty row (end == row) where it assumes r >= end at the
     * field loop and then r < end at the end-of-row test with nothing moved. */
    // NOLINTNEXTLINE(clang-analyzer-core.NullDereference): infeasible path, see above
    if (end - r >= 2 && r[0] == '\\' && r[1] == 'N' && (end - r == 2 || r[2] == '\t')) {
      fields[n++] = NULL;
      r += 2;
    } else {
      while (r < end && *r != '\t') { // NOLINT(clang-analyzer-core.NullDereference): see above
        if (*r == '\\' && r + 1 < end) {
          size_t used;
          *w++ = unescape(r + 1, end, &used);
          r += 1 + used;
        } else {
          *w++ = *r++;
        }
      }
      fields[n++] = start;
    }
    if (r >= end) {
      if (fields[n - 1] != NULL) *w = '\0';
      return n;
    }
    /* r is at a tab: terminate the field there (w <= r). */
    if (fields[n - 1] != NULL) *w = '\0';
    r++;
  }
}

int copy_i64(const char *s, int64_t def, int64_t *out) {
  if (s == NULL) {
    *out = def;
    return 0;
  }
  char *e;
  errno = 0;
  long long v = strtoll(s, &e, 10);
  if (errno || e == s || *e) return -1;
  *out = v;
  return 0;
}

int copy_i32(const char *s, int32_t def, int32_t *out) {
  int64_t v;
  if (copy_i64(s, def, &v) != 0 || v < INT32_MIN || v > INT32_MAX) return -1;
  *out = (int32_t)v;
  return 0;
}

int copy_f64(const char *s, double def, double *out) {
  if (s == NULL) {
    *out = def;
    return 0;
  }
  char *e;
  errno = 0;
  double v = strtod(s, &e);
  if (errno || e == s || *e || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

int copy_bool(const char *s, bool def, bool *out) {
  if (s == NULL) {
    *out = def;
    return 0;
  }
  if (strcmp(s, "t") == 0 || strcmp(s, "true") == 0)
    *out = true;
  else if (strcmp(s, "f") == 0 || strcmp(s, "false") == 0)
    *out = false;
  else
    return -1;
  return 0;
}
