/*
 * conditions.h - what an operator must see about the state's trust: named
 * conditions ("postgres", "kafka", "replay", "feed", ...) set by the writer
 * and the application, shown in /readyz's body and counted in /metrics.
 *
 * A condition is a short human sentence under a key; setting it again
 * replaces the sentence, clearing it removes it. Readiness itself stays in
 * health.h: a condition may be shown while serving (a stalled partition:
 * every replica going unready at once is worse) or explain why not.
 *
 * @locality any thread; every call takes the registry's mutex briefly and
 * never calls out while holding it.
 */
#ifndef CATALOGD_CONDITIONS_H
#define CATALOGD_CONDITIONS_H

struct conditions;

/* A new, empty registry. Free with conditions_destroy (NULL is a no-op). */
struct conditions *conditions_new(void);
void conditions_destroy(struct conditions *c);

/* Sets key's condition to msg (copied; truncated to 511 bytes), or clears it
 * when msg is NULL. level is "error" or "warn" (a static string). At most 32
 * keys are held; more are dropped (and logged once). NULL c is a no-op. */
void conditions_set(struct conditions *c, const char *key, const char *level, const char *msg);

/* The conditions as a JSON array of {"name","level","message"} objects, in
 * the order they were first set. Caller frees. */
char *conditions_json(struct conditions *c);

#define CONDITIONS_MAX      32
#define CONDITIONS_NAME_CAP 64

/* One held condition's name and level, as listed for /metrics. */
struct condition_name {
  char name[CONDITIONS_NAME_CAP]; /* printable ASCII */
  const char *level;              /* "error" or "warn" */
};

/* Copies the held conditions' names and levels into out, in the order they
 * were first set. Returns how many (0 if c is NULL). */
int conditions_list(struct conditions *c, struct condition_name out[CONDITIONS_MAX]);

#endif
