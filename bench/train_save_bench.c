/* How long training stalls per checkpoint: lmio_trainer_save in the
 * foreground (durable: every file and directory fsynced) against
 * --async-save (the call returns once weights and AdamW moments are copied
 * to memory; a writer thread does the rest, also durable).
 * usage: train_save_bench OUT_DIR [N_LAYER N_EMBD VOCAB RUNS] */
#include <lmio.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int die(const lmio_error *e)
{
    fprintf(stderr, "error: %s\n", e->message);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s OUT_DIR [N_LAYER N_EMBD VOCAB RUNS]\n", argv[0]);
        return 2;
    }
    const char *out = argv[1];
    int L = argc > 2 ? atoi(argv[2]) : 4, C = argc > 3 ? atoi(argv[3]) : 256, V = argc > 4 ? atoi(argv[4]) : 8192;
    int runs = argc > 5 ? atoi(argv[5]) : 5;
    lmio_error err;
    lmio_config *cfg;
    lmio_trainer *tr;
    if (lmio_config_create("gpt2", &cfg, &err) || lmio_config_set_int(cfg, "n_layer", L, &err) ||
        lmio_config_set_int(cfg, "n_embd", C, &err) || lmio_config_set_int(cfg, "n_head", 4, &err) ||
        lmio_config_set_int(cfg, "n_positions", 256, &err) || lmio_config_set_int(cfg, "vocab_size", V, &err) ||
        lmio_trainer_create(cfg, NULL, NULL, NULL, &tr, &err))
        return die(&err);
    lmio_statedict *w;
    lmio_trainer_tensors(tr, LMIO_TRAINER_WEIGHTS, &w, &err);
    uint64_t params = 0;
    for (size_t i = 0; i < lmio_statedict_count(w); i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        params += t.numel;
    }
    lmio_statedict_free(w);
    double sync_t[64], stall_t[64], total_t[64];
    if (runs > 64) runs = 64;
    lmio_checkpoint_opts co = LMIO_CHECKPOINT_OPTS_INIT;
    co.keep = 1;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/train-save-run", out);
    for (int r = 0; r < runs; r++) {
        co.async = 0;
        double t0 = now();
        if (lmio_trainer_save(tr, dir, &co, &err)) return die(&err);
        sync_t[r] = now() - t0;
        co.async = 1;
        t0 = now();
        if (lmio_trainer_save(tr, dir, &co, &err)) return die(&err);
        stall_t[r] = now() - t0;
        if (lmio_trainer_wait(tr, &err)) return die(&err);
        total_t[r] = now() - t0;
    }
    qsort(sync_t, (size_t)runs, sizeof(double), cmp_d);
    qsort(stall_t, (size_t)runs, sizeof(double), cmp_d);
    qsort(total_t, (size_t)runs, sizeof(double), cmp_d);
    double s = sync_t[runs / 2], a = stall_t[runs / 2];
    printf("checkpoint of %llu parameters (%.1f MB of weights + 2x moments, twice: safetensors and optimizer.pt)\n",
           (unsigned long long)params, (double)params * 4 / 1e6);
    printf("synchronous durable save: %8.1f ms (median of %d)\n", s * 1e3, runs);
    printf("async save, training stall: %6.1f ms (median), %.1f%% of the synchronous save\n", a * 1e3, 100 * a / s);
    printf("async save, background write: %.1f ms (median)\n", total_t[runs / 2] * 1e3);
    lmio_trainer_free(tr);
    lmio_config_free(cfg);
    return 0;
}
