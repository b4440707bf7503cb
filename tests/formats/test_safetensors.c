/* safetensors writer and reader: exact bytes from the reference
 * implementation's own tests, round trips of every dtype, ordering,
 * determinism, and the atomic-replace guarantees. */
#include "../../src/core/core.h"
#include "../test.h"

#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define tmp scratch
#define g_dir g_scratch

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)len + 1);
    *n = fread(buf, 1, (size_t)len, f);
    fclose(f);
    return buf;
}

static int count_temp_files(void)
{
    DIR *d = opendir(g_dir);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, "lmio-tmp")) n++;
    closedir(d);
    return n;
}

/* The byte vectors of safetensors' test_empty / test_serialization /
 * test_serialization_forced_alignement (shared/reference/safetensors-hf.md §1.2). */
static void reference_bytes(void)
{
    lmio_statedict *sd;
    size_t n;
    char *b;
    lmio_statedict_create(&sd, NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("empty.st"), NULL, &e_));
    b = slurp(tmp("empty.st"), &n);
    CHECK(n == 16 && memcmp(b, "\x08\0\0\0\0\0\0\0{}      ", 16) == 0);
    free(b);
    lmio_metadata_set(sd, "framework", "pt", NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("meta.st"), NULL, &e_));
    b = slurp(tmp("meta.st"), &n);
    CHECK(n == 48 && memcmp(b, "\x28\0\0\0\0\0\0\0{\"__metadata__\":{\"framework\":\"pt\"}}     ", 48) == 0);
    free(b);
    lmio_statedict_free(sd);

    float data[6] = {0, 1, 2, 3, 4, 5};
    lmio_statedict_create(&sd, NULL);
    lmio_statedict_add(sd, "attn.0", LMIO_DTYPE_F32, 3, (uint64_t[]){1, 2, 3}, data, 24, LMIO_BORROW, NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("ser.st"), NULL, &e_));
    b = slurp(tmp("ser.st"), &n);
    const char *hdr = "{\"attn.0\":{\"dtype\":\"F32\",\"shape\":[1,2,3],\"data_offsets\":[0,24]}}";
    CHECK(n == 8 + 64 + 24 && b[0] == 64 && memcmp(b + 8, hdr, 64) == 0 && memcmp(b + 72, data, 24) == 0);
    free(b);
    lmio_statedict_free(sd);

    lmio_statedict_create(&sd, NULL);
    lmio_statedict_add(sd, "attn0", LMIO_DTYPE_F32, 4, (uint64_t[]){1, 1, 2, 3}, data, 24, LMIO_BORROW, NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("align.st"), NULL, &e_));
    b = slurp(tmp("align.st"), &n);
    CHECK(n == 8 + 72 + 24 && b[0] == 72 && memcmp(b + 8 + 65, "       ", 7) == 0);
    free(b);
    lmio_statedict_free(sd);
}

/* Tensors come out by descending dtype alignment, then by name. */
static void write_order(void)
{
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    unsigned char z[64] = {0};
    lmio_statedict_add(sd, "b_u8", LMIO_DTYPE_U8, 1, (uint64_t[]){3}, z, 3, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "a_f16", LMIO_DTYPE_F16, 1, (uint64_t[]){1}, z, 2, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "c_i64", LMIO_DTYPE_I64, 1, (uint64_t[]){1}, z, 8, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "b_f32", LMIO_DTYPE_F32, 1, (uint64_t[]){1}, z, 4, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "a_f32", LMIO_DTYPE_F32, 1, (uint64_t[]){1}, z, 4, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "a_bool", LMIO_DTYPE_BOOL, 1, (uint64_t[]){1}, z, 1, LMIO_BORROW, NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("order.st"), NULL, &e_));
    lmio_statedict_free(sd);
    CHECK_OK(lmio_statedict_open(tmp("order.st"), NULL, &sd, &e_));
    const char *want[] = {"c_i64", "a_f32", "b_f32", "a_f16", "b_u8", "a_bool"};
    for (size_t i = 0; i < 6; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        CHECK_MSG(strcmp(t.name, want[i]) == 0, "position %zu: %s", i, t.name);
        /* natural alignment of every mapped tensor */
        CHECK(((uintptr_t)t.data % (lmio_dtype_bits(t.dtype) / 8)) == 0 || t.nbytes == 0);
    }
    lmio_statedict_free(sd);
}

static void round_trip_all_dtypes(void)
{
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    unsigned char buf[4096];
    for (int i = 0; i < (int)sizeof buf; i++) buf[i] = (unsigned char)(i * 131 + 7);
    for (int d = 0; d < LMIO_DTYPE_COUNT; d++) {
        char name[64];
        snprintf(name, sizeof name, "t.%s", lmio_dtype_name((lmio_dtype)d));
        uint64_t shape[3] = {2, 3, 8}; /* 48 elements: whole bytes for F4 and F6 */
        uint64_t nb = 48 * lmio_dtype_bits((lmio_dtype)d) / 8;
        CHECK_OK(lmio_statedict_add(sd, name, (lmio_dtype)d, 3, shape, buf, nb, LMIO_COPY, &e_));
    }
    int32_t scalar = -5;
    lmio_statedict_add(sd, "scalar", LMIO_DTYPE_I32, 0, NULL, &scalar, 4, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "empty", LMIO_DTYPE_F32, 2, (uint64_t[]){4, 0}, NULL, 0, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "deep", LMIO_DTYPE_U8, 16, (uint64_t[]){1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2}, buf, 2, LMIO_BORROW, NULL);
    lmio_metadata_set(sd, "format", "pt", NULL);
    lmio_metadata_set(sd, "ünïcode key", "välue \"quoted\"\n", NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("all.st"), NULL, &e_));
    CHECK_OK(lmio_safetensors_save(sd, tmp("all2.st"), NULL, &e_));
    size_t n1, n2;
    char *b1 = slurp(tmp("all.st"), &n1), *b2 = slurp(tmp("all2.st"), &n2);
    CHECK(n1 == n2 && memcmp(b1, b2, n1) == 0); /* deterministic */
    free(b1);
    free(b2);

    for (int mm = 0; mm < 2; mm++) {
        lmio_statedict *rd;
        lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
        oo.use_mmap = mm;
        CHECK_OK(lmio_statedict_open(tmp("all.st"), &oo, &rd, &e_));
        CHECK(lmio_statedict_count(rd) == lmio_statedict_count(sd));
        for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
            lmio_tensor a, b;
            lmio_statedict_get(sd, i, &a, NULL);
            CHECK_OK(lmio_tensor_find(rd, a.name, &b, &e_));
            CHECK(a.dtype == b.dtype && a.ndim == b.ndim && a.nbytes == b.nbytes);
            CHECK(memcmp(a.shape, b.shape, sizeof a.shape) == 0);
            CHECK(a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0);
            CHECK(b.file_offset >= 8);
        }
        CHECK(strcmp(lmio_metadata_find(rd, "ünïcode key"), "välue \"quoted\"\n") == 0);
        CHECK(strcmp(lmio_statedict_format(rd), "safetensors") == 0);
        lmio_statedict_free(rd);
    }
    lmio_statedict_free(sd);
}

static void convert_on_save(void)
{
    enum { N = 3000001 }; /* spans several conversion chunks, odd tail */
    float *w = malloc(N * 4);
    for (int i = 0; i < N; i++) w[i] = (float)(i - N / 2) * 1e-3f;
    int32_t ids[3] = {1, 2, 3};
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    lmio_statedict_add(sd, "w", LMIO_DTYPE_F32, 1, (uint64_t[]){N}, w, (uint64_t)N * 4, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "ids", LMIO_DTYPE_I32, 1, (uint64_t[]){3}, ids, 12, LMIO_BORROW, NULL);
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.dtype = LMIO_DTYPE_BF16;
    CHECK_OK(lmio_safetensors_save(sd, tmp("bf16.st"), &o, &e_));
    lmio_statedict *rd;
    CHECK_OK(lmio_statedict_open(tmp("bf16.st"), NULL, &rd, &e_));
    lmio_tensor t;
    CHECK_OK(lmio_tensor_find(rd, "w", &t, &e_));
    CHECK(t.dtype == LMIO_DTYPE_BF16 && t.nbytes == (uint64_t)N * 2);
    uint16_t *want = malloc(N * 2);
    lmio_convert(want, LMIO_DTYPE_BF16, w, LMIO_DTYPE_F32, N, NULL);
    CHECK(memcmp(want, t.data, (size_t)N * 2) == 0);
    CHECK_OK(lmio_tensor_find(rd, "ids", &t, &e_));
    CHECK(t.dtype == LMIO_DTYPE_I32 && memcmp(t.data, ids, 12) == 0); /* non-float kept */
    lmio_statedict_free(rd);
    lmio_statedict_free(sd);
    free(want);
    free(w);
}

static int cancel_after_first(void *ctx, uint64_t done, uint64_t total)
{
    (void)total;
    int *calls = ctx;
    return ++*calls > 1 && done > 0;
}

/* A failed or cancelled save leaves the old file byte-identical and no
 * temporary file; saving over the very file a state dict maps works. */
static void atomic_replace(void)
{
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    static float big[1 << 22];
    for (int i = 0; i < (1 << 22); i++) big[i] = (float)i;
    lmio_statedict_add(sd, "big", LMIO_DTYPE_F32, 1, (uint64_t[]){1 << 22}, big, sizeof big, LMIO_BORROW, NULL);
    CHECK_OK(lmio_safetensors_save(sd, tmp("keep.st"), NULL, &e_));
    size_t n0, n1;
    char *before = slurp(tmp("keep.st"), &n0);

    lmio_statedict *other;
    lmio_statedict_create(&other, NULL);
    lmio_statedict_add(other, "x", LMIO_DTYPE_F32, 1, (uint64_t[]){1 << 22}, big, sizeof big, LMIO_BORROW, NULL);
    int calls = 0;
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.progress = cancel_after_first;
    o.progress_ctx = &calls;
    lmio_error err;
    CHECK(lmio_safetensors_save(other, tmp("keep.st"), &o, &err) == LMIO_ERR_CANCELLED);
    char *after = slurp(tmp("keep.st"), &n1);
    CHECK(n0 == n1 && memcmp(before, after, n0) == 0);
    CHECK(count_temp_files() == 0);
    free(after);

    /* into a directory that does not exist: error names the path */
    CHECK(lmio_safetensors_save(other, "/nonexistent-dir/x.st", NULL, &err) == LMIO_ERR_IO);
    CHECK(strstr(err.message, "/nonexistent-dir/x.st") == err.message);
    /* onto a directory */
    CHECK(lmio_safetensors_save(other, g_dir, NULL, &err) == LMIO_ERR_INVALID_ARG);
    lmio_statedict_free(other);
    lmio_statedict_free(sd);

    /* re-save a mapped file onto itself, converted: the mapping stays valid */
    lmio_statedict *rd;
    CHECK_OK(lmio_statedict_open(tmp("keep.st"), NULL, &rd, &e_));
    o = (lmio_save_opts)LMIO_SAVE_OPTS_INIT;
    o.dtype = LMIO_DTYPE_F16;
    CHECK_OK(lmio_safetensors_save(rd, tmp("keep.st"), &o, &e_));
    lmio_tensor t;
    lmio_tensor_find(rd, "big", &t, NULL);
    CHECK(memcmp(t.data, big, sizeof big) == 0); /* old mapping intact */
    lmio_statedict_free(rd);
    CHECK_OK(lmio_statedict_open(tmp("keep.st"), NULL, &rd, &e_));
    lmio_tensor_find(rd, "big", &t, NULL);
    CHECK(t.dtype == LMIO_DTYPE_F16);
    lmio_statedict_free(rd);
    struct stat st;
    stat(tmp("keep.st"), &st);
    CHECK((st.st_mode & 0777) != 0600); /* not mkstemp's private mode */
    free(before);
}

static void many_tensors(void)
{
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    for (int i = 0; i < 2000; i++) {
        char name[32];
        int16_t v = (int16_t)i;
        snprintf(name, sizeof name, "layers.%04d.w", i);
        lmio_statedict_add(sd, name, LMIO_DTYPE_I16, 1, (uint64_t[]){1}, &v, 2, LMIO_COPY, NULL);
    }
    CHECK_OK(lmio_safetensors_save(sd, tmp("many.st"), NULL, &e_));
    lmio_statedict_free(sd);
    CHECK_OK(lmio_statedict_open(tmp("many.st"), NULL, &sd, &e_));
    CHECK(lmio_statedict_count(sd) == 2000);
    lmio_tensor t;
    CHECK_OK(lmio_tensor_find(sd, "layers.1234.w", &t, &e_));
    CHECK(*(const int16_t *)t.data == 1234);
    lmio_statedict_free(sd);
}

int main(void)
{
    if (scratch_begin("test-st")) return 1;
    reference_bytes();
    write_order();
    round_trip_all_dtypes();
    convert_on_save();
    atomic_replace();
    many_tensors();
    scratch_end();
    return test_result("test_safetensors");
}
