/* Destinations, temporary files and inputs that someone else made: refused
 * or handled safely, never a hang, a crash or lost data (issue 7). An
 * alarm turns any hang into a failure. */
#include "../../src/checkpoint/checkpoint.h"
#include "../../src/core/core.h"
#include "../../src/formats/formats.h"
#include "fixture.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static lmio_error err;

static mode_t mode_of(const char *p)
{
    struct stat st;
    return lstat(p, &st) == 0 ? st.st_mode : 0;
}

/* ---- file destinations ---- */

static void nonregular_destinations(void)
{
    const char *data = "hello";
    /* a FIFO: opening it for writing would block; replacing it would
     * silently turn it into a file */
    mkfifo(scratch("fifo"), 0644);
    CHECK(lmio_file_write_atomic(scratch("fifo"), data, 5, 1, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "fifo: is a FIFO; expected a regular file") != NULL);
    CHECK(S_ISFIFO(mode_of(scratch("fifo"))));
    lmio_statedict *sd = fx_weights(1, 16, 1);
    CHECK(lmio_safetensors_save(sd, scratch("fifo"), NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(S_ISFIFO(mode_of(scratch("fifo"))));
    /* a device node (what /dev/null is) */
    CHECK(mknod(scratch("null"), S_IFCHR | 0666, makedev(1, 3)) == 0);
    CHECK(lmio_safetensors_save(sd, scratch("null"), NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "null: is a device") != NULL);
    CHECK(S_ISCHR(mode_of(scratch("null"))));
    /* a socket */
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", scratch("sock"));
    CHECK(bind(sfd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(lmio_file_write_atomic(scratch("sock"), data, 5, 0, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "is a socket") != NULL);
    CHECK(S_ISSOCK(mode_of(scratch("sock"))));
    close(sfd);
    /* a symlink to a FIFO is refused too; one to a file replaces the link
     * entry and never writes through it */
    CHECK(symlink(scratch("fifo"), scratch("to-fifo")) == 0);
    CHECK(lmio_file_write_atomic(scratch("to-fifo"), data, 5, 0, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "is a symlink to a FIFO") != NULL);
    fx_write_text(scratch("target"), "precious");
    CHECK(symlink(scratch("target"), scratch("to-target")) == 0);
    CHECK_OK(lmio_file_write_atomic(scratch("to-target"), data, 5, 0, &e_));
    char *t = fx_read(scratch("target"), NULL);
    CHECK(t && !strcmp(t, "precious"));
    free(t);
    CHECK(S_ISREG(mode_of(scratch("to-target"))));
    /* a trailing slash names a directory, not a file */
    CHECK(lmio_file_write_atomic(scratch("x/"), data, 5, 0, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "ends with '/'") != NULL);
    CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);
    lmio_statedict_free(sd);
}

static void mode_and_owner_kept(void)
{
    mode_t old = umask(022);
    const char *p = scratch("private.safetensors");
    lmio_statedict *sd = fx_weights(2, 16, 1);
    CHECK_OK(lmio_safetensors_save(sd, p, NULL, &e_));
    CHECK((mode_of(p) & 07777) == 0644); /* new: 0666 & ~umask */
    chmod(p, 0600);
    CHECK_OK(lmio_safetensors_save(sd, p, NULL, &e_));
    CHECK_MSG((mode_of(p) & 07777) == 0600, "mode %o", mode_of(p) & 07777);
    chmod(p, 0640);
    CHECK_OK(lmio_file_write_atomic(p, "x", 1, 0, &e_));
    CHECK((mode_of(p) & 07777) == 0640);
    if (geteuid() == 0) {
        CHECK(chown(p, 1234, 5678) == 0);
        CHECK_OK(lmio_safetensors_save(sd, p, NULL, &e_));
        struct stat st;
        CHECK(stat(p, &st) == 0 && st.st_uid == 1234 && st.st_gid == 5678);
    }
    umask(old);
    lmio_statedict_free(sd);
}

/* ---- temporary files ---- */

typedef struct probe {
    const char *dir;
    int seen, locked, cleaned;
} probe;

/* The first progress call happens with the temporary file created: look
 * at it as another process would, then empty the registry as a signal
 * handler would. */
static int probe_progress(void *ctx, uint64_t done, uint64_t total)
{
    probe *p = ctx;
    (void)done, (void)total;
    if (p->seen) return 0;
    DIR *d = opendir(p->dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, ".live.safetensors" LMIO__TMP_TAG, strlen(".live.safetensors" LMIO__TMP_TAG)))
            continue;
        p->seen = strlen(e->d_name) == strlen(".live.safetensors" LMIO__TMP_TAG) + 6;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", p->dir, e->d_name);
        int fd = open(path, O_RDONLY);
        p->locked = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
        if (fd >= 0) close(fd);
    }
    if (d) closedir(d);
    lmio_cleanup_temporaries();
    p->cleaned = fx_count_named(p->dir, LMIO__TMP_TAG) == 0;
    return 0;
}

static void temporaries(void)
{
    mkdir(scratch("tmp"), 0755);
    char dest[600];
    snprintf(dest, sizeof dest, "%s/live.safetensors", scratch("tmp"));
    lmio_statedict *sd = fx_weights(2, 1 << 16, 1);
    fx_write_text(dest, "old");
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    probe p = {scratch("tmp"), 0, 0, 0};
    o.progress = probe_progress;
    o.progress_ctx = &p;
    /* the save whose temporary file the "signal" removed fails, cleanly */
    CHECK(lmio_safetensors_save(sd, dest, &o, &err) == LMIO_ERR_IO);
    CHECK(p.seen && p.locked && p.cleaned);
    char *t = fx_read(dest, NULL);
    CHECK(t && !strcmp(t, "old"));
    free(t);

    /* leftovers of killed saves go with the next save to the same place;
     * one a live save holds (its flock) stays */
    char stale[700], live[700], other[700];
    snprintf(stale, sizeof stale, "%s/.live.safetensors" LMIO__TMP_TAG "AbC123", scratch("tmp"));
    snprintf(live, sizeof live, "%s/.live.safetensors" LMIO__TMP_TAG "LiVe99", scratch("tmp"));
    snprintf(other, sizeof other, "%s/.other.safetensors" LMIO__TMP_TAG "AbC123", scratch("tmp"));
    fx_write_text(stale, "partial");
    fx_write_text(live, "partial");
    fx_write_text(other, "partial");
    int lfd = open(live, O_RDONLY);
    CHECK(flock(lfd, LOCK_EX) == 0);
    CHECK_OK(lmio_safetensors_save(sd, dest, NULL, &e_));
    CHECK(access(stale, F_OK) != 0);
    CHECK(access(live, F_OK) == 0);
    CHECK(access(other, F_OK) == 0); /* another destination's: not ours to judge */
    close(lfd);
    CHECK_OK(lmio_safetensors_save(sd, dest, NULL, &e_));
    CHECK(access(live, F_OK) != 0);
    unlink(other);

    /* a real killed save: a child stalls in its first write and is
     * SIGKILLed; until then its file survives other saves */
    pid_t pid = fork();
    if (pid == 0) {
        lmio__io_fault_arm(LMIO__IO_WRITE, 1, -1);
        lmio_safetensors_save(sd, dest, NULL, NULL);
        _exit(0);
    }
    for (int i = 0; i < 500 && fx_count_named(scratch("tmp"), LMIO__TMP_TAG) == 0; i++) usleep(10000);
    CHECK(fx_count_named(scratch("tmp"), LMIO__TMP_TAG) == 1);
    CHECK_OK(lmio_safetensors_save(sd, dest, NULL, &e_));
    CHECK(fx_count_named(scratch("tmp"), LMIO__TMP_TAG) == 1); /* the live one stayed */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK(fx_count_named(scratch("tmp"), LMIO__TMP_TAG) == 1); /* SIGKILL left it */
    CHECK_OK(lmio_safetensors_save(sd, dest, NULL, &e_));
    CHECK(fx_count_named(scratch("tmp"), LMIO__TMP_TAG) == 0);

    /* the same for a directory save killed mid-way */
    char ddest[700];
    snprintf(ddest, sizeof ddest, "%s/model", scratch("tmp"));
    pid = fork();
    if (pid == 0) {
        lmio__io_fault_arm(LMIO__IO_WRITE, 2, -1);
        lmio_pretrained_save(ddest, NULL, sd, NULL, NULL, NULL);
        _exit(0);
    }
    for (int i = 0; i < 500 && fx_count_named(scratch("tmp"), LMIO__TMP_TAG) < 2; i++) usleep(10000);
    CHECK(fx_count_named(scratch("tmp"), ".model" LMIO__TMP_TAG) == 1);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    CHECK_OK(lmio_pretrained_save(ddest, NULL, sd, NULL, NULL, &e_));
    CHECK_MSG(fx_count_named(scratch("tmp"), LMIO__TMP_TAG) == 0, "%d left", fx_count_named(scratch("tmp"), LMIO__TMP_TAG));
    lmio_statedict_free(sd);
}

/* ---- directory destinations ---- */

static void make_tree(const char *root, const char *const *files)
{
    char p[1024];
    for (int i = 0; files[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", root, files[i]);
        for (char *s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
            *s = 0;
            mkdir(p, 0755);
            *s = '/';
        }
        fx_write_text(p, files[i]);
    }
}

static void directory_destinations(void)
{
    lmio_config *cfg;
    lmio_config_create_gpt2(&cfg, NULL);
    lmio_statedict *sd = fx_weights(3, 256, 2);
    lmio_tokenizer *tok = fx_tokenizer(scratch("corpus.txt"));
    char sig[256], sig2[256];

    /* a project folder with its own config.json: never replaced */
    mkdir(scratch("project"), 0755);
    make_tree(scratch("project"), (const char *[]){"config.json", "src/main.c", ".git/HEAD", NULL});
    fx_tree_sig(scratch("project"), sig, sizeof sig);
    CHECK(lmio_pretrained_save(scratch("project"), cfg, sd, tok, NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "which lmio does not write") != NULL && strstr(err.message, "project: holds") != NULL);
    fx_tree_sig(scratch("project"), sig2, sizeof sig2);
    CHECK(!strcmp(sig, sig2));

    /* a cloned model repository: refused, or kept with keep_other_files */
    mkdir(scratch("repo"), 0755);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 1000; /* the old save is sharded */
    CHECK_OK(lmio_pretrained_save(scratch("repo"), cfg, sd, tok, &o, &e_));
    make_tree(scratch("repo"), (const char *[]){".git/HEAD", ".git/objects/ab/cdef", "README.md", ".gitattributes", NULL});
    fx_tree_sig(scratch("repo"), sig, sizeof sig);
    CHECK(lmio_pretrained_save(scratch("repo"), cfg, sd, tok, NULL, &err) == LMIO_ERR_INVALID_ARG);
    fx_tree_sig(scratch("repo"), sig2, sizeof sig2);
    CHECK(!strcmp(sig, sig2));
    o = (lmio_pretrained_opts)LMIO_PRETRAINED_OPTS_INIT;
    o.keep_other_files = 1;
    o.dtype = LMIO_DTYPE_BF16;
    CHECK_OK(lmio_pretrained_save(scratch("repo"), cfg, sd, tok, &o, &e_));
    char p[700];
    snprintf(p, sizeof p, "%s/README.md", scratch("repo"));
    char *t = fx_read(p, NULL);
    CHECK(t && !strcmp(t, "README.md"));
    free(t);
    snprintf(p, sizeof p, "%s/.git/objects/ab/cdef", scratch("repo"));
    CHECK(access(p, F_OK) == 0);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", scratch("repo"));
    CHECK(access(p, F_OK) != 0); /* the old save's index and shards went */
    snprintf(p, sizeof p, "%s/model-00001-of-00003.safetensors", scratch("repo"));
    CHECK(access(p, F_OK) != 0);
    lmio_statedict *w2;
    CHECK_OK(lmio_pretrained_load(scratch("repo"), NULL, &w2, NULL, &e_));
    lmio_tensor tt;
    CHECK(lmio_tensor_find(w2, "layer.0.weight", &tt, NULL) == LMIO_OK && tt.dtype == LMIO_DTYPE_BF16);
    lmio_statedict_free(w2);
    CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);

    /* every file a full save writes is on lmio's one list */
    o = (lmio_pretrained_opts)LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 1000;
    CHECK_OK(lmio_pretrained_save(scratch("full"), cfg, sd, tok, &o, &e_));
    DIR *d = opendir(scratch("full"));
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            CHECK_MSG(lmio__is_lmio_file(e->d_name), "%s", e->d_name);
            n++;
        }
    if (d) closedir(d);
    CHECK(n >= 9);
    CHECK(!lmio__is_lmio_file("README.md") && !lmio__is_lmio_file("model-1-of-2.safetensors") &&
          !lmio__is_lmio_file("pytorch_model.bin") && lmio__is_lmio_file(".config.json.lmio-tmp-abcdef"));

    /* mode and owner of a replaced directory are kept */
    chmod(scratch("full"), 0700);
    if (geteuid() == 0) CHECK(chown(scratch("full"), 1234, 5678) == 0);
    CHECK_OK(lmio_pretrained_save(scratch("full"), cfg, sd, NULL, NULL, &e_));
    struct stat st;
    CHECK(stat(scratch("full"), &st) == 0 && (st.st_mode & 07777) == 0700);
    if (geteuid() == 0) CHECK(st.st_uid == 1234 && st.st_gid == 5678);
    chmod(scratch("full"), 0750);
    CHECK_OK(lmio_pretrained_save(scratch("full"), cfg, sd, NULL, NULL, &e_));
    CHECK(stat(scratch("full"), &st) == 0 && (st.st_mode & 07777) == 0750);

    /* the source must not be inside the destination, nor the destination
     * inside the source; the same directory is fine */
    mkdir(scratch("run"), 0755);
    mkdir(scratch("run/checkpoints"), 0755);
    CHECK_OK(lmio_pretrained_save(scratch("run/checkpoints/step1"), cfg, sd, tok, NULL, &e_));
    lmio_config *c1;
    lmio_statedict *w1;
    lmio_tokenizer *t1;
    CHECK_OK(lmio_pretrained_load(scratch("run/checkpoints/step1"), &c1, &w1, &t1, &e_));
    fx_tree_sig(scratch("run"), sig, sizeof sig);
    o = (lmio_pretrained_opts)LMIO_PRETRAINED_OPTS_INIT;
    o.keep_other_files = 1; /* not even then */
    CHECK(lmio_pretrained_save(scratch("run"), c1, w1, t1, &o, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "contains") && strstr(err.message, "step1/model.safetensors, which is being read"));
    CHECK(lmio_pretrained_save(scratch("run/checkpoints/step1/f16"), c1, w1, t1, NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "is inside") != NULL);
    fx_tree_sig(scratch("run"), sig2, sizeof sig2);
    CHECK(!strcmp(sig, sig2));
    o = (lmio_pretrained_opts)LMIO_PRETRAINED_OPTS_INIT;
    o.dtype = LMIO_DTYPE_F16;
    CHECK_OK(lmio_pretrained_save(scratch("run/checkpoints/step1"), c1, w1, t1, &o, &e_));
    lmio_config_free(c1);
    lmio_statedict_free(w1);
    lmio_tokenizer_free(t1);
    CHECK_OK(lmio_pretrained_load(scratch("run/checkpoints/step1"), NULL, &w1, NULL, &e_));
    CHECK(lmio_tensor_find(w1, "layer.2.weight", &tt, NULL) == LMIO_OK && tt.dtype == LMIO_DTYPE_F16);
    lmio_statedict_free(w1);

    /* not a directory, a symlink, a trailing slash */
    fx_write_text(scratch("afile"), "x");
    CHECK(lmio_pretrained_save(scratch("afile"), cfg, sd, NULL, NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "afile: exists and is not a directory") != NULL);
    CHECK(symlink(scratch("full"), scratch("linkdir")) == 0);
    CHECK(lmio_pretrained_save(scratch("linkdir"), cfg, sd, NULL, NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "is a symbolic link") != NULL);
    snprintf(p, sizeof p, "%s/", scratch("slash"));
    CHECK_OK(lmio_pretrained_save(p, cfg, sd, NULL, NULL, &e_));
    CHECK(S_ISDIR(mode_of(scratch("slash"))));
    CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);

    lmio_config_free(cfg);
    lmio_statedict_free(sd);
    lmio_tokenizer_free(tok);
}

/* ---- inputs ---- */

static void fifo_inputs(void)
{
    mkfifo(scratch("in.fifo"), 0644);
    lmio_statedict *sd;
    CHECK(lmio_statedict_open(scratch("in.fifo"), NULL, &sd, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "in.fifo: is a FIFO; expected a regular file") != NULL);
    /* inside a model directory: config.json, then tokenizer.json */
    lmio_statedict *w = fx_weights(1, 16, 1);
    CHECK_OK(lmio_pretrained_save(scratch("fifodir"), NULL, w, NULL, NULL, &e_));
    char p[700];
    snprintf(p, sizeof p, "%s/config.json", scratch("fifodir"));
    mkfifo(p, 0644);
    lmio_statedict *w2;
    CHECK(lmio_pretrained_load(scratch("fifodir"), NULL, &w2, NULL, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "config.json: is a FIFO") != NULL);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", scratch("fifodir"));
    mkfifo(p, 0644);
    lmio_tokenizer *tok;
    CHECK(lmio_pretrained_load(scratch("fifodir"), NULL, &w2, &tok, &err) == LMIO_ERR_INVALID_ARG);
    CHECK(strstr(err.message, "tokenizer.json: is a FIFO") != NULL);
    lmio_statedict_free(w);
}

static void shrinking_input(void)
{
    const char *src = scratch("shrink.safetensors");
    lmio_statedict *w = fx_weights(2, 1 << 18, 3); /* 2 MiB of data */
    CHECK_OK(lmio_safetensors_save(w, src, NULL, &e_));
    lmio_statedict *sd;
    CHECK_OK(lmio_statedict_open(src, NULL, &sd, &e_));
    CHECK(truncate(src, 4096) == 0);
    /* copied as it is (write(2) from the mapping), converted, read */
    for (int conv = 0; conv < 2; conv++) {
        lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
        o.dtype = conv ? LMIO_DTYPE_F16 : LMIO_DTYPE_NONE;
        CHECK(lmio_safetensors_save(sd, scratch("shrunk-out.safetensors"), &o, &err) == LMIO_ERR_IO);
        CHECK_MSG(strstr(err.message, "shrink.safetensors: offset") && strstr(err.message, "shrank"), "%s", err.message);
        CHECK(access(scratch("shrunk-out.safetensors"), F_OK) != 0);
    }
    lmio_tensor t;
    lmio_statedict_get(sd, 1, &t, NULL);
    char buf[4096];
    CHECK(lmio_tensor_read(&t, t.nbytes - sizeof buf, buf, sizeof buf, &err) == LMIO_ERR_IO);
    CHECK(strstr(err.message, "shrink.safetensors") != NULL);
    CHECK(lmio_tensor_read(&t, t.nbytes, buf, 1, &err) == LMIO_ERR_INVALID_ARG);
    /* a directory whose shard shrank: save_pretrained fails, no leftovers */
    CHECK_MSG(lmio_pretrained_save(scratch("shrunk-dir"), NULL, sd, NULL, NULL, &err) == LMIO_ERR_IO, "%s", err.message);
    CHECK(access(scratch("shrunk-dir"), F_OK) != 0);
    CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);
    /* a SIGBUS outside lmio's guarded reads still ends the process as it
     * would without lmio (the handler passes it on) */
    /* (valgrind runs the child's fault through its own signal machinery and
     * does not deliver it as the kernel does: checked natively and under
     * ASan, not under valgrind) */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) {
        printf("under valgrind: the SIGBUS pass-through check runs natively and under ASan only\n");
        lmio_statedict_free(sd);
        lmio_statedict_free(w);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        volatile unsigned char x = ((const unsigned char *)t.data)[t.nbytes - 1];
        (void)x;
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(!(WIFEXITED(status) && WEXITSTATUS(status) == 0)); /* not swallowed */
#if !defined(__SANITIZE_ADDRESS__)
    CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS); /* (ASan's own handler reports it instead) */
#endif
    lmio_statedict_free(sd);
    lmio_statedict_free(w);
}

/* A model whose weights file shrinks while it runs (issue 7). F32 weights
 * are used in place from the mapping, so the forward pass itself reads the
 * lost pages: on the calling thread (the embedding, read first) or on a
 * worker of a parallel matmul (the second half of the rows of the last
 * tensor in the file, which the second thread reads). Either way logits and
 * generate return LMIO_ERR_IO naming the file and the tensor, and the
 * process lives. BF16 weights are widened at create, which gets the error. */
static lmio_config *small_config(const char *arch)
{
    lmio_config *c = NULL;
    CHECK_OK(lmio_config_create(arch, &c, &e_));
    int gpt2 = !strcmp(arch, "gpt2");
    const char *keys[][2] = {{"vocab_size", "vocab_size"},     {"n_positions", "max_position_embeddings"},
                             {"n_embd", "hidden_size"},        {"n_layer", "num_hidden_layers"},
                             {"n_head", "num_attention_heads"}, {"n_inner", "intermediate_size"}};
    /* big enough that every matmul runs on both threads (T * K * N > 2^16) */
    const int64_t vals[] = {512, 32, 128, 2, 2, 256};
    for (int i = 0; i < 6; i++) CHECK_OK(lmio_config_set_int(c, keys[i][gpt2 ? 0 : 1], vals[i], &e_));
    if (!gpt2) CHECK_OK(lmio_config_set_int(c, "num_key_value_heads", 2, &e_));
    return c;
}

static void save_random(const lmio_config *c, const char *path, lmio_dtype dtype)
{
    lmio_trainer *tr = NULL;
    lmio_statedict *w = NULL;
    CHECK_OK(lmio_trainer_create(c, NULL, NULL, NULL, &tr, &e_));
    CHECK_OK(lmio_trainer_tensors(tr, LMIO_TRAINER_WEIGHTS, &w, &e_));
    lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
    o.dtype = dtype;
    CHECK_OK(lmio_safetensors_save(w, path, &o, &e_));
    lmio_statedict_free(w);
    lmio_trainer_free(tr);
}

/* The matrix whose data comes last in the file (tensors are in name order:
 * GPT-2's wte, the tied lm_head, whose first rows alone the embedding reads;
 * Llama's last layer's v_proj, only model.norm after it). */
static lmio_tensor last_matrix(const lmio_statedict *sd)
{
    lmio_tensor t = {0}, u;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++)
        if (lmio_statedict_get(sd, i, &u, NULL) == LMIO_OK && u.ndim == 2 && u.file_offset > t.file_offset) t = u;
    return t;
}

static void check_lost(lmio_status s, const char *file, const char *tensor, int64_t past)
{
    CHECK_MSG(s == LMIO_ERR_IO, "status %d: %s", (int)s, err.message);
    CHECK_MSG(strstr(err.message, file) && strstr(err.message, "shrank"), "%s", err.message);
    CHECK_MSG(err.key[0] && (!tensor || !strcmp(err.key, tensor)), "key \"%s\", expected \"%s\"", err.key,
              tensor ? tensor : "any");
    CHECK_MSG(err.offset >= past, "offset %lld; expected >= %lld", (long long)err.offset, (long long)past);
}

/* Every writer, handed weights whose mapped file has shrunk (the data of
 * every tensor lost): LMIO_ERR_IO naming the input and a tensor, and nothing
 * written. (Writers name the first byte of the chunk they were copying:
 * write(2) reports only EFAULT.) */
static void every_writer_refuses(const lmio_config *c, const lmio_statedict *sd, const char *arch)
{
    const char *out = scratch("refused.out");
    for (int conv = 0; conv < 2; conv++) {
        lmio_save_opts o = LMIO_SAVE_OPTS_INIT;
        o.dtype = conv ? LMIO_DTYPE_BF16 : LMIO_DTYPE_NONE;
        const char *formats[] = {"safetensors", "pytorch"};
        for (int f = 0; f < 2; f++) {
            check_lost(lmio_statedict_save(sd, out, formats[f], &o, &err), "in-use.safetensors", NULL, 0);
            CHECK_MSG(access(out, F_OK) != 0, "%s left a file", formats[f]);
        }
        lmio_gguf_opts g = LMIO_GGUF_OPTS_INIT;
        g.type = conv ? "q8_0" : NULL;
        check_lost(lmio_gguf_save(out, c, sd, NULL, &g, &err), "in-use.safetensors", NULL, 0);
        CHECK(access(out, F_OK) != 0);
    }
    check_lost(lmio_export_torchscript(c, sd, out, NULL, &err), "in-use.safetensors", NULL, 0);
    CHECK(access(out, F_OK) != 0);
    if (lmio_onnx_supported(arch)) {
        check_lost(lmio_onnx_export(scratch("refused-onnx"), c, sd, NULL, NULL, &err), "in-use.safetensors", NULL, 0);
        CHECK(access(scratch("refused-onnx"), F_OK) != 0);
    }
    check_lost(lmio_pretrained_save(scratch("refused-dir"), c, sd, NULL, NULL, &err), "in-use.safetensors", NULL, 0);
    CHECK(access(scratch("refused-dir"), F_OK) != 0);
    CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);
}

/* A GGUF whose file shrinks between open and its mapping onto Transformers'
 * names (transposed and re-ordered rotary rows are read then). */
static void shrinking_gguf(const lmio_config *c, const char *arch)
{
    const char *src = scratch("in-use.safetensors"), *gg = scratch("in-use.gguf");
    save_random(c, src, LMIO_DTYPE_F32);
    lmio_statedict *sd = NULL, *g = NULL, *w = NULL;
    lmio_config *gc = NULL;
    CHECK_OK(lmio_statedict_open(src, NULL, &sd, &e_));
    CHECK_OK(lmio_gguf_save(gg, c, sd, NULL, NULL, &e_));
    lmio_statedict_free(sd);
    CHECK_OK(lmio_statedict_open(gg, NULL, &g, &e_));
    CHECK(truncate(gg, 0) == 0);
    lmio_status s = lmio__gguf_to_hf(g, &gc, &w, &err);
    CHECK_MSG(s == LMIO_ERR_IO && strstr(err.message, "in-use.gguf") && strstr(err.message, "shrank"), "%s: %s", arch,
              err.message);
    lmio_statedict_free(g);
    unlink(src);
    unlink(gg);
}

static void shrinking_weights_in_use(void)
{
#ifdef _OPENMP
    omp_set_num_threads(2); /* a second thread reads the second half of each matmul's rows */
#endif
    const char *arches[] = {"gpt2", "llama"};
    for (int a = 0; a < 2; a++) {
        lmio_config *c = small_config(arches[a]);
        for (int where = 0; where < 2; where++) {
            const char *src = scratch("in-use.safetensors");
            save_random(c, src, LMIO_DTYPE_F32);
            lmio_statedict *sd = NULL;
            lmio_model *m = NULL;
            CHECK_OK(lmio_statedict_open(src, NULL, &sd, &e_));
            CHECK_OK(lmio_model_create(c, sd, &m, &e_));
            if (!m) break;
            int32_t ids[8] = {1, 2, 3, 4, 5, 6, 7, 8}, out[4];
            float *logits = malloc(8 * 512 * sizeof *logits);
            CHECK_OK(lmio_model_logits(m, ids, 8, logits, &e_)); /* whole, it runs */
            /* where 0: keep 4 KiB, so the first read (the embedding, on this
             * thread) faults; 1: lose the last quarter of the last matrix,
             * which only the second thread's rows reach */
            lmio_tensor last = last_matrix(sd);
            int64_t cut = where ? (last.file_offset + (int64_t)last.nbytes * 3 / 4) & ~(int64_t)4095 : 4096;
            CHECK(cut > last.file_offset || !where);
            CHECK(truncate(src, cut) == 0);
            check_lost(lmio_model_logits(m, ids, 8, logits, &err), "in-use.safetensors", where ? last.name : NULL,
                       cut);
            size_t n = 0;
            check_lost(lmio_model_generate(m, ids, 4, 4, NULL, out, &n, &err), "in-use.safetensors",
                       where ? last.name : NULL, cut);
            if (!where) every_writer_refuses(c, sd, arches[a]);
            free(logits);
            lmio_model_free(m);
            lmio_statedict_free(sd);
            unlink(src);
        }
        /* widened at create: the conversion gets the error */
        const char *src = scratch("in-use-bf16.safetensors");
        save_random(c, src, LMIO_DTYPE_BF16);
        lmio_statedict *sd = NULL;
        lmio_model *m = NULL;
        CHECK_OK(lmio_statedict_open(src, NULL, &sd, &e_));
        CHECK(truncate(src, 4096) == 0);
        check_lost(lmio_model_create(c, sd, &m, &err), "in-use-bf16.safetensors", NULL, 4096);
        CHECK(m == NULL);
        lmio_statedict_free(sd);
        shrinking_gguf(c, arches[a]);
        lmio_config_free(c);
    }
}

/* A file that shrinks between its mapping and the end of its parse (the
 * readers parse headers from the mapping as they allocate): every format
 * through the one door gives LMIO_ERR_IO naming the file and a byte past
 * what is left, with nothing leaked or half-built. Headers of 300 tensors
 * pass the first page, and a zip's directory is at its end. */
static void shrinking_while_parsed(void)
{
    /* (valgrind emulates the fault rather than letting the kernel deliver
     * it, and the page put in place is not seen: checked natively and
     * under ASan, as the SIGBUS pass-through above) */
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) {
        printf("under valgrind: the shrinking-while-parsed check runs natively and under ASan only\n");
        return;
    }
    lmio_statedict *w = NULL;
    CHECK_OK(lmio_statedict_create(&w, &e_));
    for (int i = 0; i < 300; i++) {
        char name[64];
        float v[4] = {(float)i, 1, 2, 3};
        snprintf(name, sizeof name, "model.layers.%d.some_rather_long_projection.weight", i);
        CHECK_OK(lmio_statedict_add(w, name, LMIO_DTYPE_F32, 1, (const uint64_t[]){4}, v, sizeof v, LMIO_COPY, &e_));
    }
    const char *formats[] = {"safetensors", "gguf", "pytorch"};
    for (int k = 0; k < 3; k++) {
        const char *path = scratch("parsed.bin");
        CHECK_OK(lmio_statedict_save(w, path, formats[k], NULL, &e_));
        lmio__file f;
        CHECK_OK(lmio__file_open(path, 1, &f, &e_));
        CHECK(truncate(path, 4096) == 0);
        lmio_statedict *sd = NULL;
        lmio_status s = lmio__statedict_open_file(path, &f, &sd, &err);
        CHECK_MSG(s == LMIO_ERR_IO && !sd && strstr(err.message, "parsed.bin") &&
                      strstr(err.message, "shrank while it was being read") && err.offset >= 4096,
                  "%s: status %d offset %lld: %s", formats[k], (int)s, (long long)err.offset, err.message);
        lmio_statedict_free(sd);
        unlink(path);
    }
    lmio_statedict_free(w);
}

/* The window between writing a chunk into a staged directory and hashing it
 * for the manifest: the input shrinks right there (the hook truncates it),
 * and the save fails naming the input, leaving no directory. */
static const char *g_hook_truncate;
static void truncate_now(const void *p, size_t n)
{
    (void)p;
    if (n < (1u << 20) || !g_hook_truncate) return; /* a tensor's bytes, not the header */
    CHECK(truncate(g_hook_truncate, 0) == 0);
    g_hook_truncate = NULL;
}

static void shrinking_while_hashed(void)
{
    const char *src = scratch("hashed.safetensors");
    lmio_statedict *w = fx_weights(2, 1 << 18, 3); /* 2 MiB: large enough for copy_file_range */
    CHECK_OK(lmio_safetensors_save(w, src, NULL, &e_));
    lmio_statedict_free(w);
    for (int conv = 0; conv < 2; conv++) {
        lmio_statedict *sd = NULL;
        CHECK_OK(lmio_statedict_open(src, NULL, &sd, &e_));
        lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
        o.format = conv ? "pytorch" : "safetensors";
        g_hook_truncate = src;
        lmio__hash_hook = truncate_now;
        lmio_status s = lmio_pretrained_save(scratch("hashed-dir"), NULL, sd, NULL, &o, &err);
        lmio__hash_hook = NULL;
        CHECK_MSG(s == LMIO_ERR_IO && strstr(err.message, "hashed.safetensors") && strstr(err.message, "shrank") &&
                      err.key[0],
                  "%s: status %d: %s", o.format, (int)s, err.message);
        CHECK(access(scratch("hashed-dir"), F_OK) != 0);
        CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);
        lmio_statedict_free(sd);
        w = fx_weights(2, 1 << 18, 3);
        CHECK_OK(lmio_safetensors_save(w, src, NULL, &e_)); /* whole again for the next format */
        lmio_statedict_free(w);
    }
    /* a copy into another state dict (LMIO_COPY) of bytes that are gone */
    lmio_statedict *sd = NULL, *copy = NULL;
    CHECK_OK(lmio_statedict_open(src, NULL, &sd, &e_));
    CHECK(truncate(src, 0) == 0);
    lmio_tensor t;
    CHECK_OK(lmio_statedict_get(sd, 0, &t, &e_));
    CHECK_OK(lmio_statedict_create(&copy, &e_));
    CHECK(lmio_statedict_add(copy, t.name, t.dtype, t.ndim, t.shape, t.data, t.nbytes, LMIO_COPY, &err) ==
          LMIO_ERR_IO);
    CHECK(lmio_statedict_count(copy) == 0);
    lmio_statedict_free(copy);
    lmio_statedict_free(sd);
}

static void symlinks_leaving_the_directory(void)
{
    lmio_statedict *w = fx_weights(2, 64, 1);
    lmio_config *cfg;
    lmio_config_create_gpt2(&cfg, NULL);
    lmio_tokenizer *tok = fx_tokenizer(scratch("corpus2.txt"));
    CHECK_OK(lmio_pretrained_save(scratch("src"), cfg, w, tok, NULL, &e_));
    fx_write_text(scratch("secret.json"), "{\"model_type\": \"gpt2\", \"api_key\": \"s3cr3t\"}");
    const char *names[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char d[64], p[700], real[700];
        snprintf(d, sizeof d, "evil%d", i);
        CHECK_OK(lmio_pretrained_save(scratch(d), cfg, w, tok, NULL, &e_));
        snprintf(p, sizeof p, "%s/%s", scratch(d), names[i]);
        snprintf(real, sizeof real, "%s/%s", scratch("src"), names[i]);
        unlink(p);
        CHECK(symlink(i == 0 ? scratch("secret.json") : real, p) == 0);
        lmio_config *c2 = NULL;
        lmio_statedict *w2 = NULL;
        lmio_tokenizer *t2 = NULL;
        CHECK(lmio_pretrained_load(scratch(d), &c2, &w2, &t2, &err) == LMIO_ERR_INVALID_ARG);
        CHECK_MSG(strstr(err.message, names[i]) && strstr(err.message, "leads outside the model directory"), "%s",
                  err.message);
        CHECK(!strstr(err.message, "s3cr3t"));
    }
    /* a link that stays inside is fine */
    char p[700];
    snprintf(p, sizeof p, "%s/sub", scratch("src"));
    mkdir(p, 0755);
    snprintf(p, sizeof p, "%s/sub/config.json", scratch("src"));
    char c[700];
    snprintf(c, sizeof c, "%s/config.json", scratch("src"));
    rename(c, p);
    CHECK(symlink("sub/config.json", c) == 0);
    lmio_config *c2;
    lmio_statedict *w2;
    CHECK_OK(lmio_pretrained_load(scratch("src"), &c2, &w2, NULL, &e_));
    lmio_config_free(c2);
    lmio_statedict_free(w2);

    /* the Hugging Face cache: snapshots/<rev>/<file> -> ../../blobs/<hash> */
    char hub[600];
    snprintf(hub, sizeof hub, "%s", scratch("hub")); /* scratch() reuses its buffers */
    char repo[700], blobs[800], snap[800], other[800];
    mkdir(hub, 0755);
    snprintf(repo, sizeof repo, "%s/models--org--tiny", hub);
    snprintf(blobs, sizeof blobs, "%s/blobs", repo);
    snprintf(snap, sizeof snap, "%s/snapshots", repo);
    mkdir(repo, 0755);
    mkdir(blobs, 0755);
    mkdir(snap, 0755);
    snprintf(snap, sizeof snap, "%s/snapshots/0123abcd", repo);
    mkdir(snap, 0755);
    const char *files[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int i = 0; i < 3; i++) {
        char from[800], blob[900], link[900], target[64];
        snprintf(from, sizeof from, "%s/%s", scratch("evil0"), files[i]);
        if (i == 0) snprintf(from, sizeof from, "%s/sub/config.json", scratch("src"));
        snprintf(blob, sizeof blob, "%s/%040d", blobs, i);
        size_t n = 0;
        char *data = fx_read(from, &n);
        fx_write(blob, data, n);
        free(data);
        snprintf(link, sizeof link, "%s/%s", snap, files[i]);
        snprintf(target, sizeof target, "../../blobs/%040d", i);
        CHECK(symlink(target, link) == 0);
    }
    lmio_tokenizer *t2;
    CHECK_OK(lmio_pretrained_load(snap, &c2, &w2, &t2, &e_));
    lmio_config_free(c2);
    lmio_statedict_free(w2);
    lmio_tokenizer_free(t2);
    /* ... but not into another repository's blobs */
    snprintf(other, sizeof other, "%s/models--org--other", hub);
    mkdir(other, 0755);
    snprintf(other, sizeof other, "%s/models--org--other/blobs", hub);
    mkdir(other, 0755);
    char blob[900], link[900];
    snprintf(blob, sizeof blob, "%s/%040d", other, 9);
    fx_write_text(blob, "{\"model_type\": \"gpt2\"}");
    snprintf(link, sizeof link, "%s/config.json", snap);
    unlink(link);
    char target[128];
    snprintf(target, sizeof target, "../../../models--org--other/blobs/%040d", 9);
    CHECK(symlink(target, link) == 0);
    CHECK_MSG(lmio_pretrained_load(snap, &c2, &w2, NULL, &err) == LMIO_ERR_INVALID_ARG, "%s", err.message);
    lmio_config_free(cfg);
    lmio_statedict_free(w);
    lmio_tokenizer_free(tok);
}

/* ---- what reaches a terminal ---- */

static void escaping(void)
{
    char out[256];
    lmio_escape_text(out, sizeof out, "a\x1b[31mred\n", 10);
    CHECK(!strcmp(out, "a\\x1b[31mred\\x0a"));
    lmio_escape_text(out, sizeof out, "caf\xc3\xa9 \xc4\x9f \\ ok", 13);
    CHECK(!strcmp(out, "caf\xc3\xa9 \xc4\x9f \\ ok")); /* letters whose bytes look like C1 stay */
    lmio_escape_text(out, sizeof out, "c1\xc2\x9bx bad\xff rlo\xe2\x80\xae", 17);
    CHECK_MSG(!strcmp(out, "c1\\xc2\\x9bx bad\\xff rlo\\xe2\\x80\\xae"), "%s", out);
    char twice[256];
    lmio_escape_text(twice, sizeof twice, out, strlen(out));
    CHECK(!strcmp(out, twice));
    CHECK(lmio_escape_text(out, 6, "ab\x1b", 3) == 2); /* never half an escape */
    CHECK(!strcmp(out, "ab"));

    /* a name with an escape sequence, in a file that is broken */
    const char *h = "{\"evil\\u001b[2J\\u001b[32mOK\\n\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(h);
    unsigned char file[512] = {0};
    for (int i = 0; i < 8; i++) file[i] = (unsigned char)(hl >> (8 * i));
    memcpy(file + 8, h, hl);
    fx_write(scratch("evil.safetensors"), file, 8 + hl + 8);
    lmio_statedict *sd;
    CHECK(lmio_statedict_open(scratch("evil.safetensors"), NULL, &sd, &err) == LMIO_ERR_FORMAT);
    CHECK_MSG(strstr(err.message, "evil\\x1b[2J\\x1b[32mOK\\x0a") != NULL, "%s", err.message);
    CHECK(!strchr(err.message, '\x1b') && !strchr(err.message, '\n'));
    CHECK(strchr(err.key, '\x1b') != NULL); /* the key keeps the exact name */
}

int main(void)
{
    if (scratch_begin("hostile")) return 1;
    alarm(120); /* a hang (a FIFO opened blocking) fails instead of stalling ctest */
    nonregular_destinations();
    mode_and_owner_kept();
    temporaries();
    directory_destinations();
    fifo_inputs();
    shrinking_input();
    shrinking_weights_in_use();
    shrinking_while_parsed();
    shrinking_while_hashed();
    symlinks_leaving_the_directory();
    escaping();
    scratch_end();
    return test_result("test_hostile");
}
