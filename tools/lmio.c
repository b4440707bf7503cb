/* lmio: the command-line tool. Argument parsing, printing and exit codes
 * only; all work is done by the library through include/lmio.h.
 *
 * Exit codes: 0 success; 1 invalid input, failed verification or any I/O
 * failure (the message on stderr names the file); 2 usage error. */
#include "lmio.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_USAGE = 2 };

static const char *g_prog = "lmio";

__attribute__((format(printf, 2, 3))) static int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", g_prog, cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", g_prog, cmd);
    return EXIT_USAGE;
}

static int fail(const lmio_error *err)
{
    fprintf(stderr, "%s: error: %s\n", g_prog, err->message);
    return EXIT_BAD_INPUT;
}

static int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* ---- progress bar: only on a terminal, so logs and pipes stay clean ---- */

typedef struct progress {
    const char *label;
    int last_permille;
    int shown;
} progress;

static int progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    progress *p = ctx;
    int pm = total ? (int)(done * 1000 / total) : 1000;
    if (pm == p->last_permille) return 0;
    p->last_permille = pm;
    p->shown = 1;
    int width = 30, fill = pm * width / 1000;
    fprintf(stderr, "\r%s [", p->label);
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %5.1f%% %8.1f MB", pm / 10.0, done / 1e6);
    fflush(stderr);
    return 0;
}

static void progress_end(progress *p)
{
    if (p->shown) fputc('\n', stderr);
}

static void attach_progress(lmio_save_opts *o, progress *p, const char *label)
{
    *p = (progress){label, -1, 0};
    if (isatty(STDERR_FILENO)) {
        o->progress = progress_cb;
        o->progress_ctx = p;
    }
}

/* ---- printing ---- */

static void shape_str(char *buf, size_t cap, const lmio_tensor *t)
{
    size_t n = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < t->ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

static void human_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= 1000000000ULL) snprintf(buf, cap, "%.2f GB", b / 1e9);
    else if (b >= 1000000ULL) snprintf(buf, cap, "%.2f MB", b / 1e6);
    else if (b >= 1000ULL) snprintf(buf, cap, "%.1f kB", b / 1e3);
    else snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

static void print_table(const lmio_statedict *sd, int show_file)
{
    size_t n = lmio_statedict_count(sd);
    size_t wname = 4;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        size_t l = strlen(t.name);
        if (l > wname) wname = l;
    }
    if (wname > 60) wname = 60;
    printf("  %-*s  %-11s  %-20s  %14s  %12s%s\n", (int)wname, "name", "dtype", "shape", "bytes", "offset",
           show_file ? "  file" : "");
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        char sh[128];
        shape_str(sh, sizeof sh, &t);
        const char *src = t.source ? strrchr(t.source, '/') : NULL;
        printf("  %-*s  %-11s  %-20s  %14llu  %12lld%s%s\n", (int)wname, t.name, lmio_dtype_name(t.dtype), sh,
               (unsigned long long)t.nbytes, (long long)t.file_offset, show_file ? "  " : "",
               show_file ? (src ? src + 1 : t.source ? t.source : "") : "");
        params += t.numel;
        bytes += t.nbytes;
    }
    char hb[32];
    human_bytes(hb, sizeof hb, bytes);
    printf("total: %zu tensors, %llu parameters, %llu bytes (%s)\n", n, (unsigned long long)params,
           (unsigned long long)bytes, hb);
}

/* Adds "tensors" (name, dtype, shape, nbytes, offset[, file]) and the totals
 * to root: the part of --json shared by files and directories. */
static void add_tensors_json(json_t *root, const lmio_statedict *sd, int with_file)
{
    json_t *arr = json_array();
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        json_t *o = json_object(), *shape = json_array();
        for (int d = 0; d < t.ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t.shape[d]));
        json_object_set_new(o, "name", json_string(t.name));
        json_object_set_new(o, "dtype", json_string(lmio_dtype_name(t.dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "nbytes", json_integer((json_int_t)t.nbytes));
        json_object_set_new(o, "offset", json_integer(t.file_offset));
        if (with_file) {
            const char *src = t.source ? strrchr(t.source, '/') : NULL;
            json_object_set_new(o, "file", json_string(src ? src + 1 : t.source ? t.source : ""));
        }
        json_array_append_new(arr, o);
        params += t.numel;
        bytes += t.nbytes;
    }
    json_object_set_new(root, "tensors", arr);
    json_object_set_new(root, "total_parameters", json_integer((json_int_t)params));
    json_object_set_new(root, "total_bytes", json_integer((json_int_t)bytes));
}

static int print_json(const lmio_statedict *sd)
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
    char *s = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!s) {
        fprintf(stderr, "%s: error: out of memory printing JSON\n", g_prog);
        return EXIT_BAD_INPUT;
    }
    puts(s);
    free(s);
    return EXIT_OK;
}

/* ---- inspect ---- */

static int inspect_dir(const char *dir, int json);

static const char k_inspect_help[] =
    "usage: lmio inspect PATH [--json]\n"
    "       lmio inspect DIR [--json]   (a Hugging Face model directory)\n"
    "\n"
    "Show a model file's format, metadata and tensors (name, dtype, shape,\n"
    "byte size, file offset) with totals. The file is fully validated first.\n"
    "\n"
    "  --json   print {\"format\", \"metadata\", \"tensors\": [{\"name\", \"dtype\",\n"
    "           \"shape\", \"nbytes\", \"offset\"}], \"total_parameters\", \"total_bytes\"}\n";

static int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) { fputs(k_inspect_help, stdout); return EXIT_OK; }
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return usage_error("inspect", "unexpected argument '%s'", argv[i]);
    }
    if (!path) return usage_error("inspect", "%s", "missing PATH");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return inspect_dir(path, json);
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_open(path, NULL, &sd, &err)) return fail(&err);
    int rc = EXIT_OK;
    if (json) {
        rc = print_json(sd);
    } else {
        printf("file:     %s\nformat:   %s\n", path, lmio_statedict_format(sd));
        size_t nm = lmio_metadata_count(sd);
        printf("metadata:%s\n", nm ? "" : " (none)");
        for (size_t i = 0; i < nm; i++) {
            const char *k, *v;
            lmio_metadata_get(sd, i, &k, &v, NULL);
            printf("  %s = %s\n", k, v);
        }
        print_table(sd, 0);
    }
    lmio_statedict_free(sd);
    return rc;
}

/* ---- verify ---- */

static const char k_verify_help[] =
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

/* A whole model directory: everything from_pretrained checks, every data
 * byte read, and for GPT-2 the weights checked against the config. */
static int verify_dir(const char *dir)
{
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    struct stat st;
    int has_cfg = stat(cpath, &st) == 0;
    if (lmio_pretrained_load(dir, has_cfg ? &cfg : NULL, &w, &tok, &err)) return fail(&err);
    uint64_t params = 0, bytes = 0, nonfinite = 0;
    size_t files = 0, cap = 0;
    const char **seen = NULL; /* distinct weight files: an index interleaves them */
    for (size_t i = 0; i < lmio_statedict_count(w); i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        params += t.numel;
        bytes += t.nbytes;
        size_t f = 0;
        while (t.source && f < files && strcmp(seen[f], t.source)) f++;
        if (t.source && f == files) {
            if (files == cap) {
                const char **ns = realloc(seen, (cap = cap ? 2 * cap : 8) * sizeof *ns);
                if (!ns) break;
                seen = ns;
            }
            seen[files++] = t.source;
        }
        /* read every byte: a shard truncated or unreadable since it was
         * opened shows up here, not in a later consumer */
        volatile unsigned char sink = 0;
        for (uint64_t k = 0; k < t.nbytes; k += 512) sink ^= ((const unsigned char *)t.data)[k];
        (void)sink;
        uint64_t bad = count_nonfinite(&t);
        if (bad) {
            nonfinite++;
            printf("note: tensor \"%s\" holds %llu NaN/Inf value(s)\n", t.name, (unsigned long long)bad);
        }
    }
    int rc = EXIT_OK;
    if (cfg && !strcmp(lmio_config_model_type(cfg), "gpt2")) {
        lmio_gpt2 *m;
        if (lmio_gpt2_create(cfg, w, &m, &err)) rc = fail(&err);
        else lmio_gpt2_free(m);
    }
    int64_t vocab;
    if (rc == EXIT_OK && cfg && tok && lmio_config_get_int(cfg, "vocab_size", &vocab, NULL) == LMIO_OK &&
        lmio_tokenizer_vocab_size(tok) > (size_t)vocab) {
        fprintf(stderr, "%s: error: %s: the tokenizer has %zu tokens but vocab_size is %lld; expected at most "
                        "vocab_size (ids beyond it have no embedding)\n",
                g_prog, dir, lmio_tokenizer_vocab_size(tok), (long long)vocab);
        rc = EXIT_BAD_INPUT;
    }
    if (rc == EXIT_OK)
        printf("%s: OK (%s%s, %zu weight file%s, %zu tensors, %llu parameters, %llu data bytes%s%s)\n", dir,
               cfg ? "config " : "no config", cfg ? lmio_config_model_type(cfg) : "", files, files == 1 ? "" : "s",
               lmio_statedict_count(w), (unsigned long long)params, (unsigned long long)bytes,
               tok ? ", tokenizer" : ", no tokenizer", nonfinite ? ", non-finite values noted above" : "");
    free(seen);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    return rc;
}

static int cmd_verify(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) { fputs(k_verify_help, stdout); return EXIT_OK; }
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("verify", "unknown option '%s'", argv[i]);
        else if (!path) path = argv[i];
        else return usage_error("verify", "unexpected argument '%s'", argv[i]);
    }
    if (!path) return usage_error("verify", "%s", "missing PATH");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) return verify_dir(path);
    lmio_error err;
    lmio_statedict *sd;
    /* Reading (not mapping) the file makes every byte pass through read(2),
     * so an unreadable sector is an error here rather than a SIGBUS later. */
    lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
    oo.use_mmap = 0;
    if (lmio_statedict_open(path, &oo, &sd, &err)) return fail(&err);
    uint64_t params = 0, bytes = 0, nonfinite_tensors = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        params += t.numel;
        bytes += t.nbytes;
        uint64_t bad = count_nonfinite(&t);
        if (bad) {
            nonfinite_tensors++;
            printf("note: tensor \"%s\" holds %llu NaN/Inf value(s)\n", t.name, (unsigned long long)bad);
        }
    }
    printf("%s: OK (%s, %zu tensors, %llu parameters, %llu data bytes%s)\n", path,
           lmio_statedict_format(sd), lmio_statedict_count(sd), (unsigned long long)params,
           (unsigned long long)bytes, nonfinite_tensors ? ", non-finite values noted above" : "");
    lmio_statedict_free(sd);
    return EXIT_OK;
}

/* ---- convert ---- */

static const char k_convert_help[] =
    "usage: lmio convert IN OUT [--dtype f32|f16|bf16|f64]\n"
    "       lmio convert SRC_DIR DST_DIR [--dtype f32|f16|bf16] [--max-shard-size SIZE]\n"
    "\n"
    "Directories: from_pretrained then save_pretrained (config, generation\n"
    "config, weights single or sharded at SIZE like 500MB or 2GB, tokenizer);\n"
    "DST_DIR appears whole or not at all.\n"
    "\n"
    "Files: "
    "rewrite a safetensors file, converting every floating tensor (F16, BF16,\n"
    "F32, F64) to --dtype; other tensors are copied as they are. Conversion\n"
    "rounds to nearest even and keeps NaN/Inf, exactly as torch's .to().\n"
    "Tensors stream through a bounded buffer, so memory stays small whatever\n"
    "the model size. OUT appears whole or not at all: a failure leaves an\n"
    "existing OUT untouched and no temporary file behind.\n";

static lmio_dtype parse_dtype(const char *s)
{
    if (!strcmp(s, "f32") || !strcmp(s, "float32") || !strcmp(s, "F32")) return LMIO_DTYPE_F32;
    if (!strcmp(s, "f16") || !strcmp(s, "float16") || !strcmp(s, "F16")) return LMIO_DTYPE_F16;
    if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16") || !strcmp(s, "BF16")) return LMIO_DTYPE_BF16;
    if (!strcmp(s, "f64") || !strcmp(s, "float64") || !strcmp(s, "F64")) return LMIO_DTYPE_F64;
    return LMIO_DTYPE_NONE;
}

static int convert_dir(const char *in, const char *out, lmio_dtype dt, uint64_t shard)
{
    lmio_error err;
    lmio_config *cfg;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    if (lmio_pretrained_load(in, &cfg, &w, &tok, &err)) return fail(&err);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.dtype = dt;
    o.max_shard_size = shard;
    lmio_status s = lmio_pretrained_save(out, cfg, w, tok, &o, &err);
    size_t n = lmio_statedict_count(w);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    if (s) return fail(&err);
    printf("wrote %s (%zu tensors%s%s)\n", out, n, dt != LMIO_DTYPE_NONE ? ", floating tensors as " : "",
           dt != LMIO_DTYPE_NONE ? lmio_dtype_name(dt) : "");
    return EXIT_OK;
}

static int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL;
    lmio_dtype dt = LMIO_DTYPE_NONE;
    uint64_t shard = 0;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) { fputs(k_convert_help, stdout); return EXIT_OK; }
        else if (strcmp(argv[i], "--max-shard-size") == 0) {
            lmio_error e;
            if (i + 1 >= argc) return usage_error("convert", "%s", "--max-shard-size needs a value");
            if (lmio_parse_size(argv[++i], &shard, &e)) return usage_error("convert", "%s", e.message);
        }
        else if (strcmp(argv[i], "--dtype") == 0) {
            if (i + 1 >= argc) return usage_error("convert", "%s", "--dtype needs a value");
            dt = parse_dtype(argv[++i]);
            if (dt == LMIO_DTYPE_NONE)
                return usage_error("convert", "unknown dtype '%s'; expected f32, f16, bf16 or f64", argv[i]);
        } else if (argv[i][0] == '-' && argv[i][1]) return usage_error("convert", "unknown option '%s'", argv[i]);
        else if (!in) in = argv[i];
        else if (!out) out = argv[i];
        else return usage_error("convert", "unexpected argument '%s'", argv[i]);
    }
    if (!in || !out) return usage_error("convert", "%s", "needs IN and OUT");
    lmio_error err;
    struct stat st;
    if (stat(in, &st) == 0 && S_ISDIR(st.st_mode)) return convert_dir(in, out, dt, shard);
    if (shard) return usage_error("convert", "%s", "--max-shard-size applies to directories");
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
    printf("wrote %s (%zu tensors%s%s)\n", out, n, dt != LMIO_DTYPE_NONE ? ", floating tensors as " : "",
           dt != LMIO_DTYPE_NONE ? lmio_dtype_name(dt) : "");
    return EXIT_OK;
}

/* ---- example: a built-in small model state dict ---- */

static const char k_example_help[] =
    "usage: lmio example OUT.safetensors\n"
    "\n"
    "Write a small built-in GPT-2-shaped model state dict (2 layers, 32-wide,\n"
    "vocabulary 96, deterministic pseudo-random F32 weights) plus a training\n"
    "step counter, as safetensors. Used by the README's first command.\n";

static uint64_t g_rng = 0x9E3779B97F4A7C15ULL;
static float rand_normalish(void)
{
    /* xorshift64*, summed to approximate N(0, 0.02): weights that look real */
    float acc = 0;
    for (int k = 0; k < 4; k++) {
        g_rng ^= g_rng >> 12;
        g_rng ^= g_rng << 25;
        g_rng ^= g_rng >> 27;
        acc += (float)((g_rng * 2685821657736338717ULL) >> 40) / (float)(1 << 24) - 0.5f;
    }
    return acc * 0.035f;
}

static int add_f32(lmio_statedict *sd, const char *name, int ndim, const uint64_t *shape, float fill,
                   lmio_error *err)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *v = malloc(n * sizeof *v);
    if (!v) {
        err->code = LMIO_ERR_NOMEM;
        snprintf(err->message, sizeof err->message, "out of memory building the example");
        return 1;
    }
    for (uint64_t i = 0; i < n; i++) v[i] = fill != 0 ? fill : rand_normalish();
    lmio_status s = lmio_statedict_add(sd, name, LMIO_DTYPE_F32, ndim, shape, v, n * sizeof *v, LMIO_COPY, err);
    free(v);
    return s != LMIO_OK;
}

static int cmd_example(int argc, char **argv)
{
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) { fputs(k_example_help, stdout); return EXIT_OK; }
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("example", "unknown option '%s'", argv[i]);
        else if (!out) out = argv[i];
        else return usage_error("example", "unexpected argument '%s'", argv[i]);
    }
    if (!out) return usage_error("example", "%s", "missing OUT");
    const uint64_t V = 96, P = 64, C = 32, L = 2;
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_create(&sd, &err)) return fail(&err);
    int bad = 0;
    bad |= add_f32(sd, "transformer.wte.weight", 2, (uint64_t[]){V, C}, 0, &err);
    bad |= add_f32(sd, "transformer.wpe.weight", 2, (uint64_t[]){P, C}, 0, &err);
    for (uint64_t l = 0; l < L && !bad; l++) {
        char nm[96];
#define W(suffix, nd, ...)                                                      \
    snprintf(nm, sizeof nm, "transformer.h.%llu." suffix, (unsigned long long)l); \
    bad |= add_f32(sd, nm, nd, (uint64_t[]){__VA_ARGS__}, 0, &err);
#define ONES(suffix, nd, ...)                                                   \
    snprintf(nm, sizeof nm, "transformer.h.%llu." suffix, (unsigned long long)l); \
    bad |= add_f32(sd, nm, nd, (uint64_t[]){__VA_ARGS__}, 1.0f, &err);
        ONES("ln_1.weight", 1, C) W("ln_1.bias", 1, C)
        W("attn.c_attn.weight", 2, C, 3 * C) W("attn.c_attn.bias", 1, 3 * C)
        W("attn.c_proj.weight", 2, C, C) W("attn.c_proj.bias", 1, C)
        ONES("ln_2.weight", 1, C) W("ln_2.bias", 1, C)
        W("mlp.c_fc.weight", 2, C, 4 * C) W("mlp.c_fc.bias", 1, 4 * C)
        W("mlp.c_proj.weight", 2, 4 * C, C) W("mlp.c_proj.bias", 1, C)
#undef W
#undef ONES
    }
    bad |= add_f32(sd, "transformer.ln_f.weight", 1, (uint64_t[]){C}, 1.0f, &err);
    bad |= add_f32(sd, "transformer.ln_f.bias", 1, (uint64_t[]){C}, 0, &err);
    int64_t step = 1000;
    if (!bad) bad |= lmio_statedict_add(sd, "training.step", LMIO_DTYPE_I64, 0, NULL, &step, 8, LMIO_COPY, &err) != LMIO_OK;
    if (!bad) bad |= lmio_metadata_set(sd, "format", "pt", &err) != LMIO_OK;
    lmio_status s = bad ? err.code : lmio_safetensors_save(sd, out, NULL, &err);
    lmio_statedict_free(sd);
    if (s) return fail(&err);
    printf("wrote %s\n", out);
    return EXIT_OK;
}


/* ---- tokenizer ---- */

static const char k_tokenizer_help[] =
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

static int read_file_all(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    size_t r;
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb) { free(b); b = NULL; }
            else b = nb;
        }
    }
    fclose(f);
    if (!b) return -1;
    *buf = b;
    *len = n;
    return 0;
}

/* "1,2,3" -> ids; returns -1 on a malformed list */
static int parse_ids(const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    while (v && *p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > INT32_MAX) { free(v); return -1; }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) { free(v); return -1; }
    }
    if (!v) return -1;
    *ids = v;
    *n = k;
    return 0;
}

static int cmd_tokenizer(int argc, char **argv)
{
    if (argc < 2 || is_help(argv[1])) {
        fputs(k_tokenizer_help, argc < 2 ? stderr : stdout);
        return argc < 2 ? EXIT_USAGE : EXIT_OK;
    }
    const char *sub = argv[1];
    const char *dir = NULL, *vocab = NULL, *merges = NULL, *text = NULL, *file = NULL, *ids_s = NULL, *out = NULL;
    const char *files[256], *special[64];
    size_t n_files = 0, n_special = 0, vocab_size = 0;
    unsigned long min_freq = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : NULL)
        if (is_help(a)) { fputs(k_tokenizer_help, stdout); return EXIT_OK; }
        else if (!strcmp(a, "--vocab")) { if (!(vocab = NEXT())) return usage_error("tokenizer", "--vocab needs a file"); }
        else if (!strcmp(a, "--merges")) { if (!(merges = NEXT())) return usage_error("tokenizer", "--merges needs a file"); }
        else if (!strcmp(a, "--text")) { if (!(text = NEXT())) return usage_error("tokenizer", "--text needs a value"); }
        else if (!strcmp(a, "--file")) { if (!(file = NEXT())) return usage_error("tokenizer", "--file needs a path"); }
        else if (!strcmp(a, "--ids")) { if (!(ids_s = NEXT())) return usage_error("tokenizer", "--ids needs a list"); }
        else if (!strcmp(a, "--out")) { if (!(out = NEXT())) return usage_error("tokenizer", "--out needs a directory"); }
        else if (!strcmp(a, "--special")) {
            if (!(special[n_special] = NEXT()) || ++n_special >= 64) return usage_error("tokenizer", "--special needs a token");
        } else if (!strcmp(a, "--vocab-size") || !strcmp(a, "--min-frequency")) {
            const char *v = NEXT();
            char *end;
            unsigned long x = v ? strtoul(v, &end, 10) : 0;
            if (!v || *end || !x) return usage_error("tokenizer", "%s needs a positive number", a);
            if (!strcmp(a, "--vocab-size")) vocab_size = x;
            else min_freq = x;
        } else if (!strcmp(a, "--files")) {
            while (i + 1 < argc && argv[i + 1][0] != '-' && n_files < 256) files[n_files++] = argv[++i];
        } else if (a[0] == '-' && a[1]) return usage_error("tokenizer", "unknown option '%s'", a);
        else if (!dir) dir = a;
        else return usage_error("tokenizer", "unexpected argument '%s'", a);
#undef NEXT
    }
    lmio_error err;
    lmio_tokenizer *tok = NULL;
    if (!strcmp(sub, "train")) {
        if (!n_files || !vocab_size || !out)
            return usage_error("tokenizer", "train needs --files, --vocab-size and --out");
        lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
        static const char *const k_eot[] = {"<|endoftext|>"};
        o.vocab_size = vocab_size;
        o.min_frequency = (uint32_t)min_freq;
        o.special = n_special ? special : k_eot;
        o.n_special = n_special ? n_special : 1;
        if (lmio_tokenizer_train(files, n_files, &o, &tok, &err)) return fail(&err);
        mkdir(out, 0777);
        lmio_status s = lmio_tokenizer_save(tok, out, &err);
        size_t n = lmio_tokenizer_vocab_size(tok);
        lmio_tokenizer_free(tok);
        if (s) return fail(&err);
        printf("trained a %zu-token byte-level BPE into %s\n", n, out);
        return EXIT_OK;
    }
    if (strcmp(sub, "encode") && strcmp(sub, "decode"))
        return usage_error("tokenizer", "unknown subcommand '%s'; expected encode, decode or train", sub);
    if (!dir && !(vocab && merges)) return usage_error("tokenizer", "needs DIR or --vocab and --merges");
    static const char *const k_eot[] = {"<|endoftext|>"};
    lmio_status ls = dir ? lmio_tokenizer_load(dir, &tok, &err)
                         : lmio_tokenizer_load_files(vocab, merges, k_eot, 1, &tok, &err);
    if (ls) return fail(&err);
    int rc = EXIT_OK;
    if (!strcmp(sub, "encode")) {
        char *buf = NULL;
        size_t len = 0;
        if (!text && !file) { lmio_tokenizer_free(tok); return usage_error("tokenizer", "encode needs --text or --file"); }
        if (file && read_file_all(file, &buf, &len)) {
            fprintf(stderr, "%s: error: %s: cannot read\n", g_prog, file);
            lmio_tokenizer_free(tok);
            return EXIT_BAD_INPUT;
        }
        int32_t *ids;
        size_t n;
        if (lmio_tokenizer_encode(tok, file ? buf : text, file ? len : strlen(text), &ids, &n, &err)) {
            /* the library saw a buffer; name where it came from */
            fprintf(stderr, "%s: error: %s: %s\n", g_prog, file ? file : "--text", err.message);
            rc = EXIT_BAD_INPUT;
        } else {
            putchar('[');
            for (size_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", ids[i]);
            puts("]");
            lmio_free(ids);
        }
        free(buf);
    } else {
        int32_t *ids;
        size_t n;
        if (!ids_s || parse_ids(ids_s, &ids, &n)) {
            lmio_tokenizer_free(tok);
            return usage_error("tokenizer", "decode needs --ids like 1,2,3");
        }
        char *t;
        size_t len;
        if (lmio_tokenizer_decode(tok, ids, n, &t, &len, &err)) rc = fail(&err);
        else {
            fwrite(t, 1, len, stdout);
            putchar('\n');
            lmio_free(t);
        }
        free(ids);
    }
    lmio_tokenizer_free(tok);
    return rc;
}


/* ---- directories: inspect, logits, generate ---- */

static int inspect_dir(const char *dir, int json)
{
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    if (lmio_pretrained_load(dir, NULL, &w, &tok, &err)) return fail(&err);
    char cpath[4096];
    snprintf(cpath, sizeof cpath, "%s/config.json", dir);
    json_t *cj = json_load_file(cpath, 0, NULL);
    lmio_config_load(dir, &cfg, NULL);
    int rc = EXIT_OK;
    if (json) {
        json_t *root = json_object();
        json_object_set_new(root, "format", json_string("hf-directory"));
        json_object_set_new(root, "path", json_string(dir));
        json_object_set_new(root, "config", cj ? cj : json_null());
        cj = NULL;
        if (tok) {
            json_t *t = json_object();
            json_object_set_new(t, "vocab_size", json_integer((json_int_t)lmio_tokenizer_vocab_size(tok)));
            int32_t eos = lmio_tokenizer_eos_id(tok);
            json_object_set_new(t, "eos_token", eos >= 0 ? json_string(lmio_tokenizer_token(tok, eos)) : json_null());
            json_object_set_new(root, "tokenizer", t);
        } else {
            json_object_set_new(root, "tokenizer", json_null());
        }
        add_tensors_json(root, w, 1);
        char *out = json_dumps(root, JSON_INDENT(2));
        json_decref(root);
        if (out) puts(out);
        else rc = EXIT_BAD_INPUT;
        free(out);
    } else {
        printf("directory: %s\n", dir);
        if (cfg) {
            int64_t v;
            const char *str;
            printf("config:    model_type %s", lmio_config_model_type(cfg));
            const char *keys[] = {"vocab_size", "n_layer", "n_head", "n_embd", "n_positions"};
            for (int k = 0; k < 5; k++)
                if (lmio_config_get_int(cfg, keys[k], &v, NULL) == LMIO_OK) printf(", %s %lld", keys[k], (long long)v);
            if (lmio_config_get_string(cfg, "dtype", &str, NULL) == LMIO_OK) printf(", dtype %s", str);
            int tie;
            if (lmio_config_get_bool(cfg, "tie_word_embeddings", &tie, NULL) == LMIO_OK) printf(", %s", tie ? "tied" : "untied");
            putchar('\n');
        } else {
            printf("config:    (none)\n");
        }
        if (tok) {
            int32_t eos = lmio_tokenizer_eos_id(tok);
            printf("tokenizer: byte-level BPE, %zu tokens%s%s\n", lmio_tokenizer_vocab_size(tok),
                   eos >= 0 ? ", end of text " : "", eos >= 0 ? lmio_tokenizer_token(tok, eos) : "");
        } else {
            printf("tokenizer: (none)\n");
        }
        print_table(w, 1);
    }
    json_decref(cj);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    return rc;
}

typedef struct loaded {
    lmio_config *cfg;
    lmio_statedict *w;
    lmio_tokenizer *tok;
    lmio_gpt2 *model;
} loaded;

static void loaded_free(loaded *l)
{
    lmio_gpt2_free(l->model);
    lmio_statedict_free(l->w);
    lmio_config_free(l->cfg);
    lmio_tokenizer_free(l->tok);
}

static int load_model(const char *dir, int want_tok, loaded *l)
{
    lmio_error err;
    memset(l, 0, sizeof *l);
    if (lmio_pretrained_load(dir, &l->cfg, &l->w, want_tok ? &l->tok : NULL, &err) ||
        lmio_gpt2_create(l->cfg, l->w, &l->model, &err)) {
        loaded_free(l);
        return fail(&err);
    }
    if (want_tok && !l->tok) {
        fprintf(stderr, "%s: error: %s: no tokenizer files; expected tokenizer.json or vocab.json + merges.txt\n",
                g_prog, dir);
        loaded_free(l);
        return EXIT_BAD_INPUT;
    }
    return EXIT_OK;
}

static const char k_logits_help[] =
    "usage: lmio logits DIR --ids 1,2,3 --out FILE.npy\n"
    "\n"
    "Run the reference GPT-2 (fp32) on the ids and write the logits, float32 of\n"
    "shape (len(ids), vocab_size), as a NumPy .npy file.\n";

static int cmd_logits(int argc, char **argv)
{
    const char *dir = NULL, *ids_s = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (is_help(argv[i])) { fputs(k_logits_help, stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--ids")) { if (++i >= argc) return usage_error("logits", "--ids needs a list"); ids_s = argv[i]; }
        else if (!strcmp(argv[i], "--out")) { if (++i >= argc) return usage_error("logits", "--out needs a file"); out = argv[i]; }
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("logits", "unknown option '%s'", argv[i]);
        else if (!dir) dir = argv[i];
        else return usage_error("logits", "unexpected argument '%s'", argv[i]);
    }
    int32_t *ids;
    size_t n;
    if (!dir || !ids_s || !out) return usage_error("logits", "%s", "needs DIR, --ids and --out");
    if (parse_ids(ids_s, &ids, &n) || n == 0) return usage_error("logits", "%s", "--ids must look like 1,2,3");
    loaded l;
    int rc = load_model(dir, 0, &l);
    if (rc) { free(ids); return rc; }
    size_t V = lmio_gpt2_vocab_size(l.model);
    float *logits = malloc(n * V * sizeof *logits);
    lmio_error err;
    if (!logits || lmio_gpt2_logits(l.model, ids, n, logits, &err)) {
        rc = logits ? fail(&err) : EXIT_BAD_INPUT;
    } else {
        /* .npy v1.0: magic, header length, a Python dict literal padded
         * with spaces so the data starts 64-byte aligned */
        char hdr[128];
        int hl = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu, %zu), }", n, V);
        int total = 10 + hl + 1;
        int pad = (64 - total % 64) % 64;
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.lmio-tmp", out);
        FILE *f = fopen(tmp, "wb");
        int ok = f != NULL;
        if (ok) {
            unsigned short hlen = (unsigned short)(hl + pad + 1);
            ok = fwrite("\x93NUMPY\x01\x00", 1, 8, f) == 8 && fputc(hlen & 0xFF, f) != EOF && fputc(hlen >> 8, f) != EOF &&
                 fwrite(hdr, 1, (size_t)hl, f) == (size_t)hl;
            for (int i = 0; ok && i < pad; i++) ok = fputc(' ', f) != EOF;
            ok = ok && fputc('\n', f) != EOF && fwrite(logits, sizeof *logits, n * V, f) == n * V;
            ok = (fclose(f) == 0) && ok;
        }
        if (!ok || rename(tmp, out) != 0) {
            fprintf(stderr, "%s: error: %s: cannot write\n", g_prog, out);
            remove(tmp);
            rc = EXIT_BAD_INPUT;
        }
    }
    free(logits);
    free(ids);
    loaded_free(&l);
    return rc;
}

/* Invalid UTF-8 (a token may end inside a character) becomes U+FFFD, as
 * Hugging Face's decode does, so the JSON stays valid. */
static char *utf8_lossy(const char *s, size_t n)
{
    char *o = malloc(n * 3 + 1), *p = o;
    size_t i = 0;
    while (o && i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        int ok = len && i + len <= n;
        for (size_t k = 1; ok && k < len; k++) ok = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (ok && len == 2 && c < 0xC2) ok = 0;
        if (ok) { memcpy(p, s + i, len); p += len; i += len; }
        else { memcpy(p, "\xEF\xBF\xBD", 3); p += 3; i++; }
    }
    if (o) *p = 0;
    return o;
}

static const char k_generate_help[] =
    "usage: lmio generate DIR --prompt TEXT [-n N] [--greedy | --temperature T --seed S] [--json]\n"
    "\n"
    "Continue TEXT with the reference GPT-2: N new tokens (default 32), greedy by\n"
    "default, or sampled at temperature T with seed S (reproducible). Stops early\n"
    "at the config's eos_token_id. Prints the continuation, or with --json\n"
    "{\"prompt_ids\": [...], \"ids\": [...new ids...], \"text\": \"...\"}.\n";

static int cmd_generate(int argc, char **argv)
{
    const char *dir = NULL, *prompt = NULL;
    long n_new = 32;
    int json = 0, greedy = 1;
    double temp = 1.0;
    unsigned long long seed = 0;
    for (int i = 1; i < argc; i++) {
        char *end;
        if (is_help(argv[i])) { fputs(k_generate_help, stdout); return EXIT_OK; }
        else if (!strcmp(argv[i], "--prompt")) { if (++i >= argc) return usage_error("generate", "--prompt needs text"); prompt = argv[i]; }
        else if (!strcmp(argv[i], "-n")) {
            if (++i >= argc || (n_new = strtol(argv[i], &end, 10)) < 0 || *end) return usage_error("generate", "%s", "-n needs a count");
        } else if (!strcmp(argv[i], "--greedy")) greedy = 1;
        else if (!strcmp(argv[i], "--temperature")) {
            if (++i >= argc || !((temp = strtod(argv[i], &end)) > 0) || *end) return usage_error("generate", "%s", "--temperature needs a number > 0");
            greedy = 0;
        } else if (!strcmp(argv[i], "--seed")) {
            if (++i >= argc) return usage_error("generate", "%s", "--seed needs a number");
            seed = strtoull(argv[i], &end, 10);
            if (*end) return usage_error("generate", "%s", "--seed needs a number");
        } else if (!strcmp(argv[i], "--json")) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return usage_error("generate", "unknown option '%s'", argv[i]);
        else if (!dir) dir = argv[i];
        else return usage_error("generate", "unexpected argument '%s'", argv[i]);
    }
    if (!dir || !prompt) return usage_error("generate", "%s", "needs DIR and --prompt");
    loaded l;
    int rc = load_model(dir, 1, &l);
    if (rc) return rc;
    lmio_error err;
    int32_t *pids = NULL, *out = malloc(((size_t)n_new + 1) * sizeof *out);
    size_t np = 0, nout = 0;
    char *text = NULL;
    size_t tl = 0;
    lmio_generate_opts go = LMIO_GENERATE_OPTS_INIT;
    go.greedy = greedy;
    go.temperature = (float)temp;
    go.seed = seed;
    int64_t eos;
    if (lmio_config_get_int(l.cfg, "eos_token_id", &eos, NULL) == LMIO_OK) go.stop_id = (int32_t)eos;
    if (!out || lmio_tokenizer_encode(l.tok, prompt, strlen(prompt), &pids, &np, &err) ||
        (np == 0 && (fprintf(stderr, "%s: error: the prompt encodes to no tokens\n", g_prog), 1)) ||
        lmio_gpt2_generate(l.model, pids, np, (size_t)n_new, &go, out, &nout, &err) ||
        lmio_tokenizer_decode(l.tok, out, nout, &text, &tl, &err)) {
        rc = np == 0 && pids ? EXIT_BAD_INPUT : fail(&err);
    } else if (json) {
        json_t *root = json_object(), *a = json_array(), *b = json_array();
        for (size_t i = 0; i < np; i++) json_array_append_new(a, json_integer(pids[i]));
        for (size_t i = 0; i < nout; i++) json_array_append_new(b, json_integer(out[i]));
        char *clean = utf8_lossy(text, tl);
        json_object_set_new(root, "prompt_ids", a);
        json_object_set_new(root, "ids", b);
        json_object_set_new(root, "text", json_string(clean ? clean : ""));
        char *s = json_dumps(root, JSON_COMPACT);
        if (s) puts(s);
        free(s);
        free(clean);
        json_decref(root);
    } else {
        char *clean = utf8_lossy(text, tl);
        puts(clean ? clean : "");
        free(clean);
    }
    lmio_free(text);
    lmio_free(pids);
    free(out);
    loaded_free(&l);
    return rc;
}

/* ---- main ---- */

static const char k_main_help[] =
    "usage: lmio COMMAND [ARGS]\n"
    "\n"
    "Save, load, validate and convert trained language models.\n"
    "\n"
    "commands:\n"
    "  inspect PATH|DIR [--json]             show format, metadata and tensors\n"
    "  verify PATH|DIR                       validate a file or directory completely\n"
    "  convert IN OUT [--dtype f32|f16|bf16] rewrite, converting floating tensors\n"
    "  example OUT                           write the built-in example model\n"
    "  tokenizer encode|decode|train ...     GPT-2 byte-level BPE (see --help)\n"
    "  logits DIR --ids 1,2,3 --out F.npy    reference GPT-2 logits as .npy\n"
    "  generate DIR --prompt TEXT [-n N]     continue a prompt (greedy or sampled)\n"
    "  version                               print lmio's version\n"
    "\n"
    "Each command takes --help. Exit codes: 0 success, 1 invalid input or failed\n"
    "verification, 2 usage error.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(k_main_help, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) { fputs(k_main_help, stdout); return EXIT_OK; }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        printf("lmio %s\n", lmio_version());
        return EXIT_OK;
    }
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 1, argv + 1);
    if (strcmp(cmd, "verify") == 0) return cmd_verify(argc - 1, argv + 1);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc - 1, argv + 1);
    if (strcmp(cmd, "example") == 0) return cmd_example(argc - 1, argv + 1);
    if (strcmp(cmd, "tokenizer") == 0) return cmd_tokenizer(argc - 1, argv + 1);
    if (strcmp(cmd, "logits") == 0) return cmd_logits(argc - 1, argv + 1);
    if (strcmp(cmd, "generate") == 0) return cmd_generate(argc - 1, argv + 1);
    fprintf(stderr, "%s: unknown command '%s'\n\n%s", g_prog, cmd, k_main_help);
    return EXIT_USAGE;
}
