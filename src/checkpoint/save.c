/* save_pretrained: the Hugging Face directory layout
 * (shared/reference/safetensors-hf.md §2), committed atomically. */
#include "../formats/formats.h"
#include "checkpoint.h"
#include "../tokenizer/tokenizer.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_SHARD_SIZE 5000000000ULL /* Transformers v4's "5GB" */

lmio_status lmio_parse_size(const char *text, uint64_t *out, lmio_error *err)
{
    if (!text || !out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    char *end;
    double v = strtod(text, &end);
    static const struct { const char *u; double m; } units[] = {
        {"", 1}, {"B", 1}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
        {"KIB", 1024.0}, {"MIB", 1048576.0}, {"GIB", 1073741824.0}, {"TIB", 1099511627776.0}};
    for (size_t i = 0; end != text && v >= 0 && i < sizeof units / sizeof units[0]; i++)
        if (!strcasecmp(end, units[i].u)) {
            double b = v * units[i].m;
            if (b >= 1 && b < 1.8e19) {
                *out = (uint64_t)b;
                return LMIO_OK;
            }
        }
    return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "size \"%s\"; expected a number with KB, MB, GB "
                      "(decimal) or KiB, MiB, GiB (binary), at least 1 byte", text);
}

static const char *torch_dtype_name(lmio_dtype d)
{
    switch (d) {
    case LMIO_DTYPE_F32: return "float32";
    case LMIO_DTYPE_F16: return "float16";
    case LMIO_DTYPE_BF16: return "bfloat16";
    case LMIO_DTYPE_F64: return "float64";
    default: return NULL;
    }
}

static lmio_status write_json_file(const char *dir, const char *name, lmio__json *v, int durable, lmio_error *err)
{
    char path[8192];
    lmio_status s = lmio__path_join(path, sizeof path, dir, name, err);
    return s ? s : lmio__write_json_python(path, v, durable, err);
}

/* A tied tensor (spec ts, named name) must equal what it is tied to,
 * since only that one is written. */
static lmio_status check_tied(const lmio_statedict *w, const lmio__tensor_spec *ts, size_t layer,
                              const lmio_tensor *t, lmio_error *err)
{
    char to[LMIO_NAME_MAX + 32];
    lmio_tensor e;
    if (!lmio__tensor_name(ts->tied_to, layer, to, sizeof to) || lmio_tensor_find(w, to, &e, NULL) != LMIO_OK)
        return LMIO_OK;
    bool same;
    lmio_status s = lmio__tensors_equal(&e, t, &same, err);
    if (s || same) return s;
    return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, t->name,
                      "%s differs from %s but tie_word_embeddings is true; expected equal tensors, or set "
                      "tie_word_embeddings to false",
                      t->name, to);
}

/* The tensors to write. For an architecture lmio knows, a tied head is left
 * out (Transformers re-ties it on load), as are the legacy buffers; other
 * architectures' tensors are all written. */
static lmio_status select_weights(const lmio_config *cfg, const lmio_statedict *w, lmio_statedict **out,
                                  lmio_error *err)
{
    lmio_statedict *sel;
    lmio_status s = lmio_statedict_create(&sel, err);
    if (s) return s;
    const lmio__arch *a = lmio__arch_of(cfg);
    bool tied = a && lmio__arch_tied(cfg);
    for (size_t i = 0; i < lmio_statedict_count(w) && !s; i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        if (lmio__arch_dropped(a, t.name)) continue;
        size_t layer = 0;
        const lmio__tensor_spec *ts = tied ? lmio__arch_spec(a, t.name, &layer) : NULL;
        if (ts && (ts->flags & LMIO__T_TIED)) {
            s = check_tied(w, ts, layer, &t, err);
            continue;
        }
        /* a view keeps where the bytes came from, for error messages */
        s = lmio__statedict_add_view(sel, t.name, strlen(t.name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                     t.file_offset, t.source, err);
    }
    if (s) {
        lmio_statedict_free(sel);
        return s;
    }
    *out = sel;
    return LMIO_OK;
}

/* ---- writing shards on every core ----
 * Each shard is its own file with its own bytes, so shards are written by
 * a few threads at once (conversion and page-cache copies are CPU work;
 * two cores write a model nearly twice as fast). What goes in each shard
 * and every shard's bytes are fixed before any thread starts, so the
 * output is the same whatever the threads' timing. */
#define SHARD_THREADS_MAX 4
#define SHARD_PARALLEL_MIN (32ull << 20) /* below this a thread costs more than it saves */

typedef struct shard_job {
    lmio_statedict *sd;
    char path[8192];
    lmio_status s;
    lmio_error err;
} shard_job;

typedef struct shard_pool {
    shard_job *jobs;
    size_t n;
    const char *format;
    lmio_save_opts so;
    atomic_size_t next;
    atomic_int stop; /* a shard failed: the others give up at their next chunk */
} shard_pool;

static int stop_requested(void *ctx, uint64_t done, uint64_t total)
{
    LMIO_UNUSED(done);
    LMIO_UNUSED(total);
    return atomic_load(&((shard_pool *)ctx)->stop);
}

static void *shard_worker(void *arg)
{
    shard_pool *p = arg;
    for (size_t k; (k = atomic_fetch_add(&p->next, 1)) < p->n && !atomic_load(&p->stop);) {
        shard_job *j = &p->jobs[k];
        j->s = lmio_statedict_save(j->sd, j->path, p->format, &p->so, &j->err);
        if (j->s) atomic_store(&p->stop, 1);
    }
    return NULL;
}

/* Runs every job; the error is the first shard's that failed on its own
 * (not one stopped because another failed). */
static lmio_status write_shards(shard_pool *p, uint64_t total, lmio_error *err)
{
    size_t threads = 1;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (p->n > 1 && total >= SHARD_PARALLEL_MIN && cpus > 1)
        threads = (size_t)cpus < p->n ? (size_t)cpus : p->n;
    if (threads > SHARD_THREADS_MAX) threads = SHARD_THREADS_MAX;
    p->so.progress = stop_requested;
    p->so.progress_ctx = p;
    pthread_t tid[SHARD_THREADS_MAX];
    size_t started = 0;
    while (started + 1 < threads && pthread_create(&tid[started], NULL, shard_worker, p) == 0) started++;
    shard_worker(p); /* this thread works too, so a failed pthread_create only costs speed */
    for (size_t t = 0; t < started; t++) pthread_join(tid[t], NULL);
    const shard_job *first = NULL;
    for (size_t k = 0; k < p->n; k++)
        if (p->jobs[k].s && (!first || (first->s == LMIO_ERR_CANCELLED && p->jobs[k].s != LMIO_ERR_CANCELLED)))
            first = &p->jobs[k];
    if (!first) return LMIO_OK;
    if (err) *err = first->err;
    return first->s;
}

static lmio_status save_weights(const char *tmp, const lmio_statedict *w, const lmio_pretrained_opts *o,
                                 const lmio__format *fmt, lmio_error *err)
{
    size_t n = lmio_statedict_count(w);
    uint64_t max = o->max_shard_size ? o->max_shard_size : DEFAULT_SHARD_SIZE;
    size_t *shard_of = lmio__calloc(n ? n : 1, sizeof *shard_of);
    if (!shard_of) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    /* Greedy in state-dict order, as huggingface_hub splits: a new shard
     * when the next tensor would overflow this one; a tensor larger than
     * the limit gets a shard of its own. */
    size_t n_shards = 0;
    uint64_t cur = 0, total = 0, params = 0;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        uint64_t sz = t.nbytes;
        if (o->dtype != LMIO_DTYPE_NONE && lmio_dtype_is_convertible_float(t.dtype))
            sz = t.numel * (lmio_dtype_bits(o->dtype) / 8);
        if (n_shards == 0 || (cur + sz > max && cur > 0)) {
            n_shards++;
            cur = 0;
        }
        cur += sz;
        total += sz;
        params += t.numel;
        shard_of[i] = n_shards - 1;
    }
    if (n_shards == 0) n_shards = 1;
    lmio_status s = LMIO_OK;
    lmio__json *map = lmio__json_object(); /* NULL fails the first lmio__json_set below */
    shard_pool pool = {.jobs = lmio__calloc(n_shards, sizeof *pool.jobs), .n = n_shards, .format = fmt->name};
    pool.so = (lmio_save_opts)LMIO_SAVE_OPTS_INIT;
    pool.so.dtype = o->dtype;
    pool.so.durable = o->durable;
    atomic_init(&pool.next, 0);
    atomic_init(&pool.stop, 0);
    if (!pool.jobs) s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    for (size_t k = 0; k < n_shards && !s; k++) {
        char name[64];
        shard_job *j = &pool.jobs[k];
        if (n_shards == 1) snprintf(name, sizeof name, "%s", fmt->dir_file);
        else snprintf(name, sizeof name, "%s-%05zu-of-%05zu%s", fmt->dir_shard_stem, k + 1, n_shards, fmt->dir_shard_ext);
        if ((s = lmio__path_join(j->path, sizeof j->path, tmp, name, err))) break;
        if ((s = lmio_statedict_create(&j->sd, err))) break;
        for (size_t i = 0; i < n && !s; i++) {
            if (shard_of[i] != k) continue;
            lmio_tensor t;
            lmio_statedict_get(w, i, &t, NULL);
            s = lmio__statedict_add_view(j->sd, t.name, strlen(t.name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                         t.file_offset, t.source, err);
            if (!s && !lmio__json_set(map, t.name, lmio__json_string(name)))
                s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
        }
        for (const char *const *m = fmt->dir_metadata; !s && m && m[0]; m += 2)
            s = lmio_metadata_set(j->sd, m[0], m[1], err);
    }
    if (!s) s = write_shards(&pool, total, err);
    for (size_t k = 0; pool.jobs && k < n_shards; k++) lmio_statedict_free(pool.jobs[k].sd);
    lmio__free(pool.jobs);
    if (!s && n_shards > 1) {
        lmio__json *idx = lmio__json_object(), *meta = lmio__json_object();
        bool ok = lmio__json_set(meta, "total_parameters", lmio__json_integer((int64_t)params));
        ok &= lmio__json_set(meta, "total_size", lmio__json_integer((int64_t)total));
        ok &= lmio__json_set(idx, "metadata", meta);
        ok &= lmio__json_set(idx, "weight_map", lmio__json_incref(map));
        s = ok ? write_json_file(tmp, fmt->dir_index, idx, o->durable, err)
               : lmio__fail(err, LMIO_ERR_NOMEM, fmt->dir_index, -1, "", "out of memory");
        lmio__json_decref(idx);
    }
    lmio__json_decref(map);
    lmio__free(shard_of);
    return s;
}

static lmio_status save_configs(const char *tmp, const lmio_config *cfg, const lmio_statedict *w,
                                const lmio_pretrained_opts *o, lmio_error *err)
{
    lmio_config *c;
    lmio_status s = lmio_config_copy(cfg, &c, err);
    if (s) return s;
    /* dtype must describe the tensors: Transformers v5 loads in it */
    lmio_dtype d = o->dtype;
    for (size_t i = 0; w && d == LMIO_DTYPE_NONE && i < lmio_statedict_count(w); i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        if (lmio_dtype_is_convertible_float(t.dtype)) d = t.dtype;
    }
    if (d != LMIO_DTYPE_NONE) s = lmio_config_set_string(c, "dtype", torch_dtype_name(d), err);
    lmio__json *obj = lmio__config_json(c);
    lmio__json_del(obj, "torch_dtype"); /* superseded by "dtype" (v4.56+) */
    char fv[32];
    snprintf(fv, sizeof fv, "%d.%d", LMIO_FORMAT_VERSION_MAJOR, LMIO_FORMAT_VERSION_MINOR);
    if (!s) s = lmio_config_set_string(c, "lmio_format_version", fv, err);
    if (!s) s = lmio_config_set_string(c, "lmio_version", LMIO_VERSION_STRING, err);
    const lmio__arch *arch = lmio__arch_of(c);
    if (!s && arch && !lmio__json_get(obj, "architectures")) {
        lmio__json *a = lmio__json_array();
        bool ok = lmio__json_append(a, lmio__json_string(arch->hf_class));
        ok &= lmio__json_set(obj, "architectures", a);
        if (!ok) s = lmio__fail(err, LMIO_ERR_NOMEM, "config.json", -1, "architectures", "out of memory");
    }
    /* what lmio_config_save writes, with the caller's durable choice */
    if (!s) s = write_json_file(tmp, "config.json", obj, o->durable, err);
    char gpath[8192];
    struct stat gst;
    bool carried = !s && !lmio__path_join(gpath, sizeof gpath, tmp, "generation_config.json", NULL) &&
                   lstat(gpath, &gst) == 0;
    /* a conversion (source_dir) carries the source's generation config,
     * and invents none the source did not have */
    if (!s && !carried && !o->source_dir) {
        /* generation_config.json as GenerationConfig.from_model_config writes it */
        lmio__json *g = lmio__json_object();
        bool ok = lmio__json_set(g, "_from_model_config", lmio__json_bool(true));
        const char *keys[] = {"bos_token_id", "eos_token_id", "pad_token_id"};
        for (int k = 0; k < 3; k++) {
            lmio__json *v = lmio__json_get(obj, keys[k]);
            int64_t iv;
            if (v && !lmio__json_is_null(v)) ok &= lmio__json_set(g, keys[k], lmio__json_incref(v));
            else if (arch && k < 2 && lmio_config_get_int(c, keys[k], &iv, NULL) == LMIO_OK) /* its default */
                ok &= lmio__json_set(g, keys[k], lmio__json_integer(iv));
        }
        s = ok ? write_json_file(tmp, "generation_config.json", g, o->durable, err)
               : lmio__fail(err, LMIO_ERR_NOMEM, "generation_config.json", -1, "", "out of memory");
        lmio__json_decref(g);
    }
    lmio_config_free(c);
    return s;
}

lmio_status lmio_pretrained_save(const char *dir, const lmio_config *cfg, const lmio_statedict *weights,
                                 const lmio_tokenizer *tok, const lmio_pretrained_opts *opts, lmio_error *err)
{
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_pretrained_opts", err);
    if (opt_status) return opt_status;
    if (!dir || !*dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "directory path missing");
    if (o.dtype != LMIO_DTYPE_NONE && !torch_dtype_name(o.dtype))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "dtype %s; expected F32, F16, BF16 or F64",
                          lmio_dtype_name(o.dtype) ? lmio_dtype_name(o.dtype) : "?");
    const lmio__format *fmt = lmio__format_find(o.format ? o.format : "safetensors");
    if (!fmt || !fmt->save || !fmt->dir_file) {
        char names[256] = "";
        for (size_t i = 0, n = 0; i < lmio__format_count() && n < sizeof names; i++) {
            const lmio__format *f = lmio__format_at(i);
            if (f->save && f->dir_file) n += (size_t)snprintf(names + n, sizeof names - n, "%s%s", n ? ", " : "", f->name);
        }
        return lmio__fail(err, fmt ? LMIO_ERR_UNSUPPORTED : LMIO_ERR_INVALID_ARG, dir, -1, "",
                          "weights format \"%s\"; expected a format lmio writes into model directories (%s)",
                          o.format, names);
    }
    lmio__stage st;
    lmio_status s = lmio__stage_begin(&st, dir, o.durable, o.keep_other_files != 0, weights, err);
    if (s) return s;
    s = lmio__pretrained_write(st.tmp, cfg, weights, tok, &o, err);
    if (s) lmio__stage_fix_error(&st, err);
    if (!s) s = lmio__stage_commit(&st, err);
    lmio__stage_abort(&st);
    return s;
}

lmio_status lmio__pretrained_write(const char *tmp, const lmio_config *cfg, const lmio_statedict *weights,
                                   const lmio_tokenizer *tok, const lmio_pretrained_opts *o, lmio_error *err)
{
    const lmio__format *fmt = lmio__format_find(o->format ? o->format : "safetensors"); /* checked by the caller */
    lmio_statedict *sel = NULL;
    lmio_status s = LMIO_OK;
    if (weights) s = select_weights(cfg, weights, &sel, err);
    if (!s && o->source_dir) s = lmio__carry_files(o->source_dir, tmp, o->durable, err);
    if (!s && cfg) s = save_configs(tmp, cfg, sel, o, err);
    if (!s && sel) s = save_weights(tmp, sel, o, fmt, err);
    if (!s && tok) s = lmio__tokenizer_save(tok, tmp, o->durable, err);
    lmio_statedict_free(sel);
    return s;
}

lmio_status lmio_pretrained_convert(const char *src_dir, const char *dst_dir, const lmio_pretrained_opts *opts,
                                    lmio_error *err)
{
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_pretrained_opts", err);
    if (s) return s;
    if (!src_dir || !dst_dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "directory path missing");
    struct stat st;
    if (stat(src_dir, &st) == 0 && !S_ISDIR(st.st_mode) && lmio__is_gguf_file(src_dir)) {
        /* a GGUF: its config, weights and tokenizer become the directory */
        lmio_config *cfg = NULL;
        lmio_statedict *w = NULL;
        lmio_tokenizer *tok = NULL;
        s = lmio__gguf_load(src_dir, &cfg, &w, &tok, err);
        if (!s) s = lmio_pretrained_save(dst_dir, cfg, w, tok, &o, err);
        lmio_config_free(cfg);
        lmio_statedict_free(w);
        lmio_tokenizer_free(tok);
        return s;
    }
    char cpath[4096];
    if ((s = lmio__path_join(cpath, sizeof cpath, src_dir, "config.json", err))) return s;
    bool has_cfg = stat(cpath, &st) == 0; /* a weights-only directory has none */
    lmio_config *cfg = NULL;
    lmio_statedict *w = NULL;
    s = lmio_pretrained_load(src_dir, has_cfg ? &cfg : NULL, &w, NULL, err);
    o.source_dir = src_dir;
    if (!s) s = lmio_pretrained_save(dst_dir, cfg, w, NULL, &o, err);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    return s;
}
