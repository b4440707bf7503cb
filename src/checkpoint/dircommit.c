/* Directories that appear whole or not at all: a save builds the new
 * directory beside its destination and swaps it into place in one step. */
#define _GNU_SOURCE /* renameat2, nftw */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int rm_entry(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st; (void)flag; (void)f;
    return remove(p);
}

void lmio__remove_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Replacing is allowed for what is clearly a model directory, or nothing at
 * all: never for a directory of someone's other files. */
static bool dir_replaceable(const char *dir)
{
    char p[4096];
    const char *marks[] = {"config.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.json"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, marks[i]);
        if (access(p, F_OK) == 0) return true;
    }
    DIR *d = opendir(dir);
    if (!d) return false;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n == 0;
}

static void fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Moves the finished temporary directory into place. */
static lmio_status commit_dir(const char *tmp, const char *dir, const char *parent, int durable, lmio_error *err)
{
    if (durable) fsync_path(tmp);
    if (rename(tmp, dir) == 0) {
        if (durable) fsync_path(parent);
        return LMIO_OK;
    }
    if (errno != EEXIST && errno != ENOTEMPTY)
        return lmio__fail(err, LMIO_ERR_IO, dir, -1, "", "cannot move the finished directory into place: %s",
                          strerror(errno));
    if (!dir_replaceable(dir))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "",
                          "exists and is not a model directory; expected a new, empty or model directory");
    /* Swap both names in one step, so a crash leaves the old or the new
     * directory in place, never neither; then delete the old one. */
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) {
        /* Filesystems without RENAME_EXCHANGE: move aside, then in. */
        char aside[8192];
        int an = snprintf(aside, sizeof aside, "%s.lmio-old-%d", tmp, (int)getpid());
        if (an < 0 || (size_t)an >= sizeof aside || rename(dir, aside) != 0 || rename(tmp, dir) != 0)
            return lmio__fail(err, LMIO_ERR_IO, dir, -1, "", "cannot replace the existing directory: %s", strerror(errno));
        lmio__remove_tree(aside);
    } else {
        lmio__remove_tree(tmp); /* tmp now names the old directory */
    }
    if (durable) fsync_path(parent);
    return LMIO_OK;
}


lmio_status lmio__stage_begin(lmio__stage *st, const char *dir, int durable, lmio_error *err)
{
    memset(st, 0, sizeof *st);
    st->durable = durable;
    /* the temporary directory sits beside the target: same filesystem */
    char base[4200];
    const char *slash = strrchr(dir, '/');
    size_t pl = slash ? (size_t)(slash - dir) : 0;
    if (pl >= sizeof st->parent - 64 || strlen(dir) >= sizeof st->tmp - 64)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "path too long");
    if (!slash) strcpy(st->parent, ".");
    else if (pl == 0) strcpy(st->parent, "/");
    else { memcpy(st->parent, dir, pl); st->parent[pl] = 0; }
    strcpy(st->dir, dir);
    snprintf(base, sizeof base, ".%s.lmio-tmp-XXXXXX", slash ? slash + 1 : dir);
    lmio_status s = lmio__path_join(st->tmp, sizeof st->tmp, st->parent, base, err);
    if (s) return s;
    if (!mkdtemp(st->tmp)) {
        st->tmp[0] = 0;
        return lmio__fail(err, LMIO_ERR_IO, dir, -1, "", "cannot create a temporary directory beside it: %s",
                          strerror(errno));
    }
    mode_t um = umask(0); /* mkdtemp makes 0700; a model directory is shared like any other */
    umask(um);
    chmod(st->tmp, 0777 & ~um);
    return LMIO_OK;
}

lmio_status lmio__stage_commit(lmio__stage *st, lmio_error *err)
{
    lmio_status s = commit_dir(st->tmp, st->dir, st->parent, st->durable, err);
    if (s) lmio__stage_abort(st);
    else st->tmp[0] = 0;
    return s;
}

void lmio__stage_abort(lmio__stage *st)
{
    if (st->tmp[0]) lmio__remove_tree(st->tmp);
    st->tmp[0] = 0;
}
