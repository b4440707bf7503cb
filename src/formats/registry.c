/* The format table. Directories are searched for weights in its order:
 * safetensors first, as Transformers prefers it. */
#include "formats.h"

#include <string.h>

static const lmio__format *const k_formats[] = {
    &lmio__format_safetensors,
    &lmio__format_torch_zip,
    &lmio__format_gguf,
};
#define N_FORMATS (sizeof k_formats / sizeof k_formats[0])

size_t lmio__format_count(void) { return N_FORMATS; }

const lmio__format *lmio__format_at(size_t i) { return i < N_FORMATS ? k_formats[i] : NULL; }

const lmio__format *lmio__format_find(const char *name)
{
    for (size_t i = 0; name && i < N_FORMATS; i++) {
        if (!strcmp(k_formats[i]->name, name)) return k_formats[i];
        for (const char *const *a = k_formats[i]->aliases; a && *a; a++)
            if (!strcmp(*a, name)) return k_formats[i];
    }
    return NULL;
}

const lmio__format *lmio__format_sniff(const unsigned char *head, size_t n, uint64_t file_size)
{
    /* safetensors has no magic number: what nothing recognises is read as
     * safetensors, whose errors say which rule the file breaks */
    const lmio__format *best = &lmio__format_safetensors;
    lmio__sniff best_score = LMIO__SNIFF_NO;
    for (size_t i = 0; i < N_FORMATS; i++) {
        lmio__sniff s = k_formats[i]->sniff(head, n, file_size);
        if (s > best_score) {
            best = k_formats[i];
            best_score = s;
        }
    }
    return best;
}

const char *lmio_format_name(size_t i) { return i < N_FORMATS ? k_formats[i]->name : NULL; }

int lmio_format_can_read(const char *name)
{
    const lmio__format *f = lmio__format_find(name);
    return f && f->open;
}

int lmio_format_can_save(const char *name)
{
    const lmio__format *f = lmio__format_find(name);
    return f && f->save;
}
