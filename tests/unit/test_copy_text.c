/* Unit tests: COPY text rows and values (copy_text.c) and URL redaction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "copy_text.h"
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

static void redacts_passwords(void **state) {
  (void)state;
  char out[256];
  log_redact_url("postgresql://app:s3cret@db:5432/catalog?sslmode=require", out, sizeof out);
  assert_string_equal(out, "postgresql://app:***@db:5432/catalog?sslmode=require");
  assert_null(strstr(out, "s3cret"));
  log_redact_url("host=db user=app password=s3cret dbname=x", out, sizeof out);
  assert_string_equal(out, "host=db user=app password=*** dbname=x");
  log_redact_url("postgresql://db/x?user=a&password=pw", out, sizeof out);
  assert_null(strstr(out, "=pw"));
  log_redact_url("postgresql://app@db/x", out, sizeof out);
  assert_string_equal(out, "postgresql://app@db/x");
  assert_int_equal(log_level_parse("WARNING"), LOG_WARN);
  assert_int_equal(log_level_parse("loud"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(splits_nulls_and_escapes),
      cmocka_unit_test(parses_values),
      cmocka_unit_test(redacts_passwords),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
