/* Zip archives as torch.save writes and reads them (shared/reference/
 * torch-tokenizer.md §1.1, §1.6): the reader checks every structure
 * against the file before using it; the writer streams. */
#include "formats.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_END 0x06054b50u
#define SIG_END64 0x06064b50u
#define SIG_LOC64 0x07064b50u
#define SIG_DESC 0x08074b50u
#define U32_MAX 0xFFFFFFFFu
#define LOCAL_LEN 30
#define CENTRAL_LEN 46
#define END_LEN 22
#define END64_LEN 56
#define LOC64_LEN 20
#define ALIGN 64 /* torch's storage alignment: payloads can be mapped and used in place */

static uint16_t le16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- reading ---- */

typedef struct end_info {
    uint64_t count, cd_size, cd_off;
    uint64_t limit; /* where the central directory must end */
} end_info;

/* The end record: the last "PK\5\6" whose comment runs exactly to the end
 * of the file, then the zip64 records if its locator precedes it. */
static lmio_status find_end(const char *path, const unsigned char *d, uint64_t size, end_info *e,
                            lmio_error *err)
{
    if (size < END_LEN)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, 0, "",
                          "file is %llu bytes; expected at least %d (a zip end record)", (unsigned long long)size,
                          END_LEN);
    uint64_t lowest = size - END_LEN > 0xFFFF ? size - END_LEN - 0xFFFF : 0, pos = size - END_LEN;
    for (;; pos--) {
        if (le32(d + pos) == SIG_END && le16(d + pos + 20) == size - pos - END_LEN) break;
        if (pos == lowest)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(size - END_LEN), "",
                              "no zip end record; expected \"PK\\5\\6\" near the end of the file (truncated?)");
    }
    const unsigned char *r = d + pos;
    if (le16(r + 4) || le16(r + 6))
        return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)pos, "",
                          "multi-disk zip archive; expected a single file");
    e->count = le16(r + 10);
    e->cd_size = le32(r + 12);
    e->cd_off = le32(r + 16);
    e->limit = pos;
    if (pos < LOC64_LEN || le32(d + pos - LOC64_LEN) != SIG_LOC64) {
        if (e->count == 0xFFFF || e->cd_size == U32_MAX || e->cd_off == U32_MAX)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)pos, "",
                              "end record says zip64 but no zip64 locator precedes it; expected \"PK\\6\\7\"");
        return LMIO_OK;
    }
    uint64_t loc = pos - LOC64_LEN, off64 = lmio__le64(d + loc + 8);
    if (off64 > loc || loc - off64 < END64_LEN || le32(d + off64) != SIG_END64)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)loc, "",
                          "zip64 locator points to offset %llu; expected a zip64 end record (\"PK\\6\\6\") "
                          "before offset %llu",
                          (unsigned long long)off64, (unsigned long long)loc);
    const unsigned char *z = d + off64;
    e->count = lmio__le64(z + 32);
    e->cd_size = lmio__le64(z + 40);
    e->cd_off = lmio__le64(z + 48);
    e->limit = off64;
    return LMIO_OK;
}

/* Sizes or offset a central entry stores as 0xFFFFFFFF live in its zip64
 * extra field (id 1), in the order uncompressed, compressed, offset. */
static bool read_zip64_extra(const unsigned char *x, size_t xlen, lmio__zip_entry *e, bool usz, bool csz,
                             bool off)
{
    while (xlen >= 4) {
        uint16_t id = le16(x), len = le16(x + 2);
        if (len > xlen - 4) return false;
        if (id == 1) {
            const unsigned char *q = x + 4;
            size_t need = 8u * ((size_t)usz + csz + off);
            if (len < need) return false;
            if (usz) e->size = lmio__le64(q), q += 8;
            if (csz) e->comp_size = lmio__le64(q), q += 8;
            if (off) e->header_off = lmio__le64(q);
            return true;
        }
        x += 4 + len;
        xlen -= 4 + (size_t)len;
    }
    return !(usz || csz || off);
}

static lmio_status read_central(const char *path, const unsigned char *d, const end_info *end,
                                lmio__zip_entry *es, lmio_error *err)
{
    uint64_t pos = end->cd_off, stop = end->cd_off + end->cd_size;
    for (uint64_t i = 0; i < end->count; i++) {
        const unsigned char *c = d + pos;
        if (stop - pos < CENTRAL_LEN || le32(c) != SIG_CENTRAL)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)pos, "",
                              "central directory entry %llu of %llu is missing; expected \"PK\\1\\2\"",
                              (unsigned long long)i + 1, (unsigned long long)end->count);
        size_t nl = le16(c + 28), xl = le16(c + 30), cl = le16(c + 32);
        if (stop - pos - CENTRAL_LEN < (uint64_t)nl + xl + cl)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)pos, "",
                              "central directory entry %llu runs past the directory's end; expected it inside",
                              (unsigned long long)i + 1);
        lmio__zip_entry *e = &es[i];
        e->method = le16(c + 10);
        e->comp_size = le32(c + 20);
        e->size = le32(c + 24);
        e->header_off = le32(c + 42);
        e->name = (const char *)c + CENTRAL_LEN;
        e->name_len = nl;
        if (le16(c + 8) & 1)
            return lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, (int64_t)pos, "",
                              "zip member \"%.*s\" is encrypted; expected a plain archive", (int)(nl > 200 ? 200 : nl),
                              e->name);
        if (!read_zip64_extra(c + CENTRAL_LEN + nl, xl, e, e->size == U32_MAX, e->comp_size == U32_MAX,
                              e->header_off == U32_MAX))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)pos, "",
                              "zip member \"%.*s\": bad zip64 extra field; expected the 64-bit sizes it announces",
                              (int)(nl > 200 ? 200 : nl), e->name);
        pos += CENTRAL_LEN + nl + xl + cl;
    }
    return LMIO_OK;
}

/* The local header must exist, carry the same name, and the data after it
 * must end before the central directory. */
static lmio_status check_local(const char *path, const unsigned char *d, uint64_t cd_off, lmio__zip_entry *e,
                               lmio_error *err)
{
    int nl = (int)(e->name_len > 200 ? 200 : e->name_len);
    if (e->header_off > cd_off || cd_off - e->header_off < LOCAL_LEN || le32(d + e->header_off) != SIG_LOCAL)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)(e->header_off < cd_off ? e->header_off : cd_off), "",
                          "zip member \"%.*s\": local header offset %llu; expected \"PK\\3\\4\" before the central "
                          "directory at %llu",
                          nl, e->name, (unsigned long long)e->header_off, (unsigned long long)cd_off);
    const unsigned char *h = d + e->header_off;
    uint64_t data_off = e->header_off + LOCAL_LEN + le16(h + 26) + le16(h + 28);
    if (le16(h + 26) != e->name_len || data_off > cd_off || memcmp(h + LOCAL_LEN, e->name, e->name_len))
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)e->header_off, "",
                          "zip member \"%.*s\": local header %s; expected the central directory's name and "
                          "data before offset %llu",
                          nl, e->name, data_off > cd_off ? "runs into the central directory" : "names another file",
                          (unsigned long long)cd_off);
    e->data_off = data_off;
    if (e->comp_size > cd_off - data_off)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)data_off, "",
                          "zip member \"%.*s\" claims %llu bytes at offset %llu; expected it to end by the central "
                          "directory at %llu (truncated?)",
                          nl, e->name, (unsigned long long)e->comp_size, (unsigned long long)data_off,
                          (unsigned long long)cd_off);
    if (e->method == 0 && e->size != e->comp_size)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)e->header_off, "",
                          "stored zip member \"%.*s\" has size %llu but %llu bytes stored; expected equal", nl, e->name,
                          (unsigned long long)e->size, (unsigned long long)e->comp_size);
    return LMIO_OK;
}

static int cmp_header(const void *a, const void *b)
{
    const lmio__zip_entry *x = a, *y = b;
    return x->header_off < y->header_off ? -1 : x->header_off > y->header_off;
}

static int cmp_name(const void *a, const void *b)
{
    const lmio__zip_entry *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

/* No two members share bytes (a zip bomb's trick, and a way to make one
 * tensor's bytes another's), no two share a name, all share one folder. */
static lmio_status check_layout(const char *path, lmio__zip *z, lmio_error *err)
{
    lmio__zip_entry *es = z->entries;
    qsort(es, z->count, sizeof *es, cmp_header);
    for (size_t i = 1; i < z->count; i++)
        if (es[i].header_off < es[i - 1].data_off + es[i - 1].comp_size)
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)es[i].header_off, "",
                              "zip members \"%.*s\" and \"%.*s\" overlap; expected disjoint members",
                              (int)(es[i - 1].name_len > 200 ? 200 : es[i - 1].name_len), es[i - 1].name,
                              (int)(es[i].name_len > 200 ? 200 : es[i].name_len), es[i].name);
    qsort(es, z->count, sizeof *es, cmp_name);
    for (size_t i = 1; i < z->count; i++)
        if (!cmp_name(&es[i], &es[i - 1]))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)es[i].header_off, "",
                              "zip member \"%.*s\" appears twice; expected unique names",
                              (int)(es[i].name_len > 200 ? 200 : es[i].name_len), es[i].name);
    const char *slash = memchr(es[0].name, '/', es[0].name_len);
    if (!slash)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)es[0].header_off, "",
                          "zip member \"%.*s\" is not in a folder; expected <archive>/data.pkl as torch.save writes",
                          (int)(es[0].name_len > 200 ? 200 : es[0].name_len), es[0].name);
    z->root = es[0].name;
    z->root_len = (size_t)(slash - es[0].name);
    for (size_t i = 1; i < z->count; i++)
        if (es[i].name_len <= z->root_len || es[i].name[z->root_len] != '/' ||
            memcmp(es[i].name, z->root, z->root_len))
            return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)es[i].header_off, "",
                              "zip member \"%.*s\" is outside the archive folder \"%.*s\"; expected one folder",
                              (int)(es[i].name_len > 200 ? 200 : es[i].name_len), es[i].name,
                              (int)(z->root_len > 200 ? 200 : z->root_len), z->root);
    return LMIO_OK;
}

lmio_status lmio__zip_read(const char *path, const unsigned char *d, uint64_t size, lmio__zip *z,
                           lmio_error *err)
{
    memset(z, 0, sizeof *z);
    end_info end = {0};
    lmio_status s = find_end(path, d, size, &end, err);
    if (s) return s;
    if (end.cd_off > end.limit || end.cd_size > end.limit - end.cd_off)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)end.limit, "",
                          "central directory at %llu of %llu bytes runs past the end records at %llu; expected it "
                          "before them (truncated?)",
                          (unsigned long long)end.cd_off, (unsigned long long)end.cd_size,
                          (unsigned long long)end.limit);
    /* the count is checked against the directory's bytes before it sizes
     * an allocation */
    if (end.count == 0 || end.count > end.cd_size / CENTRAL_LEN)
        return lmio__fail(err, LMIO_ERR_FORMAT, path, (int64_t)end.limit, "",
                          "end record claims %llu members in a %llu-byte central directory; expected 1 to %llu",
                          (unsigned long long)end.count, (unsigned long long)end.cd_size,
                          (unsigned long long)(end.cd_size / CENTRAL_LEN));
    z->entries = lmio__calloc((size_t)end.count, sizeof *z->entries);
    if (!z->entries) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
    z->count = (size_t)end.count;
    if (!(s = read_central(path, d, &end, z->entries, err))) {
        for (size_t i = 0; i < z->count && !s; i++) s = check_local(path, d, end.cd_off, &z->entries[i], err);
        if (!s) s = check_layout(path, z, err);
    }
    if (s) lmio__zip_free(z);
    return s;
}

const lmio__zip_entry *lmio__zip_find(const lmio__zip *z, const char *name)
{
    char full[512];
    int n = snprintf(full, sizeof full, "%.*s/%s", (int)z->root_len, z->root, name);
    if (n < 0 || (size_t)n >= sizeof full) return NULL;
    lmio__zip_entry key = {.name = full, .name_len = (size_t)n};
    return bsearch(&key, z->entries, z->count, sizeof key, cmp_name);
}

void lmio__zip_free(lmio__zip *z)
{
    lmio__free(z->entries);
    memset(z, 0, sizeof *z);
}

/* ---- writing ---- */

static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

lmio_status lmio__zipw_begin(lmio__zipw *w, const char *name, uint64_t size, lmio_error *err)
{
    if (!lmio__grow((void **)&w->entries, sizeof *w->entries, w->count + 1, &w->cap))
        return lmio__fail(err, LMIO_ERR_NOMEM, w->out->final_path, -1, "", "out of memory");
    size_t rl = strlen(w->root), nl = strlen(name);
    if (rl + 1 + nl > 0xFFFF)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, w->out->final_path, -1, "",
                          "zip member name of %zu bytes; expected at most 65535", rl + 1 + nl);
    char *full = lmio__malloc(rl + nl + 2);
    if (!full) return lmio__fail(err, LMIO_ERR_NOMEM, w->out->final_path, -1, "", "out of memory");
    snprintf(full, rl + nl + 2, "%s/%s", w->root, name);
    uint64_t cur = w->out->written;
    w->entries[w->count++] = (lmio__zipw_entry){full, cur, size, 0};
    /* torch's rule (inline_container.cc getPadding): a zip64 extra, when
     * needed, precedes the padding field, and the payload lands on a
     * multiple of 64 */
    bool big = size >= U32_MAX, far = cur >= U32_MAX;
    size_t z64 = big || far ? 4 + (big ? 16 : 0) + (far ? 8 : 0) : 0;
    uint64_t start = cur + LOCAL_LEN + rl + 1 + nl + z64 + 4;
    size_t pad = (size_t)((ALIGN - start % ALIGN) % ALIGN);
    unsigned char h[LOCAL_LEN + 32 + 4 + ALIGN];
    memset(h, 0, sizeof h);
    put32(h, SIG_LOCAL);
    put16(h + 6, 0x0808); /* sizes in a data descriptor; UTF-8 names */
    if (big) put32(h + 18, U32_MAX), put32(h + 22, U32_MAX);
    put16(h + 26, (uint16_t)(rl + 1 + nl));
    put16(h + 28, (uint16_t)(z64 + 4 + pad));
    lmio_status s = lmio__outfile_write(w->out, h, LOCAL_LEN, err);
    if (!s) s = lmio__outfile_write(w->out, full, rl + 1 + nl, err);
    unsigned char *x = h + LOCAL_LEN, *q = x;
    if (z64) {
        put16(q, 1);
        put16(q + 2, (uint16_t)(z64 - 4));
        q += 4;
        if (big) lmio__put_le64(q, size), lmio__put_le64(q + 8, size), q += 16;
        if (far) lmio__put_le64(q, cur), q += 8;
    }
    q[0] = 'F';
    q[1] = 'B';
    put16(q + 2, (uint16_t)pad);
    memset(q + 4, 'Z', pad);
    q += 4 + pad;
    if (!s) s = lmio__outfile_write(w->out, x, (size_t)(q - x), err);
    w->cur_size = size;
    w->cur_done = 0;
    w->cur_crc = 0;
    return s;
}

typedef struct crc_job {
    uint32_t crc;
    const void *p;
    size_t n;
} crc_job;

static void crc_fn(void *ctx)
{
    crc_job *j = ctx;
    j->crc = lmio__crc32(j->crc, j->p, j->n);
}

lmio_status lmio__zipw_data(lmio__zipw *w, const void *p, size_t n, lmio_error *err)
{
    /* p may lie in a mapped input: its CRC is its first read */
    crc_job j = {w->cur_crc, p, n};
    lmio_status s = LMIO_OK;
    if (!lmio__guarded(crc_fn, &j)) {
        w->lost_addr = lmio__guard_fault_addr();
        w->lost = true;
    } else if ((s = lmio__outfile_write(w->out, p, n, err)) && w->out->sys_errno == EFAULT) {
        w->lost_addr = p;
        w->lost = true;
    }
    if (w->lost)
        return lmio__fail(err, LMIO_ERR_IO, w->out->final_path, -1, "",
                          "input data can no longer be read (a mapped file shrank); %s was left as it was",
                          w->out->final_path);
    w->cur_crc = j.crc;
    w->cur_done += n;
    return s;
}

lmio_status lmio__zipw_end(lmio__zipw *w, lmio_error *err)
{
    lmio__zipw_entry *e = &w->entries[w->count - 1];
    if (w->cur_done != w->cur_size)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, w->out->final_path, -1, "",
                          "zip member %s: %llu bytes written; expected %llu (internal error)", e->name,
                          (unsigned long long)w->cur_done, (unsigned long long)w->cur_size);
    e->crc = w->cur_crc;
    unsigned char dd[24];
    put32(dd, SIG_DESC);
    put32(dd + 4, e->crc);
    /* 64-bit sizes exactly when the local header had a zip64 extra */
    bool wide = e->size >= U32_MAX || e->offset >= U32_MAX;
    if (wide) {
        lmio__put_le64(dd + 8, e->size);
        lmio__put_le64(dd + 16, e->size);
    } else {
        put32(dd + 8, (uint32_t)e->size);
        put32(dd + 12, (uint32_t)e->size);
    }
    return lmio__outfile_write(w->out, dd, wide ? 24 : 16, err);
}

lmio_status lmio__zipw_record(lmio__zipw *w, const char *name, const void *p, size_t n, lmio_error *err)
{
    lmio_status s = lmio__zipw_begin(w, name, n, err);
    if (!s) s = lmio__zipw_data(w, p, n, err);
    if (!s) s = lmio__zipw_end(w, err);
    return s;
}

static lmio_status write_central(lmio__zipw *w, const lmio__zipw_entry *e, lmio_error *err)
{
    unsigned char h[CENTRAL_LEN + 28];
    memset(h, 0, sizeof h);
    bool big = e->size >= U32_MAX, far = e->offset >= U32_MAX;
    size_t nl = strlen(e->name), xl = big || far ? 4 + (big ? 16 : 0) + (far ? 8 : 0) : 0;
    put32(h, SIG_CENTRAL);
    put16(h + 8, 0x0808);
    put32(h + 16, e->crc);
    put32(h + 20, big ? U32_MAX : (uint32_t)e->size);
    put32(h + 24, big ? U32_MAX : (uint32_t)e->size);
    put16(h + 28, (uint16_t)nl);
    put16(h + 30, (uint16_t)xl);
    put32(h + 42, far ? U32_MAX : (uint32_t)e->offset);
    unsigned char *x = h + CENTRAL_LEN;
    if (xl) {
        put16(x, 1);
        put16(x + 2, (uint16_t)(xl - 4));
        x += 4;
        if (big) lmio__put_le64(x, e->size), lmio__put_le64(x + 8, e->size), x += 16;
        if (far) lmio__put_le64(x, e->offset);
    }
    lmio_status s = lmio__outfile_write(w->out, h, CENTRAL_LEN, err);
    if (!s) s = lmio__outfile_write(w->out, e->name, nl, err);
    if (!s && xl) s = lmio__outfile_write(w->out, h + CENTRAL_LEN, xl, err);
    return s;
}

lmio_status lmio__zipw_finish(lmio__zipw *w, lmio_error *err)
{
    uint64_t cd_off = w->out->written;
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < w->count && !s; i++) s = write_central(w, &w->entries[i], err);
    if (s) return s;
    uint64_t end64 = w->out->written, cd_size = end64 - cd_off, n = w->count;
    unsigned char t[END64_LEN + LOC64_LEN + END_LEN];
    memset(t, 0, sizeof t);
    /* torch always writes the zip64 end record and its locator */
    put32(t, SIG_END64);
    lmio__put_le64(t + 4, END64_LEN - 12);
    put16(t + 12, 0x031e);
    put16(t + 14, 45);
    lmio__put_le64(t + 24, n);
    lmio__put_le64(t + 32, n);
    lmio__put_le64(t + 40, cd_size);
    lmio__put_le64(t + 48, cd_off);
    unsigned char *l = t + END64_LEN;
    put32(l, SIG_LOC64);
    lmio__put_le64(l + 8, end64);
    put32(l + 16, 1);
    unsigned char *e = l + LOC64_LEN;
    put32(e, SIG_END);
    put16(e + 8, n >= 0xFFFF ? 0xFFFF : (uint16_t)n);
    put16(e + 10, n >= 0xFFFF ? 0xFFFF : (uint16_t)n);
    put32(e + 12, cd_size >= U32_MAX ? U32_MAX : (uint32_t)cd_size);
    put32(e + 16, cd_off >= U32_MAX ? U32_MAX : (uint32_t)cd_off);
    return lmio__outfile_write(w->out, t, sizeof t, err);
}

void lmio__zipw_free(lmio__zipw *w)
{
    for (size_t i = 0; i < w->count; i++) lmio__free(w->entries[i].name);
    lmio__free(w->entries);
    w->entries = NULL;
    w->count = w->cap = 0;
}
