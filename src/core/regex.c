/* The one place lmio talks to PCRE2: compile a UTF-8 pattern with Unicode
 * properties (JIT when available) and find successive matches. */
#include "core.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>

struct lmio__regex {
    pcre2_code *code;
};

static void *re_malloc(PCRE2_SIZE n, void *ctx) { (void)ctx; return lmio__malloc(n); }
static void re_free(void *p, void *ctx) { (void)ctx; lmio__free(p); }

lmio_status lmio__regex_compile(const char *pattern, lmio__regex **out, lmio_error *err)
{
    int ec;
    PCRE2_SIZE eo;
    pcre2_general_context *gc = pcre2_general_context_create(re_malloc, re_free, NULL);
    pcre2_compile_context *cc = gc ? pcre2_compile_context_create(gc) : NULL;
    lmio__regex *re = lmio__calloc(1, sizeof *re);
    if (!gc || !cc || !re) {
        pcre2_compile_context_free(cc);
        pcre2_general_context_free(gc);
        lmio__free(re);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory compiling a regex");
    }
    re->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, cc);
    pcre2_compile_context_free(cc);
    pcre2_general_context_free(gc);
    if (!re->code && (ec == PCRE2_ERROR_HEAP_FAILED || ec == PCRE2_ERROR_NOMEMORY)) {
        lmio__free(re);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory compiling a regex");
    }
    if (!re->code) {
        char msg[256];
        pcre2_get_error_message(ec, (PCRE2_UCHAR *)msg, sizeof msg);
        lmio__free(re);
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "regex at %zu: %s", (size_t)eo, msg);
    }
    /* JIT is an optimisation: where the platform has none, matching is
     * slower, not wrong. Running out of memory is still an error. */
    if (pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE) == PCRE2_ERROR_NOMEMORY) {
        pcre2_code_free(re->code);
        lmio__free(re);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory compiling a regex");
    }
    *out = re;
    return LMIO_OK;
}

void lmio__regex_free(lmio__regex *re)
{
    if (!re) return;
    pcre2_code_free(re->code);
    lmio__free(re);
}

void *lmio__regex_match_data(const lmio__regex *re)
{
    pcre2_general_context *gc = pcre2_general_context_create(re_malloc, re_free, NULL);
    if (!gc) return NULL;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re->code, gc);
    pcre2_general_context_free(gc);
    return md;
}

void lmio__regex_match_data_free(void *md) { pcre2_match_data_free(md); }

int lmio__regex_next(const lmio__regex *re, void *md, const char *text, size_t len, size_t start,
                     size_t *mstart, size_t *mend)
{
    /* The text was validated as UTF-8 by the caller, once. */
    int rc = pcre2_match(re->code, (PCRE2_SPTR)text, len, start, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc < 0) return rc == PCRE2_ERROR_NOMATCH ? 0 : -1;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *mstart = ov[0];
    *mend = ov[1];
    return 1;
}
