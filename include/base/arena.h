/*
 * arena.h - a per-worker bump allocator for one call's scratch memory.
 *
 * Request decoding and response building allocate many small objects that
 * all die when the call's reply is packed; an arena makes each allocation a
 * pointer bump and the cleanup one reset, with no malloc on the hot path
 * once the arena has grown to the worker's largest call.
 *
 * @locality the owning worker thread only.
 */
#ifndef CATALOGD_ARENA_H
#define CATALOGD_ARENA_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

struct arena_chunk;

struct arena {
  struct arena_chunk *head; /* chunk being filled; older ones chained */
  size_t chunk_size;
  ProtobufCAllocator pb; /* protobuf-c view of this arena */
};

/* Initialises a (zeroed) arena whose chunks are at least chunk_size. */
void arena_init(struct arena *a, size_t chunk_size);

/* n bytes aligned for any type; aborts on out of memory. Valid until the
 * next arena_reset(). */
void *arena_alloc(struct arena *a, size_t n);

/* Copies a formatted string into the arena. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees everything allocated since the last reset, keeping the largest chunk
 * for reuse. */
void arena_reset(struct arena *a);

/* Frees all chunks. */
void arena_destroy(struct arena *a);

#endif
