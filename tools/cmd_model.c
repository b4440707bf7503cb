/* lmio logits and lmio generate: a reference model (lmio_model_*) on a model
 * directory of an architecture lmio can run. */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* -n beyond this is a typo, not a request: it also keeps the id buffer's
 * size far from wrapping. The model's n_positions is checked by the library. */
#define MAX_NEW_TOKENS 1000000u

const char k_logits_help[] =
    "usage: lmio logits DIR --ids 1,2,3 --out FILE.npy\n"
    "\n"
    "Run the reference model (fp32) on the ids and write the logits, float32 of\n"
    "shape (len(ids), vocab_size), as a NumPy .npy file. The directory's\n"
    "model_type must be one lmio can run (the error names them when not).\n"
    "DIR may also be a GGUF file of such an architecture.\n";

const char k_generate_help[] =
    "usage: lmio generate DIR (--prompt TEXT | --ids 1,2,3) [-n N] [--greedy | --temperature T --seed S] [--json]\n"
    "\n"
    "Continue TEXT with the reference model: N new tokens (default 32), greedy by\n"
    "default, or sampled at temperature T with seed S (reproducible). Stops early\n"
    "at the config's eos_token_id. Prints the continuation, or with --json\n"
    "{\"prompt_ids\": [...], \"ids\": [...new ids...], \"text\": \"...\"}.\n"
    "With --ids the prompt is token ids and no tokenizer is needed: the new ids\n"
    "are printed comma-separated (--json: without \"text\").\n"
    "DIR may also be a GGUF file (its tokenizer and stop token come from it).\n";

typedef struct loaded {
    lmio_config *cfg;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    lmio_model *model;
} loaded;

static void loaded_free(loaded *l)
{
    lmio_model_free(l->model);
    lmio_statedict_free(l->w);
    lmio_config_free(l->cfg);
    lmio_tokenizer_free(l->tok);
}

static int load_model(const char *dir, int want_tok, loaded *l)
{
    lmio_error err;
    memset(l, 0, sizeof *l);
    if (lmio_pretrained_load(dir, &l->cfg, &l->w, want_tok ? &l->tok : NULL, &err)) {
        loaded_free(l);
        return fail(&err);
    }
    if (!l->cfg) {
        loaded_free(l);
        return fail_msg("%s: no config.json; expected a model directory with a config", dir);
    }
    if (lmio_model_create(l->cfg, l->w, &l->model, &err)) {
        loaded_free(l);
        return fail(&err);
    }
    if (want_tok && !l->tok) {
        loaded_free(l);
        return fail_msg("%s: no tokenizer files; expected tokenizer.json or vocab.json + merges.txt", dir);
    }
    return EXIT_OK;
}

/* ---- logits ---- */

/* The logits as a .npy v1.0 file image: magic, header length, a Python
 * dict literal padded with spaces so the data starts 64-byte aligned, then
 * room for n * V floats at *data. malloc'd; NULL when too large or out of
 * memory. */
static unsigned char *npy_alloc(size_t n, size_t V, float **data, size_t *total)
{
    char hdr[128];
    int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", n, V);
    size_t pre = 10 + (size_t)hl + 1, pad = (64 - pre % 64) % 64, nbytes;
    if (__builtin_mul_overflow(n, V, &nbytes) || __builtin_mul_overflow(nbytes, sizeof(float), &nbytes) ||
        __builtin_add_overflow(nbytes, pre + pad, total))
        return NULL;
    unsigned char *b = malloc(*total);
    if (!b) return NULL;
    size_t hlen = (size_t)hl + pad + 1;
    memcpy(b, "\x93NUMPY\x01\x00", 8);
    b[8] = (unsigned char)(hlen & 0xFF);
    b[9] = (unsigned char)(hlen >> 8);
    memcpy(b + 10, hdr, (size_t)hl);
    memset(b + 10 + hl, ' ', pad);
    b[10 + hl + pad] = '\n';
    *data = (float *)(void *)(b + pre + pad); /* 64-byte offset: aligned for float */
    return b;
}

int cmd_logits(const cli_command *self, int argc, char **argv)
{
    const char *dir = NULL, *ids_s = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        else if (!strcmp(argv[i], "--ids")) { if (opt_value(argc, argv, &i, &ids_s)) return usage_error(self->name, "--ids needs a list"); }
        else if (!strcmp(argv[i], "--out")) { if (opt_value(argc, argv, &i, &out)) return usage_error(self->name, "--out needs a file"); }
        else if ((rc = take_positional(self->name, argv[i], (const char **[]){&dir}, 1))) return rc;
    }
    int32_t *ids;
    size_t n;
    if (!dir || !ids_s || !out) return usage_error(self->name, "%s", "needs DIR, --ids and --out");
    if (parse_ids(ids_s, &ids, &n) || n == 0) return usage_error(self->name, "%s", "--ids must look like 1,2,3");
    loaded l;
    int rc = load_model(dir, 0, &l);
    if (rc) { free(ids); return rc; }
    float *logits;
    size_t total;
    unsigned char *npy = npy_alloc(n, lmio_model_vocab_size(l.model), &logits, &total);
    lmio_error err;
    if (!npy) rc = fail_msg("%s: out of memory for %zu x %zu logits", out, n, lmio_model_vocab_size(l.model));
    else if (lmio_model_logits(l.model, ids, n, logits, &err)) rc = fail(&err);
    else if (lmio_file_write_atomic(out, npy, total, 1, &err)) rc = fail(&err);
    free(npy);
    free(ids);
    loaded_free(&l);
    return rc;
}

/* ---- generate ---- */

typedef struct gen_args {
    const char *dir, *prompt, *ids; /* one of prompt and ids */
    uint64_t n_new;
    int json;
    lmio_generate_opts go;
} gen_args;

/* argv[*i] is an option of generate; EXIT_OK or EXIT_USAGE after printing why. */
static int gen_option(const char *cmd, gen_args *a, int argc, char **argv, int *i)
{
    const char *o = argv[*i], *v;
    char *end;
    if (!strcmp(o, "--prompt")) {
        if (opt_value(argc, argv, i, &a->prompt)) return usage_error(cmd, "--prompt needs text");
    } else if (!strcmp(o, "--ids")) {
        if (opt_value(argc, argv, i, &a->ids)) return usage_error(cmd, "--ids needs a list");
    } else if (!strcmp(o, "-n")) {
        if (opt_value(argc, argv, i, &v) || parse_count(v, 0, MAX_NEW_TOKENS, &a->n_new))
            return usage_error(cmd, "-n needs a count from 0 to %u", MAX_NEW_TOKENS);
    } else if (!strcmp(o, "--greedy")) {
        a->go.greedy = 1;
    } else if (!strcmp(o, "--temperature")) {
        double t;
        if (opt_value(argc, argv, i, &v) || !((t = strtod(v, &end)) > 0) || *end)
            return usage_error(cmd, "%s", "--temperature needs a number > 0");
        a->go.temperature = (float)t;
        a->go.greedy = 0;
    } else if (!strcmp(o, "--seed")) {
        if (opt_value(argc, argv, i, &v) || parse_count(v, 0, UINT64_MAX, &a->go.seed))
            return usage_error(cmd, "%s", "--seed needs a number");
    } else if (!strcmp(o, "--json")) {
        a->json = 1;
    } else {
        return usage_error(cmd, "unknown option '%s'", o);
    }
    return EXIT_OK;
}

static int print_generated(const gen_args *a, const int32_t *pids, size_t np, const int32_t *ids, size_t n,
                           const char *text, size_t tl)
{
    char *clean = utf8_lossy(text ? text : "", tl);
    if (!clean) return fail_msg("out of memory");
    int rc = EXIT_OK;
    if (a->json) {
        json_t *root = json_object(), *pa = json_array(), *ia = json_array();
        for (size_t i = 0; i < np; i++) json_array_append_new(pa, json_integer(pids[i]));
        for (size_t i = 0; i < n; i++) json_array_append_new(ia, json_integer(ids[i]));
        json_object_set_new(root, "prompt_ids", pa);
        json_object_set_new(root, "ids", ia);
        if (text) json_object_set_new(root, "text", json_string(clean));
        rc = print_json_value(root, JSON_COMPACT);
    } else if (text) {
        puts(clean);
    } else {
        for (size_t i = 0; i < n; i++) printf("%s%d", i ? "," : "", ids[i]);
        putchar('\n');
    }
    free(clean);
    return rc;
}

/* Encode the prompt (unless given ids: --ids, parsed, malloc'd, np > 0),
 * generate, decode, print. */
static int generate(const gen_args *a, loaded *l, int32_t *ids, size_t np)
{
    lmio_error err;
    int32_t *pids = ids, *out = malloc(((size_t)a->n_new + 1) * sizeof *out);
    size_t nout = 0, tl = 0;
    char *text = NULL;
    int rc = EXIT_OK;
    if (!out) rc = fail_msg("out of memory");
    else if (!ids && lmio_tokenizer_encode(l->tok, a->prompt, strlen(a->prompt), &pids, &np, &err)) rc = fail(&err);
    else if (np == 0) rc = fail_msg("the prompt encodes to no tokens");
    else if (lmio_model_generate(l->model, pids, np, (size_t)a->n_new, &a->go, out, &nout, &err) ||
             (!ids && lmio_tokenizer_decode(l->tok, out, nout, &text, &tl, &err)))
        rc = fail(&err);
    else rc = print_generated(a, pids, np, out, nout, text, tl);
    lmio_free(text);
    if (!ids) lmio_free(pids); /* the tokenizer's: lmio's allocator */
    free(out);
    return rc;
}

int cmd_generate(const cli_command *self, int argc, char **argv)
{
    gen_args a = {.n_new = 32, .go = LMIO_GENERATE_OPTS_INIT};
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int rc;
        if (is_help(s)) return print_help(self);
        if (s[0] == '-' && s[1]) rc = gen_option(self->name, &a, argc, argv, &i);
        else rc = take_positional(self->name, s, (const char **[]){&a.dir}, 1);
        if (rc) return rc;
    }
    if (!a.dir || !a.prompt == !a.ids) return usage_error(self->name, "%s", "needs DIR and one of --prompt and --ids");
    int32_t *ids = NULL;
    size_t np = 0;
    if (a.ids && (parse_ids(a.ids, &ids, &np) || np == 0)) {
        free(ids);
        return usage_error(self->name, "%s", "--ids must look like 1,2,3");
    }
    loaded l;
    int rc = load_model(a.dir, a.prompt != NULL, &l);
    if (rc) {
        free(ids);
        return rc;
    }
    int64_t eos;
    if (lmio_config_get_int(l.cfg, "eos_token_id", &eos, NULL) == LMIO_OK) a.go.stop_id = (int32_t)eos;
    rc = generate(&a, &l, ids, np);
    free(ids);
    loaded_free(&l);
    return rc;
}
