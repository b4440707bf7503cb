/* SHA-256s of files written into staging directories, computed while the
 * bytes streamed out (lmio__outfile) and kept until the stage that commits
 * the directory writes its manifest, so a saved model is not read back
 * just to be hashed. An entry is used only while the file is provably the
 * one hashed: same device, inode, size and change time (any later write,
 * truncation or replacement changes one of them); otherwise the file is
 * hashed again from disk. (The kernel stamps ctime from a clock that
 * ticks every few milliseconds, so a same-size rewrite in place within one
 * tick of the write would go unseen; lmio's writers always replace a file
 * by rename, a new inode, and nothing else writes into a staging
 * directory.) Saves may run in several threads (a background checkpoint
 * writer), hence the lock. */
#include "core.h"

#include <pthread.h>
#include <string.h>

typedef struct entry {
    lmio__file_id dir, file;
    unsigned char sha[LMIO__SHA256_LEN];
} entry;

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static entry *g_entries;
static size_t g_count, g_cap;

static bool same_file(const lmio__file_id *a, const lmio__file_id *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->ctime_s == b->ctime_s &&
           a->ctime_ns == b->ctime_ns;
}

bool lmio__digest_put(const lmio__file_id *dir, const lmio__file_id *file, const unsigned char sha[LMIO__SHA256_LEN])
{
    pthread_mutex_lock(&g_lock);
    bool ok = lmio__grow((void **)&g_entries, sizeof *g_entries, g_count + 1, &g_cap);
    if (ok) {
        entry *e = &g_entries[g_count++];
        e->dir = *dir;
        e->file = *file;
        memcpy(e->sha, sha, LMIO__SHA256_LEN);
    }
    pthread_mutex_unlock(&g_lock);
    return ok;
}

bool lmio__digest_take(const lmio__file_id *file, unsigned char sha[LMIO__SHA256_LEN])
{
    bool found = false;
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_count && !found; i++)
        if (same_file(&g_entries[i].file, file)) {
            memcpy(sha, g_entries[i].sha, LMIO__SHA256_LEN);
            g_entries[i] = g_entries[--g_count];
            found = true;
        }
    pthread_mutex_unlock(&g_lock);
    return found;
}

void lmio__digest_forget(const lmio__file_id *dir)
{
    pthread_mutex_lock(&g_lock);
    for (size_t i = 0; i < g_count;)
        if (g_entries[i].dir.dev == dir->dev && g_entries[i].dir.ino == dir->ino) g_entries[i] = g_entries[--g_count];
        else i++;
    if (g_count == 0) {
        lmio__free(g_entries); /* no memory held between saves */
        g_entries = NULL;
        g_cap = 0;
    }
    pthread_mutex_unlock(&g_lock);
}
