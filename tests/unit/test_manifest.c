/* Integrity manifests: every directory lmio saves carries one, and a byte
 * flipped anywhere in any of its files (weights, config, every tokenizer
 * file, an optimizer state written into a staged checkpoint, the manifest
 * itself) is caught by verify with a message naming the file, and the
 * tensor when the byte is tensor data.
 *
 *   test_manifest DATA_DIR   (tests/data: the format 1.0 fixture is the model) */
#include "../../src/checkpoint/checkpoint.h"
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

static const char *g_data;
static uint64_t g_rng = 0x2545F4914F6CDD1DULL;

static uint64_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

/* ---- what verify heard ---- */

typedef struct heard {
    int events[8];
    char file[1024], tensor[512]; /* of the first error */
} heard;

static void on_finding(void *ctx, lmio_integrity_event ev, const char *file, const char *tensor, const char *msg)
{
    heard *h = ctx;
    h->events[ev]++;
    if (ev >= LMIO_INTEGRITY_MISSING && !h->file[0]) {
        snprintf(h->file, sizeof h->file, "%s", file);
        snprintf(h->tensor, sizeof h->tensor, "%s", tensor ? tensor : "");
    }
}

/* lmio_verify for a model directory; the manifest alone for the test's
 * checkpoint, which holds no model (a trainer's holds one beside). */
static lmio_status verify(const char *dir, heard *h, lmio_error *err)
{
    memset(h, 0, sizeof *h);
    if (strstr(dir, "/ckpt")) return lmio_manifest_check(dir, on_finding, h, err);
    lmio_verify_opts o = LMIO_VERIFY_OPTS_INIT;
    o.integrity_fn = on_finding;
    o.integrity_ctx = h;
    return lmio_verify(dir, &o, NULL, err);
}

/* ---- the directories under test ---- */

/* The fixture's model re-saved: sharded weights, config, generation
 * config, index, the five tokenizer files, and the manifest. */
static void make_model_dir(const char *dir)
{
    char src[600];
    snprintf(src, sizeof src, "%s/fixtures/format-1.0/model", g_data);
    lmio_config *c;
    lmio_statedict *w;
    lmio_tokenizer *t;
    CHECK_OK(lmio_pretrained_load(src, &c, &w, &t, &e_));
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 8000;
    o.durable = 0;
    CHECK_OK(lmio_pretrained_save(dir, c, w, t, &o, &e_));
    lmio_config_free(c);
    lmio_statedict_free(w);
    lmio_tokenizer_free(t);
}

/* A training checkpoint as a trainer writes one through the staged commit:
 * an optimizer state (AdamW moments named after their parameters) and a
 * JSON state, written into the stage by the caller; the manifest comes from
 * the commit alone. */
static void make_checkpoint_dir(const char *dir)
{
    lmio__stage st;
    lmio_error err;
    CHECK_OK(lmio__stage_begin(&st, dir, 0, 0, NULL, &err));
    lmio_statedict *opt = fx_weights(3, 300, 0.25f);
    lmio_statedict *v = fx_weights(3, 300, -0.5f);
    lmio_statedict *both;
    CHECK_OK(lmio_statedict_create(&both, &e_));
    for (size_t i = 0; i < lmio_statedict_count(opt); i++) {
        lmio_tensor a, b;
        char n[128];
        lmio_statedict_get(opt, i, &a, NULL);
        lmio_statedict_get(v, i, &b, NULL);
        snprintf(n, sizeof n, "%s.exp_avg", a.name);
        CHECK_OK(lmio_statedict_add(both, n, a.dtype, a.ndim, a.shape, a.data, a.nbytes, LMIO_COPY, &e_));
        snprintf(n, sizeof n, "%s.exp_avg_sq", b.name);
        CHECK_OK(lmio_statedict_add(both, n, b.dtype, b.ndim, b.shape, b.data, b.nbytes, LMIO_COPY, &e_));
    }
    char p[8192];
    snprintf(p, sizeof p, "%s/optimizer.safetensors", st.tmp);
    lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
    so.durable = 0;
    CHECK_OK(lmio_statedict_save(both, p, "safetensors", &so, &e_));
    snprintf(p, sizeof p, "%s/trainer_state.json", st.tmp);
    const char *state = "{\n  \"global_step\": 7\n}\n";
    CHECK_OK(lmio_file_write_atomic(p, state, strlen(state), 0, &e_));
    CHECK_OK(lmio__stage_commit(&st, &err));
    lmio__stage_abort(&st);
    lmio_statedict_free(opt);
    lmio_statedict_free(v);
    lmio_statedict_free(both);
}

/* ---- flipping bytes ---- */

static void xor_byte(const char *path, uint64_t off, unsigned char mask)
{
    int fd = open(path, O_RDWR);
    unsigned char b = 0;
    CHECK(fd >= 0 && pread(fd, &b, 1, (off_t)off) == 1);
    b ^= mask;
    CHECK(pwrite(fd, &b, 1, (off_t)off) == 1);
    close(fd);
}

/* The tensor whose data holds byte off of path, or NULL (header, padding,
 * or not a file of tensors). Names are copied into out. */
static const char *tensor_at(const char *path, uint64_t off, char *out, size_t cap)
{
    lmio_statedict *sd;
    if (lmio_statedict_open(path, NULL, &sd, NULL) != LMIO_OK) return NULL;
    const char *found = NULL;
    for (size_t i = 0; i < lmio_statedict_count(sd) && !found; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        if (t.file_offset >= 0 && off >= (uint64_t)t.file_offset && off < (uint64_t)t.file_offset + t.nbytes) {
            snprintf(out, cap, "%s", t.name);
            found = out;
        }
    }
    lmio_statedict_free(sd);
    return found;
}

/* Flips n random bytes of dir/name, one at a time: each must be caught,
 * naming the file (and tensor), and undoing it must verify clean again.
 * Returns how many flips were made. */
static int flip_file(const char *dir, const char *name, int n)
{
    char path[2048];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) return 0;
    struct stat st;
    CHECK_MSG(stat(path, &st) == 0, "%s missing", path);
    if (st.st_size == 0) return 0;
    int made = 0;
    for (int k = 0; k < n; k++, made++) {
        /* the first byte, the last, and random ones between */
        uint64_t off = k == 0 ? 0 : k == 1 ? (uint64_t)st.st_size - 1 : rnd() % (uint64_t)st.st_size;
        unsigned char mask = (unsigned char)(1u << (rnd() % 8));
        char tname[512];
        const char *tensor = tensor_at(path, off, tname, sizeof tname);
        xor_byte(path, off, mask);
        heard h;
        lmio_error err;
        lmio_status s = verify(dir, &h, &err);
        CHECK_MSG(s == LMIO_ERR_INTEGRITY, "%s byte %llu flipped: %s", name, (unsigned long long)off,
                  s ? err.message : "verified");
        CHECK_MSG(strstr(err.message, name) && strstr(err.path, name), "%s byte %llu: %s", name,
                  (unsigned long long)off, err.message);
        CHECK_MSG(strstr(h.file, name), "%s byte %llu: the finding names %s", name, (unsigned long long)off, h.file);
        if (tensor) {
            CHECK_MSG(!strcmp(err.key, tensor) && strstr(err.message, tensor), "%s byte %llu in %s: %s", name,
                      (unsigned long long)off, tensor, err.message);
            CHECK(h.events[LMIO_INTEGRITY_CORRUPT_TENSOR] == 1);
        }
        xor_byte(path, off, mask);
        CHECK_MSG(verify(dir, &h, &err) == LMIO_OK, "%s restored: %s", name, err.message);
    }
    return made;
}

/* Every file of dir (the manifest included) gets n flips. */
static int flip_all(const char *dir, int n, int *files)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int made = 0;
    char names[64][256];
    int count = 0;
    while (d && (e = readdir(d)) && count < 64)
        if (e->d_name[0] != '.') snprintf(names[count++], sizeof names[0], "%s", e->d_name);
    if (d) closedir(d);
    for (int i = 0; i < count; i++) made += flip_file(dir, names[i], n);
    *files = count;
    return made;
}

static void test_flips(void)
{
    make_model_dir(scratch("model"));
    make_checkpoint_dir(scratch("ckpt"));
    heard h;
    lmio_error err;
    CHECK_MSG(verify(scratch("model"), &h, &err) == LMIO_OK, "%s", err.message);
    CHECK(h.events[LMIO_INTEGRITY_VERIFIED] == 1);
    CHECK_MSG(verify(scratch("ckpt"), &h, &err) == LMIO_OK, "%s", err.message);
    CHECK(h.events[LMIO_INTEGRITY_VERIFIED] == 1);
    /* every kind of file is there to be flipped */
    const char *kinds[] = {"config.json", "generation_config.json", "model.safetensors.index.json",
                           "model-00001-of-00006.safetensors", "model-00006-of-00006.safetensors", "tokenizer.json",
                           "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt",
                           LMIO_MANIFEST_NAME};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        struct stat st;
        char p[700];
        snprintf(p, sizeof p, "%s/%s", scratch("model"), kinds[i]);
        CHECK_MSG(stat(p, &st) == 0, "%s missing", kinds[i]);
    }
    int fm = 0, fc = 0;
    int flips = flip_all(scratch("model"), 12, &fm) + flip_all(scratch("ckpt"), 24, &fc);
    CHECK_MSG(fm == 15 && fc == 3, "%d and %d files", fm, fc); /* 6 shards, index, 2 configs, 5 tokenizer files, manifest */
    printf("%d byte flips made in %d files\n", flips, fm + fc);
}

/* Missing and unlisted files; a directory that was never given a manifest. */
static void test_missing_unlisted(void)
{
    heard h;
    lmio_error err;
    char p[700];
    snprintf(p, sizeof p, "%s/README.md", scratch("model"));
    fx_write_text(p, "not lmio's\n");
    CHECK_MSG(verify(scratch("model"), &h, &err) == LMIO_OK, "%s", err.message);
    CHECK(h.events[LMIO_INTEGRITY_UNLISTED] == 1 && h.events[LMIO_INTEGRITY_VERIFIED] == 1);
    unlink(p);
    snprintf(p, sizeof p, "%s/merges.txt", scratch("model"));
    char *keep = fx_read(p, NULL);
    unlink(p);
    CHECK(verify(scratch("model"), &h, &err) == LMIO_ERR_INTEGRITY);
    CHECK(h.events[LMIO_INTEGRITY_MISSING] == 1 && strstr(err.message, "merges.txt: missing"));
    fx_write_text(p, keep);
    free(keep);
    CHECK_MSG(verify(scratch("model"), &h, &err) == LMIO_OK, "%s", err.message);
    /* no manifest: structure only, and said */
    char fixture[600];
    snprintf(fixture, sizeof fixture, "%s/fixtures/format-1.0/model", g_data);
    CHECK_MSG(verify(fixture, &h, &err) == LMIO_OK, "%s", err.message);
    CHECK(h.events[LMIO_INTEGRITY_NO_MANIFEST] == 1 && h.events[LMIO_INTEGRITY_VERIFIED] == 0);
}

/* Loading hashes nothing by default; LMIO_HASHES_CHECK refuses a damaged
 * directory, LMIO_HASHES_REQUIRE one without a manifest. */
static void test_load_options(void)
{
    char shard[700], fixture[600];
    snprintf(shard, sizeof shard, "%s/model-00003-of-00006.safetensors", scratch("model"));
    snprintf(fixture, sizeof fixture, "%s/fixtures/format-1.0/model", g_data);
    struct stat st;
    stat(shard, &st);
    xor_byte(shard, (uint64_t)st.st_size - 3, 0x10); /* tensor data: still loads */
    lmio_pretrained_load_opts o = LMIO_PRETRAINED_LOAD_OPTS_INIT;
    lmio_statedict *w = NULL;
    lmio_error err;
    CHECK_OK(lmio_pretrained_load_with(scratch("model"), &o, NULL, &w, NULL, &e_));
    lmio_statedict_free(w);
    CHECK_OK(lmio_pretrained_load(scratch("model"), NULL, &w, NULL, &e_));
    lmio_statedict_free(w);
    o.hashes = LMIO_HASHES_CHECK;
    w = NULL;
    CHECK(lmio_pretrained_load_with(scratch("model"), &o, NULL, &w, NULL, &err) == LMIO_ERR_INTEGRITY);
    CHECK(w == NULL && strstr(err.message, "model-00003-of-00006.safetensors") && err.key[0]);
    xor_byte(shard, (uint64_t)st.st_size - 3, 0x10);
    CHECK_OK(lmio_pretrained_load_with(scratch("model"), &o, NULL, &w, NULL, &e_));
    lmio_statedict_free(w);
    CHECK_OK(lmio_pretrained_load_with(fixture, &o, NULL, &w, NULL, &e_)); /* 1.0: nothing to check */
    lmio_statedict_free(w);
    o.hashes = LMIO_HASHES_REQUIRE;
    CHECK(lmio_pretrained_load_with(fixture, &o, NULL, &w, NULL, &err) == LMIO_ERR_INTEGRITY);
    CHECK(strstr(err.message, LMIO_MANIFEST_NAME) != NULL);
    o.hashes = (lmio_hash_check)7;
    CHECK(lmio_pretrained_load_with(fixture, &o, NULL, &w, NULL, &err) == LMIO_ERR_INVALID_ARG);
}

/* A digest computed while a file streamed out is used only for that very
 * version of the file: one rewritten in place afterwards (same size, same
 * inode) is hashed again, or the manifest would vouch for bytes it never saw. */
static void test_stale_digest(void)
{
    lmio__stage st;
    lmio_error err;
    CHECK_OK(lmio__stage_begin(&st, scratch("stale"), 0, 0, NULL, &err));
    char p[8192];
    snprintf(p, sizeof p, "%s/trainer_state.json", st.tmp);
    CHECK_OK(lmio_file_write_atomic(p, "{\"global_step\": 1}\n", 19, 0, &e_));
    struct timespec ts = {0, 30 * 1000 * 1000}; /* past the coarse clock's tick, so ctime moves */
    nanosleep(&ts, NULL);
    fx_write_text(p, "{\"global_step\": 2}\n");
    CHECK_OK(lmio__stage_commit(&st, &err));
    lmio__stage_abort(&st);
    heard h;
    CHECK_MSG(lmio_manifest_check(scratch("stale"), on_finding, &h, &err) == LMIO_OK, "%s", err.message);
}

/* A manifest is data from a file: its paths must stay inside the directory,
 * even when its own checksum is right. */
static void test_hostile_manifest(void)
{
    mkdir(scratch("hostile"), 0777);
    fx_write_text(scratch("secret"), "outside\n");
    char body[1024], hex[65], text[1200], p[700];
    snprintf(body, sizeof body,
             "{\n  \"lmio_version\": \"0.1.0\",\n  \"lmio_format_version\": \"1.1\",\n  \"files\": [\n"
             "    {\"path\": \"../secret\", \"size\": 8, \"sha256\": \"%064d\"}\n  ],\n",
             0);
    unsigned char sha[32];
    CHECK(lmio__sha256_once(body, strlen(body), sha));
    lmio__hex(hex, sha, 32);
    snprintf(text, sizeof text, "%s  \"manifest_sha256\": \"%s\"\n}\n", body, hex);
    snprintf(p, sizeof p, "%s/%s", scratch("hostile"), LMIO_MANIFEST_NAME);
    fx_write_text(p, text);
    heard h = {0};
    lmio_error err;
    CHECK(lmio_manifest_check(scratch("hostile"), on_finding, &h, &err) == LMIO_ERR_INTEGRITY);
    CHECK(h.events[LMIO_INTEGRITY_CORRUPT_MANIFEST] == 1 && strstr(err.message, "files[0] is malformed"));
    /* and a newer major format is refused, not misread */
    snprintf(body, sizeof body, "{\n  \"lmio_format_version\": \"2.0\",\n  \"files\": [],\n");
    CHECK(lmio__sha256_once(body, strlen(body), sha));
    lmio__hex(hex, sha, 32);
    snprintf(text, sizeof text, "%s  \"manifest_sha256\": \"%s\"\n}\n", body, hex);
    fx_write_text(p, text);
    CHECK(lmio_manifest_check(scratch("hostile"), NULL, NULL, &err) == LMIO_ERR_UNSUPPORTED);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    g_data = argv[1];
    if (scratch_begin("manifest")) return 1;
    test_flips();
    test_missing_unlisted();
    test_load_options();
    test_stale_digest();
    test_hostile_manifest();
    scratch_end();
    return test_result("test_manifest");
}
