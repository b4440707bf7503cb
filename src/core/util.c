/* Small public helpers over what the library already does internally, so a
 * program (the CLI first) does not grow its own copies that drift. */
#include "core.h"

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
