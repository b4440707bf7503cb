/* Directories that appear whole or not at all: a save builds the new
 * directory beside its destination and swaps it into place in one step,
 * and replaces only what lmio itself writes. */
#define _GNU_SOURCE /* renameat2 */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The one list of the files lmio writes into a model directory: what
 * lmio_pretrained_save and the lmio_tokenizer_save it calls may produce. A
 * save replaces or removes nothing else. (test_dircommit saves every part
 * and checks each file it finds is on this list.) */
static const char *const k_lmio_files[] = {
    "config.json",    "generation_config.json",  "model.safetensors",       "model.safetensors.index.json",
    "tokenizer.json", "tokenizer_config.json",   "special_tokens_map.json", "vocab.json",
    "merges.txt",     LMIO_MANIFEST_NAME,
};

/* n or more decimal digits at *p, advanced past them. */
static bool digits(const char **p, int n)
{
    int k = 0;
    while (**p >= '0' && **p <= '9') (*p)++, k++;
    return k >= n;
}

/* model-00001-of-00003.safetensors, as save.c names shards (%05zu). */
static bool is_shard_name(const char *n)
{
    if (strncmp(n, "model-", 6)) return false;
    n += 6;
    if (!digits(&n, 5) || strncmp(n, "-of-", 4)) return false;
    n += 4;
    return digits(&n, 5) && !strcmp(n, ".safetensors");
}

bool lmio__is_lmio_file(const char *name)
{
    for (size_t i = 0; i < sizeof k_lmio_files / sizeof k_lmio_files[0]; i++)
        if (!strcmp(name, k_lmio_files[i])) return true;
    if (is_shard_name(name)) return true;
    /* .<lmio file>.lmio-tmp-XXXXXX: left by a killed save of one file */
    const char *tag = strstr(name, LMIO__TMP_TAG);
    if (name[0] != '.' || !tag || strlen(tag) != strlen(LMIO__TMP_TAG) + 6) return false;
    char inner[256];
    size_t l = (size_t)(tag - name - 1);
    if (l >= sizeof inner) return false;
    memcpy(inner, name + 1, l);
    inner[l] = 0;
    return lmio__is_lmio_file(inner);
}

/* The first entry of dir that lmio would not write: a directory or other
 * non-file under an lmio name counts too. NULL when there is none. */
static lmio_status only_lmio_files(const char *dir, lmio_error *err)
{
    DIR *d = opendir(dir);
    if (!d) return lmio__fail(err, LMIO_ERR_IO, dir, -1, "", "cannot list the directory: %s", strerror(errno));
    lmio_status s = LMIO_OK;
    struct dirent *e;
    while ((e = readdir(d)) && !s) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat st;
        bool file = fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode));
        if (!file || !lmio__is_lmio_file(e->d_name))
            s = lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, e->d_name,
                           "holds \"%s\", which lmio does not write; expected a new, empty or lmio-written model "
                           "directory (keep_other_files = 1 keeps such files; nothing was changed)",
                           e->d_name);
    }
    closedir(d);
    return s;
}

/* fsync of a directory through the injection hook: 0 or an errno. */
static int sync_dir_fd(int fd)
{
    int e = lmio__io_fault(LMIO__IO_DIRSYNC);
    if (e) return e;
    return fsync(fd) == 0 || errno == EINVAL ? 0 : errno;
}

static int sync_dir_path(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno;
    int e = sync_dir_fd(fd);
    close(fd);
    return e;
}

static int do_rename(int flags, const char *from, const char *to)
{
    int e = lmio__io_fault(LMIO__IO_RENAME);
    if (e) return e;
    int r = flags ? renameat2(AT_FDCWD, from, AT_FDCWD, to, (unsigned)flags) : rename(from, to);
    return r == 0 ? 0 : errno;
}

/* ---- the source must not be inside the destination, nor it inside the source ---- */

/* True when the directory (dev, ino) is path or one of its ancestors,
 * found by walking ".." (not by comparing realpath strings: "/m/a2" starts
 * with "/m/a" and is not inside it). */
static bool has_ancestor(const char *path, dev_t dev, ino_t ino)
{
    int fd = open(path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    for (int depth = 0; fd >= 0 && depth < 4096; depth++) {
        struct stat a, b;
        if (fstat(fd, &a) != 0) break;
        if (a.st_dev == dev && a.st_ino == ino) {
            close(fd);
            return true;
        }
        int up = openat(fd, "..", O_PATH | O_DIRECTORY | O_CLOEXEC);
        close(fd);
        fd = up;
        if (fd < 0 || fstat(fd, &b) != 0 || (b.st_dev == a.st_dev && b.st_ino == a.st_ino)) break; /* "/" */
    }
    if (fd >= 0) close(fd);
    return false;
}

static lmio_status check_source_dir(const lmio__stage *st, const char *sdir, const char *src, lmio_error *err)
{
    struct stat ss;
    if (stat(sdir, &ss) != 0) return LMIO_OK;
    /* the same directory: the old files go only after the new are in place,
     * and the weights are views of files that stay open until then */
    if (st->exists && ss.st_dev == st->dev && ss.st_ino == st->ino) return LMIO_OK;
    if (st->exists && has_ancestor(sdir, st->dev, st->ino))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, st->dir, -1, "",
                          "contains %s, which is being read from; expected a destination outside the source "
                          "(nothing was changed)",
                          src);
    /* A model directory the weights were loaded from is the source, not
     * just its files: nothing is saved inside it. A loose file's directory
     * (weights.safetensors in the working directory) is not a source. */
    if (lmio__is_lmio_file(lmio__basename(src)) && has_ancestor(st->parent, ss.st_dev, ss.st_ino))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, st->dir, -1, "",
                          "is inside %s, the directory being read from; expected a destination outside the "
                          "source (nothing was changed)",
                          sdir);
    return LMIO_OK;
}

static lmio_status check_sources(const lmio__stage *st, const lmio_statedict *w, lmio_error *err)
{
    char last[PATH_MAX] = "";
    for (size_t i = 0; w && i < lmio_statedict_count(w); i++) {
        lmio_tensor t;
        lmio_statedict_get(w, i, &t, NULL);
        if (!t.source) continue;
        char sdir[PATH_MAX];
        const char *slash = strrchr(t.source, '/');
        size_t l = slash ? (size_t)(slash - t.source) : 1;
        if (l >= sizeof sdir) continue;
        if (!slash) strcpy(sdir, ".");
        else if (l == 0) strcpy(sdir, "/");
        else { memcpy(sdir, t.source, l); sdir[l] = 0; }
        if (!strcmp(sdir, last)) continue; /* shards share a directory: walk it once */
        strcpy(last, sdir);
        lmio_status s = check_source_dir(st, sdir, t.source, err);
        if (s) return s;
    }
    return LMIO_OK;
}

/* ---- begin ---- */

/* dir without trailing slashes, split into parent and name. */
static lmio_status split_dir(lmio__stage *st, const char *dir, lmio_error *err)
{
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    if (len >= sizeof st->dir - 64) return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "path too long");
    memcpy(st->dir, dir, len);
    st->dir[len] = 0;
    const char *slash = strrchr(st->dir, '/');
    st->name = slash ? slash + 1 : st->dir;
    if (!*st->name || !strcmp(st->name, ".") || !strcmp(st->name, ".."))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "names no directory; expected a directory name");
    size_t pl = slash ? (size_t)(slash - st->dir) : 0;
    if (!slash) strcpy(st->parent, ".");
    else if (pl == 0) strcpy(st->parent, "/");
    else { memcpy(st->parent, st->dir, pl); st->parent[pl] = 0; }
    return LMIO_OK;
}

lmio_status lmio__stage_begin(lmio__stage *st, const char *dir, int durable, int keep_other,
                              const lmio_statedict *sources, lmio_error *err)
{
    memset(st, 0, sizeof *st);
    st->durable = durable;
    st->keep_other = keep_other;
    st->lock_fd = st->slot = -1;
    lmio_status s = split_dir(st, dir, err);
    if (s) return s;
    struct stat sb;
    if (lstat(st->dir, &sb) == 0) {
        if (S_ISLNK(sb.st_mode))
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, st->dir, -1, "",
                              "is a symbolic link; expected a directory path (give the directory it points to)");
        if (!S_ISDIR(sb.st_mode))
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, st->dir, -1, "",
                              "exists and is not a directory; expected a directory or a new name");
        st->exists = 1;
        st->mode = sb.st_mode & 07777;
        st->uid = sb.st_uid;
        st->gid = sb.st_gid;
        st->dev = sb.st_dev;
        st->ino = sb.st_ino;
        if (!keep_other && (s = only_lmio_files(st->dir, err))) return s;
    } else if (errno != ENOENT) {
        return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "cannot examine: %s", strerror(errno));
    }
    if ((s = check_sources(st, sources, err))) return s;
    lmio__temp_sweep(st->parent, st->name);
    /* A directory that replaces another starts private and takes its mode
     * and owner before any file is written into it. */
    int fd = lmio__temp_create(st->parent, st->name, 1, st->exists ? 0700 : 0777, st->tmp, sizeof st->tmp, &st->slot);
    if (fd < 0) {
        int e = errno;
        st->tmp[0] = 0;
        return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "cannot create a temporary directory beside it: %s",
                          strerror(e));
    }
    st->lock_fd = fd;
    if (!lmio__file_id_fd(fd, &st->tmp_id)) memset(&st->tmp_id, 0, sizeof st->tmp_id);
    if (st->exists) {
        if (fchown(fd, st->uid, st->gid) != 0 && fchown(fd, (uid_t)-1, st->gid) != 0) { /* not allowed */ }
        if (fchmod(fd, st->mode) != 0) { /* the files are still right */ }
    }
    return LMIO_OK;
}

/* ---- commit ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* keep_other_files: lmio's new files move into the existing directory one
 * by one (weights first, then the index and config that point at them,
 * then the manifest),
 * then lmio files of the old save the new one lacks are removed. The
 * user's other files are never moved, so no failure can lose them. */
static lmio_status move_files_in(lmio__stage *st, lmio_error *err)
{
    DIR *d = opendir(st->tmp);
    if (!d) return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "cannot list the new files: %s", strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    lmio_status s = LMIO_OK;
    struct dirent *e;
    while ((e = readdir(d)) && !s) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!lmio__grow((void **)&names, sizeof *names, n + 1, &cap) || !(names[n] = lmio__strdup(e->d_name)))
            s = lmio__fail(err, LMIO_ERR_NOMEM, st->dir, -1, "", "out of memory");
        else n++;
    }
    closedir(d);
    if (n > 1) qsort(names, n, sizeof *names, cmp_str);
    /* the manifest, which vouches for all the others, last of all */
    for (int pass = 0; pass < 3 && !s; pass++)
        for (size_t i = 0; i < n && !s; i++) {
            int rank = !strcmp(names[i], LMIO_MANIFEST_NAME) ? 2
                       : !strcmp(names[i], "model.safetensors.index.json") || !strcmp(names[i], "config.json") ? 1
                                                                                                                : 0;
            if (rank != pass) continue;
            char from[PATH_MAX], to[PATH_MAX];
            int e2;
            if ((s = lmio__path_join(from, sizeof from, st->tmp, names[i], err)) ||
                (s = lmio__path_join(to, sizeof to, st->dir, names[i], err)))
                break;
            if ((e2 = do_rename(0, from, to)))
                s = lmio__fail(err, LMIO_ERR_IO, to, -1, "",
                               "cannot move the new file into place: %s; the directory may hold a mix of old and "
                               "new lmio files (keep_other_files replaces them one by one)",
                               strerror(e2));
        }
    if (!s && (d = opendir(st->dir))) {
        while ((e = readdir(d)))
            if (lmio__is_lmio_file(e->d_name) && !strstr(e->d_name, LMIO__TMP_TAG) && /* temporaries: the sweep's, by flock */
                !bsearch(&(const char *){e->d_name}, names, n, sizeof *names, cmp_str))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    for (size_t i = 0; i < n; i++) lmio__free(names[i]);
    lmio__free(names);
    return s;
}

/* No RENAME_EXCHANGE here (NFS and other filesystems): move the old
 * directory aside, the new one in, and put the old one back on failure. */
static int swap_by_two_renames(lmio__stage *st)
{
    char aside[PATH_MAX];
    int n = snprintf(aside, sizeof aside, "%s/.%s.lmio-old-%d", st->parent, st->name, (int)getpid());
    if (n < 0 || (size_t)n >= sizeof aside) return ENAMETOOLONG;
    int e = do_rename(0, st->dir, aside);
    if (e) return e;
    if ((e = do_rename(0, st->tmp, st->dir))) {
        rename(aside, st->dir);
        return e;
    }
    lmio__remove_tree_at(AT_FDCWD, aside);
    return 0;
}

static lmio_status swap_in(lmio__stage *st, lmio_error *err)
{
    int e;
    if (!st->exists) {
        if ((e = do_rename(0, st->tmp, st->dir)))
            return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "cannot move the finished directory into place: %s%s",
                              strerror(e), e == EEXIST || e == ENOTEMPTY ? " (it appeared while saving)" : "");
        return LMIO_OK;
    }
    if (st->keep_other) return move_files_in(st, err);
    lmio_status s = only_lmio_files(st->dir, err); /* again: it may have changed while saving */
    if (s) return s;
    /* Both names swap in one step, so a crash leaves the old or the new
     * directory in place, never neither; then the old one is deleted. */
    e = do_rename(RENAME_EXCHANGE, st->tmp, st->dir);
    if (e == EINVAL || e == ENOSYS) {
        e = swap_by_two_renames(st);
    } else if (!e) {
        lmio__remove_tree_at(AT_FDCWD, st->tmp); /* tmp now names the old directory */
    }
    if (e) return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "cannot replace the existing directory: %s", strerror(e));
    return LMIO_OK;
}

lmio_status lmio__stage_commit(lmio__stage *st, lmio_error *err)
{
    int e;
    /* Every file is in place: the manifest is written over them last, so a
     * directory with a manifest is one whose save got this far. */
    lmio_status s = lmio__manifest_write(st->tmp, st->durable, err);
    if (s) lmio__stage_fix_error(st, err);
    if (!s && st->durable && (e = sync_dir_fd(st->lock_fd)))
        s = lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "cannot sync the new directory: %s", strerror(e));
    if (!s) s = swap_in(st, err);
    if (s) {
        lmio__stage_abort(st);
        return s;
    }
    if (st->keep_other) lmio__remove_tree_at(AT_FDCWD, st->tmp); /* emptied by the moves */
    st->tmp[0] = 0;
    lmio__stage_abort(st); /* releases the lock and the registry slot */
    if (st->durable && (e = sync_dir_path(st->parent)))
        return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "",
                          "saved, but its parent directory could not be synced: %s; expected the new directory to "
                          "survive a crash",
                          strerror(e));
    if (st->durable && st->keep_other && (e = sync_dir_path(st->dir)))
        return lmio__fail(err, LMIO_ERR_IO, st->dir, -1, "", "saved, but it could not be synced: %s", strerror(e));
    return LMIO_OK;
}

void lmio__stage_abort(lmio__stage *st)
{
    if (st->tmp_id.ino) lmio__digest_forget(&st->tmp_id);
    if (st->tmp[0]) lmio__remove_tree_at(AT_FDCWD, st->tmp);
    st->tmp[0] = 0;
    lmio__temp_unregister(st->slot);
    st->slot = -1;
    if (st->lock_fd >= 0) close(st->lock_fd);
    st->lock_fd = -1;
}

/* Replaces each occurrence of from with to in buf (cap bytes). */
static void replace_all(char *buf, size_t cap, const char *from, const char *to)
{
    char out[LMIO_ERROR_MESSAGE_MAX];
    size_t fl = strlen(from), tl = strlen(to), o = 0;
    if (!fl || cap > sizeof out) return;
    for (const char *p = buf; *p && o + 1 < cap;) {
        if (!strncmp(p, from, fl) && o + tl + 1 < cap) {
            memcpy(out + o, to, tl);
            o += tl;
            p += fl;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = 0;
    memcpy(buf, out, o + 1);
}

void lmio__stage_fix_error(const lmio__stage *st, lmio_error *err)
{
    if (!err || !st->tmp[0]) return;
    char from[LMIO_ERROR_MESSAGE_MAX], to[LMIO_ERROR_MESSAGE_MAX];
    lmio_escape_text(from, sizeof from, st->tmp, strlen(st->tmp));
    lmio_escape_text(to, sizeof to, st->dir, strlen(st->dir));
    replace_all(err->message, sizeof err->message, from, to);
    replace_all(err->path, sizeof err->path, st->tmp, st->dir);
}
