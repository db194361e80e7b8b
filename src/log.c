/*
 * log.c - JSON-lines logger.
 *
 * Lines are formatted into a stack buffer and written with a single write(2)
 * so concurrent threads never interleave within a line and no lock is taken.
 * The level is the only state; it is set once at start-up.
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LINE_CAP  8192
#define FIELD_CAP 2048

static enum log_level min_level = LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(enum log_level level) { min_level = level; }

int log_enabled(enum log_level level) { return level >= min_level; }

int log_level_parse(const char *name) {
  if (strcasecmp(name, "warning") == 0) return LOG_WARN;
  for (int i = 0; i < 4; i++)
    if (strcasecmp(name, level_names[i]) == 0) return i;
  return -1;
}

struct line {
  char buf[LINE_CAP];
  size_t len;
};

/* Appends formatted text; silently truncates at the line cap (the closing
 * brace and newline are always reserved). */
static void put(struct line *l, const char *fmt, ...) {
  size_t room = LINE_CAP - 3 - l->len;
  if (room == 0) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(l->buf + l->len, room + 1, fmt, ap);
  va_end(ap);
  if (n > 0) l->len += (size_t)n < room ? (size_t)n : room;
}

/* Appends s as a JSON string literal, escaped, at most FIELD_CAP bytes. */
static void put_str(struct line *l, const char *s) {
  put(l, "\"");
  if (s == NULL) s = "";
  for (size_t i = 0; s[i] != '\0' && i < FIELD_CAP; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\')
      put(l, "\\%c", c);
    else if (c == '\n')
      put(l, "\\n");
    else if (c < 0x20 || c == 0x7f)
      put(l, "\\u%04x", c);
    else
      put(l, "%c", c);
  }
  put(l, "\"");
}

static void put_field(struct line *l, const struct logf *f) {
  put(l, ",");
  put_str(l, f->key);
  put(l, ":");
  switch (f->type) {
  case LOGF_STR: put_str(l, f->v.s); break;
  case LOGF_INT: put(l, "%lld", f->v.i); break;
  case LOGF_DBL: put(l, "%.6g", f->v.d); break;
  case LOGF_BOOL: put(l, f->v.i ? "true" : "false"); break;
  case LOGF_NONE: put(l, "null"); break;
  }
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
    w = write(STDOUT_FILENO, l.buf, l.len);
  while (w < 0 && errno == EINTR);
}
