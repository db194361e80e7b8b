/*
 * crc32c.c - CRC-32C (see crc32c.h): the SSE4.2 instruction when the CPU
 * has it (checked once), else a byte-at-a-time table over the reflected
 * polynomial 0x82F63B78. Both give the standard values (crc32c("123456789")
 * == 0xE3069283).
 */
#include "crc32c.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

/* The byte table of the reflected polynomial: computed once (pthread_once)
 * rather than written out as 256 literals. */
static uint32_t table[256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
}

/* The portable path: one table lookup per byte. c is the inverted CRC. */
static uint32_t crc_sw(uint32_t c, const uint8_t *b, size_t n) {
  pthread_once(&table_once, table_init);
  for (size_t i = 0; i < n; i++)
    c = table[(c ^ b[i]) & 0xff] ^ (c >> 8);
  return c;
}

#if defined(__x86_64__)
/* The hardware path: 8 bytes per instruction. c is the inverted CRC. */
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *b, size_t n) {
  uint64_t c64 = c;
  for (; n >= 8; n -= 8, b += 8) {
    uint64_t w;
    memcpy(&w, b, 8);
    c64 = __builtin_ia32_crc32di(c64, w);
  }
  c = (uint32_t)c64;
  for (; n > 0; n--, b++)
    c = __builtin_ia32_crc32qi(c, *b);
  return c;
}

static bool have_hw(void) { return __builtin_cpu_supports("sse4.2"); }
#else
static uint32_t crc_hw(uint32_t c, const uint8_t *b, size_t n) { return crc_sw(c, b, n); }
static bool have_hw(void) { return false; }
#endif

uint32_t crc32c(uint32_t crc, const void *p, size_t n) {
  uint32_t c = ~crc;
  c = have_hw() ? crc_hw(c, p, n) : crc_sw(c, p, n);
  return ~c;
}
