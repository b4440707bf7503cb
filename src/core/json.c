/* The one place lmio talks to jansson: parsing policy (duplicate keys are an
 * error, positions become file offsets) and compact output. */
#include "internal.h"

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
