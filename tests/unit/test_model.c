/* Config, tokenizer, save_pretrained / from_pretrained and the GPT-2 forward
 * pass, from C, so they also run under the sanitizers and valgrind. The
 * comparisons with Transformers and tokenizers live in tests/interop/. */
#include "../../src/core/json.h"
#include "../../src/model/arch.h"
#include "../test.h"

#include <execinfo.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define tmp scratch

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    fputs(s, f);
    fclose(f);
}

static void sizes(void)
{
    uint64_t v;
    CHECK_OK(lmio_parse_size("500MB", &v, &e_)); CHECK(v == 500000000ULL);
    CHECK_OK(lmio_parse_size("2GB", &v, &e_)); CHECK(v == 2000000000ULL);
    CHECK_OK(lmio_parse_size("1.5kb", &v, &e_)); CHECK(v == 1500);
    CHECK_OK(lmio_parse_size("4GiB", &v, &e_)); CHECK(v == 4294967296ULL);
    CHECK_OK(lmio_parse_size("123", &v, &e_)); CHECK(v == 123);
    lmio_error err;
    CHECK(lmio_parse_size("5 parsecs", &v, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_parse_size("-1GB", &v, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_parse_size("0", &v, &err) == LMIO_ERR_INVALID_ARG);
}

static void config(void)
{
    lmio_config *c, *d;
    lmio_error err;
    CHECK_OK(lmio_config_create_gpt2(&c, &e_));
    int64_t v;
    CHECK_OK(lmio_config_get_int(c, "hidden_size", &v, &e_)); /* alias of n_embd */
    CHECK(v == 768);
    CHECK_OK(lmio_config_set_int(c, "num_hidden_layers", 3, &e_));
    CHECK_OK(lmio_config_set_string(c, "my_key", "kept", &e_));
    CHECK_OK(lmio_config_set_float(c, "layer_norm_epsilon", 1e-6, &e_));
    CHECK_OK(lmio_config_save(c, tmp("config.json"), &e_));
    CHECK_OK(lmio_config_load(tmp("config.json"), &d, &e_));
    const char *s;
    CHECK_OK(lmio_config_get_string(d, "my_key", &s, &e_));
    CHECK(!strcmp(s, "kept"));
    CHECK_OK(lmio_config_get_int(d, "n_layer", &v, &e_));
    CHECK(v == 3);
    double eps;
    CHECK_OK(lmio_config_get_float(d, "layer_norm_epsilon", &eps, &e_));
    CHECK(eps == 1e-6);
    CHECK(lmio_config_get_int(d, "my_key", &v, &err) == LMIO_ERR_FORMAT);
    CHECK(strstr(err.message, "\"my_key\" is the string \"kept\"; expected an integer") != NULL);
    CHECK(lmio_config_get_int(d, "no_such_key", &v, &err) == LMIO_ERR_NOT_FOUND);
    lmio_config_free(d);
    write_text(tmp("newer.json"), "{\"model_type\": \"gpt2\", \"lmio_format_version\": \"7.1\"}");
    CHECK(lmio_config_load(tmp("newer.json"), &d, &err) == LMIO_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "newer lmio") != NULL);
    write_text(tmp("array.json"), "[1, 2]");
    CHECK(lmio_config_load(tmp("array.json"), &d, &err) == LMIO_ERR_FORMAT);
    lmio_config_free(c);
}

/* Config numbers are taken exactly or refused with the file and the value:
 * no undefined float-to-int casts, no wrapped versions, no silent default
 * for a bad n_inner. */
static void config_numbers(void)
{
    lmio_error err;
    lmio_config *d = NULL;
    static const struct {
        const char *json, *fragment;
        lmio_status st;
    } bad[] = {
        {"{\"model_type\": \"gpt2\", \"n_layer\": 1e30}", "\"n_layer\" is 1e+30; expected an integer in 1..65536", LMIO_ERR_FORMAT},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 9223372036854775807}", "expected an integer in 1..65536", LMIO_ERR_FORMAT},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 12.5}", "\"n_layer\" is 12.5; expected an integer", LMIO_ERR_FORMAT},
        {"{\"model_type\": \"gpt2\", \"n_layer\": 0}", "\"n_layer\" is 0; expected an integer in 1..65536", LMIO_ERR_FORMAT},
        {"{\"model_type\": \"gpt2\", \"n_inner\": -5}", "\"n_inner\" is -5; expected an integer in 1..16777216", LMIO_ERR_FORMAT},
        {"{\"model_type\": \"gpt2\", \"n_inner\": 1e30}", "\"n_inner\" is", LMIO_ERR_FORMAT},
        {"{\"model_type\": \"gpt2\", \"vocab_size\": \"50257\"}", "\"vocab_size\" is the string \"50257\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": \"4294967297.0\"}", "newer lmio", LMIO_ERR_UNSUPPORTED},
        {"{\"lmio_format_version\": \"18446744073709551616.0\"}", "expected a string \"MAJOR.MINOR\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": \"-7\"}", "\"lmio_format_version\" is the string \"-7\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": \"1.x\"}", "expected a string \"MAJOR.MINOR\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": \"\"}", "expected a string \"MAJOR.MINOR\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": \" 1.0\"}", "expected a string \"MAJOR.MINOR\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": \"1.0.0\"}", "expected a string \"MAJOR.MINOR\"", LMIO_ERR_FORMAT},
        {"{\"lmio_format_version\": 1.0}", "\"lmio_format_version\" is 1; expected a string", LMIO_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(tmp("num.json"), bad[i].json);
        d = NULL;
        CHECK(lmio_config_load(tmp("num.json"), &d, &err) == bad[i].st);
        CHECK(d == NULL);
        CHECK(strstr(err.message, bad[i].fragment) != NULL);
        CHECK(strstr(err.path, "num.json") != NULL);
        if (!strstr(err.message, bad[i].fragment)) fprintf(stderr, "  case %zu: %s\n", i, err.message);
    }
    /* exact values pass: an integral real, null meaning "the default",
     * the versions lmio writes */
    write_text(tmp("num.json"), "{\"model_type\": \"gpt2\", \"n_layer\": 12.0, \"n_inner\": null, "
                                "\"lmio_format_version\": \"1.0\", \"seed\": -3}");
    CHECK_OK(lmio_config_load(tmp("num.json"), &d, &err));
    int64_t v = 0;
    CHECK_OK(lmio_config_get_int(d, "n_layer", &v, &err));
    CHECK(v == 12);
    CHECK(lmio_config_get_int(d, "n_inner", &v, &err) == LMIO_ERR_NOT_FOUND);
    CHECK_OK(lmio_config_get_int(d, "seed", &v, &err));
    CHECK(v == -3);
    /* a getter refuses what a setter put out of range, too */
    CHECK_OK(lmio_config_set_float(d, "seed", 9223372036854775808.0, &err));
    CHECK(lmio_config_get_int(d, "seed", &v, &err) == LMIO_ERR_FORMAT);
    CHECK_OK(lmio_config_set_int(d, "n_head", -1, &err));
    CHECK(lmio_config_get_int(d, "num_attention_heads", &v, &err) == LMIO_ERR_FORMAT);
    CHECK(strstr(err.message, "\"n_head\" is -1; expected an integer in 1..65536") != NULL);
    lmio_config_free(d);
}

static lmio_tokenizer *train_small(void)
{
    write_text(tmp("train.txt"),
               "the cat sat on the mat. the cat ate the rat. the rat sat on the cat's hat!\n"
               "naïve café — 日本語 テキスト 👋🏽 <|endoftext|> the end, the end, the end.\n");
    const char *files[] = {tmp("train.txt")};
    const char *special[] = {"<|endoftext|>"};
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    o.vocab_size = 300;
    o.special = special;
    o.n_special = 1;
    lmio_tokenizer *t = NULL;
    CHECK_OK(lmio_tokenizer_train(files, 1, &o, &t, &e_));
    return t;
}

/* An added token's id of 2^32 + eos was cast to int32 and became eos. */
static void added_token_ids(const lmio_tokenizer *t)
{
    mkdir(tmp("tok3"), 0777);
    CHECK_OK(lmio_tokenizer_save(t, tmp("tok3"), &e_));
    char p[600], *text = NULL;
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp("tok3"));
    FILE *f = fopen(p, "rb");
    long n = 0;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (text = calloc((size_t)n + 32, 1)) && fread(text, 1, (size_t)n, f) != (size_t)n)
        n = 0;
    if (f) fclose(f);
    char *at = text ? strstr(text, "\"added_tokens\"") : NULL, *id = at ? strstr(at, "\"id\": ") : NULL;
    CHECK(id != NULL);
    if (!id) { free(text); return; }
    id += 6;
    long long eos = strtoll(id, NULL, 10);
    char *rest = id + strspn(id, "0123456789"), big[32], tail[1 << 16];
    snprintf(tail, sizeof tail, "%s", rest);
    snprintf(big, sizeof big, "%lld", 4294967296LL + eos);
    CHECK(strlen(rest) < sizeof tail);
    memcpy(id, big, strlen(big));
    memcpy(id + strlen(big), tail, strlen(tail) + 1);
    f = fopen(p, "wb");
    CHECK(f && fputs(text, f) >= 0);
    if (f) fclose(f);
    free(text);
    lmio_tokenizer *u = NULL;
    lmio_error err;
    CHECK(lmio_tokenizer_load(tmp("tok3"), &u, &err) == LMIO_ERR_FORMAT);
    CHECK(u == NULL);
    CHECK(strstr(err.message, "expected 0..2147483647") != NULL);
    CHECK(strstr(err.path, "tokenizer.json") != NULL);
    lmio_tokenizer_free(u);
}

static void tokenizer(void)
{
    lmio_tokenizer *t = train_small();
    if (!t) return;
    CHECK(lmio_tokenizer_vocab_size(t) > 256 && lmio_tokenizer_vocab_size(t) <= 300);
    int32_t eos = lmio_tokenizer_eos_id(t);
    CHECK(eos == (int32_t)lmio_tokenizer_vocab_size(t) - 1);
    const char *text = "the cat<|endoftext|>sat — naïve 👋🏽\t\n  x";
    int32_t *ids;
    size_t n;
    CHECK_OK(lmio_tokenizer_encode(t, text, strlen(text), &ids, &n, &e_));
    int found = 0;
    for (size_t i = 0; i < n; i++) found |= ids[i] == eos;
    CHECK(found); /* the special token is matched whole */
    char *back;
    size_t bl;
    CHECK_OK(lmio_tokenizer_decode(t, ids, n, &back, &bl, &e_));
    CHECK(bl == strlen(text) && !memcmp(back, text, bl));
    lmio_free(back);
    mkdir(tmp("tok"), 0777);
    CHECK_OK(lmio_tokenizer_save(t, tmp("tok"), &e_));
    lmio_tokenizer *u;
    CHECK_OK(lmio_tokenizer_load(tmp("tok"), &u, &e_));
    int32_t *ids2;
    size_t n2;
    CHECK_OK(lmio_tokenizer_encode(u, text, strlen(text), &ids2, &n2, &e_));
    CHECK(n == n2 && !memcmp(ids, ids2, n * sizeof *ids));
    lmio_free(ids2);
    lmio_tokenizer_free(u);
    /* vocab.json + merges.txt alone */
    char p[600];
    snprintf(p, sizeof p, "%s/tokenizer.json", tmp("tok"));
    unlink(p);
    CHECK_OK(lmio_tokenizer_load(tmp("tok"), &u, &e_));
    CHECK_OK(lmio_tokenizer_encode(u, text, strlen(text), &ids2, &n2, &e_));
    CHECK(n == n2 && !memcmp(ids, ids2, n * sizeof *ids));
    lmio_free(ids2);
    lmio_tokenizer_free(u);
    lmio_free(ids);
    lmio_error err;
    CHECK(lmio_tokenizer_encode(t, "ok\xc3", 3, &ids, &n, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(err.offset == 2);
    int32_t bad = 99999;
    CHECK(lmio_tokenizer_decode(t, &bad, 1, &back, &bl, &err) == LMIO_ERR_INVALID_ARG);
    added_token_ids(t);
    lmio_tokenizer_free(t);
}

/* a tiny GPT-2: vocab V, n_embd 16, 2 layers, 2 heads, P positions */
static lmio_statedict *tiny_weights_p(size_t V, size_t P, float **keep)
{
    const size_t C = 16;
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    uint64_t rng = 42;
    struct { const char *n; size_t d0, d1; } spec[] = {
        {"transformer.wte.weight", V, C}, {"transformer.wpe.weight", P, C},
        {"transformer.ln_f.weight", C, 0}, {"transformer.ln_f.bias", C, 0}};
    for (int i = 0; i < 4 + 24; i++) {
        char name[96];
        size_t d0, d1;
        if (i < 4) { snprintf(name, sizeof name, "%s", spec[i].n); d0 = spec[i].d0; d1 = spec[i].d1; }
        else {
            static const struct { const char *s; int a, b; } L[] = {
                {"ln_1.weight", 1, 0}, {"ln_1.bias", 1, 0}, {"attn.c_attn.weight", 1, 3}, {"attn.c_attn.bias", 3, 0},
                {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0}, {"ln_2.weight", 1, 0}, {"ln_2.bias", 1, 0},
                {"mlp.c_fc.weight", 1, 4}, {"mlp.c_fc.bias", 4, 0}, {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0}};
            int k = (i - 4) % 12, l = (i - 4) / 12;
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, L[k].s);
            d0 = C * (size_t)L[k].a;
            d1 = C * (size_t)L[k].b;
        }
        size_t n = d0 * (d1 ? d1 : 1);
        float *v = malloc(n * sizeof *v);
        for (size_t j = 0; j < n; j++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            v[j] = ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) * 0.2f + (strstr(name, "ln_") && strstr(name, "weight") ? 1.0f : 0.0f);
        }
        uint64_t shape[2] = {d0, d1};
        lmio_statedict_add(sd, name, LMIO_DTYPE_F32, d1 ? 2 : 1, shape, v, n * sizeof *v, LMIO_BORROW, NULL);
        keep[i] = v;
    }
    return sd;
}

static lmio_statedict *tiny_weights(size_t V, float **keep) { return tiny_weights_p(V, 32, keep); }

static lmio_config *tiny_config(size_t V)
{
    lmio_config *c;
    lmio_config_create_gpt2(&c, NULL);
    lmio_config_set_int(c, "vocab_size", (int64_t)V, NULL);
    lmio_config_set_int(c, "n_positions", 32, NULL);
    lmio_config_set_int(c, "n_embd", 16, NULL);
    lmio_config_set_int(c, "n_layer", 2, NULL);
    lmio_config_set_int(c, "n_head", 2, NULL);
    lmio_config_set_int(c, "eos_token_id", (int64_t)V - 1, NULL);
    lmio_config_set_int(c, "bos_token_id", (int64_t)V - 1, NULL);
    return c;
}

static void logits_of(const lmio_config *c, const lmio_statedict *w, float *out)
{
    lmio_gpt2 *m = NULL;
    int32_t ids[5] = {1, 7, 3, 3, 0};
    CHECK_OK(lmio_gpt2_create(c, w, &m, &e_));
    if (m) CHECK_OK(lmio_gpt2_logits(m, ids, 5, out, &e_));
    lmio_gpt2_free(m);
}

/* The tiny model both directory tests start from: a trained tokenizer, a
 * GPT-2 config sized to it and random weights. */
typedef struct tiny {
    lmio_tokenizer *tok;
    size_t V;
    float *keep[28];
    lmio_statedict *w;
    lmio_config *c;
} tiny;

static void tiny_begin(tiny *m)
{
    m->tok = train_small();
    m->V = lmio_tokenizer_vocab_size(m->tok);
    m->w = tiny_weights(m->V, m->keep);
    m->c = tiny_config(m->V);
}

static void tiny_end(tiny *m)
{
    lmio_config_free(m->c);
    lmio_statedict_free(m->w);
    lmio_tokenizer_free(m->tok);
    for (int i = 0; i < 28; i++) free(m->keep[i]);
}

static void pretrained(void)
{
    tiny m;
    tiny_begin(&m);
    lmio_tokenizer *tok = m.tok;
    size_t V = m.V;
    lmio_statedict *w = m.w;
    lmio_config *c = m.c;
    float *a = malloc(5 * V * 4), *b = malloc(5 * V * 4);
    logits_of(c, w, a);

    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 4000; /* several shards */
    CHECK_OK(lmio_pretrained_save(tmp("model"), c, w, tok, &o, &e_));
    char p[700];
    struct stat st;
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tmp("model"));
    CHECK(stat(p, &st) == 0);
    snprintf(p, sizeof p, "%s/generation_config.json", tmp("model"));
    CHECK(stat(p, &st) == 0);
    lmio_config *c2;
    lmio_statedict *w2;
    lmio_tokenizer *t2;
    CHECK_OK(lmio_pretrained_load(tmp("model"), &c2, &w2, &t2, &e_));
    CHECK(t2 != NULL && lmio_statedict_count(w2) == lmio_statedict_count(w));
    logits_of(c2, w2, b);
    CHECK(!memcmp(a, b, 5 * V * 4)); /* f32 round trip: identical */
    lmio_config_free(c2);
    lmio_statedict_free(w2);
    lmio_tokenizer_free(t2);

    /* saving again replaces the directory whole; bf16 stays close */
    o = (lmio_pretrained_opts)LMIO_PRETRAINED_OPTS_INIT;
    o.dtype = LMIO_DTYPE_BF16;
    CHECK_OK(lmio_pretrained_save(tmp("model"), c, w, NULL, &o, &e_));
    CHECK(stat(p, &st) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", tmp("model"));
    CHECK(stat(p, &st) != 0); /* the old shards went with the old directory */
    CHECK_OK(lmio_pretrained_load(tmp("model"), &c2, &w2, &t2, &e_));
    CHECK(t2 == NULL);
    lmio_tensor t;
    CHECK_OK(lmio_tensor_find(w2, "transformer.wte.weight", &t, &e_));
    CHECK(t.dtype == LMIO_DTYPE_BF16);
    logits_of(c2, w2, b);
    float md = 0;
    for (size_t i = 0; i < 5 * V; i++) md = fmaxf(md, fabsf(a[i] - b[i]));
    CHECK_MSG(md < 0.05f, "bf16 logits differ by %g", md);
    const char *dt;
    CHECK_OK(lmio_config_get_string(c2, "dtype", &dt, &e_));
    CHECK(!strcmp(dt, "bfloat16"));
    lmio_config_free(c2);
    lmio_statedict_free(w2);

    /* a directory of other files is never replaced */
    mkdir(tmp("photos"), 0777);
    snprintf(p, sizeof p, "%s/cat.jpg", tmp("photos"));
    write_text(p, "meow");
    lmio_error err;
    CHECK(lmio_pretrained_save(tmp("photos"), c, w, NULL, NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "holds \"cat.jpg\", which lmio does not write") != NULL);
    CHECK(stat(p, &st) == 0);

    /* broken directories */
    CHECK(lmio_pretrained_load(tmp("nothing-here"), &c2, &w2, NULL, &err) == LMIO_ERR_NOT_FOUND);
    mkdir(tmp("noweights"), 0777);
    CHECK_OK(lmio_config_save(c, tmp("noweights"), &e_));
    CHECK(lmio_pretrained_load(tmp("noweights"), NULL, &w2, NULL, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "no weights; expected one of") && strstr(err.message, "model.safetensors"));
    /* the untied head must be there */
    lmio_config_set_bool(c, "tie_word_embeddings", 0, NULL);
    lmio_config_save(c, tmp("model"), NULL);
    CHECK(lmio_pretrained_load(tmp("model"), NULL, &w2, NULL, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "lm_head.weight") != NULL);

    tiny_end(&m);
    free(a);
    free(b);
}


/* ---- the architecture table and lmio_model_* ---- */

static void arch_table(void)
{
    CHECK(lmio__arch_find("gpt2") != NULL);
    CHECK(lmio__arch_find("GPT2") == NULL); /* model_type is case-sensitive in Transformers too */
    CHECK(lmio__arch_find("gpt") == NULL);
    CHECK(lmio__arch_find("gpt2 ") == NULL);
    CHECK(lmio__arch_find("bert") == NULL);
    CHECK(lmio__arch_find("") == NULL);
    CHECK(lmio__arch_find(NULL) == NULL);
    CHECK(lmio_arch_supported("gpt2") && lmio_arch_supported("llama") && !lmio_arch_supported("Llama") &&
          !lmio_arch_supported(NULL));
    CHECK(lmio_arch_name(0) && !strcmp(lmio_arch_name(0), "gpt2"));
    CHECK(lmio_arch_name(1) && !strcmp(lmio_arch_name(1), "llama"));
    CHECK(lmio_arch_name(2) == NULL);
    const lmio__arch *a = lmio__arch_find("gpt2");
    if (!a) return;
    CHECK(!strcmp(a->hf_class, "GPT2LMHeadModel"));
    /* "{L}" resolves both ways, one spelling per layer */
    size_t layer = 99;
    const lmio__tensor_spec *ts = lmio__arch_spec(a, "transformer.h.11.attn.c_attn.weight", &layer);
    CHECK(ts && layer == 11 && (ts->flags & LMIO__T_PER_LAYER) && (ts->flags & LMIO__T_CONV1D));
    char name[128];
    CHECK(ts && lmio__tensor_name(ts->gguf_name, 11, name, sizeof name) && !strcmp(name, "blk.11.attn_qkv.weight"));
    CHECK(lmio__arch_spec(a, "transformer.h.01.ln_1.weight", NULL) == NULL);
    CHECK(lmio__arch_spec(a, "transformer.h..ln_1.weight", NULL) == NULL);
    CHECK(lmio__arch_spec(a, "h.0.ln_1.weight", NULL) == NULL); /* the prefix is load's business */
    ts = lmio__arch_spec(a, "lm_head.weight", NULL);
    CHECK(ts && (ts->flags & LMIO__T_TIED) && !strcmp(ts->tied_to, "transformer.wte.weight"));
    CHECK(lmio__arch_dropped(a, "transformer.h.3.attn.masked_bias") && lmio__arch_dropped(a, "h.0.attn.bias"));
    CHECK(!lmio__arch_dropped(a, "transformer.h.3.attn.c_attn.bias"));
    CHECK(!lmio__tensor_name(ts->hf_name, 0, name, 4)); /* too small: refused, not truncated */
}

/* lmio_model_* computes exactly what the lmio_gpt2_* wrappers do, and
 * generation through the KV cache (grown past its first sizes) agrees with
 * one-shot logits. */
static void model_api(void)
{
    float *keep[28];
    const size_t V = 97, P = 200;
    lmio_statedict *w = tiny_weights_p(V, P, keep);
    lmio_config *c = tiny_config(V);
    lmio_config_set_int(c, "n_positions", (int64_t)P, NULL);
    lmio_model *m = NULL;
    lmio_gpt2 *g = NULL;
    CHECK_OK(lmio_model_create(c, w, &m, &e_));
    CHECK_OK(lmio_gpt2_create(c, w, &g, &e_));
    if (!m || !g) goto out;
    CHECK(!strcmp(lmio_model_type(m), "gpt2"));
    CHECK(lmio_model_vocab_size(m) == V && lmio_gpt2_vocab_size(g) == V && lmio_model_max_positions(m) == P);
    int32_t ids[6] = {1, 7, 3, 3, 0, 96};
    float a[6 * 97], b[6 * 97];
    CHECK_OK(lmio_model_logits(m, ids, 6, a, &e_));
    CHECK_OK(lmio_gpt2_logits(g, ids, 6, b, &e_));
    CHECK(!memcmp(a, b, sizeof a));
    lmio_generate_opts o = LMIO_GENERATE_OPTS_INIT;
    o.greedy = 0;
    o.temperature = 0.8f;
    o.seed = 1234;
    int32_t x[150], y[150];
    size_t nx = 0, ny = 0;
    CHECK_OK(lmio_model_generate(m, ids, 3, 150, &o, x, &nx, &e_));
    CHECK_OK(lmio_gpt2_generate(g, ids, 3, 150, &o, y, &ny, &e_));
    CHECK(nx == 150 && ny == 150 && !memcmp(x, y, sizeof x));
    /* token by token through the KV cache (grown from 64 to 128 to 200
     * positions on the way) gives exactly the one-shot logits */
    int32_t seq[153];
    memcpy(seq, ids, 3 * sizeof *ids);
    memcpy(seq + 3, x, 150 * sizeof *x);
    float *all = malloc(153 * V * sizeof *all), row[97];
    CHECK_OK(lmio_model_logits(g, seq, 153, all, &e_));
    const lmio__arch *arch = lmio__arch_find("gpt2");
    void *impl = NULL;
    CHECK_OK(arch->create(c, w, &impl, &e_));
    size_t same = 0;
    for (size_t t = 0; impl && t < 153; t++) {
        CHECK_OK(arch->forward(impl, &seq[t], 1, t, row, 1, &e_));
        same += !memcmp(row, all + t * V, sizeof row);
    }
    CHECK_MSG(same == 153, "%zu of 153 positions give the one-shot logits", same);
    arch->free(impl);
    free(all);
    lmio_error err;
    /* past n_positions: refused, nothing written out of bounds */
    CHECK(lmio_model_generate(m, seq, 150, 60, &o, x, &nx, &err) == LMIO_ERR_LIMIT);
    CHECK(strstr(err.message, "n_positions = 200") != NULL);
out:
    lmio_model_free(m);
    lmio_gpt2_free(g);
    lmio_config_free(c);
    lmio_statedict_free(w);
    for (int i = 0; i < 28; i++) free(keep[i]);
}

static void unknown_model_type(void)
{
    float *keep[28];
    lmio_statedict *w = tiny_weights(50, keep);
    lmio_config *c = tiny_config(50);
    lmio_config_set_string(c, "model_type", "bert", NULL);
    lmio_model *m = NULL;
    lmio_error err;
    CHECK(lmio_model_create(c, w, &m, &err) == LMIO_ERR_UNSUPPORTED && m == NULL);
    CHECK_MSG(strstr(err.message, "model_type \"bert\" is not an architecture lmio can run; expected one of: gpt2"),
              "%s", err.message);
    CHECK(!strcmp(err.key, "model_type"));
    CHECK(lmio_gpt2_create(c, w, &m, &err) == LMIO_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "expected \"gpt2\"") != NULL);
    lmio_config_free(c);
    /* no defaults or aliases for an unknown model type */
    write_text(tmp("bert.json"), "{\"model_type\": \"bert\", \"n_head\": 2}");
    CHECK_OK(lmio_config_load(tmp("bert.json"), &c, &e_));
    int64_t v;
    CHECK(lmio_config_get_int(c, "hidden_size", &v, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(lmio_config_get_int(c, "n_head", &v, &err) == LMIO_OK && v == 2); /* its own value */
    CHECK(lmio_config_get_int(c, "n_layer", &v, &err) == LMIO_ERR_NOT_FOUND); /* GPT2Config's 12 is not bert's */
    lmio_config *d = NULL;
    CHECK(lmio_config_create("bert", &d, &err) == LMIO_ERR_UNSUPPORTED && d == NULL);
    CHECK(strstr(err.message, "\"bert\"") && strstr(err.message, "gpt2"));

    /* ...but its directories save and load with every tensor as it is:
     * nothing dropped, renamed or re-tied */
    uint64_t shape[1] = {4};
    float four[4] = {1, 2, 3, 4};
    lmio_statedict_add(w, "h.0.attn.bias", LMIO_DTYPE_F32, 1, shape, four, sizeof four, LMIO_BORROW, NULL);
    lmio_statedict_add(w, "lm_head.weight", LMIO_DTYPE_F32, 1, shape, four, sizeof four, LMIO_BORROW, NULL);
    CHECK_OK(lmio_pretrained_save(tmp("bert"), c, w, NULL, NULL, &e_));
    lmio_config *c2 = NULL;
    lmio_statedict *w2 = NULL;
    CHECK_OK(lmio_pretrained_load(tmp("bert"), &c2, &w2, NULL, &e_));
    CHECK(w2 && lmio_statedict_count(w2) == lmio_statedict_count(w));
    lmio_tensor t;
    CHECK(w2 && lmio_tensor_find(w2, "h.0.attn.bias", &t, NULL) == LMIO_OK);
    CHECK(w2 && lmio_tensor_find(w2, "lm_head.weight", &t, NULL) == LMIO_OK);
    CHECK(c2 && lmio__json_get(lmio__config_json(c2), "architectures") == NULL);
    lmio_config_free(c2);
    lmio_statedict_free(w2);
    lmio_config_free(c);
    lmio_statedict_free(w);
    for (int i = 0; i < 28; i++) free(keep[i]);
}


/* What the GPT-2 entry's table makes save and load do: a tied head equal to
 * wte and the legacy buffers are left out, a differing tied head is refused,
 * bare names gain "transformer." on load. */
static void gpt2_save_load_rules(void)
{
    float *keep[28];
    lmio_statedict *w = tiny_weights(50, keep);
    lmio_config *c = tiny_config(50);
    lmio_tensor wte;
    lmio_tensor_find(w, "transformer.wte.weight", &wte, NULL);
    uint64_t one = 1;
    float mask = -1e4f;
    lmio_statedict_add(w, "lm_head.weight", wte.dtype, wte.ndim, wte.shape, wte.data, wte.nbytes, LMIO_BORROW, NULL);
    lmio_statedict_add(w, "transformer.h.1.attn.masked_bias", LMIO_DTYPE_F32, 1, &one, &mask, 4, LMIO_BORROW, NULL);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.durable = 0;
    CHECK_OK(lmio_pretrained_save(tmp("rules"), c, w, NULL, &o, &e_));
    lmio_statedict *sd = NULL;
    char p[700];
    snprintf(p, sizeof p, "%s/model.safetensors", tmp("rules"));
    CHECK_OK(lmio_statedict_open(p, NULL, &sd, &e_));
    lmio_tensor t;
    CHECK(sd && lmio_statedict_count(sd) == 28);
    CHECK(sd && lmio_tensor_find(sd, "lm_head.weight", &t, NULL) == LMIO_ERR_NOT_FOUND);
    CHECK(sd && lmio_tensor_find(sd, "transformer.h.1.attn.masked_bias", &t, NULL) == LMIO_ERR_NOT_FOUND);
    lmio_statedict_free(sd);
    lmio_config *c2 = NULL;
    CHECK_OK(lmio_config_load(tmp("rules"), &c2, &e_));
    lmio__json *arch = lmio__json_get(lmio__config_json(c2), "architectures");
    CHECK(lmio__json_array_size(arch) == 1 &&
          !strcmp(lmio__json_string_value(lmio__json_array_get(arch, 0)), "GPT2LMHeadModel"));
    lmio_config_free(c2);

    /* a tied head that is not wte would be lost: refused */
    lmio_statedict *w2;
    lmio_statedict_create(&w2, NULL);
    float *other = calloc(wte.numel, sizeof *other);
    for (size_t i = 0; i < lmio_statedict_count(w); i++) {
        lmio_statedict_get(w, i, &t, NULL);
        const void *data = strcmp(t.name, "lm_head.weight") ? t.data : other;
        lmio_statedict_add(w2, t.name, t.dtype, t.ndim, t.shape, data, t.nbytes, LMIO_BORROW, NULL);
    }
    lmio_error err;
    CHECK(lmio_pretrained_save(tmp("rules"), c, w2, NULL, &o, &err) == LMIO_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err.message, "lm_head.weight differs from transformer.wte.weight but tie_word_embeddings is "
                                  "true"),
              "%s", err.message);
    lmio_statedict_free(w2);
    free(other);

    /* bare names (openai-community/gpt2's layout) load under GPT2LMHeadModel's */
    lmio_statedict_create(&w2, NULL);
    for (size_t i = 0; i < lmio_statedict_count(w); i++) {
        lmio_statedict_get(w, i, &t, NULL);
        const char *bare = strncmp(t.name, "transformer.", 12) ? t.name : t.name + 12;
        lmio_statedict_add(w2, bare, t.dtype, t.ndim, t.shape, t.data, t.nbytes, LMIO_BORROW, NULL);
    }
    mkdir(tmp("bare"), 0777);
    snprintf(p, sizeof p, "%s/model.safetensors", tmp("bare"));
    CHECK_OK(lmio_safetensors_save(w2, p, NULL, &e_));
    CHECK_OK(lmio_config_save(c, tmp("bare"), &e_));
    lmio_statedict *w3 = NULL;
    CHECK_OK(lmio_pretrained_load(tmp("bare"), NULL, &w3, NULL, &e_));
    CHECK(w3 && lmio_statedict_count(w3) == 28); /* no head, no mask buffer */
    CHECK(w3 && lmio_tensor_find(w3, "transformer.h.1.mlp.c_proj.bias", &t, NULL) == LMIO_OK);
    CHECK(w3 && lmio_tensor_find(w3, "transformer.wte.weight", &t, NULL) == LMIO_OK);
    lmio_statedict_free(w3);
    lmio_statedict_free(w2);
    lmio_config_free(c);
    lmio_statedict_free(w);
    for (int i = 0; i < 28; i++) free(keep[i]);
}

/* ---- a config claiming more than its weights hold ---- */

#define ALLOC_CAP (64u << 20)
static size_t g_biggest;
static void *capped_malloc(void *ctx, size_t n)
{
    (void)ctx;
    if (n > g_biggest) g_biggest = n;
    return n > ALLOC_CAP ? NULL : malloc(n);
}
static void *capped_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (n > g_biggest) g_biggest = n;
    return n > ALLOC_CAP ? NULL : realloc(p, n);
}
static void capped_free(void *ctx, void *p)
{
    (void)ctx;
    free(p);
}

static void hostile_config(void)
{
    float *keep[28];
    lmio_statedict *w = tiny_weights(50, keep);
    lmio_config *c = tiny_config(50);
    lmio__json_init();
    lmio_allocator al = {capped_malloc, capped_realloc, capped_free, NULL};
    lmio_error err;
    lmio_model *m = NULL;

    /* 65536 layers (the config cap) over 2 layers of weights: the layer
     * array and caches sized from it would be gigabytes */
    lmio_config_set_int(c, "n_layer", 1 << 16, NULL);
    g_biggest = 0;
    lmio_set_allocator(&al);
    lmio_status s = lmio_model_create(c, w, &m, &err);
    lmio_set_allocator(NULL);
    CHECK_MSG(s == LMIO_ERR_NOT_FOUND, "%s: %s", lmio_status_str(s), err.message);
    CHECK_MSG(strstr(err.message, "missing tensor \"transformer.h.2.ln_1.weight\"") &&
                  strstr(err.message, "n_layer = 65536"),
              "%s", err.message);
    CHECK_MSG(g_biggest < 4096, "create asked for %zu bytes before failing", g_biggest);
    lmio_model_free(m);

    /* positions and width that the embeddings contradict: named with the config keys */
    lmio_config_set_int(c, "n_layer", 2, NULL);
    lmio_config_set_int(c, "n_positions", 1 << 24, NULL);
    g_biggest = 0;
    lmio_set_allocator(&al);
    s = lmio_model_create(c, w, &m, &err);
    lmio_set_allocator(NULL);
    CHECK(s == LMIO_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "\"transformer.wpe.weight\" has shape [32, 16]; expected [16777216, 16] "
                                  "(n_positions, n_embd)"),
              "%s", err.message);
    CHECK(g_biggest < 4096);
    lmio_config_set_int(c, "n_positions", 32, NULL);
    lmio_config_set_int(c, "n_inner", 1 << 24, NULL);
    CHECK(lmio_model_create(c, w, &m, &err) == LMIO_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "\"transformer.h.0.mlp.c_fc.weight\" has shape [16, 64]"), "%s", err.message);
    lmio_config_set_int(c, "n_inner", (int64_t)1 << 40, NULL);
    s = lmio_model_create(c, w, &m, &err);
    CHECK_MSG(s == LMIO_ERR_FORMAT, "%s: %s", lmio_status_str(s), err.message);
    CHECK_MSG(strstr(err.message, "\"n_inner\" is 1099511627776; expected an integer in 1..16777216"), "%s",
              err.message);

    /* within the caps and matching the weights: builds, and the KV cache
     * grows with the positions run, not to n_positions */
    lmio_config_set_null(c, "n_inner", NULL);
    g_biggest = 0;
    lmio_set_allocator(&al);
    s = lmio_model_create(c, w, &m, &err);
    int32_t id = 5;
    float logits[50];
    if (!s) s = lmio_model_logits(m, &id, 1, logits, &err);
    lmio_model_free(m);
    lmio_set_allocator(NULL);
    CHECK_MSG(s == LMIO_OK, "%s", err.message);
    lmio_config_free(c);
    lmio_statedict_free(w);
    for (int i = 0; i < 28; i++) free(keep[i]);
}

/* ---- Llama ---- */

/* A tiny Llama: hidden 16, 4 query heads and 2 key/value heads of 4, MLP
 * 24, `layers` layers, vocab V; untied. Tensors are owned by the dict. */
static lmio_statedict *llama_weights(size_t V, int layers)
{
    const size_t C = 16, HD = 16, GD = 8, I = 24;
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    uint64_t rng = 7;
    static const struct { const char *s; int r, c; } L[] = { /* 0: C, 1: HD, 2: GD, 3: I */
        {"self_attn.q_proj.weight", 1, 0}, {"self_attn.k_proj.weight", 2, 0}, {"self_attn.v_proj.weight", 2, 0},
        {"self_attn.o_proj.weight", 0, 1}, {"mlp.gate_proj.weight", 3, 0}, {"mlp.up_proj.weight", 3, 0},
        {"mlp.down_proj.weight", 0, 3}, {"input_layernorm.weight", 0, -1}, {"post_attention_layernorm.weight", 0, -1}};
    const size_t dim[4] = {C, HD, GD, I};
    float *v = malloc(V * C * sizeof *v);
    for (int i = -3; i < layers * 9; i++) {
        char name[96];
        size_t d0, d1;
        if (i == -3) { snprintf(name, sizeof name, "model.embed_tokens.weight"); d0 = V; d1 = C; }
        else if (i == -2) { snprintf(name, sizeof name, "lm_head.weight"); d0 = V; d1 = C; }
        else if (i == -1) { snprintf(name, sizeof name, "model.norm.weight"); d0 = C; d1 = 0; }
        else {
            snprintf(name, sizeof name, "model.layers.%d.%s", i / 9, L[i % 9].s);
            d0 = dim[L[i % 9].r];
            d1 = L[i % 9].c < 0 ? 0 : dim[L[i % 9].c];
        }
        size_t n = d0 * (d1 ? d1 : 1);
        for (size_t j = 0; j < n; j++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            v[j] = ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) * 0.8f + (strstr(name, "norm") ? 1.0f : 0.0f);
        }
        uint64_t shape[2] = {d0, d1};
        lmio_statedict_add(sd, name, LMIO_DTYPE_F32, d1 ? 2 : 1, shape, v, n * sizeof *v, LMIO_COPY, NULL);
    }
    free(v);
    return sd;
}

static lmio_config *llama_config(size_t V)
{
    lmio_config *c;
    lmio_config_create("llama", &c, NULL);
    lmio_config_set_int(c, "vocab_size", (int64_t)V, NULL);
    lmio_config_set_int(c, "hidden_size", 16, NULL);
    lmio_config_set_int(c, "intermediate_size", 24, NULL);
    lmio_config_set_int(c, "num_hidden_layers", 2, NULL);
    lmio_config_set_int(c, "num_attention_heads", 4, NULL);
    lmio_config_set_int(c, "num_key_value_heads", 2, NULL);
    lmio_config_set_int(c, "max_position_embeddings", 200, NULL);
    return c;
}

/* Token by token through the KV cache (grown from 64 to 128 to 200
 * positions) a Llama gives exactly its one-shot logits; generation stops at
 * max_position_embeddings. */
static void llama_cache(void)
{
    const size_t V = 61, N = 150;
    lmio_statedict *w = llama_weights(V, 2);
    lmio_config *c = llama_config(V);
    lmio_model *m = NULL;
    CHECK_OK(lmio_model_create(c, w, &m, &e_));
    if (!m) goto out;
    CHECK(!strcmp(lmio_model_type(m), "llama") && lmio_model_max_positions(m) == 200);
    int32_t seq[153] = {1, 7, 3};
    size_t n = 0;
    CHECK_OK(lmio_model_generate(m, seq, 3, N, NULL, seq + 3, &n, &e_));
    size_t distinct = 0;
    for (size_t i = 0; i < V; i++)
        for (size_t t = 3; t < 3 + N; t++)
            if (seq[t] == (int32_t)i) { distinct++; break; }
    CHECK_MSG(n == N && distinct >= 8, "%zu tokens, %zu distinct", n, distinct);
    float *all = malloc(153 * V * sizeof *all), row[61];
    CHECK_OK(lmio_model_logits(m, seq, 153, all, &e_));
    const lmio__arch *arch = lmio__arch_find("llama");
    void *impl = NULL;
    CHECK_OK(arch->create(c, w, &impl, &e_));
    size_t same = 0, argmax_ok = 0;
    for (size_t t = 0; impl && t < 153; t++) {
        CHECK_OK(arch->forward(impl, &seq[t], 1, t, row, 1, &e_));
        same += !memcmp(row, all + t * V, sizeof row);
        size_t best = 0; /* greedy generation picked each next token from these */
        for (size_t v = 1; v < V; v++) best = row[v] > row[best] ? v : best;
        argmax_ok += t < 2 || t == 152 || seq[t + 1] == (int32_t)best;
    }
    CHECK_MSG(same == 153 && argmax_ok == 153, "%zu / %zu of 153 positions", same, argmax_ok);
    arch->free(impl);
    free(all);
    lmio_error err;
    CHECK(lmio_model_generate(m, seq, 150, 60, NULL, seq, &n, &err) == LMIO_ERR_LIMIT);
    CHECK_MSG(strstr(err.message, "max_position_embeddings = 200"), "%s", err.message);
out:
    lmio_model_free(m);
    lmio_config_free(c);
    lmio_statedict_free(w);
}

/* Llama configs that contradict themselves or their weights: refused with
 * the key and values, before anything sized by them is allocated. */
static void llama_hostile_config(void)
{
    lmio_statedict *w = llama_weights(50, 2);
    lmio_allocator al = {capped_malloc, capped_realloc, capped_free, NULL};
    static const struct {
        const char *key;
        int64_t v; /* -1: null */
        lmio_status st;
        const char *fragment;
    } bad[] = {
        {"num_key_value_heads", 3, LMIO_ERR_FORMAT, "num_key_value_heads 3 does not divide num_attention_heads 4"},
        {"num_key_value_heads", 8, LMIO_ERR_FORMAT, "num_key_value_heads 8 does not divide num_attention_heads 4"},
        {"num_hidden_layers", 1 << 16, LMIO_ERR_NOT_FOUND,
         "missing tensor \"model.layers.2.self_attn.q_proj.weight\"; expected it in a LlamaForCausalLM state dict "
         "with num_hidden_layers = 65536"},
        {"head_dim", 1 << 20, LMIO_ERR_FORMAT,
         "has shape [16, 16]; expected [4194304, 16] (num_attention_heads * head_dim, hidden_size)"},
        {"head_dim", 5, LMIO_ERR_FORMAT, "head_dim 5 is odd"},
        {"intermediate_size", 1 << 24, LMIO_ERR_FORMAT, "\"model.layers.0.mlp.gate_proj.weight\" has shape [24, 16]"},
        {"hidden_size", 18, LMIO_ERR_FORMAT, "hidden_size 18 is not divisible by num_attention_heads 4"},
        {"max_position_embeddings", 0, LMIO_ERR_FORMAT, "\"max_position_embeddings\" is 0"},
        {"tie_word_embeddings", 0, LMIO_OK, ""}, /* untied, and lm_head is there */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lmio_config *c = llama_config(50);
        if (!strcmp(bad[i].key, "tie_word_embeddings")) lmio_config_set_bool(c, bad[i].key, 0, NULL);
        else lmio_config_set_int(c, bad[i].key, bad[i].v, NULL);
        lmio_error err = {0};
        lmio_model *m = NULL;
        g_biggest = 0;
        lmio_set_allocator(&al);
        lmio_status s = lmio_model_create(c, w, &m, &err);
        lmio_set_allocator(NULL);
        CHECK_MSG(s == bad[i].st && strstr(err.message, bad[i].fragment), "%s: %s: %s", bad[i].key,
                  lmio_status_str(s), err.message);
        CHECK_MSG(s == LMIO_OK || g_biggest < 4096, "%s: create asked for %zu bytes before failing", bad[i].key,
                  g_biggest);
        lmio_model_free(m);
        lmio_config_free(c);
    }
    /* rope parameters lmio cannot honour are refused by name */
    static const char *const rope[][2] = {
        {"{\"rope_type\": \"yarn\", \"factor\": 2.0}", "rope_type \"yarn\"; expected \"default\" or \"llama3\""},
        {"{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0}",
         "rope parameter \"high_freq_factor\" is missing"},
        {"{\"rope_type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 2, \"high_freq_factor\": 2}",
         "high_freq_factor equals low_freq_factor"},
        {"{\"rope_theta\": -1.0}", "rope parameter \"rope_theta\" is not a positive number"},
        {"{\"rope_theta\": 1e4, \"partial_rotary_factor\": 0.5}", "partial_rotary_factor 0.5; expected 1"},
        {"[1, 2]", "the rope parameters are not an object"},
    };
    for (size_t i = 0; i < sizeof rope / sizeof rope[0]; i++) {
        lmio_config *c = llama_config(50);
        lmio__json *v = NULL;
        CHECK_OK(lmio__json_parse(rope[i][0], strlen(rope[i][0]), "", 0, &v, &e_));
        lmio__json_set(lmio__config_json(c), i % 2 ? "rope_scaling" : "rope_parameters", v);
        lmio_error err = {0};
        lmio_model *m = NULL;
        lmio_status s = lmio_model_create(c, w, &m, &err);
        CHECK_MSG(s != LMIO_OK && strstr(err.message, rope[i][1]), "%s: %s", rope[i][0], err.message);
        lmio_model_free(m);
        lmio_config_free(c);
    }
    lmio_statedict_free(w);
}

/* ---- every allocation in from_pretrained + forward fails in turn ---- */

/* LMIO_OOM_TRACE=K prints where allocation K is made, to find a site that
 * swallows its failure. */
static long g_trace = -1, g_k;
static void *traced_malloc(void *c, size_t n)
{
    if (g_oom_countdown == 0 && g_k == g_trace) {
        void *b[32];
        backtrace_symbols_fd(b, backtrace(b, 32), 2);
    }
    return oom_malloc(c, n);
}

static void oom_pretrained(void)
{
    tiny fx;
    tiny_begin(&fx);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 8000;
    o.durable = 0;
    CHECK_OK(lmio_pretrained_save(tmp("oom"), fx.c, fx.w, fx.tok, &o, &e_));
    lmio__json_init();
    if (getenv("LMIO_OOM_TRACE")) g_trace = atol(getenv("LMIO_OOM_TRACE"));
    lmio_allocator al = {traced_malloc, oom_realloc, oom_free, NULL};
    long sites = 0;
    int wrong = 0;
    for (long k = g_trace >= 0 ? g_trace : 0; k < 200000; k++) { /* trace mode: start there */
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        g_k = k;
        lmio_set_allocator(&al);
        lmio_config *c2 = NULL;
        lmio_statedict *w2 = NULL;
        lmio_tokenizer *t2 = NULL;
        lmio_gpt2 *m = NULL;
        lmio_error err;
        int32_t *ids = NULL;
        size_t n = 0;
        lmio_status s = lmio_pretrained_load(tmp("oom"), &c2, &w2, &t2, &err);
        if (!s) s = lmio_gpt2_create(c2, w2, &m, &err);
        if (!s) s = lmio_tokenizer_encode(t2, "the cat sat", 11, &ids, &n, &err);
        lmio_free(ids);
        lmio_gpt2_free(m);
        lmio_config_free(c2);
        lmio_statedict_free(w2);
        lmio_tokenizer_free(t2);
        lmio_set_allocator(NULL);
        CHECK_MSG(g_oom_live == 0, "allocation %ld failing leaks %ld blocks", k, g_oom_live);
        if (!g_oom_failed) {
            CHECK_MSG(s == LMIO_OK, "%s", err.message);
            break;
        }
        sites++;
        if (s != LMIO_ERR_NOMEM) {
            wrong++;
            if (wrong < 5) fprintf(stderr, "allocation %ld failing gave %s: %s\n", k, lmio_status_str(s), err.message);
        }
    }
    CHECK(wrong == 0);
    printf("oom injection (from_pretrained + tokenizer + model): %ld allocation sites failed in turn\n", sites);
    tiny_end(&fx);
}

/* ---- every allocation in save_pretrained fails in turn ---- */

static bool same_file(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    bool same = fa && fb;
    for (int ca = 0, cb = 0; same && ca != EOF; same = ca == cb) {
        ca = fgetc(fa);
        cb = fgetc(fb);
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

/* The JSON documents (config, generation config, shard index, tokenizer
 * files) are built in memory before they are written; a failed allocation
 * while building one must fail the save, never write it incomplete. */
static void oom_save(void)
{
    tiny fx;
    tiny_begin(&fx);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 8000; /* an index too */
    o.durable = 0;
    CHECK_OK(lmio_pretrained_save(tmp("oom-save-ref"), fx.c, fx.w, fx.tok, &o, &e_));
    lmio__json_init();
    lmio_allocator al = {oom_malloc, oom_realloc, oom_free, NULL};
    long sites = 0;
    int wrong = 0;
    for (long k = 0; k < 200000; k++) {
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        lmio_set_allocator(&al);
        lmio_error err;
        lmio_status s = lmio_pretrained_save(tmp("oom-save"), fx.c, fx.w, fx.tok, &o, &err);
        lmio_set_allocator(NULL);
        CHECK_MSG(g_oom_live == 0, "allocation %ld failing leaks %ld blocks", k, g_oom_live);
        if (!g_oom_failed) {
            CHECK_MSG(s == LMIO_OK, "%s", err.message);
            break;
        }
        sites++;
        if (s != LMIO_ERR_NOMEM) {
            wrong++;
            if (wrong < 5)
                fprintf(stderr, "allocation %ld failing gave %s: %s\n", k, lmio_status_str(s),
                        s ? err.message : "(saved anyway)");
        }
    }
    CHECK(wrong == 0);
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors.index.json",
                           "tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                           "special_tokens_map.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char a[700], b[700];
        snprintf(a, sizeof a, "%s/%s", tmp("oom-save-ref"), files[i]);
        snprintf(b, sizeof b, "%s/%s", tmp("oom-save"), files[i]);
        CHECK_MSG(same_file(a, b), "%s differs after the oom runs", files[i]);
    }
    printf("oom injection (save_pretrained): %ld allocation sites failed in turn\n", sites);
    tiny_end(&fx);
}

int main(void)
{
    if (scratch_begin("test-model")) return 1;
    sizes();
    config();
    config_numbers();
    tokenizer();
    pretrained();
    arch_table();
    model_api();
    unknown_model_type();
    gpt2_save_load_rules();
    hostile_config();
    llama_cache();
    llama_hostile_config();
    oom_pretrained();
    oom_save();
    scratch_end();
    return test_result("test_model");
}
