/* The protobuf encoder behind ONNX export, against byte strings a
 * reference protobuf encoder produced (shared/reference/
 * onnx-transformersjs.md §1), and lmio_onnx_export's determinism and
 * refusals. onnx's checker, onnxruntime and transformers.js judge the whole
 * files in tests/interop/test_onnx_export.py. */
#include "../../src/formats/onnx.h"
#include "fixture.h"

#include <math.h>

static int same_bytes(const lmio__pb *p, const char *want, size_t n)
{
    return !p->b.oom && p->b.len == n && !memcmp(p->b.data, want, n);
}

static void dump(const char *what, const lmio__pb *p)
{
    fprintf(stderr, "%s:", what);
    for (size_t i = 0; i < p->b.len; i++) fprintf(stderr, " %02x", (unsigned char)p->b.data[i]);
    fputc('\n', stderr);
}

#define CHECK_PB(p, lit)                                                  \
    do {                                                                  \
        int ok_ = same_bytes((p), (lit), sizeof(lit) - 1);                \
        CHECK_MSG(ok_, "encoding differs from the reference bytes");      \
        if (!ok_) dump(#p, (p));                                          \
    } while (0)

static void test_varints(void)
{
    static const struct { uint64_t v; const char *b; size_t n; } cases[] = {
        {0, "\x00", 1},
        {1, "\x01", 1},
        {127, "\x7f", 1},
        {128, "\x80\x01", 2},
        {300, "\xac\x02", 2},
        {16383, "\xff\x7f", 2},
        {16384, "\x80\x80\x01", 3},
        {UINT64_MAX, "\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lmio__pb p = {0};
        lmio__pb_varint(&p, cases[i].v);
        CHECK_MSG(same_bytes(&p, cases[i].b, cases[i].n), "varint %llu", (unsigned long long)cases[i].v);
        lmio__pb_free(&p);
    }
}

/* The byte examples of the reference's §1, produced by an independent
 * encoder and parsed by onnx and onnxruntime. */
static void test_reference_messages(void)
{
    lmio__pb opset = {0};
    lmio__pb_str(&opset, 1, "");
    lmio__pb_int(&opset, 2, 17);
    CHECK_PB(&opset, "\x0a\x00\x10\x11");

    lmio__pb axis = {0};
    lmio__pb_str(&axis, 1, "axis");
    lmio__pb_int(&axis, 20, 2);
    lmio__pb_int(&axis, 3, -1); /* sign-extended: 10 bytes */
    CHECK_PB(&axis, "\x0a\x04" "axis" "\xa0\x01\x02\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01");

    lmio__pb eps = {0};
    lmio__pb_str(&eps, 1, "epsilon");
    lmio__pb_int(&eps, 20, 1);
    lmio__pb_float(&eps, 2, 1e-5f);
    CHECK_PB(&eps, "\x0a\x07" "epsilon" "\xa0\x01\x01\x15\xac\xc5\x27\x37");

    lmio__pb dim = {0};
    lmio__pb_str(&dim, 2, "batch_size");
    CHECK_PB(&dim, "\x12\x0a" "batch_size");

    lmio__pb head = {0};
    lmio__pb_int(&head, 1, 9);
    lmio__pb_msg(&head, 8, &opset); /* nested: its length first */
    CHECK_PB(&head, "\x08\x09\x42\x04\x0a\x00\x10\x11");
    CHECK(opset.b.data == NULL); /* consumed */

    lmio__pb packed = {0};
    const int64_t v[] = {1, 300};
    lmio__pb_packed_int(&packed, 7, v, 2);
    CHECK_PB(&packed, "\x3a\x03\x01\xac\x02");

    lmio__pb_free(&axis);
    lmio__pb_free(&eps);
    lmio__pb_free(&dim);
    lmio__pb_free(&head);
    lmio__pb_free(&packed);
}

/* A blob nested two levels deep: lengths count its converted size, and
 * writing splices the converted bytes exactly where the field put it. */
static void test_blobs(void)
{
    float data[3] = {1.0f, -2.5f, 65504.0f};
    uint64_t shape[1] = {3};
    lmio_statedict *sd;
    CHECK_OK(lmio_statedict_create(&sd, NULL));
    CHECK_OK(lmio_statedict_add(sd, "w", LMIO_DTYPE_F32, 1, shape, data, sizeof data, LMIO_BORROW, NULL));
    lmio_tensor t;
    CHECK_OK(lmio_tensor_find(sd, "w", &t, NULL));
    lmio__pb inner = {0}, outer = {0};
    lmio__pb_str(&inner, 8, "w");
    lmio__pb_blob_field(&inner, 9, &t, LMIO_DTYPE_F16);
    lmio__pb_int(&inner, 2, 10);
    CHECK(lmio__pb_len(&inner) == 3 + 2 + 6 + 2);
    lmio__pb_int(&outer, 1, 1);
    lmio__pb_msg(&outer, 5, &inner);
    lmio__pb_str(&outer, 2, "g");
    lmio__outfile of;
    const char *path = scratch("blob.pb");
    CHECK_OK(lmio__outfile_begin(&of, path, NULL));
    CHECK_OK(lmio__pb_write(&outer, &of, NULL));
    CHECK_OK(lmio__outfile_commit(&of, 0, NULL));
    /* f16 of 1.0, -2.5, 65504 little-endian: 3c00, c100, 7bff */
    static const char want[] = "\x08\x01\x2a\x0d\x42\x01w\x4a\x06\x00\x3c\x00\xc1\xff\x7b\x10\x0a\x12\x01g";
    size_t n;
    char *got = fx_read(path, &n);
    CHECK_MSG(got && n == sizeof want - 1 && !memcmp(got, want, n), "spliced file of %zu bytes", n);
    CHECK(lmio__pb_len(&outer) == sizeof want - 1);
    free(got);
    lmio__pb_free(&outer);
    lmio_statedict_free(sd);
}

/* ---- whole exports ---- */

static void put(lmio_statedict *sd, const char *name, int ndim, uint64_t a, uint64_t b, unsigned *seed)
{
    uint64_t shape[2] = {a, b};
    size_t n = (size_t)(a * (ndim == 2 ? b : 1));
    float *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1103515245u + 12345u;
        v[i] = ((float)(*seed >> 16 & 0x7fff) / 32768.0f - 0.5f) * 0.4f;
    }
    lmio_statedict_add(sd, name, LMIO_DTYPE_F32, ndim, shape, v, n * 4, LMIO_COPY, NULL);
    free(v);
}

/* A GPT-2 of 2 layers, C = 16, 4 heads, V = 50. */
static void tiny_gpt2(lmio_config **cfg, lmio_statedict **sd)
{
    lmio_config_create("gpt2", cfg, NULL);
    lmio_config_set_int(*cfg, "vocab_size", 50, NULL);
    lmio_config_set_int(*cfg, "n_positions", 32, NULL);
    lmio_config_set_int(*cfg, "n_embd", 16, NULL);
    lmio_config_set_int(*cfg, "n_layer", 2, NULL);
    lmio_config_set_int(*cfg, "n_head", 4, NULL);
    lmio_statedict_create(sd, NULL);
    unsigned seed = 1;
    put(*sd, "transformer.wte.weight", 2, 50, 16, &seed);
    put(*sd, "transformer.wpe.weight", 2, 32, 16, &seed);
    for (int l = 0; l < 2; l++) {
        static const struct { const char *n; int nd; uint64_t a, b; } t[] = {
            {"ln_1.weight", 1, 16, 0}, {"ln_1.bias", 1, 16, 0}, {"attn.c_attn.weight", 2, 16, 48},
            {"attn.c_attn.bias", 1, 48, 0}, {"attn.c_proj.weight", 2, 16, 16}, {"attn.c_proj.bias", 1, 16, 0},
            {"ln_2.weight", 1, 16, 0}, {"ln_2.bias", 1, 16, 0}, {"mlp.c_fc.weight", 2, 16, 64},
            {"mlp.c_fc.bias", 1, 64, 0}, {"mlp.c_proj.weight", 2, 64, 16}, {"mlp.c_proj.bias", 1, 16, 0}};
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            char name[128];
            snprintf(name, sizeof name, "transformer.h.%d.%s", l, t[i].n);
            put(*sd, name, t[i].nd, t[i].a, t[i].b, &seed);
        }
    }
    put(*sd, "transformer.ln_f.weight", 1, 16, 0, &seed);
    put(*sd, "transformer.ln_f.bias", 1, 16, 0, &seed);
}

static void test_export_deterministic(void)
{
    lmio_config *cfg;
    lmio_statedict *sd;
    tiny_gpt2(&cfg, &sd);
    lmio_onnx_opts o = LMIO_ONNX_OPTS_INIT;
    o.durable = 0;
    CHECK_OK(lmio_onnx_export(scratch("a"), cfg, sd, NULL, &o, NULL));
    CHECK_OK(lmio_onnx_export(scratch("b"), cfg, sd, NULL, &o, NULL));
    CHECK(fx_same(scratch("a/onnx/model.onnx"), scratch("b/onnx/model.onnx")));
    CHECK(fx_same(scratch("a/config.json"), scratch("b/config.json")));
    size_t n;
    char *bytes = fx_read(scratch("a/onnx/model.onnx"), &n);
    /* every weight inline: 2 * 12 per layer + 4, all f32 */
    CHECK(bytes && n > (50 * 16 + 32 * 16 + 2 * (16 * 48 + 16 * 16 + 16 * 64 * 2)) * 4);
    free(bytes);

    /* over the same directory, external: the data file appears, aligned */
    o.external_data = 1;
    CHECK_OK(lmio_onnx_export(scratch("a"), cfg, sd, NULL, &o, NULL));
    CHECK_OK(lmio_onnx_export(scratch("b"), cfg, sd, NULL, &o, NULL));
    CHECK(fx_same(scratch("a/onnx/model.onnx_data"), scratch("b/onnx/model.onnx_data")));
    CHECK(fx_same(scratch("a/onnx/model.onnx"), scratch("b/onnx/model.onnx")));
    char *data = fx_read(scratch("a/onnx/model.onnx_data"), &n);
    /* the last tensor (ln_f.bias, 64 bytes) starts on a page */
    CHECK_MSG(data && n % 4096 == 64, "data file of %zu bytes", n);
    free(data);
    char *c = fx_read(scratch("a/config.json"), NULL);
    CHECK(c && strstr(c, "\"use_external_data_format\": true"));
    free(c);
    /* and back inline: the stale data file goes */
    o.external_data = 0;
    CHECK_OK(lmio_onnx_export(scratch("a"), cfg, sd, NULL, &o, NULL));
    CHECK(access(scratch("a/onnx/model.onnx_data"), F_OK) != 0);

    /* f16 halves the weights */
    size_t n32, n16;
    free(fx_read(scratch("a/onnx/model.onnx"), &n32));
    o.dtype = LMIO_DTYPE_F16;
    CHECK_OK(lmio_onnx_export(scratch("h"), cfg, sd, NULL, &o, NULL));
    free(fx_read(scratch("h/onnx/model.onnx"), &n16));
    uint64_t numel = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        numel += t.numel;
    }
    /* 2 bytes saved per weight, less the Cast nodes back to f32 */
    CHECK_MSG(n32 - n16 > numel * 3 / 2, "f16 %zu bytes, f32 %zu, %llu weights", n16, n32, (unsigned long long)numel);

    /* refusals */
    lmio_error err;
    o.dtype = LMIO_DTYPE_BF16;
    CHECK(lmio_onnx_export(scratch("x"), cfg, sd, NULL, &o, &err) == LMIO_ERR_INVALID_ARG);
    o.dtype = LMIO_DTYPE_NONE;
    lmio_config_set_int(cfg, "n_layer", 3, NULL);
    CHECK(lmio_onnx_export(scratch("x"), cfg, sd, NULL, &o, &err) != LMIO_OK);
    CHECK_MSG(strstr(err.message, "transformer.h.2") != NULL, "%s", err.message);
    lmio_config *other;
    CHECK_OK(lmio_config_load(scratch("a/config.json"), &other, NULL));
    lmio_config_set_string(other, "model_type", "bert", NULL);
    CHECK(lmio_onnx_export(scratch("x"), other, sd, NULL, &o, &err) == LMIO_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "\"bert\"") && strstr(err.message, "gpt2"), "%s", err.message);
    CHECK(lmio_onnx_supported("gpt2") == 1 && lmio_onnx_supported("bert") == 0);
    fx_write_text(scratch("file"), "x");
    CHECK(lmio_onnx_export(scratch("file"), cfg, sd, NULL, &o, &err) != LMIO_OK);
    lmio_config_free(other);
    lmio_config_free(cfg);
    lmio_statedict_free(sd);
}

/* Every allocation of an export failing in turn: LMIO_ERR_NOMEM, never a
 * crash, a leak or a success that skipped work. */
static void test_export_oom(void)
{
    lmio_config *cfg;
    lmio_statedict *sd;
    tiny_gpt2(&cfg, &sd);
    lmio_onnx_opts o = LMIO_ONNX_OPTS_INIT;
    o.durable = 0;
    lmio_allocator a = {oom_malloc, oom_realloc, oom_free, NULL};
    lmio_error err;
    g_oom_live = 0;
    g_oom_countdown = 1L << 60;
    lmio_set_allocator(&a);
    lmio_status s = lmio_onnx_export(scratch("oom"), cfg, sd, NULL, &o, &err);
    lmio_set_allocator(NULL);
    long n_sites = (1L << 60) - g_oom_countdown, wrong = 0, leaks = 0;
    CHECK_MSG(s == LMIO_OK && g_oom_live == 0, "%s, %ld blocks held", lmio_status_str(s), g_oom_live);
    for (long k = 0; k < n_sites; k++) {
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        lmio_set_allocator(&a);
        s = lmio_onnx_export(scratch("oom"), cfg, sd, NULL, &o, &err);
        lmio_set_allocator(NULL);
        if (g_oom_live && leaks++ < 3) fprintf(stderr, "allocation %ld failing leaks %ld blocks\n", k, g_oom_live);
        if (g_oom_failed && s != LMIO_ERR_NOMEM && wrong++ < 3)
            fprintf(stderr, "allocation %ld failing gave %s: %s\n", k, lmio_status_str(s), s ? err.message : "");
    }
    CHECK_MSG(n_sites > 50 && !wrong && !leaks, "%ld sites, %ld wrong, %ld leaking", n_sites, wrong, leaks);
    lmio_config_free(cfg);
    lmio_statedict_free(sd);
}

int main(void)
{
    if (scratch_begin("onnx")) return 1;
    test_varints();
    test_reference_messages();
    test_blobs();
    test_export_deterministic();
    test_export_oom();
    scratch_end();
    return test_result("test_onnx");
}
