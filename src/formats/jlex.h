/* A strict JSON lexer for headers that machines write: no allocation, no
 * tree, and a small grammar. It is the fast path beside the general JSON
 * wrapper (src/core/json.h), never a replacement for it: each function
 * accepts only text that the general parser (and serde_json, the reference
 * safetensors reader) accepts with the same meaning, and returns false on
 * anything else, including valid JSON it does not handle (escapes in
 * strings, signs, fractions, exponents). A caller that gets false hands the
 * whole text to the general parser, which then accepts it or says what is
 * wrong, so errors are never this lexer's to word.
 *
 * Strings are taken as raw bytes: the caller has validated the whole text
 * as UTF-8 before, so a string without backslashes or control characters
 * is exactly its decoded value. */
#ifndef LMIO_JLEX_H
#define LMIO_JLEX_H
#include "../core/core.h"

#include <string.h>

typedef struct lmio__jlex {
    const char *p, *end;
} lmio__jlex;

static inline void lmio__jl_ws(lmio__jlex *l)
{
    while (l->p < l->end && (*l->p == ' ' || *l->p == '\n' || *l->p == '\r' || *l->p == '\t')) l->p++;
}

/* Consumes c after optional whitespace; false (nothing consumed but
 * whitespace) when the next byte is something else. */
static inline bool lmio__jl_char(lmio__jlex *l, char c)
{
    lmio__jl_ws(l);
    if (l->p < l->end && *l->p == c) {
        l->p++;
        return true;
    }
    return false;
}

/* A string with no escape and no control character (both of which the
 * general parser handles): its bytes are [*s, *s + *n). */
static inline bool lmio__jl_string(lmio__jlex *l, const char **s, size_t *n)
{
    if (!lmio__jl_char(l, '"')) return false;
    const char *b = l->p;
    while (l->p < l->end) {
        unsigned char c = (unsigned char)*l->p;
        if (c == '"') {
            *s = b;
            *n = (size_t)(l->p - b);
            l->p++;
            return true;
        }
        if (c == '\\' || c < 0x20) return false;
        l->p++;
    }
    return false;
}

/* An integer 0..INT64_MAX written as JSON writes it (no sign, no leading
 * zero) and not the start of a fraction or exponent: a value the general
 * parser reads as that integer. Larger ones it rejects as too big, so they
 * are left to it. */
static inline bool lmio__jl_u63(lmio__jlex *l, uint64_t *v)
{
    lmio__jl_ws(l);
    const char *p = l->p;
    if (p >= l->end || *p < '0' || *p > '9') return false;
    uint64_t x = 0;
    if (*p == '0') {
        p++;
    } else {
        for (; p < l->end && *p >= '0' && *p <= '9'; p++) {
            unsigned d = (unsigned)(*p - '0');
            if (x > ((uint64_t)INT64_MAX - d) / 10) return false;
            x = x * 10 + d;
        }
    }
    if (p < l->end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E')) return false;
    l->p = p;
    *v = x;
    return true;
}

/* True when only whitespace is left. */
static inline bool lmio__jl_end(lmio__jlex *l)
{
    lmio__jl_ws(l);
    return l->p == l->end;
}

#endif
