/* The bottom layer's internal interfaces: everything in src/core except the
 * JSON wrapper (json.h). Shared by every layer above; never installed.
 * Nothing here may know about formats, tokenizers, models or checkpoints. */
#ifndef LMIO_CORE_H
#define LMIO_CORE_H

#include "lmio.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LMIO_UNUSED(x) ((void)(x))

/* ---- errors (status.c) ---- */

/* Fills err (if non-NULL) and returns code. The message reads
 * "<path>: offset <N>: <fmt...>" (the offset part only when offset >= 0,
 * the path part only when path is non-empty). */
lmio_status lmio__fail(lmio_error *err, lmio_status code, const char *path, int64_t offset,
                       const char *key, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Reads a caller's options struct (first field struct_size) into dst,
 * which holds the library's defaults and is lib_size bytes: only the
 * caller's first struct_size bytes are read, so an older, shorter struct
 * leaves newer fields at their defaults. NULL src keeps every default. */
lmio_status lmio__opts_read(void *dst, size_t lib_size, const void *src, const char *type, lmio_error *err);

/* ---- allocation (alloc.c) ---- */
void *lmio__malloc(size_t n);
void *lmio__calloc(size_t count, size_t size);
void *lmio__realloc(void *p, size_t n);
void lmio__free(void *p);
char *lmio__strdup(const char *s);
char *lmio__strndup(const char *s, size_t n);
/* Makes room for need elements of elem bytes in *p (capacity *cap, doubled
 * as needed); false, with *p and *cap unchanged, when out of memory. */
bool lmio__grow(void **p, size_t elem, size_t need, size_t *cap);

/* ---- checked arithmetic: return false on overflow ---- */
static inline bool lmio__mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_mul_overflow(a, b, out);
}
static inline bool lmio__add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    return !__builtin_add_overflow(a, b, out);
}

/* Little-endian decoding and encoding, independent of host byte order. */
static inline uint64_t lmio__le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static inline void lmio__put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* numel of a shape, and its byte size for dtype; false on overflow or when
 * the bit count is not a whole number of bytes (sub-byte dtypes). */
bool lmio__numel(int ndim, const uint64_t *shape, uint64_t *numel);
typedef enum { LMIO__SIZE_OK, LMIO__SIZE_OVERFLOW, LMIO__SIZE_MISALIGNED } lmio__size_result;
lmio__size_result lmio__nbytes(lmio_dtype dtype, uint64_t numel, uint64_t *nbytes);

/* Formats a shape as "[2, 3]" into buf (truncates safely). */
void lmio__format_shape(char *buf, size_t cap, int ndim, const uint64_t *shape);

/* Validates UTF-8 (no overlongs, no surrogates, <= U+10FFFF): the length of
 * the valid prefix, n when all of it is valid. */
size_t lmio__utf8_prefix(const char *s, size_t n);
bool lmio__utf8_valid(const char *s, size_t n);

/* ---- checksums (crc32.c): the one place that talks to zlib ---- */

/* Continues a zip CRC-32 over n more bytes; start with crc = 0. */
uint32_t lmio__crc32(uint32_t crc, const void *data, size_t n);

/* ---- SHA-256 (sha256.c): the one place that talks to OpenSSL ---- */
#define LMIO__SHA256_LEN 32
typedef struct lmio__sha256 lmio__sha256;
/* A running SHA-256; NULL when out of memory. */
lmio__sha256 *lmio__sha256_new(void);
bool lmio__sha256_update(lmio__sha256 *h, const void *data, size_t n);
bool lmio__sha256_final(lmio__sha256 *h, unsigned char out[LMIO__SHA256_LEN]);
void lmio__sha256_free(lmio__sha256 *h);
bool lmio__sha256_once(const void *data, size_t n, unsigned char out[LMIO__SHA256_LEN]);
/* n bytes as 2n lowercase hex digits and a NUL into out. */
void lmio__hex(char *out, const unsigned char *in, size_t n);

/* Which file, and which version of it: what stat says. */
typedef struct lmio__file_id {
    uint64_t dev, ino, size;
    int64_t ctime_s, ctime_ns;
} lmio__file_id;
/* Fills id from an fd or a path (lstat); false when that fails. */
bool lmio__file_id_fd(int fd, lmio__file_id *id);
bool lmio__file_id_path(const char *path, lmio__file_id *id);

/* SHA-256s of files written into staging directories while they streamed
 * out (digest_cache.c), for the stage's manifest. put records one under
 * its directory (false when out of memory); take hands it out (and forgets it) only if file is still
 * the same version; forget drops what is left for a directory. Thread-safe. */
bool lmio__digest_put(const lmio__file_id *dir, const lmio__file_id *file, const unsigned char sha[LMIO__SHA256_LEN]);
bool lmio__digest_take(const lmio__file_id *file, unsigned char sha[LMIO__SHA256_LEN]);
void lmio__digest_forget(const lmio__file_id *dir);

/* ---- growable buffer (buf.c) ---- */
typedef struct lmio__buf {
    char *data; /* NUL-terminated when non-NULL */
    size_t len, cap;
    bool oom;   /* sticky: set by the first failed growth */
} lmio__buf;
void lmio__buf_put(lmio__buf *b, const void *p, size_t n);
void lmio__buf_puts(lmio__buf *b, const char *s);
void lmio__buf_u64(lmio__buf *b, uint64_t v);
void lmio__buf_json_string(lmio__buf *b, const char *s);
/* Appends printf-formatted text (sets oom when it cannot). */
void lmio__buf_printf(lmio__buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* v as a Python float literal that reads back as the same double (for the
 * TorchScript code the architectures write), in s. */
const char *lmio__py_float(char *s, size_t cap, double v);
void lmio__buf_free(lmio__buf *b);

/* ---- hash maps (hashmap.c) ---- */
/* SipHash-1-3 of p under a per-process random key: for indexes whose keys
 * come from untrusted files. Not stable across runs; never store it. */
uint64_t lmio__hash(const void *p, size_t n);
typedef struct lmio__smap_slot {
    const char *key; /* borrowed; NULL marks an empty slot */
    size_t len;
    uint64_t hash;
    uint32_t value;
} lmio__smap_slot;
typedef struct lmio__smap {
    lmio__smap_slot *slots;
    size_t cap, count;
    uint64_t key[2]; /* the hash key, set when the map first grows */
} lmio__smap;
bool lmio__smap_put(lmio__smap *m, const char *key, size_t len, uint32_t value);
bool lmio__smap_get(const lmio__smap *m, const char *key, size_t len, uint32_t *value);
void lmio__smap_free(lmio__smap *m);

typedef struct lmio__umap_slot {
    uint64_t key, value;
} lmio__umap_slot;
typedef struct lmio__umap {
    lmio__umap_slot *slots;
    size_t cap, count;
    uint64_t key[2]; /* the hash key, set when the map first grows */
} lmio__umap;
bool lmio__umap_put(lmio__umap *m, uint64_t key, uint64_t value);
bool lmio__umap_get(const lmio__umap *m, uint64_t key, uint64_t *value);
void lmio__umap_free(lmio__umap *m);

/* ---- regex (regex.c): the one place that talks to PCRE2 ---- */
typedef struct lmio__regex lmio__regex;
lmio_status lmio__regex_compile(const char *pattern, lmio__regex **out, lmio_error *err);
void lmio__regex_free(lmio__regex *re);
/* Per-thread match state; NULL when out of memory. */
void *lmio__regex_match_data(const lmio__regex *re);
void lmio__regex_match_data_free(void *md);
/* The next match at or after start: 1 found, 0 none, -1 matcher error. */
int lmio__regex_next(const lmio__regex *re, void *md, const char *text, size_t len, size_t start,
                     size_t *mstart, size_t *mend);

/* ---- files (file.c) ---- */

/* A whole file, mapped read-only or read into memory. */
typedef struct lmio__file {
    const unsigned char *data;
    uint64_t size;
    int mapped; /* 1: munmap on close; 0: lmio__free */
} lmio__file;

lmio_status lmio__file_open(const char *path, int use_mmap, lmio__file *out, lmio_error *err);
void lmio__file_close(lmio__file *f);

/* Runs fn(ctx) so that a SIGBUS raised by reading a mapped file that shrank
 * (guard.c) ends fn early and returns false instead of killing the process.
 * fn must only read memory and compute: no allocation, no locks, no I/O,
 * because it may be abandoned at any instruction. */
bool lmio__guarded(void (*fn)(void *ctx), void *ctx);
/* The address whose read raised SIGBUS, after lmio__guarded returned false
 * on this thread (names the tensor and byte in the error). */
const void *lmio__guard_fault_addr(void);
/* Leaves the innermost guarded region of this thread as if reading addr had
 * raised SIGBUS here: how a fault on another thread (a worker of a parallel
 * loop) reaches the guarded region that started the work. Outside any
 * guarded region the process gets SIGBUS, as it would have. */
_Noreturn void lmio__guard_raise(const void *addr);

/* For code that cannot be abandoned midway (a parser that allocates as it
 * reads): between begin and end, a read of [base, base + size), a mapped
 * file, that faults because the file shrank reads zeros instead, and end
 * returns the first such address (NULL when none). The caller must then
 * discard all it parsed and unmap the file. Guarded regions inside take
 * precedence. One region per thread. */
void lmio__patch_begin(const void *base, uint64_t size);
const void *lmio__patch_end(void);

/* LMIO_ERR_IO for tensor t whose mapped file shrank under a read that
 * faulted at addr (naming the file, the byte when addr lies in t, the tensor). */
lmio_status lmio__tensor_lost(const lmio_tensor *t, const void *addr, lmio_error *err);
/* All of t converted to dd into dst (numel elements), guarded: a mapped
 * file that shrank is LMIO_ERR_IO, not a signal. */
lmio_status lmio__tensor_convert(const lmio_tensor *t, void *dst, lmio_dtype dd, lmio_error *err);
/* lmio_convert of n elements (dtypes already checked) in a guarded region:
 * false when the source's mapping faulted (lmio__guard_fault_addr says where). */
bool lmio__convert_guarded(void *dst, lmio_dtype dd, const void *src, lmio_dtype sd, size_t n);
/* memcpy in a guarded region: false when src's mapping faulted. */
bool lmio__copy_guarded(void *dst, const void *src, size_t n);
/* lmio__tensor_lost for the tensor of sd that holds addr; when none does,
 * an LMIO_ERR_IO naming path. */
lmio_status lmio__statedict_lost(const lmio_statedict *sd, const void *addr, const char *path, lmio_error *err);
/* *equal: a and b have the same dtype and bytes (compared guarded, as
 * either may be mapped; a file that shrank is LMIO_ERR_IO naming it). */
lmio_status lmio__tensors_equal(const lmio_tensor *a, const lmio_tensor *b, bool *equal, lmio_error *err);

/* An output file written under a temporary name in the destination's
 * directory and renamed over the destination only by commit. */
typedef struct lmio__outfile {
    int fd;      /* the temporary file, open for writing */
    int lock_fd; /* a dup of fd that keeps its flock until the rename is done */
    int slot;    /* its entry in the temporaries registry, or -1 */
    char *tmp_path;
    char *final_path;
    uint64_t written;
    uint64_t reserved;  /* bytes allocated up front by lmio__outfile_reserve */
    int sys_errno;      /* errno of the last failed write (EFAULT: the source memory went away) */
    int no_copy_range;  /* copy_file_range failed once: plain writes from then on */
    lmio__sha256 *sha;  /* in a staging directory: the running hash for its manifest */
} lmio__outfile;

/* Refuses a destination that is a directory, a FIFO, a device or a socket
 * (or a symlink to one); removes leftovers of killed saves to the same path;
 * creates the temporary file with the mode and, where allowed, the owner of
 * the file it will replace. */
lmio_status lmio__outfile_begin(lmio__outfile *o, const char *path, lmio_error *err);
/* Appends n bytes. When they lie in a mapped input file (lmio__file_open
 * with use_mmap), the kernel copies them file to file (copy_file_range),
 * falling back to write(2) where it cannot. */
lmio_status lmio__outfile_write(lmio__outfile *o, const void *buf, size_t n, lmio_error *err);
/* Allocates the file's final size up front when the filesystem can (a
 * hint: never fails; writes report a full disk as before). */
void lmio__outfile_reserve(lmio__outfile *o, uint64_t size);
/* fsyncs (when durable), renames, fsyncs the directory; frees o's state. */
lmio_status lmio__outfile_commit(lmio__outfile *o, int durable, lmio_error *err);
/* Removes the temporary file; frees o's state. Safe after a failed begin. */
void lmio__outfile_abort(lmio__outfile *o);

/* ---- temporary files (tempfile.c) ----
 * Every temporary file or directory is named .<name>.lmio-tmp-XXXXXX beside
 * its destination <name>, created with O_EXCL and never through a symlink,
 * and holds an exclusive flock(2) for as long as its save runs. */
#define LMIO__TMP_TAG ".lmio-tmp-"

/* Creates dir/.<base>.lmio-tmp-XXXXXX: a file open for writing (is_dir 0)
 * or a directory (is_dir 1; the fd returned is the directory, read-only),
 * flock'ed and registered for lmio_cleanup_temporaries. mode is passed to
 * open/mkdir (the umask applies). Fills path (cap bytes) and *slot; -1 with
 * errno on failure. */
int lmio__temp_create(const char *dir, const char *base, int is_dir, unsigned mode, char *path, size_t cap,
                      int *slot);
/* Forgets a registry slot (after the temporary was renamed or removed). */
void lmio__temp_unregister(int slot);
/* Removes dir/.<base>.lmio-tmp-* left by saves that died (SIGKILL, power
 * loss): only those whose flock can be taken, i.e. no live process holds. */
void lmio__temp_sweep(const char *dir, const char *base);
/* Removes dfd/name and, for a directory, everything below it, never
 * following a symlink (each level is opened O_NOFOLLOW). 0 or -1. */
int lmio__remove_tree_at(int dfd, const char *name);

/* ---- I/O failure injection (tempfile.c): tests only ----
 * Each write, fsync, rename and directory fsync of the save paths asks
 * lmio__io_fault first; when it returns an errno the call site fails as if
 * the system call had. Armed by lmio__io_fault_arm or, for whole programs,
 * by the environment variable LMIO_FAIL_IO=<op>:<n>[:stall] (op: write,
 * fsync, rename, dirsync; "stall" blocks in pause() instead of failing, so
 * a test can signal a save in flight). Not thread-safe. */
typedef enum lmio__io_op { LMIO__IO_WRITE, LMIO__IO_FSYNC, LMIO__IO_RENAME, LMIO__IO_DIRSYNC, LMIO__IO_COUNT } lmio__io_op;
/* Resets every counter; the nth (1-based) call of op then fails with e
 * (EIO when 0; e < 0 stalls instead). op = LMIO__IO_COUNT or n = 0: only
 * count. */
void lmio__io_fault_arm(lmio__io_op op, long n, int e);
/* Calls of op since the last arm. */
long lmio__io_fault_calls(lmio__io_op op);
int lmio__io_fault(lmio__io_op op);
/* Tests only: called (when set) between writing bytes into a staged
 * directory and hashing them for its manifest, so a test can truncate the
 * input they came from at exactly that moment. */
extern void (*lmio__hash_hook)(const void *p, size_t n);

/* ---- model directories ---- */

/* Refuses path, a file of the model directory dir, when it resolves
 * (through symlinks) outside dir, except the Hugging Face cache layout:
 * dir = .../models--X/snapshots/<rev> and the target in .../models--X/blobs/.
 * A path that does not exist passes (the caller reports it missing). */
lmio_status lmio__check_inside(const char *dir, const char *path, lmio_error *err);

/* dir + "/" + name into out; LMIO_ERR_INVALID_ARG if it does not fit. */
lmio_status lmio__path_join(char *out, size_t cap, const char *dir, const char *name, lmio_error *err);

/* The last path component, for short messages. */
const char *lmio__basename(const char *path);

/* Writes a whole file atomically (temporary file, fsync, rename). */
lmio_status lmio__write_file(const char *path, const void *data, size_t len, int durable, lmio_error *err);

/* ---- state dict internals used by format readers ---- */

/* Records where the state dict came from (path NULL keeps the recorded one)
 * and adopts file if given (ownership moves to sd; cannot fail). */
lmio_status lmio__statedict_set_source(lmio_statedict *sd, const char *path, const char *format,
                                       lmio__file *file, lmio_error *err);
/* Appends a tensor view without copying and without the public checks
 * (readers have validated already); records the absolute file offset. */
lmio_status lmio__statedict_add_view(lmio_statedict *sd, const char *name, size_t name_len,
                                     lmio_dtype dtype, int ndim, const uint64_t *shape,
                                     const void *data, uint64_t nbytes, int64_t file_offset,
                                     const char *source, lmio_error *err);
/* Appends a tensor whose data (lmio__malloc'd) the state dict takes over,
 * freed with it, or at once if the append fails; no file offset. */
lmio_status lmio__statedict_add_owned(lmio_statedict *sd, const char *name, size_t name_len, lmio_dtype dtype,
                                      int ndim, const uint64_t *shape, void *data, uint64_t nbytes,
                                      lmio_error *err);
/* Adds metadata in any order without the public checks; the reader must
 * call lmio__metadata_sort (which refuses duplicate keys) before handing sd
 * out. */
lmio_status lmio__metadata_append(lmio_statedict *sd, const char *key, const char *value, lmio_error *err);
lmio_status lmio__metadata_sort(lmio_statedict *sd, lmio_error *err);
/* Makes sd own child (freed with sd), so views into child stay valid. */
lmio_status lmio__statedict_adopt(lmio_statedict *sd, lmio_statedict *child, lmio_error *err);
/* How many state dicts sd has adopted; the next adopted is number count. */
size_t lmio__statedict_child_count(const lmio_statedict *sd);
/* Finds name in the adopted state dict number child (in order of adoption). */
lmio_status lmio__statedict_find_in_child(const lmio_statedict *sd, size_t child, const char *name,
                                          lmio_tensor *out);
/* Looks up a name of explicit length (names from files need not be NUL-terminated). */
bool lmio__statedict_has(const lmio_statedict *sd, const char *name, size_t name_len);

/* ---- dtype internals ---- */

/* The reference safetensors writer sorts tensors by this rank, descending
 * (its Dtype enum's declaration order, which is by increasing alignment). */
int lmio__dtype_safetensors_rank(lmio_dtype dtype);

/* Scalar bit rules and array kernels (dtype.c, dtype_x86.c). The AVX2 ones
 * exist on x86 only and must only run where the CPU has AVX2 and F16C. */
uint16_t lmio__f32_to_f16(uint32_t x);
uint32_t lmio__f16_to_f32(uint16_t h);
uint16_t lmio__f32_to_bf16(uint32_t x);
void lmio__cvt_f32_f16_portable(void *dst, const void *src, size_t n);
void lmio__cvt_f32_bf16_portable(void *dst, const void *src, size_t n);
void lmio__cvt_f16_f32_portable(void *dst, const void *src, size_t n);
void lmio__cvt_bf16_f32_portable(void *dst, const void *src, size_t n);
void lmio__cvt_f32_f16_avx2(void *dst, const void *src, size_t n);
void lmio__cvt_f32_bf16_avx2(void *dst, const void *src, size_t n);
void lmio__cvt_f16_f32_avx2(void *dst, const void *src, size_t n);
void lmio__cvt_bf16_f32_avx2(void *dst, const void *src, size_t n);

#endif
