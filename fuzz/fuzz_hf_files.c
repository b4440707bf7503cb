/* Fuzz target for the JSON-driven readers of a model directory: the input
 * is written as tokenizer.json, config.json and model.safetensors.index.json
 * in turn, and each loader must return a status, never crash or leak. */
#include "../src/core/core.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *scratch(void) { return fuzz_scratch(); }

static void put(const char *name, const uint8_t *data, size_t size) { fuzz_put(name, data, size); }

static void drop(const char *name)
{
    char p[512];
    fuzz_path(p, sizeof p, name);
    unlink(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmio_tokenizer *t = NULL;
    lmio_config *c = NULL;
    lmio_statedict *w = NULL;
    put("tokenizer.json", data, size);
    if (lmio_tokenizer_load(scratch(), &t, NULL) == LMIO_OK) {
        int32_t *ids;
        size_t n;
        if (lmio_tokenizer_encode(t, "the cat <|endoftext|> sat", 25, &ids, &n, NULL) == LMIO_OK) lmio_free(ids);
        lmio_tokenizer_free(t);
    }
    drop("tokenizer.json");
    put("config.json", data, size);
    if (lmio_config_load(scratch(), &c, NULL) == LMIO_OK) lmio_config_free(c);
    put("model.safetensors.index.json", data, size);
    if (lmio_pretrained_load(scratch(), NULL, &w, NULL, NULL) == LMIO_OK) lmio_statedict_free(w);
    drop("config.json");
    drop("model.safetensors.index.json");
    return 0;
}
