/*
 * park.c - the parked-call set and its releaser thread (see park.h).
 *
 * The set is a min-heap of entries by expiry, under one mutex. The releaser
 * sleeps on a condition variable until the earliest expiry or a publish
 * (the store's hook signals it). On a publish it hands back every call the
 * new snapshot may satisfy: those waiting for positions it now covers
 * (checked here, in a read section, so the other calls are not woken for
 * nothing) and those waiting for an entity's version whose entity a publish
 * since the last scan wrote (the hook copies the publish's change keys, only
 * while such calls wait; only the handler, on its worker, can tell whether
 * the version is reached, and which id of a batch falls short next). On
 * expiry it hands the call back too: its worker answers
 * UNAVAILABLE. A call is handed back with an empty batch, posted while the
 * mutex is held: a call is thus never handed back twice, and its worker's
 * park_remove (on cancellation) knows whether it still owns it.
 *
 * The cap counts admitted calls, not heap entries: a call handed back to be
 * checked again still holds its memory, and must be able to park again
 * without being refused in favour of a newcomer.
 */
#include "park.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "store.h"
#include "xalloc.h"

struct park {
  struct store *st;
  struct metrics *m;
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t cv; /* CLOCK_MONOTONIC */
  struct parked **heap;
  size_t n, cap;
  atomic_uint_fast64_t publishes; /* written under mu, read without */
  uint64_t scanned;               /* publishes the releaser has looked at (under mu) */
  bool closing;                   /* under mu */
  size_t admitted, max_calls;     /* calls holding a place under the cap (under mu), the cap */
  size_t nkeyed;                  /* entries waiting for an entity's version (under mu) */
  /* The change keys of the publishes since the last scan (under mu), kept
   * only while nkeyed > 0; changed_all: any entity may have changed. */
  uint64_t *changed;
  size_t nchanged;
  bool changed_all;
  time_t full_logged;       /* last second the cap was logged (under mu) */
  uint64_t full_suppressed; /* refusals not logged since (under mu) */
};

/* ---- The heap (under mu) ---- */

static void heap_set(struct park *p, size_t i, struct parked *e) {
  p->heap[i] = e;
  e->at = i;
}

static void sift_up(struct park *p, size_t i) {
  struct parked *e = p->heap[i];
  while (i > 0 && p->heap[(i - 1) / 2]->until_ns > e->until_ns) {
    heap_set(p, i, p->heap[(i - 1) / 2]);
    i = (i - 1) / 2;
  }
  heap_set(p, i, e);
}

static void sift_down(struct park *p, size_t i) {
  struct parked *e = p->heap[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= p->n) break;
    if (c + 1 < p->n && p->heap[c + 1]->until_ns < p->heap[c]->until_ns) c++;
    if (p->heap[c]->until_ns >= e->until_ns) break;
    heap_set(p, i, p->heap[c]);
    i = c;
  }
  heap_set(p, i, e);
}

/* Marks e out of the set. */
static void unset(struct park *p, struct parked *e) {
  e->in_set = false;
  if (e->by_key) p->nkeyed--;
}

/* Takes the entry at index i out of the heap. */
static void heap_remove(struct park *p, size_t i) {
  unset(p, p->heap[i]);
  p->n--;
  if (i == p->n) return;
  heap_set(p, i, p->heap[p->n]);
  sift_down(p, i); /* if it moved down, what rose to i is no smaller than i's parent */
  sift_up(p, i);
}

/* Hands e (already out of the heap) back to its worker. */
static void hand_back(struct park *p, struct parked *e) {
  metrics_add(p->m, MC_PARKED_NOW, (uint64_t)-1);
  grpc_call_error rc = grpc_call_start_batch(e->call, NULL, 0, e->wake, NULL);
  if (rc != GRPC_CALL_OK) /* not seen in practice: the call then ends at its deadline */
    log_error("parked call could not be handed back", LF_I("grpc_call_error", rc));
}

/* ---- The releaser ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* Did a publish since the last scan write e's entity (or may it have)?
 * changed is sorted. @locality the releaser, under mu. */
static bool key_changed(const struct park *p, const struct parked *e) {
  return e->recheck || p->changed_all ||
         bsearch(&e->key, p->changed, p->nchanged, sizeof *p->changed, cmp_u64) != NULL;
}

/* After a publish: hands back the calls the current snapshot may satisfy,
 * keeping the rest (re-heapified), and forgets the change keys.
 * @locality the releaser, under mu. */
static void release_satisfied(struct park *p) {
  size_t kept = 0;
  if (p->nchanged > 1) qsort(p->changed, p->nchanged, sizeof *p->changed, cmp_u64);
  store_read_lock();
  const struct snapshot *s = store_current(p->st);
  for (size_t i = 0; i < p->n; i++) {
    struct parked *e = p->heap[i];
    bool wake = s != NULL && (e->need == NULL || fresh_positions_met(e->need, s, NULL, 0)) &&
                (!e->by_key || key_changed(p, e));
    if (!wake) {
      heap_set(p, kept++, e);
      continue;
    }
    unset(p, e);
    hand_back(p, e);
  }
  store_read_unlock();
  p->n = kept;
  for (size_t i = p->n / 2; i-- > 0;)
    sift_down(p, i);
  p->nchanged = 0, p->changed_all = false;
}

/* Hands back every call whose MAX_WAIT_MS is over at now. @locality the
 * releaser, under mu. */
static void release_expired(struct park *p, int64_t now) {
  while (p->n > 0 && p->heap[0]->until_ns <= now) {
    struct parked *e = p->heap[0];
    heap_remove(p, 0);
    hand_back(p, e);
  }
}

/* Sleeps until the earliest expiry, a publish or closing. @locality the
 * releaser, under mu. */
static void wait_for_work(struct park *p) {
  if (p->closing || p->scanned != atomic_load(&p->publishes)) return;
  if (p->n == 0) {
    pthread_cond_wait(&p->cv, &p->mu);
    return;
  }
  int64_t at = p->heap[0]->until_ns;
  struct timespec ts = {.tv_sec = at / 1000000000LL, .tv_nsec = at % 1000000000LL};
  pthread_cond_timedwait(&p->cv, &p->mu, &ts);
}

/* @locality its own thread; an RCU reader (it looks at snapshot positions). */
static void *releaser_main(void *arg) {
  struct park *p = arg;
  store_reader_register();
  pthread_mutex_lock(&p->mu);
  while (!p->closing) {
    uint64_t pubs = atomic_load(&p->publishes);
    if (p->scanned != pubs) {
      p->scanned = pubs;
      release_satisfied(p);
    }
    release_expired(p, clock_mono_ns());
    wait_for_work(p);
  }
  while (p->n > 0) { /* closing: everyone goes back to be answered */
    struct parked *e = p->heap[p->n - 1];
    heap_remove(p, p->n - 1);
    hand_back(p, e);
  }
  pthread_mutex_unlock(&p->mu);
  store_reader_unregister();
  return NULL;
}

/* Keeps ch's change keys for the next scan, if calls wait for versions.
 * Past PARK_CHANGES_MAX keys (publishes faster than the releaser scans)
 * the list gives way to "all": memory stays bounded, and the worst case is
 * the old behaviour (every version waiter re-checked). @locality under mu. */
#define PARK_CHANGES_MAX (4 * STORE_CHANGES_MAX)
static void keep_changes(struct park *p, const struct store_changes *ch) {
  if (p->nkeyed == 0 || p->changed_all) return;
  if (ch->all || p->nchanged + ch->n > PARK_CHANGES_MAX) {
    p->changed_all = true;
    return;
  }
  if (p->changed == NULL) p->changed = xmalloc(PARK_CHANGES_MAX * sizeof *p->changed);
  memcpy(p->changed + p->nchanged, ch->keys, ch->n * sizeof *ch->keys);
  p->nchanged += ch->n;
}

/* store_on_publish's hook: counts the publish, keeps its change keys and
 * wakes the releaser. @locality the writer; never blocks for long (the
 * mutex is held briefly; a scan holds it for one pass over the set). */
static void on_publish(void *arg, const struct store_changes *ch) {
  struct park *p = arg;
  pthread_mutex_lock(&p->mu);
  atomic_fetch_add(&p->publishes, 1);
  keep_changes(p, ch);
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
}

/* ---- API ---- */

struct park *park_new(struct store *st, struct metrics *m, int max_calls) {
  struct park *p = xcalloc(1, sizeof *p);
  pthread_condattr_t ca;
  p->st = st, p->m = m;
  p->max_calls = max_calls > 0 ? (size_t)max_calls : 0;
  p->cap = 64;
  p->heap = xmalloc(p->cap * sizeof *p->heap);
  pthread_mutex_init(&p->mu, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cv, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&p->thread, NULL, releaser_main, p) != 0) {
    p->thread = 0;
    park_destroy(p);
    return NULL;
  }
  store_on_publish(st, on_publish, p);
  return p;
}

uint64_t park_publishes(const struct park *p) {
  return atomic_load(&((struct park *)p)->publishes);
}

/* Admits e if it is not yet and the cap allows. Returns 0 or -ENOSPC
 * (counted; *log_suppressed >= 0 if this refusal is to be logged, with the
 * number of refusals not logged before it). @locality under mu. */
static int admit(struct park *p, struct parked *e, int64_t *log_suppressed) {
  *log_suppressed = -1;
  if (e->admitted) return 0;
  if (p->admitted >= p->max_calls) {
    metrics_add(p->m, MC_PARK_REJECTED, 1);
    time_t now = time(NULL);
    if (now == p->full_logged) {
      p->full_suppressed++;
    } else {
      *log_suppressed = (int64_t)p->full_suppressed;
      p->full_logged = now, p->full_suppressed = 0;
    }
    return -ENOSPC;
  }
  p->admitted++;
  e->admitted = true;
  metrics_add(p->m, MC_PARKED_TOTAL, 1); /* once per call, however often it parks */
  return 0;
}

int park_add(struct park *p, struct parked *e, uint64_t seen_publishes) {
  int64_t log_suppressed = -1;
  int rc = 0;
  pthread_mutex_lock(&p->mu);
  if (p->closing) {
    rc = -ESHUTDOWN;
    goto out;
  }
  if (e->admitted) metrics_add(p->m, MC_PARK_REPARKED, 1);
  if ((rc = admit(p, e, &log_suppressed)) != 0) goto out;
  if (p->n == p->cap) {
    p->cap *= 2;
    p->heap = xrealloc(p->heap, p->cap * sizeof *p->heap);
  }
  e->in_set = true;
  if (e->by_key) p->nkeyed++;
  /* A publish since the caller's check: its change keys may not have been
   * kept (nobody waited by key then), so e goes back on the next scan. */
  e->recheck = seen_publishes != atomic_load(&p->publishes);
  heap_set(p, p->n++, e);
  sift_up(p, p->n - 1);
  metrics_add(p->m, MC_PARKED_NOW, 1);
  /* A publish since the caller's check: make the releaser look at it
   * again (it may have scanned before e was in the set). Also wake it if
   * e expires before anything else parked. */
  if (seen_publishes != atomic_load(&p->publishes)) p->scanned = seen_publishes;
  if (p->scanned != atomic_load(&p->publishes) || e->at == 0) pthread_cond_signal(&p->cv);
out:
  pthread_mutex_unlock(&p->mu);
  if (log_suppressed >= 0) /* outside the mutex: a log line may block on stderr */
    log_warn("parked-call limit reached; call refused", LF_I("PARK_MAX_CALLS", p->max_calls),
             LF_I("suppressed", log_suppressed));
  return rc;
}

void park_leave(struct park *p, struct parked *e) {
  if (!e->admitted) return;
  pthread_mutex_lock(&p->mu);
  p->admitted--;
  e->admitted = false;
  pthread_mutex_unlock(&p->mu);
}

bool park_remove(struct park *p, struct parked *e) {
  pthread_mutex_lock(&p->mu);
  bool was = e->in_set;
  if (was) {
    heap_remove(p, e->at);
    metrics_add(p->m, MC_PARKED_NOW, (uint64_t)-1);
  }
  pthread_mutex_unlock(&p->mu);
  return was;
}

void park_claim(struct park *p, struct parked *e) {
  /* The completion queue orders the wake after the hand-back, but through
   * the core's own synchronisation; the mutex makes the order explicit
   * (and visible to ThreadSanitizer), at one uncontended lock per wake. */
  pthread_mutex_lock(&p->mu);
  (void)e;
  pthread_mutex_unlock(&p->mu);
}

size_t park_count(struct park *p) {
  pthread_mutex_lock(&p->mu);
  size_t n = p->n;
  pthread_mutex_unlock(&p->mu);
  return n;
}

void park_close(struct park *p) {
  if (p == NULL || p->thread == 0) return;
  pthread_mutex_lock(&p->mu);
  p->closing = true;
  pthread_cond_signal(&p->cv);
  pthread_mutex_unlock(&p->mu);
  pthread_join(p->thread, NULL);
  p->thread = 0;
}

void park_destroy(struct park *p) {
  if (p == NULL) return;
  park_close(p);
  pthread_cond_destroy(&p->cv);
  pthread_mutex_destroy(&p->mu);
  free(p->heap);
  free(p->changed);
  free(p);
}
