/* The JSON wrapper (json.c): the one place lmio talks to jansson. */
#ifndef LMIO_JSON_H
#define LMIO_JSON_H
#include "core.h"

#include <jansson.h>

/* Routes jansson's allocations through lmio's allocator; idempotent. */
void lmio__json_init(void);
/* Parses exactly n bytes as one JSON value, rejecting duplicate keys and NUL
 * bytes. On failure fills err naming path and the absolute file offset
 * (base_offset + position of the problem). */
lmio_status lmio__json_parse(const char *text, size_t n, const char *path, int64_t base_offset,
                             json_t **out, lmio_error *err);

/* Serialises with jansson flags; NULL (err filled) on any allocation failure,
 * including those jansson itself would swallow. Free with lmio__free. */
char *lmio__json_dump(const json_t *v, size_t flags, const char *path, lmio_error *err);
/* What Python's json.dumps(v, indent=2, sort_keys=True) + "\n" writes (how
 * Transformers writes config.json and friends): shortest round-trip floats,
 * non-ASCII as \uXXXX. */
lmio_status lmio__json_dump_python(const json_t *v, lmio__buf *out, const char *path, lmio_error *err);
/* ... and written atomically to path. */
lmio_status lmio__write_json_python(const char *path, const json_t *v, int durable, lmio_error *err);
/* Reads a whole small file (config, vocabulary) and parses it as JSON. */
lmio_status lmio__json_load_file(const char *path, json_t **out, lmio_error *err);

#endif
