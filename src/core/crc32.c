/* CRC-32 (the zip/PNG polynomial, reflected 0xEDB88320), slicing by eight:
 * eight table lookups per 8 input bytes, so zip writers can checksum tensor
 * data while streaming it without becoming the bottleneck. */
#include "core.h"

#include <pthread.h>

static uint32_t k_table[8][256];
static pthread_once_t k_once = PTHREAD_ONCE_INIT;

static void build_tables(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        k_table[0][i] = c;
    }
    /* table[k][i]: the CRC of byte i followed by k zero bytes */
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++) k_table[k][i] = (k_table[k - 1][i] >> 8) ^ k_table[0][k_table[k - 1][i] & 0xFF];
}

uint32_t lmio__crc32(uint32_t crc, const void *data, size_t n)
{
    pthread_once(&k_once, build_tables);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        c = k_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
        n--;
    }
    while (n >= 8) {
        /* bytes assembled explicitly: the result must not depend on host byte order */
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = k_table[7][lo & 0xFF] ^ k_table[6][(lo >> 8) & 0xFF] ^ k_table[5][(lo >> 16) & 0xFF] ^
            k_table[4][lo >> 24] ^ k_table[3][p[4]] ^ k_table[2][p[5]] ^ k_table[1][p[6]] ^ k_table[0][p[7]];
        p += 8;
        n -= 8;
    }
    while (n--) c = k_table[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return ~c;
}
