/* The fp32 numerical kernels the architectures' forward passes share, and
 * the pieces of a forward pass that do not depend on the architecture
 * (config sizes, input checks, the KV cache). Shapes in comments: T tokens,
 * K inputs, N outputs, H query heads and G key/value heads of D values. */
#ifndef LMIO_KERNELS_H
#define LMIO_KERNELS_H

#include "model.h"

#include <stddef.h>

/* ---- config and inputs ---- */

/* Caps every size a config states for a forward pass, so products of a few
 * of them (L * C, T * 3C, S * L * C) stay far from overflowing size_t. */
#define LMIO__MAX_DIM (1 << 24)

/* cfg's integer key as a size in 1..LMIO__MAX_DIM, or an error naming it. */
lmio_status lmio__cfg_size(const lmio_config *cfg, const char *key, size_t *out, lmio_error *err);

/* T ids at positions pos0.. against a vocabulary of V and P positions
 * (pos_key names P in the message). */
lmio_status lmio__check_run(const int32_t *ids, size_t T, size_t pos0, size_t V, size_t P, const char *pos_key,
                            lmio_error *err);

/* ---- activations ---- */

typedef enum { LMIO__ACT_GELU_NEW, LMIO__ACT_GELU, LMIO__ACT_RELU, LMIO__ACT_SILU } lmio__act;

/* cfg's key (an activation name as Transformers' ACT2FN spells it). */
lmio_status lmio__act_read(const lmio_config *cfg, const char *key, lmio__act *out, lmio_error *err);
float lmio__act_apply(lmio__act a, float x);
/* d act(x) / dx, for the backward pass */
float lmio__act_grad(lmio__act a, float x);

/* ---- layers ---- */

// out (T, C) = layernorm(x (T, C)) * w + b
void lmio__layernorm(float *out, const float *x, const float *w, const float *b, size_t T, size_t C, float eps);
// out (T, C) = x * rsqrt(mean(x^2) + eps) * w, as Transformers' RMSNorm
void lmio__rmsnorm(float *out, const float *x, const float *w, size_t T, size_t C, float eps);
// out (T, N) = x (T, K) @ w (K, N) + b (N): Conv1D's layout; b may be NULL
void lmio__matmul_kn(float *out, const float *x, const float *w, const float *b, size_t T, size_t K, size_t N);
// out (T, N) = x (T, K) @ w^T + b where w is (N, K): nn.Linear's layout; b may be NULL
void lmio__matmul_nk(float *out, const float *x, const float *w, const float *b, size_t T, size_t K, size_t N);

/* ---- backward passes (training) ----
 * Each adds into its gradients, so inputs shared by several layers (the
 * normed x read by q, k and v) gather theirs; each sum runs in one fixed
 * order, threads splitting independent outputs. */

// dx (T, C) += rmsnorm backward of dout at x; dw (C) += w's gradient
void lmio__rmsnorm_bwd(float *dx, float *dw, const float *dout, const float *x, const float *w, size_t T, size_t C,
                       float eps);
// for out = x (T, K) @ w^T + b, w (N, K): dx (T, K) += dout (T, N) @ w,
// dw (N, K) += dout^T @ x, db (N) += column sums of dout; db may be NULL
void lmio__matmul_nk_bwd(float *dx, float *dw, float *db, const float *x, const float *dout, const float *w, size_t T,
                         size_t K, size_t N);

/* Where attention reads and writes: row t of q and out, row s of the key
 * and value caches, each a stride apart in floats. */
typedef struct lmio__attn_io {
    float *out;
    const float *q, *k, *v;
    size_t out_stride, q_stride, kv_stride;
} lmio__attn_io;

// out (T, H*D) = causal softmax(q k^T * scale) v for T queries at positions
// pos0 .. pos0 + T - 1 over keys 0 .. pos0 + t; query head h reads key/value
// head h / (H / G) (grouped-query attention; G == H is multi-head).
// scores holds pos0 + T floats.
void lmio__attention(const lmio__attn_io *io, size_t T, size_t pos0, size_t H, size_t G, size_t D, float scale,
                     float *scores);

/* ---- the training loss ---- */

/* B sequences of T token ids (each < V, T <= P positions) and their targets
 * (< V; negative ones are not learned). */
lmio_status lmio__check_batch(const int32_t *ids, const int32_t *targets, size_t B, size_t T, size_t V, size_t P,
                              lmio_error *err);
/* probs (N, V) holds logits and becomes their softmax; returns the summed
 * cross-entropy over the rows whose target is >= 0 (*count of them), summed
 * in row order in double, so the loss is deterministic. */
double lmio__softmax_loss(float *probs, const int32_t *targets, size_t N, size_t V, size_t *count);
/* probs (N, V) becomes d(mean loss)/d(logits): (softmax - onehot) / count on
 * counted rows, 0 elsewhere. */
void lmio__softmax_loss_grad(float *probs, const int32_t *targets, size_t N, size_t V, size_t count);

/* ---- the KV cache ---- */

/* Keys and values (S, row) each, position-major so the cache grows with the
 * positions actually run (a realloc keeps it), never to the model's
 * maximum up front. */
typedef struct lmio__kv_cache {
    float *k, *v;
    size_t cap;  /* positions there is room for */
    size_t row;  /* floats per position (all layers) */
    size_t max;  /* positions the model allows */
} lmio__kv_cache;

/* Room for positions 0..S-1 (S <= max), doubling as it grows. */
lmio_status lmio__kv_reserve(lmio__kv_cache *c, size_t S, lmio_error *err);
void lmio__kv_free(lmio__kv_cache *c);

#endif
