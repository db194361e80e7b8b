/*
 * arena.c - chunked bump allocator (see arena.h).
 *
 * A reset keeps only the newest chunk: after a burst of big calls, the arena
 * shrinks back to one chunk of the largest size seen, which bounds a
 * worker's idle memory while keeping steady-state calls malloc-free.
 */
#include "arena.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "xalloc.h"

struct arena_chunk {
  struct arena_chunk *prev;
  size_t size, used;
  max_align_t data[];
};

static void *pb_alloc(void *ctx, size_t n) { return arena_alloc(ctx, n); }
static void pb_free(void *ctx, void *p) { (void)ctx, (void)p; }

void arena_init(struct arena *a, size_t chunk_size) {
  assert(chunk_size >= 1024);
  a->head = NULL;
  a->chunk_size = chunk_size;
  a->pb = (ProtobufCAllocator){.alloc = pb_alloc, .free = pb_free, .allocator_data = a};
}

void *arena_alloc(struct arena *a, size_t n) {
  const size_t align = _Alignof(max_align_t);
  n = (n + align - 1) & ~(align - 1);
  struct arena_chunk *c = a->head;
  if (c == NULL || c->size - c->used < n) {
    size_t size = n > a->chunk_size ? n : a->chunk_size;
    if (c != NULL && c->size > size) size = c->size;
    c = xmalloc(sizeof *c + size);
    c->prev = a->head, c->size = size, c->used = 0;
    a->head = c;
  }
  void *p = (char *)c->data + c->used;
  c->used += n;
  return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  char *s = arena_alloc(a, (size_t)(n < 0 ? 0 : n) + 1);
  vsnprintf(s, (size_t)(n < 0 ? 0 : n) + 1, fmt, ap2);
  va_end(ap2);
  return s;
}

void arena_reset(struct arena *a) {
  struct arena_chunk *c = a->head;
  if (c == NULL) return;
  /* Keep the newest (largest) chunk, free the rest. */
  struct arena_chunk *p = c->prev;
  while (p != NULL) {
    struct arena_chunk *q = p->prev;
    free(p);
    p = q;
  }
  c->prev = NULL;
  c->used = 0;
}

void arena_destroy(struct arena *a) {
  arena_reset(a);
  free(a->head);
  a->head = NULL;
}
