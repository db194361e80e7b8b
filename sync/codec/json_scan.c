/*
 * json_scan.c - strict single-pass JSON scanning (see json_scan.h).
 *
 * Each token is read once, left to right, with no allocation: strings are
 * unescaped straight into the caller's scratch area, numbers converted from
 * the input bytes (strtod only where the exact fast path cannot answer), and
 * skipped containers walked recursively (depth is bounded by
 * JSCAN_MAX_DEPTH, so the stack is too). Every rule that jansson applied is
 * applied here too, including to values and keys nobody reads: the point is
 * that the set of accepted messages does not change.
 *
 * Scratch invariant: str_used never exceeds the number of input bytes
 * consumed, because a decoded string plus its NUL is never longer than its
 * quoted source, and temporary copies (for strtod) are not kept. Hence
 * len + 1 bytes of scratch always suffice.
 */
#include "json_scan.h"

#include <assert.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

size_t jscan_str_cap(size_t len) { return len + 1; }

/* A key kept for the duplicate check is at least `"":` plus a value or the
 * start of one: 3 bytes of input that no other kept key shares. */
size_t jscan_keys_cap(size_t len) { return len / 3 + 2; }

void jscan_init(struct jscan *s, const char *buf, size_t len, char *str, size_t str_cap,
                struct jscan_key *keys, size_t keys_cap) {
  assert(str_cap >= jscan_str_cap(len) && keys_cap >= jscan_keys_cap(len));
  *s = (struct jscan){.p = buf, .end = buf + len, .str = str, .str_cap = str_cap};
  s->keys = keys, s->keys_cap = keys_cap;
}

char jscan_peek(struct jscan *s) {
  const char *p = s->p;
  while (p < s->end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  s->p = p;
  return p < s->end ? *p : 0;
}

int jscan_end(struct jscan *s) {
  jscan_peek(s);
  return s->p == s->end ? 0 : -EINVAL;
}

/* ---- Strings ---- */

/* Value of the 4 hex digits at p, or -1 (also if fewer than 4 remain). */
static long hex4(const unsigned char *p, const unsigned char *end) {
  long v = 0;
  if (end - p < 4) return -1;
  for (int i = 0; i < 4; i++) {
    unsigned c = p[i];
    int d = c >= '0' && c <= '9'   ? (int)(c - '0')
            : c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10)
            : c >= 'A' && c <= 'F' ? (int)(c - 'A' + 10)
                                   : -1;
    if (d < 0) return -1;
    v = v * 16 + d;
  }
  return v;
}

/* Writes code point cp (a valid scalar value) as UTF-8; returns its size. */
static size_t utf8_put(unsigned long cp, char *d) {
  if (cp < 0x80) return d[0] = (char)cp, 1;
  if (cp < 0x800) {
    d[0] = (char)(0xC0 | cp >> 6), d[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    d[0] = (char)(0xE0 | cp >> 12), d[1] = (char)(0x80 | (cp >> 6 & 0x3F));
    d[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  d[0] = (char)(0xF0 | cp >> 18), d[1] = (char)(0x80 | (cp >> 12 & 0x3F));
  d[2] = (char)(0x80 | (cp >> 6 & 0x3F)), d[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes the \u escape whose 'u' is at p into *d (if d). Returns the
 * input bytes used after the backslash (5, or 11 for a surrogate pair), or
 * 0 if invalid: bad hex, a lone or reversed surrogate, or \u0000. */
static size_t unescape_u(const unsigned char *p, const unsigned char *end, char **d) {
  long cp = hex4(p + 1, end);
  size_t used = 5;
  if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF)) return 0;
  if (cp >= 0xD800 && cp <= 0xDBFF) {
    long lo = end - p >= 11 && p[5] == '\\' && p[6] == 'u' ? hex4(p + 7, end) : -1;
    if (lo < 0xDC00 || lo > 0xDFFF) return 0;
    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    used = 11;
  }
  if (d) *d += utf8_put((unsigned long)cp, *d);
  return used;
}

/* Decodes the escape after a backslash at p into *d (if d). Returns the
 * input bytes used after the backslash, or 0 if it is not a JSON escape. */
static size_t unescape(const unsigned char *p, const unsigned char *end, char **d) {
  static const char from[8] = {'"', '\\', '/', 'b', 'f', 'n', 'r', 't'};
  static const char to[8] = {'"', '\\', '/', '\b', '\f', '\n', '\r', '\t'};
  if (p == end) return 0;
  if (*p == 'u') return unescape_u(p, end, d);
  const char *k = memchr(from, *p, sizeof from);
  if (k == NULL) return 0;
  if (d) *(*d)++ = to[k - from];
  return 1;
}

/* Bytes of the word w that are not plain ASCII: a control character, '"',
 * '\\' or a non-ASCII byte get their high bit set (the "has a zero / less
 * than n byte" bit tricks). A borrow can also mark a byte above a marked
 * one, never one below, so the lowest marked byte is exact. */
static uint64_t special8(uint64_t w) {
  const uint64_t ones = 0x0101010101010101u, high = 0x8080808080808080u;
  uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
  return (((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b) | w) & high;
}

/* Offset of the first byte marked in m (special8, nonzero) of the word
 * loaded from memory: the lowest-addressed one. Big-endian: 0, so the
 * caller looks at the bytes one at a time. */
static size_t first_marked(uint64_t m) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return (size_t)__builtin_ctzll(m) / 8;
#else
  (void)m;
  return 0;
#endif
}

/* End of the run of plain characters (printable ASCII but '"' and '\\',
 * or well-formed UTF-8) from p; stops at anything else. Eight bytes at a
 * time, jumping straight to the first byte that is not plain ASCII (the
 * closing quote, usually): strings are short here (ids, keys), so a byte
 * loop over each one's tail cost more than the words. */
static const unsigned char *plain_run(const unsigned char *p, const unsigned char *end) {
  while (p < end) {
    if (end - p >= 8) {
      uint64_t w, m;
      memcpy(&w, p, 8);
      if ((m = special8(w)) == 0) {
        p += 8;
        continue;
      }
      p += first_marked(m);
    }
    unsigned c = *p;
    if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
      p++;
      continue;
    }
    size_t n = c >= 0x80 ? utf8_seq_len(p, (size_t)(end - p)) : 0;
    if (n == 0) break;
    p += n;
  }
  return p;
}

/* Scans the string whose opening quote is at the cursor, writing its
 * decoded bytes to dst unless dst is NULL (validation only). On success
 * the cursor is past the closing quote, *len is the decoded length (0
 * without dst) and *escaped whether any escape occurred. Returns 0 or
 * -EINVAL. */
static int scan_string(struct jscan *s, char *dst, size_t *len, bool *escaped) {
  const unsigned char *p = (const unsigned char *)s->p + 1, *end = (const unsigned char *)s->end;
  char *d = dst;
  *escaped = false;
  for (;;) {
    const unsigned char *run = p;
    p = plain_run(p, end);
    if (d) memcpy(d, run, (size_t)(p - run)), d += p - run;
    if (p == end) return -EINVAL; /* unterminated */
    if (*p == '"') break;
    size_t used = *p == '\\' ? unescape(p + 1, end, d ? &d : NULL) : 0;
    if (used == 0) return -EINVAL; /* control character, bad UTF-8 or bad escape */
    p += 1 + used;
    *escaped = true;
  }
  s->p = (const char *)p + 1;
  *len = dst ? (size_t)(d - dst) : 0;
  return 0;
}

/* Reads a key: its bytes stay in the input unless it has escapes, then
 * they are decoded into (and kept in) the scratch area. (Decoding every key
 * as it is scanned, used or not, measured no slower than scanning twice
 * the keys that turn out to have escapes.) */
static int read_key(struct jscan *s, struct jscan_key *k) {
  char *dst = s->str + s->str_used;
  bool escaped;
  const char *raw = s->p + 1;
  if (scan_string(s, dst, &k->len, &escaped) < 0) return -EINVAL;
  assert(s->str_used + k->len < s->str_cap);
  k->p = escaped ? dst : raw;
  if (escaped) s->str_used += k->len;
  return 0;
}

/* Reads a string value into the scratch area, NUL-terminated. */
static int read_string(struct jscan *s, struct jscan_value *v) {
  char *dst = s->str + s->str_used;
  bool escaped;
  if (scan_string(s, dst, &v->len, &escaped) < 0) return -EINVAL;
  assert(s->str_used + v->len + 1 <= s->str_cap);
  dst[v->len] = '\0';
  s->str_used += v->len + 1;
  v->type = JSCAN_STRING, v->s = dst;
  return 0;
}

/* ---- Numbers ---- */

struct numtok {
  const char *p;
  size_t n;
  bool real; /* has a fraction or an exponent */
};

/* Consumes digits from p; returns the first non-digit. */
static const char *digits(const char *p, const char *end) {
  while (p < end && is_digit(*p))
    p++;
  return p;
}

/* Delimits the number at the cursor: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
 * Returns 0 (cursor past it) or -EINVAL. */
static int number_token(struct jscan *s, struct numtok *t) {
  const char *p = s->p, *end = s->end;
  t->p = p, t->real = false;
  if (p < end && *p == '-') p++;
  if (p == end || !is_digit(*p)) return -EINVAL;
  p = *p == '0' ? p + 1 : digits(p, end);
  if (p < end && is_digit(*p)) return -EINVAL; /* leading zero */
  if (p < end && *p == '.') {
    if (++p == end || !is_digit(*p)) return -EINVAL;
    p = digits(p, end), t->real = true;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    if (++p < end && (*p == '+' || *p == '-')) p++;
    if (p == end || !is_digit(*p)) return -EINVAL;
    p = digits(p, end), t->real = true;
  }
  s->p = p, t->n = (size_t)(p - t->p);
  return 0;
}

/* An integer token's value; -EINVAL if it does not fit int64_t (jansson
 * refused those: "too big integer"). */
static int number_int(const struct numtok *t, int64_t *out) {
  const char *p = t->p, *end = t->p + t->n;
  bool neg = *p == '-';
  uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  p += neg;
  if (end - p <= 18) { /* cannot overflow */
    for (; p < end; p++)
      v = v * 10 + (uint64_t)(*p - '0');
  } else {
    for (; p < end; p++) {
      uint64_t d = (uint64_t)(*p - '0');
      if (v > (lim - d) / 10) return -EINVAL;
      v = v * 10 + d;
    }
  }
  *out = !neg ? (int64_t)v : v == lim ? INT64_MIN : -(int64_t)v;
  return 0;
}

/* Appends digit c to the significand *m (counting significant digits in
 * *sig); false once more than 19 would be needed. */
static bool add_digit(uint64_t *m, int *sig, char c) {
  if (*m == 0 && c == '0') return true; /* leading zero */
  if (*sig == 19) return false;
  *m = *m * 10 + (uint64_t)(c - '0'), ++*sig;
  return true;
}

/* Exact value of p[0, n) if it is -?digits(.digits)?([eE][+-]?digits)?
 * whose significand fits 53 bits and whose decimal exponent is within
 * +-22: both operands are then exact doubles and one IEEE multiplication or
 * division rounds correctly, giving what strtod gives (Clinger's fast
 * path). Returns false where strtod must decide. */
static bool fast_decimal(const char *p, size_t n, double *out) {
  static const double p10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                               1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                               1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
  const char *end = p + n;
  uint64_t m = 0;
  int sig = 0, scale = 0, x = 0, xsign = 1;
  bool neg = p < end && *p == '-';
  p += neg;
  if (p == end || !is_digit(*p)) return false;
  for (; p < end && is_digit(*p); p++)
    if (!add_digit(&m, &sig, *p)) return false;
  if (p < end && *p == '.') {
    if (++p == end || !is_digit(*p)) return false;
    for (; p < end && is_digit(*p); p++, scale--)
      if (!add_digit(&m, &sig, *p)) return false;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    if (++p < end && (*p == '+' || *p == '-')) xsign = *p++ == '-' ? -1 : 1;
    if (p == end || !is_digit(*p) || end - p > 4) return false;
    for (; p < end && is_digit(*p); p++)
      x = x * 10 + (*p - '0');
  }
  scale += xsign * x;
  if (p != end || m > (1ULL << 53) || (m != 0 && (scale < -22 || scale > 22))) return false;
  double d = m == 0 ? 0.0 : scale < 0 ? (double)m / p10[-scale] : (double)m * p10[scale];
  *out = neg ? -d : d;
  return true;
}

/* True if the real token is certainly below DBL_MAX (< 1e308) in
 * magnitude, judged from its integer digits and exponent alone. */
static bool real_is_small(const struct numtok *t) {
  const char *p = t->p + (*t->p == '-'), *end = t->p + t->n;
  long long idigits = *p == '0' ? 0 : digits(p, end) - p, x = 0;
  const char *e = p;
  while (e < end && *e != 'e' && *e != 'E')
    e++;
  if (e < end) {
    bool neg = *++e == '-';
    e += *e == '-' || *e == '+';
    for (; e < end && x < 1000000; e++) /* capped: only "large" matters */
      x = x * 10 + (*e - '0');
    x = neg ? -x : x;
  }
  return idigits + x <= 307;
}

/* strtod of the token (copied to the scratch area's free space, not kept);
 * -EINVAL where it overflows (jansson: "real number overflow"). */
static int strtod_token(struct jscan *s, const struct numtok *t, double *out) {
  char *tmp = s->str + s->str_used, *e;
  assert(s->str_used + t->n + 1 <= s->str_cap);
  memcpy(tmp, t->p, t->n);
  tmp[t->n] = '\0';
  errno = 0;
  double d = strtod(tmp, &e);
  assert(e == tmp + t->n);
  if ((d == HUGE_VAL || d == -HUGE_VAL) && errno == ERANGE) return -EINVAL;
  if (out) *out = d;
  return 0;
}

/* A real token's value into *out, or only its validity when out is NULL. */
static int number_real(struct jscan *s, const struct numtok *t, double *out) {
  if (out ? fast_decimal(t->p, t->n, out) : real_is_small(t)) return 0;
  return strtod_token(s, t, out);
}

/* Reads a number into *v (validates only if v is NULL). */
static int read_number(struct jscan *s, struct jscan_value *v) {
  struct numtok t;
  int64_t i;
  double d;
  if (number_token(s, &t) < 0) return -EINVAL;
  if (!t.real) {
    if (number_int(&t, &i) < 0) return -EINVAL;
    if (v) v->type = JSCAN_INT, v->i = i;
    return 0;
  }
  if (number_real(s, &t, v ? &d : NULL) < 0) return -EINVAL;
  if (v) v->type = JSCAN_REAL, v->d = d;
  return 0;
}

bool jscan_is_number(const char *s, size_t len) {
  struct jscan t = {.p = s, .end = s + len};
  struct numtok k;
  return number_token(&t, &k) == 0 && t.p == t.end;
}

double jscan_strtod(const char *s, size_t len, char **end) {
  double d;
  assert(s[len] == '\0');
  if (!fast_decimal(s, len, &d)) return strtod(s, end);
  *end = (char *)s + len;
  return d;
}

/* ---- Containers ---- */

/* Orders keys by length, then bytes. */
static int key_cmp(const void *a, const void *b) {
  const struct jscan_key *x = a, *y = b;
  if (x->len != y->len) return x->len < y->len ? -1 : 1;
  return memcmp(x->p, y->p, x->len);
}

static bool key_eq(const struct jscan_key *x, const struct jscan_key *y) {
  return x->len == y->len && memcmp(x->p, y->p, x->len) == 0;
}

/* True if two of k[0, n) are equal. Pairwise for the usual handful;
 * sorted beyond, so that a message of 100k keys costs n log n, not n^2. */
static bool has_duplicate(struct jscan_key *k, size_t n) {
  if (n <= 8) {
    for (size_t i = 1; i < n; i++)
      for (size_t j = 0; j < i; j++)
        if (key_eq(&k[i], &k[j])) return true;
    return false;
  }
  qsort(k, n, sizeof *k, key_cmp);
  for (size_t i = 1; i < n; i++)
    if (key_eq(&k[i], &k[i - 1])) return true;
  return false;
}

/* Checks that one more value may open here (jansson counts each value). */
static int depth_ok(const struct jscan *s) { return s->depth < JSCAN_MAX_DEPTH ? 0 : -EINVAL; }

int jscan_object_begin(struct jscan *s, struct jscan_obj *o) {
  if (jscan_peek(s) != '{' || depth_ok(s) < 0) return -EINVAL;
  s->p++, s->depth++;
  o->base = s->nkeys, o->started = false;
  return 0;
}

/* Past the '}': drops o's keys after checking them for duplicates. */
static int object_close(struct jscan *s, struct jscan_obj *o) {
  assert(s->depth > 0 && o->base <= s->nkeys);
  s->p++, s->depth--;
  bool dup = has_duplicate(s->keys + o->base, s->nkeys - o->base);
  s->nkeys = o->base;
  return dup ? -EINVAL : 0;
}

int jscan_object_next(struct jscan *s, struct jscan_obj *o, struct jscan_key *key) {
  char c = jscan_peek(s);
  if (c == '}') return object_close(s, o); /* right after '{' or after a value */
  if (o->started) {
    if (c != ',') return -EINVAL;
    s->p++;
    c = jscan_peek(s);
  }
  o->started = true;
  if (c != '"' || read_key(s, key) < 0 || jscan_peek(s) != ':') return -EINVAL;
  s->p++;
  return 1;
}

int jscan_object_unknown(struct jscan *s, const struct jscan_key *key) {
  assert(s->nkeys < s->keys_cap);
  if (s->nkeys >= s->keys_cap) return -EINVAL;
  s->keys[s->nkeys++] = *key;
  return 0;
}

int jscan_array_begin(struct jscan *s, struct jscan_arr *a) {
  if (jscan_peek(s) != '[' || depth_ok(s) < 0) return -EINVAL;
  s->p++, s->depth++;
  a->started = false;
  return 0;
}

int jscan_array_next(struct jscan *s, struct jscan_arr *a) {
  char c = jscan_peek(s);
  if (c == ']') {
    assert(s->depth > 0);
    s->p++, s->depth--;
    return 0;
  }
  if (a->started) {
    if (c != ',') return -EINVAL;
    s->p++;
  }
  a->started = true;
  return 1;
}

/* ---- Values ---- */

static int skip_value(struct jscan *s);

static int skip_object(struct jscan *s) {
  struct jscan_obj o;
  struct jscan_key k;
  int rc;
  if (jscan_object_begin(s, &o) < 0) return -EINVAL;
  while ((rc = jscan_object_next(s, &o, &k)) == 1)
    if (jscan_object_unknown(s, &k) < 0 || skip_value(s) < 0) return -EINVAL;
  return rc;
}

static int skip_array(struct jscan *s) {
  struct jscan_arr a;
  int rc;
  if (jscan_array_begin(s, &a) < 0) return -EINVAL;
  while ((rc = jscan_array_next(s, &a)) == 1)
    if (skip_value(s) < 0) return -EINVAL;
  return rc;
}

/* Consumes true, false or null at the cursor; sets v->type if v. */
static int read_literal(struct jscan *s, struct jscan_value *v) {
  static const struct {
    const char *word;
    size_t n;
    enum jscan_type type;
  } lit[] = {{"true", 4, JSCAN_TRUE}, {"false", 5, JSCAN_FALSE}, {"null", 4, JSCAN_NULL}};
  for (size_t i = 0; i < sizeof lit / sizeof lit[0]; i++) {
    if (*s->p != lit[i].word[0]) continue;
    if ((size_t)(s->end - s->p) < lit[i].n || memcmp(s->p, lit[i].word, lit[i].n) != 0)
      return -EINVAL;
    s->p += lit[i].n;
    if (v) v->type = lit[i].type;
    return 0;
  }
  return -EINVAL;
}

/* Validates and skips one value; strings are not copied, numbers not
 * converted beyond what their validity needs. */
static int skip_value(struct jscan *s) {
  bool escaped;
  size_t len;
  char c = jscan_peek(s);
  if (depth_ok(s) < 0) return -EINVAL;
  switch (c) {
  case '{': return skip_object(s);
  case '[': return skip_array(s);
  case '"': return scan_string(s, NULL, &len, &escaped);
  case 't':
  case 'f':
  case 'n': return read_literal(s, NULL);
  default: return read_number(s, NULL);
  }
}

int jscan_value(struct jscan *s, struct jscan_value *v) {
  char c = jscan_peek(s);
  if (depth_ok(s) < 0) return -EINVAL;
  switch (c) {
  case '{': v->type = JSCAN_OBJECT; return skip_object(s);
  case '[': v->type = JSCAN_ARRAY; return skip_array(s);
  case '"': return read_string(s, v);
  case 't':
  case 'f':
  case 'n': return read_literal(s, v);
  default: return read_number(s, v);
  }
}

int jscan_skip(struct jscan *s) { return skip_value(s); }
