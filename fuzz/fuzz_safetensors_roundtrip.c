/* Fuzz target for the safetensors writer, as a round trip: whatever the
 * reader accepts is saved as it is and saved converted to the float dtype
 * the input's length picks, and each file is reopened from disk. Tensors
 * and metadata must come back identical (converted tensors equal to
 * lmio_convert of the originals), and saving the reopened state dict again
 * must give the same bytes: the writer promises deterministic output.
 * Any mismatch aborts, so libFuzzer and the ctest replay both report it. */
#include "../src/formats/formats.h"
#include "scratch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int ok, const char *what, const char *name)
{
    if (ok) return;
    fprintf(stderr, "safetensors round trip: %s differs (tensor %s)\n", what, name ? name : "-");
    abort();
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) abort();
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return b;
}

static void same_metadata(const lmio_statedict *a, const lmio_statedict *b)
{
    check(lmio_metadata_count(a) == lmio_metadata_count(b), "metadata count", NULL);
    for (size_t i = 0; i < lmio_metadata_count(a); i++) {
        const char *ka, *va, *kb, *vb;
        if (lmio_metadata_get(a, i, &ka, &va, NULL) || lmio_metadata_get(b, i, &kb, &vb, NULL)) abort();
        check(!strcmp(ka, kb) && !strcmp(va, vb), "metadata entry", ka);
    }
}

/* back must hold exactly orig's tensors, floats converted to `to` unless
 * it is LMIO_DTYPE_NONE. */
static void same_tensors(const lmio_statedict *orig, const lmio_statedict *back, lmio_dtype to)
{
    check(lmio_statedict_count(orig) == lmio_statedict_count(back), "tensor count", NULL);
    for (size_t i = 0; i < lmio_statedict_count(orig); i++) {
        lmio_tensor t, u;
        if (lmio_statedict_get(orig, i, &t, NULL)) abort();
        check(lmio_tensor_find(back, t.name, &u, NULL) == LMIO_OK, "presence", t.name);
        int conv = to != LMIO_DTYPE_NONE && lmio_dtype_is_convertible_float(t.dtype);
        check(u.dtype == (conv ? to : t.dtype), "dtype", t.name);
        check(u.ndim == t.ndim && !memcmp(u.shape, t.shape, sizeof t.shape[0] * (size_t)t.ndim), "shape", t.name);
        check(u.numel == t.numel, "element count", t.name);
        if (!conv) {
            check(u.nbytes == t.nbytes && (!t.nbytes || !memcmp(u.data, t.data, t.nbytes)), "data", t.name);
            continue;
        }
        uint64_t want = t.numel * (lmio_dtype_bits(to) / 8);
        check(u.nbytes == want, "converted size", t.name);
        unsigned char *expect = malloc(want ? want : 1);
        if (!expect || lmio_convert(expect, to, t.data, t.dtype, t.numel, NULL)) abort();
        check(!want || !memcmp(u.data, expect, want), "converted data", t.name);
        free(expect);
    }
}

/* Saves sd to <scratch>/<name> and reopens it; returns the reopened dict. */
static lmio_statedict *save_reopen(const lmio_statedict *sd, const char *name, lmio_dtype to, int use_mmap,
                                   char *path, size_t cap)
{
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.dtype = to;
    so.durable = 0; /* scratch files: durability is not under test */
    lmio_open_opts oo = LMIO_OPEN_OPTS_INIT;
    oo.use_mmap = use_mmap;
    lmio_statedict *back = NULL;
    lmio_error err;
    fuzz_path(path, cap, name);
    if (lmio_safetensors_save(sd, path, &so, &err) != LMIO_OK) {
        /* the only honest refusal of a state dict the reader built: a
         * header that would outgrow the limit (not reachable from inputs
         * small enough to fuzz) */
        fprintf(stderr, "save failed: %s\n", err.message);
        abort();
    }
    if (lmio_statedict_open(path, &oo, &back, &err) != LMIO_OK) {
        fprintf(stderr, "reopening what lmio wrote failed: %s\n", err.message);
        abort();
    }
    return back;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *copy = lmio__malloc(size);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    lmio__file f = {copy, size, 0};
    lmio_statedict *sd = NULL;
    if (lmio__format_safetensors.open("fuzz-input", &f, &sd, NULL) != LMIO_OK) {
        lmio__file_close(&f);
        return 0;
    }
    char pa[512], pb[512];
    /* as it is, read back through the mapping */
    lmio_statedict *back = save_reopen(sd, "a.safetensors", LMIO_DTYPE_NONE, 1, pa, sizeof pa);
    same_tensors(sd, back, LMIO_DTYPE_NONE);
    same_metadata(sd, back);
    lmio_statedict *again = save_reopen(back, "b.safetensors", LMIO_DTYPE_NONE, 0, pb, sizeof pb);
    size_t na, nb;
    unsigned char *ba = slurp(pa, &na), *bb = slurp(pb, &nb);
    check(na == nb && !memcmp(ba, bb, na), "bytes of a second save", NULL);
    free(ba);
    free(bb);
    lmio_statedict_free(again);
    lmio_statedict_free(back);

    /* converted, read back with pread */
    static const lmio_dtype to[] = {LMIO_DTYPE_F16, LMIO_DTYPE_BF16, LMIO_DTYPE_F32, LMIO_DTYPE_F64};
    lmio_dtype want = to[size % 4];
    back = save_reopen(sd, "c.safetensors", want, 0, pa, sizeof pa);
    same_tensors(sd, back, want);
    same_metadata(sd, back);
    lmio_statedict_free(back);
    lmio_statedict_free(sd);
    return 0;
}
