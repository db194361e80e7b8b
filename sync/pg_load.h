/*
 * pg_load.h - the warm load: the whole catalog from PostgreSQL, read once
 * at start in one consistent transaction, by COPY, straight into a store
 * transaction.
 *
 * Nothing here waits on the network without a bound: the connection is made
 * and read without blocking, in short slices that check for an interrupt,
 * and an attempt during which PostgreSQL sends nothing for the stall timeout
 * is abandoned (the connection is dropped with PQfinish, which returns at
 * once: no cancel request, which could itself wait on a silent server).
 *
 * @locality the sync thread; pgload_interrupt() from any thread.
 */
#ifndef CATALOGD_PG_LOAD_H
#define CATALOGD_PG_LOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"

struct pgload;
struct metrics;

/* How one attempt runs. */
struct pgload_opts {
  int stall_timeout_s;     /* no byte from PostgreSQL for this long: abandon (>= 1) */
  int progress_interval_s; /* "warm load progress" log period (>= 1) */
  struct metrics *metrics; /* progress gauges and the stall counter; NULL: none */
};

struct pgload_stats {
  size_t rows;    /* rows read, all tables */
  size_t skipped; /* rows that broke the schema's promises (invalid UTF-8 included) */
  double seconds;
  /* Why an attempt failed (pgload_run < 0, not -ECANCELED): */
  bool permanent;   /* retrying cannot help (auth, missing database or table, permissions,
                       data PostgreSQL cannot convert, or an option libpq refuses
                       before connecting) */
  char sqlstate[6]; /* the server's SQLSTATE, "" when there is none */
  char reason[512]; /* one line for operators; never holds a secret of the URL */
};

/* A loader for the libpq URI or conninfo string url (copied), or NULL if
 * libpq cannot parse url: a configuration error for the caller to report
 * (never with libpq's message, which may quote the password). */
struct pgload *pgload_new(const char *url);

/* Reads every table of docs/contract/schema.sql in one REPEATABLE READ READ ONLY
 * transaction and puts the records into t. Bad rows are skipped, counted
 * and logged (the first few). Logs "warm load progress" every
 * o->progress_interval_s. Returns 0, or:
 *   -EINVAL        url is not a valid libpq connection string, or libpq refused
 *                  one of its options before connecting (permanent)
 *   -ECONNREFUSED  could not connect (st says why and whether permanent)
 *   -EIO           a query or COPY failed (st says why, with the SQLSTATE)
 *   -ETIMEDOUT     PostgreSQL sent nothing for o->stall_timeout_s (transient)
 *   -ECANCELED     pgload_interrupt() was called
 * On error t holds a partial load: the caller must abort it. */
int pgload_run(struct pgload *p, const struct pgload_opts *o, struct store_txn *t,
               struct pgload_stats *st);

/* Makes a running (or the next) pgload_run return -ECANCELED within about
 * 0.1 s; never blocks. */
void pgload_interrupt(struct pgload *p);

/* NULL is a no-op. */
void pgload_destroy(struct pgload *p);

/* ---- Sessions: one connection for short queries, opened and read exactly
 * as the warm load's (the same keepalives, tcp_user_timeout, stall timeout,
 * client_encoding, non-blocking waits that see pgload_interrupt(), and
 * failure reasons redacted of the URL's secrets). The consistency auditor's
 * connection. @locality one thread per session. ---- */

struct pgsession;
struct pg_result; /* libpq's PGresult */

/* Connects with p's URL. Returns 0 and *out, or a negative errno as
 * pgload_run (-ECONNREFUSED, -EINVAL, -ETIMEDOUT, -ECANCELED) with a
 * one-line reason (no secret) in reason[n]. */
int pgsession_open(struct pgload *p, int stall_timeout_s, struct pgsession **out, char *reason,
                   size_t n);

/* Runs sql (a query returning rows; step names it in messages) and hands
 * its result to *res (the caller PQclear()s it). Returns 0, or -EIO,
 * -ETIMEDOUT, -ECANCELED with reason[n] set; the session should then be
 * closed (its connection may be unusable). */
int pgsession_query(struct pgsession *s, const char *step, const char *sql, struct pg_result **res,
                    char *reason, size_t n);

/* Runs a command that returns no rows (BEGIN, COMMIT). Same returns. */
int pgsession_command(struct pgsession *s, const char *sql, char *reason, size_t n);

/* Drops the connection at once (PQfinish). NULL is a no-op. */
void pgsession_close(struct pgsession *s);

#endif
