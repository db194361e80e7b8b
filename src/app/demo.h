/*
 * demo.h - the built-in demo catalog, for `make run` with no external
 * server: two tenants, brands, tags, collections, products in every status
 * and variants with images. Ids are fixed so the README's example calls
 * keep working.
 */
#ifndef CATALOGD_DEMO_H
#define CATALOGD_DEMO_H

#include <stddef.h>

#include "model.h"

/* The id of the demo's first (active, sellable) variant, and its tenant. */
#define DEMO_ORG        "demo-org"
#define DEMO_VARIANT_ID "d2000000-0000-4000-8000-000000000001"
#define DEMO_PRODUCT_ID "d1000000-0000-4000-8000-000000000001"

/* Builds the whole demo catalog, handing each new record to emit (which
 * takes ownership). Returns the number of records. */
size_t demo_build(void (*emit)(struct cat_hdr *rec, void *arg), void *arg);

#endif
