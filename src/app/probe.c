/*
 * probe.c - `catalogd --probe`: asks a running catalogd, over loopback, the
 * question an orchestrator asks (grpc.health.v1.Health/Check for the whole
 * server), so that a container HEALTHCHECK needs no extra binary.
 *
 * It reads the same environment as the server: GRPC_LISTEN_ADDRESS (a
 * wildcard is reached on loopback), GRPC_PORT, and the TLS files. With TLS
 * the probe does not verify the server's certificate: it talks to its own
 * container over loopback, to learn whether it serves, not whom it talks
 * to. With mutual TLS it presents GRPC_PROBE_CERT_FILE/GRPC_PROBE_KEY_FILE
 * if set, else the server's own pair (which the client CA must then have
 * signed).
 *
 * One call, one line on stdout, an exit code: 0 SERVING, 1 anything else
 * (NOT_SERVING, unreachable, a deadline of PROBE_TIMEOUT_MS, a bad setting):
 * never 2, which docker reserves in a HEALTHCHECK.
 */
#include "probe.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/log.h>
#include <grpc/support/time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/health/v1/health.pb-c.h"

/* Writes the loopback target for the configured listen address: a wildcard
 * becomes the loopback of its family; an IPv6 literal gets brackets. */
static void probe_target(const struct config *cfg, char *out, size_t cap) {
  const char *host = cfg->listen_addr;
  if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0) host = "127.0.0.1";
  if (strcmp(host, "::") == 0) host = "::1";
  bool v6 = strchr(host, ':') != NULL;
  snprintf(out, cap, "%s%s%s:%d", v6 ? "[" : "", host, v6 ? "]" : "", cfg->grpc_port);
}

/* The whole of file path, NUL-terminated, malloc'd; NULL if unreadable. */
static char *probe_read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) return NULL;
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      char *bigger = realloc(buf, cap = cap * 2 + 4096 + 1);
      if (bigger == NULL) break;
      buf = bigger;
    }
    size_t n = fread(buf + len, 1, cap - len - 1, f);
    len += n;
    if (n == 0) break;
  }
  int bad = ferror(f) || buf == NULL;
  fclose(f);
  if (bad) {
    free(buf);
    return NULL;
  }
  buf[len] = '\0';
  return buf;
}

/* The channel credentials: insecure without TLS; else TLS without server
 * verification, with a client pair when the server asks for one. NULL
 * with *why set if a file cannot be read. Caller releases. */
static grpc_channel_credentials *probe_credentials(const struct config *cfg, const char **why) {
  if (cfg->tls_cert_file[0] == '\0') return grpc_insecure_credentials_create();
  grpc_tls_identity_pairs *pairs = NULL;
  if (cfg->tls_client_ca_file[0] != '\0') {
    const char *cert = cfg->probe_cert_file, *key = cfg->probe_key_file;
    if (cert[0] == '\0') cert = cfg->tls_cert_file, key = cfg->tls_key_file;
    char *cert_pem = probe_read_file(cert), *key_pem = probe_read_file(key);
    if (cert_pem != NULL && key_pem != NULL) {
      pairs = grpc_tls_identity_pairs_create();
      grpc_tls_identity_pairs_add_pair(pairs, key_pem, cert_pem); /* copies */
    }
    free(cert_pem), free(key_pem);
    if (pairs == NULL) {
      *why = "cannot read the client certificate or key";
      return NULL;
    }
  }
  /* The options are consumed by grpc_tls_credentials_create (no destroy). */
  grpc_tls_credentials_options *o = grpc_tls_credentials_options_create();
  grpc_tls_credentials_options_set_verify_server_cert(o, 0);
  grpc_tls_credentials_options_set_check_call_host(o, 0);
  grpc_tls_certificate_verifier *v = grpc_tls_certificate_verifier_no_op_create();
  grpc_tls_credentials_options_set_certificate_verifier(o, v); /* takes its own ref */
  grpc_tls_certificate_verifier_release(v);
  if (pairs != NULL) {
    grpc_tls_certificate_provider *p =
        grpc_tls_certificate_provider_static_data_create(NULL, pairs);
    grpc_tls_credentials_options_set_certificate_provider(o, p); /* takes its own ref */
    grpc_tls_credentials_options_watch_identity_key_cert_pairs(o);
    grpc_tls_certificate_provider_release(p);
  }
  return grpc_tls_credentials_create(o);
}

/* Runs one Check on ch and waits for it on cq until deadline. Returns the
 * serving status (grpc.health.v1 enum), or -1 with *why set. */
static int probe_check(grpc_channel *ch, grpc_completion_queue *cq, gpr_timespec deadline,
                       const char **why) {
  grpc_slice method = grpc_slice_from_static_string("/grpc.health.v1.Health/Check");
  grpc_call *call =
      grpc_channel_create_call(ch, NULL, GRPC_PROPAGATE_DEFAULTS, cq, method, NULL, deadline, NULL);
  grpc_slice empty = grpc_empty_slice(); /* HealthCheckRequest{service: ""} */
  grpc_byte_buffer *req = grpc_raw_byte_buffer_create(&empty, 1), *reply = NULL;
  grpc_metadata_array md_in, md_trail;
  grpc_metadata_array_init(&md_in), grpc_metadata_array_init(&md_trail);
  grpc_status_code code = GRPC_STATUS_UNKNOWN;
  grpc_slice details = grpc_empty_slice();
  grpc_op ops[6] = {{.op = GRPC_OP_SEND_INITIAL_METADATA},  {.op = GRPC_OP_SEND_MESSAGE},
                    {.op = GRPC_OP_SEND_CLOSE_FROM_CLIENT}, {.op = GRPC_OP_RECV_INITIAL_METADATA},
                    {.op = GRPC_OP_RECV_MESSAGE},           {.op = GRPC_OP_RECV_STATUS_ON_CLIENT}};
  ops[1].data.send_message.send_message = req;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &md_in;
  ops[4].data.recv_message.recv_message = &reply;
  ops[5].data.recv_status_on_client.trailing_metadata = &md_trail;
  ops[5].data.recv_status_on_client.status = &code;
  ops[5].data.recv_status_on_client.status_details = &details;
  int status = -1;
  *why = "the call could not start";
  if (grpc_call_start_batch(call, ops, 6, call, NULL) == GRPC_CALL_OK) {
    /* The call's own deadline ends it; the queue waits a little longer. */
    grpc_event ev = grpc_completion_queue_next(
        cq, gpr_time_add(deadline, gpr_time_from_millis(1000, GPR_TIMESPAN)), NULL);
    *why = "no answer";
    if (ev.type == GRPC_OP_COMPLETE && code != GRPC_STATUS_OK)
      *why = code == GRPC_STATUS_DEADLINE_EXCEEDED ? "deadline exceeded" : "unreachable or refused";
    if (ev.type == GRPC_OP_COMPLETE && code == GRPC_STATUS_OK && reply != NULL) {
      grpc_byte_buffer_reader r;
      if (grpc_byte_buffer_reader_init(&r, reply)) {
        grpc_slice s = grpc_byte_buffer_reader_readall(&r);
        grpc_byte_buffer_reader_destroy(&r);
        Grpc__Health__V1__HealthCheckResponse *m = grpc__health__v1__health_check_response__unpack(
            NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
        if (m != NULL)
          status = (int)m->status;
        else
          *why = "unreadable answer";
        grpc__health__v1__health_check_response__free_unpacked(m, NULL);
        grpc_slice_unref(s);
      }
    }
  } else {
    grpc_call_cancel(call, NULL);
  }
  grpc_byte_buffer_destroy(req);
  grpc_byte_buffer_destroy(reply);
  grpc_slice_unref(details);
  grpc_metadata_array_destroy(&md_in), grpc_metadata_array_destroy(&md_trail);
  grpc_call_unref(call);
  return status;
}

/* Shuts cq down and drains it (the core requires an empty queue). */
static void probe_cq_destroy(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
}

int probe_run(const struct config *cfg) {
  long timeout_ms = cfg->probe_timeout_ms;
  char target[192];
  probe_target(cfg, target, sizeof target);
  gpr_set_log_verbosity(GPR_LOG_SEVERITY_ERROR); /* the core's connect chatter */
  grpc_init();
  const char *why = NULL;
  int status = -1;
  grpc_channel_credentials *creds = probe_credentials(cfg, &why);
  if (creds != NULL) {
    grpc_channel *ch = grpc_channel_create(target, creds, NULL);
    grpc_channel_credentials_release(creds);
    grpc_completion_queue *cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(timeout_ms, GPR_TIMESPAN));
    status = probe_check(ch, cq, deadline, &why);
    grpc_channel_destroy(ch);
    probe_cq_destroy(cq);
  }
  grpc_shutdown();
  if (status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
    printf("SERVING %s\n", target);
    return 0;
  }
  if (status >= 0)
    printf("%s %s\n",
           status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING
               ? "NOT_SERVING"
               : "UNKNOWN",
           target);
  else
    printf("UNREACHABLE %s: %s\n", target, why);
  return 1;
}
