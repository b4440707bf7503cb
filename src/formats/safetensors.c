/* safetensors: reader and writer.
 *
 * Layout (huggingface/safetensors README): u64le N | N bytes of UTF-8 JSON |
 * data. The reader applies the reference implementation's checks in its
 * order (shared/reference/safetensors-hf.md §1.5) and also rejects duplicate
 * keys, which the reference leaves to chance. Nothing in the header is used
 * before it has been checked against the real file size. */
#include "../core/json.h"
#include "formats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct tinfo {
    const char *name; /* borrowed from the parsed JSON */
    size_t name_len;
    lmio_dtype dtype;
    int ndim;
    uint64_t shape[LMIO_MAX_DIMS];
    uint64_t begin, end;
} tinfo;

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

static int cmp_offsets(const void *a, const void *b)
{
    const tinfo *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
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
        lmio_status s = lmio_metadata_set(sd, k, lmio__json_string_value(v), err);
        if (s) return s;
    }
    return LMIO_OK;
}

/* Validates a parsed header against the data section and fills sd. */
static lmio_status read_tensors(lmio_statedict *sd, const char *path, lmio__json *root,
                                const unsigned char *data, uint64_t data_len, uint64_t data_start,
                                lmio_error *err)
{
    size_t count = lmio__json_object_size(root);
    tinfo *ts = count ? lmio__calloc(count, sizeof *ts) : NULL;
    if (count && !ts) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    size_t nt = 0;
    lmio_status s = LMIO_OK;
    const char *k;
    lmio__json *v;
    lmio__json_iter it = lmio__json_iter_begin(root);
    while (lmio__json_iter_next(&it, &k, &v)) {
        if (strcmp(k, "__metadata__") == 0) {
            if ((s = read_metadata(sd, path, v, err))) goto out;
            continue;
        }
        if ((s = parse_tensor(path, k, v, &ts[nt], err))) goto out;
        nt++;
    }
    /* Any order on disk is valid; the reference sorts by offsets and then
     * demands that they tile the data section from 0 with no gap or overlap. */
    if (nt > 1) qsort(ts, nt, sizeof *ts, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < nt; i++) {
        tinfo *t = &ts[i];
        if (t->begin != pos || t->end < t->begin) {
            if (t->end < t->begin)
                s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, t->name,
                               "tensor \"%s\": data_offsets [%llu, %llu] end before they begin; expected begin <= end",
                               t->name, (unsigned long long)t->begin, (unsigned long long)t->end);
            else
                s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, t->name,
                               "tensor \"%s\": data_offsets [%llu, %llu] %s; expected it to begin at %llu%s%s%s",
                               t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                               t->begin < pos ? "overlap the previous tensor" : "leave a gap",
                               (unsigned long long)pos, i ? " (where \"" : " (the data section starts at 0)",
                               i ? ts[i - 1].name : "", i ? "\" ends)" : "");
            goto out;
        }
        uint64_t numel, want;
        char sh[256] = ""; /* formatted only when a message needs it */
        if (!lmio__numel(t->ndim, t->shape, &numel)) {
            lmio__format_shape(sh, sizeof sh, t->ndim, t->shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, t->name,
                           "tensor \"%s\": shape %s overflows the element count; expected a product below 2^64",
                           t->name, sh);
            goto out;
        }
        lmio__size_result r = lmio__nbytes(t->dtype, numel, &want);
        if (r == LMIO__SIZE_OVERFLOW) {
            lmio__format_shape(sh, sizeof sh, t->ndim, t->shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, t->name,
                           "tensor \"%s\": %s shape %s overflows the byte size; expected a size below 2^64",
                           t->name, lmio_dtype_name(t->dtype), sh);
            goto out;
        }
        if (r == LMIO__SIZE_MISALIGNED) {
            lmio__format_shape(sh, sizeof sh, t->ndim, t->shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, t->name,
                           "tensor \"%s\": %s shape %s is not a whole number of bytes; expected "
                           "elements * %u bits divisible by 8",
                           t->name, lmio_dtype_name(t->dtype), sh, lmio_dtype_bits(t->dtype));
            goto out;
        }
        if (t->end - t->begin != want) {
            lmio__format_shape(sh, sizeof sh, t->ndim, t->shape);
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, 8, t->name,
                           "tensor \"%s\": data_offsets [%llu, %llu] hold %llu bytes; expected %llu (%s %s)",
                           t->name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)(t->end - t->begin), (unsigned long long)want,
                           lmio_dtype_name(t->dtype), sh);
            goto out;
        }
        if (t->end > data_len) {
            s = lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(data_start + data_len), t->name,
                           "file ends inside tensor \"%s\" (truncated?); expected data up to file offset %llu, "
                           "file size is %llu",
                           t->name, (unsigned long long)(data_start + t->end),
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
    for (size_t i = 0; i < nt; i++) {
        tinfo *t = &ts[i];
        s = lmio__statedict_add_view(sd, t->name, t->name_len, t->dtype, t->ndim, t->shape,
                                     data + t->begin, t->end - t->begin,
                                     (int64_t)(data_start + t->begin), NULL, err);
        if (s) {
            if (s == LMIO_ERR_DUPLICATE) { /* cannot happen: JSON keys are unique */ }
            goto out;
        }
    }
out:
    lmio__free(ts);
    return s;
}

lmio_status lmio__safetensors_open(const char *path, lmio__file *f, lmio_statedict **out,
                                   lmio_error *err)
{
    uint64_t n = 0;
    lmio_status s = check_header_length(path, f, &n, err);
    if (s) return s;
    const char *hdr = (const char *)f->data + 8;
    size_t valid = lmio__utf8_prefix(hdr, (size_t)n);
    if (valid != n)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(8 + valid), "",
                          "header byte 0x%02x is not valid UTF-8; expected a UTF-8 JSON header",
                          (unsigned char)hdr[valid]);
    lmio__json *root;
    if ((s = lmio__json_parse(hdr, (size_t)n, path, 8, &root, err))) return s;
    if (!lmio__json_is_object(root)) {
        const char *kind = lmio__json_is_array(root) ? "array" : lmio__json_is_string(root) ? "string" : "scalar";
        lmio__json_decref(root);
        return lmio__fail(err, LMIO_ERR_FORMAT, path, 8, "",
                          "header is a JSON %s; expected a JSON object", kind);
    }
    lmio_statedict *sd;
    if ((s = lmio_statedict_create(&sd, err))) {
        lmio__json_decref(root);
        return s;
    }
    if ((s = lmio__statedict_set_source(sd, path, "safetensors", NULL, err))) {
        lmio_statedict_free(sd);
        lmio__json_decref(root);
        return s;
    }
    uint64_t data_start = 8 + n;
    s = read_tensors(sd, path, root, f->data ? f->data + data_start : NULL, f->size - data_start,
                     data_start, err);
    lmio__json_decref(root);
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

/* A tensor's source memory went away mid-save: a mapped input was
 * truncated (a write(2) from it fails EFAULT; a load of it raises SIGBUS,
 * caught by lmio__guarded). The file to blame is the input, not the output. */
static lmio_status source_gone(const lmio_tensor *t, uint64_t off, const char *path, lmio_error *err)
{
    return lmio__fail(err, LMIO_ERR_IO, t->source ? t->source : path,
                      t->source && t->file_offset >= 0 ? t->file_offset + (int64_t)off : -1, t->name,
                      "data of tensor \"%s\" can no longer be read (the file shrank after it was mapped); "
                      "expected the file to stay as it was while open; %s was left as it was",
                      t->name, path);
}

typedef struct convert_job {
    void *dst;
    lmio_dtype dst_dtype;
    const void *src;
    lmio_dtype src_dtype;
    size_t n;
} convert_job;

static void convert_fn(void *ctx)
{
    convert_job *j = ctx;
    lmio_convert(j->dst, j->dst_dtype, j->src, j->src_dtype, j->n, NULL);
}
#define CONVERT_CHUNK_ELEMS (1u << 20)

static lmio_status report(const lmio_save_opts *o, uint64_t done, uint64_t total, const char *path,
                          lmio_error *err)
{
    if (o->progress && o->progress(o->progress_ctx, done, total))
        return lmio__fail(err, LMIO_ERR_CANCELLED, path, -1, "", "save cancelled; nothing was written");
    return LMIO_OK;
}

lmio_status lmio_safetensors_save(const lmio_statedict *sd, const char *path,
                                  const lmio_save_opts *opts, lmio_error *err)
{
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_save_opts", err);
    if (opt_status) return opt_status;
    if (!sd || !path || !*path)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path ? path : "", -1, "",
                          "state dict or path missing");
    if (o.dtype != LMIO_DTYPE_NONE && !lmio_dtype_is_convertible_float(o.dtype))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "",
                          "target dtype %s; expected F32, F16, BF16 or F64",
                          lmio_dtype_name(o.dtype) ? lmio_dtype_name(o.dtype) : "?");
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
    if ((s = lmio__outfile_write(&out, hdr.data, hdr.len, err))) goto fail;
    for (size_t i = 0; i < n; i++) {
        const wentry *w = &ws[i];
        const unsigned char *src = w->t.data;
        if (w->out_dtype == w->t.dtype) {
            for (uint64_t off = 0; off < w->t.nbytes; off += WRITE_CHUNK) {
                size_t m = w->t.nbytes - off < WRITE_CHUNK ? (size_t)(w->t.nbytes - off) : WRITE_CHUNK;
                if ((s = lmio__outfile_write(&out, src + off, m, err))) {
                    if (out.sys_errno == EFAULT) s = source_gone(&w->t, off, path, err);
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
            convert_job j = {cbuf, w->out_dtype, src + e * in_sz, w->t.dtype, m};
            if (!lmio__guarded(convert_fn, &j)) {
                s = source_gone(&w->t, e * in_sz, path, err);
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
