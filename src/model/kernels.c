/* fp32 kernels shared by the architectures (see kernels.h). Every output is
 * summed in one fixed order whatever the thread count, so results are
 * identical from run to run and from 1 to N threads. */
#include "kernels.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---- config and inputs ---- */

lmio_status lmio__cfg_size(const lmio_config *cfg, const char *key, size_t *out, lmio_error *err)
{
    int64_t v;
    lmio_status s = lmio_config_get_int(cfg, key, &v, err);
    if (s) return s;
    if (v <= 0 || v > LMIO__MAX_DIM)
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, key, "\"%s\" is %lld; expected 1..%d",
                          key, (long long)v, LMIO__MAX_DIM);
    *out = (size_t)v;
    return LMIO_OK;
}

lmio_status lmio__check_run(const int32_t *ids, size_t T, size_t pos0, size_t V, size_t P, const char *pos_key,
                            lmio_error *err)
{
    if (pos0 + T > P)
        return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, "", "%zu positions; expected at most %s = %zu", pos0 + T,
                          pos_key, P);
    for (size_t t = 0; t < T; t++)
        if (ids[t] < 0 || (size_t)ids[t] >= V)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "token id %d at position %zu; expected 0..%zu",
                              ids[t], pos0 + t, V - 1);
    return LMIO_OK;
}

/* ---- activations ---- */

lmio_status lmio__act_read(const lmio_config *cfg, const char *key, lmio__act *out, lmio_error *err)
{
    /* names ACT2FN maps to the same function share an entry */
    static const struct {
        const char *name;
        lmio__act act;
    } k_names[] = {{"gelu_new", LMIO__ACT_GELU_NEW}, {"gelu_pytorch_tanh", LMIO__ACT_GELU_NEW},
                   {"gelu_fast", LMIO__ACT_GELU_NEW}, {"gelu", LMIO__ACT_GELU},
                   {"relu", LMIO__ACT_RELU},         {"silu", LMIO__ACT_SILU},
                   {"swish", LMIO__ACT_SILU}};
    const char *name;
    lmio_status s = lmio_config_get_string(cfg, key, &name, err);
    if (s) return s;
    for (size_t i = 0; i < sizeof k_names / sizeof k_names[0]; i++)
        if (!strcmp(name, k_names[i].name)) {
            *out = k_names[i].act;
            return LMIO_OK;
        }
    return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, key,
                      "%s \"%s\"; expected gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu, silu or swish", key,
                      name);
}

float lmio__act_apply(lmio__act a, float x)
{
    switch (a) {
    case LMIO__ACT_GELU_NEW: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case LMIO__ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case LMIO__ACT_RELU: return x > 0 ? x : 0;
    case LMIO__ACT_SILU: return x / (1.0f + expf(-x));
    }
    return x;
}

float lmio__act_grad(lmio__act a, float x)
{
    switch (a) {
    case LMIO__ACT_GELU_NEW: {
        const float c = 0.7978845608028654f;
        float th = tanhf(c * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * c * (1.0f + 3.0f * 0.044715f * x * x);
    }
    case LMIO__ACT_GELU:
        return 0.5f * (1.0f + erff(x * 0.7071067811865476f)) + x * expf(-0.5f * x * x) * 0.3989422804014327f;
    case LMIO__ACT_RELU: return x > 0 ? 1.0f : 0.0f;
    case LMIO__ACT_SILU: {
        float sg = 1.0f / (1.0f + expf(-x));
        return sg * (1.0f + x * (1.0f - sg));
    }
    }
    return 1.0f;
}

/* ---- layers ---- */

void lmio__layernorm(float *out, const float *x, const float *w, const float *b, size_t T, size_t C, float eps)
{
    for (size_t t = 0; t < T; t++) {
        const float *xt = x + t * C;
        float mean = 0, var = 0;
        for (size_t i = 0; i < C; i++) mean += xt[i];
        mean /= (float)C;
        for (size_t i = 0; i < C; i++) var += (xt[i] - mean) * (xt[i] - mean);
        var /= (float)C;
        float rstd = 1.0f / sqrtf(var + eps);
        for (size_t i = 0; i < C; i++) out[t * C + i] = (xt[i] - mean) * rstd * w[i] + b[i];
    }
}

void lmio__rmsnorm(float *out, const float *x, const float *w, size_t T, size_t C, float eps)
{
    for (size_t t = 0; t < T; t++) {
        const float *xt = x + t * C;
        float ss = 0;
        for (size_t i = 0; i < C; i++) ss += xt[i] * xt[i];
        float rstd = 1.0f / sqrtf(ss / (float)C + eps);
        /* (x * rstd) * w, in Transformers' order */
        for (size_t i = 0; i < C; i++) out[t * C + i] = w[i] * (xt[i] * rstd);
    }
}

/* ---- threads ---- */

typedef struct range_job {
    void (*body)(void *ctx, size_t lo, size_t hi);
    void *ctx;
    size_t lo, hi;
} range_job;

static void range_fn(void *p)
{
    range_job *j = p;
    if (j->lo < j->hi) j->body(j->ctx, j->lo, j->hi);
}

/* body(ctx, lo, hi) over [0, n), one contiguous share per thread (what
 * schedule(static) gives) when parallel, else all of it on this thread.
 * Inference reads weights straight from mapped files, and a file that
 * shrinks raises SIGBUS on whichever thread reads past its new end: each
 * worker runs its share guarded, and a fault on any of them is raised again
 * on this thread once all are done, ending the guarded region the caller
 * runs in (lmio__arch_compute) instead of the process. */
static void parallel_for(size_t n, int parallel, void (*body)(void *ctx, size_t lo, size_t hi), void *ctx)
{
    const void *volatile fault = NULL;
    volatile int faulted = 0;
#pragma omp parallel if (parallel)
    {
        size_t nt = 1, id = 0;
#ifdef _OPENMP
        nt = (size_t)omp_get_num_threads();
        id = (size_t)omp_get_thread_num();
#endif
        range_job j = {body, ctx, n * id / nt, n * (id + 1) / nt};
        if (!lmio__guarded(range_fn, &j)) {
#pragma omp critical(lmio_fault)
            {
                faulted = 1;
                fault = lmio__guard_fault_addr();
            }
        }
    }
    if (faulted) lmio__guard_raise(fault);
}

typedef struct mm_job {
    float *out;
    const float *x, *w, *b;
    size_t T, K, N;
} mm_job;

enum { KN_BLOCK = 256 };

// columns [lo, hi) blocks of KN_BLOCK for every token
static void matmul_kn_body(void *p, size_t lo, size_t hi)
{
    const mm_job *j = p;
    size_t T = j->T, K = j->K, N = j->N;
    float *out = j->out; /* locals: stores through out cannot change them */
    const float *x = j->x, *w = j->w, *b = j->b;
    for (size_t nb = lo * KN_BLOCK; nb < hi * KN_BLOCK && nb < N; nb += KN_BLOCK) {
        size_t ne = nb + KN_BLOCK < N ? nb + KN_BLOCK : N;
        for (size_t t = 0; t < T; t++) {
            float *o = out + t * N;
            for (size_t n = nb; n < ne; n++) o[n] = b ? b[n] : 0.0f;
            for (size_t k = 0; k < K; k++) {
                float a = x[t * K + k];
                const float *wk = w + k * N;
                for (size_t n = nb; n < ne; n++) o[n] += a * wk[n];
            }
        }
    }
}

// Threads split the columns, so one token (T = 1) uses every core.
void lmio__matmul_kn(float *out, const float *x, const float *w, const float *b, size_t T, size_t K, size_t N)
{
    mm_job j = {out, x, w, b, T, K, N};
    parallel_for((N + KN_BLOCK - 1) / KN_BLOCK, T * K * N > (1 << 16), matmul_kn_body, &j);
}

// rows [lo, hi) of w, each read once for all T tokens
static void matmul_nk_body(void *p, size_t lo, size_t hi)
{
    const mm_job *j = p;
    size_t T = j->T, K = j->K, N = j->N;
    float *out = j->out;
    const float *x = j->x, *w = j->w, *b = j->b;
    for (size_t n = lo; n < hi; n++) {
        const float *wn = w + n * K;
        for (size_t t = 0; t < T; t++) {
            const float *xt = x + t * K;
            float acc = 0;
            for (size_t k = 0; k < K; k++) acc += xt[k] * wn[k];
            out[t * N + n] = b ? acc + b[n] : acc;
        }
    }
}

// Threads split the rows of w: each is read once for all T tokens.
void lmio__matmul_nk(float *out, const float *x, const float *w, const float *b, size_t T, size_t K, size_t N)
{
    mm_job j = {out, x, w, b, T, K, N};
    parallel_for(N, T * K * N > (1 << 16), matmul_nk_body, &j);
}

void lmio__attention(const lmio__attn_io *io, size_t T, size_t pos0, size_t H, size_t G, size_t D, float scale,
                     float *scores)
{
    size_t group = H / G; /* query heads per key/value head */
    for (size_t t = 0; t < T; t++) {
        size_t S = pos0 + t + 1; /* causal: keys 0 .. pos0 + t */
        for (size_t h = 0; h < H; h++) {
            const float *q = io->q + t * io->q_stride + h * D;
            size_t kvh = (h / group) * D;
            float mx = -INFINITY;
            for (size_t s = 0; s < S; s++) {
                const float *k = io->k + s * io->kv_stride + kvh;
                float acc = 0;
                for (size_t d = 0; d < D; d++) acc += q[d] * k[d];
                scores[s] = acc * scale;
                if (scores[s] > mx) mx = scores[s];
            }
            float sum = 0;
            for (size_t s = 0; s < S; s++) sum += scores[s] = expf(scores[s] - mx);
            float *o = io->out + t * io->out_stride + h * D;
            for (size_t d = 0; d < D; d++) o[d] = 0;
            for (size_t s = 0; s < S; s++) {
                float p = scores[s] / sum;
                const float *v = io->v + s * io->kv_stride + kvh;
                for (size_t d = 0; d < D; d++) o[d] += p * v[d];
            }
        }
    }
}

/* ---- backward passes ---- */

void lmio__rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, size_t T, size_t C,
                       float eps)
{
    for (size_t t = 0; t < T; t++) {
        const float *xt = x + t * C, *dt = dout + t * C;
        float ss = 0, dot = 0;
        for (size_t i = 0; i < C; i++) ss += xt[i] * xt[i];
        float rstd = 1.0f / sqrtf(ss / (float)C + eps); /* as lmio__rmsnorm */
        for (size_t i = 0; i < C; i++) dot += w[i] * dt[i] * xt[i];
        // y = w * x * r, r = (mean(x^2) + eps)^-1/2: dx = r (w dy) - x r^3 sum(w dy x) / C
        float k = dot * rstd * rstd * rstd / (float)C;
        for (size_t i = 0; i < C; i++) {
            dw[i] += dt[i] * (xt[i] * rstd);
            dx[t * C + i] += rstd * w[i] * dt[i] - xt[i] * k;
        }
    }
}

void lmio__matmul_nk_bwd(float *dx, float *dw, float *db, const float *x, const float *dout, const float *w, size_t T,
                         size_t K, size_t N)
{
    // dx rows are independent; each sums over n in order along w's rows
#pragma omp parallel for schedule(static) if (T * K * N > (1 << 16))
    for (size_t t = 0; t < T; t++) {
        float *o = dx + t * K;
        for (size_t n = 0; n < N; n++) {
            float a = dout[t * N + n];
            const float *wn = w + n * K;
            for (size_t k = 0; k < K; k++) o[k] += a * wn[k];
        }
    }
#pragma omp parallel for schedule(static) if (T * K * N > (1 << 16))
    for (size_t n = 0; n < N; n++) {
        float *g = dw + n * K;
        for (size_t t = 0; t < T; t++) {
            float a = dout[t * N + n];
            const float *xt = x + t * K;
            for (size_t k = 0; k < K; k++) g[k] += a * xt[k];
        }
    }
    for (size_t t = 0; db && t < T; t++)
        for (size_t n = 0; n < N; n++) db[n] += dout[t * N + n];
}

/* ---- the training loss ---- */

lmio_status lmio__check_batch(const int32_t *ids, const int32_t *targets, size_t B, size_t T, size_t V, size_t P,
                              lmio_error *err)
{
    if (!B || !T || T > P)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "%zu sequences of %zu tokens; expected 1..%zu tokens",
                          B, T, P);
    for (size_t n = 0; n < B * T; n++)
        if (ids[n] < 0 || (size_t)ids[n] >= V || targets[n] >= (int32_t)V)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "token id %d or target %d at %zu; expected 0..%zu",
                              ids[n], targets[n], n, V - 1);
    return LMIO_OK;
}

double lmio__softmax_loss(float *probs, const int32_t *targets, size_t N, size_t V, size_t *count)
{
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        float *row = probs + n * V, mx = -INFINITY;
        for (size_t v = 0; v < V; v++)
            if (row[v] > mx) mx = row[v];
        double sum = 0;
        for (size_t v = 0; v < V; v++) sum += row[v] = expf(row[v] - mx);
        for (size_t v = 0; v < V; v++) row[v] = (float)(row[v] / sum);
    }
    double total = 0;
    *count = 0;
    for (size_t n = 0; n < N; n++) /* in order, in double: the loss is deterministic */
        if (targets[n] >= 0) {
            total -= log((double)probs[n * V + (size_t)targets[n]]);
            (*count)++;
        }
    return total;
}

void lmio__softmax_loss_grad(float *probs, const int32_t *targets, size_t N, size_t V, size_t count)
{
    float inv = 1.0f / (float)count;
    for (size_t n = 0; n < N; n++) {
        float *row = probs + n * V;
        if (targets[n] < 0) {
            memset(row, 0, V * sizeof *row);
            continue;
        }
        row[targets[n]] -= 1.0f;
        for (size_t v = 0; v < V; v++) row[v] *= inv;
    }
}

/* ---- the KV cache ---- */

lmio_status lmio__kv_reserve(lmio__kv_cache *c, size_t S, lmio_error *err)
{
    if (S <= c->cap) return LMIO_OK;
    size_t cap = c->cap ? c->cap : 64;
    while (cap < S) cap *= 2;
    if (cap > c->max) cap = c->max;
    size_t bytes;
    if (__builtin_mul_overflow(cap, c->row, &bytes) || __builtin_mul_overflow(bytes, sizeof(float), &bytes))
        return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, "", "a KV cache of %zu positions overflows size_t", cap);
    float *k = lmio__realloc(c->k, bytes);
    if (k) c->k = k;
    float *v = k ? lmio__realloc(c->v, bytes) : NULL;
    if (v) c->v = v;
    if (!k || !v) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for the KV cache");
    c->cap = cap;
    return LMIO_OK;
}

void lmio__kv_free(lmio__kv_cache *c)
{
    lmio__free(c->k);
    lmio__free(c->v);
    c->k = c->v = NULL;
    c->cap = 0;
}
