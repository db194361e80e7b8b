/*
 * audit.c - the consistency auditor (see audit.h): one thread, one
 * PostgreSQL connection, rounds paced to AUDIT_ROWS_PER_SECOND.
 *
 * A round picks an entity kind with probability proportional to how many
 * the snapshot holds (so every entity is sampled at the same rate), then in
 * one REPEATABLE READ READ ONLY transaction (a parent and its children come
 * from the same PostgreSQL snapshot):
 *  - the sweep: the next B rows of the kind's table by primary key after a
 *    cursor (`WHERE id > $cursor ORDER BY id LIMIT B`, an index range scan
 *    on the primary key: O(log n + B), checked with EXPLAIN in
 *    test_audit.py), with their images and links read by the children's
 *    indexed parent ids. The cursor starts at a random UUID and wraps, so
 *    every row is checked once per pass of n / rate seconds (a random
 *    sample would leave some unchecked for much longer: a coupon
 *    collector's n ln n), and replicas do not walk in step. TABLESAMPLE
 *    SYSTEM was not used: it reads whole random pages, not an index, and
 *    returns a varying number of rows.
 *  - the reverse check: one live record sampled from the snapshot (and the
 *    suspects of earlier rounds) looked up by id: a row gone from
 *    PostgreSQL while held here is a delete in flight (lagging) until
 *    AUDIT_GRACE_SECONDS have passed; then, still held here and still gone
 *    there, it is divergent.
 * Rows are built by the warm load's own row handlers (pg_rows.c, the same
 * column lists and builders) and compared with the snapshot's record by
 * their canonical hash (digest_record), each lookup in its own short RCU
 * read section, after the transaction ended. A content mismatch is read
 * again in a new transaction before it is reported.
 *
 * Errors from PostgreSQL close the connection and back off (1 s doubling
 * to PG_RETRY_MAX_SECONDS); the auditor never writes the store, so the
 * writer and the readers never wait for it.
 *
 * @locality the audit thread; audit_request_stop() from any thread.
 */
#include "audit.h"

#include <errno.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "children.h"
#include "clock.h"
#include "digest.h"
#include "log.h"
#include "metrics.h"
#include "pg_load.h"
#include "pg_rows.h"
#include "store.h"
#include "xalloc.h"

#define WINDOW     1000 /* checks the consistency ratio is over */
#define MAX_BATCH  50   /* rows per sweep query */
#define GONE_MAX   64   /* suspects of "held here, gone there" kept at once */
#define SQL_MAX    (MAX_BATCH * 48 + 2048)
#define IDLIST_MAX (MAX_BATCH + GONE_MAX + 1)
#define REASON_LEN 512

enum result { R_EQUAL, R_LAGGING, R_DIVERGENT };

/* A live record of the snapshot whose row PostgreSQL no longer had. */
struct gone {
  int kind;
  uint8_t id[16];
  char org[CAT_ORG_MAX + 1];
  double since; /* monotonic seconds, first seen gone */
};

/* One row of a sweep, built. */
struct built {
  struct cat_hdr *rec;
  int64_t age_ms; /* now - updated_at in PostgreSQL; -1: the table has none */
};

struct audit {
  struct audit_deps d;
  struct pgload *pg;
  pthread_t thread;
  atomic_bool stop;
  pthread_mutex_t mu; /* with cv: the pacing sleep, cut short by a stop */
  pthread_cond_t cv;
  struct pgsession *sess;
  uint64_t rng;
  uint8_t cursor[CAT_ENTITY_KINDS][16];
  uint8_t ring[WINDOW]; /* the last results, for the rolling ratio */
  size_t ring_n, ring_pos, ring_equal;
  struct gone gone[GONE_MAX];
  size_t ngone;
  int64_t lag_ms; /* oldest lag seen this round */
};

/* ---- Small helpers ---- */

/* xorshift64*: the sampling's randomness (no secret depends on it). */
static uint64_t rnd(struct audit *a) {
  a->rng ^= a->rng >> 12, a->rng ^= a->rng << 25, a->rng ^= a->rng >> 27;
  return a->rng * 0x2545F4914F6CDD1Dull;
}

/* The warm load's table of an entity kind. */
static const struct pgrows_table *table_of(int kind) {
  for (size_t i = 0; i < pgrows_ntables; i++)
    if (pgrows_tables[i].kind == kind) return &pgrows_tables[i];
  return NULL;
}

/* The schema gives brands, products and variants an updated_at column. */
static bool has_updated_at(int kind) {
  return kind == CAT_VARIANT || kind == CAT_PRODUCT || kind == CAT_BRAND;
}

/* Sleeps up to s seconds; returns early (true) when asked to stop. */
static bool pause_s(struct audit *a, double s) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  int64_t ns = ts.tv_nsec + (int64_t)(s * 1e9);
  ts.tv_sec += ns / 1000000000, ts.tv_nsec = ns % 1000000000;
  pthread_mutex_lock(&a->mu);
  while (!atomic_load(&a->stop))
    if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) == ETIMEDOUT) break;
  pthread_mutex_unlock(&a->mu);
  return atomic_load(&a->stop);
}

/* Counts one check and updates the rolling ratio. */
static void count(struct audit *a, enum result r) {
  static const enum metrics_counter mc[] = {MC_AUDIT_EQUAL, MC_AUDIT_LAGGING, MC_AUDIT_DIVERGENT};
  metrics_add(a->d.metrics, mc[r], 1);
  if (a->ring_n == WINDOW)
    a->ring_equal -= a->ring[a->ring_pos] == R_EQUAL;
  else
    a->ring_n++;
  a->ring[a->ring_pos] = (uint8_t)r;
  a->ring_equal += r == R_EQUAL;
  a->ring_pos = (a->ring_pos + 1) % WINDOW;
  metrics_set(a->d.metrics, MC_AUDIT_RATIO_PPM, a->ring_equal * 1000000 / a->ring_n);
  metrics_set(a->d.metrics, MC_AUDIT_WINDOW, a->ring_n);
}

/* Logs a divergence by its key only (never a field of the row). */
static void report(int kind, const uint8_t id[16], const char *org, int64_t here, int64_t there,
                   const char *why) {
  char idt[UUID_STR_LEN + 1];
  uuid_format(id, idt);
  log_warn("audit: snapshot diverges from postgres", LF_S("kind", model_kind_name(kind)),
           LF_S("organization", org), LF_S("id", idt), LF_I("version_here", here),
           LF_I("version_postgres", there), LF_S("why", why));
}

/* Appends 'uuid' (quoted, comma-separated) to an IN list. */
static void idlist_add(char *list, size_t cap, const uint8_t id[16]) {
  char idt[UUID_STR_LEN + 1];
  uuid_format(id, idt);
  size_t n = strlen(list);
  snprintf(list + n, cap - n, "%s'%s'", n ? "," : "", idt);
}

/* ---- Reading rows through the warm load's handlers ---- */

/* The sink of pg_rows: keeps the one record a parent row built. */
static void capture(void *arg, struct cat_hdr *rec) { *(struct cat_hdr **)arg = rec; }

/* Feeds row i of r (columns from first on, nf of them) to tb's handler. */
static int feed_row(struct pgrows *rows, const struct pgrows_table *tb, PGresult *r, int i,
                    int first) {
  char *f[PGROWS_MAX_FIELDS];
  const char *why = "bad row";
  if (PQnfields(r) - first != tb->nfields) return -1;
  for (int j = 0; j < tb->nfields; j++)
    f[j] = PQgetisnull(r, i, first + j) ? NULL : PQgetvalue(r, i, first + j);
  return tb->row(rows, f, tb->nfields, &why);
}

/* Reads the children of the parents in idlist (quoted UUIDs) into rows'
 * index: every child table kept for kind, by its indexed parent id. The
 * results hold the strings the index borrows: the caller PQclear()s
 * kids[0..*nkids) after building the parents. */
static int read_children(struct audit *a, int kind, const char *idlist, struct pgrows *rows,
                         PGresult **kids, int *nkids, char *reason) {
  enum pgrows_keep keep = kind == CAT_PRODUCT ? PGROWS_KEEP_PRODUCT : PGROWS_KEEP_VARIANT;
  char *sql = xmalloc(SQL_MAX);
  int rc = 0;
  for (size_t t = 0; rc == 0 && t < pgrows_ntables; t++) {
    const struct pgrows_table *c = &pgrows_tables[t];
    if (c->keep != keep) continue;
    snprintf(sql, SQL_MAX, "%s WHERE %s IN (%s)", c->query, c->key_column, idlist);
    rc = pgsession_query(a->sess, c->name, sql, &kids[*nkids], reason, REASON_LEN);
    if (rc != 0) break;
    PGresult *r = kids[(*nkids)++];
    for (int i = 0; i < PQntuples(r); i++)
      feed_row(rows, c, r, i, 0);
  }
  free(sql);
  return rc;
}

/*
 * Reads the rows of kind's table that match `where` (SQL after WHERE,
 * built from UUIDs and numbers only), with their children, and builds
 * each through the warm load's handler into out[0..*n) (the caller frees
 * out[i].rec with model_free). Rows the builders refuse are skipped, as the
 * warm load skips them. Inside the caller's transaction.
 */
static int read_rows(struct audit *a, int kind, const char *where, struct built *out, size_t cap,
                     size_t *n, char *reason) {
  const struct pgrows_table *tb = table_of(kind);
  char *sql = xmalloc(SQL_MAX), idlist[IDLIST_MAX * 40] = "";
  PGresult *r = NULL, *kids[3] = {0};
  int nkids = 0;
  struct pgrows rows = {.product_kids = children_new(), .variant_kids = children_new()};
  *n = 0;
  /* One more column first: the row's age (tb->query starts with "SELECT "). */
  snprintf(sql, SQL_MAX, "SELECT %s, %s WHERE %s",
           has_updated_at(kind) ? "(extract(epoch FROM now() - updated_at) * 1000)::bigint"
                                : "NULL::bigint",
           tb->query + 7, where);
  int rc = pgsession_query(a->sess, tb->name, sql, &r, reason, REASON_LEN);
  if (rc != 0) goto out;
  for (int i = 0; i < PQntuples(r) && i < (int)IDLIST_MAX; i++) {
    uint8_t id[16];
    if (uuid_parse(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), id) == 0)
      idlist_add(idlist, sizeof idlist, id);
  }
  if ((kind == CAT_PRODUCT || kind == CAT_VARIANT) && idlist[0] != '\0')
    rc = read_children(a, kind, idlist, &rows, kids, &nkids, reason);
  for (int i = 0; rc == 0 && i < PQntuples(r) && *n < cap; i++) {
    struct cat_hdr *rec = NULL;
    rows.sink = capture, rows.sink_arg = &rec;
    if (feed_row(&rows, tb, r, i, 1) != 0 || rec == NULL) continue;
    out[*n].rec = rec;
    out[(*n)++].age_ms = PQgetisnull(r, i, 0) ? -1 : strtoll(PQgetvalue(r, i, 0), NULL, 10);
  }
out:
  for (int k = 0; k < nkids; k++)
    PQclear(kids[k]);
  PQclear(r);
  children_free(rows.product_kids);
  children_free(rows.variant_kids);
  free(sql);
  return rc;
}

/* ---- Comparing with the snapshot ---- */

/* Compares a row built from PostgreSQL with the snapshot's record of its
 * key, in one short read section. *here gets the version held (0: none). */
static enum result compare(struct audit *a, const struct cat_hdr *rec, int64_t *here) {
  enum result res;
  store_read_lock();
  const struct snapshot *s = store_current(a->d.store);
  const struct cat_hdr *h =
      s ? snap_get_any(s, (enum cat_kind)rec->kind, rec->key, rec->org, rec->keylen - 16) : NULL;
  *here = h ? h->version : 0;
  if (h == NULL || h->version < rec->version)
    res = R_LAGGING; /* its event has not been applied yet */
  else if (h->version > rec->version)
    res = R_EQUAL; /* a newer write committed after the read, already applied */
  else if (h->deleted)
    res = R_DIVERGENT; /* deleted here at the version PostgreSQL still holds */
  else {
    uint64_t x[2], y[2];
    digest_record(h, x);
    digest_record(rec, y);
    res = x[0] == y[0] && x[1] == y[1] ? R_EQUAL : R_DIVERGENT;
  }
  store_read_unlock();
  return res;
}

/* Runs fn inside one REPEATABLE READ READ ONLY transaction. */
static int in_txn(struct audit *a, int (*fn)(struct audit *, void *), void *arg, char *reason) {
  int rc = pgsession_command(a->sess, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", reason,
                             REASON_LEN);
  if (rc == 0) rc = fn(a, arg);
  if (rc == 0) rc = pgsession_command(a->sess, "COMMIT", reason, REASON_LEN);
  return rc;
}

/* One sweep or re-read: what read_rows needs and gives. */
struct rows_job {
  int kind;
  const char *where;
  struct built *out;
  size_t cap, n;
  char *reason;
  /* The reverse check, in the same transaction: ids to look up. */
  const char *gone_sql;
  PGresult *gone;
};

static int rows_job_run(struct audit *a, void *arg) {
  struct rows_job *j = arg;
  int rc = read_rows(a, j->kind, j->where, j->out, j->cap, &j->n, j->reason);
  if (rc == 0 && j->gone_sql != NULL)
    rc = pgsession_query(a->sess, "reverse check", j->gone_sql, &j->gone, j->reason, REASON_LEN);
  return rc;
}

static void free_built(struct built *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    model_free(b[i].rec);
}

/* Reads the suspected rows again in a new transaction and reports those
 * still divergent (a false alarm from a write racing the first read does
 * not survive this). Counts each suspect once. */
static int recheck(struct audit *a, int kind, const char *idlist, size_t nsuspects, char *reason) {
  char where[IDLIST_MAX * 40 + 16];
  struct built b[MAX_BATCH];
  snprintf(where, sizeof where, "id IN (%s)", idlist);
  struct rows_job j = {.kind = kind, .where = where, .out = b, .cap = MAX_BATCH, .reason = reason};
  int rc = in_txn(a, rows_job_run, &j, reason);
  PQclear(j.gone);
  size_t divergent = 0;
  for (size_t i = 0; rc == 0 && i < j.n; i++) {
    int64_t here;
    enum result r = compare(a, b[i].rec, &here);
    if (r == R_DIVERGENT) {
      report(kind, b[i].rec->key, b[i].rec->org, here, b[i].rec->version, "content differs");
      divergent++;
    }
    count(a, r);
  }
  free_built(b, j.n);
  if (rc == 0) /* suspects whose row went away meanwhile: a delete, lagging */
    for (size_t i = j.n; i < nsuspects; i++)
      count(a, R_LAGGING);
  return rc;
}

/* Classifies the sweep's rows; content mismatches go to recheck(). */
static int judge_sweep(struct audit *a, int kind, struct built *b, size_t n, char *reason) {
  char suspects[IDLIST_MAX * 40] = "";
  size_t ns = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t here;
    enum result r = compare(a, b[i].rec, &here);
    if (r == R_DIVERGENT) {
      idlist_add(suspects, sizeof suspects, b[i].rec->key);
      ns++;
      continue;
    }
    if (r == R_LAGGING && b[i].age_ms > a->lag_ms) a->lag_ms = b[i].age_ms;
    count(a, r);
  }
  return ns > 0 ? recheck(a, kind, suspects, ns, reason) : 0;
}

/* ---- The reverse check: held here, gone there ---- */

/* Samples one live record of kind from the snapshot into g (short read
 * section). Returns false if none was found in a few tries. */
static bool sample_live(struct audit *a, int kind, struct gone *g) {
  bool found = false;
  store_read_lock();
  const struct snapshot *s = store_current(a->d.store);
  for (int t = 0; s != NULL && t < 4 && !found; t++) {
    const struct cat_hdr *h = snap_sample(s, (enum cat_kind)kind, rnd(a));
    if (h == NULL || h->deleted) continue;
    g->kind = kind;
    memcpy(g->id, h->key, 16);
    snprintf(g->org, sizeof g->org, "%s", h->org);
    found = true;
  }
  store_read_unlock();
  return found;
}

/* True if the snapshot holds (kind, id, org) live. */
static bool held_live(struct audit *a, const struct gone *g) {
  store_read_lock();
  const struct snapshot *s = store_current(a->d.store);
  bool live = s && snap_get(s, (enum cat_kind)g->kind, g->id, g->org, strlen(g->org)) != NULL;
  store_read_unlock();
  return live;
}

/* True if the reverse check's result r holds the row (id, org). */
static bool row_there(PGresult *r, const struct gone *g) {
  char idt[UUID_STR_LEN + 1];
  uuid_format(g->id, idt);
  for (int i = 0; r != NULL && i < PQntuples(r); i++)
    if (strcmp(PQgetvalue(r, i, 0), idt) == 0 && strcmp(PQgetvalue(r, i, 1), g->org) == 0)
      return true;
  return false;
}

/* Builds the reverse check's query for kind: the sample and every suspect
 * of kind. Returns false if there is nothing to ask. */
static bool gone_query(struct audit *a, int kind, const struct gone *sample, char *sql,
                       size_t cap) {
  char list[IDLIST_MAX * 40] = "";
  if (sample != NULL) idlist_add(list, sizeof list, sample->id);
  for (size_t i = 0; i < a->ngone; i++)
    if (a->gone[i].kind == kind) idlist_add(list, sizeof list, a->gone[i].id);
  if (list[0] == '\0') return false;
  snprintf(sql, cap, "SELECT id::text, organization_id FROM %s WHERE id IN (%s)",
           table_of(kind)->name, list);
  return true;
}

/* Settles the suspects of kind against r: back in PostgreSQL or deleted
 * here: dropped; past the grace, still held here and gone there:
 * divergent. Then the sample: gone there is a delete in flight. */
static void judge_gone(struct audit *a, int kind, const struct gone *sample, PGresult *r) {
  double now = clock_mono_s();
  for (size_t i = 0; i < a->ngone;) {
    struct gone *g = &a->gone[i];
    bool drop = g->kind == kind && (row_there(r, g) || !held_live(a, g));
    if (!drop && g->kind == kind && now - g->since >= a->d.cfg->audit_grace_s) {
      int64_t here = 0;
      report(kind, g->id, g->org, here, 0, "gone from postgres past AUDIT_GRACE_SECONDS");
      count(a, R_DIVERGENT);
      drop = true;
    }
    if (drop)
      a->gone[i] = a->gone[--a->ngone];
    else
      i++;
  }
  if (sample == NULL || row_there(r, sample)) return;
  for (size_t i = 0; i < a->ngone; i++)
    if (a->gone[i].kind == kind && memcmp(a->gone[i].id, sample->id, 16) == 0) return;
  count(a, R_LAGGING); /* a delete whose event has not arrived, for now */
  if (a->ngone < GONE_MAX) {
    a->gone[a->ngone] = *sample;
    a->gone[a->ngone++].since = now;
  }
}

/* ---- Rounds ---- */

/* An entity kind picked with probability proportional to its live count
 * in the snapshot; -1 before the first snapshot or if it holds nothing. */
static int pick_kind(struct audit *a) {
  size_t counts[CAT_ENTITY_KINDS] = {0}, total = 0;
  store_read_lock();
  const struct snapshot *s = store_current(a->d.store);
  for (int k = 0; s != NULL && k < CAT_ENTITY_KINDS; k++)
    total += counts[k] = snap_count(s, k);
  store_read_unlock();
  if (total == 0) return -1;
  size_t x = (size_t)(rnd(a) % total);
  for (int k = 0; k < CAT_ENTITY_KINDS; k++) {
    if (x < counts[k]) return k;
    x -= counts[k];
  }
  return -1;
}

/* One round of batch rows of a kind and one reverse sample. Returns 0 or
 * a PostgreSQL failure (reason set). */
static int round_once(struct audit *a, int batch, char *reason) {
  int kind = pick_kind(a);
  if (kind < 0) return 0;
  char where[128], cur[UUID_STR_LEN + 1], gsql[IDLIST_MAX * 40 + 128];
  struct built b[MAX_BATCH];
  struct gone sample;
  bool have_sample = sample_live(a, kind, &sample);
  uuid_format(a->cursor[kind], cur);
  snprintf(where, sizeof where, "id > '%s' ORDER BY id LIMIT %d", cur, batch);
  struct rows_job j = {.kind = kind, .where = where, .out = b, .cap = MAX_BATCH, .reason = reason};
  if (gone_query(a, kind, have_sample ? &sample : NULL, gsql, sizeof gsql)) j.gone_sql = gsql;
  int rc = in_txn(a, rows_job_run, &j, reason);
  if (rc == 0) {
    if (j.n < (size_t)batch) /* the end of the table: wrap */
      memset(a->cursor[kind], 0, 16);
    else
      memcpy(a->cursor[kind], b[j.n - 1].rec->key, 16);
    if (j.gone_sql != NULL) judge_gone(a, kind, have_sample ? &sample : NULL, j.gone);
    rc = judge_sweep(a, kind, b, j.n, reason);
  }
  PQclear(j.gone);
  free_built(b, j.n);
  return rc;
}

/* Connects if needed, then rounds paced to the rate until stopped or a
 * PostgreSQL failure (returned, with reason). */
static int run_connected(struct audit *a, char *reason) {
  int rate = a->d.cfg->audit_rows_per_second;
  int batch = (rate + 3) / 4;
  if (batch > MAX_BATCH) batch = MAX_BATCH;
  if (batch < 1) batch = 1;
  double period = (double)(batch + 1) / rate; /* the sweep's rows and the reverse sample */
  int rc = pgsession_open(a->pg, a->d.cfg->pg_stall_timeout_s, &a->sess, reason, REASON_LEN);
  if (rc != 0) return rc;
  log_info("audit: connected to postgres", LF_I("rows_per_second", rate), LF_I("batch", batch));
  while (!atomic_load(&a->stop)) {
    double t0 = clock_mono_s();
    a->lag_ms = 0;
    rc = round_once(a, batch, reason);
    if (rc != 0) return rc;
    metrics_set(a->d.metrics, MC_AUDIT_LAG_MS, (uint64_t)a->lag_ms);
    double left = period - (clock_mono_s() - t0);
    if (left > 0 && pause_s(a, left)) break;
  }
  return 0;
}

static void *audit_main(void *arg) {
  struct audit *a = arg;
  char reason[REASON_LEN];
  double backoff = 1;
  store_reader_register();
  while (!atomic_load(&a->stop)) {
    reason[0] = '\0';
    int rc = run_connected(a, reason);
    pgsession_close(a->sess);
    a->sess = NULL;
    if (rc == 0 || rc == -ECANCELED || atomic_load(&a->stop)) break;
    metrics_add(a->d.metrics, MC_AUDIT_ERRORS, 1);
    log_warn("audit: postgres failed; backing off", LF_S("reason", reason),
             LF_D("retry_in_s", backoff));
    if (pause_s(a, backoff)) break;
    backoff = backoff * 2 > a->d.cfg->pg_retry_max_s ? a->d.cfg->pg_retry_max_s : backoff * 2;
  }
  store_reader_unregister();
  return NULL;
}

/* ---- Life cycle ---- */

int audit_start(const struct audit_deps *d, struct audit **out) {
  *out = NULL;
  if (d->cfg->database_url[0] == '\0' || d->cfg->audit_rows_per_second <= 0) return 0;
  struct pgload *pg = pgload_new(d->cfg->database_url);
  if (pg == NULL) return -EINVAL;
  struct audit *a = xcalloc(1, sizeof *a);
  a->d = *d;
  a->pg = pg;
  a->rng = (uint64_t)clock_wall_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)a;
  if (a->rng == 0) a->rng = 1;
  for (int k = 0; k < CAT_ENTITY_KINDS; k++)
    for (int i = 0; i < 16; i += 8) {
      uint64_t x = rnd(a);
      memcpy(&a->cursor[k][i], &x, 8);
    }
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  int rc = pthread_create(&a->thread, NULL, audit_main, a);
  if (rc != 0) {
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    pgload_destroy(pg);
    free(a);
    return -rc;
  }
  *out = a;
  return 0;
}

void audit_request_stop(struct audit *a) {
  if (a == NULL) return;
  pthread_mutex_lock(&a->mu);
  atomic_store(&a->stop, true);
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  pgload_interrupt(a->pg);
}

void audit_stop(struct audit *a) {
  if (a == NULL) return;
  audit_request_stop(a);
  pthread_join(a->thread, NULL);
  pthread_mutex_destroy(&a->mu);
  pthread_cond_destroy(&a->cv);
  pgload_destroy(a->pg);
  free(a);
}
