/* Helpers shared by the lmio commands; see cli.h. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const cli_prog = "lmio";

/* ---- what reaches the terminal ---- */

const char *tty(const char *s)
{
    /* Rotating buffers, so one printf can take several; big enough for the
     * longest name lmio accepts with every byte escaped. */
    static char bufs[4][4 * LMIO_NAME_MAX + 16];
    static int k;
    k = (k + 1) % 4;
    lmio_escape_text(bufs[k], sizeof bufs[k], s ? s : "", s ? strlen(s) : 0);
    return bufs[k];
}

/* Formats, then escapes the whole message: its arguments are paths and
 * names that may come from files or arguments. */
__attribute__((format(printf, 2, 0))) static void vprint_escaped(FILE *f, const char *fmt, va_list ap)
{
    char msg[8192];
    vsnprintf(msg, sizeof msg, fmt, ap);
    fputs(tty(msg), f);
}

/* ---- messages and exit codes ---- */

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s %s: ", cli_prog, cmd);
    va_start(ap, fmt);
    vprint_escaped(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry '%s %s --help'.\n", cli_prog, cmd);
    return EXIT_USAGE;
}

int fail(const lmio_error *err)
{
    /* the library escapes its messages already; escaping is idempotent */
    fprintf(stderr, "%s: error: %s\n", cli_prog, tty(err->message));
    return EXIT_BAD_INPUT;
}

int fail_msg(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "%s: error: ", cli_prog);
    va_start(ap, fmt);
    vprint_escaped(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return EXIT_BAD_INPUT;
}

/* ---- signals ---- */

static void on_fatal_signal(int sig)
{
    /* Only async-signal-safe calls: remove what saves have in flight, then
     * die of the same signal so the parent sees how we ended. */
    lmio_cleanup_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

void install_signal_cleanup(void)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa, old;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_fatal_signal;
        sigemptyset(&sa.sa_mask);
        /* a signal ignored by whoever started us (nohup) stays ignored */
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN) continue;
        sigaction(sigs[i], &sa, NULL);
    }
}

int print_help(const cli_command *self)
{
    fputs(self->help, stdout);
    return EXIT_OK;
}

int is_help(const char *a) { return strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0; }

/* ---- option parsing ---- */

int opt_value(int argc, char **argv, int *i, const char **val)
{
    if (*i + 1 >= argc) return -1;
    *val = argv[++*i];
    return 0;
}

int take_positional(const char *cmd, const char *arg, const char **slots[], size_t n)
{
    if (arg[0] == '-' && arg[1]) return usage_error(cmd, "unknown option '%s'", arg);
    for (size_t k = 0; k < n; k++)
        if (!*slots[k]) {
            *slots[k] = arg;
            return EXIT_OK;
        }
    return usage_error(cmd, "unexpected argument '%s'", arg);
}

int parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    /* by hand, not strtoull: that accepts "-1" (as 2^64 - 1), spaces and '+' */
    uint64_t v = 0;
    if (!*s) return -1;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (v < min || v > max) return -1;
    *out = v;
    return 0;
}

int parse_ids(const char *s, int32_t **ids, size_t *n)
{
    size_t cap = 16, k = 0;
    int32_t *v = malloc(cap * sizeof *v);
    const char *p = s;
    while (v && *p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > INT32_MAX) { free(v); return -1; }
        if (k == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = end;
        if (*p == ',') p++;
        else if (*p) { free(v); return -1; }
    }
    if (!v) return -1;
    *ids = v;
    *n = k;
    return 0;
}

int str_list_push(str_list *l, const char *s)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 8;
        const char **v = realloc(l->v, cap * sizeof *v);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = s;
    return 0;
}

void str_list_free(str_list *l)
{
    free(l->v);
    *l = (str_list){0};
}

/* ---- files ---- */

int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads fd to its end into a growing buffer; -1 with errno set on failure. */
static int read_fd_all(int fd, char **buf, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap);
    if (!b) { errno = ENOMEM; return -1; }
    for (;;) {
        if (n == cap) {
            char *nb = cap > SIZE_MAX / 2 ? NULL : realloc(b, cap * 2);
            if (!nb) { free(b); errno = ENOMEM; return -1; }
            b = nb;
            cap *= 2;
        }
        ssize_t r = read(fd, b + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) { int e = errno; free(b); errno = e; return -1; }
        if (r == 0) break;
        n += (size_t)r;
    }
    *buf = b;
    *len = n;
    return 0;
}

static int read_file(const char *path, int regular_only, char **buf, size_t *len)
{
    /* O_NONBLOCK for regular_only: a FIFO must not block the open */
    int fd = open(path, O_RDONLY | O_CLOEXEC | (regular_only ? O_NONBLOCK : 0));
    if (fd < 0) return fail_msg("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fail_msg("%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(st.st_mode) || (regular_only && !S_ISREG(st.st_mode))) {
        close(fd);
        return fail_msg("%s: is %s; expected a regular file", path, S_ISDIR(st.st_mode) ? "a directory" : "not a regular file");
    }
    if (regular_only) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    int r = read_fd_all(fd, buf, len);
    int e = errno;
    close(fd); /* read-only: a close error cannot lose data */
    if (r) return fail_msg("%s: cannot read: %s", path, strerror(e));
    return EXIT_OK;
}

int read_file_all(const char *path, char **buf, size_t *len) { return read_file(path, 0, buf, len); }

int read_regular_file(const char *path, char **buf, size_t *len) { return read_file(path, 1, buf, len); }

/* ---- progress bar ---- */

static int progress_cb(void *ctx, uint64_t done, uint64_t total)
{
    progress *p = ctx;
    int pm = total ? (int)(done * 1000 / total) : 1000;
    if (pm == p->last_permille) return 0;
    p->last_permille = pm;
    p->shown = 1;
    int width = 30, fill = pm * width / 1000;
    fprintf(stderr, "\r%s [", p->label);
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %5.1f%% %8.1f MB", pm / 10.0, done / 1e6);
    fflush(stderr);
    return 0;
}

void progress_end(progress *p)
{
    if (p->shown) fputc('\n', stderr);
}

void attach_progress(lmio_save_opts *o, progress *p, const char *label)
{
    *p = (progress){label, -1, 0};
    if (isatty(STDERR_FILENO)) {
        o->progress = progress_cb;
        o->progress_ctx = p;
    }
}

/* ---- printing ---- */

void human_bytes(char *buf, size_t cap, uint64_t b)
{
    if (b >= 1000000000ULL) snprintf(buf, cap, "%.2f GB", b / 1e9);
    else if (b >= 1000000ULL) snprintf(buf, cap, "%.2f MB", b / 1e6);
    else if (b >= 1000ULL) snprintf(buf, cap, "%.1f kB", b / 1e3);
    else snprintf(buf, cap, "%llu B", (unsigned long long)b);
}

/* The file a tensor came from, without its directory ("" when none). */
static const char *source_file(const lmio_tensor *t)
{
    const char *slash = t->source ? strrchr(t->source, '/') : NULL;
    return slash ? slash + 1 : t->source ? t->source : "";
}

void print_table(const lmio_statedict *sd, int show_file)
{
    size_t n = lmio_statedict_count(sd);
    size_t wname = 4;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        size_t l = strlen(t.name);
        if (l > wname) wname = l;
    }
    if (wname > 60) wname = 60;
    printf("  %-*s  %-11s  %-20s  %14s  %12s%s\n", (int)wname, "name", "dtype", "shape", "bytes", "offset",
           show_file ? "  file" : "");
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < n; i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        char sh[128];
        lmio_shape_format(sh, sizeof sh, t.ndim, t.shape);
        printf("  %-*s  %-11s  %-20s  %14llu  %12lld%s%s\n", (int)wname, tty(t.name), lmio_dtype_name(t.dtype), sh,
               (unsigned long long)t.nbytes, (long long)t.file_offset, show_file ? "  " : "",
               show_file ? tty(source_file(&t)) : "");
        params += t.numel;
        bytes += t.nbytes;
    }
    char hb[32];
    human_bytes(hb, sizeof hb, bytes);
    printf("total: %zu tensors, %llu parameters, %llu bytes (%s)\n", n, (unsigned long long)params,
           (unsigned long long)bytes, hb);
}

void add_tensors_json(json_t *root, const lmio_statedict *sd, int with_file)
{
    json_t *arr = json_array();
    uint64_t params = 0, bytes = 0;
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        json_t *o = json_object(), *shape = json_array();
        for (int d = 0; d < t.ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t.shape[d]));
        json_object_set_new(o, "name", json_string(t.name));
        json_object_set_new(o, "dtype", json_string(lmio_dtype_name(t.dtype)));
        json_object_set_new(o, "shape", shape);
        json_object_set_new(o, "nbytes", json_integer((json_int_t)t.nbytes));
        json_object_set_new(o, "offset", json_integer(t.file_offset));
        if (with_file) json_object_set_new(o, "file", json_string(source_file(&t)));
        json_array_append_new(arr, o);
        params += t.numel;
        bytes += t.nbytes;
    }
    json_object_set_new(root, "tensors", arr);
    json_object_set_new(root, "total_parameters", json_integer((json_int_t)params));
    json_object_set_new(root, "total_bytes", json_integer((json_int_t)bytes));
}

int print_json_value(json_t *root, size_t flags)
{
    char *s = root ? json_dumps(root, flags) : NULL;
    json_decref(root);
    if (!s) return fail_msg("out of memory printing JSON");
    puts(s);
    free(s);
    return EXIT_OK;
}

char *utf8_lossy(const char *s, size_t n)
{
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *o = malloc(n * 3 + 1), *p = o;
    if (!o) return NULL;
    size_t i = 0;
    while (i < n) {
        /* the library's rule: no overlongs, no surrogates, <= U+10FFFF */
        size_t ok = lmio_utf8_valid_prefix(s + i, n - i);
        memcpy(p, s + i, ok);
        p += ok;
        i += ok;
        if (i < n) {
            memcpy(p, "\xEF\xBF\xBD", 3);
            p += 3;
            i++;
        }
    }
    *p = 0;
    return o;
}

int dir_tokenizer(const char *dir, lmio_tokenizer **tok, char *note, size_t cap)
{
    lmio_error err;
    *tok = NULL;
    note[0] = 0;
    lmio_status s = lmio_tokenizer_load(dir, tok, &err);
    if (s == LMIO_ERR_NOT_FOUND) return EXIT_OK;
    if (s == LMIO_ERR_UNSUPPORTED) {
        snprintf(note, cap, "%s", err.message);
        return EXIT_OK;
    }
    return s ? fail(&err) : EXIT_OK;
}
