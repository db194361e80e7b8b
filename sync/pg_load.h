/*
 * pg_load.h - the warm load: the whole catalog from PostgreSQL, read once
 * at start in one consistent transaction, by COPY, straight into a store
 * transaction.
 *
 * @locality the sync thread; pgload_interrupt() from any thread.
 */
#ifndef CATALOGD_PG_LOAD_H
#define CATALOGD_PG_LOAD_H

#include <stddef.h>

#include "store.h"

struct pgload;

struct pgload_stats {
  size_t rows;    /* rows read, all tables */
  size_t skipped; /* rows that broke the schema's promises */
  double seconds;
};

/* A loader for the libpq URI or conninfo string url (copied). */
struct pgload *pgload_new(const char *url);

/* Reads every table of schema.sql in one REPEATABLE READ READ ONLY
 * transaction and puts the records into t. Bad rows are skipped, counted
 * and logged (the first few). Returns 0, or:
 *   -ECONNREFUSED  could not connect (PostgreSQL down or unreachable)
 *   -EIO           a query or COPY failed (e.g. the server went away)
 *   -ECANCELED     pgload_interrupt() was called
 * On error t holds a partial load: the caller must abort it. */
int pgload_run(struct pgload *p, struct store_txn *t, struct pgload_stats *st);

/* Makes a running (or the next) pgload_run return -ECANCELED soon. */
void pgload_interrupt(struct pgload *p);

/* NULL is a no-op. */
void pgload_destroy(struct pgload *p);

#endif
