/* Fuzz target for the tokenizer files, reader and writer. The input is a
 * tokenizer.json, or, when it holds NUL bytes (which no JSON text may), the
 * NUL-separated vocab.json, merges.txt, tokenizer_config.json and
 * special_tokens_map.json of an older directory. Whatever loads is saved
 * with lmio_tokenizer_save and reloaded twice: from the tokenizer.json it
 * wrote, and from its vocab.json + merges.txt + tokenizer_config.json. Each
 * reload must hold the same vocabulary (strings and the bytes each stands
 * for), merges and added tokens, and encode and decode a fixed text to the
 * same ids and bytes. Any mismatch aborts. */
#include "../src/tokenizer/tokenizer.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, size_t i)
{
    if (ok) return;
    fprintf(stderr, "tokenizer round trip: %s differs (index %zu)\n", what, i);
    abort();
}

/* Text with added-token and contraction matches, non-ASCII letters and
 * digits, and whitespace runs, so most merge and pre-tokenizer paths run. */
static const char k_text[] = "the cat <|endoftext|> sat on the mat's edge\n\n\t  d\xc3\xa9j\xc3\xa0 vu 12345 "
                             "\xe2\x80\x94 <|endoftext|><|endoftext|>x!!";

static void same_encoding(const lmio_tokenizer *a, const lmio_tokenizer *b, const char *text, size_t len)
{
    int32_t *ia = NULL, *ib = NULL;
    size_t na = 0, nb = 0;
    lmio_status sa = lmio_tokenizer_encode(a, text, len, &ia, &na, NULL);
    lmio_status sb = lmio_tokenizer_encode(b, text, len, &ib, &nb, NULL);
    check(sa == sb, "encode status", 0);
    if (sa) return;
    check(na == nb && !memcmp(ia, ib, na * sizeof *ia), "encoded ids", na);
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    if (lmio_tokenizer_decode(a, ia, na, &da, &la, NULL) || lmio_tokenizer_decode(b, ib, nb, &db, &lb, NULL)) abort();
    check(la == lb && !memcmp(da, db, la), "decoded bytes", la);
    lmio_free(da);
    lmio_free(db);
    lmio_free(ia);
    lmio_free(ib);
}

static int by_id(const void *x, const void *y)
{
    const lmio__added *a = x, *b = y;
    return (a->id > b->id) - (a->id < b->id);
}

/* Added tokens as a set: tokenizer_config.json keys them by id, and Python's
 * sort_keys orders "10" before "9", so file order is not theirs. */
static void same_added(const lmio_tokenizer *a, const lmio_tokenizer *b, int ordered)
{
    check(a->n_added == b->n_added, "added token count", a->n_added);
    lmio__added *sa = malloc((a->n_added + 1) * sizeof *sa), *sb = malloc((b->n_added + 1) * sizeof *sb);
    if (!sa || !sb) abort();
    if (a->n_added) {
        memcpy(sa, a->added, a->n_added * sizeof *sa);
        memcpy(sb, b->added, b->n_added * sizeof *sb);
    }
    if (!ordered) {
        qsort(sa, a->n_added, sizeof *sa, by_id);
        qsort(sb, b->n_added, sizeof *sb, by_id);
    }
    for (size_t i = 0; i < a->n_added; i++)
        check(sa[i].id == sb[i].id && sa[i].special == sb[i].special && !strcmp(sa[i].content, sb[i].content),
              "added token", i);
    free(sa);
    free(sb);
}

static void same_tokenizer(const lmio_tokenizer *a, const lmio_tokenizer *b, int added_ordered)
{
    check(a->n == b->n, "vocabulary size", a->n);
    for (size_t i = 0; i < a->n; i++) {
        check(!strcmp(a->str[i], b->str[i]), "token string", i);
        check(a->raw_len[i] == b->raw_len[i] && !memcmp(a->raw[i], b->raw[i], a->raw_len[i]), "token bytes", i);
    }
    check(a->n_merges == b->n_merges, "merge count", a->n_merges);
    for (size_t r = 0; r < a->n_merges; r++)
        check(a->merge_a[r] == b->merge_a[r] && a->merge_b[r] == b->merge_b[r], "merge", r);
    same_added(a, b, added_ordered);
    check(lmio_tokenizer_eos_id(a) == lmio_tokenizer_eos_id(b), "eos id", 0);
    same_encoding(a, b, k_text, sizeof k_text - 1);
    /* and every added token's text, which only added-token matching sees */
    for (size_t i = 0; i < a->n_added; i++) same_encoding(a, b, a->added[i].content, strlen(a->added[i].content));
}

static void put_parts(const char *dir, const uint8_t *data, size_t size)
{
    static const char *const names[] = {"vocab.json", "merges.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    const uint8_t *p = data, *end = data + size;
    for (size_t k = 0; k < 4 && p <= end; k++) {
        const uint8_t *nul = memchr(p, 0, (size_t)(end - p));
        const uint8_t *e = nul ? nul : end;
        char name[128];
        snprintf(name, sizeof name, "%s/%s", dir, names[k]);
        fuzz_put(name, p, (size_t)(e - p));
        if (!nul) break;
        p = nul + 1;
    }
}

static void clear_dir(const char *sub)
{
    static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                                        "special_tokens_map.json"};
    for (size_t k = 0; k < 5; k++) {
        char p[512];
        snprintf(p, sizeof p, "%s/%s/%s", fuzz_scratch(), sub, names[k]);
        unlink(p);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char in[512], out[512], p[600];
    fuzz_path(in, sizeof in, "in");
    fuzz_path(out, sizeof out, "out");
    mkdir(in, 0700);
    mkdir(out, 0700);
    clear_dir("in");
    clear_dir("out");
    if (size && memchr(data, 0, size)) put_parts("in", data, size);
    else fuzz_put("in/tokenizer.json", data, size);

    lmio_tokenizer *t = NULL, *back = NULL, *old = NULL;
    if (lmio_tokenizer_load(in, &t, NULL) != LMIO_OK) return 0;
    lmio_error err;
    if (lmio_tokenizer_save(t, out, &err) != LMIO_OK) {
        fprintf(stderr, "saving a loaded tokenizer failed: %s\n", err.message);
        abort();
    }
    if (lmio_tokenizer_load(out, &back, &err) != LMIO_OK) {
        fprintf(stderr, "reloading its tokenizer.json failed: %s\n", err.message);
        abort();
    }
    same_tokenizer(t, back, 1);
    snprintf(p, sizeof p, "%s/tokenizer.json", out);
    unlink(p);
    if (lmio_tokenizer_load(out, &old, &err) != LMIO_OK) {
        fprintf(stderr, "reloading its vocab.json + merges.txt failed: %s\n", err.message);
        abort();
    }
    same_tokenizer(t, old, 0);
    lmio_tokenizer_free(old);
    lmio_tokenizer_free(back);
    lmio_tokenizer_free(t);
    return 0;
}
