/* Tensor names and binding for every architecture: one loop that resolves
 * "{L}", checks each tensor of the table against the config and binds its
 * f32 data, so an architecture never types its tensor names twice. */
#include "arch.h"

#include <stdio.h>
#include <string.h>

bool lmio__tensor_name(const char *pattern, size_t layer, char *buf, size_t cap)
{
    const char *at = strstr(pattern, "{L}");
    int w = at ? snprintf(buf, cap, "%.*s%zu%s", (int)(at - pattern), pattern, layer, at + 3)
               : snprintf(buf, cap, "%s", pattern);
    return w >= 0 && (size_t)w < cap;
}

/* name against pattern, "{L}" matching 1+ decimal digits (no leading zero
 * unless "0", so each layer has one spelling). */
static bool match(const char *pattern, const char *name, size_t *layer)
{
    const char *at = strstr(pattern, "{L}");
    if (!at) return !strcmp(pattern, name);
    size_t head = (size_t)(at - pattern);
    if (strncmp(pattern, name, head)) return false;
    const char *p = name + head;
    size_t l = 0, digits = 0;
    for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) l = l * 10 + (size_t)(*p - '0');
    if (!digits || (digits > 1 && name[head] == '0') || strcmp(p, at + 3)) return false;
    if (layer) *layer = l;
    return true;
}

const lmio__tensor_spec *lmio__arch_spec(const lmio__arch *a, const char *name, size_t *layer)
{
    for (size_t i = 0; a && i < a->n_tensors; i++)
        if (match(a->tensors[i].hf_name, name, layer)) return &a->tensors[i];
    return NULL;
}

const lmio__tensor_spec *lmio__arch_spec_gguf(const lmio__arch *a, const char *name, size_t *layer)
{
    for (size_t i = 0; a && i < a->n_tensors; i++)
        if (a->tensors[i].gguf_name && match(a->tensors[i].gguf_name, name, layer)) return &a->tensors[i];
    return NULL;
}

bool lmio__arch_dropped(const lmio__arch *a, const char *name)
{
    size_t n = strlen(name);
    for (const char *const *s = a ? a->dropped_suffixes : NULL; s && *s; s++) {
        size_t k = strlen(*s);
        if (n >= k && !strcmp(name + n - k, *s)) return true;
    }
    return false;
}

bool lmio__arch_tied(const lmio_config *cfg)
{
    int tie = 1;
    lmio_config_get_bool(cfg, "tie_word_embeddings", &tie, NULL);
    return tie;
}

void lmio__f32_pool_free(lmio__f32_pool *p)
{
    for (size_t i = 0; i < p->n; i++) lmio__free(p->v[i]);
    lmio__free(p->v);
    p->v = NULL;
    p->n = 0;
}

static const char *sd_path(const lmio_statedict *sd)
{
    return lmio_statedict_path(sd) ? lmio_statedict_path(sd) : "";
}

/* The tensor's presence, shape and dtype against the spec. */
static lmio_status check(const lmio__binding *b, const lmio__tensor_spec *ts, const char *name, lmio_tensor *t,
                         lmio_error *err)
{
    const lmio__arch *a = b->arch;
    if (lmio_tensor_find(b->weights, name, t, NULL) != LMIO_OK) {
        if (ts->flags & LMIO__T_PER_LAYER)
            return lmio__fail(err, LMIO_ERR_NOT_FOUND, sd_path(b->weights), -1, name,
                              "missing tensor \"%s\"; expected it in a %s state dict with %s = %zu", name,
                              a->hf_class, a->layers_key, b->n_layer);
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, sd_path(b->weights), -1, name,
                          "missing tensor \"%s\"; expected it in a %s state dict", name, a->hf_class);
    }
    bool ok = t->ndim == ts->ndim;
    for (int d = 0; ok && d < ts->ndim; d++) ok = t->shape[d] == b->dims[ts->shape[d]];
    if (!ok) {
        char got[128], want[128] = "[", names[256] = "";
        lmio__format_shape(got, sizeof got, t->ndim, t->shape);
        for (int d = 0; d < ts->ndim; d++) {
            size_t wl = strlen(want), nl = strlen(names);
            snprintf(want + wl, sizeof want - wl, "%s%llu", d ? ", " : "", (unsigned long long)b->dims[ts->shape[d]]);
            snprintf(names + nl, sizeof names - nl, "%s%s", d ? ", " : "", a->dim_names[ts->shape[d]]);
        }
        return lmio__fail(err, LMIO_ERR_FORMAT, sd_path(b->weights), -1, name,
                          "tensor \"%s\" has shape %s; expected %s] (%s) from the config", name, got, want, names);
    }
    if (!lmio_dtype_is_convertible_float(t->dtype))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, sd_path(b->weights), -1, name,
                          "tensor \"%s\" is %s; expected F32, F16, BF16 or F64", name, lmio_dtype_name(t->dtype));
    return LMIO_OK;
}

/* f32 data of t: in place when it is aligned F32, else widened once into pool. */
static lmio_status f32_of(const lmio_tensor *t, lmio__f32_pool *pool, const float **out, lmio_error *err)
{
    if (t->dtype == LMIO_DTYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = t->data;
        return LMIO_OK;
    }
    /* numel is bounded by the file's bytes, which were mapped or read */
    float *f = lmio__malloc((size_t)t->numel * sizeof *f);
    float **v = lmio__realloc(pool->v, (pool->n + 1) * sizeof *v);
    if (v) pool->v = v;
    if (!f || !v) {
        lmio__free(f);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, t->name, "out of memory widening \"%s\"", t->name);
    }
    pool->v[pool->n++] = f;
    *out = f;
    return lmio__tensor_convert(t, f, LMIO_DTYPE_F32, err);
}

static const float **slot(void *base, size_t offset) { return (const float **)(void *)((char *)base + offset); }

/* One spec for one layer (ignored for globals). */
static lmio_status bind_one(const lmio__binding *b, const lmio__tensor_spec *ts, size_t l, void *model, void *layers,
                            lmio__f32_pool *pool, lmio_error *err)
{
    int exists = 1;
    if (ts->if_config && lmio_config_get_bool(b->cfg, ts->if_config, &exists, NULL) == LMIO_OK && !exists)
        return LMIO_OK;
    if ((ts->flags & LMIO__T_TIED) && b->tied) {
        /* the model uses the tensor it is tied to, bound before it */
        const lmio__tensor_spec *to = lmio__arch_spec(b->arch, ts->tied_to, NULL);
        if (model && to) *slot(model, ts->offset) = *slot(model, to->offset);
        return LMIO_OK;
    }
    char name[512];
    if (!lmio__tensor_name(ts->hf_name, l, name, sizeof name))
        return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, ts->hf_name, "tensor name too long");
    lmio_tensor t;
    lmio_status s = check(b, ts, name, &t, err);
    if (s || !model) return s;
    void *base = (ts->flags & LMIO__T_PER_LAYER) ? (char *)layers + l * b->arch->layer_size : model;
    return f32_of(&t, pool, slot(base, ts->offset), err);
}

lmio_status lmio__arch_bind(const lmio__binding *b, void *model, void *layers, lmio__f32_pool *pool,
                            lmio_error *err)
{
    const lmio__arch *a = b->arch;
    lmio_status s = LMIO_OK;
    /* globals first, then layer by layer: a config claiming more layers
     * than the weights hold fails at the first missing one */
    for (size_t i = 0; i < a->n_tensors && !s; i++)
        if (!(a->tensors[i].flags & LMIO__T_PER_LAYER)) s = bind_one(b, &a->tensors[i], 0, model, layers, pool, err);
    for (size_t l = 0; l < b->n_layer && !s; l++)
        for (size_t i = 0; i < a->n_tensors && !s; i++)
            if (a->tensors[i].flags & LMIO__T_PER_LAYER) s = bind_one(b, &a->tensors[i], l, model, layers, pool, err);
    return s;
}

lmio_status lmio__arch_build(const lmio__binding *b, void *model, void **layers, lmio__f32_pool *pool,
                             lmio_error *err)
{
    /* checked before the layers are allocated: the layer count is only
     * trusted once the weights hold that many layers */
    lmio_status s = lmio__arch_bind(b, NULL, NULL, NULL, err);
    if (!s && !(*layers = lmio__calloc(b->n_layer, b->arch->layer_size)))
        s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    if (!s) s = lmio__arch_bind(b, model, *layers, pool, err);
    return s;
}

lmio_status lmio__arch_compute(const lmio_statedict *weights, void (*fn)(void *ctx), void *ctx, lmio_error *err)
{
    if (lmio__guarded(fn, ctx)) return LMIO_OK;
    return lmio__statedict_lost(weights, lmio__guard_fault_addr(), sd_path(weights), err);
}
