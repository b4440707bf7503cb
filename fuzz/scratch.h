/* A private scratch directory for the targets that go through files (the
 * public API reads and writes paths): on tmpfs when there is one, so a
 * campaign of millions of saves neither wears a disk nor waits on fsync.
 * Header-only so each target stays one translation unit. */
#ifndef LMIO_FUZZ_SCRATCH_H
#define LMIO_FUZZ_SCRATCH_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_scratch_dir[256];

/* Empties and removes the scratch directory (subdirectories one level deep). */
static void fuzz_scratch_remove(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0) fuzz_scratch_remove(p);
    }
    closedir(d);
    rmdir(dir);
}

static void fuzz_scratch_cleanup(void) { fuzz_scratch_remove(fuzz_scratch_dir); }

static const char *fuzz_scratch(void)
{
    if (fuzz_scratch_dir[0]) return fuzz_scratch_dir;
    struct stat st;
    const char *base = getenv("LMIO_FUZZ_TMP");
    if (!base) base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(fuzz_scratch_dir, sizeof fuzz_scratch_dir, "%s/lmio-fuzz-%d", base, (int)getpid());
    if (mkdir(fuzz_scratch_dir, 0700) != 0) abort();
    atexit(fuzz_scratch_cleanup);
    return fuzz_scratch_dir;
}

/* Writes "<scratch>/<name>" into out. */
static void fuzz_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", fuzz_scratch(), name);
}

/* Writes data to <scratch>/<name>; false when it cannot (then skip the input). */
static int fuzz_put(const char *name, const void *data, size_t size)
{
    char p[512];
    fuzz_path(p, sizeof p, name);
    FILE *f = fopen(p, "wb");
    if (!f) return 0;
    int ok = (size == 0 || fwrite(data, 1, size, f) == size);
    return (fclose(f) == 0) && ok;
}

#endif
