/*
 * pg_load.c - warm load from PostgreSQL by COPY (see pg_load.h): the COPY
 * driver. What each row becomes is pg_rows.c's (the row mapping).
 *
 * One connection can run one COPY at a time, so child rows (images, tag and
 * collection links) are read first, raw, into the child index (children.h,
 * which says why not joins or merged streams); each product or variant row
 * then takes its children from there and becomes one complete record.
 * Tables are read in dependency order only for that reason: the store
 * resolves relations at read time.
 *
 * The connection is driven without blocking (PQconnectStartParams and
 * PQconnectPoll, PQsendQuery, PQgetCopyData in async mode) and every wait is
 * a poll() on its socket of at most SLICE_MS, so an interrupt is seen within
 * that, whatever the network does; a wait that sees no byte for the stall
 * timeout abandons the attempt. A failed or interrupted attempt just drops
 * the connection with PQfinish: never PQcancel, which opens a second
 * connection and blocks until the server answers (forever, for a silent
 * one), and never a loop on PQgetResult while libpq is still in COPY_OUT,
 * which returns a new COPY_OUT result every time and never NULL.
 *
 * The load connection forces client_encoding=UTF8 (PostgreSQL converts from
 * the database's encoding); a SQL_ASCII database cannot be converted, so it
 * is read raw (match_encoding()). Each field is checked either way and a row
 * that is not UTF-8 is skipped like any other bad row. Failures are classified permanent or
 * transient (sqlstate_permanent(), conn_failed()) for the caller's retry policy.
 */
#include "pg_load.h"

#include <errno.h>
#include <libpq-fe.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "children.h"
#include "clock.h"
#include "copy_text.h"
#include "log.h"
#include "metrics.h"
#include "pg_redact.h"
#include "pg_rows.h"
#include "utf8.h"
#include "xalloc.h"

#define LOG_FIRST_BAD     5
#define SLICE_MS          100  /* longest wait between two interrupt checks */
#define PROGRESS_ROWS     1024 /* rows between two looks at the clock */
#define PGLOAD_MAX_TABLES 16   /* >= pgrows_ntables (more: the rest are not pre-sized) */
#define KEEPALIVE_IDLE    "10" /* TCP keepalives: a vanished peer is seen in ~25 s */
#define KEEPALIVE_INTV    "5"
#define KEEPALIVE_CNT     "3"

struct pgload {
  char *url;
  atomic_bool interrupted;
};

/* One attempt: what the row handlers write into (pg_rows.h), and the I/O. */
struct load {
  PGconn *conn;
  struct pgrows out; /* the store transaction and the children of the parents to come */
  size_t rows, skipped;
  const char *table;
  struct pgload *p;
  const struct pgload_opts *o;
  struct pgload_stats *st; /* where a failure is described */
  const char *step;        /* what the attempt is doing, for messages */
  double t0, last_io, next_progress;
  double estimated;                    /* total rows by pg_class.reltuples; 0: unknown */
  double table_est[PGLOAD_MAX_TABLES]; /* the same per table (pgrows_tables order) */
  bool presize;                        /* the txn began empty: its maps are sized from table_est */
  size_t table_rows;
};

/* True if libpq can parse url (its error, which may quote a secret, is
 * dropped). */
static bool url_parses(const char *url) {
  char *err = NULL;
  PQconninfoOption *o = PQconninfoParse(url, &err);
  PQfreemem(err);
  PQconninfoFree(o);
  return o != NULL;
}

struct pgload *pgload_new(const char *url) {
  if (!url_parses(url)) return NULL;
  struct pgload *p = xcalloc(1, sizeof *p);
  p->url = xmalloc(strlen(url) + 1);
  strcpy(p->url, url);
  return p;
}

void pgload_destroy(struct pgload *p) {
  if (p == NULL) return;
  free(p->url);
  free(p);
}

void pgload_interrupt(struct pgload *p) { atomic_store(&p->interrupted, true); }

/* ---- Failures: described once, classified for the retry policy ---- */

/* SQLSTATE classes that no retry can fix: 22 data exception (e.g. 22P05, a
 * character the client encoding cannot hold), 28 invalid authorization, 3D
 * no such database, 3F no such schema, 42 syntax error or access rule
 * violation (missing table or column, permission denied), 0L/0P invalid
 * grantor/role. Everything else (08 connection, 53 resources, 57 operator
 * intervention such as a shutdown, 40 serialization, 55 lock, XX internal)
 * may pass. */
static bool sqlstate_permanent(const char *state) {
  static const char classes[][3] = {"22", "28", "3D", "3F", "42", "0L", "0P"};
  for (size_t i = 0; state != NULL && i < sizeof classes / sizeof classes[0]; i++)
    if (strncmp(state, classes[i], 2) == 0) return true;
  return false;
}

/* Rewrites s in place as one line: libpq's "LOCATION:" lines (verbose
 * errors) dropped, runs of white space made one space, no trailing space. */
static void one_line(char *s) {
  char *d = s;
  bool space = false;
  for (char *p = s; *p;) {
    if (*p == '\n' && strncmp(p + 1, "LOCATION:", 9) == 0) {
      p += 1 + strcspn(p + 1, "\n");
      continue;
    }
    if (*p == '\n' || *p == '\t' || *p == ' ' || *p == '\r') {
      space = d > s;
      p++;
      continue;
    }
    if (space) *d++ = ' ';
    space = false;
    *d++ = *p++;
  }
  *d = '\0';
}

/* Records why the attempt failed, unless a reason is already there (later
 * failures are consequences of the first). The text goes through
 * pg_redact_message(): a secret of the URL never reaches the reason.
 * Returns rc. */
static int fail(struct load *L, int rc, bool permanent, const char *sqlstate, const char *fmt,
                ...) {
  struct pgload_stats *st = L->st;
  if (st->reason[0] != '\0') return rc;
  char raw[sizeof st->reason];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(raw, sizeof raw, fmt, ap);
  va_end(ap);
  pg_redact_message(L->p->url, raw, st->reason, sizeof st->reason);
  one_line(st->reason);
  st->permanent = permanent;
  snprintf(st->sqlstate, sizeof st->sqlstate, "%s", sqlstate ? sqlstate : "");
  return rc;
}

/* A failed result r (may be NULL) of what the attempt was doing. */
static int fail_result(struct load *L, const PGresult *r) {
  const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
  const char *msg = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
  if (msg != NULL) return fail(L, -EIO, sqlstate_permanent(state), state, "%s: %s", L->step, msg);
  if (r != NULL && PQresultStatus(r) != PGRES_FATAL_ERROR)
    return fail(L, -EIO, false, NULL, "%s: unexpected result %s", L->step,
                PQresStatus(PQresultStatus(r)));
  return fail(L, -EIO, false, NULL, "%s: %s", L->step, PQerrorMessage(L->conn));
}

/* The SQLSTATE libpq wrote into a verbose error message ("FATAL:  28P01:
 * password authentication failed ..."): five of [0-9A-Z] between ":  " and
 * ':'. Returns out, or NULL if there is none. */
static const char *message_sqlstate(const char *msg, char out[6]) {
  for (const char *p = strstr(msg, ":  "); p != NULL; p = strstr(p + 1, ":  ")) {
    const char *c = p + 3;
    size_t n = strspn(c, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    if (n == 5 && c[5] == ':') {
      memcpy(out, c, 5);
      out[5] = '\0';
      return out;
    }
  }
  return NULL;
}

/*
 * A connection that failed. There is no PGresult to ask, so the failure is
 * classified from what libpq kept:
 *  - the server refused us with an error (wrong password, no such database
 *    or role, no pg_hba.conf entry; but also too many connections, starting
 *    up): the connection's verbosity is PQERRORS_VERBOSE from before the
 *    startup packet goes out, so libpq wrote the SQLSTATE into the message.
 *    SQLSTATEs are never translated, so this holds whatever the server's
 *    lc_messages; its class decides, as for a query.
 *  - PQconnectionNeedsPassword(): the server wants a password and the URL
 *    has none. Permanent.
 *  - at_start: the connection was already CONNECTION_BAD when
 *    PQconnectStartParams returned, before any poll. libpq checked the
 *    options there (a bad sslmode or target_session_attrs, port=abc, a port
 *    out of range, more ports than hosts, a bad hostaddr): a configuration
 *    error, permanent (-EINVAL). But that first step also resolves host
 *    names and tries a Unix socket, and those failures are the network's
 *    (a DNS blip, PostgreSQL not started yet): verified with libpq 15, they
 *    are the ones whose message names a host being tried ("could not
 *    translate host name", "connection to server ..."), and they stay
 *    transient like the next case. catalogd never calls setlocale(), so
 *    libpq's messages are its untranslated ones. (An integer option libpq
 *    parses only once a socket exists, e.g. keepalives=abc, carries that
 *    prefix too, so it stays transient: loud at warn, never an exit.)
 *  - else no server answered (refused, unreachable, name resolution, TLS,
 *    timeouts): transient, the network or the server may come back.
 * The message passes through fail(), which masks the URL's secrets.
 */
static int conn_failed(struct load *L, bool at_start) {
  char state[6];
  const char *msg = PQerrorMessage(L->conn);
  const char *s = message_sqlstate(msg, state);
  if (s != NULL) return fail(L, -ECONNREFUSED, sqlstate_permanent(s), s, "connecting: %s", msg);
  if (at_start && strstr(msg, "could not translate host name") == NULL &&
      strstr(msg, "connection to server") == NULL && strstr(msg, "out of memory") == NULL)
    return fail(L, -EINVAL, true, NULL, "DATABASE_URL refused by libpq before connecting: %s", msg);
  if (PQconnectionNeedsPassword(L->conn))
    return fail(L, -ECONNREFUSED, true, NULL,
                "connecting: the server requires a password and DATABASE_URL has none");
  return fail(L, -ECONNREFUSED, false, NULL, "connecting: %s", msg);
}

/* ---- Waiting on the network, never past a stall or an interrupt ---- */

static void set_gauges(struct load *L, double ratio) {
  if (L->o->metrics == NULL) return;
  metrics_set(L->o->metrics, MC_PG_PROGRESS_ROWS, L->rows);
  metrics_set(L->o->metrics, MC_PG_PROGRESS_PPM, (uint64_t)(ratio * 1e6));
}

/* Logs "warm load progress" and updates the gauges when the interval has
 * passed. The share of the estimate stays below 1 until the load is done
 * (reltuples is an estimate: it may be low). */
static void progress(struct load *L, double now) {
  if (now < L->next_progress) return;
  L->next_progress = now + L->o->progress_interval_s;
  double dt = now - L->t0, rate = dt > 0 ? (double)L->rows / dt : 0;
  const char *table = L->table ? L->table : "-";
  if (L->estimated <= 0) {
    set_gauges(L, 0);
    log_info("warm load progress", LF_S("table", table), LF_S("step", L->step),
             LF_I("rows", L->rows), LF_I("table_rows", L->table_rows), LF_D("rows_per_s", rate),
             LF_D("seconds", dt));
    return;
  }
  double ratio = (double)L->rows / L->estimated, left = L->estimated - (double)L->rows;
  if (ratio > 0.99) ratio = 0.99;
  set_gauges(L, ratio);
  log_info("warm load progress", LF_S("table", table), LF_S("step", L->step), LF_I("rows", L->rows),
           LF_I("table_rows", L->table_rows), LF_D("rows_per_s", rate), LF_D("seconds", dt),
           LF_I("estimated_rows", (long long)L->estimated), LF_D("ratio", ratio),
           LF_D("eta_seconds", rate > 0 && left > 0 ? left / rate : 0));
}

/* PostgreSQL sent nothing for the stall timeout: said once, counted; the
 * caller drops the connection. */
static int stalled(struct load *L) {
  log_warn("postgres stopped sending; abandoning the connection", LF_S("step", L->step),
           LF_S("table", L->table ? L->table : "-"), LF_I("stall_timeout_s", L->o->stall_timeout_s),
           LF_I("rows", L->rows));
  if (L->o->metrics) metrics_add(L->o->metrics, MC_PG_STALLS, 1);
  return fail(L, -ETIMEDOUT, false, NULL,
              "%s: postgres sent nothing for %d s (PG_STALL_TIMEOUT_SECONDS); connection "
              "abandoned",
              L->step, L->o->stall_timeout_s);
}

/* Waits until the connection's socket has events (POLLIN/POLLOUT), in
 * slices of SLICE_MS that check for an interrupt and log progress. Readiness
 * counts as a sign of life. Returns 0, -ECANCELED, -ETIMEDOUT (no sign of
 * life for the stall timeout) or -EIO (no socket). */
static int wait_io(struct load *L, short events) {
  for (;;) {
    if (atomic_load(&L->p->interrupted)) return -ECANCELED;
    double now = clock_mono_s();
    progress(L, now);
    double left_ms = (L->last_io + L->o->stall_timeout_s - now) * 1000;
    if (left_ms <= 0) return stalled(L);
    int fd = PQsocket(L->conn);
    if (fd < 0) return fail(L, -EIO, false, NULL, "%s: %s", L->step, PQerrorMessage(L->conn));
    struct pollfd pf = {.fd = fd, .events = events};
    int n = poll(&pf, 1, left_ms < SLICE_MS ? (int)left_ms + 1 : SLICE_MS);
    if (n > 0) {
      L->last_io = clock_mono_s();
      return 0;
    }
    if (n < 0 && errno != EINTR)
      return fail(L, -EIO, false, NULL, "%s: poll: %s", L->step, strerror(errno));
  }
}

/* Reads what arrived; a failure means the connection is gone. */
static int consume(struct load *L) {
  if (PQconsumeInput(L->conn)) return 0;
  return fail(L, -EIO, false, NULL, "%s: %s", L->step, PQerrorMessage(L->conn));
}

/* Connects without blocking (libpq resolves host names synchronously, the
 * one wait not bounded here). Our keepalive and tcp_user_timeout defaults
 * come before the URL, so the URL may override them; client_encoding comes
 * after it, so it may not. */
static int connect_db(struct load *L) {
  char user_timeout[16];
  snprintf(user_timeout, sizeof user_timeout, "%d", L->o->stall_timeout_s * 1000);
  const char *keys[] = {"application_name",
                        "keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        "tcp_user_timeout",
                        "dbname",
                        "client_encoding",
                        NULL};
  const char *vals[] = {"catalogd",     "1",           KEEPALIVE_IDLE,
                        KEEPALIVE_INTV, KEEPALIVE_CNT, user_timeout,
                        L->p->url,      "UTF8",        NULL};
  L->step = "connecting";
  L->last_io = clock_mono_s();
  L->conn = PQconnectStartParams(keys, vals, 1);
  if (L->conn == NULL) return fail(L, -ECONNREFUSED, false, NULL, "connecting: out of memory");
  PQsetErrorVerbosity(L->conn, PQERRORS_VERBOSE); /* before the startup packet: conn_failed() */
  if (PQstatus(L->conn) == CONNECTION_BAD) return conn_failed(L, true); /* options refused? */
  PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
  while (ps != PGRES_POLLING_OK) {
    if (ps == PGRES_POLLING_FAILED || PQstatus(L->conn) == CONNECTION_BAD)
      return conn_failed(L, false);
    int rc = wait_io(L, ps == PGRES_POLLING_READING ? POLLIN : POLLOUT);
    if (rc != 0) return rc;
    ps = PQconnectPoll(L->conn);
  }
  if (PQsetnonblocking(L->conn, 1) != 0) return conn_failed(L, false);
  return 0;
}

/* Sends sql, flushing without blocking. */
static int send_query(struct load *L, const char *sql) {
  if (!PQsendQuery(L->conn, sql))
    return fail(L, -EIO, false, NULL, "%s: %s", L->step, PQerrorMessage(L->conn));
  int f;
  while ((f = PQflush(L->conn)) == 1) {
    int rc = wait_io(L, POLLIN | POLLOUT);
    if (rc == 0) rc = consume(L);
    if (rc != 0) return rc;
  }
  return f == 0 ? 0 : fail(L, -EIO, false, NULL, "%s: %s", L->step, PQerrorMessage(L->conn));
}

/* The next result (NULL: the command is over), without blocking. In
 * COPY_OUT libpq is never busy and answers PGRES_COPY_OUT forever: callers
 * never loop on it. */
static int next_result(struct load *L, PGresult **out) {
  *out = NULL;
  while (PQisBusy(L->conn)) {
    int rc = wait_io(L, POLLIN);
    if (rc == 0) rc = consume(L);
    if (rc != 0) return rc;
  }
  *out = PQgetResult(L->conn);
  return 0;
}

/* Reads the results of a command up to its end: an error result fails the
 * attempt, and so does a COPY state (the loop would never end). */
static int drain(struct load *L) {
  PGresult *r;
  int rc;
  while ((rc = next_result(L, &r)) == 0 && r != NULL) {
    ExecStatusType s = PQresultStatus(r);
    if (s == PGRES_COPY_OUT || s == PGRES_COPY_IN || s == PGRES_COPY_BOTH)
      rc = fail(L, -EIO, false, NULL, "%s: still in COPY", L->step);
    else if (s != PGRES_COMMAND_OK && s != PGRES_TUPLES_OK)
      rc = fail_result(L, r);
    PQclear(r);
    if (rc != 0) return rc;
  }
  return rc;
}

/* Runs sql, whose first result must have status want. A COPY is left in
 * COPY_OUT for the caller; any other command is read to its end. If res,
 * the first result is handed over (the caller PQclear()s it). */
static int query(struct load *L, const char *sql, ExecStatusType want, PGresult **res) {
  PGresult *r = NULL;
  int rc = send_query(L, sql);
  if (rc == 0) rc = next_result(L, &r);
  if (rc == 0 && PQresultStatus(r) != want) rc = fail_result(L, r);
  if (rc == 0 && want != PGRES_COPY_OUT) rc = drain(L);
  if (rc == 0 && res != NULL) {
    *res = r;
    return 0;
  }
  PQclear(r);
  return rc;
}

/* ---- COPY ---- */

static void bad_row(struct load *L, const char *why) {
  if (L->skipped++ < LOG_FIRST_BAD)
    log_warn("skipping row that breaks the schema", LF_S("table", L->table), LF_S("why", why),
             LF_I("row", (long long)L->rows));
}

/* True if every field present is UTF-8. A database whose encoding is
 * SQL_ASCII sends its bytes unconverted, whatever client_encoding says, and
 * a reply carrying them could not be decoded by the callers: such a row is
 * refused. */
static bool fields_utf8(char **f, int nf) {
  for (int i = 0; i < nf; i++)
    if (f[i] != NULL && !utf8_valid(f[i])) return false;
  return true;
}

/* Splits one COPY row of tb (buf, n bytes, as PQgetCopyData returns it;
 * the caller frees buf after) and feeds it to tb->row; counts it, and
 * counts and logs it if it is bad. A child row is split in its index's copy,
 * where its fields stay for the parents to come. */
static void load_row(struct load *L, const struct pgrows_table *tb, char *buf, size_t n) {
  char *fields[PGROWS_MAX_FIELDS];
  const char *why = "bad row";
  if (tb->keep != PGROWS_KEEP_NONE)
    buf = children_keep(tb->keep == PGROWS_KEEP_PRODUCT ? L->out.product_kids : L->out.variant_kids,
                        buf, n);
  int nf = copy_split(buf, n, fields, PGROWS_MAX_FIELDS);
  if (nf != tb->nfields)
    bad_row(L, "wrong number of columns");
  else if (!fields_utf8(fields, nf))
    bad_row(L, "text is not valid UTF-8 (a SQL_ASCII database is not converted)");
  else if (tb->row(&L->out, fields, nf, &why) != 0)
    bad_row(L, why);
  L->rows++;
}

/* Runs one COPY and feeds each row to load_row(). A COPY may fail after
 * rows were delivered (e.g. 22P05 mid-stream): they are in the store
 * transaction, which the caller aborts with the whole load. */
static int copy_table(struct load *L, const struct pgrows_table *tb) {
  char sql[1024], *buf = NULL;
  snprintf(sql, sizeof sql, "COPY (%s) TO STDOUT", tb->query);
  L->table = tb->name;
  L->step = tb->name;
  L->table_rows = 0;
  /* An entity table's rows go into maps sized for them: no shard grows
   * (and re-inserts itself) during the load. The txn starts empty. */
  size_t ti = (size_t)(tb - pgrows_tables);
  if (L->presize && tb->kind >= 0 && ti < PGLOAD_MAX_TABLES && L->table_est[ti] >= 1)
    store_txn_reserve(L->out.t, (enum cat_kind)tb->kind, (size_t)L->table_est[ti]);
  int rc = query(L, sql, PGRES_COPY_OUT, NULL), n;
  if (rc != 0) return rc;
  double t0 = clock_mono_s();
  for (;;) {
    n = PQgetCopyData(L->conn, &buf, 1);
    if (n > 0) {
      load_row(L, tb, buf, (size_t)n);
      PQfreemem(buf);
      L->table_rows++;
      if (atomic_load(&L->p->interrupted)) return -ECANCELED;
      if (L->table_rows % PROGRESS_ROWS == 0) progress(L, clock_mono_s());
    } else if (n == 0) {
      rc = wait_io(L, POLLIN);
      if (rc == 0) rc = consume(L);
      if (rc != 0) return rc;
    } else {
      break; /* -1: the COPY is over, its result follows; -2: an error */
    }
  }
  rc = drain(L);
  if (rc == 0 && (n == -2 || PQstatus(L->conn) != CONNECTION_OK))
    rc = fail(L, -EIO, false, NULL, "%s: %s", L->step, PQerrorMessage(L->conn));
  if (rc != 0) return rc;
  double dt = clock_mono_s() - t0;
  log_info("table loaded", LF_S("table", tb->name), LF_I("rows", L->table_rows),
           LF_D("seconds", dt), LF_D("rows_per_s", dt > 0 ? (double)L->table_rows / dt : 0));
  return 0;
}

/* Reads the planner's row estimate (pg_class.reltuples, -1 when never
 * analysed) of every table, inside the load's transaction, into
 * L->table_est and their sum into L->estimated; tables that do not exist
 * count 0 (their COPY will say so). */
static int estimate_rows(struct load *L) {
  char sql[1024] = "SELECT t.i::int, greatest(c.reltuples, 0)::float8 FROM unnest("
                   "'{";
  for (size_t i = 0; i < pgrows_ntables; i++)
    snprintf(sql + strlen(sql), sizeof sql - strlen(sql), "%s%s", i ? "," : "",
             pgrows_tables[i].name);
  snprintf(sql + strlen(sql), sizeof sql - strlen(sql),
           "}'::text[]) WITH ORDINALITY AS t(name, i) "
           "JOIN pg_class c ON c.oid = to_regclass(t.name)");
  PGresult *r = NULL;
  L->step = "estimating the row count";
  int rc = query(L, sql, PGRES_TUPLES_OK, &r);
  if (rc != 0) return rc;
  for (int row = 0; row < PQntuples(r); row++) {
    long i = strtol(PQgetvalue(r, row, 0), NULL, 10) - 1; /* ordinality counts from 1 */
    double n = strtod(PQgetvalue(r, row, 1), NULL);
    if (i < 0 || i >= PGLOAD_MAX_TABLES || !(n >= 0)) continue;
    L->table_est[i] = n;
    L->estimated += n;
  }
  PQclear(r);
  return 0;
}

/* A SQL_ASCII database holds bytes in no declared encoding: PostgreSQL
 * cannot convert them, and with client_encoding=UTF8 it validates them
 * instead, so one stray byte fails the whole COPY (22021, verified). Read
 * them raw (client_encoding SQL_ASCII) and let load_row() skip the rows
 * that are not UTF-8, one by one. */
static int match_encoding(struct load *L) {
  const char *enc = PQparameterStatus(L->conn, "server_encoding");
  if (enc == NULL || strcmp(enc, "SQL_ASCII") != 0) return 0;
  log_warn("postgres database encoding is SQL_ASCII: its text is read unconverted; rows that "
           "are not valid UTF-8 are skipped", );
  L->step = "SET client_encoding";
  return query(L, "SET client_encoding TO 'SQL_ASCII'", PGRES_COMMAND_OK, NULL);
}

/* The load proper, on a connected L. */
static int load_tables(struct load *L) {
  int rc = match_encoding(L);
  L->step = "BEGIN";
  if (rc == 0)
    rc = query(L, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", PGRES_COMMAND_OK, NULL);
  if (rc == 0) rc = estimate_rows(L);
  for (size_t i = 0; rc == 0 && i < pgrows_ntables; i++) {
    rc = copy_table(L, &pgrows_tables[i]);
    pgrows_flush(&L->out); /* on failure too: the txn frees what it owns */
    /* Products have taken their children: drop them before the variants. */
    if (pgrows_tables[i].drops_product_kids) children_clear(L->out.product_kids);
  }
  L->step = "COMMIT";
  if (rc == 0) rc = query(L, "COMMIT", PGRES_COMMAND_OK, NULL);
  return rc;
}

int pgload_run(struct pgload *p, const struct pgload_opts *o, struct store_txn *t,
               struct pgload_stats *st) {
  struct load L = {.out.t = t, .p = p, .o = o, .st = st, .step = "starting"};
  L.presize = store_txn_live(t) == 0;
  int rc;
  *st = (struct pgload_stats){0};
  L.t0 = clock_mono_s();
  L.next_progress = L.t0 + o->progress_interval_s;
  set_gauges(&L, 0);
  if (atomic_load(&p->interrupted)) return -ECANCELED;
  rc = connect_db(&L);
  if (rc == 0) {
    L.out.product_kids = children_new();
    L.out.variant_kids = children_new();
    rc = load_tables(&L);
    children_free(L.out.product_kids);
    children_free(L.out.variant_kids);
  }
  PQfinish(L.conn); /* returns at once, whatever state the connection is in */
  if (rc != 0 && atomic_load(&p->interrupted)) rc = -ECANCELED;
  if (rc == 0) set_gauges(&L, 1);
  st->rows = L.rows;
  st->skipped = L.skipped;
  st->seconds = clock_mono_s() - L.t0;
  return rc;
}

/* ---- Sessions: one connection for short queries (the auditor) ---- */

struct pgsession {
  struct load L;
  struct pgload_opts o;
  struct pgload_stats st;
};

/* Copies the session's failure reason (already redacted by fail()). */
static void session_reason(const struct pgsession *s, char *reason, size_t n) {
  snprintf(reason, n, "%s", s->st.reason[0] ? s->st.reason : "failed");
}

int pgsession_open(struct pgload *p, int stall_timeout_s, struct pgsession **out, char *reason,
                   size_t n) {
  struct pgsession *s = xcalloc(1, sizeof *s);
  s->o = (struct pgload_opts){.stall_timeout_s = stall_timeout_s, .progress_interval_s = 1};
  s->L = (struct load){.p = p, .o = &s->o, .st = &s->st, .step = "connecting"};
  s->L.t0 = clock_mono_s();
  s->L.next_progress = 1e300; /* a session never logs warm-load progress */
  int rc = atomic_load(&p->interrupted) ? -ECANCELED : connect_db(&s->L);
  if (rc != 0) {
    session_reason(s, reason, n);
    pgsession_close(s);
    return rc;
  }
  *out = s;
  return 0;
}

int pgsession_query(struct pgsession *s, const char *step, const char *sql, PGresult **res,
                    char *reason, size_t n) {
  s->st.reason[0] = '\0';
  s->L.step = step;
  int rc = query(&s->L, sql, PGRES_TUPLES_OK, res);
  if (rc != 0 && atomic_load(&s->L.p->interrupted)) rc = -ECANCELED;
  if (rc != 0) session_reason(s, reason, n);
  return rc;
}

int pgsession_command(struct pgsession *s, const char *sql, char *reason, size_t n) {
  s->st.reason[0] = '\0';
  s->L.step = sql;
  int rc = query(&s->L, sql, PGRES_COMMAND_OK, NULL);
  if (rc != 0 && atomic_load(&s->L.p->interrupted)) rc = -ECANCELED;
  if (rc != 0) session_reason(s, reason, n);
  return rc;
}

void pgsession_close(struct pgsession *s) {
  if (s == NULL) return;
  PQfinish(s->L.conn); /* returns at once, whatever state the connection is in */
  free(s);
}
