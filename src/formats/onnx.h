/* ONNX writing (onnx.c): a protobuf encoder that never copies tensor data,
 * and on top of it a builder of ONNX graphs (nodes, initializers, graph
 * inputs and outputs) that the architecture table's export hooks fill and
 * lmio__onnx_write serialises. Field numbers: shared/reference/
 * onnx-transformersjs.md §2 (onnx/onnx's onnx.in.proto). */
#ifndef LMIO_ONNX_H
#define LMIO_ONNX_H
#include "../core/core.h"

/* ---- protobuf wire format ---- */

/* Tensor bytes spliced into an encoded message at write time: read from the
 * tensor (through lmio_tensor_read, so a shrunk mapping is an error, not
 * SIGBUS) and converted to dtype on the way out. */
typedef struct lmio__pb_blob {
    size_t at; /* where in the message's own bytes it goes */
    lmio_tensor src;
    lmio_dtype dtype;
    uint64_t len; /* bytes written: src.numel in dtype */
} lmio__pb_blob;

/* An encoded message: its own bytes plus blobs spliced in between them.
 * Messages nest by value (lmio__pb_msg), which needs each child's length
 * before its bytes: a child is encoded whole, then appended. Errors are
 * sticky (b.oom); lmio__pb_len is then meaningless. */
typedef struct lmio__pb {
    lmio__buf b;
    lmio__pb_blob *blobs;
    size_t n_blobs, cap_blobs;
    uint64_t blob_bytes;
    bool oom;
} lmio__pb;

enum { LMIO__PB_VARINT = 0, LMIO__PB_I64 = 1, LMIO__PB_LEN = 2, LMIO__PB_I32 = 5 };

/* The encoded length: own bytes plus blobs. */
uint64_t lmio__pb_len(const lmio__pb *p);
void lmio__pb_varint(lmio__pb *p, uint64_t v);
void lmio__pb_key(lmio__pb *p, uint32_t field, int wire);
/* A varint field; a negative int64 is sign-extended to 10 bytes, as
 * protobuf encodes int32/int64 (ONNX has no zigzag sint fields). */
void lmio__pb_int(lmio__pb *p, uint32_t field, int64_t v);
void lmio__pb_float(lmio__pb *p, uint32_t field, float v);
void lmio__pb_bytes(lmio__pb *p, uint32_t field, const void *data, size_t n);
void lmio__pb_str(lmio__pb *p, uint32_t field, const char *s);
/* A packed repeated int64 (one LEN record). */
void lmio__pb_packed_int(lmio__pb *p, uint32_t field, const int64_t *v, size_t n);
/* Appends child as a LEN field and frees it (whatever happens). */
void lmio__pb_msg(lmio__pb *p, uint32_t field, lmio__pb *child);
/* A LEN field whose bytes are t's data converted to dtype, at write time. */
void lmio__pb_blob_field(lmio__pb *p, uint32_t field, const lmio_tensor *t, lmio_dtype dtype);
void lmio__pb_free(lmio__pb *p);
/* Streams p (its bytes and blobs, in order) to out. */
lmio_status lmio__pb_write(const lmio__pb *p, lmio__outfile *out, lmio_error *err);

/* ---- ONNX graphs ---- */

/* TensorProto.DataType values. */
enum { LMIO__ONNX_FLOAT = 1, LMIO__ONNX_INT64 = 7, LMIO__ONNX_BOOL = 9, LMIO__ONNX_FLOAT16 = 10 };

/* The stamps: opset 20 has Gelu(approximate) and LayerNormalization; IR 9
 * is what opset 20 shipped with (ONNX 1.15), so onnxruntime >= 1.17 loads
 * the file, transformers.js 3.x's 1.21 included. */
#define LMIO__ONNX_OPSET 20
#define LMIO__ONNX_IR 9
/* protobuf refuses messages of 2 GiB or more; past this, weights go to an
 * external data file. */
#define LMIO__ONNX_INLINE_MAX 0x7fffffffULL
/* Offsets of tensors in the external data file: page multiples, so
 * onnxruntime can map them (onnx docs/ExternalData.md). */
#define LMIO__ONNX_DATA_ALIGN 4096

typedef struct lmio__onnx lmio__onnx;

/* A dimension of a graph input or output: symbolic (param) or fixed. */
typedef struct lmio__onnx_dim {
    const char *param; /* "batch_size"; NULL: value */
    int64_t value;
} lmio__onnx_dim;

/* An empty graph whose weights and float inputs/outputs are stored as
 * store (F32 or F16); arithmetic is always f32 (see lmio__onnx_weight). */
lmio_status lmio__onnx_create(lmio_dtype store, lmio__onnx **out, lmio_error *err);
void lmio__onnx_free(lmio__onnx *g);
lmio_dtype lmio__onnx_store_dtype(const lmio__onnx *g);

/* Every function below returns value names borrowed from g (valid until
 * lmio__onnx_free), or NULL once anything failed: failures are sticky and
 * reported by lmio__onnx_write, so a hook builds a whole graph and checks
 * once. Inputs that are NULL make the node fail the same way. */

/* Names of nodes and of their outputs start with prefix ("h.3.attn"), so
 * the graph reads like the model; NULL or "" for none. Copied. */
void lmio__onnx_scope(lmio__onnx *g, const char *prefix);
/* A graph input of element type elem (LMIO__ONNX_*). */
const char *lmio__onnx_input(lmio__onnx *g, const char *name, int elem, int ndim, const lmio__onnx_dim *dims);
/* A float graph input in the store dtype; returns an f32 value of it. */
const char *lmio__onnx_float_input(lmio__onnx *g, const char *name, int ndim, const lmio__onnx_dim *dims);
/* A graph output named name with value's data (elem, dims as declared). */
void lmio__onnx_output(lmio__onnx *g, const char *value, const char *name, int elem, int ndim,
                       const lmio__onnx_dim *dims);
/* A float graph output in the store dtype from an f32 value. */
void lmio__onnx_float_output(lmio__onnx *g, const char *value, const char *name, int ndim,
                             const lmio__onnx_dim *dims);

/* Node op_type op (ai.onnx domain) on inputs in[0..n_in) ("" leaves an
 * optional input out); its n_out outputs are named and stored in out[]
 * (out may be NULL when n_out is 1: the first output is returned). */
const char *lmio__onnx_node(lmio__onnx *g, const char *op, const char *const *in, size_t n_in, const char **out,
                            size_t n_out);
#define LMIO__ONNX_N(...) (sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *))
/* One-output node: LMIO__ONNX_OP(g, "Add", a, b). */
#define LMIO__ONNX_OP(g, op, ...) \
    lmio__onnx_node((g), (op), (const char *const[]){__VA_ARGS__}, LMIO__ONNX_N(__VA_ARGS__), NULL, 1)
/* Attributes of the node added last. */
void lmio__onnx_attr_int(lmio__onnx *g, const char *name, int64_t v);
void lmio__onnx_attr_float(lmio__onnx *g, const char *name, float v);
void lmio__onnx_attr_str(lmio__onnx *g, const char *name, const char *v);
void lmio__onnx_attr_ints(lmio__onnx *g, const char *name, const int64_t *v, size_t n);
/* A one-element tensor attribute (ConstantOfShape's value). */
void lmio__onnx_attr_scalar(lmio__onnx *g, const char *name, int elem, const void *value);

/* An initializer holding t (name: t's name), stored in the store dtype. Its
 * data is borrowed: t's state dict must outlive lmio__onnx_write. Returns
 * an f32 value: the initializer, or a Cast of it when stored as F16
 * (onnxruntime folds the Cast once at load), so every graph computes in
 * f32, which every onnxruntime CPU kernel has. */
const char *lmio__onnx_weight(lmio__onnx *g, const lmio_tensor *t);
/* Small constants, copied into the graph. ndim 0 is a scalar. */
const char *lmio__onnx_const_i64(lmio__onnx *g, const int64_t *v, int ndim, const int64_t *dims);
const char *lmio__onnx_const_f32(lmio__onnx *g, float v); /* a scalar */
/* A float32 tensor of computed values (rotary tables), copied and kept in
 * f32 whatever the store dtype, so the graph uses the very values. */
const char *lmio__onnx_const_f32s(lmio__onnx *g, const float *v, int ndim, const int64_t *dims);

typedef struct lmio__onnx_write_opts {
    const char *path;      /* the .onnx file */
    const char *data_path; /* the external data file, beside it */
    const char *data_name; /* its name as the model refers to it: "model.onnx_data" */
    bool external;         /* weights external even when they would fit inline */
    int durable;
} lmio__onnx_write_opts;

/* Writes the model atomically (path, and data_path first when weights are
 * external: asked for, or the model would pass LMIO__ONNX_INLINE_MAX).
 * *external (may be NULL) tells which. Same graph, same bytes. */
lmio_status lmio__onnx_write(lmio__onnx *g, const lmio__onnx_write_opts *o, bool *external, lmio_error *err);

#endif
