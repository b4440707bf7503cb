/* from_pretrained: Hugging Face directories written by Transformers or
 * lmio (shared/reference/safetensors-hf.md §2). */
#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_gpt2(const lmio_config *cfg) { return cfg && !strcmp(lmio_config_model_type(cfg), "gpt2"); }

static bool gpt2_tied(const lmio_config *cfg)
{
    int tie = 1;
    lmio_config_get_bool(cfg, "tie_word_embeddings", &tie, NULL);
    return tie;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

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
    /* open every shard the index names, once */
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
        if ((s = lmio__statedict_adopt(all, sh, err))) { lmio_statedict_free(sh); break; }
        if (!lmio__smap_put(&opened, file, strlen(file), 0)) { s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory"); break; }
    }
    /* every tensor must be in the shard the index names for it */
    it = lmio__json_iter_begin(map);
    while (lmio__json_iter_next(&it, &name, &v)) {
        if (s) break;
        const char *file = lmio__json_string_value(v);
        char path[4096];
        if ((s = lmio__path_join(path, sizeof path, dir, file, err))) break;
        lmio_tensor t;
        if (lmio__statedict_find_in_child(all, path, name, &t) != LMIO_OK) {
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

/* GPT-2 checkpoints come with or without the "transformer." prefix and may
 * carry the legacy mask buffers (safetensors-hf.md §2.8); lmio's state dict
 * always uses GPT2LMHeadModel's names. */
static lmio_status normalize_gpt2(const lmio_config *cfg, lmio_statedict *raw, const char *dir,
                                  lmio_statedict **out, lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_create(&sd, err);
    if (s) return s;
    bool tied = gpt2_tied(cfg), has_head = false;
    for (size_t i = 0; i < lmio_statedict_count(raw) && !s; i++) {
        lmio_tensor t;
        lmio_statedict_get(raw, i, &t, NULL);
        if (ends_with(t.name, ".attn.bias") || ends_with(t.name, ".attn.masked_bias")) continue;
        if (!strcmp(t.name, "lm_head.weight")) {
            has_head = true;
            if (tied) continue; /* the model uses wte, as Transformers re-ties it */
        }
        char name[LMIO_NAME_MAX + 16];
        bool base = !strncmp(t.name, "wte.", 4) || !strncmp(t.name, "wpe.", 4) || !strncmp(t.name, "h.", 2) ||
                    !strncmp(t.name, "ln_f.", 5);
        snprintf(name, sizeof name, "%s%s", base ? "transformer." : "", t.name);
        s = lmio__statedict_add_view(sd, name, strlen(name), t.dtype, t.ndim, t.shape, t.data, t.nbytes,
                                     t.file_offset, t.source, err);
    }
    if (!s && !tied && !has_head)
        s = lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, "lm_head.weight",
                       "tie_word_embeddings is false but no shard holds lm_head.weight; expected the untied head");
    if (!s) s = lmio__statedict_adopt(sd, raw, err);
    if (s) {
        lmio_statedict_free(sd);
        return s; /* raw is still the caller's */
    }
    *out = sd;
    return LMIO_OK;
}

static lmio_status load_weights(const char *dir, const lmio_config *cfg, lmio_statedict **out, lmio_error *err)
{
    char index[4096], single[4096], bin[4096];
    lmio_statedict *raw = NULL;
    lmio_status s;
    if ((s = lmio__path_join(index, sizeof index, dir, "model.safetensors.index.json", err)) ||
        (s = lmio__path_join(single, sizeof single, dir, "model.safetensors", err)) ||
        (s = lmio__path_join(bin, sizeof bin, dir, "pytorch_model.bin", err)))
        return s;
    if (access(index, F_OK) == 0) {
        /* An index decides which files are weights; a stray
         * model.safetensors beside the shards is ignored. */
        if ((s = lmio__check_inside(dir, index, err))) return s;
        if ((s = lmio_statedict_create(&raw, err))) return s;
        if ((s = lmio__statedict_set_source(raw, index, "safetensors", NULL, err)) ||
            (s = load_sharded(dir, index, raw, err))) {
            lmio_statedict_free(raw);
            return s;
        }
    } else if (access(single, F_OK) == 0) {
        if ((s = lmio__check_inside(dir, single, err)) || (s = lmio_statedict_open(single, NULL, &raw, err))) return s;
    } else if (access(bin, F_OK) == 0) {
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, bin, -1, "",
                          "PyTorch .bin weights; expected model.safetensors (torch.save files are not supported yet)");
    } else {
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, "",
                          "no model.safetensors or model.safetensors.index.json; expected weights");
    }
    if (!is_gpt2(cfg)) {
        *out = raw;
        return LMIO_OK;
    }
    s = normalize_gpt2(cfg, raw, dir, out, err);
    if (s) lmio_statedict_free(raw);
    return s;
}

lmio_status lmio_pretrained_load(const char *dir, lmio_config **cfg_out, lmio_statedict **weights,
                                 lmio_tokenizer **tok, lmio_error *err)
{
    if (!dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "directory path missing");
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, dir, -1, "", "not a directory; expected a model directory");
    lmio_config *cfg = NULL;
    char cpath[4096];
    lmio_status s = lmio__path_join(cpath, sizeof cpath, dir, "config.json", err);
    if (s) return s;
    if (access(cpath, F_OK) == 0 || cfg_out) {
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
