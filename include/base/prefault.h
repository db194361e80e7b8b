/*
 * prefault.h - faults in, on a thread of its own, the memory a bulk build
 * is about to allocate.
 *
 * A whole-state build (checkpoint, peer, warm load, replay) allocates
 * ~0.5 GB at 1M variants into fresh pages, and the kernel zeroes each page
 * at its first touch, on the building thread. On the virtual machines this
 * was measured on that was the largest single cost of a start-up (1.1 s of
 * a 3 s peer transfer: docs/performance.md, "Fresh memory"). A prefaulter
 * watches where the building thread allocates (prefault_note with the
 * address of a record it just built) and asks the kernel to populate the
 * next PREFAULT_AHEAD bytes of that same mapping (MADV_POPULATE_WRITE),
 * so the zeroing runs on another CPU ahead of the build.
 *
 * It is only a hint: populating changes no byte (the pages were going to
 * be zero-filled on first touch anyway), only anonymous private read-write
 * mappings are touched (checked in /proc/self/maps), and a kernel without
 * MADV_POPULATE_WRITE (before 5.14) makes it do nothing. It costs at most
 * PREFAULT_AHEAD of resident memory the allocator may not use, and that
 * stays resident after prefault_stop: malloc_trim does not trim the top
 * of a thread's arena (docs/ARCHITECTURE.md).
 */
#ifndef CATALOGD_PREFAULT_H
#define CATALOGD_PREFAULT_H

#include <stddef.h>

#define PREFAULT_AHEAD (32u << 20)

struct prefault;

/* Starts a prefaulter thread. Returns NULL if it cannot (then notes on
 * NULL are no-ops, as everything else here). */
struct prefault *prefault_start(void);

/* p was just allocated by the build: the memory after it (in its mapping)
 * is next. Cheap (one relaxed store); any thread. NULL pf: no-op. */
void prefault_note(struct prefault *pf, const void *p);

/* Stops the thread and frees pf; returns how many bytes it populated.
 * NULL: no-op (0). */
size_t prefault_stop(struct prefault *pf);

#endif
