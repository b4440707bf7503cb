/* Open-addressing hash maps used by the tokenizer and checkpoint code:
 * byte-string keys -> u32 values, and u64 keys -> u64 values. Both grow at
 * half load and never shrink; keys of the string map are borrowed. */
#include "core.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Keys come from files others made (tensor names, vocabularies, merges), so
 * the hash is SipHash-1-3 under a per-process random key: with a known,
 * unkeyed hash an attacker picks keys that share one probe chain and turns
 * n inserts into n^2/2 probes (shared/reference/hostile-inputs.md §7).
 * Variant 1-3 is what Rust's HashMap uses; it costs ~15 ns per short key. */
static uint64_t g_k0, g_k1;
static pthread_once_t g_key_once = PTHREAD_ONCE_INIT;

static void init_key(void)
{
    uint64_t k[2];
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        /* No entropy yet (early boot) or no syscall: something an attacker
         * cannot read off a file is still better than a constant. */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        k[0] = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid() ^ (uint64_t)(uintptr_t)&ts;
        k[1] = (uint64_t)ts.tv_sec * 0xc2b2ae3d27d4eb4fULL ^ (uint64_t)(uintptr_t)k;
    }
    g_k0 = k[0];
    g_k1 = k[1];
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                        \
    do {                                                                                                \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                                       \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                          \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                          \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                                       \
    } while (0)

static void get_key(uint64_t key[2])
{
    pthread_once(&g_key_once, init_key);
    key[0] = g_k0;
    key[1] = g_k1;
}

static uint64_t sip13(const uint64_t key[2], const void *p, size_t n)
{
    const uint64_t k0 = key[0], k1 = key[1];
    const unsigned char *s = p;
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t end = n & ~(size_t)7;
    for (size_t i = 0; i < end; i += 8) {
        uint64_t m = lmio__le64(s + i);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t b = (uint64_t)n << 56;
    for (size_t i = 0; i < (n & 7); i++) b |= (uint64_t)s[end + i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

uint64_t lmio__hash(const void *p, size_t n)
{
    uint64_t key[2];
    get_key(key);
    return sip13(key, p, n);
}

/* sip13 of the 8 little-endian bytes of x, unrolled: the BPE merge loop
 * looks up a pair for every candidate merge. */
static inline uint64_t sip13_u64(const uint64_t key[2], uint64_t x)
{
    uint64_t v0 = key[0] ^ 0x736f6d6570736575ULL, v1 = key[1] ^ 0x646f72616e646f6dULL;
    uint64_t v2 = key[0] ^ 0x6c7967656e657261ULL, v3 = key[1] ^ 0x7465646279746573ULL;
    const uint64_t b = (uint64_t)8 << 56;
    v3 ^= x;
    SIPROUND;
    v0 ^= x;
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- string -> u32 ---- */

/* Each map copies the process key when it first grows, so lookups do not
 * go through pthread_once. */
static bool smap_grow(lmio__smap *m)
{
    if (!m->cap) get_key(m->key);
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
    uint64_t h = sip13(m->key, key, len);
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
    uint64_t h = sip13(m->key, key, len);
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
    if (!m->cap) get_key(m->key);
    size_t cap = m->cap ? m->cap * 2 : 64;
    lmio__umap_slot *s = lmio__malloc(cap * sizeof *s);
    if (!s) return false;
    for (size_t i = 0; i < cap; i++) s[i].key = UINT64_MAX;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].key == UINT64_MAX) continue;
        size_t j = (size_t)sip13_u64(m->key, m->slots[i].key) & (cap - 1);
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
    size_t j = (size_t)sip13_u64(m->key, key) & (m->cap - 1);
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
    for (size_t j = (size_t)sip13_u64(m->key, key) & (m->cap - 1); m->slots[j].key != UINT64_MAX; j = (j + 1) & (m->cap - 1))
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
