/*
 * log.c - JSON-lines logger.
 *
 * Lines are formatted into a stack buffer and written with a single write(2)
 * so concurrent threads never interleave within a line and no lock is taken.
 * The level is the only state; it is set once at start-up.
 */
#include "log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "utf8.h"

#define LINE_CAP  8192
#define FIELD_CAP 2048

static enum log_level min_level = LOG_INFO;
static int out_fd = STDOUT_FILENO; /* set once at start-up, like the level */
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { min_level = level; }

void log_set_fd(int fd) { out_fd = fd; }

int log_level_parse(const char *name) {
  if (strcasecmp(name, "warning") == 0) return LOG_WARN;
  for (int i = 0; i < 4; i++)
    if (strcasecmp(name, level_names[i]) == 0) return i;
  return -1;
}

/* A line under construction. Content stays below LIMIT so that "}\n" always
 * fits; every append is whole or nothing, so a full line is still JSON. */
#define LIMIT (LINE_CAP - 3)
struct line {
  char buf[LINE_CAP];
  size_t len;
  bool full; /* something did not fit: later fields are dropped */
};

/* Appends formatted text if all of it fits, else nothing (sets full). */
static void put(struct line *l, const char *fmt, ...) {
  size_t room = LIMIT - l->len;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
  va_end(ap);
  if (n >= 0 && (size_t)n <= room)
    l->len += (size_t)n;
  else
    l->full = true;
}

/* The JSON text for the character at p: into piece (>= 7 bytes), its length
 * in *plen; returns how many input bytes it stands for. Valid UTF-8 is
 * copied as is; an invalid byte becomes U+FFFD, one per byte. */
static size_t json_char(const unsigned char *p, char *piece, size_t *plen) {
  unsigned char c = p[0];
  size_t n;
  if (c == '"' || c == '\\') {
    piece[0] = '\\', piece[1] = (char)c, *plen = 2;
    return 1;
  }
  if (c == '\n') {
    piece[0] = '\\', piece[1] = 'n', *plen = 2;
    return 1;
  }
  if (c < 0x20 || c == 0x7f) {
    *plen = (size_t)snprintf(piece, 7, "\\u%04x", c);
    return 1;
  }
  if (c < 0x80) {
    piece[0] = (char)c, *plen = 1;
    return 1;
  }
  if ((n = utf8_seq_len(p, (size_t)-1)) == 0) {
    *plen = (size_t)snprintf(piece, 7, "\\ufffd"); /* U+FFFD REPLACEMENT CHARACTER */
    return 1;
  }
  memcpy(piece, p, n), *plen = n;
  return n;
}

/* Appends s as a JSON string literal: escaped, valid UTF-8 (see
 * json_char), at most FIELD_CAP input bytes, cut only between characters.
 * Cut at the line's limit too (sets full), always closed. */
static void put_str(struct line *l, const char *s) {
  const unsigned char *p = (const unsigned char *)(s ? s : "");
  size_t used = 0;
  if (l->len + 2 > LIMIT) {
    l->full = true;
    return;
  }
  l->buf[l->len++] = '"';
  while (*p != '\0') {
    char piece[8];
    size_t plen, n = json_char(p, piece, &plen);
    if (used + n > FIELD_CAP) break;
    if (l->len + plen + 1 > LIMIT) { /* + the closing quote */
      l->full = true;
      break;
    }
    memcpy(l->buf + l->len, piece, plen);
    l->len += plen, used += n, p += n;
  }
  l->buf[l->len++] = '"';
}

/* Appends ,"key":value, or nothing if the key or a non-string value does
 * not fit (a string value is cut instead, so the line keeps what it can). */
static void put_field(struct line *l, const struct logf *f) {
  size_t mark = l->len;
  if (l->full) return;
  put(l, ",");
  put_str(l, f->key);
  put(l, ":");
  if (l->full) goto undo;
  switch (f->type) {
  case LOGF_STR: put_str(l, f->v.s); break;
  case LOGF_INT: put(l, "%lld", f->v.i); break;
  case LOGF_DBL: /* JSON has no NaN or infinity */
    if (isfinite(f->v.d))
      put(l, "%.6g", f->v.d);
    else
      put(l, "null");
    break;
  case LOGF_BOOL: put(l, f->v.i ? "true" : "false"); break;
  case LOGF_NONE: put(l, "null"); break;
  }
  if (l->full && f->type != LOGF_STR) goto undo;
  return;
undo:
  l->len = mark;
  l->full = true;
}

void log_emit(enum log_level level, const char *msg, const struct logf *fields, size_t n) {
  if (level < min_level) return;
  struct line l = {.len = 0};
  struct timespec ts;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  put(&l, "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\",\"level\":\"%s\",\"msg\":",
      tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
      ts.tv_nsec / 1000000, level_names[level]);
  put_str(&l, msg);
  for (size_t i = 0; i < n; i++)
    put_field(&l, &fields[i]);
  l.buf[l.len++] = '}';
  l.buf[l.len++] = '\n';
  ssize_t w;
  do
    w = write(out_fd, l.buf, l.len);
  while (w < 0 && errno == EINTR);
}
