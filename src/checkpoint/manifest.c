/* Integrity manifests (LMIO_MANIFEST_NAME; the layout is documented in
 * lmio.h): written by the staged directory commit over whatever the stage
 * holds, checked by lmio_manifest_check. Both read files through scan(),
 * one sequential pass per file that feeds the file's SHA-256 and the CRC-32
 * of every tensor range it crosses; files are spread over one thread per
 * core, largest first, since SHA-256 (1.4 GB/s per core) is the bottleneck
 * and page-cache reads are not (9 GB/s). */
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCAN_CHUNK ((size_t)4 << 20)
#define MAX_THREADS 8
#define MAX_DEPTH 32
#define MANIFEST_MAX ((uint64_t)1 << 30) /* ~10 M tensors; far above any model */
#define SELF_KEY "  \"manifest_sha256\": \""
#define SELF_TAIL_LEN (sizeof SELF_KEY - 1 + 2 * LMIO__SHA256_LEN + 4) /* + "\"\n}\n" */

typedef struct range {
    const char *name; /* borrowed from the statedict or manifest JSON */
    uint64_t off, len;
    uint32_t crc;     /* computed */
    uint32_t want;    /* from the manifest */
} range;

typedef struct job {
    char rel[4096];  /* path inside the directory */
    char path[8192];
    uint64_t size;
    int have_sha;    /* the SHA-256 is known already: read only the ranges */
    unsigned char sha[LMIO__SHA256_LEN];
    range *ranges;   /* sorted by offset */
    size_t n_ranges;
    lmio_statedict *sd; /* owns the names of ranges at write time */
    lmio__json *entry;  /* the manifest's entry at check time (borrowed) */
    lmio__sha256 *h;    /* made by run_jobs: workers allocate nothing */
    lmio_status status;
    lmio_error err;
} job;

static int cmp_range(const void *a, const void *b)
{
    const range *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Reads j's file front to back into buf (cap bytes), feeding the SHA-256
 * unless known and each range's CRC-32. Ranges may overlap (tensors of a
 * torch.save checkpoint can share a storage). */
static lmio_status scan(job *j, unsigned char *buf, size_t cap, lmio_error *err)
{
    int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) return lmio__fail(err, LMIO_ERR_IO, j->path, -1, "", "cannot open: %s", strerror(errno));
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    lmio__sha256 *h = j->have_sha ? NULL : j->h;
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < j->n_ranges; i++) j->ranges[i].crc = lmio__crc32(0, NULL, 0);
    size_t first = 0; /* ranges before it are done */
    for (uint64_t pos = 0; !s && pos < j->size;) {
        while (first < j->n_ranges && j->ranges[first].off + j->ranges[first].len <= pos) first++;
        if (j->have_sha) { /* only the tensors are needed */
            if (first == j->n_ranges) break;
            if (j->ranges[first].off > pos) pos = j->ranges[first].off;
        }
        size_t want = j->size - pos < cap ? (size_t)(j->size - pos) : cap;
        ssize_t n = pread(fd, buf, want, (off_t)pos);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            s = lmio__fail(err, LMIO_ERR_IO, j->path, (int64_t)pos, "", "reading failed: %s; expected %llu bytes",
                           n == 0 ? "the file ends here" : strerror(errno), (unsigned long long)j->size);
            break;
        }
        uint64_t end = pos + (uint64_t)n;
        if (h && !lmio__sha256_update(h, buf, (size_t)n))
            s = lmio__fail(err, LMIO_ERR_NOMEM, j->path, -1, "", "SHA-256 failed (out of memory?)");
        for (size_t i = first; i < j->n_ranges && j->ranges[i].off < end; i++) {
            range *r = &j->ranges[i];
            uint64_t a = r->off > pos ? r->off : pos, b = r->off + r->len < end ? r->off + r->len : end;
            if (a < b) r->crc = lmio__crc32(r->crc, buf + (a - pos), (size_t)(b - a));
        }
        pos = end;
    }
    if (!s && h && !lmio__sha256_final(h, j->sha)) s = lmio__fail(err, LMIO_ERR_NOMEM, j->path, -1, "", "SHA-256 failed");
    close(fd);
    return s;
}

/* ---- running jobs on every core ---- */

/* Everything is allocated by the calling thread before the workers start,
 * so allocation failures (and the allocator hook's view of them) stay
 * deterministic. */
typedef struct pool {
    job **jobs; /* largest first */
    size_t n, next;
    pthread_mutex_t lock;
} pool;

typedef struct worker_arg {
    pool *p;
    unsigned char *buf;
} worker_arg;

static void *worker(void *arg)
{
    worker_arg *w = arg;
    pool *p = w->p;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        size_t i = p->next < p->n ? p->next++ : p->n;
        pthread_mutex_unlock(&p->lock);
        if (i == p->n) break;
        job *j = p->jobs[i];
        j->status = scan(j, w->buf, SCAN_CHUNK, &j->err);
    }
    return NULL;
}

static int cmp_job_size(const void *a, const void *b)
{
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    return x->size > y->size ? -1 : x->size < y->size;
}

/* Scans every job; each gets its own status. */
static lmio_status run_jobs(job *jobs, size_t n, lmio_error *err)
{
    pool p = {lmio__calloc(n ? n : 1, sizeof(job *)), n, 0, PTHREAD_MUTEX_INITIALIZER};
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t want = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (size_t)cores;
    if (want > n) want = n ? n : 1;
    worker_arg w[MAX_THREADS];
    size_t bufs = 0;
    bool ok = p.jobs != NULL;
    for (; ok && bufs < want; bufs++) ok = (w[bufs] = (worker_arg){&p, lmio__malloc(SCAN_CHUNK)}).buf != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = (p.jobs[i] = &jobs[i])->have_sha || (jobs[i].h = lmio__sha256_new()) != NULL;
    lmio_status s = ok ? LMIO_OK : lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    if (!s) {
        qsort(p.jobs, n, sizeof *p.jobs, cmp_job_size);
        pthread_t th[MAX_THREADS];
        size_t started = 0;
        while (started + 1 < want && pthread_create(&th[started], NULL, worker, &w[started + 1]) == 0) started++;
        worker(&w[0]); /* this thread works too, and alone when no thread could start */
        for (size_t i = 0; i < started; i++) pthread_join(th[i], NULL);
    }
    for (size_t i = 0; i < n; i++) {
        lmio__sha256_free(jobs[i].h);
        jobs[i].h = NULL;
    }
    for (size_t i = 0; i < bufs; i++) lmio__free(w[i].buf);
    lmio__free(p.jobs);
    return s;
}

/* ---- the files of a directory ---- */

typedef struct file_list {
    job *jobs;
    size_t n, cap;
} file_list;

static void free_list(file_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        lmio__free(l->jobs[i].ranges);
        lmio_statedict_free(l->jobs[i].sd);
    }
    lmio__free(l->jobs);
    memset(l, 0, sizeof *l);
}

static bool skipped_name(const char *name, int depth)
{
    return !strcmp(name, ".") || !strcmp(name, "..") || strstr(name, LMIO__TMP_TAG) ||
           (depth == 0 && (!strcmp(name, LMIO_MANIFEST_NAME) || !strcmp(name, ".git")));
}

/* Every regular file under root/rel, recursively. strict: anything else
 * (a symlink, a FIFO) is an error, as a staged directory holds only what
 * lmio wrote; otherwise it is left out. */
static lmio_status list_files(const char *root, const char *rel, int depth, bool strict, file_list *l,
                              lmio_error *err)
{
    char dpath[8192];
    snprintf(dpath, sizeof dpath, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(dpath);
    if (!d) return lmio__fail(err, LMIO_ERR_IO, dpath, -1, "", "cannot list the directory: %s", strerror(errno));
    lmio_status s = LMIO_OK;
    struct dirent *e;
    while (!s && (e = readdir(d))) {
        if (skipped_name(e->d_name, depth)) continue;
        char sub[4096];
        struct stat st;
        int n = snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        if (n < 0 || (size_t)n >= sizeof sub || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
            s = lmio__fail(err, LMIO_ERR_IO, dpath, -1, e->d_name, "cannot examine \"%s\"", e->d_name);
        } else if (S_ISDIR(st.st_mode)) {
            if (depth + 1 < MAX_DEPTH) s = list_files(root, sub, depth + 1, strict, l, err);
        } else if (S_ISREG(st.st_mode)) {
            if (!lmio__grow((void **)&l->jobs, sizeof *l->jobs, l->n + 1, &l->cap)) {
                s = lmio__fail(err, LMIO_ERR_NOMEM, dpath, -1, "", "out of memory");
                break;
            }
            job *j = &l->jobs[l->n++];
            memset(j, 0, sizeof *j);
            snprintf(j->rel, sizeof j->rel, "%s", sub);
            snprintf(j->path, sizeof j->path, "%s/%s", root, sub);
            j->size = (uint64_t)st.st_size;
        } else if (strict) {
            s = lmio__fail(err, LMIO_ERR_INVALID_ARG, dpath, -1, e->d_name,
                           "holds \"%s\", which is not a regular file or folder; expected only files in a saved "
                           "directory",
                           e->d_name);
        }
    }
    closedir(d);
    return s;
}

static int cmp_job_rel(const void *a, const void *b) { return strcmp(((const job *)a)->rel, ((const job *)b)->rel); }

/* ---- writing ---- */

/* The tensors of a file any format lmio reads, as ranges; none for other
 * files (config, tokenizer), which are covered by their SHA-256 alone. */
static lmio_status find_tensors(job *j, lmio_error *err)
{
    if (j->size < 8) return LMIO_OK;
    lmio_open_opts oo = LMIO_OPEN_OPTS_INIT; /* mapped: only the header is read */
    lmio_error oe;
    lmio_status s = lmio_statedict_open(j->path, &oo, &j->sd, &oe);
    if (s) {
        j->sd = NULL;
        if (s != LMIO_ERR_NOMEM) return LMIO_OK; /* not a file of tensors */
        if (err) *err = oe;
        return s;
    }
    size_t n = lmio_statedict_count(j->sd);
    j->ranges = lmio__calloc(n ? n : 1, sizeof *j->ranges);
    if (!j->ranges) return lmio__fail(err, LMIO_ERR_NOMEM, j->path, -1, "", "out of memory");
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(j->sd, i, &t, NULL);
        if (t.file_offset >= 0 && t.source && !strcmp(t.source, j->path)) /* not copied-out views */
            j->ranges[j->n_ranges++] = (range){t.name, (uint64_t)t.file_offset, t.nbytes, 0, 0};
    }
    qsort(j->ranges, j->n_ranges, sizeof *j->ranges, cmp_range);
    return LMIO_OK;
}

static void put_hex(lmio__buf *b, const unsigned char *p, size_t n)
{
    char hex[2 * LMIO__SHA256_LEN + 1];
    lmio__hex(hex, p, n);
    lmio__buf_puts(b, hex);
}

static void put_json(lmio__buf *b, const file_list *l)
{
    char fv[32];
    snprintf(fv, sizeof fv, "%d.%d", LMIO_FORMAT_VERSION_MAJOR, LMIO_FORMAT_VERSION_MINOR);
    lmio__buf_puts(b, "{\n  \"lmio_version\": ");
    lmio__buf_json_string(b, LMIO_VERSION_STRING);
    lmio__buf_puts(b, ",\n  \"lmio_format_version\": ");
    lmio__buf_json_string(b, fv);
    lmio__buf_puts(b, ",\n  \"file_hash\": \"sha256\",\n  \"tensor_hash\": \"crc32\",\n  \"files\": [");
    for (size_t i = 0; i < l->n; i++) {
        const job *j = &l->jobs[i];
        lmio__buf_puts(b, i ? ",\n    {\"path\": " : "\n    {\"path\": ");
        lmio__buf_json_string(b, j->rel);
        lmio__buf_puts(b, ", \"size\": ");
        lmio__buf_u64(b, j->size);
        lmio__buf_puts(b, ", \"sha256\": \"");
        put_hex(b, j->sha, LMIO__SHA256_LEN);
        lmio__buf_puts(b, "\"");
        if (j->sd) lmio__buf_puts(b, ", \"tensors\": [");
        for (size_t k = 0; j->sd && k < j->n_ranges; k++) {
            const range *r = &j->ranges[k];
            char crc[16];
            snprintf(crc, sizeof crc, "%08x", (unsigned)r->crc);
            lmio__buf_puts(b, k ? ",\n      {\"name\": " : "\n      {\"name\": ");
            lmio__buf_json_string(b, r->name);
            lmio__buf_puts(b, ", \"offset\": ");
            lmio__buf_u64(b, r->off);
            lmio__buf_puts(b, ", \"size\": ");
            lmio__buf_u64(b, r->len);
            lmio__buf_puts(b, ", \"crc32\": \"");
            lmio__buf_puts(b, crc);
            lmio__buf_puts(b, "\"}");
        }
        if (j->sd) lmio__buf_puts(b, "]");
        lmio__buf_puts(b, "}");
    }
    lmio__buf_puts(b, "\n  ],\n");
}

lmio_status lmio__manifest_write(const char *dir, int durable, lmio_error *err)
{
    file_list l = {0};
    lmio_status s = list_files(dir, "", 0, true, &l, err);
    if (!s && l.n > 1) qsort(l.jobs, l.n, sizeof *l.jobs, cmp_job_rel);
    for (size_t i = 0; i < l.n && !s; i++) {
        job *j = &l.jobs[i];
        if (!lmio__utf8_valid(j->rel, strlen(j->rel)))
            s = lmio__fail(err, LMIO_ERR_INVALID_ARG, j->path, -1, "",
                           "file name is not UTF-8; expected names a JSON manifest can list");
        lmio__file_id id;
        j->have_sha = lmio__file_id_path(j->path, &id) && lmio__digest_take(&id, j->sha);
        if (!s) s = find_tensors(j, err);
    }
    if (!s) s = run_jobs(l.jobs, l.n, err);
    for (size_t i = 0; i < l.n && !s; i++)
        if (l.jobs[i].status) {
            s = l.jobs[i].status;
            if (err) *err = l.jobs[i].err;
        }
    lmio__buf b = {0};
    if (!s) {
        put_json(&b, &l);
        unsigned char self[LMIO__SHA256_LEN] = {0}; /* hexed even when hashing failed (then unused) */
        bool ok = !b.oom && lmio__sha256_once(b.data, b.len, self);
        lmio__buf_puts(&b, SELF_KEY);
        put_hex(&b, self, LMIO__SHA256_LEN);
        lmio__buf_puts(&b, "\"\n}\n");
        char path[8192];
        if (!ok || b.oom) s = lmio__fail(err, LMIO_ERR_NOMEM, dir, -1, "", "out of memory for the manifest");
        else if (!(s = lmio__path_join(path, sizeof path, dir, LMIO_MANIFEST_NAME, err)))
            s = lmio__write_file(path, b.data, b.len, durable, err);
    }
    lmio__buf_free(&b);
    free_list(&l);
    return s;
}

/* ---- checking ---- */

typedef struct checker {
    const char *dir;
    char mpath[8192];
    lmio_integrity_fn fn;
    void *ctx;
    lmio_error *err;
    lmio_status first; /* the first error's status */
    size_t errors;
} checker;

__attribute__((format(printf, 5, 6))) static void finding(checker *c, lmio_integrity_event ev, const char *file,
                                                         const char *tensor, const char *fmt, ...)
{
    char msg[LMIO_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bool is_error = ev >= LMIO_INTEGRITY_MISSING;
    lmio_error e;
    if (is_error) {
        lmio__fail(&e, LMIO_ERR_INTEGRITY, file, -1, tensor ? tensor : "", "%s", msg);
        if (!c->errors++ && c->err) *c->err = e;
        if (!c->first) c->first = LMIO_ERR_INTEGRITY;
    }
    if (c->fn) c->fn(c->ctx, ev, file, tensor, is_error ? e.message : msg);
}

/* A manifest path must name a file inside the directory: relative, no
 * empty, "." or ".." component. */
static bool safe_rel(const char *p)
{
    if (!*p || *p == '/') return false;
    for (const char *c = p; *c;) {
        const char *e = strchr(c, '/');
        size_t n = e ? (size_t)(e - c) : strlen(c);
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.')) return false;
        c += n + (e ? 1 : 0);
        if (e && !*c) return false;
    }
    return true;
}

static bool parse_hex(const char *s, unsigned char *out, size_t n)
{
    if (!s || strlen(s) != 2 * n) return false;
    for (size_t i = 0; i < 2 * n; i++) {
        int v = s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : s[i] >= 'a' && s[i] <= 'f' ? s[i] - 'a' + 10 : -1;
        if (v < 0) return false;
        out[i / 2] = (unsigned char)(i % 2 ? out[i / 2] | v : v << 4);
    }
    return true;
}

static bool get_u64(const lmio__json *o, const char *key, uint64_t *v)
{
    lmio__json *x = lmio__json_get(o, key);
    if (!x || !lmio__json_is_integer(x) || lmio__json_integer_value(x) < 0) return false;
    *v = (uint64_t)lmio__json_integer_value(x);
    return true;
}

/* One "files" entry into a job: false when malformed, or out of memory
 * (*nomem set). */
static bool entry_to_job(const char *dir, lmio__json *e, job *j, bool *nomem)
{
    const char *rel = lmio__json_string_value(lmio__json_get(e, "path"));
    if (!lmio__json_is_object(e) || !rel || !safe_rel(rel) || strlen(rel) >= sizeof j->rel ||
        !get_u64(e, "size", &j->size) || !parse_hex(lmio__json_string_value(lmio__json_get(e, "sha256")), j->sha, 32))
        return false;
    snprintf(j->rel, sizeof j->rel, "%s", rel);
    snprintf(j->path, sizeof j->path, "%s/%s", dir, rel);
    j->entry = e;
    lmio__json *ts = lmio__json_get(e, "tensors");
    if (!ts) return true;
    size_t n = lmio__json_array_size(ts);
    if (!lmio__json_is_array(ts)) return false;
    if (!(j->ranges = lmio__calloc(n ? n : 1, sizeof *j->ranges))) return !(*nomem = true);
    for (size_t i = 0; i < n; i++) {
        lmio__json *t = lmio__json_array_get(ts, i);
        range *r = &j->ranges[j->n_ranges++];
        unsigned char crc[4];
        uint64_t end;
        r->name = lmio__json_string_value(lmio__json_get(t, "name"));
        if (!r->name || !get_u64(t, "offset", &r->off) || !get_u64(t, "size", &r->len) ||
            !parse_hex(lmio__json_string_value(lmio__json_get(t, "crc32")), crc, 4) ||
            !lmio__add_u64(r->off, r->len, &end) || end > j->size)
            return false;
        r->want = (uint32_t)crc[0] << 24 | (uint32_t)crc[1] << 16 | (uint32_t)crc[2] << 8 | crc[3];
    }
    qsort(j->ranges, j->n_ranges, sizeof *j->ranges, cmp_range);
    return true;
}

/* The manifest's own checksum, then its JSON. NULL when damaged (reported). */
static lmio__json *read_manifest(checker *c, lmio_status *st)
{
    lmio__file f;
    *st = lmio__file_open(c->mpath, 0, &f, c->err);
    if (*st) return NULL;
    lmio__json *root = NULL;
    unsigned char self[LMIO__SHA256_LEN], want[LMIO__SHA256_LEN];
    const char *tail = f.size >= SELF_TAIL_LEN ? (const char *)f.data + f.size - SELF_TAIL_LEN : NULL;
    char hex[2 * LMIO__SHA256_LEN + 1] = "";
    if (tail) memcpy(hex, tail + sizeof SELF_KEY - 1, 2 * LMIO__SHA256_LEN);
    if (f.size > MANIFEST_MAX) {
        finding(c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c->mpath, NULL, "%llu bytes; expected at most %llu",
                (unsigned long long)f.size, (unsigned long long)MANIFEST_MAX);
    } else if (!tail || memcmp(tail, SELF_KEY, sizeof SELF_KEY - 1) || memcmp(tail + SELF_TAIL_LEN - 4, "\"\n}\n", 4) ||
               !parse_hex(hex, want, LMIO__SHA256_LEN)) {
        finding(c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c->mpath, NULL,
                "does not end with its own checksum; expected a last line \"manifest_sha256\": \"<64 hex digits>\"");
    } else if (!lmio__sha256_once(f.data, (size_t)(f.size - SELF_TAIL_LEN), self)) {
        *st = lmio__fail(c->err, LMIO_ERR_NOMEM, c->mpath, -1, "", "out of memory");
    } else if (memcmp(self, want, sizeof self)) {
        char got[2 * LMIO__SHA256_LEN + 1];
        lmio__hex(got, self, sizeof self);
        finding(c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c->mpath, NULL,
                "its content hashes to sha256 %s; expected %s, the checksum it ends with (the manifest itself is "
                "damaged)",
                got, hex);
    } else {
        lmio_error pe;
        lmio_status ps = lmio__json_parse((const char *)f.data, (size_t)f.size, c->mpath, 0, &root, &pe);
        if (ps == LMIO_ERR_NOMEM) {
            *st = ps;
            if (c->err) *c->err = pe;
        } else if (ps) {
            finding(c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c->mpath, NULL, "%s", pe.message);
        }
    }
    lmio__file_close(&f);
    return root;
}

static lmio_status check_version(checker *c, const lmio__json *root)
{
    const char *fv = lmio__json_string_value(lmio__json_get(root, "lmio_format_version"));
    unsigned major = 0, minor = 0;
    char extra;
    if (!fv || sscanf(fv, "%u.%u%c", &major, &minor, &extra) != 2) {
        finding(c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c->mpath, NULL,
                "no \"lmio_format_version\" \"MAJOR.MINOR\"; expected one such as \"%d.%d\"", LMIO_FORMAT_VERSION_MAJOR,
                LMIO_FORMAT_VERSION_MINOR);
        return LMIO_OK;
    }
    if (major > LMIO_FORMAT_VERSION_MAJOR)
        return lmio__fail(c->err, LMIO_ERR_UNSUPPORTED, c->mpath, -1, "lmio_format_version",
                          "written in lmio format %s by a newer lmio; expected format %d.x or older (upgrade lmio)", fv,
                          LMIO_FORMAT_VERSION_MAJOR);
    return LMIO_OK;
}

/* What a scanned file's digests say against its entry. */
static void judge(checker *c, const job *j)
{
    size_t bad = 0;
    for (size_t i = 0; i < j->n_ranges; i++) {
        const range *r = &j->ranges[i];
        if (r->crc == r->want) continue;
        bad++;
        finding(c, LMIO_INTEGRITY_CORRUPT_TENSOR, j->path, r->name,
                "offset %llu: tensor \"%s\" (%llu bytes) has crc32 %08x; expected %08x as %s records: its data "
                "changed since it was saved",
                (unsigned long long)r->off, r->name, (unsigned long long)r->len, (unsigned)r->crc, (unsigned)r->want,
                LMIO_MANIFEST_NAME);
    }
    unsigned char want[LMIO__SHA256_LEN];
    parse_hex(lmio__json_string_value(lmio__json_get(j->entry, "sha256")), want, sizeof want);
    if (!memcmp(want, j->sha, sizeof want)) return;
    char got[2 * LMIO__SHA256_LEN + 1], exp[2 * LMIO__SHA256_LEN + 1];
    lmio__hex(got, j->sha, sizeof want);
    lmio__hex(exp, want, sizeof want);
    if (!bad)
        finding(c, LMIO_INTEGRITY_CORRUPT_FILE, j->path, NULL, "sha256 %s; expected %s as %s records: the file changed "
                "since it was saved%s", got, exp, LMIO_MANIFEST_NAME,
                j->n_ranges ? " (outside every tensor's data: in its header or padding)" : "");
}

/* Lists what the manifest does not: notes, not errors. */
static lmio_status report_unlisted(checker *c, job *listed, size_t n)
{
    file_list present = {0};
    lmio_status s = list_files(c->dir, "", 0, false, &present, c->err);
    for (size_t i = 0; i < present.n && !s; i++) {
        bool found = false;
        for (size_t k = 0; k < n && !found; k++) found = !strcmp(present.jobs[i].rel, listed[k].rel);
        if (!found)
            finding(c, LMIO_INTEGRITY_UNLISTED, present.jobs[i].path, NULL,
                    "not listed in %s, so not checked (lmio did not write it)", LMIO_MANIFEST_NAME);
    }
    free_list(&present);
    return s;
}

static lmio_status check_files(checker *c, lmio__json *files)
{
    size_t n = lmio__json_array_size(files);
    file_list l = {lmio__calloc(n ? n : 1, sizeof(job)), n, n}; /* all freed, whatever was filled */
    if (!l.jobs) return lmio__fail(c->err, LMIO_ERR_NOMEM, c->mpath, -1, "", "out of memory");
    lmio_status s = LMIO_OK;
    job *todo = l.jobs; /* the files to scan are moved to the front */
    size_t n_todo = 0;
    for (size_t i = 0; i < n; i++) {
        job *j = &l.jobs[i];
        struct stat st;
        bool nomem = false;
        if (!entry_to_job(c->dir, lmio__json_array_get(files, i), j, &nomem)) {
            if (nomem) {
                s = lmio__fail(c->err, LMIO_ERR_NOMEM, c->mpath, -1, "", "out of memory");
                break;
            }
            finding(c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c->mpath, NULL,
                    "files[%zu] is malformed; expected {\"path\": a relative path inside the directory, \"size\", "
                    "\"sha256\", optional \"tensors\" inside the file}",
                    i);
        } else if (lstat(j->path, &st) != 0 || !S_ISREG(st.st_mode)) {
            finding(c, LMIO_INTEGRITY_MISSING, j->path, NULL, "%s; expected the file %s lists (%llu bytes)",
                    errno == ENOENT ? "missing" : "not a regular file", LMIO_MANIFEST_NAME,
                    (unsigned long long)j->size);
        } else if ((uint64_t)st.st_size != j->size) {
            finding(c, LMIO_INTEGRITY_CORRUPT_FILE, j->path, NULL, "%llu bytes; expected %llu as %s records",
                    (unsigned long long)st.st_size, (unsigned long long)j->size, LMIO_MANIFEST_NAME);
        } else if (!(s = lmio__check_inside(c->dir, j->path, c->err))) {
            if (todo + n_todo != j) { /* swap into the scan list, keeping ranges with their job */
                job tmp = todo[n_todo];
                todo[n_todo] = *j;
                *j = tmp;
            }
            n_todo++;
        }
        if (s) break;
    }
    if (!s) s = run_jobs(todo, n_todo, c->err);
    for (size_t i = 0; i < n_todo && !s; i++) {
        if (todo[i].status) {
            s = todo[i].status;
            if (c->err) *c->err = todo[i].err;
        } else {
            judge(c, &todo[i]);
        }
    }
    if (!s) s = report_unlisted(c, l.jobs, l.n);
    free_list(&l);
    return s;
}

lmio_status lmio_manifest_check(const char *dir, lmio_integrity_fn fn, void *ctx, lmio_error *err)
{
    if (!dir) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "directory path missing");
    checker c = {dir, "", fn, ctx, err, LMIO_OK, 0};
    lmio_status s = lmio__path_join(c.mpath, sizeof c.mpath, dir, LMIO_MANIFEST_NAME, err);
    if (s) return s;
    struct stat st;
    if (lstat(c.mpath, &st) != 0 && errno == ENOENT) {
        finding(&c, LMIO_INTEGRITY_NO_MANIFEST, dir, NULL,
                "no %s (written before lmio format 1.1, or by another tool): integrity not checked, only structure",
                LMIO_MANIFEST_NAME);
        return LMIO_OK;
    }
    if ((s = lmio__check_inside(dir, c.mpath, err))) return s;
    lmio__json *root = read_manifest(&c, &s);
    if (!s && root) s = check_version(&c, root);
    lmio__json *files = root ? lmio__json_get(root, "files") : NULL;
    if (!s && root && !lmio__json_is_array(files))
        finding(&c, LMIO_INTEGRITY_CORRUPT_MANIFEST, c.mpath, NULL, "no \"files\" array; expected one");
    else if (!s && root && !c.errors)
        s = check_files(&c, files);
    size_t n_files = lmio__json_array_size(files); /* read before root (and files with it) is freed */
    lmio__json_decref(root);
    if (s) return s;
    if (c.errors) return c.first;
    finding(&c, LMIO_INTEGRITY_VERIFIED, dir, NULL, "%zu files match %s (sha256 per file, crc32 per tensor)",
            n_files, LMIO_MANIFEST_NAME);
    return LMIO_OK;
}
