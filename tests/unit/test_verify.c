/* lmio_verify and lmio_statedict_verify: the counts, NaN/Inf per dtype
 * across chunk boundaries, a file that shrank after it was opened, a
 * sharded directory, cancelling. Peak memory is measured by
 * tests/cli/test_verify_memory.sh on a real 1 GiB file. */
#include "lmio.h"
#include "../test.h"

#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* name -> NaN/Inf count the callback saw */
typedef struct seen {
    char name[8][32];
    uint64_t bad[8];
    int n;
    int stop_after; /* cancel once this many were seen; 0: never */
} seen;

static int on_tensor(void *ctx, const lmio_tensor *t, uint64_t bad)
{
    seen *s = ctx;
    if (s->n < 8) {
        snprintf(s->name[s->n], sizeof s->name[0], "%s", t->name);
        s->bad[s->n] = bad;
    }
    s->n++;
    return s->stop_after && s->n >= s->stop_after;
}

static uint64_t bad_of(const seen *s, const char *name)
{
    for (int i = 0; i < s->n && i < 8; i++)
        if (!strcmp(s->name[i], name)) return s->bad[i];
    return UINT64_MAX;
}

enum { N = 5000 }; /* elements per tensor: several 4 KiB chunks for F32 and F64 */

static lmio_statedict *build(float *f32, uint16_t *f16, uint16_t *bf16, double *f64, int32_t *i32)
{
    for (int i = 0; i < N; i++) {
        f32[i] = (float)i;
        f64[i] = i % 2 ? 1e300 : -1e-300; /* finite, though not as f32 */
        i32[i] = -1;                       /* all bits set: no float rule applies */
    }
    /* the last element of a later chunk, and the first of the next one */
    f32[1023] = NAN;
    f32[1024] = INFINITY;
    f32[N - 1] = -INFINITY;
    f64[3000] = NAN;
    lmio_convert(f16, LMIO_DTYPE_F16, f32, LMIO_DTYPE_F32, N, NULL);
    lmio_convert(bf16, LMIO_DTYPE_BF16, f32, LMIO_DTYPE_F32, N, NULL);
    f16[7] = 0x7C00;  /* +Inf */
    bf16[7] = 0xFF81; /* a NaN with a payload */
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    const uint64_t shape[1] = {N};
    lmio_statedict_add(sd, "f32", LMIO_DTYPE_F32, 1, shape, f32, sizeof(float) * N, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "f16", LMIO_DTYPE_F16, 1, shape, f16, 2 * N, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "bf16", LMIO_DTYPE_BF16, 1, shape, bf16, 2 * N, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "f64", LMIO_DTYPE_F64, 1, shape, f64, 8 * N, LMIO_BORROW, NULL);
    lmio_statedict_add(sd, "i32", LMIO_DTYPE_I32, 1, shape, i32, 4 * N, LMIO_BORROW, NULL);
    return sd;
}

static void check_counts(const seen *s, const lmio_verify_report *r)
{
    CHECK(s->n == 5);
    CHECK(r->tensors == 5);
    CHECK(r->parameters == 5ull * N);
    CHECK(r->data_bytes == (uint64_t)N * (4 + 2 + 2 + 8 + 4));
    CHECK_MSG(bad_of(s, "f32") == 3, "%llu", (unsigned long long)bad_of(s, "f32"));
    CHECK_MSG(bad_of(s, "f16") == 4, "%llu", (unsigned long long)bad_of(s, "f16")); /* 3 + the Inf set */
    CHECK_MSG(bad_of(s, "bf16") == 4, "%llu", (unsigned long long)bad_of(s, "bf16"));
    CHECK_MSG(bad_of(s, "f64") == 1, "%llu", (unsigned long long)bad_of(s, "f64"));
    CHECK(bad_of(s, "i32") == 0);
    CHECK(r->nonfinite_tensors == 4);
    CHECK(r->nonfinite_values == 12);
}

static void file_and_memory(void)
{
    static float f32[N];
    static uint16_t f16[N], bf16[N];
    static double f64[N];
    static int32_t i32[N];
    lmio_statedict *sd = build(f32, f16, bf16, f64, i32);
    lmio_verify_opts o = LMIO_VERIFY_OPTS_INIT;
    o.tensor_fn = on_tensor;
    o.buffer_size = 4096; /* many chunks per tensor */
    seen s = {0};
    o.ctx = &s;
    lmio_verify_report r;
    /* in memory */
    CHECK_OK(lmio_statedict_verify(sd, &o, &r, &e_));
    check_counts(&s, &r);
    CHECK(r.files == 0 && r.format == NULL);
    /* from a file */
    CHECK_OK(lmio_safetensors_save(sd, scratch("m.safetensors"), NULL, &e_));
    memset(&s, 0, sizeof s);
    CHECK_OK(lmio_verify(scratch("m.safetensors"), &o, &r, &e_));
    check_counts(&s, &r);
    CHECK(r.files == 1 && r.format && !strcmp(r.format, "safetensors"));
    o.buffer_size = 0; /* the default: one read per tensor here */
    memset(&s, 0, sizeof s);
    CHECK_OK(lmio_verify(scratch("m.safetensors"), &o, &r, &e_));
    check_counts(&s, &r);
    /* cancelled by the callback */
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    lmio_error err;
    CHECK(lmio_verify(scratch("m.safetensors"), &o, &r, &err) == LMIO_ERR_CANCELLED);
    CHECK(s.n == 2);
    /* options checked like every options struct */
    lmio_verify_opts bad = LMIO_VERIFY_OPTS_INIT;
    bad.struct_size = 0;
    CHECK(lmio_verify(scratch("m.safetensors"), &bad, &r, &err) == LMIO_ERR_INVALID_ARG);
    lmio_statedict_free(sd);
}

/* Data that vanished after the header was validated is an I/O error that
 * names the file, the tensor and the offset, never a crash. */
static void shrank(void)
{
    static float f32[N];
    static uint16_t f16[N], bf16[N];
    static double f64[N];
    static int32_t i32[N];
    lmio_statedict *sd = build(f32, f16, bf16, f64, i32);
    CHECK_OK(lmio_safetensors_save(sd, scratch("s.safetensors"), NULL, &e_));
    lmio_statedict_free(sd);
    lmio_statedict *opened;
    CHECK_OK(lmio_statedict_open(scratch("s.safetensors"), NULL, &opened, &e_));
    if (!opened) return;
    struct stat st;
    stat(scratch("s.safetensors"), &st);
    CHECK(truncate(scratch("s.safetensors"), st.st_size - 100) == 0);
    lmio_error err;
    CHECK(lmio_statedict_verify(opened, NULL, NULL, &err) == LMIO_ERR_IO);
    CHECK_MSG(strstr(err.message, "s.safetensors") && strstr(err.message, "the file ends here") &&
                  err.offset == st.st_size - 100,
              "%s", err.message);
    lmio_statedict_free(opened);
    unlink(scratch("s.safetensors"));
    CHECK(lmio_statedict_verify(opened = NULL, NULL, NULL, &err) == LMIO_ERR_INVALID_ARG);
}

static void directory(void)
{
    static float f32[N];
    static uint16_t f16[N], bf16[N];
    static double f64[N];
    static int32_t i32[N];
    lmio_statedict *sd = build(f32, f16, bf16, f64, i32);
    lmio_pretrained_opts po = LMIO_PRETRAINED_OPTS_INIT;
    po.max_shard_size = 20000; /* four shards: f32, f16 + bf16, f64, i32 */
    po.durable = 0;
    CHECK_OK(lmio_pretrained_save(scratch("dir"), NULL, sd, NULL, &po, &e_));
    lmio_verify_opts o = LMIO_VERIFY_OPTS_INIT;
    o.tensor_fn = on_tensor;
    seen s = {0};
    o.ctx = &s;
    lmio_verify_report r;
    CHECK_OK(lmio_verify(scratch("dir"), &o, &r, &e_));
    check_counts(&s, &r);
    CHECK_MSG(r.files == 4, "%zu files", r.files);
    /* a shard the index names is missing: what lmio_pretrained_load says */
    char p[700];
    snprintf(p, sizeof p, "%s/model-00002-of-00004.safetensors", scratch("dir"));
    CHECK(unlink(p) == 0);
    lmio_error err;
    /* the manifest lists it: missing, says the integrity check */
    CHECK(lmio_verify(scratch("dir"), &o, &r, &err) == LMIO_ERR_INTEGRITY);
    CHECK(strstr(err.message, "model-00002-of-00004.safetensors") != NULL);
    /* without the manifest (a format 1.0 directory), the index names it */
    snprintf(p, sizeof p, "%s/" LMIO_MANIFEST_NAME, scratch("dir"));
    CHECK(unlink(p) == 0);
    CHECK(lmio_verify(scratch("dir"), &o, &r, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "model-00002-of-00004.safetensors") != NULL);
    lmio_statedict_free(sd);
}

int main(void)
{
    if (scratch_begin("test-verify")) return 1;
    file_and_memory();
    shrank();
    directory();
    scratch_end();
    return test_result("test_verify");
}
