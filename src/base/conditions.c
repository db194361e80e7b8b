/*
 * conditions.c - the operator-visible conditions registry (see
 * conditions.h).
 *
 * A fixed array under one mutex: a handful of keys, set rarely (on faults
 * and recoveries), read at scrape and probe time. Nothing here is on the
 * request path.
 */
#include "conditions.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "strbuf.h"
#include "xalloc.h"

#define MAX_CONDITIONS CONDITIONS_MAX
#define KEY_CAP        CONDITIONS_NAME_CAP
#define MSG_CAP        512

struct condition {
  char key[KEY_CAP];
  char msg[MSG_CAP];
  const char *level;
};

struct conditions {
  pthread_mutex_t mu;
  struct condition c[MAX_CONDITIONS];
  int n; /* c[0, n), in the order first set: removal keeps the order */
  int dropped_logged;
};

struct conditions *conditions_new(void) {
  struct conditions *c = xcalloc(1, sizeof *c);
  pthread_mutex_init(&c->mu, NULL);
  return c;
}

void conditions_destroy(struct conditions *c) {
  if (c == NULL) return;
  pthread_mutex_destroy(&c->mu);
  free(c);
}

/* Index of key, or -1. Called with c->mu held. */
static int find(const struct conditions *c, const char *key) {
  for (int i = 0; i < c->n; i++)
    if (strcmp(c->c[i].key, key) == 0) return i;
  return -1;
}

/* Copies src into dst (cap bytes), bytes outside printable ASCII made '?':
 * messages carry library text, and the JSON writer below and the metrics renderer
 * escape only quotes and backslashes. */
static void copy_clean(char *dst, const char *src, size_t cap) {
  size_t i = 0;
  for (; src[i] != '\0' && i + 1 < cap; i++) {
    unsigned char ch = (unsigned char)src[i];
    dst[i] = ch < 0x20 || ch >= 0x7f ? '?' : (char)ch;
  }
  dst[i] = '\0';
}

void conditions_set(struct conditions *c, const char *key, const char *level, const char *msg) {
  bool drop = false;
  if (c == NULL) return;
  pthread_mutex_lock(&c->mu);
  int i = find(c, key);
  if (msg == NULL) {
    if (i >= 0) memmove(&c->c[i], &c->c[i + 1], (size_t)(--c->n - i) * sizeof c->c[0]);
  } else if (i < 0 && c->n == MAX_CONDITIONS) {
    drop = c->dropped_logged++ == 0;
  } else {
    if (i < 0) {
      i = c->n++;
      copy_clean(c->c[i].key, key, KEY_CAP);
    }
    copy_clean(c->c[i].msg, msg, MSG_CAP);
    c->c[i].level = level;
  }
  pthread_mutex_unlock(&c->mu);
  if (drop) log_error("too many conditions; dropping", LF_S("key", key), LF_S("message", msg));
}

/* The held conditions, in the order first set, copied out under the lock. */
static int copy_out(struct conditions *c, struct condition *out) {
  pthread_mutex_lock(&c->mu);
  int n = c->n;
  memcpy(out, c->c, (size_t)n * sizeof *out);
  pthread_mutex_unlock(&c->mu);
  return n;
}

char *conditions_json(struct conditions *c) {
  struct condition copy[MAX_CONDITIONS];
  struct strbuf sb = {0};
  int n = c ? copy_out(c, copy) : 0;
  sb_printf(&sb, "[");
  for (int i = 0; i < n; i++) {
    sb_printf(&sb, "%s{\"name\":\"", i ? "," : "");
    sb_put_escaped(&sb, copy[i].key);
    sb_printf(&sb, "\",\"level\":\"%s\",\"message\":\"", copy[i].level);
    sb_put_escaped(&sb, copy[i].msg);
    sb_printf(&sb, "\"}");
  }
  sb_printf(&sb, "]");
  return sb_take(&sb);
}

int conditions_list(struct conditions *c, struct condition_name out[CONDITIONS_MAX]) {
  struct condition copy[MAX_CONDITIONS];
  int n = c ? copy_out(c, copy) : 0;
  for (int i = 0; i < n; i++) {
    memcpy(out[i].name, copy[i].key, KEY_CAP);
    out[i].level = copy[i].level;
  }
  return n;
}
