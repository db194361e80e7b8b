/*
 * prefault.c - populates the pages just ahead of a bulk build's allocations
 * on a thread of its own (see prefault.h).
 *
 * The thread polls the last noted address every POLL_US. When that address
 * is in a mapping it has not looked up, it finds the mapping in
 * /proc/self/maps (a handful of times a build: glibc's arena heaps are
 * 64 MiB) and keeps it only if it is anonymous, private and read-write.
 * Then it keeps the populated range PREFAULT_AHEAD bytes ahead of the
 * address, in STEP pieces, so that a stop is never kept waiting long.
 *
 * The check and the madvise are not atomic: a mapping unmapped in between
 * makes the madvise fail (ENOMEM), and the mapping is looked up again. One
 * mapped at that very address in that window would be populated as if
 * written, which changes none of its bytes; during a build the arenas only
 * grow, so it does not happen in practice.
 */
#include "prefault.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

#define STEP    (2u << 20) /* one huge page */
#define POLL_US 250

struct prefault {
  pthread_t th;
  _Atomic uintptr_t at; /* the last address noted (0: none yet) */
  atomic_bool stop;
  /* The thread's own. */
  uintptr_t lo, hi;  /* the usable mapping holding the frontier (or 0, 0) */
  uintptr_t done;    /* populated from the frontier up to here */
  uintptr_t refused; /* a 64 MiB window found unusable: not looked up again */
  bool off;          /* the kernel does not know MADV_POPULATE_WRITE */
  size_t populated;
};

/* The anonymous private read-write mapping holding a, into [*lo, *hi).
 * Returns false if a is in no such mapping (or maps cannot be read). */
static bool find_mapping(uintptr_t a, uintptr_t *lo, uintptr_t *hi) {
  FILE *f = fopen("/proc/self/maps", "re");
  if (f == NULL) return false;
  char line[4352], perms[8];
  bool ok = false;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long s, e, off, inode;
    unsigned maj, min;
    int n = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu %n", &s, &e, perms, &off, &maj, &min, &inode, &n) <
            7 ||
        a < s || a >= e)
      continue;
    const char *path = line + n;
    ok = strcmp(perms, "rw-p") == 0 && inode == 0 &&
         (path[0] == '\n' || path[0] == '\0' || strncmp(path, "[heap]", 6) == 0);
    *lo = s, *hi = e;
    break;
  }
  fclose(f);
  return ok;
}

/* Moves the populated range ahead of a by at most one STEP. Returns true
 * if it populated something (worth looking again at once). */
static bool step(struct prefault *pf, uintptr_t a) {
  if (a < pf->lo || a >= pf->hi) {
    if ((a >> 26) == pf->refused) return false;
    if (!find_mapping(a, &pf->lo, &pf->hi)) {
      pf->lo = pf->hi = 0, pf->refused = a >> 26;
      return false;
    }
    pf->done = a;
  }
  uintptr_t from = pf->done > a ? pf->done : a;
  from = (from + 4095) & ~(uintptr_t)4095;
  uintptr_t to = a + PREFAULT_AHEAD < pf->hi ? a + PREFAULT_AHEAD : pf->hi;
  if (to > from + STEP) to = from + STEP;
  if (from >= to) return false;
  if (madvise((void *)from, to - from, MADV_POPULATE_WRITE) != 0) {
    if (errno == EINVAL) pf->off = true; /* before Linux 5.14 */
    pf->lo = pf->hi = 0;                 /* the mapping changed: look it up again */
    return false;
  }
  pf->done = to;
  pf->populated += to - from;
  return true;
}

static void *prefault_main(void *arg) {
  struct prefault *pf = arg;
  const struct timespec poll = {0, POLL_US * 1000L};
  while (!atomic_load_explicit(&pf->stop, memory_order_relaxed)) {
    uintptr_t a = atomic_load_explicit(&pf->at, memory_order_relaxed);
    if (pf->off || a == 0 || !step(pf, a)) nanosleep(&poll, NULL);
  }
  return NULL;
}

struct prefault *prefault_start(void) {
  struct prefault *pf = calloc(1, sizeof *pf);
  if (pf == NULL) return NULL;
  if (pthread_create(&pf->th, NULL, prefault_main, pf) != 0) {
    free(pf);
    return NULL;
  }
  pthread_setname_np(pf->th, "prefault");
  return pf;
}

void prefault_note(struct prefault *pf, const void *p) {
  if (pf != NULL) atomic_store_explicit(&pf->at, (uintptr_t)p, memory_order_relaxed);
}

size_t prefault_stop(struct prefault *pf) {
  if (pf == NULL) return 0;
  atomic_store_explicit(&pf->stop, true, memory_order_relaxed);
  pthread_join(pf->th, NULL);
  size_t n = pf->populated;
  free(pf);
  return n;
}
