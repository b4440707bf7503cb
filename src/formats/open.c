/* lmio_statedict_open: sniff the format from the first bytes and hand the
 * file to that format's reader. */
#include "formats.h"

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
    if (s) return s;
    if (f.size >= 4 && memcmp(f.data, "GGUF", 4) == 0)
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, 0, "",
                       "GGUF file; expected safetensors (GGUF is not supported yet)");
    else if (f.size >= 4 && memcmp(f.data, "PK\x03\x04", 4) == 0)
        s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, 0, "",
                       "zip archive (torch.save?); expected safetensors (not supported yet)");
    else
        s = lmio__safetensors_open(path, &f, out, err);
    if (s) lmio__file_close(&f);
    return s;
}
