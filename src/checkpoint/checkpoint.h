/* Internal interface of the checkpoint layer (Hugging Face directories). */
#ifndef LMIO_CHECKPOINT_H
#define LMIO_CHECKPOINT_H

#include "../core/json.h"
#include "../model/arch.h"

#include <stdbool.h>
#include <sys/types.h>

/* A directory being built beside its destination (dircommit.c). */
typedef struct lmio__stage {
    char dir[4096];    /* the destination, without trailing slashes */
    char parent[4096]; /* its parent directory */
    const char *name;  /* its last component, inside dir */
    char tmp[4096];    /* the directory being built; "" when none */
    int durable;       /* fsync the new directory and the parent on commit */
    int keep_other;    /* move lmio's files into an existing dir instead of swapping it */
    int exists;        /* dir existed at begin; its metadata follows */
    mode_t mode;
    uid_t uid;
    gid_t gid;
    dev_t dev;
    ino_t ino;
    int lock_fd; /* the staging directory, flock'ed while the save lives */
    int slot;    /* its temporaries-registry slot */
    lmio__file_id tmp_id; /* the staging directory, for the digest cache */
} lmio__stage;

/* True for a name lmio_pretrained_save may write: the one list of them. */
bool lmio__is_lmio_file(const char *name);

/* Checks the destination and creates the temporary directory beside dir.
 * Refused, with nothing created: a dir that is a symlink or not a
 * directory; one that holds anything but lmio's files (unless keep_other);
 * one that contains a file the tensors of sources (may be NULL) come from,
 * or lies inside their directory. */
lmio_status lmio__stage_begin(lmio__stage *st, const char *dir, int durable, int keep_other,
                              const lmio_statedict *sources, lmio_error *err);
/* Writes LMIO_MANIFEST_NAME into dir over every file below it (manifest.c):
 * digests the outfiles computed while writing are taken from the digest
 * cache, other files are read; tensors are found in every file a format
 * reads. lmio__stage_commit calls it last, before the rename. */
lmio_status lmio__manifest_write(const char *dir, int durable, lmio_error *err);

/* Writes the manifest, then moves the finished directory into place:
 * renamed if dir was absent, swapped in one step with an existing one (checked again first), or, with
 * keep_other, its files moved in one by one. On failure the staged files
 * are gone and an existing dir is as it was (keep_other: lmio files may be
 * a mix of old and new). */
lmio_status lmio__stage_commit(lmio__stage *st, lmio_error *err);
/* An error from writing into the staging directory names the destination
 * instead: the temporary name means nothing to the user and is gone. */
void lmio__stage_fix_error(const lmio__stage *st, lmio_error *err);
/* Removes the staged directory; safe after a failed begin or a commit. */
void lmio__stage_abort(lmio__stage *st);

/* What lmio_pretrained_save writes, into tmp, a directory already staged
 * by lmio__stage_begin (o already checked: a format lmio writes into
 * model directories, a float dtype or none): so a training checkpoint
 * can add its own files to the same staged directory and commit once. */
lmio_status lmio__pretrained_write(const char *tmp, const lmio_config *cfg, const lmio_statedict *weights,
                                   const lmio_tokenizer *tok, const lmio_pretrained_opts *o, lmio_error *err);

/* Copies everything in src_dir that lmio does not rewrite (carry.c: all
 * but config.json, the weights of every format, the manifest, .git and lmio's
 * temporaries) into dst_dir, byte for byte, folders included. Symlinks to
 * files are followed; anything that is neither a file nor a folder is an
 * error rather than silently left behind. */
lmio_status lmio__carry_files(const char *src_dir, const char *dst_dir, int durable, lmio_error *err);
/* True for a name a weights format uses in a model directory. */
bool lmio__is_weights_name(const char *name);

/* ---- GGUF files as models (gguf_dir.c) ---- */

/* True when path's first bytes are a GGUF's. */
bool lmio__is_gguf_file(const char *path);
/* lmio_pretrained_load for a GGUF file: Transformers' names, the config
 * from the metadata, the tokenizer from tokenizer.ggml.* (when tok). */
lmio_status lmio__gguf_load(const char *path, lmio_config **cfg, lmio_statedict **weights, lmio_tokenizer **tok,
                            lmio_error *err);
/* A GGUF state dict to a config and Transformers-named weights; on success
 * *w owns g (its views point into it). */
lmio_status lmio__gguf_to_hf(lmio_statedict *g, lmio_config **cfg, lmio_statedict **w, lmio_error *err);
/* Rotary rows between Transformers' order and llama.cpp's (to_gguf: HF
 * rows in src, GGUF rows out), hd rows per head. */
void lmio__rope_rows(unsigned char *dst, const unsigned char *src, uint64_t rows, size_t row_bytes, uint64_t hd,
                     int to_gguf);

/* Removes a tree without following symlinks. */
void lmio__remove_tree(const char *dir);

#endif
