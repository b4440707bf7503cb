/* The architecture table: everything that differs between model
 * architectures, one entry per file under src/model/arch/, listed in
 * arch_table.c. The config code, save/load, lmio_model_* and the CLI look an
 * entry up by model_type; none of them tests a model-type string. Adding an
 * architecture is one new file and one line in arch_table.c. */
#ifndef LMIO_ARCH_H
#define LMIO_ARCH_H

#include "model.h"
#include "../formats/onnx.h"
#include "kernels.h"

/* ---- tensors ---- */

#define LMIO__SPEC_MAX_DIMS 2

/* Flags of a tensor spec. */
enum {
    /* One tensor per layer; "{L}" in its names stands for the layer index. */
    LMIO__T_PER_LAYER = 1u << 0,
    /* Equal to tied_to when the config's tie_word_embeddings is true: then it
     * may be absent on load, is left out on save (Transformers re-ties it),
     * and the model uses tied_to. */
    LMIO__T_TIED = 1u << 1,
    /* Stored [in, out] (Transformers' Conv1D): nn.Linear and GGUF hold the
     * transpose, so a converter to those layouts must transpose it. */
    LMIO__T_CONV1D = 1u << 2,
    /* Rows are rotary heads of head_dim in Transformers' rotate_half order
     * (pairs i, i + head_dim/2); llama.cpp stores them permuted to
     * adjacent pairs (2i, 2i+1), so a GGUF converter permutes them
     * (shared/reference/gguf-llamacpp.md §2.3). */
    LMIO__T_ROPE_HALF = 1u << 3
};

/* One row per tensor an architecture has. */
typedef struct lmio__tensor_spec {
    const char *hf_name;   /* Transformers' name: "transformer.h.{L}.attn.c_attn.weight" */
    const char *gguf_name; /* llama.cpp's name: "blk.{L}.attn_qkv.weight"; NULL if none */
    int ndim;
    /* The shape in config terms: indexes into the architecture's dims (its
     * own enum; the values come from the config in create). */
    unsigned char shape[LMIO__SPEC_MAX_DIMS];
    unsigned flags;
    const char *tied_to; /* with LMIO__T_TIED: the hf_name it equals */
    /* Where create binds the tensor's f32 data (a const float *): offset in
     * the model struct, or in the layer struct for LMIO__T_PER_LAYER. */
    size_t offset;
    /* The config's boolean key that says whether the tensor exists
     * (Llama's attention_bias); NULL: it always does. When the key is false
     * the tensor is not bound (its slot stays NULL), as Transformers
     * builds no such parameter. */
    const char *if_config;
} lmio__tensor_spec;

/* ---- architectures ---- */

/* A llama.cpp hyperparameter ("<model_type>.<gguf>" in a GGUF) and the
 * config key it is, both ways: GGUF -> config.json and back. */
typedef struct lmio__gguf_key {
    const char *gguf;   /* "embedding_length" */
    const char *config; /* "n_embd" */
    char type;          /* 'u': UINT32, 'f': FLOAT32, as llama.cpp reads them */
    /* When the config has no value (or null): mult times the value of this
     * other config key (GPT-2's n_inner: 4 * n_embd); NULL: left out. */
    const char *fallback;
    unsigned mult;
} lmio__gguf_key;

typedef struct lmio__arch {
    const char *model_type;    /* config.json's "model_type", e.g. gpt2 */
    const char *hf_class;      /* written to "architectures": "GPT2LMHeadModel" */
    const char *defaults_json; /* the Transformers config class's defaults */
    const char *const (*aliases)[2]; /* {generic key, this config's key}: {"hidden_size", "n_embd"} */
    size_t n_aliases;
    const lmio__tensor_spec *tensors;
    size_t n_tensors;
    const char *const *dim_names; /* a name per dim index, for messages: "n_embd", "3 * n_embd" */
    const char *layers_key;       /* the config key counting layers, for messages: "n_layer" */
    size_t layer_size;            /* sizeof the layer struct LMIO__T_PER_LAYER offsets refer to */
    /* Added on load to names that lack it ("wte.weight" -> "transformer.wte.weight"). */
    const char *name_prefix;
    /* Legacy buffers, dropped on load and on save: names ending so. NULL-terminated. */
    const char *const *dropped_suffixes;

    /* Builds the model. Every tensor's presence and shape is checked
     * against the config before anything sized by the config is allocated. */
    lmio_status (*create)(const lmio_config *cfg, const lmio_statedict *weights, void **model, lmio_error *err);
    /* Runs n tokens at positions pos0.. (the KV cache holds 0..pos0-1) and
     * writes logits (n_logits, vocab) for the last n_logits of them. */
    lmio_status (*forward)(void *model, const int32_t *ids, size_t n, size_t pos0, float *logits, size_t n_logits,
                           lmio_error *err);
    void (*free)(void *model);
    size_t (*vocab_size)(const void *model);
    size_t (*max_positions)(const void *model);
    /* Hyperparameters in GGUF (the GGUF architecture name is model_type). */
    const lmio__gguf_key *gguf_keys;
    size_t n_gguf_keys;
    /* TorchScript export (lmio_export_torchscript): appends the methods of
     * the module class at node, as lmio__ts_methods_fn in formats.h says
     * (node "" is the root, whose forward(self, input_ids: Tensor) -> Tensor
     * maps ids (T) or (B, T) to logits (T, V) or (B, T, V)). The module tree
     * is the table's tensors by their hf_name (tied ones left out when tied).
     * NULL: the architecture cannot be exported yet. */
    lmio_status (*torchscript)(const lmio_config *cfg, const char *node, lmio__buf *code, lmio_error *err);
    /* Builds the model into g as an ONNX decoder with a KV cache, through
     * lmio__onnx_decoder_* (export_onnx.c) for the inputs, outputs and
     * attention mask transformers.js and Optimum use, and
     * lmio__onnx_weight for the tensors of weights (checked against the
     * config first, as create does). NULL: not exportable yet. */
    lmio_status (*onnx_graph)(const lmio_config *cfg, const lmio_statedict *weights, lmio__onnx *g, lmio_error *err);

    /* ---- training (src/train/ drives these; NULL: the architecture
     * cannot be trained yet) ---- */
    /* The config's value of each dim index (vocab_size, n_embd, ...) and
     * its layer count: the shapes a state dict for this config must have. */
    lmio_status (*dims)(const lmio_config *cfg, uint64_t *dims, size_t *n_layer, lmio_error *err);
    size_t n_dims;
    /* Fills a fresh tensor of spec ts (n floats) as the Transformers class
     * initialises it (_init_weights), drawing normals from *rng
     * (lmio__normal). */
    void (*init)(const lmio_config *cfg, const lmio__tensor_spec *ts, float *data, size_t n, uint64_t *rng);
    /* B sequences of T tokens, ids and targets (B, T) row-major (a target
     * < 0 is ignored): runs the forward pass keeping every activation, then
     * the backward pass of the mean cross-entropy over the counted targets,
     * and ADDS each weight's gradient into grads, a model create() bound to
     * gradient buffers shaped as the weights (so a tied head's gradient
     * lands in the tensor it is tied to). *loss receives the mean loss.
     * Deterministic: the same inputs give the same bits whatever the
     * thread count. */
    lmio_status (*backward)(void *model, void *grads, const int32_t *ids, const int32_t *targets, size_t B, size_t T,
                            float *loss, lmio_error *err);
} lmio__arch;

/* A standard normal draw from a splitmix64 stream (Box-Muller on two
 * 53-bit uniforms): weight initialisation needs reproducibility for a
 * seed, not another framework's stream. */
double lmio__normal(uint64_t *state);
uint64_t lmio__splitmix64(uint64_t *state);

/* ---- the table (arch_table.c) ---- */

/* The entry for model_type; NULL if lmio does not know it (or it is NULL). */
const lmio__arch *lmio__arch_find(const char *model_type);
/* The entry for a config's model_type; NULL for NULL or unknown. */
const lmio__arch *lmio__arch_of(const lmio_config *cfg);
/* The known model types, ", "-separated, into buf (truncated safely). */
void lmio__arch_list(char *buf, size_t cap);
/* The parsed defaults_json: parsed once, kept for the process (small);
 * NULL when out of memory (a later call tries again). */
lmio__json *lmio__arch_defaults(const lmio__arch *a);

/* ---- tensor names and binding (bind.c) ---- */

/* pattern with "{L}" replaced by layer; false when it does not fit in cap. */
bool lmio__tensor_name(const char *pattern, size_t layer, char *buf, size_t cap);
/* The spec whose hf_name pattern matches name ("{L}" matching a decimal
 * layer index, stored in *layer when non-NULL); NULL if none. */
const lmio__tensor_spec *lmio__arch_spec(const lmio__arch *a, const char *name, size_t *layer);
/* The same by GGUF name ("blk.{L}.attn_q.weight"). */
const lmio__tensor_spec *lmio__arch_spec_gguf(const lmio__arch *a, const char *name, size_t *layer);
/* Whether name is one of a's legacy buffers. */
bool lmio__arch_dropped(const lmio__arch *a, const char *name);
/* The config's tie_word_embeddings (with the architecture's default;
 * Transformers' PretrainedConfig default, true, when neither has one). */
bool lmio__arch_tied(const lmio_config *cfg);

/* Widened f32 copies of non-f32 weights, owned by a model. */
typedef struct lmio__f32_pool {
    float **v;
    size_t n;
} lmio__f32_pool;
void lmio__f32_pool_free(lmio__f32_pool *p);

/* What one model's weights are checked and bound against. */
typedef struct lmio__binding {
    const lmio__arch *arch;
    const lmio_statedict *weights;
    const uint64_t *dims; /* a value per dim index of the arch */
    size_t n_layer;
    bool tied; /* tie_word_embeddings */
    const lmio_config *cfg; /* for the specs' if_config keys */
} lmio__binding;

/* With model == NULL: checks every tensor's presence and shape and
 * allocates nothing, so a config that claims more than the weights hold
 * fails before anything sized by it exists. Otherwise binds each tensor's
 * f32 data into model (globals) and layers (n_layer layer structs),
 * widening F16/BF16/F64 into pool. */
lmio_status lmio__arch_bind(const lmio__binding *b, void *model, void *layers, lmio__f32_pool *pool,
                            lmio_error *err);
/* What an architecture's create does with its weights: checks them all
 * (allocating nothing), then allocates n_layer layer structs into *layers
 * (the caller frees them, also on failure) and binds. */
/* Runs fn(ctx), a forward pass's computation over weights (which may be
 * mapped files), guarded: fn may only read and compute (its buffers are
 * allocated before), with parallel loops through the kernels, whose worker
 * threads are guarded too. A file that shrank under it is LMIO_ERR_IO naming
 * the file, byte and tensor, not SIGBUS. */
lmio_status lmio__arch_compute(const lmio_statedict *weights, void (*fn)(void *ctx), void *ctx, lmio_error *err);

lmio_status lmio__arch_build(const lmio__binding *b, void *model, void **layers, lmio__f32_pool *pool,
                             lmio_error *err);

/* ---- ONNX decoders (export_onnx.c) ----
 * The graph interface every exported decoder shares, Optimum's
 * text-generation-with-past layout that transformers.js runs
 * (shared/reference/onnx-transformersjs.md §6): inputs input_ids,
 * attention_mask, position_ids (int64) and past_key_values.{i}.key/.value
 * (batch_size, kv_heads, past_sequence_length, head_dim); outputs logits
 * and present.{i}.key/.value. Batch and sequence axes are symbolic. */
typedef struct lmio__onnx_decoder {
    lmio__onnx *g;
    size_t n_layer, kv_heads, head_dim;
    const char *input_ids, *position_ids; /* int64 (B, T) */
    /* bool (B, 1, T, S), S = past + T: query t may attend key s (causal,
     * and s is not padding) */
    const char *mask;
} lmio__onnx_decoder;

/* Declares input_ids, attention_mask and position_ids and builds the mask. */
/* An activation as ONNX nodes (gelu_new as Gelu with approximate="tanh"),
 * and a 4-axis Transpose with perm {a, b, c, d}: shared by every
 * architecture's onnx_graph hook. */
const char *lmio__onnx_act(lmio__onnx *g, lmio__act a, const char *x);
const char *lmio__onnx_transpose4(lmio__onnx *g, const char *x, int64_t a, int64_t b, int64_t c, int64_t d);
void lmio__onnx_decoder_begin(lmio__onnx_decoder *d, lmio__onnx *g, size_t n_layer, size_t kv_heads,
                              size_t head_dim);
/* Layer l's keys (is_value false) or values: declares past_key_values.l.*
 * and present.l.*, appends fresh (f32, (B, kv_heads, T, head_dim)) to the
 * past along the sequence axis; returns the f32 (B, kv_heads, S, head_dim). */
const char *lmio__onnx_decoder_cache(lmio__onnx_decoder *d, size_t l, bool is_value, const char *fresh);
/* Declares the logits output (B, T, vocab) from an f32 value. */
void lmio__onnx_decoder_logits(lmio__onnx_decoder *d, const char *logits, size_t vocab);

#endif
