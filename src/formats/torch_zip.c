/* torch.save's zip archive (pytorch_model.bin, .pt, .pth): recognised by
 * the zip local-header signature so users get a precise answer, and named
 * in directories so from_pretrained says what it found; reading it (a
 * restricted pickle machine) and writing it are not built yet. */
#include "formats.h"

#include <string.h>

static lmio__sniff torch_zip_sniff(const unsigned char *head, size_t n, uint64_t file_size)
{
    (void)file_size;
    /* Signature, then "version needed to extract" (1.0 .. 6.3): the extra
     * check keeps a safetensors file whose header length happens to spell
     * "PK\3\4" (a 67 MB header) from being taken for a zip. */
    if (n < 6 || memcmp(head, "PK\x03\x04", 4)) return LMIO__SNIFF_NO;
    unsigned version = head[4] | (unsigned)head[5] << 8;
    return version >= 10 && version <= 63 ? LMIO__SNIFF_YES : LMIO__SNIFF_NO;
}

const lmio__format lmio__format_torch_zip = {
    .name = "torch-zip",
    .description = "PyTorch zip archive (torch.save)",
    .sniff = torch_zip_sniff,
    .dir_file = "pytorch_model.bin",
    .dir_index = "pytorch_model.bin.index.json",
    .dir_shard_stem = "pytorch_model",
    .dir_shard_ext = ".bin",
};
