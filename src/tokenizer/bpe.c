#define _GNU_SOURCE /* memmem */
/* Byte-level BPE: the byte-to-unicode table, encoding, decoding, training. */
#include "tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- GPT-2's byte <-> code point table ---- */

/* Printable bytes map to themselves; the other 68 (controls, space, 127-160,
 * 173) map to 256, 257, ... in byte order, so every byte is a visible char. */
static uint16_t g_b2u[256];
static int16_t g_u2b[324];
static void init_tables(void)
{
    static int done;
    if (done) return;
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        g_b2u[b] = (uint16_t)(printable ? b : 256 + n++);
    }
    for (int i = 0; i < 324; i++) g_u2b[i] = -1;
    for (int b = 0; b < 256; b++) g_u2b[g_b2u[b]] = (int16_t)b;
    done = 1;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2; /* the table's code points are all < 0x800 */
}

void lmio__bytes_to_unicode(lmio__buf *out, const unsigned char *p, size_t n)
{
    init_tables();
    for (size_t i = 0; i < n; i++) {
        char tmp[2];
        lmio__buf_put(out, tmp, put_utf8(tmp, g_b2u[p[i]]));
    }
}

/* Decodes a byte-level token string to raw bytes; a token containing code
 * points outside the table (an added token such as "<|endoftext|>" never
 * does, but a foreign vocabulary might) is kept as its UTF-8. */
static bool unicode_to_bytes(const char *s, size_t n, lmio__buf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t k;
        if (u[i] < 0x80) { cp = u[i]; k = 1; }
        else if ((u[i] & 0xE0) == 0xC0 && i + 1 < n) { cp = ((u[i] & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu); k = 2; }
        else return false;
        if (cp >= 324 || g_u2b[cp] < 0) return false;
        unsigned char b = (unsigned char)g_u2b[cp];
        lmio__buf_put(out, &b, 1);
        i += k;
    }
    return true;
}

/* ---- pre-tokenizer patterns ---- */

/* tokenizers compiles patterns with Oniguruma, whose \s is Unicode
 * White_Space; PCRE2's leaves out U+0085. Spelling \s and \S out as the
 * set keeps PCRE2 splitting where tokenizers does. NULL when out of memory
 * (*unsupported false) or when \S appears inside a class (true; no pattern
 * of the table does that). */
static char *pcre_pattern(const char *p, bool *unsupported)
{
    *unsupported = false;
    lmio__buf b = {0};
    bool in_class = false;
    for (; *p; p++) {
        if (p[0] == '\\' && p[1]) {
            if (p[1] == 's') lmio__buf_puts(&b, in_class ? LMIO__WS : "[" LMIO__WS "]");
            else if (p[1] == 'S' && !in_class) lmio__buf_puts(&b, "[^" LMIO__WS "]");
            else if (p[1] == 'S') { lmio__buf_free(&b); *unsupported = true; return NULL; }
            else lmio__buf_put(&b, p, 2);
            p++;
            continue;
        }
        if (*p == '[' && !in_class) {
            in_class = true;
            lmio__buf_put(&b, p, 1);
            if (p[1] == '^') lmio__buf_put(&b, ++p, 1);
            if (p[1] == ']') lmio__buf_put(&b, ++p, 1); /* a literal ] first in a class */
            continue;
        }
        if (*p == ']' && in_class) in_class = false;
        lmio__buf_put(&b, p, 1);
    }
    lmio__buf_put(&b, "", 0);
    if (b.oom) { lmio__buf_free(&b); return NULL; }
    return b.data;
}

static void free_pre(lmio_tokenizer *t)
{
    for (size_t i = 0; i < t->n_pre; i++) {
        lmio__free((char *)t->pre[i].pattern);
        lmio__regex_free(t->pre_re[i]);
        t->pre_re[i] = NULL;
    }
    t->n_pre = 0;
}

lmio_status lmio__tok_set_pre(lmio_tokenizer *t, const lmio__pre_step *steps, size_t n, const char *path,
                              lmio_error *err)
{
    if (n > LMIO__PRE_MAX)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "pre_tokenizer", "%zu pre-tokenizer steps; expected at most %d",
                          n, LMIO__PRE_MAX);
    free_pre(t);
    for (size_t i = 0; i < n; i++) {
        const lmio__pre_step *st = &steps[i];
        const char *pat = st->kind == LMIO__PRE_DIGITS ? (st->flag ? "\\p{N}" : "\\p{N}+")
                          : st->kind == LMIO__PRE_BYTELEVEL && !st->flag ? NULL : st->pattern;
        char *copy = st->pattern ? lmio__strdup(st->pattern) : NULL;
        t->pre[i] = (lmio__pre_step){st->kind, copy, st->flag};
        t->n_pre = i + 1;
        if (st->pattern && !copy) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
        if (!pat) continue;
        bool unsupported;
        char *pc = pcre_pattern(pat, &unsupported);
        if (!pc && !unsupported) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
        if (!pc)
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "pre_tokenizer",
                              "pre-tokenizer pattern \"%.200s\" uses \\S inside a class; expected a pattern lmio can "
                              "translate",
                              pat);
        lmio_status s = lmio__regex_compile(pc, &t->pre_re[i], err);
        lmio__free(pc);
        if (s == LMIO_ERR_NOMEM) return s;
        if (s) {
            char why[256];
            snprintf(why, sizeof why, "%.200s", err ? err->message : "");
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "pre_tokenizer",
                              "pre-tokenizer pattern \"%.200s\" does not compile: %s", pat, why);
        }
    }
    return LMIO_OK;
}

lmio_status lmio__tok_set_role(lmio_tokenizer *t, int role, const char *content, lmio_error *err)
{
    char *c = content ? lmio__strdup(content) : NULL;
    if (content && !c) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    lmio__free(t->role[role]);
    t->role[role] = c;
    return LMIO_OK;
}

/* ---- construction ---- */

lmio_status lmio__tok_new(lmio_tokenizer **out, lmio_error *err)
{
    init_tables();
    lmio_tokenizer *t = lmio__calloc(1, sizeof *t);
    if (!t) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    lmio_status s = lmio__regex_compile(LMIO__GPT2_PATTERN, &t->re, err);
    if (s) {
        lmio__free(t);
        return s;
    }
    t->model_max_length = 1024;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    const lmio__pretok *gpt2 = lmio__pretok_default();
    if ((s = lmio__tok_set_pre(t, gpt2->steps, gpt2->n_steps, "", err))) {
        lmio_tokenizer_free(t);
        return s;
    }
    *out = t;
    return LMIO_OK;
}

void lmio_tokenizer_free(lmio_tokenizer *t)
{
    if (!t) return;
    for (size_t i = 0; i < t->n; i++) {
        lmio__free(t->str[i]);
        lmio__free(t->raw[i]);
    }
    for (size_t i = 0; i < t->n_added; i++) lmio__free(t->added[i].content);
    lmio__free(t->str);
    lmio__free(t->raw);
    lmio__free(t->raw_len);
    lmio__free(t->merge_a);
    lmio__free(t->merge_b);
    lmio__free(t->added);
    lmio__smap_free(&t->by_str);
    lmio__umap_free(&t->merges);
    lmio__regex_free(t->re);
    free_pre(t);
    for (int i = 0; i < LMIO__ROLE_COUNT; i++) lmio__free(t->role[i]);
    lmio__free(t->chat_template);
    lmio__free(t);
}

lmio_status lmio__tok_add_token(lmio_tokenizer *t, const char *s, size_t len, lmio_error *err)
{
    if (t->n == t->cap) {
        size_t c1 = t->cap, c2 = t->cap, c3 = t->cap;
        if (!lmio__grow((void **)&t->str, sizeof *t->str, t->n + 1, &c1) ||
            !lmio__grow((void **)&t->raw, sizeof *t->raw, t->n + 1, &c2) ||
            !lmio__grow((void **)&t->raw_len, sizeof *t->raw_len, t->n + 1, &c3))
            return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
        t->cap = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
    }
    lmio__buf rb = {0};
    char *str = lmio__strndup(s, len);
    if (!unicode_to_bytes(s, len, &rb)) {
        lmio__buf_free(&rb);
        rb = (lmio__buf){0};
        lmio__buf_put(&rb, s, len);
    }
    if (!rb.data) lmio__buf_put(&rb, "", 0);
    if (!str || rb.oom) {
        lmio__free(str);
        lmio__buf_free(&rb);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    }
    t->str[t->n] = str;
    t->raw[t->n] = rb.data;
    t->raw_len[t->n] = (uint32_t)rb.len;
    if (!lmio__smap_put(&t->by_str, str, len, (uint32_t)t->n)) {
        lmio__free(str);
        lmio__free(rb.data);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    }
    t->n++;
    return LMIO_OK;
}

lmio_status lmio__tok_add_merge(lmio_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                                const char *path, size_t line, lmio_error *err)
{
    uint32_t ia, ib, im;
    char joined[512];
    if (alen + blen >= sizeof joined)
        return lmio__fail(err, LMIO_ERR_LIMIT, path, -1, "", "merge %zu: tokens longer than %zu bytes", line,
                          sizeof joined - 1);
    memcpy(joined, a, alen);
    memcpy(joined + alen, b, blen);
    if (!lmio__smap_get(&t->by_str, a, alen, &ia) || !lmio__smap_get(&t->by_str, b, blen, &ib) ||
        !lmio__smap_get(&t->by_str, joined, alen + blen, &im))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "",
                          "merge %zu (\"%.*s\" + \"%.*s\"): a part or the result is not in the vocabulary; "
                          "expected merges of vocabulary tokens",
                          line, (int)alen, a, (int)blen, b);
    if (t->n_merges == t->merge_cap) {
        size_t ca = t->merge_cap, cb = t->merge_cap;
        if (!lmio__grow((void **)&t->merge_a, 4, t->n_merges + 1, &ca) || !lmio__grow((void **)&t->merge_b, 4, t->n_merges + 1, &cb))
            return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
        t->merge_cap = ca < cb ? ca : cb;
    }
    uint64_t key = (uint64_t)ia << 32 | ib, old;
    if (!lmio__umap_get(&t->merges, key, &old)) { /* first occurrence wins, as in HF */
        if (!lmio__umap_put(&t->merges, key, (uint64_t)t->n_merges << 32 | im))
            return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    }
    t->merge_a[t->n_merges] = ia;
    t->merge_b[t->n_merges] = ib;
    t->n_merges++;
    return LMIO_OK;
}

lmio_status lmio__tok_add_added(lmio_tokenizer *t, const char *content, bool special, int32_t want_id,
                                const char *path, lmio_error *err)
{
    size_t len = strlen(content);
    if (!len || !lmio__utf8_valid(content, len))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, "", "added token is empty or not UTF-8");
    uint32_t id;
    if (!lmio__smap_get(&t->by_str, content, len, &id)) {
        if (want_id >= 0 && (size_t)want_id != t->n)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, content,
                              "added token \"%s\" has id %d; expected %zu (the next free id)", content, want_id, t->n);
        lmio_status s = lmio__tok_add_token(t, content, len, err);
        if (s) return s;
        /* it decodes through the byte table like any token, as in
         * tokenizers, and as it will once a saved vocabulary holds it */
        id = (uint32_t)(t->n - 1);
    } else if (want_id >= 0 && (uint32_t)want_id != id) {
        return lmio__fail(err, LMIO_ERR_FORMAT, path, -1, content,
                          "added token \"%s\" has id %d but the vocabulary gives it %u", content, want_id, id);
    }
    lmio__added *a = lmio__realloc(t->added, (t->n_added + 1) * sizeof *a);
    if (!a) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    t->added = a;
    char *c = lmio__strdup(content);
    if (!c) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    t->added[t->n_added++] = (lmio__added){c, len, (int32_t)id, special};
    return LMIO_OK;
}

/* A vocabulary may lack some byte tokens (SmolLM2's has no control
 * bytes): such bytes are dropped when encoding, as tokenizers drops
 * characters its BPE has no token and no unk_token for. */
lmio_status lmio__tok_finish(lmio_tokenizer *t, const char *path, lmio_error *err)
{
    LMIO_UNUSED(path);
    LMIO_UNUSED(err);
    for (int b = 0; b < 256; b++) {
        char u[2];
        size_t k = put_utf8(u, g_b2u[b]);
        uint32_t id;
        t->byte_id[b] = lmio__smap_get(&t->by_str, u, k, &id) ? (int32_t)id : -1;
    }
    return LMIO_OK;
}

size_t lmio_tokenizer_vocab_size(const lmio_tokenizer *t) { return t ? t->n : 0; }

int32_t lmio_tokenizer_token_id(const lmio_tokenizer *t, const char *token)
{
    uint32_t id;
    return t && token && lmio__smap_get(&t->by_str, token, strlen(token), &id) ? (int32_t)id : -1;
}

const char *lmio_tokenizer_token(const lmio_tokenizer *t, int32_t id)
{
    return t && id >= 0 && (size_t)id < t->n ? t->str[id] : NULL;
}

int32_t lmio_tokenizer_eos_id(const lmio_tokenizer *t)
{
    if (t && t->role[LMIO__ROLE_EOS]) return lmio_tokenizer_token_id(t, t->role[LMIO__ROLE_EOS]);
    for (size_t i = 0; t && i < t->n_added; i++)
        if (t->added[i].special) return t->added[i].id;
    return -1;
}

/* ---- encoding ---- */

typedef struct ids_vec {
    int32_t *v;
    size_t n, cap;
    bool oom;
} ids_vec;

static void ids_push(ids_vec *o, int32_t id)
{
    if (o->oom) return;
    if (!lmio__grow((void **)&o->v, sizeof *o->v, o->n + 1, &o->cap)) {
        o->oom = true;
        return;
    }
    o->v[o->n++] = id;
}

/* Work space for one word's merges, reused across words. */
typedef struct merge_buf {
    int32_t *sym;      /* token of the symbol starting at each byte; -1 once merged away */
    uint32_t *nxt, *prv; /* the symbol list; NONE at the ends */
    uint64_t *heap;    /* rank << 32 | position of the pair's left symbol */
    size_t cap, heap_n;
} merge_buf;

#define NONE UINT32_MAX

static void heap_push(merge_buf *b, uint64_t v)
{
    size_t i = b->heap_n++;
    while (i > 0 && b->heap[(i - 1) / 2] > v) {
        b->heap[i] = b->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    b->heap[i] = v;
}

static uint64_t heap_pop(merge_buf *b)
{
    uint64_t top = b->heap[0], v = b->heap[--b->heap_n];
    size_t i = 0, n = b->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && b->heap[c + 1] < b->heap[c]) c++;
        if (b->heap[c] >= v) break;
        b->heap[i] = b->heap[c];
        i = c;
    }
    if (n) b->heap[i] = v;
    return top;
}

/* The merge of the pair starting at symbol p, if any: rank << 32 | merged id. */
static bool pair_merge(const lmio_tokenizer *t, const merge_buf *b, uint32_t p, uint64_t *v)
{
    uint32_t q = b->nxt[p];
    return q != NONE &&
           lmio__umap_get(&t->merges, (uint64_t)(uint32_t)b->sym[p] << 32 | (uint32_t)b->sym[q], v);
}

static void push_pair(const lmio_tokenizer *t, merge_buf *b, uint32_t p)
{
    uint64_t v;
    if (pair_merge(t, b, p, &v)) heap_push(b, (v >> 32) << 32 | p);
}

/* Merges one pre-token's symbols (b->sym[0..n)) in place: always the pair
 * of lowest rank, leftmost first, as tokenizers' Word::merge_all does with
 * its priority queue (shared/reference/hostile-inputs.md §8). A pair whose
 * symbols changed since it was queued is skipped when popped. O(n log n):
 * rescanning the word after every merge made a 400 KB run of letters take
 * 19 s. Returns the number of symbols, compacted to the front of b->sym. */
static size_t bpe_word(const lmio_tokenizer *t, merge_buf *b, size_t n)
{
    b->heap_n = 0;
    for (size_t i = 0; i < n; i++) {
        b->nxt[i] = i + 1 < n ? (uint32_t)(i + 1) : NONE;
        b->prv[i] = i ? (uint32_t)(i - 1) : NONE;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, b, (uint32_t)i);
    while (b->heap_n) {
        uint64_t top = heap_pop(b), v;
        uint32_t p = (uint32_t)top;
        if (b->sym[p] < 0 || !pair_merge(t, b, p, &v) || v >> 32 != top >> 32) continue;
        uint32_t q = b->nxt[p];
        b->sym[p] = (int32_t)(uint32_t)v;
        b->sym[q] = -1;
        b->nxt[p] = b->nxt[q];
        if (b->nxt[q] != NONE) b->prv[b->nxt[q]] = p;
        if (b->prv[p] != NONE) push_pair(t, b, b->prv[p]);
        push_pair(t, b, p);
    }
    size_t m = 0;
    for (uint32_t i = 0; n && i != NONE; i = b->nxt[i]) b->sym[m++] = b->sym[i];
    return m;
}

typedef struct enc_state {
    const lmio_tokenizer *t;
    void *md[LMIO__PRE_MAX]; /* match data per pre-tokenizer step */
    lmio__smap cache;   /* word bytes (borrowed from the text) -> entry */
    ids_vec pool;       /* cached id runs */
    uint32_t *c_off, *c_len;
    size_t c_n, c_cap;
    merge_buf mb;
    bool oom;
} enc_state;

static bool merge_buf_reserve(merge_buf *b, size_t n)
{
    if (n <= b->cap) return true;
    if (n >= NONE / 2) return false; /* positions are 32-bit */
    int32_t *sym = lmio__realloc(b->sym, n * sizeof *sym);
    if (sym) b->sym = sym;
    uint32_t *nxt = sym ? lmio__realloc(b->nxt, n * sizeof *nxt) : NULL;
    if (nxt) b->nxt = nxt;
    uint32_t *prv = nxt ? lmio__realloc(b->prv, n * sizeof *prv) : NULL;
    if (prv) b->prv = prv;
    /* each merge queues at most two pairs and consumes a symbol */
    uint64_t *heap = prv ? lmio__realloc(b->heap, 3 * n * sizeof *heap) : NULL;
    if (heap) b->heap = heap;
    if (!heap) return false;
    b->cap = n;
    return true;
}

static void merge_buf_free(merge_buf *b)
{
    lmio__free(b->sym);
    lmio__free(b->nxt);
    lmio__free(b->prv);
    lmio__free(b->heap);
}

static void encode_word(enc_state *st, const char *w, size_t n, ids_vec *out)
{
    uint32_t e;
    if (lmio__smap_get(&st->cache, w, n, &e)) {
        for (uint32_t k = 0; k < st->c_len[e]; k++) ids_push(out, st->pool.v[st->c_off[e] + k]);
        return;
    }
    if (!merge_buf_reserve(&st->mb, n)) { st->oom = true; return; }
    int32_t *sym = st->mb.sym;
    size_t m = 0;
    if (st->t->ignore_merges) { /* tokenizers' ignore_merges: a word in the vocabulary is not merged */
        lmio__buf b = {0};
        uint32_t id;
        lmio__bytes_to_unicode(&b, (const unsigned char *)w, n);
        if (b.oom) st->oom = true;
        else if (lmio__smap_get(&st->t->by_str, b.data, b.len, &id)) sym[m++] = (int32_t)id;
        lmio__buf_free(&b);
        if (st->oom) return;
    }
    if (!m) {
        size_t k = 0; /* bytes without a token drop out; their neighbours become adjacent */
        for (size_t i = 0; i < n; i++)
            if ((sym[k] = st->t->byte_id[(unsigned char)w[i]]) >= 0) k++;
        m = k ? bpe_word(st->t, &st->mb, k) : 0;
    }
    for (size_t i = 0; i < m; i++) ids_push(out, sym[i]);
    /* remember it (bounded, so a huge text cannot grow the cache forever) */
    if (st->c_n < (1u << 20)) {
        size_t c_off_cap = st->c_cap, c_len_cap = st->c_cap;
        if (!lmio__grow((void **)&st->c_off, sizeof *st->c_off, st->c_n + 1, &c_off_cap) ||
            !lmio__grow((void **)&st->c_len, sizeof *st->c_len, st->c_n + 1, &c_len_cap)) {
            st->oom = true;
            return;
        }
        st->c_cap = c_off_cap < c_len_cap ? c_off_cap : c_len_cap;
        st->c_off[st->c_n] = (uint32_t)st->pool.n;
        st->c_len[st->c_n] = (uint32_t)m;
        for (size_t i = 0; i < m; i++) ids_push(&st->pool, sym[i]);
        /* a run the pool could not take must not be cached: a later hit
         * would read ids that were never stored */
        if (st->pool.oom) {
            st->oom = true;
            return;
        }
        if (!lmio__smap_put(&st->cache, w, n, (uint32_t)st->c_n)) st->oom = true;
        st->c_n++;
    }
}

/* Length of the UTF-8 character at s (the text is valid UTF-8). */
static size_t char_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* Runs pre-tokenizer step k on the piece s[0..n): each match and each
 * stretch between matches becomes a piece for step k + 1, as tokenizers'
 * isolated split does; past the last step a piece is a word to merge. The
 * regex sees only the piece, so a look-ahead stops at its end, as it does
 * in tokenizers, where each piece is a string of its own. */
static bool pre_split(enc_state *st, size_t k, const char *s, size_t n, ids_vec *out)
{
    const lmio_tokenizer *t = st->t;
    while (k < t->n_pre && !t->pre_re[k]) k++; /* a ByteLevel that only maps bytes */
    if (k == t->n_pre) {
        if (n) encode_word(st, s, n, out);
        return true;
    }
    size_t pos = 0, from = 0, ms, me;
    while (pos < n) {
        int r = lmio__regex_next(t->pre_re[k], st->md[k], s, n, pos, &ms, &me);
        if (r < 0) return false;
        if (r == 0) break;
        if (me == ms) { /* an empty match splits nothing */
            pos = ms + char_len((unsigned char)s[ms]);
            continue;
        }
        if (ms > from && !pre_split(st, k + 1, s + from, ms - from, out)) return false;
        if (!pre_split(st, k + 1, s + ms, me - ms, out)) return false;
        pos = from = me;
    }
    return from >= n || pre_split(st, k + 1, s + from, n - from, out);
}

/* Splits a stretch of text that holds no added token into pre-tokens. */
static bool encode_plain(enc_state *st, const char *text, size_t len, ids_vec *out)
{
    return pre_split(st, 0, text, len, out);
}

/* Where added token i next occurs at or after pos; len when it does not. */
static size_t find_added(const lmio_tokenizer *t, size_t i, const char *text, size_t len, size_t pos)
{
    size_t cl = t->added[i].len;
    if (cl > len - pos) return len;
    const char *f = memmem(text + pos, len - pos, t->added[i].content, cl);
    return f ? (size_t)(f - text) : len;
}

/* The earliest added token at or after pos (the longest on a tie). next[i]
 * caches where token i next occurs: it stays right until pos passes it, so
 * the text is searched about once per token, not once per token per match
 * (1 MB of one of two added tokens took 8 s). */
static const lmio__added *next_added(const lmio_tokenizer *t, const char *text, size_t len, size_t pos,
                                     size_t *next, size_t *at)
{
    const lmio__added *best = NULL;
    size_t best_at = len, best_len = 0;
    for (size_t i = 0; i < t->n_added; i++) {
        if (next[i] < pos) next[i] = find_added(t, i, text, len, pos);
        size_t a = next[i], cl = t->added[i].len;
        if (a == len) continue;
        if (a < best_at || (a == best_at && cl > best_len)) {
            best = &t->added[i];
            best_at = a;
            best_len = cl;
        }
    }
    *at = best_at;
    return best;
}

lmio_status lmio_tokenizer_encode(const lmio_tokenizer *t, const char *text, size_t len, int32_t **ids,
                                  size_t *n_ids, lmio_error *err)
{
    if (!t || (!text && len) || !ids || !n_ids)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    size_t valid = lmio__utf8_prefix(text, len);
    if (valid != len)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", (int64_t)valid, "",
                          "byte 0x%02x is not valid UTF-8; expected UTF-8 text", (unsigned char)text[valid]);
    enc_state st = {.t = t};
    bool md_ok = true;
    for (size_t k = 0; k < t->n_pre; k++)
        if (t->pre_re[k] && !(st.md[k] = lmio__regex_match_data(t->pre_re[k]))) md_ok = false;
    ids_vec out = {0};
    size_t *next = t->n_added ? lmio__malloc(t->n_added * sizeof *next) : NULL;
    bool ok = md_ok && (next || !t->n_added);
    for (size_t i = 0; ok && i < t->n_added; i++) next[i] = find_added(t, i, text, len, 0);
    size_t pos = 0;
    while (ok && pos < len) {
        size_t at;
        const lmio__added *a = next_added(t, text, len, pos, next, &at);
        ok = encode_plain(&st, text + pos, at - pos, &out);
        if (a) {
            ids_push(&out, a->id);
            pos = at + a->len;
        } else {
            pos = len;
        }
    }
    bool oom = !md_ok || (t->n_added && !next) || st.oom || out.oom || st.pool.oom;
    lmio__free(next);
    for (size_t k = 0; k < t->n_pre; k++)
        if (st.md[k]) lmio__regex_match_data_free(st.md[k]);
    lmio__smap_free(&st.cache);
    lmio__free(st.pool.v);
    lmio__free(st.c_off);
    lmio__free(st.c_len);
    merge_buf_free(&st.mb);
    if (oom || !ok) {
        lmio__free(out.v);
        return oom ? lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory encoding")
                   : lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "the regex matcher failed");
    }
    if (!out.v) out.v = lmio__malloc(sizeof(int32_t));
    if (!out.v) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory encoding");
    *ids = out.v;
    *n_ids = out.n;
    return LMIO_OK;
}

lmio_status lmio_tokenizer_decode(const lmio_tokenizer *t, const int32_t *ids, size_t n, char **text,
                                  size_t *len, lmio_error *err)
{
    if (!t || (!ids && n) || !text || !len)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    lmio__buf b = {0};
    lmio__buf_put(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n) {
            lmio__buf_free(&b);
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "id %d at position %zu; expected 0..%zu",
                              ids[i], i, t->n - 1);
        }
        lmio__buf_put(&b, t->raw[ids[i]], t->raw_len[ids[i]]);
    }
    if (b.oom) {
        lmio__buf_free(&b);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory decoding");
    }
    *text = b.data;
    *len = b.len;
    return LMIO_OK;
}
