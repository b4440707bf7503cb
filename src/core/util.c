/* Small public helpers over what the library already does internally, so a
 * program (the CLI first) does not grow its own copies that drift. */
#include "core.h"

#include <string.h>
#include <strings.h>

void lmio_shape_format(char *buf, size_t cap, int ndim, const uint64_t *shape)
{
    if (!buf || cap == 0) return;
    lmio__format_shape(buf, cap, ndim, shape);
}

lmio_dtype lmio_dtype_parse(const char *s)
{
    /* the spellings torch, numpy and Hugging Face configs use; the
     * safetensors names themselves come from the dtype table below */
    static const struct { const char *name; lmio_dtype dtype; } k_aliases[] = {
        {"float32", LMIO_DTYPE_F32}, {"fp32", LMIO_DTYPE_F32},    {"float16", LMIO_DTYPE_F16},
        {"fp16", LMIO_DTYPE_F16},    {"half", LMIO_DTYPE_F16},    {"bfloat16", LMIO_DTYPE_BF16},
        {"float64", LMIO_DTYPE_F64}, {"fp64", LMIO_DTYPE_F64},
    };
    if (!s) return LMIO_DTYPE_NONE;
    for (size_t i = 0; i < sizeof k_aliases / sizeof k_aliases[0]; i++)
        if (strcasecmp(s, k_aliases[i].name) == 0) return k_aliases[i].dtype;
    for (int d = 0; d < LMIO_DTYPE_COUNT; d++)
        if (strcasecmp(s, lmio_dtype_name((lmio_dtype)d)) == 0) return (lmio_dtype)d;
    return LMIO_DTYPE_NONE;
}

size_t lmio_utf8_valid_prefix(const char *s, size_t n)
{
    return n ? lmio__utf8_prefix(s, n) : 0;
}

lmio_status lmio_file_write_atomic(const char *path, const void *data, size_t len, int durable, lmio_error *err)
{
    if (!path || (!data && len))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "lmio_file_write_atomic: %s is NULL",
                          path ? "data" : "path");
    return lmio__write_file(path, data, len, durable, err);
}

typedef struct copy_job {
    void *dst;
    const void *src;
    size_t n;
} copy_job;

static void copy_fn(void *ctx)
{
    copy_job *j = ctx;
    memcpy(j->dst, j->src, j->n);
}

lmio_status lmio_tensor_read(const lmio_tensor *t, uint64_t offset, void *dst, size_t n, lmio_error *err)
{
    if (!t || (!dst && n)) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "lmio_tensor_read: NULL argument");
    if (offset > t->nbytes || n > t->nbytes - offset)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, t->source ? t->source : "", -1, t->name ? t->name : "",
                          "bytes [%llu, %llu) of tensor \"%s\"; expected a range within its %llu bytes",
                          (unsigned long long)offset, (unsigned long long)offset + n, t->name ? t->name : "",
                          (unsigned long long)t->nbytes);
    if (!n) return LMIO_OK;
    if (lmio__copy_guarded(dst, (const unsigned char *)t->data + offset, n)) return LMIO_OK;
    return lmio__tensor_lost(t, lmio__guard_fault_addr(), err);
}

bool lmio__copy_guarded(void *dst, const void *src, size_t n)
{
    copy_job j = {dst, src, n};
    return lmio__guarded(copy_fn, &j);
}

lmio_status lmio__tensor_lost(const lmio_tensor *t, const void *addr, lmio_error *err)
{
    const char *name = t->name ? t->name : "";
    uintptr_t a = (uintptr_t)addr, base = (uintptr_t)t->data;
    int64_t at = -1;
    if (t->file_offset >= 0 && a >= base && a - base < t->nbytes) at = t->file_offset + (int64_t)(a - base);
    return lmio__fail(err, LMIO_ERR_IO, t->source ? t->source : "", at, name,
                      "data of tensor \"%s\" can no longer be read (the file shrank after it was mapped); expected "
                      "the file to stay as it was while open",
                      name);
}

typedef struct convert_job {
    void *dst;
    lmio_dtype dd;
    const void *src;
    lmio_dtype sd;
    size_t n;
} convert_job;

static void convert_fn(void *ctx)
{
    convert_job *j = ctx;
    lmio_convert(j->dst, j->dd, j->src, j->sd, j->n, NULL);
}

bool lmio__convert_guarded(void *dst, lmio_dtype dd, const void *src, lmio_dtype sd, size_t n)
{
    convert_job j = {dst, dd, src, sd, n};
    return lmio__guarded(convert_fn, &j);
}

lmio_status lmio__tensor_convert(const lmio_tensor *t, void *dst, lmio_dtype dd, lmio_error *err)
{
    /* n = 0 checks the dtypes (and nothing else) outside the guarded region */
    lmio_status s = lmio_convert(dst, dd, t->data, t->dtype, 0, err);
    if (s || !t->numel) return s;
    if (lmio__convert_guarded(dst, dd, t->data, t->dtype, (size_t)t->numel)) return LMIO_OK;
    return lmio__tensor_lost(t, lmio__guard_fault_addr(), err);
}

lmio_status lmio__statedict_lost(const lmio_statedict *sd, const void *addr, const char *path, lmio_error *err)
{
    lmio_tensor t;
    for (size_t i = 0, n = lmio_statedict_count(sd); i < n; i++)
        if (lmio_statedict_get(sd, i, &t, NULL) == LMIO_OK && (uintptr_t)addr >= (uintptr_t)t.data &&
            (uintptr_t)addr - (uintptr_t)t.data < t.nbytes)
            return lmio__tensor_lost(&t, addr, err);
    return lmio__fail(err, LMIO_ERR_IO, path ? path : "", -1, "",
                      "tensor data can no longer be read (a mapped file shrank after it was opened); expected the "
                      "files to stay as they were while open");
}

typedef struct cmp_job {
    const void *a, *b;
    size_t n;
    int diff;
} cmp_job;

static void cmp_fn(void *ctx)
{
    cmp_job *j = ctx;
    j->diff = memcmp(j->a, j->b, j->n);
}

lmio_status lmio__tensors_equal(const lmio_tensor *a, const lmio_tensor *b, bool *equal, lmio_error *err)
{
    *equal = a->dtype == b->dtype && a->nbytes == b->nbytes;
    if (!*equal || !a->nbytes) return LMIO_OK;
    cmp_job j = {a->data, b->data, (size_t)a->nbytes, 0};
    if (!lmio__guarded(cmp_fn, &j)) {
        const void *at = lmio__guard_fault_addr();
        uintptr_t p = (uintptr_t)at, base = (uintptr_t)b->data;
        return lmio__tensor_lost(p >= base && p - base < b->nbytes ? b : a, at, err);
    }
    *equal = j.diff == 0;
    return LMIO_OK;
}
