/*
 * tls.c - reloading certificate fetcher for the gRPC C core (see tls.h).
 *
 * Every set of files is checked here, with libcrypto (the library the core
 * itself uses), before the core sees it: each file readable, the
 * certificate chain and the client CAs valid PEM certificates, the key a
 * valid PEM private key that matches the first certificate. The core only
 * finds out when it builds its handshaker factory, and then says "Invalid
 * private key." without the file, while grpc_server_add_http2_port just
 * fails (which was reported as "Address already in use"). A set that fails
 * the check is named in the error (variable, path, reason): at start-up the
 * server refuses to start; on a rotation the previous certificates stay in
 * use and the failure is logged once per change of the files.
 */
#include "tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "xalloc.h"

#define TLS_FILE_MAX (1 << 20) /* larger than any sane PEM bundle */

enum { F_CERT, F_KEY, F_CA, F_N };
static const char *const file_vars[F_N] = {"GRPC_TLS_CERT_FILE", "GRPC_TLS_KEY_FILE",
                                           "GRPC_TLS_CLIENT_CA_FILE"};

struct file_id {
  ino_t ino;
  off_t size;
  struct timespec mtime;
};

struct tls {
  const struct config *cfg;
  pthread_mutex_t mu;          /* guards ids, bad_ids, loaded, failed */
  struct file_id ids[F_N];     /* of the files in use */
  struct file_id bad_ids[F_N]; /* of the last set that failed (logged once) */
  bool loaded, failed;
};

static const char *path_of(const struct tls *t, int i) {
  return i == F_CERT  ? t->cfg->tls_cert_file
         : i == F_KEY ? t->cfg->tls_key_file
                      : t->cfg->tls_client_ca_file;
}

/* Reads the whole file at path into *out (NUL-terminated, caller frees).
 * Returns 0, -errno (open or read failed), -ENODATA (empty) or -EFBIG. */
static int slurp(const char *path, char **out) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0;
  int rc = 0;
  *out = NULL;
  if (f == NULL) return -errno;
  buf = xmalloc(TLS_FILE_MAX + 1);
  n = fread(buf, 1, TLS_FILE_MAX + 1, f);
  if (ferror(f))
    rc = errno ? -errno : -EIO;
  else if (n == 0)
    rc = -ENODATA;
  else if (n > TLS_FILE_MAX)
    rc = -EFBIG;
  fclose(f);
  if (rc != 0) {
    free(buf);
    return rc;
  }
  buf[n] = '\0';
  *out = buf;
  return 0;
}

/* libcrypto's reason for the last failure on this thread (static text). */
static const char *crypto_reason(void) {
  unsigned long e = ERR_peek_last_error();
  const char *r = e ? ERR_reason_error_string(e) : NULL;
  return r ? r : "unknown error";
}

/* Parses every PEM certificate in pem; the first goes to *first (caller
 * frees) if first is not NULL. Returns how many, or -1 if a certificate is
 * malformed or there is none (libcrypto's reason then in crypto_reason()). */
static int pem_certs(const char *pem, X509 **first) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  int n = 0;
  X509 *x;
  if (b == NULL) return -1;
  ERR_clear_error();
  while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
    if (n++ == 0 && first != NULL)
      *first = x;
    else
      X509_free(x);
  }
  /* The loop ends on "no start line" at the end of the text: anything else
   * is a malformed certificate. */
  unsigned long e = ERR_peek_last_error();
  bool clean_end =
      n > 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  BIO_free(b);
  if (clean_end) {
    ERR_clear_error();
    return n;
  }
  if (n > 0 && first != NULL) {
    X509_free(*first);
    *first = NULL;
  }
  return -1;
}

/* Parses the PEM private key in pem; NULL if there is none or it is
 * malformed (reason in crypto_reason()). */
static EVP_PKEY *pem_key(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k = NULL;
  if (b == NULL) return NULL;
  ERR_clear_error();
  k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
  BIO_free(b);
  return k;
}

/* Checks the PEM texts (pem[F_CA] NULL without mutual TLS). Returns 0, or
 * -EINVAL with "<VAR> <path>: <reason>" in err. */
static int check_pem(const struct tls *t, char *const pem[F_N], char *err, size_t cap) {
  X509 *cert = NULL;
  EVP_PKEY *key = NULL;
  int rc = -EINVAL;
  if (pem_certs(pem[F_CERT], &cert) < 0) {
    snprintf(err, cap, "%s %s: not a valid PEM certificate chain (%s)", file_vars[F_CERT],
             path_of(t, F_CERT), crypto_reason());
    goto out;
  }
  if ((key = pem_key(pem[F_KEY])) == NULL) {
    snprintf(err, cap, "%s %s: not a valid PEM private key (%s)", file_vars[F_KEY],
             path_of(t, F_KEY), crypto_reason());
    goto out;
  }
  ERR_clear_error();
  if (X509_check_private_key(cert, key) != 1) {
    snprintf(err, cap, "%s %s does not match the certificate in %s %s (%s)", file_vars[F_KEY],
             path_of(t, F_KEY), file_vars[F_CERT], path_of(t, F_CERT), crypto_reason());
    goto out;
  }
  if (pem[F_CA] != NULL && pem_certs(pem[F_CA], NULL) < 0) {
    snprintf(err, cap, "%s %s: not a valid PEM certificate bundle (%s)", file_vars[F_CA],
             path_of(t, F_CA), crypto_reason());
    goto out;
  }
  rc = 0;
out:
  X509_free(cert);
  EVP_PKEY_free(key);
  ERR_clear_error();
  return rc;
}

/* Reads and checks the files and builds the core's certificate config
 * into *out. Returns 0, or a negative errno with the variable, path and
 * reason in err. */
static int load(const struct tls *t, grpc_ssl_server_certificate_config **out, char *err,
                size_t cap) {
  char *pem[F_N] = {NULL, NULL, NULL};
  int rc = 0;
  *out = NULL;
  for (int i = 0; i < F_N && rc == 0; i++) {
    if (path_of(t, i)[0] == '\0') continue; /* only the CA is optional */
    if ((rc = slurp(path_of(t, i), &pem[i])) != 0)
      snprintf(err, cap, "%s %s: %s", file_vars[i], path_of(t, i),
               rc == -ENODATA ? "empty file"
               : rc == -EFBIG ? "larger than 1 MiB"
                              : strerror(-rc));
  }
  if (rc == 0) rc = check_pem(t, pem, err, cap);
  if (rc == 0) {
    grpc_ssl_pem_key_cert_pair pair = {.private_key = pem[F_KEY], .cert_chain = pem[F_CERT]};
    /* The 1.51 core asserts root certs on the fetcher path even when client
     * certificates are not requested; they are unused then, so pass ours. */
    *out = grpc_ssl_server_certificate_config_create(pem[F_CA] ? pem[F_CA] : pem[F_CERT], &pair, 1);
  }
  for (int i = 0; i < F_N; i++)
    free(pem[i]);
  return rc;
}

/* Identity (inode, size, mtime) of each configured file. Returns 0, or
 * -errno with the variable and path in err if one cannot be stat()ed. */
static int file_ids(const struct tls *t, struct file_id ids[F_N], char *err, size_t cap) {
  memset(ids, 0, F_N * sizeof *ids);
  for (int i = 0; i < F_N; i++) {
    struct stat st;
    if (path_of(t, i)[0] == '\0') continue;
    if (stat(path_of(t, i), &st) != 0) {
      int e = errno;
      if (snprintf(err, cap, "%s %s: %s", file_vars[i], path_of(t, i), strerror(e)) >= (int)cap)
        err[cap - 1] = '\0'; /* a long path is cut: still names the variable */
      return -e;
    }
    ids[i] = (struct file_id){.ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
  }
  return 0;
}

/* A set of files that cannot be used: logged once per change of the files
 * (every handshake asks again), never as "reloaded". Called with t->mu. */
static grpc_ssl_certificate_config_reload_status
reload_failed(struct tls *t, const struct file_id ids[F_N], const char *err) {
  if (!t->failed || memcmp(ids, t->bad_ids, sizeof t->bad_ids) != 0) {
    log_error("TLS certificate reload failed; keeping the previous certificates",
              LF_S("error", err));
    memcpy(t->bad_ids, ids, sizeof t->bad_ids);
    t->failed = true;
  }
  return t->loaded ? GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED
                   : GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_FAIL;
}

/* The core's fetcher, at every handshake: a new config only when the files
 * changed and the new set passes the checks. @locality core threads. */
static grpc_ssl_certificate_config_reload_status fetch(void *arg,
                                                       grpc_ssl_server_certificate_config **out) {
  struct tls *t = arg;
  struct file_id ids[F_N];
  char err[2048]; /* two paths of up to 512 bytes and a reason */
  grpc_ssl_server_certificate_config *cfg = NULL;
  grpc_ssl_certificate_config_reload_status rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_UNCHANGED;
  pthread_mutex_lock(&t->mu);
  if (file_ids(t, ids, err, sizeof err) != 0) {
    rc = reload_failed(t, ids, err);
  } else if (!t->loaded || memcmp(ids, t->ids, sizeof ids) != 0) {
    if (load(t, &cfg, err, sizeof err) != 0) {
      rc = reload_failed(t, ids, err);
    } else {
      *out = cfg;
      memcpy(t->ids, ids, sizeof ids);
      rc = GRPC_SSL_CERTIFICATE_CONFIG_RELOAD_NEW;
      log_info(t->loaded ? "TLS certificates reloaded" : "TLS certificates loaded",
               LF_B("mutual", t->cfg->tls_client_ca_file[0] != '\0'));
      t->loaded = true, t->failed = false;
    }
  }
  pthread_mutex_unlock(&t->mu);
  return rc;
}

struct tls *tls_new(const struct config *cfg, char *err, size_t cap) {
  struct tls *t = xcalloc(1, sizeof *t);
  grpc_ssl_server_certificate_config *probe = NULL;
  t->cfg = cfg;
  pthread_mutex_init(&t->mu, NULL);
  if (cfg->tls_key_file[0] == '\0') {
    snprintf(err, cap, "GRPC_TLS_CERT_FILE is set but GRPC_TLS_KEY_FILE is not");
    goto fail;
  }
  if (load(t, &probe, err, cap) != 0) goto fail;
  grpc_ssl_server_certificate_config_destroy(probe);
  return t;
fail:
  tls_destroy(t);
  return NULL;
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
