/* Allocation failure at every site of every public entry point that
 * allocates: each allocation fails in turn, and every run must give
 * LMIO_ERR_NOMEM (never OK with a wrong result, never another status, never
 * a crash), hold no memory afterwards, and for a save leave the destination
 * as it was with no temporary file beside it.
 *
 * LMIO_OOM_STRIDE=N fails only every Nth site (and always the last ones):
 * the valgrind run uses it, where each site costs a process's worth of
 * instrumented work. LMIO_OOM_ONLY=name runs one case. */
#include "../../src/core/json.h"
#include "../test.h"

#include <ftw.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(s, f);
    fclose(f);
}

/* ---- fixtures, built with the ordinary allocator ---- */

static lmio_tokenizer *g_tok;
static lmio_config *g_cfg;
static lmio_statedict *g_w;
static float *g_keep[28];
static char g_fx[512];

static const char k_text[] =
    "the cat sat on the mat. the cat ate the rat. the rat sat on the cat's hat!\n"
    "naïve café — 日本語 テキスト 👋🏽 <|endoftext|> the end, the end, the end.\n";

static const char *fx(const char *name)
{
    static char p[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_fx, name);
    return p[k];
}

/* a tiny GPT-2: n_embd 16, 2 layers, 2 heads, 32 positions */
static void build_weights(size_t V)
{
    const size_t C = 16, P = 32;
    lmio_statedict_create(&g_w, NULL);
    uint64_t rng = 7;
    for (int i = 0; i < 28; i++) {
        static const struct { const char *s; int a, b; } L[] = {
            {"ln_1.weight", 1, 0}, {"ln_1.bias", 1, 0}, {"attn.c_attn.weight", 1, 3}, {"attn.c_attn.bias", 3, 0},
            {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0}, {"ln_2.weight", 1, 0}, {"ln_2.bias", 1, 0},
            {"mlp.c_fc.weight", 1, 4}, {"mlp.c_fc.bias", 4, 0}, {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0}};
        char name[96];
        size_t d0, d1;
        if (i == 0) { snprintf(name, sizeof name, "transformer.wte.weight"); d0 = V; d1 = C; }
        else if (i == 1) { snprintf(name, sizeof name, "transformer.wpe.weight"); d0 = P; d1 = C; }
        else if (i == 2) { snprintf(name, sizeof name, "transformer.ln_f.weight"); d0 = C; d1 = 0; }
        else if (i == 3) { snprintf(name, sizeof name, "transformer.ln_f.bias"); d0 = C; d1 = 0; }
        else {
            int k = (i - 4) % 12, l = (i - 4) / 12;
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, L[k].s);
            d0 = C * (size_t)L[k].a;
            d1 = C * (size_t)L[k].b;
        }
        size_t n = d0 * (d1 ? d1 : 1);
        float *v = malloc(n * sizeof *v);
        for (size_t j = 0; j < n; j++) {
            rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
            v[j] = ((float)(rng >> 40) / (float)(1 << 24) - 0.5f) * 0.5f;
        }
        uint64_t shape[2] = {d0, d1};
        lmio_statedict_add(g_w, name, LMIO_DTYPE_F32, d1 ? 2 : 1, shape, v, n * sizeof *v, LMIO_BORROW, NULL);
        g_keep[i] = v;
    }
}

static int fixtures_begin(void)
{
    snprintf(g_fx, sizeof g_fx, "%s/fx", g_scratch);
    mkdir(g_fx, 0777);
    write_text(fx("train.txt"), k_text);
    const char *files[] = {fx("train.txt")};
    const char *special[] = {"<|endoftext|>"};
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    o.vocab_size = 300;
    o.special = special;
    o.n_special = 1;
    lmio_error err;
    if (lmio_tokenizer_train(files, 1, &o, &g_tok, &err)) return fprintf(stderr, "%s\n", err.message), -1;
    size_t V = lmio_tokenizer_vocab_size(g_tok);
    build_weights(V);
    lmio_config_create_gpt2(&g_cfg, NULL);
    lmio_config_set_int(g_cfg, "vocab_size", (int64_t)V, NULL);
    lmio_config_set_int(g_cfg, "n_positions", 32, NULL);
    lmio_config_set_int(g_cfg, "n_embd", 16, NULL);
    lmio_config_set_int(g_cfg, "n_layer", 2, NULL);
    lmio_config_set_int(g_cfg, "n_head", 2, NULL);
    lmio_config_set_int(g_cfg, "eos_token_id", (int64_t)V - 1, NULL);
    lmio_config_set_int(g_cfg, "bos_token_id", (int64_t)V - 1, NULL);
    lmio_metadata_set(g_w, "format", "pt", NULL);

    lmio_pretrained_opts po = LMIO_PRETRAINED_OPTS_INIT;
    po.durable = 0;
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.durable = 0;
    so.dtype = LMIO_DTYPE_BF16; /* a file of another dtype than the weights */
    mkdir(fx("tok"), 0777);
    mkdir(fx("tok-vm"), 0777);
    if (lmio_safetensors_save(g_w, fx("model.safetensors"), &so, &err) ||
        lmio_pretrained_save(fx("single"), g_cfg, g_w, g_tok, &po, &err) ||
        (po.max_shard_size = 8000, lmio_pretrained_save(fx("sharded"), g_cfg, g_w, g_tok, &po, &err)) ||
        lmio_tokenizer_save(g_tok, fx("tok"), &err) || lmio_tokenizer_save(g_tok, fx("tok-vm"), &err) ||
        lmio_config_save(g_cfg, fx("config.json"), &err))
        return fprintf(stderr, "fixture: %s\n", err.message), -1;
    /* a tokenizer directory as Transformers' slow GPT2Tokenizer leaves it */
    unlink(fx("tok-vm/tokenizer.json"));
    return 0;
}

static void fixtures_end(void)
{
    lmio_tokenizer_free(g_tok);
    lmio_statedict_free(g_w);
    lmio_config_free(g_cfg);
    for (int i = 0; i < 28; i++) free(g_keep[i]);
}

/* ---- snapshots of a destination's directory ---- */

/* Every name under a directory with its size and a hash of its bytes, as
 * one string: equal snapshots mean nothing was added, removed or changed. */
static char *g_snap;
static size_t g_snap_len, g_snap_cap;

static void snap_put(const char *s)
{
    size_t n = strlen(s);
    if (g_snap_len + n + 1 > g_snap_cap) {
        g_snap_cap = (g_snap_len + n + 1) * 2;
        g_snap = realloc(g_snap, g_snap_cap);
    }
    memcpy(g_snap + g_snap_len, s, n + 1);
    g_snap_len += n;
}

static int snap_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)f;
    uint64_t h = 1469598103934665603ULL;
    if (flag == FTW_F) {
        FILE *fp = fopen(p, "rb");
        for (int c; fp && (c = fgetc(fp)) != EOF;) h = (h ^ (unsigned char)c) * 1099511628211ULL;
        if (fp) fclose(fp);
    }
    char line[1200];
    snprintf(line, sizeof line, "%s %d %lld %llx\n", p, flag, (long long)st->st_size, (unsigned long long)h);
    snap_put(line);
    return 0;
}

static char *snapshot(const char *dir)
{
    g_snap = NULL;
    g_snap_len = g_snap_cap = 0;
    snap_put("");
    nftw(dir, snap_entry, 16, FTW_PHYS);
    return g_snap;
}

/* ---- the driver ---- */

typedef struct oom_case {
    const char *name;
    lmio_status (*run)(lmio_error *err); /* frees whatever it made */
    const char *watch;                   /* a save's directory (under the scratch dir), or NULL */
    void (*setup)(void);                 /* puts the destination in its starting state */
} oom_case;

static long g_stride = 1;
static const char *g_only;

static void run_case(const oom_case *c)
{
    if (g_only && strcmp(g_only, c->name)) return;
    char watch[600] = "";
    if (c->watch) {
        snprintf(watch, sizeof watch, "%s/%s", g_scratch, c->watch);
        mkdir(watch, 0777);
    }
    lmio_allocator a = {oom_malloc, oom_realloc, oom_free, NULL};
    /* a run where nothing fails counts the sites and must succeed */
    if (c->setup) c->setup();
    lmio_error err;
    g_oom_live = 0;
    g_oom_countdown = 1L << 60;
    lmio_set_allocator(&a);
    lmio_status s = c->run(&err);
    lmio_set_allocator(NULL);
    long n_sites = (1L << 60) - g_oom_countdown;
    CHECK_MSG(s == LMIO_OK, "%s: %s: %s", c->name, lmio_status_str(s), err.message);
    CHECK_MSG(g_oom_live == 0, "%s: a successful run holds %ld blocks", c->name, g_oom_live);
    if (c->setup) c->setup();
    char *before = c->watch ? snapshot(watch) : NULL;
    long sites = 0, wrong = 0, leaks = 0, changed = 0;
    for (long k = 0; k < n_sites; k++) {
        /* the valgrind mode: every g_stride-th site, and always the last ones */
        if (g_stride > 1 && k % g_stride && k < n_sites - g_stride) continue;
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        lmio_error_clear(&err);
        lmio_set_allocator(&a);
        s = c->run(&err);
        lmio_set_allocator(NULL);
        if (g_oom_live != 0 && leaks++ < 3)
            fprintf(stderr, "%s: allocation %ld failing leaks %ld blocks\n", c->name, k, g_oom_live);
        if (!g_oom_failed) { /* fewer allocations than the counting run: must be a success */
            CHECK_MSG(s == LMIO_OK, "%s: allocation %ld not reached, yet: %s", c->name, k, err.message);
            continue;
        }
        sites++;
        if (s != LMIO_ERR_NOMEM && wrong++ < 3)
            fprintf(stderr, "%s: allocation %ld failing gave %s: %s\n", c->name, k, lmio_status_str(s),
                    s ? err.message : "(reported success)");
        else if (s == LMIO_ERR_NOMEM && err.code != LMIO_ERR_NOMEM && wrong++ < 3)
            fprintf(stderr, "%s: allocation %ld failing returned NOMEM but err says %s\n", c->name, k,
                    lmio_status_str(err.code));
        if (c->watch) {
            char *after = snapshot(watch);
            if (strcmp(before, after)) {
                if (changed++ < 3)
                    fprintf(stderr, "%s: allocation %ld failing (%s) changed the destination:\n--- before\n%s--- after\n%s",
                            c->name, k, lmio_status_str(s), before, after);
                if (c->setup) c->setup();
            }
            free(after);
        }
    }
    free(before);
    CHECK_MSG(wrong == 0, "%s: %ld of %ld sites gave the wrong status", c->name, wrong, sites);
    CHECK_MSG(leaks == 0, "%s: %ld of %ld sites leaked", c->name, leaks, sites);
    CHECK_MSG(changed == 0, "%s: %ld of %ld sites changed the destination", c->name, changed, sites);
    printf("%-28s %6ld allocation sites failed in turn\n", c->name, sites);
}

/* ---- the cases ---- */

static const char *dst(const char *rel)
{
    static char p[4][700];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_scratch, rel);
    return p[k];
}

static void reset(const char *watch)
{
    char cmd[800];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s'", dst(watch), dst(watch));
    if (system(cmd) != 0) fprintf(stderr, "cannot reset %s\n", watch);
}

/* state dicts built in memory */
static lmio_status run_statedict_build(lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_create(&sd, err);
    if (s) return s;
    static const float v[6] = {1, 2, 3, 4, 5, 6};
    const uint64_t shape[2] = {2, 3};
    char name[32];
    for (int i = 0; i < 80 && !s; i++) { /* enough to grow the arrays and the index */
        snprintf(name, sizeof name, "layer.%d.weight", i);
        s = lmio_statedict_add(sd, name, LMIO_DTYPE_F32, 2, shape, v, sizeof v, i % 2 ? LMIO_COPY : LMIO_BORROW, err);
    }
    for (int i = 0; i < 10 && !s; i++) {
        snprintf(name, sizeof name, "key%d", i);
        s = lmio_metadata_set(sd, name, "value", err);
    }
    if (!s) s = lmio_metadata_set(sd, "key3", "replaced", err);
    lmio_tensor t;
    if (!s) s = lmio_tensor_find(sd, "layer.79.weight", &t, err);
    lmio_statedict_free(sd);
    return s;
}

static lmio_status run_convert(lmio_error *err)
{
    float in[64];
    uint16_t out[64];
    for (int i = 0; i < 64; i++) in[i] = (float)i / 3.0f;
    return lmio_convert(out, LMIO_DTYPE_BF16, in, LMIO_DTYPE_F32, 64, err);
}

/* saves */
static void setup_old_file(const char *watch, const char *file)
{
    reset(watch);
    char p[800];
    snprintf(p, sizeof p, "%s/%s", dst(watch), file);
    write_text(p, "the old file, which a failed save must leave alone\n");
}
static void setup_st(void) { setup_old_file("st", "out.safetensors"); }
static void setup_st16(void) { setup_old_file("st16", "out.safetensors"); }
static void setup_cfg(void) { setup_old_file("cfg", "config.json"); }
static void setup_atomic(void) { setup_old_file("atomic", "out.bin"); }
static void setup_tok(void) { setup_old_file("toksave", "vocab.json"); }
static void setup_ps1(void) { reset("ps1"); } /* destination absent */
static void setup_ps2(void)
{
    /* destination an existing model directory: replaced whole or not at all */
    reset("ps2");
    char cmd[1600];
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s/model'", fx("single"), dst("ps2"));
    if (system(cmd) != 0) fprintf(stderr, "cannot copy the fixture\n");
}

static lmio_status run_st_save(lmio_error *err)
{
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.durable = 0;
    return lmio_safetensors_save(g_w, dst("st/out.safetensors"), &o, err);
}
static lmio_status run_st_save_f16(lmio_error *err)
{
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.durable = 0;
    o.dtype = LMIO_DTYPE_F16;
    return lmio_safetensors_save(g_w, dst("st16/out.safetensors"), &o, err);
}
static lmio_status run_pretrained_save_single(lmio_error *err)
{
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.durable = 0;
    return lmio_pretrained_save(dst("ps1/model"), g_cfg, g_w, g_tok, &o, err);
}
static lmio_status run_pretrained_save_sharded(lmio_error *err)
{
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.durable = 0;
    o.max_shard_size = 8000;
    o.dtype = LMIO_DTYPE_F16;
    return lmio_pretrained_save(dst("ps2/model"), g_cfg, g_w, g_tok, &o, err);
}
static lmio_status run_config_save(lmio_error *err) { return lmio_config_save(g_cfg, dst("cfg/config.json"), err); }
static lmio_status run_tokenizer_save(lmio_error *err) { return lmio_tokenizer_save(g_tok, dst("toksave"), err); }
static lmio_status run_write_atomic(lmio_error *err)
{
    return lmio_file_write_atomic(dst("atomic/out.bin"), k_text, sizeof k_text, 0, err);
}

/* loads */
static lmio_status open_and_read(int use_mmap, lmio_error *err)
{
    lmio_open_opts o = LMIO_OPEN_OPTS_INIT;
    o.use_mmap = use_mmap;
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_open(fx("model.safetensors"), &o, &sd, err);
    if (s) return s;
    lmio_tensor t;
    s = lmio_tensor_find(sd, "transformer.wte.weight", &t, err);
    if (!s && (t.dtype != LMIO_DTYPE_BF16 || lmio_statedict_count(sd) != 28 || !lmio_metadata_find(sd, "format")))
        s = LMIO_ERR_FORMAT; /* a wrong result is a failure too */
    lmio_statedict_free(sd);
    return s;
}
static lmio_status run_open_mmap(lmio_error *err) { return open_and_read(1, err); }
static lmio_status run_open_read(lmio_error *err) { return open_and_read(0, err); }

static lmio_status load_dir(const char *dir, lmio_error *err)
{
    lmio_config *c = NULL;
    lmio_statedict *w = NULL;
    lmio_tokenizer *t = NULL;
    lmio_status s = lmio_pretrained_load(dir, &c, &w, &t, err);
    if (!s && (!t || lmio_statedict_count(w) != 28 || lmio_tokenizer_vocab_size(t) != lmio_tokenizer_vocab_size(g_tok)))
        s = LMIO_ERR_FORMAT;
    lmio_config_free(c);
    lmio_statedict_free(w);
    lmio_tokenizer_free(t);
    return s;
}
static lmio_status run_load_single(lmio_error *err) { return load_dir(fx("single"), err); }
static lmio_status run_load_sharded(lmio_error *err) { return load_dir(fx("sharded"), err); }

static lmio_status run_config_load(lmio_error *err)
{
    lmio_config *c;
    lmio_status s = lmio_config_load(fx("config.json"), &c, err);
    int64_t v = 0;
    if (!s) s = lmio_config_get_int(c, "n_layer", &v, err);
    if (!s && v != 2) s = LMIO_ERR_FORMAT;
    if (!s) lmio_config_free(c);
    return s;
}
static lmio_status run_config_edit(lmio_error *err)
{
    lmio_config *c, *d = NULL;
    lmio_status s = lmio_config_create_gpt2(&c, err);
    if (s) return s;
    if (!s) s = lmio_config_set_int(c, "n_layer", 3, err);
    if (!s) s = lmio_config_set_float(c, "layer_norm_epsilon", 1e-6, err);
    if (!s) s = lmio_config_set_bool(c, "scale_attn_weights", 0, err);
    if (!s) s = lmio_config_set_string(c, "my_key", "kept", err);
    if (!s) s = lmio_config_set_null(c, "n_inner", err);
    if (!s) s = lmio_config_copy(c, &d, err);
    const char *v = NULL;
    if (!s) s = lmio_config_get_string(d, "my_key", &v, err);
    if (!s && strcmp(v, "kept")) s = LMIO_ERR_FORMAT;
    lmio_config_free(c);
    lmio_config_free(d);
    return s;
}

/* takes the address: the argument must be read after the call fills it */
static lmio_status check_tok(lmio_status s, lmio_tokenizer **tp)
{
    lmio_tokenizer *t = *tp;
    if (!s && lmio_tokenizer_vocab_size(t) != lmio_tokenizer_vocab_size(g_tok)) s = LMIO_ERR_FORMAT;
    if (!s && lmio_tokenizer_eos_id(t) != lmio_tokenizer_eos_id(g_tok)) s = LMIO_ERR_FORMAT;
    lmio_tokenizer_free(t);
    return s;
}
static lmio_status run_tok_load_json(lmio_error *err)
{
    lmio_tokenizer *t = NULL;
    return check_tok(lmio_tokenizer_load(fx("tok"), &t, err), &t);
}
static lmio_status run_tok_load_json_file(lmio_error *err)
{
    lmio_tokenizer *t = NULL;
    return check_tok(lmio_tokenizer_load(fx("tok/tokenizer.json"), &t, err), &t);
}
static lmio_status run_tok_load_vocab_merges(lmio_error *err)
{
    lmio_tokenizer *t = NULL;
    return check_tok(lmio_tokenizer_load(fx("tok-vm"), &t, err), &t);
}
static lmio_status run_tok_load_files(lmio_error *err)
{
    lmio_tokenizer *t = NULL;
    const char *special[] = {"<|endoftext|>"};
    return check_tok(lmio_tokenizer_load_files(fx("tok/vocab.json"), fx("tok/merges.txt"), special, 1, &t, err), &t);
}

static lmio_status run_tok_train(lmio_error *err)
{
    const char *files[] = {fx("train.txt")};
    const char *special[] = {"<|endoftext|>"};
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    o.vocab_size = 300;
    o.special = special;
    o.n_special = 1;
    lmio_tokenizer *t = NULL;
    return check_tok(lmio_tokenizer_train(files, 1, &o, &t, err), &t);
}

static lmio_status run_tok_encode_decode(lmio_error *err)
{
    int32_t *ids = NULL;
    size_t n = 0, len = 0;
    char *back = NULL;
    lmio_status s = lmio_tokenizer_encode(g_tok, k_text, strlen(k_text), &ids, &n, err);
    if (!s) s = lmio_tokenizer_decode(g_tok, ids, n, &back, &len, err);
    if (!s && (len != strlen(k_text) || memcmp(back, k_text, len))) s = LMIO_ERR_FORMAT;
    lmio_free(ids);
    lmio_free(back);
    return s;
}

static lmio_status run_gpt2_logits(lmio_error *err)
{
    lmio_gpt2 *m = NULL;
    lmio_status s = lmio_gpt2_create(g_cfg, g_w, &m, err);
    static float logits[5 * 400];
    const int32_t ids[5] = {1, 7, 3, 3, 0};
    if (!s) s = lmio_gpt2_logits(m, ids, 5, logits, err);
    lmio_gpt2_free(m);
    return s;
}
static lmio_status run_gpt2_generate(lmio_error *err)
{
    lmio_gpt2 *m = NULL;
    lmio_status s = lmio_gpt2_create(g_cfg, g_w, &m, err);
    const int32_t prompt[3] = {5, 9, 2};
    int32_t out[8];
    size_t n = 0;
    lmio_generate_opts o = LMIO_GENERATE_OPTS_INIT;
    if (!s) s = lmio_gpt2_generate(m, prompt, 3, 8, &o, out, &n, err);
    o.greedy = 0;
    o.seed = 3;
    if (!s) s = lmio_gpt2_generate(m, prompt, 3, 8, &o, out, &n, err);
    lmio_gpt2_free(m);
    return s;
}

static lmio_status verify_path(const char *path, size_t want_files, lmio_error *err)
{
    lmio_verify_report r;
    lmio_status s = lmio_verify(path, NULL, &r, err);
    if (!s && (r.tensors != 28 || (want_files ? r.files != want_files : r.files < 2))) s = LMIO_ERR_FORMAT;
    return s;
}
static lmio_status run_verify_file(lmio_error *err) { return verify_path(fx("model.safetensors"), 1, err); }
static lmio_status run_verify_dir(lmio_error *err) { return verify_path(fx("sharded"), 0, err); /* several shards */ }

static const oom_case k_cases[] = {
    {"statedict_create_add_meta", run_statedict_build, NULL, NULL},
    {"convert", run_convert, NULL, NULL},
    {"safetensors_save", run_st_save, "st", setup_st},
    {"safetensors_save_f16", run_st_save_f16, "st16", setup_st16},
    {"pretrained_save_single", run_pretrained_save_single, "ps1", setup_ps1},
    {"pretrained_save_sharded", run_pretrained_save_sharded, "ps2", setup_ps2},
    {"config_save", run_config_save, "cfg", setup_cfg},
    {"tokenizer_save", run_tokenizer_save, "toksave", setup_tok},
    {"file_write_atomic", run_write_atomic, "atomic", setup_atomic},
    {"statedict_open_mmap", run_open_mmap, NULL, NULL},
    {"statedict_open_read", run_open_read, NULL, NULL},
    {"pretrained_load_single", run_load_single, NULL, NULL},
    {"pretrained_load_sharded", run_load_sharded, NULL, NULL},
    {"config_load", run_config_load, NULL, NULL},
    {"config_create_set_copy", run_config_edit, NULL, NULL},
    {"tokenizer_load_dir", run_tok_load_json, NULL, NULL},
    {"tokenizer_load_json_file", run_tok_load_json_file, NULL, NULL},
    {"tokenizer_load_vocab_merges", run_tok_load_vocab_merges, NULL, NULL},
    {"tokenizer_load_files", run_tok_load_files, NULL, NULL},
    {"tokenizer_train", run_tok_train, NULL, NULL},
    {"tokenizer_encode_decode", run_tok_encode_decode, NULL, NULL},
    {"gpt2_create_logits", run_gpt2_logits, NULL, NULL},
    {"gpt2_create_generate", run_gpt2_generate, NULL, NULL},
    {"verify_file", run_verify_file, NULL, NULL},
    {"verify_dir_sharded", run_verify_dir, NULL, NULL},
};

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* progress survives a crash */
    if (getenv("LMIO_OOM_STRIDE")) g_stride = atol(getenv("LMIO_OOM_STRIDE"));
    if (g_stride < 1) g_stride = 1;
    g_only = getenv("LMIO_OOM_ONLY");
    if (scratch_begin("test-oom")) return 1;
    lmio__json_init(); /* jansson keeps its hook pointers: set them up before counting */
    if (fixtures_begin()) {
        scratch_end();
        return 1;
    }
    for (size_t i = 0; i < sizeof k_cases / sizeof k_cases[0]; i++) run_case(&k_cases[i]);
    fixtures_end();
    scratch_end();
    return test_result("test_oom");
}
