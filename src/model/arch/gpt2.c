/* GPT-2: Transformers' GPT2LMHeadModel as an entry of the architecture
 * table (config defaults and aliases, the tensors with their names in
 * Transformers and llama.cpp, legacy buffers) and the reference forward pass
 * in fp32, read top to bottom: embeddings, n_layer blocks of (layernorm,
 * causal self-attention, residual, layernorm, MLP, residual), final
 * layernorm, logits against the (tied) embedding.
 * Shapes in comments: T tokens in this call, C = n_embd, H heads of D = C/H,
 * I = n_inner, V = vocab, S = positions so far (KV cache). Matches
 * Transformers' GPT2LMHeadModel (Conv1D weights are stored [in, out]). */
#include "../arch.h"
#include "../kernels.h"

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#define MODEL_TYPE "gpt2"

typedef struct layer {
    const float *ln_1_w, *ln_1_b;     /* (C) */
    const float *attn_w, *attn_b;     /* (C, 3C), (3C) */
    const float *proj_w, *proj_b;     /* (C, C), (C) */
    const float *ln_2_w, *ln_2_b;     /* (C) */
    const float *fc_w, *fc_b;         /* (C, I), (I) */
    const float *fc_proj_w, *fc_proj_b; /* (I, C), (C) */
} layer;

typedef struct gpt2 {
    size_t V, P, C, L, H, I;
    float eps;
    lmio__act act;
    bool scale_attn, scale_by_layer;
    const float *wte, *wpe, *ln_f_w, *ln_f_b, *lm_head; /* (V,C) (P,C) (C) (C) (V,C) */
    layer *layers;
    lmio__f32_pool owned; /* widened copies of non-f32 weights */
    lmio__kv_cache cache; /* rows of L * C */
    const lmio_statedict *weights; /* what f32 weights point into */
} gpt2;

/* ---- the table entry ---- */

/* The config values tensor shapes are stated in. */
enum { D_V, D_P, D_C, D_3C, D_I, N_DIMS };
static const char *const k_dim_names[N_DIMS] = {"vocab_size", "n_positions", "n_embd", "3 * n_embd", "n_inner"};

#define G(f) offsetof(gpt2, f)
#define Y(f) offsetof(layer, f)
#define PL LMIO__T_PER_LAYER
#define CONV (LMIO__T_PER_LAYER | LMIO__T_CONV1D)
/* In GPT2LMHeadModel's state-dict order; GGUF names from llama.cpp's
 * LLM_ARCH_GPT2 (shared/reference/gguf-llamacpp.md §2.2). */
static const lmio__tensor_spec k_tensors[] = {
    {"transformer.wte.weight", "token_embd.weight", 2, {D_V, D_C}, 0, NULL, G(wte), NULL},
    {"transformer.wpe.weight", "position_embd.weight", 2, {D_P, D_C}, 0, NULL, G(wpe), NULL},
    {"transformer.h.{L}.ln_1.weight", "blk.{L}.attn_norm.weight", 1, {D_C}, PL, NULL, Y(ln_1_w), NULL},
    {"transformer.h.{L}.ln_1.bias", "blk.{L}.attn_norm.bias", 1, {D_C}, PL, NULL, Y(ln_1_b), NULL},
    {"transformer.h.{L}.attn.c_attn.weight", "blk.{L}.attn_qkv.weight", 2, {D_C, D_3C}, CONV, NULL, Y(attn_w), NULL},
    {"transformer.h.{L}.attn.c_attn.bias", "blk.{L}.attn_qkv.bias", 1, {D_3C}, PL, NULL, Y(attn_b), NULL},
    {"transformer.h.{L}.attn.c_proj.weight", "blk.{L}.attn_output.weight", 2, {D_C, D_C}, CONV, NULL, Y(proj_w), NULL},
    {"transformer.h.{L}.attn.c_proj.bias", "blk.{L}.attn_output.bias", 1, {D_C}, PL, NULL, Y(proj_b), NULL},
    {"transformer.h.{L}.ln_2.weight", "blk.{L}.ffn_norm.weight", 1, {D_C}, PL, NULL, Y(ln_2_w), NULL},
    {"transformer.h.{L}.ln_2.bias", "blk.{L}.ffn_norm.bias", 1, {D_C}, PL, NULL, Y(ln_2_b), NULL},
    {"transformer.h.{L}.mlp.c_fc.weight", "blk.{L}.ffn_up.weight", 2, {D_C, D_I}, CONV, NULL, Y(fc_w), NULL},
    {"transformer.h.{L}.mlp.c_fc.bias", "blk.{L}.ffn_up.bias", 1, {D_I}, PL, NULL, Y(fc_b), NULL},
    {"transformer.h.{L}.mlp.c_proj.weight", "blk.{L}.ffn_down.weight", 2, {D_I, D_C}, CONV, NULL, Y(fc_proj_w), NULL},
    {"transformer.h.{L}.mlp.c_proj.bias", "blk.{L}.ffn_down.bias", 1, {D_C}, PL, NULL, Y(fc_proj_b), NULL},
    {"transformer.ln_f.weight", "output_norm.weight", 1, {D_C}, 0, NULL, G(ln_f_w), NULL},
    {"transformer.ln_f.bias", "output_norm.bias", 1, {D_C}, 0, NULL, G(ln_f_b), NULL},
    {"lm_head.weight", "output.weight", 2, {D_V, D_C}, LMIO__T_TIED, "transformer.wte.weight", G(lm_head), NULL},
};

/* GPT2Config's defaults (shared/reference/safetensors-hf.md §2.6). */
static const char k_defaults[] =
    "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], \"attn_pdrop\": 0.1,"
    " \"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, \"initializer_range\": 0.02,"
    " \"layer_norm_epsilon\": 1e-05, \"model_type\": \"" MODEL_TYPE "\", \"n_embd\": 768, \"n_head\": 12,"
    " \"n_inner\": null, \"n_layer\": 12, \"n_positions\": 1024, \"reorder_and_upcast_attn\": false,"
    " \"resid_pdrop\": 0.1, \"scale_attn_by_inverse_layer_idx\": false, \"scale_attn_weights\": true,"
    " \"summary_activation\": null, \"summary_first_dropout\": 0.1, \"summary_proj_to_labels\": true,"
    " \"summary_type\": \"cls_index\", \"summary_use_proj\": true, \"tie_word_embeddings\": true,"
    " \"use_cache\": true, \"vocab_size\": 50257}";

/* GPT2Config's attribute_map */
static const char *const k_aliases[][2] = {{"hidden_size", "n_embd"},
                                           {"max_position_embeddings", "n_positions"},
                                           {"num_attention_heads", "n_head"},
                                           {"num_hidden_layers", "n_layer"}};

/* The causal-mask buffers older Transformers saved (safetensors-hf.md §2.8) */
static const char *const k_dropped[] = {".attn.bias", ".attn.masked_bias", NULL};

/* llama.cpp's gpt2 hyperparameters (shared/reference/gguf-llamacpp.md §2.2) */
static const lmio__gguf_key k_gguf_keys[] = {
    {"context_length", "n_positions", 'u', NULL, 0},
    {"embedding_length", "n_embd", 'u', NULL, 0},
    {"block_count", "n_layer", 'u', NULL, 0},
    {"feed_forward_length", "n_inner", 'u', "n_embd", 4},
    {"attention.head_count", "n_head", 'u', NULL, 0},
    {"attention.layer_norm_epsilon", "layer_norm_epsilon", 'f', NULL, 0},
};

static lmio_status gpt2_create(const lmio_config *cfg, const lmio_statedict *w, void **out, lmio_error *err);
static lmio_status gpt2_forward(void *model, const int32_t *ids, size_t T, size_t pos0, float *logits,
                                size_t n_logits, lmio_error *err);
static void gpt2_free(void *model);
static size_t gpt2_vocab_size(const void *model) { return ((const gpt2 *)model)->V; }
static size_t gpt2_max_positions(const void *model) { return ((const gpt2 *)model)->P; }
static lmio_status gpt2_torchscript(const lmio_config *cfg, const char *node, lmio__buf *code, lmio_error *err);
static lmio_status gpt2_onnx(const lmio_config *cfg, const lmio_statedict *w, lmio__onnx *g, lmio_error *err);
static lmio_status gpt2_dims(const lmio_config *cfg, uint64_t *dims, size_t *n_layer, lmio_error *err);
static void gpt2_init(const lmio_config *cfg, const lmio__tensor_spec *ts, float *data, size_t n, uint64_t *rng);
static lmio_status gpt2_backward(void *model, void *grads, const int32_t *ids, const int32_t *targets, size_t B,
                                 size_t T, float *loss, lmio_error *err);

const lmio__arch lmio__arch_gpt2 = {
    .model_type = MODEL_TYPE,
    .hf_class = "GPT2LMHeadModel",
    .defaults_json = k_defaults,
    .aliases = k_aliases,
    .n_aliases = sizeof k_aliases / sizeof k_aliases[0],
    .tensors = k_tensors,
    .n_tensors = sizeof k_tensors / sizeof k_tensors[0],
    .dim_names = k_dim_names,
    .layers_key = "n_layer",
    .layer_size = sizeof(layer),
    .name_prefix = "transformer.",
    .dropped_suffixes = k_dropped,
    .create = gpt2_create,
    .forward = gpt2_forward,
    .free = gpt2_free,
    .vocab_size = gpt2_vocab_size,
    .max_positions = gpt2_max_positions,
    .gguf_keys = k_gguf_keys,
    .n_gguf_keys = sizeof k_gguf_keys / sizeof k_gguf_keys[0],
    .torchscript = gpt2_torchscript,
    .onnx_graph = gpt2_onnx,
    .dims = gpt2_dims,
    .n_dims = N_DIMS,
    .init = gpt2_init,
    .backward = gpt2_backward,
};

/* ---- building ---- */

static lmio_status read_config(gpt2 *m, const lmio_config *cfg, int *tie, lmio_error *err)
{
    lmio_status s;
    int64_t inner = 0;
    double eps;
    int sa = 1, sbl = 0;
    if ((s = lmio__cfg_size(cfg, "vocab_size", &m->V, err)) || (s = lmio__cfg_size(cfg, "n_positions", &m->P, err)) ||
        (s = lmio__cfg_size(cfg, "n_embd", &m->C, err)) || (s = lmio__cfg_size(cfg, "n_layer", &m->L, err)) ||
        (s = lmio__cfg_size(cfg, "n_head", &m->H, err)) ||
        (s = lmio_config_get_float(cfg, "layer_norm_epsilon", &eps, err)) ||
        (s = lmio__act_read(cfg, "activation_function", &m->act, err)) ||
        (s = lmio_config_get_bool(cfg, "tie_word_embeddings", tie, err)) ||
        (s = lmio_config_get_bool(cfg, "scale_attn_weights", &sa, err)) ||
        (s = lmio_config_get_bool(cfg, "scale_attn_by_inverse_layer_idx", &sbl, err)))
        return s;
    /* null or absent: 4 * n_embd, as GPT2MLP does; anything else must be a
     * size (n_inner -5 or 1e30 is an error, never quietly 4 * n_embd) */
    s = lmio_config_get_int(cfg, "n_inner", &inner, err);
    if (s == LMIO_ERR_NOT_FOUND) m->I = 4 * m->C;
    else if (s || (s = lmio__cfg_size(cfg, "n_inner", &m->I, err))) return s;
    m->eps = (float)eps;
    m->scale_attn = sa;
    m->scale_by_layer = sbl;
    if (m->C % m->H)
        return lmio__fail(err, LMIO_ERR_FORMAT, lmio__config_path(cfg), -1, "n_head",
                          "n_embd %zu is not divisible by n_head %zu", m->C, m->H);
    return LMIO_OK;
}

static lmio_status gpt2_create(const lmio_config *cfg, const lmio_statedict *w, void **out, lmio_error *err)
{
    gpt2 *m = lmio__calloc(1, sizeof *m);
    if (!m) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    int tie = 1;
    lmio_status s = read_config(m, cfg, &tie, err);
    m->weights = w;
    uint64_t dims[N_DIMS] = {[D_V] = m->V, [D_P] = m->P, [D_C] = m->C, [D_3C] = 3 * m->C, [D_I] = m->I};
    lmio__binding b = {&lmio__arch_gpt2, w, dims, m->L, tie != 0, cfg};
    void *layers = NULL;
    if (!s) s = lmio__arch_build(&b, m, &layers, &m->owned, err);
    m->layers = layers;
    m->cache.row = m->L * m->C;
    m->cache.max = m->P;
    if (s) {
        gpt2_free(m);
        return s;
    }
    *out = m;
    return LMIO_OK;
}

static void gpt2_free(void *model)
{
    gpt2 *m = model;
    if (!m) return;
    lmio__f32_pool_free(&m->owned);
    lmio__free(m->layers);
    lmio__kv_free(&m->cache);
    lmio__free(m);
}

/* ---- the forward pass ---- */

/* One forward call: its inputs and the buffers allocated for it. */
typedef struct run {
    gpt2 *m;
    const int32_t *ids;
    size_t T, pos0, n_logits;
    float *logits;
    float *x, *h, *buf, *a, *scores; /* (T, C) (T, C) (T, max(3C, I)) (T, C) (pos0 + T) */
} run;

/* The computation alone: reads weights (perhaps mapped) and writes the
 * buffers and cache, allocating nothing, so it runs guarded. */
static void gpt2_compute(void *ctx)
{
    const run *r = ctx;
    gpt2 *m = r->m;
    size_t T = r->T, pos0 = r->pos0, C = m->C, I = m->I, LC = m->L * C;
    float *x = r->x, *h = r->h, *buf = r->buf;
    // x (T, C) = wte[ids] + wpe[positions]
    for (size_t t = 0; t < T; t++)
        for (size_t i = 0; i < C; i++) x[t * C + i] = m->wte[(size_t)r->ids[t] * C + i] + m->wpe[(pos0 + t) * C + i];
    for (size_t l = 0; l < m->L; l++) {
        const layer *y = &m->layers[l];
        float *kc = m->cache.k + l * C, *vc = m->cache.v + l * C; // (S, C) rows LC apart
        lmio__layernorm(h, x, y->ln_1_w, y->ln_1_b, T, C, m->eps);
        lmio__matmul_kn(buf, h, y->attn_w, y->attn_b, T, C, 3 * C); // qkv (T, 3C)
        for (size_t t = 0; t < T; t++) {
            memcpy(kc + (pos0 + t) * LC, buf + t * 3 * C + C, C * sizeof(float));
            memcpy(vc + (pos0 + t) * LC, buf + t * 3 * C + 2 * C, C * sizeof(float));
        }
        float scale = m->scale_attn ? 1.0f / sqrtf((float)(C / m->H)) : 1.0f;
        if (m->scale_by_layer) scale /= (float)(l + 1);
        lmio__attn_io io = {r->a, buf, kc, vc, C, 3 * C, LC};
        lmio__attention(&io, T, pos0, m->H, m->H, C / m->H, scale, r->scores); // (T, C)
        lmio__matmul_kn(h, r->a, y->proj_w, y->proj_b, T, C, C);
        for (size_t i = 0; i < T * C; i++) x[i] += h[i];
        lmio__layernorm(h, x, y->ln_2_w, y->ln_2_b, T, C, m->eps);
        lmio__matmul_kn(buf, h, y->fc_w, y->fc_b, T, C, I); // (T, I)
        for (size_t i = 0; i < T * I; i++) buf[i] = lmio__act_apply(m->act, buf[i]);
        lmio__matmul_kn(h, buf, y->fc_proj_w, y->fc_proj_b, T, I, C);
        for (size_t i = 0; i < T * C; i++) x[i] += h[i];
    }
    lmio__layernorm(h, x + (T - r->n_logits) * C, m->ln_f_w, m->ln_f_b, r->n_logits, C, m->eps);
    // logits (n_logits, V) = h @ lm_head^T, lm_head (V, C) being the embedding when tied
    lmio__matmul_nk(r->logits, h, m->lm_head, NULL, r->n_logits, C, m->V);
}

/* Runs T tokens at positions pos0.. through the model, filling the cache, and
 * writes logits for the last n_logits of them. */
static lmio_status gpt2_forward(void *model, const int32_t *ids, size_t T, size_t pos0, float *logits,
                                size_t n_logits, lmio_error *err)
{
    gpt2 *m = model;
    size_t C = m->C, I = m->I;
    lmio_status s = lmio__check_run(ids, T, pos0, m->V, m->P, "n_positions", err);
    if (!s) s = lmio__kv_reserve(&m->cache, pos0 + T, err);
    if (s) return s;
    size_t big = 3 * C > I ? 3 * C : I;
    run r = {m, ids, T, pos0, n_logits, logits, lmio__malloc(T * C * sizeof(float)), lmio__malloc(T * C * sizeof(float)),
             lmio__malloc(T * big * sizeof(float)), lmio__malloc(T * C * sizeof(float)),
             lmio__malloc((pos0 + T) * sizeof(float))};
    if (!r.x || !r.h || !r.buf || !r.a || !r.scores)
        s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory in the forward pass");
    else
        s = lmio__arch_compute(m->weights, gpt2_compute, &r, err);
    lmio__free(r.x);
    lmio__free(r.h);
    lmio__free(r.buf);
    lmio__free(r.a);
    lmio__free(r.scores);
    return s;
}


/* ---- TorchScript export: the forward pass above, for torch.jit.load ---- */

// one block: x (B, T, C) -> (B, T, C); mask (T, T) is true above the diagonal
static void ts_block(lmio__buf *b, const gpt2 *m)
{
    static const char *const k_act[][2] = {[LMIO__ACT_GELU_NEW] = {"torch.gelu(", ", approximate=\"tanh\")"},
                                           [LMIO__ACT_GELU] = {"torch.gelu(", ")"},
                                           [LMIO__ACT_RELU] = {"torch.relu(", ")"},
                                           [LMIO__ACT_SILU] = {"torch.silu(", ")"}};
    size_t C = m->C, H = m->H, D = C / H;
    char eps[40];
    lmio__py_float(eps, sizeof eps, m->eps);
    lmio__buf_printf(b, "  def forward(self, x: Tensor, mask: Tensor, scale: float) -> Tensor:\n"
           "    B = x.size(0)\n    T = x.size(1)\n"
           "    h = torch.layer_norm(x, [%zu], self.ln_1.weight, self.ln_1.bias, %s)\n"
           "    qkv = torch.matmul(h, self.attn.c_attn.weight) + self.attn.c_attn.bias\n", C, eps);
    for (size_t i = 0; i < 3; i++)
        lmio__buf_printf(b, "    %c = qkv.narrow(2, %zu, %zu).reshape([B, T, %zu, %zu]).transpose(1, 2)\n", "qkv"[i], i * C, C, H, D);
    lmio__buf_printf(b, "    att = torch.matmul(q, k.transpose(2, 3)) * scale\n"
           "    att = torch.softmax(att.masked_fill(mask, -3.4028234663852886e+38), -1)\n"
           "    y = torch.matmul(att, v).transpose(1, 2).reshape([B, T, %zu])\n"
           "    x = x + (torch.matmul(y, self.attn.c_proj.weight) + self.attn.c_proj.bias)\n"
           "    h = torch.layer_norm(x, [%zu], self.ln_2.weight, self.ln_2.bias, %s)\n"
           "    h = %storch.matmul(h, self.mlp.c_fc.weight) + self.mlp.c_fc.bias%s\n"
           "    return x + (torch.matmul(h, self.mlp.c_proj.weight) + self.mlp.c_proj.bias)\n",
        C, C, eps, k_act[m->act][0], k_act[m->act][1]);
}

// ids (T) or (B, T) -> logits (T, V) or (B, T, V)
static void ts_root(lmio__buf *b, const gpt2 *m, bool tied)
{
    char f[40];
    lmio__buf_printf(b, "  def forward(self, input_ids: Tensor) -> Tensor:\n"
           "    ids = input_ids\n    if input_ids.dim() == 1:\n      ids = input_ids.unsqueeze(0)\n"
           "    pos = torch.arange(ids.size(1), device=ids.device)\n"
           "    mask = pos.unsqueeze(0) > pos.unsqueeze(1)\n"
           "    t = self.transformer\n"
           "    x = torch.embedding(t.wte.weight, ids) + torch.embedding(t.wpe.weight, pos)\n");
    for (size_t l = 0; l < m->L; l++) { /* the scale attention() uses */
        double scale = m->scale_attn ? 1.0 / sqrt((double)(m->C / m->H)) : 1.0;
        if (m->scale_by_layer) scale /= (double)(l + 1);
        lmio__buf_printf(b, "    x = getattr(t.h, \"%zu\").forward(x, mask, %s)\n", l, lmio__py_float(f, sizeof f, scale));
    }
    lmio__buf_printf(b, "    x = torch.layer_norm(x, [%zu], t.ln_f.weight, t.ln_f.bias, %s)\n"
           "    logits = torch.linear(x, %s.weight)\n"
           "    if input_ids.dim() == 1:\n      logits = logits.squeeze(0)\n    return logits\n",
        m->C, lmio__py_float(f, sizeof f, m->eps), tied ? "t.wte" : "self.lm_head");
}

static lmio_status gpt2_torchscript(const lmio_config *cfg, const char *node, lmio__buf *code, lmio_error *err)
{
    gpt2 m = {0};
    int tie = 1;
    lmio_status s = read_config(&m, cfg, &tie, err);
    if (s) return s;
    if (!*node) ts_root(code, &m, tie != 0);
    else if (!strcmp(node, "transformer.h.{L}")) ts_block(code, &m);
    return LMIO_OK;
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

// (B, T, C) layernorm of x with layer l's (or the final) weight and bias
static const char *onnx_layernorm(lmio__onnx *g, const lmio_statedict *w, const char *x, const char *which,
                                  size_t l, float eps)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", which);
    snprintf(bn, sizeof bn, "%s.bias", which);
    const char *y = LMIO__ONNX_OP(g, "LayerNormalization", x, onnx_weight(g, w, wn, l), onnx_weight(g, w, bn, l));
    lmio__onnx_attr_int(g, "axis", -1);
    lmio__onnx_attr_float(g, "epsilon", eps);
    return y;
}

// (B, T, N) = x (B, T, K) @ weight (K, N) + bias: Conv1D's layout, no transpose
static const char *onnx_conv1d(lmio__onnx *g, const lmio_statedict *w, const char *x, const char *which, size_t l)
{
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", which);
    snprintf(bn, sizeof bn, "%s.bias", which);
    return LMIO__ONNX_OP(g, "Add", LMIO__ONNX_OP(g, "MatMul", x, onnx_weight(g, w, wn, l)), onnx_weight(g, w, bn, l));
}


// (B, T, C) attention output of block l for its input a (B, T, C)
static const char *onnx_attention(const gpt2 *m, lmio__onnx_decoder *d, const lmio_statedict *w, const char *a,
                                  size_t l)
{
    lmio__onnx *g = d->g;
    size_t C = m->C, H = m->H, D = C / H;
    const int64_t four = 4, three = 3, heads[] = {0, 0, (int64_t)H, (int64_t)D}, merged[] = {0, 0, (int64_t)C};
    const char *qkv[3];
    lmio__onnx_node(g, "Split", (const char *const[]){onnx_conv1d(g, w, a, "transformer.h.{L}.attn.c_attn", l)}, 1,
                    qkv, 3);
    lmio__onnx_attr_int(g, "axis", 2);
    lmio__onnx_attr_int(g, "num_outputs", 3);
    const char *split_heads = lmio__onnx_const_i64(g, heads, 1, &four);
    for (int i = 0; i < 3; i++) // (B, T, C) -> (B, H, T, D)
        qkv[i] = lmio__onnx_transpose4(g, LMIO__ONNX_OP(g, "Reshape", qkv[i], split_heads), 0, 2, 1, 3);
    const char *K = lmio__onnx_decoder_cache(d, l, false, qkv[1]); // (B, H, S, D)
    const char *V = lmio__onnx_decoder_cache(d, l, true, qkv[2]);
    const char *s = LMIO__ONNX_OP(g, "MatMul", qkv[0], lmio__onnx_transpose4(g, K, 0, 1, 3, 2)); // (B, H, T, S)
    float scale = m->scale_attn ? 1.0f / sqrtf((float)D) : 1.0f;
    if (m->scale_by_layer) scale /= (float)(l + 1);
    if (scale != 1.0f) s = LMIO__ONNX_OP(g, "Mul", s, lmio__onnx_const_f32(g, scale));
    // masked scores: the lowest float, as Transformers fills them, so a
    // row with no visible key (a padding query) still sums to 1
    s = LMIO__ONNX_OP(g, "Where", d->mask, s, lmio__onnx_const_f32(g, -FLT_MAX));
    const char *p = LMIO__ONNX_OP(g, "Softmax", s);
    lmio__onnx_attr_int(g, "axis", -1);
    const char *o = lmio__onnx_transpose4(g, LMIO__ONNX_OP(g, "MatMul", p, V), 0, 2, 1, 3); // (B, T, H, D)
    o = LMIO__ONNX_OP(g, "Reshape", o, lmio__onnx_const_i64(g, merged, 1, &three));
    return onnx_conv1d(g, w, o, "transformer.h.{L}.attn.c_proj", l);
}

static lmio_status gpt2_onnx(const lmio_config *cfg, const lmio_statedict *w, lmio__onnx *g, lmio_error *err)
{
    gpt2 m = {0};
    int tie = 1;
    lmio_status s = read_config(&m, cfg, &tie, err);
    uint64_t dims[N_DIMS] = {[D_V] = m.V, [D_P] = m.P, [D_C] = m.C, [D_3C] = 3 * m.C, [D_I] = m.I};
    lmio__binding b = {&lmio__arch_gpt2, w, dims, m.L, tie != 0, cfg};
    if (!s) s = lmio__arch_bind(&b, NULL, NULL, NULL, err);
    if (s) return s;
    lmio__onnx_decoder d;
    lmio__onnx_decoder_begin(&d, g, m.L, m.H, m.C / m.H);
    const char *wte = onnx_weight(g, w, "transformer.wte.weight", 0);
    // x (B, T, C) = wte[input_ids] + wpe[position_ids]
    const char *x = LMIO__ONNX_OP(g, "Add", LMIO__ONNX_OP(g, "Gather", wte, d.input_ids),
                                  LMIO__ONNX_OP(g, "Gather", onnx_weight(g, w, "transformer.wpe.weight", 0), d.position_ids));
    for (size_t l = 0; l < m.L; l++) {
        char scope[32];
        snprintf(scope, sizeof scope, "h.%zu", l);
        lmio__onnx_scope(g, scope);
        const char *a = onnx_layernorm(g, w, x, "transformer.h.{L}.ln_1", l, m.eps);
        x = LMIO__ONNX_OP(g, "Add", x, onnx_attention(&m, &d, w, a, l));
        a = onnx_layernorm(g, w, x, "transformer.h.{L}.ln_2", l, m.eps);
        a = lmio__onnx_act(g, m.act, onnx_conv1d(g, w, a, "transformer.h.{L}.mlp.c_fc", l));
        x = LMIO__ONNX_OP(g, "Add", x, onnx_conv1d(g, w, a, "transformer.h.{L}.mlp.c_proj", l));
    }
    lmio__onnx_scope(g, NULL);
    x = onnx_layernorm(g, w, x, "transformer.ln_f", 0, m.eps);
    // logits (B, T, V) = x @ head^T; onnxruntime folds the transpose once
    const char *head = tie ? wte : onnx_weight(g, w, "lm_head.weight", 0);
    const char *ht = LMIO__ONNX_OP(g, "Transpose", head);
    lmio__onnx_attr_ints(g, "perm", (const int64_t[]){1, 0}, 2);
    lmio__onnx_decoder_logits(&d, LMIO__ONNX_OP(g, "MatMul", x, ht), m.V);
    return LMIO_OK;
}

/* ---- the GPT-2 API of lmio 0.1: thin wrappers over lmio_config_create and
 * lmio_model_*, kept so existing programs build unchanged ---- */

lmio_status lmio_config_create_gpt2(lmio_config **out, lmio_error *err)
{
    return lmio_config_create(MODEL_TYPE, out, err);
}

lmio_status lmio_gpt2_create(const lmio_config *cfg, const lmio_statedict *weights, lmio_gpt2 **out, lmio_error *err)
{
    if (!cfg || !weights || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (strcmp(lmio_config_model_type(cfg), MODEL_TYPE))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, "model_type",
                          "model_type is \"%s\"; expected \"" MODEL_TYPE "\"", lmio_config_model_type(cfg));
    return lmio_model_create(cfg, weights, out, err);
}

void lmio_gpt2_free(lmio_gpt2 *model) { lmio_model_free(model); }

size_t lmio_gpt2_vocab_size(const lmio_gpt2 *model) { return lmio_model_vocab_size(model); }

lmio_status lmio_gpt2_logits(lmio_gpt2 *model, const int32_t *ids, size_t n, float *logits, lmio_error *err)
{
    return lmio_model_logits(model, ids, n, logits, err);
}

lmio_status lmio_gpt2_generate(lmio_gpt2 *model, const int32_t *prompt, size_t n_prompt, size_t n_new,
                               const lmio_generate_opts *opts, int32_t *out, size_t *n_out, lmio_error *err)
{
    return lmio_model_generate(model, prompt, n_prompt, n_new, opts, out, n_out, err);
}

/* ---- training: forward keeping activations, backward ----
 * Shapes: B sequences of T tokens, N = B * T rows. Every loop that sums
 * into one value runs in a fixed order (threads split independent
 * outputs), so a step gives the same bits whatever the thread count: a
 * resumed run is byte-identical to an uninterrupted one. */

static lmio_status gpt2_dims(const lmio_config *cfg, uint64_t *dims, size_t *n_layer, lmio_error *err)
{
    gpt2 m = {0};
    int tie = 1;
    lmio_status s = read_config(&m, cfg, &tie, err);
    if (s) return s;
    dims[D_V] = m.V;
    dims[D_P] = m.P;
    dims[D_C] = m.C;
    dims[D_3C] = 3 * m.C;
    dims[D_I] = m.I;
    *n_layer = m.L;
    return LMIO_OK;
}

/* GPT2PreTrainedModel._init_weights: normal(0, initializer_range) for
 * weights and embeddings, c_proj weights scaled by 1/sqrt(2 * n_layer),
 * LayerNorm weights 1, biases 0. */
static void gpt2_init(const lmio_config *cfg, const lmio__tensor_spec *ts, float *data, size_t n, uint64_t *rng)
{
    double std = 0.02;
    int64_t L = 1;
    lmio_config_get_float(cfg, "initializer_range", &std, NULL);
    lmio_config_get_int(cfg, "n_layer", &L, NULL);
    size_t len = strlen(ts->hf_name);
    bool bias = len >= 5 && !strcmp(ts->hf_name + len - 5, ".bias");
    if (bias || strstr(ts->hf_name, ".ln_")) {
        for (size_t i = 0; i < n; i++) data[i] = bias ? 0.0f : 1.0f;
        return;
    }
    if (strstr(ts->hf_name, "c_proj.weight")) std /= sqrt(2.0 * (double)(L > 0 ? L : 1));
    for (size_t i = 0; i < n; i++) data[i] = (float)(std * lmio__normal(rng));
}

/* Everything the backward pass reads, from one allocation. */
typedef struct acts {
    float *resid;              /* (L+1, N, C): entering each layer; [L] enters ln_f */
    float *resid2;             /* (L, N, C): after the attention residual */
    float *ln1, *ln2;          /* (L, N, C) */
    float *st1, *st2;          /* (L, N, 2): mean, rstd */
    float *qkv;                /* (L, N, 3C) */
    float *att;                /* (L, B, H, T, T): softmax probabilities */
    float *atty;               /* (L, N, C): attention output before c_proj */
    float *fch, *fca;          /* (L, N, I): MLP before and after the lmio__act */
    float *lnf, *stf;          /* (N, C), (N, 2) */
    float *probs;              /* (N, V): softmax, then dlogits */
    float *dres, *dln, *dbig;  /* backward scratch: (N, C), (N, C), (N, max(I, 3C)) */
    float *dp;                 /* (B, H, T) */
    float *wt;                 /* a weight transposed: max(V, I, 3C) * C */
    float *base;
} acts;

static bool acts_alloc(acts *a, const gpt2 *m, size_t B, size_t T)
{
    size_t N = B * T, L = m->L, C = m->C, I = m->I, big = I > 3 * C ? I : 3 * C;
    /* (count, floats per count) of each array, in the order of the struct */
    size_t parts[][2] = {{L + 1, N * C}, {L, N * C}, {L, N * C}, {L, N * C}, {L, N * 2}, {L, N * 2},
                         {L, N * 3 * C}, {L * B * m->H, T * T}, {L, N * C}, {L, N * I}, {L, N * I},
                         {1, N * C}, {1, N * 2}, {1, N * m->V}, {1, N * C}, {1, N * C}, {1, N * big},
                         {B * m->H, T}, {1, (m->V > big ? m->V : big) * C}};
    float **dst[] = {&a->resid, &a->resid2, &a->ln1, &a->ln2, &a->st1, &a->st2, &a->qkv, &a->att, &a->atty,
                     &a->fch, &a->fca, &a->lnf, &a->stf, &a->probs, &a->dres, &a->dln, &a->dbig, &a->dp, &a->wt};
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

// out (N, C) = layernorm(x (N, C)) * w + b, keeping mean and rstd in st (N, 2)
static void layernorm_keep(float *out, float *st, const float *x, const float *w, const float *b, size_t N, size_t C,
                           float eps)
{
    lmio__layernorm(out, x, w, b, N, C, eps);
    for (size_t n = 0; n < N; n++) { /* the same arithmetic as layernorm */
        const float *xt = x + n * C;
        float mean = 0, var = 0;
        for (size_t i = 0; i < C; i++) mean += xt[i];
        mean /= (float)C;
        for (size_t i = 0; i < C; i++) var += (xt[i] - mean) * (xt[i] - mean);
        var /= (float)C;
        st[2 * n] = mean;
        st[2 * n + 1] = 1.0f / sqrtf(var + eps);
    }
}

// dx (N, C) += layernorm backward; dw, db (C) += their gradients
static void layernorm_bwd(float *dx, float *dw, float *db, const float *dout, const float *x, const float *st,
                          const float *w, size_t N, size_t C)
{
    for (size_t n = 0; n < N; n++) {
        const float *xn = x + n * C, *dn = dout + n * C;
        float mean = st[2 * n], rstd = st[2 * n + 1], dmean = 0, dnx = 0;
        for (size_t i = 0; i < C; i++) {
            float xhat = (xn[i] - mean) * rstd, g = w[i] * dn[i];
            dmean += g;
            dnx += g * xhat;
        }
        dmean /= (float)C;
        dnx /= (float)C;
        for (size_t i = 0; i < C; i++) {
            float xhat = (xn[i] - mean) * rstd, g = w[i] * dn[i];
            db[i] += dn[i];
            dw[i] += xhat * dn[i];
            dx[n * C + i] += rstd * (g - dmean - xhat * dnx);
        }
    }
}

// out (N, M) = x (N, K) @ w (K, M) + b: rows split across threads, each
// output summed in matmul's order
static void matmul_rows(float *out, const float *x, const float *w, const float *b, size_t N, size_t K, size_t M)
{
#pragma omp parallel for schedule(static)
    for (size_t n = 0; n < N; n++) {
        float *o = out + n * M;
        for (size_t j = 0; j < M; j++) o[j] = b ? b[j] : 0.0f;
        for (size_t k = 0; k < K; k++) {
            float a = x[n * K + k];
            const float *wk = w + k * M;
            for (size_t j = 0; j < M; j++) o[j] += a * wk[j];
        }
    }
}

// wt (M, K) = w (K, M) transposed
static void transpose(float *wt, const float *w, size_t K, size_t M)
{
    for (size_t k = 0; k < K; k++)
        for (size_t j = 0; j < M; j++) wt[j * K + k] = w[k * M + j];
}

// dx (N, K) = dout (N, M) @ w^T, w (K, M): through w transposed into wt,
// so the inner loop runs along rows (vectorises) instead of a dot product
static void matmul_bwd_x(float *dx, const float *dout, const float *w, size_t N, size_t K, size_t M, float *wt)
{
    transpose(wt, w, K, M);
    matmul_rows(dx, dout, wt, NULL, N, M, K);
}

// dw (K, M) += x^T (K, N) @ dout (N, M); db (M) += column sums of dout
static void matmul_bwd_w(float *dw, float *db, const float *x, const float *dout, size_t N, size_t K, size_t M)
{
#pragma omp parallel for schedule(static)
    for (size_t k = 0; k < K; k++) {
        float *g = dw + k * M;
        for (size_t n = 0; n < N; n++) {
            float a = x[n * K + k];
            const float *d = dout + n * M;
            for (size_t j = 0; j < M; j++) g[j] += a * d[j];
        }
    }
    for (size_t n = 0; db && n < N; n++)
        for (size_t j = 0; j < M; j++) db[j] += dout[n * M + j];
}

static float attn_scale(const gpt2 *m, size_t l)
{
    float scale = m->scale_attn ? 1.0f / sqrtf((float)(m->C / m->H)) : 1.0f;
    return m->scale_by_layer ? scale / (float)(l + 1) : scale;
}

// y (N, C) = causal attention within each sequence; att (B, H, T, T) keeps the probabilities
static void attention_train(const gpt2 *m, float *y, float *att, const float *qkv, size_t B, size_t T, size_t l)
{
    size_t C = m->C, H = m->H, D = C / H;
    float scale = attn_scale(m, l);
#pragma omp parallel for schedule(static)
    for (size_t bh = 0; bh < B * H; bh++) {
        size_t b = bh / H, h = bh % H;
        for (size_t t = 0; t < T; t++) {
            const float *q = qkv + (b * T + t) * 3 * C + h * D;
            float *p = att + (bh * T + t) * T, mx = -INFINITY, sum = 0;
            for (size_t s = 0; s <= t; s++) {
                const float *k = qkv + (b * T + s) * 3 * C + C + h * D;
                float acc = 0;
                for (size_t d = 0; d < D; d++) acc += q[d] * k[d];
                p[s] = acc * scale;
                if (p[s] > mx) mx = p[s];
            }
            for (size_t s = 0; s <= t; s++) sum += p[s] = expf(p[s] - mx);
            for (size_t s = 0; s <= t; s++) p[s] /= sum;
            for (size_t s = t + 1; s < T; s++) p[s] = 0;
            float *o = y + (b * T + t) * C + h * D;
            for (size_t d = 0; d < D; d++) o[d] = 0;
            for (size_t s = 0; s <= t; s++) {
                const float *v = qkv + (b * T + s) * 3 * C + 2 * C + h * D;
                for (size_t d = 0; d < D; d++) o[d] += p[s] * v[d];
            }
        }
    }
}

// dqkv (N, 3C) = attention backward of dy (N, C); each (sequence, head)
// owns its slices, so threads never share an output
static void attention_bwd(const gpt2 *m, float *dqkv, float *dp_all, const float *dy, const float *qkv,
                          const float *att, size_t B, size_t T, size_t l)
{
    size_t C = m->C, H = m->H, D = C / H;
    float scale = attn_scale(m, l);
    memset(dqkv, 0, B * T * 3 * C * sizeof *dqkv);
#pragma omp parallel for schedule(static)
    for (size_t bh = 0; bh < B * H; bh++) {
        size_t b = bh / H, h = bh % H;
        float *dp = dp_all + bh * T;
        for (size_t t = 0; t < T; t++) {
            const float *p = att + (bh * T + t) * T, *d = dy + (b * T + t) * C + h * D;
            const float *q = qkv + (b * T + t) * 3 * C + h * D;
            float *dq = dqkv + (b * T + t) * 3 * C + h * D, dot = 0;
            for (size_t s = 0; s <= t; s++) {
                const float *v = qkv + (b * T + s) * 3 * C + 2 * C + h * D;
                float acc = 0;
                for (size_t k = 0; k < D; k++) acc += d[k] * v[k];
                dp[s] = acc;
                dot += p[s] * acc;
            }
            for (size_t s = 0; s <= t; s++) {
                const float *k = qkv + (b * T + s) * 3 * C + C + h * D;
                float *dk = dqkv + (b * T + s) * 3 * C + C + h * D, *dv = dk + C;
                float ds = p[s] * (dp[s] - dot) * scale;
                for (size_t j = 0; j < D; j++) {
                    dq[j] += ds * k[j];
                    dk[j] += ds * q[j];
                    dv[j] += p[s] * d[j];
                }
            }
        }
    }
}

// logits (N, V) into a->probs, then softmax in place; returns the summed
// loss over counted targets (*count of them)
static double logits_loss(const gpt2 *m, acts *a, const int32_t *targets, size_t N, size_t *count)
{
    size_t C = m->C, V = m->V;
    transpose(a->wt, m->lm_head, V, C);
    matmul_rows(a->probs, a->lnf, a->wt, NULL, N, C, V);
    return lmio__softmax_loss(a->probs, targets, N, V, count);
}

static void forward_train(const gpt2 *m, acts *a, const int32_t *ids, size_t B, size_t T)
{
    size_t N = B * T, C = m->C, I = m->I;
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < C; i++)
            a->resid[n * C + i] = m->wte[(size_t)ids[n] * C + i] + m->wpe[(n % T) * C + i];
    for (size_t l = 0; l < m->L; l++) {
        const layer *y = &m->layers[l];
        float *x = a->resid + l * N * C, *x2 = a->resid2 + l * N * C, *out = a->resid + (l + 1) * N * C;
        float *ln1 = a->ln1 + l * N * C, *ln2 = a->ln2 + l * N * C, *qkv = a->qkv + l * N * 3 * C;
        float *atty = a->atty + l * N * C, *fch = a->fch + l * N * I, *fca = a->fca + l * N * I;
        layernorm_keep(ln1, a->st1 + l * N * 2, x, y->ln_1_w, y->ln_1_b, N, C, m->eps);
        matmul_rows(qkv, ln1, y->attn_w, y->attn_b, N, C, 3 * C);
        attention_train(m, atty, a->att + l * B * m->H * T * T, qkv, B, T, l);
        matmul_rows(x2, atty, y->proj_w, y->proj_b, N, C, C);
        for (size_t i = 0; i < N * C; i++) x2[i] += x[i];
        layernorm_keep(ln2, a->st2 + l * N * 2, x2, y->ln_2_w, y->ln_2_b, N, C, m->eps);
        matmul_rows(fch, ln2, y->fc_w, y->fc_b, N, C, I);
        for (size_t i = 0; i < N * I; i++) fca[i] = lmio__act_apply(m->act, fch[i]);
        matmul_rows(out, fca, y->fc_proj_w, y->fc_proj_b, N, I, C);
        for (size_t i = 0; i < N * C; i++) out[i] += x2[i];
    }
    layernorm_keep(a->lnf, a->stf, a->resid + m->L * N * C, m->ln_f_w, m->ln_f_b, N, C, m->eps);
}

/* One layer backward: a->dres holds d(resid[l+1]) and becomes d(resid[l]). */
static void layer_bwd(const gpt2 *m, gpt2 *g, acts *a, size_t l, size_t B, size_t T)
{
    size_t N = B * T, C = m->C, I = m->I;
    const layer *y = &m->layers[l];
    layer *gy = &g->layers[l];
    float *dres = a->dres, *dln = a->dln, *dbig = a->dbig;
    const float *fch = a->fch + l * N * I, *fca = a->fca + l * N * I;
#define W(p) ((float *)(p)) /* gradient buffers are bound const; they are ours to write */
    matmul_bwd_w(W(gy->fc_proj_w), W(gy->fc_proj_b), fca, dres, N, I, C);
    matmul_bwd_x(dbig, dres, y->fc_proj_w, N, I, C, a->wt);
    for (size_t i = 0; i < N * I; i++) dbig[i] *= lmio__act_grad(m->act, fch[i]);
    matmul_bwd_w(W(gy->fc_w), W(gy->fc_b), a->ln2 + l * N * C, dbig, N, C, I);
    matmul_bwd_x(dln, dbig, y->fc_w, N, C, I, a->wt);
    layernorm_bwd(dres, W(gy->ln_2_w), W(gy->ln_2_b), dln, a->resid2 + l * N * C, a->st2 + l * N * 2, y->ln_2_w, N, C);
    matmul_bwd_w(W(gy->proj_w), W(gy->proj_b), a->atty + l * N * C, dres, N, C, C);
    matmul_bwd_x(dln, dres, y->proj_w, N, C, C, a->wt);
    attention_bwd(m, dbig, a->dp, dln, a->qkv + l * N * 3 * C, a->att + l * B * m->H * T * T, B, T, l);
    matmul_bwd_w(W(gy->attn_w), W(gy->attn_b), a->ln1 + l * N * C, dbig, N, C, 3 * C);
    matmul_bwd_x(dln, dbig, y->attn_w, N, C, 3 * C, a->wt);
    layernorm_bwd(dres, W(gy->ln_1_w), W(gy->ln_1_b), dln, a->resid + l * N * C, a->st1 + l * N * 2, y->ln_1_w, N, C);
}

static void backward_all(const gpt2 *m, gpt2 *g, acts *a, const int32_t *ids, const int32_t *targets, size_t B,
                         size_t T, size_t count)
{
    size_t N = B * T, C = m->C, V = m->V;
    lmio__softmax_loss_grad(a->probs, targets, N, V, count); // dlogits
    matmul_bwd_w(W(g->lm_head), NULL, a->probs, a->lnf, N, V, C); // d(head) (V, C)
    matmul_rows(a->dln, a->probs, m->lm_head, NULL, N, V, C);      // d(lnf) (N, C)
    memset(a->dres, 0, N * C * sizeof *a->dres);
    layernorm_bwd(a->dres, W(g->ln_f_w), W(g->ln_f_b), a->dln, a->resid + m->L * N * C, a->stf, m->ln_f_w, N, C);
    for (size_t l = m->L; l-- > 0;) layer_bwd(m, g, a, l, B, T);
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < C; i++) {
            W(g->wte)[(size_t)ids[n] * C + i] += a->dres[n * C + i];
            W(g->wpe)[(n % T) * C + i] += a->dres[n * C + i];
        }
#undef W
}

static lmio_status gpt2_backward(void *model, void *grads, const int32_t *ids, const int32_t *targets, size_t B,
                                 size_t T, float *loss, lmio_error *err)
{
    const gpt2 *m = model;
    gpt2 *g = grads;
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
