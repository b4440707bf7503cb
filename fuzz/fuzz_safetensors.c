/* Fuzz target for the safetensors reader: any bytes in, either a clean error
 * or a state dict whose every tensor lies inside the input. Built with
 * libFuzzer (clang -fsanitize=fuzzer, LMIO_FUZZ=ON) or, everywhere, with
 * replay.c, which ctest runs over the corpus in tests/data. */
#include "../src/formats/formats.h"

#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The reader's fast header path and its general one must agree on every
 * input: same status and message, or the same tensors (test_st_header.c
 * explains why). */
static void same_both_ways(const uint8_t *data, size_t size)
{
    lmio_status s[2];
    lmio_error e[2];
    size_t count[2] = {0, 0};
    for (int fast = 0; fast < 2; fast++) {
        unsigned char *copy = lmio__malloc(size ? size : 1);
        if (!copy) return;
        if (size) memcpy(copy, data, size);
        lmio__file f = {copy, size, 0};
        lmio_statedict *sd = NULL;
        lmio__safetensors_fast_header = fast;
        s[fast] = lmio__format_safetensors.open("fuzz-input", &f, &sd, &e[fast]);
        lmio__safetensors_fast_header = 1;
        if (s[fast]) lmio__file_close(&f);
        else count[fast] = lmio_statedict_count(sd);
        lmio_statedict_free(sd);
    }
    if (s[0] == LMIO_ERR_NOMEM || s[1] == LMIO_ERR_NOMEM) return;
    if (s[0] != s[1] || count[0] != count[1] || (s[0] && strcmp(e[0].message, e[1].message))) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    same_both_ways(data, size);
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
