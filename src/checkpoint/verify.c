/* lmio_verify: every rule the readers check, then every data byte read
 * with pread through one reused buffer. Reading (not touching a mapping)
 * turns an unreadable sector into an error instead of a SIGBUS, and a
 * bounded buffer lets a model larger than memory be verified. */
#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_BUFFER (8u << 20)
#define MIN_BUFFER 4096u

/* NaN or Inf: the exponent all ones. Tested on the little-endian bytes, so
 * the rule holds on any host and F64 is judged as F64 (widening through F32
 * would call a finite 1e300 infinite). Chunks start at element boundaries. */
static uint64_t count_nonfinite(lmio_dtype dt, const unsigned char *p, size_t nbytes)
{
    uint64_t bad = 0;
    switch (dt) {
    case LMIO_DTYPE_F16:
        for (size_t i = 0; i + 2 <= nbytes; i += 2) bad += (p[i + 1] & 0x7C) == 0x7C;
        break;
    case LMIO_DTYPE_BF16:
        for (size_t i = 0; i + 2 <= nbytes; i += 2) bad += (p[i + 1] & 0x7F) == 0x7F && (p[i] & 0x80);
        break;
    case LMIO_DTYPE_F32:
        for (size_t i = 0; i + 4 <= nbytes; i += 4) bad += (p[i + 3] & 0x7F) == 0x7F && (p[i + 2] & 0x80);
        break;
    case LMIO_DTYPE_F64:
        for (size_t i = 0; i + 8 <= nbytes; i += 8) bad += (p[i + 7] & 0x7F) == 0x7F && (p[i + 6] & 0xF0) == 0xF0;
        break;
    default: break;
    }
    return bad;
}

/* Where a tensor's bytes are, for reading in file order. */
typedef struct place {
    const char *source; /* NULL: held in memory only */
    int64_t offset;
    size_t index;       /* in the state dict */
} place;

static int cmp_place(const void *a, const void *b)
{
    const place *x = a, *y = b;
    if (!x->source || !y->source) {
        if (x->source != y->source) return x->source ? 1 : -1; /* in-memory ones first */
    } else {
        int c = strcmp(x->source, y->source);
        if (c) return c;
    }
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return x->index < y->index ? -1 : x->index > y->index;
}

typedef struct reader {
    const char *path; /* the file fd reads, or NULL */
    int fd;
    unsigned char *buf;
    size_t cap;
} reader;

static lmio_status reader_switch(reader *r, const char *path, lmio_error *err)
{
    if (r->path && !strcmp(r->path, path)) return LMIO_OK;
    if (r->fd >= 0) close(r->fd);
    r->path = NULL;
    r->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (r->fd < 0) {
        int e = errno;
        return lmio__fail(err, e == ENOENT ? LMIO_ERR_NOT_FOUND : LMIO_ERR_IO, path, -1, "", "cannot open: %s",
                          strerror(e));
    }
    /* one pass front to back: ask for aggressive read-ahead */
    (void)posix_fadvise(r->fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    r->path = path;
    return LMIO_OK;
}

/* Reads t's bytes from its file in buffer-sized chunks, counting NaN/Inf. */
static lmio_status read_tensor(reader *r, const lmio_tensor *t, uint64_t *nonfinite, lmio_error *err)
{
    lmio_status s = reader_switch(r, t->source, err);
    if (s) return s;
    for (uint64_t done = 0; done < t->nbytes;) {
        size_t want = t->nbytes - done < r->cap ? (size_t)(t->nbytes - done) : r->cap;
        size_t got = 0;
        while (got < want) {
            uint64_t at = (uint64_t)t->file_offset + done + got;
            ssize_t n = pread(r->fd, r->buf + got, want - got, (off_t)at);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0)
                return lmio__fail(err, LMIO_ERR_IO, t->source, (int64_t)at, t->name,
                                  "reading tensor \"%s\" failed: %s; expected %llu readable bytes from offset %lld",
                                  t->name, n == 0 ? "the file ends here (shrank since it was opened?)" : strerror(errno),
                                  (unsigned long long)t->nbytes, (long long)t->file_offset);
            got += (size_t)n;
        }
        *nonfinite += count_nonfinite(t->dtype, r->buf, want);
        done += want;
    }
    return LMIO_OK;
}

static lmio_status verify_places(const lmio_statedict *sd, place *pl, size_t n, reader *r,
                                 const lmio_verify_opts *o, lmio_verify_report *rep, lmio_error *err)
{
    const char *last_file = NULL;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, pl[i].index, &t, NULL);
        uint64_t bad = 0;
        if (pl[i].source) {
            lmio_status s = read_tensor(r, &t, &bad, err);
            if (s) return s;
            if (!last_file || strcmp(last_file, pl[i].source)) rep->files++;
            last_file = pl[i].source;
        } else {
            bad = count_nonfinite(t.dtype, t.data, (size_t)t.nbytes); /* in memory already */
        }
        rep->tensors++;
        rep->parameters += t.numel;
        rep->data_bytes += t.nbytes;
        if (bad) {
            rep->nonfinite_tensors++;
            rep->nonfinite_values += bad;
        }
        if (o->tensor_fn && o->tensor_fn(o->ctx, &t, bad))
            return lmio__fail(err, LMIO_ERR_CANCELLED, t.source ? t.source : "", -1, t.name,
                              "verification stopped by the caller at tensor \"%s\"", t.name);
    }
    return LMIO_OK;
}

lmio_status lmio_statedict_verify(const lmio_statedict *sd, const lmio_verify_opts *opts, lmio_verify_report *out,
                                  lmio_error *err)
{
    lmio_verify_opts o = LMIO_VERIFY_OPTS_INIT;
    lmio_status s = lmio__opts_read(&o, sizeof o, opts, "lmio_verify_opts", err);
    if (s) return s;
    if (!sd) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "state dict is NULL");
    size_t cap = o.buffer_size ? o.buffer_size : DEFAULT_BUFFER;
    cap = cap < MIN_BUFFER ? MIN_BUFFER : cap & ~(size_t)7; /* whole elements of every dtype */
    size_t n = lmio_statedict_count(sd);
    place *pl = lmio__calloc(n ? n : 1, sizeof *pl);
    reader r = {NULL, -1, NULL, cap};
    if (!pl) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    uint64_t largest = 0;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        bool in_file = t.source && t.file_offset >= 0;
        pl[i] = (place){in_file ? t.source : NULL, t.file_offset, i};
        if (in_file && t.nbytes > largest) largest = t.nbytes;
    }
    if (n > 1) qsort(pl, n, sizeof *pl, cmp_place);
    /* no bigger than the largest tensor: small models take little */
    if (largest < r.cap) r.cap = largest < MIN_BUFFER ? MIN_BUFFER : (size_t)((largest + 7) & ~(uint64_t)7);
    r.buf = largest ? lmio__malloc(r.cap) : NULL;
    lmio_verify_report rep = {lmio_statedict_format(sd), 0, 0, 0, 0, 0, 0};
    if (largest && !r.buf)
        s = lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory for a %zu-byte read buffer", r.cap);
    else
        s = verify_places(sd, pl, n, &r, &o, &rep, err);
    if (r.fd >= 0) close(r.fd);
    lmio__free(r.buf);
    lmio__free(pl);
    if (!s && out) *out = rep;
    return s;
}

lmio_status lmio_verify(const char *path, const lmio_verify_opts *opts, lmio_verify_report *out, lmio_error *err)
{
    if (!path) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "path is NULL");
    lmio_verify_opts probe = LMIO_VERIFY_OPTS_INIT; /* bad options fail before any work */
    lmio_status s = lmio__opts_read(&probe, sizeof probe, opts, "lmio_verify_opts", err);
    if (s) return s;
    struct stat st;
    lmio_statedict *sd = NULL;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* Hashes first: a damaged file is then named as damaged, with its
         * tensor, rather than as whatever parse error the damage causes. */
        if ((s = lmio_manifest_check(path, probe.integrity_fn, probe.integrity_ctx, err))) return s;
        /* config and weights, then the tokenizer files when lmio reads
         * their kind (another kind, such as WordPiece, is not an error
         * in a model directory of another architecture) */
        lmio_tokenizer *tok = NULL;
        s = lmio_pretrained_load(path, NULL, &sd, NULL, err);
        if (!s) {
            lmio_error terr;
            lmio_status ts = lmio_pretrained_load(path, NULL, NULL, &tok, &terr);
            if (ts && ts != LMIO_ERR_UNSUPPORTED) {
                s = ts;
                if (err) *err = terr;
            }
        }
        lmio_tokenizer_free(tok);
    } else {
        /* mapped only to parse the header: the data is read below, so the
         * mapping's pages are never touched and no copy is made */
        lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
        oo.use_mmap = 1;
        s = lmio_statedict_open(path, &oo, &sd, err);
    }
    if (!s) s = lmio_statedict_verify(sd, opts, out, err);
    lmio_statedict_free(sd);
    return s;
}
