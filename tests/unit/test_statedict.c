/* State dict behaviour, argument checks, and allocation-failure injection:
 * every allocation in open + save is made to fail in turn, and each failure
 * must come back as LMIO_ERR_NOMEM with nothing leaked. */
#include "../../src/core/json.h"
#include "../test.h"

#include <stdlib.h>
#include <unistd.h>

static void basics(void)
{
    lmio_statedict *sd;
    lmio_error err;
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    float w[6] = {1, 2, 3, 4, 5, 6};
    uint64_t shape[2] = {2, 3};
    CHECK_OK(lmio_statedict_add(sd, "w", LMIO_DTYPE_F32, 2, shape, w, sizeof w, LMIO_BORROW, &e_));
    CHECK_OK(lmio_statedict_add(sd, "c", LMIO_DTYPE_F32, 2, shape, w, sizeof w, LMIO_COPY, &e_));
    w[0] = 99; /* the copy must not see this */
    lmio_tensor t;
    CHECK_OK(lmio_tensor_find(sd, "c", &t, &e_));
    CHECK(((const float *)t.data)[0] == 1);
    CHECK(t.numel == 6 && t.nbytes == 24 && t.ndim == 2 && t.file_offset == -1);
    CHECK_OK(lmio_tensor_find(sd, "w", &t, &e_));
    CHECK(t.data == w);

    CHECK(lmio_statedict_add(sd, "w", LMIO_DTYPE_F32, 2, shape, w, sizeof w, LMIO_COPY, &err) == LMIO_ERR_DUPLICATE);
    CHECK(strstr(err.message, "\"w\" appears twice") != NULL);
    CHECK(lmio_statedict_add(sd, "x", LMIO_DTYPE_F32, 2, shape, w, 20, LMIO_COPY, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "20 bytes given; expected 24") != NULL);
    CHECK(lmio_statedict_add(sd, "__metadata__", LMIO_DTYPE_F32, 2, shape, w, 24, LMIO_COPY, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_statedict_add(sd, "", LMIO_DTYPE_F32, 2, shape, w, 24, LMIO_COPY, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_statedict_add(sd, "bad\xff", LMIO_DTYPE_F32, 2, shape, w, 24, LMIO_COPY, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_statedict_add(sd, "q", LMIO_DTYPE_F4, 1, (uint64_t[]){3}, w, 1, LMIO_COPY, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_statedict_add(sd, "d", LMIO_DTYPE_F32, 17, shape, w, 24, LMIO_COPY, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(lmio_tensor_find(sd, "nope", &t, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(lmio_statedict_count(sd) == 2);

    /* many tensors: the index grows and finds every one */
    for (int i = 0; i < 5000; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer.%d.weight", i);
        CHECK_OK(lmio_statedict_add(sd, name, LMIO_DTYPE_U8, 1, (uint64_t[]){1}, "x", 1, LMIO_COPY, &e_));
    }
    int missing = 0;
    for (int i = 0; i < 5000; i++) {
        char name[32];
        snprintf(name, sizeof name, "layer.%d.weight", i);
        missing += lmio_tensor_find(sd, name, &t, NULL) != LMIO_OK;
    }
    CHECK(missing == 0);
    CHECK_OK(lmio_statedict_get(sd, 2, &t, &e_));
    CHECK(strcmp(t.name, "layer.0.weight") == 0); /* insertion order */

    CHECK_OK(lmio_metadata_set(sd, "z", "1", &e_));
    CHECK_OK(lmio_metadata_set(sd, "a", "2", &e_));
    CHECK_OK(lmio_metadata_set(sd, "z", "3", &e_));
    const char *k, *v;
    CHECK(lmio_metadata_count(sd) == 2);
    CHECK_OK(lmio_metadata_get(sd, 0, &k, &v, &e_));
    CHECK(strcmp(k, "a") == 0 && strcmp(v, "2") == 0);
    CHECK(strcmp(lmio_metadata_find(sd, "z"), "3") == 0);
    CHECK(lmio_metadata_find(sd, "y") == NULL);
    /* "dir/" names a directory: said so, not blamed on a temporary file */
    CHECK(lmio_safetensors_save(sd, "/tmp/", NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "ends with '/', so it names a directory") != NULL);
    CHECK(lmio_safetensors_save(sd, "/nonexistent-lmio-dir/", NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "ends with '/'") != NULL);
    lmio_statedict_free(sd);
    lmio_statedict_free(NULL);
}

static void errors(void)
{
    lmio_error err;
    lmio_error_clear(&err);
    CHECK(err.offset == -1 && err.code == LMIO_OK);
    lmio_statedict *sd;
    CHECK(lmio_statedict_open("/nonexistent/x.safetensors", NULL, &sd, &err) == LMIO_ERR_NOT_FOUND);
    CHECK(strstr(err.message, "/nonexistent/x.safetensors: cannot open") == err.message);
    CHECK(strcmp(err.path, "/nonexistent/x.safetensors") == 0);
    CHECK(lmio_statedict_open("/tmp", NULL, &sd, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strcmp(lmio_status_str(LMIO_ERR_FORMAT), "format error") == 0);
    /* a NULL error pointer is always allowed */
    CHECK(lmio_statedict_open("/nonexistent", NULL, &sd, NULL) == LMIO_ERR_NOT_FOUND);
}

/* ---- allocation failure injection (allocator in test.h) ---- */

static lmio_status open_and_save(const char *in, const char *out, lmio_error *err)
{
    lmio_statedict *sd;
    lmio_status s = lmio_statedict_open(in, NULL, &sd, err);
    if (s) return s;
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.dtype = LMIO_DTYPE_BF16;
    o.durable = 0;
    s = lmio_safetensors_save(sd, out, &o, err);
    lmio_statedict_free(sd);
    return s;
}

static void oom_injection(const char *datadir)
{
    char in[1024], out[1024];
    snprintf(in, sizeof in, "%s/good/all_dtypes.safetensors", datadir);
    snprintf(out, sizeof out, "/tmp/lmio-oom-%d.safetensors", (int)getpid());
    lmio__json_init(); /* jansson keeps its hook pointers; set them up before counting */
    lmio_allocator a = {oom_malloc, oom_realloc, oom_free, NULL};
    int iterations = 0, wrong = 0;
    for (long k = 0; k < 100000; k++) {
        g_oom_live = 0;
        g_oom_failed = 0;
        g_oom_countdown = k;
        lmio_set_allocator(&a);
        lmio_error err;
        lmio_status s = open_and_save(in, out, &err);
        lmio_set_allocator(NULL);
        iterations++;
        CHECK_MSG(g_oom_live == 0, "allocation %ld failing leaks %ld blocks", k, g_oom_live);
        if (!g_oom_failed) {
            CHECK_MSG(s == LMIO_OK, "%s", err.message);
            break;
        }
        if (s != LMIO_ERR_NOMEM) {
            wrong++;
            fprintf(stderr, "allocation %ld failing gave %s: %s\n", k, lmio_status_str(s), err.message);
        }
    }
    CHECK(wrong == 0);
    CHECK(iterations > 10);
    printf("oom injection: %d allocation sites failed in turn\n", iterations - 1);
    unlink(out);
}

int main(int argc, char **argv)
{
    basics();
    errors();
    oom_injection(argc > 1 ? argv[1] : "tests/data");
    return test_result("test_statedict");
}
