/* Unit tests: DATABASE_URL and libpq messages made safe to log (sync/pg_redact.c),
 * for every form in which libpq accepts a password. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "pg_redact.h"

/* Redacts in and checks that none of the secrets survive and every keep is
 * shown. NULL-terminated lists. */
static void check(const char *in, const char *const *secrets, const char *const *keep) {
  char out[512];
  assert_int_equal(pg_redact_conninfo(in, out, sizeof out), 0);
  for (; *secrets; secrets++)
    if (strstr(out, *secrets) != NULL) fail_msg("%s: secret %s shown as %s", in, *secrets, out);
  for (; *keep; keep++)
    if (strstr(out, *keep) == NULL) fail_msg("%s: %s missing from %s", in, *keep, out);
}

static void every_libpq_form(void **state) {
  (void)state;
  /* libpq does not read this '?' as a query: it is part of the password. */
  check("postgresql://u:s3cr?et@h/db", (const char *[]){"s3cr", "et@", NULL},
        (const char *[]){"password='****'", "host='h'", "dbname='db'", "user='u'", NULL});
  check("postgresql://u:s3cr%3Fet@h:5433/db?sslmode=require", (const char *[]){"s3cr", NULL},
        (const char *[]){"password='****'", "port='5433'", "sslmode='require'", NULL});
  check("host=h user=u password='my secret pass' dbname=db",
        (const char *[]){"my", "secret", "pass'", NULL},
        (const char *[]){"password='****'", "user='u'", NULL});
  check("host=h user=u password=ab&cdefgh dbname=db", (const char *[]){"ab&", "cdefgh", NULL},
        (const char *[]){"password='****'", "dbname='db'", NULL});
  check("host=h password = hunter22 dbname=db", (const char *[]){"hunter22", NULL},
        (const char *[]){"password='****'", "host='h'", NULL});
  check("postgresql://u@h/db?password=qsecret", (const char *[]){"qsecret", NULL},
        (const char *[]){"password='****'", NULL});
  check("postgresql://u:pw1@h/db?password=qsecret", (const char *[]){"qsecret", "pw1", NULL},
        (const char *[]){"password='****'", NULL});
  check("host=h password=it\\'s sslpassword=keypass dbname=db",
        (const char *[]){"it", "keypass", NULL}, (const char *[]){"sslpassword='****'", NULL});
  check("postgresql://app@db.internal/catalog", (const char *[]){"****", NULL},
        (const char *[]){"user='app'", "host='db.internal'", NULL});
}

static void quotes_values_as_libpq_does(void **state) {
  (void)state;
  char out[256];
  assert_int_equal(pg_redact_conninfo("host=h application_name='a b\\'c\\\\d'", out, sizeof out),
                   0);
  assert_string_equal(out, "host='h' application_name='a b\\'c\\\\d'");
}

static void unparseable_quotes_nothing(void **state) {
  (void)state;
  char out[256];
  const char *bad[] = {"postgresql://u:s3cr%zzet@h/db", "postgresql://u:s3cret@[::1/db",
                       "host=h password=s3cret bogus=1", "postgresql://u@h/db?passwrd=s3cret",
                       "host=h password='s3cret"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal(pg_redact_conninfo(bad[i], out, sizeof out), -EINVAL);
    assert_null(strstr(out, "s3cr"));
    assert_null(strstr(out, "zzet"));
    assert_non_null(strstr(out, "not a valid libpq connection string"));
    pg_redact_message(bad[i], "error quoting s3cret and s3cr%zzet", out, sizeof out);
    assert_null(strstr(out, "s3cr"));
  }
}

static void truncates_without_leaking(void **state) {
  (void)state;
  char out[24];
  assert_int_equal(pg_redact_conninfo("postgresql://u:topsecret@h/db", out, sizeof out), 0);
  assert_int_equal(strlen(out), sizeof out - 1);
  assert_null(strstr(out, "top"));
  assert_int_equal(pg_redact_conninfo("host=h", out, 0), 0);
}

static void scrubs_messages(void **state) {
  (void)state;
  char out[256];
  pg_redact_message("postgresql://u:s3cr?et@h/db",
                    "connection to server at \"h\" failed: s3cr?et was rejected (s3cr?et)", out,
                    sizeof out);
  assert_string_equal(out, "connection to server at \"h\" failed: **** was rejected (****)");
  pg_redact_message("host=h password='my secret pass'", "got my secret pass twice: my secret pass",
                    out, sizeof out);
  assert_string_equal(out, "got **** twice: ****");
  pg_redact_message("host=h", "no secret here", out, sizeof out);
  assert_string_equal(out, "no secret here");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(every_libpq_form),
      cmocka_unit_test(quotes_values_as_libpq_does),
      cmocka_unit_test(unparseable_quotes_nothing),
      cmocka_unit_test(truncates_without_leaking),
      cmocka_unit_test(scrubs_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
