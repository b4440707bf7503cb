/* The pre-tokenizer table: what each value of GGUF's tokenizer.ggml.pre
 * stands for, as the steps of a tokenizers pre_tokenizer (the form
 * tokenizer.json writes them in). The patterns and step lists follow
 * llama.cpp's llama-vocab.cpp (which regexes each pre type splits by, in
 * which order) and Transformers' GGUF tokenizer mapping (Split(Regex,
 * isolated) + ByteLevel(use_regex=false) for the families whose pattern is
 * not GPT-2's). A new family is a new row, never new code. */
#include "tokenizer.h"

#include <string.h>

/* tokenizers' spelling of GPT-2's pattern (ByteLevel(use_regex=true)) */
const char lmio__gpt2_pattern[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* Llama 3's tiktoken-style pattern: contractions case-insensitively,
 * letters with one leading non-letter, numbers in runs of at most three. */
static const char k_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                               "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
/* Qwen2's: Llama 3's with every digit on its own. */
static const char k_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                              "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static const char *const k_gpt2_names[] = {"gpt-2", "phi-2", "roberta-bpe", "jina-es", "jina-de", "jina-v1-en",
                                           "jina-v2-es", "jina-v2-de", "jina-v2-code", "mpt", "olmo", "jais", NULL};
/* llama.cpp's STARCODER group: every digit alone, then GPT-2's pattern */
static const char *const k_smollm_names[] = {"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone",
                                             "minerva-7b", NULL};
static const char *const k_llama3_names[] = {"llama-bpe", "llama3", "llama-v3", "falcon3", "pixtral", "dbrx",
                                             "smaug-bpe", NULL};
static const char *const k_qwen2_names[] = {"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez", NULL};

#define BYTE_LEVEL {LMIO__PRE_BYTELEVEL, lmio__gpt2_pattern, true}
#define END_BYTES {LMIO__PRE_BYTELEVEL, NULL, false}

static const lmio__pretok k_table[] = {
    {k_gpt2_names, 1, {BYTE_LEVEL}},
    {k_smollm_names, 2, {{LMIO__PRE_DIGITS, NULL, true}, BYTE_LEVEL}},
    {k_llama3_names, 2, {{LMIO__PRE_SPLIT, k_llama3, false}, END_BYTES}},
    {k_qwen2_names, 2, {{LMIO__PRE_SPLIT, k_qwen2, false}, END_BYTES}},
};

const lmio__pretok *lmio__pretok_find(const char *ggml_pre)
{
    for (size_t i = 0; ggml_pre && i < sizeof k_table / sizeof k_table[0]; i++)
        for (const char *const *n = k_table[i].names; *n; n++)
            if (!strcmp(*n, ggml_pre)) return &k_table[i];
    return NULL;
}

const lmio__pretok *lmio__pretok_default(void) { return &k_table[0]; }

void lmio__pretok_list(lmio__buf *out)
{
    for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++)
        for (const char *const *n = k_table[i].names; *n; n++) {
            if (out->len) lmio__buf_puts(out, ", ");
            lmio__buf_puts(out, *n);
        }
}

static bool same_steps(const lmio__pre_step *a, const lmio__pre_step *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (a[i].kind != b[i].kind || a[i].flag != b[i].flag) return false;
        if ((a[i].pattern == NULL) != (b[i].pattern == NULL)) return false;
        if (a[i].pattern && strcmp(a[i].pattern, b[i].pattern)) return false;
    }
    return true;
}

const char *lmio__pretok_name(const lmio__pre_step *steps, size_t n)
{
    for (size_t i = 0; i < sizeof k_table / sizeof k_table[0]; i++)
        if (k_table[i].n_steps == n && same_steps(k_table[i].steps, steps, n)) return k_table[i].names[0];
    return NULL;
}
