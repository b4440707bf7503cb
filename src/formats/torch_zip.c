/* PyTorch checkpoints (pytorch_model.bin, .pt, .pth): torch.save's zip
 * archive, read and written, and the legacy stream torch.save writes with
 * _use_new_zipfile_serialization=False, read (shared/reference/
 * torch-tokenizer.md §1). data.pkl goes through pickle.c's machine, which
 * executes nothing; tensors whose views are contiguous stay zero-copy views
 * of the file, other views are copied out contiguous. */
#include "formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The first pickle of the legacy stream: PROTO 2, LONG1 of the magic
 * number 0x1950a86a20f9469cfc6c, STOP. */
static const unsigned char k_legacy_magic[15] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46,
                                                 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, '.'};
/* Its second: the protocol version 1001 */
static const unsigned char k_legacy_proto[6] = {0x80, 0x02, 'M', 0xe9, 0x03, '.'};

/* ---- reading ---- */

typedef struct rstore { /* a storage of the legacy stream */
    const char *key;
    size_t key_len;
    const unsigned char *data;
    uint64_t nbytes;
    int64_t file_off;
} rstore;

typedef struct rctx {
    const char *path;
    const lmio__file *f;
    const lmio__zip *z; /* zip archive, or: */
    rstore *legacy;     /* legacy stream's storages, sorted by key */
    size_t n_legacy;
    lmio_statedict *sd;
} rctx;

static int cmp_rstore(const void *a, const void *b)
{
    const rstore *x = a, *y = b;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    int c = memcmp(x->key, y->key, n);
    return c ? c : (x->key_len > y->key_len) - (x->key_len < y->key_len);
}

static size_t elem_size(lmio_dtype dt) { return dt == LMIO_DTYPE_NONE ? 1 : lmio_dtype_bits(dt) / 8; }

/* The bytes of the storage a tensor names, checked to hold exactly the
 * storage's numel elements (torch's own check). */
static lmio_status resolve(rctx *c, const char *name, const lmio__pickle_tensor *t, const unsigned char **data,
                           uint64_t *nbytes, int64_t *file_off, lmio_error *err)
{
    uint64_t want;
    if (!lmio__mul_u64(t->storage_numel, elem_size(t->storage_dtype), &want))
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, t->at, name,
                          "tensor \"%s\": storage of %llu elements overflows; expected a real size", name,
                          (unsigned long long)t->storage_numel);
    int kl = (int)(t->key_len > 100 ? 100 : t->key_len);
    if (c->z) {
        char rec[160];
        snprintf(rec, sizeof rec, "data/%.*s", kl, t->key);
        const lmio__zip_entry *e = t->key_len <= 100 && !memchr(t->key, 0, t->key_len) ? lmio__zip_find(c->z, rec) : NULL;
        if (!e)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, t->at, name,
                              "tensor \"%s\": storage \"%.*s\" has no record %s in the archive; expected one per "
                              "storage",
                              name, kl, t->key, rec);
        if (e->method)
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, c->path, (int64_t)e->header_off, name,
                              "record %s is compressed (method %u); expected stored records as torch.save writes", rec,
                              e->method);
        *data = c->f->data + e->data_off;
        *nbytes = e->size;
        *file_off = (int64_t)e->data_off;
    } else {
        rstore key = {.key = t->key, .key_len = t->key_len};
        const rstore *r = bsearch(&key, c->legacy, c->n_legacy, sizeof key, cmp_rstore);
        if (!r)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, t->at, name,
                              "tensor \"%s\": storage \"%.*s\" is not in the stream's storage list; expected it there",
                              name, kl, t->key);
        *data = r->data;
        *nbytes = r->nbytes;
        *file_off = r->file_off;
    }
    if (*nbytes != want)
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, *file_off, name,
                          "storage \"%.*s\" holds %llu bytes; expected %llu (%llu elements of %zu bytes)", kl, t->key,
                          (unsigned long long)*nbytes, (unsigned long long)want, (unsigned long long)t->storage_numel,
                          elem_size(t->storage_dtype));
    return LMIO_OK;
}

/* Copies a strided view out in row-major order. */
static void gather(unsigned char *dst, const unsigned char *src, size_t es, const lmio__pickle_tensor *t,
                   uint64_t numel)
{
    uint64_t idx[LMIO_MAX_DIMS] = {0}, off = 0;
    for (uint64_t e = 0; e < numel; e++) {
        memcpy(dst + e * es, src + off * es, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            if (++idx[d] < t->shape[d]) {
                off += t->stride[d];
                break;
            }
            off -= (t->shape[d] - 1) * t->stride[d];
            idx[d] = 0;
        }
    }
}

/* Where the view's last element lies (offset + sum((size-1) * stride)),
 * and whether it is row-major contiguous. */
static bool view_extent(const lmio__pickle_tensor *t, uint64_t *last, bool *contiguous)
{
    uint64_t at = t->offset, expect = 1;
    *contiguous = true;
    for (int d = t->ndim - 1; d >= 0; d--) {
        uint64_t step;
        if (t->shape[d] == 0) return true; /* empty: nothing is read */
        if (!lmio__mul_u64(t->shape[d] - 1, t->stride[d], &step) || !lmio__add_u64(at, step, &at)) return false;
        if (t->shape[d] != 1 && t->stride[d] != expect) *contiguous = false;
        if (!lmio__mul_u64(expect, t->shape[d], &expect)) return false;
    }
    *last = at;
    return true;
}

static lmio_status on_tensor(void *vc, const char *name, const lmio__pickle_tensor *t, lmio_error *err)
{
    rctx *c = vc;
    size_t len = strlen(name);
    if (len == 0 || !strcmp(name, "__metadata__"))
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, t->at, name,
                          "tensor named \"%s\"; expected a non-empty name other than __metadata__", name);
    const unsigned char *data = NULL;
    uint64_t nbytes = 0, numel, last = 0;
    int64_t file_off = -1;
    lmio_status s = resolve(c, name, t, &data, &nbytes, &file_off, err);
    if (s) return s;
    size_t es = elem_size(t->dtype);
    uint64_t elems = nbytes / es; /* of the tensor's dtype, in its storage */
    bool contiguous;
    if (!lmio__numel(t->ndim, t->shape, &numel) || !view_extent(t, &last, &contiguous))
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, t->at, name,
                          "tensor \"%s\": size and stride overflow; expected a view of its storage", name);
    if (numel == 0)
        return lmio__statedict_add_view(c->sd, name, len, t->dtype, t->ndim, t->shape, NULL, 0, -1, NULL, err);
    if (last >= elems)
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, t->at, name,
                          "tensor \"%s\": view reaches element %llu of a storage of %llu %s elements; expected it "
                          "inside",
                          name, (unsigned long long)last, (unsigned long long)elems, lmio_dtype_name(t->dtype));
    const unsigned char *src = data + t->offset * es;
    /* in place when row-major and aligned for its type (legacy streams
     * place storages at any byte) */
    if (contiguous && ((uintptr_t)src % es) == 0)
        return lmio__statedict_add_view(c->sd, name, len, t->dtype, t->ndim, t->shape, src, numel * es,
                                        file_off + (int64_t)(t->offset * es), NULL, err);
    /* a copy may not outgrow its storage: only overlapping strides (an
     * expanded view) could, and they would let a small file claim memory */
    if (numel > elems)
        return lmio__fail(err, LMIO_ERR_LIMIT, c->path, t->at, name,
                          "tensor \"%s\": view of %llu elements over a storage of %llu; expected at most the storage "
                          "(overlapping strides)",
                          name, (unsigned long long)numel, (unsigned long long)elems);
    unsigned char *copy = lmio__malloc((size_t)(numel * es));
    if (!copy) return lmio__fail(err, LMIO_ERR_NOMEM, c->path, -1, name, "out of memory copying tensor \"%s\"", name);
    gather(copy, src, es, t, numel);
    s = lmio_statedict_add(c->sd, name, t->dtype, t->ndim, t->shape, copy, numel * es, LMIO_COPY, err);
    lmio__free(copy);
    return s;
}

static lmio_status on_value(void *vc, const char *name, const char *text, lmio_error *err)
{
    rctx *c = vc;
    return lmio_metadata_set(c->sd, name, text, err);
}

/* Parses data.pkl (at base in the file) and fills a new state dict. */
static lmio_status read_pickle(rctx *c, const unsigned char *pkl, uint64_t n, int64_t base, const char *what,
                               lmio__pickle *already, lmio_statedict **out, lmio_error *err)
{
    lmio__pickle *p = already;
    lmio_status s = p ? LMIO_OK : lmio__pickle_parse(c->path, what, base, pkl, (size_t)n, NULL, &p, err);
    if (s) return s;
    if ((s = lmio_statedict_create(&c->sd, err)) ||
        (s = lmio__statedict_set_source(c->sd, c->path, lmio__format_torch_zip.name, NULL, err))) {
        lmio_statedict_free(c->sd);
        lmio__pickle_free(p);
        return s;
    }
    lmio__pickle_sink sink = {c, on_tensor, on_value};
    s = lmio__pickle_flatten(p, &sink, err);
    lmio__pickle_free(p);
    if (s) {
        lmio_statedict_free(c->sd);
        return s;
    }
    *out = c->sd;
    return LMIO_OK;
}

static lmio_status zip_record_text(const char *path, const lmio__file *f, const lmio__zip *z, const char *name,
                                   char *buf, size_t cap, bool *present, lmio_error *err)
{
    const lmio__zip_entry *e = lmio__zip_find(z, name);
    *present = e != NULL;
    buf[0] = 0;
    if (!e) return LMIO_OK;
    if (e->method || e->size >= cap)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)e->header_off, "",
                          "record %s is %s; expected a short stored text", name,
                          e->method ? "compressed" : "too long");
    memcpy(buf, f->data + e->data_off, (size_t)e->size);
    buf[e->size] = 0;
    for (char *p = buf; *p; p++) /* messages stay one line */
        if ((unsigned char)*p < 0x20) *p = *(p + 1) ? '?' : 0;
    return LMIO_OK;
}

/* What torch's reader demands beside data.pkl: not TorchScript, a version
 * it supports, little-endian data. */
static lmio_status check_archive(const char *path, const lmio__file *f, const lmio__zip *z, lmio_error *err)
{
    if (lmio__zip_find(z, "constants.pkl"))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, 0, "",
                          "TorchScript archive (torch.jit.save); expected a torch.save checkpoint");
    if (lmio__zip_find(z, "archive_format"))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, 0, "",
                          "torch.export archive (.pt2); expected a torch.save checkpoint");
    char text[32];
    bool have;
    lmio_status s = zip_record_text(path, f, z, "byteorder", text, sizeof text, &have, err);
    if (s) return s;
    if (have && strcmp(text, "little"))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)lmio__zip_find(z, "byteorder")->data_off, "",
                          "byteorder \"%.16s\"; expected \"little\" (lmio reads little-endian checkpoints)", text);
    const char *vname = ".data/version";
    if ((s = zip_record_text(path, f, z, vname, text, sizeof text, &have, err))) return s;
    if (!have && (s = zip_record_text(path, f, z, vname = "version", text, sizeof text, &have, err))) return s;
    if (have) {
        char *end;
        unsigned long v = strtoul(text, &end, 10);
        if (end == text || *end || v < 1 || v > 10)
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)lmio__zip_find(z, vname)->data_off, "",
                              "archive version \"%.16s\"; expected 1 to 10 (what torch reads)", text);
    }
    return LMIO_OK;
}

static lmio_status open_zip(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err)
{
    lmio__zip z;
    lmio_status s = lmio__zip_read(path, f->data, f->size, &z, err);
    if (s) return s;
    const lmio__zip_entry *pkl = lmio__zip_find(&z, "data.pkl");
    if (!(s = check_archive(path, f, &z, err)) && !pkl)
        s = lmio__fail(err, LMIO_ERR_FORMAT, path, 0, "", "zip archive without %.*s/data.pkl; expected torch.save's",
                       (int)(z.root_len > 200 ? 200 : z.root_len), z.root);
    if (!s && pkl->method)
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)pkl->header_off, "",
                       "data.pkl is compressed; expected a stored record as torch.save writes");
    if (!s) {
        rctx c = {.path = path, .f = f, .z = &z};
        s = read_pickle(&c, f->data + pkl->data_off, pkl->size, (int64_t)pkl->data_off, "data.pkl", NULL, out, err);
    }
    lmio__zip_free(&z);
    return s;
}

/* ---- the legacy stream: magic, protocol, sys_info, data, keys, storages ---- */

static lmio_status legacy_storages(rctx *c, const lmio__pickle *main, const char **keys, const size_t *lens,
                                   size_t n, uint64_t pos, lmio_error *err)
{
    size_t nt;
    const lmio__pickle_tensor *ts = lmio__pickle_tensors(main, &nt);
    c->legacy = n ? lmio__calloc(n, sizeof *c->legacy) : NULL;
    if (n && !c->legacy) return lmio__fail(err, LMIO_ERR_NOMEM, c->path, -1, "", "out of memory");
    for (size_t i = 0; i < n; i++) {
        /* each storage's element size comes from a tensor that uses it */
        const lmio__pickle_tensor *t = NULL;
        for (size_t k = 0; k < nt && !t; k++)
            if (ts[k].key_len == lens[i] && !memcmp(ts[k].key, keys[i], lens[i])) t = &ts[k];
        int kl = (int)(lens[i] > 100 ? 100 : lens[i]);
        if (!t)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, (int64_t)pos, "",
                              "storage \"%.*s\" is used by no tensor; expected each listed storage to be used", kl,
                              keys[i]);
        uint64_t numel, bytes;
        if (c->f->size - pos < 8)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, (int64_t)pos, "",
                              "file ends before storage \"%.*s\" (truncated?); expected its 8-byte size", kl, keys[i]);
        numel = lmio__le64(c->f->data + pos);
        if (numel != t->storage_numel)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, (int64_t)pos, "",
                              "storage \"%.*s\" claims %llu elements; expected %llu (its tensors' storage)", kl,
                              keys[i], (unsigned long long)numel, (unsigned long long)t->storage_numel);
        if (!lmio__mul_u64(numel, elem_size(t->storage_dtype), &bytes) || bytes > c->f->size - pos - 8)
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, (int64_t)c->f->size, "",
                              "file ends inside storage \"%.*s\" (truncated?); expected %llu elements from offset "
                              "%llu, file size is %llu",
                              kl, keys[i], (unsigned long long)numel, (unsigned long long)pos + 8,
                              (unsigned long long)c->f->size);
        c->legacy[i] = (rstore){keys[i], lens[i], c->f->data + pos + 8, bytes, (int64_t)(pos + 8)};
        pos += 8 + bytes;
    }
    if (pos != c->f->size)
        return lmio__fail(err, LMIO_ERR_FORMAT, c->path, (int64_t)pos, "",
                          "%llu bytes follow the last storage; expected the file to end at offset %llu",
                          (unsigned long long)(c->f->size - pos), (unsigned long long)pos);
    c->n_legacy = n;
    qsort(c->legacy, n, sizeof *c->legacy, cmp_rstore);
    for (size_t i = 1; i < n; i++)
        if (!cmp_rstore(&c->legacy[i - 1], &c->legacy[i]))
            return lmio__fail(err, LMIO_ERR_FORMAT, c->path, c->legacy[i].file_off - 8, "",
                              "storage \"%.*s\" is listed twice; expected unique keys",
                              (int)(lens[i] > 100 ? 100 : lens[i]), c->legacy[i].key);
    return LMIO_OK;
}

static lmio_status open_legacy(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err)
{
    const unsigned char *d = f->data;
    uint64_t pos = sizeof k_legacy_magic;
    if (f->size < pos + sizeof k_legacy_proto || memcmp(d + pos, k_legacy_proto, sizeof k_legacy_proto))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)pos, "",
                          "legacy torch.save stream without protocol version 1001; expected what torch 1.x wrote");
    pos += sizeof k_legacy_proto;
    rctx c = {.path = path, .f = f};
    lmio__pickle *info = NULL, *main = NULL, *keys = NULL;
    const char **kv = NULL;
    size_t *kl = NULL, nk = 0, used;
    lmio_status s = lmio__pickle_parse(path, "sys_info pickle", (int64_t)pos, d + pos, (size_t)(f->size - pos), &used,
                                       &info, err);
    if (!s && lmio__pickle_dict_bool(info, "little_endian") != 1)
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)pos, "",
                       "sys_info says little_endian is not True; expected a little-endian checkpoint");
    if (!s) {
        pos += used;
        s = lmio__pickle_parse(path, "data pickle", (int64_t)pos, d + pos, (size_t)(f->size - pos), &used, &main, err);
    }
    uint64_t data_pos = pos;
    if (!s) {
        pos += used;
        s = lmio__pickle_parse(path, "storage key pickle", (int64_t)pos, d + pos, (size_t)(f->size - pos), &used,
                               &keys, err);
    }
    if (!s) s = lmio__pickle_strings(keys, &kv, &kl, &nk, err);
    if (!s) s = legacy_storages(&c, main, kv, kl, nk, pos + used, err);
    if (!s) {
        s = read_pickle(&c, NULL, 0, (int64_t)data_pos, "data pickle", main, out, err);
        main = NULL; /* read_pickle took it */
    }
    lmio__free(kv);
    lmio__free(kl);
    lmio__free(c.legacy);
    lmio__pickle_free(info);
    lmio__pickle_free(main);
    lmio__pickle_free(keys);
    return s;
}

static lmio_status tz_open(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err)
{
    bool legacy = f->size >= sizeof k_legacy_magic && !memcmp(f->data, k_legacy_magic, sizeof k_legacy_magic);
    lmio_status s = legacy ? open_legacy(path, f, out, err) : open_zip(path, f, out, err);
    if (s) return s;
    /* path is already copied: this only moves the file */
    lmio__statedict_set_source(*out, NULL, lmio__format_torch_zip.name, f, NULL);
    return LMIO_OK;
}

/* ---- writing ---- */

typedef struct wten {
    lmio_tensor t;
    lmio_dtype out;
    size_t store;      /* index into the stores */
    uint64_t elem_off; /* in its store */
} wten;

typedef struct wstore {
    const unsigned char *base;
    uint64_t numel;
    lmio_dtype src, out;
    size_t key; /* data/<key>, numbered in first use */
} wstore;

typedef struct span {
    uintptr_t p;
    uint64_t n;
    size_t i;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? -1 : 1;
    return x->n > y->n ? -1 : x->n < y->n;
}

/* Tensors whose bytes overlap in memory (views of one mapped storage, a
 * tied embedding added twice) become one storage, written once, as torch
 * writes tensors that share a storage; torch.load then shares it too. */
static size_t group_storages(wten *ts, size_t n, span *order, wstore *st)
{
    size_t m = 0, ns = 0;
    for (size_t i = 0; i < n; i++)
        if (ts[i].t.nbytes) order[m++] = (span){(uintptr_t)ts[i].t.data, ts[i].t.nbytes, i};
    qsort(order, m, sizeof *order, cmp_span);
    for (size_t g = 0; g < m;) {
        const wten *first = &ts[order[g].i];
        uintptr_t base = order[g].p, end = base + order[g].n;
        size_t j = g + 1, es = lmio_dtype_bits(first->t.dtype) / 8;
        bool same = true;
        for (; j < m && order[j].p < end; j++) {
            if (order[j].p + order[j].n > end) end = order[j].p + order[j].n;
            same = same && ts[order[j].i].t.dtype == first->t.dtype && (order[j].p - base) % es == 0;
        }
        for (size_t k = g; k < j; k++) {
            wten *x = &ts[order[k].i];
            size_t sidx = same ? ns : ns + (k - g);
            x->store = sidx;
            x->elem_off = same ? (order[k].p - base) / es : 0;
            if (!same || k == g)
                st[sidx] = (wstore){same ? first->t.data : x->t.data, same ? (end - base) / es : x->t.numel,
                                    x->t.dtype, x->out, SIZE_MAX};
        }
        ns += same ? 1 : j - g;
        g = j;
    }
    for (size_t i = 0; i < n; i++)
        if (!ts[i].t.nbytes) {
            ts[i].store = ns;
            ts[i].elem_off = 0;
            st[ns++] = (wstore){NULL, 0, ts[i].t.dtype, ts[i].out, SIZE_MAX};
        }
    return ns;
}

/* A tensor: _rebuild_tensor_v2/v3(...) of its persistent storage. */
static void pickle_tensor(lmio__pickler *w, const wten *x, const wstore *s)
{
    const char *cls, *dtn;
    lmio__torch_dtype(x->out, &cls, &dtn);
    char key[24];
    int kl = snprintf(key, sizeof key, "%zu", s->key);
    lmio__pkw_global(w, "torch._utils", cls ? "_rebuild_tensor_v2" : "_rebuild_tensor_v3");
    lmio__pkw_op(w, '(');
    lmio__pkw_op(w, '(');
    lmio__pkw_str_memo(w, "storage");
    if (cls) lmio__pkw_global(w, "torch", cls);
    else lmio__pkw_global(w, "torch.storage", "UntypedStorage");
    lmio__pkw_str(w, key, (size_t)kl);
    lmio__pkw_str_memo(w, "cpu");
    /* an UntypedStorage counts bytes, a typed one elements */
    lmio__pkw_int(w, (int64_t)(cls ? s->numel : s->numel * (lmio_dtype_bits(x->out) / 8)));
    lmio__pkw_op(w, 't');
    lmio__pkw_op(w, 'Q');
    lmio__pkw_int(w, (int64_t)x->elem_off);
    uint64_t stride[LMIO_MAX_DIMS], acc = 1;
    for (int d = x->t.ndim - 1; d >= 0; d--) { /* torch's contiguous strides: sizes of 0 count as 1 */
        stride[d] = acc;
        acc *= x->t.shape[d] ? x->t.shape[d] : 1;
    }
    lmio__pkw_int_tuple(w, x->t.shape, x->t.ndim);
    lmio__pkw_int_tuple(w, stride, x->t.ndim);
    lmio__pkw_op(w, 0x89); /* requires_grad False */
    lmio__pkw_global(w, "collections", "OrderedDict");
    lmio__pkw_op(w, ')');
    lmio__pkw_op(w, 'R');
    if (!cls) lmio__pkw_global(w, "torch", dtn);
    lmio__pkw_op(w, 't');
    lmio__pkw_op(w, 'R');
}

/* data.pkl: an OrderedDict of the tensors in state-dict order, items in
 * batches of 1000 as CPython's pickler writes them. */
static void build_pickle(lmio__pickler *w, const wten *ts, size_t n, const wstore *st)
{
    lmio__pkw_op(w, 0x80);
    lmio__pkw_op(w, 2);
    lmio__pkw_global(w, "collections", "OrderedDict");
    lmio__pkw_op(w, ')');
    lmio__pkw_op(w, 'R');
    for (size_t b = 0; b < n; b += 1000) {
        size_t e = n - b < 1000 ? n : b + 1000;
        if (e - b > 1) lmio__pkw_op(w, '(');
        for (size_t i = b; i < e; i++) {
            lmio__pkw_str(w, ts[i].t.name, strlen(ts[i].t.name));
            pickle_tensor(w, &ts[i], &st[ts[i].store]);
        }
        lmio__pkw_op(w, e - b > 1 ? 'u' : 's');
    }
    lmio__pkw_op(w, '.');
}

#define MAX_TREE_DEPTH 64

/* Checks a tree before anything is written (tensor indices in range,
 * known kinds, bounded depth) and numbers the storages in the order the
 * tree reaches them, as torch's persistent_id does. */
static lmio_status tree_keys(const lmio__pyv *v, wten *ts, size_t n, wstore *st, size_t *next, int depth,
                             const char *path, lmio_error *err)
{
    if (depth > MAX_TREE_DEPTH)
        return lmio__fail(err, LMIO_ERR_LIMIT, path, -1, "", "value nested deeper than %d; expected a flatter tree",
                          MAX_TREE_DEPTH);
    if ((unsigned)v->kind > LMIO__PYV_DICT)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "value of kind %d; expected a lmio__pyv_kind",
                          (int)v->kind);
    if (v->kind == LMIO__PYV_TENSOR) {
        if (v->i < 0 || (uint64_t)v->i >= n)
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "tensor %lld of a state dict of %zu; "
                              "expected an index below %zu", (long long)v->i, n, n);
        wstore *s = &st[ts[v->i].store];
        if (s->key == SIZE_MAX) s->key = (*next)++;
        return LMIO_OK;
    }
    if (v->kind == LMIO__PYV_STR && !v->s)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "str value without text; expected a string");
    if (v->kind < LMIO__PYV_LIST) return LMIO_OK;
    for (size_t i = 0; i < v->n; i++) {
        lmio_status s = tree_keys(&v->items[i], ts, n, st, next, depth + 1, path, err);
        if (s) return s;
    }
    return LMIO_OK;
}

static void pickle_value(lmio__pickler *w, const lmio__pyv *v, const wten *ts, const wstore *st);

/* CPython's batching: items in groups of 1000, a lone item with the
 * single-item opcode. Dict keys are memoised, as they repeat. */
static void pickle_items(lmio__pickler *w, const lmio__pyv *v, const wten *ts, const wstore *st)
{
    bool dict = v->kind == LMIO__PYV_DICT;
    for (size_t b = 0; b < v->n; b += 1000) {
        size_t e = v->n - b < 1000 ? v->n : b + 1000;
        if (e - b > 1) lmio__pkw_op(w, '(');
        for (size_t i = b; i < e; i++) {
            const lmio__pyv *x = &v->items[i];
            if (dict && x->key) lmio__pkw_str_memo(w, x->key);
            else if (dict) lmio__pkw_int(w, x->ikey);
            pickle_value(w, x, ts, st);
        }
        lmio__pkw_op(w, e - b > 1 ? (dict ? 'u' : 'e') : (dict ? 's' : 'a'));
    }
}

static void pickle_value(lmio__pickler *w, const lmio__pyv *v, const wten *ts, const wstore *st)
{
    switch (v->kind) {
    case LMIO__PYV_NONE: lmio__pkw_op(w, 'N'); break;
    case LMIO__PYV_BOOL: lmio__pkw_op(w, v->i ? 0x88 : 0x89); break;
    case LMIO__PYV_INT: lmio__pkw_int(w, v->i); break;
    case LMIO__PYV_FLOAT: lmio__pkw_float(w, v->f); break;
    case LMIO__PYV_STR: lmio__pkw_str(w, v->s, strlen(v->s)); break;
    case LMIO__PYV_TENSOR: pickle_tensor(w, &ts[v->i], &st[ts[v->i].store]); break;
    case LMIO__PYV_TUPLE:
        if (v->n > 3 || v->n == 0) lmio__pkw_op(w, v->n ? '(' : ')');
        for (size_t i = 0; i < v->n; i++) pickle_value(w, &v->items[i], ts, st);
        if (v->n) lmio__pkw_op(w, v->n > 3 ? 't' : (unsigned char)(0x84 + v->n));
        break;
    case LMIO__PYV_LIST:
    case LMIO__PYV_DICT:
        lmio__pkw_op(w, v->kind == LMIO__PYV_DICT ? '}' : ']');
        pickle_items(w, v, ts, st);
        break;
    }
}

#define CONVERT_CHUNK_ELEMS (1u << 20)
/* small enough that a chunk is still in cache when write(2) copies it
 * after the CRC pass read it */
#define WRITE_CHUNK (1u << 20)

typedef struct wjob {
    const lmio_statedict *sd; /* names a tensor whose mapped file shrank */
    const lmio_save_opts *o;
    const char *path;
    uint64_t total;
    unsigned char *cbuf;
} wjob;

static lmio_status report(const wjob *j, uint64_t done, lmio_error *err)
{
    if (j->o->progress && j->o->progress(j->o->progress_ctx, done, j->total))
        return lmio__fail(err, LMIO_ERR_CANCELLED, j->path, -1, "", "save cancelled; nothing was written");
    return LMIO_OK;
}

static lmio_status write_store(lmio__zipw *z, wjob *j, const wstore *s, lmio_error *err)
{
    char name[32];
    snprintf(name, sizeof name, "data/%zu", s->key);
    size_t in_sz = lmio_dtype_bits(s->src) / 8, out_sz = lmio_dtype_bits(s->out) / 8;
    lmio_status st = lmio__zipw_begin(z, name, s->numel * out_sz, err);
    if (st) return st;
    if (s->src == s->out) {
        for (uint64_t off = 0; off < s->numel * in_sz && !st; off += WRITE_CHUNK) {
            uint64_t left = s->numel * in_sz - off;
            st = lmio__zipw_data(z, s->base + off, left < WRITE_CHUNK ? (size_t)left : WRITE_CHUNK, err);
            if (!st) st = report(j, z->out->written, err);
        }
    } else {
        if (!j->cbuf && !(j->cbuf = lmio__malloc((size_t)CONVERT_CHUNK_ELEMS * 8)))
            return lmio__fail(err, LMIO_ERR_NOMEM, j->path, -1, "", "out of memory");
        for (uint64_t e = 0; e < s->numel && !st; e += CONVERT_CHUNK_ELEMS) {
            size_t m = s->numel - e < CONVERT_CHUNK_ELEMS ? (size_t)(s->numel - e) : CONVERT_CHUNK_ELEMS;
            if (!lmio__convert_guarded(j->cbuf, s->out, s->base + e * in_sz, s->src, m)) {
                z->lost = true;
                z->lost_addr = lmio__guard_fault_addr();
                break;
            }
            st = lmio__zipw_data(z, j->cbuf, m * out_sz, err);
            if (!st) st = report(j, z->out->written, err);
        }
    }
    if (z->lost) return lmio__statedict_lost(j->sd, z->lost_addr, j->path, err);
    return st ? st : lmio__zipw_end(z, err);
}

/* torch.save's archive folder: the file name without directory and
 * extension (inline_container.cc basename). */
static void archive_root(const char *path, char *root, size_t cap)
{
    const char *b = lmio__basename(path), *dot = strrchr(b, '.');
    size_t n = dot ? (size_t)(dot - b) : strlen(b);
    if (n == 0 || n >= cap) snprintf(root, cap, "archive");
    else snprintf(root, cap, "%.*s", (int)n, b);
}

static lmio_status write_archive(lmio__outfile *out, wjob *j, const lmio__pickler *pk, const wstore *st, size_t ns,
                                 lmio_error *err)
{
    char root[256];
    archive_root(j->path, root, sizeof root);
    lmio__zipw z = {.out = out, .root = root};
    /* the records and order torch 2.13's torch.save writes (§1.3); the
     * informational .data/serialization_id is left out */
    lmio_status s = lmio__zipw_record(&z, "data.pkl", pk->b.data, pk->b.len, err);
    if (!s) s = lmio__zipw_record(&z, ".format_version", "1", 1, err);
    if (!s) s = lmio__zipw_record(&z, ".storage_alignment", "64", 2, err);
    if (!s) s = lmio__zipw_record(&z, "byteorder", "little", 6, err);
    for (size_t k = 0; k < ns && !s; k++) s = write_store(&z, j, &st[k], err);
    if (!s) s = lmio__zipw_record(&z, "version", "3\n", 2, err);
    if (!s) s = lmio__zipw_finish(&z, err);
    lmio__zipw_free(&z);
    return s;
}

/* Every tensor's dtype after conversion must be one torch has. */
static lmio_status collect(const lmio_statedict *sd, const lmio_save_opts *o, const char *path, wten *ts, size_t n,
                           lmio_error *err)
{
    for (size_t i = 0; i < n; i++) {
        lmio_statedict_get(sd, i, &ts[i].t, NULL);
        bool conv = o->dtype != LMIO_DTYPE_NONE && lmio_dtype_is_convertible_float(ts[i].t.dtype);
        ts[i].out = conv ? o->dtype : ts[i].t.dtype;
        const char *cls, *dtn;
        if (!lmio__torch_dtype(ts[i].out, &cls, &dtn))
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, ts[i].t.name,
                              "tensor \"%s\" is %s, which torch has no dtype for; expected a torch dtype (convert it, "
                              "or save as safetensors)",
                              ts[i].t.name, lmio_dtype_name(ts[i].out));
    }
    return LMIO_OK;
}

/* A flat state dict (tree NULL: an OrderedDict of sd's tensors in order)
 * or a tree holding sd's tensors. */
static lmio_status save_archive(const lmio_statedict *sd, const lmio__pyv *tree, const char *path,
                                const lmio_save_opts *o, lmio_error *err)
{
    size_t n = lmio_statedict_count(sd);
    wten *ts = lmio__calloc(n ? n : 1, sizeof *ts);
    wstore *st = lmio__calloc(n ? n : 1, sizeof *st);
    span *order = lmio__calloc(n ? n : 1, sizeof *order);
    wstore *sorted = NULL;
    lmio__pickler pk = {0};
    wjob j = {.sd = sd, .o = o, .path = path};
    lmio_status s = !ts || !st || !order ? lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory")
                                         : collect(sd, o, path, ts, n, err);
    if (s) goto done;
    size_t ns = group_storages(ts, n, order, st), next = 0;
    if (tree) s = tree_keys(tree, ts, n, st, &next, 0, path, err);
    /* keys in order of first use, as torch numbers them (a tree's unused
     * tensors last) */
    for (size_t i = 0; i < n; i++)
        if (st[ts[i].store].key == SIZE_MAX) st[ts[i].store].key = next++;
    /* stores in key order: data/0, data/1, ... */
    sorted = lmio__calloc(ns ? ns : 1, sizeof *sorted);
    if (!s && !sorted) s = lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    if (s) goto done;
    for (size_t k = 0; k < ns; k++) sorted[st[k].key] = st[k];
    if (tree) {
        lmio__pkw_op(&pk, 0x80);
        lmio__pkw_op(&pk, 2);
        pickle_value(&pk, tree, ts, st);
        lmio__pkw_op(&pk, '.');
    } else {
        build_pickle(&pk, ts, n, st);
    }
    if (pk.b.oom) s = lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory building data.pkl");
    j.total = pk.b.len;
    for (size_t k = 0; k < ns; k++) j.total += sorted[k].numel * (lmio_dtype_bits(sorted[k].out) / 8);
    if (!s) s = report(&j, 0, err);
    lmio__outfile out;
    if (!s && !(s = lmio__outfile_begin(&out, path, err))) {
        s = write_archive(&out, &j, &pk, sorted, ns, err);
        if (s) lmio__outfile_abort(&out);
        else s = lmio__outfile_commit(&out, o->durable, err);
    }
done:
    lmio__free(sorted);
    lmio__buf_free(&pk.b);
    lmio__free(j.cbuf);
    lmio__free(order);
    lmio__free(st);
    lmio__free(ts);
    return s;
}

static lmio_status tz_save(const lmio_statedict *sd, const char *path, const lmio_save_opts *o, lmio_error *err)
{
    return save_archive(sd, NULL, path, o, err);
}

lmio_status lmio__torch_save_tree(const char *path, const lmio__pyv *root, const lmio_statedict *sd,
                                  const lmio_save_opts *o, lmio_error *err)
{
    if (!path || !root || !sd || !o)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path ? path : "", -1, "", "path, tree, state dict or options "
                          "missing");
    return save_archive(sd, root, path, o, err);
}

/* A zip local header ("PK\3\4" and a compression method below 100: a
 * safetensors file whose header length spells "PK\3\4" has '{' there), or
 * the legacy stream's magic-number pickle. */
static lmio__sniff tz_sniff(const unsigned char *head, size_t n, uint64_t file_size)
{
    (void)file_size;
    if (n >= sizeof k_legacy_magic - 1 && !memcmp(head, k_legacy_magic, sizeof k_legacy_magic - 1))
        return LMIO__SNIFF_YES;
    if (n < 10 || memcmp(head, "PK\x03\x04", 4)) return LMIO__SNIFF_NO;
    return head[9] == 0 && head[8] < 100 ? LMIO__SNIFF_YES : LMIO__SNIFF_NO;
}

static const char *const k_aliases[] = {"bin", "pt", "torch", "torch-zip", NULL};

const lmio__format lmio__format_torch_zip = {
    .name = "pytorch",
    .aliases = k_aliases,
    .description = "PyTorch checkpoint (torch.save)",
    .sniff = tz_sniff,
    .open = tz_open,
    .save = tz_save,
    .dir_file = "pytorch_model.bin",
    .dir_index = "pytorch_model.bin.index.json",
    .dir_shard_stem = "pytorch_model",
    .dir_shard_ext = ".bin",
};
