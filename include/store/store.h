/*
 * store.h - the published catalog snapshot and the single writer that
 * replaces it.
 *
 * Readers (gRPC workers, the admin endpoint) look records up in the current
 * snapshot inside an RCU read section and never take a lock. The writer
 * (warm load, then the change feed) opens a transaction, puts and deletes
 * records, and commits: one atomic pointer swap publishes all of it, so a
 * reader sees a whole batch or none of it. The previous snapshot's replaced
 * parts are freed after a grace period, when no reader can still hold them.
 *
 * Apply rules (docs/contract/events.md): a record whose version is not greater than the one
 * held (live or tombstone) is stale and changes nothing. Deletes leave a
 * tombstone holding the version, so an older upsert cannot resurrect the
 * entity. Variants are also indexed by product (CAT_PRODUCT_VARIANTS).
 */
#ifndef CATALOGD_STORE_H
#define CATALOGD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <urcu.h>

#include "model.h"

struct store;
struct snapshot;
struct store_txn;

/* ---- Reader side ---- */

/* Every thread that reads snapshots registers once, and unregisters before
 * it exits. @locality the calling thread. */
static inline void store_reader_register(void) { rcu_register_thread(); }
static inline void store_reader_unregister(void) { rcu_unregister_thread(); }

/* ThreadSanitizer cannot see the ordering liburcu gets from membarrier(2):
 * under TSan, a read section's end is announced as a release on a token
 * that the writer acquires after its grace period (see store.c). */
#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
extern char store__tsan_grace;
#define STORE__TSAN_RELEASE() __tsan_release(&store__tsan_grace)
#else
#define STORE__TSAN_RELEASE() ((void)0)
#endif

/* Brackets a read section. Keep it short and never block inside it.
 * Pointers from the snapshot are valid until store_read_unlock(). */
static inline void store_read_lock(void) { rcu_read_lock(); }
static inline void store_read_unlock(void) {
  STORE__TSAN_RELEASE();
  rcu_read_unlock();
}

/* The current snapshot, or NULL before the first publish.
 * @locality inside a read section. */
const struct snapshot *store_current(struct store *st);

/* The live record of kind for (id, org), or NULL if absent, deleted or org
 * is empty or too long. @locality inside a read section. */
const struct cat_hdr *snap_get(const struct snapshot *s, enum cat_kind kind, const uint8_t id[16],
                               const char *org, size_t orglen);

/* Like snap_get, but a tombstone is returned too (h->deleted set): the
 * version a deleted entity was deleted at. @locality inside a read section. */
const struct cat_hdr *snap_get_any(const struct snapshot *s, enum cat_kind kind,
                                   const uint8_t id[16], const char *org, size_t orglen);

/* A record of kind picked by the random number r (tombstones included; not
 * uniform: see smap_sample), NULL if the kind holds none. For sampling the
 * snapshot (the consistency auditor). @locality inside a read section. */
const struct cat_hdr *snap_sample(const struct snapshot *s, enum cat_kind kind, uint64_t r);

/* out[i] = snap_get(s, kind, ids[i], org, orglen) for i < n, faster than n
 * calls for large n (the lookups' cache misses overlap). Every id of one
 * call is in the same organization. @locality inside a read section. */
void snap_get_many(const struct snapshot *s, enum cat_kind kind, const uint8_t (*ids)[16], size_t n,
                   const char *org, size_t orglen, const struct cat_hdr **out);

static inline const struct cat_variant *snap_variant(const struct snapshot *s, const uint8_t id[16],
                                                     const char *org, size_t orglen) {
  return (const struct cat_variant *)snap_get(s, CAT_VARIANT, id, org, orglen);
}
static inline const struct cat_product *snap_product(const struct snapshot *s, const uint8_t id[16],
                                                     const char *org, size_t orglen) {
  return (const struct cat_product *)snap_get(s, CAT_PRODUCT, id, org, orglen);
}

/* Version (1 for the first publish, +1 per publish), build time (Unix ns)
 * and the number of live entities of a kind. */
uint64_t snap_version(const struct snapshot *s);
int64_t snap_built_ns(const struct snapshot *s);
size_t snap_count(const struct snapshot *s, enum cat_kind kind);

/* The version held for (kind, id, org): the record's, live or tombstone
 * (deletes leave one with their version), or 0 if the snapshot holds
 * neither (never seen, or deleted before a warm load / rebuild that kept
 * no tombstone). @locality inside a read section. */
int64_t snap_held_version(const struct snapshot *s, enum cat_kind kind, const uint8_t id[16],
                          const char *org, size_t orglen);

/* ---- Positions: which change-feed offsets a snapshot covers ---- */

/* Partition p of the change topic is covered up to (not including) offset
 * next: every event below it was applied, found stale or rejected. */
struct snap_pos {
  int32_t partition;
  int64_t next;
};

/* The positions the snapshot covers (immutable, owned by the snapshot;
 * *out is valid until store_read_unlock). Returns their number (0: the
 * snapshot was built without a change feed, or before any position was
 * known). @locality inside a read section. */
size_t snap_positions(const struct snapshot *s, const struct snap_pos **out);

/* The next offset covered for partition, or -1 if the snapshot names no
 * such partition. @locality inside a read section. */
int64_t snap_position(const struct snapshot *s, int32_t partition);

/* ---- Freshness (staleness), lock-free for readers ---- */

/* Staleness in ns at monotonic time now_ns: 0 while the writer says the
 * snapshot is caught up with its source, else now_ns minus the last
 * moment it was (see store_set_stale_since). @locality any thread. */
int64_t store_staleness_ns(const struct store *st, int64_t now_ns);

/* The writer says how fresh the published snapshot is: since_ns 0 means
 * caught up now; otherwise the monotonic time of the last moment it was
 * caught up. Without a feed the warm load's start is that moment for ever.
 * @locality the writer. */
void store_set_stale_since(struct store *st, int64_t since_ns);

/* What one publish changed: the change keys (store_change_key) of the
 * entities it wrote (put or deleted, in no order, possibly repeated), or
 * all = true when any entity may have changed (the first publish, a
 * rebuild, or more writes than STORE_CHANGES_MAX: not listed). A publish
 * that only moved the positions lists none. Valid during the hook only. */
#define STORE_CHANGES_MAX 1024
struct store_changes {
  const uint64_t *keys;
  size_t n;
  bool all;
};

/* A 64-bit digest of an entity's key (kind, id, org): equal for the same
 * entity; two entities may share one (rarely), so it says "may have
 * changed", never "did not". 0 if org is empty or too long. @locality any
 * thread. */
uint64_t store_change_key(enum cat_kind kind, const uint8_t id[16], const char *org, size_t orglen);

/* Calls fn(arg, changes) after every publish (including one that only
 * moved the positions), on the writer thread, right after the new snapshot
 * is visible: it must not block (e.g. copy the keys it wants and signal a
 * condition variable). Set once, before the writer starts. */
void store_on_publish(struct store *st, void (*fn)(void *arg, const struct store_changes *changes),
                      void *arg);

/* Calls fn on every live record of kind. */
void snap_foreach(const struct snapshot *s, enum cat_kind kind,
                  void (*fn)(const struct cat_hdr *, void *), void *arg);

/* Calls fn on every record of kind, tombstones included (a checkpoint must
 * keep the versions of deleted entities, or an older upsert arriving after a
 * restart would resurrect one). */
void snap_foreach_all(const struct snapshot *s, enum cat_kind kind,
                      void (*fn)(const struct cat_hdr *, void *), void *arg);

/* ---- Pins: a snapshot held outside a read section ----
 *
 * A long reader (a checkpoint written to disk, later a snapshot streamed to
 * a peer) must not hold an RCU read section for seconds: every publish
 * waits for a grace period, so the writer would stall. It pins the snapshot
 * instead. While any pin is held, what commits would free (replaced shards
 * and records, old snapshot structs, a rebuilt state's old maps) is kept on
 * a deferred list instead, and freed when the last pin is released. The
 * writer never waits for a pin holder: a commit only takes the pin mutex to
 * check the count and append to the list. Memory held meanwhile grows with
 * what the writer replaces while the pin lasts. */

/* Pins the current snapshot and returns it (NULL before the first publish:
 * nothing is pinned then). Its records stay valid, outside any read section,
 * until store_unpin. Several pins may be held at once.
 * @locality any registered RCU reader thread, not inside a read section. */
const struct snapshot *store_pin(struct store *st);

/* Releases a pin taken by store_pin (s as returned; NULL is a no-op). The
 * last release frees what was deferred, on the calling thread.
 * @locality any thread. */
void store_unpin(struct store *st, const struct snapshot *s);

/* Pins held now, and objects waiting on the deferred list (for tests and
 * metrics). @locality any thread. */
int store_pins(struct store *st);
size_t store_deferred(struct store *st);

/* ---- Writer side: @locality one writer thread at a time, registered as an
 * RCU reader, never inside a read section. ---- */

/* A new store with no snapshot. Destroy with store_destroy(). */
struct store *store_new(void);

/* Frees the store, its snapshot and anything deferred. No reader may be
 * active and no pin held. NULL: no-op. */
void store_destroy(struct store *st);

/* Opens a transaction on top of the current snapshot (or on an empty state
 * while a rebuild is pending, see store_rebuild_next). Only one may be open. */
struct store_txn *store_begin(struct store *st);

/* Starts a rebuild: every transaction begun from now on starts from an EMPTY
 * state (nothing of the current snapshot is kept, tombstones included) until
 * one of them commits; that commit replaces the snapshot whole and ends the
 * rebuild. The current snapshot keeps serving meanwhile; an aborted rebuild
 * transaction changes nothing (the next store_begin is empty again). Used to
 * re-sync after the change feed lost events (a delete missed in the gap must
 * not survive). */
void store_rebuild_next(struct store *st);

/* 1 while a rebuild is pending (store_rebuild_next called, not yet
 * committed), else 0. */
int store_rebuilding(const struct store *st);

enum { STORE_APPLIED = 0, STORE_STALE = 1 };

/* Puts a record (the txn takes ownership in every case). Returns
 * STORE_APPLIED, or STORE_STALE if the held version is >= rec's (rec is
 * then freed) — except that a live record replaces an unversioned
 * tombstone of its own version (see store_delete_redelivered). */
int store_put(struct store_txn *t, struct cat_hdr *rec);

/* store_put(t, recs[i]) for i < n in that order (n <= STORE_PUT_MANY_MAX),
 * each result in rc[i]: the same effect, with the cache misses of the n
 * lookups (the record's map, and a variant's product -> variants index)
 * overlapped by prefetching them first. For bulk builds (a checkpoint, a
 * peer's snapshot, a warm load), where nearly every put misses the cache. */
#define STORE_PUT_MANY_MAX 16
void store_put_many(struct store_txn *t, struct cat_hdr *const recs[], size_t n, int rc[]);

/* Sizes t's maps for a bulk build of about n records of entity kind kind
 * (a checkpoint's header count, a table's row estimate), so that no shard
 * grows while they are put; a product count sizes the product -> variants
 * index too. Only a hint: fewer or more records are fine. Worth it only
 * for a transaction that starts empty (a first load, a rebuild). */
void store_txn_reserve(struct store_txn *t, enum cat_kind kind, size_t n);

/* A hint before store_put of up to STORE_PREFETCH_MAX records in t (NULL
 * entries are skipped; the records stay the caller's): pulls into the cache
 * what those puts will look up (the map entries of each record's key and,
 * for a variant, of its product's variant list), all at once, so that the
 * puts do not each wait on memory in turn. Changes nothing. Pays when
 * other work (decoding the next events) lies between it and the puts. */
#define STORE_PREFETCH_MAX 16
void store_txn_prefetch(struct store_txn *t, size_t n, const struct cat_hdr *const recs[]);

/* Deletes (kind, id, org) at version, leaving a tombstone. Same returns as
 * store_put; -EINVAL if org is empty or too long. A version of 0 means "the
 * version held" (a Kafka tombstone carries none): it deletes whatever is
 * there and keeps its version; a later upsert of that same version is
 * stale (a duplicate of what was deleted). */
int store_delete(struct store_txn *t, enum cat_kind kind, const uint8_t id[16], const char *org,
                 size_t orglen, int64_t version);

/* A versionless delete (a Kafka tombstone) that may be a re-delivery: an
 * event the state may already reflect, applied again because the feed was
 * re-read from an earlier offset (the warm load's hand-off starts at offsets
 * recorded before PostgreSQL's snapshot). It deletes whatever is held, like
 * store_delete at version 0, but marks the tombstone unversioned: a live
 * record of exactly that version replaces it (store_put). Otherwise a
 * re-applied tombstone of an older incarnation (deleted, then re-created at
 * a higher version) would delete the re-created entity, and its own upsert,
 * re-applied right after, would be stale against the borrowed version: the
 * entity lost for good. Same returns as store_delete. */
int store_delete_redelivered(struct store_txn *t, enum cat_kind kind, const uint8_t id[16],
                             const char *org, size_t orglen);

/* The record of kind for (id, org) as this transaction sees it, tombstones
 * included; NULL if none. */
const struct cat_hdr *store_txn_get(struct store_txn *t, enum cat_kind kind, const uint8_t id[16],
                                    const char *org, size_t orglen);

/* The state t builds, readable as a snapshot (version 0) by the writer
 * while t is open: e.g. to compute its digest before publishing it. Not
 * valid after commit or abort. */
const struct snapshot *store_txn_view(const struct store_txn *t);

/* During a bulk build (a whole state into one transaction), every record
 * put is noted to pf (prefault.h), which faults in the memory after it on
 * its own thread; NULL ends that. The put may run on another thread than
 * the writer's (a checkpoint's put stage) if that thread starts after this
 * call and is joined before the next. @locality the store's writer. */
struct prefault;
void store_set_prefault(struct store *st, struct prefault *pf);

/* For a bulk build whose records are built on one thread and put on
 * another (a checkpoint's put stage, which may run tens of thousands of
 * records behind): from now on the builder notes each record it allocates
 * (store_txn_note, on its own thread) and t's puts note nothing, so that
 * the prefaulter follows the allocations and not the lagging puts.
 * @locality the store's writer, before the records are built. */
void store_txn_note_builder(struct store_txn *t);

/* h was just built for t (store_txn_note_builder): the prefaulter, if any,
 * populates the memory after it. Reads only what store_set_prefault set.
 * @locality the thread building t's records (the writer). */
void store_txn_note(struct store_txn *t, const struct cat_hdr *h);

/* Number of puts/deletes applied so far in t. */
size_t store_txn_changes(const struct store_txn *t);

/* Number of live entities (not tombstones, every kind) the state t builds
 * holds: what its snapshot would serve if committed now. */
size_t store_txn_live(const struct store_txn *t);

/* Sets the change-feed positions (n entries, copied) the state t builds
 * covers; they go with the snapshot t publishes. Without a call, the
 * snapshot keeps its predecessor's. */
void store_txn_set_positions(struct store_txn *t, const struct snap_pos *p, size_t n);

/* Publishes t as the new snapshot and frees what it replaced once no reader
 * can see it (blocks for an RCU grace period). A transaction with no change
 * publishes nothing, except the very first one and a rebuild (an empty
 * rebuild publishes an empty catalog), or when it moved the positions (a
 * batch of stale or rejected events): then the same data is published
 * again under the same version with the new positions. Returns the
 * version now current. t is freed. */
uint64_t store_commit(struct store_txn *t);

/* Discards t and everything it built; the current snapshot is untouched.
 * NULL is a no-op. */
void store_abort(struct store_txn *t);

#endif
