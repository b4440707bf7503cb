/* Small models and file helpers shared by the destination, input and I/O
 * failure tests. */
#ifndef LMIO_TEST_FIXTURE_H
#define LMIO_TEST_FIXTURE_H
#include "../test.h"
#include "lmio.h"

#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* n tensors "layer.<i>.weight" of elems F32 values (seeded), plus one I64. */
static inline lmio_statedict *fx_weights(int n, size_t elems, float seed)
{
    lmio_statedict *sd;
    if (lmio_statedict_create(&sd, NULL)) return NULL;
    float *v = malloc(elems * sizeof *v);
    for (int i = 0; i < n; i++) {
        for (size_t k = 0; k < elems; k++) v[k] = seed + (float)i + (float)k / 1024.0f;
        char name[64];
        snprintf(name, sizeof name, "layer.%d.weight", i);
        uint64_t shape[1] = {elems};
        lmio_statedict_add(sd, name, LMIO_DTYPE_F32, 1, shape, v, elems * 4, LMIO_COPY, NULL);
    }
    int64_t step = 7;
    lmio_statedict_add(sd, "step", LMIO_DTYPE_I64, 0, NULL, &step, 8, LMIO_COPY, NULL);
    free(v);
    return sd;
}

static inline void fx_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, n, f);
    fclose(f);
}

static inline void fx_write_text(const char *path, const char *s) { fx_write(path, s, strlen(s)); }

/* The whole file (malloc'd, NUL-terminated) or NULL; *n its size. */
static inline char *fx_read(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    size_t got = b ? fread(b, 1, (size_t)sz, f) : 0;
    fclose(f);
    if (b) b[got] = 0;
    if (n) *n = got;
    return b;
}

/* 1 when both files exist and hold the same bytes. */
static inline int fx_same(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    char *x = fx_read(a, &na), *y = fx_read(b, &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

/* Number of entries under dir (recursively) whose name holds needle. */
static inline int fx_count_named(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (strstr(e->d_name, needle)) n++;
        char sub[4400];
        if ((size_t)snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= sizeof sub) continue;
        struct stat st;
        if (lstat(sub, &st) == 0 && S_ISDIR(st.st_mode)) n += fx_count_named(sub, needle);
    }
    closedir(d);
    return n;
}

/* A recursive listing "name:size;..." of dir (sorted by readdir order is
 * not stable, so entries are sorted), for comparing a tree before and after. */
static inline void fx_tree_sig(const char *dir, char *out, size_t cap)
{
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cd '%s' 2>/dev/null && find . -printf '%%p %%s %%m\\n' | sort | md5sum", dir);
    FILE *p = popen(cmd, "r");
    out[0] = 0;
    if (!p) return;
    if (!fgets(out, (int)cap, p)) out[0] = 0;
    pclose(p);
    char cmd2[4400];
    snprintf(cmd2, sizeof cmd2, "cd '%s' 2>/dev/null && find . -type f -exec cat {} + | md5sum", dir);
    p = popen(cmd2, "r");
    if (!p) return;
    size_t l = strlen(out);
    if (!fgets(out + l, (int)(cap - l), p)) out[l] = 0;
    pclose(p);
}

/* A byte-level BPE trained on a few sentences. */
static inline lmio_tokenizer *fx_tokenizer(const char *scratch_file)
{
    fx_write_text(scratch_file, "the cat sat on the mat. the cat ate the rat. the rat sat on the cat\n");
    const char *files[] = {scratch_file};
    const char *special[] = {"<|endoftext|>"};
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    o.vocab_size = 280;
    o.special = special;
    o.n_special = 1;
    lmio_tokenizer *t = NULL;
    lmio_tokenizer_train(files, 1, &o, &t, NULL);
    return t;
}

#endif
