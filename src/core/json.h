/* The JSON wrapper (json.c): the one place lmio talks to jansson, so the
 * parser can change without touching format, tokenizer or model code. */
#ifndef LMIO_JSON_H
#define LMIO_JSON_H
#include "core.h"

/* A JSON value. Only json.c sees inside it (it is jansson's json_t); the
 * rest of lmio handles it through the functions below. Values are
 * reference counted: a constructor returns one reference, decref drops it. */
typedef struct json_t lmio__json;

/* Routes jansson's allocations through lmio's allocator; idempotent. */
void lmio__json_init(void);

/* ---- building ---- */

/* New values, each holding one reference; NULL when out of memory (or, for
 * string, when s is NULL or not UTF-8). */
lmio__json *lmio__json_object(void);
lmio__json *lmio__json_array(void);
lmio__json *lmio__json_string(const char *s);
lmio__json *lmio__json_integer(int64_t v);
lmio__json *lmio__json_real(double v);
lmio__json *lmio__json_bool(bool v);
lmio__json *lmio__json_null(void);
/* A copy sharing nothing with v; NULL when out of memory. */
lmio__json *lmio__json_deep_copy(const lmio__json *v);
/* Both accept NULL; incref returns v so it can be passed to a setter. */
lmio__json *lmio__json_incref(lmio__json *v);
void lmio__json_decref(lmio__json *v);

/* The setters take over the caller's reference to v in every case, so a
 * constructor's result can be passed straight in: they return false, with
 * v released, when v or the container is NULL or the insert cannot
 * allocate. A builder ANDs the results and reports LMIO_ERR_NOMEM, so a
 * failed allocation never leaves a silently incomplete document. */
bool lmio__json_set(lmio__json *obj, const char *key, lmio__json *v);
bool lmio__json_append(lmio__json *arr, lmio__json *v);
/* Removes key from obj if present. */
void lmio__json_del(lmio__json *obj, const char *key);

/* ---- reading ---- */

/* Every reader accepts NULL or a value of the wrong type, as "absent": the
 * getters then return NULL, 0 or 0.0 and the checks false, so lookups can
 * be chained (get(get(root, "model"), "type")) and checked once. */
lmio__json *lmio__json_get(const lmio__json *obj, const char *key); /* borrowed from obj */
size_t lmio__json_object_size(const lmio__json *obj);
size_t lmio__json_array_size(const lmio__json *arr);
lmio__json *lmio__json_array_get(const lmio__json *arr, size_t i); /* borrowed from arr */

bool lmio__json_is_object(const lmio__json *v);
bool lmio__json_is_array(const lmio__json *v);
bool lmio__json_is_string(const lmio__json *v);
bool lmio__json_is_integer(const lmio__json *v);
bool lmio__json_is_real(const lmio__json *v);
bool lmio__json_is_number(const lmio__json *v); /* integer or real */
bool lmio__json_is_bool(const lmio__json *v);
bool lmio__json_is_true(const lmio__json *v);
bool lmio__json_is_false(const lmio__json *v);
bool lmio__json_is_null(const lmio__json *v);

const char *lmio__json_string_value(const lmio__json *v); /* borrowed from v */
int64_t lmio__json_integer_value(const lmio__json *v);
double lmio__json_real_value(const lmio__json *v);
double lmio__json_number_value(const lmio__json *v); /* integer or real, as a double */

/* An object's members in insertion order (file order for parsed JSON):
 *     lmio__json_iter it = lmio__json_iter_begin(obj);
 *     while (lmio__json_iter_next(&it, &key, &value)) ...
 * Key and value are borrowed from obj; obj must not change meanwhile. A
 * non-object iterates as empty. */
typedef struct lmio__json_iter {
    lmio__json *obj;
    void *pos; /* the member next() returns; NULL at the end */
} lmio__json_iter;
lmio__json_iter lmio__json_iter_begin(const lmio__json *obj);
bool lmio__json_iter_next(lmio__json_iter *it, const char **key, lmio__json **value);

/* ---- text ---- */

/* Parses exactly n bytes as one JSON value, rejecting duplicate keys and NUL
 * bytes. On failure fills err naming path and the absolute file offset
 * (base_offset + position of the problem). */
lmio_status lmio__json_parse(const char *text, size_t n, const char *path, int64_t base_offset,
                             lmio__json **out, lmio_error *err);
/* Parses the object in text one member at a time and calls fn with each
 * key and value (both borrowed for the call; offset: where the key starts in
 * the file). Peak memory is one member's, not the whole tree's: a header of
 * a million tensors would otherwise hold ~1 KB of jansson nodes per entry.
 * Duplicate keys at the top level are the caller's to detect; inside a
 * member they are an error as in lmio__json_parse. A non-zero status from
 * fn stops the scan and is returned. */
typedef lmio_status (*lmio__json_member_fn)(void *ctx, const char *key, lmio__json *value, int64_t offset,
                                            lmio_error *err);
lmio_status lmio__json_scan_object(const char *text, size_t n, const char *path, int64_t base_offset,
                                   lmio__json_member_fn fn, void *ctx, lmio_error *err);
/* Reads a whole small file (config, vocabulary) and parses it as JSON. */
lmio_status lmio__json_load_file(const char *path, lmio__json **out, lmio_error *err);
/* As lmio__json_parse, but every number is read as a real, so integers
 * past int64 (Transformers writes model_max_length = 1e30 as an integer)
 * parse: for files whose numbers lmio does not use. */
lmio_status lmio__json_parse_big_ints(const char *text, size_t n, const char *path, int64_t base_offset,
                                      lmio__json **out, lmio_error *err);
/* lmio__json_load_file, through lmio__json_parse_big_ints when big_ints. */
lmio_status lmio__json_load_file_ex(const char *path, int big_ints, lmio__json **out, lmio_error *err);

/* Serialises in insertion order, as the tokenizers library writes:
 * indent > 0 puts each member on its own line indented by that many spaces
 * per level; indent 0 is compact (no spaces at all). NULL (err filled) on
 * any allocation failure, including those jansson itself would swallow, and
 * when v is NULL (a failed build). Free with lmio__free. */
char *lmio__json_dump(const lmio__json *v, int indent, const char *path, lmio_error *err);
/* What Python's json.dumps(v, indent=2, sort_keys=True) + "\n" writes (how
 * Transformers writes config.json and friends): shortest round-trip floats,
 * non-ASCII as \uXXXX. LMIO_ERR_NOMEM when out of memory or v is NULL. */
lmio_status lmio__json_dump_python(const lmio__json *v, lmio__buf *out, const char *path, lmio_error *err);
/* ... and written atomically to path. */
lmio_status lmio__write_json_python(const char *path, const lmio__json *v, int durable, lmio_error *err);

#endif
