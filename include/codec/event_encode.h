/*
 * event_encode.h - records to change events (the inverse of event_decode),
 * for the embedded demo broker and for tools that generate test data.
 *
 * @locality any thread.
 */
#ifndef CATALOGD_EVENT_ENCODE_H
#define CATALOGD_EVENT_ENCODE_H

#include "model.h"

/* The Kafka key ("<org>/<type>/<id>") and the JSON value of an upsert event
 * carrying rec (or a *.deleted event if rec is a tombstone). Both malloc'd;
 * the caller frees them. Returns 0 or -ENOMEM. */
int event_encode(const struct cat_hdr *rec, char **key, char **value);

#endif
