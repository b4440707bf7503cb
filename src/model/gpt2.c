/* Reference GPT-2 forward pass in fp32, read top to bottom: embeddings,
 * n_layer blocks of (layernorm, causal self-attention, residual, layernorm,
 * MLP, residual), final layernorm, logits against the (tied) embedding.
 * Shapes in comments: T tokens in this call, C = n_embd, H heads of D = C/H,
 * I = n_inner, V = vocab, S = positions so far (KV cache). Matches
 * Transformers' GPT2LMHeadModel (Conv1D weights are stored [in, out]). */
#include "../core/core.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef enum { ACT_GELU_NEW, ACT_GELU, ACT_RELU, ACT_SILU } activation;

typedef struct layer {
    const float *ln_1_w, *ln_1_b;     /* (C) */
    const float *attn_w, *attn_b;     /* (C, 3C), (3C) */
    const float *proj_w, *proj_b;     /* (C, C), (C) */
    const float *ln_2_w, *ln_2_b;     /* (C) */
    const float *fc_w, *fc_b;         /* (C, I), (I) */
    const float *fc_proj_w, *fc_proj_b; /* (I, C), (C) */
} layer;

struct lmio_gpt2 {
    size_t V, P, C, L, H, I;
    float eps;
    activation act;
    bool scale_attn, scale_by_layer;
    const float *wte, *wpe, *ln_f_w, *ln_f_b, *lm_head; /* (V,C) (P,C) (C) (C) (V,C) */
    layer *layers;
    float **owned; /* widened copies of non-f32 weights */
    size_t n_owned;
    float *k_cache, *v_cache; /* (L, P, C) each */
    size_t n_cached;          /* positions held in the cache */
};

/* ---- building ---- */

static lmio_status weight(lmio_gpt2 *m, const lmio_statedict *sd, const char *name, size_t d0, size_t d1,
                          const float **out, lmio_error *err)
{
    lmio_tensor t;
    lmio_status s = lmio_tensor_find(sd, name, &t, err);
    if (s) return lmio__fail(err, LMIO_ERR_NOT_FOUND, lmio_statedict_path(sd) ? lmio_statedict_path(sd) : "", -1,
                             name, "missing tensor \"%s\"; expected it in a GPT-2 state dict", name);
    size_t nd = d1 ? 2 : 1;
    if ((size_t)t.ndim != nd || t.shape[0] != d0 || (d1 && t.shape[1] != d1)) {
        char sh[128];
        lmio__format_shape(sh, sizeof sh, t.ndim, t.shape);
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio_statedict_path(sd) ? lmio_statedict_path(sd) : "", -1, name,
                          "tensor \"%s\" has shape %s; expected [%zu%s%.0zu] from the config", name, sh, d0,
                          d1 ? ", " : "", d1);
    }
    if (t.dtype == LMIO_DTYPE_F32 && ((uintptr_t)t.data % 4) == 0) {
        *out = t.data;
        return LMIO_OK;
    }
    if (!lmio_dtype_is_convertible_float(t.dtype))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, "", -1, name, "tensor \"%s\" is %s; expected F32, F16, BF16 or F64",
                          name, lmio_dtype_name(t.dtype));
    float *f = lmio__malloc((size_t)t.numel * sizeof *f);
    float **o = lmio__realloc(m->owned, (m->n_owned + 1) * sizeof *o);
    if (o) m->owned = o;
    if (!f || !o) {
        lmio__free(f);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, name, "out of memory widening \"%s\"", name);
    }
    m->owned[m->n_owned++] = f;
    lmio_convert(f, LMIO_DTYPE_F32, t.data, t.dtype, (size_t)t.numel, NULL);
    *out = f;
    return LMIO_OK;
}

static lmio_status cfg_size(const lmio_config *cfg, const char *key, size_t *out, lmio_error *err)
{
    int64_t v;
    lmio_status s = lmio_config_get_int(cfg, key, &v, err);
    if (s) return s;
    if (v <= 0 || v > (1 << 24))
        return lmio__fail(err, LMIO_ERR_FORMAT, "config.json", -1, key, "\"%s\" is %lld; expected 1..%d", key,
                          (long long)v, 1 << 24);
    *out = (size_t)v;
    return LMIO_OK;
}

lmio_status lmio_gpt2_create(const lmio_config *cfg, const lmio_statedict *sd, lmio_gpt2 **out, lmio_error *err)
{
    if (!cfg || !sd || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (strcmp(lmio_config_model_type(cfg), "gpt2"))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, "config.json", -1, "model_type",
                          "model_type is \"%s\"; expected \"gpt2\"", lmio_config_model_type(cfg));
    lmio_gpt2 *m = lmio__calloc(1, sizeof *m);
    if (!m) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    lmio_status s;
    int64_t inner = 0;
    double eps;
    const char *act;
    int tie = 1, sa = 1, sbl = 0;
    if ((s = cfg_size(cfg, "vocab_size", &m->V, err)) || (s = cfg_size(cfg, "n_positions", &m->P, err)) ||
        (s = cfg_size(cfg, "n_embd", &m->C, err)) || (s = cfg_size(cfg, "n_layer", &m->L, err)) ||
        (s = cfg_size(cfg, "n_head", &m->H, err)) || (s = lmio_config_get_float(cfg, "layer_norm_epsilon", &eps, err)) ||
        (s = lmio_config_get_string(cfg, "activation_function", &act, err)) ||
        (s = lmio_config_get_bool(cfg, "tie_word_embeddings", &tie, err)) ||
        (s = lmio_config_get_bool(cfg, "scale_attn_weights", &sa, err)) ||
        (s = lmio_config_get_bool(cfg, "scale_attn_by_inverse_layer_idx", &sbl, err)))
        goto fail;
    if (lmio_config_get_int(cfg, "n_inner", &inner, NULL) != LMIO_OK || inner <= 0) inner = (int64_t)(4 * m->C);
    m->I = (size_t)inner;
    m->eps = (float)eps;
    m->scale_attn = sa;
    m->scale_by_layer = sbl;
    if (m->C % m->H) {
        s = lmio__fail(err, LMIO_ERR_FORMAT, "config.json", -1, "n_head", "n_embd %zu is not divisible by n_head %zu",
                       m->C, m->H);
        goto fail;
    }
    if (!strcmp(act, "gelu_new") || !strcmp(act, "gelu_pytorch_tanh") || !strcmp(act, "gelu_fast")) m->act = ACT_GELU_NEW;
    else if (!strcmp(act, "gelu")) m->act = ACT_GELU;
    else if (!strcmp(act, "relu")) m->act = ACT_RELU;
    else if (!strcmp(act, "silu") || !strcmp(act, "swish")) m->act = ACT_SILU;
    else {
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, "config.json", -1, "activation_function",
                       "activation_function \"%s\"; expected gelu_new, gelu_pytorch_tanh, gelu, relu or silu", act);
        goto fail;
    }
    size_t C = m->C, I = m->I;
    if ((s = weight(m, sd, "transformer.wte.weight", m->V, C, &m->wte, err)) ||
        (s = weight(m, sd, "transformer.wpe.weight", m->P, C, &m->wpe, err)) ||
        (s = weight(m, sd, "transformer.ln_f.weight", C, 0, &m->ln_f_w, err)) ||
        (s = weight(m, sd, "transformer.ln_f.bias", C, 0, &m->ln_f_b, err)))
        goto fail;
    if (tie) m->lm_head = m->wte;
    else if ((s = weight(m, sd, "lm_head.weight", m->V, C, &m->lm_head, err))) goto fail;
    m->layers = lmio__calloc(m->L, sizeof *m->layers);
    if (!m->layers) { s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory"); goto fail; }
    for (size_t l = 0; l < m->L; l++) {
        layer *y = &m->layers[l];
        char n[20][96];
        const char *suffix[] = {"ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
        for (int k = 0; k < 12; k++) snprintf(n[k], sizeof n[k], "transformer.h.%zu.%s", l, suffix[k]);
        if ((s = weight(m, sd, n[0], C, 0, &y->ln_1_w, err)) || (s = weight(m, sd, n[1], C, 0, &y->ln_1_b, err)) ||
            (s = weight(m, sd, n[2], C, 3 * C, &y->attn_w, err)) || (s = weight(m, sd, n[3], 3 * C, 0, &y->attn_b, err)) ||
            (s = weight(m, sd, n[4], C, C, &y->proj_w, err)) || (s = weight(m, sd, n[5], C, 0, &y->proj_b, err)) ||
            (s = weight(m, sd, n[6], C, 0, &y->ln_2_w, err)) || (s = weight(m, sd, n[7], C, 0, &y->ln_2_b, err)) ||
            (s = weight(m, sd, n[8], C, I, &y->fc_w, err)) || (s = weight(m, sd, n[9], I, 0, &y->fc_b, err)) ||
            (s = weight(m, sd, n[10], I, C, &y->fc_proj_w, err)) || (s = weight(m, sd, n[11], C, 0, &y->fc_proj_b, err)))
            goto fail;
    }
    m->k_cache = lmio__malloc(m->L * m->P * C * sizeof(float));
    m->v_cache = lmio__malloc(m->L * m->P * C * sizeof(float));
    if (!m->k_cache || !m->v_cache) { s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for the KV cache"); goto fail; }
    *out = m;
    return LMIO_OK;
fail:
    lmio_gpt2_free(m);
    return s;
}

void lmio_gpt2_free(lmio_gpt2 *m)
{
    if (!m) return;
    for (size_t i = 0; i < m->n_owned; i++) lmio__free(m->owned[i]);
    lmio__free(m->owned);
    lmio__free(m->layers);
    lmio__free(m->k_cache);
    lmio__free(m->v_cache);
    lmio__free(m);
}

size_t lmio_gpt2_vocab_size(const lmio_gpt2 *m) { return m ? m->V : 0; }

/* ---- layers ---- */

// out (T, C) = layernorm(x (T, C)) * w + b
static void layernorm(float *out, const float *x, const float *w, const float *b, size_t T, size_t C, float eps)
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

// out (T, N) = x (T, K) @ w (K, N) + b (N): Conv1D's layout. Threads split
// the columns, so one token (T = 1) uses every core, and each output is
// summed in the same order whatever the thread count: results are identical.
static void matmul(float *out, const float *x, const float *w, const float *b, size_t T, size_t K, size_t N)
{
    enum { NB = 256 };
#pragma omp parallel for schedule(static) if (T * K * N > (1 << 16))
    for (size_t nb = 0; nb < N; nb += NB) {
        size_t ne = nb + NB < N ? nb + NB : N;
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

// logits (T, V) = x (T, C) @ E^T where E (V, C) is the token embedding
static void lm_head(float *logits, const float *x, const float *E, size_t T, size_t C, size_t V)
{
    for (size_t t = 0; t < T; t++) {
#pragma omp parallel for schedule(static)
        for (size_t v = 0; v < V; v++) {
            const float *e = E + v * C;
            float acc = 0;
            for (size_t i = 0; i < C; i++) acc += x[t * C + i] * e[i];
            logits[t * V + v] = acc;
        }
    }
}

static float act(activation a, float x)
{
    switch (a) {
    case ACT_GELU_NEW: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case ACT_RELU: return x > 0 ? x : 0;
    case ACT_SILU: return x / (1.0f + expf(-x));
    }
    return x;
}

// out (T, C) = causal attention of q (T, C) over keys/values (S, C) in the cache,
// where this call's tokens sit at positions pos0 .. pos0 + T - 1
static void attention(const lmio_gpt2 *m, float *out, const float *qkv, const float *kc, const float *vc, size_t T,
                      size_t pos0, size_t l, float *scores)
{
    size_t C = m->C, H = m->H, D = C / H;
    float scale = m->scale_attn ? 1.0f / sqrtf((float)D) : 1.0f;
    if (m->scale_by_layer) scale /= (float)(l + 1);
    for (size_t t = 0; t < T; t++) {
        size_t S = pos0 + t + 1; /* causal: keys 0 .. pos0 + t */
        for (size_t h = 0; h < H; h++) {
            const float *q = qkv + t * 3 * C + h * D;
            float mx = -INFINITY;
            for (size_t s = 0; s < S; s++) {
                const float *k = kc + s * C + h * D;
                float acc = 0;
                for (size_t d = 0; d < D; d++) acc += q[d] * k[d];
                scores[s] = acc * scale;
                if (scores[s] > mx) mx = scores[s];
            }
            float sum = 0;
            for (size_t s = 0; s < S; s++) sum += scores[s] = expf(scores[s] - mx);
            float *o = out + t * C + h * D;
            for (size_t d = 0; d < D; d++) o[d] = 0;
            for (size_t s = 0; s < S; s++) {
                float p = scores[s] / sum;
                const float *v = vc + s * C + h * D;
                for (size_t d = 0; d < D; d++) o[d] += p * v[d];
            }
        }
    }
}

/* Runs T tokens at positions pos0.. through the model, filling the cache, and
 * writes logits for the last n_logits of them. */
static lmio_status forward(lmio_gpt2 *m, const int32_t *ids, size_t T, size_t pos0, float *logits, size_t n_logits,
                           lmio_error *err)
{
    size_t C = m->C, I = m->I;
    if (pos0 + T > m->P)
        return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, "", "%zu positions; expected at most n_positions = %zu",
                          pos0 + T, m->P);
    for (size_t t = 0; t < T; t++)
        if (ids[t] < 0 || (size_t)ids[t] >= m->V)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "token id %d at position %zu; expected 0..%zu",
                              ids[t], pos0 + t, m->V - 1);
    size_t big = 3 * C > I ? 3 * C : I;
    float *x = lmio__malloc(T * C * sizeof *x), *h = lmio__malloc(T * C * sizeof *h);
    float *buf = lmio__malloc(T * big * sizeof *buf), *a = lmio__malloc(T * C * sizeof *a);
    float *scores = lmio__malloc(m->P * sizeof *scores);
    lmio_status s = LMIO_OK;
    if (!x || !h || !buf || !a || !scores) {
        s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory in the forward pass");
        goto out;
    }
    // x (T, C) = wte[ids] + wpe[positions]
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < C; i++) x[t * C + i] = m->wte[(size_t)ids[t] * C + i] + m->wpe[(pos0 + t) * C + i];
    for (size_t l = 0; l < m->L; l++) {
        const layer *y = &m->layers[l];
        float *kc = m->k_cache + l * m->P * C, *vc = m->v_cache + l * m->P * C;
        layernorm(h, x, y->ln_1_w, y->ln_1_b, T, C, m->eps);
        matmul(buf, h, y->attn_w, y->attn_b, T, C, 3 * C); // qkv (T, 3C)
        for (size_t t = 0; t < T; t++) {
            memcpy(kc + (pos0 + t) * C, buf + t * 3 * C + C, C * sizeof(float));
            memcpy(vc + (pos0 + t) * C, buf + t * 3 * C + 2 * C, C * sizeof(float));
        }
        attention(m, a, buf, kc, vc, T, pos0, l, scores); // (T, C)
        matmul(h, a, y->proj_w, y->proj_b, T, C, C);
        for (size_t i = 0; i < T * C; i++) x[i] += h[i];
        layernorm(h, x, y->ln_2_w, y->ln_2_b, T, C, m->eps);
        matmul(buf, h, y->fc_w, y->fc_b, T, C, I); // (T, I)
        for (size_t i = 0; i < T * I; i++) buf[i] = act(m->act, buf[i]);
        matmul(h, buf, y->fc_proj_w, y->fc_proj_b, T, I, C);
        for (size_t i = 0; i < T * C; i++) x[i] += h[i];
    }
    layernorm(h, x + (T - n_logits) * C, m->ln_f_w, m->ln_f_b, n_logits, C, m->eps);
    lm_head(logits, h, m->lm_head, n_logits, C, m->V);
    m->n_cached = pos0 + T;
out:
    lmio__free(x);
    lmio__free(h);
    lmio__free(buf);
    lmio__free(a);
    lmio__free(scores);
    return s;
}

lmio_status lmio_gpt2_logits(lmio_gpt2 *m, const int32_t *ids, size_t n, float *logits, lmio_error *err)
{
    if (!m || !ids || !n || !logits) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL or empty argument");
    return forward(m, ids, n, 0, logits, n, err);
}

/* splitmix64: a small, well-mixed generator; sampling only needs to be
 * reproducible for a seed, not to match another framework's stream. */
static uint64_t next_u64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int32_t pick(const float *logits, size_t V, const lmio_generate_opts *o, uint64_t *rng)
{
    size_t best = 0;
    for (size_t v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v; /* first maximum, as torch.argmax */
    if (o->greedy) return (int32_t)best;
    double sum = 0, mx = logits[best];
    for (size_t v = 0; v < V; v++) sum += exp((logits[v] - mx) / o->temperature);
    double r = (double)(next_u64(rng) >> 11) * 0x1.0p-53 * sum, acc = 0;
    for (size_t v = 0; v < V; v++) {
        acc += exp((logits[v] - mx) / o->temperature);
        if (acc > r) return (int32_t)v;
    }
    return (int32_t)best;
}

lmio_status lmio_gpt2_generate(lmio_gpt2 *m, const int32_t *prompt, size_t n_prompt, size_t n_new,
                               const lmio_generate_opts *opts, int32_t *out, size_t *n_out, lmio_error *err)
{
    lmio_generate_opts o = LMIO_GENERATE_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_generate_opts", err);
    if (opt_status) return opt_status;
    if (!m || !prompt || !n_prompt || (n_new && !out) || !n_out)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL or empty argument");
    if (!o.greedy && !(o.temperature > 0))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "temperature %g; expected > 0", o.temperature);
    *n_out = 0;
    float *logits = lmio__malloc(m->V * sizeof *logits);
    if (!logits) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    uint64_t rng = o.seed;
    lmio_status s = forward(m, prompt, n_prompt, 0, logits, 1, err);
    for (size_t i = 0; !s && i < n_new; i++) {
        int32_t id = pick(logits, m->V, &o, &rng);
        out[(*n_out)++] = id;
        if (id == o.stop_id || i + 1 == n_new) break;
        s = forward(m, &id, 1, n_prompt + i, logits, 1, err);
    }
    lmio__free(logits);
    return s;
}
