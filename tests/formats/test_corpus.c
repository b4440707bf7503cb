/* Replays tests/data: every corrupt file must fail with its expected status,
 * offset and message (naming the file); every good file must open, survive a
 * save, and reopen identical. */
#include "../../src/core/core.h"
#include "../test.h"

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

static lmio_status status_from(const char *s)
{
    if (!strcmp(s, "FORMAT")) return LMIO_ERR_FORMAT;
    if (!strcmp(s, "LIMIT")) return LMIO_ERR_LIMIT;
    if (!strcmp(s, "UNSUPPORTED")) return LMIO_ERR_UNSUPPORTED;
    return (lmio_status)-1;
}

static void corrupt(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/corrupt/EXPECTED", dir);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f) return;
    char line[1024];
    int cases = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        line[strcspn(line, "\n")] = 0;
        char *name = strtok(line, "\t"), *status = strtok(NULL, "\t"), *off = strtok(NULL, "\t"),
             *frag = strtok(NULL, "\t");
        if (!name || !status || !off || !frag) { CHECK_MSG(0, "bad EXPECTED line"); continue; }
        snprintf(path, sizeof path, "%s/corrupt/%s", dir, name);
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
            long want = atol(off);
            if (want >= 0) CHECK_MSG(err.offset == want, "%s: offset %lld, expected %ld", name, (long long)err.offset, want);
            else CHECK_MSG(err.offset >= 8, "%s: offset %lld, expected one inside the file", name, (long long)err.offset);
        }
        cases++;
    }
    fclose(f);
    CHECK_MSG(cases >= 30, "only %d corrupt cases", cases);
    printf("corrupt corpus: %d files, each rejected with its expected error\n", cases);
}

static void good(const char *dir)
{
    char gdir[1024];
    snprintf(gdir, sizeof gdir, "%s/good", dir);
    DIR *d = opendir(gdir);
    CHECK(d != NULL);
    if (!d) return;
    struct dirent *e;
    char out[256];
    snprintf(out, sizeof out, "/tmp/lmio-corpus-%d.safetensors", (int)getpid());
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1300];
        snprintf(path, sizeof path, "%s/%s", gdir, e->d_name);
        lmio_statedict *sd, *rd;
        lmio_error err;
        lmio_status s = lmio_statedict_open(path, NULL, &sd, &err);
        CHECK_MSG(s == LMIO_OK, "%s", err.message);
        if (s) continue;
        CHECK_OK(lmio_safetensors_save(sd, out, NULL, &e_));
        CHECK_OK(lmio_statedict_open(out, NULL, &rd, &e_));
        CHECK(lmio_statedict_count(rd) == lmio_statedict_count(sd));
        for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
            lmio_tensor a, b;
            lmio_statedict_get(sd, i, &a, NULL);
            CHECK(lmio_tensor_find(rd, a.name, &b, NULL) == LMIO_OK && a.nbytes == b.nbytes &&
                  a.dtype == b.dtype && (a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0));
        }
        CHECK(lmio_metadata_count(rd) == lmio_metadata_count(sd));
        lmio_statedict_free(rd);
        lmio_statedict_free(sd);
    }
    closedir(d);
    unlink(out);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "tests/data";
    corrupt(dir);
    good(dir);
    return test_result("test_corpus");
}
