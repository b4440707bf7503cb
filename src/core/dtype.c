/* Dtype names and sizes, and the portable conversion kernels.
 *
 * The rules are torch's Tensor.to() on x86-64, measured with torch 2.13.0:
 *  f32 -> f16  round to nearest even; >= 65520 becomes Inf; subnormal results
 *              kept; NaN keeps sign and the top 10 payload bits with the quiet
 *              bit set (what F16C's VCVTPS2PH does, which ATen uses).
 *  f32 -> bf16 round to nearest even on the raw bits (subnormals included);
 *              every NaN becomes 0xFFFF (ATen's vectorised kernel does this).
 *  f16 -> f32  exact; NaN gets the quiet bit (VCVTPH2PS).
 *  bf16 -> f32 exact, NaN payload untouched (a shift).
 *  f16 -> bf16 through f32, except that every NaN becomes 0x7FC0 (this pair
 *              takes c10's scalar path, which canonicalises NaN).
 *  f64 -> any  narrows to f32 first (ATen converts double via float).
 *  f32 <-> f64 the C conversion, i.e. CVTSS2SD / CVTSD2SS under RNE.
 * The SIMD kernels in dtype_x86.c must give the same bits; tests compare the
 * two over all 2^32 inputs and both against torch. */
#include "core.h"

#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static const struct {
    const char *name;
    unsigned bits;
    int st_rank; /* declaration index in safetensors' Dtype enum (HEAD) */
} k_dtypes[LMIO_DTYPE_COUNT] = {
    [LMIO_DTYPE_BOOL] = {"BOOL", 8, 0},
    [LMIO_DTYPE_F4] = {"F4", 4, 1},
    [LMIO_DTYPE_F6_E2M3] = {"F6_E2M3", 6, 2},
    [LMIO_DTYPE_F6_E3M2] = {"F6_E3M2", 6, 3},
    [LMIO_DTYPE_U8] = {"U8", 8, 4},
    [LMIO_DTYPE_I8] = {"I8", 8, 5},
    [LMIO_DTYPE_F8_E5M2] = {"F8_E5M2", 8, 6},
    [LMIO_DTYPE_F8_E4M3] = {"F8_E4M3", 8, 7},
    [LMIO_DTYPE_F8_E8M0] = {"F8_E8M0", 8, 8},
    [LMIO_DTYPE_F8_E4M3FNUZ] = {"F8_E4M3FNUZ", 8, 9},
    [LMIO_DTYPE_F8_E5M2FNUZ] = {"F8_E5M2FNUZ", 8, 10},
    [LMIO_DTYPE_I16] = {"I16", 16, 11},
    [LMIO_DTYPE_U16] = {"U16", 16, 12},
    [LMIO_DTYPE_F16] = {"F16", 16, 13},
    [LMIO_DTYPE_BF16] = {"BF16", 16, 14},
    [LMIO_DTYPE_I32] = {"I32", 32, 15},
    [LMIO_DTYPE_U32] = {"U32", 32, 16},
    [LMIO_DTYPE_F32] = {"F32", 32, 17},
    [LMIO_DTYPE_C64] = {"C64", 64, 18},
    [LMIO_DTYPE_F64] = {"F64", 64, 19},
    [LMIO_DTYPE_I64] = {"I64", 64, 20},
    [LMIO_DTYPE_U64] = {"U64", 64, 21},
};

static bool valid(lmio_dtype d) { return (int)d >= 0 && d < LMIO_DTYPE_COUNT; }

const char *lmio_dtype_name(lmio_dtype d) { return valid(d) ? k_dtypes[d].name : NULL; }
unsigned lmio_dtype_bits(lmio_dtype d) { return valid(d) ? k_dtypes[d].bits : 0; }
int lmio__dtype_safetensors_rank(lmio_dtype d) { return valid(d) ? k_dtypes[d].st_rank : -1; }

lmio_dtype lmio_dtype_from_name(const char *name)
{
    if (!name) return LMIO_DTYPE_NONE;
    for (int i = 0; i < LMIO_DTYPE_COUNT; i++)
        if (strcmp(k_dtypes[i].name, name) == 0) return (lmio_dtype)i;
    return LMIO_DTYPE_NONE;
}

int lmio_dtype_is_convertible_float(lmio_dtype d)
{
    return d == LMIO_DTYPE_F16 || d == LMIO_DTYPE_BF16 || d == LMIO_DTYPE_F32 ||
           d == LMIO_DTYPE_F64;
}

/* ---- scalar bit rules ---- */

uint16_t lmio__f32_to_f16(uint32_t x)
{
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7FFFFFFFu;
    if (ax > 0x7F800000u) return (uint16_t)(sign | 0x7E00u | ((ax >> 13) & 0x3FFu));
    if (ax >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u); /* >= 65520 or Inf */
    if (ax >= 0x38800000u) {                                   /* normal f16 */
        uint32_t r = ax - 0x38000000u;                         /* rebias 127 -> 15 */
        r += 0x0FFFu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax <= 0x33000000u) return (uint16_t)sign; /* <= 2^-25 ties to even zero */
    /* Subnormal f16: the result counts units of 2^-24. */
    uint32_t e = ax >> 23;
    uint32_t m = (ax & 0x7FFFFFu) | 0x800000u;
    uint32_t shift = 126u - e; /* 14..24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
}

uint32_t lmio__f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1Fu;
    uint32_t m = h & 0x3FFu;
    if (e == 0x1F) return sign | 0x7F800000u | (m ? 0x400000u | (m << 13) : 0u);
    if (e == 0) {
        if (m == 0) return sign;
        /* Normalise the subnormal: shift until the implicit bit appears. */
        int k = __builtin_clz(m) - 21; /* leading zeros within 10 bits, +1 */
        m = (m << k) & 0x3FFu;
        return sign | ((uint32_t)(113 - k) << 23) | (m << 13);
    }
    return sign | ((e + 112u) << 23) | (m << 13);
}

uint16_t lmio__f32_to_bf16(uint32_t x)
{
    if ((x & 0x7FFFFFFFu) > 0x7F800000u) return 0xFFFFu;
    return (uint16_t)((x + 0x7FFFu + ((x >> 16) & 1u)) >> 16);
}

/* ---- portable array kernels ---- */

static inline uint32_t ld32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint16_t ld16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static inline void st32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void st16(unsigned char *p, uint16_t v) { memcpy(p, &v, 2); }

void lmio__cvt_f32_f16_portable(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) st16(d + 2 * i, lmio__f32_to_f16(ld32(s + 4 * i)));
}
void lmio__cvt_f32_bf16_portable(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) st16(d + 2 * i, lmio__f32_to_bf16(ld32(s + 4 * i)));
}
void lmio__cvt_f16_f32_portable(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) st32(d + 4 * i, lmio__f16_to_f32(ld16(s + 2 * i)));
}
void lmio__cvt_bf16_f32_portable(void *dst, const void *src, size_t n)
{
    const unsigned char *s = src;
    unsigned char *d = dst;
    for (size_t i = 0; i < n; i++) st32(d + 4 * i, (uint32_t)ld16(s + 2 * i) << 16);
}

/* ---- dispatch ---- */

typedef void (*cvt_fn)(void *dst, const void *src, size_t n);
typedef struct kernels {
    const char *name;
    cvt_fn f32_f16, f32_bf16, f16_f32, bf16_f32;
} kernels;

static const kernels k_portable = {"portable", lmio__cvt_f32_f16_portable,
                                   lmio__cvt_f32_bf16_portable, lmio__cvt_f16_f32_portable,
                                   lmio__cvt_bf16_f32_portable};

#if defined(__x86_64__) || defined(__i386__)
static const kernels k_avx2 = {"avx2+f16c", lmio__cvt_f32_f16_avx2, lmio__cvt_f32_bf16_avx2,
                               lmio__cvt_f16_f32_avx2, lmio__cvt_bf16_f32_avx2};
/* CPUID directly rather than __builtin_cpu_supports("f16c"), which older
 * clang lacks: F16C and AVX in leaf 1, AVX2 in leaf 7, and XGETBV to make
 * sure the OS saves the YMM registers across context switches. */
static bool cpu_has_avx2_f16c(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
    bool f16c = c & (1u << 29), avx = c & (1u << 28), osxsave = c & (1u << 27);
    if (!f16c || !avx || !osxsave) return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6u) != 6u) return false; /* XMM and YMM state enabled */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    return b & (1u << 5); /* AVX2 */
}
#endif

/* 0 = not chosen yet, 1 = portable, 2 = auto. Plain int: a benign race picks
 * the same answer in every thread. */
static int g_simd_mode = 0;

static const kernels *active(void)
{
    if (g_simd_mode == 0) {
        const char *e = getenv("LMIO_SIMD");
        g_simd_mode = (e && strcmp(e, "0") == 0) ? 1 : 2;
    }
#if defined(__x86_64__) || defined(__i386__)
    /* -1 = not asked yet: cpuid traps to the hypervisor on many VMs, which
     * made every small lmio_convert call cost microseconds */
    static int has_avx2 = -1;
    if (has_avx2 < 0) has_avx2 = cpu_has_avx2_f16c();
    if (g_simd_mode == 2 && has_avx2) return &k_avx2;
#endif
    return &k_portable;
}

lmio_simd lmio_set_simd(lmio_simd mode)
{
    (void)active();
    lmio_simd prev = g_simd_mode == 1 ? LMIO_SIMD_PORTABLE : LMIO_SIMD_AUTO;
    g_simd_mode = mode == LMIO_SIMD_PORTABLE ? 1 : 2;
    return prev;
}

const char *lmio_simd_active(void) { return active()->name; }

/* ---- lmio_convert ---- */

static void cvt_via_f32(void *dst, lmio_dtype dd, const void *src, lmio_dtype sd, size_t n,
                        const kernels *k);

lmio_status lmio_convert(void *dst, lmio_dtype dd, const void *src, lmio_dtype sd, size_t n,
                         lmio_error *err)
{
    if (!lmio_dtype_is_convertible_float(dd) || !lmio_dtype_is_convertible_float(sd))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, "", -1, "",
                          "cannot convert %s to %s; expected F16, BF16, F32 or F64 on both sides",
                          lmio_dtype_name(sd) ? lmio_dtype_name(sd) : "?",
                          lmio_dtype_name(dd) ? lmio_dtype_name(dd) : "?");
    if (n && (!dst || !src))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL buffer; expected data");
    if (n == 0) return LMIO_OK;
    const kernels *k = active();
    if (sd == dd) {
        memcpy(dst, src, n * (lmio_dtype_bits(sd) / 8));
        return LMIO_OK;
    }
    if (sd == LMIO_DTYPE_F32 && dd == LMIO_DTYPE_F16) k->f32_f16(dst, src, n);
    else if (sd == LMIO_DTYPE_F32 && dd == LMIO_DTYPE_BF16) k->f32_bf16(dst, src, n);
    else if (sd == LMIO_DTYPE_F16 && dd == LMIO_DTYPE_F32) k->f16_f32(dst, src, n);
    else if (sd == LMIO_DTYPE_BF16 && dd == LMIO_DTYPE_F32) k->bf16_f32(dst, src, n);
    else cvt_via_f32(dst, dd, src, sd, n, k);
    return LMIO_OK;
}

/* Pairs without a direct kernel go through f32 in small blocks; every such
 * path is exact to f32 or narrows through f32 as ATen does. */
static void cvt_via_f32(void *dst, lmio_dtype dd, const void *src, lmio_dtype sd, size_t n,
                        const kernels *k)
{
    enum { BLOCK = 1024 };
    float tmp[BLOCK];
    const unsigned char *s = src;
    unsigned char *d = dst;
    size_t sbytes = lmio_dtype_bits(sd) / 8, dbytes = lmio_dtype_bits(dd) / 8;
    for (size_t off = 0; off < n; off += BLOCK) {
        size_t m = n - off < BLOCK ? n - off : BLOCK;
        const unsigned char *sp = s + off * sbytes;
        unsigned char *dp = d + off * dbytes;
        switch (sd) {
        case LMIO_DTYPE_F16: k->f16_f32(tmp, sp, m); break;
        case LMIO_DTYPE_BF16: k->bf16_f32(tmp, sp, m); break;
        case LMIO_DTYPE_F32: memcpy(tmp, sp, m * 4); break;
        default: /* F64 */
            for (size_t i = 0; i < m; i++) {
                double v;
                memcpy(&v, sp + 8 * i, 8);
                tmp[i] = (float)v;
            }
        }
        switch (dd) {
        case LMIO_DTYPE_F16: k->f32_f16(dp, tmp, m); break;
        case LMIO_DTYPE_BF16:
            k->f32_bf16(dp, tmp, m);
            if (sd == LMIO_DTYPE_F16)
                for (size_t i = 0; i < m; i++) {
                    uint16_t h = ld16(sp + 2 * i);
                    if ((h & 0x7FFFu) > 0x7C00u) st16(dp + 2 * i, 0x7FC0u);
                }
            break;
        case LMIO_DTYPE_F32: memcpy(dp, tmp, m * 4); break;
        default: /* F64 */
            for (size_t i = 0; i < m; i++) {
                double v = (double)tmp[i];
                memcpy(dp + 8 * i, &v, 8);
            }
        }
    }
}
