/* The one place lmio talks to jansson: parsing policy (duplicate keys are an
 * error, positions become file offsets) and compact output. */
#include "internal.h"

#include <pthread.h>
#include <string.h>

static void *json_malloc_hook(size_t n) { return lmio__malloc(n); }
static void json_free_hook(void *p) { lmio__free(p); }

static pthread_once_t g_json_once = PTHREAD_ONCE_INIT;
static void json_init_once(void) { json_set_alloc_funcs(json_malloc_hook, json_free_hook); }

void lmio__json_init(void) { pthread_once(&g_json_once, json_init_once); }

lmio_status lmio__json_parse(const char *text, size_t n, const char *path, int64_t base_offset,
                             json_t **out, lmio_error *err)
{
    lmio__json_init();
    json_error_t jerr;
    /* Duplicate keys are disallowed by the safetensors spec and by
     * config.json consumers alike; a reader that silently kept one of two
     * definitions could be steered by whoever wrote the file. */
    json_t *v = json_loadb(text, n, JSON_REJECT_DUPLICATES, &jerr);
    if (!v) {
        int64_t off = base_offset + (jerr.position > 0 ? jerr.position : 0);
        lmio_status code = json_error_code(&jerr) == json_error_out_of_memory
                               ? LMIO_ERR_NOMEM
                               : LMIO_ERR_FORMAT;
        return lmio__fail(err, code, path, off, "", "invalid JSON: %s; expected valid UTF-8 JSON",
                          jerr.text);
    }
    *out = v;
    return LMIO_OK;
}

char *lmio__json_dump_compact(const json_t *v, size_t *len)
{
    lmio__json_init();
    char *s = json_dumps(v, JSON_COMPACT);
    if (s && len) *len = strlen(s);
    return s;
}
