/* Model config: a JSON object with typed access, and the defaults and key
 * aliases of its architecture (looked up in the architecture table). */
#include "arch.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct lmio_config {
    lmio__json *obj;
    char *path; /* where it was loaded from, for messages */
};

/* The key a config of this architecture uses for key: Transformers'
 * generic names are aliases in some config classes (GPT2Config's n_embd is
 * hidden_size). */
static const char *alias(const lmio_config *c, const char *key)
{
    const lmio__arch *a = lmio__arch_of(c);
    for (size_t i = 0; a && i < a->n_aliases; i++)
        if (!strcmp(key, a->aliases[i][0])) return a->aliases[i][1];
    return key;
}

/* The value for key: the config's own, else its architecture's default. */
static lmio__json *lookup(const lmio_config *c, const char *key)
{
    key = alias(c, key);
    lmio__json *v = lmio__json_get(c->obj, key);
    if (!v) v = lmio__json_get(lmio__arch_defaults(lmio__arch_of(c)), key);
    return v;
}

static const char *cpath(const lmio_config *c) { return c->path ? c->path : "config.json"; }

/* Sizes a model is built from: a value outside these ranges is refused when
 * the config is loaded, before anything is allocated from it. The bounds
 * are sanity caps (int32 ids, a few times today's largest models), not
 * limits of any architecture. */
static const struct {
    const char *key;
    int64_t lo, hi;
} k_ranges[] = {
    {"n_layer", 1, 1 << 16},        {"num_hidden_layers", 1, 1 << 16}, {"n_head", 1, 1 << 16},
    {"num_attention_heads", 1, 1 << 16}, {"num_key_value_heads", 1, 1 << 16}, {"n_embd", 1, 1 << 24},
    {"hidden_size", 1, 1 << 24},    {"n_inner", 1, 1 << 24},        {"intermediate_size", 1, 1 << 24},
    {"vocab_size", 1, INT32_MAX},   {"n_positions", 1, INT32_MAX},  {"n_ctx", 1, INT32_MAX},
    {"max_position_embeddings", 1, INT32_MAX},
};

/* v as an int64 exactly: a JSON integer, or a real that is integral and in
 * range (12.0 is 12; 1e30 or 12.5 is not an integer). The bounds are
 * written as powers of two: (double)INT64_MAX rounds up to 2^63, which a
 * <= test would wrongly accept, and the cast would be undefined. */
static bool exact_int(const lmio__json *v, int64_t *out)
{
    if (lmio__json_is_integer(v)) {
        *out = lmio__json_integer_value(v);
        return true;
    }
    if (!lmio__json_is_real(v)) return false;
    double d = lmio__json_real_value(v);
    if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0) || d != floor(d)) return false;
    *out = (int64_t)d;
    return true;
}

/* What v is, for a message: "1e+30", "\"12\"", "true". */
static void describe(const lmio__json *v, char *buf, size_t n)
{
    if (lmio__json_is_integer(v)) snprintf(buf, n, "%lld", (long long)lmio__json_integer_value(v));
    else if (lmio__json_is_real(v)) snprintf(buf, n, "%.17g", lmio__json_real_value(v));
    else if (lmio__json_is_string(v)) snprintf(buf, n, "the string \"%.40s\"", lmio__json_string_value(v));
    else if (lmio__json_is_bool(v)) snprintf(buf, n, "%s", lmio__json_is_true(v) ? "true" : "false");
    else if (lmio__json_is_null(v)) snprintf(buf, n, "null");
    else snprintf(buf, n, "%s", lmio__json_is_array(v) ? "an array" : "an object");
}

/* Checks v, the value of key (as named in the file), as an integer in the
 * key's range if it has one. */
static lmio_status check_int(const char *path, const char *key, const lmio__json *v, int64_t *out,
                             lmio_error *err)
{
    int64_t lo = INT64_MIN, hi = INT64_MAX, x;
    for (size_t i = 0; i < sizeof k_ranges / sizeof k_ranges[0]; i++)
        if (!strcmp(key, k_ranges[i].key)) {
            lo = k_ranges[i].lo;
            hi = k_ranges[i].hi;
        }
    if (!exact_int(v, &x) || x < lo || x > hi) {
        char got[96];
        describe(v, got, sizeof got);
        if (lo == INT64_MIN)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, key, "\"%s\" is %s; expected an integer", key, got);
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, key, "\"%s\" is %s; expected an integer in %lld..%lld",
                          key, got, (long long)lo, (long long)hi);
    }
    *out = x;
    return LMIO_OK;
}

/* Every size key the file sets (null means "the default") must be an
 * integer in range: consumers that fall back to a default on a failed get
 * would otherwise quietly use 4 * n_embd for an n_inner of -5. */
static lmio_status check_sizes(const char *path, const lmio__json *obj, lmio_error *err)
{
    for (size_t i = 0; i < sizeof k_ranges / sizeof k_ranges[0]; i++) {
        lmio__json *v = lmio__json_get(obj, k_ranges[i].key);
        int64_t x;
        if (v && !lmio__json_is_null(v)) {
            lmio_status s = check_int(path, k_ranges[i].key, v, &x, err);
            if (s) return s;
        }
    }
    return LMIO_OK;
}

/* "MAJOR" or "MAJOR.MINOR", decimal digits only: no sign, space or suffix
 * (sscanf("%d.%d") took "-7", "1.x" and wrapped "4294967297.0" to 1). */
static bool parse_version(const char *s, uint64_t *major)
{
    uint64_t part[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        if (!isdigit((unsigned char)*s)) return false;
        errno = 0;
        char *end;
        part[k] = strtoull(s, &end, 10);
        if (errno == ERANGE) return false;
        s = end;
        if (*s == '\0') break;
        if (*s != '.' || k == 1) return false;
        s++;
    }
    *major = part[0];
    return true;
}

static lmio_status check_version(const char *path, const lmio__json *obj, lmio_error *err)
{
    lmio__json *v = lmio__json_get(obj, "lmio_format_version");
    if (!v) return LMIO_OK;
    const char *fv = lmio__json_string_value(v);
    uint64_t major;
    if (!fv || !parse_version(fv, &major)) {
        char got[96];
        describe(v, got, sizeof got);
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "lmio_format_version",
                          "\"lmio_format_version\" is %s; expected a string \"MAJOR.MINOR\" such as \"%d.%d\"", got,
                          LMIO_FORMAT_VERSION_MAJOR, LMIO_FORMAT_VERSION_MINOR);
    }
    if (major > LMIO_FORMAT_VERSION_MAJOR)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "lmio_format_version",
                          "written in lmio format %s by a newer lmio; expected format %d.x or older (upgrade lmio)", fv,
                          LMIO_FORMAT_VERSION_MAJOR);
    return LMIO_OK;
}

const char *lmio__config_path(const lmio_config *c) { return cpath(c); }

lmio_status lmio_config_create(const char *model_type, lmio_config **out, lmio_error *err)
{
    if (!out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    const lmio__arch *a = lmio__arch_find(model_type);
    if (!a) {
        char known[256];
        lmio__arch_list(known, sizeof known);
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, "", -1, "model_type",
                          "model_type \"%s\" has no defaults in lmio; expected one of: %s",
                          model_type ? model_type : "(null)", known);
    }
    lmio__json_init();
    lmio_config *c = lmio__calloc(1, sizeof *c);
    lmio__json *d = lmio__arch_defaults(a);
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
     * field is interpreted; then sizes, before anything is built from them. */
    if ((s = check_version(path, obj, err)) || (s = check_sizes(path, obj, err))) {
        lmio__json_decref(obj);
        return s;
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

lmio_status lmio_config_to_json(const lmio_config *c, char **text, size_t *len, lmio_error *err)
{
    if (!c || !text || !len) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    lmio__buf b = {0};
    lmio_status s = lmio__json_dump_python(c->obj, &b, c->path ? c->path : "config.json", err);
    if (s) {
        lmio__buf_free(&b);
        return s;
    }
    *text = b.data; /* lmio_free releases it: the same allocator */
    *len = b.len;
    return LMIO_OK;
}

const char *lmio_config_model_type(const lmio_config *c)
{
    const char *s = c ? lmio__json_string_value(lmio__json_get(c->obj, "model_type")) : NULL;
    return s ? s : "";
}

lmio_status lmio_config_get_int(const lmio_config *c, const char *key, int64_t *out, lmio_error *err)
{
    lmio__json *v = lookup(c, key);
    /* null ("use the default", as n_inner: null) reads as absent */
    if (!v || lmio__json_is_null(v))
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, cpath(c), -1, key, "no \"%s\"; expected an integer", key);
    return check_int(cpath(c), alias(c, key), v, out, err);
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

/* Where the config was loaded from, or "config.json" when it was built in
 * memory: for messages about its values. */

/* For the checkpoint code: the JSON object itself (borrowed). */
lmio__json *lmio__config_json(const lmio_config *c) { return c->obj; }
