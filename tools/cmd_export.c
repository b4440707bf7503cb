/* lmio export DIR --to TARGET OUT_DIR: a model directory as a deployment
 * format. Each target is a row of k_targets: its options are parsed by the
 * shared loop below, and its run function does the export. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

const char k_export_help[] =
    "usage: lmio export DIR --to onnx OUT_DIR [--dtype f32|f16] [--external-data]\n"
    "       lmio export DIR --to torchscript OUT.pt\n"
    "\n"
    "Export the model directory DIR (config, weights, tokenizer) for another\n"
    "runtime. DIR's architecture must be one lmio can run.\n"
    "\n"
    "--to onnx: OUT_DIR becomes a folder transformers.js runs as it is, and\n"
    "onnxruntime too: OUT_DIR/onnx/model.onnx (the decoder with its KV cache,\n"
    "laid out as Optimum exports it: inputs input_ids, attention_mask,\n"
    "position_ids, past_key_values.{i}.key/.value; outputs logits,\n"
    "present.{i}.key/.value; opset 20) and beside it config.json,\n"
    "generation_config.json and the tokenizer files. --dtype f16 stores the\n"
    "weights, cache and logits as float16 (the graph computes in float32).\n"
    "Weights go to OUT_DIR/onnx/model.onnx_data when the model would pass\n"
    "2 GiB, or always with --external-data. OUT_DIR is created if absent;\n"
    "other files in it are kept. The same model gives the same bytes.\n"
    "\n"
    "--to torchscript: OUT.pt is a TorchScript archive: torch.jit.load(OUT.pt)\n"
    "gives a module whose forward(input_ids) maps int64 ids of shape (T) or\n"
    "(B, T) to fp32 logits (T, vocab) or (B, T, vocab), equal to `lmio logits`\n"
    "up to fp32 rounding. Its parameters keep Transformers' names and are\n"
    "written f32; no Python from the directory is involved. OUT.pt appears\n"
    "whole or not at all.\n";

/* What the options said, for whichever target reads them. */
typedef struct export_args {
    lmio_dtype dtype;
    int external;
} export_args;

typedef struct loaded {
    lmio_config *cfg;
    lmio_statedict *w;
    lmio_tokenizer *tok;
} loaded;

static void loaded_free(loaded *l)
{
    lmio_config_free(l->cfg);
    lmio_statedict_free(l->w);
    lmio_tokenizer_free(l->tok);
}

static int load_dir(const char *dir, loaded *l)
{
    lmio_error err;
    memset(l, 0, sizeof *l);
    if (lmio_pretrained_load(dir, &l->cfg, &l->w, &l->tok, &err)) return fail(&err);
    if (!l->cfg) return fail_msg("%s: no config.json; expected a model directory with a config", tty(dir));
    if (!l->tok)
        fprintf(stderr, "%s: note: %s has no tokenizer files; the export will have none (transformers.js needs "
                        "tokenizer.json)\n", cli_prog, tty(dir));
    return EXIT_OK;
}

static int export_onnx(const char *dir, const char *out, const export_args *a)
{
    loaded l;
    int rc = load_dir(dir, &l);
    if (rc) {
        loaded_free(&l);
        return rc;
    }
    lmio_error err;
    lmio_onnx_opts o = LMIO_ONNX_OPTS_INIT;
    o.dtype = a->dtype;
    o.external_data = a->external;
    lmio_status s = lmio_onnx_export(out, l.cfg, l.w, l.tok, &o, &err);
    loaded_free(&l);
    if (s) return fail(&err);
    printf("wrote %s/onnx/model.onnx (%s)\n", tty(out), a->dtype == LMIO_DTYPE_F16 ? "float16" : "float32");
    return EXIT_OK;
}

static int export_torchscript(const char *dir, const char *out, const export_args *a)
{
    (void)a;
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w = NULL;
    int rc = EXIT_OK;
    if (lmio_pretrained_load(dir, &cfg, &w, NULL, &err)) rc = fail(&err);
    else if (!cfg) rc = fail_msg("%s: no config.json; expected a model directory with a config", tty(dir));
    if (!rc) {
        lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
        progress p;
        attach_progress(&so, &p, "exporting");
        lmio_status s = lmio_export_torchscript(cfg, w, out, &so, &err);
        progress_end(&p);
        if (s) rc = fail(&err);
        else printf("wrote %s (TorchScript, %s)\n", tty(out), lmio_config_model_type(cfg));
    }
    lmio_statedict_free(w);
    lmio_config_free(cfg);
    return rc;
}

typedef struct target {
    const char *name;
    const char *dtypes; /* for messages: "f32 or f16" */
    int (*accepts)(lmio_dtype d);
    int (*run)(const char *dir, const char *out, const export_args *a);
} target;

static int onnx_dtype(lmio_dtype d) { return d == LMIO_DTYPE_NONE || d == LMIO_DTYPE_F32 || d == LMIO_DTYPE_F16; }

/* TorchScript archives hold f32 weights (the module computes in f32) */
static int f32_only(lmio_dtype d) { return d == LMIO_DTYPE_NONE || d == LMIO_DTYPE_F32; }

static const target k_targets[] = {
    {"onnx", "f32 or f16", onnx_dtype, export_onnx},
    {"torchscript", "f32", f32_only, export_torchscript},
};

static const target *find_target(const char *name)
{
    for (size_t i = 0; i < sizeof k_targets / sizeof k_targets[0]; i++)
        if (!strcmp(k_targets[i].name, name)) return &k_targets[i];
    return NULL;
}

int cmd_export(const cli_command *self, int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *to = NULL, *v = NULL;
    export_args a = {LMIO_DTYPE_NONE, 0};
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        else if (!strcmp(argv[i], "--external-data")) a.external = 1;
        else if (!strcmp(argv[i], "--to")) {
            if (opt_value(argc, argv, &i, &to)) return usage_error(self->name, "%s", "--to needs a value");
        } else if (!strcmp(argv[i], "--dtype")) {
            if (opt_value(argc, argv, &i, &v)) return usage_error(self->name, "%s", "--dtype needs a value");
            if ((a.dtype = lmio_dtype_parse(v)) == LMIO_DTYPE_NONE)
                return usage_error(self->name, "unknown dtype '%s'", v);
        } else if ((rc = take_positional(self->name, argv[i], (const char **[]){&dir, &out}, 2))) return rc;
    }
    if (!to) return usage_error(self->name, "%s", "needs --to (onnx or torchscript)");
    const target *t = find_target(to);
    if (!t) {
        char names[128] = "";
        for (size_t k = 0, n = 0; k < sizeof k_targets / sizeof k_targets[0] && n < sizeof names; k++)
            n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", k_targets[k].name);
        return usage_error(self->name, "unknown target '%s'; expected one of: %s", to, names);
    }
    if (!dir || !out) return usage_error(self->name, "%s", "needs DIR and OUT_DIR");
    if (!t->accepts(a.dtype)) return usage_error(self->name, "--to %s takes --dtype %s, not '%s'", t->name, t->dtypes, v);
    return t->run(dir, out, &a);
}
