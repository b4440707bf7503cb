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

static inline int test_result(const char *name)
{
    printf("%s: %d checks, %d failed\n", name, g_checks, g_failures);
    return g_failures ? 1 : 0;
}
#endif
