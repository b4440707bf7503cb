/* Fuzz target for the safetensors reader: any bytes in, either a clean error
 * or a state dict whose every tensor lies inside the input. Built with
 * libFuzzer (clang -fsanitize=fuzzer, LMIO_FUZZ=ON) or, everywhere, with
 * replay.c, which ctest runs over the corpus in tests/data. */
#include "../src/formats/formats.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A private copy in lmio's allocator, shaped as an opened file: on
     * success the state dict owns and frees it. */
    unsigned char *copy = lmio__malloc(size);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    lmio__file f = {copy, size, 0};
    lmio_statedict *sd = NULL;
    lmio_error err;
    if (lmio__format_safetensors.open("fuzz-input", &f, &sd, &err) != LMIO_OK) {
        lmio__file_close(&f);
        return 0;
    }
    /* Touch every byte the reader claims to own, so an out-of-range view
     * shows up under ASan. */
    volatile unsigned sum = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        const unsigned char *p = t.data;
        if (t.nbytes && (p < copy || p + t.nbytes > copy + size)) __builtin_trap();
        for (uint64_t k = 0; k < t.nbytes; k++) sum += p[k];
    }
    lmio_statedict_free(sd);
    return 0;
}
