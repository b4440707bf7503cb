/* A tokenizer from GGUF metadata (shared/reference/gguf-llamacpp.md §2.4):
 * tokenizer.ggml.tokens, merges, token_type, the special ids, pre and
 * chat_template, as the GGUF reader left them (arrays as JSON text). Only
 * byte-level BPE (tokenizer.ggml.model "gpt2") is read; the pre-tokenizer
 * comes from the table in pretok_table.c. */
#include "../core/json.h"
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* llama.cpp's token types */
enum { TT_CONTROL = 3, TT_USER_DEFINED = 4 };

static lmio_status meta_array(const lmio_statedict *sd, const char *key, bool required, lmio__json **out,
                              lmio_error *err)
{
    const char *path = lmio_statedict_path(sd) ? lmio_statedict_path(sd) : "";
    const char *v = lmio_metadata_find(sd, key);
    *out = NULL;
    if (!v && !required) return LMIO_OK;
    if (!v) return lmio__fail(err, LMIO_ERR_NOT_FOUND, path, -1, key, "no %s; expected the tokenizer's %s", key, key);
    lmio_status s = lmio__json_parse(v, strlen(v), path, -1, out, err);
    if (!s && !lmio__json_is_array(*out)) {
        lmio__json_decref(*out);
        *out = NULL;
        s = lmio__fail(err, LMIO_ERR_FORMAT, path, -1, key, "%s is not an array; expected one", key);
    }
    if (s && err) snprintf(err->key, sizeof err->key, "%s", key);
    return s;
}

/* A stored token in byte-level form; a token spelled with characters
 * outside GPT-2's byte alphabet (a raw space, say) is re-spelled from its
 * UTF-8 bytes, as Transformers' GGUF loader does. */
static lmio_status add_token(lmio_tokenizer *t, const char *tok, lmio_error *err)
{
    lmio__buf b = {0};
    size_t n = strlen(tok);
    lmio__bytes_to_unicode(&b, (const unsigned char *)tok, n);
    lmio__buf_put(&b, "", 0);
    if (b.oom) {
        lmio__buf_free(&b);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    }
    /* byte-level already when every character maps back to one byte: the
     * respelled form of such a token never equals it unless it is ASCII */
    bool byte_level = true;
    for (const unsigned char *u = (const unsigned char *)tok; *u && byte_level;) {
        uint32_t cp;
        size_t k;
        if (*u < 0x80) { cp = *u; k = 1; }
        else if ((*u & 0xE0) == 0xC0 && u[1]) { cp = ((*u & 0x1Fu) << 6) | (u[1] & 0x3Fu); k = 2; }
        else { byte_level = false; break; }
        byte_level = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF) ||
                     (cp >= 256 && cp < 256 + 68);
        u += k;
    }
    lmio_status s = byte_level ? lmio__tok_add_token(t, tok, n, err) : lmio__tok_add_token(t, b.data, b.len, err);
    lmio__buf_free(&b);
    return s;
}

static lmio_status add_vocab(lmio_tokenizer *t, lmio__json *tokens, const char *path, lmio_error *err)
{
    for (size_t i = 0; i < lmio__json_array_size(tokens); i++) {
        const char *tok = lmio__json_string_value(lmio__json_array_get(tokens, i));
        if (!tok || !*tok)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "tokenizer.ggml.tokens",
                              "token %zu is %s; expected a non-empty string", i, tok ? "empty" : "not a string");
        lmio_status s = add_token(t, tok, err);
        if (s) return s;
    }
    return LMIO_OK;
}

/* "left right", split at the first space after the first character, as
 * llama.cpp splits them. */
static lmio_status add_merges(lmio_tokenizer *t, lmio__json *merges, const char *path, lmio_error *err)
{
    for (size_t i = 0; i < lmio__json_array_size(merges); i++) {
        const char *m = lmio__json_string_value(lmio__json_array_get(merges, i));
        const char *sp = m && m[0] ? strchr(m + 1, ' ') : NULL;
        if (!sp)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "tokenizer.ggml.merges",
                              "merge %zu is not \"left right\"; expected two tokens and a space", i);
        lmio_status s = lmio__tok_add_merge(t, m, (size_t)(sp - m), sp + 1, strlen(sp + 1), path, i, err);
        if (s) return s;
    }
    return LMIO_OK;
}

/* CONTROL tokens are matched whole and special, USER_DEFINED whole and not
 * special, as Transformers' GGUF loader adds them. */
static lmio_status add_typed(lmio_tokenizer *t, lmio__json *types, size_t n_vocab, const char *path, lmio_error *err)
{
    for (size_t i = 0; types && i < lmio__json_array_size(types) && i < n_vocab; i++) {
        int64_t ty = lmio__json_integer_value(lmio__json_array_get(types, i));
        if (ty != TT_CONTROL && ty != TT_USER_DEFINED) continue;
        lmio_status s = lmio__tok_add_added(t, t->str[i], ty == TT_CONTROL, (int32_t)i, path, err);
        if (s) return s;
    }
    return LMIO_OK;
}

static lmio_status add_roles(lmio_tokenizer *t, const lmio_statedict *sd, lmio_error *err)
{
    static const char *const keys[LMIO__ROLE_COUNT] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                                       "tokenizer.ggml.unknown_token_id",
                                                       "tokenizer.ggml.padding_token_id"};
    for (int r = 0; r < LMIO__ROLE_COUNT; r++) {
        const char *v = lmio_metadata_find(sd, keys[r]);
        char *end;
        unsigned long long id = v ? strtoull(v, &end, 10) : 0;
        /* an id past the vocabulary is ignored, as llama.cpp ignores it */
        if (!v || *end || id >= t->n) continue;
        lmio_status s = lmio__tok_set_role(t, r, t->str[id], err);
        if (s) return s;
    }
    const char *tpl = lmio_metadata_find(sd, "tokenizer.chat_template");
    if (tpl && !(t->chat_template = lmio__strdup(tpl))) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    char key[300];
    const char *arch = lmio_metadata_find(sd, "general.architecture");
    snprintf(key, sizeof key, "%s.context_length", arch ? arch : "");
    const char *ctx = lmio_metadata_find(sd, key);
    if (ctx && strtoull(ctx, NULL, 10) > 0) t->model_max_length = (size_t)strtoull(ctx, NULL, 10);
    return LMIO_OK;
}

static lmio_status check_model(const lmio_statedict *sd, const char *path, const lmio__pretok **row, lmio_error *err)
{
    const char *model = lmio_metadata_find(sd, "tokenizer.ggml.model");
    if (!model)
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, path, -1, "tokenizer.ggml.model",
                          "no tokenizer.ggml.model; expected a tokenizer in the metadata");
    if (strcmp(model, "gpt2"))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "tokenizer.ggml.model",
                          "tokenizer.ggml.model is \"%.64s\"; lmio reads byte-level BPE (\"gpt2\") only", model);
    const char *pre = lmio_metadata_find(sd, "tokenizer.ggml.pre");
    *row = pre ? lmio__pretok_find(pre) : lmio__pretok_default();
    if (*row) return LMIO_OK;
    lmio__buf known = {0};
    lmio__pretok_list(&known);
    lmio__buf_put(&known, "", 0);
    lmio_status s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "tokenizer.ggml.pre",
                               "tokenizer.ggml.pre is \"%.64s\", a pre-tokenizer lmio does not know; expected one of %.1500s",
                               pre, known.data ? known.data : "");
    lmio__buf_free(&known);
    return s;
}

lmio_status lmio__tokenizer_from_gguf(const lmio_statedict *sd, lmio_tokenizer **out, lmio_error *err)
{
    const char *path = lmio_statedict_path(sd) ? lmio_statedict_path(sd) : "";
    const lmio__pretok *row;
    lmio_status s = check_model(sd, path, &row, err);
    if (s) return s;
    lmio__json *tokens = NULL, *merges = NULL, *types = NULL;
    lmio_tokenizer *t = NULL;
    if (!(s = meta_array(sd, "tokenizer.ggml.tokens", true, &tokens, err)) &&
        !(s = meta_array(sd, "tokenizer.ggml.merges", true, &merges, err)) &&
        !(s = meta_array(sd, "tokenizer.ggml.token_type", false, &types, err)) && !(s = lmio__tok_new(&t, err)) &&
        !(s = lmio__tok_set_pre(t, row->steps, row->n_steps, path, err)) && !(s = add_vocab(t, tokens, path, err)) &&
        !(s = add_merges(t, merges, path, err)) && !(s = add_typed(t, types, t->n, path, err)) &&
        !(s = add_roles(t, sd, err)))
        s = lmio__tok_finish(t, path, err);
    lmio__json_decref(tokens);
    lmio__json_decref(merges);
    lmio__json_decref(types);
    if (s) {
        lmio_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LMIO_OK;
}
