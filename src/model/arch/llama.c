/* Llama: Transformers' LlamaForCausalLM as an entry of the architecture
 * table (LlamaConfig's defaults, the tensors with their names in
 * Transformers and llama.cpp) and the reference forward pass in fp32, read
 * top to bottom: token embedding, num_hidden_layers blocks of (RMSNorm,
 * grouped-query self-attention with rotary positions, residual, RMSNorm,
 * gated MLP, residual), final RMSNorm, logits against lm_head (or the tied
 * embedding).
 * Shapes in comments: T tokens in this call, C = hidden_size, H query heads
 * and G key/value heads of D = head_dim, I = intermediate_size, V = vocab,
 * S = positions so far (KV cache). Weights are nn.Linear's (out, in). */
#include "../arch.h"
#include "../kernels.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MODEL_TYPE "llama"

typedef struct layer {
    const float *attn_norm;              /* (C) */
    const float *wq, *wk, *wv, *wo;      /* (H*D, C) (G*D, C) (G*D, C) (C, H*D) */
    const float *bq, *bk, *bv, *bo;      /* attention_bias: (H*D) (G*D) (G*D) (C), else NULL */
    const float *ffn_norm;               /* (C) */
    const float *w_gate, *w_up, *w_down; /* (I, C) (I, C) (C, I) */
    const float *b_gate, *b_up, *b_down; /* mlp_bias: (I) (I) (C), else NULL */
} layer;

typedef struct llama {
    size_t V, P, C, L, H, G, D, I;
    int64_t pad; /* pad_token_id: nn.Embedding's padding_idx (its row neither initialised nor trained); -1: none */
    float eps;
    lmio__act act;
    float *inv_freq; /* (D/2) rotary frequencies, after any rope scaling */
    /* The rope parameters inv_freq came from, for the TorchScript export to
     * compute it again: theta, and with llama3 scaling its factor, low and
     * high frequency factors and original context (0 when unscaled). */
    double theta, factor, lo, hi, old;
    const float *embed, *norm, *lm_head; /* (V, C) (C) (V, C) */
    layer *layers;
    lmio__f32_pool owned;  /* widened copies of non-f32 weights */
    lmio__kv_cache cache;  /* rows of L * G * D, keys after the rotation */
    const lmio_statedict *weights; /* what f32 weights point into */
} llama;

/* ---- the table entry ---- */

/* The config values tensor shapes are stated in. */
enum { D_V, D_C, D_I, D_HD, D_GD, N_DIMS };
static const char *const k_dim_names[N_DIMS] = {"vocab_size", "hidden_size", "intermediate_size",
                                                "num_attention_heads * head_dim", "num_key_value_heads * head_dim"};

#define G(f) offsetof(llama, f)
#define Y(f) offsetof(layer, f)
#define PL LMIO__T_PER_LAYER
#define ROPE (LMIO__T_PER_LAYER | LMIO__T_ROPE_HALF)
#define AB "attention_bias"
#define MB "mlp_bias"
/* In LlamaForCausalLM's state-dict order; GGUF names from llama.cpp's
 * LLM_ARCH_LLAMA (shared/reference/gguf-llamacpp.md §2.3). */
static const lmio__tensor_spec k_tensors[] = {
    {"model.embed_tokens.weight", "token_embd.weight", 2, {D_V, D_C}, 0, NULL, G(embed), NULL},
    {"model.layers.{L}.self_attn.q_proj.weight", "blk.{L}.attn_q.weight", 2, {D_HD, D_C}, ROPE, NULL, Y(wq), NULL},
    {"model.layers.{L}.self_attn.q_proj.bias", "blk.{L}.attn_q.bias", 1, {D_HD}, ROPE, NULL, Y(bq), AB},
    {"model.layers.{L}.self_attn.k_proj.weight", "blk.{L}.attn_k.weight", 2, {D_GD, D_C}, ROPE, NULL, Y(wk), NULL},
    {"model.layers.{L}.self_attn.k_proj.bias", "blk.{L}.attn_k.bias", 1, {D_GD}, ROPE, NULL, Y(bk), AB},
    {"model.layers.{L}.self_attn.v_proj.weight", "blk.{L}.attn_v.weight", 2, {D_GD, D_C}, PL, NULL, Y(wv), NULL},
    {"model.layers.{L}.self_attn.v_proj.bias", "blk.{L}.attn_v.bias", 1, {D_GD}, PL, NULL, Y(bv), AB},
    {"model.layers.{L}.self_attn.o_proj.weight", "blk.{L}.attn_output.weight", 2, {D_C, D_HD}, PL, NULL, Y(wo), NULL},
    {"model.layers.{L}.self_attn.o_proj.bias", "blk.{L}.attn_output.bias", 1, {D_C}, PL, NULL, Y(bo), AB},
    {"model.layers.{L}.mlp.gate_proj.weight", "blk.{L}.ffn_gate.weight", 2, {D_I, D_C}, PL, NULL, Y(w_gate), NULL},
    {"model.layers.{L}.mlp.gate_proj.bias", "blk.{L}.ffn_gate.bias", 1, {D_I}, PL, NULL, Y(b_gate), MB},
    {"model.layers.{L}.mlp.up_proj.weight", "blk.{L}.ffn_up.weight", 2, {D_I, D_C}, PL, NULL, Y(w_up), NULL},
    {"model.layers.{L}.mlp.up_proj.bias", "blk.{L}.ffn_up.bias", 1, {D_I}, PL, NULL, Y(b_up), MB},
    {"model.layers.{L}.mlp.down_proj.weight", "blk.{L}.ffn_down.weight", 2, {D_C, D_I}, PL, NULL, Y(w_down), NULL},
    {"model.layers.{L}.mlp.down_proj.bias", "blk.{L}.ffn_down.bias", 1, {D_C}, PL, NULL, Y(b_down), MB},
    {"model.layers.{L}.input_layernorm.weight", "blk.{L}.attn_norm.weight", 1, {D_C}, PL, NULL, Y(attn_norm), NULL},
    {"model.layers.{L}.post_attention_layernorm.weight", "blk.{L}.ffn_norm.weight", 1, {D_C}, PL, NULL, Y(ffn_norm),
     NULL},
    {"model.norm.weight", "output_norm.weight", 1, {D_C}, 0, NULL, G(norm), NULL},
    {"lm_head.weight", "output.weight", 2, {D_V, D_C}, LMIO__T_TIED, "model.embed_tokens.weight", G(lm_head), NULL},
};

/* LlamaConfig's defaults, as Transformers 5 writes them. head_dim and
 * num_key_value_heads null: derived (hidden_size / num_attention_heads,
 * num_attention_heads). rope_theta top level, not in rope_parameters: a
 * default rope_parameters would outrank a rope_theta set later. */
static const char k_defaults[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 1, \"eos_token_id\": 2, \"head_dim\": null, \"hidden_act\": \"silu\","
    " \"hidden_size\": 4096, \"initializer_range\": 0.02, \"intermediate_size\": 11008,"
    " \"max_position_embeddings\": 2048, \"mlp_bias\": false, \"model_type\": \"" MODEL_TYPE "\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": null,"
    " \"pad_token_id\": null, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,"
    " \"tie_word_embeddings\": false, \"use_cache\": true, \"vocab_size\": 32000}";

/* The rotary frequencies Transformers before 4.31 saved as buffers. */
static const char *const k_dropped[] = {".rotary_emb.inv_freq", NULL};

static lmio_status llama_create(const lmio_config *cfg, const lmio_statedict *w, void **out, lmio_error *err);
static lmio_status llama_forward(void *model, const int32_t *ids, size_t T, size_t pos0, float *logits,
                                 size_t n_logits, lmio_error *err);
static void llama_free(void *model);
static size_t llama_vocab_size(const void *model) { return ((const llama *)model)->V; }
static size_t llama_max_positions(const void *model) { return ((const llama *)model)->P; }
static lmio_status llama_dims(const lmio_config *cfg, uint64_t *dims, size_t *n_layer, lmio_error *err);
static void llama_init(const lmio_config *cfg, const lmio__tensor_spec *ts, float *data, size_t n, uint64_t *rng);
static lmio_status llama_backward(void *model, void *grads, const int32_t *ids, const int32_t *targets, size_t B,
                                  size_t T, float *loss, lmio_error *err);
static lmio_status llama_onnx(const lmio_config *cfg, const lmio_statedict *w, lmio__onnx *g, lmio_error *err);

/* llama.cpp's llama hyperparameters (shared/reference/gguf-llamacpp.md §2.3) */
static const lmio__gguf_key k_gguf_keys[] = {
    {"context_length", "max_position_embeddings", 'u', NULL, 0},
    {"embedding_length", "hidden_size", 'u', NULL, 0},
    {"block_count", "num_hidden_layers", 'u', NULL, 0},
    {"feed_forward_length", "intermediate_size", 'u', NULL, 0},
    {"attention.head_count", "num_attention_heads", 'u', NULL, 0},
    {"attention.head_count_kv", "num_key_value_heads", 'u', "num_attention_heads", 1},
    {"attention.key_length", "head_dim", 'u', NULL, 0},
    {"rope.freq_base", "rope_theta", 'f', NULL, 0},
    {"attention.layer_norm_rms_epsilon", "rms_norm_eps", 'f', NULL, 0},
    {"vocab_size", "vocab_size", 'u', NULL, 0},
};
static lmio_status llama_torchscript(const lmio_config *cfg, const char *node, lmio__buf *code, lmio_error *err);

const lmio__arch lmio__arch_llama = {
    .model_type = MODEL_TYPE,
    .hf_class = "LlamaForCausalLM",
    .defaults_json = k_defaults,
    .aliases = NULL, /* LlamaConfig uses Transformers' generic names */
    .n_aliases = 0,
    .tensors = k_tensors,
    .n_tensors = sizeof k_tensors / sizeof k_tensors[0],
    .dim_names = k_dim_names,
    .layers_key = "num_hidden_layers",
    .layer_size = sizeof(layer),
    .name_prefix = "model.",
    .dropped_suffixes = k_dropped,
    .create = llama_create,
    .forward = llama_forward,
    .free = llama_free,
    .vocab_size = llama_vocab_size,
    .max_positions = llama_max_positions,
    .dims = llama_dims,
    .n_dims = N_DIMS,
    .init = llama_init,
    .backward = llama_backward,
    .gguf_keys = k_gguf_keys,
    .n_gguf_keys = sizeof k_gguf_keys / sizeof k_gguf_keys[0],
    .onnx_graph = llama_onnx,
    .torchscript = llama_torchscript,
};

/* ---- rotary frequencies ---- */

/* A number in the rope parameters (params) as Transformers reads it. */
static lmio_status rope_number(const lmio_config *cfg, const lmio__json *params, const char *key, double *out,
                               lmio_error *err)
{
    const lmio__json *v = params ? lmio__json_get(params, key) : NULL;
    if (!v || !lmio__json_is_number(v) || !(lmio__json_number_value(v) > 0))
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, key,
                          "rope parameter \"%s\" is %s; expected a number > 0", key,
                          v ? "not a positive number" : "missing");
    *out = lmio__json_number_value(v);
    return LMIO_OK;
}

/* Llama 3.1's scaling of the frequencies, in float32 and in the order of
 * Transformers' _compute_llama3_parameters: long wavelengths divided by
 * factor, short ones kept, the band between interpolated. */
static lmio_status rope_llama3(llama *m, const lmio_config *cfg, const lmio__json *params, lmio_error *err)
{
    double factor, lo, hi, old;
    lmio_status s;
    if ((s = rope_number(cfg, params, "factor", &factor, err)) ||
        (s = rope_number(cfg, params, "low_freq_factor", &lo, err)) ||
        (s = rope_number(cfg, params, "high_freq_factor", &hi, err)))
        return s;
    /* absent: max_position_embeddings, as standardize_rope_params sets it */
    if (lmio__json_get(params, "original_max_position_embeddings")) {
        if ((s = rope_number(cfg, params, "original_max_position_embeddings", &old, err))) return s;
    } else {
        old = (double)m->P;
    }
    if (hi == lo)
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, "high_freq_factor",
                          "rope high_freq_factor equals low_freq_factor (%g); expected them to differ", hi);
    float low_wavelen = (float)(old / lo), high_wavelen = (float)(old / hi);
    for (size_t i = 0; i < m->D / 2; i++) {
        float inv = m->inv_freq[i], wavelen = (float)(2 * 3.141592653589793) / inv;
        float scaled = wavelen > low_wavelen ? inv / (float)factor : inv;
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            float smooth = ((float)old / wavelen - (float)lo) / (float)(hi - lo);
            scaled = (1 - smooth) * scaled / (float)factor + smooth * scaled;
        }
        m->inv_freq[i] = scaled;
    }
    m->factor = factor, m->lo = lo, m->hi = hi, m->old = old;
    return LMIO_OK;
}

/* The rope parameters as Transformers 5 resolves them: rope_scaling (the
 * older key) if set, else rope_parameters; rope_theta from them, else the
 * top-level rope_theta; rope_type (or the older "type"), default
 * "default". */
static lmio_status read_rope(llama *m, const lmio_config *cfg, lmio_error *err)
{
    const lmio__json *obj = lmio__config_json(cfg), *params = lmio__json_get(obj, "rope_scaling");
    if (!params || lmio__json_is_null(params) || (lmio__json_is_object(params) && !lmio__json_object_size(params)))
        params = lmio__json_get(obj, "rope_parameters");
    if (params && lmio__json_is_null(params)) params = NULL;
    if (params && !lmio__json_is_object(params))
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, "rope_parameters",
                          "the rope parameters are not an object; expected {\"rope_type\": ..., \"rope_theta\": ...}");
    double theta = 10000.0, prf;
    lmio_status s = LMIO_OK;
    if (params && lmio__json_get(params, "rope_theta")) s = rope_number(cfg, params, "rope_theta", &theta, err);
    else if (lmio_config_get_float(cfg, "rope_theta", &theta, NULL) == LMIO_OK && !(theta > 0))
        s = lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, "rope_theta",
                       "rope_theta is %g; expected a number > 0", theta);
    if (s) return s;
    const lmio__json *prf_v = params ? lmio__json_get(params, "partial_rotary_factor") : NULL;
    if (!prf_v) prf_v = lmio__json_get(obj, "partial_rotary_factor");
    if (prf_v && !lmio__json_is_null(prf_v) && (prf = lmio__json_number_value(prf_v)) != 1.0)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, "partial_rotary_factor",
                          "partial_rotary_factor %g; expected 1 (LlamaForCausalLM rotates whole heads)", prf);
    const char *type = "default";
    const lmio__json *tv = params ? lmio__json_get(params, "rope_type") : NULL;
    if (!tv && params) tv = lmio__json_get(params, "type");
    if (tv && !(type = lmio__json_string_value(tv)))
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, "rope_type",
                          "rope_type is not a string; expected \"default\" or \"llama3\"");
    m->theta = theta;
    if (!(m->inv_freq = lmio__malloc(m->D / 2 * sizeof *m->inv_freq)))
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    // inv_freq[i] = 1 / theta^(2i / D), in float32 as Transformers computes it
    for (size_t i = 0; i < m->D / 2; i++)
        m->inv_freq[i] = 1.0f / powf((float)theta, (float)(2 * i) / (float)m->D);
    if (!strcmp(type, "default")) return LMIO_OK;
    if (!strcmp(type, "llama3")) return rope_llama3(m, cfg, params, err);
    return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, "rope_type",
                      "rope_type \"%s\"; expected \"default\" or \"llama3\"", type);
}

/* ---- building ---- */

/* key as a size, or fallback when it is absent or null (LlamaConfig's
 * derived defaults). */
static lmio_status size_or(const lmio_config *cfg, const char *key, size_t fallback, size_t *out, lmio_error *err)
{
    int64_t v;
    lmio_status s = lmio_config_get_int(cfg, key, &v, err);
    if (s == LMIO_ERR_NOT_FOUND) {
        *out = fallback;
        return LMIO_OK;
    }
    return s ? s : lmio__cfg_size(cfg, key, out, err);
}

static lmio_status read_config(llama *m, const lmio_config *cfg, int *tie, lmio_error *err)
{
    lmio_status s;
    double eps;
    int ab, mb;
    if ((s = lmio__cfg_size(cfg, "vocab_size", &m->V, err)) ||
        (s = lmio__cfg_size(cfg, "max_position_embeddings", &m->P, err)) ||
        (s = lmio__cfg_size(cfg, "hidden_size", &m->C, err)) ||
        (s = lmio__cfg_size(cfg, "num_hidden_layers", &m->L, err)) ||
        (s = lmio__cfg_size(cfg, "num_attention_heads", &m->H, err)) ||
        (s = lmio__cfg_size(cfg, "intermediate_size", &m->I, err)) ||
        (s = size_or(cfg, "num_key_value_heads", m->H, &m->G, err)) ||
        (s = lmio_config_get_float(cfg, "rms_norm_eps", &eps, err)) ||
        (s = lmio__act_read(cfg, "hidden_act", &m->act, err)) ||
        (s = lmio_config_get_bool(cfg, "tie_word_embeddings", tie, err)) ||
        (s = lmio_config_get_bool(cfg, "attention_bias", &ab, err)) ||
        (s = lmio_config_get_bool(cfg, "mlp_bias", &mb, err)))
        return s;
    m->eps = (float)eps;
    int64_t pad;
    m->pad = lmio_config_get_int(cfg, "pad_token_id", &pad, NULL) == LMIO_OK && pad >= 0 && (uint64_t)pad < m->V
                 ? pad
                 : -1;
    const char *path = lmio__config_path(cfg);
    /* without head_dim, Transformers refuses a width its heads do not divide */
    int64_t hd;
    if (lmio_config_get_int(cfg, "head_dim", &hd, NULL) == LMIO_ERR_NOT_FOUND && m->C % m->H)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "num_attention_heads",
                          "hidden_size %zu is not divisible by num_attention_heads %zu", m->C, m->H);
    if ((s = size_or(cfg, "head_dim", m->C / m->H, &m->D, err))) return s;
    if (m->H % m->G)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "num_key_value_heads",
                          "num_key_value_heads %zu does not divide num_attention_heads %zu; expected a divisor "
                          "(each key/value head serves an equal group of query heads)",
                          m->G, m->H);
    if (m->D % 2)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "head_dim",
                          "head_dim %zu is odd; expected an even size (rotary embeddings rotate pairs)", m->D);
    return LMIO_OK;
}

static lmio_status llama_create(const lmio_config *cfg, const lmio_statedict *w, void **out, lmio_error *err)
{
    llama *m = lmio__calloc(1, sizeof *m);
    if (!m) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    int tie = 0;
    lmio_status s = read_config(m, cfg, &tie, err);
    m->weights = w;
    uint64_t dims[N_DIMS] = {[D_V] = m->V, [D_C] = m->C, [D_I] = m->I, [D_HD] = (uint64_t)m->H * m->D,
                             [D_GD] = (uint64_t)m->G * m->D};
    lmio__binding b = {&lmio__arch_llama, w, dims, m->L, tie != 0, cfg};
    /* the rotary table after the weights: head_dim is only trusted once
     * the weights hold heads of that size */
    void *layers = NULL;
    if (!s) s = lmio__arch_build(&b, m, &layers, &m->owned, err);
    m->layers = layers;
    if (!s) s = read_rope(m, cfg, err);
    m->cache.row = m->L * m->G * m->D;
    m->cache.max = m->P;
    if (s) {
        llama_free(m);
        return s;
    }
    *out = m;
    return LMIO_OK;
}

static void llama_free(void *model)
{
    llama *m = model;
    if (!m) return;
    lmio__f32_pool_free(&m->owned);
    lmio__free(m->layers);
    lmio__free(m->inv_freq);
    lmio__kv_free(&m->cache);
    lmio__free(m);
}

/* ---- the forward pass ---- */

// x (T, n*D): each of the n heads of each token rotated by its position,
// in rotate_half's layout: (x1, x2) -> (x1 cos - x2 sin, x2 cos + x1 sin)
// for the halves x1 = x[:D/2], x2 = x[D/2:] (cos, sin of pos * inv_freq)
static void rope(const llama *m, float *x, size_t T, size_t n, size_t pos0, float *cs)
{
    size_t D = m->D, half = D / 2;
    float *sn = cs + half;
    for (size_t t = 0; t < T; t++) {
        for (size_t i = 0; i < half; i++) {
            float angle = (float)(pos0 + t) * m->inv_freq[i]; /* float32, as Transformers */
            cs[i] = cosf(angle);
            sn[i] = sinf(angle);
        }
        for (size_t h = 0; h < n; h++) {
            float *v = x + (t * n + h) * D;
            for (size_t i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half];
                v[i] = x1 * cs[i] - x2 * sn[i];
                v[i + half] = x2 * cs[i] + x1 * sn[i];
            }
        }
    }
}

/* Per-call buffers of one forward pass. */
typedef struct work {
    float *x, *h;    /* (T, C) the residual stream, a normed or projected copy */
    float *q, *a;    /* (T, H*D) queries, attention output */
    float *k, *v;    /* (T, G*D) */
    float *gate, *up; /* (T, I) */
    float *scores;   /* (S) */
    float *cs;       /* (D) cos and sin of one position */
} work;

static void work_free(work *w)
{
    float *all[] = {w->x, w->h, w->q, w->a, w->k, w->v, w->gate, w->up, w->scores, w->cs};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) lmio__free(all[i]);
}

static lmio_status work_alloc(const llama *m, size_t T, size_t S, work *w, lmio_error *err)
{
    size_t HD = m->H * m->D, GD = m->G * m->D;
    memset(w, 0, sizeof *w);
    w->x = lmio__malloc(T * m->C * sizeof(float));
    w->h = lmio__malloc(T * m->C * sizeof(float));
    w->q = lmio__malloc(T * HD * sizeof(float));
    w->a = lmio__malloc(T * HD * sizeof(float));
    w->k = lmio__malloc(T * GD * sizeof(float));
    w->v = lmio__malloc(T * GD * sizeof(float));
    w->gate = lmio__malloc(T * m->I * sizeof(float));
    w->up = lmio__malloc(T * m->I * sizeof(float));
    w->scores = lmio__malloc(S * sizeof(float));
    w->cs = lmio__malloc(m->D * sizeof(float));
    if (w->x && w->h && w->q && w->a && w->k && w->v && w->gate && w->up && w->scores && w->cs) return LMIO_OK;
    work_free(w);
    return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory in the forward pass");
}

// x (T, C) += attention block of layer l over the cache
static void attention_block(llama *m, size_t l, work *w, size_t T, size_t pos0)
{
    const layer *y = &m->layers[l];
    size_t C = m->C, HD = m->H * m->D, GD = m->G * m->D, row = m->cache.row;
    float *kc = m->cache.k + l * GD, *vc = m->cache.v + l * GD; // (S, G*D) rows `row` apart
    lmio__rmsnorm(w->h, w->x, y->attn_norm, T, C, m->eps);
    lmio__matmul_nk(w->q, w->h, y->wq, y->bq, T, C, HD);
    lmio__matmul_nk(w->k, w->h, y->wk, y->bk, T, C, GD);
    lmio__matmul_nk(w->v, w->h, y->wv, y->bv, T, C, GD);
    rope(m, w->q, T, m->H, pos0, w->cs);
    rope(m, w->k, T, m->G, pos0, w->cs);
    for (size_t t = 0; t < T; t++) {
        memcpy(kc + (pos0 + t) * row, w->k + t * GD, GD * sizeof(float));
        memcpy(vc + (pos0 + t) * row, w->v + t * GD, GD * sizeof(float));
    }
    lmio__attn_io io = {w->a, w->q, kc, vc, HD, HD, row};
    lmio__attention(&io, T, pos0, m->H, m->G, m->D, (float)(1.0 / sqrt((double)m->D)), w->scores);
    lmio__matmul_nk(w->h, w->a, y->wo, y->bo, T, HD, C);
    for (size_t i = 0; i < T * C; i++) w->x[i] += w->h[i];
}

// x (T, C) += down(act(gate(norm(x))) * up(norm(x)))
static void mlp_block(const llama *m, size_t l, work *w, size_t T)
{
    const layer *y = &m->layers[l];
    size_t C = m->C, I = m->I;
    lmio__rmsnorm(w->h, w->x, y->ffn_norm, T, C, m->eps);
    lmio__matmul_nk(w->gate, w->h, y->w_gate, y->b_gate, T, C, I);
    lmio__matmul_nk(w->up, w->h, y->w_up, y->b_up, T, C, I);
    for (size_t i = 0; i < T * I; i++) w->gate[i] = lmio__act_apply(m->act, w->gate[i]) * w->up[i];
    lmio__matmul_nk(w->h, w->gate, y->w_down, y->b_down, T, I, C);
    for (size_t i = 0; i < T * C; i++) w->x[i] += w->h[i];
}

/* One forward call: its inputs and the buffers allocated for it. */
typedef struct run {
    llama *m;
    const int32_t *ids;
    size_t T, pos0, n_logits;
    float *logits;
    work w;
} run;

/* The computation alone: reads weights (perhaps mapped) and writes the
 * buffers and cache, allocating nothing, so it runs guarded. */
static void llama_compute(void *ctx)
{
    run *r = ctx;
    llama *m = r->m;
    size_t C = m->C, T = r->T;
    // x (T, C) = embed[ids]
    for (size_t t = 0; t < T; t++) memcpy(r->w.x + t * C, m->embed + (size_t)r->ids[t] * C, C * sizeof(float));
    for (size_t l = 0; l < m->L; l++) {
        attention_block(m, l, &r->w, T, r->pos0);
        mlp_block(m, l, &r->w, T);
    }
    lmio__rmsnorm(r->w.h, r->w.x + (T - r->n_logits) * C, m->norm, r->n_logits, C, m->eps);
    // logits (n_logits, V) = h @ lm_head^T (lm_head is the embedding when tied)
    lmio__matmul_nk(r->logits, r->w.h, m->lm_head, NULL, r->n_logits, C, m->V);
}

/* Runs T tokens at positions pos0.. through the model, filling the cache, and
 * writes logits for the last n_logits of them. */
static lmio_status llama_forward(void *model, const int32_t *ids, size_t T, size_t pos0, float *logits,
                                 size_t n_logits, lmio_error *err)
{
    llama *m = model;
    run r = {m, ids, T, pos0, n_logits, logits, {0}};
    lmio_status s = lmio__check_run(ids, T, pos0, m->V, m->P, "max_position_embeddings", err);
    if (!s) s = lmio__kv_reserve(&m->cache, pos0 + T, err);
    if (!s) s = work_alloc(m, T, pos0 + T, &r.w, err);
    if (s) return s;
    s = lmio__arch_compute(m->weights, llama_compute, &r, err);
    work_free(&r.w);
    return s;
}

/* ---- training: forward keeping activations, backward ----
 * Shapes: B sequences of T tokens, N = B * T rows, HD = H * D, GD = G * D.
 * Every sum runs in a fixed order (threads split independent outputs), so
 * a step gives the same bits whatever the thread count. */

static lmio_status llama_dims(const lmio_config *cfg, uint64_t *dims, size_t *n_layer, lmio_error *err)
{
    llama m = {0};
    int tie = 0;
    lmio_status s = read_config(&m, cfg, &tie, err);
    if (s) return s;
    dims[D_V] = m.V;
    dims[D_C] = m.C;
    dims[D_I] = m.I;
    dims[D_HD] = (uint64_t)m.H * m.D;
    dims[D_GD] = (uint64_t)m.G * m.D;
    *n_layer = m.L;
    return LMIO_OK;
}

/* LlamaPreTrainedModel._init_weights: normal(0, initializer_range) for
 * linear and embedding weights (the padding_idx row zero), RMSNorm weights
 * 1, biases 0. */
static void llama_init(const lmio_config *cfg, const lmio__tensor_spec *ts, float *data, size_t n, uint64_t *rng)
{
    double std = 0.02;
    lmio_config_get_float(cfg, "initializer_range", &std, NULL);
    size_t len = strlen(ts->hf_name);
    bool bias = len >= 5 && !strcmp(ts->hf_name + len - 5, ".bias");
    if (bias || ts->ndim == 1) { /* the 1-d weights are the RMSNorms' */
        for (size_t i = 0; i < n; i++) data[i] = bias ? 0.0f : 1.0f;
        return;
    }
    for (size_t i = 0; i < n; i++) data[i] = (float)(std * lmio__normal(rng));
    int64_t pad, V;
    if (!strcmp(ts->hf_name, "model.embed_tokens.weight") &&
        lmio_config_get_int(cfg, "pad_token_id", &pad, NULL) == LMIO_OK &&
        lmio_config_get_int(cfg, "vocab_size", &V, NULL) == LMIO_OK && pad >= 0 && pad < V && V > 0)
        memset(data + (size_t)pad * (n / (size_t)V), 0, n / (size_t)V * sizeof *data);
}

/* Everything the backward pass reads, from one allocation. */
typedef struct acts {
    float *resid;            /* (L+1, N, C): entering each layer; [L] enters the final norm */
    float *resid2;           /* (L, N, C): after the attention residual */
    float *ln1, *ln2;        /* (L, N, C) RMSNorm outputs */
    float *q, *k, *v;        /* (L, N, HD), (L, N, GD) x2: q and k after the rotation */
    float *att;              /* (L, B, H, T, T) softmax probabilities */
    float *atty;             /* (L, N, HD) attention output before o_proj */
    float *gate, *up, *hid;  /* (L, N, I): gate before the activation, up, act(gate) * up */
    float *lnf;              /* (N, C) */
    float *probs;            /* (N, V): softmax, then dlogits */
    float *dres, *dln;       /* backward scratch (N, C) */
    float *dq, *dk, *dv;     /* (N, HD), (N, GD), (N, GD) */
    float *dgate, *dup;      /* (N, I); dgate first holds d(hid), and d(atty) (N, HD) when I < HD */
    float *dp;               /* (B, H, T) */
    float *cs;               /* (T, D): cos then sin of each position's D/2 angles */
    float *base;
} acts;

static bool acts_alloc(acts *a, const llama *m, size_t B, size_t T)
{
    size_t N = B * T, L = m->L, C = m->C, I = m->I, HD = m->H * m->D, GD = m->G * m->D;
    size_t big = I > HD ? I : HD;
    /* (count, floats per count) of each array, in the order of the struct */
    size_t parts[][2] = {{L + 1, N * C}, {L, N * C},  {L, N * C},     {L, N * C},  {L, N * HD}, {L, N * GD},
                         {L, N * GD},    {L * B * m->H, T * T}, {L, N * HD}, {L, N * I}, {L, N * I},
                         {L, N * I},     {1, N * C},  {1, N * m->V},  {1, N * C},  {1, N * C},  {1, N * HD},
                         {1, N * GD},    {1, N * GD}, {1, N * big},   {1, N * I},  {B * m->H, T}, {1, T * m->D}};
    float **dst[] = {&a->resid, &a->resid2, &a->ln1, &a->ln2, &a->q, &a->k, &a->v, &a->att, &a->atty,
                     &a->gate, &a->up, &a->hid, &a->lnf, &a->probs, &a->dres, &a->dln, &a->dq, &a->dk,
                     &a->dv, &a->dgate, &a->dup, &a->dp, &a->cs};
    size_t total = 0, k;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (__builtin_mul_overflow(parts[i][0], parts[i][1], &k) || __builtin_add_overflow(total, k, &total))
            return false;
    if (__builtin_mul_overflow(total, sizeof(float), &k) || !(a->base = lmio__malloc(k))) return false;
    float *p = a->base;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        *dst[i] = p;
        p += parts[i][0] * parts[i][1];
    }
    return true;
}

// x (N, n*D) rotated as rope() does, row r at position r % T (cs from
// rope_table); inverse: the transposed rotation, which carries a gradient
// of the rotated values back to the values before it
static void rope_rows(const llama *m, float *x, size_t N, size_t T, size_t n, const float *cs, bool inverse)
{
    size_t D = m->D, half = D / 2;
    float sign = inverse ? -1.0f : 1.0f;
    for (size_t r = 0; r < N; r++) {
        const float *c = cs + (r % T) * D, *sn = c + half;
        for (size_t h = 0; h < n; h++) {
            float *v = x + (r * n + h) * D;
            for (size_t i = 0; i < half; i++) {
                float x1 = v[i], x2 = v[i + half], s = sign * sn[i];
                v[i] = x1 * c[i] - x2 * s;
                v[i + half] = x2 * c[i] + x1 * s;
            }
        }
    }
}

static void rope_table(const llama *m, float *cs, size_t T)
{
    size_t D = m->D, half = D / 2;
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < half; i++) {
            float angle = (float)t * m->inv_freq[i]; /* as rope() */
            cs[t * D + i] = cosf(angle);
            cs[t * D + half + i] = sinf(angle);
        }
}

// y (N, HD) = causal grouped-query attention within each sequence; att
// (B, H, T, T) keeps the probabilities
static void attention_train(const llama *m, float *y, float *att, const float *q, const float *k, const float *v,
                            size_t B, size_t T)
{
    size_t H = m->H, D = m->D, HD = H * D, GD = m->G * D, group = H / m->G;
    float scale = (float)(1.0 / sqrt((double)D)); /* as the forward pass */
#pragma omp parallel for schedule(static)
    for (size_t bh = 0; bh < B * H; bh++) {
        size_t b = bh / H, h = bh % H, kvh = (h / group) * D;
        for (size_t t = 0; t < T; t++) {
            const float *qt = q + (b * T + t) * HD + h * D;
            float *p = att + (bh * T + t) * T, mx = -INFINITY, sum = 0;
            for (size_t s = 0; s <= t; s++) {
                const float *ks = k + (b * T + s) * GD + kvh;
                float acc = 0;
                for (size_t d = 0; d < D; d++) acc += qt[d] * ks[d];
                p[s] = acc * scale;
                if (p[s] > mx) mx = p[s];
            }
            for (size_t s = 0; s <= t; s++) sum += p[s] = expf(p[s] - mx);
            for (size_t s = 0; s <= t; s++) p[s] /= sum;
            for (size_t s = t + 1; s < T; s++) p[s] = 0;
            float *o = y + (b * T + t) * HD + h * D;
            for (size_t d = 0; d < D; d++) o[d] = 0;
            for (size_t s = 0; s <= t; s++) {
                const float *vs = v + (b * T + s) * GD + kvh;
                for (size_t d = 0; d < D; d++) o[d] += p[s] * vs[d];
            }
        }
    }
}

// dq, dk, dv = attention backward of dy (N, HD). A thread owns a (sequence,
// key/value head) and runs its query heads in order, so the gradients of
// the shared key and value heads gather in a fixed order.
static void attention_bwd(const llama *m, acts *a, const float *dy, const float *q, const float *k, const float *v,
                          const float *att, size_t B, size_t T)
{
    size_t H = m->H, G = m->G, D = m->D, HD = H * D, GD = G * D, group = H / G, N = B * T;
    float scale = (float)(1.0 / sqrt((double)D));
    memset(a->dq, 0, N * HD * sizeof(float));
    memset(a->dk, 0, N * GD * sizeof(float));
    memset(a->dv, 0, N * GD * sizeof(float));
#pragma omp parallel for schedule(static)
    for (size_t bg = 0; bg < B * G; bg++) {
        size_t b = bg / G, kvh = (bg % G) * D;
        for (size_t h = (bg % G) * group; h < (bg % G + 1) * group; h++) {
            size_t bh = b * H + h;
            float *dp = a->dp + bh * T;
            for (size_t t = 0; t < T; t++) {
                const float *p = att + (bh * T + t) * T, *d = dy + (b * T + t) * HD + h * D;
                const float *qt = q + (b * T + t) * HD + h * D;
                float *dq = a->dq + (b * T + t) * HD + h * D, dot = 0;
                for (size_t s = 0; s <= t; s++) {
                    const float *vs = v + (b * T + s) * GD + kvh;
                    float acc = 0;
                    for (size_t j = 0; j < D; j++) acc += d[j] * vs[j];
                    dp[s] = acc;
                    dot += p[s] * acc;
                }
                for (size_t s = 0; s <= t; s++) {
                    const float *ks = k + (b * T + s) * GD + kvh;
                    float *dk = a->dk + (b * T + s) * GD + kvh, *dv = a->dv + (b * T + s) * GD + kvh;
                    float ds = p[s] * (dp[s] - dot) * scale;
                    for (size_t j = 0; j < D; j++) {
                        dq[j] += ds * ks[j];
                        dk[j] += ds * qt[j];
                        dv[j] += p[s] * d[j];
                    }
                }
            }
        }
    }
}

static void forward_train(const llama *m, acts *a, const int32_t *ids, size_t B, size_t T)
{
    size_t N = B * T, C = m->C, I = m->I, HD = m->H * m->D, GD = m->G * m->D;
    for (size_t n = 0; n < N; n++) memcpy(a->resid + n * C, m->embed + (size_t)ids[n] * C, C * sizeof(float));
    rope_table(m, a->cs, T);
    for (size_t l = 0; l < m->L; l++) {
        const layer *y = &m->layers[l];
        float *x = a->resid + l * N * C, *x2 = a->resid2 + l * N * C, *out = a->resid + (l + 1) * N * C;
        float *ln1 = a->ln1 + l * N * C, *ln2 = a->ln2 + l * N * C;
        float *q = a->q + l * N * HD, *k = a->k + l * N * GD, *v = a->v + l * N * GD, *atty = a->atty + l * N * HD;
        float *gate = a->gate + l * N * I, *up = a->up + l * N * I, *hid = a->hid + l * N * I;
        lmio__rmsnorm(ln1, x, y->attn_norm, N, C, m->eps);
        lmio__matmul_nk(q, ln1, y->wq, y->bq, N, C, HD);
        lmio__matmul_nk(k, ln1, y->wk, y->bk, N, C, GD);
        lmio__matmul_nk(v, ln1, y->wv, y->bv, N, C, GD);
        rope_rows(m, q, N, T, m->H, a->cs, false);
        rope_rows(m, k, N, T, m->G, a->cs, false);
        attention_train(m, atty, a->att + l * B * m->H * T * T, q, k, v, B, T);
        lmio__matmul_nk(x2, atty, y->wo, y->bo, N, HD, C);
        for (size_t i = 0; i < N * C; i++) x2[i] += x[i];
        lmio__rmsnorm(ln2, x2, y->ffn_norm, N, C, m->eps);
        lmio__matmul_nk(gate, ln2, y->w_gate, y->b_gate, N, C, I);
        lmio__matmul_nk(up, ln2, y->w_up, y->b_up, N, C, I);
        for (size_t i = 0; i < N * I; i++) hid[i] = lmio__act_apply(m->act, gate[i]) * up[i];
        lmio__matmul_nk(out, hid, y->w_down, y->b_down, N, I, C);
        for (size_t i = 0; i < N * C; i++) out[i] += x2[i];
    }
    lmio__rmsnorm(a->lnf, a->resid + m->L * N * C, m->norm, N, C, m->eps);
}

// logits (N, V) into a->probs, then softmax in place; returns the summed
// loss over counted targets (*count of them)
static double logits_loss(const llama *m, acts *a, const int32_t *targets, size_t N, size_t *count)
{
    size_t V = m->V;
    lmio__matmul_nk(a->probs, a->lnf, m->lm_head, NULL, N, m->C, V);
    return lmio__softmax_loss(a->probs, targets, N, V, count);
}

#define W(p) ((float *)(p)) /* gradient buffers are bound const; they are ours to write */

/* The MLP block backward: a->dres holds d(resid[l+1]), becomes d(resid2[l]). */
static void mlp_bwd(const llama *m, llama *g, acts *a, size_t l, size_t N)
{
    size_t C = m->C, I = m->I;
    const layer *y = &m->layers[l];
    layer *gy = &g->layers[l];
    const float *gate = a->gate + l * N * I, *up = a->up + l * N * I;
    memset(a->dgate, 0, N * I * sizeof(float));
    lmio__matmul_nk_bwd(a->dgate, W(gy->w_down), W(gy->b_down), a->hid + l * N * I, a->dres, y->w_down, N, I, C);
    // hid = act(gate) * up
    for (size_t i = 0; i < N * I; i++) {
        float dh = a->dgate[i];
        a->dup[i] = dh * lmio__act_apply(m->act, gate[i]);
        a->dgate[i] = dh * up[i] * lmio__act_grad(m->act, gate[i]);
    }
    const float *ln2 = a->ln2 + l * N * C;
    memset(a->dln, 0, N * C * sizeof(float));
    lmio__matmul_nk_bwd(a->dln, W(gy->w_gate), W(gy->b_gate), ln2, a->dgate, y->w_gate, N, C, I);
    lmio__matmul_nk_bwd(a->dln, W(gy->w_up), W(gy->b_up), ln2, a->dup, y->w_up, N, C, I);
    lmio__rmsnorm_bwd(a->dres, W(gy->ffn_norm), a->dln, a->resid2 + l * N * C, y->ffn_norm, N, C, m->eps);
}

/* The attention block backward: a->dres holds d(resid2[l]), becomes d(resid[l]). */
static void attn_bwd(const llama *m, llama *g, acts *a, size_t l, size_t B, size_t T)
{
    size_t N = B * T, C = m->C, HD = m->H * m->D, GD = m->G * m->D;
    const layer *y = &m->layers[l];
    layer *gy = &g->layers[l];
    float *datty = a->dgate; /* free again, and at least N * HD */
    memset(datty, 0, N * HD * sizeof(float));
    lmio__matmul_nk_bwd(datty, W(gy->wo), W(gy->bo), a->atty + l * N * HD, a->dres, y->wo, N, HD, C);
    const float *q = a->q + l * N * HD, *k = a->k + l * N * GD, *v = a->v + l * N * GD;
    attention_bwd(m, a, datty, q, k, v, a->att + l * B * m->H * T * T, B, T);
    rope_rows(m, a->dq, N, T, m->H, a->cs, true);
    rope_rows(m, a->dk, N, T, m->G, a->cs, true);
    const float *ln1 = a->ln1 + l * N * C;
    memset(a->dln, 0, N * C * sizeof(float));
    lmio__matmul_nk_bwd(a->dln, W(gy->wq), W(gy->bq), ln1, a->dq, y->wq, N, C, HD);
    lmio__matmul_nk_bwd(a->dln, W(gy->wk), W(gy->bk), ln1, a->dk, y->wk, N, C, GD);
    lmio__matmul_nk_bwd(a->dln, W(gy->wv), W(gy->bv), ln1, a->dv, y->wv, N, C, GD);
    lmio__rmsnorm_bwd(a->dres, W(gy->attn_norm), a->dln, a->resid + l * N * C, y->attn_norm, N, C, m->eps);
}

static void backward_all(const llama *m, llama *g, acts *a, const int32_t *ids, const int32_t *targets, size_t B,
                         size_t T, size_t count)
{
    size_t N = B * T, C = m->C, V = m->V;
    lmio__softmax_loss_grad(a->probs, targets, N, V, count); // dlogits
    memset(a->dln, 0, N * C * sizeof(float));
    lmio__matmul_nk_bwd(a->dln, W(g->lm_head), NULL, a->lnf, a->probs, m->lm_head, N, C, V);
    memset(a->dres, 0, N * C * sizeof(float));
    lmio__rmsnorm_bwd(a->dres, W(g->norm), a->dln, a->resid + m->L * N * C, m->norm, N, C, m->eps);
    for (size_t l = m->L; l-- > 0;) {
        mlp_bwd(m, g, a, l, N);
        attn_bwd(m, g, a, l, B, T);
    }
    for (size_t n = 0; n < N; n++) {
        if (ids[n] == m->pad) continue; /* nn.Embedding's padding_idx gets no gradient */
        float *row = W(g->embed) + (size_t)ids[n] * C;
        for (size_t i = 0; i < C; i++) row[i] += a->dres[n * C + i];
    }
}
#undef W

static lmio_status llama_backward(void *model, void *grads, const int32_t *ids, const int32_t *targets, size_t B,
                                  size_t T, float *loss, lmio_error *err)
{
    const llama *m = model;
    llama *g = grads;
    lmio_status s = lmio__check_batch(ids, targets, B, T, m->V, m->P, err);
    if (s) return s;
    acts a;
    if (!acts_alloc(&a, m, B, T))
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for the activations of %zu x %zu tokens", B, T);
    forward_train(m, &a, ids, B, T);
    size_t count;
    double total = logits_loss(m, &a, targets, B * T, &count);
    if (!count) s = lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "no target to learn; expected at least one >= 0");
    else {
        backward_all(m, g, &a, ids, targets, B, T, count);
        *loss = (float)(total / (double)count);
    }
    lmio__free(a.base);
    return s;
}

/* ---- the ONNX graph: the same forward pass as ONNX nodes ---- */

/* The weight pattern names for layer (NULL when absent: the graph fails). */
static const char *onnx_weight(lmio__onnx *g, const lmio_statedict *w, const char *pattern, size_t l)
{
    char name[256];
    lmio_tensor t;
    if (!lmio__tensor_name(pattern, l, name, sizeof name) || lmio_tensor_find(w, name, &t, NULL))
        return lmio__onnx_weight(g, NULL);
    return lmio__onnx_weight(g, &t);
}

// (B, T, out) = x (B, T, in) @ weight^T (+ bias): nn.Linear's (out, in)
// layout; onnxruntime folds the weight's Transpose once at load
static const char *onnx_linear(lmio__onnx *g, const lmio_statedict *w, const char *x, const char *which, size_t l,
                               bool bias)
{
    char wn[96], bn[96];
    snprintf(wn, sizeof wn, "%s.weight", which);
    snprintf(bn, sizeof bn, "%s.bias", which);
    const char *wt = LMIO__ONNX_OP(g, "Transpose", onnx_weight(g, w, wn, l));
    lmio__onnx_attr_ints(g, "perm", (const int64_t[]){1, 0}, 2);
    const char *y = LMIO__ONNX_OP(g, "MatMul", x, wt);
    return bias ? LMIO__ONNX_OP(g, "Add", y, onnx_weight(g, w, bn, l)) : y;
}

// w * (x * 1 / sqrt(mean(x^2) + eps)) over the last axis, in lmio__rmsnorm's
// order (opset 20 has no RMSNormalization)
static const char *onnx_rmsnorm(lmio__onnx *g, const char *x, const char *weight, float eps)
{
    const int64_t one = 1, last = -1;
    const char *ms = LMIO__ONNX_OP(g, "ReduceMean", LMIO__ONNX_OP(g, "Mul", x, x), lmio__onnx_const_i64(g, &last, 1, &one));
    lmio__onnx_attr_int(g, "keepdims", 1);
    const char *rstd = LMIO__ONNX_OP(g, "Reciprocal",
                                     LMIO__ONNX_OP(g, "Sqrt", LMIO__ONNX_OP(g, "Add", ms, lmio__onnx_const_f32(g, eps))));
    return LMIO__ONNX_OP(g, "Mul", weight, LMIO__ONNX_OP(g, "Mul", x, rstd));
}


static const char *onnx_reshape(lmio__onnx *g, const char *x, int64_t a, int64_t b, int64_t c, int64_t d)
{
    const int64_t four = 4, shape[] = {a, b, c, d};
    return LMIO__ONNX_OP(g, "Reshape", x, lmio__onnx_const_i64(g, shape, 1, &four));
}

/* cos and sin of every position's rotary angles, (P, D) each with the
 * D/2 frequencies twice over (rotate_half's halves), as rope() computes
 * them: onnxruntime gathers them by position_ids instead of taking its own
 * cos and sin. */
typedef struct onnx_rope {
    const char *cos, *sin; /* (B, 1, T, D) for the tokens of this call */
} onnx_rope;

static lmio_status onnx_rope_tables(const llama *m, lmio__onnx_decoder *d, onnx_rope *r, lmio_error *err)
{
    lmio__onnx *g = d->g;
    size_t D = m->D, half = D / 2;
    if (m->P > SIZE_MAX / sizeof(float) / 2 / D)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, "", -1, "max_position_embeddings",
                          "max_position_embeddings %zu is too large for rotary tables", m->P);
    float *cs = lmio__malloc(2 * m->P * D * sizeof *cs), *sn = cs + m->P * D;
    if (!cs) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for the rotary tables");
    for (size_t p = 0; p < m->P; p++)
        for (size_t i = 0; i < half; i++) {
            float angle = (float)p * m->inv_freq[i];
            cs[p * D + i] = cs[p * D + i + half] = cosf(angle);
            sn[p * D + i] = sn[p * D + i + half] = sinf(angle);
        }
    const int64_t dims[] = {(int64_t)m->P, (int64_t)D}, one = 1, axis = 1;
    const char *tab[2] = {lmio__onnx_const_f32s(g, cs, 2, dims), lmio__onnx_const_f32s(g, sn, 2, dims)};
    lmio__free(cs);
    for (int i = 0; i < 2; i++) // (B, T, D) -> (B, 1, T, D): one row for all heads
        tab[i] = LMIO__ONNX_OP(g, "Unsqueeze", LMIO__ONNX_OP(g, "Gather", tab[i], d->position_ids),
                               lmio__onnx_const_i64(g, &axis, 1, &one));
    r->cos = tab[0];
    r->sin = tab[1];
    return LMIO_OK;
}

// x (B, n, T, D) rotated: x * cos + rotate_half(x) * sin, where
// rotate_half(x1, x2) = (-x2, x1)
static const char *onnx_rotate(lmio__onnx *g, const onnx_rope *r, const char *x)
{
    const char *h[2];
    lmio__onnx_node(g, "Split", (const char *const[]){x}, 1, h, 2);
    lmio__onnx_attr_int(g, "axis", -1);
    lmio__onnx_attr_int(g, "num_outputs", 2);
    const char *rot = LMIO__ONNX_OP(g, "Concat", LMIO__ONNX_OP(g, "Neg", h[1]), h[0]);
    lmio__onnx_attr_int(g, "axis", -1);
    return LMIO__ONNX_OP(g, "Add", LMIO__ONNX_OP(g, "Mul", x, r->cos), LMIO__ONNX_OP(g, "Mul", rot, r->sin));
}

// (B, T, C) attention output of layer l for its normed input a (B, T, C).
// Grouped-query attention without copying keys: the R = H/G query heads
// of a group are consecutive, so (B, H, T, D) reshapes to (B, G, R*T, D)
// and multiplies the group's (B, G, S, D) keys and values directly.
static const char *onnx_attention(const llama *m, lmio__onnx_decoder *d, const onnx_rope *r,
                                  const lmio_statedict *w, const char *a, size_t l, bool ab)
{
    lmio__onnx *g = d->g;
    int64_t H = (int64_t)m->H, G = (int64_t)m->G, D = (int64_t)m->D;
    const char *q = onnx_linear(g, w, a, "model.layers.{L}.self_attn.q_proj", l, ab);
    const char *k = onnx_linear(g, w, a, "model.layers.{L}.self_attn.k_proj", l, ab);
    const char *v = onnx_linear(g, w, a, "model.layers.{L}.self_attn.v_proj", l, ab);
    q = onnx_rotate(g, r, lmio__onnx_transpose4(g, onnx_reshape(g, q, 0, 0, H, D), 0, 2, 1, 3)); // (B, H, T, D)
    k = onnx_rotate(g, r, lmio__onnx_transpose4(g, onnx_reshape(g, k, 0, 0, G, D), 0, 2, 1, 3)); // (B, G, T, D)
    v = lmio__onnx_transpose4(g, onnx_reshape(g, v, 0, 0, G, D), 0, 2, 1, 3);
    const char *K = lmio__onnx_decoder_cache(d, l, false, k); // (B, G, S, D)
    const char *V = lmio__onnx_decoder_cache(d, l, true, v);
    const char *s = LMIO__ONNX_OP(g, "MatMul", onnx_reshape(g, q, 0, G, -1, D), lmio__onnx_transpose4(g, K, 0, 1, 3, 2));
    s = onnx_reshape(g, s, 0, H, -1, 0); // (B, G, R*T, S) -> (B, H, T, S)
    s = LMIO__ONNX_OP(g, "Mul", s, lmio__onnx_const_f32(g, (float)(1.0 / sqrt((double)m->D))));
    // the lowest float, as Transformers fills masked scores, so a padding
    // query's row still sums to 1
    s = LMIO__ONNX_OP(g, "Where", d->mask, s, lmio__onnx_const_f32(g, -FLT_MAX));
    const char *p = LMIO__ONNX_OP(g, "Softmax", s);
    lmio__onnx_attr_int(g, "axis", -1);
    const char *o = LMIO__ONNX_OP(g, "MatMul", onnx_reshape(g, p, 0, G, -1, 0), V); // (B, G, R*T, D)
    o = lmio__onnx_transpose4(g, onnx_reshape(g, o, 0, H, -1, D), 0, 2, 1, 3);              // (B, T, H, D)
    const int64_t three = 3, merged[] = {0, 0, H * D};
    o = LMIO__ONNX_OP(g, "Reshape", o, lmio__onnx_const_i64(g, merged, 1, &three));
    return onnx_linear(g, w, o, "model.layers.{L}.self_attn.o_proj", l, ab);
}

// (B, T, C) = down(act(gate(a)) * up(a))
static const char *onnx_mlp(const llama *m, lmio__onnx *g, const lmio_statedict *w, const char *a, size_t l, bool mb)
{
    const char *gate = lmio__onnx_act(g, m->act, onnx_linear(g, w, a, "model.layers.{L}.mlp.gate_proj", l, mb));
    const char *up = onnx_linear(g, w, a, "model.layers.{L}.mlp.up_proj", l, mb);
    return onnx_linear(g, w, LMIO__ONNX_OP(g, "Mul", gate, up), "model.layers.{L}.mlp.down_proj", l, mb);
}

static lmio_status llama_onnx(const lmio_config *cfg, const lmio_statedict *w, lmio__onnx *g, lmio_error *err)
{
    llama m = {0};
    int tie = 0, ab = 0, mb = 0;
    lmio_status s = read_config(&m, cfg, &tie, err);
    uint64_t dims[N_DIMS] = {[D_V] = m.V, [D_C] = m.C, [D_I] = m.I, [D_HD] = (uint64_t)m.H * m.D,
                             [D_GD] = (uint64_t)m.G * m.D};
    lmio__binding b = {&lmio__arch_llama, w, dims, m.L, tie != 0, cfg};
    if (!s) s = lmio__arch_bind(&b, NULL, NULL, NULL, err);
    if (!s) s = read_rope(&m, cfg, err);
    if (!s) s = lmio_config_get_bool(cfg, "attention_bias", &ab, err);
    if (!s) s = lmio_config_get_bool(cfg, "mlp_bias", &mb, err);
    lmio__onnx_decoder d;
    onnx_rope r;
    if (!s) {
        lmio__onnx_decoder_begin(&d, g, m.L, m.G, m.D);
        lmio__onnx_scope(g, "rope");
        s = onnx_rope_tables(&m, &d, &r, err);
    }
    lmio__free(m.inv_freq);
    if (s) return s;
    const char *embed = onnx_weight(g, w, "model.embed_tokens.weight", 0);
    const char *x = LMIO__ONNX_OP(g, "Gather", embed, d.input_ids); // (B, T, C)
    for (size_t l = 0; l < m.L; l++) {
        char scope[32];
        snprintf(scope, sizeof scope, "layers.%zu", l);
        lmio__onnx_scope(g, scope);
        const char *a = onnx_rmsnorm(g, x, onnx_weight(g, w, "model.layers.{L}.input_layernorm.weight", l),
                                     m.eps);
        x = LMIO__ONNX_OP(g, "Add", x, onnx_attention(&m, &d, &r, w, a, l, ab != 0));
        a = onnx_rmsnorm(g, x, onnx_weight(g, w, "model.layers.{L}.post_attention_layernorm.weight", l), m.eps);
        x = LMIO__ONNX_OP(g, "Add", x, onnx_mlp(&m, g, w, a, l, mb != 0));
    }
    lmio__onnx_scope(g, NULL);
    x = onnx_rmsnorm(g, x, onnx_weight(g, w, "model.norm.weight", 0), m.eps);
    // logits (B, T, V) = x @ head^T (the embedding when tied)
    const char *head = tie ? embed : onnx_weight(g, w, "lm_head.weight", 0);
    const char *ht = LMIO__ONNX_OP(g, "Transpose", head);
    lmio__onnx_attr_ints(g, "perm", (const int64_t[]){1, 0}, 2);
    lmio__onnx_decoder_logits(&d, LMIO__ONNX_OP(g, "MatMul", x, ht), m.V);
    return LMIO_OK;
}

/* ---- TorchScript export: the forward pass above, for torch.jit.load ---- */

// torch.linear of module mod (a field of self), with its bias when it has one
static void ts_linear(lmio__buf *b, const char *out, const char *in, const char *mod, bool bias)
{
    lmio__buf_printf(b, "    %s = torch.linear(%s, self.%s.weight", out, in, mod);
    if (bias) lmio__buf_printf(b, ", self.%s.bias", mod);
    lmio__buf_printf(b, ")\n");
}

// one decoder layer: x (B, T, C) -> (B, T, C); mask (T, T) true above the
// diagonal; cos, sin (T, D) of each position's angles, as rotate_half pairs
static void ts_layer(lmio__buf *b, const llama *m, bool ab, bool mb)
{
    static const char *const k_act[][2] = {[LMIO__ACT_GELU_NEW] = {"torch.gelu(", ", approximate=\"tanh\")"},
                                           [LMIO__ACT_GELU] = {"torch.gelu(", ")"},
                                           [LMIO__ACT_RELU] = {"torch.relu(", ")"},
                                           [LMIO__ACT_SILU] = {"torch.silu(", ")"}};
    size_t H = m->H, G = m->G, D = m->D, half = D / 2;
    char eps[40], scale[40];
    lmio__py_float(eps, sizeof eps, m->eps);
    lmio__py_float(scale, sizeof scale, 1.0 / sqrt((double)D));
    /* RMSNorm as LlamaRMSNorm: the epsilon added in float32 */
    lmio__buf_printf(b, "  def forward(self, x: Tensor, mask: Tensor, cos: Tensor, sin: Tensor) -> Tensor:\n"
           "    B = x.size(0)\n    T = x.size(1)\n"
           "    h = self.input_layernorm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + %s))\n", eps);
    ts_linear(b, "q", "h", "self_attn.q_proj", ab);
    ts_linear(b, "k", "h", "self_attn.k_proj", ab);
    ts_linear(b, "v", "h", "self_attn.v_proj", ab);
    lmio__buf_printf(b, "    q = q.reshape([B, T, %zu, %zu]).transpose(1, 2)\n"
           "    k = k.reshape([B, T, %zu, %zu]).transpose(1, 2)\n"
           "    v = v.reshape([B, T, %zu, %zu]).transpose(1, 2)\n",
        H, D, G, D, G, D);
    /* rotate_half: (x1, x2) -> (-x2, x1) over the two halves of a head */
    lmio__buf_printf(b, "    q = q * cos + torch.cat([-q.narrow(3, %zu, %zu), q.narrow(3, 0, %zu)], 3) * sin\n"
           "    k = k * cos + torch.cat([-k.narrow(3, %zu, %zu), k.narrow(3, 0, %zu)], 3) * sin\n",
        half, half, half, half, half, half);
    if (H != G) /* each key/value head serves H/G consecutive query heads */
        lmio__buf_printf(b, "    k = k.repeat_interleave(%zu, 1)\n    v = v.repeat_interleave(%zu, 1)\n", H / G, H / G);
    lmio__buf_printf(b, "    att = torch.matmul(q, k.transpose(2, 3)) * %s\n"
           "    att = torch.softmax(att.masked_fill(mask, -3.4028234663852886e+38), -1)\n"
           "    y = torch.matmul(att, v).transpose(1, 2).reshape([B, T, %zu])\n",
        scale, H * D);
    ts_linear(b, "y", "y", "self_attn.o_proj", ab);
    lmio__buf_printf(b, "    x = x + y\n"
           "    h = self.post_attention_layernorm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + %s))\n",
        eps);
    ts_linear(b, "g", "h", "mlp.gate_proj", mb);
    ts_linear(b, "u", "h", "mlp.up_proj", mb);
    lmio__buf_printf(b, "    h = %sg%s * u\n", k_act[m->act][0], k_act[m->act][1]);
    ts_linear(b, "h", "h", "mlp.down_proj", mb);
    lmio__buf_printf(b, "    return x + h\n");
}

// ids (T) or (B, T) -> logits (T, V) or (B, T, V); the rotary frequencies
// in float32 in the order of Transformers' rope init functions
static void ts_root(lmio__buf *b, const llama *m, bool tied)
{
    char f[7][40];
    lmio__buf_printf(b, "  def forward(self, input_ids: Tensor) -> Tensor:\n"
           "    ids = input_ids\n    if input_ids.dim() == 1:\n      ids = input_ids.unsqueeze(0)\n"
           "    inv = torch.reciprocal(torch.pow(%s, torch.arange(0, %zu, 2, device=ids.device).float() / %zu))\n",
        lmio__py_float(f[0], sizeof f[0], m->theta), m->D, m->D);
    if (m->factor > 0) /* llama3: long wavelengths / factor, short kept, the band between interpolated */
        lmio__buf_printf(b, "    wavelen = torch.reciprocal(inv) * 6.2831853071795862\n"
               "    scaled = torch.where(wavelen > %s, inv / %s, inv)\n"
               "    smooth = (torch.reciprocal(wavelen) * %s - %s) / %s\n"
               "    smoothed = (1.0 - smooth) * scaled / %s + smooth * scaled\n"
               "    inv = torch.where((wavelen >= %s) & (wavelen <= %s), smoothed, scaled)\n",
            lmio__py_float(f[0], sizeof f[0], m->old / m->lo), lmio__py_float(f[1], sizeof f[1], m->factor),
            lmio__py_float(f[2], sizeof f[2], m->old), lmio__py_float(f[3], sizeof f[3], m->lo),
            lmio__py_float(f[4], sizeof f[4], m->hi - m->lo), f[1], lmio__py_float(f[5], sizeof f[5], m->old / m->hi), f[0]);
    lmio__buf_printf(b, "    pos = torch.arange(ids.size(1), device=ids.device)\n"
           "    mask = pos.unsqueeze(0) > pos.unsqueeze(1)\n"
           "    freqs = pos.float().unsqueeze(1) * inv.unsqueeze(0)\n"
           "    emb = torch.cat([freqs, freqs], -1)\n"
           "    cos = emb.cos()\n    sin = emb.sin()\n"
           "    t = self.model\n"
           "    x = torch.embedding(t.embed_tokens.weight, ids)\n");
    for (size_t l = 0; l < m->L; l++) lmio__buf_printf(b, "    x = getattr(t.layers, \"%zu\").forward(x, mask, cos, sin)\n", l);
    lmio__buf_printf(b, "    x = t.norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + %s))\n"
           "    logits = torch.linear(x, %s.weight)\n"
           "    if input_ids.dim() == 1:\n      logits = logits.squeeze(0)\n    return logits\n",
        lmio__py_float(f[0], sizeof f[0], m->eps), tied ? "t.embed_tokens" : "self.lm_head");
}

static lmio_status llama_torchscript(const lmio_config *cfg, const char *node, lmio__buf *code, lmio_error *err)
{
    llama m = {0};
    int tie = 0, ab = 0, mb = 0;
    lmio_status s = read_config(&m, cfg, &tie, err);
    if (!s) s = read_rope(&m, cfg, err);
    lmio__free(m.inv_freq);
    if (s) return s;
    if ((s = lmio_config_get_bool(cfg, "attention_bias", &ab, err)) ||
        (s = lmio_config_get_bool(cfg, "mlp_bias", &mb, err)))
        return s;
    if (!*node) ts_root(code, &m, tie != 0);
    else if (!strcmp(node, "model.layers.{L}")) ts_layer(code, &m, ab != 0, mb != 0);
    return LMIO_OK;
}
