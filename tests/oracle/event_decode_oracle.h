/*
 * event_decode_oracle.h - the jansson change-event decoder that
 * sync/codec/event_decode.c replaced, kept for the tests only, and the comparison
 * of both decoders' results (differential testing).
 *
 * Not linked into catalogd: tests/CMakeLists.txt, tests/fuzz and bench/ add
 * these files to the programs that use them.
 */
#ifndef CATALOGD_EVENT_DECODE_ORACLE_H
#define CATALOGD_EVENT_DECODE_ORACLE_H

#include <stddef.h>

#include "event_decode.h"

/* The old event_decode(), same contract. */
int oracle_event_decode(const char *key, size_t keylen, const char *value, size_t valuelen,
                        struct event *ev, const char **why);

/* Decodes the message with the oracle and compares with what
 * event_decode() gave for it (rc, why, *ev, and ev->record field by field;
 * doubles bit for bit). Returns NULL if both agree, else a description of
 * the first difference (valid until the next call from the same thread).
 * Frees the oracle's record, never ev's. */
const char *oracle_compare(const char *key, size_t keylen, const char *value, size_t valuelen,
                           int rc, const char *why, const struct event *ev);

#endif
