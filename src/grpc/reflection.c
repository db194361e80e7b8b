/*
 * reflection.c - server reflection from the embedded descriptor set.
 *
 * Files are served byte for byte as protoc wrote them; a request for a file
 * or symbol returns that file and everything it imports, transitively, as
 * the reflection protocol expects. The stream answers requests one at a
 * time: receive, answer, and only then receive the next.
 */
#include "reflection.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "descriptor_min.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "log.h"
#include "xalloc.h"

extern const unsigned char catalogd_descriptor_set[];
extern const size_t catalogd_descriptor_set_len;

struct rfile {
  char *name;
  ProtobufCBinaryData bytes; /* owned by reflection.set */
  size_t ndeps;
  int *deps; /* indices of imported files */
};

struct symbol {
  char *name; /* fully qualified, no leading dot */
  int file;
};

struct reflection {
  Catalogd__Desc__FileDescriptorSet *set;
  struct rfile *files;
  size_t nfiles;
  struct symbol *syms;
  size_t nsyms, capsyms;
  char **services;
  size_t nservices;
};

static void add_symbol(struct reflection *r, const char *scope, const char *name, int file) {
  if (r->nsyms == r->capsyms) {
    r->capsyms = r->capsyms ? 2 * r->capsyms : 64;
    r->syms = xrealloc(r->syms, r->capsyms * sizeof *r->syms);
  }
  size_t n = strlen(scope) + strlen(name) + 2;
  char *q = xmalloc(n);
  snprintf(q, n, "%s%s%s", scope, scope[0] ? "." : "", name);
  r->syms[r->nsyms++] = (struct symbol){.name = q, .file = file};
}

static void add_message(struct reflection *r, const char *scope,
                        const Catalogd__Desc__DescriptorProto *m, int file) {
  add_symbol(r, scope, m->name, file);
  /* Names are separate allocations: stable while r->syms grows. */
  const char *full = r->syms[r->nsyms - 1].name;
  for (size_t i = 0; i < m->n_enum_type; i++)
    add_symbol(r, full, m->enum_type[i]->name, file);
  for (size_t i = 0; i < m->n_nested_type; i++)
    add_message(r, full, m->nested_type[i], file);
}

static int find_file(const struct reflection *r, const char *name) {
  for (size_t i = 0; i < r->nfiles; i++)
    if (strcmp(r->files[i].name, name) == 0) return (int)i;
  return -1;
}

/* Indexes one file's symbols and services. */
static void index_file(struct reflection *r, const Catalogd__Desc__FileDescriptorProto *f,
                       int file) {
  const char *pkg = f->package ? f->package : "";
  for (size_t i = 0; i < f->n_message_type; i++)
    add_message(r, pkg, f->message_type[i], file);
  for (size_t i = 0; i < f->n_enum_type; i++)
    add_symbol(r, pkg, f->enum_type[i]->name, file);
  for (size_t i = 0; i < f->n_service; i++) {
    const Catalogd__Desc__ServiceDescriptorProto *s = f->service[i];
    add_symbol(r, pkg, s->name, file);
    char *svc = r->syms[r->nsyms - 1].name;
    r->services = xrealloc(r->services, (r->nservices + 1) * sizeof *r->services);
    r->services[r->nservices++] = svc;
    for (size_t k = 0; k < s->n_method; k++)
      add_symbol(r, svc, s->method[k]->name, file);
  }
}

struct reflection *reflection_new(void) {
  struct reflection *r = xcalloc(1, sizeof *r);
  Catalogd__Desc__FileDescriptorSet *set = r->set = catalogd__desc__file_descriptor_set__unpack(
      NULL, catalogd_descriptor_set_len, catalogd_descriptor_set);
  Catalogd__Desc__FileDescriptorProto **fds = NULL;
  /* One count for both passes: the static analyzer cannot see that
   * set->n_file stays put across the calls in between, and would follow the
   * second pass past the files the first one unpacked. */
  size_t nfiles = 0;
  if (set == NULL) goto fail;
  nfiles = r->nfiles = set->n_file;
  r->files = xcalloc(nfiles, sizeof *r->files);
  fds = xcalloc(nfiles, sizeof *fds);
  for (size_t i = 0; i < nfiles; i++) {
    fds[i] =
        catalogd__desc__file_descriptor_proto__unpack(NULL, set->file[i].len, set->file[i].data);
    if (fds[i] == NULL || fds[i]->name == NULL) goto fail;
    r->files[i].bytes = set->file[i];
    r->files[i].name = xmalloc(strlen(fds[i]->name) + 1);
    strcpy(r->files[i].name, fds[i]->name);
  }
  for (size_t i = 0; i < nfiles; i++) {
    r->files[i].deps = xcalloc(fds[i]->n_dependency + 1, sizeof(int));
    for (size_t k = 0; k < fds[i]->n_dependency; k++) {
      int d = find_file(r, fds[i]->dependency[k]);
      if (d >= 0) r->files[i].deps[r->files[i].ndeps++] = d;
    }
    index_file(r, fds[i], (int)i);
  }
  goto out;
fail:
  log_error("embedded descriptor set does not parse", LF_I("bytes", catalogd_descriptor_set_len));
  reflection_destroy(r);
  r = NULL;
out:
  for (size_t i = 0; set && i < set->n_file; i++)
    if (fds && fds[i]) catalogd__desc__file_descriptor_proto__free_unpacked(fds[i], NULL);
  free(fds);
  return r;
}

void reflection_destroy(struct reflection *r) {
  if (r == NULL) return;
  for (size_t i = 0; r->files && i < r->nfiles; i++) {
    free(r->files[i].name);
    free(r->files[i].deps);
  }
  for (size_t i = 0; i < r->nsyms; i++)
    free(r->syms[i].name);
  free(r->files);
  free(r->syms);
  free(r->services);
  if (r->set) catalogd__desc__file_descriptor_set__free_unpacked(r->set, NULL);
  free(r);
}

/* ---- The stream ---- */

typedef Grpc__Reflection__V1__ServerReflectionResponse Response;

/* Appends file f and, depth first, its imports to out (each once). */
static void collect(const struct reflection *r, int f, bool *seen, ProtobufCBinaryData *out,
                    size_t *n) {
  if (seen[f]) return;
  seen[f] = true;
  out[(*n)++] = r->files[f].bytes;
  for (size_t i = 0; i < r->files[f].ndeps; i++)
    collect(r, r->files[f].deps[i], seen, out, n);
}

static void answer_files(struct rpc_ctx *ctx, Response *resp, int f) {
  const struct reflection *r = ctx->service;
  Grpc__Reflection__V1__FileDescriptorResponse *fr = arena_alloc(ctx->arena, sizeof *fr);
  *fr = (Grpc__Reflection__V1__FileDescriptorResponse)
      GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
  bool *seen = arena_alloc(ctx->arena, r->nfiles * sizeof *seen);
  memset(seen, 0, r->nfiles * sizeof *seen);
  fr->file_descriptor_proto =
      arena_alloc(ctx->arena, r->nfiles * sizeof *fr->file_descriptor_proto);
  collect(r, f, seen, fr->file_descriptor_proto, &fr->n_file_descriptor_proto);
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
  resp->file_descriptor_response = fr;
}

static void answer_error(struct rpc_ctx *ctx, Response *resp, grpc_status_code code,
                         const char *msg) {
  Grpc__Reflection__V1__ErrorResponse *e = arena_alloc(ctx->arena, sizeof *e);
  *e = (Grpc__Reflection__V1__ErrorResponse)GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
  e->error_code = code;
  e->error_message = (char *)msg;
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
  resp->error_response = e;
}

static void answer_services(struct rpc_ctx *ctx, Response *resp) {
  const struct reflection *r = ctx->service;
  Grpc__Reflection__V1__ListServiceResponse *l = arena_alloc(ctx->arena, sizeof *l);
  *l = (Grpc__Reflection__V1__ListServiceResponse)GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
  l->service = arena_alloc(ctx->arena, (r->nservices + 1) * sizeof *l->service);
  for (size_t i = 0; i < r->nservices; i++) {
    Grpc__Reflection__V1__ServiceResponse *s = arena_alloc(ctx->arena, sizeof *s);
    *s = (Grpc__Reflection__V1__ServiceResponse)GRPC__REFLECTION__V1__SERVICE_RESPONSE__INIT;
    s->name = r->services[i];
    l->service[l->n_service++] = s;
  }
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
  resp->list_services_response = l;
}

static int find_symbol(const struct reflection *r, const char *name) {
  if (name[0] == '.') name++;
  for (size_t i = 0; i < r->nsyms; i++)
    if (strcmp(r->syms[i].name, name) == 0) return r->syms[i].file;
  return -1;
}

static void answer_extensions(struct rpc_ctx *ctx, Response *resp, const char *type) {
  if (find_symbol(ctx->service, type) < 0) {
    answer_error(ctx, resp, GRPC_STATUS_NOT_FOUND, "type not found");
    return;
  }
  Grpc__Reflection__V1__ExtensionNumberResponse *x = arena_alloc(ctx->arena, sizeof *x);
  *x = (Grpc__Reflection__V1__ExtensionNumberResponse)
      GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
  x->base_type_name = (char *)type; /* catalogd's protos declare no extensions */
  resp->message_response_case =
      GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
  resp->all_extension_numbers_response = x;
}

static void answer(struct rpc_ctx *ctx, Grpc__Reflection__V1__ServerReflectionRequest *rq,
                   Response *resp) {
  const struct reflection *r = ctx->service;
  int f;
  switch (rq->message_request_case) {
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
    if ((f = find_file(r, rq->file_by_filename)) >= 0)
      answer_files(ctx, resp, f);
    else
      answer_error(ctx, resp, GRPC_STATUS_NOT_FOUND, "file not found");
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
    if ((f = find_symbol(r, rq->file_containing_symbol)) >= 0)
      answer_files(ctx, resp, f);
    else
      answer_error(ctx, resp, GRPC_STATUS_NOT_FOUND, "symbol not found");
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
    answer_extensions(ctx, resp, rq->all_extension_numbers_of_type);
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
    answer_services(ctx, resp);
    break;
  case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
    answer_error(ctx, resp, GRPC_STATUS_NOT_FOUND, "extension not found");
    break;
  default: answer_error(ctx, resp, GRPC_STATUS_INVALID_ARGUMENT, "empty reflection request");
  }
}

static void refl_start(struct stream *s, struct rpc_ctx *ctx) {
  (void)ctx;
  stream_recv(s);
}

static void refl_message(struct stream *s, struct rpc_ctx *ctx, const uint8_t *data, size_t len) {
  Grpc__Reflection__V1__ServerReflectionRequest *rq =
      grpc__reflection__v1__server_reflection_request__unpack(&ctx->arena->pb, len, data);
  if (rq == NULL) {
    stream_finish(s, GRPC_STATUS_INVALID_ARGUMENT, "request is not a ServerReflectionRequest");
    return;
  }
  Response resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
  resp.valid_host = rq->host;
  resp.original_request = rq;
  answer(ctx, rq, &resp);
  stream_send(s, &resp.base); /* packed now; the next recv waits for its completion */
}

static void refl_half_close(struct stream *s, struct rpc_ctx *ctx) {
  (void)ctx;
  stream_finish(s, GRPC_STATUS_OK, NULL);
}

static void refl_send_done(struct stream *s, struct rpc_ctx *ctx, bool ok) {
  (void)ctx;
  if (ok) stream_recv(s);
}

static void refl_closed(struct stream *s) { (void)s; }

const struct stream_ops reflection_ops = {
    .on_start = refl_start,
    .on_message = refl_message,
    .on_half_close = refl_half_close,
    .on_send_done = refl_send_done,
    .on_closed = refl_closed,
};
