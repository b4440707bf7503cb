/* Open-addressing hash maps used by the tokenizer and checkpoint code:
 * byte-string keys -> u32 values, and u64 keys -> u64 values. Both grow at
 * half load and never shrink; keys of the string map are borrowed. */
#include "core.h"

#include <string.h>

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    return x ^ (x >> 33);
}

/* ---- string -> u32 ---- */

static bool smap_grow(lmio__smap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    lmio__smap_slot *s = lmio__calloc(cap, sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        size_t j = (size_t)m->slots[i].hash & (cap - 1);
        while (s[j].key) j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    lmio__free(m->slots);
    m->slots = s;
    m->cap = cap;
    return true;
}

bool lmio__smap_put(lmio__smap *m, const char *key, size_t len, uint32_t value)
{
    if ((m->count + 1) * 2 > m->cap && !smap_grow(m)) return false;
    uint64_t h = fnv1a(key, len);
    size_t j = (size_t)h & (m->cap - 1);
    while (m->slots[j].key) {
        lmio__smap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            s->value = value;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (lmio__smap_slot){key, len, h, value};
    m->count++;
    return true;
}

bool lmio__smap_get(const lmio__smap *m, const char *key, size_t len, uint32_t *value)
{
    if (!m->cap) return false;
    uint64_t h = fnv1a(key, len);
    for (size_t j = (size_t)h & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
        const lmio__smap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0) {
            *value = s->value;
            return true;
        }
    }
    return false;
}

void lmio__smap_free(lmio__smap *m)
{
    lmio__free(m->slots);
    memset(m, 0, sizeof *m);
}

/* ---- u64 -> u64 (keys must not be UINT64_MAX, the empty marker) ---- */

static bool umap_grow(lmio__umap *m)
{
    size_t cap = m->cap ? m->cap * 2 : 64;
    lmio__umap_slot *s = lmio__malloc(cap * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < cap; i++) s[i].key = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == UINT64_MAX) continue;
        size_t j = (size_t)mix64(m->slots[i].key) & (cap - 1);
        while (s[j].key != UINT64_MAX) j = (j + 1) & (cap - 1);
        s[j] = m->slots[i];
    }
    lmio__free(m->slots);
    m->slots = s;
    m->cap = cap;
    return true;
}

bool lmio__umap_put(lmio__umap *m, uint64_t key, uint64_t value)
{
    if ((m->count + 1) * 2 > m->cap && !umap_grow(m)) return false;
    size_t j = (size_t)mix64(key) & (m->cap - 1);
    while (m->slots[j].key != UINT64_MAX) {
        if (m->slots[j].key == key) {
            m->slots[j].value = value;
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    m->slots[j] = (lmio__umap_slot){key, value};
    m->count++;
    return true;
}

bool lmio__umap_get(const lmio__umap *m, uint64_t key, uint64_t *value)
{
    if (!m->cap) return false;
    for (size_t j = (size_t)mix64(key) & (m->cap - 1); m->slots[j].key != UINT64_MAX; j = (j + 1) & (m->cap - 1))
        if (m->slots[j].key == key) {
            *value = m->slots[j].value;
            return true;
        }
    return false;
}

void lmio__umap_free(lmio__umap *m)
{
    lmio__free(m->slots);
    memset(m, 0, sizeof *m);
}
