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

static uint64_t count_nonfinite(const lmio_tensor *t)
{
    /* Widen in small blocks through the library's own converter so every
     * float dtype is checked the same way. */
    if (!lmio_dtype_is_convertible_float(t->dtype)) return 0;
    enum { BLOCK = 4096 };
    float buf[BLOCK];
    uint64_t bad = 0;
    size_t esz = lmio_dtype_bits(t->dtype) / 8;
    for (uint64_t i = 0; i < t->numel; i += BLOCK) {
        size_t m = t->numel - i < BLOCK ? (size_t)(t->numel - i) : BLOCK;
        lmio_convert(buf, LMIO_DTYPE_F32, (const unsigned char *)t->data + i * esz, t->dtype, m, NULL);
        for (size_t k = 0; k < m; k++) bad += !isfinite(buf[k]);
    }
    return bad;
}

/* What verify adds up over a state dict. */
typedef struct tally {
    uint64_t params, bytes, nonfinite_tensors;
    str_list files; /* distinct weight files: an index interleaves them */
} tally;

/* Counts t, notes NaN/Inf, and remembers its file; -1 when out of memory. */
static int tally_tensor(tally *y, const lmio_tensor *t)
{
    y->params += t->numel;
    y->bytes += t->nbytes;
    uint64_t bad = count_nonfinite(t);
    if (bad) {
        y->nonfinite_tensors++;
        printf("note: tensor \"%s\" holds %llu NaN/Inf value(s)\n", t->name, (unsigned long long)bad);
    }
    /* distinct files are counted once at the end (sorted), not searched per
     * tensor: that was quadratic in the number of shards */
    if (!t->source || (y->files.n && y->files.v[y->files.n - 1] == t->source)) return 0;
    return str_list_push(&y->files, t->source);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static size_t count_distinct(str_list *l)
{
    if (l->n > 1) qsort(l->v, l->n, sizeof *l->v, cmp_str);
    size_t d = 0;
    for (size_t i = 0; i < l->n; i++) d += i == 0 || strcmp(l->v[i - 1], l->v[i]) != 0;
    return d;
}

/* Reads every byte: a shard truncated or unreadable since it was opened
 * shows up here, not in a later consumer. */
static void touch_all(const lmio_tensor *t)
{
    volatile unsigned char sink = 0;
    for (uint64_t k = 0; k < t->nbytes; k += 512) sink ^= ((const unsigned char *)t->data)[k];
    (void)sink;
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
        touch_all(&t);
        if (tally_tensor(&y, &t)) rc = fail_msg("out of memory");
    }
    if (rc == EXIT_OK) rc = check_model(dir, cfg, w, tok);
    size_t n_files = count_distinct(&y.files);
    if (rc == EXIT_OK)
        printf("%s: OK (%s%s, %zu weight file%s, %zu tensors, %llu parameters, %llu data bytes%s%s)\n", dir,
               cfg ? "config " : "no config", cfg ? lmio_config_model_type(cfg) : "", n_files,
               n_files == 1 ? "" : "s", lmio_statedict_count(w), (unsigned long long)y.params,
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
        tally_tensor(&y, &t);
    }
    printf("%s: OK (%s, %zu tensors, %llu parameters, %llu data bytes%s)\n", path, lmio_statedict_format(sd),
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
