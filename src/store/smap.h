/*
 * smap.h - a sharded, copy-on-write hash map of catalog records (internal to
 * the store).
 *
 * A map is an array of 2^bits shards; a shard is one contiguous
 * open-addressing table (linear probing) of {hash, record pointer} entries.
 * Readers only ever see published maps, which are never
 * modified. A writer forks a map (copying only the shard pointer array), and
 * the first write to a shard in that fork copies that shard alone; later
 * writes in the same fork change the copy in place. So publishing a change to
 * k entities costs O(k x shard size + shard count), not O(map size).
 *
 * "gen" (a store generation) marks what a fork owns: shards and records with
 * the fork's gen are private and may be changed or freed at once; anything
 * older is shared with published snapshots and is retired instead, to be
 * freed after an RCU grace period.
 *
 * @locality readers: any registered RCU reader thread, inside a read section.
 *           writers: the single store writer thread.
 */
#ifndef CATALOGD_SMAP_H
#define CATALOGD_SMAP_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct smap;

/* Things a fork replaced that readers may still see: freed after a grace
 * period by retire_free(). */
struct retire {
  struct retire_item {
    void *p;
    int type; /* RETIRE_* */
  } * items;
  size_t n, cap;
};

/* A replaced shard (its records live on elsewhere), a replaced record, a
 * map shell (smap_free_shell), a whole map with every record it references
 * (smap_destroy all_gens: a rebuilt state's predecessor), plain memory. */
enum { RETIRE_SHARD = 1, RETIRE_REC, RETIRE_SHELL, RETIRE_MAP_ALL, RETIRE_MEM };

/* Hash of a record key; also picks the shard (top bits). */
uint32_t smap_hash(const uint8_t *key, size_t len);

/* A new empty map owned by generation gen; NULL on allocation failure. */
struct smap *smap_new(unsigned bits, uint64_t gen);

/* Reader: the record stored under key, tombstones included; NULL if none. */
struct cat_hdr *smap_get(const struct smap *m, const uint8_t *key, size_t len, uint32_t hash);

/* Reader: out[i] = smap_get(m, keys[i], lens[i], hashes[i]) for i < n
 * (n <= SMAP_GET_MANY_MAX), with the cache misses of the n lookups
 * overlapped: each stage prefetches what the next needs for every key. */
#define SMAP_GET_MANY_MAX 16
/* A hint: pulls into the cache, stage by stage as smap_get_many does, what
 * lookups (or puts) of the n keys with these hashes in m will read (shard
 * headers, home entries, the records they hold and their keys), so that the
 * lookups that follow do not each wait on memory in turn. No effect on m. */
void smap_prefetch_many(const struct smap *m, size_t n, const uint32_t hashes[]);
void smap_get_many(const struct smap *m, size_t n, const uint8_t *const keys[],
                   const uint32_t lens[], const uint32_t hashes[], struct cat_hdr *out[]);

/* Writer: a fork of base owned by gen (base unchanged). NULL on ENOMEM. */
struct smap *smap_fork(const struct smap *base, uint64_t gen);

/* The map's generation. */
uint64_t smap_gen(const struct smap *m);

/* Writer: stores rec under its key in m (which must be owned by the current
 * gen), replacing any record there. *old receives the replaced record (or
 * NULL); the caller decides whether to free it or retire it. Shards copied on
 * the way are added to r. Allocation failure aborts (xalloc.h). */
void smap_put(struct smap *m, struct cat_hdr *rec, uint32_t hash, struct cat_hdr **old,
              struct retire *r);

/* Writer: makes room in m (owned by the current gen) for about n entries in
 * all, spread over the shards as the hash spreads them, so that a bulk build
 * of n records grows no shard (each growth re-inserts the whole shard).
 * Shards are allocated or enlarged to hold n / shards plus a margin for the
 * uneven spread; a shared shard is copied (and added to r), a shard already
 * large enough is left alone; below 4 entries a shard nothing is done.
 * Only a hint: more entries still fit. */
void smap_reserve(struct smap *m, size_t n, struct retire *r);

/* Writer or reader: prefetches what a lookup of hash in m will touch, in
 * stages, so that a batch of lookups can overlap its cache misses (as
 * smap_get_many does): stage 0 the shard's header, stage 1 (once the header
 * is in the cache) the home entry, stage 2 the record the home entry points
 * at. Never faults; changes nothing. */
void smap_prefetch(const struct smap *m, uint32_t hash, int stage);

/* Writer: removes the slot for key; *old receives the record (NULL if none). */
void smap_del(struct smap *m, const uint8_t *key, size_t len, uint32_t hash, struct cat_hdr **old,
              struct retire *r);

/* Entry slots allocated over all shards (capacity, not count): what the map
 * costs beyond its records. Reader or writer. */
size_t smap_slots(const struct smap *m);

/* Calls fn on every record, in no particular order. Reader or writer. */
void smap_foreach(const struct smap *m, void (*fn)(const struct cat_hdr *, void *), void *arg);

/* Reader: a record chosen by r (a random number): the first one at or
 * after a slot that r picks (shard r mod 2^bits, slot r >> 32 in it),
 * tombstones included; NULL if the map is empty. Not uniform (a record
 * after a run of empty slots is likelier), but every record can come out.
 * At most one pass over the shards. */
struct cat_hdr *smap_sample(const struct smap *m, uint64_t r);

/* Writer: frees the map's private parts (shards and records of its own gen).
 * Used to drop an unpublished fork, and to free a whole map at shutdown when
 * passed all_gens = 1 (then everything it references is freed). */
void smap_destroy(struct smap *m, int all_gens);

/* Writer: frees only the map struct and its shard pointer array (after its
 * successor has taken over every shard it did not retire). */
void smap_free_shell(struct smap *m);

/* Adds an item to r. */
void retire_add(struct retire *r, void *p, int type);

/* Frees every item in r and empties it; r stays usable. */
void retire_free(struct retire *r);

#endif
