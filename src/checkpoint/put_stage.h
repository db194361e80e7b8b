/*
 * put_stage.h - the second half of reading a checkpoint, on its own thread.
 *
 * Reading a whole checkpoint is two kinds of work on two sets of cache
 * lines: decoding blocks into new records and hashing each for the state
 * digest while it is in the cache (the stream, malloc, the kernel zeroing
 * fresh pages: format.c), and putting them into the store's maps (here).
 * The puts run on a thread of their own while the reader decodes the next
 * records (docs/performance.md, "The reader on two threads"). Records are handed over in groups of
 * at most STORE_PUT_MANY_MAX through a bounded ring; the reader never touches a record it gave
 * again: the stage owns it, then the transaction (or frees it after a failure).
 *
 * While the stage runs, the transaction is the stage's alone: the reader
 * must not touch it until put_stage_finish returns. If the thread cannot be
 * started the groups are put on the caller's thread, with the same results.
 * Private to the checkpoint room (format.c).
 */
#ifndef CATALOGD_PUT_STAGE_H
#define CATALOGD_PUT_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "store.h"

struct put_stage;

/* What the stage did, for the reader's checks after put_stage_finish. */
struct put_stage_counts {
  uint64_t records[CAT_ENTITY_KINDS]; /* records given, tombstones included */
  uint64_t live[CAT_ENTITY_KINDS];    /* of them not tombstones */
  uint64_t failed_at;                 /* the first record not applied (if failed) */
  bool failed;                        /* some record was not applied (an entity twice) */
};

/* The fewest bytes a record takes in a stream (flag, id, an organization
 * or its repeat, version): what bounds the records a stream of known
 * length can hold. */
#define PUT_STAGE_MIN_RECORD 18

/* Starts a stage putting into t; t is the stage's until put_stage_finish.
 * live (NULL: no sizing): the header's live count per kind
 * (CAT_ENTITY_KINDS), untrusted; bytes: the whole stream's length if known
 * (a file's size; 0: unknown). The stage sizes t's maps on its own thread
 * as it starts: for the whole counts if the stream could hold them, else
 * for at most 64k of a kind now and for the rest (at most 2M) only once
 * 64k live records of it were put, so a forged count costs little
 * (put_stage.c, RESERVE_FIRST). Returns the stage (never NULL: a thread
 * that cannot start makes put_stage_give put on the caller's thread). */
struct put_stage *put_stage_start(struct store_txn *t, const uint64_t *live, uint64_t bytes);

/* Records handed over together (the reader fills one, then gives it):
 * grouped so that the store overlaps their lookups' cache misses
 * (store_put_many). */
struct put_group {
  struct cat_hdr *h[STORE_PUT_MANY_MAX];
  size_t n; /* <= STORE_PUT_MANY_MAX */
};

/* Hands over g's records (copied: g is the caller's again at once), to be
 * put in that order; the stage owns the records from now on. Waits while
 * the ring is full. Returns 0, or -EBADMSG once some record given before
 * was not applied (the reader should stop: the stage frees whatever it is
 * given after that). */
int put_stage_give(struct put_stage *s, const struct put_group *g);

/* Waits until every record given is put (or freed, after a failure), stops
 * the thread, fills *out and frees s. NULL: no-op. */
void put_stage_finish(struct put_stage *s, struct put_stage_counts *out);

#endif
