/* Saves whose tensors are views of a mapped input have the kernel copy
 * those bytes file to file (copy_file_range, file.c): the output must be
 * byte for byte what a save from ordinary memory writes, whatever the
 * offsets' alignment, across filesystems (where the kernel refuses and
 * write(2) takes over), for more inputs than keep a descriptor, and no
 * descriptor may outlive its state dict. */
#include "fixture.h"

#include <dirent.h>
#include <unistd.h>

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* Odd sizes, so tensors start at every alignment in the file. */
static lmio_statedict *odd_tensors(unsigned seed)
{
    static const size_t sizes[] = {70001, 3, 65536, 200003, 1 << 20, 65535, 131073};
    lmio_statedict *sd;
    lmio_statedict_create(&sd, NULL);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *b = malloc(sizes[i]);
        for (size_t k = 0; k < sizes[i]; k++) b[k] = (unsigned char)((k * 31 + i * 7 + seed) ^ (k >> 9));
        char name[32];
        snprintf(name, sizeof name, "t%zu", i);
        uint64_t shape[1] = {sizes[i]};
        lmio_statedict_add(sd, name, LMIO_DTYPE_U8, 1, shape, b, sizes[i], LMIO_COPY, NULL);
        free(b);
    }
    lmio_metadata_set(sd, "format", "pt", NULL);
    return sd;
}

/* src saved from memory, opened (mapped), saved again to out: same bytes. */
static void resave(const char *src, const char *out, unsigned seed)
{
    lmio_statedict *mem = odd_tensors(seed), *mapped;
    CHECK_OK(lmio_safetensors_save(mem, src, NULL, &e_));
    CHECK_OK(lmio_statedict_open(src, NULL, &mapped, &e_));
    CHECK_OK(lmio_safetensors_save(mapped, out, NULL, &e_));
    CHECK_MSG(fx_same(src, out), "%s re-saved as %s differs", src, out);
    lmio_statedict_free(mapped);
    lmio_statedict_free(mem);
}

int main(void)
{
    if (scratch_begin("kcopy")) return 1;
    int fds = count_fds();

    /* same filesystem: the kernel copies */
    resave(scratch("a.safetensors"), scratch("a-out.safetensors"), 1);

    /* a re-shard (another order and other offsets) from the mapping equals
     * the same re-shard from memory */
    lmio_statedict *mem = odd_tensors(2), *mapped;
    CHECK_OK(lmio_safetensors_save(mem, scratch("b.safetensors"), NULL, &e_));
    CHECK_OK(lmio_statedict_open(scratch("b.safetensors"), NULL, &mapped, &e_));
    lmio_pretrained_opts po = LMIO_PRETRAINED_OPTS_INIT;
    po.max_shard_size = 300000;
    CHECK_OK(lmio_pretrained_save(scratch("from-map"), NULL, mapped, NULL, &po, &e_));
    CHECK_OK(lmio_pretrained_save(scratch("from-mem"), NULL, mem, NULL, &po, &e_));
    int shards = 0;
    for (int k = 1; k <= 9; k++) {
        char a[600], b[600], name[64];
        snprintf(name, sizeof name, "model-%05d-of-", k);
        DIR *d = opendir(scratch("from-mem"));
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (!strncmp(e->d_name, name, strlen(name))) {
                snprintf(a, sizeof a, "%s/%s", scratch("from-map"), e->d_name);
                snprintf(b, sizeof b, "%s/%s", scratch("from-mem"), e->d_name);
                CHECK_MSG(fx_same(a, b), "shard %s differs", e->d_name);
                shards++;
            }
        if (d) closedir(d);
    }
    CHECK_MSG(shards >= 3, "%d shards", shards);
    lmio_statedict_free(mapped);
    lmio_statedict_free(mem);

    /* across filesystems (tmpfs to here): the kernel refuses, write(2) copies */
    char shm[128];
    snprintf(shm, sizeof shm, "/dev/shm/lmio-kcopy-%d.safetensors", (int)getpid());
    resave(shm, scratch("c-out.safetensors"), 3);
    unlink(shm);

    /* more inputs mapped at once than keep a descriptor */
    enum { N = 70 };
    lmio_statedict *many[N];
    lmio_statedict *one = odd_tensors(4);
    CHECK_OK(lmio_safetensors_save(one, scratch("m.safetensors"), NULL, &e_));
    lmio_statedict_free(one);
    for (int i = 0; i < N; i++) CHECK_OK(lmio_statedict_open(scratch("m.safetensors"), NULL, &many[i], &e_));
    CHECK(count_fds() <= fds + 64);
    CHECK_OK(lmio_safetensors_save(many[0], scratch("m-first.safetensors"), NULL, &e_));
    CHECK_OK(lmio_safetensors_save(many[N - 1], scratch("m-last.safetensors"), NULL, &e_));
    CHECK(fx_same(scratch("m.safetensors"), scratch("m-first.safetensors")));
    CHECK(fx_same(scratch("m.safetensors"), scratch("m-last.safetensors")));
    for (int i = 0; i < N; i++) lmio_statedict_free(many[i]);

    CHECK_MSG(count_fds() == fds, "%d descriptors open, %d before", count_fds(), fds);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_scratch);
    if (system(cmd) != 0) fprintf(stderr, "warning: %s failed\n", cmd);
    return test_result("test_kernel_copy");
}
