/* lmio's side of bench/run.sh: times save, open and conversion on the state
 * dict in IN (copied into ordinary memory first, as a training program would
 * hold it) and prints medians as JSON. Never part of the tests. */
#define _DEFAULT_SOURCE /* sync */
#include "lmio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void die(const lmio_error *e)
{
    fprintf(stderr, "lmio_bench: %s\n", e->message);
    exit(1);
}

/* from_pretrained of a directory (config + weights + model ready), and
 * tokenizer encode throughput: the issue-3 measurements. */
static int bench_pretrained(const char *dir, int runs)
{
    lmio_error err;
    double t_load[100];
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        lmio_config *cfg;
        lmio_statedict *w;
        lmio_model *m;
        if (lmio_pretrained_load(dir, &cfg, &w, NULL, &err) || lmio_model_create(cfg, w, &m, &err)) die(&err);
        t_load[r] = now() - t0;
        lmio_model_free(m);
        lmio_statedict_free(w);
        lmio_config_free(cfg);
    }
    printf("{\"from_pretrained\": %.6f}\n", median(t_load, runs));
    return 0;
}

static int bench_tokenize(const char *vocab, const char *merges, const char *text_path, int runs)
{
    lmio_error err;
    lmio_tokenizer *tok;
    static const char *const eot[] = {"<|endoftext|>"};
    if (lmio_tokenizer_load_files(vocab, merges, eot, 1, &tok, &err)) die(&err);
    FILE *f = fopen(text_path, "rb");
    if (!f) return 1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n);
    if (fread(text, 1, (size_t)n, f) != (size_t)n) return 1;
    fclose(f);
    double t[100];
    size_t count = 0;
    for (int r = 0; r < runs; r++) {
        int32_t *ids;
        double t0 = now();
        if (lmio_tokenizer_encode(tok, text, (size_t)n, &ids, &count, &err)) die(&err);
        t[r] = now() - t0;
        lmio_free(ids);
    }
    printf("{\"encode\": %.6f, \"bytes\": %ld, \"tokens\": %zu}\n", median(t, runs), n, count);
    free(text);
    lmio_tokenizer_free(tok);
    return 0;
}

/* The state dict in IN, copied into ordinary memory as a training program
 * would hold it. */
static lmio_statedict *load_copy(const char *in)
{
    lmio_error err;
    lmio_statedict *src, *mem;
    if (lmio_statedict_open(in, NULL, &src, &err)) die(&err);
    if (lmio_statedict_create(&mem, &err)) die(&err);
    for (size_t i = 0; i < lmio_statedict_count(src); i++) {
        lmio_tensor t;
        lmio_statedict_get(src, i, &t, NULL);
        if (lmio_statedict_add(mem, t.name, t.dtype, t.ndim, t.shape, t.data, t.nbytes, LMIO_COPY, &err)) die(&err);
    }
    lmio_statedict_free(src);
    return mem;
}

/* PyTorch checkpoints (issue 10): save of IN's tensors as a .bin, then
 * open (zero-copy views) and open + read every byte of the .bin torch.save
 * wrote from the same tensors (PT). */
static int bench_torch(const char *in, const char *pt, const char *outdir, int runs)
{
    lmio_error err;
    lmio_statedict *mem = load_copy(in);
    char out[4096];
    snprintf(out, sizeof out, "%s/lmio.bin", outdir);
    double t_save[100], t_open[100], t_read[100];
    for (int r = 0; r < runs; r++) {
        unlink(out);
        sync();
        lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
        o.durable = 0;
        double t0 = now();
        if (lmio_statedict_save(mem, out, "pytorch", &o, &err)) die(&err);
        t_save[r] = now() - t0;
    }
    volatile uint64_t sink = 0;
    for (int r = 0; r < runs; r++) {
        lmio_statedict *sd;
        double t0 = now();
        if (lmio_statedict_open(pt, NULL, &sd, &err)) die(&err);
        t_open[r] = now() - t0;
        uint64_t acc = 0;
        for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
            lmio_tensor t;
            lmio_statedict_get(sd, i, &t, NULL);
            const uint64_t *p = t.data;
            for (uint64_t k = 0; k < t.nbytes / 8; k++) acc += p[k];
        }
        sink += acc;
        t_read[r] = now() - t0;
        lmio_statedict_free(sd);
    }
    printf("{\"save_bin\": %.6f, \"open_bin\": %.6f, \"open_read_bin\": %.6f, \"sink\": %llu}\n", median(t_save, runs),
           median(t_open, runs), median(t_read, runs), (unsigned long long)(sink & 1));
    lmio_statedict_free(mem);
    return 0;
}

/* Manifest hashing (issue 9): writes DIR/model, a sharded directory of
 * `mb` MB of random f32 (shards of mb/4), then times lmio_manifest_check on
 * it (every file read and SHA-256'd, every tensor CRC-32'd, one thread per
 * core), page cache warm. Prints the save time and the check's median. */
static int bench_manifest(const char *dir, int mb, int runs)
{
    lmio_error err;
    lmio_statedict *sd;
    if (lmio_statedict_create(&sd, &err)) die(&err);
    size_t per = (size_t)16 << 20, n = ((size_t)mb * 1000000 + per - 1) / per;
    float *v = malloc(per);
    uint64_t x = 88172645463325252ULL;
    for (size_t i = 0; i < per / 4; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v[i] = (float)(x >> 40) / (float)(1 << 24) - 0.5f;
    }
    for (size_t k = 0; k < n; k++) {
        char name[64];
        uint64_t shape[1] = {per / 4};
        v[0] = (float)k; /* distinct tensors */
        snprintf(name, sizeof name, "layer.%zu.weight", k);
        if (lmio_statedict_add(sd, name, LMIO_DTYPE_F32, 1, shape, v, per, LMIO_COPY, &err)) die(&err);
    }
    free(v);
    char out[4096];
    snprintf(out, sizeof out, "%s/model", dir);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = (uint64_t)mb * 1000000 / 4;
    o.durable = 0;
    double t0 = now();
    if (lmio_pretrained_save(out, NULL, sd, NULL, &o, &err)) die(&err);
    double t_save = now() - t0;
    lmio_statedict_free(sd);
    double t[100];
    if (lmio_manifest_check(out, NULL, NULL, &err)) die(&err); /* warm the cache */
    for (int r = 0; r < runs; r++) {
        t0 = now();
        if (lmio_manifest_check(out, NULL, NULL, &err)) die(&err);
        t[r] = now() - t0;
    }
    printf("{\"bytes\": %zu, \"save_with_manifest\": %.6f, \"manifest_check\": %.6f}\n", n * per, t_save,
           median(t, runs));
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && !strcmp(argv[1], "manifest")) return bench_manifest(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (argc >= 6 && !strcmp(argv[1], "torch")) return bench_torch(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (argc >= 4 && !strcmp(argv[1], "pretrained")) return bench_pretrained(argv[2], atoi(argv[3]));
    if (argc >= 6 && !strcmp(argv[1], "tokenize")) return bench_tokenize(argv[2], argv[3], argv[4], atoi(argv[5]));
    if (argc < 4) {
        fprintf(stderr, "usage: lmio_bench IN.safetensors OUTDIR RUNS\n"
                        "       lmio_bench pretrained DIR RUNS\n"
                        "       lmio_bench torch IN.safetensors TORCH_SAVED.bin OUTDIR RUNS\n"
                        "       lmio_bench tokenize VOCAB.json MERGES.txt TEXT RUNS\n"
                        "       lmio_bench manifest OUTDIR MB RUNS\n");
        return 2;
    }
    const char *in = argv[1], *outdir = argv[2];
    int runs = atoi(argv[3]);
    if (runs < 1 || runs > 100) runs = 5;
    lmio_error err;
    lmio_statedict *src, *mem;
    if (lmio_statedict_open(in, NULL, &src, &err)) die(&err);
    if (lmio_statedict_create(&mem, &err)) die(&err);
    for (size_t i = 0; i < lmio_statedict_count(src); i++) {
        lmio_tensor t;
        lmio_statedict_get(src, i, &t, NULL);
        if (lmio_statedict_add(mem, t.name, t.dtype, t.ndim, t.shape, t.data, t.nbytes, LMIO_COPY, &err)) die(&err);
    }
    lmio_metadata_set(mem, "format", "pt", NULL);
    lmio_statedict_free(src);

    char out[4096];
    snprintf(out, sizeof out, "%s/lmio.safetensors", outdir);
    double t_save[100], t_save_durable[100], t_open[100], t_read[100], t_bf16_file[100];
    for (int r = 0; r < runs; r++) {
        unlink(out);
        sync(); /* as the Python side does before each timed write */
        lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
        o.durable = 0;
        double t0 = now();
        if (lmio_safetensors_save(mem, out, &o, &err)) die(&err);
        t_save[r] = now() - t0;
        unlink(out);
        sync();
        o.durable = 1;
        t0 = now();
        if (lmio_safetensors_save(mem, out, &o, &err)) die(&err);
        t_save_durable[r] = now() - t0;
    }
    volatile uint64_t sink = 0;
    double t_open_many[50];
    for (int r = 0; r < 50; r++) { /* cheap, so many runs */
        lmio_statedict *sd;
        double t0 = now();
        if (lmio_statedict_open(out, NULL, &sd, &err)) die(&err);
        t_open_many[r] = now() - t0;
        lmio_statedict_free(sd);
    }
    for (int r = 0; r < runs; r++) {
        lmio_statedict *sd;
        double t0 = now();
        if (lmio_statedict_open(out, NULL, &sd, &err)) die(&err);
        t_open[r] = now() - t0;
        /* then read every byte, the analogue of load_file materialising */
        t0 = now();
        uint64_t acc = 0;
        for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
            lmio_tensor t;
            lmio_statedict_get(sd, i, &t, NULL);
            const uint64_t *p = t.data;
            for (uint64_t k = 0; k < t.nbytes / 8; k++) acc += p[k];
        }
        sink += acc;
        t_read[r] = t_open[r] + (now() - t0);
        lmio_statedict_free(sd);
    }
    char bf[4096];
    snprintf(bf, sizeof bf, "%s/lmio-bf16.safetensors", outdir);
    for (int r = 0; r < runs; r++) {
        lmio_statedict *sd;
        double t0 = now();
        if (lmio_statedict_open(out, NULL, &sd, &err)) die(&err);
        lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
        o.dtype = LMIO_DTYPE_BF16;
        o.durable = 0;
        if (lmio_safetensors_save(sd, bf, &o, &err)) die(&err);
        t_bf16_file[r] = now() - t0;
        lmio_statedict_free(sd);
        unlink(bf);
    }

    /* conversion kernels on one core, 64 Mi elements, warm destination */
    size_t n = (size_t)1 << 26;
    float *f = malloc(n * 4);
    uint16_t *h = malloc(n * 2);
    for (size_t i = 0; i < n; i++) f[i] = (float)((double)(i % 1000003) * 1e-4 - 50.0);
    memset(h, 0, n * 2);
    double t_f16[100], t_bf16[100], t_f16_port[100], t_bf16_port[100];
    for (int r = 0; r < runs; r++) {
        double t0 = now();
        lmio_convert(h, LMIO_DTYPE_F16, f, LMIO_DTYPE_F32, n, NULL);
        t_f16[r] = now() - t0;
        t0 = now();
        lmio_convert(h, LMIO_DTYPE_BF16, f, LMIO_DTYPE_F32, n, NULL);
        t_bf16[r] = now() - t0;
        lmio_simd prev = lmio_set_simd(LMIO_SIMD_PORTABLE);
        t0 = now();
        lmio_convert(h, LMIO_DTYPE_F16, f, LMIO_DTYPE_F32, n, NULL);
        t_f16_port[r] = now() - t0;
        t0 = now();
        lmio_convert(h, LMIO_DTYPE_BF16, f, LMIO_DTYPE_F32, n, NULL);
        t_bf16_port[r] = now() - t0;
        lmio_set_simd(prev);
    }
    printf("{\"save\": %.6f, \"save_durable\": %.6f, \"open\": %.6f, \"open_read_all\": %.6f, "
           "\"convert_file_bf16\": %.6f, \"f16_gelems\": %.3f, \"bf16_gelems\": %.3f, "
           "\"f16_gelems_portable\": %.3f, \"bf16_gelems_portable\": %.3f, \"simd\": \"%s\", \"sink\": %llu}\n",
           median(t_save, runs), median(t_save_durable, runs), median(t_open_many, 50), median(t_read, runs),
           median(t_bf16_file, runs), n / median(t_f16, runs) / 1e9, n / median(t_bf16, runs) / 1e9,
           n / median(t_f16_port, runs) / 1e9, n / median(t_bf16_port, runs) / 1e9, lmio_simd_active(),
           (unsigned long long)(sink & 1));
    unlink(out);
    free(f);
    free(h);
    lmio_statedict_free(mem);
    return 0;
}
