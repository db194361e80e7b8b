/*
 * file.c - checkpoint files in CHECKPOINT_DIR (see checkpoint.h).
 *
 * A checkpoint is written to ".tmp-checkpoint-<pid>-<ns>", fsync'd, renamed
 * to "checkpoint-<wall ns, 20 digits>.ckpt" and the directory fsync'd: after
 * a crash at any point the directory holds whole checkpoints and perhaps a
 * temporary file (deleted by the next ckpt_list), never half a checkpoint
 * under a final name. Names sort by time, so the newest is the greatest.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint.h"
#include "clock.h"
#include "xalloc.h"

#define PREFIX "checkpoint-"
#define SUFFIX ".ckpt"
#define TMP    ".tmp-checkpoint-"

/* ---- Writing ---- */

struct fout {
  int fd;
  uint64_t bytes;
  const _Atomic int64_t *deadline_ms;
};

/* ckpt_write_fn over a file descriptor, with the deadline. */
static int fout_write(void *arg, const void *p, size_t n) {
  struct fout *o = arg;
  int64_t deadline = o->deadline_ms ? atomic_load(o->deadline_ms) : 0;
  if (deadline && clock_mono_ms() > deadline) return -ETIMEDOUT;
  for (size_t done = 0; done < n;) {
    ssize_t k = write(o->fd, (const char *)p + done, n - done);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    done += (size_t)k;
  }
  o->bytes += n;
  return 0;
}

static int is_checkpoint_name(const char *n) {
  size_t l = strlen(n), pl = strlen(PREFIX), sl = strlen(SUFFIX);
  return l > pl + sl && !strncmp(n, PREFIX, pl) && !strcmp(n + l - sl, SUFFIX);
}

#define TMP_STALE_S 600 /* a temp file untouched this long is a dead write */

static int name_cmp_desc(const void *a, const void *b) {
  return strcmp(*(const char *const *)b, *(const char *const *)a);
}

int ckpt_list(const char *dir, char ***paths) {
  DIR *d = opendir(dir);
  if (d == NULL) return -errno;
  char **v = NULL;
  int n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    struct stat sb;
    if (!strncmp(e->d_name, TMP, strlen(TMP))) {
      /* A write that never finished, if it is old: a young one may be
       * another replica's in progress (a shared directory). */
      if (lstat(path, &sb) == 0 && time(NULL) - sb.st_mtime > TMP_STALE_S) unlink(path);
      continue;
    }
    /* Only regular files count: a directory or a FIFO under a checkpoint's
     * name would otherwise take a place of the newest that prune keeps. */
    if (!is_checkpoint_name(e->d_name) || lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
    if (n == cap) v = xrealloc(v, (size_t)(cap = cap ? 2 * cap : 8) * sizeof *v);
    size_t l = strlen(path) + 1;
    v[n] = xmalloc(l);
    memcpy(v[n++], path, l);
  }
  closedir(d);
  if (n) qsort(v, (size_t)n, sizeof *v, name_cmp_desc);
  *paths = v;
  return n;
}

void ckpt_list_free(char **paths, int n) {
  for (int i = 0; i < n; i++)
    free(paths[i]);
  free(paths);
}

/* Deletes the checkpoints of dir older than the newest keep up to and
 * including mine (the path just written, which is always kept). Names
 * that sort after mine are neither counted nor deleted: a damaged file or
 * one written by a node whose clock runs ahead must not take the places
 * of usable checkpoints, or this write would be deleted at once. */
static void prune(const char *dir, int keep, const char *mine) {
  char **v = NULL;
  int n = ckpt_list(dir, &v);
  if (n <= 0 || v == NULL) return;
  int first = 0; /* v is newest first: skip the names after mine */
  while (first < n && strcmp(v[first], mine) > 0)
    first++;
  for (int i = first + keep; i < n; i++)
    unlink(v[i]);
  ckpt_list_free(v, n);
}

/* fsync of a directory, so a rename in it survives a crash. */
static int sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -errno;
  int rc = fsync(fd) == 0 ? 0 : -errno;
  close(fd);
  return rc;
}

/* Writes the stream into the new file tmp and makes it durable. Returns 0
 * or a negative errno; *step names what failed. */
static int write_tmp(const char *tmp, const struct snapshot *s, struct ckpt_meta *meta,
                     struct fout *o, const char **step) {
  *step = "create";
  o->fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (o->fd < 0) return -errno;
  *step = "write";
  int rc = ckpt_encode(s, meta, fout_write, o);
  if (rc == 0 && fsync(o->fd) != 0) *step = "fsync", rc = -errno;
  if (close(o->fd) != 0 && rc == 0) *step = "close", rc = -errno;
  return rc;
}

int ckpt_write_file(const char *dir, const struct snapshot *s, struct ckpt_meta *meta, int keep,
                    const _Atomic int64_t *deadline_ms, struct ckpt_written *out, char *why,
                    size_t cap) {
  char tmp[4096];
  const char *step;
  double t0 = clock_mono_s();
  int64_t now = clock_wall_ns();
  snprintf(tmp, sizeof tmp, "%s/" TMP "%d-%lld", dir, (int)getpid(), (long long)now);
  snprintf(out->path, sizeof out->path, "%s/" PREFIX "%020lld" SUFFIX, dir, (long long)now);
  struct fout o = {.fd = -1, .deadline_ms = deadline_ms};
  int rc = write_tmp(tmp, s, meta, &o, &step);
  if (rc == 0 && rename(tmp, out->path) != 0) step = "rename", rc = -errno;
  if (rc != 0) goto fail;
  out->bytes = o.bytes;
  out->seconds = clock_mono_s() - t0;
  if ((rc = sync_dir(dir)) != 0) {
    /* Renamed, whole and fsync'd, but the rename may not survive a crash:
     * a failure, said so. Still pruned (a directory that keeps failing must
     * not fill the disk, one file per interval), but one more is kept than
     * usual, so the newest file is never the only one left. */
    prune(dir, keep + 1, out->path);
    snprintf(why, cap,
             "fsync of the directory %s: %s (the new checkpoint %s is kept but may not survive "
             "a crash; %d older kept)",
             dir, strerror(-rc), out->path, keep);
    return rc;
  }
  prune(dir, keep, out->path);
  return 0;
fail:
  snprintf(why, cap, "%s of %s: %s", step, tmp, strerror(-rc));
  unlink(tmp);
  return rc;
}

/* ---- Reading ---- */

/* ckpt_read_fn over a file descriptor. */
static ssize_t fd_read(void *arg, void *p, size_t n) {
  int fd = *(int *)arg;
  for (;;) {
    ssize_t k = read(fd, p, n);
    if (k >= 0) return k;
    if (errno != EINTR) return -errno;
  }
}

/* The bytes of a file that vouch for its header's counts (the reader sizes
 * the maps at once for as many records as they could hold): its size, but
 * no more than it has on disk. A hole reads as zeros and holds no record:
 * a file of a few KiB truncated to 180 MiB (no disk needed) would otherwise
 * reserve maps for 10M records (+380 MiB). A filesystem that compresses
 * may report fewer blocks than an honest file's size: its counts are then
 * earned as a peer's are (a few % slower), never refused. */
static uint64_t vouched_bytes(const struct stat *sb) {
  uint64_t size = (uint64_t)sb->st_size, on_disk = (uint64_t)sb->st_blocks * 512;
  return on_disk < size ? on_disk : size;
}

int ckpt_load_file(const char *path, ckpt_accept_fn accept, ckpt_stop_fn stop, void *arg,
                   struct store_txn *t, struct ckpt_meta *meta, char *why, size_t cap) {
  /* O_NONBLOCK: a FIFO (or a device) under a checkpoint's name must not
   * block the start-up; anything but a regular file is refused. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  memset(meta, 0, sizeof *meta);
  if (fd < 0) {
    int e = errno;
    snprintf(why, cap, "open: %s", strerror(e));
    return -e;
  }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    snprintf(why, cap, "not a regular file");
    return -EINVAL;
  }
  struct ckpt_reader *rd = ckpt_reader_new(fd_read, &fd);
  ckpt_reader_set_stop(rd, stop, arg);
  ckpt_reader_set_length(rd, vouched_bytes(&sb));
  int rc = ckpt_read_header(rd, meta, why, cap);
  if (rc == 0) rc = ckpt_read_body_accepting(rd, meta, accept, arg, t, why, cap);
  if (rc != 0) ckpt_meta_clear(meta);
  ckpt_reader_destroy(rd);
  close(fd);
  return rc;
}
