/* lmio convert IN OUT [--dtype D] | SRC_DIR DST_DIR [--dtype D] [--max-shard-size SIZE] */
#include "cli.h"

#include <stdio.h>
#include <string.h>

const char k_convert_help[] =
    "usage: lmio convert IN OUT [--dtype f32|f16|bf16|f64]\n"
    "       lmio convert SRC_DIR DST_DIR [--dtype f32|f16|bf16] [--max-shard-size SIZE]\n"
    "                                    [--keep-other-files]\n"
    "\n"
    "Directories: from_pretrained then save_pretrained (config, generation\n"
    "config, weights single or sharded at SIZE like 500MB or 2GB, tokenizer);\n"
    "DST_DIR appears whole or not at all. An existing DST_DIR is replaced only\n"
    "if it holds nothing but files lmio writes; with --keep-other-files its\n"
    "other files (README.md, .git/, ...) stay and lmio's files are replaced\n"
    "one by one. DST_DIR may not contain SRC_DIR or lie inside it.\n"
    "\n"
    "Files: "
    "rewrite a safetensors file, converting every floating tensor (F16, BF16,\n"
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

static int convert_dir(const char *in, const char *out, lmio_dtype dt, uint64_t shard, int keep)
{
    lmio_error err;
    lmio_config *cfg;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    if (lmio_pretrained_load(in, &cfg, &w, &tok, &err)) return fail(&err);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.dtype = dt;
    o.max_shard_size = shard;
    o.keep_other_files = keep;
    lmio_status s = lmio_pretrained_save(out, cfg, w, tok, &o, &err);
    size_t n = lmio_statedict_count(w);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    if (s) return fail(&err);
    print_wrote(out, n, dt);
    return EXIT_OK;
}

static int convert_file(const char *in, const char *out, lmio_dtype dt)
{
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_open(in, NULL, &sd, &err)) return fail(&err);
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.dtype = dt;
    progress p;
    attach_progress(&so, &p, "converting");
    lmio_status s = lmio_safetensors_save(sd, out, &so, &err);
    progress_end(&p);
    size_t n = lmio_statedict_count(sd);
    lmio_statedict_free(sd);
    if (s) return fail(&err);
    print_wrote(out, n, dt);
    return EXIT_OK;
}

int cmd_convert(const cli_command *self, int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *v;
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
            if (!lmio_dtype_is_convertible_float(dt))
                return usage_error(self->name, "unknown dtype '%s'; expected f32, f16, bf16 or f64", v);
        } else if ((rc = take_positional(self->name, argv[i], (const char **[]){&in, &out}, 2))) return rc;
    }
    if (!in || !out) return usage_error(self->name, "%s", "needs IN and OUT");
    if (is_dir(in)) return convert_dir(in, out, dt, shard, keep);
    if (shard || keep) return usage_error(self->name, "%s", "--max-shard-size and --keep-other-files apply to directories");
    return convert_file(in, out, dt);
}
