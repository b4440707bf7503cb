/* lmio_onnx_export: a model folder transformers.js runs as it is. The graph
 * comes from the architecture table (each entry's onnx_graph hook); the
 * decoder interface every hook shares (names, shapes, the attention mask,
 * the KV cache) is built here, so all architectures export the same
 * layout: Optimum's text-generation-with-past
 * (shared/reference/onnx-transformersjs.md §6, §7). */
#include "arch.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the decoder interface ---- */

#define BATCH {"batch_size", 0}
#define SEQ {"sequence_length", 0}
#define PAST {"past_sequence_length", 0}
#define TOTAL {"past_sequence_length + sequence_length", 0}

void lmio__onnx_decoder_begin(lmio__onnx_decoder *d, lmio__onnx *g, size_t n_layer, size_t kv_heads,
                              size_t head_dim)
{
    memset(d, 0, sizeof *d);
    d->g = g;
    d->n_layer = n_layer;
    d->kv_heads = kv_heads;
    d->head_dim = head_dim;
    const lmio__onnx_dim bt[] = {BATCH, SEQ}, bs[] = {BATCH, TOTAL};
    d->input_ids = lmio__onnx_input(g, "input_ids", LMIO__ONNX_INT64, 2, bt);
    const char *am = lmio__onnx_input(g, "attention_mask", LMIO__ONNX_INT64, 2, bs);
    d->position_ids = lmio__onnx_input(g, "position_ids", LMIO__ONNX_INT64, 2, bt);
    lmio__onnx_scope(g, "mask");
    // causal (T, S): query t (at position S - T + t) sees keys 0 .. S - T + t
    const char *T = LMIO__ONNX_OP(g, "Shape", d->input_ids);
    lmio__onnx_attr_int(g, "start", 1);
    lmio__onnx_attr_int(g, "end", 2);
    const char *S = LMIO__ONNX_OP(g, "Shape", am);
    lmio__onnx_attr_int(g, "start", 1);
    lmio__onnx_attr_int(g, "end", 2);
    const char *TS = LMIO__ONNX_OP(g, "Concat", T, S);
    lmio__onnx_attr_int(g, "axis", 0);
    const unsigned char yes = 1;
    const char *ones = LMIO__ONNX_OP(g, "ConstantOfShape", TS);
    lmio__onnx_attr_scalar(g, "value", LMIO__ONNX_BOOL, &yes);
    const int64_t zero = 0;
    const char *k = LMIO__ONNX_OP(g, "Reshape", LMIO__ONNX_OP(g, "Sub", S, T), lmio__onnx_const_i64(g, NULL, 1, &zero));
    const char *causal = LMIO__ONNX_OP(g, "Trilu", ones, k);
    lmio__onnx_attr_int(g, "upper", 0);
    // padding (B, 1, 1, S): key s is a real token
    const char *keep = LMIO__ONNX_OP(g, "Cast", am);
    lmio__onnx_attr_int(g, "to", LMIO__ONNX_BOOL);
    const int64_t axes[] = {1, 2}, two = 2;
    keep = LMIO__ONNX_OP(g, "Unsqueeze", keep, lmio__onnx_const_i64(g, axes, 1, &two));
    d->mask = LMIO__ONNX_OP(g, "And", causal, keep);
    lmio__onnx_scope(g, NULL);
}

const char *lmio__onnx_decoder_cache(lmio__onnx_decoder *d, size_t l, bool is_value, const char *fresh)
{
    char past[64], present[64];
    const char *what = is_value ? "value" : "key";
    snprintf(past, sizeof past, "past_key_values.%zu.%s", l, what);
    snprintf(present, sizeof present, "present.%zu.%s", l, what);
    const lmio__onnx_dim pd[] = {BATCH, {NULL, (int64_t)d->kv_heads}, PAST, {NULL, (int64_t)d->head_dim}};
    const lmio__onnx_dim sd[] = {BATCH, {NULL, (int64_t)d->kv_heads}, TOTAL, {NULL, (int64_t)d->head_dim}};
    const char *p = lmio__onnx_float_input(d->g, past, 4, pd);
    const char *all = LMIO__ONNX_OP(d->g, "Concat", p, fresh);
    lmio__onnx_attr_int(d->g, "axis", 2);
    lmio__onnx_float_output(d->g, all, present, 4, sd);
    return all;
}

void lmio__onnx_decoder_logits(lmio__onnx_decoder *d, const char *logits, size_t vocab)
{
    const lmio__onnx_dim dims[] = {BATCH, SEQ, {NULL, (int64_t)vocab}};
    lmio__onnx_float_output(d->g, logits, "logits", 3, dims);
}

/* ---- the folder ---- */

int lmio_onnx_supported(const char *model_type)
{
    const lmio__arch *a = lmio__arch_find(model_type);
    return a && a->onnx_graph;
}

/* path as a directory; *made says whether this call created it. */
static lmio_status make_dir(const char *path, bool *made, lmio_error *err)
{
    struct stat st;
    *made = mkdir(path, 0777) == 0;
    if (*made || (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))) return LMIO_OK;
    return lmio__fail(err, errno == EEXIST ? LMIO_ERR_INVALID_ARG : LMIO_ERR_IO, path, -1, "", "%s; expected a directory",
                      errno == EEXIST ? "exists and is not a directory" : strerror(errno));
}

/* The folders an export created, so a failed one takes them away again
 * (files in them are lmio's: each was written whole or not at all). */
typedef struct made {
    char dir[4096], sub[4096], path[4096], data[4096];
    bool dir_made, sub_made;
} made;

static void undo(const made *m)
{
    if (m->sub_made) {
        unlink(m->path);
        unlink(m->data);
        rmdir(m->sub);
    }
    if (m->dir_made) lmio__remove_tree_at(AT_FDCWD, m->dir);
}

static lmio_status write_graph(const lmio__arch *a, made *m, const lmio_config *cfg, const lmio_statedict *w,
                               const lmio_onnx_opts *o, bool *external, lmio_error *err)
{
    char *sub = m->sub, *path = m->path, *data = m->data;
    lmio_status s;
    if ((s = lmio__path_join(sub, sizeof m->sub, m->dir, "onnx", err)) ||
        (s = lmio__path_join(path, sizeof m->path, sub, "model.onnx", err)) ||
        (s = lmio__path_join(data, sizeof m->data, sub, "model.onnx_data", err)) ||
        (s = make_dir(m->dir, &m->dir_made, err)) || (s = make_dir(sub, &m->sub_made, err)))
        return s;
    lmio__onnx *g;
    if ((s = lmio__onnx_create(o->dtype == LMIO_DTYPE_F16 ? LMIO_DTYPE_F16 : LMIO_DTYPE_F32, &g, err))) return s;
    s = a->onnx_graph(cfg, w, g, err);
    lmio__onnx_write_opts wo = {path, data, "model.onnx_data", o->external_data != 0, o->durable};
    if (!s) s = lmio__onnx_write(g, &wo, external, err);
    lmio__onnx_free(g);
    /* an earlier external export's data would be mistaken for this one's */
    if (!s && !*external && unlink(data) != 0 && errno != ENOENT)
        s = lmio__fail(err, LMIO_ERR_IO, data, -1, "", "cannot remove a stale external data file: %s", strerror(errno));
    return s;
}

static lmio_status write_config(const char *dir, const lmio_config *cfg, const lmio_tokenizer *tok,
                                const lmio_onnx_opts *o, bool external, lmio_error *err);

lmio_status lmio_onnx_export(const char *dir, const lmio_config *cfg, const lmio_statedict *weights,
                             const lmio_tokenizer *tok, const lmio_onnx_opts *opts, lmio_error *err)
{
    lmio_onnx_opts o = LMIO_ONNX_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_onnx_opts", err);
    if (s) return s;
    if (!dir || !*dir || !cfg || !weights) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (o.dtype != LMIO_DTYPE_NONE && o.dtype != LMIO_DTYPE_F32 && o.dtype != LMIO_DTYPE_F16)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "ONNX dtype %s; expected F32 or F16",
                          lmio_dtype_name(o.dtype) ? lmio_dtype_name(o.dtype) : "?");
    const lmio__arch *a = lmio__arch_of(cfg);
    if (!a || !a->onnx_graph) {
        char known[256] = "";
        for (size_t i = 0, n = 0; lmio_arch_name(i) && n < sizeof known; i++)
            if (lmio_onnx_supported(lmio_arch_name(i)))
                n += (size_t)snprintf(known + n, sizeof known - n, "%s%s", n ? ", " : "", lmio_arch_name(i));
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, "model_type",
                          "model_type \"%s\" cannot be exported to ONNX; expected one of: %s",
                          lmio_config_model_type(cfg), known);
    }
    bool external = false;
    made m = {0};
    if (snprintf(m.dir, sizeof m.dir, "%s", dir) >= (int)sizeof m.dir)
        return lmio__fail(err, LMIO_ERR_LIMIT, dir, -1, "", "path too long");
    if (!(s = write_graph(a, &m, cfg, weights, &o, &external, err))) s = write_config(dir, cfg, tok, &o, external, err);
    if (s) undo(&m);
    return s;
}

/* config.json (with transformers.js_config), generation_config.json and the
 * tokenizer's files beside onnx/. */
static lmio_status write_config(const char *dir, const lmio_config *cfg, const lmio_tokenizer *tok,
                                const lmio_onnx_opts *o, bool external, lmio_error *err)
{
    lmio_config *c;
    lmio_status s = lmio_config_copy(cfg, &c, err);
    if (s) return s;
    lmio__json *obj = lmio__config_json(c), *tjs = lmio__json_object();
    /* transformers.js in a browser fetches the data file only when told */
    bool ok = lmio__json_set(tjs, "use_external_data_format", lmio__json_bool(external));
    ok &= lmio__json_set(obj, "transformers.js_config", tjs);
    if (!ok) s = lmio__fail(err, LMIO_ERR_NOMEM, "config.json", -1, "", "out of memory");
    lmio_pretrained_opts po = LMIO_PRETRAINED_OPTS_INIT;
    po.durable = o->durable;
    po.keep_other_files = 1; /* onnx/ */
    if (!s) s = lmio_pretrained_save(dir, c, NULL, tok, &po, err);
    lmio_config_free(c);
    return s;
}

const char *lmio__onnx_act(lmio__onnx *g, lmio__act a, const char *x)
{
    switch (a) {
    case LMIO__ACT_GELU_NEW: {
        const char *y = LMIO__ONNX_OP(g, "Gelu", x);
        lmio__onnx_attr_str(g, "approximate", "tanh");
        return y;
    }
    case LMIO__ACT_GELU: return LMIO__ONNX_OP(g, "Gelu", x);
    case LMIO__ACT_RELU: return LMIO__ONNX_OP(g, "Relu", x);
    case LMIO__ACT_SILU: return LMIO__ONNX_OP(g, "Mul", x, LMIO__ONNX_OP(g, "Sigmoid", x));
    }
    return NULL;
}

const char *lmio__onnx_transpose4(lmio__onnx *g, const char *x, int64_t a, int64_t b, int64_t c, int64_t d)
{
    const char *y = LMIO__ONNX_OP(g, "Transpose", x);
    lmio__onnx_attr_ints(g, "perm", (const int64_t[]){a, b, c, d}, 4);
    return y;
}
