/* lmio convert IN OUT [--dtype D] | SRC_DIR DST_DIR [--dtype D] [--max-shard-size SIZE] */
#include "cli.h"

#include <stdio.h>
#include <string.h>

const char k_convert_help[] =
    "usage: lmio convert IN OUT [--dtype f32|f16|bf16|f64] [--format NAME]\n"
    "       lmio convert SRC_DIR DST_DIR [--dtype f32|f16|bf16] [--max-shard-size SIZE]\n"
    "                    [--format NAME] [--keep-other-files]\n"
    "       lmio convert MODEL.gguf DST_DIR [--dtype f32|f16|bf16]\n"
    "       lmio convert SRC_DIR OUT.gguf --format gguf [--dtype f32|f16|bf16|q8_0]\n"
    "\n"
    "--format names the output's format: safetensors (default), pytorch (also\n"
    "spelled bin or pt: a torch.save checkpoint, pytorch_model.bin in\n"
    "directories) or gguf (llama.cpp, where q8_0 is one more --dtype). Inputs\n"
    "are recognised by their bytes, whatever their names (.bin, .pt, .pth,\n"
    ".safetensors, .gguf); PyTorch pickles are read without running anything\n"
    "in them.\n"
    "\n"
    "A GGUF file becomes a Hugging Face directory that Transformers loads with\n"
    "no flags: config.json from its metadata, Transformers' tensor names and\n"
    "layouts, quantised tensors dequantised (F32 unless --dtype), and the\n"
    "tokenizer files (pre-tokenizer, special tokens, chat template) from its\n"
    "tokenizer. With --format safetensors it is rewritten as one file with\n"
    "GGUF's own names instead. --format gguf writes a directory of an\n"
    "architecture lmio runs as llama.cpp's convert_hf_to_gguf.py would (names,\n"
    "hyperparameters, tokenizer; vectors and norms F32), or a file with its\n"
    "own names.\n"
    "\n"
    "Directories, of any architecture: the weights are rewritten (single or\n"
    "sharded at SIZE like 500MB or 2GB), config.json keeps its content (its\n"
    "dtype follows the weights), and every other file and folder (tokenizer\n"
    "files of any kind, generation_config.json, README.md, modules.json, ...)\n"
    "is copied byte for byte. DST_DIR appears whole or not at all. An existing\n"
    "DST_DIR is replaced only if it holds nothing but files lmio writes; with\n"
    "--keep-other-files its other files (README.md, .git/, ...) stay and\n"
    "lmio's files are replaced one by one. DST_DIR may not contain SRC_DIR or\n"
    "lie inside it.\n"
    "\n"
    "Files: "
    "rewrite a model file, converting every floating tensor (F16, BF16,\n"
    "F32, F64) to --dtype; other tensors are copied as they are. Conversion\n"
    "rounds to nearest even and keeps NaN/Inf, exactly as torch's .to().\n"
    "Tensors stream through a bounded buffer, so memory stays small whatever\n"
    "the model size. OUT appears whole or not at all: a failure leaves an\n"
    "existing OUT untouched and no temporary file behind.\n";

static void print_wrote(const char *out, size_t n, lmio_dtype dt)
{
    printf("wrote %s (%zu tensors%s%s)\n", tty(out), n, dt != LMIO_DTYPE_NONE ? ", floating tensors as " : "",
           dt != LMIO_DTYPE_NONE ? lmio_dtype_name(dt) : "");
}

/* Any architecture: weights rewritten, config.json's content kept, every
 * other file (tokenizer files of any kind, README.md, modules.json, ...)
 * carried byte for byte. */
static int convert_dir(const char *in, const char *out, lmio_dtype dt, uint64_t shard, const char *format,
                       int keep)
{
    lmio_error err;
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.dtype = dt;
    o.max_shard_size = shard;
    o.format = format;
    o.keep_other_files = keep;
    if (lmio_pretrained_convert(in, out, &o, &err)) return fail(&err);
    lmio_statedict *w;
    size_t n = 0;
    if (lmio_pretrained_load(out, NULL, &w, NULL, &err) == LMIO_OK) {
        n = lmio_statedict_count(w);
        lmio_statedict_free(w);
    }
    print_wrote(out, n, dt);
    return EXIT_OK;
}

/* To GGUF: a directory of an architecture lmio runs as llama.cpp's
 * converter writes it (names, hyperparameters, tokenizer); a file with its
 * own names. type: f32, f16, bf16 or q8_0. */
static int convert_to_gguf(const char *in, const char *out, const char *type)
{
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w = NULL;
    lmio_tokenizer *tok = NULL;
    lmio_status s = is_dir(in) ? lmio_pretrained_load(in, &cfg, &w, &tok, &err) : lmio_statedict_open(in, NULL, &w, &err);
    lmio_gguf_opts o = LMIO_GGUF_OPTS_INIT;
    o.type = type;
    progress p;
    if (!s) {
        lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
        attach_progress(&so, &p, "converting");
        o.progress = so.progress;
        o.progress_ctx = so.progress_ctx;
        s = lmio_gguf_save(out, cfg, w, tok, &o, &err);
        progress_end(&p);
    }
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    if (s) return fail(&err);
    printf("wrote %s (GGUF, matrices as %s)\n", tty(out), type ? type : "f32");
    return EXIT_OK;
}

static int convert_file(const char *in, const char *out, lmio_dtype dt, const char *format)
{
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_open(in, NULL, &sd, &err)) return fail(&err);
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.dtype = dt;
    progress p;
    attach_progress(&so, &p, "converting");
    lmio_status s = lmio_statedict_save(sd, out, format, &so, &err);
    progress_end(&p);
    size_t n = lmio_statedict_count(sd);
    lmio_statedict_free(sd);
    if (s) return fail(&err);
    print_wrote(out, n, dt);
    return EXIT_OK;
}

int cmd_convert(const cli_command *self, int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *format = NULL, *v, *gguf_type = NULL;
    lmio_dtype dt = LMIO_DTYPE_NONE;
    uint64_t shard = 0;
    int keep = 0;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        else if (strcmp(argv[i], "--keep-other-files") == 0) keep = 1;
        else if (strcmp(argv[i], "--max-shard-size") == 0) {
            lmio_error e;
            if (opt_value(argc, argv, &i, &v)) return usage_error(self->name, "%s", "--max-shard-size needs a value");
            if (lmio_parse_size(v, &shard, &e)) return usage_error(self->name, "%s", e.message);
        } else if (strcmp(argv[i], "--dtype") == 0) {
            if (opt_value(argc, argv, &i, &v)) return usage_error(self->name, "%s", "--dtype needs a value");
            dt = lmio_dtype_parse(v);
            gguf_type = !strcmp(v, "q8_0") || !strcmp(v, "Q8_0") ? "q8_0"
                        : dt == LMIO_DTYPE_F32 ? "f32" : dt == LMIO_DTYPE_F16 ? "f16" : dt == LMIO_DTYPE_BF16 ? "bf16" : NULL;
            if (!lmio_dtype_is_convertible_float(dt) && !gguf_type)
                return usage_error(self->name, "unknown dtype '%s'; expected f32, f16, bf16, f64 (or q8_0 for GGUF)", v);
        } else if (strcmp(argv[i], "--format") == 0) {
            if (opt_value(argc, argv, &i, &format)) return usage_error(self->name, "%s", "--format needs a value");
            if (!lmio_format_can_save(format)) {
                char names[256] = "";
                for (size_t k = 0, n = 0; lmio_format_name(k) && n < sizeof names; k++)
                    if (lmio_format_can_save(lmio_format_name(k)))
                        n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", lmio_format_name(k));
                return usage_error(self->name, "lmio cannot write format '%s'; expected one of: %s", format, names);
            }
        } else if ((rc = take_positional(self->name, argv[i], (const char **[]){&in, &out}, 2))) return rc;
    }
    if (!in || !out) return usage_error(self->name, "%s", "needs IN and OUT");
    if (format && !strcmp(format, "gguf")) {
        if (dt != LMIO_DTYPE_NONE && !gguf_type) return usage_error(self->name, "%s", "GGUF holds f32, f16, bf16 or q8_0");
        if (shard || keep) return usage_error(self->name, "%s", "--max-shard-size and --keep-other-files apply to directories");
        return convert_to_gguf(in, out, gguf_type);
    }
    if (gguf_type && !strcmp(gguf_type, "q8_0")) return usage_error(self->name, "%s", "q8_0 needs --format gguf");
    if (is_dir(in)) return convert_dir(in, out, dt, shard, format, keep);
    /* a GGUF is a whole model: it becomes a directory unless a file format is asked for */
    const char *in_format = lmio_format_of(in);
    if (!format && in_format && !strcmp(in_format, "gguf")) return convert_dir(in, out, dt, shard, NULL, keep);
    if (shard || keep) return usage_error(self->name, "%s", "--max-shard-size and --keep-other-files apply to directories");
    return convert_file(in, out, dt, format);
}
