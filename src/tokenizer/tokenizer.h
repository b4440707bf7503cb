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

/* ---- pre-tokenizers (pretok_table.c) ----
 * A pre_tokenizer as tokenizers runs it: steps applied in order, each
 * splitting every piece the previous one made, matches and the text
 * between them both kept ("isolated"); the last step maps bytes. */
typedef enum lmio__pre_kind {
    LMIO__PRE_SPLIT,    /* Split(Regex(pattern), behavior=Isolated) */
    LMIO__PRE_DIGITS,   /* Digits(individual_digits=flag) */
    LMIO__PRE_BYTELEVEL /* ByteLevel(add_prefix_space=false, use_regex=flag): GPT-2's pattern when flag */
} lmio__pre_kind;

typedef struct lmio__pre_step {
    lmio__pre_kind kind;
    const char *pattern; /* as tokenizer.json spells it; SPLIT, and BYTELEVEL with flag */
    bool flag;
} lmio__pre_step;

#define LMIO__PRE_MAX 8

/* One row of the table: the tokenizer.ggml.pre values that mean it. */
typedef struct lmio__pretok {
    const char *const *names;
    size_t n_steps;
    lmio__pre_step steps[LMIO__PRE_MAX];
} lmio__pretok;

extern const char lmio__gpt2_pattern[];
/* The row for a tokenizer.ggml.pre value; NULL if none. */
const lmio__pretok *lmio__pretok_find(const char *ggml_pre);
/* The tokenizer.ggml.pre value for these steps (its row's first name);
 * NULL when no row has them. */
const char *lmio__pretok_name(const lmio__pre_step *steps, size_t n);
/* GPT-2's row: what a file without tokenizer.ggml.pre gets. */
const lmio__pretok *lmio__pretok_default(void);
/* Every known value, ", "-separated, appended to out (for messages). */
void lmio__pretok_list(lmio__buf *out);

/* Special-token roles tokenizer_config.json names. */
enum { LMIO__ROLE_BOS, LMIO__ROLE_EOS, LMIO__ROLE_UNK, LMIO__ROLE_PAD, LMIO__ROLE_COUNT };

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
    lmio__regex *re; /* GPT-2's pattern, for training */
    size_t model_max_length;
    /* the pre_tokenizer: steps, their patterns (owned) and compiled regexes */
    size_t n_pre;
    lmio__pre_step pre[LMIO__PRE_MAX];
    lmio__regex *pre_re[LMIO__PRE_MAX];
    bool ignore_merges; /* a word that is a token is that token (Llama 3) */
    /* special-token roles (token contents, owned; NULL: unset) and the chat
     * template, written to tokenizer_config.json */
    char *role[LMIO__ROLE_COUNT];
    char *chat_template;
};

/* Replaces the pre_tokenizer (steps are copied, patterns compiled for
 * PCRE2); refuses patterns it cannot translate. */
lmio_status lmio__tok_set_pre(lmio_tokenizer *t, const lmio__pre_step *steps, size_t n, const char *path,
                              lmio_error *err);
/* Sets a role (a copy of content; NULL clears it). */
lmio_status lmio__tok_set_role(lmio_tokenizer *t, int role, const char *content, lmio_error *err);
/* Builds a tokenizer from GGUF metadata (tokenizer.ggml.*; gguf_vocab.c). */
lmio_status lmio__tokenizer_from_gguf(const lmio_statedict *sd, lmio_tokenizer **out, lmio_error *err);

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
