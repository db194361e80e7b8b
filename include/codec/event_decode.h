/*
 * event_decode.h - catalog change events (contract: docs/contract/events.md) to store
 * operations.
 *
 * A Kafka message becomes either an upsert (a complete new record) or a
 * delete (kind, id, org, version; version 0 for a tombstone, meaning "the
 * version held"). Anything else is rejected with a reason, never applied.
 *
 * @locality any thread; no shared state.
 */
#ifndef CATALOGD_EVENT_DECODE_H
#define CATALOGD_EVENT_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model.h"

enum event_op { EVENT_UPSERT = 1, EVENT_DELETE };

struct event {
  enum event_op op;
  enum cat_kind kind;
  bool kind_known; /* kind parsed from the key (set even when rejected) */
  uint8_t id[16];
  char org[CAT_ORG_MAX + 1];
  int64_t version;        /* 0 for a tombstone */
  struct cat_hdr *record; /* EVENT_UPSERT: owned by the caller after decode */
  char event_id[64];      /* for logs; may be empty */
};

/* Decodes one message. value == NULL is a tombstone. Returns 0 and fills
 * ev, or -EINVAL with a static reason in *why (nothing allocated): the
 * message breaks the event contract or the schema, never a lack of memory
 * (that aborts, as xalloc.h does). One pass over the value, no allocation
 * but the record (and one scratch buffer, freed before returning, for
 * values over about 2 KiB). */
int event_decode(const char *key, size_t keylen, const char *value, size_t valuelen,
                 struct event *ev, const char **why);

#endif
