/*
 * checkpoint.h - a snapshot as a byte stream (the checkpoint format), the
 * checkpoint files in CHECKPOINT_DIR, and the background thread that writes
 * them.
 *
 * The stream (docs/ARCHITECTURE.md, "Checkpoints") is a header (magic,
 * format version, the Kafka topic and per-partition next offsets the state
 * covers, live counts per kind), then blocks of records each with its
 * CRC-32C, then a trailer (record counts per kind, the state digest). It is written and read
 * through callbacks, in blocks of bounded size, so the same bytes can go to a file or (later) over
 * HTTP to a peer, with bounded memory on both sides.
 *
 * Reading trusts nothing: every length is bounded by what remains, every
 * block's checksum is checked before a byte of it is used, every record goes
 * through the model's builders (the same validation as events), and the
 * counts and the digest of the decoded state must equal the trailer's.
 */
#ifndef CATALOGD_CHECKPOINT_H
#define CATALOGD_CHECKPOINT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "model.h"
#include "store.h"

/* 2: tombstones say whether they were unversioned; 3: the digest (its
 * version 2: digest.c) and the exact counts are in the trailer */
#define CKPT_FORMAT_VERSION 3
#define CKPT_MAX_PARTS      65536
#define CKPT_TOPIC_MAX      255

struct ckpt_part {
  int32_t id;
  int64_t next; /* the next offset to read: every event before it is in the state */
};

/* What a checkpoint says about itself: its header, and after the body its
 * trailer (records, digest). */
struct ckpt_meta {
  char topic[CKPT_TOPIC_MAX + 1];
  uint32_t nparts;
  struct ckpt_part *parts;            /* malloc'd; ckpt_meta_clear frees it */
  uint64_t records[CAT_ENTITY_KINDS]; /* records per kind, tombstones included (trailer) */
  uint64_t live[CAT_ENTITY_KINDS];    /* live entities per kind */
  char digest[33];                    /* digest.h's hex of the live state (trailer) */
  uint64_t snap_version;              /* of the snapshot written (informative) */
  int64_t built_ns;                   /* when that snapshot was built (wall) */
};

/* Frees m->parts and zeroes *m. NULL is a no-op. */
void ckpt_meta_clear(struct ckpt_meta *m);

/* ---- The stream ---- */

/* Output: writes all n bytes; 0, or a negative errno (ends the encoding). */
typedef int (*ckpt_write_fn)(void *arg, const void *p, size_t n);
/* Input: reads up to n bytes; returns how many (0 at the end), or a
 * negative errno. */
typedef ssize_t (*ckpt_read_fn)(void *arg, void *p, size_t n);

/* Encodes s (pinned, or otherwise held still) as a checkpoint covering
 * meta's topic and partitions; moves meta's offsets to those s was
 * published with (where s has them), and fills meta's counts and digest
 * (the digest as the last bytes are written). Output
 * goes to w in pieces of at most about 64 KiB. Returns 0, or w's error.
 * @locality any registered thread; s must not be freed meanwhile. */
int ckpt_encode(const struct snapshot *s, struct ckpt_meta *meta, ckpt_write_fn w, void *arg);

struct ckpt_reader;

/* A reader of the stream r gives. Free with ckpt_reader_destroy. */
struct ckpt_reader *ckpt_reader_new(ckpt_read_fn r, void *arg);
void ckpt_reader_destroy(struct ckpt_reader *rd); /* NULL: no-op */

/* The whole stream's length, when known (a file's size): header counts
 * that so many bytes could hold size the maps at once, and others only as
 * the records come (a forged count must not reserve memory). */
void ckpt_reader_set_length(struct ckpt_reader *rd, uint64_t bytes);

/* Says whether the read should be given up now (the process is stopping). */
typedef bool (*ckpt_stop_fn)(void *arg);

/* Makes ckpt_read_body ask stop(arg) before each unit (block or trailer) it
 * reads, so that a stop ends even a read whose source never waits (a file
 * in the page cache, a fast peer) within one block: it then returns
 * -ECANCELED with why "stopped". stop NULL: never (the default). */
void ckpt_reader_set_stop(struct ckpt_reader *rd, ckpt_stop_fn stop, void *arg);

/* Reads and checks the header into *out (ckpt_meta_clear it). Returns 0;
 * -EBADMSG if it is not a checkpoint, another format version, or damaged;
 * -EIO (or r's error) if reading failed. why gets a short reason. */
int ckpt_read_header(struct ckpt_reader *rd, struct ckpt_meta *out, char *why, size_t cap);

/* After the header: reads every block into t (store_put of each record,
 * on a second thread: put_stage.h), then the trailer into meta's records
 * and digest, and checks that the stream ends there and that t's counts
 * and digest equal the trailer's. Returns 0; -EBADMSG if anything is
 * damaged or inconsistent (t then holds a partial state: abort it);
 * -ECANCELED once the stop (ckpt_reader_set_stop) said so (t likewise);
 * -EIO or r's error. Never crashes on any input. @locality the store's writer (t
 * is not touched by this thread while the body is read). */
int ckpt_read_body(struct ckpt_reader *rd, struct ckpt_meta *meta, struct store_txn *t, char *why,
                   size_t cap);

/* Decides whether a checkpoint's header is usable (topic, offsets against
 * the topic's retention): 0 yes, else a negative errno with why filled.
 * *moot set (never NULL) means the answer no longer matters (the body
 * failed: the checkpoint is refused anyway): a check that waits (a broker
 * that does not answer) should then end soon, with -ECANCELED. */
typedef int (*ckpt_accept_fn)(void *arg, const struct ckpt_meta *m, const atomic_bool *moot,
                              char *why, size_t cap);

/* accept(arg, meta, ...) judges the header read into meta, on a thread of
 * its own, while this thread reads the body as ckpt_read_body does: the
 * check (a broker round trip: tens of ms, more to a remote broker) no
 * longer comes before the first block. A refusal ends the body at the next
 * block and is what this returns (accept's result and reason, over the
 * body's); a body that fails on its own (damaged, truncated, unreadable)
 * sets accept's moot and is what this returns, unless accept refused all
 * the same; otherwise ckpt_read_body's result. accept reads only the
 * header's fields of meta (topic, partitions, live counts, version, time),
 * which the body leaves alone; it must end on its own (a stop included)
 * for this to return. accept NULL: ckpt_read_body. @locality the store's
 * writer (t as ckpt_read_body). */
int ckpt_read_body_accepting(struct ckpt_reader *rd, struct ckpt_meta *meta, ckpt_accept_fn accept,
                             void *arg, struct store_txn *t, char *why, size_t cap);

/* ---- Files ---- */

/* Written checkpoint: its name, size and how long writing took. */
struct ckpt_written {
  char path[4096];
  uint64_t bytes;
  double seconds;
};

/* Writes s to a new file in dir, crash-safe: a temporary file, fsync,
 * rename to checkpoint-<wall ns>.ckpt, fsync of the directory; then deletes
 * all but the newest keep checkpoints. If only the directory's fsync fails,
 * the new file stays, all but the newest keep + 1 are deleted, and the
 * error is returned (why says so). *deadline_ms (monotonic ms; 0 or a
 * NULL pointer: none), read before every piece written, so another thread
 * may set it meanwhile, abandons the write past it (-ETIMEDOUT, temp file
 * removed). Returns 0 or a negative errno with why filled. */
int ckpt_write_file(const char *dir, const struct snapshot *s, struct ckpt_meta *meta, int keep,
                    const _Atomic int64_t *deadline_ms, struct ckpt_written *out, char *why,
                    size_t cap);

/* The checkpoint files of dir, newest first (malloc'd array of malloc'd
 * paths; free with ckpt_list_free). Leftover temporary files of a crashed
 * write are deleted. Returns the count, or a negative errno. */
int ckpt_list(const char *dir, char ***paths);
void ckpt_list_free(char **paths, int n);

/* Loads the checkpoint at path into t: the header, then the body while
 * accept(arg, ...) judges the header (ckpt_read_body_accepting), asking
 * stop(arg) between blocks (NULL: never; a 1M-variant file takes
 * about a second to load, a SIGTERM must not wait for it). Returns 0 with
 * *meta filled (ckpt_meta_clear it), or a negative errno with why filled
 * (-EBADMSG damaged or foreign, accept's error, -ECANCELED stopped, -errno
 * of open or read); t may then hold part of it (abort it).
 * @locality the store's writer. */
int ckpt_load_file(const char *path, ckpt_accept_fn accept, ckpt_stop_fn stop, void *arg,
                   struct store_txn *t, struct ckpt_meta *meta, char *why, size_t cap);

/* ---- Peers (BOOTSTRAP_PEERS) ---- */

/* One address of a peer's admin port. */
struct ckpt_peer_addr {
  struct sockaddr_storage sa;
  socklen_t len;
  char host[256]; /* as named (the Host header) */
  char name[320]; /* "host:port (address)", for logs */
};

/* Resolves a "host:port[,host:port...]" list; a name may give several
 * addresses (all are kept, in the resolver's order). A name that does not
 * resolve is logged and left out. Returns how many (the malloc'd array in
 * *out, free it; NULL when 0). Blocks for the resolver (its own timeouts). */
int ckpt_peers_resolve(const char *list, struct ckpt_peer_addr **out);

/* What a transfer from a peer took. */
struct ckpt_peer_stats {
  uint64_t bytes;   /* body bytes received */
  double connect_s; /* until connected */
  double seconds;   /* the whole transfer, decoding included */
};

/* Says how far a transfer from p has come (body bytes so far); called about
 * every CKPT_PEER_PROGRESS_MS, and once at the start with 0. */
typedef void (*ckpt_peer_progress_fn)(void *arg, const struct ckpt_peer_addr *p, uint64_t bytes);
#define CKPT_PEER_PROGRESS_MS 250
/* The window over which min_bps is measured. */
#define CKPT_PEER_RATE_WINDOW_MS 10000

/* How to fetch from a peer: connecting, and any wait for a byte, bounded
 * by timeout_ms; the whole transfer by transfer_ms (0: unbounded); each
 * CKPT_PEER_RATE_WINDOW_MS of reading the body must bring min_bps bytes a
 * second on average (0: no check);
 * *stop set ends it within 100 ms or one block, whichever comes first
 * (-ECANCELED; NULL: never); accept(arg, ...) judges the
 * header while the body is read (ckpt_read_body_accepting; NULL: any);
 * progress(arg, ...) if not NULL. */
struct ckpt_peer_opts {
  int timeout_ms;
  int transfer_ms;
  int min_bps;
  const atomic_bool *stop;
  ckpt_accept_fn accept;
  ckpt_peer_progress_fn progress;
  void *arg;
};

/* GET /snapshot from p, streamed straight into a reader: the header, then
 * the body into t while o->accept() judges the header, as ckpt_load_file. Returns 0 with *meta
 * filled (ckpt_meta_clear it), or a negative errno with why filled (-EBUSY: the peer answered 503
 * with Retry-After, all its transfer slots taken: worth asking again soon; -EPROTO: the peer did
 * not answer 200; -EBADMSG: damaged or truncated stream; -ETIMEDOUT: no byte for timeout_ms, the
 * whole transfer past transfer_ms, or slower than min_bps; accept's error); t may then hold part of
 * it.
 * @locality the store's writer. */
int ckpt_load_peer(const struct ckpt_peer_addr *p, const struct ckpt_peer_opts *o,
                   struct store_txn *t, struct ckpt_meta *meta, struct ckpt_peer_stats *st,
                   char *why, size_t cap);

/* ---- The background writer ---- */

struct metrics;
struct ckpt_writer;

struct ckpt_writer_deps {
  const char *dir; /* borrowed, outlives the writer */
  int interval_s;  /* write every this many seconds when the state changed */
  int keep;        /* checkpoints kept */
  struct store *store;
  struct metrics *metrics;
  /* Fills m->topic and m->parts (malloc'd) with the offsets the current
   * snapshot covers, read BEFORE the snapshot is pinned (offsets may lag
   * the snapshot, never lead it: re-applied events are stale no-ops).
   * Returns 0, or -EAGAIN when the state cannot be vouched for now (a lost
   * position, a re-sync pending): no checkpoint then. @locality the
   * checkpoint thread. */
  int (*position)(void *arg, struct ckpt_meta *m);
  void *arg;
};

/* Starts the thread. Returns 0 or a negative errno. */
int ckpt_writer_start(const struct ckpt_writer_deps *d, struct ckpt_writer **out);

/* Stops the thread; with final, it first writes one last checkpoint if the
 * state changed since the last one. Any write in progress or the final one
 * is abandoned if not done within budget_ms. Joins it. NULL is a no-op. @locality main. */
void ckpt_writer_stop(struct ckpt_writer *w, bool final, int budget_ms);

/* Frees a stopped writer. NULL is a no-op. */
void ckpt_writer_destroy(struct ckpt_writer *w);

#endif
