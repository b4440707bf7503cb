/* Status codes, error filling and small shared helpers. */
#include "core.h"

#include <stdio.h>
#include <string.h>

const char *lmio_version(void) { return LMIO_VERSION_STRING; }

const char *lmio_status_str(lmio_status status)
{
    switch (status) {
    case LMIO_OK: return "ok";
    case LMIO_ERR_INVALID_ARG: return "invalid argument";
    case LMIO_ERR_IO: return "I/O error";
    case LMIO_ERR_NOMEM: return "out of memory";
    case LMIO_ERR_FORMAT: return "format error";
    case LMIO_ERR_UNSUPPORTED: return "unsupported";
    case LMIO_ERR_NOT_FOUND: return "not found";
    case LMIO_ERR_LIMIT: return "limit exceeded";
    case LMIO_ERR_DUPLICATE: return "duplicate";
    case LMIO_ERR_CANCELLED: return "cancelled";
    case LMIO_ERR_INTEGRITY: return "integrity check failed";
    }
    return "unknown status";
}

void lmio_error_clear(lmio_error *err)
{
    if (!err) return;
    memset(err, 0, sizeof *err);
    err->code = LMIO_OK;
    err->offset = -1;
}

/* Copies src into a fixed buffer, truncating on a UTF-8 boundary so a long
 * name never leaves half a character behind. */
static void copy_trunc(char *dst, size_t cap, const char *src)
{
    size_t n = src ? strlen(src) : 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xC0) == 0x80) n--;
    }
    if (n) memcpy(dst, src, n);
    dst[n] = '\0';
}

lmio_status lmio__fail(lmio_error *err, lmio_status code, const char *path, int64_t offset,
                       const char *key, const char *fmt, ...)
{
    if (!err) return code;
    err->code = code;
    err->offset = offset < 0 ? -1 : offset;
    copy_trunc(err->path, sizeof err->path, path);
    copy_trunc(err->key, sizeof err->key, key);

    char what[LMIO_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);

    char raw[LMIO_ERROR_MESSAGE_MAX];
    int n = 0;
    if (path && *path)
        n = snprintf(raw, sizeof raw, "%s: ", path);
    if (n < 0) n = 0;
    if ((size_t)n < sizeof raw && offset >= 0)
        n += snprintf(raw + n, sizeof raw - (size_t)n, "offset %lld: ", (long long)offset);
    if ((size_t)n < sizeof raw)
        snprintf(raw + n, sizeof raw - (size_t)n, "%s", what);
    /* Here, not at each call site: messages quote names, keys and values
     * from files, and a message goes to terminals and logs as it is. */
    lmio_escape_text(err->message, sizeof err->message, raw, strlen(raw));
    return code;
}

/* The code point of the valid UTF-8 sequence at s (len bytes). */
static uint32_t utf8_cp(const unsigned char *s, size_t len)
{
    if (len == 1) return s[0];
    uint32_t cp = s[0] & (0x7F >> len);
    for (size_t k = 1; k < len; k++) cp = (cp << 6) | (s[k] & 0x3F);
    return cp;
}

/* Controls and invisible reordering marks: what a terminal acts on or what
 * makes displayed text differ from its bytes (Trojan Source). */
static bool must_escape(uint32_t cp)
{
    return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x061C || cp == 0x200E || cp == 0x200F ||
           (cp >= 0x202A && cp <= 0x202E) || (cp >= 0x2066 && cp <= 0x2069);
}

size_t lmio_escape_text(char *dst, size_t cap, const char *src, size_t n)
{
    if (!dst || cap == 0) return 0;
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0, i = 0;
    while (s && i < n) {
        size_t len = 1;
        if (s[i] >= 0x80) {
            size_t ok = lmio__utf8_prefix(src + i, n - i < 4 ? n - i : 4);
            len = ok ? (s[i] >= 0xF0 ? 4 : s[i] >= 0xE0 ? 3 : 2) : 0; /* 0: an invalid byte */
        }
        bool esc = len == 0 || must_escape(utf8_cp(s + i, len));
        if (len == 0) len = 1;
        size_t need = esc ? 4 * len : len;
        if (o + need >= cap) break; /* whole characters or nothing */
        for (size_t k = 0; k < len; k++) {
            if (esc) {
                static const char hex[] = "0123456789abcdef";
                dst[o++] = '\\';
                dst[o++] = 'x';
                dst[o++] = hex[s[i + k] >> 4];
                dst[o++] = hex[s[i + k] & 15];
            } else {
                dst[o++] = (char)s[i + k];
            }
        }
        i += len;
    }
    dst[o] = 0;
    return o;
}

bool lmio__numel(int ndim, const uint64_t *shape, uint64_t *numel)
{
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++)
        if (!lmio__mul_u64(n, shape[i], &n)) return false;
    *numel = n;
    return true;
}

lmio__size_result lmio__nbytes(lmio_dtype dtype, uint64_t numel, uint64_t *nbytes)
{
    uint64_t bits;
    if (!lmio__mul_u64(numel, lmio_dtype_bits(dtype), &bits)) return LMIO__SIZE_OVERFLOW;
    if (bits % 8) return LMIO__SIZE_MISALIGNED;
    *nbytes = bits / 8;
    return LMIO__SIZE_OK;
}

void lmio__format_shape(char *buf, size_t cap, int ndim, const uint64_t *shape)
{
    size_t n = 0;
    n += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%llu", i ? ", " : "",
                              (unsigned long long)shape[i]);
    if (n < cap) snprintf(buf + n, cap - n, "]");
}

size_t lmio__utf8_prefix(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; min = 0x80; }
        else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; min = 0x800; }
        else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return i;
        if (n - i < len) return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += len;
    }
    return n;
}

bool lmio__utf8_valid(const char *s, size_t n) { return lmio__utf8_prefix(s, n) == n; }

const char *lmio__basename(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

lmio_status lmio__opts_read(void *dst, size_t lib_size, const void *src, const char *type, lmio_error *err)
{
    if (!src) return LMIO_OK; /* NULL: every default, already in dst */
    size_t caller_size;
    memcpy(&caller_size, src, sizeof caller_size);
    /* A zero or foreign size means the struct was not made with its INIT
     * macro (or comes from a newer header with fields this library cannot
     * honour): reading it would guess at memory the caller does not own. */
    if (caller_size < sizeof(size_t) || caller_size > lib_size)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "",
                          "%s.struct_size is %zu; expected %zu or the size of an older %s (initialise it "
                          "with its _OPTS_INIT macro)",
                          type, caller_size, lib_size, type);
    memcpy(dst, src, caller_size);
    /* dst keeps the library's own size: fields past the caller's struct
     * hold their defaults */
    memcpy(dst, &lib_size, sizeof lib_size);
    return LMIO_OK;
}
