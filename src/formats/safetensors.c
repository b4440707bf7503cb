/* safetensors: reader and writer.
 *
 * Layout (huggingface/safetensors README): u64le N | N bytes of UTF-8 JSON |
 * data. The reader applies the reference implementation's checks in its
 * order (shared/reference/safetensors-hf.md §1.5) and also rejects duplicate
 * keys, which the reference leaves to chance. Nothing in the header is used
 * before it has been checked against the real file size. */
#include "../core/json.h"
#include "formats.h"
#include "jlex.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct tinfo {
    const char *name; /* borrowed from the parsed JSON */
    size_t name_len;
    lmio_dtype dtype;
    int ndim;
    uint64_t shape[LMIO_MAX_DIMS];
    uint64_t begin, end;
} tinfo;

/* What the offset check needs per tensor, kept while the header is scanned:
 * 24 bytes, where the parsed entry itself would be ~1 KB. */
typedef struct span {
    uint64_t begin, end;
    size_t index; /* in the state dict */
} span;

/* ---- reading ---- */

/* A JSON integer that fits a u64 and is >= 0; jansson keeps integers and
 * reals apart, so 2.0 or 1e3 are rejected here as the reference does. */
static bool json_u64(const lmio__json *v, uint64_t *out)
{
    if (!lmio__json_is_integer(v)) return false;
    int64_t i = lmio__json_integer_value(v);
    if (i < 0) return false;
    *out = (uint64_t)i;
    return true;
}

static lmio_status parse_tensor(const char *path, const char *name, const lmio__json *info, tinfo *t,
                                lmio_error *err)
{
    const int64_t hoff = 8; /* header problems are reported at the header start */
    if (!lmio__json_is_object(info))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                          "tensor \"%s\": entry is not an object; expected {\"dtype\", \"shape\", \"data_offsets\"}",
                          name);
    const char *k;
    lmio__json *v;
    lmio__json_iter it = lmio__json_iter_begin(info);
    while (lmio__json_iter_next(&it, &k, &v)) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets"))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                              "tensor \"%s\": unknown field \"%s\"; expected only dtype, shape, data_offsets",
                              name, k);
    }
    lmio__json *dt = lmio__json_get(info, "dtype");
    lmio__json *sh = lmio__json_get(info, "shape");
    lmio__json *off = lmio__json_get(info, "data_offsets");
    if (!dt || !sh || !off)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                          "tensor \"%s\": missing \"%s\"; expected dtype, shape and data_offsets", name,
                          !dt ? "dtype" : !sh ? "shape" : "data_offsets");
    if (!lmio__json_is_string(dt))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                          "tensor \"%s\": dtype is not a string; expected a name such as \"F32\"", name);
    t->dtype = lmio_dtype_from_name(lmio__json_string_value(dt));
    if (t->dtype == LMIO_DTYPE_NONE)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                          "tensor \"%s\": unknown dtype \"%.64s\"; expected one of BOOL, U8, I8, I16, U16, "
                          "I32, U32, I64, U64, F16, BF16, F32, F64, C64, F8_E4M3, F8_E5M2, F8_E8M0, "
                          "F8_E4M3FNUZ, F8_E5M2FNUZ, F6_E2M3, F6_E3M2, F4",
                          name, lmio__json_string_value(dt));
    if (!lmio__json_is_array(sh))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                          "tensor \"%s\": shape is not an array; expected a list of sizes", name);
    size_t nd = lmio__json_array_size(sh);
    if (nd > LMIO_MAX_DIMS)
        return lmio__fail(err, LMIO_ERR_LIMIT, path, hoff, name,
                          "tensor \"%s\": %zu dimensions; expected at most %d", name, nd, LMIO_MAX_DIMS);
    t->ndim = (int)nd;
    for (size_t i = 0; i < nd; i++)
        if (!json_u64(lmio__json_array_get(sh, i), &t->shape[i]))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                              "tensor \"%s\": shape[%zu] is not a non-negative integer; expected a size",
                              name, i);
    if (!lmio__json_is_array(off) || lmio__json_array_size(off) != 2 ||
        !json_u64(lmio__json_array_get(off, 0), &t->begin) || !json_u64(lmio__json_array_get(off, 1), &t->end))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, hoff, name,
                          "tensor \"%s\": data_offsets is not two non-negative integers; expected [begin, end]",
                          name);
    t->name = name;
    t->name_len = strlen(name);
    return LMIO_OK;
}

static lmio_status check_header_length(const char *path, const lmio__file *f, uint64_t *n_out,
                                       lmio_error *err)
{
    if (f->size < 8)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, 0, "",
                          "file is %llu bytes; expected at least 8 (the header length)",
                          (unsigned long long)f->size);
    uint64_t n = lmio__le64(f->data);
    if (n > LMIO_SAFETENSORS_MAX_HEADER) {
        if (f->size >= 24 && memcmp(f->data, "version https://git-lfs", 23) == 0)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, 0, "",
                              "this is a Git LFS pointer, not the weights; expected a safetensors file "
                              "(fetch the LFS object)");
        return lmio__fail(err, LMIO_ERR_LIMIT, path, 0, "",
                          "header length %llu exceeds the %llu-byte cap; expected a safetensors header",
                          (unsigned long long)n, (unsigned long long)LMIO_SAFETENSORS_MAX_HEADER);
    }
    if (n > f->size - 8)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, 0, "",
                          "header length %llu exceeds file size %llu; expected <= %llu",
                          (unsigned long long)n, (unsigned long long)f->size,
                          (unsigned long long)(f->size - 8));
    *n_out = n;
    return LMIO_OK;
}

static lmio_status read_metadata(lmio_statedict *sd, const char *path, lmio__json *m, lmio_error *err)
{
    if (!lmio__json_is_object(m))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, 8, "__metadata__",
                          "__metadata__ is not an object; expected a string-to-string map");
    const char *k;
    lmio__json *v;
    lmio__json_iter it = lmio__json_iter_begin(m);
    while (lmio__json_iter_next(&it, &k, &v)) {
        if (!lmio__json_is_string(v))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, 8, k,
                              "__metadata__ key \"%s\" has a non-string value; expected a string", k);
        lmio_status s = lmio__metadata_append(sd, k, lmio__json_string_value(v), err);
        if (s) return s;
    }
    return lmio__metadata_sort(sd, err);
}

typedef struct scan_ctx {
    lmio_statedict *sd;
    const char *path;
    const unsigned char *data;
    uint64_t data_start, data_len;
    span *spans;
    size_t n, cap;
    bool seen_metadata;
} scan_ctx;

/* A parsed tensor entry, added to the state dict at once; offsets are
 * checked when all are known. */
static lmio_status add_tensor(scan_ctx *c, const tinfo *t, lmio_error *err)
{
    if (c->n == c->cap && !lmio__grow((void **)&c->spans, sizeof *c->spans, c->n + 1, &c->cap))
        return lmio__fail(err, LMIO_ERR_NOMEM, c->path, -1, "", "out of memory");
    c->spans[c->n] = (span){t->begin, t->end, lmio_statedict_count(c->sd)};
    /* data and size are only meaningful once the offsets pass below; until
     * then nothing reads them, and a failed open frees the state dict */
    lmio_status s = lmio__statedict_add_view(c->sd, t->name, t->name_len, t->dtype, t->ndim, t->shape,
                                             c->data && t->begin < t->end && t->end <= c->data_len
                                                 ? c->data + t->begin : NULL,
                                             t->end >= t->begin ? t->end - t->begin : 0,
                                             (int64_t)(c->data_start + t->begin), NULL, err);
    if (s) return s;
    c->n++;
    return LMIO_OK;
}

/* One member of the header: __metadata__ or a tensor. */
static lmio_status scan_entry(void *vctx, const char *k, lmio__json *v, int64_t offset, lmio_error *err)
{
    scan_ctx *c = vctx;
    if (strcmp(k, "__metadata__") == 0) {
        if (c->seen_metadata)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, offset, k,
                              "invalid JSON: duplicate object key \"__metadata__\"; expected each key once");
        c->seen_metadata = true;
        return read_metadata(c->sd, c->path, v, err);
    }
    tinfo t;
    lmio_status s = parse_tensor(c->path, k, v, &t, err);
    if (s) return s;
    s = add_tensor(c, &t, err);
    if (s == LMIO_ERR_DUPLICATE)
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, offset, k,
                          "invalid JSON: duplicate object key \"%s\"; expected each key once", k);
    return s;
}

/* ---- the fast path: the strict lexer (jlex.h) over the usual header ----
 * A header as writers emit it (no escapes, plain integers) is read here
 * without building any JSON value; everything else, valid or not, is
 * declined and read by the general path above, which alone words errors.
 * So this path may only accept what that one accepts, with the same
 * result: each rule it checks mirrors one of parse_tensor's or
 * read_metadata's, and anything it is unsure of is a decline. */
typedef enum { FAST_OK, FAST_DECLINED, FAST_FAILED } fast_result;

int lmio__safetensors_fast_header = 1;

static fast_result fast_status(lmio_status s)
{
    return s == LMIO_OK ? FAST_OK : s == LMIO_ERR_NOMEM ? FAST_FAILED : FAST_DECLINED;
}

/* {"dtype": ..., "shape": [...], "data_offsets": [b, e]} in any order,
 * each once and nothing else. */
static bool fast_tensor(lmio__jlex *l, tinfo *t)
{
    unsigned seen = 0;
    if (!lmio__jl_char(l, '{')) return false;
    do {
        const char *k, *d;
        size_t kn, dn;
        if (!lmio__jl_string(l, &k, &kn) || !lmio__jl_char(l, ':')) return false;
        if (kn == 5 && !memcmp(k, "dtype", 5) && !(seen & 1)) {
            char name[16];
            if (!lmio__jl_string(l, &d, &dn) || dn >= sizeof name) return false;
            memcpy(name, d, dn);
            name[dn] = 0;
            if ((t->dtype = lmio_dtype_from_name(name)) == LMIO_DTYPE_NONE) return false;
            seen |= 1;
        } else if (kn == 5 && !memcmp(k, "shape", 5) && !(seen & 2)) {
            int nd = 0;
            if (!lmio__jl_char(l, '[')) return false;
            if (!lmio__jl_char(l, ']')) {
                do
                    if (nd == LMIO_MAX_DIMS || !lmio__jl_u63(l, &t->shape[nd++])) return false;
                while (lmio__jl_char(l, ','));
                if (!lmio__jl_char(l, ']')) return false;
            }
            t->ndim = nd;
            seen |= 2;
        } else if (kn == 12 && !memcmp(k, "data_offsets", 12) && !(seen & 4)) {
            if (!lmio__jl_char(l, '[') || !lmio__jl_u63(l, &t->begin) || !lmio__jl_char(l, ',') ||
                !lmio__jl_u63(l, &t->end) || !lmio__jl_char(l, ']'))
                return false;
            seen |= 4;
        } else {
            return false;
        }
    } while (lmio__jl_char(l, ','));
    return lmio__jl_char(l, '}') && seen == 7;
}

/* A string into a NUL-terminated copy: buf when it fits, else allocated
 * (*heap set, to be freed). NULL when out of memory. */
static char *fast_cstr(const char *s, size_t n, char *buf, size_t cap, char **heap)
{
    char *d = n < cap ? buf : (*heap = lmio__malloc(n + 1));
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

/* "__metadata__"'s value: an object of strings. */
static fast_result fast_metadata(lmio__jlex *l, scan_ctx *c, lmio_error *err)
{
    if (!lmio__jl_char(l, '{')) return FAST_DECLINED;
    if (!lmio__jl_char(l, '}')) {
        do {
            const char *k, *v;
            size_t kn, vn;
            if (!lmio__jl_string(l, &k, &kn) || !lmio__jl_char(l, ':') || !lmio__jl_string(l, &v, &vn))
                return FAST_DECLINED;
            char kb[256], vb[256], *kh = NULL, *vh = NULL;
            const char *kc = fast_cstr(k, kn, kb, sizeof kb, &kh), *vc = fast_cstr(v, vn, vb, sizeof vb, &vh);
            lmio_status s = kc && vc ? lmio__metadata_append(c->sd, kc, vc, err)
                                     : lmio__fail(err, LMIO_ERR_NOMEM, c->path, -1, "", "out of memory");
            lmio__free(kh);
            lmio__free(vh);
            if (s) return fast_status(s);
        } while (lmio__jl_char(l, ','));
        if (!lmio__jl_char(l, '}')) return FAST_DECLINED;
    }
    /* a duplicate key fails here; the general parser words it */
    return fast_status(lmio__metadata_sort(c->sd, err));
}

static fast_result fast_scan(scan_ctx *c, const char *hdr, size_t n, lmio_error *err)
{
    lmio__jlex l = {hdr, hdr + n};
    if (!lmio__safetensors_fast_header || !lmio__jl_char(&l, '{')) return FAST_DECLINED;
    if (!lmio__jl_char(&l, '}')) {
        do {
            const char *k;
            size_t kn;
            if (!lmio__jl_string(&l, &k, &kn) || !lmio__jl_char(&l, ':')) return FAST_DECLINED;
            fast_result r;
            if (kn == 12 && !memcmp(k, "__metadata__", 12)) {
                if (c->seen_metadata) return FAST_DECLINED;
                c->seen_metadata = true;
                r = fast_metadata(&l, c, err);
            } else {
                tinfo t;
                if (!fast_tensor(&l, &t)) return FAST_DECLINED;
                t.name = k;
                t.name_len = kn;
                r = fast_status(add_tensor(c, &t, err));
            }
            if (r != FAST_OK) return r;
        } while (lmio__jl_char(&l, ','));
        if (!lmio__jl_char(&l, '}')) return FAST_DECLINED;
    }
    return lmio__jl_end(&l) ? FAST_OK : FAST_DECLINED;
}

static int cmp_spans(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static lmio_status new_statedict(const char *path, lmio_statedict **out, lmio_error *err)
{
    lmio_status s = lmio_statedict_create(out, err);
    if (!s && (s = lmio__statedict_set_source(*out, path, "safetensors", NULL, err))) {
        lmio_statedict_free(*out);
        *out = NULL;
    }
    return s;
}

/* Scans the header into a new *sdp (the fast path, else the general one
 * into a fresh state dict), then validates it against the data section.
 * On failure *sdp may hold a partial state dict, for the caller to free. */
static lmio_status read_tensors(lmio_statedict **sdp, const char *path, const char *hdr, size_t hdr_len,
                                const unsigned char *data, uint64_t data_len, uint64_t data_start,
                                lmio_error *err)
{
    lmio_status s = new_statedict(path, sdp, err);
    if (s) return s;
    scan_ctx c = {.sd = *sdp, .path = path, .data = data, .data_start = data_start, .data_len = data_len};
    lmio_error ferr; /* a decline leaves no trace in err */
    fast_result fr = fast_scan(&c, hdr, hdr_len, &ferr);
    if (fr == FAST_FAILED) {
        if (err) *err = ferr;
        s = ferr.code;
    } else if (fr == FAST_DECLINED) {
        lmio_statedict_free(*sdp);
        c.n = 0;
        c.seen_metadata = false;
        if (!(s = new_statedict(path, sdp, err))) {
            c.sd = *sdp;
            s = lmio__json_scan_object(hdr, hdr_len, path, 8, scan_entry, &c, err);
        }
    }
    lmio_statedict *sd = *sdp;
    span *ts = c.spans;
    size_t nt = c.n;
    if (s) goto out;
    /* Any order on disk is valid; the reference sorts by offsets and then
     * demands that they tile the data section from 0 with no gap or overlap. */
    if (nt > 1) qsort(ts, nt, sizeof *ts, cmp_spans);
    uint64_t pos = 0;
    lmio_tensor v, prev = {0};
    for (size_t i = 0; i < nt; i++, prev = v) {
        span *t = &ts[i];
        lmio_statedict_get(sd, t->index, &v, NULL);
        if (t->begin != pos || t->end < t->begin) {
            if (t->end < t->begin)
                s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, v.name,
                               "tensor \"%s\": data_offsets [%llu, %llu] end before they begin; expected begin <= end",
                               v.name, (unsigned long long)t->begin, (unsigned long long)t->end);
            else
                s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, v.name,
                               "tensor \"%s\": data_offsets [%llu, %llu] %s; expected it to begin at %llu%s%s%s",
                               v.name, (unsigned long long)t->begin, (unsigned long long)t->end,
                               t->begin < pos ? "overlap the previous tensor" : "leave a gap",
                               (unsigned long long)pos, i ? " (where \"" : " (the data section starts at 0)",
                               i ? prev.name : "", i ? "\" ends)" : "");
            goto out;
        }
        uint64_t numel, want;
        char sh[256] = ""; /* formatted only when a message needs it */
        if (!lmio__numel(v.ndim, v.shape, &numel)) {
            lmio__format_shape(sh, sizeof sh, v.ndim, v.shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, v.name,
                           "tensor \"%s\": shape %s overflows the element count; expected a product below 2^64",
                           v.name, sh);
            goto out;
        }
        lmio__size_result r = lmio__nbytes(v.dtype, numel, &want);
        if (r == LMIO__SIZE_OVERFLOW) {
            lmio__format_shape(sh, sizeof sh, v.ndim, v.shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, v.name,
                           "tensor \"%s\": %s shape %s overflows the byte size; expected a size below 2^64",
                           v.name, lmio_dtype_name(v.dtype), sh);
            goto out;
        }
        if (r == LMIO__SIZE_MISALIGNED) {
            lmio__format_shape(sh, sizeof sh, v.ndim, v.shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, v.name,
                           "tensor \"%s\": %s shape %s is not a whole number of bytes; expected "
                           "elements * %u bits divisible by 8",
                           v.name, lmio_dtype_name(v.dtype), sh, lmio_dtype_bits(v.dtype));
            goto out;
        }
        if (t->end - t->begin != want) {
            lmio__format_shape(sh, sizeof sh, v.ndim, v.shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, v.name,
                           "tensor \"%s\": data_offsets [%llu, %llu] hold %llu bytes; expected %llu (%s %s)",
                           v.name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)(t->end - t->begin), (unsigned long long)want,
                           lmio_dtype_name(v.dtype), sh);
            goto out;
        }
        if (t->end > data_len) {
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(data_start + data_len), v.name,
                           "file ends inside tensor \"%s\" (truncated?); expected data up to file offset %llu, "
                           "file size is %llu",
                           v.name, (unsigned long long)(data_start + t->end),
                           (unsigned long long)(data_start + data_len));
            goto out;
        }
        pos = t->end;
    }
    if (pos != data_len) {
        s = lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(data_start + pos), "",
                       "%llu bytes follow the last tensor; expected the file to end at offset %llu",
                       (unsigned long long)(data_len - pos), (unsigned long long)(data_start + pos));
        goto out;
    }
out:
    lmio__free(ts);
    return s;
}

/* How many leading bytes are ASCII, eight at a time: headers are nearly
 * all ASCII, and the UTF-8 check then starts where it has work to do. */
static size_t ascii_prefix(const char *s, size_t n)
{
    size_t i = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        if (w & 0x8080808080808080ull) break;
    }
    return i;
}

static lmio_status st_open(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err)
{
    uint64_t n = 0;
    lmio_status s = check_header_length(path, f, &n, err);
    if (s) return s;
    const char *hdr = (const char *)f->data + 8;
    size_t valid = ascii_prefix(hdr, (size_t)n);
    valid += lmio__utf8_prefix(hdr + valid, (size_t)n - valid);
    if (valid != n)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(8 + valid), "",
                          "header byte 0x%02x is not valid UTF-8; expected a UTF-8 JSON header",
                          (unsigned char)hdr[valid]);
    lmio_statedict *sd = NULL;
    uint64_t data_start = 8 + n;
    s = read_tensors(&sd, path, hdr, (size_t)n, f->data ? f->data + data_start : NULL, f->size - data_start,
                     data_start, err);
    if (s) {
        lmio_statedict_free(sd);
        return s;
    }
    /* path is already copied, so this cannot fail: it only moves the file */
    lmio__statedict_set_source(sd, NULL, "safetensors", f, NULL);
    *out = sd;
    return LMIO_OK;
}

/* ---- writing ---- */

typedef struct wentry {
    lmio_tensor t;
    lmio_dtype out_dtype;
    uint64_t out_nbytes;
} wentry;

static int cmp_write_order(const void *a, const void *b)
{
    const wentry *x = a, *y = b;
    int rx = lmio__dtype_safetensors_rank(x->out_dtype), ry = lmio__dtype_safetensors_rank(y->out_dtype);
    if (rx != ry) return ry - rx; /* descending alignment */
    return strcmp(x->t.name, y->t.name);
}

/* Builds the padded header: u64le length + compact JSON + spaces to 8,
 * byte for byte what the reference writer emits for the same tensors. */
static lmio_status build_header(const lmio_statedict *sd, const wentry *ws, size_t n,
                                const char *path, lmio__buf *out, lmio_error *err)
{
    lmio__buf b = {0};
    lmio__buf_put(&b, "\0\0\0\0\0\0\0\0{", 9); /* length patched below */
    size_t nm = lmio_metadata_count(sd);
    if (nm) {
        lmio__buf_puts(&b, "\"__metadata__\":{");
        for (size_t i = 0; i < nm; i++) {
            const char *k, *v;
            lmio_metadata_get(sd, i, &k, &v, NULL);
            if (i) lmio__buf_put(&b, ",", 1);
            lmio__buf_json_string(&b, k);
            lmio__buf_put(&b, ":", 1);
            lmio__buf_json_string(&b, v);
        }
        lmio__buf_puts(&b, n ? "}," : "}");
    }
    uint64_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (i) lmio__buf_put(&b, ",", 1);
        lmio__buf_json_string(&b, ws[i].t.name);
        lmio__buf_puts(&b, ":{\"dtype\":\"");
        lmio__buf_puts(&b, lmio_dtype_name(ws[i].out_dtype));
        lmio__buf_puts(&b, "\",\"shape\":[");
        for (int d = 0; d < ws[i].t.ndim; d++) {
            if (d) lmio__buf_put(&b, ",", 1);
            lmio__buf_u64(&b, ws[i].t.shape[d]);
        }
        lmio__buf_puts(&b, "],\"data_offsets\":[");
        lmio__buf_u64(&b, pos);
        lmio__buf_put(&b, ",", 1);
        pos += ws[i].out_nbytes;
        lmio__buf_u64(&b, pos);
        lmio__buf_puts(&b, "]}");
    }
    lmio__buf_put(&b, "}", 1);
    while (!b.oom && (b.len - 8) % 8) lmio__buf_put(&b, " ", 1);
    if (b.oom) {
        lmio__buf_free(&b);
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory building the header");
    }
    if (b.len - 8 > LMIO_SAFETENSORS_MAX_HEADER) {
        size_t hl = b.len - 8;
        lmio__buf_free(&b);
        return lmio__fail(err, LMIO_ERR_LIMIT, path, -1, "",
                          "header would be %zu bytes; expected at most %llu (too many or too long names)",
                          hl, (unsigned long long)LMIO_SAFETENSORS_MAX_HEADER);
    }
    lmio__put_le64((unsigned char *)b.data, b.len - 8);
    *out = b;
    return LMIO_OK;
}

/* Streaming granularity: large enough for full-speed write(2), small enough
 * that progress moves and conversion buffers stay a few MiB. */
#define WRITE_CHUNK (16u << 20)

#define CONVERT_CHUNK_ELEMS (1u << 20)

static lmio_status report(const lmio_save_opts *o, uint64_t done, uint64_t total, const char *path,
                          lmio_error *err)
{
    if (o->progress && o->progress(o->progress_ctx, done, total))
        return lmio__fail(err, LMIO_ERR_CANCELLED, path, -1, "", "save cancelled; nothing was written");
    return LMIO_OK;
}

/* Asks the kernel to start reading the next chunk of a mapped input while
 * this one converts: a model larger than memory is read from disk, and a
 * page fault per 4 KiB would leave the disk idle during each conversion.
 * Harmless (and cheap) on ordinary memory. */
static void prefetch(const unsigned char *p, uint64_t left, size_t n)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)p & ~(page - 1);
    size_t len = (size_t)((uintptr_t)p - a) + (left < n ? (size_t)left : n);
    (void)posix_madvise((void *)a, len, POSIX_MADV_WILLNEED);
}

/* o is complete and checked (lmio_statedict_save). */
static lmio_status st_save(const lmio_statedict *sd, const char *path, const lmio_save_opts *opts,
                           lmio_error *err)
{
    const lmio_save_opts o = *opts;
    size_t n = lmio_statedict_count(sd);
    wentry *ws = n ? lmio__calloc(n, sizeof *ws) : NULL;
    if (n && !ws) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    uint64_t data_total = 0;
    for (size_t i = 0; i < n; i++) {
        lmio_statedict_get(sd, i, &ws[i].t, NULL);
        bool conv = o.dtype != LMIO_DTYPE_NONE && lmio_dtype_is_convertible_float(ws[i].t.dtype);
        ws[i].out_dtype = conv ? o.dtype : ws[i].t.dtype;
        ws[i].out_nbytes = conv ? ws[i].t.numel * (lmio_dtype_bits(o.dtype) / 8) : ws[i].t.nbytes;
        data_total += ws[i].out_nbytes;
    }
    if (n > 1) qsort(ws, n, sizeof *ws, cmp_write_order);

    unsigned char *cbuf = NULL;
    lmio__buf hdr = {0};
    lmio__outfile out;
    lmio_status s = build_header(sd, ws, n, path, &hdr, err);
    if (s) goto fail_nofile;
    uint64_t total = hdr.len + data_total;
    if ((s = report(&o, 0, total, path, err))) goto fail_nofile;
    if ((s = lmio__outfile_begin(&out, path, err))) goto fail_nofile;
    lmio__outfile_reserve(&out, total);
    if ((s = lmio__outfile_write(&out, hdr.data, hdr.len, err))) goto fail;
    for (size_t i = 0; i < n; i++) {
        const wentry *w = &ws[i];
        const unsigned char *src = w->t.data;
        if (w->out_dtype == w->t.dtype) {
            for (uint64_t off = 0; off < w->t.nbytes; off += WRITE_CHUNK) {
                size_t m = w->t.nbytes - off < WRITE_CHUNK ? (size_t)(w->t.nbytes - off) : WRITE_CHUNK;
                if ((s = lmio__outfile_write(&out, src + off, m, err))) {
                    /* the input shrank under write(2): blame it, not the output */
                    if (out.sys_errno == EFAULT) s = lmio__tensor_lost(&w->t, src + off, err);
                    goto fail;
                }
                if ((s = report(&o, out.written, total, path, err))) goto fail;
            }
            continue;
        }
        if (!cbuf && !(cbuf = lmio__malloc((size_t)CONVERT_CHUNK_ELEMS * 8))) {
            s = lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
            goto fail;
        }
        size_t in_sz = lmio_dtype_bits(w->t.dtype) / 8, out_sz = lmio_dtype_bits(w->out_dtype) / 8;
        for (uint64_t e = 0; e < w->t.numel; e += CONVERT_CHUNK_ELEMS) {
            size_t m = w->t.numel - e < CONVERT_CHUNK_ELEMS ? (size_t)(w->t.numel - e) : CONVERT_CHUNK_ELEMS;
            if (e + m < w->t.numel) prefetch(src + (e + m) * in_sz, (w->t.numel - e - m) * in_sz, m * in_sz);
            if (!lmio__convert_guarded(cbuf, w->out_dtype, src + e * in_sz, w->t.dtype, m)) {
                s = lmio__tensor_lost(&w->t, lmio__guard_fault_addr(), err);
                goto fail;
            }
            if ((s = lmio__outfile_write(&out, cbuf, m * out_sz, err))) goto fail;
            if ((s = report(&o, out.written, total, path, err))) goto fail;
        }
    }
    if ((s = lmio__outfile_commit(&out, o.durable, err))) goto fail_nofile;
    lmio__buf_free(&hdr);
    lmio__free(cbuf);
    lmio__free(ws);
    return LMIO_OK;
fail:
    lmio__outfile_abort(&out);
fail_nofile:
    lmio__buf_free(&hdr);
    lmio__free(cbuf);
    lmio__free(ws);
    return s;
}

lmio_status lmio_safetensors_save(const lmio_statedict *sd, const char *path, const lmio_save_opts *opts,
                                  lmio_error *err)
{
    return lmio_statedict_save(sd, path, "safetensors", opts, err);
}

/* No magic number: a plausible header length followed by '{'. */
static lmio__sniff st_sniff(const unsigned char *head, size_t n, uint64_t file_size)
{
    if (n < 9 || file_size < 10) return LMIO__SNIFF_NO;
    uint64_t len = lmio__le64(head);
    return len >= 2 && len <= file_size - 8 && head[8] == '{' ? LMIO__SNIFF_MAYBE : LMIO__SNIFF_NO;
}

/* Transformers refuses shards without it (safetensors-hf.md §2.4) */
static const char *const k_dir_metadata[] = {"format", "pt", NULL};

const lmio__format lmio__format_safetensors = {
    .name = "safetensors",
    .description = "safetensors",
    .sniff = st_sniff,
    .open = st_open,
    .save = st_save,
    .dir_file = "model.safetensors",
    .dir_index = "model.safetensors.index.json",
    .dir_shard_stem = "model",
    .dir_shard_ext = ".safetensors",
    .dir_metadata = k_dir_metadata,
};
