/* lmio_model_*: any architecture of the table behind one handle, and
 * generation (greedy or sampled) on top of an architecture's forward. */
#include "arch.h"

#include <math.h>
#include <string.h>

struct lmio_model {
    const lmio__arch *arch;
    void *impl; /* the architecture's own model */
};

lmio_status lmio_model_create(const lmio_config *cfg, const lmio_statedict *weights, lmio_model **out,
                              lmio_error *err)
{
    if (!cfg || !weights || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    const lmio__arch *a = lmio__arch_of(cfg);
    if (!a) {
        char known[256];
        lmio__arch_list(known, sizeof known);
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, lmio__config_path(cfg), -1, "model_type",
                          "model_type \"%s\" is not an architecture lmio can run; expected one of: %s",
                          lmio_config_model_type(cfg), known);
    }
    lmio_model *m = lmio__calloc(1, sizeof *m);
    if (!m) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    m->arch = a;
    lmio_status s = a->create(cfg, weights, &m->impl, err);
    if (s) {
        lmio__free(m);
        return s;
    }
    *out = m;
    return LMIO_OK;
}

void lmio_model_free(lmio_model *m)
{
    if (!m) return;
    m->arch->free(m->impl);
    lmio__free(m);
}

const char *lmio_model_type(const lmio_model *m) { return m ? m->arch->model_type : NULL; }
size_t lmio_model_vocab_size(const lmio_model *m) { return m ? m->arch->vocab_size(m->impl) : 0; }
size_t lmio_model_max_positions(const lmio_model *m) { return m ? m->arch->max_positions(m->impl) : 0; }

lmio_status lmio_model_logits(lmio_model *m, const int32_t *ids, size_t n, float *logits, lmio_error *err)
{
    if (!m || !ids || !n || !logits) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL or empty argument");
    return m->arch->forward(m->impl, ids, n, 0, logits, n, err);
}

/* splitmix64: a small, well-mixed generator; sampling only needs to be
 * reproducible for a seed, not to match another framework's stream. */
uint64_t lmio__splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static uint64_t next_u64(uint64_t *s) { return lmio__splitmix64(s); }

double lmio__normal(uint64_t *s)
{
    /* u1 in (0, 1]: log(0) never happens */
    double u1 = (double)((lmio__splitmix64(s) >> 11) + 1) * 0x1.0p-53;
    double u2 = (double)(lmio__splitmix64(s) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static int32_t pick(const float *logits, size_t V, const lmio_generate_opts *o, uint64_t *rng)
{
    size_t best = 0;
    for (size_t v = 1; v < V; v++)
        if (logits[v] > logits[best]) best = v; /* first maximum, as torch.argmax */
    if (o->greedy) return (int32_t)best;
    double sum = 0, mx = logits[best];
    for (size_t v = 0; v < V; v++) sum += exp((logits[v] - mx) / o->temperature);
    double r = (double)(next_u64(rng) >> 11) * 0x1.0p-53 * sum, acc = 0;
    for (size_t v = 0; v < V; v++) {
        acc += exp((logits[v] - mx) / o->temperature);
        if (acc > r) return (int32_t)v;
    }
    return (int32_t)best;
}

lmio_status lmio_model_generate(lmio_model *m, const int32_t *prompt, size_t n_prompt, size_t n_new,
                                const lmio_generate_opts *opts, int32_t *out, size_t *n_out, lmio_error *err)
{
    lmio_generate_opts o = LMIO_GENERATE_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_generate_opts", err);
    if (opt_status) return opt_status;
    if (!m || !prompt || !n_prompt || (n_new && !out) || !n_out)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL or empty argument");
    if (!o.greedy && !(o.temperature > 0))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "temperature %g; expected > 0", o.temperature);
    *n_out = 0;
    size_t V = lmio_model_vocab_size(m);
    float *logits = lmio__malloc(V * sizeof *logits);
    if (!logits) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    uint64_t rng = o.seed;
    lmio_status s = m->arch->forward(m->impl, prompt, n_prompt, 0, logits, 1, err);
    for (size_t i = 0; !s && i < n_new; i++) {
        int32_t id = pick(logits, V, &o, &rng);
        out[(*n_out)++] = id;
        if (id == o.stop_id || i + 1 == n_new) break;
        s = m->arch->forward(m->impl, &id, 1, n_prompt + i, logits, 1, err);
    }
    lmio__free(logits);
    return s;
}
