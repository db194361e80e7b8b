/*
 * park.h - parked unary calls: a catalog call whose freshness requirement
 * (fresh.h) the published snapshot does not meet yet waits here, holding
 * no worker thread, until a publish may satisfy it, MAX_WAIT_MS passes, or
 * the server shuts down. Then it is handed back to the worker that owns it
 * (an empty batch on the call: its tag comes out of that worker's queue,
 * see the team's note on parked calls), which runs the handler again.
 *
 * One thread (the releaser) owns the timing: a min-heap of expiry times
 * under one mutex, woken by the store's publish hook. Cancellation and
 * client deadlines are not its business: the call's RECV_CLOSE_ON_SERVER,
 * started when it parks, tells its worker, which takes it out
 * (park_remove). Private to the grpc room.
 *
 * The set admits at most PARK_MAX_CALLS calls: a call is admitted when it
 * first parks and keeps its place while it is handed back and parks again,
 * until its context is freed (park_leave). A call beyond the cap is refused
 * (park_add returns -ENOSPC): its worker answers RESOURCE_EXHAUSTED.
 */
#ifndef CATALOGD_PARK_H
#define CATALOGD_PARK_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cq_tag.h"
#include "fresh.h"

struct park;
struct store;
struct metrics;

/* A parked call's entry, embedded in the call. The worker fills call,
 * wake, until_ns, need, by_key and key before park_add; the set owns the
 * rest. */
struct parked {
  grpc_call *call;
  struct cq_tag *wake;          /* posted on the call's queue to hand it back */
  int64_t until_ns;             /* monotonic: MAX_WAIT_MS after it arrived */
  const struct fresh_req *need; /* the positions it waits for (may be none) */
  /* It waits for an entity's version (x-catalog-min-version): key is that
   * entity's store_change_key, and it is handed back only by a publish
   * that wrote it (or one that may have written anything). */
  bool by_key;
  uint64_t key;
  bool recheck; /* a publish came between its check and park_add: hand it back on the next scan */
  size_t at;    /* index in the heap while parked */
  bool in_set;
  bool admitted; /* counted against the cap (set by park_add, cleared by park_leave) */
};

/* Starts the releaser and hooks it to st's publishes (store_on_publish:
 * call before the writer starts). m gets the parked-call figures; at most
 * max_calls calls are admitted at once (PARK_MAX_CALLS, 0: none). Returns
 * NULL if the thread cannot start. */
struct park *park_new(struct store *st, struct metrics *m, int max_calls);

/* The publish counter: read it BEFORE reading the snapshot a call is
 * checked against, and hand it to park_add, so that a publish between the
 * check and the park is never missed. @locality any thread. */
uint64_t park_publishes(const struct park *p);

/* Parks e (seen_publishes: park_publishes() before the check). A call not
 * admitted yet is admitted if fewer than the cap are (and counted in the
 * parked-call total, once per call); one admitted already
 * parks again (counted as a re-park: its handler ran for nothing). Returns 0; -ESHUTDOWN if the set
 * is closed (shutting down); -ENOSPC if the cap is reached (counted, logged at most once a second).
 * On an error the caller answers now.
 * @locality the call's worker, after starting its RECV_CLOSE_ON_SERVER. */
int park_add(struct park *p, struct parked *e, uint64_t seen_publishes);

/* e's call is done with waiting for good (its context is being freed):
 * gives its place under the cap back. No-op if e was never admitted.
 * @locality the call's worker, once e is out of the set. */
void park_leave(struct park *p, struct parked *e);

/* Takes e out if it is still parked. Returns true if it was (the caller now
 * owns the call again and no wake will come), false if it was already
 * handed back (its wake tag is on the way). @locality the call's worker. */
bool park_remove(struct park *p, struct parked *e);

/* The worker takes back a call whose wake tag arrived: waits until the
 * releaser is done with the entry (it hands back under the set's mutex), so
 * the call may be freed or parked again afterwards. @locality the call's
 * worker, first thing on the wake. */
void park_claim(struct park *p, struct parked *e);

/* Number of calls parked now. @locality any thread. */
size_t park_count(struct park *p);

/* Hands every parked call back, refuses new ones (park_add returns -1) and
 * stops the releaser. The workers must still poll (they answer the calls).
 * @locality main, at the start of shutdown. */
void park_close(struct park *p);

/* Frees a closed park. NULL is a no-op. */
void park_destroy(struct park *p);

#endif
