/*
 * fuzz_entry.h - libFuzzer's entry points, declared once: every build uses
 * -Wmissing-prototypes, and libFuzzer ships no header for them.
 */
#ifndef CATALOGD_FUZZ_ENTRY_H
#define CATALOGD_FUZZ_ENTRY_H

#include <stddef.h>
#include <stdint.h>

/* Called once before the first input (optional for a target). */
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* Runs one input; returns 0 (other values are reserved by libFuzzer). */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
