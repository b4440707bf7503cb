/* CRC-32 of zip archives: the one place that talks to zlib. zlib's
 * braided implementation runs at several GB/s, so checksumming tensor data
 * as it streams out costs a fraction of the write. */
#include "core.h"

#include <zlib.h>

uint32_t lmio__crc32(uint32_t crc, const void *data, size_t n)
{
    return (uint32_t)crc32_z(crc, data, n);
}
