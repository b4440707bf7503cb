/* GGUF: every malformed file of tests/data/corrupt_gguf (make_gguf_corpus.py)
 * fails with its expected status, offset and message, mapped or read; the
 * good ones open with the values their bytes hold. */
#include "../../src/core/core.h"
#include "../test.h"

#include <stdlib.h>

static const char *g_data;

static lmio_status status_from(const char *s)
{
    static const struct { const char *n; lmio_status s; } k[] = {
        {"FORMAT", LMIO_ERR_FORMAT}, {"LIMIT", LMIO_ERR_LIMIT}, {"UNSUPPORTED", LMIO_ERR_UNSUPPORTED},
        {"DUPLICATE", LMIO_ERR_DUPLICATE}};
    for (size_t i = 0; i < sizeof k / sizeof *k; i++)
        if (!strcmp(k[i].n, s)) return k[i].s;
    return (lmio_status)-1;
}

static void corpus(void)
{
    char path[1024], line[1024];
    snprintf(path, sizeof path, "%s/corrupt_gguf/EXPECTED", g_data);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = 0;
        char *name = strtok(line, "\t"), *status = strtok(NULL, "\t"), *off = strtok(NULL, "\t"),
             *frag = strtok(NULL, "\t");
        if (!name || !status || !off || !frag) { CHECK_MSG(0, "bad EXPECTED line"); continue; }
        snprintf(path, sizeof path, "%s/corrupt_gguf/%s", g_data, name);
        for (int mm = 0; mm < 2; mm++) {
            lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
            oo.use_mmap = mm;
            lmio_statedict *sd = NULL;
            lmio_error err;
            lmio_status s = lmio_statedict_open(path, &oo, &sd, &err);
            CHECK_MSG(s == status_from(status), "%s: got %s: %s", name, lmio_status_str(s), s ? err.message : "");
            CHECK(sd == NULL);
            if (s == LMIO_OK) { lmio_statedict_free(sd); continue; }
            CHECK_MSG(strstr(err.message, frag) != NULL, "%s: message \"%s\" lacks \"%s\"", name, err.message, frag);
            CHECK_MSG(strstr(err.message, path) == err.message, "%s: message does not start with the path", name);
            CHECK_MSG(!strchr(err.message, '\n'), "%s: message spans lines", name);
            long want = atol(off);
            if (want >= 0)
                CHECK_MSG(err.offset == want, "%s: offset %lld, expected %ld (%s)", name, (long long)err.offset, want,
                          err.message);
        }
        cases++;
    }
    fclose(f);
    CHECK_MSG(cases >= 45, "only %d corrupt cases", cases);
    printf("corrupt GGUF corpus: %d files, each rejected with its expected error\n", cases);
}

static lmio_statedict *open_good(const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/corrupt_gguf/%s", g_data, name);
    lmio_statedict *sd = NULL;
    lmio_error err;
    lmio_status s = lmio_statedict_open(path, NULL, &sd, &err);
    CHECK_MSG(s == LMIO_OK, "%s: %s", name, s ? err.message : "");
    if (sd) CHECK(!strcmp(lmio_statedict_format(sd), "gguf"));
    return sd;
}

static void good(void)
{
    lmio_tensor t;
    lmio_statedict *sd = open_good("good-v2.gguf");
    if (sd) {
        CHECK_OK(lmio_tensor_find(sd, "t", &t, &e_));
        CHECK(t.dtype == LMIO_DTYPE_F32 && t.ndim == 1 && t.shape[0] == 4 && ((const float *)t.data)[3] == 4.0f);
        CHECK(!strcmp(lmio_metadata_find(sd, "general.architecture"), "llama"));
    }
    lmio_statedict_free(sd);

    sd = open_good("good-no-tensors.gguf");
    if (sd) CHECK(lmio_statedict_count(sd) == 0 && !strcmp(lmio_metadata_find(sd, "general.name"), "empty"));
    lmio_statedict_free(sd);

    sd = open_good("good-align64.gguf");
    if (sd) {
        CHECK_OK(lmio_tensor_find(sd, "b", &t, &e_));
        /* ne = {2, 2} F16 at data offset 64 of a 64-aligned data section */
        CHECK(t.dtype == LMIO_DTYPE_F16 && t.ndim == 2 && t.file_offset % 64 == 0 && t.nbytes == 8);
        CHECK(!strcmp(lmio_metadata_find(sd, "general.alignment"), "64"));
    }
    lmio_statedict_free(sd);

    sd = open_good("good-q8_0.gguf");
    if (sd) {
        CHECK_OK(lmio_tensor_find(sd, "q", &t, &e_));
        /* ne = {32, 2}: two rows of 32, each 0.5 * (0..31) */
        CHECK(t.dtype == LMIO_DTYPE_F32 && t.ndim == 2 && t.shape[0] == 2 && t.shape[1] == 32 && t.file_offset == -1);
        const float *v = t.data;
        int ok = 1;
        for (int i = 0; i < 64; i++) ok &= v[i] == 0.5f * (float)(i % 32);
        CHECK_MSG(ok, "Q8_0 values differ from 0.5 * q");
    }
    lmio_statedict_free(sd);

    sd = open_good("good-empty-tensor.gguf");
    if (sd) {
        CHECK_OK(lmio_tensor_find(sd, "e", &t, &e_));
        CHECK(t.nbytes == 0 && t.ndim == 2 && t.shape[0] == 4 && t.shape[1] == 0);
    }
    lmio_statedict_free(sd);

    sd = open_good("good-nested-array.gguf");
    if (sd) CHECK(!strcmp(lmio_metadata_find(sd, "general.x"), "[[-1], [\"z\"]]"));
    lmio_statedict_free(sd);
}

int main(int argc, char **argv)
{
    g_data = argc > 1 ? argv[1] : "tests/data";
    corpus();
    good();
    return test_result("test_gguf");
}
