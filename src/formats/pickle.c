/* A pickle machine that executes nothing (shared/reference/torch-tokenizer.md
 * §1.4, §1.5). Python's unpickler imports whatever a GLOBAL names and calls
 * whatever REDUCE is given; this one knows a short list of torch.save's
 * globals as tags, and REDUCE on a tag builds an inert value (a dict, a
 * tensor description). Any other global, and every opcode outside the
 * protocol-2 subset torch.load(weights_only=True) accepts, is refused with
 * its name and offset. Memory is proportional to the pickle's length: each
 * opcode makes at most one value, and memo keys are bounded by it. */
#include "formats.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Flattened names deeper than this are refused: nothing torch saves nests
 * so far, and it bounds the walk's recursion (a list may contain itself). */
#define MAX_DEPTH 64
#define MAX_GLOBAL_LINE 256

enum kind { K_NONE, K_BOOL, K_INT, K_FLOAT, K_STR, K_TUPLE, K_LIST, K_DICT, K_GLOBAL, K_STORAGE, K_TENSOR };
enum glob { G_ODICT, G_REBUILD_V1, G_REBUILD_V2, G_REBUILD_V3, G_PARAM, G_PARAM_STATE, G_SIZE, G_STORAGE, G_DTYPE };

static const char *const k_kind_names[] = {"None", "bool", "int", "float", "str", "tuple",
                                           "list", "dict", "global", "storage", "tensor"};

/* The globals torch.save writes for state dicts and checkpoints; the
 * weights_only allow-list has these among others (§1.5). */
static const struct gdef {
    const char *module, *name;
    uint8_t glob;
    int8_t dtype;
} k_globals[] = {
    {"collections", "OrderedDict", G_ODICT, -1},
    {"torch._utils", "_rebuild_tensor", G_REBUILD_V1, -1},
    {"torch._utils", "_rebuild_tensor_v2", G_REBUILD_V2, -1},
    {"torch._utils", "_rebuild_tensor_v3", G_REBUILD_V3, -1},
    {"torch._utils", "_rebuild_parameter", G_PARAM, -1},
    {"torch._utils", "_rebuild_parameter_with_state", G_PARAM_STATE, -1},
    {"torch", "Size", G_SIZE, -1},
    {"torch", "DoubleStorage", G_STORAGE, LMIO_DTYPE_F64},
    {"torch", "FloatStorage", G_STORAGE, LMIO_DTYPE_F32},
    {"torch", "HalfStorage", G_STORAGE, LMIO_DTYPE_F16},
    {"torch", "BFloat16Storage", G_STORAGE, LMIO_DTYPE_BF16},
    {"torch", "LongStorage", G_STORAGE, LMIO_DTYPE_I64},
    {"torch", "IntStorage", G_STORAGE, LMIO_DTYPE_I32},
    {"torch", "ShortStorage", G_STORAGE, LMIO_DTYPE_I16},
    {"torch", "CharStorage", G_STORAGE, LMIO_DTYPE_I8},
    {"torch", "ByteStorage", G_STORAGE, LMIO_DTYPE_U8},
    {"torch", "BoolStorage", G_STORAGE, LMIO_DTYPE_BOOL},
    {"torch", "ComplexFloatStorage", G_STORAGE, LMIO_DTYPE_C64},
    {"torch.storage", "UntypedStorage", G_STORAGE, -1},
    {"torch", "UntypedStorage", G_STORAGE, -1},
    {"torch", "float64", G_DTYPE, LMIO_DTYPE_F64},
    {"torch", "float32", G_DTYPE, LMIO_DTYPE_F32},
    {"torch", "float16", G_DTYPE, LMIO_DTYPE_F16},
    {"torch", "bfloat16", G_DTYPE, LMIO_DTYPE_BF16},
    {"torch", "int64", G_DTYPE, LMIO_DTYPE_I64},
    {"torch", "int32", G_DTYPE, LMIO_DTYPE_I32},
    {"torch", "int16", G_DTYPE, LMIO_DTYPE_I16},
    {"torch", "int8", G_DTYPE, LMIO_DTYPE_I8},
    {"torch", "uint8", G_DTYPE, LMIO_DTYPE_U8},
    {"torch", "bool", G_DTYPE, LMIO_DTYPE_BOOL},
    {"torch", "uint16", G_DTYPE, LMIO_DTYPE_U16},
    {"torch", "uint32", G_DTYPE, LMIO_DTYPE_U32},
    {"torch", "uint64", G_DTYPE, LMIO_DTYPE_U64},
    {"torch", "complex64", G_DTYPE, LMIO_DTYPE_C64},
    {"torch", "float8_e4m3fn", G_DTYPE, LMIO_DTYPE_F8_E4M3},
    {"torch", "float8_e5m2", G_DTYPE, LMIO_DTYPE_F8_E5M2},
    {"torch", "float8_e8m0fnu", G_DTYPE, LMIO_DTYPE_F8_E8M0},
    {"torch", "float8_e4m3fnuz", G_DTYPE, LMIO_DTYPE_F8_E4M3FNUZ},
    {"torch", "float8_e5m2fnuz", G_DTYPE, LMIO_DTYPE_F8_E5M2FNUZ},
};

typedef struct pval {
    uint8_t kind, glob;
    int8_t dtype; /* K_GLOBAL of a storage or dtype; K_STORAGE (-1: untyped) */
    size_t n, cap; /* tuple/list: n items; dict: n pairs (2n items) */
    int64_t at;    /* pickle offset of the opcode that made it */
    union {
        int64_t i;
        double f;
        struct {
            const char *p; /* K_STR: into the pickle; K_GLOBAL: its table entry's name */
            size_t len;
            const struct gdef *g;
        } s;
        uint32_t *items;
        struct {
            const char *key;
            size_t key_len;
            uint64_t numel;
        } st;
        size_t tensor;
    } u;
} pval;

struct lmio__pickle {
    pval *v;
    size_t nv, vcap;
    lmio__pickle_tensor *t;
    size_t nt, tcap;
    uint32_t root;
    const char *path, *what;
    int64_t base;
};

typedef struct machine {
    lmio__pickle *p;
    const unsigned char *d;
    size_t n, pos, at;
    uint32_t *stack;
    size_t sn, scap;
    size_t *marks;
    size_t mn, mcap;
    uint32_t *memo; /* value + 1; 0: never stored */
    size_t memo_cap;
    lmio_error *err;
} machine;

__attribute__((format(printf, 5, 0))) static lmio_status failv(const lmio__pickle *p, lmio_error *err,
                                                                lmio_status code, size_t at, const char *fmt,
                                                                va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    return lmio__fail(err, code, p->path, p->base + (int64_t)at, "", "%s byte %zu: %s", p->what, at, msg);
}

__attribute__((format(printf, 4, 5))) static lmio_status bad(machine *m, lmio_status code, size_t at,
                                                              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmio_status s = failv(m->p, m->err, code, at, fmt, ap);
    va_end(ap);
    return s;
}

static lmio_status nomem(machine *m) { return bad(m, LMIO_ERR_NOMEM, m->at, "out of memory"); }

/* ---- values and the stack ---- */

static lmio_status new_value(machine *m, uint8_t kind, uint32_t *out)
{
    lmio__pickle *p = m->p;
    if (p->nv >= UINT32_MAX - 1 || !lmio__grow((void **)&p->v, sizeof *p->v, p->nv + 1, &p->vcap))
        return nomem(m);
    pval *v = &p->v[p->nv];
    memset(v, 0, sizeof *v);
    v->kind = kind;
    v->at = (int64_t)m->at;
    *out = (uint32_t)p->nv++;
    return LMIO_OK;
}

static lmio_status push(machine *m, uint32_t v)
{
    if (!lmio__grow((void **)&m->stack, sizeof *m->stack, m->sn + 1, &m->scap)) return nomem(m);
    m->stack[m->sn++] = v;
    return LMIO_OK;
}

static lmio_status push_new(machine *m, uint8_t kind, pval **out)
{
    uint32_t v;
    lmio_status s = new_value(m, kind, &v);
    if (!s) s = push(m, v);
    if (!s && out) *out = &m->p->v[v];
    return s;
}

static size_t floor_of_stack(const machine *m) { return m->mn ? m->marks[m->mn - 1] : 0; }

/* Pops one value; a MARK in the way, or an empty stack, is a broken pickle. */
static lmio_status pop(machine *m, const char *op, uint32_t *out)
{
    if (m->sn <= floor_of_stack(m))
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s with %s; expected a value on the stack", op,
                   m->sn ? "a MARK on top" : "an empty stack");
    *out = m->stack[--m->sn];
    return LMIO_OK;
}

static lmio_status pop_mark(machine *m, const char *op, size_t *start)
{
    if (!m->mn) return bad(m, LMIO_ERR_FORMAT, m->at, "%s without a MARK; expected one before it", op);
    *start = m->marks[--m->mn];
    return LMIO_OK;
}

static lmio_status add_items(machine *m, pval *c, const uint32_t *items, size_t k)
{
    size_t have = c->kind == K_DICT ? 2 * c->n : c->n;
    if (k == 0) return LMIO_OK; /* an empty SETITEMS/APPENDS */
    if (!lmio__grow((void **)&c->u.items, sizeof *c->u.items, have + k, &c->cap)) return nomem(m);
    memcpy(c->u.items + have, items, k * sizeof *items);
    c->n += c->kind == K_DICT ? k / 2 : k;
    return LMIO_OK;
}

/* A tuple of the k values on top of the stack (which are popped). */
static lmio_status make_tuple(machine *m, size_t k)
{
    uint32_t t;
    lmio_status s = new_value(m, K_TUPLE, &t);
    if (s) return s;
    pval *v = &m->p->v[t];
    if (k && (s = add_items(m, v, m->stack + m->sn - k, k))) return s;
    m->sn -= k;
    return push(m, t);
}

/* ---- opcode arguments ---- */

static lmio_status need(machine *m, size_t k, const char *op)
{
    if (m->n - m->pos < k)
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s needs %zu more bytes, %zu remain (truncated?); expected the "
                   "whole pickle",
                   op, k, m->n - m->pos);
    return LMIO_OK;
}

static uint32_t rd32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static lmio_status op_int(machine *m, int64_t v)
{
    pval *x;
    lmio_status s = push_new(m, K_INT, &x);
    if (!s) x->u.i = v;
    return s;
}

/* LONG1: n little-endian two's complement bytes; wider than 64 bits is
 * nothing a tensor or a step counter needs. */
static lmio_status op_long1(machine *m)
{
    lmio_status s = need(m, 1, "LONG1");
    if (s) return s;
    size_t k = m->d[m->pos++];
    if ((s = need(m, k, "LONG1"))) return s;
    if (k > 8)
        return bad(m, LMIO_ERR_LIMIT, m->at, "LONG1 integer of %zu bytes; expected at most 8", k);
    uint64_t u = 0;
    for (size_t i = 0; i < k; i++) u |= (uint64_t)m->d[m->pos + i] << (8 * i);
    if (k && k < 8 && (m->d[m->pos + k - 1] & 0x80)) u |= ~0ULL << (8 * k);
    m->pos += k;
    return op_int(m, (int64_t)u);
}

static lmio_status op_string(machine *m, size_t lenbytes, const char *op)
{
    lmio_status s = need(m, lenbytes, op);
    if (s) return s;
    size_t len = lenbytes == 1 ? m->d[m->pos] : rd32(m->d + m->pos);
    m->pos += lenbytes;
    if ((s = need(m, len, op))) return s;
    const char *p = (const char *)m->d + m->pos;
    size_t ok = lmio__utf8_prefix(p, len);
    if (ok != len)
        return bad(m, LMIO_ERR_FORMAT, m->pos + ok, "%s string byte 0x%02x is not UTF-8; expected UTF-8 text", op,
                   (unsigned char)p[ok]);
    m->pos += len;
    pval *x;
    if ((s = push_new(m, K_STR, &x))) return s;
    x->u.s.p = p;
    x->u.s.len = len;
    return LMIO_OK;
}

static lmio_status op_float(machine *m)
{
    lmio_status s = need(m, 8, "BINFLOAT");
    if (s) return s;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | m->d[m->pos + i]; /* big-endian, unlike everything else */
    m->pos += 8;
    double f;
    memcpy(&f, &u, sizeof f);
    pval *x;
    if ((s = push_new(m, K_FLOAT, &x))) return s;
    x->u.f = f;
    return LMIO_OK;
}

static lmio_status op_put(machine *m, size_t lenbytes)
{
    const char *op = lenbytes == 1 ? "BINPUT" : "LONG_BINPUT";
    lmio_status s = need(m, lenbytes, op);
    if (s) return s;
    size_t key = lenbytes == 1 ? m->d[m->pos] : rd32(m->d + m->pos);
    m->pos += lenbytes;
    if (m->sn <= floor_of_stack(m)) return bad(m, LMIO_ERR_FORMAT, m->at, "%s with nothing to store; expected a value", op);
    /* picklers number memo entries 0, 1, 2, ...: a key beyond the pickle's
     * length is never needed, and allowing it would size the memo by it */
    if (key >= m->n)
        return bad(m, LMIO_ERR_LIMIT, m->at, "%s key %zu; expected below %zu (the pickle's length)", op, key, m->n);
    if (key >= m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap : 64;
        while (cap <= key) cap *= 2;
        if (cap > m->n) cap = m->n;
        uint32_t *mm = lmio__realloc(m->memo, cap * sizeof *mm);
        if (!mm) return nomem(m);
        memset(mm + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *mm);
        m->memo = mm;
        m->memo_cap = cap;
    }
    m->memo[key] = m->stack[m->sn - 1] + 1;
    return LMIO_OK;
}

static lmio_status op_get(machine *m, size_t lenbytes)
{
    const char *op = lenbytes == 1 ? "BINGET" : "LONG_BINGET";
    lmio_status s = need(m, lenbytes, op);
    if (s) return s;
    size_t key = lenbytes == 1 ? m->d[m->pos] : rd32(m->d + m->pos);
    m->pos += lenbytes;
    if (key >= m->memo_cap || !m->memo[key])
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s of memo key %zu, which was never stored; expected a key a "
                   "BINPUT stored",
                   op, key);
    return push(m, m->memo[key] - 1);
}

static lmio_status op_global(machine *m)
{
    const char *line[2];
    size_t len[2];
    for (int k = 0; k < 2; k++) {
        const unsigned char *p = m->d + m->pos, *nl = memchr(p, '\n', m->n - m->pos);
        if (!nl) return bad(m, LMIO_ERR_FORMAT, m->at, "GLOBAL without its newline (truncated?); expected "
                            "\"module\\nname\\n\"");
        line[k] = (const char *)p;
        len[k] = (size_t)(nl - p);
        if (len[k] > MAX_GLOBAL_LINE || lmio__utf8_prefix(line[k], len[k]) != len[k])
            return bad(m, LMIO_ERR_FORMAT, m->at, "GLOBAL name of %zu bytes or not UTF-8; expected a short "
                       "Python name",
                       len[k]);
        m->pos += len[k] + 1;
    }
    for (size_t i = 0; i < sizeof k_globals / sizeof *k_globals; i++) {
        const struct gdef *g = &k_globals[i];
        if (strlen(g->module) == len[0] && !memcmp(g->module, line[0], len[0]) && strlen(g->name) == len[1] &&
            !memcmp(g->name, line[1], len[1])) {
            pval *x;
            lmio_status s = push_new(m, K_GLOBAL, &x);
            if (s) return s;
            x->glob = g->glob;
            x->dtype = g->dtype;
            x->u.s.g = g;
            return LMIO_OK;
        }
    }
    return bad(m, LMIO_ERR_UNSUPPORTED, m->at,
               "GLOBAL %.*s.%.*s is not allowed (lmio imports and calls nothing); expected one of torch.save's "
               "globals (torch._utils._rebuild_tensor_v2, collections.OrderedDict, torch storage and dtype names)",
               (int)len[0], line[0], (int)len[1], line[1]);
}

/* ---- REDUCE on an allowed global ---- */

static const char *kind_of(const pval *v) { return k_kind_names[v->kind]; }

static bool is_uint(const pval *v) { return v->kind == K_INT && v->u.i >= 0; }

static lmio_status int_tuple(machine *m, const pval *t, const char *what, uint64_t *out, int *nd)
{
    if (t->kind != K_TUPLE)
        return bad(m, LMIO_ERR_FORMAT, m->at, "tensor %s is a %s; expected a tuple of sizes", what, kind_of(t));
    if (t->n > LMIO_MAX_DIMS)
        return bad(m, LMIO_ERR_LIMIT, m->at, "tensor %s has %zu dimensions; expected at most %d", what, t->n,
                   LMIO_MAX_DIMS);
    for (size_t i = 0; i < t->n; i++) {
        const pval *x = &m->p->v[t->u.items[i]];
        if (!is_uint(x))
            return bad(m, LMIO_ERR_FORMAT, m->at, "tensor %s[%zu] is %s; expected a non-negative int", what, i,
                       x->kind == K_INT ? "negative" : kind_of(x));
        out[i] = (uint64_t)x->u.i;
    }
    *nd = (int)t->n;
    return LMIO_OK;
}

static lmio_status make_tensor(machine *m, int glob, const pval *args, uint32_t *out)
{
    static const size_t lo[] = {[G_REBUILD_V1] = 4, [G_REBUILD_V2] = 6, [G_REBUILD_V3] = 7};
    static const char *const names[] = {[G_REBUILD_V1] = "_rebuild_tensor", [G_REBUILD_V2] = "_rebuild_tensor_v2",
                                        [G_REBUILD_V3] = "_rebuild_tensor_v3"};
    size_t n = args->n;
    if (n < lo[glob] || n > lo[glob] + (glob != G_REBUILD_V1))
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s with %zu arguments; expected %zu", names[glob], n, lo[glob]);
    const pval *a[8];
    for (size_t i = 0; i < n; i++) a[i] = &m->p->v[args->u.items[i]];
    if (a[0]->kind != K_STORAGE || !is_uint(a[1]))
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s of (%s, %s, ...); expected (storage, offset, ...)", names[glob],
                   kind_of(a[0]), kind_of(a[1]));
    lmio__pickle_tensor t = {0};
    int nd_stride;
    lmio_status s = int_tuple(m, a[2], "size", t.shape, &t.ndim);
    if (!s) s = int_tuple(m, a[3], "stride", t.stride, &nd_stride);
    if (s) return s;
    if (nd_stride != t.ndim)
        return bad(m, LMIO_ERR_FORMAT, m->at, "tensor size has %d dimensions and stride %d; expected the same",
                   t.ndim, nd_stride);
    /* metadata (the last, optional argument) carries conjugate/negative
     * bits: a lazily negated or conjugated view lmio would get wrong */
    if (n > lo[glob] && !(a[n - 1]->kind == K_NONE || (a[n - 1]->kind == K_DICT && a[n - 1]->n == 0)))
        return bad(m, LMIO_ERR_UNSUPPORTED, m->at, "tensor with metadata (conjugate or negative bit); expected a "
                   "plain tensor (save t.resolve_conj().resolve_neg())");
    t.dtype = (lmio_dtype)a[0]->dtype;
    if (glob == G_REBUILD_V3) {
        if (a[6]->kind != K_GLOBAL || a[6]->glob != G_DTYPE)
            return bad(m, LMIO_ERR_FORMAT, m->at, "_rebuild_tensor_v3 dtype is a %s; expected a torch dtype",
                       kind_of(a[6]));
        t.dtype = (lmio_dtype)a[6]->dtype;
    } else if (a[0]->dtype < 0) {
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s of an untyped storage; expected a typed storage", names[glob]);
    }
    t.key = a[0]->u.st.key;
    t.key_len = a[0]->u.st.key_len;
    t.storage_dtype = (lmio_dtype)a[0]->dtype;
    t.storage_numel = a[0]->u.st.numel;
    t.offset = (uint64_t)a[1]->u.i;
    t.at = (int64_t)m->at;
    lmio__pickle *p = m->p;
    if (!lmio__grow((void **)&p->t, sizeof *p->t, p->nt + 1, &p->tcap)) return nomem(m);
    p->t[p->nt] = t;
    if ((s = new_value(m, K_TENSOR, out))) return s;
    p->v[*out].u.tensor = p->nt++;
    return LMIO_OK;
}

static lmio_status op_reduce(machine *m)
{
    uint32_t ai = 0, fi = 0, out = 0;
    lmio_status s = pop(m, "REDUCE", &ai);
    if (!s) s = pop(m, "REDUCE", &fi);
    if (s) return s;
    const pval *f = &m->p->v[fi], *args = &m->p->v[ai];
    if (f->kind != K_GLOBAL)
        return bad(m, LMIO_ERR_FORMAT, m->at, "REDUCE calls a %s; expected an allowed global", kind_of(f));
    if (args->kind != K_TUPLE)
        return bad(m, LMIO_ERR_FORMAT, m->at, "REDUCE arguments are a %s; expected a tuple", kind_of(args));
    const uint32_t *a = args->u.items;
    switch (f->glob) {
    case G_ODICT:
        if (args->n)
            return bad(m, LMIO_ERR_FORMAT, m->at, "OrderedDict with %zu arguments; expected OrderedDict()", args->n);
        if ((s = new_value(m, K_DICT, &out))) return s;
        break;
    case G_REBUILD_V1:
    case G_REBUILD_V2:
    case G_REBUILD_V3:
        if ((s = make_tensor(m, f->glob, args, &out))) return s;
        break;
    case G_PARAM:
    case G_PARAM_STATE:
        if (args->n != (f->glob == G_PARAM ? 3u : 4u) || m->p->v[a[0]].kind != K_TENSOR)
            return bad(m, LMIO_ERR_FORMAT, m->at, "%s with %zu arguments; expected (tensor, requires_grad, hooks%s)",
                       f->u.s.g->name, args->n, f->glob == G_PARAM ? "" : ", state");
        out = a[0]; /* a parameter is its tensor */
        break;
    case G_SIZE:
        if (args->n != 1 || m->p->v[a[0]].kind != K_TUPLE)
            return bad(m, LMIO_ERR_FORMAT, m->at, "torch.Size of %zu arguments; expected one tuple", args->n);
        out = a[0];
        break;
    default:
        return bad(m, LMIO_ERR_FORMAT, m->at, "REDUCE calls %s.%s, which is not a function; expected a rebuild "
                   "function",
                   f->u.s.g->module, f->u.s.g->name);
    }
    return push(m, out);
}

/* BINPERSID: ('storage', StorageClass, key, location, numel) as torch.save
 * writes it, or with a sixth element, None, in the legacy stream. */
static lmio_status op_persid(machine *m)
{
    uint32_t pi = 0;
    lmio_status s = pop(m, "BINPERSID", &pi);
    if (s) return s;
    const pval *pid = &m->p->v[pi];
    const pval *a[6] = {0};
    if (pid->kind == K_TUPLE && (pid->n == 5 || pid->n == 6))
        for (size_t i = 0; i < pid->n; i++) a[i] = &m->p->v[pid->u.items[i]];
    if (!a[0] || a[0]->kind != K_STR || a[0]->u.s.len != 7 || memcmp(a[0]->u.s.p, "storage", 7) ||
        a[1]->kind != K_GLOBAL || a[1]->glob != G_STORAGE || a[2]->kind != K_STR || a[3]->kind != K_STR ||
        !is_uint(a[4]) || (a[5] && a[5]->kind != K_NONE))
        return bad(m, LMIO_ERR_FORMAT, m->at, "persistent id is not ('storage', <storage class>, key, location, "
                   "numel); expected torch.save's storage reference");
    /* copied out first: making the new value may move the value array */
    int8_t dtype = a[1]->dtype;
    const char *key = a[2]->u.s.p;
    size_t key_len = a[2]->u.s.len;
    uint64_t numel = (uint64_t)a[4]->u.i;
    pval *x;
    if ((s = push_new(m, K_STORAGE, &x))) return s;
    x->dtype = dtype;
    x->u.st.key = key;
    x->u.st.key_len = key_len;
    x->u.st.numel = numel;
    return LMIO_OK;
}

static lmio_status op_setitems(machine *m, bool many)
{
    const char *op = many ? "SETITEMS" : "SETITEM";
    size_t start = m->sn >= 2 ? m->sn - 2 : 0;
    lmio_status s;
    if (many && (s = pop_mark(m, op, &start))) return s;
    if (!many && m->sn < floor_of_stack(m) + 3)
        return bad(m, LMIO_ERR_FORMAT, m->at, "SETITEM needs a dict, a key and a value on the stack; expected them");
    if (start == 0 || start <= floor_of_stack(m) || (m->sn - start) % 2)
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s with %zu values%s; expected a dict below key/value pairs", op,
                   m->sn - start, start ? "" : " and nothing below them");
    pval *d = &m->p->v[m->stack[start - 1]];
    if (d->kind != K_DICT)
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s on a %s; expected a dict", op, kind_of(d));
    if ((s = add_items(m, d, m->stack + start, m->sn - start))) return s;
    m->sn = start;
    return LMIO_OK;
}

static lmio_status op_appends(machine *m, bool many)
{
    const char *op = many ? "APPENDS" : "APPEND";
    size_t start = m->sn ? m->sn - 1 : 0;
    lmio_status s;
    if (many && (s = pop_mark(m, op, &start))) return s;
    if (!many && m->sn < floor_of_stack(m) + 2)
        return bad(m, LMIO_ERR_FORMAT, m->at, "APPEND needs a list and a value on the stack; expected them");
    if (start == 0 || start <= floor_of_stack(m))
        return bad(m, LMIO_ERR_FORMAT, m->at, "%s with no list below the values; expected a list", op);
    pval *l = &m->p->v[m->stack[start - 1]];
    if (l->kind != K_LIST) return bad(m, LMIO_ERR_FORMAT, m->at, "%s on a %s; expected a list", op, kind_of(l));
    if ((s = add_items(m, l, m->stack + start, m->sn - start))) return s;
    m->sn = start;
    return LMIO_OK;
}

/* BUILD sets an object's state: torch.save uses it for a state dict's
 * _metadata (module versions) and legacy tensors' attributes; neither is
 * data, so the state is dropped. */
static lmio_status op_build(machine *m)
{
    uint32_t st = 0;
    lmio_status s = pop(m, "BUILD", &st);
    if (s) return s;
    if (m->sn <= floor_of_stack(m)) return bad(m, LMIO_ERR_FORMAT, m->at, "BUILD with no object; expected one");
    const pval *o = &m->p->v[m->stack[m->sn - 1]];
    if (o->kind != K_DICT && o->kind != K_TENSOR)
        return bad(m, LMIO_ERR_UNSUPPORTED, m->at, "BUILD on a %s; expected an OrderedDict or a tensor", kind_of(o));
    return LMIO_OK;
}

/* Names of the opcodes refused, so the message says what was found. */
static const char *opcode_name(unsigned char op)
{
    switch (op) {
    case 'c': return "GLOBAL";
    case 0x93: return "STACK_GLOBAL";
    case 'i': return "INST";
    case 'o': return "OBJ";
    case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";
    case 0x95: return "FRAME (protocol 4)";
    case 0x8c: return "SHORT_BINUNICODE (protocol 4)";
    case 0x8d: return "BINUNICODE8 (protocol 4)";
    case 0x8e: return "BINBYTES8 (protocol 4)";
    case 0x94: return "MEMOIZE (protocol 4)";
    case 0x96: return "BYTEARRAY8 (protocol 5)";
    case 0x97: return "NEXT_BUFFER (protocol 5)";
    case 0x98: return "READONLY_BUFFER (protocol 5)";
    case 'B': return "BINBYTES (protocol 3)";
    case 'C': return "SHORT_BINBYTES (protocol 3)";
    case 'P': return "PERSID";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'F': return "FLOAT";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'V': return "UNICODE";
    case 'd': return "DICT";
    case 'l': return "LIST";
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'g': return "GET";
    case 'p': return "PUT";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8b: return "LONG4";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    default: return NULL;
    }
}

static lmio_status op_other(machine *m, unsigned char op)
{
    const char *name = opcode_name(op);
    if (!name)
        return bad(m, LMIO_ERR_FORMAT, m->at, "byte 0x%02x is not a pickle opcode; expected torch.save's pickle",
                   op);
    return bad(m, LMIO_ERR_UNSUPPORTED, m->at, "opcode %s (0x%02x) is not allowed; expected the protocol-2 opcodes "
               "torch.save writes",
               name, op);
}

/* TUPLE (down to the mark), TUPLE1, TUPLE2, TUPLE3 */
static lmio_status op_tuple(machine *m, unsigned char op)
{
    size_t start = 0;
    lmio_status s;
    if (op == 't') {
        if ((s = pop_mark(m, "TUPLE", &start))) return s;
        return make_tuple(m, m->sn - start);
    }
    size_t k = (size_t)(op - 0x84);
    if (m->sn < floor_of_stack(m) + k)
        return bad(m, LMIO_ERR_FORMAT, m->at, "TUPLE%zu with fewer values on the stack; expected %zu", k, k);
    return make_tuple(m, k);
}

/* BININT1 (u8), BININT2 (u16), BININT (i32), all little-endian */
static lmio_status op_binint(machine *m, unsigned char op)
{
    size_t k = op == 'K' ? 1 : op == 'M' ? 2 : 4;
    lmio_status s = need(m, k, op == 'K' ? "BININT1" : op == 'M' ? "BININT2" : "BININT");
    if (s) return s;
    const unsigned char *p = m->d + m->pos;
    m->pos += k;
    return op_int(m, k == 1 ? p[0] : k == 2 ? (int64_t)(p[0] | p[1] << 8) : (int64_t)(int32_t)rd32(p));
}

static lmio_status step(machine *m, unsigned char op, bool *stop)
{
    const unsigned char *d = m->d;
    lmio_status s;
    switch (op) {
    case 0x80: /* PROTO */
        if ((s = need(m, 1, "PROTO"))) return s;
        if (d[m->pos] > 5)
            return bad(m, LMIO_ERR_FORMAT, m->at, "pickle protocol %u; expected 2 (torch.save)", d[m->pos]);
        m->pos++;
        return LMIO_OK;
    case '.': /* STOP */
        if (m->mn || m->sn != 1)
            return bad(m, LMIO_ERR_FORMAT, m->at, "STOP with %zu values and %zu marks on the stack; expected one "
                       "value",
                       m->sn, m->mn);
        m->p->root = m->stack[0];
        *stop = true;
        return LMIO_OK;
    case '(': /* MARK */
        if (!lmio__grow((void **)&m->marks, sizeof *m->marks, m->mn + 1, &m->mcap)) return nomem(m);
        m->marks[m->mn++] = m->sn;
        return LMIO_OK;
    case '}': return push_new(m, K_DICT, NULL);
    case ']': return push_new(m, K_LIST, NULL);
    case ')': return push_new(m, K_TUPLE, NULL);
    case 'N': return push_new(m, K_NONE, NULL);
    case 0x88: /* NEWTRUE */
    case 0x89: { /* NEWFALSE */
        pval *x;
        if ((s = push_new(m, K_BOOL, &x))) return s;
        x->u.i = op == 0x88;
        return LMIO_OK;
    }
    case 't':
    case 0x85:
    case 0x86:
    case 0x87: return op_tuple(m, op);
    case 'K':
    case 'M':
    case 'J': return op_binint(m, op);
    case 0x8a: return op_long1(m);
    case 'G': return op_float(m);
    case 'X': return op_string(m, 4, "BINUNICODE");
    case 'U': return op_string(m, 1, "SHORT_BINSTRING");
    case 'q': return op_put(m, 1);
    case 'r': return op_put(m, 4);
    case 'h': return op_get(m, 1);
    case 'j': return op_get(m, 4);
    case 'c': return op_global(m);
    case 'R': return op_reduce(m);
    case 'Q': return op_persid(m);
    case 'b': return op_build(m);
    case 's': return op_setitems(m, false);
    case 'u': return op_setitems(m, true);
    case 'a': return op_appends(m, false);
    case 'e': return op_appends(m, true);
    default: return op_other(m, op);
    }
}

void lmio__pickle_free(lmio__pickle *p)
{
    if (!p) return;
    for (size_t i = 0; i < p->nv; i++) {
        uint8_t k = p->v[i].kind;
        if (k == K_TUPLE || k == K_LIST || k == K_DICT) lmio__free(p->v[i].u.items);
    }
    lmio__free(p->v);
    lmio__free(p->t);
    lmio__free(p);
}

lmio_status lmio__pickle_parse(const char *path, const char *what, int64_t base, const unsigned char *data,
                               size_t n, size_t *used, lmio__pickle **out, lmio_error *err)
{
    *out = NULL;
    lmio__pickle *p = lmio__calloc(1, sizeof *p);
    if (!p) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    p->path = path;
    p->what = what;
    p->base = base;
    machine m = {.p = p, .d = data, .n = n, .err = err};
    lmio_status s = LMIO_OK;
    bool stop = false;
    while (!s && !stop) {
        if (m.pos >= n) {
            m.at = n;
            s = bad(&m, LMIO_ERR_FORMAT, n, "pickle ends without STOP (truncated?); expected it to end with '.'");
            break;
        }
        m.at = m.pos;
        s = step(&m, data[m.pos++], &stop);
    }
    lmio__free(m.stack);
    lmio__free(m.marks);
    lmio__free(m.memo);
    if (s) {
        lmio__pickle_free(p);
        return s;
    }
    if (used) *used = m.pos;
    *out = p;
    return LMIO_OK;
}

/* ---- walking the result ---- */

typedef struct walker {
    const lmio__pickle *p;
    const lmio__pickle_sink *sink;
    char name[LMIO_NAME_MAX + 1];
    lmio_error *err;
} walker;

__attribute__((format(printf, 4, 5))) static lmio_status wbad(walker *w, lmio_status code, int64_t at,
                                                               const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    lmio_status s = failv(w->p, w->err, code, (size_t)at, fmt, ap);
    va_end(ap);
    return s;
}

/* Python's repr of a float: the shortest %g that reads back the same. */
static void float_text(double f, char *buf, size_t cap)
{
    if (f != f) { snprintf(buf, cap, "nan"); return; }
    if (f > 1.7976931348623157e308 || f < -1.7976931348623157e308) { snprintf(buf, cap, f > 0 ? "inf" : "-inf"); return; }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, cap, "%.*g", prec, f);
        if (strtod(buf, NULL) == f) break;
    }
    if (!strpbrk(buf, ".einf")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

/* The text of a leaf; false for containers and tensors. */
static bool leaf_text(const lmio__pickle *p, const pval *v, char *buf, size_t cap, const char **text)
{
    *text = buf;
    switch (v->kind) {
    case K_NONE: *text = "None"; return true;
    case K_BOOL: *text = v->u.i ? "True" : "False"; return true;
    case K_INT: snprintf(buf, cap, "%lld", (long long)v->u.i); return true;
    case K_FLOAT: float_text(v->u.f, buf, cap); return true;
    case K_GLOBAL: snprintf(buf, cap, "%s.%s", v->u.s.g->module, v->u.s.g->name); return true;
    case K_TUPLE:
    case K_LIST:
    case K_DICT:
        if (v->n) return false;
        *text = v->kind == K_TUPLE ? "()" : v->kind == K_LIST ? "[]" : "{}";
        return true;
    default: (void)p; return false;
    }
}

static lmio_status walk(walker *w, uint32_t vi, size_t len, int depth);

/* Appends ".part" (or "part" at the top) to the name and walks the child. */
static lmio_status walk_child(walker *w, size_t len, const char *part, size_t plen, uint32_t child, int depth,
                              int64_t at)
{
    size_t add = (len ? 1 : 0) + plen;
    if (memchr(part, 0, plen))
        return wbad(w, LMIO_ERR_FORMAT, at, "key with a NUL byte; expected a printable name");
    if (len + add > LMIO_NAME_MAX)
        return wbad(w, LMIO_ERR_LIMIT, at, "name \"%.64s...\" longer than %d bytes; expected shorter keys", w->name,
                    LMIO_NAME_MAX);
    if (len) w->name[len] = '.';
    memcpy(w->name + len + (len ? 1 : 0), part, plen);
    w->name[len + add] = 0;
    lmio_status s = walk(w, child, len + add, depth + 1);
    w->name[len] = 0;
    return s;
}

static lmio_status walk_dict(walker *w, const pval *v, size_t len, int depth)
{
    for (size_t i = 0; i < v->n; i++) {
        const pval *k = &w->p->v[v->u.items[2 * i]];
        char buf[64];
        const char *part = buf;
        size_t plen;
        if (k->kind == K_STR) {
            part = k->u.s.p;
            plen = k->u.s.len;
        } else if (k->kind == K_INT || k->kind == K_BOOL || k->kind == K_NONE || k->kind == K_FLOAT) {
            leaf_text(w->p, k, buf, sizeof buf, &part);
            plen = strlen(part);
        } else {
            return wbad(w, LMIO_ERR_FORMAT, k->at, "dict key is a %s; expected a str or int", kind_of(k));
        }
        lmio_status s = walk_child(w, len, part, plen, v->u.items[2 * i + 1], depth, k->at);
        if (s) return s;
    }
    return LMIO_OK;
}

static lmio_status walk(walker *w, uint32_t vi, size_t len, int depth)
{
    const pval *v = &w->p->v[vi];
    if (depth > MAX_DEPTH)
        return wbad(w, LMIO_ERR_LIMIT, v->at, "values nested deeper than %d (or a container holding itself); "
                    "expected a state dict or checkpoint",
                    MAX_DEPTH);
    const char *name = len ? w->name : v->kind == K_TENSOR ? "tensor" : "value";
    char buf[64];
    const char *text;
    if (v->kind == K_TENSOR) return w->sink->tensor(w->sink->ctx, name, &w->p->t[v->u.tensor], w->err);
    if (v->kind == K_STR) {
        char *copy = lmio__strndup(v->u.s.p, v->u.s.len);
        if (!copy) return wbad(w, LMIO_ERR_NOMEM, v->at, "out of memory");
        lmio_status s = w->sink->value(w->sink->ctx, name, copy, w->err);
        lmio__free(copy);
        return s;
    }
    if (leaf_text(w->p, v, buf, sizeof buf, &text)) return w->sink->value(w->sink->ctx, name, text, w->err);
    if (v->kind == K_DICT) return walk_dict(w, v, len, depth);
    if (v->kind == K_TUPLE || v->kind == K_LIST) {
        for (size_t i = 0; i < v->n; i++) {
            char idx[24];
            int il = snprintf(idx, sizeof idx, "%zu", i);
            lmio_status s = walk_child(w, len, idx, (size_t)il, v->u.items[i], depth, v->at);
            if (s) return s;
        }
        return LMIO_OK;
    }
    return wbad(w, LMIO_ERR_UNSUPPORTED, v->at, "a bare %s at \"%s\"; expected tensors and plain values",
                kind_of(v), name);
}

lmio_status lmio__pickle_flatten(const lmio__pickle *p, const lmio__pickle_sink *sink, lmio_error *err)
{
    walker *w = lmio__malloc(sizeof *w); /* the name buffer is too big for a stack frame */
    if (!w) return lmio__fail(err, LMIO_ERR_NOMEM, p->path, -1, "", "out of memory");
    w->p = p;
    w->sink = sink;
    w->err = err;
    w->name[0] = 0;
    lmio_status s = walk(w, p->root, 0, 0);
    lmio__free(w);
    return s;
}

lmio_status lmio__pickle_strings(const lmio__pickle *p, const char ***items, size_t **lens, size_t *n,
                                 lmio_error *err)
{
    const pval *r = &p->v[p->root];
    *items = NULL;
    *lens = NULL;
    *n = 0;
    if (r->kind != K_LIST)
        return lmio__fail(err, LMIO_ERR_FORMAT, p->path, p->base, "", "%s is a %s; expected a list of storage keys",
                          p->what, kind_of(r));
    if (!r->n) return LMIO_OK;
    *items = lmio__calloc(r->n, sizeof **items);
    *lens = lmio__calloc(r->n, sizeof **lens);
    if (!*items || !*lens) {
        lmio__free(*items);
        lmio__free(*lens);
        *items = NULL;
        *lens = NULL;
        return lmio__fail(err, LMIO_ERR_NOMEM, p->path, -1, "", "out of memory");
    }
    for (size_t i = 0; i < r->n; i++) {
        const pval *x = &p->v[r->u.items[i]];
        if (x->kind != K_STR) {
            lmio__free(*items);
            lmio__free(*lens);
            *items = NULL;
            *lens = NULL;
            return lmio__fail(err, LMIO_ERR_FORMAT, p->path, p->base + x->at, "",
                              "%s item %zu is a %s; expected a storage key string", p->what, i, kind_of(x));
        }
        (*items)[i] = x->u.s.p;
        (*lens)[i] = x->u.s.len;
    }
    *n = r->n;
    return LMIO_OK;
}

int lmio__pickle_dict_bool(const lmio__pickle *p, const char *key)
{
    const pval *r = &p->v[p->root];
    if (r->kind != K_DICT) return -1;
    size_t kl = strlen(key);
    for (size_t i = 0; i < r->n; i++) {
        const pval *k = &p->v[r->u.items[2 * i]], *v = &p->v[r->u.items[2 * i + 1]];
        if (k->kind == K_STR && k->u.s.len == kl && !memcmp(k->u.s.p, key, kl))
            return v->kind == K_BOOL ? (int)v->u.i : -1;
    }
    return -1;
}

const lmio__pickle_tensor *lmio__pickle_tensors(const lmio__pickle *p, size_t *n)
{
    *n = p->nt;
    return p->t;
}

bool lmio__torch_dtype(lmio_dtype dt, const char **storage_class, const char **dtype_name)
{
    *storage_class = *dtype_name = NULL;
    for (size_t i = 0; i < sizeof k_globals / sizeof *k_globals; i++) {
        const struct gdef *g = &k_globals[i];
        if (g->dtype != (int)dt || strcmp(g->module, "torch")) continue;
        if (g->glob == G_STORAGE && !*storage_class) *storage_class = g->name;
        if (g->glob == G_DTYPE && !*dtype_name) *dtype_name = g->name;
    }
    return *dtype_name != NULL;
}

/* ---- writing: the opcodes CPython's protocol-2 pickler emits ---- */

void lmio__pkw_op(lmio__pickler *w, unsigned char op) { lmio__buf_put(&w->b, &op, 1); }

void lmio__pkw_int(lmio__pickler *w, int64_t v)
{
    unsigned char b[10];
    if (v >= 0 && v < 256) {
        b[0] = 'K';
        b[1] = (unsigned char)v;
        lmio__buf_put(&w->b, b, 2);
    } else if (v >= 0 && v < 65536) {
        b[0] = 'M';
        b[1] = (unsigned char)v;
        b[2] = (unsigned char)(v >> 8);
        lmio__buf_put(&w->b, b, 3);
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
        b[0] = 'J';
        for (int i = 0; i < 4; i++) b[1 + i] = (unsigned char)((uint32_t)v >> (8 * i));
        lmio__buf_put(&w->b, b, 5);
    } else {
        /* LONG1: the fewest two's complement bytes that keep the sign */
        uint64_t u = (uint64_t)v;
        int n = 8;
        while (n > 1 && ((v >= 0 && (u >> (8 * (n - 1))) == 0 && !((u >> (8 * (n - 2))) & 0x80)) ||
                         (v < 0 && ((u >> (8 * (n - 1))) & 0xFF) == 0xFF && ((u >> (8 * (n - 2))) & 0x80))))
            n--;
        b[0] = 0x8a;
        b[1] = (unsigned char)n;
        for (int i = 0; i < n; i++) b[2 + i] = (unsigned char)(u >> (8 * i));
        lmio__buf_put(&w->b, b, (size_t)n + 2);
    }
}

void lmio__pkw_float(lmio__pickler *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    unsigned char b[9] = {'G'};
    for (int i = 0; i < 8; i++) b[1 + i] = (unsigned char)(u >> (56 - 8 * i)); /* big-endian */
    lmio__buf_put(&w->b, b, 9);
}

void lmio__pkw_str(lmio__pickler *w, const char *s, size_t n)
{
    unsigned char h[5] = {'X', (unsigned char)n, (unsigned char)(n >> 8), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 24)};
    lmio__buf_put(&w->b, h, 5);
    lmio__buf_put(&w->b, s, n);
}

static void put_memo(lmio__pickler *w, const char *a, const char *b)
{
    unsigned char op[5];
    for (size_t i = 0; i < w->n_memo; i++)
        if (!strcmp(w->memo[i].a, a) && (b ? w->memo[i].b && !strcmp(w->memo[i].b, b) : !w->memo[i].b)) {
            uint32_t k = w->memo[i].idx;
            op[0] = k < 256 ? 'h' : 'j';
            for (int j = 0; j < 4; j++) op[1 + j] = (unsigned char)(k >> (8 * j));
            lmio__buf_put(&w->b, op, k < 256 ? 2 : 5);
            return;
        }
    if (b) {
        lmio__pkw_op(w, 'c');
        lmio__buf_puts(&w->b, a);
        lmio__buf_put(&w->b, "\n", 1);
        lmio__buf_puts(&w->b, b);
        lmio__buf_put(&w->b, "\n", 1);
    } else {
        lmio__pkw_str(w, a, strlen(a));
    }
    if (w->n_memo == sizeof w->memo / sizeof *w->memo) return; /* not memoised: still correct */
    uint32_t k = w->next_memo++;
    w->memo[w->n_memo].a = a;
    w->memo[w->n_memo].b = b;
    w->memo[w->n_memo++].idx = k;
    op[0] = k < 256 ? 'q' : 'r';
    for (int j = 0; j < 4; j++) op[1 + j] = (unsigned char)(k >> (8 * j));
    lmio__buf_put(&w->b, op, k < 256 ? 2 : 5);
}

void lmio__pkw_str_memo(lmio__pickler *w, const char *s) { put_memo(w, s, NULL); }
void lmio__pkw_global(lmio__pickler *w, const char *module, const char *name) { put_memo(w, module, name); }

void lmio__pkw_int_tuple(lmio__pickler *w, const uint64_t *v, int n)
{
    if (n == 0) {
        lmio__pkw_op(w, ')');
        return;
    }
    if (n > 3) lmio__pkw_op(w, '(');
    for (int i = 0; i < n; i++) lmio__pkw_int(w, (int64_t)v[i]);
    lmio__pkw_op(w, n > 3 ? 't' : (unsigned char)(0x84 + n));
}
