/* GGUF (llama.cpp): reader and writer.
 *
 * Layout (shared/reference/gguf-llamacpp.md §1): "GGUF", u32 version (2 or
 * 3), u64 tensor count, u64 metadata count, the metadata key/values, the
 * tensor infos, padding to the alignment, then the data. Every count and
 * length is checked against the bytes left in the file before anything is
 * sized by it: the published GGUF parsing bugs were all a header count
 * driving an allocation.
 *
 * A state dict read from GGUF keeps GGUF's tensor names
 * ("blk.0.attn_q.weight") and row-major shapes (GGUF lists the innermost
 * dimension first; lmio reverses it). F32, F16 and BF16 tensors (and the
 * plain integer types and F64) are zero-copy views; quantised tensors of
 * the types gguf_quant.c knows are dequantised to F32. Metadata becomes
 * string metadata: strings as they are, numbers in decimal (floats in the
 * shortest form that reads back to the same value), bools as true/false,
 * arrays as JSON. */
#include "../core/json.h"
#include "formats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GGUF_DEFAULT_ALIGNMENT 32
/* Nested arrays are legal GGUF; real files have none. Deeper than this is
 * an attack on the reader's stack, not a model. */
#define GGUF_MAX_DEPTH 8
/* The spec's limits: names of tensors at most 64 bytes, keys 65535. */
#define GGUF_MAX_NAME 64
#define GGUF_MAX_KEY 65535
#define GGUF_MAX_DIMS 4

enum {
    T_U8 = 0, T_I8 = 1, T_U16 = 2, T_I16 = 3, T_U32 = 4, T_I32 = 5, T_F32 = 6, T_BOOL = 7,
    T_STRING = 8, T_ARRAY = 9, T_U64 = 10, T_I64 = 11, T_F64 = 12, T_COUNT = 13
};

static const char *const k_value_types[T_COUNT] = {"UINT8",  "INT8",  "UINT16", "INT16", "UINT32", "INT32", "FLOAT32",
                                                   "BOOL",   "STRING", "ARRAY", "UINT64", "INT64", "FLOAT64"};

/* The fewest bytes a value of each type takes: what a count is checked
 * against before anything is sized by it. */
static uint64_t min_value_size(uint32_t t)
{
    static const unsigned char k[T_COUNT] = {1, 1, 2, 2, 4, 4, 4, 1, 8, 12, 8, 8, 8};
    return t < T_COUNT ? k[t] : 1;
}

/* ---- reading ---- */

typedef struct rd {
    const unsigned char *p;
    uint64_t size, pos;
    const char *path;
    lmio_error *err;
} rd;

static uint64_t left(const rd *r) { return r->size - r->pos; }

static lmio_status truncated(rd *r, uint64_t need, const char *what)
{
    return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, (int64_t)r->pos, "",
                      "file ends %llu bytes into %s; expected %llu bytes", (unsigned long long)left(r), what,
                      (unsigned long long)need);
}

static lmio_status get_bytes(rd *r, uint64_t n, const unsigned char **out, const char *what)
{
    if (n > left(r)) return truncated(r, n, what);
    *out = r->p + r->pos;
    r->pos += n;
    return LMIO_OK;
}

static lmio_status get_u32(rd *r, uint32_t *v, const char *what)
{
    const unsigned char *b = NULL;
    lmio_status s = get_bytes(r, 4, &b, what);
    if (!s) *v = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
    return s;
}

static lmio_status get_u64(rd *r, uint64_t *v, const char *what)
{
    const unsigned char *b = NULL;
    lmio_status s = get_bytes(r, 8, &b, what);
    if (!s) *v = lmio__le64(b);
    return s;
}

/* A string: u64 length (checked against the bytes left) and UTF-8 bytes. */
static lmio_status get_str(rd *r, const char **s, uint64_t *len, uint64_t max, const char *what)
{
    int64_t at = (int64_t)r->pos;
    lmio_status st = get_u64(r, len, what);
    if (st) return st;
    if (*len > left(r))
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at, "",
                          "%s has length %llu but %llu bytes are left; expected a length within the file", what,
                          (unsigned long long)*len, (unsigned long long)left(r));
    if (*len > max)
        return lmio__fail(r->err, LMIO_ERR_LIMIT, r->path, at, "", "%s has length %llu; expected at most %llu", what,
                          (unsigned long long)*len, (unsigned long long)max);
    *s = (const char *)r->p + r->pos;
    if (!lmio__utf8_valid(*s, (size_t)*len))
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at + 8 + (int64_t)lmio__utf8_prefix(*s, (size_t)*len), "",
                          "%s is not valid UTF-8; expected UTF-8 text", what);
    r->pos += *len;
    return LMIO_OK;
}

/* Shortest decimal that reads back as the same float (digits 1..9) or
 * double (1..17): "1e-05", not "9.99999975e-06". */
static void put_float(lmio__buf *b, double v, bool single)
{
    char tmp[40];
    for (int prec = 1; prec <= (single ? 9 : 17); prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (single ? strtof(tmp, NULL) == (float)v : strtod(tmp, NULL) == v) break;
    }
    if (v != v) snprintf(tmp, sizeof tmp, "NaN");
    lmio__buf_puts(b, tmp);
}

static lmio_status value_text(rd *r, uint32_t type, int depth, bool in_array, lmio__buf *out);

static lmio_status array_text(rd *r, int depth, lmio__buf *out)
{
    int64_t at = (int64_t)r->pos;
    uint32_t et;
    uint64_t n;
    lmio_status s = get_u32(r, &et, "an array's element type");
    if (!s) s = get_u64(r, &n, "an array's length");
    if (s) return s;
    if (et >= T_COUNT)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at, "",
                          "array element type %u; expected a GGUF value type 0..12", et);
    if (et == T_ARRAY && depth + 1 >= GGUF_MAX_DEPTH)
        return lmio__fail(r->err, LMIO_ERR_LIMIT, r->path, at, "", "arrays nested deeper than %d; expected at most %d",
                          GGUF_MAX_DEPTH - 1, GGUF_MAX_DEPTH - 1);
    uint64_t need;
    if (!lmio__mul_u64(n, min_value_size(et), &need) || need > left(r))
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at + 4, "",
                          "array of %llu %s values needs at least %llu bytes but %llu are left; expected a count "
                          "within the file",
                          (unsigned long long)n, k_value_types[et], (unsigned long long)(need ? need : UINT64_MAX),
                          (unsigned long long)left(r));
    lmio__buf_put(out, "[", 1);
    for (uint64_t i = 0; i < n && !s; i++) {
        if (i) lmio__buf_put(out, ", ", 2);
        s = value_text(r, et, depth + 1, true, out);
    }
    lmio__buf_put(out, "]", 1);
    return s;
}

/* One value as text, appended to out. */
static lmio_status value_text(rd *r, uint32_t type, int depth, bool in_array, lmio__buf *out)
{
    const unsigned char *b = NULL;
    char tmp[32];
    lmio_status s = LMIO_OK;
    if (type == T_STRING) {
        const char *str;
        uint64_t len;
        if ((s = get_str(r, &str, &len, UINT64_MAX, "a string value"))) return s;
        if (!in_array) {
            lmio__buf_put(out, str, (size_t)len);
            return LMIO_OK;
        }
        char *z = lmio__strndup(str, (size_t)len);
        if (!z) return lmio__fail(r->err, LMIO_ERR_NOMEM, r->path, -1, "", "out of memory");
        lmio__buf_json_string(out, z);
        lmio__free(z);
        return LMIO_OK;
    }
    if (type == T_ARRAY) return array_text(r, depth, out);
    int64_t at = (int64_t)r->pos;
    if ((s = get_bytes(r, min_value_size(type), &b, "a value"))) return s;
    uint64_t u = 0;
    for (int i = (int)min_value_size(type) - 1; i >= 0; i--) u = u << 8 | b[i];
    switch (type) {
    case T_U8: case T_U16: case T_U32: case T_U64: snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)u); break;
    case T_I8: snprintf(tmp, sizeof tmp, "%d", (int)(int8_t)u); break;
    case T_I16: snprintf(tmp, sizeof tmp, "%d", (int)(int16_t)u); break;
    case T_I32: snprintf(tmp, sizeof tmp, "%ld", (long)(int32_t)u); break;
    case T_I64: snprintf(tmp, sizeof tmp, "%lld", (long long)(int64_t)u); break;
    case T_BOOL:
        if (u > 1)
            return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at, "", "bool value %u; expected 0 or 1", (unsigned)u);
        snprintf(tmp, sizeof tmp, "%s", u ? "true" : "false");
        break;
    case T_F32: {
        float f;
        uint32_t w = (uint32_t)u;
        memcpy(&f, &w, 4);
        put_float(out, f, true);
        return LMIO_OK;
    }
    case T_F64: {
        double d;
        memcpy(&d, &u, 8);
        put_float(out, d, false);
        return LMIO_OK;
    }
    default:
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at - 4, "", "value type %u; expected a GGUF value type 0..12",
                          type);
    }
    lmio__buf_puts(out, tmp);
    return LMIO_OK;
}

typedef struct tinfo {
    const char *name;
    size_t name_len;
    int ndim;
    uint64_t ne[GGUF_MAX_DIMS]; /* innermost first, as in the file */
    const lmio__ggml_type *type;
    uint64_t offset, nbytes, numel;
    int64_t at; /* where the info starts, for messages */
} tinfo;

typedef struct header {
    uint32_t version;
    uint64_t n_tensors, n_kv;
    uint32_t alignment;
    tinfo *t;
    uint64_t data_start;
} header;

/* general.alignment must be a UINT32 power of two (ggml's rule). */
static lmio_status check_alignment(rd *r, int64_t at, uint32_t type, header *h)
{
    if (type != T_U32)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at, "general.alignment",
                          "general.alignment is a %s; expected UINT32", type < T_COUNT ? k_value_types[type] : "?");
    uint32_t a;
    lmio_status s = get_u32(r, &a, "general.alignment");
    if (s) return s;
    if (a == 0 || (a & (a - 1)))
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at, "general.alignment",
                          "general.alignment is %u; expected a power of two", a);
    h->alignment = a;
    r->pos -= 4; /* read again as text */
    return LMIO_OK;
}

static lmio_status read_kvs(rd *r, header *h, lmio_statedict *sd)
{
    lmio__buf val = {0};
    lmio_status s = LMIO_OK;
    for (uint64_t i = 0; i < h->n_kv && !s; i++) {
        int64_t at = (int64_t)r->pos;
        const char *key;
        uint64_t klen;
        uint32_t type;
        if ((s = get_str(r, &key, &klen, GGUF_MAX_KEY, "a metadata key"))) break;
        if (klen == 0) {
            s = lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, at, "", "metadata key %llu is empty; expected a name",
                           (unsigned long long)i);
            break;
        }
        char *k = lmio__strndup(key, (size_t)klen);
        if (!k) { s = lmio__fail(r->err, LMIO_ERR_NOMEM, r->path, -1, "", "out of memory"); break; }
        int64_t tat = (int64_t)r->pos;
        if (!(s = get_u32(r, &type, "a metadata value type")) && type >= T_COUNT)
            s = lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, tat, k,
                           "metadata \"%s\" has value type %u; expected a GGUF value type 0..12", k, type);
        if (!s && !strcmp(k, "general.alignment")) s = check_alignment(r, tat, type, h);
        val.len = 0;
        if (!s) s = value_text(r, type, 0, false, &val);
        lmio__buf_put(&val, "", 0);
        if (!s && val.oom) s = lmio__fail(r->err, LMIO_ERR_NOMEM, r->path, -1, k, "out of memory");
        if (!s) s = lmio__metadata_append(sd, k, val.data, r->err);
        if (s && !r->err->key[0]) snprintf(r->err->key, sizeof r->err->key, "%s", k);
        lmio__free(k);
    }
    lmio__buf_free(&val);
    return s;
}

static lmio_status read_tensor_info(rd *r, tinfo *t)
{
    t->at = (int64_t)r->pos;
    uint32_t nd, type;
    uint64_t name_len;
    lmio_status s = get_str(r, &t->name, &name_len, GGUF_MAX_NAME, "a tensor name");
    if (s) return s;
    t->name_len = (size_t)name_len;
    char nm[GGUF_MAX_NAME + 1];
    snprintf(nm, sizeof nm, "%.*s", (int)t->name_len, t->name);
    if (!t->name_len)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, t->at, "", "a tensor name is empty; expected a name");
    if ((s = get_u32(r, &nd, "a tensor's dimension count"))) return s;
    if (nd > GGUF_MAX_DIMS)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, (int64_t)r->pos - 4, nm,
                          "tensor \"%s\" has %u dimensions; expected at most %d", nm, nd, GGUF_MAX_DIMS);
    t->ndim = (int)nd;
    t->numel = 1;
    for (uint32_t d = 0; d < nd; d++) {
        if ((s = get_u64(r, &t->ne[d], "a tensor's dimensions"))) return s;
        if (t->ne[d] > INT64_MAX || !lmio__mul_u64(t->numel, t->ne[d], &t->numel) || t->numel > INT64_MAX)
            return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, (int64_t)r->pos - 8, nm,
                              "tensor \"%s\": its dimensions multiply past 2^63; expected a real size", nm);
    }
    int64_t tat = (int64_t)r->pos;
    if ((s = get_u32(r, &type, "a tensor's type"))) return s;
    if (!(t->type = lmio__ggml_type_find(type)))
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, tat, nm,
                          "tensor \"%s\" has type %u, which ggml does not define; expected a ggml type", nm, type);
    if ((s = get_u64(r, &t->offset, "a tensor's offset"))) return s;
    uint64_t row = nd ? t->ne[0] : 1;
    if (row % t->type->block_elems)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, tat, nm,
                          "tensor \"%s\": rows of %llu elements of %s; expected a multiple of its block of %u", nm,
                          (unsigned long long)row, t->type->name, t->type->block_elems);
    t->nbytes = t->numel / t->type->block_elems * t->type->block_bytes; /* numel < 2^63: cannot wrap */
    return LMIO_OK;
}

static int cmp_span(const void *a, const void *b)
{
    const tinfo *x = *(const tinfo *const *)a, *y = *(const tinfo *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Every tensor aligned, inside the file and apart from every other. */
static lmio_status check_spans(rd *r, header *h)
{
    if (!h->n_tensors) return LMIO_OK;
    const tinfo **by = lmio__malloc((size_t)h->n_tensors * sizeof *by);
    if (!by) return lmio__fail(r->err, LMIO_ERR_NOMEM, r->path, -1, "", "out of memory");
    for (uint64_t i = 0; i < h->n_tensors; i++) by[i] = &h->t[i];
    qsort(by, (size_t)h->n_tensors, sizeof *by, cmp_span);
    lmio_status s = LMIO_OK;
    uint64_t room = r->size - h->data_start;
    for (uint64_t i = 0; i < h->n_tensors && !s; i++) {
        const tinfo *t = by[i];
        char nm[GGUF_MAX_NAME + 1];
        snprintf(nm, sizeof nm, "%.*s", (int)t->name_len, t->name);
        if (t->offset % h->alignment)
            s = lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, t->at, nm,
                           "tensor \"%s\" has offset %llu; expected a multiple of the alignment %u", nm,
                           (unsigned long long)t->offset, h->alignment);
        else if (t->offset > room || t->nbytes > room - t->offset)
            s = lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, t->at, nm,
                           "tensor \"%s\" spans data bytes %llu..%llu but the data section holds %llu; expected it "
                           "inside the file",
                           nm, (unsigned long long)t->offset, (unsigned long long)t->offset + t->nbytes,
                           (unsigned long long)room);
        else if (i && t->nbytes && by[i - 1]->offset + by[i - 1]->nbytes > t->offset)
            s = lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, t->at, nm,
                           "tensor \"%s\" at data offset %llu overlaps \"%.*s\", which ends at %llu; expected "
                           "separate tensors",
                           nm, (unsigned long long)t->offset, (int)by[i - 1]->name_len, by[i - 1]->name,
                           (unsigned long long)(by[i - 1]->offset + by[i - 1]->nbytes));
    }
    lmio__free(by);
    return s;
}

static lmio_status read_header(rd *r, header *h, lmio_statedict *sd)
{
    const unsigned char *magic;
    lmio_status s = get_bytes(r, 4, &magic, "the magic");
    if (s) return s;
    if (memcmp(magic, "GGUF", 4))
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, 0, "", "magic is not \"GGUF\"; expected a GGUF file");
    if ((s = get_u32(r, &h->version, "the version"))) return s;
    if (h->version != 2 && h->version != 3)
        return lmio__fail(r->err, h->version == 1 ? LMIO_ERR_UNSUPPORTED : LMIO_ERR_FORMAT, r->path, 4, "",
                          "GGUF version %u%s; expected 2 or 3", h->version,
                          h->version && !(h->version & 0xFFFF) ? " (a big-endian file?)" : "");
    if ((s = get_u64(r, &h->n_tensors, "the tensor count")) || (s = get_u64(r, &h->n_kv, "the metadata count")))
        return s;
    /* the smallest key/value is 13 bytes, the smallest tensor info 25 */
    if (h->n_kv > left(r) / 13)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, 16, "",
                          "metadata count %llu cannot fit in the %llu bytes left; expected at most %llu",
                          (unsigned long long)h->n_kv, (unsigned long long)left(r), (unsigned long long)(left(r) / 13));
    if (h->n_tensors > left(r) / 25)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, 8, "",
                          "tensor count %llu cannot fit in the %llu bytes left; expected at most %llu",
                          (unsigned long long)h->n_tensors, (unsigned long long)left(r),
                          (unsigned long long)(left(r) / 25));
    h->alignment = GGUF_DEFAULT_ALIGNMENT;
    if ((s = read_kvs(r, h, sd)) || (s = lmio__metadata_sort(sd, r->err))) return s;
    if (h->n_tensors > left(r) / 25)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, 8, "",
                          "tensor count %llu cannot fit in the %llu bytes left after the metadata; expected at most "
                          "%llu",
                          (unsigned long long)h->n_tensors, (unsigned long long)left(r),
                          (unsigned long long)(left(r) / 25));
    h->t = lmio__calloc(h->n_tensors ? (size_t)h->n_tensors : 1, sizeof *h->t);
    if (!h->t) return lmio__fail(r->err, LMIO_ERR_NOMEM, r->path, -1, "", "out of memory");
    for (uint64_t i = 0; i < h->n_tensors && !s; i++) s = read_tensor_info(r, &h->t[i]);
    if (s) return s;
    uint64_t pad = (h->alignment - r->pos % h->alignment) % h->alignment;
    h->data_start = r->pos + pad;
    if (h->n_tensors && h->data_start > r->size)
        return lmio__fail(r->err, LMIO_ERR_FORMAT, r->path, (int64_t)r->pos, "",
                          "file ends before the data section at %llu; expected the padding and data",
                          (unsigned long long)h->data_start);
    return check_spans(r, h);
}

/* ---- tensors into the state dict ---- */

static lmio_dtype view_dtype(uint32_t ggml)
{
    switch (ggml) {
    case 0: return LMIO_DTYPE_F32;
    case 1: return LMIO_DTYPE_F16;
    case 30: return LMIO_DTYPE_BF16;
    case 24: return LMIO_DTYPE_I8;
    case 25: return LMIO_DTYPE_I16;
    case 26: return LMIO_DTYPE_I32;
    case 27: return LMIO_DTYPE_I64;
    case 28: return LMIO_DTYPE_F64;
    default: return LMIO_DTYPE_NONE;
    }
}

typedef struct dq_job {
    uint32_t type;
    const unsigned char *src;
    float *dst;
    uint64_t n_blocks;
} dq_job;

static void dq_fn(void *ctx)
{
    dq_job *j = ctx;
    lmio__ggml_dequantize(j->type, j->src, j->dst, j->n_blocks);
}

static lmio_status add_tensor(rd *r, const header *h, const tinfo *t, lmio_statedict *sd)
{
    char nm[GGUF_MAX_NAME + 1];
    snprintf(nm, sizeof nm, "%.*s", (int)t->name_len, t->name);
    uint64_t shape[GGUF_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) shape[d] = t->ne[t->ndim - 1 - d];
    uint64_t at = h->data_start + t->offset;
    lmio_dtype dt = view_dtype(t->type->id);
    if (dt != LMIO_DTYPE_NONE)
        return lmio__statedict_add_view(sd, t->name, t->name_len, dt, t->ndim, shape, r->p + at, t->nbytes,
                                        (int64_t)at, NULL, r->err);
    if (!lmio__ggml_can_dequantize(t->type->id))
        return lmio__fail(r->err, LMIO_ERR_UNSUPPORTED, r->path, t->at, nm,
                          "tensor \"%s\" is %s; lmio reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, "
                          "Q3_K, Q4_K, Q5_K and Q6_K",
                          nm, t->type->name);
    uint64_t bytes;
    if (!lmio__mul_u64(t->numel, 4, &bytes) || bytes > SIZE_MAX)
        return lmio__fail(r->err, LMIO_ERR_LIMIT, r->path, t->at, nm, "tensor \"%s\" is too large to dequantise", nm);
    float *f = lmio__malloc(bytes ? (size_t)bytes : 1);
    if (!f) return lmio__fail(r->err, LMIO_ERR_NOMEM, r->path, t->at, nm, "out of memory dequantising \"%s\"", nm);
    dq_job j = {t->type->id, r->p + at, f, t->numel / t->type->block_elems};
    if (!lmio__guarded(dq_fn, &j)) {
        lmio__free(f);
        return lmio__fail(r->err, LMIO_ERR_IO, r->path, (int64_t)at, nm,
                          "tensor \"%s\" could not be read: the file shrank while open", nm);
    }
    return lmio__statedict_add_owned(sd, t->name, t->name_len, LMIO_DTYPE_F32, t->ndim, shape, f, bytes, r->err);
}

static lmio_status gguf_open(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err)
{
    lmio_error scratch;
    rd r = {f->data, f->size, 0, path, err ? err : &scratch};
    r.err->key[0] = 0;
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_create(&sd, err);
    if (s) return s;
    header h = {0};
    if (!(s = lmio__statedict_set_source(sd, path, "gguf", NULL, err)) && !(s = read_header(&r, &h, sd)))
        for (uint64_t i = 0; i < h.n_tensors && !s; i++) s = add_tensor(&r, &h, &h.t[i], sd);
    lmio__free(h.t);
    if (s) {
        lmio_statedict_free(sd);
        return s;
    }
    lmio__statedict_set_source(sd, NULL, "gguf", f, NULL);
    *out = sd;
    return LMIO_OK;
}


/* ---- writing ---- */

static void put_u32(lmio__buf *b, uint32_t v)
{
    unsigned char x[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    lmio__buf_put(b, x, 4);
}

static void put_u64(lmio__buf *b, uint64_t v)
{
    unsigned char x[8];
    lmio__put_le64(x, v);
    lmio__buf_put(b, x, 8);
}

static void put_str(lmio__buf *b, const char *s, size_t n)
{
    put_u64(b, n);
    lmio__buf_put(b, s, n);
}

/* The text is a plain decimal integer. */
static bool is_int_text(const char *v)
{
    const char *p = v + (*v == '-');
    if (!*p || (p[0] == '0' && p[1])) return false;
    for (; *p; p++)
        if (*p < '0' || *p > '9') return false;
    return true;
}

/* A decimal number with a point or an exponent ("1e-05", "10000.0"). */
static bool is_float_text(const char *v)
{
    char *end;
    if (!*v || !strpbrk(v, ".eE")) return false;
    strtod(v, &end);
    return !*end && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9'));
}

static void put_f32(lmio__buf *b, double d)
{
    float f = (float)d;
    uint32_t w;
    memcpy(&w, &f, 4);
    put_u32(b, w);
}

/* The element type of a JSON array as GGUF will hold it, as gguf-py types
 * Python values (str STRING, int INT32, float FLOAT32, bool BOOL, list
 * ARRAY); T_COUNT when the elements mix kinds. */
static uint32_t array_type(const lmio__json *a)
{
    uint32_t t = T_COUNT;
    bool wide = false;
    for (size_t i = 0; i < lmio__json_array_size(a); i++) {
        const lmio__json *e = lmio__json_array_get(a, i);
        uint32_t et = lmio__json_is_string(e) ? T_STRING : lmio__json_is_bool(e) ? T_BOOL
                      : lmio__json_is_integer(e) ? T_I32 : lmio__json_is_real(e) ? T_F32
                      : lmio__json_is_array(e) ? T_ARRAY : T_COUNT;
        if (et == T_I32) {
            int64_t v = lmio__json_integer_value(e);
            wide |= v < INT32_MIN || v > INT32_MAX;
        }
        if (t == T_COUNT || (t == T_I32 && et == T_F32)) t = et;
        else if (!(t == et || (t == T_F32 && et == T_I32))) return T_COUNT;
        if (et == T_COUNT) return T_COUNT;
    }
    return t == T_I32 && wide ? T_I64 : t;
}

static bool put_array(lmio__buf *b, const lmio__json *a, int depth)
{
    uint32_t t = array_type(a);
    if (t == T_COUNT || depth >= GGUF_MAX_DEPTH - 1) return false;
    put_u32(b, t);
    put_u64(b, lmio__json_array_size(a));
    for (size_t i = 0; i < lmio__json_array_size(a); i++) {
        const lmio__json *e = lmio__json_array_get(a, i);
        switch (t) {
        case T_STRING: {
            const char *v = lmio__json_string_value(e);
            put_str(b, v, strlen(v));
            break;
        }
        case T_BOOL: lmio__buf_put(b, lmio__json_is_true(e) ? "\1" : "\0", 1); break;
        case T_I32: put_u32(b, (uint32_t)(int32_t)lmio__json_integer_value(e)); break;
        case T_I64: put_u64(b, (uint64_t)lmio__json_integer_value(e)); break;
        case T_F32: put_f32(b, lmio__json_number_value(e)); break;
        default:
            put_u32(b, T_ARRAY);
            if (!put_array(b, e, depth + 1)) return false;
        }
    }
    return true;
}

/* One metadata value, typed from its text as the reader wrote it and as
 * llama.cpp reads its keys: integers UINT32 (INT32 when negative, 64-bit
 * when they do not fit), numbers with a point or exponent FLOAT32,
 * true/false BOOL, JSON arrays as arrays, anything else STRING. */
static void put_meta_value(lmio__buf *b, const char *v)
{
    size_t n = strlen(v);
    if (!strcmp(v, "true") || !strcmp(v, "false")) {
        put_u32(b, T_BOOL);
        lmio__buf_put(b, v[0] == 't' ? "\1" : "\0", 1);
        return;
    }
    if (is_int_text(v)) {
        errno = 0;
        if (v[0] == '-') {
            long long x = strtoll(v, NULL, 10);
            if (!errno && x >= INT32_MIN) { put_u32(b, T_I32); put_u32(b, (uint32_t)(int32_t)x); return; }
            if (!errno) { put_u32(b, T_I64); put_u64(b, (uint64_t)x); return; }
        } else {
            unsigned long long x = strtoull(v, NULL, 10);
            if (!errno && x <= UINT32_MAX) { put_u32(b, T_U32); put_u32(b, (uint32_t)x); return; }
            if (!errno) { put_u32(b, T_U64); put_u64(b, x); return; }
        }
    }
    if (is_float_text(v)) {
        put_u32(b, T_F32);
        put_f32(b, strtod(v, NULL));
        return;
    }
    if (v[0] == '[') {
        lmio__json *j = NULL;
        size_t mark = b->len;
        if (lmio__json_parse(v, n, "", 0, &j, NULL) == LMIO_OK && lmio__json_array_size(j)) {
            put_u32(b, T_ARRAY);
            bool ok = put_array(b, j, 0);
            lmio__json_decref(j);
            if (ok) return;
            b->len = mark; /* not an array GGUF can hold: keep the text */
        } else {
            lmio__json_decref(j);
        }
    }
    put_u32(b, T_STRING);
    put_str(b, v, n);
}

static uint32_t ggml_of_dtype(lmio_dtype dt)
{
    switch (dt) {
    case LMIO_DTYPE_F32: return 0;
    case LMIO_DTYPE_F16: return 1;
    case LMIO_DTYPE_BF16: return 30;
    case LMIO_DTYPE_I8: return 24;
    case LMIO_DTYPE_I16: return 25;
    case LMIO_DTYPE_I32: return 26;
    case LMIO_DTYPE_I64: return 27;
    case LMIO_DTYPE_F64: return 28;
    default: return UINT32_MAX;
    }
}

typedef struct wt {
    lmio_tensor t;
    const lmio__ggml_type *type;
    uint64_t nbytes, offset;
} wt;

/* The header: metadata (general.architecture first, as gguf-py writes
 * it), tensor infos, padding to the data. */
static lmio_status build_header(const lmio_statedict *sd, const wt *ws, size_t n, const char *path, lmio__buf *b,
                                lmio_error *err)
{
    size_t nm = lmio_metadata_count(sd);
    lmio__buf_put(b, "GGUF", 4);
    put_u32(b, 3);
    put_u64(b, n);
    put_u64(b, nm);
    const char *arch = lmio_metadata_find(sd, "general.architecture");
    if (arch) {
        put_str(b, "general.architecture", 20);
        put_meta_value(b, arch);
    }
    for (size_t i = 0; i < nm; i++) {
        const char *k, *v;
        lmio_metadata_get(sd, i, &k, &v, NULL);
        if (!strcmp(k, "general.architecture")) continue;
        if (!strcmp(k, "general.alignment") && strcmp(v, "32"))
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, k, "general.alignment %s; lmio writes 32", v);
        put_str(b, k, strlen(k));
        put_meta_value(b, v);
    }
    for (size_t i = 0; i < n; i++) {
        const wt *w = &ws[i];
        put_str(b, w->t.name, strlen(w->t.name));
        put_u32(b, (uint32_t)w->t.ndim);
        for (int d = w->t.ndim - 1; d >= 0; d--) put_u64(b, w->t.shape[d]);
        put_u32(b, w->type->id);
        put_u64(b, w->offset);
    }
    while (b->len % GGUF_DEFAULT_ALIGNMENT) lmio__buf_put(b, "", 1);
    if (b->oom) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory building the GGUF header");
    return LMIO_OK;
}

/* Each tensor's type, size and offset; refuses what GGUF cannot hold. */
static lmio_status plan(const lmio_statedict *sd, const uint32_t *types, const lmio_save_opts *o, wt *ws,
                        const char *path, uint64_t *data_total, lmio_error *err)
{
    uint64_t off = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        wt *w = &ws[i];
        lmio_statedict_get(sd, i, &w->t, NULL);
        uint32_t id = types ? types[i] : UINT32_MAX;
        if (id == UINT32_MAX)
            id = ggml_of_dtype(o->dtype != LMIO_DTYPE_NONE && lmio_dtype_is_convertible_float(w->t.dtype) ? o->dtype
                                                                                                         : w->t.dtype);
        w->type = lmio__ggml_type_find(id);
        size_t nlen = strlen(w->t.name);
        if (!w->type || (id != 0 && id != 1 && id != 30 && id != 8 && ggml_of_dtype(w->t.dtype) != id))
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, w->t.name,
                              "tensor \"%s\" is %s; GGUF holds F32, F16, BF16, F64 and signed integers", w->t.name,
                              lmio_dtype_name(w->t.dtype));
        if ((id == 0 || id == 1 || id == 30 || id == 8) && ggml_of_dtype(w->t.dtype) != id &&
            !lmio_dtype_is_convertible_float(w->t.dtype))
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, w->t.name,
                              "tensor \"%s\" is %s; only floating tensors become %s", w->t.name,
                              lmio_dtype_name(w->t.dtype), w->type->name);
        if (nlen > GGUF_MAX_NAME || w->t.ndim > GGUF_MAX_DIMS)
            return lmio__fail(err, LMIO_ERR_LIMIT, path, -1, w->t.name,
                              "tensor \"%s\": %zu-byte name, %d dimensions; GGUF allows %d and %d", w->t.name, nlen,
                              w->t.ndim, GGUF_MAX_NAME, GGUF_MAX_DIMS);
        uint64_t row = w->t.ndim ? w->t.shape[w->t.ndim - 1] : 1;
        if (row % w->type->block_elems)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, w->t.name,
                              "tensor \"%s\" has rows of %llu; %s needs a multiple of %u", w->t.name,
                              (unsigned long long)row, w->type->name, w->type->block_elems);
        w->nbytes = w->t.numel / w->type->block_elems * w->type->block_bytes;
        w->offset = off;
        off += w->nbytes + (GGUF_DEFAULT_ALIGNMENT - w->nbytes % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT;
    }
    *data_total = off;
    return LMIO_OK;
}

typedef struct cvt_job {
    const wt *w;
    uint64_t first, count; /* elements */
    float *f32;
    unsigned char *out;
} cvt_job;

/* Converts elements [first, first + count) of a tensor to its GGUF type;
 * only reads and computes, so a vanished mapping is caught around it. */
static void cvt_fn(void *ctx)
{
    cvt_job *j = ctx;
    const wt *w = j->w;
    size_t in_sz = lmio_dtype_bits(w->t.dtype) / 8;
    const unsigned char *src = (const unsigned char *)w->t.data + j->first * in_sz;
    if (w->type->id != 8) {
        lmio_dtype to = w->type->id == 0 ? LMIO_DTYPE_F32 : w->type->id == 1 ? LMIO_DTYPE_F16 : LMIO_DTYPE_BF16;
        lmio_convert(j->out, to, src, w->t.dtype, (size_t)j->count, NULL);
        return;
    }
    lmio_convert(j->f32, LMIO_DTYPE_F32, src, w->t.dtype, (size_t)j->count, NULL);
    lmio__ggml_quantize_q8_0(j->f32, j->out, j->count / 32);
}

#define GGUF_CHUNK (1u << 20) /* elements per conversion step: a multiple of 32 */

static lmio_status write_tensor(lmio__outfile *out, const wt *w, const lmio_save_opts *o, uint64_t total,
                                unsigned char *buf, float *f32, const char *path, lmio_error *err)
{
    static const unsigned char zeros[GGUF_DEFAULT_ALIGNMENT];
    lmio_status s = LMIO_OK;
    bool same = ggml_of_dtype(w->t.dtype) == w->type->id;
    for (uint64_t first = 0; first < w->t.numel && !s; first += GGUF_CHUNK) {
        uint64_t count = w->t.numel - first < GGUF_CHUNK ? w->t.numel - first : GGUF_CHUNK;
        size_t in_sz = lmio_dtype_bits(w->t.dtype) / 8;
        if (same) {
            const unsigned char *src = (const unsigned char *)w->t.data + first * in_sz;
            s = lmio__outfile_write(out, src, (size_t)(count * in_sz), err);
            if (s && out->sys_errno == EFAULT) s = lmio__tensor_lost(&w->t, src, err); /* names the chunk */
        } else {
            cvt_job j = {w, first, count, f32, buf};
            if (!lmio__guarded(cvt_fn, &j)) return lmio__tensor_lost(&w->t, lmio__guard_fault_addr(), err);
            s = lmio__outfile_write(out, buf, (size_t)(count / w->type->block_elems * w->type->block_bytes), err);
        }
        if (!s && o->progress && o->progress(o->progress_ctx, out->written, total))
            s = lmio__fail(err, LMIO_ERR_CANCELLED, path, -1, "", "save cancelled; nothing was written");
    }
    size_t pad = (size_t)((GGUF_DEFAULT_ALIGNMENT - w->nbytes % GGUF_DEFAULT_ALIGNMENT) % GGUF_DEFAULT_ALIGNMENT);
    if (!s && pad) s = lmio__outfile_write(out, zeros, pad, err);
    return s;
}

lmio_status lmio__gguf_write(const lmio_statedict *sd, const char *path, const uint32_t *types,
                             const lmio_save_opts *o, lmio_error *err)
{
    size_t n = lmio_statedict_count(sd);
    wt *ws = lmio__calloc(n ? n : 1, sizeof *ws);
    unsigned char *buf = lmio__malloc((size_t)GGUF_CHUNK * 4);
    float *f32 = lmio__malloc((size_t)GGUF_CHUNK * 4);
    lmio__buf hdr = {0};
    uint64_t data_total = 0;
    lmio_status s = !ws || !buf || !f32 ? lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory") : LMIO_OK;
    if (!s) s = plan(sd, types, o, ws, path, &data_total, err);
    if (!s) s = build_header(sd, ws, n, path, &hdr, err);
    lmio__outfile out;
    if (!s && !(s = lmio__outfile_begin(&out, path, err))) {
        uint64_t total = hdr.len + data_total;
        s = lmio__outfile_write(&out, hdr.data, hdr.len, err);
        for (size_t i = 0; i < n && !s; i++) s = write_tensor(&out, &ws[i], o, total, buf, f32, path, err);
        if (!s) s = lmio__outfile_commit(&out, o->durable, err);
        else lmio__outfile_abort(&out);
    }
    lmio__buf_free(&hdr);
    lmio__free(ws);
    lmio__free(buf);
    lmio__free(f32);
    return s;
}

static lmio_status gguf_save(const lmio_statedict *sd, const char *path, const lmio_save_opts *o, lmio_error *err)
{
    return lmio__gguf_write(sd, path, NULL, o, err);
}

static lmio__sniff gguf_sniff(const unsigned char *head, size_t n, uint64_t file_size)
{
    (void)file_size;
    return n >= 4 && !memcmp(head, "GGUF", 4) ? LMIO__SNIFF_YES : LMIO__SNIFF_NO;
}

const lmio__format lmio__format_gguf = {
    .name = "gguf",
    .description = "GGUF",
    .sniff = gguf_sniff,
    .open = gguf_open,
    .save = gguf_save,
};
