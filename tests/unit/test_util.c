/* The public utilities: what a program using only lmio.h relies on. */
#include "lmio.h"
#include "../test.h"

#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

static void shape_format(void)
{
    char b[64];
    lmio_shape_format(b, sizeof b, 2, (const uint64_t[]){96, 32});
    CHECK(strcmp(b, "[96, 32]") == 0);
    lmio_shape_format(b, sizeof b, 0, NULL);
    CHECK(strcmp(b, "[]") == 0);
    char small[5];
    lmio_shape_format(small, sizeof small, 2, (const uint64_t[]){123456, 7});
    CHECK(strlen(small) == 4); /* truncated, still terminated */
}

static void dtype_parse(void)
{
    CHECK(lmio_dtype_parse("f32") == LMIO_DTYPE_F32);
    CHECK(lmio_dtype_parse("F32") == LMIO_DTYPE_F32);
    CHECK(lmio_dtype_parse("float32") == LMIO_DTYPE_F32);
    CHECK(lmio_dtype_parse("FP32") == LMIO_DTYPE_F32);
    CHECK(lmio_dtype_parse("half") == LMIO_DTYPE_F16);
    CHECK(lmio_dtype_parse("fp16") == LMIO_DTYPE_F16);
    CHECK(lmio_dtype_parse("BFloat16") == LMIO_DTYPE_BF16);
    CHECK(lmio_dtype_parse("bf16") == LMIO_DTYPE_BF16);
    CHECK(lmio_dtype_parse("float64") == LMIO_DTYPE_F64);
    CHECK(lmio_dtype_parse("i64") == LMIO_DTYPE_I64);
    CHECK(lmio_dtype_parse("f8_e4m3") == LMIO_DTYPE_F8_E4M3);
    CHECK(lmio_dtype_parse("f8") == LMIO_DTYPE_NONE);
    CHECK(lmio_dtype_parse("") == LMIO_DTYPE_NONE);
    CHECK(lmio_dtype_parse(NULL) == LMIO_DTYPE_NONE);
}

static void utf8(void)
{
    CHECK(lmio_utf8_valid_prefix("abc", 3) == 3);
    CHECK(lmio_utf8_valid_prefix("a\xC3\xA9", 3) == 3);
    CHECK(lmio_utf8_valid_prefix("a\xC3", 2) == 1);          /* cut inside a character */
    CHECK(lmio_utf8_valid_prefix("ab\xC0\x80", 4) == 2);     /* overlong NUL */
    CHECK(lmio_utf8_valid_prefix("\xED\xA0\x80", 3) == 0);   /* surrogate */
    CHECK(lmio_utf8_valid_prefix(NULL, 0) == 0);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    for (struct dirent *e; (e = readdir(d));) n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

static void write_atomic(void)
{
    const char *p = scratch("x.bin");
    lmio_error err;
    CHECK_OK(lmio_file_write_atomic(p, "hello", 5, 1, &err));
    CHECK_OK(lmio_file_write_atomic(p, "bye", 3, 0, &err));
    FILE *f = fopen(p, "rb");
    char b[8] = {0};
    CHECK(f && fread(b, 1, sizeof b, f) == 3 && memcmp(b, "bye", 3) == 0);
    if (f) fclose(f);
    CHECK(count_entries(g_scratch) == 1); /* no temporary file left */
    CHECK(lmio_file_write_atomic(g_scratch, "x", 1, 0, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_file_write_atomic(scratch("no/such/dir/y"), "x", 1, 0, &err) == LMIO_ERR_IO);
    CHECK(strstr(err.message, "no/such/dir/y") != NULL);
    CHECK(lmio_file_write_atomic(NULL, "x", 1, 0, &err) == LMIO_ERR_INVALID_ARG);
}

int main(void)
{
    if (scratch_begin("util")) return 1;
    shape_format();
    dtype_parse();
    utf8();
    write_atomic();
    scratch_end();
    return test_result("test_util");
}
