/*
 * probe.h - `catalogd --probe`: one gRPC health Check of the local server,
 * configured by the server's own environment (see probe.c).
 */
#ifndef CATALOGD_PROBE_H
#define CATALOGD_PROBE_H

#include "config.h"

/* Asks the catalogd that cfg describes (on loopback) whether it serves,
 * prints one line (SERVING / NOT_SERVING / UNREACHABLE, the target, why)
 * and returns the exit code: 0 SERVING, 1 otherwise. Bounded by
 * PROBE_TIMEOUT_MS (default 3000). Initialises and shuts down the gRPC
 * core itself. @locality main, before anything else of the server runs. */
int probe_run(const struct config *cfg);

#endif
