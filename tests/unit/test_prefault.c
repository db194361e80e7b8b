/*
 * test_prefault.c - the prefaulter (src/base/prefault.c) makes the memory
 * after a noted address resident, changes no byte of it, stays inside
 * PREFAULT_AHEAD, and leaves file mappings alone.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "prefault.h"

#define PAGE 4096u
#define MAP  (PREFAULT_AHEAD + (8u << 20))

/* Pages of [p, p + n) resident now. */
static size_t resident(const char *p, size_t n) {
  size_t pages = n / PAGE, count = 0;
  unsigned char *v = malloc(pages);
  assert_non_null(v);
  assert_int_equal(mincore((void *)p, n, v), 0);
  for (size_t i = 0; i < pages; i++)
    count += v[i] & 1;
  free(v);
  return count;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Waits (at most 10 s) until [p, p + n) is all resident. */
static bool wait_resident(const char *p, size_t n) {
  for (int i = 0; i < 1000; i++) {
    if (resident(p, n) == n / PAGE) return true;
    sleep_ms(10);
  }
  return false;
}

static void populates_what_follows_a_noted_address(void **state) {
  (void)state;
  /* No huge pages: the test counts 4 KiB pages. */
  char *m = mmap(NULL, MAP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  assert_true(m != MAP_FAILED);
  madvise(m, MAP, MADV_NOHUGEPAGE);
  memcpy(m, "first record", 13); /* what the build wrote before the note */
  assert_int_equal(resident(m + PAGE, MAP - PAGE), 0);
  struct prefault *pf = prefault_start();
  assert_non_null(pf);
  prefault_note(pf, m);
  assert_true(wait_resident(m, PREFAULT_AHEAD));
  size_t n = prefault_stop(pf);
  assert_in_range(n, PREFAULT_AHEAD - PAGE, PREFAULT_AHEAD);
  /* Nothing past the window, and no byte changed. */
  assert_int_equal(resident(m + PREFAULT_AHEAD, MAP - PREFAULT_AHEAD), 0);
  assert_string_equal(m, "first record");
  for (size_t i = 13; i < PREFAULT_AHEAD; i += 997)
    assert_int_equal(m[i], 0);
  munmap(m, MAP);
}

static void leaves_file_mappings_alone(void **state) {
  (void)state;
  char path[] = "/tmp/test-prefault-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  assert_int_equal(ftruncate(fd, 8 << 20), 0); /* sparse: nothing in the page cache */
  char *m = mmap(NULL, 8 << 20, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  assert_true(m != MAP_FAILED);
  struct prefault *pf = prefault_start();
  assert_non_null(pf);
  prefault_note(pf, m);
  sleep_ms(100);
  assert_int_equal(prefault_stop(pf), 0);
  assert_int_equal(resident(m, 8 << 20), 0);
  munmap(m, 8 << 20);
  close(fd);
}

static void null_is_a_no_op(void **state) {
  (void)state;
  prefault_note(NULL, &state);
  assert_int_equal(prefault_stop(NULL), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(populates_what_follows_a_noted_address),
      cmocka_unit_test(leaves_file_mappings_alone),
      cmocka_unit_test(null_is_a_no_op),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
