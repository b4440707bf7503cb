/* ONNX writing: a protobuf encoder and a graph builder on top of it
 * (onnx.h). Tensor data is never copied into the encoding: an initializer's
 * raw_data is a blob, read and converted only while the file is written, so
 * memory does not grow with the model. */
#include "onnx.h"

#include <stdio.h>
#include <string.h>

/* ---- protobuf ---- */

uint64_t lmio__pb_len(const lmio__pb *p) { return p->b.len + p->blob_bytes; }

void lmio__pb_varint(lmio__pb *p, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    lmio__buf_put(&p->b, tmp, n);
}

void lmio__pb_key(lmio__pb *p, uint32_t field, int wire) { lmio__pb_varint(p, ((uint64_t)field << 3) | (unsigned)wire); }

void lmio__pb_int(lmio__pb *p, uint32_t field, int64_t v)
{
    lmio__pb_key(p, field, LMIO__PB_VARINT);
    lmio__pb_varint(p, (uint64_t)v);
}

void lmio__pb_float(lmio__pb *p, uint32_t field, float v)
{
    uint32_t u;
    memcpy(&u, &v, 4);
    unsigned char le[4] = {(unsigned char)u, (unsigned char)(u >> 8), (unsigned char)(u >> 16), (unsigned char)(u >> 24)};
    lmio__pb_key(p, field, LMIO__PB_I32);
    lmio__buf_put(&p->b, le, 4);
}

void lmio__pb_bytes(lmio__pb *p, uint32_t field, const void *data, size_t n)
{
    lmio__pb_key(p, field, LMIO__PB_LEN);
    lmio__pb_varint(p, n);
    lmio__buf_put(&p->b, data, n);
}

void lmio__pb_str(lmio__pb *p, uint32_t field, const char *s) { lmio__pb_bytes(p, field, s, strlen(s)); }

void lmio__pb_packed_int(lmio__pb *p, uint32_t field, const int64_t *v, size_t n)
{
    lmio__pb body = {0};
    for (size_t i = 0; i < n; i++) lmio__pb_varint(&body, (uint64_t)v[i]);
    lmio__pb_msg(p, field, &body);
}

static bool pb_failed(const lmio__pb *p) { return p->oom || p->b.oom; }

/* Appends t's bytes (as dtype) at the current end of p, with no key. */
static void pb_blob(lmio__pb *p, const lmio_tensor *t, lmio_dtype dtype)
{
    if (pb_failed(p)) return;
    if (!lmio__grow((void **)&p->blobs, sizeof *p->blobs, p->n_blobs + 1, &p->cap_blobs)) {
        p->oom = true;
        return;
    }
    uint64_t len = t->numel * (lmio_dtype_bits(dtype) / 8);
    p->blobs[p->n_blobs++] = (lmio__pb_blob){p->b.len, *t, dtype, len};
    p->blob_bytes += len;
}

void lmio__pb_blob_field(lmio__pb *p, uint32_t field, const lmio_tensor *t, lmio_dtype dtype)
{
    lmio__pb_key(p, field, LMIO__PB_LEN);
    lmio__pb_varint(p, t->numel * (lmio_dtype_bits(dtype) / 8));
    pb_blob(p, t, dtype);
}

void lmio__pb_msg(lmio__pb *p, uint32_t field, lmio__pb *child)
{
    if (pb_failed(child)) p->oom = true;
    lmio__pb_key(p, field, LMIO__PB_LEN);
    lmio__pb_varint(p, lmio__pb_len(child));
    size_t base = p->b.len;
    if (!pb_failed(p) && child->b.len) lmio__buf_put(&p->b, child->b.data, child->b.len);
    for (size_t i = 0; i < child->n_blobs && !pb_failed(p); i++) {
        if (!lmio__grow((void **)&p->blobs, sizeof *p->blobs, p->n_blobs + 1, &p->cap_blobs)) {
            p->oom = true;
            break;
        }
        p->blobs[p->n_blobs] = child->blobs[i];
        p->blobs[p->n_blobs++].at += base;
        p->blob_bytes += child->blobs[i].len;
    }
    lmio__pb_free(child);
}

void lmio__pb_free(lmio__pb *p)
{
    lmio__buf_free(&p->b);
    lmio__free(p->blobs);
    memset(p, 0, sizeof *p);
}

/* Elements per conversion chunk: 8 MiB of f32, as lmio's other writers. */
#define CHUNK_ELEMS (2u << 20)

static lmio_status write_blob(const lmio__pb_blob *bl, lmio__outfile *out, void *in_buf, void *out_buf,
                              lmio_error *err)
{
    const lmio_tensor *t = &bl->src;
    size_t in_size = lmio_dtype_bits(t->dtype) / 8, out_size = lmio_dtype_bits(bl->dtype) / 8;
    for (uint64_t done = 0; done < t->numel;) {
        size_t n = t->numel - done < CHUNK_ELEMS ? (size_t)(t->numel - done) : CHUNK_ELEMS;
        lmio_status s = lmio_tensor_read(t, done * in_size, in_buf, n * in_size, err);
        const void *src = in_buf;
        if (!s && t->dtype != bl->dtype) {
            s = lmio_convert(out_buf, bl->dtype, in_buf, t->dtype, n, err);
            src = out_buf;
        }
        if (!s) s = lmio__outfile_write(out, src, n * out_size, err);
        if (s) return s;
        done += n;
    }
    return LMIO_OK;
}

lmio_status lmio__pb_write(const lmio__pb *p, lmio__outfile *out, lmio_error *err)
{
    if (pb_failed(p)) return lmio__fail(err, LMIO_ERR_NOMEM, out->final_path, -1, "", "out of memory");
    void *in_buf = lmio__malloc(CHUNK_ELEMS * 8), *out_buf = lmio__malloc(CHUNK_ELEMS * 8);
    lmio_status s = in_buf && out_buf ? LMIO_OK : lmio__fail(err, LMIO_ERR_NOMEM, out->final_path, -1, "", "out of memory");
    size_t at = 0;
    for (size_t i = 0; i <= p->n_blobs && !s; i++) {
        size_t end = i < p->n_blobs ? p->blobs[i].at : p->b.len;
        if (end > at) s = lmio__outfile_write(out, p->b.data + at, end - at, err);
        at = end;
        if (!s && i < p->n_blobs) s = write_blob(&p->blobs[i], out, in_buf, out_buf, err);
    }
    lmio__free(in_buf);
    lmio__free(out_buf);
    return s;
}

/* ---- field numbers (onnx.in.proto) ---- */

enum { MODEL_IR = 1, MODEL_PRODUCER = 2, MODEL_PRODUCER_VERSION = 3, MODEL_GRAPH = 7, MODEL_OPSET = 8 };
enum { OPSET_DOMAIN = 1, OPSET_VERSION = 2 };
enum { GRAPH_NODE = 1, GRAPH_NAME = 2, GRAPH_INIT = 5, GRAPH_INPUT = 11, GRAPH_OUTPUT = 12 };
enum { NODE_INPUT = 1, NODE_OUTPUT = 2, NODE_NAME = 3, NODE_OP = 4, NODE_ATTR = 5 };
enum { ATTR_NAME = 1, ATTR_F = 2, ATTR_I = 3, ATTR_S = 4, ATTR_T = 5, ATTR_INTS = 8, ATTR_TYPE = 20 };
enum { ATYPE_FLOAT = 1, ATYPE_INT = 2, ATYPE_STRING = 3, ATYPE_TENSOR = 4, ATYPE_INTS = 7 };
enum { TENSOR_DIMS = 1, TENSOR_TYPE = 2, TENSOR_NAME = 8, TENSOR_RAW = 9, TENSOR_EXTERNAL = 13, TENSOR_LOCATION = 14 };
enum { ENTRY_KEY = 1, ENTRY_VALUE = 2 };
enum { VI_NAME = 1, VI_TYPE = 2, TYPE_TENSOR = 1, TT_ELEM = 1, TT_SHAPE = 2, SHAPE_DIM = 1, DIM_VALUE = 1, DIM_PARAM = 2 };

/* ---- the graph ---- */

struct lmio__onnx {
    lmio_dtype store;
    lmio__pb nodes;  /* GraphProto.node records, finished nodes */
    lmio__pb node;   /* the node being built: attributes still arrive */
    bool has_node;
    lmio__pb consts; /* GraphProto.initializer records of small constants */
    lmio__pb inputs, outputs;
    lmio_tensor *weights; /* big initializers, encoded at write time */
    size_t n_weights, cap_weights;
    char **strs; /* every name handed out */
    size_t n_strs, cap_strs;
    char *scope;
    size_t counter;
    bool failed;
};

lmio_status lmio__onnx_create(lmio_dtype store, lmio__onnx **out, lmio_error *err)
{
    if (store != LMIO_DTYPE_F32 && store != LMIO_DTYPE_F16)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "ONNX dtype %s; expected F32 or F16",
                          lmio_dtype_name(store) ? lmio_dtype_name(store) : "?");
    lmio__onnx *g = lmio__calloc(1, sizeof *g);
    if (!g) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    g->store = store;
    *out = g;
    return LMIO_OK;
}

void lmio__onnx_free(lmio__onnx *g)
{
    if (!g) return;
    lmio__pb_free(&g->nodes);
    lmio__pb_free(&g->node);
    lmio__pb_free(&g->consts);
    lmio__pb_free(&g->inputs);
    lmio__pb_free(&g->outputs);
    lmio__free(g->weights);
    for (size_t i = 0; i < g->n_strs; i++) lmio__free(g->strs[i]);
    lmio__free(g->strs);
    lmio__free(g->scope);
    lmio__free(g);
}

lmio_dtype lmio__onnx_store_dtype(const lmio__onnx *g) { return g->store; }

static int store_elem(const lmio__onnx *g) { return g->store == LMIO_DTYPE_F16 ? LMIO__ONNX_FLOAT16 : LMIO__ONNX_FLOAT; }

/* Keeps s (owned) among g's names; NULL (and g failed) when s is NULL. */
static const char *keep(lmio__onnx *g, char *s)
{
    if (s && lmio__grow((void **)&g->strs, sizeof *g->strs, g->n_strs + 1, &g->cap_strs)) return g->strs[g->n_strs++] = s;
    lmio__free(s);
    g->failed = true;
    return NULL;
}

/* "<scope>/<what>_<n>": unique, since n counts every name made. */
static const char *fresh_name(lmio__onnx *g, const char *what)
{
    const char *sc = g->scope ? g->scope : "";
    size_t cap = strlen(sc) + strlen(what) + 32;
    char *s = lmio__malloc(cap);
    if (s) snprintf(s, cap, "%s%s%s_%zu", sc, *sc ? "/" : "", what, g->counter++);
    return keep(g, s);
}

void lmio__onnx_scope(lmio__onnx *g, const char *prefix)
{
    lmio__free(g->scope);
    g->scope = NULL;
    if (prefix && *prefix && !(g->scope = lmio__strdup(prefix))) g->failed = true;
}

static void encode_dims(lmio__pb *shape, int ndim, const lmio__onnx_dim *dims)
{
    for (int i = 0; i < ndim; i++) {
        lmio__pb d = {0};
        if (dims[i].param) lmio__pb_str(&d, DIM_PARAM, dims[i].param);
        else lmio__pb_int(&d, DIM_VALUE, dims[i].value);
        lmio__pb_msg(shape, SHAPE_DIM, &d);
    }
}

/* A ValueInfoProto record (field of GraphProto) into section. */
static void value_info(lmio__pb *section, uint32_t field, const char *name, int elem, int ndim,
                       const lmio__onnx_dim *dims)
{
    lmio__pb vi = {0}, type = {0}, tt = {0}, shape = {0};
    lmio__pb_str(&vi, VI_NAME, name);
    lmio__pb_int(&tt, TT_ELEM, elem);
    encode_dims(&shape, ndim, dims);
    lmio__pb_msg(&tt, TT_SHAPE, &shape);
    lmio__pb_msg(&type, TYPE_TENSOR, &tt);
    lmio__pb_msg(&vi, VI_TYPE, &type);
    lmio__pb_msg(section, field, &vi);
}

const char *lmio__onnx_input(lmio__onnx *g, const char *name, int elem, int ndim, const lmio__onnx_dim *dims)
{
    value_info(&g->inputs, GRAPH_INPUT, name, elem, ndim, dims);
    return keep(g, lmio__strdup(name));
}

static void flush_node(lmio__onnx *g)
{
    if (g->has_node) lmio__pb_msg(&g->nodes, GRAPH_NODE, &g->node);
    g->has_node = false;
}

/* A node whose outputs are named by the caller (out_names) or fresh. */
static const char *node(lmio__onnx *g, const char *op, const char *const *in, size_t n_in, const char **out,
                        size_t n_out, const char *const *out_names)
{
    flush_node(g);
    const char *first = NULL;
    /* a failure below leaves every output NULL, never unset: callers pass
     * them on as inputs, where NULL marks the graph failed */
    for (size_t i = 0; out && i < n_out; i++) out[i] = NULL;
    for (size_t i = 0; i < n_in; i++)
        if (!in[i]) g->failed = true;
    if (g->failed) return NULL;
    lmio__pb *nd = &g->node;
    for (size_t i = 0; i < n_in; i++) lmio__pb_str(nd, NODE_INPUT, in[i]);
    for (size_t i = 0; i < n_out; i++) {
        const char *o = out_names ? keep(g, lmio__strdup(out_names[i])) : fresh_name(g, op);
        if (!o) return NULL;
        lmio__pb_str(nd, NODE_OUTPUT, o);
        if (out) out[i] = o;
        if (!i) first = o;
    }
    const char *nm = fresh_name(g, op);
    if (!nm) return NULL;
    lmio__pb_str(nd, NODE_NAME, nm);
    lmio__pb_str(nd, NODE_OP, op);
    g->has_node = true;
    return first;
}

const char *lmio__onnx_node(lmio__onnx *g, const char *op, const char *const *in, size_t n_in, const char **out,
                            size_t n_out)
{
    return node(g, op, in, n_in, out, n_out, NULL);
}

/* An AttributeProto of the pending node, name and type set; the caller
 * adds the value and lmio__pb_msg's it. false when there is no node. */
static bool attr_begin(lmio__onnx *g, lmio__pb *a, const char *name, int type)
{
    if (!g->has_node) {
        g->failed = true;
        return false;
    }
    memset(a, 0, sizeof *a);
    lmio__pb_str(a, ATTR_NAME, name);
    lmio__pb_int(a, ATTR_TYPE, type);
    return true;
}

void lmio__onnx_attr_int(lmio__onnx *g, const char *name, int64_t v)
{
    lmio__pb a;
    if (!attr_begin(g, &a, name, ATYPE_INT)) return;
    lmio__pb_int(&a, ATTR_I, v);
    lmio__pb_msg(&g->node, NODE_ATTR, &a);
}

void lmio__onnx_attr_float(lmio__onnx *g, const char *name, float v)
{
    lmio__pb a;
    if (!attr_begin(g, &a, name, ATYPE_FLOAT)) return;
    lmio__pb_float(&a, ATTR_F, v);
    lmio__pb_msg(&g->node, NODE_ATTR, &a);
}

void lmio__onnx_attr_str(lmio__onnx *g, const char *name, const char *v)
{
    lmio__pb a;
    if (!attr_begin(g, &a, name, ATYPE_STRING)) return;
    lmio__pb_str(&a, ATTR_S, v);
    lmio__pb_msg(&g->node, NODE_ATTR, &a);
}

void lmio__onnx_attr_ints(lmio__onnx *g, const char *name, const int64_t *v, size_t n)
{
    lmio__pb a;
    if (!attr_begin(g, &a, name, ATYPE_INTS)) return;
    for (size_t i = 0; i < n; i++) lmio__pb_int(&a, ATTR_INTS, v[i]); /* proto2 repeated: unpacked */
    lmio__pb_msg(&g->node, NODE_ATTR, &a);
}

static size_t elem_size(int elem)
{
    switch (elem) {
    case LMIO__ONNX_INT64: return 8;
    case LMIO__ONNX_FLOAT: return 4;
    case LMIO__ONNX_FLOAT16: return 2;
    default: return 1; /* BOOL */
    }
}

/* A TensorProto of small data (little-endian bytes), inline. */
static void small_tensor(lmio__pb *t, const char *name, int elem, int ndim, const int64_t *dims, const void *le,
                         size_t nbytes)
{
    for (int i = 0; i < ndim; i++) lmio__pb_int(t, TENSOR_DIMS, dims[i]);
    lmio__pb_int(t, TENSOR_TYPE, elem);
    if (name) lmio__pb_str(t, TENSOR_NAME, name);
    lmio__pb_bytes(t, TENSOR_RAW, le, nbytes);
}

/* value's bytes (size 1, 2, 4 or 8) in little-endian order, whatever the
 * host's. */
static void to_le(unsigned char *dst, const void *value, size_t size)
{
    uint64_t v;
    uint32_t v32;
    uint16_t v16;
    switch (size) {
    case 8: memcpy(&v, value, 8); break;
    case 4: memcpy(&v32, value, 4); v = v32; break;
    case 2: memcpy(&v16, value, 2); v = v16; break;
    default: v = *(const unsigned char *)value; break;
    }
    for (size_t i = 0; i < size; i++) dst[i] = (unsigned char)(v >> (8 * i));
}

void lmio__onnx_attr_scalar(lmio__onnx *g, const char *name, int elem, const void *value)
{
    lmio__pb a, t = {0};
    if (!attr_begin(g, &a, name, ATYPE_TENSOR)) return;
    unsigned char le[8];
    int64_t one = 1;
    to_le(le, value, elem_size(elem));
    small_tensor(&t, NULL, elem, 1, &one, le, elem_size(elem));
    lmio__pb_msg(&a, ATTR_T, &t);
    lmio__pb_msg(&g->node, NODE_ATTR, &a);
}

static const char *cast(lmio__onnx *g, const char *value, int to, const char *out_name)
{
    const char *o = node(g, "Cast", &value, 1, NULL, 1, out_name ? &out_name : NULL);
    lmio__onnx_attr_int(g, "to", to);
    return o;
}

const char *lmio__onnx_float_input(lmio__onnx *g, const char *name, int ndim, const lmio__onnx_dim *dims)
{
    const char *in = lmio__onnx_input(g, name, store_elem(g), ndim, dims);
    return g->store == LMIO_DTYPE_F32 ? in : cast(g, in, LMIO__ONNX_FLOAT, NULL);
}

void lmio__onnx_output(lmio__onnx *g, const char *value, const char *name, int elem, int ndim,
                       const lmio__onnx_dim *dims)
{
    node(g, "Identity", &value, 1, NULL, 1, &name);
    value_info(&g->outputs, GRAPH_OUTPUT, name, elem, ndim, dims);
}

void lmio__onnx_float_output(lmio__onnx *g, const char *value, const char *name, int ndim,
                             const lmio__onnx_dim *dims)
{
    if (g->store == LMIO_DTYPE_F32) {
        lmio__onnx_output(g, value, name, LMIO__ONNX_FLOAT, ndim, dims);
        return;
    }
    cast(g, value, LMIO__ONNX_FLOAT16, name);
    value_info(&g->outputs, GRAPH_OUTPUT, name, LMIO__ONNX_FLOAT16, ndim, dims);
}

const char *lmio__onnx_weight(lmio__onnx *g, const lmio_tensor *t)
{
    if (!t || !lmio_dtype_is_convertible_float(t->dtype) || t->ndim > LMIO_MAX_DIMS) {
        g->failed = true;
        return NULL;
    }
    if (!lmio__grow((void **)&g->weights, sizeof *g->weights, g->n_weights + 1, &g->cap_weights)) {
        g->failed = true;
        return NULL;
    }
    g->weights[g->n_weights++] = *t;
    const char *name = keep(g, lmio__strdup(t->name));
    return !name || g->store == LMIO_DTYPE_F32 ? name : cast(g, name, LMIO__ONNX_FLOAT, NULL);
}

static const char *constant(lmio__onnx *g, int elem, const void *values, int ndim, const int64_t *dims)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (uint64_t)dims[i];
    size_t sz = elem_size(elem);
    unsigned char *le = lmio__malloc(n * sz + 1);
    const char *name = fresh_name(g, "const");
    if (!le || !name) {
        lmio__free(le);
        g->failed = true;
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++) to_le(le + i * sz, (const unsigned char *)values + i * sz, sz);
    lmio__pb t = {0};
    small_tensor(&t, name, elem, ndim, dims, le, n * sz);
    lmio__pb_msg(&g->consts, GRAPH_INIT, &t);
    lmio__free(le);
    return name;
}

const char *lmio__onnx_const_i64(lmio__onnx *g, const int64_t *v, int ndim, const int64_t *dims)
{
    return constant(g, LMIO__ONNX_INT64, v, ndim, dims);
}

const char *lmio__onnx_const_f32(lmio__onnx *g, float v) { return constant(g, LMIO__ONNX_FLOAT, &v, 0, NULL); }

const char *lmio__onnx_const_f32s(lmio__onnx *g, const float *v, int ndim, const int64_t *dims)
{
    return constant(g, LMIO__ONNX_FLOAT, v, ndim, dims);
}

/* ---- serialising ---- */

static uint64_t align_up(uint64_t v) { return (v + LMIO__ONNX_DATA_ALIGN - 1) / LMIO__ONNX_DATA_ALIGN * LMIO__ONNX_DATA_ALIGN; }

static void entry(lmio__pb *t, const char *key, const char *value)
{
    lmio__pb e = {0};
    lmio__pb_str(&e, ENTRY_KEY, key);
    lmio__pb_str(&e, ENTRY_VALUE, value);
    lmio__pb_msg(t, TENSOR_EXTERNAL, &e);
}

/* The weights' TensorProto records. External: the data file's content goes
 * to data (each tensor at a page-aligned offset), the records point there. */
static void encode_weights(const lmio__onnx *g, lmio__pb *graph, lmio__pb *data, const char *data_name)
{
    int elem = store_elem(g);
    size_t esz = elem_size(elem);
    static const unsigned char zeros[LMIO__ONNX_DATA_ALIGN];
    for (size_t i = 0; i < g->n_weights; i++) {
        const lmio_tensor *w = &g->weights[i];
        lmio__pb t = {0};
        for (int d = 0; d < w->ndim; d++) lmio__pb_int(&t, TENSOR_DIMS, (int64_t)w->shape[d]);
        lmio__pb_int(&t, TENSOR_TYPE, elem);
        lmio__pb_str(&t, TENSOR_NAME, w->name);
        if (!data) {
            lmio__pb_blob_field(&t, TENSOR_RAW, w, g->store);
        } else {
            uint64_t off = lmio__pb_len(data), pad = align_up(off) - off;
            lmio__buf_put(&data->b, zeros, (size_t)pad);
            char num[2][24];
            snprintf(num[0], sizeof num[0], "%llu", (unsigned long long)(off + pad));
            snprintf(num[1], sizeof num[1], "%llu", (unsigned long long)(w->numel * esz));
            entry(&t, "location", data_name);
            entry(&t, "offset", num[0]);
            entry(&t, "length", num[1]);
            lmio__pb_int(&t, TENSOR_LOCATION, 1); /* EXTERNAL */
            pb_blob(data, w, g->store);
        }
        lmio__pb_msg(graph, GRAPH_INIT, &t);
    }
}

/* A section's records, as they are, into graph (sections hold no blobs). */
static void append_section(lmio__pb *graph, const lmio__pb *sec)
{
    if (pb_failed(sec)) graph->oom = true;
    if (sec->b.len) lmio__buf_put(&graph->b, sec->b.data, sec->b.len);
}

/* The whole ModelProto; data non-NULL: weights external, into data. The
 * sections are copied, not consumed: a graph may be encoded twice (inline,
 * then external when inline is too large). */
static void encode_model(lmio__onnx *g, lmio__pb *model, lmio__pb *data, const char *data_name)
{
    flush_node(g);
    lmio__pb graph = {0}, opset = {0};
    append_section(&graph, &g->nodes);
    lmio__pb_str(&graph, GRAPH_NAME, "lmio");
    encode_weights(g, &graph, data, data_name);
    append_section(&graph, &g->consts);
    append_section(&graph, &g->inputs);
    append_section(&graph, &g->outputs);
    lmio__pb_int(model, MODEL_IR, LMIO__ONNX_IR);
    lmio__pb_str(model, MODEL_PRODUCER, "lmio");
    lmio__pb_str(model, MODEL_PRODUCER_VERSION, LMIO_VERSION_STRING);
    lmio__pb_msg(model, MODEL_GRAPH, &graph);
    lmio__pb_str(&opset, OPSET_DOMAIN, "");
    lmio__pb_int(&opset, OPSET_VERSION, LMIO__ONNX_OPSET);
    lmio__pb_msg(model, MODEL_OPSET, &opset);
}

static lmio_status write_pb(const lmio__pb *p, const char *path, int durable, lmio_error *err)
{
    lmio__outfile out;
    lmio_status s = lmio__outfile_begin(&out, path, err);
    if (s) return s;
    if ((s = lmio__pb_write(p, &out, err))) {
        lmio__outfile_abort(&out);
        return s;
    }
    return lmio__outfile_commit(&out, durable, err);
}

lmio_status lmio__onnx_write(lmio__onnx *g, const lmio__onnx_write_opts *o, bool *external, lmio_error *err)
{
    if (g->failed) return lmio__fail(err, LMIO_ERR_NOMEM, o->path, -1, "", "out of memory building the ONNX graph");
    lmio__pb model = {0}, data = {0};
    bool ext = o->external;
    if (!ext) {
        encode_model(g, &model, NULL, NULL);
        ext = lmio__pb_len(&model) > LMIO__ONNX_INLINE_MAX;
        if (ext) lmio__pb_free(&model);
    }
    if (ext) encode_model(g, &model, &data, o->data_name);
    lmio_status s = LMIO_OK;
    if (lmio__pb_len(&model) > LMIO__ONNX_INLINE_MAX)
        s = lmio__fail(err, LMIO_ERR_LIMIT, o->path, -1, "", "the graph alone is %llu bytes; expected under 2 GiB",
                       (unsigned long long)lmio__pb_len(&model));
    if (!s && ext) s = write_pb(&data, o->data_path, o->durable, err);
    if (!s) s = write_pb(&model, o->path, o->durable, err);
    if (!s && external) *external = ext;
    lmio__pb_free(&model);
    lmio__pb_free(&data);
    return s;
}
