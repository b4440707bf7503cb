/* Dtype conversion: the SIMD kernels against the portable ones over every
 * f32 bit pattern, known values, and the paths that go through f32.
 * Agreement with torch itself is tested in tests/interop/. */
#include "../../src/core/core.h"
#include "../test.h"

#include <math.h>
#include <stdlib.h>

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static void known_values(void)
{
    CHECK(lmio__f32_to_f16(f2u(1.0f)) == 0x3C00);
    CHECK(lmio__f32_to_f16(f2u(-2.0f)) == 0xC000);
    CHECK(lmio__f32_to_f16(f2u(65504.0f)) == 0x7BFF);            /* max finite */
    CHECK(lmio__f32_to_f16(f2u(65519.99f)) == 0x7BFF);           /* rounds down */
    CHECK(lmio__f32_to_f16(f2u(65520.0f)) == 0x7C00);            /* ties to Inf */
    CHECK(lmio__f32_to_f16(f2u(1e10f)) == 0x7C00);               /* overflow */
    CHECK(lmio__f32_to_f16(f2u(-INFINITY)) == 0xFC00);
    CHECK(lmio__f32_to_f16(f2u(5.9604645e-8f)) == 0x0001);       /* 2^-24 */
    CHECK(lmio__f32_to_f16(0x33000000u) == 0x0000);              /* 2^-25 ties to even 0 */
    CHECK(lmio__f32_to_f16(0x33000001u) == 0x0001);
    CHECK(lmio__f32_to_f16(f2u(6.1035156e-5f)) == 0x0400);       /* min normal */
    CHECK(lmio__f32_to_f16(0x80000001u) == 0x8000);              /* f32 subnormal -> -0 */
    CHECK(lmio__f32_to_f16(0x7FC00000u) == 0x7E00);
    CHECK(lmio__f32_to_f16(0xFFC00000u) == 0xFE00);              /* NaN keeps its sign */
    CHECK(lmio__f32_to_f16(0x7FA00000u) == 0x7F00);              /* top payload kept */
    CHECK(lmio__f32_to_f16(0x7F800001u) == 0x7E00);              /* sNaN quieted */
    CHECK(lmio__f32_to_f16(f2u(1.0009765625f + 0.00048828125f)) == 0x3C02); /* tie -> even */

    CHECK(lmio__f32_to_bf16(f2u(1.0f)) == 0x3F80);
    CHECK(lmio__f32_to_bf16(0x3F808000u) == 0x3F80);             /* tie -> even (down) */
    CHECK(lmio__f32_to_bf16(0x3F818000u) == 0x3F82);             /* tie -> even (up) */
    CHECK(lmio__f32_to_bf16(0x7F7FFFFFu) == 0x7F80);             /* overflow -> Inf */
    CHECK(lmio__f32_to_bf16(0x007FFFFFu) == 0x0080);             /* subnormal rounds */
    CHECK(lmio__f32_to_bf16(0x7FC00000u) == 0xFFFF);             /* NaN as ATen writes it */
    CHECK(lmio__f32_to_bf16(0xFF800000u) == 0xFF80);

    CHECK(lmio__f16_to_f32(0x0001) == f2u(5.9604645e-8f));
    CHECK(lmio__f16_to_f32(0x03FF) == f2u(6.0975552e-5f));
    CHECK(lmio__f16_to_f32(0x7C01) == 0x7FC02000u);              /* NaN gets the quiet bit */
    CHECK(lmio__f16_to_f32(0xFC00) == 0xFF800000u);
}

/* Every f16 and bf16 value widens exactly and narrows back to itself. */
static void half_round_trips(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t f = lmio__f16_to_f32((uint16_t)h);
        bool nan = ((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF);
        if (!nan && lmio__f32_to_f16(f) != h) bad++;
        if (nan && !isnan(u2f(f))) bad++;
        uint32_t b = h << 16;
        bool bnan = (h & 0x7FFF) > 0x7F80;
        if (!bnan && lmio__f32_to_bf16(b) != h) bad++;
    }
    CHECK_MSG(bad == 0, "%d half values do not round-trip", bad);
}

/* The SIMD kernels give the portable kernels' bits for all 2^32 inputs. */
static void exhaustive_simd(void)
{
    if (strcmp(lmio_simd_active(), "portable") == 0) {
        printf("note: this CPU has no AVX2/F16C; only the portable kernels exist here\n");
        return;
    }
    enum { CHUNK = 1 << 20 };
    uint32_t *in = malloc(CHUNK * 4);
    uint16_t *a = malloc(CHUNK * 2), *b = malloc(CHUNK * 2);
    uint64_t bad_h = 0, bad_b = 0;
    for (uint64_t base = 0; base < (1ULL << 32); base += CHUNK) {
        for (uint32_t i = 0; i < CHUNK; i++) in[i] = (uint32_t)(base + i);
        lmio__cvt_f32_f16_portable(a, in, CHUNK);
        lmio__cvt_f32_f16_avx2(b, in, CHUNK);
        if (memcmp(a, b, CHUNK * 2)) bad_h++;
        lmio__cvt_f32_bf16_portable(a, in, CHUNK);
        lmio__cvt_f32_bf16_avx2(b, in, CHUNK);
        if (memcmp(a, b, CHUNK * 2)) bad_b++;
    }
    CHECK_MSG(bad_h == 0, "%llu chunks of f32->f16 differ", (unsigned long long)bad_h);
    CHECK_MSG(bad_b == 0, "%llu chunks of f32->bf16 differ", (unsigned long long)bad_b);

    uint16_t hs[65536 + 7];
    for (uint32_t i = 0; i < 65536 + 7; i++) hs[i] = (uint16_t)i;
    float *fa = malloc((65536 + 7) * 4), *fb = malloc((65536 + 7) * 4);
    lmio__cvt_f16_f32_portable(fa, hs, 65536 + 7);
    lmio__cvt_f16_f32_avx2(fb, hs, 65536 + 7);
    CHECK(memcmp(fa, fb, (65536 + 7) * 4) == 0);
    lmio__cvt_bf16_f32_portable(fa, hs, 65536 + 7);
    lmio__cvt_bf16_f32_avx2(fb, hs, 65536 + 7);
    CHECK(memcmp(fa, fb, (65536 + 7) * 4) == 0);
    free(fa); free(fb); free(in); free(a); free(b);
}

/* lmio_convert: unaligned buffers, odd lengths (SIMD tails), every pair. */
static void convert_api(void)
{
    const lmio_dtype fl[] = {LMIO_DTYPE_F16, LMIO_DTYPE_BF16, LMIO_DTYPE_F32, LMIO_DTYPE_F64};
    enum { N = 1037 };
    double src[N];
    for (int i = 0; i < N; i++) src[i] = (i - 500) * 0.37 + (i % 7 == 0 ? 1e-6 : 0) + (i == 3 ? 1e30 : 0);
    unsigned char *a = malloc(N * 8 + 1), *b = malloc(N * 8 + 1), *c = malloc(N * 8 + 1);
    for (int si = 0; si < 4; si++)
        for (int di = 0; di < 4; di++) {
            lmio_dtype sd = fl[si], dd = fl[di];
            /* build the source in sd, then convert at an odd address */
            CHECK_OK(lmio_convert(a + 1, sd, src, LMIO_DTYPE_F64, N, &e_));
            lmio_simd prev = lmio_set_simd(LMIO_SIMD_PORTABLE);
            CHECK_OK(lmio_convert(b + 1, dd, a + 1, sd, N, &e_));
            lmio_set_simd(LMIO_SIMD_AUTO);
            CHECK_OK(lmio_convert(c + 1, dd, a + 1, sd, N, &e_));
            lmio_set_simd(prev);
            CHECK_MSG(memcmp(b + 1, c + 1, N * (lmio_dtype_bits(dd) / 8)) == 0, "%s -> %s",
                      lmio_dtype_name(sd), lmio_dtype_name(dd));
        }
    /* f64 narrows through f32, as ATen does: check one double-rounding case */
    double d = 1.0 + 0x1p-11 + 0x1p-40; /* just above an f16 tie; f32 keeps it above? */
    uint16_t h;
    CHECK_OK(lmio_convert(&h, LMIO_DTYPE_F16, &d, LMIO_DTYPE_F64, 1, &e_));
    CHECK(h == lmio__f32_to_f16(f2u((float)d)));
    lmio_error err;
    CHECK(lmio_convert(a, LMIO_DTYPE_I32, b, LMIO_DTYPE_F32, 4, &err) == LMIO_ERR_UNSUPPORTED);
    CHECK(strstr(err.message, "cannot convert F32 to I32") != NULL);
    free(a); free(b); free(c);
}

/* Large outputs take the non-temporal store path: same bits as portable,
 * at an aligned and a misaligned (odd) destination. */
static void large_outputs(void)
{
    size_t n = (size_t)5 << 20; /* 10 MiB of f16 output: above the NT threshold */
    uint32_t *in = malloc(n * 4);
    unsigned char *a = malloc(n * 2 + 64), *b = malloc(n * 2 + 64);
    for (size_t i = 0; i < n; i++) in[i] = (uint32_t)(i * 2654435761u);
    const lmio_dtype outs[] = {LMIO_DTYPE_F16, LMIO_DTYPE_BF16};
    for (int k = 0; k < 2; k++)
        for (size_t off = 0; off < 4; off += 1) {
            lmio_simd prev = lmio_set_simd(LMIO_SIMD_PORTABLE);
            CHECK_OK(lmio_convert(a + off * 2 + (off == 3), outs[k], in, LMIO_DTYPE_F32, n, &e_));
            lmio_set_simd(LMIO_SIMD_AUTO);
            CHECK_OK(lmio_convert(b + off * 2 + (off == 3), outs[k], in, LMIO_DTYPE_F32, n, &e_));
            lmio_set_simd(prev);
            CHECK_MSG(memcmp(a + off * 2 + (off == 3), b + off * 2 + (off == 3), n * 2) == 0, "%s at offset %zu",
                      lmio_dtype_name(outs[k]), off);
        }
    free(in); free(a); free(b);
}

static void names(void)
{
    for (int i = 0; i < LMIO_DTYPE_COUNT; i++) {
        CHECK(lmio_dtype_from_name(lmio_dtype_name((lmio_dtype)i)) == (lmio_dtype)i);
        CHECK(lmio_dtype_bits((lmio_dtype)i) > 0);
    }
    CHECK(lmio_dtype_from_name("f32") == LMIO_DTYPE_NONE);
    CHECK(lmio_dtype_name(LMIO_DTYPE_COUNT) == NULL);
    CHECK(lmio_dtype_bits(LMIO_DTYPE_F4) == 4);
}

int main(int argc, char **argv)
{
    known_values();
    half_round_trips();
    convert_api();
    large_outputs();
    names();
    if (argc > 1 && strcmp(argv[1], "--exhaustive") == 0) exhaustive_simd();
    return test_result("test_dtype");
}
