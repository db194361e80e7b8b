/*
 * event_decode_bench.c - micro-benchmark of the change-event decoder
 * (sync/codec/event_decode.c) against the jansson decoder it replaced, kept as the
 * test oracle (tests/oracle), on the same events in the same run.
 *
 *   event-decode-bench EVENTS.tsv [ROUNDS] [new]
 *
 * EVENTS.tsv is "KEY<TAB>JSON" per line, as catalog-gen writes events.tsv.
 * Every message is first decoded by both and compared (verdict, reason,
 * record field by field): a difference is reported and exits 1. Then ROUNDS
 * (default 5) rounds alternate old and new, each decoding every message and
 * freeing the record, as the consumer does before store_put. Prints the best
 * and median ns per event of each and one JSON line. "new" times only the
 * single-pass decoder (for a profiler).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "event_decode.h"
#include "event_decode_oracle.h"

struct msg {
  const char *key, *value;
  size_t keylen, valuelen;
};

typedef int (*decode_fn)(const char *, size_t, const char *, size_t, struct event *, const char **);

/* Reads the whole file; NULL on error. The caller frees it. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    goto out;
  if ((buf = malloc((size_t)n + 1)) != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  *len = (size_t)n;
out:
  if (f) fclose(f);
  return buf;
}

/* Splits buf (modified in place) into messages; returns how many. */
static size_t split(char *buf, size_t len, struct msg **out) {
  size_t n = 0, cap = 1024;
  struct msg *m = malloc(cap * sizeof *m);
  for (char *p = buf, *end = buf + len; m && p < end;) {
    char *nl = memchr(p, '\n', (size_t)(end - p)), *tab;
    if (nl == NULL) nl = end;
    if ((tab = memchr(p, '\t', (size_t)(nl - p))) != NULL) {
      if (n == cap && (m = realloc(m, (cap *= 2) * sizeof *m)) == NULL) break;
      m[n++] = (struct msg){p, tab + 1, (size_t)(tab - p), (size_t)(nl - tab - 1)};
    }
    p = nl + 1;
  }
  *out = m;
  return m ? n : 0;
}

/* Decodes every message once with fn; returns the elapsed ns. */
static double round_ns(decode_fn fn, const struct msg *m, size_t n, size_t *rejected) {
  struct event ev;
  const char *why;
  double t0 = (double)clock_mono_ns();
  *rejected = 0;
  for (size_t i = 0; i < n; i++) {
    if (fn(m[i].key, m[i].keylen, m[i].value, m[i].valuelen, &ev, &why) != 0) ++*rejected;
    model_free(ev.record);
  }
  return (double)clock_mono_ns() - t0;
}

/* Both decoders agree on every message; returns the first that differs. */
static int verify(const struct msg *m, size_t n) {
  for (size_t i = 0; i < n; i++) {
    struct event ev;
    const char *why = NULL;
    int rc = event_decode(m[i].key, m[i].keylen, m[i].value, m[i].valuelen, &ev, &why);
    const char *d = oracle_compare(m[i].key, m[i].keylen, m[i].value, m[i].valuelen, rc, why, &ev);
    model_free(ev.record);
    if (d) {
      fprintf(stderr, "event-decode-bench: message %zu differs: %s\n", i + 1, d);
      return -1;
    }
  }
  return 0;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  size_t len, n, rej[2] = {0, 0}, bytes = 0;
  struct msg *m = NULL;
  int rounds = argc > 2 ? atoi(argv[2]) : 5;
  if (argc < 2 || rounds < 1 || rounds > 1000) {
    fprintf(stderr, "usage: event-decode-bench EVENTS.tsv [ROUNDS]\n");
    return 2;
  }
  char *buf = slurp(argv[1], &len);
  if (buf == NULL || (n = split(buf, len, &m)) == 0) {
    fprintf(stderr, "event-decode-bench: cannot read events from %s\n", argv[1]);
    return 2;
  }
  if (verify(m, n) != 0) return 1;
  for (size_t i = 0; i < n; i++)
    bytes += m[i].valuelen;
  decode_fn fns[2] = {oracle_event_decode, event_decode};
  if (argc > 3 && strcmp(argv[3], "new") == 0) fns[0] = event_decode;
  double *ns[2] = {calloc((size_t)rounds, sizeof(double)), calloc((size_t)rounds, sizeof(double))};
  for (int r = 0; r < rounds; r++)
    for (int k = 0; k < 2; k++)
      ns[k][r] = round_ns(fns[k], m, n, &rej[k]) / (double)n;
  for (int k = 0; k < 2; k++)
    qsort(ns[k], (size_t)rounds, sizeof(double), cmp_double);
  printf("%zu events (%.0f bytes on average), %d rounds, %zu rejected\n", n,
         (double)bytes / (double)n, rounds, rej[1]);
  printf("jansson (old): best %.0f ns/event, median %.0f\n", ns[0][0], ns[0][rounds / 2]);
  printf("single-pass:   best %.0f ns/event, median %.0f (%.1fx)\n", ns[1][0], ns[1][rounds / 2],
         ns[0][rounds / 2] / ns[1][rounds / 2]);
  printf("{\"events\":%zu,\"old_ns\":%.0f,\"new_ns\":%.0f}\n", n, ns[0][rounds / 2],
         ns[1][rounds / 2]);
  free(ns[0]), free(ns[1]), free(m), free(buf);
  return 0;
}
