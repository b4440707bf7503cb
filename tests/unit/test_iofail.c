/* Every write, fsync, rename and directory fsync of every save path fails in
 * turn (through core's injection hook), then the disk really fills (a 1 MiB
 * tmpfs): each time the error names the destination, the destination is as
 * it was (or absent), and no temporary file is left (issue 8, item 2). */
#include "../../src/core/core.h"
#include "fixture.h"

#include <errno.h>
#include <sys/mount.h>
#include <unistd.h>

static lmio_statedict *g_old_w, *g_new_w;
static lmio_config *g_cfg;
static lmio_tokenizer *g_tok, *g_tok2;

typedef struct save_case {
    const char *name;
    lmio_status (*run)(const char *dest, lmio_error *err);
    void (*prepare)(const char *dest); /* puts the old destination back (or removes it) */
    int is_dir;
    int per_file; /* a directory whose files are each replaced atomically, not as a set */
} save_case;

/* ---- the save paths ---- */

static lmio_status run_atomic(const char *dest, lmio_error *err)
{
    static const char data[] = "new contents\n";
    return lmio_file_write_atomic(dest, data, sizeof data - 1, 1, err);
}
static lmio_status run_safetensors(const char *dest, lmio_error *err)
{
    return lmio_safetensors_save(g_new_w, dest, NULL, err);
}
static lmio_status run_config(const char *dest, lmio_error *err) { return lmio_config_save(g_cfg, dest, err); }
static lmio_status run_tokenizer(const char *dest, lmio_error *err) { return lmio_tokenizer_save(g_tok2, dest, err); }
static lmio_status run_single(const char *dest, lmio_error *err)
{
    return lmio_pretrained_save(dest, g_cfg, g_new_w, g_tok2, NULL, err);
}
static lmio_status run_sharded(const char *dest, lmio_error *err)
{
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 3000;
    return lmio_pretrained_save(dest, g_cfg, g_new_w, g_tok2, &o, err);
}

/* ---- the destinations as they were ---- */

static void rm_rf(const char *p)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", p);
    if (system(cmd) != 0) fprintf(stderr, "warning: rm -rf %s failed\n", p);
}

static void old_file(const char *dest)
{
    rm_rf(dest);
    fx_write_text(dest, "the old contents, which must survive\n");
}
static void no_file(const char *dest) { rm_rf(dest); }
static void old_safetensors(const char *dest)
{
    rm_rf(dest);
    lmio_safetensors_save(g_old_w, dest, NULL, NULL);
}
static void old_tokenizer_dir(const char *dest)
{
    rm_rf(dest);
    mkdir(dest, 0755);
    lmio_tokenizer_save(g_tok, dest, NULL);
}
static void old_model_dir(const char *dest)
{
    rm_rf(dest);
    lmio_pretrained_save(dest, g_cfg, g_old_w, g_tok, NULL, NULL);
}
static void no_dir(const char *dest) { rm_rf(dest); }

/* ---- comparing ---- */

static void state_of(const save_case *c, const char *dest, char *sig, size_t cap)
{
    if (c->is_dir) {
        fx_tree_sig(dest, sig, cap);
        return;
    }
    size_t n;
    char *b = fx_read(dest, &n);
    if (!b) {
        snprintf(sig, cap, "absent");
        return;
    }
    unsigned long h = 5381;
    for (size_t i = 0; i < n; i++) h = h * 33 + (unsigned char)b[i];
    snprintf(sig, cap, "%zu:%lx", n, h);
    free(b);
}

/* Each file of dir equals its version in a or in b (copies of the old and
 * the new directory). */
static int each_file_old_or_new(const char *dir, const char *a, const char *b)
{
    DIR *d = opendir(dir);
    if (!d) return 0;
    int ok = 1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char p[1200], pa[1200], pb[1200];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        if (!fx_same(p, pa) && !fx_same(p, pb)) {
            fprintf(stderr, "    %s is neither old nor new\n", e->d_name);
            ok = 0;
        }
    }
    closedir(d);
    return ok;
}

static const char *const k_ops[LMIO__IO_COUNT] = {"write", "fsync", "rename", "dirsync"};

static void fail_each_site(const save_case *c)
{
    char dest[700], parent[600], sig_old[200], sig_new[200], sig[200], olddir[700], newdir[700];
    snprintf(parent, sizeof parent, "%s", scratch("iofail"));
    snprintf(dest, sizeof dest, "%s/%s", parent, c->is_dir ? "dest" : "dest.file");
    rm_rf(parent);
    mkdir(parent, 0755);
    snprintf(olddir, sizeof olddir, "%s.old", parent);
    snprintf(newdir, sizeof newdir, "%s.new", parent);

    /* a clean run counts the sites and gives the new state */
    c->prepare(dest);
    state_of(c, dest, sig_old, sizeof sig_old);
    if (c->per_file) {
        rm_rf(olddir);
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", dest, olddir);
        CHECK(system(cmd) == 0);
    }
    lmio__io_fault_arm(LMIO__IO_COUNT, 0, 0);
    CHECK_OK(c->run(dest, &e_));
    long calls[LMIO__IO_COUNT];
    for (int op = 0; op < LMIO__IO_COUNT; op++) calls[op] = lmio__io_fault_calls((lmio__io_op)op);
    state_of(c, dest, sig_new, sizeof sig_new);
    if (c->per_file) {
        rm_rf(newdir);
        char cmd[1600];
        snprintf(cmd, sizeof cmd, "cp -a '%s' '%s'", dest, newdir);
        CHECK(system(cmd) == 0);
    }
    CHECK_MSG(strcmp(sig_old, sig_new), "%s: the new save equals the old one; the test could not tell them apart",
              c->name);
    int sites = 0;
    for (int op = 0; op < LMIO__IO_COUNT; op++)
        for (long k = 1; k <= calls[op]; k++, sites++) {
            c->prepare(dest);
            lmio_error err;
            lmio_error_clear(&err);
            lmio__io_fault_arm((lmio__io_op)op, k, EIO);
            lmio_status s = c->run(dest, &err);
            lmio__io_fault_arm(LMIO__IO_COUNT, 0, 0);
            state_of(c, dest, sig, sizeof sig);
            CHECK_MSG(s == LMIO_ERR_IO, "%s: %s #%ld: status %s", c->name, k_ops[op], k, lmio_status_str(s));
            CHECK_MSG(strstr(err.message, dest) && strstr(err.message, "Input/output error"),
                      "%s: %s #%ld: message '%s' does not name %s", c->name, k_ops[op], k, err.message, dest);
            /* after the rename only the directory sync can fail: the new
             * state is then complete, and the error says it was not synced */
            bool after_rename = op == LMIO__IO_DIRSYNC && strstr(err.message, "could not be synced");
            if (c->per_file)
                CHECK_MSG(each_file_old_or_new(dest, olddir, newdir), "%s: %s #%ld", c->name, k_ops[op], k);
            else
                CHECK_MSG(!strcmp(sig, sig_old) || (after_rename && !strcmp(sig, sig_new)),
                          "%s: %s #%ld: destination changed (%s)", c->name, k_ops[op], k, err.message);
            CHECK_MSG(fx_count_named(parent, LMIO__TMP_TAG) == 0, "%s: %s #%ld: temporary file left", c->name,
                      k_ops[op], k);
        }
    printf("%-34s %3d I/O sites failed in turn (write %ld, fsync %ld, rename %ld, dirsync %ld)\n", c->name, sites,
           calls[0], calls[1], calls[2], calls[3]);
    CHECK(calls[LMIO__IO_WRITE] > 0 && calls[LMIO__IO_RENAME] > 0 && calls[LMIO__IO_FSYNC] > 0 &&
          calls[LMIO__IO_DIRSYNC] > 0);
    rm_rf(olddir);
    rm_rf(newdir);
}

/* ---- a real full filesystem ---- */

static void full_disk(void)
{
    char mnt[600];
    snprintf(mnt, sizeof mnt, "%s", scratch("tmpfs"));
    mkdir(mnt, 0755);
    if (mount("lmio-test", mnt, "tmpfs", 0, "size=1m") != 0) {
        fprintf(stderr, "\n*** SKIPPED: the full-disk test cannot mount a 1 MiB tmpfs (%s); it needs root or "
                        "CAP_SYS_ADMIN. The injection tests above still ran. ***\n\n",
                strerror(errno));
        return;
    }
    char dest[700], ddest[700];
    snprintf(dest, sizeof dest, "%s/model.safetensors", mnt);
    snprintf(ddest, sizeof ddest, "%s/model", mnt);
    lmio_statedict *big = fx_weights(4, 1 << 16, 5); /* 1 MiB of data: more than is left */
    old_safetensors(dest);
    char before[200], after[200];
    save_case fc = {"", NULL, NULL, 0, 0};
    state_of(&fc, dest, before, sizeof before);
    lmio_error err;
    CHECK(lmio_safetensors_save(big, dest, NULL, &err) == LMIO_ERR_IO);
    CHECK_MSG(strstr(err.message, dest) && strstr(err.message, "No space left on device"), "%s", err.message);
    state_of(&fc, dest, after, sizeof after);
    CHECK(!strcmp(before, after));
    CHECK(fx_count_named(mnt, LMIO__TMP_TAG) == 0);

    old_model_dir(ddest);
    save_case dc = {"", NULL, NULL, 1, 0};
    state_of(&dc, ddest, before, sizeof before);
    CHECK(lmio_pretrained_save(ddest, g_cfg, big, g_tok2, NULL, &err) == LMIO_ERR_IO);
    CHECK_MSG(strstr(err.message, ddest) && strstr(err.message, "No space left on device"), "%s", err.message);
    state_of(&dc, ddest, after, sizeof after);
    CHECK(!strcmp(before, after));
    CHECK(fx_count_named(mnt, LMIO__TMP_TAG) == 0);
    /* and with room again, the same saves go through */
    unlink(dest);
    CHECK_OK(lmio_pretrained_save(ddest, g_cfg, g_new_w, g_tok2, NULL, &e_));
    printf("full tmpfs: file and directory saves failed with ENOSPC, old outputs intact\n");
    lmio_statedict_free(big);
    CHECK(umount(mnt) == 0);
}

int main(void)
{
    if (scratch_begin("iofail")) return 1;
    g_old_w = fx_weights(3, 256, 1);
    g_new_w = fx_weights(3, 300, 9);
    lmio_config_create_gpt2(&g_cfg, NULL);
    g_tok = fx_tokenizer(scratch("corpus.txt"));
    fx_write_text(scratch("corpus2.txt"), "a different corpus: dogs chase dogs, dogs chase cats\n");
    const char *files[] = {scratch("corpus2.txt")};
    lmio_train_opts o = LMIO_TRAIN_OPTS_INIT;
    o.vocab_size = 270;
    lmio_tokenizer_train(files, 1, &o, &g_tok2, NULL);

    static const save_case cases[] = {
        {"lmio_file_write_atomic (replace)", run_atomic, old_file, 0, 0},
        {"lmio_file_write_atomic (new)", run_atomic, no_file, 0, 0},
        {"lmio_safetensors_save (replace)", run_safetensors, old_safetensors, 0, 0},
        {"lmio_config_save (replace)", run_config, old_file, 0, 0},
        {"lmio_tokenizer_save (existing dir)", run_tokenizer, old_tokenizer_dir, 1, 1},
        {"lmio_pretrained_save single (replace)", run_single, old_model_dir, 1, 0},
        {"lmio_pretrained_save sharded (replace)", run_sharded, old_model_dir, 1, 0},
        {"lmio_pretrained_save sharded (new)", run_sharded, no_dir, 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) fail_each_site(&cases[i]);
    full_disk();

    lmio_statedict_free(g_old_w);
    lmio_statedict_free(g_new_w);
    lmio_config_free(g_cfg);
    lmio_tokenizer_free(g_tok);
    lmio_tokenizer_free(g_tok2);
    scratch_end();
    return test_result("test_iofail");
}
