/*
 * crc32c.h - CRC-32C (Castagnoli), the checksum of checkpoint blocks.
 *
 * Chosen over zlib's CRC-32 because x86-64 computes it in hardware (SSE4.2
 * crc32 instruction, several GB/s) and it detects more error patterns in
 * long blocks; a table-driven fallback gives the same values everywhere.
 *
 * @locality any thread (pure).
 */
#ifndef CATALOGD_CRC32C_H
#define CATALOGD_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extends crc (0 to start) over n bytes at p and returns the new value, so
 * crc32c(crc32c(0, a, n), b, m) is the CRC of a followed by b. */
uint32_t crc32c(uint32_t crc, const void *p, size_t n);

#endif
