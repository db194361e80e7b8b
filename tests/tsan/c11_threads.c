/*
 * c11_threads.c - C11 threads routed through pthreads, for the TSan build
 * only (CMake links it into catalogd and the Kafka test tools when
 * CATALOGD_SANITIZE=thread; it lives with the tests, outside src/'s glob).
 *
 * librdkafka creates its threads and takes its locks with C11 thrd_create,
 * mtx_lock and cnd_wait. glibc implements those by calling its pthread
 * functions internally, past the symbols ThreadSanitizer intercepts (GCC 12's
 * libtsan has no C11 interceptors). A thread TSan never saw created crashes
 * in TSan's allocator on its first malloc, and locks it never saw taken would
 * make every message librdkafka hands to the consumer look like a race.
 * Defined in the executable, these definitions interpose glibc's for every
 * library, and call the intercepted pthread functions instead.
 *
 * Return codes follow C11: thrd_success, thrd_error, thrd_nomem, thrd_busy,
 * thrd_timedout.
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

static int c11_code(int err) {
  return err == 0           ? thrd_success
         : err == ENOMEM    ? thrd_nomem
         : err == ETIMEDOUT ? thrd_timedout
         : err == EBUSY     ? thrd_busy
                            : thrd_error;
}

struct start {
  thrd_start_t fn;
  void *arg;
};

/* A C11 start function returns int; the pthread result carries it (as glibc's
 * thrd_join expects). */
static void *trampoline(void *p) {
  struct start s = *(struct start *)p;
  free(p);
  return (void *)(intptr_t)s.fn(s.arg);
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg) {
  struct start *s = malloc(sizeof *s);
  if (s == NULL) return thrd_nomem;
  *s = (struct start){fn, arg};
  int err = pthread_create((pthread_t *)thr, NULL, trampoline, s);
  if (err != 0) free(s);
  return c11_code(err);
}

int thrd_join(thrd_t thr, int *res) {
  void *r;
  int err = pthread_join((pthread_t)thr, &r);
  if (err == 0 && res != NULL) *res = (int)(intptr_t)r;
  return c11_code(err);
}

int thrd_detach(thrd_t thr) { return c11_code(pthread_detach((pthread_t)thr)); }

/* librdkafka's global init runs once this way; glibc's __pthread_once is not
 * seen either. once_flag and pthread_once_t are both one int in glibc. */
void call_once(once_flag *flag, void (*fn)(void)) {
  _Static_assert(sizeof(once_flag) == sizeof(pthread_once_t), "once_flag layout");
  pthread_once((pthread_once_t *)flag, fn);
}

int mtx_init(mtx_t *m, int type) {
  pthread_mutexattr_t a;
  pthread_mutexattr_init(&a);
  if (type & mtx_recursive) pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
  int err = pthread_mutex_init((pthread_mutex_t *)m, &a);
  pthread_mutexattr_destroy(&a);
  return c11_code(err);
}

int mtx_lock(mtx_t *m) { return c11_code(pthread_mutex_lock((pthread_mutex_t *)m)); }
int mtx_trylock(mtx_t *m) { return c11_code(pthread_mutex_trylock((pthread_mutex_t *)m)); }
int mtx_unlock(mtx_t *m) { return c11_code(pthread_mutex_unlock((pthread_mutex_t *)m)); }
void mtx_destroy(mtx_t *m) { pthread_mutex_destroy((pthread_mutex_t *)m); }

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts) {
  return c11_code(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int cnd_init(cnd_t *c) { return c11_code(pthread_cond_init((pthread_cond_t *)c, NULL)); }
int cnd_signal(cnd_t *c) { return c11_code(pthread_cond_signal((pthread_cond_t *)c)); }
int cnd_broadcast(cnd_t *c) { return c11_code(pthread_cond_broadcast((pthread_cond_t *)c)); }
void cnd_destroy(cnd_t *c) { pthread_cond_destroy((pthread_cond_t *)c); }

int cnd_wait(cnd_t *c, mtx_t *m) {
  return c11_code(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts) {
  return c11_code(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}
