/* PyTorch checkpoints: the corrupt and malicious corpus is refused with its
 * expected error (tests/data/corrupt_torch, from make_torch_corpus.py); the
 * good ones read value by value; what lmio writes reads back identical,
 * shares storages, is 64-byte aligned, and refuses what torch cannot hold;
 * allocation failures are reported, never leaked. */
#include "../../src/core/core.h"
#include "../../src/formats/formats.h"
#include "../test.h"

#include <stdlib.h>
#include <sys/stat.h>

static const char *g_data;

static lmio_status status_from(const char *s)
{
    static const struct { const char *n; lmio_status s; } k[] = {
        {"FORMAT", LMIO_ERR_FORMAT}, {"LIMIT", LMIO_ERR_LIMIT}, {"UNSUPPORTED", LMIO_ERR_UNSUPPORTED},
        {"DUPLICATE", LMIO_ERR_DUPLICATE}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (!strcmp(k[i].n, s)) return k[i].s;
    return (lmio_status)-1;
}

static void corpus(void)
{
    char path[1024], line[1024];
    snprintf(path, sizeof path, "%s/corrupt_torch/EXPECTED", g_data);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = 0;
        char *name = strtok(line, "\t"), *status = strtok(NULL, "\t"), *off = strtok(NULL, "\t"),
             *frag = strtok(NULL, "\t");
        if (!name || !status || !off || !frag) { CHECK_MSG(0, "bad EXPECTED line"); continue; }
        snprintf(path, sizeof path, "%s/corrupt_torch/%s", g_data, name);
        for (int mm = 0; mm < 2; mm++) {
            lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
            oo.use_mmap = mm;
            lmio_statedict *sd = NULL;
            lmio_error err;
            lmio_status s = lmio_statedict_open(path, &oo, &sd, &err);
            CHECK_MSG(s == status_from(status), "%s: got %s: %s", name, lmio_status_str(s), s ? err.message : "");
            CHECK(sd == NULL);
            if (s == LMIO_OK) { lmio_statedict_free(sd); continue; }
            CHECK_MSG(strstr(err.message, frag) != NULL, "%s: message \"%s\" lacks \"%s\"", name, err.message, frag);
            CHECK_MSG(strstr(err.message, path) == err.message, "%s: message does not start with the path", name);
            CHECK_MSG(!strchr(err.message, '\n'), "%s: message spans lines", name);
            long want = atol(off);
            if (want >= 0)
                CHECK_MSG(err.offset == want, "%s: offset %lld, expected %ld", name, (long long)err.offset, want);
        }
        cases++;
    }
    fclose(f);
    CHECK_MSG(cases >= 50, "only %d corrupt cases", cases);
    snprintf(path, sizeof path, "%s/corrupt_torch/good.pt", g_data);
    lmio_statedict *sd = NULL;
    CHECK_OK(lmio_statedict_open(path, NULL, &sd, &e_));
    CHECK(lmio_statedict_count(sd) == 1);
    lmio_statedict_free(sd);
    printf("corrupt torch corpus: %d files, each refused with its expected error\n", cases);
}

static const float k_f6[6] = {0, 1, 2, 3, 4, 5};

static void expect_f32(const lmio_statedict *sd, const char *name, int ndim, const uint64_t *shape,
                       const float *want, size_t n)
{
    lmio_tensor t;
    lmio_error err;
    lmio_status s = lmio_tensor_find(sd, name, &t, &err);
    CHECK_MSG(s == LMIO_OK, "%s", err.message);
    if (s) return;
    CHECK_MSG(t.dtype == LMIO_DTYPE_F32 && t.ndim == ndim && t.numel == n, "%s", name);
    CHECK_MSG(!memcmp(t.shape, shape, (size_t)ndim * sizeof *shape), "%s shape", name);
    CHECK_MSG(t.nbytes == n * 4 && !memcmp(t.data, want, n * 4), "%s values", name);
}

/* What make_torch_corpus.py's good_files() hold. */
static void good_checkpoints(void)
{
    char path[1024];
    lmio_statedict *sd = NULL;
    snprintf(path, sizeof path, "%s/good_torch/checkpoint.pt", g_data);
    for (int mm = 0; mm < 2; mm++) {
        lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
        oo.use_mmap = mm;
        lmio_error err;
        lmio_status s = lmio_statedict_open(path, &oo, &sd, &err);
        CHECK_MSG(s == LMIO_OK, "%s", err.message);
        if (s) return;
        CHECK(!strcmp(lmio_statedict_format(sd), "pytorch"));
        static const float wt[6] = {0, 3, 1, 4, 2, 5};
        expect_f32(sd, "model.w", 2, (uint64_t[]){2, 3}, k_f6, 6);
        expect_f32(sd, "model.w_t", 2, (uint64_t[]){3, 2}, wt, 6); /* transposed: copied contiguous */
        expect_f32(sd, "model.row1", 1, (uint64_t[]){3}, k_f6 + 3, 3);
        expect_f32(sd, "model.p", 1, (uint64_t[]){6}, k_f6, 6);
        lmio_tensor w, row1, u16;
        CHECK_OK(lmio_tensor_find(sd, "model.w", &w, &e_));
        CHECK_OK(lmio_tensor_find(sd, "model.row1", &row1, &e_));
        /* views of one storage stay views of the file, at the view's offset */
        CHECK(w.file_offset % 64 == 0 && row1.file_offset == w.file_offset + 12);
        CHECK_OK(lmio_tensor_find(sd, "model.u16", &u16, &e_));
        static const uint16_t u[3] = {1, 2, 65535};
        CHECK(u16.dtype == LMIO_DTYPE_U16 && u16.nbytes == 6 && !memcmp(u16.data, u, 6));
        static const char *const meta[][2] = {{"step", "5"}, {"name", "run"}, {"done", "True"}, {"none", "None"},
                                              {"big", "1099511627776"}, {"dtype", "torch.float16"},
                                              {"optimizer.lr", "0.001"}, {"optimizer.betas.0", "0.9"},
                                              {"optimizer.state.0.step", "7"}};
        for (size_t i = 0; i < sizeof meta / sizeof *meta; i++) {
            const char *v = lmio_metadata_find(sd, meta[i][0]);
            CHECK_MSG(v && !strcmp(v, meta[i][1]), "%s = %s, expected %s", meta[i][0], v ? v : "(absent)",
                      meta[i][1]);
        }
        lmio_statedict_free(sd);
    }
    /* the legacy stream, and a zip whose sizes and offsets are all in
     * zip64 extra fields, hold the same weights */
    static const char *const same[] = {"legacy.pt", "zip64_extras.pt"};
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/good_torch/%s", g_data, same[k]);
        sd = NULL;
        lmio_error err;
        lmio_status s = lmio_statedict_open(path, NULL, &sd, &err);
        CHECK_MSG(s == LMIO_OK, "%s", err.message);
        if (s) continue;
        static const float wt[6] = {0, 3, 1, 4, 2, 5};
        expect_f32(sd, "w", 2, (uint64_t[]){2, 3}, k_f6, 6);
        expect_f32(sd, "w_t", 2, (uint64_t[]){3, 2}, wt, 6);
        expect_f32(sd, "row1", 1, (uint64_t[]){3}, k_f6 + 3, 3);
        lmio_statedict_free(sd);
    }
}

/* Every dtype torch has survives a save and a read; the others are refused
 * by name and leave no file. */
static void round_trip(void)
{
    static const lmio_dtype dts[] = {LMIO_DTYPE_BOOL, LMIO_DTYPE_U8, LMIO_DTYPE_I8, LMIO_DTYPE_I16,
                                     LMIO_DTYPE_U16, LMIO_DTYPE_I32, LMIO_DTYPE_U32, LMIO_DTYPE_I64,
                                     LMIO_DTYPE_U64, LMIO_DTYPE_F16, LMIO_DTYPE_BF16, LMIO_DTYPE_F32,
                                     LMIO_DTYPE_F64, LMIO_DTYPE_C64, LMIO_DTYPE_F8_E4M3, LMIO_DTYPE_F8_E5M2,
                                     LMIO_DTYPE_F8_E8M0, LMIO_DTYPE_F8_E4M3FNUZ, LMIO_DTYPE_F8_E5M2FNUZ};
    unsigned char bytes[64];
    for (int i = 0; i < 64; i++) bytes[i] = (unsigned char)(i * 37 + 11);
    lmio_statedict *sd = NULL, *back = NULL;
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    size_t n = sizeof dts / sizeof *dts;
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "t.%s", lmio_dtype_name(dts[i]));
        uint64_t shape[2] = {2, 2};
        CHECK_OK(lmio_statedict_add(sd, name, dts[i], 2, shape, bytes + i, 4 * lmio_dtype_bits(dts[i]) / 8,
                                    LMIO_BORROW, &e_));
    }
    CHECK_OK(lmio_statedict_add(sd, "scalar", LMIO_DTYPE_I64, 0, NULL, bytes, 8, LMIO_COPY, &e_));
    CHECK_OK(lmio_statedict_add(sd, "empty", LMIO_DTYPE_F32, 2, (uint64_t[]){0, 3}, NULL, 0, LMIO_COPY, &e_));
    lmio_error err;
    CHECK_MSG(lmio_statedict_save(sd, scratch("all.pt"), "bin", NULL, &err) == LMIO_OK, "%s", err.message);
    CHECK_MSG(lmio_statedict_open(scratch("all.pt"), NULL, &back, &err) == LMIO_OK, "%s", err.message);
    if (back) {
        CHECK(lmio_statedict_count(back) == lmio_statedict_count(sd));
        for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
            lmio_tensor a, b;
            lmio_statedict_get(sd, i, &a, NULL);
            lmio_statedict_get(back, i, &b, NULL);
            CHECK_MSG(!strcmp(a.name, b.name) && a.dtype == b.dtype && a.ndim == b.ndim &&
                          !memcmp(a.shape, b.shape, sizeof a.shape) && a.nbytes == b.nbytes &&
                          (!a.nbytes || !memcmp(a.data, b.data, a.nbytes)),
                      "%s differs after a round trip", a.name);
        }
    }
    lmio_statedict_free(back);
    /* the same state dict gives the same bytes */
    lmio__file fa, fb;
    CHECK_OK(lmio__file_open(scratch("all.pt"), 0, &fa, &e_));
    CHECK_OK(lmio_statedict_save(sd, scratch("all.pt"), "pytorch", NULL, &e_));
    CHECK_OK(lmio__file_open(scratch("all.pt"), 0, &fb, &e_));
    CHECK(fa.size == fb.size && fa.size && !memcmp(fa.data, fb.data, (size_t)fa.size));
    lmio__file_close(&fa);
    lmio__file_close(&fb);
    for (lmio_dtype bad = LMIO_DTYPE_F6_E2M3; bad <= LMIO_DTYPE_F4; bad++) {
        lmio_statedict *x = NULL;
        CHECK_OK(lmio_statedict_create(&x, &e_));
        CHECK_OK(lmio_statedict_add(x, "q", bad, 1, (uint64_t[]){8}, bytes, 8 * lmio_dtype_bits(bad) / 8, LMIO_BORROW,
                                    &e_));
        CHECK(lmio_statedict_save(x, scratch("bad.pt"), "pytorch", NULL, &err) == LMIO_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(err.message, "tensor \"q\"") && strstr(err.message, "no dtype"), "%s", err.message);
        struct stat st;
        CHECK(stat(scratch("bad.pt"), &st) != 0);
        lmio_statedict_free(x);
    }
    lmio_statedict_free(sd);
}

/* The nested writer (optimizer state dicts): every kind of value, int and
 * str keys, lists past CPython's batch of 1000, read back by lmio's own
 * reader under their flattened names; a bad tensor index writes nothing. */
static void nested_tree(void)
{
    float a[6] = {1, 2, 3, 4, 5, 6}, step = 7;
    lmio_statedict *sd = NULL, *back = NULL;
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    CHECK_OK(lmio_statedict_add(sd, "a", LMIO_DTYPE_F32, 2, (uint64_t[]){2, 3}, a, sizeof a, LMIO_BORROW, &e_));
    CHECK_OK(lmio_statedict_add(sd, "step", LMIO_DTYPE_F32, 0, NULL, &step, 4, LMIO_BORROW, &e_));
    enum { BIG = 1003 };
    lmio__pyv *big = calloc(BIG, sizeof *big);
    for (int i = 0; big && i < BIG; i++) big[i] = (lmio__pyv){.kind = LMIO__PYV_INT, .i = i * 1000};
    const lmio__pyv leaves[] = {
        {.kind = LMIO__PYV_FLOAT, .f = 1e-8}, {.kind = LMIO__PYV_NONE}, {.kind = LMIO__PYV_BOOL, .i = 1},
        {.kind = LMIO__PYV_BOOL}, {.kind = LMIO__PYV_STR, .s = "text"}, {.kind = LMIO__PYV_INT, .i = -3},
        {.kind = LMIO__PYV_INT, .i = (int64_t)1 << 40}};
    const lmio__pyv pair[] = {{.kind = LMIO__PYV_FLOAT, .f = 0.9}, {.kind = LMIO__PYV_FLOAT, .f = 0.95}};
    const lmio__pyv inner[] = {{.kind = LMIO__PYV_TENSOR, .ikey = 0, .i = 1},
                               {.kind = LMIO__PYV_TENSOR, .ikey = 12, .i = 0},
                               {.kind = LMIO__PYV_TUPLE, .ikey = 13, .items = leaves, .n = 7},
                               {.kind = LMIO__PYV_TUPLE, .ikey = 14, .items = pair, .n = 2}};
    const lmio__pyv top[] = {{.kind = LMIO__PYV_DICT, .key = "state", .items = inner, .n = 4},
                             {.kind = LMIO__PYV_LIST, .key = "big", .items = big, .n = BIG},
                             {.kind = LMIO__PYV_LIST, .key = "one", .items = pair, .n = 1},
                             {.kind = LMIO__PYV_TUPLE, .key = "none"}};
    const lmio__pyv root = {.kind = LMIO__PYV_DICT, .items = top, .n = 4};
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    lmio_error err;
    CHECK_MSG(lmio__torch_save_tree(scratch("tree.pt"), &root, sd, &o, &err) == LMIO_OK, "%s", err.message);
    CHECK_MSG(lmio_statedict_open(scratch("tree.pt"), NULL, &back, &err) == LMIO_OK, "%s", err.message);
    if (back) {
        lmio_tensor t0, t1;
        CHECK(lmio_statedict_count(back) == 2);
        CHECK_OK(lmio_statedict_get(back, 0, &t0, &e_));
        CHECK_OK(lmio_statedict_get(back, 1, &t1, &e_));
        CHECK_MSG(!strcmp(t0.name, "state.0") && t0.ndim == 0 && *(const float *)t0.data == 7, "%s", t0.name);
        CHECK_MSG(!strcmp(t1.name, "state.12") && t1.ndim == 2 && !memcmp(t1.data, a, sizeof a), "%s", t1.name);
        static const char *const want[][2] = {
            {"state.13.0", "1e-08"}, {"state.13.1", "None"}, {"state.13.2", "True"}, {"state.13.3", "False"},
            {"state.13.4", "text"}, {"state.13.5", "-3"}, {"state.13.6", "1099511627776"},
            {"state.14.0", "0.9"}, {"state.14.1", "0.95"}, {"big.0", "0"}, {"big.999", "999000"},
            {"big.1002", "1002000"}, {"one.0", "0.9"}, {"none", "()"}};
        for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
            const char *v = lmio_metadata_find(back, want[i][0]);
            CHECK_MSG(v && !strcmp(v, want[i][1]), "%s = %s; expected %s", want[i][0], v ? v : "(absent)",
                      want[i][1]);
        }
        CHECK(!lmio_metadata_find(back, "big.1003"));
    }
    lmio_statedict_free(back);
    const lmio__pyv bad = {.kind = LMIO__PYV_TENSOR, .i = 2};
    CHECK(lmio__torch_save_tree(scratch("bad_tree.pt"), &bad, sd, &o, &err) == LMIO_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err.message, "tensor 2 of a state dict of 2"), "%s", err.message);
    struct stat st;
    CHECK(stat(scratch("bad_tree.pt"), &st) != 0);
    free(big);
    lmio_statedict_free(sd);
}

/* Overlapping tensors are one storage; conversion applies to it whole. */
static void sharing_and_conversion(void)
{
    static const float v[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    lmio_statedict *sd = NULL, *back = NULL;
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    CHECK_OK(lmio_statedict_add(sd, "all", LMIO_DTYPE_F32, 2, (uint64_t[]){2, 4}, v, 32, LMIO_BORROW, &e_));
    CHECK_OK(lmio_statedict_add(sd, "tied", LMIO_DTYPE_F32, 2, (uint64_t[]){2, 4}, v, 32, LMIO_BORROW, &e_));
    CHECK_OK(lmio_statedict_add(sd, "tail", LMIO_DTYPE_F32, 1, (uint64_t[]){3}, v + 5, 12, LMIO_BORROW, &e_));
    CHECK_OK(lmio_statedict_add(sd, "copy", LMIO_DTYPE_F32, 1, (uint64_t[]){3}, v + 5, 12, LMIO_COPY, &e_));
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.dtype = LMIO_DTYPE_BF16;
    CHECK_OK(lmio_statedict_save(sd, scratch("shared.pt"), "pytorch", &o, &e_));
    CHECK_OK(lmio_statedict_open(scratch("shared.pt"), NULL, &back, &e_));
    if (back) {
        lmio_tensor a, t, tail, copy;
        CHECK_OK(lmio_tensor_find(back, "all", &a, &e_));
        CHECK_OK(lmio_tensor_find(back, "tied", &t, &e_));
        CHECK_OK(lmio_tensor_find(back, "tail", &tail, &e_));
        CHECK_OK(lmio_tensor_find(back, "copy", &copy, &e_));
        CHECK(a.dtype == LMIO_DTYPE_BF16 && a.nbytes == 16 && tail.nbytes == 6);
        CHECK(a.file_offset == t.file_offset && tail.file_offset == a.file_offset + 10);
        CHECK(copy.file_offset % 64 == 0 && copy.file_offset != tail.file_offset);
        uint16_t want[3];
        lmio_convert(want, LMIO_DTYPE_BF16, v + 5, LMIO_DTYPE_F32, 3, NULL);
        CHECK(!memcmp(tail.data, want, 6) && !memcmp(copy.data, want, 6));
    }
    lmio_statedict_free(back);
    lmio_statedict_free(sd);
}

/* save_pretrained with format "bin": shards, index, loads back. */
static void directory(void)
{
    lmio_statedict *sd = NULL, *w = NULL;
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    CHECK_OK(lmio_statedict_add(sd, "a", LMIO_DTYPE_F32, 1, (uint64_t[]){6}, k_f6, 24, LMIO_BORROW, &e_));
    CHECK_OK(lmio_statedict_add(sd, "b", LMIO_DTYPE_F32, 1, (uint64_t[]){6}, k_f6, 24, LMIO_COPY, &e_));
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.format = "bin";
    o.max_shard_size = 24;
    lmio_error err;
    CHECK_MSG(lmio_pretrained_save(scratch("dir"), NULL, sd, NULL, &o, &err) == LMIO_OK, "%s", err.message);
    struct stat st;
    CHECK(stat(scratch("dir/pytorch_model-00001-of-00002.bin"), &st) == 0);
    CHECK(stat(scratch("dir/pytorch_model.bin.index.json"), &st) == 0);
    CHECK_MSG(lmio_pretrained_load(scratch("dir"), NULL, &w, NULL, &err) == LMIO_OK, "%s", err.message);
    if (w) {
        expect_f32(w, "a", 1, (uint64_t[]){6}, k_f6, 6);
        expect_f32(w, "b", 1, (uint64_t[]){6}, k_f6, 6);
    }
    lmio_statedict_free(w);
    lmio_statedict_free(sd);
}

static lmio_status open_and_save(const char *in, const char *out, lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_open(in, NULL, &sd, err);
    if (s) return s;
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.dtype = LMIO_DTYPE_F16;
    o.durable = 0;
    s = lmio_statedict_save(sd, out, "pytorch", &o, err);
    lmio_statedict_free(sd);
    return s;
}

static void oom_injection(void)
{
    char in[1024];
    const char *out = scratch("oom.pt");
    snprintf(in, sizeof in, "%s/good_torch/checkpoint.pt", g_data);
    lmio_allocator a = {oom_malloc, oom_realloc, oom_free, NULL};
    int iterations = 0, wrong = 0;
    for (long k = 0; k < 100000; k++) {
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        lmio_set_allocator(&a);
        lmio_error err;
        lmio_status s = open_and_save(in, out, &err);
        lmio_set_allocator(NULL);
        iterations++;
        CHECK_MSG(g_oom_live == 0, "allocation %ld failing leaks %ld blocks", k, g_oom_live);
        if (!g_oom_failed) {
            CHECK_MSG(s == LMIO_OK, "%s", err.message);
            break;
        }
        if (s != LMIO_ERR_NOMEM) {
            wrong++;
            fprintf(stderr, "allocation %ld failing gave %s: %s\n", k, lmio_status_str(s), err.message);
        }
    }
    CHECK(wrong == 0);
    CHECK(iterations > 10);
    printf("oom injection: %d allocation sites failed in turn\n", iterations - 1);
}

int main(int argc, char **argv)
{
    g_data = argc > 1 ? argv[1] : "tests/data";
    if (scratch_begin("torch")) return 1;
    corpus();
    good_checkpoints();
    round_trip();
    nested_tree();
    sharing_and_conversion();
    directory();
    oom_injection();
    scratch_end();
    return test_result("test_torch");
}
