/*
 * fresh.h - the freshness headers a catalog call may carry (request
 * metadata), parsed once at arrival, and the checks the server makes with
 * them against a snapshot:
 *
 *   x-catalog-min-position: P:O[,P:O...]  the snapshot must cover offset O
 *                                          of partition P (next offset > O)
 *   x-catalog-min-version: N               every entity named by id held at
 *                                          version >= N (checked by the
 *                                          handlers: rpc_check_versions)
 *   x-catalog-max-staleness-ms: N          at most N ms behind the feed
 *
 * A call without any of them costs one pass over its (usually one or two)
 * metadata keys. Private to the grpc room (server.c, park.c).
 */
#ifndef CATALOGD_FRESH_H
#define CATALOGD_FRESH_H

#include <grpc/grpc.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "store.h"

#define FRESH_MAX_POSITIONS 64 /* P:O pairs per call */

/* What one call asks for; all zero (npos 0, min_version 0, max_staleness_ms
 * -1) when it asks for nothing. */
struct fresh_req {
  size_t npos;
  struct snap_pos *pos; /* npos entries, .next = the offset O that must be covered (malloc'd) */
  int64_t min_version;
  int64_t max_staleness_ms; /* -1: none */
};

/* Reads the freshness headers of md into r (r's previous content is
 * ignored; free with fresh_req_clear). Repeated headers combine: positions
 * add up, the highest min-version and the lowest max-staleness count.
 * Returns 0, or -1 with a message naming the header and the expected form
 * in err (cap bytes): the call is then INVALID_ARGUMENT. Any other
 * x-catalog-* name is refused the same way (a misspelt header must not
 * silently mean "no requirement"), except the reply trailers' names
 * (x-catalog-snapshot-version, x-catalog-staleness-ms), which are ignored. */
int fresh_parse(const grpc_metadata_array *md, struct fresh_req *r, char *err, size_t cap);

/* Frees what fresh_parse allocated and resets r to "nothing asked". NULL
 * is a no-op. */
void fresh_req_clear(struct fresh_req *r);

/* Does snapshot s cover every position r names? If not, and why is not
 * NULL, says which one falls short and where that partition is, into why
 * (cap bytes). @locality inside a read section (s). */
bool fresh_positions_met(const struct fresh_req *r, const struct snapshot *s, char *why,
                         size_t cap);

#endif
