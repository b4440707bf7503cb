/* Every format lmio ever wrote still loads: each tests/data/fixtures/
 * format-X.Y/ (see its README) is read by today's lmio, which must find
 * the same tensors in the directory, the single safetensors file and the
 * .bin; give the tokenizer ids and the logits recorded when the fixture was
 * made (lmio's own output then: a regression record, not a reference);
 * verify it (with its manifest from 1.1 on, structure only before); and
 * save it again: the single files byte-identical to the fixture's.
 *
 *   test_fixture DATA_DIR */
#include "fixture.h"

#include <math.h>
#include <stdbool.h>

static char g_scratch_dir[600];

static const char *fx_base(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* "ids": [1, 2, 3] and "text": "..." out of expected.json (written by
 * make_fixture.c in exactly that shape). */
static size_t read_expected(const char *path, int32_t *ids, size_t cap, char *text, size_t tcap)
{
    char *j = fx_read(path, NULL);
    size_t n = 0;
    const char *p = j ? strstr(j, "\"ids\": [") : NULL;
    const char *t = j ? strstr(j, "\"text\": \"") : NULL;
    CHECK_MSG(p && t, "%s: no ids or text", path);
    if (t) {
        t += 9;
        const char *e = strchr(t, '"');
        snprintf(text, tcap, "%.*s", e ? (int)(e - t) : 0, t);
    }
    for (p = p ? p + 8 : NULL; p && *p != ']' && n < cap;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (int32_t)v;
        p = end + (*end == ',' ? 1 : 0);
        while (*p == ' ') p++;
    }
    free(j);
    return n;
}

/* Tensor by tensor, the same names, dtypes, shapes and bytes. */
static void same_tensors(const char *what, const lmio_statedict *a, const lmio_statedict *b)
{
    CHECK_MSG(lmio_statedict_count(a) == lmio_statedict_count(b), "%s: %zu vs %zu tensors", what,
              lmio_statedict_count(a), lmio_statedict_count(b));
    for (size_t i = 0; i < lmio_statedict_count(a); i++) {
        lmio_tensor x, y;
        lmio_statedict_get(a, i, &x, NULL);
        bool found = lmio_tensor_find(b, x.name, &y, NULL) == LMIO_OK;
        CHECK_MSG(found && x.dtype == y.dtype && x.ndim == y.ndim && x.nbytes == y.nbytes &&
                      !memcmp(x.shape, y.shape, sizeof x.shape[0] * (size_t)x.ndim) &&
                      !memcmp(x.data, y.data, (size_t)x.nbytes),
                  "%s: tensor %s differs", what, x.name);
    }
}

static float *logits_of(const lmio_config *c, const lmio_statedict *w, const int32_t *ids, size_t n, size_t *vocab)
{
    lmio_model *m = NULL;
    CHECK_OK(lmio_model_create(c, w, &m, &e_));
    if (!m) return NULL;
    *vocab = lmio_model_vocab_size(m);
    float *l = calloc(n * *vocab, sizeof *l);
    CHECK_OK(lmio_model_logits(m, ids, n, l, &e_));
    lmio_model_free(m);
    return l;
}

/* The recorded logits, within what a reordered float sum may move them
 * (later versions may vectorise differently). */
static void compare_recorded(const char *fx, const float *got, size_t n)
{
    char p[700];
    snprintf(p, sizeof p, "%s/expected_logits.f32", fx);
    size_t bytes = 0;
    unsigned char *raw = (unsigned char *)fx_read(p, &bytes);
    CHECK_MSG(raw && bytes == n * 4, "%s: %zu bytes; expected %zu", p, bytes, n * 4);
    double worst = 0;
    for (size_t i = 0; raw && bytes == n * 4 && i < n; i++) {
        uint32_t u = (uint32_t)raw[4 * i] | (uint32_t)raw[4 * i + 1] << 8 | (uint32_t)raw[4 * i + 2] << 16 |
                     (uint32_t)raw[4 * i + 3] << 24;
        float want;
        memcpy(&want, &u, 4);
        double d = fabs((double)got[i] - want) / (1.0 + fabs(want));
        if (d > worst) worst = d;
    }
    CHECK_MSG(worst <= 1e-5, "%s: logits moved by %g (relative) from the recorded ones", fx, worst);
    free(raw);
}

static void integrity(const char *model, bool has_manifest)
{
    lmio_pretrained_load_opts lo = LMIO_PRETRAINED_LOAD_OPTS_INIT;
    lo.hashes = has_manifest ? LMIO_HASHES_REQUIRE : LMIO_HASHES_CHECK;
    lmio_statedict *w = NULL;
    lmio_error err;
    CHECK_MSG(lmio_pretrained_load_with(model, &lo, NULL, &w, NULL, &err) == LMIO_OK, "%s", err.message);
    lmio_statedict_free(w);
    lmio_verify_report r;
    CHECK_MSG(lmio_verify(model, NULL, &r, &err) == LMIO_OK, "%s", err.message);
}

/* Saved again by today's lmio: the single files byte for byte (the same
 * tensors give the same bytes, whatever version wrote them), the directory
 * in today's format with the same tensors. */
static void resave(const char *fx, const lmio_config *c, const lmio_statedict *w, const lmio_tokenizer *t,
                   const lmio_statedict *single, const lmio_statedict *bin)
{
    char out[800], a[1600], b[1600];
    snprintf(out, sizeof out, "%s/%s.safetensors", g_scratch_dir, fx_base(fx));
    snprintf(a, sizeof a, "%s/single.safetensors", fx);
    CHECK_OK(lmio_statedict_save(single, out, "safetensors", NULL, &e_));
    CHECK_MSG(fx_same(a, out), "%s: single.safetensors written differently", fx);
    /* torch.save names the archive's folder after the file: the same name */
    snprintf(out, sizeof out, "%s/%s-bin", g_scratch_dir, fx_base(fx));
    mkdir(out, 0777);
    snprintf(out, sizeof out, "%s/%s-bin/single.bin", g_scratch_dir, fx_base(fx));
    snprintf(a, sizeof a, "%s/single.bin", fx);
    CHECK_OK(lmio_statedict_save(bin, out, "pytorch", NULL, &e_));
    CHECK_MSG(fx_same(a, out), "%s: single.bin written differently", fx);

    snprintf(out, sizeof out, "%s/%s", g_scratch_dir, fx_base(fx));
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 8000;
    o.durable = 0;
    CHECK_OK(lmio_pretrained_save(out, c, w, t, &o, &e_));
    lmio_config *c2 = NULL;
    lmio_statedict *w2 = NULL;
    CHECK_OK(lmio_pretrained_load(out, &c2, &w2, NULL, &e_));
    if (w2) same_tensors("re-saved directory", w, w2);
    const char *fv = NULL;
    char want[32];
    snprintf(want, sizeof want, "%d.%d", LMIO_FORMAT_VERSION_MAJOR, LMIO_FORMAT_VERSION_MINOR);
    CHECK(c2 && lmio_config_get_string(c2, "lmio_format_version", &fv, NULL) == LMIO_OK && !strcmp(fv, want));
    lmio_config_free(c2);
    lmio_statedict_free(w2);
    snprintf(b, sizeof b, "%s/%s", out, LMIO_MANIFEST_NAME);
    CHECK(access(b, F_OK) == 0);
    CHECK_OK(lmio_manifest_check(out, NULL, NULL, &e_));
}

static void check_fixture(const char *fx)
{
    char model[1400], p[1600], text[512];
    snprintf(model, sizeof model, "%s/model", fx);
    snprintf(p, sizeof p, "%s/%s", model, LMIO_MANIFEST_NAME);
    struct stat st;
    bool has_manifest = stat(p, &st) == 0;
    unsigned major = 0, minor = 0;
    sscanf(fx_base(fx), "format-%u.%u", &major, &minor);
    CHECK_MSG(has_manifest == (major > 1 || minor >= 1), "%s: a manifest from format 1.1 on, none before", fx);

    lmio_config *c = NULL;
    lmio_statedict *w = NULL, *single = NULL, *bin = NULL;
    lmio_tokenizer *t = NULL;
    CHECK_OK(lmio_pretrained_load(model, &c, &w, &t, &e_));
    snprintf(p, sizeof p, "%s/single.safetensors", fx);
    CHECK_OK(lmio_statedict_open(p, NULL, &single, &e_));
    snprintf(p, sizeof p, "%s/single.bin", fx);
    CHECK_OK(lmio_statedict_open(p, NULL, &bin, &e_));
    if (!c || !w || !t || !single || !bin) return;
    same_tensors("directory vs single.safetensors", w, single);
    same_tensors("directory vs single.bin", w, bin);

    int32_t ids[64], *enc = NULL;
    size_t n_enc = 0, vocab = 0, vocab2 = 0;
    snprintf(p, sizeof p, "%s/expected.json", fx);
    size_t n = read_expected(p, ids, 64, text, sizeof text);
    CHECK_OK(lmio_tokenizer_encode(t, text, strlen(text), &enc, &n_enc, &e_));
    CHECK_MSG(n_enc == n && n > 0 && !memcmp(enc, ids, n * sizeof *ids), "%s: the tokenizer's ids changed", fx);
    lmio_free(enc);

    float *l = logits_of(c, w, ids, n, &vocab), *ls = logits_of(c, single, ids, n, &vocab2);
    CHECK(l && ls && vocab == vocab2 && !memcmp(l, ls, n * vocab * sizeof *l));
    if (l) compare_recorded(fx, l, n * vocab);
    free(l);
    free(ls);

    integrity(model, has_manifest);
    resave(fx, c, w, t, single, bin);
    lmio_config_free(c);
    lmio_statedict_free(w);
    lmio_statedict_free(single);
    lmio_statedict_free(bin);
    lmio_tokenizer_free(t);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    if (scratch_begin("fixture")) return 1;
    snprintf(g_scratch_dir, sizeof g_scratch_dir, "%s", scratch("."));
    char dir[600];
    snprintf(dir, sizeof dir, "%s/fixtures", argv[1]);
    DIR *d = opendir(dir);
    CHECK_MSG(d != NULL, "no %s", dir);
    struct dirent *e;
    int seen = 0;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "format-", 7)) continue;
        char fx[1200];
        snprintf(fx, sizeof fx, "%s/%s", dir, e->d_name);
        int before = g_failures;
        check_fixture(fx);
        if (g_failures == before)
            printf("%s: loads, same tensors and logits, verifies, saves the same bytes\n", e->d_name);
        seen++;
    }
    if (d) closedir(d);
    CHECK_MSG(seen >= 2, "%d fixtures; expected format-1.0 and format-1.1 at least", seen);
    scratch_end();
    return test_result("test_fixture");
}
