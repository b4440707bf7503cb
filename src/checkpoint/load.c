/* from_pretrained: Hugging Face directories written by Transformers or
 * lmio (shared/reference/safetensors-hf.md §2). */
#include "../formats/formats.h"
#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* A shard name from an index must be a plain file name inside the
 * directory: no separators, no "..", nothing absolute. */
static bool plain_name(const char *n) { return *n && !strchr(n, '/') && strcmp(n, ".") && strcmp(n, ".."); }

static lmio_status load_sharded(const char *dir, const char *index, lmio_statedict *all, lmio_error *err)
{
    lmio__json *root;
    lmio_status s = lmio__json_load_file(index, &root, err);
    if (s) return s;
    lmio__json *map = lmio__json_get(root, "weight_map");
    if (!lmio__json_is_object(map)) {
        lmio__json_decref(root);
        return lmio__fail(err, LMIO_ERR_FORMAT, index, -1, "weight_map", "no \"weight_map\" object; expected {tensor: shard}");
    }
    /* open every shard the index names, once; opened maps a shard's file
     * name to its number among all's adopted state dicts */
    lmio__smap opened = {0};
    const char *name;
    lmio__json *v;
    lmio__json_iter it = lmio__json_iter_begin(map);
    while (lmio__json_iter_next(&it, &name, &v)) {
        const char *file = lmio__json_string_value(v);
        if (!file || !plain_name(file)) {
            s = lmio__fail(err, LMIO_ERR_FORMAT, index, -1, name,
                           "tensor \"%s\" maps to %s%s%s; expected a shard file name in the directory", name,
                           file ? "\"" : "a non-string", file ? file : "", file ? "\"" : "");
            break;
        }
        uint32_t k;
        if (lmio__smap_get(&opened, file, strlen(file), &k)) continue;
        char path[4096];
        if ((s = lmio__path_join(path, sizeof path, dir, file, err)) || (s = lmio__check_inside(dir, path, err)))
            break;
        lmio_statedict *sh;
        if ((s = lmio_statedict_open(path, NULL, &sh, err))) {
            if (s == LMIO_ERR_NOT_FOUND)
                s = lmio__fail(err, LMIO_ERR_NOT_FOUND, index, -1, name,
                               "names shard \"%s\" (for tensor \"%s\"), which is missing; expected the file in %s",
                               file, name, dir);
            break;
        }
        size_t child = lmio__statedict_child_count(all);
        if ((s = lmio__statedict_adopt(all, sh, err))) { lmio_statedict_free(sh); break; }
        if (!lmio__smap_put(&opened, file, strlen(file), (uint32_t)child)) { s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory"); break; }
    }
    /* every tensor must be in the shard the index names for it */
    it = lmio__json_iter_begin(map);
    while (lmio__json_iter_next(&it, &name, &v)) {
        if (s) break;
        const char *file = lmio__json_string_value(v);
        uint32_t child = UINT32_MAX;
        lmio_tensor t;
        lmio__smap_get(&opened, file, strlen(file), &child);
        if (lmio__statedict_find_in_child(all, child, name, &t) != LMIO_OK) {
            s = lmio__fail(err, LMIO_ERR_NOT_FOUND, index, -1, name,
                           "tensor \"%s\" is not in shard \"%s\", where the index places it", name, file);
            break;
        }
        s = lmio__statedict_add_view(all, name, strlen(name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                     t.file_offset, t.source, err);
    }
    lmio__smap_free(&opened);
    lmio__json_decref(root);
    return s;
}

/* Checkpoints of a known architecture come with or without its name
 * prefix and may carry legacy buffers (GPT-2: "transformer.", attn.bias and
 * attn.masked_bias; safetensors-hf.md §2.8); lmio's state dict always uses
 * the names of the architecture's Transformers class. A tied head is
 * dropped (the model uses the embedding, as Transformers re-ties it). */
static lmio_status normalize(const lmio__arch *a, bool tied, lmio_statedict *raw, const char *dir,
                             lmio_statedict **out, lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_create(&sd, err);
    if (s) return s;
    for (size_t i = 0; i < lmio_statedict_count(raw) && !s; i++) {
        lmio_tensor t;
        lmio_statedict_get(raw, i, &t, NULL);
        if (lmio__arch_dropped(a, t.name)) continue;
        char name[LMIO_NAME_MAX + 64];
        const lmio__tensor_spec *ts = lmio__arch_spec(a, t.name, NULL);
        snprintf(name, sizeof name, "%s", t.name);
        if (!ts && a->name_prefix) {
            snprintf(name, sizeof name, "%s%s", a->name_prefix, t.name);
            if (!(ts = lmio__arch_spec(a, name, NULL))) snprintf(name, sizeof name, "%s", t.name);
        }
        if (ts && (ts->flags & LMIO__T_TIED) && tied) continue;
        s = lmio__statedict_add_view(sd, name, strlen(name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                     t.file_offset, t.source, err);
    }
    /* an untied head must be there: nothing else could stand in for it */
    for (size_t i = 0; i < a->n_tensors && !s && !tied; i++) {
        const lmio__tensor_spec *ts = &a->tensors[i];
        lmio_tensor t;
        if ((ts->flags & LMIO__T_TIED) && !(ts->flags & LMIO__T_PER_LAYER) &&
            lmio_tensor_find(sd, ts->hf_name, &t, NULL) != LMIO_OK)
            s = lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, ts->hf_name,
                           "tie_word_embeddings is false but no shard holds %s; expected the untied head",
                           ts->hf_name);
    }
    if (!s) s = lmio__statedict_adopt(sd, raw, err);
    if (s) {
        lmio_statedict_free(sd);
        return s; /* raw is still the caller's */
    }
    *out = sd;
    return LMIO_OK;
}

/* The first format, in the table's order, with an index or a single
 * weights file in dir. An index decides which files are weights: a stray
 * single file beside the shards is ignored. */
static lmio_status find_weights(const char *dir, const lmio__format **fmt, char *path, size_t cap, bool *sharded,
                                lmio_error *err)
{
    char names[512];
    size_t nl = 0;
    names[0] = 0;
    for (size_t i = 0; i < lmio__format_count(); i++) {
        const lmio__format *f = lmio__format_at(i);
        if (!f->dir_file) continue;
        const char *cand[2] = {f->dir_index, f->dir_file};
        for (int k = 0; k < 2; k++) {
            if (!cand[k]) continue;
            lmio_status s = lmio__path_join(path, cap, dir, cand[k], err);
            if (s) return s;
            if (access(path, F_OK) != 0) {
                if (nl < sizeof names)
                    nl += (size_t)snprintf(names + nl, sizeof names - nl, "%s%s", nl ? ", " : "", cand[k]);
                continue;
            }
            if (!f->open)
                return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, "", "%s weights; lmio cannot read %s files yet",
                                  f->description, f->name);
            *fmt = f;
            *sharded = k == 0;
            return LMIO_OK;
        }
    }
    return lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, "", "no weights; expected one of %s", names);
}

static lmio_status load_weights(const char *dir, const lmio_config *cfg, lmio_statedict **out, lmio_error *err)
{
    char path[4096];
    const lmio__format *fmt = NULL;
    bool sharded = false;
    lmio_statedict *raw = NULL;
    lmio_status s = find_weights(dir, &fmt, path, sizeof path, &sharded, err);
    if (s || (s = lmio__check_inside(dir, path, err))) return s;
    if (sharded) {
        if ((s = lmio_statedict_create(&raw, err))) return s;
        if ((s = lmio__statedict_set_source(raw, path, fmt->name, NULL, err)) ||
            (s = load_sharded(dir, path, raw, err))) {
            lmio_statedict_free(raw);
            return s;
        }
    } else if ((s = lmio_statedict_open(path, NULL, &raw, err))) {
        return s;
    }
    const lmio__arch *a = lmio__arch_of(cfg);
    if (!a) { /* an architecture lmio does not run: its tensors as they are */
        *out = raw;
        return LMIO_OK;
    }
    s = normalize(a, lmio__arch_tied(cfg), raw, dir, out, err);
    if (s) lmio_statedict_free(raw);
    return s;
}

/* LMIO_HASHES_REQUIRE: a directory without a manifest is refused. */
static void note_missing(void *ctx, lmio_integrity_event ev, const char *file, const char *tensor, const char *msg)
{
    if (ev == LMIO_INTEGRITY_NO_MANIFEST) *(bool *)ctx = true;
}

static lmio_status check_hashes(const char *dir, lmio_hash_check mode, lmio_error *err)
{
    bool none = false;
    lmio_status s = lmio_manifest_check(dir, note_missing, &none, err);
    if (!s && none && mode == LMIO_HASHES_REQUIRE)
        s = lmio__fail(err, LMIO_ERR_INTEGRITY, dir, -1, "",
                       "has no %s, so its files cannot be checked; expected a directory saved by lmio format 1.1 or "
                       "later (or load without LMIO_HASHES_REQUIRE)",
                       LMIO_MANIFEST_NAME);
    return s;
}

lmio_status lmio_pretrained_load(const char *dir, lmio_config **cfg_out, lmio_statedict **weights,
                                 lmio_tokenizer **tok, lmio_error *err)
{
    return lmio_pretrained_load_with(dir, NULL, cfg_out, weights, tok, err);
}

lmio_status lmio_pretrained_load_with(const char *dir, const lmio_pretrained_load_opts *opts, lmio_config **cfg_out,
                                      lmio_statedict **weights, lmio_tokenizer **tok, lmio_error *err)
{
    lmio_pretrained_load_opts o = LMIO_PRETRAINED_LOAD_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_pretrained_load_opts", err);
    if (s) return s;
    if (!dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "directory path missing");
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISREG(st.st_mode) && lmio__is_gguf_file(dir))
        return lmio__gguf_load(dir, cfg_out, weights, tok, err);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, "", "not a directory; expected a model directory or a GGUF file");
    if (o.hashes != LMIO_HASHES_SKIP && o.hashes != LMIO_HASHES_CHECK && o.hashes != LMIO_HASHES_REQUIRE)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "hashes = %d; expected LMIO_HASHES_SKIP, _CHECK or "
                          "_REQUIRE", (int)o.hashes);
    if (o.hashes != LMIO_HASHES_SKIP && (s = check_hashes(dir, o.hashes, err))) return s;
    lmio_config *cfg = NULL;
    char cpath[4096];
    if ((s = lmio__path_join(cpath, sizeof cpath, dir, "config.json", err))) return s;
    /* a weights-only directory has no config: *cfg_out is then NULL */
    if (access(cpath, F_OK) == 0) {
        s = lmio__check_inside(dir, cpath, err);
        if (!s) s = lmio_config_load(cpath, &cfg, err);
    }
    lmio_statedict *w = NULL;
    lmio_tokenizer *t = NULL;
    if (!s && weights) s = load_weights(dir, cfg, &w, err);
    if (!s && tok) {
        char p1[4096], p2[4096];
        if (!(s = lmio__path_join(p1, sizeof p1, dir, "tokenizer.json", err)) &&
            !(s = lmio__path_join(p2, sizeof p2, dir, "vocab.json", err)) &&
            (access(p1, F_OK) == 0 || access(p2, F_OK) == 0))
            s = lmio_tokenizer_load(dir, &t, err);
    }
    if (s) {
        lmio_config_free(cfg);
        lmio_statedict_free(w);
        lmio_tokenizer_free(t);
        return s;
    }
    if (cfg_out) *cfg_out = cfg;
    else lmio_config_free(cfg);
    if (weights) *weights = w;
    if (tok) *tok = t;
    return LMIO_OK;
}
