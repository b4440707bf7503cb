/* Fuzz target for config.json, reader and writer: whatever
 * lmio_config_load accepts is saved, reloaded and must hold the same JSON
 * (same keys, same types, integers equal, reals bit for bit), read the same
 * through every typed getter, and save again to the same bytes. A deep copy
 * must compare equal as well. Any mismatch aborts. */
#include "../src/model/model.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what)
{
    if (ok) return;
    fprintf(stderr, "config round trip: %s differs\n", what);
    abort();
}

static int json_equal(const lmio__json *a, const lmio__json *b)
{
    if (lmio__json_is_object(a)) {
        if (!lmio__json_is_object(b) || lmio__json_object_size(a) != lmio__json_object_size(b)) return 0;
        const char *k;
        lmio__json *v;
        lmio__json_iter it = lmio__json_iter_begin(a);
        while (lmio__json_iter_next(&it, &k, &v)) {
            const lmio__json *w = lmio__json_get(b, k);
            if (!w || !json_equal(v, w)) return 0;
        }
        return 1;
    }
    if (lmio__json_is_array(a)) {
        if (!lmio__json_is_array(b) || lmio__json_array_size(a) != lmio__json_array_size(b)) return 0;
        for (size_t i = 0; i < lmio__json_array_size(a); i++)
            if (!json_equal(lmio__json_array_get(a, i), lmio__json_array_get(b, i))) return 0;
        return 1;
    }
    if (lmio__json_is_string(a))
        return lmio__json_is_string(b) && !strcmp(lmio__json_string_value(a), lmio__json_string_value(b));
    if (lmio__json_is_integer(a))
        return lmio__json_is_integer(b) && lmio__json_integer_value(a) == lmio__json_integer_value(b);
    if (lmio__json_is_real(a)) {
        double x = lmio__json_real_value(a), y = lmio__json_real_value(b);
        return lmio__json_is_real(b) && !memcmp(&x, &y, sizeof x); /* -0.0 is not 0.0 */
    }
    if (lmio__json_is_true(a)) return lmio__json_is_true(b);
    if (lmio__json_is_false(a)) return lmio__json_is_false(b);
    return lmio__json_is_null(a) && lmio__json_is_null(b);
}

/* Every getter over every key the config has, plus the GPT-2 aliases and
 * defaults, must agree between the two configs. */
static void same_getters(const lmio_config *a, const lmio_config *b)
{
    static const char *const extra[] = {"hidden_size", "num_hidden_layers", "num_attention_heads",
                                        "max_position_embeddings", "n_inner", "vocab_size", "layer_norm_epsilon"};
    check(!strcmp(lmio_config_model_type(a), lmio_config_model_type(b)), "model_type");
    const char *k;
    lmio__json *v;
    lmio__json_iter it = lmio__json_iter_begin(lmio__config_json(a));
    size_t n_extra = sizeof extra / sizeof extra[0];
    for (size_t i = 0;; i++) {
        if (i < n_extra) k = extra[i];
        else if (!lmio__json_iter_next(&it, &k, &v)) break;
        int64_t ia = 0, ib = 0;
        double da = 0, db = 0;
        int xa = 0, xb = 0;
        const char *sa = NULL, *sb = NULL;
        check(lmio_config_get_int(a, k, &ia, NULL) == lmio_config_get_int(b, k, &ib, NULL) && ia == ib, "get_int");
        check(lmio_config_get_float(a, k, &da, NULL) == lmio_config_get_float(b, k, &db, NULL) &&
                  !memcmp(&da, &db, sizeof da), "get_float");
        check(lmio_config_get_bool(a, k, &xa, NULL) == lmio_config_get_bool(b, k, &xb, NULL) && xa == xb, "get_bool");
        lmio_status s1 = lmio_config_get_string(a, k, &sa, NULL), s2 = lmio_config_get_string(b, k, &sb, NULL);
        check(s1 == s2 && (s1 || !strcmp(sa, sb)), "get_string");
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[512], p1[512], p2[512];
    fuzz_path(in, sizeof in, "input.json");
    fuzz_path(p1, sizeof p1, "saved.json");
    fuzz_path(p2, sizeof p2, "saved-again.json");
    if (!fuzz_put("input.json", data, size)) return 0;
    lmio_config *c = NULL, *back = NULL, *copy = NULL;
    if (lmio_config_load(in, &c, NULL) != LMIO_OK) return 0;
    lmio_error err;
    if (lmio_config_save(c, p1, &err) != LMIO_OK) {
        fprintf(stderr, "saving a loaded config failed: %s\n", err.message);
        abort();
    }
    if (lmio_config_load(p1, &back, &err) != LMIO_OK) {
        fprintf(stderr, "reloading a saved config failed: %s\n", err.message);
        abort();
    }
    check(json_equal(lmio__config_json(c), lmio__config_json(back)) &&
              json_equal(lmio__config_json(back), lmio__config_json(c)), "JSON");
    same_getters(c, back);
    if (lmio_config_save(back, p2, NULL) != LMIO_OK) abort();
    size_t n1, n2;
    unsigned char *b1 = slurp(p1, &n1), *b2 = slurp(p2, &n2);
    check(n1 == n2 && !memcmp(b1, b2, n1), "bytes of a second save");
    free(b1);
    free(b2);
    if (lmio_config_copy(c, &copy, NULL) != LMIO_OK) abort();
    check(json_equal(lmio__config_json(c), lmio__config_json(copy)), "copy");
    lmio_config_free(copy);
    lmio_config_free(back);
    lmio_config_free(c);
    return 0;
}
