/* TorchScript export: the archive's layout (what torch.jit.load needs, as
 * tests/interop/test_torchscript.py shows it loading), deterministic bytes,
 * refusals, and every allocation failing in turn. That the module computes
 * the right logits is for the interop test, against torch itself. */
#include "../../src/formats/formats.h"
#include "../test.h"

#include <stdlib.h>
#include <sys/stat.h>

enum { V = 40, P = 16, C = 8, N_LAYER = 2 };

static lmio_config *g_cfg;
static lmio_statedict *g_w;

static void add(const char *name, uint64_t d0, uint64_t d1, uint64_t *rng)
{
    size_t n = (size_t)(d0 * (d1 ? d1 : 1));
    float *v = malloc(n * sizeof *v);
    for (size_t j = 0; j < n; j++) {
        *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
        v[j] = (float)(*rng >> 40) / (float)(1 << 24) - 0.5f;
    }
    uint64_t shape[2] = {d0, d1};
    lmio_statedict_add(g_w, name, LMIO_DTYPE_F32, d1 ? 2 : 1, shape, v, n * sizeof *v, LMIO_COPY, NULL);
    free(v);
}

static void build_model(void)
{
    static const struct { const char *s; int a, b; } L[] = {
        {"ln_1.weight", 1, 0}, {"ln_1.bias", 1, 0}, {"attn.c_attn.weight", 1, 3}, {"attn.c_attn.bias", 3, 0},
        {"attn.c_proj.weight", 1, 1}, {"attn.c_proj.bias", 1, 0}, {"ln_2.weight", 1, 0}, {"ln_2.bias", 1, 0},
        {"mlp.c_fc.weight", 1, 4}, {"mlp.c_fc.bias", 4, 0}, {"mlp.c_proj.weight", 4, 1}, {"mlp.c_proj.bias", 1, 0}};
    uint64_t rng = 11;
    lmio_statedict_create(&g_w, NULL);
    add("transformer.wte.weight", V, C, &rng);
    add("transformer.wpe.weight", P, C, &rng);
    for (int l = 0; l < N_LAYER; l++)
        for (size_t k = 0; k < sizeof L / sizeof *L; k++) {
            char name[96];
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, L[k].s);
            add(name, (uint64_t)C * L[k].a, (uint64_t)C * L[k].b, &rng);
        }
    add("transformer.ln_f.weight", C, 0, &rng);
    add("transformer.ln_f.bias", C, 0, &rng);
    lmio_config_create_gpt2(&g_cfg, NULL);
    lmio_config_set_int(g_cfg, "vocab_size", V, NULL);
    lmio_config_set_int(g_cfg, "n_positions", P, NULL);
    lmio_config_set_int(g_cfg, "n_embd", C, NULL);
    lmio_config_set_int(g_cfg, "n_layer", N_LAYER, NULL);
    lmio_config_set_int(g_cfg, "n_head", 2, NULL);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static const lmio__zip_entry *member(const lmio__zip *z, const char *name, const char *data, const char *want)
{
    const lmio__zip_entry *e = lmio__zip_find(z, name);
    CHECK_MSG(e != NULL, "no member %s", name);
    if (e && want) CHECK_MSG(e->size == strlen(want) && !memcmp(data + e->data_off, want, e->size), "%s", name);
    return e;
}

static void test_layout(void)
{
    lmio_error err;
    const char *a = scratch("model.pt");
    size_t n = 0, m = 0;
    CHECK_MSG(lmio_export_torchscript(g_cfg, g_w, a, NULL, &err) == LMIO_OK, "%s", err.message);
    char *y = slurp(a, &m);
    CHECK(lmio_export_torchscript(g_cfg, g_w, a, NULL, &err) == LMIO_OK);
    char *x = slurp(a, &n);
    CHECK_MSG(x && y && n == m && !memcmp(x, y, n), "the same model gave different bytes");
    lmio__zip z;
    if (!x || lmio__zip_read(a, (const unsigned char *)x, n, &z, &err)) {
        CHECK_MSG(0, "%s", x ? err.message : "unreadable");
        free(x), free(y);
        return;
    }
    /* the root folder is the file's stem, as torch names it */
    CHECK(z.root_len == 5 && !memcmp(z.root, "model", 5));
    member(&z, "constants.pkl", x, "\x80\x02).");
    member(&z, ".data/version", x, "10\n");
    member(&z, "byteorder", x, "little");
    const lmio__zip_entry *pkl = member(&z, "data.pkl", x, NULL);
    const lmio__zip_entry *code = member(&z, "code/__torch__/lmio/gpt2.py", x, NULL);
    CHECK(pkl && pkl->size > 2 && !memcmp(x + pkl->data_off, "\x80\x02", 2));
    if (code) {
        char *src = strndup(x + code->data_off, (size_t)code->size);
        CHECK(strstr(src, "class GPT2LMHeadModel(Module):") == src);
        CHECK(strstr(src, "  __annotations__[\"1\"] = __torch__.lmio.gpt2.transformer_h_L\n"));
        CHECK(strstr(src, "def forward(self, input_ids: Tensor) -> Tensor:"));
        CHECK(strstr(src, "torch.linear(x, t.wte.weight)")); /* tied: no lm_head module */
        CHECK(!strstr(src, "lm_head"));
        free(src);
    }
    /* one f32 record per tensor, each payload 64-byte aligned for mmap */
    size_t n_data = 0;
    for (size_t i = 0; i < z.count; i++) {
        CHECK_MSG(z.entries[i].data_off % 64 == 0 && z.entries[i].method == 0, "%.*s", (int)z.entries[i].name_len,
                  z.entries[i].name);
        n_data += z.entries[i].name_len > z.root_len + 6 && !memcmp(z.entries[i].name + z.root_len, "/data/", 6);
    }
    CHECK_MSG(n_data == lmio_statedict_count(g_w), "%zu data records", n_data);
    const lmio__zip_entry *wte = member(&z, "data/0", x, NULL);
    lmio_tensor t;
    lmio_tensor_find(g_w, "transformer.wte.weight", &t, NULL);
    CHECK(wte && wte->size == t.nbytes && !memcmp(x + wte->data_off, t.data, t.nbytes));
    lmio__zip_free(&z);
    free(x);
    free(y);

    /* lmio's own reader knows it for what it is and runs none of it */
    lmio_statedict *sd = NULL;
    CHECK(lmio_statedict_open(a, NULL, &sd, &err) != LMIO_OK && strstr(err.message, "TorchScript"));
}

static void test_refusals(void)
{
    lmio_error err;
    const char *out = scratch("refused.pt");
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.dtype = LMIO_DTYPE_F16;
    CHECK(lmio_export_torchscript(g_cfg, g_w, out, &o, &err) == LMIO_ERR_INVALID_ARG && strstr(err.message, "F32"));
    CHECK(lmio_export_torchscript(NULL, g_w, out, NULL, &err) == LMIO_ERR_INVALID_ARG);
    FILE *f = fopen(scratch("config.json"), "w");
    fputs("{\"model_type\": \"bert\"}", f);
    fclose(f);
    lmio_config *bert = NULL;
    CHECK_OK(lmio_config_load(scratch("config.json"), &bert, NULL));
    CHECK(lmio_export_torchscript(bert, g_w, out, NULL, &err) == LMIO_ERR_UNSUPPORTED && strstr(err.message, "bert"));
    lmio_config_free(bert);
    lmio_config_set_int(g_cfg, "n_layer", N_LAYER + 1, NULL); /* more layers than the weights hold */
    CHECK(lmio_export_torchscript(g_cfg, g_w, out, NULL, &err) == LMIO_ERR_NOT_FOUND &&
          strstr(err.message, "transformer.h.2."));
    lmio_config_set_int(g_cfg, "n_layer", N_LAYER, NULL);
    struct stat st;
    CHECK(stat(out, &st) != 0);

    /* names the module tree cannot hold, refused before anything is written */
    static const char *const bad[][2] = {{"a.0", "cannot be a TorchScript attribute"},
                                         {"a.training", "cannot be a TorchScript attribute"},
                                         {"a.__init__", "cannot be a TorchScript attribute"},
                                         {"lambda.w", "cannot be a TorchScript attribute"},
                                         {"a.b", "is already a module"},
                                         {"h.1.x", "hold different tensors"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        lmio_tensor ts[3];
        lmio_tensor_find(g_w, "transformer.ln_f.bias", &ts[0], NULL);
        ts[1] = ts[2] = ts[0];
        ts[0].name = !strcmp(bad[i][0], "a.b") ? "a.b.c" : !strcmp(bad[i][0], "h.1.x") ? "h.0.w" : "ok.w";
        ts[1].name = bad[i][0];
        lmio__ts_program p = {"lmio.test", "Root", ts, 2, NULL, NULL};
        lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
        CHECK_MSG(lmio__torchscript_save(&p, out, &so, &err) == LMIO_ERR_INVALID_ARG &&
                      strstr(err.message, bad[i][1]),
                  "%s: %s", bad[i][0], err.message);
    }
    CHECK(stat(out, &st) != 0);
}

/* Allocation k fails, for every k: NOMEM, nothing leaked, nothing written. */
static void test_oom(void)
{
    lmio_allocator a = {oom_malloc, oom_realloc, oom_free, NULL};
    const char *out = scratch("oom.pt");
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.durable = 0;
    lmio_error err;
    long sites = 0;
    for (long k = 0;; k++) {
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        lmio_set_allocator(&a);
        lmio_status s = lmio_export_torchscript(g_cfg, g_w, out, &o, &err);
        lmio_set_allocator(NULL);
        CHECK_MSG(g_oom_live == 0, "allocation %ld failing leaks %ld blocks", k, g_oom_live);
        if (!g_oom_failed) {
            CHECK_MSG(s == LMIO_OK, "%s", err.message);
            break;
        }
        sites++;
        struct stat st;
        CHECK_MSG(s == LMIO_ERR_NOMEM && stat(out, &st) != 0, "allocation %ld failing gave %s", k,
                  lmio_status_str(s));
    }
    CHECK(sites > 10);
    printf("export_torchscript: %ld allocation sites failed in turn\n", sites);
}

int main(void)
{
    if (scratch_begin("ts")) return 1;
    build_model();
    test_layout();
    test_refusals();
    test_oom();
    lmio_statedict_free(g_w);
    lmio_config_free(g_cfg);
    scratch_end();
    return test_result("test_torchscript");
}
