/* lmio verify PATH|DIR */
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char k_verify_help[] =
    "usage: lmio verify PATH\n"
    "       lmio verify DIR   (a model directory: config, index, every shard and\n"
    "                          tensor, tokenizer files, weights against the config)\n"
    "\n"
    "Validate a model file completely: every header rule of its format, every\n"
    "offset and size against the file, and every data byte readable. Floating\n"
    "tensors holding NaN or Inf are reported (they are legal, but rarely meant).\n"
    "Exit 0 when valid, 1 with the reason when not.\n";

/* Reads every data byte through lmio_tensor_read (a file that shrank since
 * it was mapped is then an error naming it, not a SIGBUS), and counts the
 * NaN/Inf of floating tensors, widened by the library's own converter so
 * every float dtype is checked the same way. */
static lmio_status scan_tensor(const lmio_tensor *t, uint64_t *nonfinite, lmio_error *err)
{
    enum { BLOCK = 4096 };
    unsigned char raw[BLOCK * 8];
    float f[BLOCK];
    int is_float = lmio_dtype_is_convertible_float(t->dtype);
    size_t esz = is_float ? lmio_dtype_bits(t->dtype) / 8 : 1;
    uint64_t step = (uint64_t)BLOCK * esz;
    *nonfinite = 0;
    for (uint64_t off = 0; off < t->nbytes; off += step) {
        size_t m = t->nbytes - off < step ? (size_t)(t->nbytes - off) : (size_t)step;
        lmio_status s = lmio_tensor_read(t, off, raw, m, err);
        if (s) return s;
        if (!is_float) continue;
        lmio_convert(f, LMIO_DTYPE_F32, raw, t->dtype, m / esz, NULL);
        for (size_t k = 0; k < m / esz; k++) *nonfinite += !isfinite(f[k]);
    }
    return LMIO_OK;
}

/* What verify adds up over a state dict. */
typedef struct tally {
    uint64_t params, bytes, nonfinite_tensors;
    str_list files; /* distinct weight files: an index interleaves them */
} tally;

/* Counts t, reads it whole, notes NaN/Inf, and remembers its file; the
 * exit code (printed) when it cannot be read or memory runs out. */
static int tally_tensor(tally *y, const lmio_tensor *t)
{
    y->params += t->numel;
    y->bytes += t->nbytes;
    uint64_t bad;
    lmio_error err;
    if (scan_tensor(t, &bad, &err)) return fail(&err);
    if (bad) {
        y->nonfinite_tensors++;
        printf("note: tensor \"%s\" holds %llu NaN/Inf value(s)\n", tty(t->name), (unsigned long long)bad);
    }
    if (!t->source) return EXIT_OK;
    for (size_t f = 0; f < y->files.n; f++)
        if (!strcmp(y->files.v[f], t->source)) return EXIT_OK;
    return str_list_push(&y->files, t->source) ? fail_msg("out of memory") : EXIT_OK;
}

/* For GPT-2, the weights against the config; and a tokenizer whose ids
 * all have an embedding. */
static int check_model(const char *dir, const lmio_config *cfg, const lmio_statedict *w, const lmio_tokenizer *tok)
{
    lmio_error err;
    if (!cfg) return EXIT_OK;
    if (!strcmp(lmio_config_model_type(cfg), "gpt2")) {
        lmio_gpt2 *m;
        if (lmio_gpt2_create(cfg, w, &m, &err)) return fail(&err);
        lmio_gpt2_free(m);
    }
    int64_t vocab;
    if (tok && lmio_config_get_int(cfg, "vocab_size", &vocab, NULL) == LMIO_OK &&
        lmio_tokenizer_vocab_size(tok) > (size_t)vocab)
        return fail_msg("%s: the tokenizer has %zu tokens but vocab_size is %lld; expected at most "
                        "vocab_size (ids beyond it have no embedding)",
                        dir, lmio_tokenizer_vocab_size(tok), (long long)vocab);
    return EXIT_OK;
}

/* A whole model directory: everything from_pretrained checks, every data
 * byte read, and for GPT-2 the weights checked against the config. */
static int verify_dir(const char *dir)
{
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    char cpath[4096];
    if ((size_t)snprintf(cpath, sizeof cpath, "%s/config.json", dir) >= sizeof cpath)
        return fail_msg("%s: path too long", dir);
    struct stat st;
    int has_cfg = stat(cpath, &st) == 0; /* absent: a weights-only directory */
    if (lmio_pretrained_load(dir, has_cfg ? &cfg : NULL, &w, &tok, &err)) return fail(&err);
    tally y = {0};
    int rc = EXIT_OK;
    for (size_t i = 0; i < lmio_statedict_count(w) && rc == EXIT_OK; i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        rc = tally_tensor(&y, &t);
    }
    if (rc == EXIT_OK) rc = check_model(dir, cfg, w, tok);
    if (rc == EXIT_OK)
        printf("%s: OK (%s%s, %zu weight file%s, %zu tensors, %llu parameters, %llu data bytes%s%s)\n", tty(dir),
               cfg ? "config " : "no config", cfg ? tty(lmio_config_model_type(cfg)) : "", y.files.n,
               y.files.n == 1 ? "" : "s", lmio_statedict_count(w), (unsigned long long)y.params,
               (unsigned long long)y.bytes, tok ? ", tokenizer" : ", no tokenizer",
               y.nonfinite_tensors ? ", non-finite values noted above" : "");
    str_list_free(&y.files);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    return rc;
}

static int verify_file(const char *path)
{
    lmio_error err;
    lmio_statedict *sd;
    /* Reading (not mapping) the file makes every byte pass through read(2),
     * so an unreadable sector is an error here rather than a SIGBUS later. */
    lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
    oo.use_mmap = 0;
    if (lmio_statedict_open(path, &oo, &sd, &err)) return fail(&err);
    tally y = {0};
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        t.source = NULL; /* one file: nothing to collect */
        if (tally_tensor(&y, &t)) {
            lmio_statedict_free(sd);
            return EXIT_BAD_INPUT;
        }
    }
    printf("%s: OK (%s, %zu tensors, %llu parameters, %llu data bytes%s)\n", tty(path), lmio_statedict_format(sd),
           lmio_statedict_count(sd), (unsigned long long)y.params, (unsigned long long)y.bytes,
           y.nonfinite_tensors ? ", non-finite values noted above" : "");
    lmio_statedict_free(sd);
    return EXIT_OK;
}

int cmd_verify(const cli_command *self, int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        if ((rc = take_positional(self->name, argv[i], (const char **[]){&path}, 1))) return rc;
    }
    if (!path) return usage_error(self->name, "%s", "missing PATH");
    return is_dir(path) ? verify_dir(path) : verify_file(path);
}
