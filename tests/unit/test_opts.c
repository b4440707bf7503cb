/* Versioned options: a program built against an older lmio.h passes a
 * shorter options struct. The library must read only the bytes that struct
 * has (its struct_size) and use defaults for the rest.
 *
 * Each "older" struct below is placed at the start of a buffer as large as
 * today's struct whose tail is filled with 0xAB: a library that read past
 * struct_size would take 0xABAB... as a progress callback, a special-token
 * array or a shard size and crash or misbehave; under ASan and valgrind the
 * exact-size heap copies catch even a read that happens to be harmless. */
#include "lmio.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../test.h"

/* lmio_save_opts as a header without the progress fields declared it */
typedef struct {
    size_t struct_size;
    lmio_dtype dtype;
    int durable;
} save_opts_v0;

/* lmio_open_opts before use_mmap */
typedef struct {
    size_t struct_size;
} open_opts_v0;

/* lmio_train_opts before min_frequency and special tokens */
typedef struct {
    size_t struct_size;
    size_t vocab_size;
} train_opts_v0;

/* lmio_pretrained_opts before max_shard_size and durable */
typedef struct {
    size_t struct_size;
    lmio_dtype dtype;
} pretrained_opts_v0;

/* lmio_pretrained_opts before keep_other_files: sizeof 32, tail padding
 * after durable */
typedef struct {
    size_t struct_size;
    lmio_dtype dtype;
    uint64_t max_shard_size;
    int durable;
} pretrained_opts_v1;

/* A heap block of exactly n bytes holding src, so sanitizers see any read
 * past it. */
static void *exact_copy(const void *src, size_t n)
{
    void *p = malloc(n);
    if (p) memcpy(p, src, n);
    return p;
}

/* src at the start of a today-sized buffer whose tail is poison. */
static void *poisoned(const void *src, size_t n, size_t full)
{
    unsigned char *p = malloc(full);
    if (!p) return NULL;
    memset(p, 0xAB, full);
    memcpy(p, src, n);
    return p;
}

static lmio_statedict *small_sd(void)
{
    lmio_statedict *sd = NULL;
    static const float v[6] = {1.5f, -2.25f, 3.0e-3f, 65504.0f, 1e-8f, -0.0f};
    uint64_t shape[2] = {2, 3};
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    CHECK_OK(lmio_statedict_add(sd, "w", LMIO_DTYPE_F32, 2, shape, v, sizeof v, LMIO_BORROW, &e_));
    return sd;
}

static void save_and_open(void)
{
    lmio_statedict *sd = small_sd();
    save_opts_v0 old = {sizeof old, LMIO_DTYPE_BF16, 0};
    void *a = exact_copy(&old, sizeof old), *b = poisoned(&old, sizeof old, sizeof(lmio_save_opts));
    lmio_error err;
    CHECK_MSG(lmio_safetensors_save(sd, scratch("a.safetensors"), a, &err) == LMIO_OK, "%s", err.message);
    CHECK_MSG(lmio_safetensors_save(sd, scratch("b.safetensors"), b, &err) == LMIO_OK, "%s", err.message);
    free(a);
    free(b);

    open_opts_v0 oold = {sizeof oold};
    void *o = poisoned(&oold, sizeof oold, sizeof(lmio_open_opts));
    lmio_statedict *back = NULL;
    CHECK_MSG(lmio_statedict_open(scratch("b.safetensors"), o, &back, &err) == LMIO_OK, "%s", err.message);
    free(o);
    lmio_tensor t;
    /* the old struct's fields were honoured: the tensor was converted */
    CHECK(back && lmio_tensor_find(back, "w", &t, NULL) == LMIO_OK && t.dtype == LMIO_DTYPE_BF16);
    lmio_statedict_free(back);

    /* a struct not made with its INIT macro, or from a newer header */
    lmio_save_opts bad = LMIO_SAVE_OPTS_INIT;
    bad.struct_size = 0;
    CHECK(lmio_safetensors_save(sd, scratch("c.safetensors"), &bad, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "struct_size is 0") != NULL);
    bad.struct_size = sizeof bad + 8;
    CHECK(lmio_safetensors_save(sd, scratch("c.safetensors"), &bad, &err) == LMIO_ERR_INVALID_ARG);
    struct stat st;
    CHECK(stat(scratch("c.safetensors"), &st) != 0); /* nothing written */
    lmio_open_opts bo = LMIO_OPEN_OPTS_INIT;
    bo.struct_size = 3;
    CHECK(lmio_statedict_open(scratch("a.safetensors"), &bo, &back, &err) == LMIO_ERR_INVALID_ARG);
    lmio_statedict_free(sd);
}

static void train(void)
{
    FILE *f = fopen(scratch("train.txt"), "w");
    if (!f) { CHECK(0); return; }
    for (int i = 0; i < 50; i++) fputs("the cat sat on the mat; the rat ate the hat. ", f);
    fclose(f);
    const char *files[] = {scratch("train.txt")};
    train_opts_v0 old = {sizeof old, 280};
    void *o = poisoned(&old, sizeof old, sizeof(lmio_train_opts));
    lmio_tokenizer *tok = NULL;
    lmio_error err;
    CHECK_MSG(lmio_tokenizer_train(files, 1, o, &tok, &err) == LMIO_OK, "%s", err.message);
    free(o);
    /* defaults for what the old struct lacked: no special tokens */
    CHECK(tok && lmio_tokenizer_eos_id(tok) == -1);
    CHECK(tok && lmio_tokenizer_vocab_size(tok) > 256 && lmio_tokenizer_vocab_size(tok) <= 280);
    lmio_tokenizer_free(tok);
    lmio_train_opts bad = LMIO_TRAIN_OPTS_INIT;
    bad.struct_size = 1;
    CHECK(lmio_tokenizer_train(files, 1, &bad, &tok, &err) == LMIO_ERR_INVALID_ARG);
}

static void pretrained_and_generate(void)
{
    lmio_statedict *sd = small_sd();
    pretrained_opts_v0 old = {sizeof old, LMIO_DTYPE_F16};
    void *o = poisoned(&old, sizeof old, sizeof(lmio_pretrained_opts));
    lmio_error err;
    CHECK_MSG(lmio_pretrained_save(scratch("dir"), NULL, sd, NULL, o, &err) == LMIO_OK, "%s", err.message);
    free(o);
    lmio_statedict *back = NULL;
    CHECK_MSG(lmio_statedict_open(scratch("dir/model.safetensors"), NULL, &back, &err) == LMIO_OK, "%s",
              err.message);
    lmio_tensor t;
    CHECK(back && lmio_tensor_find(back, "w", &t, NULL) == LMIO_OK && t.dtype == LMIO_DTYPE_F16);
    lmio_statedict_free(back);
    /* an older struct's padding is garbage, never keep_other_files */
    pretrained_opts_v1 v1;
    memset(&v1, 0xAA, sizeof v1);
    v1.struct_size = sizeof v1;
    v1.dtype = LMIO_DTYPE_NONE;
    v1.max_shard_size = 0;
    v1.durable = 0;
    FILE *f = fopen(scratch("dir/README.md"), "w");
    if (f) fclose(f);
    CHECK(lmio_pretrained_save(scratch("dir"), NULL, sd, NULL, (const lmio_pretrained_opts *)(void *)&v1, &err) ==
          LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "README.md") != NULL);
    lmio_pretrained_opts bad = LMIO_PRETRAINED_OPTS_INIT;
    bad.struct_size = 0;
    CHECK(lmio_pretrained_save(scratch("dir2"), NULL, sd, NULL, &bad, &err) == LMIO_ERR_INVALID_ARG);
    lmio_statedict_free(sd);

    lmio_generate_opts g = LMIO_GENERATE_OPTS_INIT;
    g.struct_size = sizeof g * 2;
    int32_t prompt = 0, out;
    size_t n;
    CHECK(lmio_gpt2_generate(NULL, &prompt, 1, 1, &g, &out, &n, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "lmio_generate_opts.struct_size") != NULL);
}

int main(void)
{
    if (scratch_begin("opts")) return 1;
    save_and_open();
    train();
    pretrained_and_generate();
    scratch_end();
    return test_result("test_opts");
}
