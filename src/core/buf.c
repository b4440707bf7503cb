/* A growable byte buffer with sticky out-of-memory state, and the JSON
 * string encoding safetensors headers use. Writers append freely and check
 * once at the end, so no failure can be forgotten halfway. */
#include "core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void lmio__buf_put(lmio__buf *b, const void *p, size_t n)
{
    if (b->oom) return;
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1) {
            if (cap > SIZE_MAX / 2) { b->oom = true; return; }
            cap *= 2;
        }
        char *d = lmio__realloc(b->data, cap);
        if (!d) { b->oom = true; return; }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void lmio__buf_puts(lmio__buf *b, const char *s) { lmio__buf_put(b, s, strlen(s)); }

void lmio__buf_u64(lmio__buf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    lmio__buf_put(b, tmp, (size_t)n);
}

/* Escapes as serde_json does (the reference writer): quote, backslash and
 * control characters; everything else, non-ASCII included, verbatim. */
void lmio__buf_json_string(lmio__buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    lmio__buf_put(b, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *esc = NULL;
        char u[7];
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default:
            if (c < 0x20) {
                memcpy(u, "\\u00", 4);
                u[4] = hex[c >> 4];
                u[5] = hex[c & 15];
                u[6] = 0;
                esc = u;
            }
        }
        if (esc) {
            lmio__buf_put(b, run, (size_t)(p - run));
            lmio__buf_puts(b, esc);
            run = p + 1;
        }
    }
    lmio__buf_puts(b, run);
    lmio__buf_put(b, "\"", 1);
}

void lmio__buf_free(lmio__buf *b)
{
    lmio__free(b->data);
    memset(b, 0, sizeof *b);
}

void lmio__buf_printf(lmio__buf *b, const char *fmt, ...)
{
    va_list ap, again;
    va_start(ap, fmt);
    va_copy(again, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    char *text = n < 0 ? NULL : lmio__malloc((size_t)n + 1);
    if (text) {
        vsnprintf(text, (size_t)n + 1, fmt, again);
        lmio__buf_put(b, text, (size_t)n);
    } else {
        b->oom = true;
    }
    lmio__free(text);
    va_end(again);
    va_end(ap);
}

const char *lmio__py_float(char *s, size_t cap, double v)
{
    snprintf(s, cap, "%.17g", v);
    if (!strpbrk(s, ".e")) snprintf(s + strlen(s), cap - strlen(s), ".0");
    return s;
}
