/*
 * pg_redact.c - connection strings and libpq messages made safe to log (see
 * pg_redact.h): parse with libpq, rebuild from the parsed options with the
 * secret ones masked; scrub the parsed secret values out of messages.
 */
#include "pg_redact.h"

#include <errno.h>
#include <libpq-fe.h>
#include <stdbool.h>
#include <string.h>

#define UNPARSEABLE                                                                                \
  "(not a valid libpq connection string; not shown: libpq's error may quote the password)"
#define MAX_SECRETS 8

/* A bounded writer into a caller's buffer: appends what fits, always leaves
 * it NUL-terminated (when cap > 0). */
struct out {
  char *buf;
  size_t cap, len;
};

static void put(struct out *o, const char *s, size_t n) {
  if (o->cap == 0) return;
  size_t room = o->cap - 1 - o->len;
  if (n > room) n = room;
  memcpy(o->buf + o->len, s, n);
  o->len += n;
  o->buf[o->len] = '\0';
}

static void puts_(struct out *o, const char *s) { put(o, s, strlen(s)); }

/* libpq's own quoting for a key=value string: '...' with ' and \ escaped. */
static void put_quoted(struct out *o, const char *v) {
  put(o, "'", 1);
  for (; *v; v++) {
    if (*v == '\'' || *v == '\\') put(o, "\\", 1);
    put(o, v, 1);
  }
  put(o, "'", 1);
}

/* True for an option libpq marks as a secret (dispchar "*"). */
static bool is_secret(const PQconninfoOption *opt) {
  return opt->dispchar != NULL && strchr(opt->dispchar, '*') != NULL;
}

int pg_redact_conninfo(const char *conninfo, char *out, size_t cap) {
  struct out o = {out, cap, 0};
  char *err = NULL;
  if (cap > 0) out[0] = '\0';
  PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
  if (opts == NULL) {
    PQfreemem(err); /* quotes the input: never shown */
    puts_(&o, UNPARSEABLE);
    return -EINVAL;
  }
  for (const PQconninfoOption *p = opts; p->keyword != NULL; p++) {
    if (p->val == NULL) continue;
    if (o.len > 0) put(&o, " ", 1);
    puts_(&o, p->keyword);
    put(&o, "=", 1);
    put_quoted(&o, is_secret(p) ? PG_REDACT_MASK : p->val);
  }
  PQconninfoFree(opts);
  return 0;
}

/* Length of the secret that starts at s, or 0. */
static size_t secret_at(const char *s, char *const *secrets, int n) {
  for (int i = 0; i < n; i++) {
    size_t len = strlen(secrets[i]);
    if (strncmp(s, secrets[i], len) == 0) return len;
  }
  return 0;
}

void pg_redact_message(const char *conninfo, const char *msg, char *out, size_t cap) {
  struct out o = {out, cap, 0};
  char *err = NULL, *secrets[MAX_SECRETS];
  int n = 0;
  if (cap > 0) out[0] = '\0';
  PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
  if (opts == NULL) {
    PQfreemem(err);
    puts_(&o, "(connection error not shown: DATABASE_URL is not a valid libpq connection "
              "string)");
    return;
  }
  for (const PQconninfoOption *p = opts; p->keyword != NULL && n < MAX_SECRETS; p++)
    if (p->val != NULL && p->val[0] != '\0' && is_secret(p)) secrets[n++] = p->val;
  for (const char *s = msg; *s;) {
    size_t len = secret_at(s, secrets, n);
    if (len > 0) {
      puts_(&o, PG_REDACT_MASK);
      s += len;
    } else {
      put(&o, s++, 1);
    }
  }
  PQconninfoFree(opts);
}
