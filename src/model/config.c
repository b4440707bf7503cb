/* Model config: a JSON object with typed access, model defaults and the
 * aliases Transformers' configs define. */
#include "model.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct lmio_config {
    lmio__json *obj;
    char *path; /* where it was loaded from, for messages */
};

/* GPT2Config's defaults (shared/reference/safetensors-hf.md §2.6). */
static const char k_gpt2_defaults[] =
    "{\"activation_function\": \"gelu_new\", \"architectures\": [\"GPT2LMHeadModel\"], \"attn_pdrop\": 0.1,"
    " \"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, \"initializer_range\": 0.02,"
    " \"layer_norm_epsilon\": 1e-05, \"model_type\": \"gpt2\", \"n_embd\": 768, \"n_head\": 12, \"n_inner\": null,"
    " \"n_layer\": 12, \"n_positions\": 1024, \"reorder_and_upcast_attn\": false, \"resid_pdrop\": 0.1,"
    " \"scale_attn_by_inverse_layer_idx\": false, \"scale_attn_weights\": true, \"summary_activation\": null,"
    " \"summary_first_dropout\": 0.1, \"summary_proj_to_labels\": true, \"summary_type\": \"cls_index\","
    " \"summary_use_proj\": true, \"tie_word_embeddings\": true, \"use_cache\": true, \"vocab_size\": 50257}";

static lmio__json *gpt2_defaults(void)
{
    static lmio__json *d;
    if (!d) lmio__json_parse(k_gpt2_defaults, sizeof k_gpt2_defaults - 1, "", 0, &d, NULL); /* process lifetime; tiny */
    return d;
}

static const char *alias(const lmio_config *c, const char *key)
{
    static const char *const map[][2] = {{"hidden_size", "n_embd"}, {"max_position_embeddings", "n_positions"},
                                         {"num_attention_heads", "n_head"}, {"num_hidden_layers", "n_layer"}};
    const char *mt = lmio_config_model_type(c);
    if (strcmp(mt, "gpt2")) return key;
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (!strcmp(key, map[i][0])) return map[i][1];
    return key;
}

/* The value for key: the config's own, else the model's default. */
static lmio__json *lookup(const lmio_config *c, const char *key)
{
    key = alias(c, key);
    lmio__json *v = lmio__json_get(c->obj, key);
    if (!v && !strcmp(lmio_config_model_type(c), "gpt2")) v = lmio__json_get(gpt2_defaults(), key);
    return v;
}

static const char *cpath(const lmio_config *c) { return c->path ? c->path : "config.json"; }

lmio_status lmio_config_create_gpt2(lmio_config **out, lmio_error *err)
{
    lmio__json_init();
    lmio_config *c = lmio__calloc(1, sizeof *c);
    lmio__json *d = gpt2_defaults();
    if (!c || !d || !(c->obj = lmio__json_deep_copy(d))) {
        lmio__free(c);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    }
    *out = c;
    return LMIO_OK;
}

lmio_status lmio_config_load(const char *path, lmio_config **out, lmio_error *err)
{
    if (!path || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    char buf[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/config.json", path);
        path = buf;
    }
    lmio__json *obj;
    lmio_status s = lmio__json_load_file(path, &obj, err);
    if (s) return s;
    if (!lmio__json_is_object(obj)) {
        lmio__json_decref(obj);
        return lmio__fail(err, LMIO_ERR_FORMAT, path, 0, "", "not a JSON object; expected a model config");
    }
    /* Refuse what a newer lmio wrote in an incompatible way, before any
     * field is interpreted. */
    const char *fv = lmio__json_string_value(lmio__json_get(obj, "lmio_format_version"));
    int major = 0, minor = 0;
    if (fv && (sscanf(fv, "%d.%d", &major, &minor) < 1 || major > LMIO_FORMAT_VERSION_MAJOR)) {
        lmio_status st2 = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "lmio_format_version",
                                     "written in lmio format %s by a newer lmio; expected format %d.x or older "
                                     "(upgrade lmio)",
                                     fv, LMIO_FORMAT_VERSION_MAJOR);
        lmio__json_decref(obj);
        return st2;
    }
    lmio_config *c = lmio__calloc(1, sizeof *c);
    if (!c || !(c->path = lmio__strdup(path))) {
        lmio__free(c);
        lmio__json_decref(obj);
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    }
    c->obj = obj;
    *out = c;
    return LMIO_OK;
}

void lmio_config_free(lmio_config *c)
{
    if (!c) return;
    lmio__json_decref(c->obj);
    lmio__free(c->path);
    lmio__free(c);
}

lmio_status lmio_config_copy(const lmio_config *c, lmio_config **out, lmio_error *err)
{
    lmio_config *d = lmio__calloc(1, sizeof *d);
    if (!d || !(d->obj = lmio__json_deep_copy(c->obj)) || (c->path && !(d->path = lmio__strdup(c->path)))) {
        if (d) lmio__json_decref(d->obj);
        lmio__free(d);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    }
    *out = d;
    return LMIO_OK;
}

lmio_status lmio_config_save(const lmio_config *c, const char *path, lmio_error *err)
{
    char buf[4096];
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(buf, sizeof buf, "%s/config.json", path);
        path = buf;
    }
    /* json.dumps(indent=2, sort_keys=True) + "\n", as Transformers writes */
    return lmio__write_json_python(path, c->obj, 1, err);
}

const char *lmio_config_model_type(const lmio_config *c)
{
    const char *s = c ? lmio__json_string_value(lmio__json_get(c->obj, "model_type")) : NULL;
    return s ? s : "";
}

lmio_status lmio_config_get_int(const lmio_config *c, const char *key, int64_t *out, lmio_error *err)
{
    lmio__json *v = lookup(c, key);
    if (!v) return lmio__fail(err, LMIO_ERR_NOT_FOUND, cpath(c), -1, key, "no \"%s\"; expected an integer", key);
    if (lmio__json_is_integer(v)) { *out = lmio__json_integer_value(v); return LMIO_OK; }
    /* a whole real such as 768.0 reads as an integer if int64 holds it
     * (converting one it does not hold is undefined behaviour) */
    double r = lmio__json_real_value(v);
    if (lmio__json_is_real(v) && r == floor(r) && r >= -9223372036854775808.0 && r < 9223372036854775808.0) {
        *out = (int64_t)r;
        return LMIO_OK;
    }
    return lmio__fail(err, LMIO_ERR_FORMAT, cpath(c), -1, key, "\"%s\" is not an integer; expected one", key);
}

lmio_status lmio_config_get_float(const lmio_config *c, const char *key, double *out, lmio_error *err)
{
    lmio__json *v = lookup(c, key);
    if (!v) return lmio__fail(err, LMIO_ERR_NOT_FOUND, cpath(c), -1, key, "no \"%s\"; expected a number", key);
    if (!lmio__json_is_number(v)) return lmio__fail(err, LMIO_ERR_FORMAT, cpath(c), -1, key, "\"%s\" is not a number", key);
    *out = lmio__json_number_value(v);
    return LMIO_OK;
}

lmio_status lmio_config_get_bool(const lmio_config *c, const char *key, int *out, lmio_error *err)
{
    lmio__json *v = lookup(c, key);
    if (!v) return lmio__fail(err, LMIO_ERR_NOT_FOUND, cpath(c), -1, key, "no \"%s\"; expected true or false", key);
    if (!lmio__json_is_bool(v)) return lmio__fail(err, LMIO_ERR_FORMAT, cpath(c), -1, key, "\"%s\" is not a boolean", key);
    *out = lmio__json_is_true(v);
    return LMIO_OK;
}

lmio_status lmio_config_get_string(const lmio_config *c, const char *key, const char **out, lmio_error *err)
{
    lmio__json *v = lookup(c, key);
    if (!v) return lmio__fail(err, LMIO_ERR_NOT_FOUND, cpath(c), -1, key, "no \"%s\"; expected a string", key);
    if (!lmio__json_is_string(v)) return lmio__fail(err, LMIO_ERR_FORMAT, cpath(c), -1, key, "\"%s\" is not a string", key);
    *out = lmio__json_string_value(v);
    return LMIO_OK;
}

/* Takes v (NULL: its constructor failed) in every case. */
static lmio_status set(lmio_config *c, const char *key, lmio__json *v, lmio_error *err)
{
    if (!c || !key) {
        lmio__json_decref(v);
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, key ? key : "", "cannot set config key");
    }
    if (!lmio__json_set(c->obj, alias(c, key), v))
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, key, "cannot set config key");
    return LMIO_OK;
}

lmio_status lmio_config_set_int(lmio_config *c, const char *key, int64_t v, lmio_error *err)
{
    return set(c, key, lmio__json_integer(v), err);
}
lmio_status lmio_config_set_float(lmio_config *c, const char *key, double v, lmio_error *err)
{
    return set(c, key, lmio__json_real(v), err);
}
lmio_status lmio_config_set_bool(lmio_config *c, const char *key, int v, lmio_error *err)
{
    return set(c, key, lmio__json_bool(v), err);
}
lmio_status lmio_config_set_string(lmio_config *c, const char *key, const char *v, lmio_error *err)
{
    return set(c, key, lmio__json_string(v), err);
}
lmio_status lmio_config_set_null(lmio_config *c, const char *key, lmio_error *err)
{
    return set(c, key, lmio__json_null(), err);
}

/* For the checkpoint code: the JSON object itself (borrowed). */
lmio__json *lmio__config_json(const lmio_config *c) { return c->obj; }
