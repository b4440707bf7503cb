/* Internal layout of lmio_tokenizer, shared by bpe.c (the algorithm) and
 * hf_tokenizer.c (the Hugging Face files). */
#ifndef LMIO_TOKENIZER_INTERNAL_H
#define LMIO_TOKENIZER_INTERNAL_H
#include "../core/core.h"

typedef struct lmio__added {
    char *content;
    size_t len; /* strlen(content) */
    int32_t id;
    bool special;
} lmio__added;

struct lmio_tokenizer {
    size_t n, cap;       /* number of ids, allocated slots */
    char **str;          /* id -> token in byte-level form (UTF-8), owned */
    char **raw;          /* id -> the bytes it stands for, owned */
    uint32_t *raw_len;
    lmio__smap by_str;   /* token string -> id (keys borrow str[]) */
    lmio__umap merges;   /* (a << 32 | b) -> (rank << 32 | merged id) */
    uint32_t *merge_a, *merge_b; /* rank -> pair, for saving */
    size_t n_merges, merge_cap;
    int32_t byte_id[256]; /* the token of each single byte, -1 if none */
    lmio__added *added;
    size_t n_added;
    lmio__regex *re;
    size_t model_max_length;
};

/* GPT-2's pre-tokenizer pattern, with \s spelled out as Unicode White_Space
 * (PCRE2's \s leaves out U+0085, which Oniguruma and Rust's regex include). */
#define LMIO__WS "\\t\\n\\x0B\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
#define LMIO__GPT2_PATTERN                                                                          \
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" LMIO__WS "\\p{L}\\p{N}]+|[" LMIO__WS \
    "]+(?![^" LMIO__WS "])|[" LMIO__WS "]+"

/* An empty tokenizer with the regex compiled and byte tables ready. */
lmio_status lmio__tok_new(lmio_tokenizer **out, lmio_error *err);
/* Appends token id n (the next id) given its byte-level string. */
lmio_status lmio__tok_add_token(lmio_tokenizer *t, const char *s, size_t len, lmio_error *err);
/* Appends a merge of two existing ids whose concatenation is in the vocab. */
lmio_status lmio__tok_add_merge(lmio_tokenizer *t, const char *a, size_t alen, const char *b, size_t blen,
                                const char *path, size_t line, lmio_error *err);
/* Registers an added token; appends it to the vocabulary if absent.
 * path names the file it came from in messages. */
lmio_status lmio__tok_add_added(lmio_tokenizer *t, const char *content, bool special, int32_t want_id,
                                const char *path, lmio_error *err);
/* Fills byte_id[] once the vocabulary is complete. */
lmio_status lmio__tok_finish(lmio_tokenizer *t, const char *path, lmio_error *err);

/* lmio_tokenizer_save with the choice of fsyncing (durable = 1, what the
 * public call does) or not, for save_pretrained's durable option. */
lmio_status lmio__tokenizer_save(const lmio_tokenizer *t, const char *dir, int durable, lmio_error *err);

/* The byte-level form of raw bytes (each byte -> one code point, UTF-8). */
void lmio__bytes_to_unicode(lmio__buf *out, const unsigned char *p, size_t n);
#endif
