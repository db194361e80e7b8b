/*
 * xalloc.h - allocation that cannot fail (it aborts instead).
 *
 * catalogd's one out-of-memory policy: a half-applied change, or a record
 * dropped as if it were a bad row, is worse than a crash. The store's
 * copy-on-write steps and the record builders (model.c) allocate with these,
 * so a builder's NULL always means a schema violation. Like Redis' zmalloc,
 * running out of memory is fatal and logged; Kubernetes restarts the pod and
 * the state is rebuilt.
 */
#ifndef CATALOGD_XALLOC_H
#define CATALOGD_XALLOC_H

#include <stdio.h>
#include <stdlib.h>

static inline void *x__check(void *p, size_t n) {
  if (p == NULL && n != 0) {
    fprintf(stderr, "{\"level\":\"error\",\"msg\":\"out of memory\",\"bytes\":%zu}\n", n);
    abort();
  }
  return p;
}

static inline void *xmalloc(size_t n) { return x__check(malloc(n), n); }
static inline void *xcalloc(size_t k, size_t n) { return x__check(calloc(k, n), k * n); }
/* realloc(p, 0) may free p and return NULL (C23: undefined), which x__check
 * would pass through as success: a size of 0 asks for 1 byte instead, so the
 * result is always a live block the caller owns. */
static inline void *xrealloc(void *p, size_t n) {
  size_t m = n ? n : 1;
  return x__check(realloc(p, m), m); /* never NULL (the analyzer sees it too) */
}

#endif
