/*
 * pg_redact.h - what of a PostgreSQL connection string (DATABASE_URL) may be
 * logged: secrets removed by libpq's own parser, never by scanning text.
 *
 * libpq accepts passwords in forms a text scanner misses (a '?' inside a
 * URI's userinfo is not a query, quoted values hold spaces, '&' is an
 * ordinary character in a keyword value, spaces may surround '='), so the
 * string is parsed with PQconninfoParse() and rebuilt from its options, the
 * ones libpq marks as secret ("*" in dispchar: password, sslpassword)
 * masked. libpq's parse errors quote the input, secret included, so they are
 * never passed on.
 *
 * @locality any thread; no state.
 */
#ifndef CATALOGD_PG_REDACT_H
#define CATALOGD_PG_REDACT_H

#include <stddef.h>

/* What a masked value is shown as. */
#define PG_REDACT_MASK "****"

/* Writes conninfo (a libpq URI or key=value string) into out (cap bytes,
 * always NUL-terminated when cap > 0) as key='value' pairs in libpq's
 * order, secrets shown as PG_REDACT_MASK. Returns 0, or -EINVAL when libpq
 * cannot parse it: out then holds a fixed sentence that quotes nothing of
 * the input. A too small out truncates (a secret is never copied, so it
 * cannot be cut in half). */
int pg_redact_conninfo(const char *conninfo, char *out, size_t cap);

/* Copies msg (e.g. a libpq error message about a connection made with
 * conninfo) into out (cap bytes, NUL-terminated when cap > 0), every
 * occurrence of conninfo's secret values replaced by PG_REDACT_MASK. When
 * conninfo cannot be parsed its secrets are unknown, so out holds a fixed
 * sentence instead of msg. */
void pg_redact_message(const char *conninfo, const char *msg, char *out, size_t cap);

#endif
