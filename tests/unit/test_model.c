/* Config, tokenizer, save_pretrained / from_pretrained and the GPT-2 forward
 * pass, from C, so they also run under the sanitizers and valgrind. The
 * comparisons with Transformers and tokenizers live in tests/interop/. */
#include "../../src/core/json.h"
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
    CHECK(strstr(err.message, "\"my_key\" is not an integer") != NULL);
    CHECK(lmio_config_get_int(d, "no_such_key", &v, &err) == LMIO_ERR_NOT_FOUND);
    lmio_config_free(d);
    write_text(tmp("newer.json"), "{\"model_type\": \"gpt2\", \"lmio_format_version\": \"7.1\"}");
    CHECK(lmio_config_load(tmp("newer.json"), &d, &err) == LMIO_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "newer lmio") != NULL);
    write_text(tmp("array.json"), "[1, 2]");
    CHECK(lmio_config_load(tmp("array.json"), &d, &err) == LMIO_ERR_FORMAT);
    lmio_config_free(c);
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
    lmio_tokenizer_free(t);
}

/* a tiny GPT-2: vocab V, n_embd 16, 2 layers, 2 heads */
static lmio_statedict *tiny_weights(size_t V, float **keep)
{
    const size_t C = 16, P = 32;
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
    CHECK(strstr(err.message, "no model.safetensors") != NULL);
    /* the untied head must be there */
    lmio_config_set_bool(c, "tie_word_embeddings", 0, NULL);
    lmio_config_save(c, tmp("model"), NULL);
    CHECK(lmio_pretrained_load(tmp("model"), NULL, &w2, NULL, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "lm_head.weight") != NULL);

    tiny_end(&m);
    free(a);
    free(b);
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
    tokenizer();
    pretrained();
    oom_pretrained();
    oom_save();
    scratch_end();
    return test_result("test_model");
}
