/*
 * put_stage.c - puts a checkpoint's decoded records on a thread of its own
 * (see put_stage.h).
 *
 * A ring of RING groups under one mutex: the reader (producer) waits while
 * it is full, the stage's thread (consumer) while it is empty. A group is
 * 16 records, so the lock is taken about 75k times each side at 1M
 * variants: negligible next to the puts. The ring lets the reader run
 * ahead by up to RING groups, which smooths the two sides' uneven blocks
 * (a product with many images decodes slowly, a tombstone quickly).
 */
#include "put_stage.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

/* Groups in flight: 64k records at most. The ring lets the reader go on
 * decoding while the stage is busy with something long, above all the
 * reserve of a kind's full map once RESERVE_FIRST of it came (32 MiB of
 * fresh memory at 1M variants: tens of ms, 0.1-0.2 s when the kernel
 * zeroes it cold); 64 groups (1024 records) filled in a millisecond and
 * left the reader waiting that long. 560 KiB of pointers. */
#define RING 4096
/* Map sizing from the header's live counts, which nothing vouches for
 * until the trailer. A stream of known length (a file) cannot hold more
 * records than its bytes allow (PUT_STAGE_MIN_RECORD each): counts within
 * that are reserved whole at once, as the stage starts. Otherwise (a peer's
 * stream, or counts a file could not hold) each kind is reserved up to
 * RESERVE_FIRST at once, and up to the header's count (at most
 * RESERVE_MAX) only once RESERVE_FIRST live records of it were actually
 * decoded and put. A header that claims 2M of every kind and is followed
 * by garbage cost 345 MiB of maps before it was refused; now it costs what
 * RESERVE_FIRST reserves (~4 MiB a map), and the full size must be earned
 * with 64k valid records. Earning costs an honest load one rehash of 64k
 * entries per large kind, and the full map's memory on the stage's thread
 * mid-load (~5 % of a 1M restart, measured alternated): why a file is
 * sized at once. */
#define RESERVE_FIRST (64u << 10)
#define RESERVE_MAX   (2u << 20)
/* A side that found the ring full (empty) sleeps until the other has made
 * this much room (work): waking per group cost a fifth of the read in
 * futex calls and the hypervisor's interrupts, waking per WAKE_AT groups
 * costs nothing measurable. */
#define WAKE_AT 32

struct put_stage {
  struct store_txn *t;
  bool threaded;
  pthread_t th;
  pthread_mutex_t mu;
  pthread_cond_t not_full, not_empty;
  struct put_group *ring; /* RING groups */
  uint64_t given, taken;  /* groups; given - taken <= RING (guarded by mu) */
  bool closed;            /* no more groups (guarded by mu) */
  bool reader_waits;      /* the reader sleeps on not_full (guarded by mu) */
  bool stage_waits;       /* the stage sleeps on not_empty (guarded by mu) */
  bool failed;            /* a put was not applied (guarded by mu) */
  /* The stage thread's own (read by the reader after the join). */
  struct put_stage_counts c;
  uint64_t done;                         /* records put or freed so far */
  size_t reserve_rest[CAT_ENTITY_KINDS]; /* reserved once RESERVE_FIRST came (0: no more) */
  /* put_stage_start's sizing (set before the thread starts). */
  bool sizing;                     /* size t's maps from live */
  uint64_t live[CAT_ENTITY_KINDS]; /* the header's live counts */
  uint64_t bound;                  /* most records the stream can hold (0: unknown) */
};

/* Reserves the rest of kind k's header count once RESERVE_FIRST live
 * records of it were put (before the group that crosses it). */
static void reserve_earned(struct put_stage *s, enum cat_kind k) {
  if (s->reserve_rest[k] == 0 || s->c.live[k] < RESERVE_FIRST) return;
  store_txn_reserve(s->t, k, s->reserve_rest[k]);
  s->reserve_rest[k] = 0;
}

/* Puts one group into s->t, counting it; after a failure the
 * group is only freed. @locality the stage's thread (or the reader's when
 * not threaded). */
static void apply_group(struct put_stage *s, struct put_group *g) {
  int rc[STORE_PUT_MANY_MAX];
  if (s->c.failed) {
    for (size_t i = 0; i < g->n; i++)
      model_free(g->h[i]);
    s->done += g->n;
    return;
  }
  for (size_t i = 0; i < g->n; i++) { /* before the put: the txn may free h after it */
    s->c.records[g->h[i]->kind]++;
    if (!g->h[i]->deleted) s->c.live[g->h[i]->kind]++;
    reserve_earned(s, g->h[i]->kind);
  }
  store_put_many(s->t, g->h, g->n, rc);
  for (size_t i = 0; i < g->n && !s->c.failed; i++)
    if (rc[i] != STORE_APPLIED) s->c.failed = true, s->c.failed_at = s->done + i;
  s->done += g->n;
}

/* The first reservation of each kind, as the stage starts (on its thread,
 * while the reader decodes the first groups); remembers what the rest
 * would be. s->live and s->bound: put_stage_start's. */
static void reserve_first(struct put_stage *s) {
  uint64_t sum = 0;
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    sum += s->live[k] < RESERVE_MAX ? s->live[k] : RESERVE_MAX;
  size_t first = s->bound != 0 && sum <= s->bound ? RESERVE_MAX : RESERVE_FIRST;
  for (int k = 0; k < CAT_ENTITY_KINDS; k++) {
    size_t want = s->live[k] < RESERVE_MAX ? (size_t)s->live[k] : RESERVE_MAX;
    store_txn_reserve(s->t, (enum cat_kind)k, want < first ? want : first);
    s->reserve_rest[k] = want > first ? want : 0;
  }
}

/* The stage's thread: takes groups until the ring is closed and empty. */
static void *stage_main(void *arg) {
  struct put_stage *s = arg;
  if (s->sizing) reserve_first(s);
  for (;;) {
    pthread_mutex_lock(&s->mu);
    if (s->taken == s->given && !s->closed) {
      s->stage_waits = true;
      while (s->given - s->taken < WAKE_AT && !s->closed)
        pthread_cond_wait(&s->not_empty, &s->mu);
      s->stage_waits = false;
    }
    if (s->taken == s->given) { /* closed and drained */
      pthread_mutex_unlock(&s->mu);
      return NULL;
    }
    struct put_group g = s->ring[s->taken % RING];
    s->taken++;
    if (s->reader_waits && s->given - s->taken <= RING - WAKE_AT) pthread_cond_signal(&s->not_full);
    pthread_mutex_unlock(&s->mu);
    bool was = s->c.failed;
    apply_group(s, &g);
    if (s->c.failed && !was) {
      pthread_mutex_lock(&s->mu);
      s->failed = true;
      pthread_mutex_unlock(&s->mu);
    }
  }
}

struct put_stage *put_stage_start(struct store_txn *t, const uint64_t *live, uint64_t bytes) {
  struct put_stage *s = xcalloc(1, sizeof *s);
  s->ring = xmalloc(RING * sizeof *s->ring);
  s->t = t;
  s->sizing = live != NULL;
  if (live != NULL) memcpy(s->live, live, sizeof s->live);
  s->bound = bytes / PUT_STAGE_MIN_RECORD;
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->not_full, NULL);
  pthread_cond_init(&s->not_empty, NULL);
  s->threaded = pthread_create(&s->th, NULL, stage_main, s) == 0;
  if (s->threaded)
    pthread_setname_np(s->th, "ckpt-put");
  else if (s->sizing)
    reserve_first(s);
  return s;
}

int put_stage_give(struct put_stage *s, const struct put_group *gp) {
  assert(gp->n <= STORE_PUT_MANY_MAX);
  struct put_group g = *gp;
  if (!s->threaded) {
    apply_group(s, &g);
    return s->c.failed ? -EBADMSG : 0;
  }
  pthread_mutex_lock(&s->mu);
  if (s->given - s->taken == RING) {
    s->reader_waits = true;
    while (s->given - s->taken > RING - WAKE_AT)
      pthread_cond_wait(&s->not_full, &s->mu);
    s->reader_waits = false;
  }
  s->ring[s->given % RING] = g;
  s->given++;
  if (s->stage_waits && s->given - s->taken >= WAKE_AT) pthread_cond_signal(&s->not_empty);
  bool failed = s->failed;
  pthread_mutex_unlock(&s->mu);
  return failed ? -EBADMSG : 0;
}

void put_stage_finish(struct put_stage *s, struct put_stage_counts *out) {
  if (s == NULL) return;
  if (s->threaded) {
    pthread_mutex_lock(&s->mu);
    s->closed = true;
    pthread_cond_signal(&s->not_empty);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
  }
  *out = s->c;
  pthread_cond_destroy(&s->not_full);
  pthread_cond_destroy(&s->not_empty);
  pthread_mutex_destroy(&s->mu);
  free(s->ring);
  free(s);
}
