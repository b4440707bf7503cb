/* The training layer (above model and checkpoint): the trainer
 * (trainer.c: parameters, AdamW, schedule, batches) and its checkpoints
 * (checkpoint.c: files, staged commit, latest, rotation, background
 * saves, resume). */
#ifndef LMIO_TRAIN_H
#define LMIO_TRAIN_H

#include "../checkpoint/checkpoint.h"

#include <pthread.h>

/* One trained tensor, in named_parameters() order. */
typedef struct lmio__param {
    char name[256];
    const lmio__tensor_spec *spec;
    int ndim;
    uint64_t shape[2];
    size_t offset, numel; /* into the flat buffers, in floats */
    int decay;            /* group 0 (weight decay) or 1 (none) */
} lmio__param;

typedef struct lmio__snapshot lmio__snapshot;

struct lmio_trainer {
    const lmio__arch *arch;
    lmio_config *cfg;
    const lmio_tokenizer *tok;
    lmio_tokenizer *owned_tok;
    lmio_trainer_opts o;
    lmio__param *p;
    size_t n_p;
    float *w, *g, *m, *v; /* flat: total floats each */
    size_t total;
    lmio_statedict *wsd, *gsd; /* views the architecture binds to */
    void *model, *gmodel;
    uint64_t step;        /* updates done */
    uint64_t rng;         /* splitmix64 state of the batch sampler */
    uint64_t batches;     /* batches drawn */
    uint64_t tokens_seen;
    int32_t *data;
    size_t n_data;
    uint64_t fingerprint;
    int resumed;          /* data must match these: */
    uint64_t run_n_data, run_fingerprint;
    int32_t *bids, *btg;
    lmio__buf log;        /* training_log.jsonl so far */
    double since_sum;     /* losses since the last checkpoint */
    uint64_t since_n;
    double best_metric;   /* lowest checkpoint loss; NAN when none */
    uint64_t best_step;
    /* background saves */
    lmio__snapshot *snap;
    pthread_t writer;
    int in_flight;
    lmio_status async_status;
    lmio_error async_err;
};

/* The cosine-with-warmup factor of update k (from 0). */
double lmio__lr_at(const lmio_trainer_opts *o, uint64_t k);
/* FNV-1a 64 of the ids' little-endian bytes: stable across runs. */
uint64_t lmio__fingerprint(const int32_t *ids, size_t n);
/* Builds a trainer's buffers for cfg (weights: copy these, else init). */
lmio_status lmio__trainer_build(const lmio_config *cfg, const lmio_statedict *weights, const lmio_trainer_opts *o,
                                lmio_trainer **out, lmio_error *err);

void lmio__snapshot_free(lmio__snapshot *sn);

#endif
