/* Unit tests: COPY text rows and values, the UTF-8 check (copy_text.c), log levels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "copy_text.h"
#include "utf8.h"
#include "log.h"

static int split(const char *in, char *buf, char **f, int maxf) {
  strcpy(buf, in);
  return copy_split(buf, strlen(buf), f, maxf);
}

static void splits_nulls_and_escapes(void **state) {
  (void)state;
  char buf[256], *f[8];
  assert_int_equal(split("a\t\\N\tb\\tc\\\\d\\ne\t\n", buf, f, 8), 4);
  assert_string_equal(f[0], "a");
  assert_null(f[1]);
  assert_string_equal(f[2], "b\tc\\d\ne");
  assert_string_equal(f[3], "");
  assert_int_equal(split("\\N", buf, f, 8), 1);
  assert_null(f[0]);
  assert_int_equal(split("x\\101\\x42", buf, f, 8), 1);
  assert_string_equal(f[0], "xAB");
  assert_int_equal(split("\\Nx", buf, f, 8), 1); /* not a NULL marker */
  assert_string_equal(f[0], "Nx");
  assert_int_equal(split("a\tb\tc", buf, f, 2), -1);
}

static void parses_values(void **state) {
  (void)state;
  int32_t i;
  int64_t l;
  double d;
  bool b;
  assert_int_equal(copy_i32("42", 0, &i), 0);
  assert_int_equal(i, 42);
  assert_int_equal(copy_i32(NULL, 7, &i), 0);
  assert_int_equal(i, 7);
  assert_int_equal(copy_i32("2147483648", 0, &i), -1);
  assert_int_equal(copy_i32("4x", 0, &i), -1);
  assert_int_equal(copy_i64("9007199254740993", 0, &l), 0);
  assert_true(l == 9007199254740993LL);
  assert_int_equal(copy_f64("29.99", 0, &d), 0);
  assert_true(d == 29.99);
  assert_int_equal(copy_f64("NaN", 0, &d), -1);
  assert_int_equal(copy_f64("", 0, &d), -1);
  assert_int_equal(copy_bool("t", false, &b), 0);
  assert_true(b);
  assert_int_equal(copy_bool("f", true, &b), 0);
  assert_false(b);
  assert_int_equal(copy_bool("yes", true, &b), -1);
}

static void checks_utf8(void **state) {
  (void)state;
  assert_true(utf8_valid(""));
  assert_true(utf8_valid("plain ascii\t\n"));
  assert_true(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  assert_true(utf8_valid("\xf4\x8f\xbf\xbf"));  /* U+10FFFF */
  assert_false(utf8_valid("caf\xe9"));          /* LATIN1 bytes */
  assert_false(utf8_valid("SKU-\x80"));         /* a lone continuation */
  assert_false(utf8_valid("\xc0\xaf"));         /* overlong '/' */
  assert_false(utf8_valid("\xe0\x80\xaf"));     /* overlong, 3 bytes */
  assert_false(utf8_valid("\xed\xa0\x80"));     /* a surrogate */
  assert_false(utf8_valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
  assert_false(utf8_valid("\xf5\x80\x80\x80"));
  assert_false(utf8_valid("\xe2\x82")); /* cut short by the NUL */
  assert_false(utf8_valid("\xf0\x9f\x98"));
}

static void parses_log_levels(void **state) {
  (void)state;
  assert_int_equal(log_level_parse("WARNING"), LOG_WARN);
  assert_int_equal(log_level_parse("loud"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(splits_nulls_and_escapes),
      cmocka_unit_test(parses_values),
      cmocka_unit_test(checks_utf8),
      cmocka_unit_test(parses_log_levels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
