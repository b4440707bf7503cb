/* ggml's block types: sizes, dequantisation to f32 and Q8_0 quantisation.
 *
 * The results are meant to equal gguf-py's quants.py (gguf 0.19.0) bit for
 * bit, so every expression keeps its order of float32 operations: products
 * first, then the sum or difference, each rounded to float32, never fused
 * (the build does not contract a*b+c into an FMA on the targets lmio
 * supports; tests/interop/test_gguf_interop.py checks every type on random
 * blocks). Block layouts: shared/reference/gguf-llamacpp.md §1.6. */
#include "formats.h"

#include <math.h>
#include <string.h>

#define QK_K 256

static const lmio__ggml_type k_types[] = {
    {"F32", 0, 1, 4},       {"F16", 1, 1, 2},       {"Q4_0", 2, 32, 18},    {"Q4_1", 3, 32, 20},
    {"Q5_0", 6, 32, 22},    {"Q5_1", 7, 32, 24},    {"Q8_0", 8, 32, 34},    {"Q8_1", 9, 32, 36},
    {"Q2_K", 10, 256, 84},  {"Q3_K", 11, 256, 110}, {"Q4_K", 12, 256, 144}, {"Q5_K", 13, 256, 176},
    {"Q6_K", 14, 256, 210}, {"Q8_K", 15, 256, 292}, {"IQ2_XXS", 16, 256, 66}, {"IQ2_XS", 17, 256, 74},
    {"IQ3_XXS", 18, 256, 98}, {"IQ1_S", 19, 256, 50}, {"IQ4_NL", 20, 32, 18}, {"IQ3_S", 21, 256, 110},
    {"IQ2_S", 22, 256, 82}, {"IQ4_XS", 23, 256, 136}, {"I8", 24, 1, 1},      {"I16", 25, 1, 2},
    {"I32", 26, 1, 4},      {"I64", 27, 1, 8},      {"F64", 28, 1, 8},      {"IQ1_M", 29, 256, 56},
    {"BF16", 30, 1, 2},     {"TQ1_0", 34, 256, 54}, {"TQ2_0", 35, 256, 66}, {"MXFP4", 39, 32, 17},
};

const lmio__ggml_type *lmio__ggml_type_find(uint32_t id)
{
    for (size_t i = 0; i < sizeof k_types / sizeof k_types[0]; i++)
        if (k_types[i].id == id) return &k_types[i];
    return NULL;
}

static float f16(const unsigned char *p)
{
    uint32_t b = lmio__f16_to_f32((uint16_t)(p[0] | p[1] << 8));
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Element j of a 32-element block of nibbles: low nibbles hold 0..15, high
 * nibbles 16..31 (not interleaved pairs). */
static unsigned nib32(const unsigned char *qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }

static void dq_q4_0(const unsigned char *b, float *y)
{
    float d = f16(b);
    for (int j = 0; j < 32; j++) y[j] = d * (float)((int)nib32(b + 2, j) - 8);
}

static void dq_q4_1(const unsigned char *b, float *y)
{
    float d = f16(b), m = f16(b + 2);
    for (int j = 0; j < 32; j++) {
        float dq = d * (float)nib32(b + 4, j);
        y[j] = dq + m;
    }
}

static void dq_q5_0(const unsigned char *b, float *y)
{
    float d = f16(b);
    uint32_t qh = le32(b + 2);
    for (int j = 0; j < 32; j++) y[j] = d * (float)((int)(nib32(b + 6, j) | ((qh >> j) & 1) << 4) - 16);
}

static void dq_q5_1(const unsigned char *b, float *y)
{
    float d = f16(b), m = f16(b + 2);
    uint32_t qh = le32(b + 4);
    for (int j = 0; j < 32; j++) {
        float dq = d * (float)(nib32(b + 8, j) | ((qh >> j) & 1) << 4);
        y[j] = dq + m;
    }
}

static void dq_q8_0(const unsigned char *b, float *y)
{
    float d = f16(b);
    for (int j = 0; j < 32; j++) y[j] = (float)(int8_t)b[2 + j] * d;
}

/* Q2_K: scales[16] (low nibble scale, high nibble min), qs[64], d, dmin. */
static void dq_q2_k(const unsigned char *b, float *y)
{
    const unsigned char *sc = b, *qs = b + 16;
    float d = f16(b + 80), dmin = f16(b + 82);
    for (int e = 0; e < QK_K; e++) {
        int half = e / 128, s = (e / 32) % 4, l = e % 32, g = e / 16;
        float dl = d * (float)(sc[g] & 0xF), ml = dmin * (float)(sc[g] >> 4);
        float q = (float)((qs[half * 32 + l] >> (2 * s)) & 3);
        float dq = dl * q;
        y[e] = dq - ml;
    }
}

/* Q3_K: hmask[32], qs[64], 16 six-bit scales packed in 12 bytes, d. */
static void dq_q3_k(const unsigned char *b, float *y)
{
    const unsigned char *hm = b, *qs = b + 32, *sc = b + 96;
    float d = f16(b + 108), dl[16];
    for (int i = 0; i < 16; i++) {
        unsigned lo = (i < 8 ? sc[i] : sc[i - 8] >> 4) & 0xF;
        unsigned hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
        dl[i] = d * (float)((int8_t)(uint8_t)(lo | hi << 4) - 32);
    }
    for (int e = 0; e < QK_K; e++) {
        int half = e / 128, s = (e / 32) % 4, l = e % 32;
        int ql = (qs[half * 32 + l] >> (2 * s)) & 3;
        int qh = ((hm[l] >> (e / 32)) & 1) ^ 1;
        y[e] = dl[e / 16] * (float)(ql - (qh << 2));
    }
}

/* The 8 six-bit scales and mins of Q4_K and Q5_K, packed in 12 bytes. */
static void scale_min_k4(const unsigned char *s, unsigned *sc, unsigned *mn)
{
    for (int j = 0; j < 4; j++) {
        sc[j] = s[j] & 0x3F;
        mn[j] = s[4 + j] & 0x3F;
        sc[4 + j] = (s[8 + j] & 0x0F) | ((s[j] >> 2) & 0x30);
        mn[4 + j] = (s[8 + j] >> 4) | ((s[4 + j] >> 2) & 0x30);
    }
}

static void dq_q4_k(const unsigned char *b, float *y)
{
    float d = f16(b), dmin = f16(b + 2);
    unsigned sc[8], mn[8];
    scale_min_k4(b + 4, sc, mn);
    const unsigned char *qs = b + 16;
    for (int g = 0; g < 8; g++) {
        float dg = d * (float)sc[g], mg = dmin * (float)mn[g];
        for (int l = 0; l < 32; l++) {
            float dq = dg * (float)((qs[(g / 2) * 32 + l] >> (4 * (g % 2))) & 0xF);
            y[g * 32 + l] = dq - mg;
        }
    }
}

static void dq_q5_k(const unsigned char *b, float *y)
{
    float d = f16(b), dmin = f16(b + 2);
    unsigned sc[8], mn[8];
    scale_min_k4(b + 4, sc, mn);
    const unsigned char *qh = b + 16, *qs = b + 48;
    for (int g = 0; g < 8; g++) {
        float dg = d * (float)sc[g], mg = dmin * (float)mn[g];
        for (int l = 0; l < 32; l++) {
            unsigned q = ((qs[(g / 2) * 32 + l] >> (4 * (g % 2))) & 0xF) | ((qh[l] >> g) & 1) << 4;
            float dq = dg * (float)q;
            y[g * 32 + l] = dq - mg;
        }
    }
}

/* Q6_K: ql[128], qh[64], scales[16] (int8), d. */
static void dq_q6_k(const unsigned char *b, float *y)
{
    const unsigned char *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    float d = f16(b + 208);
    for (int e = 0; e < QK_K; e++) {
        int half = e / 128, m = e % 64, l = e % 32;
        unsigned lo = (ql[half * 64 + m] >> (4 * ((e / 64) % 2))) & 0xF;
        unsigned hi = (qh[half * 32 + l] >> (2 * ((e / 32) % 4))) & 3;
        y[e] = (d * (float)sc[e / 16]) * (float)((int)(lo | hi << 4) - 32);
    }
}

typedef void (*dq_fn)(const unsigned char *block, float *y);

static dq_fn dq_for(uint32_t id)
{
    switch (id) {
    case 2: return dq_q4_0;
    case 3: return dq_q4_1;
    case 6: return dq_q5_0;
    case 7: return dq_q5_1;
    case 8: return dq_q8_0;
    case 10: return dq_q2_k;
    case 11: return dq_q3_k;
    case 12: return dq_q4_k;
    case 13: return dq_q5_k;
    case 14: return dq_q6_k;
    default: return NULL;
    }
}

bool lmio__ggml_can_dequantize(uint32_t id) { return dq_for(id) != NULL; }

void lmio__ggml_dequantize(uint32_t id, const unsigned char *src, float *dst, uint64_t n_blocks)
{
    const lmio__ggml_type *t = lmio__ggml_type_find(id);
    dq_fn f = dq_for(id);
    for (uint64_t i = 0; i < n_blocks; i++) f(src + i * t->block_bytes, dst + i * t->block_elems);
}

/* C's roundf: half away from zero, as ggml's reference quantizer and
 * gguf-py's np_roundf round. */
void lmio__ggml_quantize_q8_0(const float *x, unsigned char *dst, uint64_t n_blocks)
{
    for (uint64_t i = 0; i < n_blocks; i++, x += 32, dst += 34) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            if (!(fabsf(x[j]) <= amax)) amax = isnan(amax) ? amax : fabsf(x[j]); /* NaN sticks, as in numpy */
        float d = amax / 127.0f;
        float id = d != 0.0f ? 1.0f / d : 0.0f;
        uint32_t db;
        memcpy(&db, &d, 4);
        uint16_t h = lmio__f32_to_f16(db);
        dst[0] = (unsigned char)h;
        dst[1] = (unsigned char)(h >> 8);
        for (int j = 0; j < 32; j++) {
            float q = roundf(x[j] * id);
            /* only NaN and Inf inputs leave [-127, 127]; keep the cast defined */
            dst[2 + j] = (unsigned char)(int8_t)(q >= -128.0f && q <= 127.0f ? q : 0.0f);
        }
    }
}
