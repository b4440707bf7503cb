/* A training program's view of lmio, through the public header only: build
 * a small GPT-2 in memory, save it as a Hugging Face directory, load it back
 * and check that the reloaded model computes the same logits.
 *
 *   gpt2_save_load OUT_DIR [TOKENIZER_DIR]
 *
 * With TOKENIZER_DIR (e.g. from `lmio tokenizer train`), the vocabulary size
 * follows the tokenizer and the tokenizer is saved alongside. */
#include <lmio.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check(lmio_status s, const lmio_error *err)
{
    if (s != LMIO_OK) {
        fprintf(stderr, "error: %s\n", err->message);
        exit(1);
    }
    return 0;
}

/* deterministic N(0, 0.02)-ish weights, as an initialiser would make */
static float randw(uint64_t *s)
{
    float acc = 0;
    for (int k = 0; k < 4; k++) {
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        acc += (float)(*s >> 40) / (float)(1 << 24) - 0.5f;
    }
    return acc * 0.035f;
}

static void add(lmio_statedict *sd, const char *name, uint64_t d0, uint64_t d1, float fill, uint64_t *rng)
{
    lmio_error err;
    uint64_t shape[2] = {d0, d1};
    size_t n = (size_t)(d0 * (d1 ? d1 : 1));
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = isnan(fill) ? randw(rng) : fill;
    check(lmio_statedict_add(sd, name, LMIO_DTYPE_F32, d1 ? 2 : 1, shape, v, n * sizeof *v, LMIO_COPY, &err), &err);
    free(v);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT_DIR [TOKENIZER_DIR]\n", argv[0]);
        return 2;
    }
    lmio_error err;
    lmio_tokenizer *tok = NULL;
    if (argc > 2) check(lmio_tokenizer_load(argv[2], &tok, &err), &err);
    const uint64_t V = tok ? lmio_tokenizer_vocab_size(tok) : 512, P = 128, C = 64, L = 2, H = 4;

    /* 1. the config: GPT-2's defaults, resized */
    lmio_config *cfg;
    check(lmio_config_create("gpt2", &cfg, &err), &err);
    check(lmio_config_set_int(cfg, "vocab_size", (int64_t)V, &err), &err);
    check(lmio_config_set_int(cfg, "n_positions", (int64_t)P, &err), &err);
    check(lmio_config_set_int(cfg, "n_embd", (int64_t)C, &err), &err);
    check(lmio_config_set_int(cfg, "n_layer", (int64_t)L, &err), &err);
    check(lmio_config_set_int(cfg, "n_head", (int64_t)H, &err), &err);
    int32_t eos = tok ? lmio_tokenizer_eos_id(tok) : (int32_t)V - 1;
    check(lmio_config_set_int(cfg, "bos_token_id", eos, &err), &err);
    check(lmio_config_set_int(cfg, "eos_token_id", eos, &err), &err);

    /* 2. the weights, named as Transformers' GPT2LMHeadModel names them */
    uint64_t rng = 0x1234567ULL;
    lmio_statedict *sd;
    check(lmio_statedict_create(&sd, &err), &err);
    add(sd, "transformer.wte.weight", V, C, NAN, &rng);
    add(sd, "transformer.wpe.weight", P, C, NAN, &rng);
    for (uint64_t l = 0; l < L; l++) {
        char n[96];
#define W(suffix, d0, d1, fill) snprintf(n, sizeof n, "transformer.h.%llu." suffix, (unsigned long long)l), add(sd, n, d0, d1, fill, &rng)
        W("ln_1.weight", C, 0, 1.0f); W("ln_1.bias", C, 0, 0.0f);
        W("attn.c_attn.weight", C, 3 * C, NAN); W("attn.c_attn.bias", 3 * C, 0, 0.0f);
        W("attn.c_proj.weight", C, C, NAN); W("attn.c_proj.bias", C, 0, 0.0f);
        W("ln_2.weight", C, 0, 1.0f); W("ln_2.bias", C, 0, 0.0f);
        W("mlp.c_fc.weight", C, 4 * C, NAN); W("mlp.c_fc.bias", 4 * C, 0, 0.0f);
        W("mlp.c_proj.weight", 4 * C, C, NAN); W("mlp.c_proj.bias", C, 0, 0.0f);
#undef W
    }
    add(sd, "transformer.ln_f.weight", C, 0, 1.0f, &rng);
    add(sd, "transformer.ln_f.bias", C, 0, 0.0f, &rng);

    /* 3. save_pretrained */
    lmio_pretrained_opts opts = LMIO_PRETRAINED_OPTS_INIT;
    check(lmio_pretrained_save(argv[1], cfg, sd, tok, &opts, &err), &err);
    printf("saved a %llu-layer GPT-2 (%llu tokens, n_embd %llu) to %s\n", (unsigned long long)L,
           (unsigned long long)V, (unsigned long long)C, argv[1]);

    /* 4. from_pretrained, and the same logits from both models */
    lmio_config *cfg2;
    lmio_statedict *sd2;
    lmio_tokenizer *tok2;
    check(lmio_pretrained_load(argv[1], &cfg2, &sd2, &tok2, &err), &err);
    int32_t ids[8] = {1, 2, 3, 5, 8, 13, 21, 34};
    size_t n = 8;
    int32_t *enc = NULL;
    if (tok2) {
        const char *text = "lmio saves what a model needs";
        check(lmio_tokenizer_encode(tok2, text, strlen(text), &enc, &n, &err), &err);
        if (n > 8) n = 8;
        memcpy(ids, enc, n * sizeof *ids);
        lmio_free(enc);
    }
    lmio_model *a, *b;
    check(lmio_model_create(cfg, sd, &a, &err), &err);
    check(lmio_model_create(cfg2, sd2, &b, &err), &err);
    float *la = malloc(n * V * sizeof *la), *lb = malloc(n * V * sizeof *lb);
    check(lmio_model_logits(a, ids, n, la, &err), &err);
    check(lmio_model_logits(b, ids, n, lb, &err), &err);
    double max_diff = 0;
    for (size_t i = 0; i < n * V; i++) max_diff = fmax(max_diff, fabs((double)la[i] - (double)lb[i]));
    printf("reloaded %zu tensors%s; logits for %zu tokens: max abs difference %g\n", lmio_statedict_count(sd2),
           tok2 ? " and the tokenizer" : "", n, max_diff);
    int rc = max_diff == 0 ? 0 : 1;
    printf(rc ? "MISMATCH\n" : "match: the reloaded model computes exactly the same logits\n");
    free(la);
    free(lb);
    lmio_model_free(a);
    lmio_model_free(b);
    lmio_statedict_free(sd);
    lmio_statedict_free(sd2);
    lmio_config_free(cfg);
    lmio_config_free(cfg2);
    lmio_tokenizer_free(tok);
    lmio_tokenizer_free(tok2);
    return rc;
}
