/* Byte-level BPE training. Ids 0..255 are the bytes in GPT-2's order (the
 * order of their code points in the byte-to-unicode table), then one id per
 * merge, then the special tokens, as GPT-2's own vocabulary is laid out. */
#define _GNU_SOURCE /* memmem */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct word {
    int32_t *sym;
    size_t n;
    uint64_t count;
} word;

typedef struct trainer {
    lmio__smap index; /* word bytes (borrowed from the files) -> words[] index */
    word *words;
    size_t n_words, cap_words;
    bool oom;
} trainer;

static void count_word(trainer *tr, const char *w, size_t n)
{
    uint32_t i;
    if (lmio__smap_get(&tr->index, w, n, &i)) {
        tr->words[i].count++;
        return;
    }
    if (!lmio__grow((void **)&tr->words, sizeof *tr->words, tr->n_words + 1, &tr->cap_words)) {
        tr->oom = true;
        return;
    }
    word *wd = &tr->words[tr->n_words];
    wd->sym = lmio__malloc(n * sizeof *wd->sym);
    if (!wd->sym || !lmio__smap_put(&tr->index, w, n, (uint32_t)tr->n_words)) {
        lmio__free(wd->sym);
        tr->oom = true;
        return;
    }
    for (size_t k = 0; k < n; k++) wd->sym[k] = (unsigned char)w[k]; /* bytes for now; mapped to ids later */
    wd->n = n;
    wd->count = 1;
    tr->n_words++;
}

static lmio_status pretokenize(trainer *tr, const lmio_tokenizer *t, const char *text, size_t len,
                               const lmio_train_opts *o, const char *path, lmio_error *err)
{
    void *md = lmio__regex_match_data(t->re);
    if (!md) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    size_t pos = 0;
    while (pos < len && !tr->oom) {
        /* special tokens in the training text are not learned from */
        size_t stop = len, skip = 0;
        for (size_t i = 0; i < o->n_special; i++) {
            size_t sl = strlen(o->special[i]);
            const char *f = sl ? memmem(text + pos, len - pos, o->special[i], sl) : NULL;
            if (f && (size_t)(f - text) < stop) {
                stop = (size_t)(f - text);
                skip = sl;
            }
        }
        size_t p = pos, ms, me;
        while (p < stop && !tr->oom) {
            int r = lmio__regex_next(t->re, md, text, stop, p, &ms, &me);
            if (r <= 0 || me == ms) break;
            count_word(tr, text + ms, me - ms);
            p = me;
        }
        pos = stop + skip;
    }
    lmio__regex_match_data_free(md);
    return tr->oom ? lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory") : LMIO_OK;
}

/* The most frequent adjacent pair over all words (ties: smaller ids). */
static bool best_pair(trainer *tr, lmio__umap *counts, int32_t *a, int32_t *b, uint64_t *count)
{
    lmio__umap_free(counts);
    for (size_t i = 0; i < tr->n_words; i++) {
        word *w = &tr->words[i];
        for (size_t k = 0; k + 1 < w->n; k++) {
            uint64_t key = (uint64_t)(uint32_t)w->sym[k] << 32 | (uint32_t)w->sym[k + 1], c = 0;
            lmio__umap_get(counts, key, &c);
            if (!lmio__umap_put(counts, key, c + w->count)) { tr->oom = true; return false; }
        }
    }
    uint64_t best_key = UINT64_MAX, best = 0;
    for (size_t j = 0; j < counts->cap; j++) {
        lmio__umap_slot *s = &counts->slots[j];
        if (s->key == UINT64_MAX) continue;
        if (s->value > best || (s->value == best && s->key < best_key)) {
            best = s->value;
            best_key = s->key;
        }
    }
    if (!best) return false;
    *a = (int32_t)(best_key >> 32);
    *b = (int32_t)(uint32_t)best_key;
    *count = best;
    return true;
}

/* The 256 byte tokens as ids 0..255, in GPT-2's order: printable bytes
 * first, then the rest; byte_to_id maps a raw byte to its id. */
static lmio_status add_byte_tokens(lmio_tokenizer *t, int32_t byte_to_id[256], lmio_error *err)
{
    lmio__buf b = {0};
    int order[256], k = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < 256; c++) {
            bool printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
            if (printable == (pass == 0)) order[k++] = c;
        }
    lmio_status s = LMIO_OK;
    for (int i = 0; i < 256 && !s; i++) {
        unsigned char byte = (unsigned char)order[i];
        b.len = 0;
        lmio__bytes_to_unicode(&b, &byte, 1);
        if (b.oom) { s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory"); break; }
        s = lmio__tok_add_token(t, b.data, b.len, err);
        byte_to_id[byte] = i;
    }
    lmio__buf_free(&b);
    return s;
}

/* Maps every file (kept open in fs until training ends: the word index
 * borrows their bytes) and counts its pre-tokenised words. */
static lmio_status count_files(trainer *tr, const lmio_tokenizer *t, const char *const *files, size_t n_files,
                               lmio__file *fs, const lmio_train_opts *o, lmio_error *err)
{
    for (size_t i = 0; i < n_files; i++) {
        lmio_status s = lmio__file_open(files[i], 0, &fs[i], err);
        if (s) return s;
        size_t valid = lmio__utf8_prefix((const char *)fs[i].data, (size_t)fs[i].size);
        if (valid != fs[i].size)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, files[i], (int64_t)valid, "",
                              "byte 0x%02x is not valid UTF-8; expected UTF-8 text", fs[i].data[valid]);
        if ((s = pretokenize(tr, t, (const char *)fs[i].data, (size_t)fs[i].size, o, files[i], err))) return s;
    }
    return LMIO_OK;
}

/* Adds the token a+b (its string is the two strings joined) and the merge
 * rule, and returns the new token's id in *m. */
static lmio_status add_merge(lmio_tokenizer *t, int32_t a, int32_t b, uint32_t *m, lmio_error *err)
{
    size_t la = strlen(t->str[a]), lb = strlen(t->str[b]);
    char *joined = lmio__malloc(la + lb + 1);
    if (!joined) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory training");
    memcpy(joined, t->str[a], la);
    memcpy(joined + la, t->str[b], lb + 1);
    lmio_status s = LMIO_OK;
    if (!lmio__smap_get(&t->by_str, joined, la + lb, m)) {
        s = lmio__tok_add_token(t, joined, la + lb, err);
        *m = (uint32_t)(t->n - 1);
    }
    lmio__free(joined);
    return s ? s : lmio__tok_add_merge(t, t->str[a], la, t->str[b], lb, "", t->n_merges, err);
}

/* Rewrites every word with each adjacent (a, b) replaced by m. */
static void apply_merge(trainer *tr, int32_t a, int32_t b, uint32_t m)
{
    for (size_t i = 0; i < tr->n_words; i++) {
        word *w = &tr->words[i];
        size_t j = 0;
        for (size_t k = 0; k < w->n;) {
            if (k + 1 < w->n && w->sym[k] == a && w->sym[k + 1] == b) {
                w->sym[j++] = (int32_t)m;
                k += 2;
            } else {
                w->sym[j++] = w->sym[k++];
            }
        }
        w->n = j;
    }
}

lmio_status lmio_tokenizer_train(const char *const *files, size_t n_files, const lmio_train_opts *opts,
                                 lmio_tokenizer **out, lmio_error *err)
{
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_train_opts", err);
    if (opt_status) return opt_status;
    if (!out || (n_files && !files))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (o.vocab_size < 256 + o.n_special)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "vocab_size %zu; expected at least %zu (256 bytes + special tokens)",
                          o.vocab_size, 256 + o.n_special);
    lmio_tokenizer *t;
    lmio_status s = lmio__tok_new(&t, err);
    if (s) return s;
    lmio__file *fs = lmio__calloc(n_files ? n_files : 1, sizeof *fs);
    trainer tr = {0};
    lmio__umap counts = {0};
    int32_t byte_to_id[256];
    if (!fs) s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    if (!s) s = add_byte_tokens(t, byte_to_id, err);
    if (!s) s = count_files(&tr, t, files, n_files, fs, &o, err);
    if (s) goto done;
    for (size_t i = 0; i < tr.n_words; i++)
        for (size_t k = 0; k < tr.words[i].n; k++) tr.words[i].sym[k] = byte_to_id[tr.words[i].sym[k]];

    while (t->n + o.n_special < o.vocab_size) {
        int32_t a, b;
        uint64_t c;
        uint32_t m;
        if (!best_pair(&tr, &counts, &a, &b, &c) || c < o.min_frequency) break;
        if ((s = add_merge(t, a, b, &m, err))) goto done;
        apply_merge(&tr, a, b, m);
    }
    if (tr.oom) { s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory training"); goto done; }
    for (size_t i = 0; i < o.n_special && !s; i++) s = lmio__tok_add_added(t, o.special[i], true, -1, "", err);
    if (!s) s = lmio__tok_finish(t, "", err);
done:
    for (size_t i = 0; i < tr.n_words; i++) lmio__free(tr.words[i].sym);
    lmio__free(tr.words);
    lmio__smap_free(&tr.index);
    lmio__umap_free(&counts);
    for (size_t i = 0; fs && i < n_files; i++) lmio__file_close(&fs[i]);
    lmio__free(fs);
    if (s) {
        lmio_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LMIO_OK;
}
