/* lmio verify PATH|DIR */
#include "cli.h"

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
    "A directory with an lmio_manifest.json (lmio format 1.1 and later) is first\n"
    "checked against it: every file's size and SHA-256 and every tensor's\n"
    "CRC-32; each corrupt or missing file (and tensor) is named, files the\n"
    "manifest does not list are noted. A directory without one is checked for\n"
    "structure only, and the output says so.\n"
    "Exit 0 when valid, 1 with the reason when not.\n";

/* Prints a note for a floating tensor holding NaN or Inf (legal, rarely meant). */
static int note_nonfinite(void *ctx, const lmio_tensor *t, uint64_t bad)
{
    (void)ctx;
    if (bad) printf("note: tensor \"%s\" holds %llu NaN/Inf value(s)\n", tty(t->name), (unsigned long long)bad);
    return 0;
}

/* For an architecture lmio can run, the weights against the config (by
 * building the model); and a tokenizer whose ids all have an embedding. */
static int check_model(const char *dir, const lmio_config *cfg, const lmio_statedict *w, const lmio_tokenizer *tok)
{
    lmio_error err;
    if (!cfg) return EXIT_OK;
    if (lmio_arch_supported(lmio_config_model_type(cfg))) {
        lmio_model *m;
        if (lmio_model_create(cfg, w, &m, &err)) return fail(&err);
        lmio_model_free(m);
    }
    int64_t vocab;
    if (tok && lmio_config_get_int(cfg, "vocab_size", &vocab, NULL) == LMIO_OK &&
        lmio_tokenizer_vocab_size(tok) > (size_t)vocab)
        return fail_msg("%s: the tokenizer has %zu tokens but vocab_size is %lld; expected at most "
                        "vocab_size (ids beyond it have no embedding)",
                        dir, lmio_tokenizer_vocab_size(tok), (long long)vocab);
    return EXIT_OK;
}

/* Every finding of the manifest check: errors on stderr (all of them, not
 * just the first), notes on stdout. */
static void print_finding(void *ctx, lmio_integrity_event ev, const char *file, const char *tensor, const char *msg)
{
    int *state = ctx;
    if (ev == LMIO_INTEGRITY_VERIFIED) *state = 1;
    else if (ev == LMIO_INTEGRITY_NO_MANIFEST) *state = 0;
    if (ev >= LMIO_INTEGRITY_MISSING) fprintf(stderr, "%s: error: %s\n", cli_prog, tty(msg));
    else if (ev != LMIO_INTEGRITY_VERIFIED) printf("note: %s: %s\n", tty(file), tty(msg));
}

/* A whole model directory: everything from_pretrained checks, every data
 * byte read, and for an architecture lmio can run the weights checked
 * against the config. */
static int verify_dir(const char *dir)
{
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    char tok_note[2048];
    /* hashes first: damage is named as damage, with its tensor */
    int manifest = 0;
    lmio_status s = lmio_manifest_check(dir, print_finding, &manifest, &err);
    if (s == LMIO_ERR_INTEGRITY) return EXIT_BAD_INPUT; /* each printed already */
    if (s) return fail(&err);
    /* any architecture: config (if any) and weights, then the tokenizer if
     * lmio reads its kind */
    if (lmio_pretrained_load(dir, &cfg, &w, NULL, &err)) return fail(&err);
    int rc = dir_tokenizer(dir, &tok, tok_note, sizeof tok_note);
    /* every shard's bytes read with pread in a bounded buffer: a shard
     * truncated or unreadable since it was opened shows up here */
    lmio_verify_opts vo = LMIO_VERIFY_OPTS_INIT;
    vo.tensor_fn = note_nonfinite;
    lmio_verify_report y = {0};
    if (rc == EXIT_OK && lmio_statedict_verify(w, &vo, &y, &err)) rc = fail(&err);
    if (rc == EXIT_OK) rc = check_model(dir, cfg, w, tok);
    if (rc == EXIT_OK)
        printf("%s: OK (%s%s, %zu weight file%s, %zu tensors, %llu parameters, %llu data bytes%s%s%s)\n", tty(dir),
               cfg ? "config " : "no config", cfg ? tty(lmio_config_model_type(cfg)) : "", y.files,
               y.files == 1 ? "" : "s", y.tensors, (unsigned long long)y.parameters,
               (unsigned long long)y.data_bytes, tok ? ", tokenizer" : tok_note[0] ? ", tokenizer not read by lmio" : ", no tokenizer",
               manifest ? ", manifest hashes match" : ", no manifest: integrity not checked",
               y.nonfinite_tensors ? ", non-finite values noted above" : "");
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    return rc;
}

static int verify_file(const char *path)
{
    lmio_error err;
    /* The header is parsed from a mapping and every data byte is read
     * with pread through one bounded buffer: an unreadable sector is an
     * error here rather than a SIGBUS later, and a file larger than memory
     * can still be verified. */
    lmio_verify_opts vo = LMIO_VERIFY_OPTS_INIT;
    vo.tensor_fn = note_nonfinite;
    lmio_verify_report y;
    if (lmio_verify(path, &vo, &y, &err)) return fail(&err);
    printf("%s: OK (%s, %zu tensors, %llu parameters, %llu data bytes%s)\n", tty(path), y.format ? y.format : "?",
           y.tensors, (unsigned long long)y.parameters, (unsigned long long)y.data_bytes,
           y.nonfinite_tensors ? ", non-finite values noted above" : "");
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
