/*
 * publish.c - commit a store transaction, timed (see publish.h).
 *
 * The duration is the swap plus the RCU grace period store_commit waits
 * for: what a slow reader costs the writer.
 */
#include "publish.h"

#include "clock.h"
#include "metrics.h"
#include "store.h"

uint64_t publish_commit(struct store_txn *t, struct metrics *m, uint64_t *ns) {
  int64_t t0 = clock_mono_ns();
  uint64_t v = store_commit(t);
  *ns = (uint64_t)(clock_mono_ns() - t0);
  metrics_observe_publish(m, *ns);
  return v;
}
