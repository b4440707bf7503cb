/* The trainer: flat f32 buffers of weights, gradients and AdamW moments,
 * views of them the architecture's create binds to, batches from a token
 * stream, clipping, AdamW and the learning-rate schedule.
 * Built with -ffp-contract=off: AdamW's arithmetic must be exactly the one
 * written here (shared/reference/training-checkpoints.md §3.4). */
#include "train.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

double lmio__lr_at(const lmio_trainer_opts *o, uint64_t k)
{
    /* Transformers' get_cosine_schedule_with_warmup (num_cycles 0.5), in
     * double as LambdaLR computes it */
    uint64_t W = o->warmup_steps, T = o->total_steps;
    if (k < W) return o->lr * ((double)k / (double)(W > 1 ? W : 1));
    double progress = (double)(k - W) / (double)(T > W + 1 ? T - W : 1);
    double f = 0.5 * (1.0 + cos(3.141592653589793 * 0.5 * 2.0 * progress));
    return o->lr * (f > 0 ? f : 0.0);
}

uint64_t lmio__fingerprint(const int32_t *ids, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++)
        for (int b = 0; b < 4; b++) {
            h ^= (uint64_t)(((uint32_t)ids[i] >> (8 * b)) & 0xFF);
            h *= 0x100000001b3ULL;
        }
    return h;
}

/* ---- building ---- */

static lmio_status add_param(lmio_trainer *tr, const lmio__tensor_spec *ts, size_t layer, const uint64_t *dims,
                             size_t *cap, lmio_error *err)
{
    if (!lmio__grow((void **)&tr->p, sizeof *tr->p, tr->n_p + 1, cap))
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    lmio__param *p = &tr->p[tr->n_p];
    memset(p, 0, sizeof *p);
    if (!lmio__tensor_name(ts->hf_name, layer, p->name, sizeof p->name))
        return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, ts->hf_name, "tensor name too long");
    p->spec = ts;
    p->ndim = ts->ndim;
    p->numel = 1;
    for (int d = 0; d < ts->ndim; d++) {
        p->shape[d] = dims[ts->shape[d]];
        if (__builtin_mul_overflow(p->numel, (size_t)p->shape[d], &p->numel))
            return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, p->name, "tensor too large");
    }
    p->decay = ts->ndim >= 2;
    p->offset = tr->total;
    if (__builtin_add_overflow(tr->total, p->numel, &tr->total))
        return lmio__fail(err, LMIO_ERR_LIMIT, "", -1, p->name, "model too large");
    tr->n_p++;
    return LMIO_OK;
}

/* Whether the config builds the tensor at all (bind.c's rule for if_config). */
static bool exists(const lmio_trainer *tr, const lmio__tensor_spec *ts)
{
    int on = 1;
    return !ts->if_config || lmio_config_get_bool(tr->cfg, ts->if_config, &on, NULL) != LMIO_OK || on;
}

/* The parameters in named_parameters() order: the table's rows in order,
 * a run of per-layer rows expanded layer by layer; a tied head and tensors
 * the config leaves out (Llama's biases) skipped. */
static lmio_status list_params(lmio_trainer *tr, const uint64_t *dims, size_t L, bool tied, lmio_error *err)
{
    const lmio__arch *a = tr->arch;
    size_t cap = 0;
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < a->n_tensors && !s;) {
        const lmio__tensor_spec *ts = &a->tensors[i];
        if (!(ts->flags & LMIO__T_PER_LAYER)) {
            if (!(tied && (ts->flags & LMIO__T_TIED)) && exists(tr, ts)) s = add_param(tr, ts, 0, dims, &cap, err);
            i++;
            continue;
        }
        size_t j = i;
        while (j < a->n_tensors && (a->tensors[j].flags & LMIO__T_PER_LAYER)) j++;
        for (size_t l = 0; l < L && !s; l++)
            for (size_t k = i; k < j && !s; k++)
                if (exists(tr, &a->tensors[k])) s = add_param(tr, &a->tensors[k], l, dims, &cap, err);
        i = j;
    }
    return s;
}

static lmio_status make_view(const lmio_trainer *tr, float *base, lmio_statedict **out, lmio_error *err)
{
    lmio_status s = lmio_statedict_create(out, err);
    for (size_t i = 0; i < tr->n_p && !s; i++) {
        const lmio__param *p = &tr->p[i];
        s = lmio_statedict_add(*out, p->name, LMIO_DTYPE_F32, p->ndim, p->shape, base + p->offset,
                               (uint64_t)p->numel * sizeof(float), LMIO_BORROW, err);
    }
    return s;
}

static lmio_status fill_weights(lmio_trainer *tr, const lmio_statedict *weights, lmio_error *err)
{
    uint64_t rng = tr->o.seed;
    for (size_t i = 0; i < tr->n_p; i++) {
        lmio__param *p = &tr->p[i];
        float *dst = tr->w + p->offset;
        if (!weights) {
            tr->arch->init(tr->cfg, p->spec, dst, p->numel, &rng);
            continue;
        }
        lmio_tensor t;
        lmio_status s = lmio_tensor_find(weights, p->name, &t, err);
        if (s) return s;
        if (t.numel != p->numel || !lmio_dtype_is_convertible_float(t.dtype))
            return lmio__fail(err, LMIO_ERR_FORMAT, "", -1, p->name,
                              "tensor \"%s\" has %llu elements of %s; expected %zu floating elements", p->name,
                              (unsigned long long)t.numel, lmio_dtype_name(t.dtype), p->numel);
        /* guarded: a mapped file that shrank is an error, not a signal */
        s = lmio__tensor_convert(&t, dst, LMIO_DTYPE_F32, err);
        if (s) return s;
    }
    return LMIO_OK;
}

/* The refusal of a model type without a training step, naming those with one. */
static lmio_status untrainable(const lmio_config *cfg, lmio_error *err)
{
    char list[256] = "";
    const char *name;
    for (size_t i = 0, len = 0; (name = lmio_arch_name(i)) && len < sizeof list; i++)
        if (lmio__arch_find(name)->backward)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", name);
    return lmio__fail(err, LMIO_ERR_UNSUPPORTED, cfg ? lmio__config_path(cfg) : "", -1, "model_type",
                      "model_type \"%s\" is not an architecture lmio can train; expected one of %s",
                      cfg ? lmio_config_model_type(cfg) : "", list);
}

lmio_status lmio__trainer_build(const lmio_config *cfg, const lmio_statedict *weights, const lmio_trainer_opts *o,
                                lmio_trainer **out, lmio_error *err)
{
    const lmio__arch *a = lmio__arch_of(cfg);
    if (!a || !a->backward) return untrainable(cfg, err);
    lmio_trainer *tr = lmio__calloc(1, sizeof *tr);
    if (!tr) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    tr->arch = a;
    tr->o = *o;
    tr->rng = o->seed;
    tr->best_metric = NAN;
    uint64_t dims[16] = {0};
    size_t L = 0;
    lmio_status s = lmio_config_copy(cfg, &tr->cfg, err);
    if (!s) s = a->dims(cfg, dims, &L, err);
    if (!s) s = list_params(tr, dims, L, lmio__arch_tied(cfg), err);
    size_t bytes;
    if (!s && __builtin_mul_overflow(tr->total, sizeof(float), &bytes))
        s = lmio__fail(err, LMIO_ERR_LIMIT, "", -1, "", "model too large");
    if (!s && (!(tr->w = lmio__calloc(tr->total, sizeof(float))) || !(tr->g = lmio__calloc(tr->total, sizeof(float))) ||
               !(tr->m = lmio__calloc(tr->total, sizeof(float))) || !(tr->v = lmio__calloc(tr->total, sizeof(float)))))
        s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for %zu parameters", tr->total);
    if (!s) s = fill_weights(tr, weights, err);
    if (!s) s = make_view(tr, tr->w, &tr->wsd, err);
    if (!s) s = make_view(tr, tr->g, &tr->gsd, err);
    if (!s) s = a->create(tr->cfg, tr->wsd, &tr->model, err);
    if (!s) s = a->create(tr->cfg, tr->gsd, &tr->gmodel, err);
    size_t P = s ? 0 : a->max_positions(tr->model);
    if (!s && !tr->o.seq_len) tr->o.seq_len = P < 64 ? P : 64;
    if (!s && (!tr->o.batch_size || tr->o.seq_len > P || !(tr->o.beta1 >= 0 && tr->o.beta1 < 1) ||
               !(tr->o.beta2 >= 0 && tr->o.beta2 < 1) || !(tr->o.lr >= 0) || !(tr->o.eps > 0)))
        s = lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "",
                       "trainer options: batch_size %zu, seq_len %zu, lr %g, betas (%g, %g), eps %g; expected "
                       "batch_size >= 1, seq_len <= the model's positions %zu, lr >= 0, betas in [0, 1), eps > 0",
                       tr->o.batch_size, tr->o.seq_len, tr->o.lr, tr->o.beta1, tr->o.beta2, tr->o.eps, P);
    size_t bt;
    if (!s && (__builtin_mul_overflow(tr->o.batch_size, tr->o.seq_len, &bt) ||
               !(tr->bids = lmio__malloc(bt * sizeof(int32_t))) || !(tr->btg = lmio__malloc(bt * sizeof(int32_t)))))
        s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for the batch");
    if (s) {
        lmio_trainer_free(tr);
        return s;
    }
    *out = tr;
    return LMIO_OK;
}

lmio_status lmio_trainer_create(const lmio_config *cfg, const lmio_statedict *weights, const lmio_tokenizer *tok,
                                const lmio_trainer_opts *opts, lmio_trainer **out, lmio_error *err)
{
    lmio_trainer_opts o = LMIO_TRAINER_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_trainer_opts", err);
    if (s) return s;
    if (!cfg || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    s = lmio__trainer_build(cfg, weights, &o, out, err);
    if (!s) (*out)->tok = tok;
    return s;
}

void lmio_trainer_free(lmio_trainer *tr)
{
    if (!tr) return;
    lmio_trainer_wait(tr, NULL);
    lmio__snapshot_free(tr->snap);
    if (tr->model) tr->arch->free(tr->model);
    if (tr->gmodel) tr->arch->free(tr->gmodel);
    lmio_statedict_free(tr->wsd);
    lmio_statedict_free(tr->gsd);
    lmio_config_free(tr->cfg);
    lmio_tokenizer_free(tr->owned_tok);
    lmio__free(tr->p);
    lmio__free(tr->w);
    lmio__free(tr->g);
    lmio__free(tr->m);
    lmio__free(tr->v);
    lmio__free(tr->data);
    lmio__free(tr->bids);
    lmio__free(tr->btg);
    lmio__buf_free(&tr->log);
    lmio__free(tr);
}

lmio_status lmio_trainer_set_data(lmio_trainer *tr, const int32_t *ids, size_t n, lmio_error *err)
{
    if (!tr || (!ids && n)) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (n <= tr->o.seq_len)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "%zu tokens of data; expected more than seq_len = %zu",
                          n, tr->o.seq_len);
    size_t V = tr->arch->vocab_size(tr->model);
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (size_t)ids[i] >= V)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "token %d at %zu; expected 0..%zu", ids[i], i, V - 1);
    uint64_t fp = lmio__fingerprint(ids, n);
    if (tr->resumed && (n != tr->run_n_data || fp != tr->run_fingerprint))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "",
                          "the data is %zu tokens (fingerprint %016llx); expected the run's %llu tokens (fingerprint "
                          "%016llx): resuming on other data would not continue the run",
                          n, (unsigned long long)fp, (unsigned long long)tr->run_n_data,
                          (unsigned long long)tr->run_fingerprint);
    int32_t *d = lmio__malloc(n * sizeof *d);
    if (!d) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    memcpy(d, ids, n * sizeof *d);
    lmio__free(tr->data);
    tr->data = d;
    tr->n_data = n;
    tr->fingerprint = fp;
    return LMIO_OK;
}

uint64_t lmio_trainer_step_count(const lmio_trainer *tr) { return tr ? tr->step : 0; }
double lmio_trainer_next_lr(const lmio_trainer *tr) { return tr ? lmio__lr_at(&tr->o, tr->step) : 0; }
const lmio_trainer_opts *lmio_trainer_options(const lmio_trainer *tr) { return tr ? &tr->o : NULL; }
const lmio_tokenizer *lmio_trainer_tokenizer(const lmio_trainer *tr) { return tr ? tr->tok : NULL; }

lmio_status lmio_trainer_backward(lmio_trainer *tr, const int32_t *ids, const int32_t *targets, size_t B, size_t T,
                                  float *loss, lmio_error *err)
{
    if (!tr || !ids || !targets || !loss) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    memset(tr->g, 0, tr->total * sizeof *tr->g);
    return tr->arch->backward(tr->model, tr->gmodel, ids, targets, B, T, loss, err);
}

/* clip_grad_norm_: the norm summed in double (deterministic), the
 * coefficient in f32 as torch computes it, applied only when below 1
 * (torch multiplies by exactly 1.0 otherwise: the same bits). */
static float clip(lmio_trainer *tr)
{
    double sq = 0;
    for (size_t i = 0; i < tr->total; i++) sq += (double)tr->g[i] * tr->g[i];
    float norm = (float)sqrt(sq);
    if (tr->o.max_grad_norm > 0) {
        float coef = (float)tr->o.max_grad_norm / (norm + 1e-6f);
        if (coef < 1.0f)
            for (size_t i = 0; i < tr->total; i++) tr->g[i] *= coef;
    }
    return norm;
}

/* torch.optim.AdamW(fused=True) on x86-64 (training-checkpoints.md §3.4):
 * scalars in double, cast to f32 where ATen casts them; fmaf where its
 * vector kernel fuses. */
static void adamw(lmio_trainer *tr, double lr)
{
    const lmio_trainer_opts *o = &tr->o;
    double step = (double)(float)tr->step; /* torch's step is an f32 tensor */
    double bc1 = 1.0 - pow(o->beta1, step), bc2 = 1.0 - pow(o->beta2, step);
    float neg_step_size = (float)(-(lr / bc1)), bc2_sqrt = (float)sqrt(bc2), eps = (float)o->eps;
    float one_m_b1 = (float)(1.0 - o->beta1), one_m_b2 = (float)(1.0 - o->beta2), b2 = (float)o->beta2;
    for (size_t k = 0; k < tr->n_p; k++) {
        const lmio__param *p = &tr->p[k];
        float decay = (float)(1.0 - lr * (p->decay ? o->weight_decay : 0.0));
        float *w = tr->w + p->offset, *g = tr->g + p->offset, *m = tr->m + p->offset, *v = tr->v + p->offset;
        for (size_t i = 0; i < p->numel; i++) {
            float p1 = w[i] * decay;
            m[i] = fmaf(one_m_b1, g[i] - m[i], m[i]);
            v[i] = fmaf(one_m_b2 * g[i], g[i], v[i] * b2);
            float d = sqrtf(v[i]) / bc2_sqrt + eps;
            w[i] = p1 + (neg_step_size * m[i]) / d;
        }
    }
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

lmio_status lmio_trainer_update(lmio_trainer *tr, lmio_train_stats *stats, lmio_error *err)
{
    if (!tr) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    double lr = lmio__lr_at(&tr->o, tr->step);
    float norm = clip(tr);
    tr->step++;
    adamw(tr, lr);
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->step = tr->step;
        stats->lr = lr;
        stats->grad_norm = norm;
    }
    return LMIO_OK;
}

/* Fills the batch: batch_size windows of seq_len + 1 tokens. */
static void draw_batch(lmio_trainer *tr)
{
    size_t T = tr->o.seq_len;
    uint64_t range = (uint64_t)(tr->n_data - T);
    for (size_t b = 0; b < tr->o.batch_size; b++) {
        size_t off = (size_t)(lmio__splitmix64(&tr->rng) % range);
        memcpy(tr->bids + b * T, tr->data + off, T * sizeof(int32_t));
        memcpy(tr->btg + b * T, tr->data + off + 1, T * sizeof(int32_t));
    }
    tr->batches++;
    tr->tokens_seen += (uint64_t)tr->o.batch_size * T;
}

static void log_step(lmio_trainer *tr, const lmio_train_stats *st)
{
    char line[256];
    snprintf(line, sizeof line,
             "{\"step\": %llu, \"loss\": %.9g, \"lr\": %.17g, \"grad_norm\": %.9g, \"tokens_per_second\": %.1f}\n",
             (unsigned long long)st->step, st->loss, st->lr, st->grad_norm, st->tokens_per_second);
    lmio__buf_puts(&tr->log, line);
}

lmio_status lmio_trainer_step(lmio_trainer *tr, lmio_train_stats *stats, lmio_error *err)
{
    if (!tr) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (!tr->data) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "no data; expected lmio_trainer_set_data first");
    double t0 = now();
    draw_batch(tr);
    float loss;
    lmio_train_stats st;
    lmio_status s = lmio_trainer_backward(tr, tr->bids, tr->btg, tr->o.batch_size, tr->o.seq_len, &loss, err);
    if (!s) s = lmio_trainer_update(tr, &st, err);
    if (s) return s;
    double dt = now() - t0;
    st.loss = loss;
    st.tokens_per_second = dt > 0 ? (double)(tr->o.batch_size * tr->o.seq_len) / dt : 0;
    log_step(tr, &st);
    if (tr->log.oom) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for the training log");
    tr->since_sum += loss;
    tr->since_n++;
    if (stats) *stats = st;
    return LMIO_OK;
}

lmio_status lmio_trainer_tensors(lmio_trainer *tr, lmio_trainer_part part, lmio_statedict **out, lmio_error *err)
{
    if (!tr || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    float *base[] = {tr->w, tr->g, tr->m, tr->v};
    if ((unsigned)part > 3) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "part %d; expected 0..3", (int)part);
    lmio_status s = make_view(tr, base[part], out, err);
    if (s) {
        lmio_statedict_free(*out);
        *out = NULL;
    }
    return s;
}
