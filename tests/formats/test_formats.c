/* The format table: files are recognised by their bytes, never by their
 * names; saves pick a writer by name; directories find their weights
 * through the same table. */
#include "lmio.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "../test.h"

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n) CHECK(0);
    if (f) fclose(f);
}

static lmio_statedict *small_sd(void)
{
    lmio_statedict *sd = NULL;
    static const float v[4] = {1, 2, 3, 4};
    uint64_t shape[1] = {4};
    CHECK_OK(lmio_statedict_create(&sd, &e_));
    CHECK_OK(lmio_statedict_add(sd, "w", LMIO_DTYPE_F32, 1, shape, v, sizeof v, LMIO_BORROW, &e_));
    return sd;
}

static void table(void)
{
    size_t n = 0;
    int st = 0;
    while (lmio_format_name(n)) {
        st |= !strcmp(lmio_format_name(n), "safetensors");
        n++;
    }
    CHECK(n >= 3 && st);
    CHECK(lmio_format_can_read("safetensors") && lmio_format_can_save("safetensors"));
    CHECK(!lmio_format_can_read("nonsense") && !lmio_format_can_save(NULL));
    CHECK(lmio_format_can_save("gguf"));
    /* one table of names: aliases resolve to their entry */
    CHECK(lmio_format_can_read("pytorch") && lmio_format_can_save("pytorch") && lmio_format_can_save("bin") &&
          lmio_format_can_save("pt") && lmio_format_can_save("torch-zip"));
}

static void by_content(void)
{
    lmio_statedict *sd = small_sd(), *back = NULL;
    lmio_error err;
    /* a safetensors file under names that suggest other formats */
    const char *names[] = {"weights.gguf", "pytorch_model.bin", "model.onnx", "noext"};
    for (size_t i = 0; i < 4; i++) {
        CHECK_OK(lmio_statedict_save(sd, scratch(names[i]), NULL, NULL, &e_));
        CHECK_MSG(lmio_statedict_open(scratch(names[i]), NULL, &back, &err) == LMIO_OK, "%s", err.message);
        CHECK(back && !strcmp(lmio_statedict_format(back), "safetensors"));
        lmio_statedict_free(back);
        back = NULL;
    }
    /* and other formats under a safetensors name: named for what they are */
    static const unsigned char gguf[24] = {'G', 'G', 'U', 'F', 3};
    write_bytes(scratch("a.safetensors"), gguf, sizeof gguf);
    CHECK_OK(lmio_statedict_open(scratch("a.safetensors"), NULL, &back, &e_));
    CHECK(back && !strcmp(lmio_statedict_format(back), "gguf"));
    lmio_statedict_free(back);
    back = NULL;
    static const unsigned char zip[30] = {'P', 'K', 3, 4, 20, 0};
    write_bytes(scratch("b.safetensors"), zip, sizeof zip);
    /* read as the zip it claims to be, so the error is a zip's */
    CHECK(lmio_statedict_open(scratch("b.safetensors"), NULL, &back, &err) == LMIO_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "no zip end record") != NULL, "%s", err.message);
    lmio_statedict_free(sd);
}

static void save_by_name(void)
{
    lmio_statedict *sd = small_sd();
    lmio_error err;
    CHECK_OK(lmio_statedict_save(sd, scratch("x.st"), "safetensors", NULL, &e_));
    CHECK(lmio_statedict_save(sd, scratch("y.st"), "frobnicate", NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK_MSG(strstr(err.message, "\"frobnicate\" is unknown") && strstr(err.message, "safetensors"), "%s",
              err.message);
    /* GGUF under any name: read back as what it is, names and values kept */
    CHECK_OK(lmio_statedict_save(sd, scratch("y.st"), "gguf", NULL, &e_));
    lmio_statedict *g = NULL;
    CHECK_OK(lmio_statedict_open(scratch("y.st"), NULL, &g, &e_));
    CHECK(g && !strcmp(lmio_statedict_format(g), "gguf") && lmio_statedict_count(g) == lmio_statedict_count(sd));
    for (size_t i = 0; g && i < lmio_statedict_count(sd); i++) {
        lmio_tensor a, b;
        lmio_statedict_get(sd, i, &a, NULL);
        CHECK(lmio_tensor_find(g, a.name, &b, NULL) == LMIO_OK && a.nbytes == b.nbytes && a.dtype == b.dtype &&
              a.ndim == b.ndim && (a.nbytes == 0 || !memcmp(a.data, b.data, a.nbytes)));
    }
    lmio_statedict_free(g);
    /* the old entry point is the same writer: same bytes */
    CHECK_OK(lmio_safetensors_save(sd, scratch("z.st"), NULL, &e_));
    FILE *a = fopen(scratch("x.st"), "rb"), *b = fopen(scratch("z.st"), "rb");
    char ba[4096], bb[4096];
    size_t na = a ? fread(ba, 1, sizeof ba, a) : 0, nb = b ? fread(bb, 1, sizeof bb, b) : 1;
    CHECK(na == nb && !memcmp(ba, bb, na));
    if (a) fclose(a);
    if (b) fclose(b);
    lmio_statedict_free(sd);
}

static void directories(void)
{
    lmio_statedict *sd = small_sd(), *w = NULL;
    lmio_error err;
    /* torch weights in a directory: found through the table, read by content */
    mkdir(scratch("bin"), 0777);
    static const unsigned char zip[30] = {'P', 'K', 3, 4, 20, 0};
    write_bytes(scratch("bin/pytorch_model.bin"), zip, sizeof zip);
    CHECK(lmio_pretrained_load(scratch("bin"), NULL, &w, NULL, &err) == LMIO_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "pytorch_model.bin") != NULL, "%s", err.message);
    /* safetensors beside it wins, as in Transformers */
    CHECK_OK(lmio_statedict_save(sd, scratch("bin/model.safetensors"), NULL, NULL, &e_));
    CHECK_MSG(lmio_pretrained_load(scratch("bin"), NULL, &w, NULL, &err) == LMIO_OK, "%s", err.message);
    lmio_statedict_free(w);
    /* saving a directory by format name */
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.format = "gguf";
    CHECK(lmio_pretrained_save(scratch("out"), NULL, sd, NULL, &o, &err) == LMIO_ERR_UNSUPPORTED);
    o.format = "safetensors";
    o.max_shard_size = 8;
    lmio_tensor t;
    static const float v2[4] = {5, 6, 7, 8};
    uint64_t shape[1] = {4};
    CHECK_OK(lmio_statedict_add(sd, "v", LMIO_DTYPE_F32, 1, shape, v2, sizeof v2, LMIO_BORROW, &e_));
    CHECK_MSG(lmio_pretrained_save(scratch("out"), NULL, sd, NULL, &o, &err) == LMIO_OK, "%s", err.message);
    struct stat st;
    CHECK(stat(scratch("out/model-00001-of-00002.safetensors"), &st) == 0);
    CHECK(stat(scratch("out/model.safetensors.index.json"), &st) == 0);
    CHECK_MSG(lmio_pretrained_load(scratch("out"), NULL, &w, NULL, &err) == LMIO_OK, "%s", err.message);
    CHECK(w && lmio_tensor_find(w, "v", &t, NULL) == LMIO_OK && ((const float *)t.data)[3] == 8);
    CHECK(w && lmio_metadata_find(w, "format") == NULL); /* shards' metadata is not the model's */
    lmio_statedict_free(w);
    lmio_statedict_free(sd);
}

static int same_file(const char *a, const char *b)
{
    char x[256], y[256];
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    size_t na = fa ? fread(x, 1, sizeof x, fa) : 0, nb = fb ? fread(y, 1, sizeof y, fb) : 0;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return fa && fb && na == nb && !memcmp(x, y, na);
}

/* lmio_pretrained_convert carries what it does not interpret */
static void carry(void)
{
    lmio_statedict *sd = small_sd();
    lmio_error err;
    mkdir(scratch("src"), 0777);
    mkdir(scratch("src/1_Pooling"), 0777);
    CHECK_OK(lmio_statedict_save(sd, scratch("src/model.safetensors"), NULL, NULL, &e_));
    write_bytes(scratch("src/vocab.txt"), "[PAD]\n[UNK]\n", 12);
    write_bytes(scratch("src/1_Pooling/config.json"), "{\"x\": 1}", 8);
    write_bytes(scratch("src/pytorch_model.bin"), "stale", 5);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.dtype = LMIO_DTYPE_BF16;
    CHECK_MSG(lmio_pretrained_convert(scratch("src"), scratch("dst"), &o, &err) == LMIO_OK, "%s", err.message);
    CHECK(same_file(scratch("src/vocab.txt"), scratch("dst/vocab.txt")));
    CHECK(same_file(scratch("src/1_Pooling/config.json"), scratch("dst/1_Pooling/config.json")));
    struct stat st;
    CHECK(stat(scratch("dst/pytorch_model.bin"), &st) != 0);         /* old weights are not carried */
    CHECK(stat(scratch("dst/generation_config.json"), &st) != 0);    /* nothing invented */
    lmio_statedict *w = NULL;
    lmio_tensor t;
    CHECK_OK(lmio_pretrained_load(scratch("dst"), NULL, &w, NULL, &e_));
    CHECK(w && lmio_tensor_find(w, "w", &t, NULL) == LMIO_OK && t.dtype == LMIO_DTYPE_BF16);
    lmio_statedict_free(w);
    /* a file linked out of the directory is not copied into the new one */
    write_bytes(scratch("secret.txt"), "s3cr3t", 6);
    CHECK(symlink(scratch("secret.txt"), scratch("src/notes.txt")) == 0);
    CHECK(lmio_pretrained_convert(scratch("src"), scratch("dst3"), &o, &err) != LMIO_OK);
    CHECK_MSG(strstr(err.message, "notes.txt") && strstr(err.message, "outside"), "%s", err.message);
    CHECK(stat(scratch("dst3"), &st) != 0);
    unlink(scratch("src/notes.txt"));
    /* what cannot be carried is an error, never left behind in silence */
    CHECK(mkfifo(scratch("src/pipe"), 0600) == 0);
    CHECK(lmio_pretrained_convert(scratch("src"), scratch("dst2"), &o, &err) == LMIO_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(err.message, "pipe") && strstr(err.message, "neither a regular file nor a directory"), "%s",
              err.message);
    CHECK(stat(scratch("dst2"), &st) != 0);
    lmio_statedict_free(sd);
}

int main(void)
{
    if (scratch_begin("formats")) return 1;
    table();
    by_content();
    save_by_name();
    directories();
    carry();
    scratch_end();
    return test_result("test_formats");
}
