/* Carrying a model directory's other files: what lmio does not interpret
 * (tokenizer files of any kind, README.md, sentence-transformers'
 * modules.json and 1_Pooling/, an onnx/ folder, ...) is copied byte for
 * byte, so converting weights never loses a part of the model that lmio
 * does not understand. */
#include "../formats/formats.h"
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CARRY_CHUNK (1u << 20)
#define CARRY_MAX_DEPTH 32

/* "<stem>-00001-of-00003<ext>" */
static bool is_shard_name(const char *name, const char *stem, const char *ext)
{
    size_t ls = strlen(stem), le = strlen(ext), n = strlen(name);
    if (n != ls + 15 + le || strncmp(name, stem, ls) || strcmp(name + n - le, ext)) return false;
    const char *p = name + ls;
    static const char shape[] = "-DDDDD-of-DDDDD";
    for (size_t i = 0; i < 15; i++)
        if (shape[i] == 'D' ? (p[i] < '0' || p[i] > '9') : p[i] != shape[i]) return false;
    return true;
}

bool lmio__is_weights_name(const char *name)
{
    for (size_t i = 0; i < lmio__format_count(); i++) {
        const lmio__format *f = lmio__format_at(i);
        if (!f->dir_file) continue;
        if (!strcmp(name, f->dir_file) || (f->dir_index && !strcmp(name, f->dir_index)) ||
            (f->dir_shard_stem && is_shard_name(name, f->dir_shard_stem, f->dir_shard_ext)))
            return true;
    }
    return false;
}

/* What a converted directory gets anew rather than from its source: the
 * config (rewritten with its content kept), the weights in every format
 * (rewritten), the manifest (the source's describes the source), a
 * version-control checkout's own state, and lmio's temporary directories. */
static bool not_carried(const char *name)
{
    return !strcmp(name, ".") || !strcmp(name, "..") || !strcmp(name, "config.json") || !strcmp(name, ".git") ||
           !strcmp(name, LMIO_MANIFEST_NAME) || strstr(name, ".lmio-tmp-") != NULL || lmio__is_weights_name(name);
}

static lmio_status copy_file(int sfd, const char *src, const char *dst, int durable, lmio_error *err)
{
    unsigned char *buf = lmio__malloc(CARRY_CHUNK);
    if (!buf) return lmio__fail(err, LMIO_ERR_NOMEM, src, -1, "", "out of memory");
    lmio__outfile out;
    lmio_status s = lmio__outfile_begin(&out, dst, err);
    for (int64_t off = 0; !s;) {
        ssize_t r = pread(sfd, buf, CARRY_CHUNK, off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            s = lmio__fail(err, LMIO_ERR_IO, src, off, "", "cannot read: %s", strerror(errno));
            break;
        }
        if (r == 0) break;
        s = lmio__outfile_write(&out, buf, (size_t)r, err);
        off += r;
    }
    if (s) lmio__outfile_abort(&out);
    else s = lmio__outfile_commit(&out, durable, err);
    lmio__free(buf);
    return s;
}

static lmio_status carry_dir(const char *root, const char *src, const char *dst, int depth, int durable,
                             lmio_error *err);

/* One entry: a regular file (symlinks followed, so the Hugging Face cache's
 * snapshot links work) is copied; a directory is copied whole; anything
 * else would be lost silently, so it is an error. */
static lmio_status carry_entry(const char *root, const char *src, const char *dst, int depth, int durable,
                               lmio_error *err)
{
    /* a link out of the model directory would copy someone's private file
     * into the new one (the Hugging Face cache's blob links are allowed) */
    lmio_status cs = lmio__check_inside(root, src, err);
    if (cs) return cs;
    /* O_NONBLOCK: a FIFO opens without waiting for a writer, and is then
     * refused by the type check */
    int fd = open(src, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return lmio__fail(err, LMIO_ERR_IO, src, -1, "", "cannot open: %s", strerror(errno));
    struct stat st;
    lmio_status s;
    if (fstat(fd, &st) != 0)
        s = lmio__fail(err, LMIO_ERR_IO, src, -1, "", "cannot stat: %s", strerror(errno));
    else if (S_ISREG(st.st_mode))
        s = copy_file(fd, src, dst, durable, err);
    else if (S_ISDIR(st.st_mode)) {
        if (mkdir(dst, st.st_mode & 07777) != 0)
            s = lmio__fail(err, LMIO_ERR_IO, dst, -1, "", "cannot create directory: %s", strerror(errno));
        else
            s = carry_dir(root, src, dst, depth + 1, durable, err);
    } else
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, src, -1, "",
                       "neither a regular file nor a directory; expected only files and folders in a model directory");
    close(fd);
    return s;
}

static lmio_status carry_dir(const char *root, const char *src, const char *dst, int depth, int durable,
                             lmio_error *err)
{
    if (depth > CARRY_MAX_DEPTH)
        return lmio__fail(err, LMIO_ERR_LIMIT, src, -1, "", "folders nested more than %d deep", CARRY_MAX_DEPTH);
    DIR *d = opendir(src);
    if (!d) return lmio__fail(err, LMIO_ERR_IO, src, -1, "", "cannot list: %s", strerror(errno));
    lmio_status s = LMIO_OK;
    struct dirent *e;
    char from[4096], to[4096];
    while (!s && (errno = 0, e = readdir(d))) {
        /* weights and config are rewritten only at the top level; inside
         * folders (2_Dense/model.safetensors, ...) everything is carried */
        if (depth == 0 ? not_carried(e->d_name) : (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")))
            continue;
        if (!(s = lmio__path_join(from, sizeof from, src, e->d_name, err)) &&
            !(s = lmio__path_join(to, sizeof to, dst, e->d_name, err)))
            s = carry_entry(root, from, to, depth, durable, err);
    }
    if (!s && errno) s = lmio__fail(err, LMIO_ERR_IO, src, -1, "", "cannot list: %s", strerror(errno));
    closedir(d);
    return s;
}

lmio_status lmio__carry_files(const char *src_dir, const char *dst_dir, int durable, lmio_error *err)
{
    return carry_dir(src_dir, src_dir, dst_dir, 0, durable, err);
}
