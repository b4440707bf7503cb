/* GGUF files as models: a GGUF state dict (llama.cpp's names and layouts)
 * to a config and Transformers-named weights, through the architecture
 * table (each tensor's gguf_name, its CONV1D and ROPE_HALF flags, the
 * gguf_keys hyperparameters), and the tokenizer in its metadata. The format
 * reader knows nothing of architectures; this is where they meet. */
#include "../formats/formats.h"
#include "../tokenizer/tokenizer.h"
#include "checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- layouts ---- */

/* Transformers' Conv1D [in, out] <-> nn.Linear / GGUF [out, in]. */
static void transpose(unsigned char *dst, const unsigned char *src, uint64_t rows, uint64_t cols, size_t es)
{
    for (uint64_t r = 0; r < rows; r++)
        for (uint64_t c = 0; c < cols; c++) memcpy(dst + (c * rows + r) * es, src + (r * cols + c) * es, es);
}

/* llama.cpp keeps each rotary head's rows as adjacent pairs (2i, 2i+1);
 * Transformers as halves (i, i + hd/2). Row h*hd + 2i + j of the GGUF is
 * row h*hd + j*hd/2 + i of Transformers' (convert_hf_to_gguf.py's permute
 * and its inverse). row_bytes covers a row of any dtype. */
void lmio__rope_rows(unsigned char *dst, const unsigned char *src, uint64_t rows, size_t row_bytes, uint64_t hd,
                     int to_gguf)
{
    for (uint64_t r = 0; r < rows; r++) {
        uint64_t h = r / hd, k = r % hd, i = k / 2, j = k % 2;
        uint64_t hf = h * hd + j * (hd / 2) + i; /* r is the GGUF row */
        if (to_gguf) memcpy(dst + r * row_bytes, src + hf * row_bytes, row_bytes);
        else memcpy(dst + hf * row_bytes, src + r * row_bytes, row_bytes);
    }
}

typedef struct reorder_job {
    unsigned char *dst;
    const lmio_tensor *t;
    unsigned need; /* LMIO__T_CONV1D: transpose; else LMIO__T_ROPE_HALF */
    uint64_t hd;
    int to_gguf;
} reorder_job;

static void reorder_fn(void *ctx)
{
    const reorder_job *j = ctx;
    const lmio_tensor *t = j->t;
    size_t es = lmio_dtype_bits(t->dtype) / 8;
    uint64_t rows = t->shape[0], cols = t->ndim > 1 ? t->shape[1] : 1;
    if (j->need & LMIO__T_CONV1D) transpose(j->dst, t->data, rows, cols, es);
    else lmio__rope_rows(j->dst, t->data, rows, (size_t)cols * es, j->hd, j->to_gguf);
}

/* t (at most 2-D) transposed or its rotary rows reordered, into a new
 * buffer *out of its size, with its new shape. t may be mapped: reading it
 * is guarded, and a file that shrank is LMIO_ERR_IO naming it. */
static lmio_status reorder(const lmio_tensor *t, unsigned need, uint64_t hd, int to_gguf, unsigned char **out,
                           uint64_t shape[2], const char *path, lmio_error *err)
{
    unsigned char *buf = lmio__malloc((size_t)t->nbytes);
    if (!buf) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, t->name, "out of memory");
    reorder_job j = {buf, t, need, hd, to_gguf};
    if (!lmio__guarded(reorder_fn, &j)) {
        lmio__free(buf);
        return lmio__tensor_lost(t, lmio__guard_fault_addr(), err);
    }
    shape[0] = t->shape[0];
    shape[1] = t->ndim > 1 ? t->shape[1] : 1;
    if (need & LMIO__T_CONV1D) {
        uint64_t r = shape[0];
        shape[0] = shape[1];
        shape[1] = r;
    }
    *out = buf;
    return LMIO_OK;
}

/* ---- config ---- */

static const char *meta_arch_key(const lmio_statedict *g, const char *arch, const char *key)
{
    char k[256];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    return lmio_metadata_find(g, k);
}

static lmio_status config_from_meta(const lmio__arch *a, const lmio_statedict *g, const char *path, lmio_config *cfg,
                                    lmio_error *err)
{
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < a->n_gguf_keys && !s; i++) {
        const lmio__gguf_key *k = &a->gguf_keys[i];
        const char *v = meta_arch_key(g, a->model_type, k->gguf);
        if (!v) continue;
        char *end;
        if (k->type == 'f') {
            double d = strtod(v, &end);
            if (*end || end == v) goto bad;
            s = lmio_config_set_float(cfg, k->config, d, err);
        } else {
            long long n = strtoll(v, &end, 10);
            if (*end || end == v || n < 0) goto bad;
            s = lmio_config_set_int(cfg, k->config, n, err);
        }
        continue;
    bad:
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, k->gguf, "%s.%s is \"%.40s\"; expected a %s", a->model_type,
                          k->gguf, v, k->type == 'f' ? "number" : "count");
    }
    /* special ids, as Transformers' GGUF loader sets them */
    static const char *const ids[][2] = {{"tokenizer.ggml.bos_token_id", "bos_token_id"},
                                         {"tokenizer.ggml.eos_token_id", "eos_token_id"},
                                         {"tokenizer.ggml.padding_token_id", "pad_token_id"}};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0] && !s; i++) {
        const char *v = lmio_metadata_find(g, ids[i][0]);
        if (v) s = lmio_config_set_int(cfg, ids[i][1], strtoll(v, NULL, 10), err);
    }
    return s;
}

/* ---- weights ---- */

typedef struct mapper {
    const lmio__arch *a;
    const lmio_statedict *g;
    lmio_statedict *w;
    const char *path;
    uint64_t head_dim;
} mapper;

static lmio_status map_tensor(mapper *m, const lmio_tensor *t, const lmio__tensor_spec *ts, size_t layer,
                              lmio_error *err)
{
    char name[512];
    if (!lmio__tensor_name(ts->hf_name, layer, name, sizeof name))
        return lmio__fail(err, LMIO_ERR_LIMIT, m->path, -1, t->name, "tensor name too long");
    unsigned need = ts->flags & (LMIO__T_CONV1D | LMIO__T_ROPE_HALF);
    if (!need || t->nbytes == 0)
        return lmio__statedict_add_view(m->w, name, strlen(name), t->dtype, t->ndim, t->shape, t->data, t->nbytes,
                                        t->file_offset, t->source, err);
    uint64_t rows = t->shape[0];
    if (t->ndim > 2 || (need == LMIO__T_CONV1D && t->ndim != 2) ||
        ((need & LMIO__T_ROPE_HALF) && (!m->head_dim || m->head_dim % 2 || rows % m->head_dim)))
        return lmio__fail(err, LMIO_ERR_FORMAT, m->path, t->file_offset, t->name,
                          "tensor \"%s\" has %d dimensions of %llu rows; expected %s", t->name, t->ndim,
                          (unsigned long long)rows,
                          need == LMIO__T_CONV1D ? "a matrix" : "whole rotary heads of the config's head_dim");
    unsigned char *buf;
    uint64_t shape[2];
    lmio_status s = reorder(t, need, m->head_dim, 0, &buf, shape, m->path, err);
    if (s) return s;
    return lmio__statedict_add_owned(m->w, name, strlen(name), t->dtype, t->ndim, shape, buf, t->nbytes, err);
}

/* llama.cpp's precomputed rope frequencies: Transformers derives them. */
static bool derived(const char *name) { return !strcmp(name, "rope_freqs.weight"); }

static lmio_status map_weights(mapper *m, bool tied, lmio_error *err)
{
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < lmio_statedict_count(m->g) && !s; i++) {
        lmio_tensor t;
        lmio_statedict_get(m->g, i, &t, NULL);
        size_t layer = 0;
        const lmio__tensor_spec *ts = lmio__arch_spec_gguf(m->a, t.name, &layer);
        if (!ts && derived(t.name)) continue;
        if (!ts)
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, m->path, t.file_offset, t.name,
                              "tensor \"%s\" is not one of a %s model's; expected llama.cpp's names for %s", t.name,
                              m->a->model_type, m->a->model_type);
        if ((ts->flags & LMIO__T_TIED) && tied) continue;
        s = map_tensor(m, &t, ts, layer, err);
    }
    return s;
}

/* An output.weight equal to token_embd.weight is a tied head that an older
 * converter wrote out (GPT-2, shared/reference/gguf-llamacpp.md §2.2). */
static lmio_status head_tied(const lmio__arch *a, const lmio_statedict *g, bool *tied, lmio_error *err)
{
    *tied = true;
    for (size_t i = 0; i < a->n_tensors; i++) {
        const lmio__tensor_spec *ts = &a->tensors[i];
        if (!(ts->flags & LMIO__T_TIED) || !ts->gguf_name) continue;
        const lmio__tensor_spec *to = lmio__arch_spec(a, ts->tied_to, NULL);
        lmio_tensor h, e;
        if (lmio_tensor_find(g, ts->gguf_name, &h, NULL)) return LMIO_OK;
        *tied = false;
        if (!to || !to->gguf_name || lmio_tensor_find(g, to->gguf_name, &e, NULL)) return LMIO_OK;
        return lmio__tensors_equal(&h, &e, tied, err);
    }
    return LMIO_OK;
}

lmio_status lmio__gguf_to_hf(lmio_statedict *g, lmio_config **cfg_out, lmio_statedict **w_out, lmio_error *err)
{
    const char *path = lmio_statedict_path(g) ? lmio_statedict_path(g) : "";
    const char *arch = lmio_metadata_find(g, "general.architecture");
    const lmio__arch *a = lmio__arch_find(arch);
    if (!a) {
        char known[256];
        lmio__arch_list(known, sizeof known);
        return lmio__fail(err, arch ? LMIO_ERR_UNSUPPORTED : LMIO_ERR_NOT_FOUND, path, -1, "general.architecture",
                          "general.architecture is %s%.64s%s; expected one lmio runs: %s", arch ? "\"" : "missing",
                          arch ? arch : "", arch ? "\"" : "", known);
    }
    lmio_config *cfg = NULL;
    lmio_statedict *w = NULL;
    bool tied;
    lmio_status s = head_tied(a, g, &tied, err);
    if (!s) s = lmio_config_create(a->model_type, &cfg, err);
    if (!s) s = config_from_meta(a, g, path, cfg, err);
    if (!s) s = lmio_config_set_bool(cfg, "tie_word_embeddings", tied, err);
    lmio_tensor emb;
    const lmio__tensor_spec *es = a->n_tensors ? &a->tensors[0] : NULL; /* the embedding comes first */
    if (!s && es && es->gguf_name && lmio_tensor_find(g, es->gguf_name, &emb, NULL) == LMIO_OK && emb.ndim == 2)
        s = lmio_config_set_int(cfg, "vocab_size", (int64_t)emb.shape[0], err);
    int64_t hd = 0, C = 0, H = 0;
    if (!s && lmio_config_get_int(cfg, "head_dim", &hd, NULL) != LMIO_OK &&
        lmio_config_get_int(cfg, "hidden_size", &C, NULL) == LMIO_OK &&
        lmio_config_get_int(cfg, "num_attention_heads", &H, NULL) == LMIO_OK && H > 0)
        hd = C / H;
    if (!s) s = lmio_statedict_create(&w, err);
    if (!s) s = lmio__statedict_set_source(w, path, "gguf", NULL, err);
    mapper m = {a, g, w, path, hd > 0 ? (uint64_t)hd : 0};
    if (!s) s = map_weights(&m, tied, err);
    if (!s) s = lmio__statedict_adopt(w, g, err); /* views point into g's mapping */
    if (s) {
        lmio_config_free(cfg);
        lmio_statedict_free(w);
        return s; /* g is still the caller's */
    }
    *cfg_out = cfg;
    *w_out = w;
    return LMIO_OK;
}

bool lmio__is_gguf_file(const char *path)
{
    unsigned char head[4] = {0};
    FILE *f = fopen(path, "rb");
    size_t n = f ? fread(head, 1, 4, f) : 0;
    if (f) fclose(f);
    return n == 4 && lmio__format_sniff(head, 4, 4) == &lmio__format_gguf;
}

lmio_status lmio__gguf_load(const char *path, lmio_config **cfg, lmio_statedict **weights, lmio_tokenizer **tok,
                            lmio_error *err)
{
    lmio_statedict *g;
    lmio_status s = lmio_statedict_open(path, NULL, &g, err);
    if (s) return s;
    lmio_tokenizer *t = NULL;
    if (tok && (s = lmio__tokenizer_from_gguf(g, &t, err))) {
        lmio_statedict_free(g);
        return s;
    }
    lmio_config *c = NULL;
    lmio_statedict *w = NULL;
    if ((s = lmio__gguf_to_hf(g, &c, &w, err))) {
        lmio_statedict_free(g);
        lmio_tokenizer_free(t);
        return s;
    }
    if (cfg) *cfg = c;
    else lmio_config_free(c);
    if (weights) *weights = w;
    else lmio_statedict_free(w);
    if (tok) *tok = t;
    return LMIO_OK;
}

/* ---- writing: a model as llama.cpp's converter writes it ---- */

enum { GT_F32 = 0, GT_F16 = 1, GT_Q8_0 = 8, GT_BF16 = 30 };

static const struct {
    const char *name;
    uint32_t type, file_type; /* general.file_type: llama.cpp's LLAMA_FTYPE_* */
} k_out_types[] = {{"f32", GT_F32, 0}, {"f16", GT_F16, 1}, {"bf16", GT_BF16, 32}, {"q8_0", GT_Q8_0, 7}};

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* convert_hf_to_gguf.py's choice: vectors, norms, biases and position
 * embeddings F32; other matrices the requested type, F16 where Q8_0
 * cannot split the rows. */
static uint32_t tensor_type(const lmio_tensor *t, uint32_t want)
{
    if (!lmio_dtype_is_convertible_float(t->dtype)) return UINT32_MAX;
    if (t->ndim < 2 || ends_with(t->name, "_norm.weight") || !ends_with(t->name, ".weight") ||
        !strcmp(t->name, "position_embd.weight"))
        return GT_F32;
    if (want == GT_Q8_0 && t->shape[t->ndim - 1] % 32) return GT_F16;
    return want;
}

/* A float as text the GGUF writer types FLOAT32: shortest round trip for
 * float32, always with a point or an exponent. */
static void float_text(char *buf, size_t cap, double v)
{
    for (int p = 1; p <= 9; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtof(buf, NULL) == (float)v) break;
    }
    if (!strpbrk(buf, ".eEn")) strncat(buf, ".0", cap - strlen(buf) - 1);
}

/* A number from the config; rope keys may live in rope_parameters (or the
 * older rope_scaling), as Transformers 5 keeps them. */
static bool config_number(const lmio_config *cfg, const char *key, double *out)
{
    const lmio__json *o = lmio__config_json(cfg);
    const char *nest[] = {"rope_parameters", "rope_scaling"};
    for (int i = 0; i < 2; i++) {
        const lmio__json *v = lmio__json_get(lmio__json_get((lmio__json *)o, nest[i]), key);
        if (lmio__json_is_number(v)) { *out = lmio__json_number_value(v); return true; }
    }
    return lmio_config_get_float(cfg, key, out, NULL) == LMIO_OK;
}

static lmio_status put_meta(lmio_statedict *g, const char *k, const char *v, lmio_error *err)
{
    return lmio_metadata_set(g, k, v, err);
}

static lmio_status hparams_meta(const lmio__arch *a, const lmio_config *cfg, lmio_statedict *g, lmio_error *err)
{
    lmio_status s = put_meta(g, "general.architecture", a->model_type, err);
    for (size_t i = 0; i < a->n_gguf_keys && !s; i++) {
        const lmio__gguf_key *k = &a->gguf_keys[i];
        double v;
        char key[256], text[64];
        if (!config_number(cfg, k->config, &v)) {
            if (!k->fallback || !config_number(cfg, k->fallback, &v)) continue;
            v *= k->mult;
        }
        snprintf(key, sizeof key, "%s.%s", a->model_type, k->gguf);
        if (k->type == 'f') float_text(text, sizeof text, v);
        else snprintf(text, sizeof text, "%llu", (unsigned long long)v);
        s = put_meta(g, key, text, err);
    }
    return s;
}

static void json_str_item(lmio__buf *b, const char *s, size_t *count)
{
    lmio__buf_puts(b, (*count)++ ? ", " : "[");
    lmio__buf_json_string(b, s);
}

/* tokenizer.ggml.* from a byte-level BPE tokenizer, as convert_hf_to_gguf
 * writes them: special added tokens CONTROL, other added tokens
 * USER_DEFINED, rows of the embedding past the vocabulary [PAD<i>] UNUSED. */
static lmio_status tokenizer_meta(const lmio_tokenizer *t, uint64_t n_vocab, lmio_statedict *g, const char *path,
                                  lmio_error *err)
{
    const char *pre = lmio__pretok_name(t->pre, t->n_pre);
    if (!pre)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "tokenizer.ggml.pre",
                          "the tokenizer's pre-tokenizer has no tokenizer.ggml.pre name; expected one of lmio's table");
    lmio__buf tokens = {0}, types = {0}, merges = {0};
    size_t nt = 0, ny = 0, nm = 0;
    uint64_t n = n_vocab > t->n ? n_vocab : t->n;
    for (uint64_t i = 0; i < n; i++) {
        char pad[40], ty[8];
        int type = 1;
        if (i < t->n) {
            for (size_t k = 0; k < t->n_added; k++)
                if ((uint64_t)t->added[k].id == i) type = t->added[k].special ? 3 : 4;
        } else {
            snprintf(pad, sizeof pad, "[PAD%llu]", (unsigned long long)i);
            type = 5;
        }
        json_str_item(&tokens, i < t->n ? t->str[i] : pad, &nt);
        snprintf(ty, sizeof ty, "%s%d", ny++ ? ", " : "[", type);
        lmio__buf_puts(&types, ty);
    }
    for (size_t r = 0; r < t->n_merges; r++) {
        lmio__buf_puts(&merges, nm++ ? ", \"" : "[\"");
        size_t mark = merges.len;
        lmio__buf_json_string(&merges, t->str[t->merge_a[r]]);
        memmove(merges.data + mark, merges.data + mark + 1, merges.len - mark - 1); /* drop its quotes */
        merges.len -= 2;
        lmio__buf_put(&merges, " ", 1);
        mark = merges.len;
        lmio__buf_json_string(&merges, t->str[t->merge_b[r]]);
        memmove(merges.data + mark, merges.data + mark + 1, merges.len - mark - 1);
        merges.len -= 1;
    }
    lmio__buf_puts(&tokens, "]");
    lmio__buf_puts(&types, "]");
    lmio__buf_puts(&merges, nm ? "]" : "[]");
    lmio_status s = tokens.oom || types.oom || merges.oom ? lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory")
                                                           : LMIO_OK;
    if (!s) s = put_meta(g, "tokenizer.ggml.model", "gpt2", err);
    if (!s) s = put_meta(g, "tokenizer.ggml.pre", pre, err);
    if (!s) s = put_meta(g, "tokenizer.ggml.tokens", tokens.data, err);
    if (!s) s = put_meta(g, "tokenizer.ggml.token_type", types.data, err);
    if (!s && nm) s = put_meta(g, "tokenizer.ggml.merges", merges.data, err);
    lmio__buf_free(&tokens);
    lmio__buf_free(&types);
    lmio__buf_free(&merges);
    static const char *const keys[LMIO__ROLE_COUNT] = {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                                                       "tokenizer.ggml.unknown_token_id",
                                                       "tokenizer.ggml.padding_token_id"};
    for (int r = 0; r < LMIO__ROLE_COUNT && !s; r++) {
        /* GPT-2's one special token is its bos and eos (llama.cpp's BPE
         * defaults are 11 otherwise) */
        int32_t id = t->role[r] ? lmio_tokenizer_token_id(t, t->role[r])
                     : r <= LMIO__ROLE_EOS ? lmio_tokenizer_eos_id(t) : -1;
        char text[24];
        snprintf(text, sizeof text, "%d", id);
        if (id >= 0) s = put_meta(g, keys[r], text, err);
    }
    if (!s && t->chat_template) s = put_meta(g, "tokenizer.chat_template", t->chat_template, err);
    return s;
}

/* The weights under llama.cpp's names and layouts, into g. */
static lmio_status gguf_tensors(const lmio__arch *a, const lmio_config *cfg, const lmio_statedict *w, lmio_statedict *g,
                                const char *path, lmio_error *err)
{
    bool tied = lmio__arch_tied(cfg);
    int64_t hd = 0, C = 0, H = 0;
    if (lmio_config_get_int(cfg, "head_dim", &hd, NULL) != LMIO_OK &&
        lmio_config_get_int(cfg, "hidden_size", &C, NULL) == LMIO_OK &&
        lmio_config_get_int(cfg, "num_attention_heads", &H, NULL) == LMIO_OK && H > 0)
        hd = C / H;
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < lmio_statedict_count(w) && !s; i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        size_t layer = 0;
        char name[512];
        const lmio__tensor_spec *ts = lmio__arch_spec(a, t.name, &layer);
        if (!ts && a->name_prefix) {
            snprintf(name, sizeof name, "%s%s", a->name_prefix, t.name);
            ts = lmio__arch_spec(a, name, &layer);
        }
        if (lmio__arch_dropped(a, t.name) || (ts && (ts->flags & LMIO__T_TIED) && tied)) continue;
        if (!ts || !ts->gguf_name || !lmio__tensor_name(ts->gguf_name, layer, name, sizeof name))
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, t.name,
                              "tensor \"%s\" has no llama.cpp name for %s; expected the architecture's tensors",
                              t.name, a->model_type);
        unsigned need = ts->flags & (LMIO__T_CONV1D | LMIO__T_ROPE_HALF);
        if (!need || !t.nbytes) {
            s = lmio__statedict_add_view(g, name, strlen(name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                         t.file_offset, t.source, err);
            continue;
        }
        uint64_t rows = t.shape[0], shape[2];
        if (t.ndim > 2 || (need & LMIO__T_ROPE_HALF && (hd <= 0 || hd % 2 || rows % (uint64_t)hd)))
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, t.name,
                              "tensor \"%s\" does not hold whole rotary heads of head_dim %lld", t.name, (long long)hd);
        unsigned char *buf;
        if ((s = reorder(&t, need, (uint64_t)hd, 1, &buf, shape, path, err))) return s;
        s = lmio__statedict_add_owned(g, name, strlen(name), t.dtype, t.ndim, shape, buf, t.nbytes, err);
    }
    return s;
}

static lmio_status model_meta(const lmio__arch *a, const lmio_config *cfg, const lmio_tokenizer *tok,
                              lmio_statedict *g, unsigned file_type, const char *path, lmio_error *err)
{
    char text[24];
    lmio_status s = hparams_meta(a, cfg, g, err);
    snprintf(text, sizeof text, "%u", file_type);
    if (!s) s = put_meta(g, "general.file_type", text, err);
    if (!s) s = put_meta(g, "general.quantization_version", "2", err);
    lmio_tensor emb;
    uint64_t n_vocab = 0;
    if (a->tensors[0].gguf_name && lmio_tensor_find(g, a->tensors[0].gguf_name, &emb, NULL) == LMIO_OK)
        n_vocab = emb.shape[0];
    if (!s && tok) s = tokenizer_meta(tok, n_vocab, g, path, err);
    return s;
}

lmio_status lmio_gguf_save(const char *path, const lmio_config *cfg, const lmio_statedict *weights,
                           const lmio_tokenizer *tok, const lmio_gguf_opts *opts, lmio_error *err)
{
    lmio_gguf_opts o = LMIO_GGUF_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_gguf_opts", err);
    if (s) return s;
    if (!path || !weights) return lmio__fail(err, LMIO_ERR_INVALID_ARG, path ? path : "", -1, "", "path or weights missing");
    size_t ti = 0;
    while (ti < sizeof k_out_types / sizeof k_out_types[0] && o.type && strcmp(o.type, k_out_types[ti].name)) ti++;
    if (ti == sizeof k_out_types / sizeof k_out_types[0])
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "GGUF type \"%s\"; expected f32, f16, bf16 or q8_0",
                          o.type);
    const lmio__arch *a = lmio__arch_of(cfg);
    if (cfg && !a) {
        char known[256];
        lmio__arch_list(known, sizeof known);
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "model_type",
                          "model_type \"%s\" has no llama.cpp architecture in lmio; expected one of %s",
                          lmio_config_model_type(cfg), known);
    }
    lmio_statedict *g = NULL;
    uint32_t *types = NULL;
    if ((s = lmio_statedict_create(&g, err))) return s;
    if (a) {
        s = gguf_tensors(a, cfg, weights, g, path, err);
        if (!s) s = model_meta(a, cfg, tok, g, k_out_types[ti].file_type, path, err);
    } else {
        for (size_t i = 0; i < lmio_statedict_count(weights) && !s; i++) {
            lmio_tensor t;
            lmio_statedict_get(weights, i, &t, NULL);
            s = lmio__statedict_add_view(g, t.name, strlen(t.name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                         t.file_offset, t.source, err);
        }
        for (size_t i = 0; i < lmio_metadata_count(weights) && !s; i++) {
            const char *k, *v;
            lmio_metadata_get(weights, i, &k, &v, NULL);
            s = put_meta(g, k, v, err);
        }
    }
    size_t n = lmio_statedict_count(g);
    if (!s && !(types = lmio__malloc((n ? n : 1) * sizeof *types)))
        s = lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    for (size_t i = 0; i < n && !s; i++) {
        lmio_tensor t;
        lmio_statedict_get(g, i, &t, NULL);
        types[i] = a ? tensor_type(&t, k_out_types[ti].type)
                     : lmio_dtype_is_convertible_float(t.dtype) && t.ndim >= 2
                         ? (k_out_types[ti].type == GT_Q8_0 && t.shape[t.ndim - 1] % 32 ? GT_F16 : k_out_types[ti].type)
                         : lmio_dtype_is_convertible_float(t.dtype) ? GT_F32 : UINT32_MAX;
    }
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.durable = o.durable;
    so.progress = o.progress;
    so.progress_ctx = o.progress_ctx;
    if (!s) s = lmio__gguf_write(g, path, types, &so, err);
    lmio__free(types);
    lmio_statedict_free(g);
    return s;
}
