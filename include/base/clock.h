/*
 * clock.h - the two clocks catalogd reads, as integer nanoseconds.
 *
 * Monotonic time measures durations and deadlines (it never jumps); wall
 * time stamps what leaves the process (snapshot build time, event lag
 * against the producer's timestamp, log lines). Any thread may call these.
 */
#ifndef CATALOGD_CLOCK_H
#define CATALOGD_CLOCK_H

#include <stdint.h>
#include <time.h>

#define CLOCK_NS_PER_MS 1000000LL
#define CLOCK_NS_PER_S  1000000000LL

static inline int64_t clock__ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (int64_t)ts.tv_sec * CLOCK_NS_PER_S + ts.tv_nsec;
}

/* Nanoseconds on CLOCK_MONOTONIC (since an arbitrary point). */
static inline int64_t clock_mono_ns(void) { return clock__ns(CLOCK_MONOTONIC); }

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
static inline int64_t clock_wall_ns(void) { return clock__ns(CLOCK_REALTIME); }

/* Milliseconds on CLOCK_MONOTONIC. */
static inline int64_t clock_mono_ms(void) { return clock_mono_ns() / CLOCK_NS_PER_MS; }

/* Seconds on CLOCK_MONOTONIC, for durations that are logged as seconds. */
static inline double clock_mono_s(void) { return (double)clock_mono_ns() / CLOCK_NS_PER_S; }

#endif
