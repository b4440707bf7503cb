/* The one place lmio talks to jansson: parsing policy (duplicate keys are an
 * error, positions become file offsets) and compact output. */
#include "json.h"

#include <pthread.h>
#include <string.h>

/* jansson reports many allocation failures as syntax errors ("invalid
 * token"), which would blame a good file; the hook notes them instead. */
static _Thread_local bool t_json_oom;

static void *json_malloc_hook(size_t n)
{
    void *p = lmio__malloc(n);
    if (!p) t_json_oom = true;
    return p;
}
static void json_free_hook(void *p) { lmio__free(p); }

static pthread_once_t g_json_once = PTHREAD_ONCE_INIT;
static void json_init_once(void) { json_set_alloc_funcs(json_malloc_hook, json_free_hook); }

void lmio__json_init(void) { pthread_once(&g_json_once, json_init_once); }

lmio_status lmio__json_parse(const char *text, size_t n, const char *path, int64_t base_offset,
                             json_t **out, lmio_error *err)
{
    lmio__json_init();
    json_error_t jerr;
    t_json_oom = false;
    /* Duplicate keys are disallowed by the safetensors spec and by
     * config.json consumers alike; a reader that silently kept one of two
     * definitions could be steered by whoever wrote the file. */
    json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
    if (v && t_json_oom) {
        /* jansson can lose an allocation failure and still return a value
         * that may lack part of the input: never trust it */
        json_decref(v);
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory parsing JSON");
    }
    if (!v) {
        int64_t off = base_offset + (jerr.position > 0 ? jerr.position : 0);
        if (t_json_oom || json_error_code(&jerr) == json_error_out_of_memory)
            return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory parsing JSON");
        return lmio__fail(err, LMIO_ERR_FORMAT, path, off, "", "invalid JSON: %s; expected %s", jerr.text,
                          json_error_code(&jerr) == json_error_duplicate_key
                              ? "each key once"
                              : "one well-formed JSON object");
    }
    *out = v;
    return LMIO_OK;
}

char *lmio__json_dump(const json_t *v, size_t flags, const char *path, lmio_error *err)
{
    lmio__json_init();
    t_json_oom = false;
    char *s = json_dumps(v, flags);
    /* jansson can lose an allocation failure inside json_dumps and still
     * return text; the hook saw it, so trust the hook. */
    if (!s || t_json_oom) {
        lmio__free(s);
        lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory writing JSON");
        return NULL;
    }
    return s;
}

/* ---- Python-compatible output ---- */

/* Python's repr(float): the shortest of %.15g..%.17g that reads back as the
 * same double, with ".0" when it would otherwise look like an integer. */
static void put_real(lmio__buf *b, double v)
{
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    lmio__buf_puts(b, tmp);
    if (!strpbrk(tmp, ".eEn")) lmio__buf_puts(b, ".0"); /* "n": inf/nan never reach here */
}

/* json.dumps(ensure_ascii=True) string escaping: non-ASCII as \uXXXX
 * (UTF-16 surrogate pairs above U+FFFF), lowercase hex. */
static void put_string(lmio__buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    lmio__buf_put(b, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t cp = u[i];
        size_t len = 1;
        if (cp >= 0x80) { /* jansson strings are valid UTF-8 */
            len = cp >= 0xF0 ? 4 : cp >= 0xE0 ? 3 : 2;
            cp &= len == 4 ? 0x07 : len == 3 ? 0x0F : 0x1F;
            for (size_t k = 1; k < len && i + k < n; k++) cp = (cp << 6) | (u[i + k] & 0x3F);
        }
        i += len;
        char e[13];
        switch (cp) {
        case '"': lmio__buf_puts(b, "\\\""); continue;
        case '\\': lmio__buf_puts(b, "\\\\"); continue;
        case '\n': lmio__buf_puts(b, "\\n"); continue;
        case '\r': lmio__buf_puts(b, "\\r"); continue;
        case '\t': lmio__buf_puts(b, "\\t"); continue;
        case '\b': lmio__buf_puts(b, "\\b"); continue;
        case '\f': lmio__buf_puts(b, "\\f"); continue;
        default: break;
        }
        if (cp >= 0x20 && cp < 0x7F) {
            char c = (char)cp;
            lmio__buf_put(b, &c, 1);
            continue;
        }
        uint32_t units[2] = {cp, 0};
        int nu = 1;
        if (cp > 0xFFFF) {
            cp -= 0x10000;
            units[0] = 0xD800 | (cp >> 10);
            units[1] = 0xDC00 | (cp & 0x3FF);
            nu = 2;
        }
        for (int k = 0; k < nu; k++) {
            e[0] = '\\'; e[1] = 'u';
            for (int d = 0; d < 4; d++) e[2 + d] = hex[(units[k] >> (12 - 4 * d)) & 15];
            lmio__buf_put(b, e, 6);
        }
    }
    lmio__buf_put(b, "\"", 1);
}

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void indent(lmio__buf *b, int depth)
{
    lmio__buf_put(b, "\n", 1);
    for (int i = 0; i < depth; i++) lmio__buf_put(b, "  ", 2);
}

static void put_value(lmio__buf *b, const json_t *v, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        if (!n) { lmio__buf_puts(b, "{}"); return; }
        const char **keys = lmio__malloc(n * sizeof *keys);
        if (!keys) { b->oom = true; return; }
        size_t k = 0;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) keys[k++] = key;
        qsort(keys, n, sizeof *keys, cmp_keys);
        lmio__buf_put(b, "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) lmio__buf_put(b, ",", 1);
            indent(b, depth + 1);
            put_string(b, keys[i], strlen(keys[i]));
            lmio__buf_puts(b, ": ");
            put_value(b, json_object_get(v, keys[i]), depth + 1);
        }
        lmio__free(keys);
        indent(b, depth);
        lmio__buf_put(b, "}", 1);
        return;
    }
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (!n) { lmio__buf_puts(b, "[]"); return; }
        lmio__buf_put(b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) lmio__buf_put(b, ",", 1);
            indent(b, depth + 1);
            put_value(b, json_array_get(v, i), depth + 1);
        }
        indent(b, depth);
        lmio__buf_put(b, "]", 1);
        return;
    }
    case JSON_STRING: put_string(b, json_string_value(v), json_string_length(v)); return;
    case JSON_INTEGER: {
        char tmp[24];
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        lmio__buf_puts(b, tmp);
        return;
    }
    case JSON_REAL: put_real(b, json_real_value(v)); return;
    case JSON_TRUE: lmio__buf_puts(b, "true"); return;
    case JSON_FALSE: lmio__buf_puts(b, "false"); return;
    case JSON_NULL: lmio__buf_puts(b, "null"); return;
    }
}

lmio_status lmio__json_dump_python(const json_t *v, lmio__buf *out, const char *path, lmio_error *err)
{
    lmio__buf b = {0};
    put_value(&b, v, 0);
    lmio__buf_put(&b, "\n", 1);
    if (b.oom) {
        lmio__buf_free(&b);
        return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory writing JSON");
    }
    *out = b;
    return LMIO_OK;
}

lmio_status lmio__write_json_python(const char *path, const json_t *v, int durable, lmio_error *err)
{
    lmio__buf b;
    lmio_status s = lmio__json_dump_python(v, &b, path, err);
    if (s) return s;
    s = lmio__write_file(path, b.data, b.len, durable, err);
    lmio__buf_free(&b);
    return s;
}
