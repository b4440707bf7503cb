/* The one place lmio talks to jansson: parsing policy (duplicate keys are an
 * error, positions become file offsets) and compact output. */
#include "json.h"

#include <jansson.h>
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

/* ---- building ---- */

/* Constructors route through the hook like everything else; init first so
 * a value built before any parse is still allocated by lmio. */
lmio__json *lmio__json_object(void) { lmio__json_init(); return json_object(); }
lmio__json *lmio__json_array(void) { lmio__json_init(); return json_array(); }
lmio__json *lmio__json_string(const char *s) { lmio__json_init(); return s ? json_string(s) : NULL; }
lmio__json *lmio__json_integer(int64_t v) { lmio__json_init(); return json_integer((json_int_t)v); }
lmio__json *lmio__json_real(double v) { lmio__json_init(); return json_real(v); }
lmio__json *lmio__json_bool(bool v) { return json_boolean(v); } /* singletons: never allocate */
lmio__json *lmio__json_null(void) { return json_null(); }
lmio__json *lmio__json_deep_copy(const lmio__json *v)
{
    lmio__json_init();
    t_json_oom = false;
    lmio__json *d = v ? json_deep_copy(v) : NULL;
    /* jansson before 2.13 ignores a member that fails to copy and returns
     * the rest: an incomplete copy must not pass for the original */
    if (d && t_json_oom) {
        json_decref(d);
        return NULL;
    }
    return d;
}
lmio__json *lmio__json_incref(lmio__json *v) { return json_incref(v); }
void lmio__json_decref(lmio__json *v) { json_decref(v); }

bool lmio__json_set(lmio__json *obj, const char *key, lmio__json *v)
{
    /* checked here rather than trusted to jansson, so the rule "v is
     * always taken" holds whichever jansson version is linked */
    if (!v || !key || !json_is_object(obj)) {
        json_decref(v);
        return false;
    }
    return json_object_set_new(obj, key, v) == 0;
}

bool lmio__json_append(lmio__json *arr, lmio__json *v)
{
    if (!v || !json_is_array(arr)) {
        json_decref(v);
        return false;
    }
    return json_array_append_new(arr, v) == 0;
}

void lmio__json_del(lmio__json *obj, const char *key)
{
    if (json_is_object(obj) && key) json_object_del(obj, key);
}

/* ---- reading: jansson's accessors already treat NULL as absent ---- */

lmio__json *lmio__json_get(const lmio__json *obj, const char *key) { return key ? json_object_get(obj, key) : NULL; }
size_t lmio__json_object_size(const lmio__json *obj) { return json_object_size(obj); }
size_t lmio__json_array_size(const lmio__json *arr) { return json_array_size(arr); }
lmio__json *lmio__json_array_get(const lmio__json *arr, size_t i) { return json_array_get(arr, i); }

bool lmio__json_is_object(const lmio__json *v) { return json_is_object(v); }
bool lmio__json_is_array(const lmio__json *v) { return json_is_array(v); }
bool lmio__json_is_string(const lmio__json *v) { return json_is_string(v); }
bool lmio__json_is_integer(const lmio__json *v) { return json_is_integer(v); }
bool lmio__json_is_real(const lmio__json *v) { return json_is_real(v); }
bool lmio__json_is_number(const lmio__json *v) { return json_is_number(v); }
bool lmio__json_is_bool(const lmio__json *v) { return json_is_boolean(v); }
bool lmio__json_is_true(const lmio__json *v) { return json_is_true(v); }
bool lmio__json_is_false(const lmio__json *v) { return json_is_false(v); }
bool lmio__json_is_null(const lmio__json *v) { return json_is_null(v); }

const char *lmio__json_string_value(const lmio__json *v) { return json_string_value(v); }
int64_t lmio__json_integer_value(const lmio__json *v) { return (int64_t)json_integer_value(v); }
double lmio__json_real_value(const lmio__json *v) { return json_real_value(v); }
double lmio__json_number_value(const lmio__json *v) { return json_number_value(v); }

lmio__json_iter lmio__json_iter_begin(const lmio__json *obj)
{
    /* jansson's iterators take a non-const object but do not modify it */
    lmio__json *o = (lmio__json *)obj;
    return (lmio__json_iter){o, json_object_iter(o)};
}

bool lmio__json_iter_next(lmio__json_iter *it, const char **key, lmio__json **value)
{
    if (!it->pos) return false;
    *key = json_object_iter_key(it->pos);
    *value = json_object_iter_value(it->pos);
    it->pos = json_object_iter_next(it->obj, it->pos);
    return true;
}

/* ---- text ---- */

static lmio_status parse_flags(const char *text, size_t n, size_t flags, const char *path, int64_t base_offset,
                               lmio__json **out, lmio_error *err)
{
    lmio__json_init();
    json_error_t jerr;
    t_json_oom = false;
    /* Duplicate keys are disallowed by the safetensors spec and by
     * config.json consumers alike; a reader that silently kept one of two
     * definitions could be steered by whoever wrote the file. */
    json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES | flags, &jerr);
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

lmio_status lmio__json_parse(const char *text, size_t n, const char *path, int64_t base_offset,
                             lmio__json **out, lmio_error *err)
{
    return parse_flags(text, n, 0, path, base_offset, out, err);
}

lmio_status lmio__json_parse_big_ints(const char *text, size_t n, const char *path, int64_t base_offset,
                                      lmio__json **out, lmio_error *err)
{
    return parse_flags(text, n, JSON_DECODE_INT_AS_REAL, path, base_offset, out, err);
}

/* ---- scanning an object member by member ---- */

static bool json_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static size_t skip_ws(const char *t, size_t n, size_t i)
{
    while (i < n && json_ws(t[i])) i++;
    return i;
}

/* The end of the string starting at the quote t[i], just past its closing
 * quote; n when it is unterminated. Content is checked by the parser. */
static size_t string_end(const char *t, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (t[i] == '\\') i++;
        else if (t[i] == '"') return i + 1;
    }
    return n;
}

/* The end of the value starting at t[i]: brackets matched outside strings,
 * or a scalar up to the next delimiter. Only finds the span; jansson then
 * parses it, so anything malformed inside is still reported by it. */
static size_t value_end(const char *t, size_t n, size_t i)
{
    if (i < n && t[i] == '"') return string_end(t, n, i);
    if (i < n && (t[i] == '{' || t[i] == '[')) {
        size_t depth = 0;
        while (i < n) {
            char c = t[i];
            if (c == '"') { i = string_end(t, n, i); continue; }
            if (c == '{' || c == '[') depth++;
            else if ((c == '}' || c == ']') && --depth == 0) return i + 1;
            i++;
        }
        return n;
    }
    while (i < n && !json_ws(t[i]) && t[i] != ',' && t[i] != '}' && t[i] != ']') i++;
    return i;
}

static lmio_status syntax(const char *path, int64_t off, const char *what, lmio_error *err)
{
    return lmio__fail(err, LMIO_ERR_FORMAT, path, off, "", "invalid JSON: %s; expected one well-formed JSON object",
                      what);
}

static lmio_status scan_member(const char *t, size_t n, size_t *pos, const char *path, int64_t base,
                               lmio__json_member_fn fn, void *ctx, lmio_error *err)
{
    size_t i = *pos;
    if (i >= n || t[i] != '"') return syntax(path, base + (int64_t)i, "a member does not start with a string key", err);
    size_t kend = string_end(t, n, i);
    lmio__json *key = NULL, *val = NULL;
    lmio_status s = parse_flags(t + i, kend - i, JSON_DECODE_ANY, path, base + (int64_t)i, &key, err);
    if (s) return s;
    size_t j = skip_ws(t, n, kend);
    if (j >= n || t[j] != ':') {
        json_decref(key);
        return syntax(path, base + (int64_t)j, "no ':' after a key", err);
    }
    j = skip_ws(t, n, j + 1);
    size_t vend = value_end(t, n, j);
    if ((s = parse_flags(t + j, vend - j, JSON_DECODE_ANY, path, base + (int64_t)j, &val, err))) {
        json_decref(key);
        return s;
    }
    s = fn(ctx, json_string_value(key), val, base + (int64_t)i, err);
    json_decref(key);
    json_decref(val);
    *pos = vend;
    return s;
}

lmio_status lmio__json_scan_object(const char *text, size_t n, const char *path, int64_t base_offset,
                                   lmio__json_member_fn fn, void *ctx, lmio_error *err)
{
    size_t i = skip_ws(text, n, 0);
    if (i >= n || text[i] != '{') {
        /* not an object: let the parser say what it is, or what is wrong */
        lmio__json *v;
        lmio_status s = parse_flags(text, n, JSON_DECODE_ANY, path, base_offset, &v, err);
        if (s) return s;
        const char *kind = json_is_array(v) ? "an array" : json_is_string(v) ? "a string" : "a scalar";
        json_decref(v);
        return lmio__fail(err, LMIO_ERR_FORMAT, path, base_offset + (int64_t)i, "",
                          "the top level is %s; expected a JSON object", kind);
    }
    i = skip_ws(text, n, i + 1);
    if (i < n && text[i] == '}') return skip_ws(text, n, i + 1) == n ? LMIO_OK : syntax(path, base_offset + (int64_t)i + 1, "text follows the object", err);
    for (;;) {
        lmio_status s = scan_member(text, n, &i, path, base_offset, fn, ctx, err);
        if (s) return s;
        i = skip_ws(text, n, i);
        if (i < n && text[i] == ',') {
            i = skip_ws(text, n, i + 1);
            continue;
        }
        if (i < n && text[i] == '}') break;
        return syntax(path, base_offset + (int64_t)i, i < n ? "no ',' or '}' after a member" : "the object is not closed", err);
    }
    i = skip_ws(text, n, i + 1);
    return i == n ? LMIO_OK : syntax(path, base_offset + (int64_t)i, "text follows the object", err);
}

char *lmio__json_dump(const lmio__json *v, int indent, const char *path, lmio_error *err)
{
    lmio__json_init();
    t_json_oom = false;
    char *s = v ? json_dumps(v, indent > 0 ? JSON_INDENT(indent) : JSON_COMPACT) : NULL;
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
    /* a NULL is a value whose construction failed: the document is
     * incomplete, which is reported as the out-of-memory it was */
    if (!v) {
        b->oom = true;
        return;
    }
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

lmio_status lmio__json_dump_python(const lmio__json *v, lmio__buf *out, const char *path, lmio_error *err)
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

lmio_status lmio__write_json_python(const char *path, const lmio__json *v, int durable, lmio_error *err)
{
    lmio__buf b;
    lmio_status s = lmio__json_dump_python(v, &b, path, err);
    if (s) return s;
    s = lmio__write_file(path, b.data, b.len, durable, err);
    lmio__buf_free(&b);
    return s;
}
