/* Resume: a trainer rebuilt from a checkpoint directory lmio_trainer_save
 * wrote, exactly as it was when saved. */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lmio_status load_json(const char *dir, const char *name, lmio__json **out, lmio_error *err)
{
    char path[8192];
    lmio_status s = lmio__path_join(path, sizeof path, dir, name, err);
    return s ? s : lmio__json_load_file(path, out, err);
}

/* A number field of obj (file name for messages). */
static lmio_status num(const lmio__json *obj, const char *file, const char *key, double *out, lmio_error *err)
{
    lmio__json *v = lmio__json_get(obj, key);
    if (!v || !lmio__json_is_number(v))
        return lmio__fail(err, LMIO_ERR_FORMAT, file, -1, key, "\"%s\" missing or not a number; expected a number", key);
    *out = lmio__json_number_value(v);
    return LMIO_OK;
}

static lmio_status count(const lmio__json *obj, const char *file, const char *key, uint64_t *out, lmio_error *err)
{
    lmio__json *v = lmio__json_get(obj, key);
    if (!v || !lmio__json_is_integer(v) || lmio__json_integer_value(v) < 0)
        return lmio__fail(err, LMIO_ERR_FORMAT, file, -1, key, "\"%s\" missing or not a count; expected an integer >= 0",
                          key);
    *out = (uint64_t)lmio__json_integer_value(v);
    return LMIO_OK;
}

/* A u64 written as a decimal string (JSON numbers lose bits past 2^53). */
static lmio_status u64s(const lmio__json *obj, const char *file, const char *key, uint64_t *out, lmio_error *err)
{
    lmio__json *v = lmio__json_get(obj, key);
    const char *t = v && lmio__json_is_string(v) ? lmio__json_string_value(v) : NULL;
    char *end;
    errno = 0;
    unsigned long long x = t && *t >= '0' && *t <= '9' ? strtoull(t, &end, 10) : 0;
    if (!t || !(*t >= '0' && *t <= '9') || *end || errno)
        return lmio__fail(err, LMIO_ERR_FORMAT, file, -1, key, "\"%s\" missing or not a decimal string; expected one", key);
    *out = x;
    return LMIO_OK;
}

static lmio_status read_options(const lmio__json *state, lmio_trainer_opts *o, lmio_error *err)
{
    const char *f = "trainer_state.json";
    lmio__json *x = lmio__json_get(state, "lmio_trainer");
    if (!x || !lmio__json_is_object(x))
        return lmio__fail(err, LMIO_ERR_FORMAT, f, -1, "lmio_trainer", "no \"lmio_trainer\" object; expected a "
                          "checkpoint lmio_trainer_save wrote");
    uint64_t fv, b, t;
    lmio_status s;
    if ((s = count(x, f, "format_version", &fv, err))) return s;
    if (fv != 1)
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, f, -1, "format_version",
                          "training state format %llu; expected 1", (unsigned long long)fv);
    if ((s = count(x, f, "batch_size", &b, err)) || (s = count(x, f, "seq_len", &t, err)) ||
        (s = num(x, f, "lr", &o->lr, err)) || (s = count(x, f, "warmup_steps", &o->warmup_steps, err)) ||
        (s = count(x, f, "total_steps", &o->total_steps, err)) || (s = num(x, f, "beta1", &o->beta1, err)) ||
        (s = num(x, f, "beta2", &o->beta2, err)) || (s = num(x, f, "eps", &o->eps, err)) ||
        (s = num(x, f, "weight_decay", &o->weight_decay, err)) ||
        (s = num(x, f, "max_grad_norm", &o->max_grad_norm, err)) || (s = u64s(x, f, "seed", &o->seed, err)))
        return s;
    if (!b || !t || b > (1u << 20) || t > (1u << 24))
        return lmio__fail(err, LMIO_ERR_FORMAT, f, -1, "batch_size", "batch_size %llu, seq_len %llu; expected 1..2^20, "
                          "1..2^24", (unsigned long long)b, (unsigned long long)t);
    o->batch_size = (size_t)b;
    o->seq_len = (size_t)t;
    return LMIO_OK;
}

/* step, best and the data position: trainer_state.json, rng_state.json,
 * data_state.json. */
static lmio_status read_position(lmio_trainer *tr, const char *dir, const lmio__json *state, lmio_error *err)
{
    lmio__json *rng = NULL, *data = NULL;
    lmio_status s = count(state, "trainer_state.json", "global_step", &tr->step, err);
    lmio__json *bm = lmio__json_get(state, "best_metric");
    if (!s && bm && lmio__json_is_number(bm)) {
        tr->best_metric = lmio__json_number_value(bm);
        s = count(state, "trainer_state.json", "best_global_step", &tr->best_step, err);
    }
    if (!s) s = load_json(dir, "rng_state.json", &rng, err);
    if (!s) s = u64s(rng, "rng_state.json", "state", &tr->rng, err);
    if (!s) s = load_json(dir, "data_state.json", &data, err);
    uint64_t fp = 0;
    lmio__json *f = data ? lmio__json_get(data, "fingerprint_fnv1a64") : NULL;
    const char *ft = f && lmio__json_is_string(f) ? lmio__json_string_value(f) : "";
    char *end = NULL;
    if (!s) fp = strtoull(ft, &end, 16);
    if (!s && (!*ft || *end))
        s = lmio__fail(err, LMIO_ERR_FORMAT, "data_state.json", -1, "fingerprint_fnv1a64", "not 16 hex digits");
    if (!s) s = count(data, "data_state.json", "tokens", &tr->run_n_data, err);
    if (!s) s = count(data, "data_state.json", "batches_drawn", &tr->batches, err);
    if (!s) s = count(data, "data_state.json", "tokens_seen", &tr->tokens_seen, err);
    tr->run_fingerprint = fp;
    tr->resumed = 1;
    lmio__json_decref(rng);
    lmio__json_decref(data);
    return s;
}

/* exp_avg.<name> and exp_avg_sq.<name> for every parameter. */
static lmio_status read_moments(lmio_trainer *tr, const char *dir, lmio_error *err)
{
    char path[8192];
    lmio_statedict *sd = NULL;
    lmio_status s = lmio__path_join(path, sizeof path, dir, "optimizer.safetensors", err);
    if (!s) s = lmio_statedict_open(path, NULL, &sd, err);
    for (size_t i = 0; i < tr->n_p && !s; i++) {
        const lmio__param *p = &tr->p[i];
        for (int k = 0; k < 2 && !s; k++) {
            char name[300];
            snprintf(name, sizeof name, "%s%s", k ? "exp_avg_sq." : "exp_avg.", p->name);
            lmio_tensor t;
            s = lmio_tensor_find(sd, name, &t, err);
            if (!s && (t.dtype != LMIO_DTYPE_F32 || t.numel != p->numel))
                s = lmio__fail(err, LMIO_ERR_FORMAT, path, -1, name, "\"%s\" is %s of %llu elements; expected F32 of %zu",
                               name, lmio_dtype_name(t.dtype), (unsigned long long)t.numel, p->numel);
            if (!s) s = lmio_tensor_read(&t, 0, (k ? tr->v : tr->m) + p->offset, p->numel * sizeof(float), err);
        }
    }
    lmio_statedict_free(sd);
    return s;
}

static lmio_status read_log(lmio_trainer *tr, const char *dir, lmio_error *err)
{
    char path[8192];
    lmio__file f;
    lmio_status s = lmio__path_join(path, sizeof path, dir, "training_log.jsonl", err);
    if (!s) s = lmio__file_open(path, 0, &f, err);
    if (s) return s;
    lmio__buf_put(&tr->log, f.data, (size_t)f.size);
    lmio__file_close(&f);
    return tr->log.oom ? lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory") : LMIO_OK;
}

lmio_status lmio_trainer_resume(const char *dir, uint64_t total_steps, lmio_trainer **out, lmio_error *err)
{
    if (!dir || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    lmio_config *cfg = NULL;
    lmio_statedict *w = NULL;
    lmio_tokenizer *tok = NULL;
    lmio__json *state = NULL;
    lmio_trainer *tr = NULL;
    lmio_trainer_opts o = LMIO_TRAINER_OPTS_INIT;
    lmio_status s = lmio_pretrained_load(dir, &cfg, &w, &tok, err);
    if (!s && !cfg) s = lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, "", "no config.json; expected a checkpoint");
    if (!s) s = load_json(dir, "trainer_state.json", &state, err);
    if (!s) s = read_options(state, &o, err);
    if (!s && total_steps) o.total_steps = total_steps;
    if (!s) s = lmio__trainer_build(cfg, w, &o, &tr, err);
    if (!s) {
        tr->owned_tok = tok;
        tr->tok = tok;
        tok = NULL;
        s = read_position(tr, dir, state, err);
    }
    if (!s) s = read_moments(tr, dir, err);
    if (!s) s = read_log(tr, dir, err);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
    lmio__json_decref(state);
    if (s) {
        lmio_trainer_free(tr);
        return s;
    }
    *out = tr;
    return LMIO_OK;
}
