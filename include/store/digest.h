/*
 * digest.h - a deterministic digest of a snapshot's content, to compare two
 * replicas, or a replay with a warm load.
 *
 * The digest depends only on the live entities and their fields (not on
 * load order, batch boundaries, tombstones or how the snapshot was built):
 * each record is hashed from a canonical form, and the sums of the records'
 * hashes (with their count) are hashed. The definition is versioned with
 * the checkpoint format (digest.c).
 *
 * @locality inside a read section (it walks the whole snapshot: the writer's
 * next publish waits for it).
 */
#ifndef CATALOGD_DIGEST_H
#define CATALOGD_DIGEST_H

#include <stddef.h>

#include "store.h"

struct digest {
  char hex[33];                     /* 128 bits */
  size_t counts[CAT_ENTITY_KINDS];  /* live entities per kind */
  size_t records[CAT_ENTITY_KINDS]; /* records per kind, tombstones included */
  uint64_t version;
};

/* The 128-bit canonical hash of one record (kind, key, version, every
 * field; id lists sorted) into out: two records built from the same row
 * or event hash equal, and a different field almost surely does not (the
 * consistency auditor compares a row built from PostgreSQL with the
 * snapshot's record this way). @locality any thread; h must stay valid. */
void digest_record(const struct cat_hdr *h, uint64_t out[2]);

/* Computes the digest of s. */
void digest_compute(const struct snapshot *s, struct digest *out);

/* The same digest built record by record: digest_acc_add every live record
 * of a state, in any order (each hashed from its canonical form, so h is
 * only read during the call), then digest_acc_finish gives the hex that
 * digest_compute gives for that state. The checkpoint reader hashes each
 * record as it decodes it, while it is still in the cache, instead of
 * walking the whole state again. @locality one thread at a time. */
struct digest_acc;
struct digest_acc *digest_acc_new(void);
void digest_acc_add(struct digest_acc *a, const struct cat_hdr *h);
/* Writes the digest's hex (32 digits and a NUL) and frees a. */
void digest_acc_finish(struct digest_acc *a, char hex[33]);
/* Frees a unfinished. NULL is a no-op. */
void digest_acc_destroy(struct digest_acc *a);

/* Writes {"digest":..,"snapshot_version":..,"counts":{..},"offsets":..}
 * into a malloc'd string; offsets_json (a JSON array, the Kafka offsets the
 * state covers) may be NULL: no "offsets" member then. */
char *digest_json(const struct digest *d, const char *offsets_json);

#endif
