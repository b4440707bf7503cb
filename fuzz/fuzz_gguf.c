/* Fuzz target for the GGUF reader (header counts, metadata of every type,
 * nested arrays, tensor infos, dequantisation): any bytes in, either a clean
 * error or a state dict whose views lie inside the input. Built with libFuzzer
 * (LMIO_FUZZ=ON) or, everywhere, with replay.c, which ctest runs over the
 * corpus. */
#include "../src/formats/formats.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = lmio__malloc(size);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    lmio__file f = {copy, size, 0};
    lmio_statedict *sd = NULL;
    lmio_error err;
    if (lmio__format_gguf.open("fuzz-input", &f, &sd, &err) != LMIO_OK) {
        lmio__file_close(&f);
        return 0;
    }
    /* Views of the file (file_offset >= 0) must lie inside it; dequantised
     * tensors are the state dict's own. Touch every byte either way,
     * so ASan sees any out-of-range pointer. */
    volatile unsigned sum = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        const unsigned char *p = t.data;
        if (t.nbytes && t.file_offset >= 0 &&
            (p != copy + t.file_offset || t.file_offset < 0 || (uint64_t)t.file_offset + t.nbytes > size))
            __builtin_trap();
        for (uint64_t k = 0; k < t.nbytes; k++) sum += p[k];
    }
    for (size_t i = 0; i < lmio_metadata_count(sd); i++) {
        const char *k, *v;
        lmio_metadata_get(sd, i, &k, &v, NULL);
        sum += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    lmio_statedict_free(sd);
    return 0;
}
