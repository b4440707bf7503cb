/* AVX2 + F16C conversion kernels, compiled for those features only in this
 * file and chosen at run time (dtype.c). They must give exactly the bits of
 * the portable kernels; the tails use the portable kernels directly.
 *
 * No AVX-512 variants: on the 2-core machines this project targets, F16C
 * already reaches the memory wall (2.34 vs 2.44 Gelem/s measured in
 * shared/reference/perf-reliability.md §2.5), and AVX512_BF16's VCVTNE2PS2BF16
 * flushes subnormal inputs, which would break bit equality with torch. */
#if defined(__x86_64__) || defined(__i386__)
#include "core.h"

#include <immintrin.h>


#define TARGET __attribute__((target("avx2,f16c")))

/* Outputs larger than this bypass the cache with non-temporal stores: the
 * destination is not read in first (a quarter of f32->f16 traffic) and the
 * cache keeps what the caller will use next. Smaller outputs, like the
 * writer's chunks that go straight to write(2), stay cached. */
#define NT_MIN_BYTES ((size_t)8 << 20)

TARGET void lmio__cvt_f32_f16_avx2(void *dst, const void *src, size_t n)
{
    const float *s = src;
    unsigned char *d = dst;
    size_t i = 0;
    if (n * 2 >= NT_MIN_BYTES) {
        /* scalar head until the destination is 32-byte aligned */
        size_t head = ((32 - ((uintptr_t)d & 31)) & 31) / 2;
        if (((uintptr_t)d & 1) == 0) {
            lmio__cvt_f32_f16_portable(d, s, head);
            i = head;
            for (; i + 16 <= n; i += 16) {
                __m128i lo = _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                __m128i hi = _mm256_cvtps_ph(_mm256_loadu_ps(s + i + 8), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                _mm256_stream_si256((__m256i *)(d + 2 * i), _mm256_set_m128i(hi, lo));
            }
            _mm_sfence();
        }
    }
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        _mm_storeu_si128((__m128i *)(d + 2 * i), h);
    }
    lmio__cvt_f32_f16_portable(d + 2 * i, s + i, n - i);
}

TARGET void lmio__cvt_f16_f32_avx2(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    float *d = dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + 2 * i))));
    lmio__cvt_f16_f32_portable(d + i, s + 2 * i, n - i);
}

static inline __attribute__((always_inline, target("avx2,f16c"))) __m256i bf16x16(const float *s)
{
    const __m256i bias = _mm256_set1_epi32(0x7FFF);
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i nanv = _mm256_set1_epi32(0xFFFF);
    __m256 a = _mm256_loadu_ps(s), b = _mm256_loadu_ps(s + 8);
    __m256i xa = _mm256_castps_si256(a), xb = _mm256_castps_si256(b);
    /* round to nearest even on the raw bits: x + 0x7FFF + lsb(x >> 16) */
    __m256i ra = _mm256_add_epi32(xa, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(xa, 16), one)));
    __m256i rb = _mm256_add_epi32(xb, _mm256_add_epi32(bias, _mm256_and_si256(_mm256_srli_epi32(xb, 16), one)));
    ra = _mm256_srli_epi32(ra, 16);
    rb = _mm256_srli_epi32(rb, 16);
    ra = _mm256_blendv_epi8(ra, nanv, _mm256_castps_si256(_mm256_cmp_ps(a, a, _CMP_UNORD_Q)));
    rb = _mm256_blendv_epi8(rb, nanv, _mm256_castps_si256(_mm256_cmp_ps(b, b, _CMP_UNORD_Q)));
    /* packus works per 128-bit lane; the permute restores element order */
    return _mm256_permute4x64_epi64(_mm256_packus_epi32(ra, rb), 0xD8);
}

TARGET void lmio__cvt_f32_bf16_avx2(void *dst, const void *src, size_t n)
{
    const float *s = src;
    unsigned char *d = dst;
    size_t i = 0;
    if (n * 2 >= NT_MIN_BYTES && ((uintptr_t)d & 1) == 0) {
        size_t head = ((32 - ((uintptr_t)d & 31)) & 31) / 2;
        lmio__cvt_f32_bf16_portable(d, s, head);
        i = head;
        for (; i + 16 <= n; i += 16) _mm256_stream_si256((__m256i *)(d + 2 * i), bf16x16(s + i));
        _mm_sfence();
    }
    for (; i + 16 <= n; i += 16) _mm256_storeu_si256((__m256i *)(d + 2 * i), bf16x16(s + i));
    lmio__cvt_f32_bf16_portable(d + 2 * i, s + i, n - i);
}

TARGET void lmio__cvt_bf16_f32_avx2(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    unsigned char *d = dst;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + 2 * i)));
        _mm256_storeu_si256((__m256i *)(d + 4 * i), _mm256_slli_epi32(w, 16));
    }
    lmio__cvt_bf16_f32_portable(d + 4 * i, s + 2 * i, n - i);
}
#endif
