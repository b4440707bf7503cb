/* A minimal test harness: CHECK records a failure and continues; main
 * returns test_result(), non-zero when anything failed, so ctest sees it. */
#ifndef LMIO_TEST_H
#define LMIO_TEST_H
#include <stdio.h>
#include <string.h>

static int g_checks, g_failures;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        g_checks++;                                                                   \
        if (!(cond)) {                                                                \
            g_failures++;                                                             \
            fprintf(stderr, "not ok: %s:%d: %s\n", __FILE__, __LINE__, #cond);        \
        }                                                                             \
    } while (0)

#define CHECK_MSG(cond, ...)                                                          \
    do {                                                                              \
        g_checks++;                                                                   \
        if (!(cond)) {                                                                \
            g_failures++;                                                             \
            fprintf(stderr, "not ok: %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
            fprintf(stderr, __VA_ARGS__);                                             \
            fputc('\n', stderr);                                                      \
        }                                                                             \
    } while (0)

#define CHECK_OK(expr)                                                                \
    do {                                                                              \
        lmio_error e_;                                                                \
        lmio_error_clear(&e_);                                                        \
        lmio_status s_ = (expr);                                                      \
        (void)e_;                                                                     \
        CHECK_MSG(s_ == LMIO_OK, "%s", lmio_status_str(s_));                          \
    } while (0)

/* ---- a scratch directory per test program ---- */

#include <stdlib.h>
#include <unistd.h>

static char g_scratch[256];

static inline int scratch_begin(const char *name)
{
    snprintf(g_scratch, sizeof g_scratch, "/tmp/lmio-%s-XXXXXX", name);
    return mkdtemp(g_scratch) ? 0 : -1;
}

/* A path inside the scratch directory; four may be live at once. */
static inline const char *scratch(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", g_scratch, name);
    return p[k];
}

static inline void scratch_end(void)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_scratch);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", g_scratch);
}

/* ---- allocation-failure injection through lmio_set_allocator ----
 * Set g_oom_countdown = k, run, restore: allocation k fails (g_oom_failed
 * says whether one did) and g_oom_live counts blocks still held. */

static long g_oom_live, g_oom_countdown = -1;
static int g_oom_failed;

static inline void *oom_malloc(void *ctx, size_t n)
{
    (void)ctx;
    if (g_oom_countdown-- == 0) { g_oom_failed = 1; return NULL; }
    void *p = malloc(n);
    if (p) g_oom_live++;
    return p;
}
static inline void *oom_realloc(void *ctx, void *p, size_t n)
{
    (void)ctx;
    if (g_oom_countdown-- == 0) { g_oom_failed = 1; return NULL; }
    void *q = realloc(p, n);
    if (q && !p) g_oom_live++;
    return q;
}
static inline void oom_free(void *ctx, void *p)
{
    (void)ctx;
    if (p) g_oom_live--;
    free(p);
}

static inline int test_result(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    return g_failures ? 1 : 0;
}
#endif
