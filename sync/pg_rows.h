/*
 * pg_rows.h - the warm load's row mapping: the tables it reads, in order,
 * and for each a handler from the fields of one COPY row to a record in the
 * store transaction (or, for images and tag and collection links, to the
 * child index the products and variants take them from).
 *
 * Private to sync/: pg_load.c drives the COPY of each table and feeds its
 * rows here. The fuzz target tests/fuzz/fuzz_copy_row.c drives the same
 * handlers without a connection (the only other user; it is built with the
 * writer's folder on its include path).
 *
 * @locality the sync thread, one load at a time.
 */
#ifndef CATALOGD_PG_ROWS_H
#define CATALOGD_PG_ROWS_H

#include <stdbool.h>
#include <stddef.h>

#include "children.h"
#include "store.h"

#define PGROWS_MAX_FIELDS 32 /* more than any table has */

/* What the handlers write into; owned by the caller. */
struct pgrows {
  struct store_txn *t;                          /* records are put here */
  struct children *product_kids, *variant_kids; /* children of the parents to come */
  /* If set, built records go to sink (which owns them) instead of
   * store_put(t, ...): the consistency auditor builds rows to compare them
   * with the snapshot, not to store them. */
  void (*sink)(void *arg, struct cat_hdr *rec);
  void *sink_arg;
  /* Records built, not yet put into t: put in groups (store_put_many). */
  struct cat_hdr *pending[STORE_PUT_MANY_MAX];
  size_t npending;
};

/* Puts the records still pending into rows->t (the end of a table; the
 * transaction then owns them, whether it commits or aborts). */
void pgrows_flush(struct pgrows *rows);

/* Maps one row of nf fields (f[i] NULL for SQL NULL; the caller has checked
 * nf and UTF-8). Returns 0, or -1 with *why set to a static reason: the row
 * breaks the schema (the caller counts and logs it). A child row's strings
 * must live until the index is cleared (children_keep()). */
typedef int (*pgrows_fn)(struct pgrows *rows, char **f, int nf, const char **why);

/* Which child index a table's rows are kept in before they are split. */
enum pgrows_keep { PGROWS_KEEP_NONE, PGROWS_KEEP_PRODUCT, PGROWS_KEEP_VARIANT };

struct pgrows_table {
  const char *name;
  const char *query; /* the SELECT the COPY runs */
  pgrows_fn row;
  int nfields; /* rows with another count never reach row() */
  enum pgrows_keep keep;
  bool drops_product_kids; /* after this table, the product children are no longer needed */
  int kind;                /* enum cat_kind of an entity table; -1 for a child table */
  const char *key_column;  /* the indexed column its rows are found by: the entity's primary
                              key, or a child's parent id (the auditor's point reads) */
};

/* Every table of the schema, children before their parents (pgrows_ntables). */
extern const struct pgrows_table pgrows_tables[];
extern const size_t pgrows_ntables;

#endif
