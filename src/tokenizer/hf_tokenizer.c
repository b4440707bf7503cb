/* Hugging Face tokenizer files: tokenizer.json, vocab.json + merges.txt,
 * tokenizer_config.json, special_tokens_map.json. */
#include "../core/json.h"
#include "tokenizer.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct vent {
    const char *s;
    size_t len;
    int64_t id;
} vent;

static int cmp_vent(const void *a, const void *b)
{
    const vent *x = a, *y = b;
    return (x->id > y->id) - (x->id < y->id);
}

/* A vocabulary object {token: id} with ids exactly 0..n-1. */
static lmio_status load_vocab(lmio_tokenizer *t, lmio__json *vocab, const char *path, lmio_error *err)
{
    if (!lmio__json_is_object(vocab))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "", "vocabulary is not a JSON object; expected {token: id}");
    size_t n = lmio__json_object_size(vocab);
    vent *v = lmio__calloc(n ? n : 1, sizeof *v);
    if (!v) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    size_t i = 0;
    const char *k;
    lmio__json *val;
    lmio__json_iter it = lmio__json_iter_begin(vocab);
    while (lmio__json_iter_next(&it, &k, &val)) {
        if (!lmio__json_is_integer(val)) {
            lmio__free(v);
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, k, "token \"%s\" has a non-integer id; expected an integer", k);
        }
        v[i++] = (vent){k, strlen(k), lmio__json_integer_value(val)};
    }
    qsort(v, n, sizeof *v, cmp_vent);
    lmio_status s = LMIO_OK;
    for (i = 0; i < n && !s; i++) {
        if (v[i].id != (int64_t)i) {
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, -1, v[i].s,
                           "token \"%s\" has id %lld; expected ids 0..%zu, each once", v[i].s, (long long)v[i].id, n - 1);
            break;
        }
        s = lmio__tok_add_token(t, v[i].s, v[i].len, err);
    }
    lmio__free(v);
    return s;
}

static lmio_status load_merges_json(lmio_tokenizer *t, lmio__json *merges, const char *path, lmio_error *err)
{
    if (!lmio__json_is_array(merges))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "", "model.merges is not an array");
    for (size_t i = 0; i < lmio__json_array_size(merges); i++) {
        lmio__json *m = lmio__json_array_get(merges, i);
        const char *a, *b;
        size_t al, bl;
        if (lmio__json_is_string(m)) { /* "a b" (tokenizers < 0.20) */
            a = lmio__json_string_value(m);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' '))
                return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "", "merge %zu \"%s\"; expected \"left right\"", i, a);
            al = (size_t)(sp - a);
            b = sp + 1;
            bl = strlen(b);
        } else if (lmio__json_is_array(m) && lmio__json_array_size(m) == 2 && lmio__json_is_string(lmio__json_array_get(m, 0)) &&
                   lmio__json_is_string(lmio__json_array_get(m, 1))) { /* ["a", "b"] */
            a = lmio__json_string_value(lmio__json_array_get(m, 0));
            b = lmio__json_string_value(lmio__json_array_get(m, 1));
            al = strlen(a);
            bl = strlen(b);
        } else {
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "", "merge %zu; expected \"a b\" or [\"a\", \"b\"]", i);
        }
        lmio_status s = lmio__tok_add_merge(t, a, al, b, bl, path, i, err);
        if (s) return s;
    }
    return LMIO_OK;
}

static lmio_status load_merges_txt(lmio_tokenizer *t, const char *path, lmio_error *err)
{
    lmio__file f;
    lmio_status s = lmio__file_open(path, 0, &f, err);
    if (s) return s;
    /* An empty file maps to NULL, and NULL + 0 is undefined in C: an empty
       merges.txt simply has no merges. */
    const char *p = f.size ? (const char *)f.data : NULL, *end = p ? p + f.size : NULL;
    size_t line = 0;
    while (p && p < end && !s) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        line++;
        size_t len = (size_t)(le - p);
        if (len && p[len - 1] == '\r') len--;
        if (len && !(line == 1 && len >= 8 && memcmp(p, "#version", 8) == 0)) {
            const char *sp = memchr(p, ' ', len);
            if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - p)))
                s = lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)((const unsigned char *)p - f.data), "",
                               "line %zu is not two tokens separated by one space; expected \"left right\"", line);
            else
                s = lmio__tok_add_merge(t, p, (size_t)(sp - p), sp + 1, len - (size_t)(sp + 1 - p), path, line, err);
        }
        p = nl ? nl + 1 : NULL;
    }
    lmio__file_close(&f);
    return s;
}

static lmio_status load_added_array(lmio_tokenizer *t, lmio__json *arr, const char *path, lmio_error *err)
{
    for (size_t i = 0; lmio__json_is_array(arr) && i < lmio__json_array_size(arr); i++) {
        lmio__json *a = lmio__json_array_get(arr, i);
        lmio__json *c = lmio__json_get(a, "content"), *id = lmio__json_get(a, "id");
        if (!lmio__json_is_string(c) || !lmio__json_is_integer(id))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "", "added_tokens[%zu]; expected {\"id\", \"content\"}", i);
        /* ids are int32 everywhere (a cast would truncate 2^32 + 5 to 5) */
        int64_t idv = lmio__json_integer_value(id);
        if (idv < 0 || idv > INT32_MAX)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, lmio__json_string_value(c),
                              "added_tokens[%zu] has id %lld; expected 0..%d", i, (long long)idv, INT32_MAX);
        lmio_status s = lmio__tok_add_added(t, lmio__json_string_value(c), lmio__json_is_true(lmio__json_get(a, "special")),
                                            (int32_t)idv, path, err);
        if (s) return s;
    }
    return LMIO_OK;
}

/* One pre_tokenizer object into steps: the kinds byte-level BPE families
 * use (ByteLevel without a prefix space, Split by a regex keeping matches
 * and the text between them, Digits, a Sequence of these); others are
 * refused by name rather than encoded differently from tokenizers. */
static lmio_status parse_pre(lmio__json *pre, lmio__pre_step *steps, size_t *n, int depth, const char *path,
                             lmio_error *err)
{
    const char *type = lmio__json_string_value(lmio__json_get(pre, "type"));
    if (type && !strcmp(type, "Sequence") && depth == 0) {
        lmio__json *items = lmio__json_get(pre, "pretokenizers");
        for (size_t i = 0; lmio__json_is_array(items) && i < lmio__json_array_size(items); i++) {
            lmio_status s = parse_pre(lmio__json_array_get(items, i), steps, n, 1, path, err);
            if (s) return s;
        }
        return LMIO_OK;
    }
    if (*n == LMIO__PRE_MAX)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "pre_tokenizer", "more than %d pre-tokenizer steps",
                          LMIO__PRE_MAX);
    lmio__pre_step *st = &steps[(*n)++];
    if (type && !strcmp(type, "ByteLevel") && !lmio__json_is_true(lmio__json_get(pre, "add_prefix_space"))) {
        bool re = !lmio__json_is_false(lmio__json_get(pre, "use_regex"));
        *st = (lmio__pre_step){LMIO__PRE_BYTELEVEL, re ? lmio__gpt2_pattern : NULL, re};
        return LMIO_OK;
    }
    if (type && !strcmp(type, "Digits")) {
        *st = (lmio__pre_step){LMIO__PRE_DIGITS, NULL, lmio__json_is_true(lmio__json_get(pre, "individual_digits"))};
        return LMIO_OK;
    }
    const char *behavior = lmio__json_string_value(lmio__json_get(pre, "behavior"));
    const char *regex = lmio__json_string_value(lmio__json_get(lmio__json_get(pre, "pattern"), "Regex"));
    if (type && !strcmp(type, "Split") && regex && behavior && !strcmp(behavior, "Isolated") &&
        !lmio__json_is_true(lmio__json_get(pre, "invert"))) {
        *st = (lmio__pre_step){LMIO__PRE_SPLIT, regex, false};
        return LMIO_OK;
    }
    return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "pre_tokenizer",
                      "pre_tokenizer step \"%s\" is not one lmio runs; expected ByteLevel (no prefix space), "
                      "Split (a Regex, Isolated), Digits or a Sequence of them",
                      type ? type : "?");
}

/* Only byte-level BPE is implemented; say so plainly otherwise. */
static lmio_status check_pipeline(lmio_tokenizer *t, lmio__json *root, const char *path, lmio_error *err)
{
    lmio__json *model = lmio__json_get(root, "model");
    const char *type = lmio__json_string_value(lmio__json_get(model, "type"));
    if (!type || strcmp(type, "BPE"))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "model.type",
                          "model.type is \"%s\"; expected \"BPE\" (only byte-level BPE is supported)", type ? type : "?");
    lmio__json *norm = lmio__json_get(root, "normalizer");
    if (norm && !lmio__json_is_null(norm))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "normalizer", "a normalizer is set; expected none");
    lmio__pre_step steps[LMIO__PRE_MAX];
    size_t n = 0;
    lmio__json *pre = lmio__json_get(root, "pre_tokenizer");
    lmio_status s = parse_pre(pre, steps, &n, 0, path, err);
    if (s) return s;
    /* the bytes must be mapped last, once: that is what makes it byte-level */
    for (size_t i = 0; i < n; i++)
        if ((steps[i].kind == LMIO__PRE_BYTELEVEL) != (i == n - 1))
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "pre_tokenizer",
                              "pre_tokenizer does not end in one ByteLevel step; expected byte-level BPE");
    t->ignore_merges = lmio__json_is_true(lmio__json_get(model, "ignore_merges"));
    return lmio__tok_set_pre(t, steps, n, path, err);
}

static lmio_status load_tokenizer_json(lmio_tokenizer *t, const char *path, lmio_error *err)
{
    lmio__json *root;
    lmio_status s = lmio__json_load_file(path, &root, err);
    if (s) return s;
    if (!(s = check_pipeline(t, root, path, err))) {
        lmio__json *model = lmio__json_get(root, "model");
        if (!(s = load_vocab(t, lmio__json_get(model, "vocab"), path, err)) &&
            !(s = load_merges_json(t, lmio__json_get(model, "merges"), path, err)))
            s = load_added_array(t, lmio__json_get(root, "added_tokens"), path, err);
    }
    lmio__json_decref(root);
    return s;
}

static const char *const k_role_keys[LMIO__ROLE_COUNT] = {"bos_token", "eos_token", "unk_token", "pad_token"};

/* tokenizer_config.json's special-token roles and chat template (or
 * chat_template.jinja, where Transformers 5 writes it). */
static lmio_status load_config_extras(lmio_tokenizer *t, const char *dir, lmio_error *err)
{
    char p[4096];
    lmio__json *cfg = NULL;
    lmio_status s = LMIO_OK;
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    struct stat st;
    if (stat(p, &st) == 0 && !(s = lmio__check_inside(dir, p, err)) &&
        !(s = lmio__json_load_file_ex(p, 1, &cfg, err))) {
        for (int r = 0; r < LMIO__ROLE_COUNT && !s; r++) {
            lmio__json *v = lmio__json_get(cfg, k_role_keys[r]);
            const char *c = lmio__json_is_string(v) ? lmio__json_string_value(v)
                                                    : lmio__json_string_value(lmio__json_get(v, "content"));
            if (c) s = lmio__tok_set_role(t, r, c, err);
        }
        const char *tpl = lmio__json_string_value(lmio__json_get(cfg, "chat_template"));
        if (!s && tpl && !(t->chat_template = lmio__strdup(tpl)))
            s = lmio__fail(err, LMIO_ERR_NOMEM, p, -1, "", "out of memory");
    }
    lmio__json_decref(cfg);
    snprintf(p, sizeof p, "%s/chat_template.jinja", dir);
    if (!s && !t->chat_template && stat(p, &st) == 0 && !(s = lmio__check_inside(dir, p, err))) {
        lmio__file f;
        if (!(s = lmio__file_open(p, 0, &f, err))) {
            if (!(t->chat_template = lmio__strndup((const char *)f.data, (size_t)f.size)))
                s = lmio__fail(err, LMIO_ERR_NOMEM, p, -1, "", "out of memory");
            lmio__file_close(&f);
        }
    }
    return s;
}

static bool is_added(const lmio_tokenizer *t, const char *content)
{
    for (size_t i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, content)) return true;
    return false;
}

/* By content, as every lmio reader decides: the GGUF magic. */
static bool is_gguf(const char *path)
{
    unsigned char head[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, 4, f) : 0;
    if (f) fclose(f);
    return n == 4 && !memcmp(head, "GGUF", 4);
}

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static lmio_status finish_or_free(lmio_tokenizer *t, const char *path, lmio_status s, lmio_tokenizer **out,
                                  lmio_error *err)
{
    if (!s) s = lmio__tok_finish(t, path, err);
    if (s) {
        lmio_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LMIO_OK;
}

lmio_status lmio_tokenizer_load_files(const char *vocab_json, const char *merges_txt, const char *const *special,
                                      size_t n_special, lmio_tokenizer **out, lmio_error *err)
{
    if (!vocab_json || !merges_txt || !out)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    lmio_tokenizer *t;
    lmio_status s = lmio__tok_new(&t, err);
    if (s) return s;
    lmio__json *v = NULL;
    if (!(s = lmio__json_load_file(vocab_json, &v, err)) && !(s = load_vocab(t, v, vocab_json, err)) &&
        !(s = load_merges_txt(t, merges_txt, err)))
        for (size_t i = 0; i < n_special && !s; i++) s = lmio__tok_add_added(t, special[i], true, -1, "", err);
    lmio__json_decref(v);
    return finish_or_free(t, vocab_json, s, out, err);
}

lmio_status lmio_tokenizer_load(const char *path, lmio_tokenizer **out, lmio_error *err)
{
    if (!path || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    struct stat st;
    if (stat(path, &st) != 0)
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, path, -1, "", "no such file or directory");
    lmio_tokenizer *t;
    lmio_status s = lmio__tok_new(&t, err);
    if (s) return s;
    char p1[4096], p2[4096], p3[4096];
    if (!S_ISDIR(st.st_mode) && is_gguf(path)) { /* the tokenizer in a GGUF's metadata */
        lmio_tokenizer_free(t);
        lmio_statedict *sd;
        if ((s = lmio_statedict_open(path, NULL, &sd, err))) return s;
        s = lmio__tokenizer_from_gguf(sd, out, err);
        lmio_statedict_free(sd);
        return s;
    }
    if (!S_ISDIR(st.st_mode)) {
        s = load_tokenizer_json(t, path, err);
        return finish_or_free(t, path, s, out, err);
    }
    snprintf(p1, sizeof p1, "%s/tokenizer.json", path);
    if (exists(p1)) {
        if (!(s = lmio__check_inside(path, p1, err)) && !(s = load_tokenizer_json(t, p1, err)))
            s = load_config_extras(t, path, err);
        return finish_or_free(t, p1, s, out, err);
    }
    snprintf(p1, sizeof p1, "%s/vocab.json", path);
    snprintf(p2, sizeof p2, "%s/merges.txt", path);
    snprintf(p3, sizeof p3, "%s/tokenizer_config.json", path);
    if (!exists(p1) || !exists(p2)) {
        lmio_tokenizer_free(t);
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, path, -1, "",
                          "no tokenizer.json and no vocab.json + merges.txt; expected a tokenizer directory");
    }
    lmio__json *v = NULL, *cfg = NULL;
    if (!(s = lmio__check_inside(path, p1, err)) && !(s = lmio__check_inside(path, p2, err)) &&
        !(s = lmio__check_inside(path, p3, err)) && !(s = lmio__json_load_file(p1, &v, err)) && !(s = load_vocab(t, v, p1, err)) &&
        !(s = load_merges_txt(t, p2, err)) && exists(p3) && !(s = lmio__json_load_file(p3, &cfg, err))) {
        lmio__json *dec = lmio__json_get(cfg, "added_tokens_decoder");
        const char *k;
        lmio__json *a;
        lmio__json_iter it = lmio__json_iter_begin(dec);
        while (lmio__json_iter_next(&it, &k, &a)) {
            const char *c = lmio__json_string_value(lmio__json_get(a, "content"));
            if (!c) continue;
            /* the key is the id: digits only, no sign, within int32 */
            char *end;
            errno = 0;
            long long idv = isdigit((unsigned char)k[0]) ? strtoll(k, &end, 10) : -1;
            if (idv < 0 || *end || errno == ERANGE || idv > INT32_MAX) {
                s = lmio__fail(err, LMIO_ERR_FORMAT, p3, -1, c,
                               "added_tokens_decoder key \"%.40s\" (for \"%.80s\"); expected an id in 0..%d", k, c,
                               INT32_MAX);
                break;
            }
            if ((s = lmio__tok_add_added(t, c, lmio__json_is_true(lmio__json_get(a, "special")), (int32_t)idv, p3,
                                         err)))
                break;
        }
    }
    /* Older directories declare their special tokens only here; each one
     * in the vocabulary is matched whole, as the slow GPT2Tokenizer does. */
    char p4[4096];
    lmio__json *map = NULL;
    snprintf(p4, sizeof p4, "%s/special_tokens_map.json", path);
    if (!s && exists(p4) && !(s = lmio__check_inside(path, p4, err)) && !(s = lmio__json_load_file(p4, &map, err))) {
        const char *k;
        lmio__json *val;
        lmio__json_iter it = lmio__json_iter_begin(map);
        while (lmio__json_iter_next(&it, &k, &val)) {
            const char *c = lmio__json_is_string(val) ? lmio__json_string_value(val) : lmio__json_string_value(lmio__json_get(val, "content"));
            if (!c || lmio_tokenizer_token_id(t, c) < 0 || is_added(t, c)) continue;
            if ((s = lmio__tok_add_added(t, c, true, -1, p4, err))) break;
        }
    }
    lmio__json_decref(map);
    lmio__json_decref(v);
    lmio__json_decref(cfg);
    return finish_or_free(t, p1, s, out, err);
}

/* ---- saving ---- */

/* Each builder returns NULL, never a partial object, when out of memory;
 * a NULL then fails the lmio__json_set or _append that receives it. */
static lmio__json *added_json(const lmio__added *a, bool with_id)
{
    lmio__json *o = lmio__json_object();
    bool ok = !with_id || lmio__json_set(o, "id", lmio__json_integer(a->id));
    ok &= lmio__json_set(o, "content", lmio__json_string(a->content));
    ok &= lmio__json_set(o, "single_word", lmio__json_bool(false));
    ok &= lmio__json_set(o, "lstrip", lmio__json_bool(false));
    ok &= lmio__json_set(o, "rstrip", lmio__json_bool(false));
    ok &= lmio__json_set(o, "normalized", lmio__json_bool(!a->special));
    ok &= lmio__json_set(o, "special", lmio__json_bool(a->special));
    if (!ok) {
        lmio__json_decref(o);
        return NULL;
    }
    return o;
}

static lmio__json *byte_level_re(bool add_prefix_space, bool trim_offsets, bool use_regex)
{
    lmio__json *o = lmio__json_object();
    bool ok = lmio__json_set(o, "type", lmio__json_string("ByteLevel"));
    ok &= lmio__json_set(o, "add_prefix_space", lmio__json_bool(add_prefix_space));
    ok &= lmio__json_set(o, "trim_offsets", lmio__json_bool(trim_offsets));
    ok &= lmio__json_set(o, "use_regex", lmio__json_bool(use_regex));
    if (!ok) {
        lmio__json_decref(o);
        return NULL;
    }
    return o;
}

static lmio__json *byte_level(bool add_prefix_space, bool trim_offsets)
{
    return byte_level_re(add_prefix_space, trim_offsets, true);
}

/* GPT-2's own pre-tokenizer: one ByteLevel that splits by its pattern. */
static bool pre_is_gpt2(const lmio_tokenizer *t)
{
    return t->n_pre == 1 && t->pre[0].kind == LMIO__PRE_BYTELEVEL && t->pre[0].flag;
}

static lmio__json *pre_step_json(const lmio__pre_step *st)
{
    if (st->kind == LMIO__PRE_BYTELEVEL) return byte_level_re(false, true, st->flag);
    lmio__json *o = lmio__json_object();
    bool ok = o != NULL;
    if (st->kind == LMIO__PRE_DIGITS) {
        ok &= lmio__json_set(o, "type", lmio__json_string("Digits"));
        ok &= lmio__json_set(o, "individual_digits", lmio__json_bool(st->flag));
    } else {
        lmio__json *pat = lmio__json_object();
        ok &= lmio__json_set(pat, "Regex", lmio__json_string(st->pattern));
        ok &= lmio__json_set(o, "type", lmio__json_string("Split"));
        ok &= lmio__json_set(o, "pattern", pat);
        ok &= lmio__json_set(o, "behavior", lmio__json_string("Isolated"));
        ok &= lmio__json_set(o, "invert", lmio__json_bool(false));
    }
    if (!ok) {
        lmio__json_decref(o);
        return NULL;
    }
    return o;
}

/* The pre_tokenizer as tokenizer.json writes it: GPT-2's as one ByteLevel
 * object (as before), any other as a Sequence of its steps. */
static lmio__json *pre_json(const lmio_tokenizer *t)
{
    if (pre_is_gpt2(t)) return byte_level(false, true);
    lmio__json *o = lmio__json_object(), *items = lmio__json_array();
    bool ok = lmio__json_set(o, "type", lmio__json_string("Sequence"));
    for (size_t i = 0; i < t->n_pre; i++) ok &= lmio__json_append(items, pre_step_json(&t->pre[i]));
    ok &= lmio__json_set(o, "pretokenizers", items);
    if (!ok) {
        lmio__json_decref(o);
        return NULL;
    }
    return o;
}

/* The five files a tokenizer save writes, built whole in memory first. */
enum { DOC_TOKENIZER, DOC_VOCAB, DOC_MERGES, DOC_CONFIG, DOC_SPECIAL, N_DOCS };
static const char *const k_doc_names[N_DOCS] = {"tokenizer.json", "vocab.json", "merges.txt",
                                                "tokenizer_config.json", "special_tokens_map.json"};

/* Takes v; a NULL v (a failed build) is reported as out of memory. The
 * text ends with a newline, as the tokenizers library writes it. */
static lmio_status dump_json(lmio__json *v, int indent, const char *path, lmio__buf *out, lmio_error *err)
{
    char *text = lmio__json_dump(v, indent, path, err);
    lmio__json_decref(v);
    if (!text) return LMIO_ERR_NOMEM;
    size_t n = strlen(text);
    text[n] = '\n'; /* json_dumps leaves room: replace the NUL, keep n + 1 */
    *out = (lmio__buf){.data = text, .len = n + 1, .cap = n + 1};
    return LMIO_OK;
}

/* tokenizer.json and vocab.json */
static lmio_status build_tokenizer_json(const lmio_tokenizer *t, const char *dir, lmio__buf *docs, lmio_error *err)
{
    /* vocabulary without the added tokens that were appended after it */
    lmio__json *vocab = lmio__json_object(), *merges = lmio__json_array();
    bool ok = vocab && merges;
    for (size_t i = 0; ok && i < t->n; i++) ok = lmio__json_set(vocab, t->str[i], lmio__json_integer((int64_t)i));
    for (size_t r = 0; ok && r < t->n_merges; r++) {
        lmio__json *pair = lmio__json_array();
        ok = lmio__json_append(pair, lmio__json_string(t->str[t->merge_a[r]]));
        ok &= lmio__json_append(pair, lmio__json_string(t->str[t->merge_b[r]]));
        ok &= lmio__json_append(merges, pair);
    }
    lmio__json *added = lmio__json_array();
    for (size_t i = 0; ok && i < t->n_added; i++) ok = lmio__json_append(added, added_json(&t->added[i], true));

    lmio__json *model = lmio__json_object();
    ok &= lmio__json_set(model, "type", lmio__json_string("BPE"));
    ok &= lmio__json_set(model, "dropout", lmio__json_null());
    ok &= lmio__json_set(model, "unk_token", lmio__json_null());
    ok &= lmio__json_set(model, "continuing_subword_prefix", lmio__json_string(""));
    ok &= lmio__json_set(model, "end_of_word_suffix", lmio__json_string(""));
    ok &= lmio__json_set(model, "fuse_unk", lmio__json_bool(false));
    ok &= lmio__json_set(model, "byte_fallback", lmio__json_bool(false));
    ok &= lmio__json_set(model, "ignore_merges", lmio__json_bool(t->ignore_merges));
    ok &= lmio__json_set(model, "vocab", lmio__json_incref(vocab));
    ok &= lmio__json_set(model, "merges", lmio__json_incref(merges));
    lmio__json *root = lmio__json_object();
    ok &= lmio__json_set(root, "version", lmio__json_string("1.0"));
    ok &= lmio__json_set(root, "truncation", lmio__json_null());
    ok &= lmio__json_set(root, "padding", lmio__json_null());
    ok &= lmio__json_set(root, "added_tokens", added);
    ok &= lmio__json_set(root, "normalizer", lmio__json_null());
    ok &= lmio__json_set(root, "pre_tokenizer", pre_json(t));
    ok &= lmio__json_set(root, "post_processor", byte_level(true, false));
    ok &= lmio__json_set(root, "decoder", byte_level(true, true));
    ok &= lmio__json_set(root, "model", model);
    if (!ok) { /* an incomplete tokenizer.json must not be written */
        lmio__json_decref(root);
        root = NULL;
    }
    lmio_status s = dump_json(root, 2, dir, &docs[DOC_TOKENIZER], err); /* a NULL root: NOMEM */
    if (!s) s = dump_json(lmio__json_incref(vocab), 0, dir, &docs[DOC_VOCAB], err);
    lmio__json_decref(vocab);
    lmio__json_decref(merges);
    return s;
}

static lmio_status build_merges_txt(const lmio_tokenizer *t, const char *dir, lmio__buf *out, lmio_error *err)
{
    lmio__buf b = {0};
    lmio__buf_puts(&b, "#version: 0.2\n");
    for (size_t r = 0; r < t->n_merges; r++) {
        lmio__buf_puts(&b, t->str[t->merge_a[r]]);
        lmio__buf_put(&b, " ", 1);
        lmio__buf_puts(&b, t->str[t->merge_b[r]]);
        lmio__buf_put(&b, "\n", 1);
    }
    if (b.oom) {
        lmio__buf_free(&b);
        return lmio__fail(err, LMIO_ERR_NOMEM, dir, -1, "", "out of memory building merges.txt");
    }
    *out = b;
    return LMIO_OK;
}

/* tokenizer_config.json and special_tokens_map.json, as Python's json.dumps
 * in Transformers writes them */
static lmio_status build_tokenizer_config(const lmio_tokenizer *t, const char *dir, lmio__buf *docs, lmio_error *err)
{
    const char *eos = NULL;
    for (size_t i = 0; i < t->n_added && !eos; i++)
        if (t->added[i].special) eos = t->added[i].content;
    lmio__json *cfg = lmio__json_object(), *dec = lmio__json_object();
    bool ok = true;
    for (size_t i = 0; i < t->n_added; i++) {
        char id[24];
        snprintf(id, sizeof id, "%d", t->added[i].id);
        ok &= lmio__json_set(dec, id, added_json(&t->added[i], false));
    }
    ok &= lmio__json_set(cfg, "add_prefix_space", lmio__json_bool(false));
    ok &= lmio__json_set(cfg, "added_tokens_decoder", dec);
    ok &= lmio__json_set(cfg, "clean_up_tokenization_spaces", lmio__json_bool(false));
    ok &= lmio__json_set(cfg, "model_max_length", lmio__json_integer((int64_t)t->model_max_length));
    /* Transformers' GPT2Tokenizer replaces tokenizer.json's pre_tokenizer
     * with GPT-2's; the generic class keeps the file's */
    ok &= lmio__json_set(cfg, "tokenizer_class",
                         lmio__json_string(pre_is_gpt2(t) ? "GPT2Tokenizer" : "PreTrainedTokenizerFast"));
    if (t->chat_template) ok &= lmio__json_set(cfg, "chat_template", lmio__json_string(t->chat_template));
    lmio__json *map = lmio__json_object();
    ok &= map != NULL; /* stays empty without an eos: no setter would notice */
    bool has_roles = false;
    for (int r = 0; r < LMIO__ROLE_COUNT; r++) {
        if (!t->role[r]) continue;
        has_roles = true;
        ok &= lmio__json_set(cfg, k_role_keys[r], lmio__json_string(t->role[r]));
        ok &= lmio__json_set(map, k_role_keys[r], lmio__json_string(t->role[r]));
    }
    if (eos && !has_roles) { /* GPT-2's convention: its one special token plays every role */
        const char *roles[] = {"bos_token", "eos_token", "unk_token"};
        for (int i = 0; i < 3; i++) {
            ok &= lmio__json_set(cfg, roles[i], lmio__json_string(eos));
            ok &= lmio__json_set(map, roles[i], lmio__json_string(eos));
        }
    }
    lmio_status s;
    if (!ok)
        s = lmio__fail(err, LMIO_ERR_NOMEM, dir, -1, "", "out of memory building tokenizer_config.json");
    else if (!(s = lmio__json_dump_python(cfg, &docs[DOC_CONFIG], dir, err)))
        s = lmio__json_dump_python(map, &docs[DOC_SPECIAL], dir, err);
    lmio__json_decref(cfg);
    lmio__json_decref(map);
    return s;
}

/* Every file is created (under its temporary name) and written before the
 * first one is renamed into place, so running out of memory or space
 * leaves the directory as it was rather than holding a mix of old and new. */
static lmio_status write_docs(const char *dir, const lmio__buf *docs, int durable, lmio_error *err)
{
    lmio__outfile o[N_DOCS];
    size_t begun = 0;
    lmio_status s = LMIO_OK;
    for (; begun < N_DOCS && !s; begun++) {
        char path[4096];
        if ((s = lmio__path_join(path, sizeof path, dir, k_doc_names[begun], err))) break;
        if ((s = lmio__outfile_begin(&o[begun], path, err))) break;
        s = lmio__outfile_write(&o[begun], docs[begun].data, docs[begun].len, err);
    }
    for (size_t i = 0; i < N_DOCS; i++) {
        if (i >= begun) break;
        if (!s) s = lmio__outfile_commit(&o[i], durable, err);
        else lmio__outfile_abort(&o[i]);
    }
    return s;
}

lmio_status lmio__tokenizer_save(const lmio_tokenizer *t, const char *dir, int durable, lmio_error *err)
{
    if (!t || !dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    lmio__buf docs[N_DOCS] = {{0}};
    lmio_status s = build_tokenizer_json(t, dir, docs, err);
    if (!s) s = build_merges_txt(t, dir, &docs[DOC_MERGES], err);
    if (!s) s = build_tokenizer_config(t, dir, docs, err);
    if (!s) s = write_docs(dir, docs, durable, err);
    for (int i = 0; i < N_DOCS; i++) lmio__buf_free(&docs[i]);
    return s;
}

lmio_status lmio_tokenizer_save(const lmio_tokenizer *t, const char *dir, lmio_error *err)
{
    return lmio__tokenizer_save(t, dir, 1, err);
}
