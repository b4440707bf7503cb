/* Training checkpoints: RUN_DIR/checkpoint-<step>/ built in a staged
 * directory (the library's one directory commit, which also writes its
 * manifest) and renamed into place whole, then RUN_DIR/latest replaced
 * atomically, then old checkpoints rotated out. Background saves copy the
 * state to memory and hand it to one writer thread. Resume reads it back. */
#include "train.h"
#include "../formats/formats.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STATE_FORMAT 1 /* "lmio_trainer"."format_version" in trainer_state.json */

/* Everything a checkpoint holds that changes while training: a copy (async)
 * or the live buffers (sync). */
struct lmio__snapshot {
    const float *w, *m, *v;
    float *own;     /* 3 * cap floats, pre-touched, reused across saves */
    size_t cap;
    uint64_t step, rng, batches, tokens_seen, n_data, fingerprint;
    double ckpt_loss, best_metric;
    uint64_t best_step;
    const char *log; /* training_log.jsonl */
    size_t log_len;
    char *own_log;   /* the copy log points to in a background save */
    char run_dir[4096];
    lmio_checkpoint_opts co;
};

/* ---- the files ---- */

static lmio_status view_of(const lmio_trainer *tr, const float *base, const char *prefix, lmio_statedict *sd,
                           lmio_error *err)
{
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < tr->n_p && !s; i++) {
        const lmio__param *p = &tr->p[i];
        char name[300];
        snprintf(name, sizeof name, "%s%s", prefix, p->name);
        s = lmio_statedict_add(sd, name, LMIO_DTYPE_F32, p->ndim, p->shape, base + p->offset,
                               (uint64_t)p->numel * sizeof(float), LMIO_BORROW, err);
    }
    return s;
}

static lmio_status save_sd(const char *tmp, const char *name, const lmio_statedict *sd, const char *format,
                           int durable, lmio_error *err)
{
    char path[8192];
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.durable = durable;
    lmio_status s = lmio__path_join(path, sizeof path, tmp, name, err);
    return s ? s : lmio_statedict_save(sd, path, format, &so, err);
}

/* optimizer.safetensors: the moments under their parameters' names. */
static lmio_status write_moments(const lmio_trainer *tr, const lmio__snapshot *sn, const char *tmp, lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_create(&sd, err);
    if (s) return s;
    char step[32];
    snprintf(step, sizeof step, "%llu", (unsigned long long)sn->step);
    s = view_of(tr, sn->m, "exp_avg.", sd, err);
    if (!s) s = view_of(tr, sn->v, "exp_avg_sq.", sd, err);
    if (!s) s = lmio_metadata_set(sd, "format", "pt", err);
    if (!s) s = lmio_metadata_set(sd, "optimizer", "torch.optim.AdamW", err);
    if (!s) s = lmio_metadata_set(sd, "step", step, err);
    if (!s) s = save_sd(tmp, "optimizer.safetensors", sd, "safetensors", sn->co.durable, err);
    lmio_statedict_free(sd);
    return s;
}

static lmio__pyv py_float(const char *key, double f) { return (lmio__pyv){.kind = LMIO__PYV_FLOAT, .key = key, .f = f}; }
static lmio__pyv py_bool(const char *key, bool b) { return (lmio__pyv){.kind = LMIO__PYV_BOOL, .key = key, .i = b}; }

/* One of param_groups, with the keys and order torch 2.13's
 * AdamW(fused=True).state_dict() has under a LambdaLR (which adds
 * initial_lr); lr is the next update's. */
static void param_group(lmio__pyv *g, lmio__pyv *keys, const lmio__pyv *betas, const lmio__pyv *params,
                        size_t n_params, double wd, double lr, const lmio_trainer_opts *o)
{
    size_t k = 0;
    keys[k++] = py_float("weight_decay", wd);
    keys[k++] = py_float("lr", lr);
    keys[k++] = (lmio__pyv){.kind = LMIO__PYV_TUPLE, .key = "betas", .items = betas, .n = 2};
    keys[k++] = py_float("eps", o->eps);
    keys[k++] = py_bool("amsgrad", false);
    keys[k++] = py_bool("maximize", false);
    keys[k++] = (lmio__pyv){.kind = LMIO__PYV_NONE, .key = "foreach"};
    keys[k++] = py_bool("capturable", false);
    keys[k++] = py_bool("differentiable", false);
    keys[k++] = py_bool("fused", true);
    keys[k++] = py_bool("decoupled_weight_decay", true);
    keys[k++] = py_float("initial_lr", o->lr);
    keys[k++] = (lmio__pyv){.kind = LMIO__PYV_LIST, .key = "params", .items = params, .n = n_params};
    *g = (lmio__pyv){.kind = LMIO__PYV_DICT, .items = keys, .n = k};
}

#define GROUP_KEYS 13

/* optimizer.pt: torch.optim.AdamW's state_dict() as torch.save writes it,
 * so optimizer.load_state_dict(torch.load(...)) resumes: {"state": {id:
 * {"step": 0-dim f32, "exp_avg", "exp_avg_sq"}}, "param_groups": [...]},
 * ids numbered in param_groups order (group 0: tensors of 2+ dims,
 * decayed; group 1: the rest, weight decay 0). */
static lmio_status write_torch_optimizer(const lmio_trainer *tr, const lmio__snapshot *sn, const char *tmp,
                                         lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_create(&sd, err);
    if (s) return s;
    size_t n = tr->n_p ? tr->n_p : 1;
    /* one float per id: shared bytes would become one shared storage, and
     * torch's in-place step += 1 would then count once per parameter */
    float *steps = lmio__malloc(n * sizeof *steps);
    lmio__pyv *v = lmio__calloc(5 * n + 2 * GROUP_KEYS + 7, sizeof *v);
    if (!steps || !v) s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    lmio__pyv *state = v, *ent = v + n, *params = v + 4 * n, *keys = v + 5 * n, *groups = keys + 2 * GROUP_KEYS,
              *betas = groups + 2, *root = betas + 2;
    size_t id = 0, n_decay = 0;
    static const char *const parts[3] = {"step", "exp_avg", "exp_avg_sq"};
    for (int group = 0; group < 2 && !s; group++)
        for (size_t i = 0; i < tr->n_p && !s; i++) {
            const lmio__param *p = &tr->p[i];
            if (p->decay != (group == 0)) continue;
            uint64_t nb = (uint64_t)p->numel * sizeof(float);
            steps[id] = (float)sn->step;
            /* the tree refers to these by index; the names are lmio's
             * flattened reading of the file */
            char name[3][64];
            for (int k = 0; k < 3; k++) snprintf(name[k], sizeof name[k], "state.%zu.%s", id, parts[k]);
            s = lmio_statedict_add(sd, name[0], LMIO_DTYPE_F32, 0, NULL, &steps[id], sizeof(float), LMIO_BORROW, err);
            if (!s) s = lmio_statedict_add(sd, name[1], LMIO_DTYPE_F32, p->ndim, p->shape, sn->m + p->offset, nb,
                                           LMIO_BORROW, err);
            if (!s) s = lmio_statedict_add(sd, name[2], LMIO_DTYPE_F32, p->ndim, p->shape, sn->v + p->offset, nb,
                                           LMIO_BORROW, err);
            for (int k = 0; k < 3; k++)
                ent[3 * id + k] = (lmio__pyv){.kind = LMIO__PYV_TENSOR, .key = parts[k], .i = (int64_t)(3 * id + k)};
            state[id] = (lmio__pyv){.kind = LMIO__PYV_DICT, .ikey = (int64_t)id, .items = &ent[3 * id], .n = 3};
            params[id] = (lmio__pyv){.kind = LMIO__PYV_INT, .i = (int64_t)id};
            id++;
            n_decay += group == 0;
        }
    if (!s) {
        const lmio_trainer_opts *o = &tr->o;
        double lr = lmio__lr_at(o, sn->step);
        betas[0] = py_float(NULL, o->beta1);
        betas[1] = py_float(NULL, o->beta2);
        param_group(&groups[0], keys, betas, params, n_decay, o->weight_decay, lr, o);
        param_group(&groups[1], keys + GROUP_KEYS, betas, params + n_decay, id - n_decay, 0.0, lr, o);
        root[0] = (lmio__pyv){.kind = LMIO__PYV_DICT, .key = "state", .items = state, .n = id};
        root[1] = (lmio__pyv){.kind = LMIO__PYV_LIST, .key = "param_groups", .items = groups, .n = 2};
        root[2] = (lmio__pyv){.kind = LMIO__PYV_DICT, .items = root, .n = 2};
        char path[8192];
        lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
        so.durable = sn->co.durable;
        s = lmio__path_join(path, sizeof path, tmp, "optimizer.pt", err);
        if (!s) s = lmio__torch_save_tree(path, &root[2], sd, &so, err);
    }
    lmio_statedict_free(sd);
    lmio__free(steps);
    lmio__free(v);
    return s;
}

static lmio__json *u64_string(uint64_t v)
{
    char b[32];
    snprintf(b, sizeof b, "%llu", (unsigned long long)v);
    return lmio__json_string(b);
}

static lmio__json *two(double a) /* a value per param group */
{
    lmio__json *arr = lmio__json_array();
    lmio__json_append(arr, lmio__json_real(a));
    lmio__json_append(arr, lmio__json_real(a));
    return arr;
}

static lmio_status write_json(const char *tmp, const char *name, lmio__json *v, bool ok, int durable, lmio_error *err)
{
    char path[8192];
    lmio_status s = ok ? lmio__path_join(path, sizeof path, tmp, name, err)
                       : lmio__fail(err, LMIO_ERR_NOMEM, name, -1, "", "out of memory");
    if (!s) s = lmio__write_json_python(path, v, durable, err);
    lmio__json_decref(v);
    return s;
}

/* scheduler.json: LambdaLR.state_dict()'s fields (two param groups), and
 * what scheduler.pt cannot say: the schedule itself. */
static lmio_status write_scheduler(const lmio_trainer *tr, const lmio__snapshot *sn, const char *tmp, lmio_error *err)
{
    lmio__json *j = lmio__json_object(), *sched = lmio__json_object(), *lam = lmio__json_array();
    bool ok = lmio__json_set(j, "base_lrs", two(tr->o.lr));
    ok &= lmio__json_set(j, "last_epoch", lmio__json_integer((int64_t)sn->step));
    ok &= lmio__json_set(j, "_step_count", lmio__json_integer((int64_t)sn->step + 1));
    ok &= lmio__json_set(j, "_last_lr", two(lmio__lr_at(&tr->o, sn->step)));
    ok &= lmio__json_append(lam, lmio__json_object()) && lmio__json_append(lam, lmio__json_object());
    ok &= lmio__json_set(j, "lr_lambdas", lam);
    ok &= lmio__json_set(sched, "name", lmio__json_string("cosine_with_warmup"));
    ok &= lmio__json_set(sched, "warmup_steps", lmio__json_integer((int64_t)tr->o.warmup_steps));
    ok &= lmio__json_set(sched, "total_steps", lmio__json_integer((int64_t)tr->o.total_steps));
    ok &= lmio__json_set(sched, "num_cycles", lmio__json_real(0.5));
    ok &= lmio__json_set(j, "lmio_schedule", sched);
    return write_json(tmp, "scheduler.json", j, ok, sn->co.durable, err);
}

static lmio_status write_rng_data(const lmio_trainer *tr, const lmio__snapshot *sn, const char *tmp, lmio_error *err)
{
    lmio__json *r = lmio__json_object();
    bool ok = lmio__json_set(r, "generator", lmio__json_string("splitmix64"));
    ok &= lmio__json_set(r, "seed", u64_string(tr->o.seed));
    ok &= lmio__json_set(r, "state", u64_string(sn->rng));
    lmio_status s = write_json(tmp, "rng_state.json", r, ok, sn->co.durable, err);
    if (s) return s;
    lmio__json *d = lmio__json_object();
    char fp[32];
    snprintf(fp, sizeof fp, "%016llx", (unsigned long long)sn->fingerprint);
    ok = lmio__json_set(d, "tokens", lmio__json_integer((int64_t)sn->n_data));
    ok &= lmio__json_set(d, "fingerprint_fnv1a64", lmio__json_string(fp));
    ok &= lmio__json_set(d, "batches_drawn", lmio__json_integer((int64_t)sn->batches));
    ok &= lmio__json_set(d, "tokens_seen", lmio__json_integer((int64_t)sn->tokens_seen));
    ok &= lmio__json_set(d, "batch_size", lmio__json_integer((int64_t)tr->o.batch_size));
    ok &= lmio__json_set(d, "seq_len", lmio__json_integer((int64_t)tr->o.seq_len));
    return write_json(tmp, "data_state.json", d, ok, sn->co.durable, err);
}

/* log_history from the log's JSON lines, with the Trainer's key names. */
static bool log_history(const lmio__snapshot *sn, lmio__json *hist)
{
    bool ok = true;
    for (const char *p = sn->log, *end = sn->log + sn->log_len; p && p < end && ok;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lmio__json *line = NULL, *e = lmio__json_object();
        if (lmio__json_parse(p, n, "training_log.jsonl", 0, &line, NULL) == LMIO_OK) {
            const char *keys[][2] = {{"step", "step"}, {"loss", "loss"}, {"lr", "learning_rate"}, {"grad_norm", "grad_norm"}};
            for (size_t k = 0; k < 4; k++) {
                lmio__json *v = lmio__json_get(line, keys[k][0]);
                if (v) ok &= lmio__json_set(e, keys[k][1], lmio__json_incref(v));
            }
        }
        ok &= lmio__json_append(hist, e);
        lmio__json_decref(line);
        p += n + 1;
    }
    return ok;
}

static bool options_json(const lmio_trainer *tr, const lmio__snapshot *sn, lmio__json *o)
{
    const lmio_trainer_opts *x = &tr->o;
    bool ok = lmio__json_set(o, "format_version", lmio__json_integer(STATE_FORMAT));
    ok &= lmio__json_set(o, "lmio_version", lmio__json_string(LMIO_VERSION_STRING));
    ok &= lmio__json_set(o, "batch_size", lmio__json_integer((int64_t)x->batch_size));
    ok &= lmio__json_set(o, "seq_len", lmio__json_integer((int64_t)x->seq_len));
    ok &= lmio__json_set(o, "lr", lmio__json_real(x->lr));
    ok &= lmio__json_set(o, "warmup_steps", lmio__json_integer((int64_t)x->warmup_steps));
    ok &= lmio__json_set(o, "total_steps", lmio__json_integer((int64_t)x->total_steps));
    ok &= lmio__json_set(o, "beta1", lmio__json_real(x->beta1));
    ok &= lmio__json_set(o, "beta2", lmio__json_real(x->beta2));
    ok &= lmio__json_set(o, "eps", lmio__json_real(x->eps));
    ok &= lmio__json_set(o, "weight_decay", lmio__json_real(x->weight_decay));
    ok &= lmio__json_set(o, "max_grad_norm", lmio__json_real(x->max_grad_norm));
    ok &= lmio__json_set(o, "seed", u64_string(x->seed));
    ok &= lmio__json_set(o, "checkpoint_loss", isnan(sn->ckpt_loss) ? lmio__json_null() : lmio__json_real(sn->ckpt_loss));
    return ok;
}

/* trainer_state.json: TrainerState's names where they fit, and lmio's
 * options under "lmio_trainer". */
static lmio_status write_state(const lmio_trainer *tr, const lmio__snapshot *sn, const char *tmp, lmio_error *err)
{
    lmio__json *j = lmio__json_object(), *hist = lmio__json_array(), *o = lmio__json_object();
    bool best = !isnan(sn->best_metric);
    char bname[64];
    snprintf(bname, sizeof bname, "checkpoint-%llu", (unsigned long long)sn->best_step);
    bool ok = lmio__json_set(j, "global_step", lmio__json_integer((int64_t)sn->step));
    ok &= lmio__json_set(j, "max_steps", lmio__json_integer((int64_t)tr->o.total_steps));
    ok &= lmio__json_set(j, "epoch", lmio__json_real((double)sn->tokens_seen / (double)(sn->n_data ? sn->n_data : 1)));
    ok &= lmio__json_set(j, "train_batch_size", lmio__json_integer((int64_t)tr->o.batch_size));
    ok &= lmio__json_set(j, "num_input_tokens_seen", lmio__json_integer((int64_t)sn->tokens_seen));
    ok &= lmio__json_set(j, "logging_steps", lmio__json_integer(1));
    ok &= lmio__json_set(j, "best_metric", best ? lmio__json_real(sn->best_metric) : lmio__json_null());
    ok &= lmio__json_set(j, "best_global_step", best ? lmio__json_integer((int64_t)sn->best_step) : lmio__json_null());
    ok &= lmio__json_set(j, "best_model_checkpoint", best ? lmio__json_string(bname) : lmio__json_null());
    ok &= lmio__json_set(j, "is_hyper_param_search", lmio__json_bool(false));
    ok &= lmio__json_set(j, "is_local_process_zero", lmio__json_bool(true));
    ok &= lmio__json_set(j, "is_world_process_zero", lmio__json_bool(true));
    ok &= log_history(sn, hist);
    ok &= lmio__json_set(j, "log_history", hist);
    ok &= options_json(tr, sn, o);
    ok &= lmio__json_set(j, "lmio_trainer", o);
    return write_json(tmp, "trainer_state.json", j, ok, sn->co.durable, err);
}

static lmio_status write_all(const lmio_trainer *tr, const lmio__snapshot *sn, const char *tmp, lmio_error *err)
{
    lmio_statedict *w;
    lmio_pretrained_opts po = LMIO_PRETRAINED_OPTS_INIT;
    po.durable = sn->co.durable;
    lmio_status s = lmio_statedict_create(&w, err);
    if (s) return s;
    s = view_of(tr, sn->w, "", w, err);
    if (!s) s = lmio__pretrained_write(tmp, tr->cfg, w, tr->tok, &po, err);
    lmio_statedict_free(w);
    char path[8192];
    if (!s) s = write_moments(tr, sn, tmp, err);
    if (!s) s = write_torch_optimizer(tr, sn, tmp, err);
    if (!s) s = write_scheduler(tr, sn, tmp, err);
    if (!s) s = write_rng_data(tr, sn, tmp, err);
    if (!s) s = write_state(tr, sn, tmp, err);
    if (!s) s = lmio__path_join(path, sizeof path, tmp, "training_log.jsonl", err);
    if (!s) s = lmio__write_file(path, sn->log ? sn->log : "", sn->log_len, sn->co.durable, err);
    return s;
}

/* ---- the run directory ---- */

/* "checkpoint-<digits>" exactly: *step set. */
static bool ckpt_name(const char *n, uint64_t *step)
{
    if (strncmp(n, "checkpoint-", 11) || !n[11]) return false;
    uint64_t v = 0;
    for (const char *p = n + 11; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    *step = v;
    return true;
}

#define OLD_TAG ".lmio-old"

/* Removes what killed saves and rotations left: staged checkpoints no live
 * save holds (their flock is free) and checkpoints half deleted. */
static void clean_leftovers(const char *run_dir)
{
    DIR *d = opendir(run_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name, *tag;
        char base[256];
        if (strncmp(n, ".checkpoint-", 12)) continue;
        if ((tag = strstr(n, LMIO__TMP_TAG)) && (size_t)(tag - n - 1) < sizeof base) {
            memcpy(base, n + 1, (size_t)(tag - n - 1));
            base[tag - n - 1] = 0;
            lmio__temp_sweep(run_dir, base);
        } else if ((tag = strstr(n, OLD_TAG)) && !strcmp(tag, OLD_TAG)) {
            lmio__remove_tree_at(dirfd(d), n);
        }
    }
    closedir(d);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The steps of run_dir's checkpoints, ascending; *n of them. */
static lmio_status list_steps(const char *run_dir, uint64_t **steps, size_t *n, lmio_error *err)
{
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(run_dir);
    if (!d) return lmio__fail(err, errno == ENOENT ? LMIO_ERR_NOT_FOUND : LMIO_ERR_IO, run_dir, -1, "",
                              "cannot list the run directory: %s", strerror(errno));
    size_t cap = 0;
    lmio_status s = LMIO_OK;
    struct dirent *e;
    uint64_t step;
    while ((e = readdir(d)) && !s) {
        struct stat st;
        if (!ckpt_name(e->d_name, &step) || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) || !S_ISDIR(st.st_mode))
            continue;
        if (!lmio__grow((void **)steps, sizeof **steps, *n + 1, &cap))
            s = lmio__fail(err, LMIO_ERR_NOMEM, run_dir, -1, "", "out of memory");
        else (*steps)[(*n)++] = step;
    }
    closedir(d);
    if (*n > 1) qsort(*steps, *n, sizeof **steps, cmp_u64);
    return s;
}

lmio_status lmio_run_latest(const char *run_dir, char *path, size_t cap, uint64_t *step, lmio_error *err)
{
    if (!run_dir || !path || !step) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    clean_leftovers(run_dir);
    uint64_t *steps;
    size_t n;
    lmio_status s = list_steps(run_dir, &steps, &n, err);
    if (!s && !n) s = lmio__fail(err, LMIO_ERR_NOT_FOUND, run_dir, -1, "", "no checkpoint-<step> directory");
    if (!s) {
        *step = steps[n - 1];
        int w = snprintf(path, cap, "%s/checkpoint-%llu", run_dir, (unsigned long long)*step);
        if (w < 0 || (size_t)w >= cap) s = lmio__fail(err, LMIO_ERR_LIMIT, run_dir, -1, "", "path too long");
    }
    lmio__free(steps);
    return s;
}

/* Keeps the newest `keep` (and the best): older ones are renamed out of
 * their checkpoint name first, so a crash mid-removal never leaves a
 * partial directory under a name resume would pick. */
static void rotate(const char *run_dir, const lmio__snapshot *sn)
{
    uint64_t *steps;
    size_t n;
    if (!sn->co.keep || list_steps(run_dir, &steps, &n, NULL)) return;
    bool best = sn->co.keep_best && !isnan(sn->best_metric);
    size_t protected_n = 1 + (best && sn->best_step != steps[n - 1]), keep = sn->co.keep;
    if (keep < protected_n) keep = protected_n;
    for (size_t i = 0; i + 1 < n && n - i > keep; i++) {
        if (best && steps[i] == sn->best_step) {
            keep--; /* the best stays and counts among the kept */
            continue;
        }
        char from[4200], to[4200];
        snprintf(from, sizeof from, "%s/checkpoint-%llu", run_dir, (unsigned long long)steps[i]);
        snprintf(to, sizeof to, "%s/.checkpoint-%llu" OLD_TAG, run_dir, (unsigned long long)steps[i]);
        if (rename(from, to) == 0) lmio__remove_tree_at(AT_FDCWD, to);
    }
    lmio__free(steps);
}

/* Stage, write, commit, point latest at it, rotate. */
static lmio_status write_checkpoint(const lmio_trainer *tr, const lmio__snapshot *sn, lmio_error *err)
{
    char dir[4200], latest[4200], name[64];
    snprintf(name, sizeof name, "checkpoint-%llu", (unsigned long long)sn->step);
    if (snprintf(dir, sizeof dir, "%s/%s", sn->run_dir, name) >= (int)sizeof dir ||
        snprintf(latest, sizeof latest, "%s/latest", sn->run_dir) >= (int)sizeof latest)
        return lmio__fail(err, LMIO_ERR_LIMIT, sn->run_dir, -1, "", "path too long");
    if (mkdir(sn->run_dir, 0777) != 0 && errno != EEXIST)
        return lmio__fail(err, LMIO_ERR_IO, sn->run_dir, -1, "", "cannot create the run directory: %s", strerror(errno));
    clean_leftovers(sn->run_dir);
    lmio__stage st;
    lmio_status s = lmio__stage_begin(&st, dir, sn->co.durable, 0, NULL, err);
    if (s) return s;
    s = write_all(tr, sn, st.tmp, err);
    if (s) lmio__stage_fix_error(&st, err);
    if (!s) s = lmio__stage_commit(&st, err);
    lmio__stage_abort(&st);
    strcat(name, "\n");
    if (!s) s = lmio_file_write_atomic(latest, name, strlen(name), sn->co.durable, err);
    if (!s) rotate(sn->run_dir, sn);
    return s;
}

/* ---- saving, in the foreground or the background ---- */

static void *writer_main(void *arg)
{
    lmio_trainer *tr = arg;
    lmio_error_clear(&tr->async_err);
    tr->async_status = write_checkpoint(tr, tr->snap, &tr->async_err);
    return NULL;
}

lmio_status lmio_trainer_wait(lmio_trainer *tr, lmio_error *err)
{
    if (!tr || !tr->in_flight) return LMIO_OK;
    pthread_join(tr->writer, NULL);
    tr->in_flight = 0;
    if (tr->async_status && err) *err = tr->async_err;
    return tr->async_status;
}

static lmio_status snapshot(lmio_trainer *tr, lmio__snapshot *sn, const char *run_dir, const lmio_checkpoint_opts *co,
                            lmio_error *err)
{
    if (strlen(run_dir) >= sizeof sn->run_dir)
        return lmio__fail(err, LMIO_ERR_LIMIT, run_dir, -1, "", "path too long");
    strcpy(sn->run_dir, run_dir);
    sn->co = *co;
    sn->step = tr->step;
    sn->rng = tr->rng;
    sn->batches = tr->batches;
    sn->tokens_seen = tr->tokens_seen;
    sn->n_data = tr->n_data;
    sn->fingerprint = tr->fingerprint;
    sn->ckpt_loss = tr->since_n ? tr->since_sum / (double)tr->since_n : NAN;
    if (!isnan(sn->ckpt_loss) && (isnan(tr->best_metric) || sn->ckpt_loss < tr->best_metric)) {
        tr->best_metric = sn->ckpt_loss;
        tr->best_step = tr->step;
    }
    tr->since_sum = 0;
    tr->since_n = 0;
    sn->best_metric = tr->best_metric;
    sn->best_step = tr->best_step;
    if (!co->async) {
        sn->w = tr->w, sn->m = tr->m, sn->v = tr->v;
        sn->log = tr->log.data, sn->log_len = tr->log.len;
        return LMIO_OK;
    }
    /* the only pause of a background save: three copies into buffers
     * touched once when first made, and the log */
    if (sn->cap < tr->total) {
        lmio__free(sn->own);
        if (!(sn->own = lmio__malloc(3 * tr->total * sizeof(float))))
            return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for a checkpoint snapshot");
        memset(sn->own, 0, 3 * tr->total * sizeof(float));
        sn->cap = tr->total;
    }
    memcpy(sn->own, tr->w, tr->total * sizeof(float));
    memcpy(sn->own + tr->total, tr->m, tr->total * sizeof(float));
    memcpy(sn->own + 2 * tr->total, tr->v, tr->total * sizeof(float));
    sn->w = sn->own, sn->m = sn->own + tr->total, sn->v = sn->own + 2 * tr->total;
    lmio__free(sn->own_log);
    sn->own_log = tr->log.len ? lmio__malloc(tr->log.len) : NULL;
    if (tr->log.len && !sn->own_log) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    if (tr->log.len) memcpy(sn->own_log, tr->log.data, tr->log.len);
    sn->log = sn->own_log;
    sn->log_len = tr->log.len;
    return LMIO_OK;
}

void lmio__snapshot_free(lmio__snapshot *sn)
{
    if (!sn) return;
    lmio__free(sn->own);
    lmio__free(sn->own_log);
    lmio__free(sn);
}

lmio_status lmio_trainer_save(lmio_trainer *tr, const char *run_dir, const lmio_checkpoint_opts *opts, lmio_error *err)
{
    lmio_checkpoint_opts co = LMIO_CHECKPOINT_OPTS_INIT;
    lmio_status s = lmio__opts_read(&co, sizeof co, opts, "lmio_checkpoint_opts", err);
    if (s) return s;
    if (!tr || !run_dir || !*run_dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if ((s = lmio_trainer_wait(tr, err))) return s; /* at most one in flight; its failure is reported */
    if (!tr->snap && !(tr->snap = lmio__calloc(1, sizeof *tr->snap)))
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    if ((s = snapshot(tr, tr->snap, run_dir, &co, err))) return s;
    if (!co.async) return write_checkpoint(tr, tr->snap, err);
    tr->async_status = LMIO_OK;
    if (pthread_create(&tr->writer, NULL, writer_main, tr) != 0) /* no thread: save in the foreground */
        return write_checkpoint(tr, tr->snap, err);
    tr->in_flight = 1;
    return LMIO_OK;
}
