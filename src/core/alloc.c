/* The allocator hook: every allocation lmio makes passes through here, so a
 * host can account for memory and tests can inject failures. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

static void *default_malloc(void *ctx, size_t n) { (void)ctx; return malloc(n); }
static void *default_realloc(void *ctx, void *p, size_t n) { (void)ctx; return realloc(p, n); }
static void default_free(void *ctx, void *p) { (void)ctx; free(p); }

static lmio_allocator g_alloc = {default_malloc, default_realloc, default_free, NULL};

void lmio_set_allocator(const lmio_allocator *a)
{
    if (a && a->malloc_fn && a->realloc_fn && a->free_fn)
        g_alloc = *a;
    else
        g_alloc = (lmio_allocator){default_malloc, default_realloc, default_free, NULL};
}

/* malloc(0) may return NULL legitimately; lmio always asks for at least one
 * byte so NULL means exactly one thing: out of memory. */
void *lmio__malloc(size_t n) { return g_alloc.malloc_fn(g_alloc.ctx, n ? n : 1); }

void *lmio__calloc(size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n)) return NULL;
    void *p = lmio__malloc(n);
    if (p) memset(p, 0, n ? n : 1);
    return p;
}

void *lmio__realloc(void *p, size_t n) { return g_alloc.realloc_fn(g_alloc.ctx, p, n ? n : 1); }

void lmio__free(void *p)
{
    if (p) g_alloc.free_fn(g_alloc.ctx, p);
}

char *lmio__strndup(const char *s, size_t n)
{
    char *d = lmio__malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *lmio__strdup(const char *s) { return lmio__strndup(s, strlen(s)); }

void lmio_free(void *p) { lmio__free(p); }

bool lmio__grow(void **p, size_t elem, size_t need, size_t *cap)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) {
        if (c > SIZE_MAX / 2) return false;
        c *= 2;
    }
    size_t bytes;
    if (__builtin_mul_overflow(c, elem, &bytes)) return false;
    void *q = lmio__realloc(*p, bytes);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}
