/* lmio_statedict_open and lmio_statedict_save: the format table's two
 * doors. A file's format is judged by its bytes, never by its name. */
#include "formats.h"

#include <stdio.h>
#include <string.h>

lmio_status lmio_statedict_open(const char *path, const lmio_open_opts *opts,
                                lmio_statedict **out, lmio_error *err)
{
    lmio_open_opts o = LMIO_OPEN_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_open_opts", err);
    if (opt_status) return opt_status;
    if (!path || !out)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "path or out is NULL");
    *out = NULL;
    lmio__file f;
    lmio_status s = lmio__file_open(path, o.use_mmap, &f, err);
    return s ? s : lmio__statedict_open_file(path, &f, out, err);
}

lmio_status lmio__statedict_open_file(const char *path, lmio__file *fp, lmio_statedict **out, lmio_error *err)
{
    lmio__file f = *fp;
    lmio_status s;
    /* The readers parse headers straight from the mapping, allocating as
     * they go, so a file that shrinks meanwhile cannot be left by a jump:
     * its lost pages read as zeros and the result is thrown away. */
    const unsigned char *base = f.mapped ? f.data : NULL;
    if (base) lmio__patch_begin(base, f.size);
    size_t head = f.size < 64 ? (size_t)f.size : 64;
    const lmio__format *fmt = lmio__format_sniff(f.data, head, f.size);
    if (!fmt->open)
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, 0, "", "%s file; lmio cannot read %s files yet",
                       fmt->description, fmt->name);
    else
        s = fmt->open(path, &f, out, err);
    const void *lost = base ? lmio__patch_end() : NULL;
    if (lost && !s) {
        lmio_statedict_free(*out); /* it owns the mapping now */
        *out = NULL;
    } else if (s) {
        lmio__file_close(&f);
    }
    if (lost)
        return lmio__fail(err, LMIO_ERR_IO, path, (int64_t)((const unsigned char *)lost - base), "",
                          "the file shrank while it was being read; expected it to stay as it was while open");
    return s;
}

const char *lmio_format_of(const char *path)
{
    unsigned char head[64];
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) return NULL;
    size_t n = fread(head, 1, sizeof head, f);
    long size = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    fclose(f);
    return lmio__format_sniff(head, n, size > 0 ? (uint64_t)size : 0)->name;
}

/* Names of the formats that can save, for a message. */
static void writable_names(char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = 0;
    for (size_t i = 0; i < lmio__format_count() && n < cap; i++) {
        const lmio__format *f = lmio__format_at(i);
        if (f->save) n += (size_t)snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", f->name);
    }
}

lmio_status lmio_statedict_save(const lmio_statedict *sd, const char *path, const char *format,
                                const lmio_save_opts *opts, lmio_error *err)
{
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    lmio_status opt_status = lmio__opts_read(&o, sizeof o, opts, "lmio_save_opts", err);
    if (opt_status) return opt_status;
    if (!sd || !path || !*path)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path ? path : "", -1, "", "state dict or path missing");
    /* "out/" can only mean a directory: say so, rather than report why a
     * temporary file beside "out/" could not be made */
    if (path[strlen(path) - 1] == '/')
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "",
                          "ends with '/', so it names a directory; expected a file path such as %smodel.safetensors",
                          path);
    const lmio__format *fmt = lmio__format_find(format ? format : "safetensors");
    if (!fmt || !fmt->save) {
        char names[256];
        writable_names(names, sizeof names);
        return lmio__fail(err, fmt ? LMIO_ERR_UNSUPPORTED : LMIO_ERR_INVALID_ARG, path, -1, "",
                          "format \"%s\" %s; expected one of: %s", format,
                          fmt ? "cannot be written by lmio yet" : "is unknown", names);
    }
    if (o.dtype != LMIO_DTYPE_NONE && !lmio_dtype_is_convertible_float(o.dtype))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, path, -1, "", "target dtype %s; expected F32, F16, BF16 or F64",
                          lmio_dtype_name(o.dtype) ? lmio_dtype_name(o.dtype) : "?");
    return fmt->save(sd, path, &o, err);
}
