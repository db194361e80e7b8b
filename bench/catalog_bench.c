/*
 * catalog_bench.c - load generator for catalog.CatalogService on the gRPC C
 * core client API (bench/README.md).
 *
 *   catalog-bench --target HOST:PORT --samples samples.tsv [options]
 *
 * Closed loop (default): every connection keeps --inflight calls in flight;
 * a completion immediately starts the next call. Open loop (--rate R): one pacer
 * thread starts R calls per second at fixed intervals (clock_nanosleep), round
 * robin over the client threads, whatever the server does; a call's latency is
 * measured from its *intended* start time, so a client or server that falls
 * behind shows up as latency instead of silently lowering the offered load (no
 * coordinated omission).
 *
 * Requests are packed once, before the run, into a pool per method (random
 * samples of one organization each); the hot loop only creates calls.
 * Latencies go into a log-linear histogram (HDR-style: 1 us resolution
 * below 128 us, then 128 sub-buckets per power of two, < 0.8 % error).
 */
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "catalog.pb-c.h"
#include "clock.h"

/* ---- Histogram ---- */

#define SUB_BITS 7
#define SUB      (1u << SUB_BITS)
#define MAX_EXP  40 /* 2^40 us: far beyond any deadline */
#define NBUCKETS (SUB + (MAX_EXP - SUB_BITS + 1) * SUB)

struct hist {
  uint64_t count[NBUCKETS];
  uint64_t n, sum_us, min_us, max_us;
};

static unsigned bucket_of(uint64_t us) {
  if (us < SUB) return (unsigned)us;
  int e = 63 - __builtin_clzll(us);
  if (e > MAX_EXP) e = MAX_EXP, us = (2ULL << MAX_EXP) - 1;
  int shift = e - SUB_BITS;
  return SUB + (unsigned)(e - SUB_BITS) * SUB + (unsigned)((us >> shift) - SUB);
}

/* Highest value that falls into bucket b (what HdrHistogram reports). */
static uint64_t bucket_high(unsigned b) {
  if (b < SUB) return b;
  unsigned e = (b - SUB) / SUB + SUB_BITS, m = (b - SUB) % SUB + SUB;
  int shift = (int)e - SUB_BITS;
  return (((uint64_t)m + 1) << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t us) {
  h->count[bucket_of(us)]++;
  if (h->n == 0 || us < h->min_us) h->min_us = us;
  if (us > h->max_us) h->max_us = us;
  h->n++, h->sum_us += us;
}

static void hist_merge(struct hist *into, const struct hist *h) {
  if (h->n == 0) return;
  for (unsigned i = 0; i < NBUCKETS; i++)
    into->count[i] += h->count[i];
  if (into->n == 0 || h->min_us < into->min_us) into->min_us = h->min_us;
  if (h->max_us > into->max_us) into->max_us = h->max_us;
  into->n += h->n, into->sum_us += h->sum_us;
}

static uint64_t hist_pct(const struct hist *h, double q) {
  if (h->n == 0) return 0;
  uint64_t want = (uint64_t)ceil(q * (double)h->n), cum = 0;
  if (want == 0) want = 1;
  for (unsigned i = 0; i < NBUCKETS; i++) {
    cum += h->count[i];
    if (cum >= want) {
      uint64_t v = bucket_high(i);
      return v > h->max_us ? h->max_us : v;
    }
  }
  return h->max_us;
}

/* ---- Methods and request pools ---- */

enum { M_VALIDATE, M_PRODUCT, M_VARIANTS, M_VBATCH, NMETHODS };
static const char *const method_key[NMETHODS] = {"validate", "product", "variants", "vbatch"};
static const char *const method_name[NMETHODS] = {"ValidateVariant", "GetProductDetails",
                                                  "GetVariantsBatch", "ValidateVariantsBatch"};
static const char *const method_path[NMETHODS] = {
    "/catalog.CatalogService/ValidateVariant", "/catalog.CatalogService/GetProductDetails",
    "/catalog.CatalogService/GetVariantsBatch", "/catalog.CatalogService/ValidateVariantsBatch"};

enum { C_HIT, C_MISS, C_FOREIGN };

struct sample {
  char org[64], vid[40], pid[40];
  int cls;
};

struct org_samples {
  char org[64];
  int *idx, n, cap;
};

struct req {
  grpc_slice payload;
  int nids, hits; /* expected found count (for --check) */
  int cls;        /* single-id requests */
};

struct pool {
  struct req *r;
  int n;
};

struct opts {
  const char *target, *samples, *json, *label, *dump;
  int method; /* -1: mix */
  int weights[NMETHODS];
  int batch, connections, inflight, threads, check, fixed, deadline_ms;
  double duration, warmup, rate, drain;
  int64_t tick_ns; /* open loop: start due calls in groups on this grid (0: each on time) */
  unsigned seed;
};

static struct opts O = {.method = M_VALIDATE,
                        .batch = 100,
                        .connections = 4,
                        .inflight = 16,
                        .duration = 10,
                        .warmup = 2,
                        .deadline_ms = 10000,
                        .drain = 5,
                        .seed = 42};
static struct sample *S;
static int NS;
static struct org_samples *ORGS;
static int NORGS;
static struct pool POOL[NMETHODS];

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("catalog-bench: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static uint64_t xs_next(uint64_t *s) {
  uint64_t x = *s;
  x ^= x << 13, x ^= x >> 7, x ^= x << 17;
  return *s = x;
}

static void load_samples(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) die("%s: %s", path, strerror(errno));
  char line[512];
  int cap = 0;
  while (fgets(line, sizeof line, f)) {
    if (line[0] == '#' || line[0] == '\n') continue;
    struct sample s;
    char cls[16];
    if (sscanf(line, "%63s %39s %39s %15s", s.org, s.vid, s.pid, cls) != 4) continue;
    s.cls = !strcmp(cls, "hit") ? C_HIT : !strcmp(cls, "miss") ? C_MISS : C_FOREIGN;
    if (NS == cap) S = realloc(S, sizeof *S * (size_t)(cap = cap ? 2 * cap : 4096));
    S[NS++] = s;
  }
  fclose(f);
  if (NS == 0) die("%s: no samples", path);
  for (int i = 0; i < NS; i++) {
    int o = 0;
    while (o < NORGS && strcmp(ORGS[o].org, S[i].org) != 0)
      o++;
    if (o == NORGS) {
      ORGS = realloc(ORGS, sizeof *ORGS * (size_t)(NORGS + 1));
      memset(&ORGS[o], 0, sizeof ORGS[o]);
      snprintf(ORGS[o].org, sizeof ORGS[o].org, "%s", S[i].org);
      NORGS++;
    }
    struct org_samples *g = &ORGS[o];
    if (g->n == g->cap)
      g->idx = realloc(g->idx, sizeof *g->idx * (size_t)(g->cap = g->cap ? 2 * g->cap : 256));
    g->idx[g->n++] = i;
  }
}

static grpc_slice pack(const ProtobufCMessage *m) {
  grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(m));
  protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
  return s;
}

static void build_pool(int m, uint64_t *rng) {
  int per = m == M_VALIDATE || m == M_PRODUCT ? 1 : O.batch;
  int n = O.fixed ? 1 : (int)(4000000 / (per * 45 + 64));
  if (n > 4096) n = 4096;
  if (n < 16 && !O.fixed) n = 16;
  POOL[m].r = calloc((size_t)n, sizeof *POOL[m].r);
  POOL[m].n = n;
  char **ids = calloc((size_t)per, sizeof *ids);
  for (int i = 0; i < n; i++) {
    struct req *r = &POOL[m].r[i];
    struct org_samples *g = &ORGS[xs_next(rng) % (uint64_t)NORGS];
    const struct sample *s = &S[g->idx[xs_next(rng) % (uint64_t)g->n]];
    if (O.fixed) { /* the first hit of the file, for comparisons with h2load */
      int k = 0;
      while (k < NS - 1 && S[k].cls != C_HIT)
        k++;
      s = &S[k];
    }
    r->nids = per, r->cls = s->cls;
    if (m == M_VALIDATE) {
      Catalog__ValidateVariantRequest q = CATALOG__VALIDATE_VARIANT_REQUEST__INIT;
      q.organization_id = (char *)s->org, q.variant_id = (char *)s->vid;
      r->payload = pack(&q.base);
      r->hits = s->cls == C_HIT;
    } else if (m == M_PRODUCT) {
      Catalog__GetProductDetailsRequest q = CATALOG__GET_PRODUCT_DETAILS_REQUEST__INIT;
      q.organization_id = (char *)s->org, q.product_id = (char *)s->pid;
      q.include_variants = 1, q.include_images = 1;
      r->payload = pack(&q.base);
      r->hits = s->cls == C_HIT;
    } else {
      r->hits = 0;
      for (int k = 0; k < per; k++) {
        const struct sample *x = &S[g->idx[xs_next(rng) % (uint64_t)g->n]];
        ids[k] = (char *)x->vid;
        r->hits += x->cls == C_HIT;
      }
      if (m == M_VARIANTS) {
        Catalog__GetVariantsBatchRequest q = CATALOG__GET_VARIANTS_BATCH_REQUEST__INIT;
        q.organization_id = (char *)s->org, q.n_variant_ids = (size_t)per, q.variant_ids = ids;
        r->payload = pack(&q.base);
      } else {
        Catalog__ValidateVariantsBatchRequest q = CATALOG__VALIDATE_VARIANTS_BATCH_REQUEST__INIT;
        q.organization_id = (char *)s->org, q.n_variant_ids = (size_t)per, q.variant_ids = ids;
        r->payload = pack(&q.base);
      }
    }
  }
  free(ids);
}

/* ---- Calls ---- */

struct conn {
  grpc_channel *ch;
  void *reg[NMETHODS];
};

struct thr;
struct call {
  struct thr *t;
  struct call *next_free, *prev_live, *next_live;
  grpc_call *call;
  int conn, method;
  const struct req *req;
  int64_t t_intended, t_sent;
  grpc_byte_buffer *send, *resp;
  grpc_metadata_array imd, tmd;
  grpc_status_code status;
  grpc_slice details;
};

/* A client thread: one completion queue, its connections, its results. In the
 * open loop the pacer thread starts the calls and the client thread only
 * completes them; `mu` guards the call bookkeeping they share. */
struct thr {
  int idx;
  pthread_t th;
  grpc_completion_queue *cq;
  struct conn *conns;
  int nconns;
  uint64_t rng;
  pthread_mutex_t mu;
  struct call *free_list, *live; /* under mu */
  long outstanding;              /* under mu */
  /* results (written by the client thread only) */
  struct hist h[NMETHODS + 1]; /* per method, then all */
  uint64_t ok, err, status[17], ids_ok;
  uint64_t checked, mismatch, unfinished;
};

static int64_t T_START, T_MEASURE, T_END;
static atomic_int ready_threads, go, pacer_done;
static uint64_t P_LATE;   /* pacer: sends more than 1 ms after their intended time (or tick) */
static uint64_t P_UNSENT; /* pacer: measured calls never started (client behind at drain end) */
static int64_t P_MAX_LAG; /* pacer: worst send lag */

static int pick_method(uint64_t *rng) {
  if (O.method >= 0) return O.method;
  int tot = 0;
  for (int m = 0; m < NMETHODS; m++)
    tot += O.weights[m];
  int x = (int)(xs_next(rng) % (uint64_t)tot);
  for (int m = 0; m < NMETHODS; m++) {
    if (x < O.weights[m]) return m;
    x -= O.weights[m];
  }
  return M_VALIDATE;
}

static long outstanding(struct thr *t) {
  pthread_mutex_lock(&t->mu);
  long n = t->outstanding;
  pthread_mutex_unlock(&t->mu);
  return n;
}

/* Starts one call on thread t's queue; intended = its scheduled time (0: now). */
static void start_call(struct thr *t, int conn, int64_t intended, uint64_t *rng) {
  pthread_mutex_lock(&t->mu);
  struct call *c = t->free_list;
  if (c) t->free_list = c->next_free;
  pthread_mutex_unlock(&t->mu);
  if (c == NULL) c = calloc(1, sizeof *c);
  c->t = t;
  int m = pick_method(rng);
  const struct pool *p = &POOL[m];
  c->conn = conn, c->method = m;
  c->req = &p->r[p->n == 1 ? 0 : (int)(xs_next(rng) % (uint64_t)p->n)];
  c->t_sent = clock_mono_ns();
  c->t_intended = intended ? intended : c->t_sent;
  grpc_metadata_array_init(&c->imd);
  grpc_metadata_array_init(&c->tmd);
  c->resp = NULL;
  c->details = grpc_empty_slice();
  gpr_timespec dl =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(O.deadline_ms, GPR_TIMESPAN));
  c->call = grpc_channel_create_registered_call(t->conns[conn].ch, NULL, GRPC_PROPAGATE_DEFAULTS,
                                                t->cq, t->conns[conn].reg[m], dl, NULL);
  grpc_slice payload = c->req->payload;
  c->send = grpc_raw_byte_buffer_create(&payload, 1);
  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &c->imd;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &c->resp;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &c->tmd;
  ops[5].data.recv_status_on_client.status = &c->status;
  ops[5].data.recv_status_on_client.status_details = &c->details;
  /* Registered before the batch starts: its completion may come at once. */
  pthread_mutex_lock(&t->mu);
  t->outstanding++;
  c->prev_live = NULL, c->next_live = t->live;
  if (t->live) t->live->prev_live = c;
  t->live = c;
  pthread_mutex_unlock(&t->mu);
  grpc_call_error e = grpc_call_start_batch(c->call, ops, 6, c, NULL);
  if (e != GRPC_CALL_OK) die("grpc_call_start_batch: %d", e);
}

/* Unpacks a reply and counts how many of its ids were found. */
static int found_in_reply(int m, const uint8_t *p, size_t n) {
  int found = -1;
  if (m == M_VALIDATE) {
    Catalog__ValidateVariantResponse *r = catalog__validate_variant_response__unpack(NULL, n, p);
    if (r) found = r->exists, catalog__validate_variant_response__free_unpacked(r, NULL);
  } else if (m == M_PRODUCT) {
    Catalog__GetProductDetailsResponse *r =
        catalog__get_product_details_response__unpack(NULL, n, p);
    if (r) found = r->success, catalog__get_product_details_response__free_unpacked(r, NULL);
  } else if (m == M_VARIANTS) {
    Catalog__GetVariantsBatchResponse *r = catalog__get_variants_batch_response__unpack(NULL, n, p);
    if (r) found = (int)r->n_variants, catalog__get_variants_batch_response__free_unpacked(r, NULL);
  } else {
    Catalog__ValidateVariantsBatchResponse *r =
        catalog__validate_variants_batch_response__unpack(NULL, n, p);
    if (r) {
      found = 0;
      for (size_t i = 0; i < r->n_validations; i++)
        found += r->validations[i]->exists;
      catalog__validate_variants_batch_response__free_unpacked(r, NULL);
    }
  }
  return found;
}

static void check_reply(struct thr *t, struct call *c) {
  grpc_byte_buffer_reader rd;
  if (c->resp == NULL || !grpc_byte_buffer_reader_init(&rd, c->resp)) {
    t->mismatch++;
    return;
  }
  grpc_slice s = grpc_byte_buffer_reader_readall(&rd);
  grpc_byte_buffer_reader_destroy(&rd);
  int found = found_in_reply(c->method, GRPC_SLICE_START_PTR(s), GRPC_SLICE_LENGTH(s));
  grpc_slice_unref(s);
  int want = c->req->hits;
  /* GetVariantsBatch returns each found id once: repeats in a request may lower the count. */
  t->checked++;
  if (found < 0 || (c->method == M_VARIANTS ? found > want || found == 0 : found != want))
    t->mismatch++;
}

/* Calls intended inside the measured window all count: a reply that did not come
 * back before the drain ended is an error (unfinished), never silently dropped. */
static void finish_call(struct thr *t, struct call *c, int64_t now, bool unfinished) {
  if (c->t_intended >= T_MEASURE && c->t_intended < T_END) {
    if (unfinished) {
      t->err++, t->unfinished++;
    } else if (c->status == GRPC_STATUS_OK) {
      uint64_t us = (uint64_t)(now - c->t_intended) / 1000;
      hist_add(&t->h[c->method], us);
      hist_add(&t->h[NMETHODS], us);
      t->ok++;
      t->ids_ok += (uint64_t)c->req->nids;
      if (O.check) check_reply(t, c);
    } else {
      t->err++;
    }
    if (!unfinished) t->status[c->status >= 0 && c->status <= 16 ? c->status : 2]++;
  }
  if (c->resp) grpc_byte_buffer_destroy(c->resp);
  grpc_byte_buffer_destroy(c->send);
  grpc_metadata_array_destroy(&c->imd);
  grpc_metadata_array_destroy(&c->tmd);
  grpc_slice_unref(c->details);
  grpc_call_unref(c->call);
  pthread_mutex_lock(&t->mu);
  t->outstanding--;
  if (c->prev_live)
    c->prev_live->next_live = c->next_live;
  else
    t->live = c->next_live;
  if (c->next_live) c->next_live->prev_live = c->prev_live;
  c->next_free = t->free_list;
  t->free_list = c;
  pthread_mutex_unlock(&t->mu);
}

static gpr_timespec abs_mono(int64_t ns) {
  gpr_timespec ts = {.tv_sec = ns / 1000000000,
                     .tv_nsec = (int32_t)(ns % 1000000000),
                     .clock_type = GPR_CLOCK_MONOTONIC};
  return ts;
}

static void wait_ready(struct thr *t) {
  for (int i = 0; i < t->nconns; i++) {
    grpc_channel *ch = t->conns[i].ch;
    int64_t until = clock_mono_ns() + 10 * 1000000000LL;
    grpc_connectivity_state st;
    while ((st = grpc_channel_check_connectivity_state(ch, 1)) != GRPC_CHANNEL_READY) {
      if (clock_mono_ns() > until)
        die("connection %d of thread %d not ready after 10 s", i, t->idx);
      grpc_channel_watch_connectivity_state(ch, st, abs_mono(clock_mono_ns() + 100000000), t->cq,
                                            NULL);
      grpc_event ev = grpc_completion_queue_next(t->cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
      (void)ev;
    }
  }
}

static void sleep_until(int64_t ns) {
  struct timespec ts = {.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

/* When the pacer wakes for a call due at `next`: at once, or on the --tick-us grid
 * (the first grid point at or after it), so that the calls due within one tick
 * leave together, each keeping its own intended time: the latency counts the wait. */
static int64_t wake_time(int64_t next) {
  if (O.tick_ns == 0) return next;
  int64_t into = (next - T_START) % O.tick_ns;
  return into ? next + O.tick_ns - into : next;
}

/* Open loop: one pacer starts every call at its scheduled time (clock_nanosleep,
 * not a completion-queue deadline: those are rounded up to milliseconds), round
 * robin over the client threads and their connections. A call that cannot be
 * started on time (pacer late, or 20000 calls outstanding on a thread) is started
 * as soon as possible and keeps its intended time. */
static void *pacer_main(void *arg) {
  struct thr *ts = arg;
  uint64_t rng = 0x2545f4914f6cdd1dULL ^ O.seed;
  while (!atomic_load(&go))
    usleep(200);
  const long cap = 20000;
  const int64_t give_up = T_END + (int64_t)(O.drain * 1e9);
  int64_t k = 0, next = T_START;
  while (next < T_END) {
    int64_t now = clock_mono_ns();
    /* A client that fell behind stops with the drain like the client threads
     * (which no longer reap: waiting for room would never end); the measured
     * calls it never started are errors, not silently dropped. */
    if (now >= give_up) {
      for (; next < T_END; next = T_START + (int64_t)((double)++k * 1e9 / O.rate))
        P_UNSENT += next >= T_MEASURE;
      break;
    }
    if (next > now) {
      sleep_until(wake_time(next));
      continue;
    }
    struct thr *t = &ts[k % O.threads];
    if (outstanding(t) >= cap) {
      usleep(50);
      continue;
    }
    int64_t lag = now - wake_time(next); /* lateness of the pacer, not of the grid */
    if (lag > P_MAX_LAG) P_MAX_LAG = lag;
    if (lag > 1000000) P_LATE++;
    start_call(t, (int)((k / O.threads) % t->nconns), next, &rng);
    k++;
    next = T_START + (int64_t)((double)k * 1e9 / O.rate);
  }
  atomic_store(&pacer_done, 1);
  return NULL;
}

static void *thread_main(void *arg) {
  struct thr *t = arg;
  wait_ready(t);
  atomic_fetch_add(&ready_threads, 1);
  while (!atomic_load(&go))
    usleep(200);
  bool open = O.rate > 0;
  if (!open)
    for (int i = 0; i < t->nconns; i++)
      for (int j = 0; j < O.inflight; j++)
        start_call(t, i, 0, &t->rng);
  int64_t drain_until = T_END + (int64_t)(O.drain * 1e9);
  for (;;) {
    int64_t now = clock_mono_ns();
    bool sending = open ? !atomic_load(&pacer_done) : now < T_END;
    if (!sending && outstanding(t) == 0) break;
    if (now >= drain_until) break;
    int64_t wake = now + 50000000; /* re-check the end conditions at least every 50 ms */
    if (wake > drain_until) wake = drain_until;
    grpc_event ev = grpc_completion_queue_next(t->cq, abs_mono(wake), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    struct call *c = ev.tag;
    if (c == NULL) continue; /* a connectivity watch */
    int64_t done = clock_mono_ns();
    int conn = c->conn;
    finish_call(t, c, done, false);
    if (!open && done < T_END) start_call(t, conn, 0, &t->rng);
  }
  /* Calls still out after the drain: cancel them; they count as errors. */
  pthread_mutex_lock(&t->mu);
  for (struct call *c = t->live; c; c = c->next_live)
    grpc_call_cancel(c->call, NULL);
  pthread_mutex_unlock(&t->mu);
  while (outstanding(t) > 0) {
    grpc_event ev =
        grpc_completion_queue_next(t->cq, abs_mono(clock_mono_ns() + 2000000000LL), NULL);
    if (ev.type != GRPC_OP_COMPLETE) break;
    if (ev.tag) finish_call(t, ev.tag, clock_mono_ns(), true);
  }
  for (int i = 0; i < t->nconns; i++)
    grpc_channel_destroy(t->conns[i].ch);
  return NULL;
}

/* ---- Output ---- */

static void json_lat(FILE *f, const struct hist *h) {
  fprintf(f,
          "{\"min\":%" PRIu64 ",\"mean\":%.1f,\"p50\":%" PRIu64 ",\"p90\":%" PRIu64
          ",\"p99\":%" PRIu64 ",\"p999\":%" PRIu64 ",\"max\":%" PRIu64 "}",
          h->min_us, h->n ? (double)h->sum_us / (double)h->n : 0.0, hist_pct(h, 0.5),
          hist_pct(h, 0.9), hist_pct(h, 0.99), hist_pct(h, 0.999), h->max_us);
}

static void report(struct thr *ts, double cpu_s) {
  struct hist *all = calloc(NMETHODS + 1, sizeof *all);
  uint64_t ok = 0, ids = 0, status[17] = {0}, checked = 0, mismatch = 0, late = 0;
  uint64_t unfinished = P_UNSENT, err = P_UNSENT;
  int64_t lag = P_MAX_LAG;
  late = P_LATE;
  for (int i = 0; i < O.threads; i++) {
    for (int m = 0; m <= NMETHODS; m++)
      hist_merge(&all[m], &ts[i].h[m]);
    ok += ts[i].ok, err += ts[i].err, ids += ts[i].ids_ok;
    checked += ts[i].checked, mismatch += ts[i].mismatch;
    unfinished += ts[i].unfinished;
    for (int s = 0; s < 17; s++)
      status[s] += ts[i].status[s];
  }
  double secs = (double)(T_END - T_MEASURE) / 1e9;
  const struct hist *h = &all[NMETHODS];
  fprintf(stderr,
          "%-28s %-6s c=%d m=%d rate=%.0f: %10.0f req/s  p50 %6" PRIu64 "  p90 %6" PRIu64
          "  p99 %6" PRIu64 "  p99.9 %6" PRIu64 "  max %7" PRIu64 " us  ok %" PRIu64 " err %" PRIu64
          "%s\n",
          O.label ? O.label : "", O.rate > 0 ? "open" : "closed", O.connections, O.inflight, O.rate,
          (double)ok / secs, hist_pct(h, .5), hist_pct(h, .9), hist_pct(h, .99), hist_pct(h, .999),
          h->max_us, ok, err, mismatch ? "  CHECK MISMATCHES" : "");
  FILE *f = stdout;
  if (O.json && strcmp(O.json, "-") != 0 && (f = fopen(O.json, "w")) == NULL)
    die("%s: %s", O.json, strerror(errno));
  fprintf(f,
          "{\"tool\":\"catalog-bench\",\"label\":\"%s\",\"target\":\"%s\",\"method\":\"%s\","
          "\"batch\":%d,\"mode\":\"%s\",\"connections\":%d,\"inflight\":%d,\"threads\":%d,"
          "\"rate_target\":%.1f,\"tick_us\":%lld,\"duration_s\":%.3f,\"warmup_s\":%.3f,",
          O.label ? O.label : "", O.target, O.method >= 0 ? method_key[O.method] : "mix",
          O.method == M_VARIANTS || O.method == M_VBATCH || O.method < 0 ? O.batch : 1,
          O.rate > 0 ? "open" : "closed", O.connections, O.rate > 0 ? 0 : O.inflight, O.threads,
          O.rate, (long long)(O.tick_ns / 1000), secs, O.warmup);
  fprintf(f,
          "\"requests\":%" PRIu64 ",\"errors\":%" PRIu64 ",\"throughput_rps\":%.1f,"
          "\"ids_per_s\":%.1f,\"client_cpu_s\":%.3f,\"late_sends\":%" PRIu64
          ",\"max_send_lag_us\":%" PRId64 ",\"checked\":%" PRIu64 ",\"check_mismatch\":%" PRIu64
          ",\"unfinished\":%" PRIu64 ",\"status\":{",
          ok, err, (double)ok / secs, (double)ids / secs, cpu_s, late, lag / 1000, checked,
          mismatch, unfinished);
  int first = 1;
  for (int s = 0; s < 17; s++)
    if (status[s]) fprintf(f, "%s\"%d\":%" PRIu64, first ? "" : ",", s, status[s]), first = 0;
  fputs("},\"latency_us\":", f);
  json_lat(f, h);
  fputs(",\"per_method\":{", f);
  first = 1;
  for (int m = 0; m < NMETHODS; m++) {
    if (all[m].n == 0) continue;
    fprintf(f, "%s\"%s\":{\"requests\":%" PRIu64 ",\"latency_us\":", first ? "" : ",",
            method_name[m], all[m].n);
    json_lat(f, &all[m]);
    fputc('}', f);
    first = 0;
  }
  fputs("}}\n", f);
  if (f != stdout) fclose(f);
  free(all);
}

/* ---- Main ---- */

static void usage(void) {
  fprintf(stderr,
          "usage: catalog-bench --target HOST:PORT --samples FILE [options]\n"
          "  --method validate|product|variants|vbatch|mix   (default validate)\n"
          "  --mix validate:70,product:10,variants:10,vbatch:10  weights for --method mix\n"
          "  --batch N          ids per batch request (default 100)\n"
          "  --connections C    HTTP/2 connections (default 4)\n"
          "  --inflight M       calls in flight per connection, closed loop (default 16)\n"
          "  --rate R           open loop: R calls/s in total (latency from intended send)\n"
          "  --tick-us U        open loop: wake every U us and start the calls due by then\n"
          "                     (fewer, fuller writes: cheaper for the client; adds < U us)\n"
          "  --threads T        client threads, each with its own completion queue\n"
          "                     (default min(C, CPUs))\n"
          "  --duration S --warmup S   measured and discarded seconds (default 10, 2)\n"
          "  --drain S          wait for late replies after the end (default 5)\n"
          "  --deadline-ms D    per-call deadline (default 10000)\n"
          "  --check            unpack every reply and compare with the sample classes\n"
          "  --fixed            always send the same request (for comparing with h2load)\n"
          "  --json FILE|-      results as JSON (default: stdout)\n"
          "  --label L          name in the output\n"
          "  --dump-request F   write one gRPC-framed request to F (for h2load -d) and exit\n"
          "  --seed N\n");
  exit(2);
}

static void parse_mix(const char *s) {
  memset(O.weights, 0, sizeof O.weights);
  char buf[256];
  snprintf(buf, sizeof buf, "%s", s);
  for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
    char *colon = strchr(tok, ':');
    if (!colon) usage();
    *colon = '\0';
    int m = 0;
    while (m < NMETHODS && strcmp(method_key[m], tok) != 0)
      m++;
    if (m == NMETHODS) usage();
    O.weights[m] = atoi(colon + 1);
  }
}

static void parse(int argc, char **argv) {
  parse_mix("validate:70,product:10,variants:10,vbatch:10");
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--check")) {
      O.check = 1;
      continue;
    }
    if (!strcmp(a, "--fixed")) {
      O.fixed = 1;
      continue;
    }
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--target"))
      O.target = v;
    else if (!strcmp(a, "--samples"))
      O.samples = v;
    else if (!strcmp(a, "--json"))
      O.json = v;
    else if (!strcmp(a, "--label"))
      O.label = v;
    else if (!strcmp(a, "--dump-request"))
      O.dump = v;
    else if (!strcmp(a, "--mix"))
      parse_mix(v);
    else if (!strcmp(a, "--batch"))
      O.batch = atoi(v);
    else if (!strcmp(a, "--connections"))
      O.connections = atoi(v);
    else if (!strcmp(a, "--inflight"))
      O.inflight = atoi(v);
    else if (!strcmp(a, "--threads"))
      O.threads = atoi(v);
    else if (!strcmp(a, "--rate"))
      O.rate = atof(v);
    else if (!strcmp(a, "--duration"))
      O.duration = atof(v);
    else if (!strcmp(a, "--warmup"))
      O.warmup = atof(v);
    else if (!strcmp(a, "--drain"))
      O.drain = atof(v);
    else if (!strcmp(a, "--deadline-ms"))
      O.deadline_ms = atoi(v);
    else if (!strcmp(a, "--tick-us"))
      O.tick_ns = (int64_t)atoi(v) * 1000;
    else if (!strcmp(a, "--seed"))
      O.seed = (unsigned)atoi(v);
    else if (!strcmp(a, "--method")) {
      O.method = -2;
      for (int m = 0; m < NMETHODS; m++)
        if (!strcmp(v, method_key[m])) O.method = m;
      if (!strcmp(v, "mix")) O.method = -1;
      if (O.method == -2) usage();
    } else
      usage();
  }
  if (!O.samples || (!O.target && !O.dump)) usage();
  if (O.batch < 1 || O.connections < 1 || O.inflight < 1 || O.duration <= 0 || O.warmup < 0)
    usage();
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  if (O.tick_ns < 0 || (O.tick_ns > 0 && O.rate <= 0)) usage(); /* a grid paces an open loop */
  if (O.threads <= 0) O.threads = O.connections < cpus ? O.connections : (int)cpus;
  if (O.threads > O.connections) O.threads = O.connections;
}

static void dump_request(void) {
  int m = O.method >= 0 ? O.method : M_VALIDATE;
  const grpc_slice *p = &POOL[m].r[0].payload;
  uint32_t n = (uint32_t)GRPC_SLICE_LENGTH(*p);
  uint8_t hdr[5] = {0, (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
  FILE *f = fopen(O.dump, "wb");
  if (!f || fwrite(hdr, 1, 5, f) != 5 || fwrite(GRPC_SLICE_START_PTR(*p), 1, n, f) != n ||
      fclose(f) != 0)
    die("%s: cannot write", O.dump);
  printf("%s\n", method_path[m]);
}

int main(int argc, char **argv) {
  parse(argc, argv);
  load_samples(O.samples);
  uint64_t rng = 0x9e3779b97f4a7c15ULL ^ O.seed;
  for (int m = 0; m < NMETHODS; m++)
    if (O.method == m || (O.method < 0 && O.weights[m] > 0) || (O.dump && m == M_VALIDATE))
      build_pool(m, &rng);
  if (O.dump) {
    dump_request();
    return 0;
  }
  grpc_init();
  struct thr *ts = calloc((size_t)O.threads, sizeof *ts);
  grpc_channel_credentials *creds = grpc_insecure_credentials_create();
  grpc_arg args[3] = {
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, .value.integer = 1},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ENABLE_HTTP_PROXY, .value.integer = 0},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       .value.integer = 64 << 20}};
  grpc_channel_args chargs = {.num_args = 3, .args = args};
  for (int i = 0; i < O.threads; i++) {
    struct thr *t = &ts[i];
    t->idx = i;
    t->rng = rng ^ ((uint64_t)(i + 1) * 0xbf58476d1ce4e5b9ULL);
    t->cq = grpc_completion_queue_create_for_next(NULL);
    t->nconns = O.connections / O.threads + (i < O.connections % O.threads);
    t->conns = calloc((size_t)t->nconns, sizeof *t->conns);
    for (int k = 0; k < t->nconns; k++) {
      t->conns[k].ch = grpc_channel_create(O.target, creds, &chargs);
      for (int m = 0; m < NMETHODS; m++)
        t->conns[k].reg[m] = grpc_channel_register_call(t->conns[k].ch, method_path[m], NULL, NULL);
    }
  }
  grpc_channel_credentials_release(creds);
  struct rusage ru0, ru1;
  getrusage(RUSAGE_SELF, &ru0);
  /* The clock starts once every thread has its connections ready. */
  for (int i = 0; i < O.threads; i++) {
    pthread_mutex_init(&ts[i].mu, NULL);
    pthread_create(&ts[i].th, NULL, thread_main, &ts[i]);
  }
  pthread_t pacer;
  if (O.rate > 0) pthread_create(&pacer, NULL, pacer_main, ts);
  while (atomic_load(&ready_threads) < O.threads)
    usleep(1000); /* bounded: wait_ready dies */
  T_START = clock_mono_ns() + 1000000;
  T_MEASURE = T_START + (int64_t)(O.warmup * 1e9);
  T_END = T_MEASURE + (int64_t)(O.duration * 1e9);
  atomic_store(&go, 1);
  if (O.rate > 0) pthread_join(pacer, NULL);
  for (int i = 0; i < O.threads; i++)
    pthread_join(ts[i].th, NULL);
  getrusage(RUSAGE_SELF, &ru1);
  double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec + ru1.ru_stime.tv_sec -
                        ru0.ru_stime.tv_sec) +
               (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec + ru1.ru_stime.tv_usec -
                        ru0.ru_stime.tv_usec) /
                   1e6;
  report(ts, cpu);
  for (int i = 0; i < O.threads; i++) {
    struct call *c = ts[i].free_list;
    while (c) {
      struct call *n = c->next_free;
      free(c);
      c = n;
    }
    grpc_completion_queue_shutdown(ts[i].cq);
    while (grpc_completion_queue_next(ts[i].cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type !=
           GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(ts[i].cq);
    pthread_mutex_destroy(&ts[i].mu);
    free(ts[i].conns);
  }
  free(ts);
  grpc_shutdown();
  return 0;
}
