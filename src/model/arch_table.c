/* The architecture table: one line per architecture lmio can run. */
#include "arch.h"

#include <stdio.h>
#include <string.h>

extern const lmio__arch lmio__arch_gpt2;  /* arch/gpt2.c */
extern const lmio__arch lmio__arch_llama; /* arch/llama.c */

static const lmio__arch *const k_archs[] = {
    &lmio__arch_gpt2,
    &lmio__arch_llama,
};
#define N_ARCHS (sizeof k_archs / sizeof k_archs[0])

/* Parsed defaults, one per entry; filled on first use. */
static lmio__json *g_defaults[N_ARCHS];

const lmio__arch *lmio__arch_find(const char *model_type)
{
    for (size_t i = 0; model_type && i < N_ARCHS; i++)
        if (!strcmp(k_archs[i]->model_type, model_type)) return k_archs[i];
    return NULL;
}

const lmio__arch *lmio__arch_of(const lmio_config *cfg)
{
    return cfg ? lmio__arch_find(lmio_config_model_type(cfg)) : NULL;
}

void lmio__arch_list(char *buf, size_t cap)
{
    size_t len = 0;
    if (cap) buf[0] = '\0';
    for (size_t i = 0; i < N_ARCHS && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", k_archs[i]->model_type);
        if (w < 0) break;
        len += (size_t)w;
    }
}

lmio__json *lmio__arch_defaults(const lmio__arch *a)
{
    for (size_t i = 0; a && i < N_ARCHS; i++) {
        if (k_archs[i] != a) continue;
        lmio__json_init(); /* the parse allocates through lmio's allocator */
        if (!g_defaults[i])
            lmio__json_parse(a->defaults_json, strlen(a->defaults_json), "", 0, &g_defaults[i], NULL);
        return g_defaults[i];
    }
    return NULL;
}

int lmio_arch_supported(const char *model_type) { return lmio__arch_find(model_type) != NULL; }

const char *lmio_arch_name(size_t i) { return i < N_ARCHS ? k_archs[i]->model_type : NULL; }
