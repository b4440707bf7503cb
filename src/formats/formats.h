/* The format layer's internal interfaces: the readers lmio_statedict_open
 * (open.c) dispatches to. Formats never call each other. */
#ifndef LMIO_FORMATS_H
#define LMIO_FORMATS_H
#include "../core/core.h"

/* Each reader takes an opened file; on success ownership of the file moves
 * to the new state dict, on failure the caller still owns it. */
lmio_status lmio__safetensors_open(const char *path, lmio__file *f, lmio_statedict **out,
                                   lmio_error *err);

#endif
