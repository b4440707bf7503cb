/* lmio tokenizer encode | decode | train */
#include "cli.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char k_tokenizer_help[] =
    "usage: lmio tokenizer encode (DIR | --vocab V.json --merges M.txt) (--text TEXT | --file FILE)\n"
    "       lmio tokenizer decode (DIR | --vocab V.json --merges M.txt) --ids 1,2,3\n"
    "       lmio tokenizer train --files F... --vocab-size N --out DIR [--min-frequency N]\n"
    "                            [--special TOKEN]...\n"
    "\n"
    "GPT-2 byte-level BPE, identical to Hugging Face tokenizers. DIR holds\n"
    "tokenizer.json (or vocab.json + merges.txt); --vocab/--merges name the two\n"
    "files directly (e.g. encoder.json + vocab.bpe), with <|endoftext|> special.\n"
    "encode prints the ids as a JSON array; decode prints the text. train writes\n"
    "tokenizer.json, vocab.json, merges.txt, tokenizer_config.json and\n"
    "special_tokens_map.json into DIR (special token default: <|endoftext|>).\n";

static const char *const k_eot[] = {"<|endoftext|>"};

/* Everything the three subcommands accept; each uses what it needs. */
typedef struct tok_args {
    const char *dir, *vocab, *merges, *text, *file, *ids, *out;
    str_list files, special;
    uint64_t vocab_size, min_freq;
} tok_args;

/* Options taking one string value, and what the usage error says. */
static const struct {
    const char *opt, *needs;
    size_t field;
} k_string_opts[] = {
    {"--vocab", "a file", offsetof(tok_args, vocab)},
    {"--merges", "a file", offsetof(tok_args, merges)},
    {"--text", "a value", offsetof(tok_args, text)},
    {"--file", "a path", offsetof(tok_args, file)},
    {"--ids", "a list", offsetof(tok_args, ids)},
    {"--out", "a directory", offsetof(tok_args, out)},
};

/* argv[*i] is an option of the tokenizer command: its value(s) go into a.
 * Returns EXIT_OK, or EXIT_USAGE after printing why. */
static int parse_option(tok_args *a, int argc, char **argv, int *i)
{
    const char *o = argv[*i], *v;
    for (size_t k = 0; k < sizeof k_string_opts / sizeof k_string_opts[0]; k++) {
        if (strcmp(o, k_string_opts[k].opt)) continue;
        if (opt_value(argc, argv, i, (const char **)((char *)a + k_string_opts[k].field)))
            return usage_error("tokenizer", "%s needs %s", o, k_string_opts[k].needs);
        return EXIT_OK;
    }
    if (!strcmp(o, "--special")) {
        if (opt_value(argc, argv, i, &v)) return usage_error("tokenizer", "--special needs a token");
        if (str_list_push(&a->special, v)) return fail_msg("out of memory");
    } else if (!strcmp(o, "--vocab-size") || !strcmp(o, "--min-frequency")) {
        uint64_t *dst = !strcmp(o, "--vocab-size") ? &a->vocab_size : &a->min_freq;
        if (opt_value(argc, argv, i, &v) || parse_count(v, 1, UINT32_MAX, dst))
            return usage_error("tokenizer", "%s needs a positive number", o);
    } else if (!strcmp(o, "--files")) {
        while (*i + 1 < argc && argv[*i + 1][0] != '-')
            if (str_list_push(&a->files, argv[++*i])) return fail_msg("out of memory");
    } else {
        return usage_error("tokenizer", "unknown option '%s'", o);
    }
    return EXIT_OK;
}

/* Returns EXIT_OK, or the exit code after printing why (--help prints the
 * help and returns -1: the caller exits 0). */
static int parse_args(tok_args *a, int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        const char *s = argv[i];
        int rc;
        if (is_help(s)) return -1;
        if (s[0] == '-' && s[1]) rc = parse_option(a, argc, argv, &i);
        else rc = take_positional("tokenizer", s, (const char **[]){&a->dir}, 1);
        if (rc) return rc;
    }
    return EXIT_OK;
}

/* mkdir that accepts an existing directory; tokenizer_save names the
 * files it writes, so only this step needs its own message. */
static int make_dir(const char *path)
{
    if (mkdir(path, 0777) == 0) return EXIT_OK;
    int e = errno; /* before is_dir's stat can change it */
    if (e == EEXIST && is_dir(path)) return EXIT_OK;
    if (e == EEXIST) return fail_msg("%s: exists and is not a directory; expected a directory for --out", path);
    return fail_msg("%s: cannot create the directory: %s", path, strerror(e));
}

static int tokenizer_train(const tok_args *a)
{
    if (!a->files.n || !a->vocab_size || !a->out)
        return usage_error("tokenizer", "train needs --files, --vocab-size and --out");
    lmio_error err;
    lmio_tokenizer *tok;
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    o.vocab_size = (size_t)a->vocab_size;
    o.min_frequency = (uint32_t)a->min_freq;
    o.special = a->special.n ? a->special.v : k_eot;
    o.n_special = a->special.n ? a->special.n : 1;
    if (lmio_tokenizer_train(a->files.v, a->files.n, &o, &tok, &err)) return fail(&err);
    int rc = make_dir(a->out);
    if (rc == EXIT_OK && lmio_tokenizer_save(tok, a->out, &err)) rc = fail(&err);
    if (rc == EXIT_OK) printf("trained a %zu-token byte-level BPE into %s\n", lmio_tokenizer_vocab_size(tok), a->out);
    lmio_tokenizer_free(tok);
    return rc;
}

static int tokenizer_encode(const tok_args *a, const lmio_tokenizer *tok)
{
    if (!a->text && !a->file) return usage_error("tokenizer", "encode needs --text or --file");
    char *buf = NULL;
    size_t len = 0;
    int rc = EXIT_OK;
    if (a->file && (rc = read_file_all(a->file, &buf, &len))) return rc;
    lmio_error err;
    int32_t *ids;
    size_t n;
    if (lmio_tokenizer_encode(tok, a->file ? buf : a->text, a->file ? len : strlen(a->text), &ids, &n, &err)) {
        /* the library saw a buffer; name where it came from */
        rc = fail_msg("%s: %s", a->file ? a->file : "--text", err.message);
    } else {
        putchar('[');
        for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
        puts("]");
        lmio_free(ids);
    }
    free(buf);
    return rc;
}

static int tokenizer_decode(const tok_args *a, const lmio_tokenizer *tok)
{
    int32_t *ids;
    size_t n;
    if (!a->ids || parse_ids(a->ids, &ids, &n)) return usage_error("tokenizer", "decode needs --ids like 1,2,3");
    lmio_error err;
    char *t;
    size_t len;
    int rc = EXIT_OK;
    if (lmio_tokenizer_decode(tok, ids, n, &t, &len, &err)) {
        rc = fail(&err);
    } else {
        fwrite(t, 1, len, stdout);
        putchar('\n');
        lmio_free(t);
    }
    free(ids);
    return rc;
}

/* encode and decode: load the tokenizer from DIR or --vocab + --merges. */
static int tokenizer_use(const char *sub, const tok_args *a)
{
    if (strcmp(sub, "encode") && strcmp(sub, "decode"))
        return usage_error("tokenizer", "unknown subcommand '%s'; expected encode, decode or train", sub);
    if (!a->dir && !(a->vocab && a->merges)) return usage_error("tokenizer", "needs DIR or --vocab and --merges");
    lmio_error err;
    lmio_tokenizer *tok;
    lmio_status ls = a->dir ? lmio_tokenizer_load(a->dir, &tok, &err)
                            : lmio_tokenizer_load_files(a->vocab, a->merges, k_eot, 1, &tok, &err);
    if (ls) return fail(&err);
    int rc = !strcmp(sub, "encode") ? tokenizer_encode(a, tok) : tokenizer_decode(a, tok);
    lmio_tokenizer_free(tok);
    return rc;
}

int cmd_tokenizer(const cli_command *self, int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        fputs(self->help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const char *sub = argv[1];
    tok_args a = {.min_freq = 2};
    int rc = parse_args(&a, argc, argv);
    if (rc < 0) rc = print_help(self);
    else if (rc == EXIT_OK) rc = !strcmp(sub, "train") ? tokenizer_train(&a) : tokenizer_use(sub, &a);
    str_list_free(&a.files);
    str_list_free(&a.special);
    return rc;
}
