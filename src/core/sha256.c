/* SHA-256: the one place that talks to OpenSSL. Its EVP interface picks
 * the SHA-NI or AVX2 code at run time (1.42 GB/s per core with SHA-NI on
 * the project's machines, against 0.29 GB/s for coreutils' sha256sum:
 * shared/reference/perf-reliability.md §2.4).
 *
 * OpenSSL's own allocation for a context does not go through lmio's
 * allocator hook: its hook (CRYPTO_set_mem_functions) is process-wide and
 * would take over the OpenSSL of the program lmio is linked into. */
#include "core.h"

#include <openssl/evp.h>

struct lmio__sha256 {
    EVP_MD_CTX *ctx;
};

lmio__sha256 *lmio__sha256_new(void)
{
    lmio__sha256 *h = lmio__malloc(sizeof *h);
    if (!h) return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        lmio__sha256_free(h);
        return NULL;
    }
    return h;
}

bool lmio__sha256_update(lmio__sha256 *h, const void *data, size_t n)
{
    return n == 0 || EVP_DigestUpdate(h->ctx, data, n) == 1;
}

bool lmio__sha256_final(lmio__sha256 *h, unsigned char out[LMIO__SHA256_LEN])
{
    unsigned len = 0;
    return EVP_DigestFinal_ex(h->ctx, out, &len) == 1 && len == LMIO__SHA256_LEN;
}

void lmio__sha256_free(lmio__sha256 *h)
{
    if (!h) return;
    EVP_MD_CTX_free(h->ctx);
    lmio__free(h);
}

bool lmio__sha256_once(const void *data, size_t n, unsigned char out[LMIO__SHA256_LEN])
{
    lmio__sha256 *h = lmio__sha256_new();
    bool ok = h && lmio__sha256_update(h, data, n) && lmio__sha256_final(h, out);
    lmio__sha256_free(h);
    return ok;
}

void lmio__hex(char *out, const unsigned char *in, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = 0;
}
