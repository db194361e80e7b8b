/*
 * children.h - the warm load's index of child rows (images, tag links,
 * collection links) by parent id, read before their parents.
 *
 * One connection runs one COPY at a time and a parent record is immutable
 * once built, so a parent's children must be at hand when its row arrives.
 * Letting PostgreSQL attach them (array_agg joins) or merging streams
 * ordered by parent id both made PostgreSQL's side of the load about twice
 * as slow as reading the raw rows (docs/performance.md), so the children
 * are read raw and kept here, cheaply: each child row is copied whole into
 * large mmap'd chunks and split there in place (no allocation per field or
 * per row), child records sit in index-addressed blocks, and parents are
 * found through an open-addressing table keyed by the parent id's text
 * (compared ASCII-case-insensitively, which for UUID text is UUID
 * equality), so the loader never parses a parent's id: the record builder
 * does, once.
 *
 * @locality one thread (the warm load's).
 */
#ifndef CATALOGD_CHILDREN_H
#define CATALOGD_CHILDREN_H

#include <stddef.h>

#include "model.h"

enum children_kind { CHILDREN_IMAGES, CHILDREN_TAGS, CHILDREN_COLLECTIONS, CHILDREN_KINDS };

struct children;

/* What children_get() found for one parent: views into the index, valid
 * until the next children_get() or children_clear(). Counts are 0 (and
 * arrays may be NULL) for a parent without children. */
struct children_of {
  const struct image_fields *images;
  size_t n_images;
  const char *const *ids[CHILDREN_KINDS]; /* [CHILDREN_TAGS], [CHILDREN_COLLECTIONS] */
  size_t n_ids[CHILDREN_KINDS];
};

/* An empty index. Aborts on out of memory, as xmalloc does. */
struct children *children_new(void);

/* Copies row (len bytes, as PQgetCopyData returns it) into the index's
 * chunks and returns the copy, NUL-terminated, for copy_split() to split in
 * place: fields of a kept row stay valid until children_clear(). */
char *children_keep(struct children *c, const char *row, size_t len);

/* Adds a child of kind to the parent whose id text is parent_id. For
 * CHILDREN_IMAGES im is the image and id is ignored; for the id kinds id is
 * the linked entity's id and im is ignored. Every string is borrowed and
 * must live until children_clear(): fields of a kept row do. Returns 0, or
 * -1 (nothing added) if parent_id is NULL or not UUID text: such a child
 * can belong to no row. */
int children_add(struct children *c, enum children_kind kind, const char *parent_id,
                 const struct image_fields *im, const char *id);

/* The children of parent_id (any text, NULL included: no children), each
 * kind in the order added. */
void children_get(struct children *c, const char *parent_id, struct children_of *out);

/* Forgets every child and kept row and gives their memory back to the
 * system; the index stays usable. */
void children_clear(struct children *c);

/* Frees the index; NULL is a no-op. */
void children_free(struct children *c);

#endif
