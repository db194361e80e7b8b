/*
 * tls.c - reloading certificate fetcher for the gRPC C core (see tls.h).
 */
#include "tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "xalloc.h"

struct file_id {
  ino_t ino;
  off_t size;
  struct timespec mtime;
};

struct tls {
  const struct config *cfg;
  pthread_mutex_t mu; /* guards ids, loaded */
  struct file_id ids[3];
  bool loaded;
};

static const char *path_of(const struct tls *t, int i) {
  return i == 0   ? t->cfg->tls_cert_file
         : i == 1 ? t->cfg->tls_key_file
                  : t->cfg->tls_client_ca_file;
}

/* Reads a whole file into a NUL-terminated buffer (caller frees); NULL on
 * error or if empty. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  long n;
  if (f == NULL) return NULL;
  if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (1 << 20) &&
      fseek(f, 0, SEEK_SET) == 0) {
    buf = xmalloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
      free(buf);
      buf = NULL;
    } else {
      buf[n] = '\0';
    }
  }
  fclose(f);
  return buf;
}

static int file_ids(const struct tls *t, struct file_id ids[3]) {
  memset(ids, 0, 3 * sizeof *ids);
  for (int i = 0; i < 3; i++) {
    struct stat st;
    if (path_of(t, i)[0] == '\0') continue;
    if (stat(path_of(t, i), &st) != 0) return -errno;
    ids[i] = (struct file_id){.ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
  }
  return 0;
}

/* Builds a core certificate config from the files; NULL if unreadable. */
static grpc_ssl_server_certificate_config *load(const struct tls *t) {
  char *cert = slurp(path_of(t, 0)), *key = slurp(path_of(t, 1));
  char *ca = path_of(t, 2)[0] ? slurp(path_of(t, 2)) : NULL;
  grpc_ssl_server_certificate_config *cfg = NULL;
  if (cert && key && (ca || path_of(t, 2)[0] == '\0')) {
    grpc_ssl_pem_key_cert_pair pair = {.private_key = key, .cert_chain = cert};
    /* The 1.51 core asserts root certs on the fetcher path even when client
     * certificates are not requested; they are unused then, so pass ours. */
    cfg = grpc_ssl_server_certificate_config_create(ca ? ca : cert, &pair, 1);
  }
  free(cert);
  free(key);
  free(ca);
  return cfg;
}

static grpc_ssl_certificate_config_reload_status fetch(void *arg,
                                                       grpc_ssl_server_certificate_config **out) {
  struct tls *t = arg;
  struct file_id ids[3];
  grpc_ssl_certificate_config_reload_status rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  pthread_mutex_lock(&t->mu);
  if (file_ids(t, ids) == 0 && (!t->loaded || memcmp(ids, t->ids, sizeof ids) != 0)) {
    grpc_ssl_server_certificate_config *cfg = load(t);
    if (cfg != NULL) {
      *out = cfg;
      memcpy(t->ids, ids, sizeof ids);
      rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
      log_info(t->loaded ? "TLS certificates reloaded" : "TLS certificates loaded",
               LF_B("mutual", t->cfg->tls_client_ca_file[0] != '\0'));
      t->loaded = true;
    } else {
      log_warn("TLS certificate files unreadable; keeping the previous ones", );
      rc = t->loaded ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED
                     : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
    }
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}

struct tls *tls_new(const struct config *cfg, char *err, size_t cap) {
  struct tls *t = xcalloc(1, sizeof *t);
  t->cfg = cfg;
  pthread_mutex_init(&t->mu, NULL);
  grpc_ssl_server_certificate_config *probe = load(t);
  if (probe == NULL) {
    snprintf(err, cap, "cannot read GRPC_TLS_CERT_FILE/GRPC_TLS_KEY_FILE%s",
             cfg->tls_client_ca_file[0] ? "/GRPC_TLS_CLIENT_CA_FILE" : "");
    tls_destroy(t);
    return NULL;
  }
  grpc_ssl_server_certificate_config_destroy(probe);
  return t;
}

void tls_destroy(struct tls *t) {
  if (t == NULL) return;
  pthread_mutex_destroy(&t->mu);
  free(t);
}

grpc_server_credentials *tls_credentials(struct tls *t) {
  grpc_ssl_client_certificate_request_type req =
      t->cfg->tls_client_ca_file[0] ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
  grpc_ssl_server_credentials_options *o =
      grpc_ssl_server_credentials_create_options_using_config_fetcher(req, fetch, t);
  return grpc_ssl_server_credentials_create_with_options(o);
}
