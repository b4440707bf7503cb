/* lmio example OUT: a small built-in GPT-2-shaped state dict. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>

const char k_example_help[] =
    "usage: lmio example OUT.safetensors\n"
    "\n"
    "Write a small built-in GPT-2-shaped model state dict (2 layers, 32-wide,\n"
    "vocabulary 96, deterministic pseudo-random F32 weights) plus a training\n"
    "step counter, as safetensors. Used by the README's first command.\n";

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static float rand_normalish(void)
{
    /* xorshift64*, summed to approximate N(0, 0.02): weights that look real */
    float acc = 0;
    for (int k = 0; k < 4; k++) {
        g_rng ^= g_rng >> 12;
        g_rng ^= g_rng << 25;
        g_rng ^= g_rng >> 27;
        acc += (float)((g_rng * 2685821657736338717ULL) >> 40) / (float)(1 << 24) - 0.5f;
    }
    return acc * 0.035f;
}

/* Adds an F32 tensor filled with fill, or pseudo-random when fill is 0. */
static int add_f32(lmio_statedict *sd, const char *name, int ndim, const uint64_t *shape, float fill,
                   lmio_error *err)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc(n * sizeof *v);
    if (!v) {
        err->code = LMIO_ERR_NOMEM;
        snprintf(err->message, sizeof err->message, "out of memory building the example");
        return 1;
    }
    for (uint64_t i = 0; i < n; i++) v[i] = fill != 0 ? fill : rand_normalish();
    lmio_status s = lmio_statedict_add(sd, name, LMIO_DTYPE_F32, ndim, shape, v, n * sizeof *v, LMIO_COPY, err);
    free(v);
    return s != LMIO_OK;
}

/* One transformer block's tensors, in GPT2LMHeadModel's order. */
static int add_block(lmio_statedict *sd, uint64_t l, uint64_t C, lmio_error *err)
{
    static const struct {
        const char *suffix;
        int ndim;
        uint64_t d0, d1; /* multiples of C */
        float fill;
    } k_block[] = {
        {"ln_1.weight", 1, 1, 0, 1.0f},      {"ln_1.bias", 1, 1, 0, 0},
        {"attn.c_attn.weight", 2, 1, 3, 0},  {"attn.c_attn.bias", 1, 3, 0, 0},
        {"attn.c_proj.weight", 2, 1, 1, 0},  {"attn.c_proj.bias", 1, 1, 0, 0},
        {"ln_2.weight", 1, 1, 0, 1.0f},      {"ln_2.bias", 1, 1, 0, 0},
        {"mlp.c_fc.weight", 2, 1, 4, 0},     {"mlp.c_fc.bias", 1, 4, 0, 0},
        {"mlp.c_proj.weight", 2, 4, 1, 0},   {"mlp.c_proj.bias", 1, 1, 0, 0},
    };
    for (size_t k = 0; k < sizeof k_block / sizeof k_block[0]; k++) {
        char nm[96];
        snprintf(nm, sizeof nm, "transformer.h.%llu.%s", (unsigned long long)l, k_block[k].suffix);
        uint64_t shape[2] = {k_block[k].d0 * C, k_block[k].d1 * C};
        if (add_f32(sd, nm, k_block[k].ndim, shape, k_block[k].fill, err)) return 1;
    }
    return 0;
}

static int build_example(lmio_statedict *sd, lmio_error *err)
{
    const uint64_t V = 96, P = 64, C = 32, L = 2;
    int bad = 0;
    bad |= add_f32(sd, "transformer.wte.weight", 2, (uint64_t[]){V, C}, 0, err);
    bad |= add_f32(sd, "transformer.wpe.weight", 2, (uint64_t[]){P, C}, 0, err);
    for (uint64_t l = 0; l < L && !bad; l++) bad |= add_block(sd, l, C, err);
    bad |= add_f32(sd, "transformer.ln_f.weight", 1, (uint64_t[]){C}, 1.0f, err);
    bad |= add_f32(sd, "transformer.ln_f.bias", 1, (uint64_t[]){C}, 0, err);
    int64_t step = 1000;
    if (!bad) bad |= lmio_statedict_add(sd, "training.step", LMIO_DTYPE_I64, 0, NULL, &step, 8, LMIO_COPY, err) != LMIO_OK;
    if (!bad) bad |= lmio_metadata_set(sd, "format", "pt", err) != LMIO_OK;
    return bad;
}

int cmd_example(const cli_command *self, int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        if ((rc = take_positional(self->name, argv[i], (const char **[]){&out}, 1))) return rc;
    }
    if (!out) return usage_error(self->name, "%s", "missing OUT");
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_create(&sd, &err)) return fail(&err);
    lmio_status s = build_example(sd, &err) ? err.code : lmio_safetensors_save(sd, out, NULL, &err);
    lmio_statedict_free(sd);
    if (s) return fail(&err);
    printf("wrote %s\n", out);
    return EXIT_OK;
}
