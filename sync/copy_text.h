/*
 * copy_text.h - parsing PostgreSQL's COPY ... TO STDOUT text format, and the
 * column value parsers the loader needs.
 *
 * A row is tab-separated; "\N" is NULL; backslash escapes (\t \n \r \\ \b
 * \f \v and octal/hex) are decoded in place.
 */
#ifndef CATALOGD_COPY_TEXT_H
#define CATALOGD_COPY_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Splits row (len bytes, a trailing newline allowed, and one writable byte
 * after it, as libpq guarantees with its NUL) in place into at most
 * maxf fields; fields[i] is a NUL-terminated string or NULL for \N.
 * Returns the number of fields, or -1 if there are more than maxf. */
int copy_split(char *row, size_t len, char **fields, int maxf);

/* Value parsers: return 0 and set *out, or -1 if s is not a valid value.
 * NULL s yields def and 0 (the column is nullable and absent). */
int copy_i32(const char *s, int32_t def, int32_t *out);
int copy_i64(const char *s, int64_t def, int64_t *out);
int copy_f64(const char *s, double def, double *out);
int copy_bool(const char *s, bool def, bool *out);

#endif
