/*
 * log.h - structured JSON logging, one object per line on stdout.
 *
 * Every line carries "ts" (RFC 3339, UTC, milliseconds), "level" and "msg",
 * then the caller's fields in order. Fields are typed so that numbers stay
 * numbers for the log pipeline. Secrets must never be passed as fields: use
 * pg_redact_conninfo() (pg_redact.h) on connection strings first.
 *
 * @locality any thread; each line is written with one write(2), so lines from
 * different threads never interleave.
 */
#ifndef CATALOGD_LOG_H
#define CATALOGD_LOG_H

#include <stddef.h>

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR };

enum logf_type { LOGF_NONE = 0, LOGF_STR, LOGF_INT, LOGF_DBL, LOGF_BOOL };

struct logf {
  const char *key;
  enum logf_type type;
  union {
    const char *s;
    long long i;
    double d;
  } v;
};

#define LF_S(k, x) ((struct logf){.key = (k), .type = LOGF_STR, .v.s = (x)})
#define LF_I(k, x) ((struct logf){.key = (k), .type = LOGF_INT, .v.i = (long long)(x)})
#define LF_D(k, x) ((struct logf){.key = (k), .type = LOGF_DBL, .v.d = (double)(x)})
#define LF_B(k, x) ((struct logf){.key = (k), .type = LOGF_BOOL, .v.i = !!(x)})

/* Sends the lines to fd instead of stdout (--digest keeps stdout for its
 * JSON). Call before starting threads. */
void log_set_fd(int fd);

/* Sets the minimum level written. Call before starting threads. */
void log_set_level(enum log_level level);

/* Parses "debug", "info", "warn"/"warning", "error". Returns the level, or
 * -1 if the name is unknown. */
int log_level_parse(const char *name);

/* Writes one line if level is enabled. fields[0..n) are written in order;
 * strings are JSON-escaped and truncated to keep a line under 8 KiB. */
void log_emit(enum log_level level, const char *msg, const struct logf *fields, size_t n);

/* A leading empty element lets the field list be empty. */
#define LOG__N(...) (sizeof((struct logf[]){{0}, __VA_ARGS__}) / sizeof(struct logf) - 1)
#define LOG__EMIT(lvl, msg, ...)                                                                   \
  log_emit((lvl), (msg), (struct logf[]){{0}, __VA_ARGS__} + 1, LOG__N(__VA_ARGS__))
#define log_debug(msg, ...) LOG__EMIT(LOG_DEBUG, (msg), __VA_ARGS__)
#define log_info(msg, ...)  LOG__EMIT(LOG_INFO, (msg), __VA_ARGS__)
#define log_warn(msg, ...)  LOG__EMIT(LOG_WARN, (msg), __VA_ARGS__)
#define log_error(msg, ...) LOG__EMIT(LOG_ERROR, (msg), __VA_ARGS__)

#endif
