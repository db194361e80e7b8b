/*
 * noop_server.c - the reference for "how fast can the gRPC C core answer a
 * unary call here": catalog.CatalogService/ValidateVariant answered with a
 * fixed, pre-packed ValidateVariantResponse of the size of a typical hit,
 * and the same trailing metadata catalogd sends.
 *
 * Same threading as catalogd (src/grpc/server.c): GRPC_MAX_WORKERS workers, each
 * with its own completion queue registered with the server, 16 requests
 * pre-posted per worker, the handler inline on the worker, one batch
 * {SEND_INITIAL_METADATA, SEND_MESSAGE, SEND_STATUS_FROM_SERVER,
 * RECV_CLOSE_ON_SERVER} per call, the request delivered with the new-call
 * event (GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER) and read into one slice
 * as catalogd does, but never decoded. Same channel arguments.
 *
 * It deliberately shares no code with src/: only the generated protobuf-c
 * messages (to pack the fixed reply). Whatever catalogd spends beyond this
 * server is catalogd's own cost: decoding, lookup, encoding, metrics, RCU.
 *
 * Environment: GRPC_PORT (default 50053; 0 = any), GRPC_LISTEN_ADDRESS
 * (default 127.0.0.1), GRPC_MAX_WORKERS (default: CPUs). Prints
 * "LISTENING <port>" when serving; SIGTERM/SIGINT stop it (exit 0).
 */
#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "catalog.pb-c.h"

#define PREPOSTED 16
#define PATH      "/catalog.CatalogService/ValidateVariant"

static grpc_server *srv;
static void *method;
static grpc_slice reply_slice;
static atomic_bool stopping;
static atomic_long live_calls;

struct call {
  int stage; /* 0: waiting for a call, 1: reply sent */
  grpc_completion_queue *cq;
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload, *reply;
  grpc_metadata trailer;
  grpc_slice details;
  int cancelled;
};

static void request(grpc_completion_queue *cq) {
  struct call *c = calloc(1, sizeof *c);
  c->cq = cq;
  c->details = grpc_empty_slice();
  grpc_metadata_array_init(&c->md);
  atomic_fetch_add(&live_calls, 1);
  if (grpc_server_request_registered_call(srv, method, &c->call, &c->deadline, &c->md, &c->payload,
                                          cq, cq, c) != GRPC_CALL_OK) {
    grpc_metadata_array_destroy(&c->md);
    atomic_fetch_sub(&live_calls, 1);
    free(c);
  }
}

static void call_free(struct call *c) {
  grpc_metadata_array_destroy(&c->md);
  if (c->payload) grpc_byte_buffer_destroy(c->payload);
  if (c->reply) grpc_byte_buffer_destroy(c->reply);
  if (c->call) grpc_call_unref(c->call);
  atomic_fetch_sub(&live_calls, 1);
  free(c);
}

static void on_new(struct call *c) {
  if (!atomic_load(&stopping)) request(c->cq);
  /* Read the request like a real handler would, then ignore it. */
  grpc_byte_buffer_reader r;
  if (c->payload && grpc_byte_buffer_reader_init(&r, c->payload)) {
    grpc_slice req = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    grpc_slice_unref(req);
  }
  c->reply = grpc_raw_byte_buffer_create(&reply_slice, 1);
  c->trailer.key = grpc_slice_from_static_string("x-catalog-snapshot-version");
  c->trailer.value = grpc_slice_from_static_string("1");
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = c->reply;
  ops[2].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[2].data.send_status_from_server.status = GRPC_STATUS_OK;
  ops[2].data.send_status_from_server.status_details = &c->details;
  ops[2].data.send_status_from_server.trailing_metadata = &c->trailer;
  ops[2].data.send_status_from_server.trailing_metadata_count = 1;
  ops[3].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[3].data.recv_close_on_server.cancelled = &c->cancelled;
  c->stage = 1;
  if (grpc_call_start_batch(c->call, ops, 4, c, NULL) != GRPC_CALL_OK) call_free(c);
}

static void *worker(void *arg) {
  grpc_completion_queue *cq = arg;
  for (int i = 0; i < PREPOSTED; i++)
    request(cq);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    struct call *c = ev.tag;
    if (c->stage == 0 && ev.success)
      on_new(c);
    else
      call_free(c);
  }
  return NULL;
}

static grpc_slice fixed_reply(void) {
  Catalog__ValidateVariantResponse r = CATALOG__VALIDATE_VARIANT_RESPONSE__INIT;
  r.exists = 1, r.is_active = 1;
  r.variant_id = "5b9e0c1e-3f7a-4d2b-9c8e-1a2b3c4d5e6f";
  r.product_id = "0f1e2d3c-4b5a-4697-8877-665544332211";
  r.sku = "SKU-0012345-03", r.barcode = "7790000123456", r.warehouse_id = "WH-03";
  r.track_inventory = 1, r.default_min_stock = 7, r.default_max_stock = 512;
  r.price = 123.45, r.message = "Variant validated successfully";
  grpc_slice s = grpc_slice_malloc(protobuf_c_message_get_packed_size(&r.base));
  protobuf_c_message_pack(&r.base, GRPC_SLICE_START_PTR(s));
  return s;
}

static int env_int(const char *name, int def) {
  const char *v = getenv(name);
  return v && *v ? atoi(v) : def;
}

int main(void) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL); /* before grpc_init: its threads inherit it */
  grpc_init();
  reply_slice = fixed_reply();
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  int nworkers = env_int("GRPC_MAX_WORKERS", cpus > 0 ? (int)cpus : 2);
  if (nworkers < 1 || nworkers > 256) nworkers = 2;
  grpc_arg args[3] = {
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_ALLOW_REUSEPORT, .value.integer = 0},
      {.type = GRPC_ARG_INTEGER,
       .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
       .value.integer = 4 << 20},
      {.type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONCURRENT_STREAMS, .value.integer = 1000}};
  grpc_channel_args ch = {.num_args = 3, .args = args};
  srv = grpc_server_create(&ch, NULL);
  method =
      grpc_server_register_method(srv, PATH, NULL, GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  grpc_completion_queue **cqs = calloc((size_t)nworkers, sizeof *cqs);
  for (int i = 0; i < nworkers; i++) {
    cqs[i] = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(srv, cqs[i], NULL);
  }
  grpc_completion_queue *shutdown_cq = grpc_completion_queue_create_for_pluck(NULL);
  char addr[300];
  const char *host = getenv("GRPC_LISTEN_ADDRESS");
  snprintf(addr, sizeof addr, "%s:%d", host && *host ? host : "127.0.0.1",
           env_int("GRPC_PORT", 50053));
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(srv, addr, creds);
  grpc_server_credentials_release(creds);
  if (port <= 0) {
    fprintf(stderr, "noop-server: cannot listen on %s\n", addr);
    return 1;
  }
  grpc_server_start(srv);
  pthread_t *th = calloc((size_t)nworkers, sizeof *th);
  for (int i = 0; i < nworkers; i++)
    pthread_create(&th[i], NULL, worker, cqs[i]);
  printf("LISTENING %d\n", port);
  fflush(stdout);
  int sig;
  sigwait(&set, &sig);
  atomic_store(&stopping, true);
  grpc_server_shutdown_and_notify(srv, shutdown_cq, srv);
  gpr_timespec grace =
      gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_seconds(2, GPR_TIMESPAN));
  if (grpc_completion_queue_pluck(shutdown_cq, srv, grace, NULL).type != GRPC_OP_COMPLETE) {
    grpc_server_cancel_all_calls(srv);
    grpc_completion_queue_pluck(shutdown_cq, srv, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  }
  for (int i = 0; i < 5000 && atomic_load(&live_calls) > 0; i++)
    usleep(1000);
  for (int i = 0; i < nworkers; i++) {
    grpc_completion_queue_shutdown(cqs[i]);
    pthread_join(th[i], NULL);
    grpc_completion_queue_destroy(cqs[i]);
  }
  grpc_server_destroy(srv);
  grpc_completion_queue_shutdown(shutdown_cq);
  grpc_completion_queue_destroy(shutdown_cq);
  grpc_slice_unref(reply_slice);
  free(cqs);
  free(th);
  grpc_shutdown();
  return 0;
}
