/* Fuzz target for the tokenizer on untrusted text: any bytes either fail
 * as invalid UTF-8 or encode to ids that decode back to the same bytes. */
#include "../src/tokenizer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A small byte-level vocabulary with a few merges and a special token,
 * built once (tokenizers are immutable after loading). */
static lmio_tokenizer *tokenizer(void)
{
    static lmio_tokenizer *t;
    if (t) return t;
    if (lmio__tok_new(&t, NULL)) abort();
    for (int b = 0; b < 256; b++) {
        lmio__buf s = {0};
        unsigned char c = (unsigned char)b;
        lmio__bytes_to_unicode(&s, &c, 1);
        if (lmio__tok_add_token(t, s.data, s.len, NULL)) abort();
        lmio__buf_free(&s);
    }
    const char *merges[][2] = {{"t", "h"}, {"th", "e"}, {"\xc4\xa0", "the"}, {"a", "t"}, {"\xc4\xa0", "c"}, {"\xc4\xa0" "c", "at"}};
    for (size_t i = 0; i < sizeof merges / sizeof merges[0]; i++) {
        char j[64];
        snprintf(j, sizeof j, "%s%s", merges[i][0], merges[i][1]);
        if (lmio__tok_add_token(t, j, strlen(j), NULL) ||
            lmio__tok_add_merge(t, merges[i][0], strlen(merges[i][0]), merges[i][1], strlen(merges[i][1]), "", i, NULL))
            abort();
    }
    if (lmio__tok_add_added(t, "<|endoftext|>", true, -1, "", NULL) || lmio__tok_finish(t, "", NULL)) abort();
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmio_tokenizer *t = tokenizer();
    int32_t *ids;
    size_t n;
    if (lmio_tokenizer_encode(t, (const char *)data, size, &ids, &n, NULL) != LMIO_OK) return 0;
    char *back;
    size_t bl;
    if (lmio_tokenizer_decode(t, ids, n, &back, &bl, NULL) != LMIO_OK) __builtin_trap();
    if (bl != size || (size && memcmp(back, data, size))) __builtin_trap(); /* must round-trip */
    lmio_free(back);
    lmio_free(ids);
    return 0;
}
