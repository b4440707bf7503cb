/* Whole-file access (mmap or pread) and crash-safe output files. */
#define _GNU_SOURCE
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static lmio_status read_all(int fd, const char *path, uint64_t size, unsigned char **out,
                            lmio_error *err)
{
    /* size comes from fstat, i.e. what is really on disk, never from a
     * header field, so allocating it is not trusting the file. */
    unsigned char *buf = lmio__malloc(size > SIZE_MAX ? SIZE_MAX : (size_t)size);
    if (!buf)
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "cannot allocate %llu bytes to read the file",
                          (unsigned long long)size);
    uint64_t done = 0;
    while (done < size) {
        size_t want = size - done > (1u << 30) ? (1u << 30) : (size_t)(size - done);
        ssize_t r = pread(fd, buf + done, want, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            lmio__free(buf);
            return lmio__fail(err, LMIO_ERR_IO, path, (int64_t)done, "", "read failed: %s",
                              r == 0 ? "file shrank while reading" : strerror(e));
        }
        done += (uint64_t)r;
    }
    *out = buf;
    return LMIO_OK;
}

lmio_status lmio__file_open(const char *path, int use_mmap, lmio__file *out, lmio_error *err)
{
    memset(out, 0, sizeof *out);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return lmio__fail(err, e == ENOENT ? LMIO_ERR_NOT_FOUND : LMIO_ERR_IO, path, -1, "",
                          "cannot open: %s", strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return lmio__fail(err, LMIO_ERR_IO, path, -1, "", "cannot stat: %s", strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "",
                          "not a regular file; expected a model file");
    }
    out->size = (uint64_t)st.st_size;
    lmio_status s = LMIO_OK;
    if (out->size == 0) {
        out->data = NULL; /* nothing to map; readers see an empty buffer */
    } else if (use_mmap) {
        void *p = mmap(NULL, (size_t)out->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            /* Some filesystems cannot map; reading is slower but correct. */
            unsigned char *buf;
            s = read_all(fd, path, out->size, &buf, err);
            if (s == LMIO_OK) out->data = buf;
        } else {
            out->data = p;
            out->mapped = 1;
        }
    } else {
        unsigned char *buf;
        s = read_all(fd, path, out->size, &buf, err);
        if (s == LMIO_OK) out->data = buf;
    }
    close(fd);
    return s;
}

void lmio__file_close(lmio__file *f)
{
    if (!f || !f->data) return;
    if (f->mapped)
        munmap((void *)f->data, (size_t)f->size);
    else
        lmio__free((void *)f->data);
    f->data = NULL;
}

/* ---- output files ---- */

static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return lmio__strdup(".");
    if (slash == path) return lmio__strdup("/");
    return lmio__strndup(path, (size_t)(slash - path));
}

static void outfile_reset(lmio__outfile *o)
{
    lmio__free(o->tmp_path);
    lmio__free(o->final_path);
    o->tmp_path = o->final_path = NULL;
    o->fd = -1;
}

lmio_status lmio__outfile_begin(lmio__outfile *o, const char *path, lmio_error *err)
{
    memset(o, 0, sizeof *o);
    o->fd = -1;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "",
                          "is a directory; expected a file path");
    char *dir = dir_of(path);
    const char *base = lmio__basename(path);
    size_t need = (dir ? strlen(dir) : 0) + strlen(base) + 32;
    o->tmp_path = dir ? lmio__malloc(need) : NULL;
    o->final_path = o->tmp_path ? lmio__strdup(path) : NULL;
    if (!o->final_path) {
        lmio__free(dir);
        outfile_reset(o);
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    }
    /* Same directory as the destination so rename() is atomic; a dot name
     * so directory listings and globs for *.safetensors skip it. */
    snprintf(o->tmp_path, need, "%s/.%s.lmio-tmp-XXXXXX", dir, base);
    lmio__free(dir);
    o->fd = mkstemp(o->tmp_path);
    if (o->fd < 0) {
        int e = errno;
        outfile_reset(o);
        return lmio__fail(err, LMIO_ERR_IO, path, -1, "", "cannot create a temporary file beside it: %s",
                          strerror(e));
    }
    /* mkstemp creates 0600; a saved model should get the usual 0666 & ~umask. */
    mode_t um = umask(0);
    umask(um);
    if (fchmod(o->fd, 0666 & ~um) != 0) { /* not fatal: the file is still correct */ }
    return LMIO_OK;
}

lmio_status lmio__outfile_write(lmio__outfile *o, const void *buf, size_t n, lmio_error *err)
{
    const unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        ssize_t w = write(o->fd, p, chunk);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = w < 0 ? errno : ENOSPC;
            return lmio__fail(err, LMIO_ERR_IO, o->final_path, (int64_t)o->written, "",
                              "write failed: %s", strerror(e));
        }
        p += w;
        n -= (size_t)w;
        o->written += (uint64_t)w;
    }
    return LMIO_OK;
}

void lmio__outfile_abort(lmio__outfile *o)
{
    if (o->fd >= 0) close(o->fd);
    if (o->tmp_path) unlink(o->tmp_path);
    outfile_reset(o);
}

lmio_status lmio__outfile_commit(lmio__outfile *o, int durable, lmio_error *err)
{
    lmio_status s = LMIO_OK;
    if (durable && fsync(o->fd) != 0) {
        int e = errno;
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "", "fsync failed: %s", strerror(e));
        lmio__outfile_abort(o);
        return s;
    }
    if (close(o->fd) != 0) {
        int e = errno;
        o->fd = -1;
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "", "close failed: %s", strerror(e));
        lmio__outfile_abort(o);
        return s;
    }
    o->fd = -1;
    if (rename(o->tmp_path, o->final_path) != 0) {
        int e = errno;
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "", "cannot rename the finished file into place: %s",
                       strerror(e));
        lmio__outfile_abort(o);
        return s;
    }
    if (durable) {
        /* The rename is only durable once the directory entry is. A stack
         * buffer: nothing may fail after the new file is already in place. */
        char dir[4096];
        const char *slash = strrchr(o->final_path, '/');
        size_t dl = slash ? (size_t)(slash - o->final_path) : 0;
        if (!slash) strcpy(dir, ".");
        else if (dl == 0) strcpy(dir, "/");
        else if (dl < sizeof dir) { memcpy(dir, o->final_path, dl); dir[dl] = 0; }
        else dir[0] = 0;
        int dfd = dir[0] ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    outfile_reset(o);
    return LMIO_OK;
}

lmio_status lmio__write_file(const char *path, const void *data, size_t len, int durable, lmio_error *err)
{
    lmio__outfile o;
    lmio_status s = lmio__outfile_begin(&o, path, err);
    if (s) return s;
    if ((s = lmio__outfile_write(&o, data, len, err))) {
        lmio__outfile_abort(&o);
        return s;
    }
    return lmio__outfile_commit(&o, durable, err);
}

lmio_status lmio__json_load_file(const char *path, lmio__json **out, lmio_error *err)
{
    lmio__file f;
    lmio_status s = lmio__file_open(path, 0, &f, err);
    if (s) return s;
    size_t valid = lmio__utf8_prefix((const char *)f.data, (size_t)f.size);
    if (valid != f.size) {
        s = lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)valid, "", "byte 0x%02x is not valid UTF-8; expected UTF-8 JSON",
                       f.data[valid]);
    } else {
        s = lmio__json_parse((const char *)f.data, (size_t)f.size, path, 0, out, err);
    }
    lmio__file_close(&f);
    return s;
}

lmio_status lmio__path_join(char *out, size_t cap, const char *dir, const char *name, lmio_error *err)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, dir, -1, "", "path to \"%s\" is too long; expected under %zu bytes",
                          name, cap);
    return LMIO_OK;
}
