/*
 * ckpt_bench.c - micro-benchmark of the checkpoint encoder and reader
 * (src/checkpoint/format.c, file.c) on a real catalog, without PostgreSQL,
 * Kafka or a server: the numbers behind docs/performance.md, "Checkpoints
 * and peers", and a target for a profiler.
 *
 *   ckpt-bench EVENTS.tsv|- DIR [ROUNDS] [all|write|read|digest]
 *
 * EVENTS.tsv is catalog-gen's events.tsv ("KEY<TAB>JSON" per line): every
 * message is decoded (event_decode) and put into one store, as a replay
 * would, and published. Then ROUNDS (default 3) rounds of each phase asked
 * for ("all": digest, write, read):
 *   digest  digest_compute of the snapshot (the encoder computes it once,
 *           the reader once more on the state it decoded);
 *   write   ckpt_write_file into DIR (temp file, fsync, rename, prune to 1);
 *   read    ckpt_load_file of that file into a new store, with a prefaulter
 *           (prefault.h), then its commit (as the start-up does); the
 *           store is then destroyed, untimed.
 * The read checks that the digest it decoded equals the written one (the
 * reader itself refuses a difference). With EVENTS.tsv "-", only "read" of
 * DIR's newest checkpoint (a profile of the reader alone). Prints best and median seconds per
 * phase, wall and CPU time of the thread (the CPU time depends much less on
 * the other work of a shared machine), and one JSON line. DIR is created if missing; the checkpoint
 * is left there (for a second run with "read", or to inspect).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "checkpoint.h"
#include "clock.h"
#include "digest.h"
#include "event_decode.h"
#include "prefault.h"
#include "store.h"

#define MAX_ROUNDS 50

/* CPU seconds of this thread: on a shared machine the wall time of a round
 * depends on the other sessions; its CPU time much less. */
static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A round's wall and CPU seconds. */
struct timing {
  double wall, cpu;
};

static struct timing t_start(void) { return (struct timing){clock_mono_s(), cpu_s()}; }

static struct timing t_since(struct timing t0) {
  return (struct timing){clock_mono_s() - t0.wall, cpu_s() - t0.cpu};
}

/* Reads the whole file; NULL on error. The caller frees it. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
    goto out;
  if ((buf = malloc((size_t)n + 1)) != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
    free(buf);
    buf = NULL;
  }
  *len = (size_t)n;
out:
  if (f) fclose(f);
  return buf;
}

/* Decodes every "KEY<TAB>JSON" line of buf and puts it into st (one
 * transaction, committed). Returns the number of records applied, or -1 if
 * a line was rejected (the file is not catalog-gen's). */
static long load_events(struct store *st, char *buf, size_t len) {
  struct store_txn *t = store_begin(st);
  long n = 0;
  for (char *p = buf, *end = buf + len; p < end;) {
    char *nl = memchr(p, '\n', (size_t)(end - p)), *tab;
    if (nl == NULL) nl = end;
    if ((tab = memchr(p, '\t', (size_t)(nl - p))) != NULL) {
      struct event ev;
      const char *why;
      if (event_decode(p, (size_t)(tab - p), tab + 1, (size_t)(nl - tab - 1), &ev, &why) != 0) {
        fprintf(stderr, "ckpt-bench: event rejected: %s\n", why);
        store_abort(t);
        return -1;
      }
      if (ev.op == EVENT_UPSERT && store_put(t, ev.record) == STORE_APPLIED) n++;
      if (ev.op == EVENT_DELETE)
        store_delete(t, ev.kind, ev.id, ev.org, strlen(ev.org), ev.version);
    }
    p = nl + 1;
  }
  store_commit(t);
  return n;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Best and median of v[0..n). */
static void stats(double *v, int n, double *best, double *median) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  *best = v[0], *median = v[n / 2];
}

/* The offsets a checkpoint names (any: the reader only carries them). */
static void bench_meta(struct ckpt_meta *m) {
  memset(m, 0, sizeof *m);
  snprintf(m->topic, sizeof m->topic, "bench");
  m->nparts = 1;
  m->parts = calloc(1, sizeof *m->parts);
  if (m->parts == NULL) abort();
  m->parts[0] = (struct ckpt_part){.id = 0, .next = 1};
}

/* One digest round. */
static struct timing round_digest(struct store *st, char hex[33]) {
  struct digest d;
  store_read_lock();
  struct timing t0 = t_start();
  digest_compute(store_current(st), &d);
  struct timing s = t_since(t0);
  store_read_unlock();
  memcpy(hex, d.hex, 33);
  return s;
}

/* One write round into dir; wall -1 if it failed. */
static struct timing round_write(struct store *st, const char *dir, char *path, size_t cap,
                                 uint64_t *bytes, char hex[33]) {
  struct ckpt_meta m;
  struct ckpt_written out;
  char why[512];
  bench_meta(&m);
  const struct snapshot *s = store_pin(st);
  struct timing t0 = t_start();
  int rc = ckpt_write_file(dir, s, &m, 1, NULL, &out, why, sizeof why);
  struct timing sec = t_since(t0);
  store_unpin(st, s);
  memcpy(hex, m.digest, 33);
  ckpt_meta_clear(&m);
  if (rc != 0) {
    fprintf(stderr, "ckpt-bench: write: %s\n", why);
    return (struct timing){-1, -1};
  }
  snprintf(path, cap, "%s", out.path);
  *bytes = out.bytes;
  return sec;
}

/* One read round of path into a new store, with a prefaulter as the
 * server's start-up has; wall -1 if it failed. */
static struct timing round_read(const char *path, const char *want_hex) {
  struct store *st = store_new();
  struct store_txn *t = store_begin(st);
  struct ckpt_meta m;
  char why[512];
  struct timing t0 = t_start();
  struct prefault *pf = prefault_start();
  store_set_prefault(st, pf);
  int rc = ckpt_load_file(path, NULL, NULL, NULL, t, &m, why, sizeof why);
  store_set_prefault(st, NULL);
  prefault_stop(pf);
  if (rc == 0) store_commit(t);
  struct timing sec = t_since(t0);
  if (rc != 0) {
    fprintf(stderr, "ckpt-bench: read %s: %s\n", path, why);
    store_abort(t);
  } else if (want_hex[0] && strcmp(m.digest, want_hex) != 0) {
    fprintf(stderr, "ckpt-bench: read digest %s, written %s\n", m.digest, want_hex);
    rc = -1;
  }
  ckpt_meta_clear(&m);
  store_destroy(st);
  return rc == 0 ? sec : (struct timing){-1, -1};
}

/* The newest checkpoint of dir into path; 0 or -1. */
static int newest(const char *dir, char *path, size_t cap) {
  char **v = NULL;
  int n = ckpt_list(dir, &v);
  if (n > 0) snprintf(path, cap, "%s", v[0]);
  ckpt_list_free(v, n > 0 ? n : 0);
  return n > 0 ? 0 : -1;
}

struct result {
  double wall[MAX_ROUNDS], cpu[MAX_ROUNDS];
  int n;
};

static void add(struct result *r, struct timing t) {
  r->wall[r->n] = t.wall, r->cpu[r->n++] = t.cpu;
}

static void report(const char *name, struct result *r, double mb) {
  double best, med, cbest, cmed;
  if (r->n == 0) return;
  stats(r->wall, r->n, &best, &med);
  stats(r->cpu, r->n, &cbest, &cmed);
  fprintf(stderr, "%-7s wall best %.3f s median %.3f s; cpu best %.3f s median %.3f s", name, best,
          med, cbest, cmed);
  if (mb > 0) fprintf(stderr, "  (%.0f MB/s of cpu at the median)", mb / cmed);
  fprintf(stderr, "\n");
  printf("\"%s_s\":{\"best\":%.4f,\"median\":%.4f,\"cpu_best\":%.4f,\"cpu_median\":%.4f,"
         "\"rounds\":%d},",
         name, best, med, cbest, cmed, r->n);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ckpt-bench EVENTS.tsv|- DIR [ROUNDS] [all|write|read|digest]\n");
    return 2;
  }
  int rounds = argc > 3 ? atoi(argv[3]) : 3;
  const char *what = argc > 4 ? argv[4] : "all";
  bool all = !strcmp(what, "all");
  if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 3;
  if (mkdir(argv[2], 0700) != 0 && errno != EEXIST) {
    perror(argv[2]);
    return 1;
  }
  store_reader_register();
  struct store *st = store_new();
  long nrec = 0;
  if (strcmp(argv[1], "-") != 0) {
    size_t len;
    char *buf = slurp(argv[1], &len);
    if (buf == NULL) {
      perror(argv[1]);
      return 1;
    }
    double t0 = clock_mono_s();
    nrec = load_events(st, buf, len);
    free(buf);
    if (nrec < 0) return 1;
    fprintf(stderr, "%ld records from events in %.2f s\n", nrec, clock_mono_s() - t0);
  } else if (strcmp(what, "read") != 0) {
    fprintf(stderr, "ckpt-bench: no events: only \"read\" (of DIR's newest checkpoint)\n");
    return 2;
  }
  size_t variants = 0;
  store_read_lock();
  if (store_current(st)) variants = snap_count(store_current(st), CAT_VARIANT);
  store_read_unlock();

  struct result dg = {0}, wr = {0}, rd = {0};
  char path[4096] = "", hex[33] = "";
  uint64_t bytes = 0;
  for (int i = 0; i < rounds; i++) {
    if (all || !strcmp(what, "digest")) add(&dg, round_digest(st, hex));
    if (all || !strcmp(what, "write") || (!strcmp(what, "read") && path[0] == '\0' && nrec)) {
      struct timing s = round_write(st, argv[2], path, sizeof path, &bytes, hex);
      if (s.wall < 0) return 1;
      if (strcmp(what, "read")) add(&wr, s);
    }
    if (all || !strcmp(what, "read")) {
      if (path[0] == '\0' && newest(argv[2], path, sizeof path) != 0) return 1;
      struct timing s = round_read(path, hex);
      if (s.wall < 0) return 1;
      add(&rd, s);
    }
  }
  double mb = (double)bytes / 1e6;
  printf("{\"records\":%ld,\"variants\":%zu,\"bytes\":%llu,\"bytes_per_variant\":%.1f,", nrec,
         variants, (unsigned long long)bytes, variants ? (double)bytes / (double)variants : 0.0);
  report("digest", &dg, 0);
  report("write", &wr, mb);
  report("read", &rd, mb);
  printf("\"digest\":\"%s\"}\n", hex);
  fprintf(stderr, "%llu bytes (%.1f B/variant), digest %s\n", (unsigned long long)bytes,
          variants ? (double)bytes / (double)variants : 0.0, hex);
  store_destroy(st);
  store_reader_unregister();
  return 0;
}
