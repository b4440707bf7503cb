/* lmio_export_torchscript: the architecture table meets the format layer.
 * This sits above both (as src/checkpoint does): the architecture's entry
 * knows its tensors and writes its forward pass as TorchScript source
 * (lmio__arch.torchscript); formats/torchscript.c knows the archive. */
#include "../formats/formats.h"
#include "../model/arch.h"

#include <stdio.h>
#include <string.h>

typedef struct export_ctx {
    const lmio__arch *arch;
    const lmio_config *cfg;
} export_ctx;

static lmio_status arch_methods(void *vctx, const char *node, lmio__buf *code, lmio_error *err)
{
    const export_ctx *c = vctx;
    return c->arch->torchscript(c->cfg, node, code, err);
}

/* The parameters in the state-dict order Transformers' model has: globals
 * before the first per-layer row, then layer by layer, then the rest. */
static lmio_status collect(const lmio__arch *a, const lmio_config *cfg, const lmio_statedict *w, lmio_tensor *out,
                           size_t cap, size_t *n, lmio_error *err)
{
    int64_t layers = 0;
    lmio_status s = lmio_config_get_int(cfg, a->layers_key, &layers, err);
    if (s) return s;
    bool tied = lmio__arch_tied(cfg);
    *n = 0;
    for (size_t i = 0; i < a->n_tensors;) {
        size_t j = i + 1;
        bool per_layer = a->tensors[i].flags & LMIO__T_PER_LAYER;
        while (per_layer && j < a->n_tensors && (a->tensors[j].flags & LMIO__T_PER_LAYER)) j++;
        for (int64_t l = 0; l < (per_layer ? layers : 1); l++)
            for (size_t k = i; k < j; k++) {
                const lmio__tensor_spec *ts = &a->tensors[k];
                char name[512];
                if ((ts->flags & LMIO__T_TIED) && tied) continue; /* the forward uses tied_to */
                int exists = 1; /* a bias the config switches off is no parameter, as in Transformers */
                if (ts->if_config && lmio_config_get_bool(cfg, ts->if_config, &exists, NULL) == LMIO_OK && !exists)
                    continue;
                if (*n == cap || !lmio__tensor_name(ts->hf_name, (size_t)l, name, sizeof name))
                    return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, ts->hf_name, "too many or too long tensor names");
                /* lmio_model_create found every one already */
                if ((s = lmio_tensor_find(w, name, &out[(*n)++], err))) return s;
            }
        i = j;
    }
    return LMIO_OK;
}

lmio_status lmio_export_torchscript(const lmio_config *cfg, const lmio_statedict *weights, const char *path,
                                    const lmio_save_opts *opts, lmio_error *err)
{
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_save_opts", err);
    if (s) return s;
    if (!cfg || !weights || !path || !*path)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path ? path : "", -1, "", "config, weights or path missing");
    if (o.dtype != LMIO_DTYPE_NONE && o.dtype != LMIO_DTYPE_F32)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "",
                          "target dtype %s; expected F32 (the exported forward pass computes in fp32)",
                          lmio_dtype_name(o.dtype) ? lmio_dtype_name(o.dtype) : "?");
    /* every tensor and config value checked exactly as for running it */
    lmio_model *m;
    if ((s = lmio_model_create(cfg, weights, &m, err))) return s;
    lmio_model_free(m);
    const lmio__arch *a = lmio__arch_of(cfg);
    if (!a->torchscript)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, "model_type",
                          "model_type \"%s\" runs in lmio but has no TorchScript export yet; expected one that has",
                          a->model_type);
    size_t cap = lmio_statedict_count(weights) + 1, n = 0;
    lmio_tensor *ts = lmio__calloc(cap, sizeof *ts);
    if (!ts) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    s = collect(a, cfg, weights, ts, cap, &n, err);
    char package[80];
    snprintf(package, sizeof package, "lmio.%s", a->model_type);
    for (char *c = package + 5; *c; c++) /* a model_type such as "gpt-neo" is no Python name */
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) *c = '_';
    export_ctx ctx = {a, cfg};
    lmio__ts_program p = {package, a->hf_class, ts, n, arch_methods, &ctx};
    if (!s) s = lmio__torchscript_save(&p, path, &o, err);
    lmio__free(ts);
    return s;
}
