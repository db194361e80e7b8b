/*
 * reflection.h - gRPC server reflection (v1 and v1alpha, same wire format),
 * so grpcurl and `buf curl` work without a proto file.
 *
 * The index is built once at start from the FileDescriptorSet embedded at
 * build time (every served proto with its imports) and is read-only after.
 */
#ifndef CATALOGD_REFLECTION_H
#define CATALOGD_REFLECTION_H

#include "stream.h"

struct reflection;

/* Builds the index from the embedded descriptor set. NULL if it does not
 * parse (a build defect). Free with reflection_destroy (NULL ok). */
struct reflection *reflection_new(void);
void reflection_destroy(struct reflection *r);

/* ServerReflectionInfo: stream handler (ctx->service: the struct reflection). */
extern const struct stream_ops reflection_ops;

#endif
