/* Temporary files and directories of saves in flight: unique locked names
 * beside the destination, a registry a signal handler can empty, removal of
 * what a killed save left behind, and the I/O failure injection hook. */
#define _GNU_SOURCE
#include "core.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- I/O failure injection ---- */

static struct {
    atomic_long at[LMIO__IO_COUNT], calls[LMIO__IO_COUNT];
    int err, stall;
} g_fault;
static pthread_once_t g_fault_once = PTHREAD_ONCE_INIT;

static void fault_from_env(void)
{
    static const char *const names[LMIO__IO_COUNT] = {"write", "fsync", "rename", "dirsync"};
    const char *v = secure_getenv("LMIO_FAIL_IO");
    if (!v) return;
    for (int op = 0; op < LMIO__IO_COUNT; op++) {
        size_t l = strlen(names[op]);
        if (strncmp(v, names[op], l) || v[l] != ':') continue;
        char *end;
        long n = strtol(v + l + 1, &end, 10);
        if (n <= 0) return;
        atomic_store(&g_fault.at[op], n);
        g_fault.stall = !strcmp(end, ":stall");
        return;
    }
}

void lmio__io_fault_arm(lmio__io_op op, long n, int e)
{
    pthread_once(&g_fault_once, fault_from_env);
    for (int k = 0; k < LMIO__IO_COUNT; k++) {
        atomic_store(&g_fault.at[k], 0);
        atomic_store(&g_fault.calls[k], 0);
    }
    if (op < LMIO__IO_COUNT) atomic_store(&g_fault.at[op], n);
    g_fault.err = e > 0 ? e : EIO;
    g_fault.stall = e < 0;
}

long lmio__io_fault_calls(lmio__io_op op) { return atomic_load(&g_fault.calls[op]); }

int lmio__io_fault(lmio__io_op op)
{
    pthread_once(&g_fault_once, fault_from_env);
    long c = atomic_fetch_add(&g_fault.calls[op], 1) + 1;
    long at = atomic_load(&g_fault.at[op]);
    if (!at || c != at) return 0;
    while (g_fault.stall) pause(); /* until a signal handler ends the process */
    return g_fault.err ? g_fault.err : EIO;
}

/* ---- the registry lmio_cleanup_temporaries empties ----
 * Fixed slots in static storage, not a heap list: the cleanup runs inside a
 * signal handler, which may interrupt malloc or a registration, so it must
 * find every path without allocating or taking a lock. A slot is claimed
 * (FREE -> BUSY), filled, then published (LIVE); the handler reads only LIVE
 * slots. More saves in flight than slots is harmless: the extra ones are not
 * removed by a signal, but by the next save's sweep. */
enum { SLOT_FREE, SLOT_BUSY, SLOT_LIVE };
#define N_SLOTS 32
typedef struct temp_slot {
    atomic_int state;
    int is_dir;
    pid_t owner; /* a forked child must not delete its parent's files */
    char path[4200];
} temp_slot;
static temp_slot g_slots[N_SLOTS];

static int slot_register(const char *path, int is_dir)
{
    if (strlen(path) >= sizeof g_slots[0].path) return -1;
    for (int i = 0; i < N_SLOTS; i++) {
        int expect = SLOT_FREE;
        if (!atomic_compare_exchange_strong(&g_slots[i].state, &expect, SLOT_BUSY)) continue;
        strcpy(g_slots[i].path, path);
        g_slots[i].is_dir = is_dir;
        g_slots[i].owner = getpid();
        atomic_store(&g_slots[i].state, SLOT_LIVE);
        return i;
    }
    return -1;
}

void lmio__temp_unregister(int slot)
{
    if (slot >= 0 && slot < N_SLOTS) atomic_store(&g_slots[slot].state, SLOT_FREE);
}

struct dirent64_raw { /* the kernel's record, as getdents64(2) documents it */
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Empties and removes a staging directory with system calls only
 * (opendir/readdir may allocate, which a signal handler must not). Staging
 * directories are flat: lmio writes no subdirectories into them. */
static void remove_flat_dir_sigsafe(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        char buf[2048] __attribute__((aligned(8)));
        for (int pass = 0; pass < 1000; pass++) {
            long n, removed = 0;
            lseek(fd, 0, SEEK_SET);
            while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
                for (long off = 0; off < n;) {
                    struct dirent64_raw *d = (struct dirent64_raw *)(buf + off);
                    off += d->d_reclen;
                    if (strcmp(d->d_name, ".") && strcmp(d->d_name, "..") && unlinkat(fd, d->d_name, 0) == 0)
                        removed++;
                }
            if (!removed) break;
        }
        close(fd);
    }
    rmdir(path);
}

void lmio_cleanup_temporaries(void)
{
    int saved = errno; /* a handler must leave errno as it found it */
    pid_t me = getpid();
    /* files first: those inside a staging directory then go with it */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N_SLOTS; i++) {
            temp_slot *s = &g_slots[i];
            if (atomic_load(&s->state) != SLOT_LIVE || s->owner != me || s->is_dir != pass) continue;
            if (pass == 0) unlink(s->path);
            else remove_flat_dir_sigsafe(s->path);
            int expect = SLOT_LIVE;
            atomic_compare_exchange_strong(&s->state, &expect, SLOT_FREE);
        }
    errno = saved;
}

/* ---- creating ---- */

static void random_suffix(char out[7])
{
    static const char k_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static atomic_uint counter;
    unsigned char r[6];
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
        /* no entropy yet (early boot): O_EXCL still makes the name unique */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 20) ^ atomic_fetch_add(&counter, 1) * 2654435761u;
        for (int i = 0; i < 6; i++, x >>= 8) r[i] = (unsigned char)(x ^ (x >> 29));
    }
    for (int i = 0; i < 6; i++) out[i] = k_chars[r[i] % (sizeof k_chars - 1)];
    out[6] = 0;
}

/* True when fd still is the object named path: a sweeper of another
 * process may have removed the name between our create and our flock. */
static bool still_named(int fd, const char *path)
{
    struct stat a, b;
    return fstat(fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino &&
           a.st_nlink > 0;
}

int lmio__temp_create(const char *dir, const char *base, int is_dir, unsigned mode, char *path, size_t cap,
                      int *slot)
{
    *slot = -1;
    for (int attempt = 0; attempt < 100; attempt++) {
        char sfx[7];
        random_suffix(sfx);
        int n = snprintf(path, cap, "%s/.%s" LMIO__TMP_TAG "%s", dir, base, sfx);
        if (n < 0 || (size_t)n >= cap) {
            errno = ENAMETOOLONG;
            return -1;
        }
        int fd;
        if (is_dir) {
            if (mkdir(path, (mode_t)mode) != 0) {
                if (errno == EEXIST) continue;
                return -1;
            }
            fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        } else {
            /* O_EXCL already refuses any existing name, a symlink included;
             * O_NOFOLLOW says so explicitly */
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
            if (fd < 0 && errno == EEXIST) continue;
        }
        if (fd < 0) return -1;
        /* Blocking: only a sweeper that saw the fresh name holds it, for
         * the moment it takes to remove it; then we start again. */
        if (flock(fd, LOCK_EX) != 0 || !still_named(fd, path)) {
            close(fd);
            continue;
        }
        *slot = slot_register(path, is_dir);
        return fd;
    }
    errno = EEXIST;
    return -1;
}

/* ---- removing ---- */

int lmio__remove_tree_at(int dfd, const char *name)
{
    if (unlinkat(dfd, name, 0) == 0) return 0;
    if (errno != EISDIR && errno != EPERM) return errno == ENOENT ? 0 : -1;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) lmio__remove_tree_at(fd, e->d_name);
    closedir(d);
    return unlinkat(dfd, name, AT_REMOVEDIR);
}

/* A leftover may go only if we win its flock: the kernel drops the lock of
 * a save that died however it died, SIGKILL included, and never of a live
 * one. A PID in the name was the alternative, but PIDs are reused (a stale
 * file would then live forever), and a save in another PID namespace or on
 * another host sharing the directory would look dead and lose its file.
 * flock's known gap is network filesystems that grant every lock; there a
 * concurrent save to the same destination could lose its temporary file and
 * fail (it never replaces anything with partial data). */
static void remove_if_stale(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return;
    struct stat a, b;
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &a) == 0 &&
        fstatat(dfd, name, &b, AT_SYMLINK_NOFOLLOW) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
        lmio__remove_tree_at(dfd, name);
    close(fd);
}

void lmio__temp_sweep(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t bl = strlen(base), tl = strlen(LMIO__TMP_TAG);
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (n[0] == '.' && !strncmp(n + 1, base, bl) && !strncmp(n + 1 + bl, LMIO__TMP_TAG, tl) &&
            strlen(n + 1 + bl + tl) == 6)
            remove_if_stale(dirfd(d), n);
    }
    closedir(d);
}
