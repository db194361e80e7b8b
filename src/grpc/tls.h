/*
 * tls.h - TLS and mutual TLS for the gRPC port, with certificate files
 * reloaded on change (GRPC_TLS_CERT_FILE, GRPC_TLS_KEY_FILE,
 * GRPC_TLS_CLIENT_CA_FILE).
 *
 * The core asks for the certificate configuration at every new handshake;
 * we answer "unchanged" unless a file's identity (inode, size, mtime)
 * changed, so a rotated certificate is used by the next connection with no
 * restart, and a half-written file never replaces a good one.
 *
 * @locality tls_new/tls_destroy: main thread; the fetcher: core threads.
 */
#ifndef CATALOGD_TLS_H
#define CATALOGD_TLS_H

#include <grpc/grpc_security.h>

#include "config.h"

struct tls;

/* Reads and checks the files (readable, valid PEM certificate chain and
 * private key, the key matching the certificate, valid client CAs). NULL
 * with "<VARIABLE> <path>: <reason>" in err (cap >= 2048 holds two paths)
 * if they cannot be used. Free with tls_destroy (NULL ok) after the server
 * is destroyed. A rotation to files that fail the same checks is logged
 * ("TLS certificate reload failed; keeping the previous certificates") and
 * the previous certificates stay in use. */
struct tls *tls_new(const struct config *cfg, char *err, size_t cap);
void tls_destroy(struct tls *t);

/* Server credentials that fetch from t (caller releases them). */
grpc_server_credentials *tls_credentials(struct tls *t);

#endif
