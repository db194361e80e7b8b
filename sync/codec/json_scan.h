/*
 * json_scan.h - a strict, single-pass JSON scanner over one buffer, for
 * decoders that know their schema (event_decode.c).
 *
 * Instead of building a tree, the caller walks objects key by key, reads the
 * values it knows straight into its own structs and skips the rest. Nothing
 * is allocated: decoded strings go to a scratch area and the keys that need
 * a duplicate check to a key stack, both supplied by the caller and sized
 * with jscan_str_cap() / jscan_keys_cap() for the input length.
 *
 * It accepts exactly what jansson's json_loadb(JSON_REJECT_DUPLICATES)
 * accepted, which the previous event decoder used and the consumer's
 * behaviour (what goes to the dead-letter topic) depends on:
 *   - RFC 8259 grammar, whitespace " \t\n\r" only, no trailing garbage;
 *   - strict UTF-8 everywhere (no overlong forms, no encoded surrogates,
 *     nothing above U+10FFFF), no raw control character in a string;
 *   - escapes \" \\ \/ \b \f \n \r \t \uXXXX; a \u surrogate must be half of
 *     a pair; \u0000 is rejected (C strings cannot hold it);
 *   - integers must fit int64_t, reals must not overflow a double
 *     (underflow to 0 is fine);
 *   - at most JSCAN_MAX_DEPTH nested values, counted as jansson counts them
 *     (a scalar inside 2048 arrays is one too many);
 *   - a key repeated in the same object, compared after unescaping, is an
 *     error in every object, known or skipped.
 * One difference, deliberately stricter: a raw NUL byte is refused
 * everywhere, where jansson dropped one that directly followed a number or
 * true/false/null (its reader pushed that byte back and then lost it).
 * Any violation is -EINVAL with no finer reason: the caller only needs to
 * know the message is not JSON.
 *
 * @locality any thread; a struct jscan is used by one thread at a time.
 */
#ifndef CATALOGD_JSON_SCAN_H
#define CATALOGD_JSON_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSCAN_MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

enum jscan_type {
  JSCAN_ABSENT = 0, /* never returned by the scanner: "no such key" to callers */
  JSCAN_NULL,
  JSCAN_FALSE,
  JSCAN_TRUE,
  JSCAN_INT,    /* no fraction, no exponent: .i */
  JSCAN_REAL,   /* .d */
  JSCAN_STRING, /* .s, NUL-terminated in the scratch area, .len bytes */
  JSCAN_OBJECT, /* skipped by jscan_value() */
  JSCAN_ARRAY,  /* skipped by jscan_value() */
};

struct jscan_value {
  enum jscan_type type;
  size_t len; /* JSCAN_STRING */
  union {
    int64_t i;
    double d;
    const char *s;
  };
};

/* A key: the bytes between the quotes, unescaped (not NUL-terminated). */
struct jscan_key {
  const char *p;
  size_t len;
};

struct jscan {
  const char *p, *end; /* cursor in the input */
  char *str;           /* scratch for decoded strings */
  size_t str_used, str_cap;
  struct jscan_key *keys; /* keys of the open objects awaiting the duplicate check */
  size_t nkeys, keys_cap;
  unsigned depth; /* containers open */
};

/* An open object or array (see jscan_object_begin / jscan_array_begin). */
struct jscan_obj {
  size_t base; /* its first entry in keys[] */
  bool started;
};
struct jscan_arr {
  bool started;
};

/* Bytes of string scratch and entries of key stack that an input of len
 * bytes may need; with these jscan never runs out. */
size_t jscan_str_cap(size_t len);
size_t jscan_keys_cap(size_t len);

/* Starts scanning buf[0, len). str and keys (str_cap bytes, keys_cap
 * entries, at least the jscan_*_cap() of len) must outlive every string
 * the scan returns. */
void jscan_init(struct jscan *s, const char *buf, size_t len, char *str, size_t str_cap,
                struct jscan_key *keys, size_t keys_cap);

/* First byte of the next value after whitespace ('{', '[', '"', 't', ...),
 * or 0 at the end of input. Consumes the whitespace only. */
char jscan_peek(struct jscan *s);

/* Reads the next value into *v: scalars decoded (strings copied to the
 * scratch area), objects and arrays validated and skipped (v->type says
 * which). Returns 0 or -EINVAL. */
int jscan_value(struct jscan *s, struct jscan_value *v);

/* Validates and skips the next value. Returns 0 or -EINVAL. */
int jscan_skip(struct jscan *s);

/* Opens the object at the cursor (must be '{'). Returns 0 or -EINVAL. */
int jscan_object_begin(struct jscan *s, struct jscan_obj *o);

/* Next member of o: returns 1 with *key set and the cursor on the value
 * (which the caller must then read or skip), 0 once the closing '}' is read
 * and o's keys passed the duplicate check, or -EINVAL. The caller checks
 * its known keys for repeats itself and hands every other key to
 * jscan_object_unknown(). */
int jscan_object_next(struct jscan *s, struct jscan_obj *o, struct jscan_key *key);

/* Records a key of the innermost open object for the duplicate check done
 * when it closes. Returns 0, or -EINVAL if the key stack is full (cannot
 * happen with the jscan_keys_cap() size; the input is then refused). */
int jscan_object_unknown(struct jscan *s, const struct jscan_key *key);

/* Opens the array at the cursor (must be '['). Returns 0 or -EINVAL. */
int jscan_array_begin(struct jscan *s, struct jscan_arr *a);

/* Returns 1 with the cursor on the next element (the caller must read or
 * skip it), 0 once the closing ']' is read, or -EINVAL. */
int jscan_array_next(struct jscan *s, struct jscan_arr *a);

/* Returns 0 if only whitespace is left, else -EINVAL. */
int jscan_end(struct jscan *s);

/* True if s[0, len) is exactly one JSON number (RFC 8259 grammar: an
 * optional '-', no leading zero, no blanks, no hexadecimal, inf or nan),
 * whatever its magnitude. For numbers written inside JSON strings. */
bool jscan_is_number(const char *s, size_t len);

/* strtod() of s (len bytes, then a NUL), with an exact fast path for plain
 * decimals ("29.99", "-5", "1e3"); sets *end as strtod does. The result is
 * always the one strtod gives in the C locale. */
double jscan_strtod(const char *s, size_t len, char **end);

#endif
