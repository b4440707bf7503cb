/* GGUF (llama.cpp): recognised by its magic so users get a precise answer;
 * reading and writing it are not built yet. */
#include "formats.h"

#include <string.h>

static lmio__sniff gguf_sniff(const unsigned char *head, size_t n, uint64_t file_size)
{
    (void)file_size;
    return n >= 4 && !memcmp(head, "GGUF", 4) ? LMIO__SNIFF_YES : LMIO__SNIFF_NO;
}

const lmio__format lmio__format_gguf = {
    .name = "gguf",
    .description = "GGUF",
    .sniff = gguf_sniff,
};
