/* lmio inspect PATH|DIR [--json] */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

const char k_inspect_help[] =
    "usage: lmio inspect PATH [--json]\n"
    "       lmio inspect DIR [--json]   (a Hugging Face model directory)\n"
    "\n"
    "Show a model file's format, metadata and tensors (name, dtype, shape,\n"
    "byte size, file offset) with totals. The file is fully validated first.\n"
    "\n"
    "  --json   print {\"format\", \"metadata\", \"tensors\": [{\"name\", \"dtype\",\n"
    "           \"shape\", \"nbytes\", \"offset\"}], \"total_parameters\", \"total_bytes\"}\n";

static int file_json(const lmio_statedict *sd)
{
    json_t *root = json_object(), *meta = json_object();
    json_object_set_new(root, "format", json_string(lmio_statedict_format(sd)));
    json_object_set_new(root, "path", json_string(lmio_statedict_path(sd)));
    for (size_t i = 0; i < lmio_metadata_count(sd); i++) {
        const char *k, *v;
        lmio_metadata_get(sd, i, &k, &v, NULL);
        json_object_set_new(meta, k, json_string(v));
    }
    json_object_set_new(root, "metadata", meta);
    add_tensors_json(root, sd, 0);
    return print_json_value(root, JSON_INDENT(2));
}

static void file_text(const char *path, const lmio_statedict *sd)
{
    printf("file:     %s\nformat:   %s\n", tty(path), lmio_statedict_format(sd));
    size_t nm = lmio_metadata_count(sd);
    printf("metadata:%s\n", nm ? "" : " (none)");
    for (size_t i = 0; i < nm; i++) {
        const char *k, *v;
        lmio_metadata_get(sd, i, &k, &v, NULL);
        printf("  %s = %s\n", tty(k), tty(v));
    }
    print_table(sd, 0);
}

/* ---- a model directory ---- */

/* What inspect shows of a directory beside its tensors. */
typedef struct dir_parts {
    lmio_config *cfg;     /* NULL: no config.json */
    lmio_tokenizer *tok;  /* NULL: none, or one lmio does not read */
    char tok_note[2048];  /* why tok is NULL when the files are there */
} dir_parts;

static json_t *tokenizer_json(const dir_parts *d)
{
    if (!d->tok && !d->tok_note[0]) return json_null();
    json_t *t = json_object();
    if (!d->tok) {
        json_object_set_new(t, "read_by_lmio", json_false());
        json_object_set_new(t, "reason", json_string(d->tok_note));
        return t;
    }
    json_object_set_new(t, "read_by_lmio", json_true());
    json_object_set_new(t, "vocab_size", json_integer((json_int_t)lmio_tokenizer_vocab_size(d->tok)));
    int32_t eos = lmio_tokenizer_eos_id(d->tok);
    json_object_set_new(t, "eos_token", eos >= 0 ? json_string(lmio_tokenizer_token(d->tok, eos)) : json_null());
    return t;
}

/* config.json as lmio read it (unknown keys included), through the library,
 * so what is shown is what lmio checked. */
static json_t *config_json(const lmio_config *cfg)
{
    char *text;
    size_t len;
    if (!cfg || lmio_config_to_json(cfg, &text, &len, NULL)) return json_null();
    json_t *v = json_loadb(text, len, 0, NULL);
    lmio_free(text);
    return v ? v : json_null();
}

static int dir_json(const char *dir, const lmio_statedict *w, const dir_parts *d)
{
    json_t *root = json_object();
    json_object_set_new(root, "format", json_string("hf-directory"));
    json_object_set_new(root, "path", json_string(dir));
    json_object_set_new(root, "config", config_json(d->cfg));
    json_object_set_new(root, "tokenizer", tokenizer_json(d));
    add_tensors_json(root, w, 1);
    return print_json_value(root, JSON_INDENT(2));
}

static void config_line(const lmio_config *cfg)
{
    if (!cfg) {
        printf("config:    (none)\n");
        return;
    }
    int64_t v;
    const char *str;
    printf("config:    model_type %s", *lmio_config_model_type(cfg) ? tty(lmio_config_model_type(cfg)) : "(none)");
    /* Transformers' common names; an architecture's own spellings (GPT-2's
     * n_layer, ...) are aliases of these */
    static const char *const keys[] = {"vocab_size", "num_hidden_layers", "num_attention_heads", "hidden_size",
                                       "max_position_embeddings"};
    for (int k = 0; k < 5; k++)
        if (lmio_config_get_int(cfg, keys[k], &v, NULL) == LMIO_OK) printf(", %s %lld", keys[k], (long long)v);
    if (lmio_config_get_string(cfg, "dtype", &str, NULL) == LMIO_OK ||
        lmio_config_get_string(cfg, "torch_dtype", &str, NULL) == LMIO_OK)
        printf(", dtype %s", tty(str));
    int tie;
    if (lmio_config_get_bool(cfg, "tie_word_embeddings", &tie, NULL) == LMIO_OK) printf(", %s", tie ? "tied" : "untied");
    putchar('\n');
}

static void dir_text(const char *dir, const lmio_statedict *w, const dir_parts *d)
{
    printf("directory: %s\n", tty(dir));
    config_line(d->cfg);
    if (d->tok) {
        int32_t eos = lmio_tokenizer_eos_id(d->tok);
        printf("tokenizer: byte-level BPE, %zu tokens%s%s\n", lmio_tokenizer_vocab_size(d->tok),
               eos >= 0 ? ", end of text " : "", eos >= 0 ? tty(lmio_tokenizer_token(d->tok, eos)) : "");
    } else if (d->tok_note[0]) {
        printf("tokenizer: present, not read by lmio (%s)\n", tty(d->tok_note));
    } else {
        printf("tokenizer: (none)\n");
    }
    print_table(w, 1);
}

/* Any Hugging Face directory: weights and config are read whatever the
 * architecture; the tokenizer is shown when lmio reads its kind. */
static int inspect_dir(const char *dir, int json)
{
    lmio_error err;
    lmio_statedict *w;
    dir_parts d = {0};
    if (lmio_pretrained_load(dir, &d.cfg, &w, NULL, &err)) return fail(&err);
    int rc = dir_tokenizer(dir, &d.tok, d.tok_note, sizeof d.tok_note);
    if (rc == EXIT_OK) {
        if (json) rc = dir_json(dir, w, &d);
        else dir_text(dir, w, &d);
    }
    lmio_config_free(d.cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(d.tok);
    return rc;
}

int cmd_inspect(const cli_command *self, int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else if ((rc = take_positional(self->name, argv[i], (const char **[]){&path}, 1))) return rc;
    }
    if (!path) return usage_error(self->name, "%s", "missing PATH");
    if (is_dir(path)) return inspect_dir(path, json);
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_open(path, NULL, &sd, &err)) return fail(&err);
    int rc = EXIT_OK;
    if (json) rc = file_json(sd);
    else file_text(path, sd);
    lmio_statedict_free(sd);
    return rc;
}
