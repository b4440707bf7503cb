/* Whole-file access (mmap or pread) and crash-safe output files. */
#define _GNU_SOURCE
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

/* ---- mapped files whose bytes the kernel can copy ----
 * A save whose tensors are views of a mapped input (a conversion, a
 * re-shard) can have the kernel move those bytes file to file with
 * copy_file_range: no page faults on the mapping, no pass through user
 * memory, and a reflink or server-side copy where the filesystem has one.
 * That needs the input's descriptor, so a mapping keeps it open, but only
 * for the first MAP_SLOTS mappings alive at once: guard.c explains why a
 * descriptor per shard for the life of a state dict cannot be the rule. A
 * mapping without a slot is written from memory as before. Fixed static
 * slots: no allocation, so nothing here can fail. */
#define MAP_SLOTS 64
typedef struct map_slot {
    const unsigned char *base; /* NULL: free */
    uint64_t size;
    int fd;
} map_slot;
static map_slot g_maps[MAP_SLOTS];
static pthread_mutex_t g_maps_lock = PTHREAD_MUTEX_INITIALIZER;

/* Takes fd into a slot: true when kept (closed by map_forget). */
static bool map_remember(const unsigned char *base, uint64_t size, int fd)
{
    bool kept = false;
    pthread_mutex_lock(&g_maps_lock);
    for (size_t i = 0; i < MAP_SLOTS && !kept; i++)
        if (!g_maps[i].base) {
            g_maps[i] = (map_slot){base, size, fd};
            kept = true;
        }
    pthread_mutex_unlock(&g_maps_lock);
    return kept;
}

static void map_forget(const unsigned char *base)
{
    int fd = -1;
    pthread_mutex_lock(&g_maps_lock);
    for (size_t i = 0; i < MAP_SLOTS; i++)
        if (g_maps[i].base == base) {
            fd = g_maps[i].fd;
            g_maps[i] = (map_slot){NULL, 0, -1};
            break;
        }
    pthread_mutex_unlock(&g_maps_lock);
    if (fd >= 0) close(fd);
}

/* The file and offset behind [p, p + n) when all of it lies in one kept
 * mapping: a dup of its descriptor (the mapping may be closed meanwhile by
 * another thread), else -1. */
static int map_lookup(const void *p, size_t n, int64_t *off)
{
    int fd = -1;
    const unsigned char *q = p;
    pthread_mutex_lock(&g_maps_lock);
    for (size_t i = 0; i < MAP_SLOTS; i++) {
        const map_slot *m = &g_maps[i];
        if (m->base && q >= m->base && (uint64_t)(q - m->base) <= m->size && n <= m->size - (uint64_t)(q - m->base)) {
            fd = fcntl(m->fd, F_DUPFD_CLOEXEC, 0);
            *off = (int64_t)(q - m->base);
            break;
        }
    }
    pthread_mutex_unlock(&g_maps_lock);
    return fd;
}

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
    /* O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever;
     * nothing is read before fstat has said this is a regular file. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
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
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "is %s; expected a regular file",
                          S_ISDIR(st.st_mode) ? "a directory" : S_ISFIFO(st.st_mode) ? "a FIFO"
                          : S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) ? "a device" : S_ISSOCK(st.st_mode) ? "a socket"
                          : "not a regular file");
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
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
            if (map_remember(p, out->size, fd)) fd = -1;
        }
    } else {
        unsigned char *buf;
        s = read_all(fd, path, out->size, &buf, err);
        if (s == LMIO_OK) out->data = buf;
    }
    if (fd >= 0) close(fd);
    return s;
}

void lmio__file_close(lmio__file *f)
{
    if (!f || !f->data) return;
    if (f->mapped) {
        map_forget(f->data);
        munmap((void *)f->data, (size_t)f->size);
    }
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

bool lmio__file_id_fd(int fd, lmio__file_id *id)
{
    struct stat st;
    if (fstat(fd, &st) != 0) return false;
    *id = (lmio__file_id){(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size, (int64_t)st.st_ctim.tv_sec,
                          (int64_t)st.st_ctim.tv_nsec};
    return true;
}

bool lmio__file_id_path(const char *path, lmio__file_id *id)
{
    struct stat st;
    if (lstat(path, &st) != 0) return false;
    *id = (lmio__file_id){(uint64_t)st.st_dev, (uint64_t)st.st_ino, (uint64_t)st.st_size, (int64_t)st.st_ctim.tv_sec,
                          (int64_t)st.st_ctim.tv_nsec};
    return true;
}

static void outfile_reset(lmio__outfile *o)
{
    lmio__sha256_free(o->sha);
    o->sha = NULL;
    lmio__temp_unregister(o->slot);
    if (o->lock_fd >= 0) close(o->lock_fd);
    lmio__free(o->tmp_path);
    lmio__free(o->final_path);
    o->tmp_path = o->final_path = NULL;
    o->fd = o->lock_fd = o->slot = -1;
}

static const char *kind_of(mode_t m)
{
    return S_ISDIR(m) ? "a directory" : S_ISFIFO(m) ? "a FIFO" : S_ISCHR(m) || S_ISBLK(m) ? "a device"
           : S_ISSOCK(m) ? "a socket" : "not a regular file";
}

/* What is at the destination now: *old is filled when a regular file (or a
 * symlink to one, whose target's mode and owner are kept) will be replaced.
 * rename() never opens the destination, so a FIFO or device there would
 * silently become a regular file: refuse those instead. */
static lmio_status check_destination(const char *path, struct stat *old, bool *have_old, lmio_error *err)
{
    *have_old = false;
    size_t n = strlen(path);
    if (n && path[n - 1] == '/')
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "ends with '/'; expected a file path");
    struct stat st;
    if (lstat(path, &st) != 0) return LMIO_OK; /* new; a missing directory shows up at create */
    bool link = S_ISLNK(st.st_mode);
    if (link && stat(path, &st) != 0) return LMIO_OK; /* dangling: the link itself is replaced */
    if (!S_ISREG(st.st_mode))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "%s%s; expected a regular file or a new name",
                          link ? "is a symlink to " : "is ", kind_of(st.st_mode));
    *old = st;
    *have_old = true;
    return LMIO_OK;
}

/* The replaced file's owner first (chown clears set-id bits), then its
 * mode: fchmod is not masked by the umask, so 0600 stays 0600. Only root or
 * the owner may set these; otherwise the file is the saving user's. */
static void copy_owner_mode(int fd, const struct stat *old)
{
    if (fchown(fd, old->st_uid, old->st_gid) != 0 && fchown(fd, (uid_t)-1, old->st_gid) != 0) {
        /* not allowed: keep ours */
    }
    if (fchmod(fd, old->st_mode & 07777) != 0) { /* the data is still right */ }
}

/* path's directory is a staging directory: new, ours alone, and synced
 * and swapped into place as a whole by the checkpoint layer. */
static bool in_staging_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash) return false;
    const char *start = slash;
    while (start > path && start[-1] != '/') start--;
    const char *tag = strstr(start, LMIO__TMP_TAG);
    return tag && tag < slash && *start == '.';
}

lmio_status lmio__outfile_begin(lmio__outfile *o, const char *path, lmio_error *err)
{
    memset(o, 0, sizeof *o);
    o->fd = o->lock_fd = o->slot = -1;
    struct stat old;
    bool have_old;
    lmio_status s = check_destination(path, &old, &have_old, err);
    if (s) return s;
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
    /* A staging directory is new and only ours: nothing to sweep, and
     * sweeping it per file would cost O(files^2) for many shards. */
    if (!in_staging_dir(path)) lmio__temp_sweep(dir, base);
    /* Same directory as the destination so rename() is atomic; a dot name
     * so directory listings and globs for *.safetensors skip it. A file
     * that replaces another starts private and gets that file's mode. */
    o->fd = lmio__temp_create(dir, base, 0, have_old ? 0600 : 0666, o->tmp_path, need, &o->slot);
    lmio__free(dir);
    if (o->fd < 0) {
        int e = errno;
        lmio__free(o->tmp_path);
        o->tmp_path = NULL; /* nothing was created */
        outfile_reset(o);
        return lmio__fail(err, LMIO_ERR_IO, path, -1, "", "cannot create a temporary file beside it: %s",
                          strerror(e));
    }
    /* The flock lives on the open file description: a dup keeps it while
     * fd is closed (close reports NFS write errors) until after the rename,
     * so no sweeper can take the finished file away in between. */
    o->lock_fd = fcntl(o->fd, F_DUPFD_CLOEXEC, 0);
    if (have_old) copy_owner_mode(o->fd, &old);
    /* The stage's manifest needs this file's SHA-256: computed now, as the
     * bytes go out, rather than by reading the file back. */
    if (in_staging_dir(path) && !(o->sha = lmio__sha256_new())) {
        lmio__outfile_abort(o);
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    }
    return LMIO_OK;
}

static lmio_status write_failed(lmio__outfile *o, int e, lmio_error *err)
{
    o->sys_errno = e;
    return lmio__fail(err, LMIO_ERR_IO, o->final_path, (int64_t)o->written, "", "write failed: %s", strerror(e));
}

typedef struct sha_job {
    lmio__sha256 *sha;
    const void *p;
    size_t n;
    bool ok;
} sha_job;

static void sha_fn(void *ctx)
{
    sha_job *j = ctx;
    j->ok = lmio__sha256_update(j->sha, j->p, j->n); /* block hashing: no lock, no allocation */
}

/* The manifest's running hash over bytes just written, which may lie in a
 * mapped input (copy_file_range moved them file to file, or write(2) read
 * them before the file shrank): hashed guarded, a lost page being EFAULT
 * as a write from it would be. */
void (*lmio__hash_hook)(const void *p, size_t n);

static lmio_status hash_written(lmio__outfile *o, const void *p, size_t n, lmio_error *err)
{
    if (lmio__hash_hook) lmio__hash_hook(p, n);
    sha_job j = {o->sha, p, n, false};
    if (!lmio__guarded(sha_fn, &j)) return write_failed(o, EFAULT, err);
    if (!j.ok) return lmio__fail(err, LMIO_ERR_NOMEM, o->final_path, (int64_t)o->written, "", "SHA-256 failed");
    return LMIO_OK;
}

/* Below this a plain write costs less than setting up the kernel's copy. */
#define COPY_RANGE_MIN (64u << 10)

/* Moves the front of [*p, *p + *n) with copy_file_range when it lies in a
 * kept mapping, advancing *p and *n by what was copied. Stops early, with
 * LMIO_OK, where write() must take over: a filesystem pair that cannot
 * copy (EXDEV, EINVAL, ...: not tried again for this file) or a source
 * that ended early (it shrank: the write from the mapping reports that). */
static lmio_status copy_range(lmio__outfile *o, const unsigned char **p, size_t *n, lmio_error *err)
{
    int64_t off;
    int sfd = map_lookup(*p, *n, &off);
    if (sfd < 0) return LMIO_OK;
    lmio_status s = LMIO_OK;
    while (*n > 0) {
        size_t chunk = *n > (1u << 30) ? (1u << 30) : *n;
        int injected = lmio__io_fault(LMIO__IO_WRITE);
        if (injected) {
            s = write_failed(o, injected, err);
            break;
        }
        off_t in = (off_t)off;
        ssize_t w = copy_file_range(sfd, &in, o->fd, NULL, chunk, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w < 0) o->no_copy_range = 1;
            break;
        }
        /* the kernel moved these bytes: the manifest's running hash still
         * has to see them, from the mapping they were copied from */
        if (o->sha && (s = hash_written(o, *p, (size_t)w, err))) break;
        *p += w;
        *n -= (size_t)w;
        off += w;
        o->written += (uint64_t)w;
    }
    close(sfd);
    return s;
}

lmio_status lmio__outfile_write(lmio__outfile *o, const void *buf, size_t n, lmio_error *err)
{
    const unsigned char *p = buf;
    if (n >= COPY_RANGE_MIN && !o->no_copy_range) {
        lmio_status s = copy_range(o, &p, &n, err);
        if (s) return s;
    }
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : n;
        int injected = lmio__io_fault(LMIO__IO_WRITE);
        ssize_t w = injected ? -1 : write(o->fd, p, chunk);
        if (injected) errno = injected;
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return write_failed(o, w < 0 ? errno : ENOSPC, err);
        lmio_status s = o->sha ? hash_written(o, p, (size_t)w, err) : LMIO_OK;
        if (s) return s;
        p += w;
        n -= (size_t)w;
        o->written += (uint64_t)w;
    }
    return LMIO_OK;
}

void lmio__outfile_reserve(lmio__outfile *o, uint64_t size)
{
    /* Blocks allocated in one extent up front spare ext4 its per-page
     * delayed-allocation bookkeeping: a 500 MB save to the page cache takes
     * ~60 ms instead of ~90 ms, and the fsync of a durable one is faster
     * too (bench/README.md). KEEP_SIZE: the file still grows only by what
     * is written. tmpfs would just zero pages it is about to overwrite. A
     * filesystem that cannot reserve (or has no room) is left to the
     * writes, which report what is really wrong. */
    struct statfs fs;
    if (size == 0 || fstatfs(o->fd, &fs) != 0 || fs.f_type == 0x01021994 /* TMPFS_MAGIC */) return;
    if (fallocate(o->fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)size) == 0) o->reserved = size;
}

void lmio__outfile_abort(lmio__outfile *o)
{
    if (o->fd >= 0) close(o->fd);
    if (o->tmp_path) unlink(o->tmp_path);
    outfile_reset(o);
}

/* fsync of the directory holding path, through the injection hook. */
static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) : 0;
    if (!slash) strcpy(dir, ".");
    else if (dl == 0) strcpy(dir, "/");
    else if (dl < sizeof dir) { memcpy(dir, path, dl); dir[dl] = 0; }
    else return 0; /* cannot name it: nothing to sync */
    int e = lmio__io_fault(LMIO__IO_DIRSYNC);
    if (e) return e;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return errno;
    int r = fsync(dfd) == 0 || errno == EINVAL ? 0 : errno; /* EINVAL: this fs cannot sync directories */
    close(dfd);
    return r;
}

/* Hands the running hash to the digest cache, identified by what the file
 * is after its rename (lock_fd still refers to it). false when out of
 * memory; a file that cannot be identified is simply hashed again later. */
static bool record_digest(lmio__outfile *o)
{
    if (!o->sha) return true;
    unsigned char sha[LMIO__SHA256_LEN];
    lmio__file_id dir, file;
    char *d = dir_of(o->final_path);
    bool ok = d && lmio__sha256_final(o->sha, sha);
    if (ok && lmio__file_id_fd(o->lock_fd, &file) && file.size == o->written && lmio__file_id_path(d, &dir))
        ok = lmio__digest_put(&dir, &file, sha);
    lmio__free(d);
    return ok;
}

lmio_status lmio__outfile_commit(lmio__outfile *o, int durable, lmio_error *err)
{
    lmio_status s = LMIO_OK;
    int e;
    /* blocks reserved past what was written would stay allocated */
    if (o->reserved > o->written && ftruncate(o->fd, (off_t)o->written) != 0) { /* only space is lost */ }
    if (durable && ((e = lmio__io_fault(LMIO__IO_FSYNC)) || (fsync(o->fd) != 0 && (e = errno)))) {
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "", "fsync failed: %s", strerror(e));
        lmio__outfile_abort(o);
        return s;
    }
    if (close(o->fd) != 0) {
        e = errno;
        o->fd = -1;
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "", "close failed: %s", strerror(e));
        lmio__outfile_abort(o);
        return s;
    }
    o->fd = -1;
    if ((e = lmio__io_fault(LMIO__IO_RENAME)) || (rename(o->tmp_path, o->final_path) != 0 && (e = errno))) {
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "", "cannot rename the finished file into place: %s",
                       strerror(e));
        lmio__outfile_abort(o);
        return s;
    }
    /* The rename is only durable once the directory entry is. Inside a
     * staging directory that is the stage's job, once, before its swap. */
    /* in a staging directory, which the stage removes on this failure */
    if (!record_digest(o)) {
        s = lmio__fail(err, LMIO_ERR_NOMEM, o->final_path, -1, "", "out of memory");
        outfile_reset(o);
        return s;
    }
    if (durable && !in_staging_dir(o->final_path) && (e = fsync_parent(o->final_path)))
        s = lmio__fail(err, LMIO_ERR_IO, o->final_path, -1, "",
                       "written and renamed into place, but its directory could not be synced: %s; expected "
                       "the new file to survive a crash",
                       strerror(e));
    outfile_reset(o);
    return s;
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
    return lmio__json_load_file_ex(path, 0, out, err);
}

lmio_status lmio__json_load_file_ex(const char *path, int big_ints, lmio__json **out, lmio_error *err)
{
    lmio__file f;
    lmio_status s = lmio__file_open(path, 0, &f, err);
    if (s) return s;
    size_t valid = lmio__utf8_prefix((const char *)f.data, (size_t)f.size);
    if (valid != f.size) {
        s = lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)valid, "", "byte 0x%02x is not valid UTF-8; expected UTF-8 JSON",
                       f.data[valid]);
    } else {
        s = (big_ints ? lmio__json_parse_big_ints : lmio__json_parse)((const char *)f.data, (size_t)f.size, path, 0,
                                                                      out, err);
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

/* realpath's answer starts with dir's followed by '/': a real containment
 * test, unlike a bare prefix ("/m/gpt2-old" is not inside "/m/gpt2"). */
static bool under(const char *real, const char *dir)
{
    size_t n = strlen(dir);
    return !strncmp(real, dir, n) && (real[n] == '/' || (n == 1 && dir[0] == '/'));
}

/* The models--X folder of a Hugging Face cache snapshot directory
 * (<cache>/models--X/snapshots/<rev>) into out, else false. */
static bool hf_repo_of(const char *real_dir, char *out, size_t cap)
{
    const char *rev = strrchr(real_dir, '/');
    if (!rev || rev == real_dir) return false;
    size_t pl = (size_t)(rev - real_dir);
    if (pl < 10 || strncmp(real_dir + pl - 10, "/snapshots", 10)) return false;
    size_t rl = pl - 10;
    const char *repo = real_dir;
    for (size_t i = 0; i < rl; i++)
        if (real_dir[i] == '/') repo = real_dir + i + 1;
    if (strncmp(repo, "models--", 8) || rl >= cap) return false;
    memcpy(out, real_dir, rl);
    out[rl] = 0;
    return true;
}

lmio_status lmio__check_inside(const char *dir, const char *path, lmio_error *err)
{
    /* Path-based, so a directory changed while it is being loaded could
     * still race it; what it stops is a directory made by someone else
     * whose links point at the loading user's private files. */
    char rd[PATH_MAX], rp[PATH_MAX], repo[PATH_MAX];
    if (!realpath(dir, rd) || !realpath(path, rp)) return LMIO_OK; /* missing or dangling: the open reports it */
    if (under(rp, rd)) return LMIO_OK;
    if (hf_repo_of(rd, repo, sizeof repo) && strlen(repo) + 7 < sizeof repo) {
        strcat(repo, "/blobs");
        if (under(rp, repo)) return LMIO_OK;
    }
    return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "",
                      "is a symbolic link that leads outside the model directory %s; expected a file inside it "
                      "(or, in a Hugging Face cache, in the repository's blobs/)",
                      dir);
}
