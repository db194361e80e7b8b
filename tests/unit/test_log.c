/* Unit tests: the JSON-lines logger (src/base/log.c). Whatever bytes a field
 * holds (a client's organization_id, a library's message), every line must
 * be one valid JSON object (checked with jansson, which also checks UTF-8),
 * at most 8 KiB, with valid UTF-8 kept as is and invalid bytes replaced by
 * U+FFFD, never cutting an escape or a multi-byte sequence at a cap. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

#define LINE_CAP  8192
#define FIELD_CAP 2048

/* Runs log_emit with stdout redirected; returns the bytes written (malloc'd,
 * NUL-terminated), their length in *len. */
static char *capture(const char *msg, const struct logf *f, size_t n, size_t *len) {
  FILE *tmp = tmpfile();
  assert_non_null(tmp);
  fflush(stdout);
  int saved = dup(STDOUT_FILENO);
  assert_true(saved >= 0);
  assert_true(dup2(fileno(tmp), STDOUT_FILENO) >= 0);
  log_emit(LOG_INFO, msg, f, n);
  assert_true(dup2(saved, STDOUT_FILENO) >= 0);
  close(saved);
  long size = ftell(tmp);
  assert_true(size > 0);
  char *out = malloc((size_t)size + 1);
  rewind(tmp);
  assert_int_equal(fread(out, 1, (size_t)size, tmp), (size_t)size);
  out[size] = '\0';
  fclose(tmp);
  *len = (size_t)size;
  return out;
}

/* One line, a JSON object, at most LINE_CAP bytes: returns it parsed. */
static json_t *one_json_line(const char *msg, const struct logf *f, size_t n) {
  size_t len;
  char *out = capture(msg, f, n, &len);
  assert_true(len <= LINE_CAP);
  assert_int_equal(out[len - 1], '\n');
  assert_ptr_equal(memchr(out, '\n', len), out + len - 1);
  json_error_t err;
  json_t *j = json_loadb(out, len, 0, &err);
  if (j == NULL) fprintf(stderr, "not JSON (%s at %d): %.300s\n", err.text, err.position, out);
  assert_non_null(j);
  assert_true(json_is_object(j));
  free(out);
  return j;
}

static const char *str_of(json_t *j, const char *key) {
  json_t *v = json_object_get(j, key);
  assert_non_null(v);
  assert_true(json_is_string(v));
  return json_string_value(v);
}

static void keeps_valid_utf8_and_escapes_controls(void **state) {
  (void)state;
  const char *s = "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9d\x84\x9e \"q\" \\ \n\t\x01\x7f end";
  struct logf f[] = {LF_S("v", s)};
  json_t *j = one_json_line("m", f, 1);
  assert_string_equal(str_of(j, "v"), s);
  json_decref(j);
  struct logf d[] = {LF_D("nan", NAN), LF_D("inf", INFINITY), LF_D("x", 0.25)};
  j = one_json_line("m", d, 3); /* JSON has no NaN: null */
  assert_true(json_is_null(json_object_get(j, "nan")));
  assert_true(json_is_null(json_object_get(j, "inf")));
  assert_true(json_real_value(json_object_get(j, "x")) == 0.25);
  json_decref(j);
}

static void replaces_invalid_utf8(void **state) {
  (void)state;
  static const struct {
    const char *in, *want;
  } cases[] = {
      {"a\xff"
       "b",
       "a\xef\xbf\xbd"
       "b"},
      {"\xc3", "\xef\xbf\xbd"},                                 /* truncated 2-byte */
      {"\xe2\x9c", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* truncated 3-byte: each byte */
      {"\xc0\xaf", "\xef\xbf\xbd\xef\xbf\xbd"},                 /* overlong */
      {"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* a surrogate */
      {"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"}, /* > U+10FFFF */
      {"\x80x", "\xef\xbf\xbdx"}, /* a lone continuation */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    struct logf f[] = {LF_S("v", cases[i].in)};
    json_t *j = one_json_line(cases[i].in, f, 1);
    assert_string_equal(str_of(j, "v"), cases[i].want);
    assert_string_equal(str_of(j, "msg"), cases[i].want);
    json_decref(j);
  }
}

/* Cut at the field cap: whole characters and whole escapes only. */
static void field_cap_never_cuts_a_sequence(void **state) {
  (void)state;
  char s[FIELD_CAP + 64];
  for (size_t pre = FIELD_CAP - 4; pre <= FIELD_CAP; pre++) {
    memset(s, 'a', pre);
    strcpy(s + pre, "\xf0\x9d\x84\x9e\xe2\x9c\x93\"\x01zzzz");
    struct logf f[] = {LF_S("v", s)};
    json_t *j = one_json_line("m", f, 1);
    const char *v = str_of(j, "v");
    assert_true(strlen(v) <= FIELD_CAP);
    assert_memory_equal(v, s, strlen(v)); /* a prefix of the input */
    json_decref(j);
  }
  memset(s, '"', FIELD_CAP + 10); /* escapes at the cap */
  s[FIELD_CAP + 10] = '\0';
  struct logf f[] = {LF_S("v", s)};
  json_t *j = one_json_line("m", f, 1);
  assert_int_equal(strlen(str_of(j, "v")), FIELD_CAP);
  json_decref(j);
}

/* Fields that overflow the line: still one valid object under the cap,
 * ts/level/msg first. */
static void line_cap_keeps_the_line_json(void **state) {
  (void)state;
  char big[FIELD_CAP + 1];
  memset(big, '\x01', FIELD_CAP); /* 6 bytes each once escaped */
  big[FIELD_CAP] = '\0';
  struct logf f[] = {LF_S("a", big), LF_I("n", 42), LF_S("b", big),
                     LF_D("d", 1.5), LF_B("t", 1),  LF_S("c", big)};
  json_t *j = one_json_line("overflow", f, 6);
  assert_string_equal(str_of(j, "msg"), "overflow");
  assert_string_equal(str_of(j, "level"), "info");
  json_decref(j);
}

/* Random bytes (biased to UTF-8 lead and continuation bytes, quotes and
 * controls), random field counts and lengths: every line is valid JSON. */
static void random_bytes_always_give_json_lines(void **state) {
  (void)state;
  static const unsigned char pool[] = {'a',  '"',  '\\', '\n', 0x01, 0x1f, 0x7f, 0x80, 0xbf, 0xc0,
                                       0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f};
  const char *seed_env = getenv("LOG_TEST_SEED");
  unsigned seed = seed_env ? (unsigned)strtoul(seed_env, NULL, 10) : 12345u;
  srand(seed);
  static char bufs[6][3000];
  for (int it = 0; it < 3000; it++) {
    size_t nf = (size_t)(rand() % 7);
    struct logf f[6];
    for (size_t k = 0; k < 6; k++) {
      size_t len = (size_t)(rand() % (it % 10 == 0 ? 2999 : 80));
      for (size_t i = 0; i < len; i++) {
        unsigned r = (unsigned)rand();
        unsigned char c =
            (r & 1) ? pool[(r >> 1) % sizeof pool] : (unsigned char)((r >> 8) % 255 + 1);
        bufs[k][i] = (char)c;
      }
      bufs[k][len] = '\0';
      f[k] = LF_S(bufs[(k + 1) % 6], bufs[k]); /* random keys too */
    }
    json_t *j = one_json_line(bufs[5], f, nf < 5 ? nf : 5);
    json_decref(j);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(keeps_valid_utf8_and_escapes_controls),
      cmocka_unit_test(replaces_invalid_utf8),
      cmocka_unit_test(field_cap_never_cuts_a_sequence),
      cmocka_unit_test(line_cap_keeps_the_line_json),
      cmocka_unit_test(random_bytes_always_give_json_lines),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
