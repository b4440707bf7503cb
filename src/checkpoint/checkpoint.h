/* Internal interface of the checkpoint layer (Hugging Face directories). */
#ifndef LMIO_CHECKPOINT_H
#define LMIO_CHECKPOINT_H

#include "../core/json.h"
#include "../model/arch.h"

/* A directory being built beside its destination (dircommit.c). */
typedef struct lmio__stage {
    char dir[4096];    /* the destination */
    char parent[4096]; /* its parent directory */
    char tmp[4096];    /* the directory being built; "" when none */
    int durable;       /* fsync files' directory and the parent on commit */
} lmio__stage;

/* Creates the temporary directory beside dir. */
lmio_status lmio__stage_begin(lmio__stage *st, const char *dir, int durable, lmio_error *err);
/* Moves the finished directory into place: renamed if dir is absent,
 * swapped in one step with an existing model directory (or an empty one),
 * refused for any other directory. On failure the staged files are gone. */
lmio_status lmio__stage_commit(lmio__stage *st, lmio_error *err);
/* Removes the staged directory; safe after a failed begin or a commit. */
void lmio__stage_abort(lmio__stage *st);

/* Copies everything in src_dir that lmio does not rewrite (carry.c: all
 * but config.json, the weights of every format, .git and lmio's
 * temporaries) into dst_dir, byte for byte, folders included. Symlinks to
 * files are followed; anything that is neither a file nor a folder is an
 * error rather than silently left behind. */
lmio_status lmio__carry_files(const char *src_dir, const char *dst_dir, int durable, lmio_error *err);
/* True for a name a weights format uses in a model directory. */
bool lmio__is_weights_name(const char *name);

/* Removes a tree without following symlinks. */
void lmio__remove_tree(const char *dir);

#endif
