/* What every lmio command shares: exit codes, error printing, option
 * parsing, progress bar, and the tensor table/JSON printers. The commands
 * (tools/cmd_*.c) call only include/lmio.h and this; tools/main.c holds the
 * command table and dispatches. */
#ifndef LMIO_CLI_H
#define LMIO_CLI_H

#include "lmio.h"

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum { EXIT_OK = 0, EXIT_BAD_INPUT = 1, EXIT_USAGE = 2 };

extern const char *const cli_prog; /* "lmio": the prefix of every message */

/* One row of the command table (tools/main.c). */
typedef struct cli_command cli_command;
typedef int (*cli_handler)(const cli_command *self, int argc, char **argv);
struct cli_command {
    const char *name;     /* "inspect" */
    const char *synopsis; /* arguments shown by `lmio --help` */
    const char *summary;  /* one line for `lmio --help` */
    cli_handler run;      /* argv[0] is the command name */
    const char *help;     /* the full text of `lmio NAME --help` */
};

/* ---- what reaches the terminal ---- */

/* s with control characters, bidi marks and invalid UTF-8 shown as \xNN
 * (lmio_escape_text): every name, value or path that came from a file or
 * an argument goes through this before it is printed as text. Points into
 * one of four rotating static buffers: valid until the fourth next call. */
const char *tty(const char *s);

/* Removes in-flight temporary files on SIGINT, SIGTERM, SIGHUP, SIGQUIT
 * and SIGPIPE, then dies of the signal as it would have. */
void install_signal_cleanup(void);

/* ---- messages and exit codes ---- */

/* "lmio CMD: <message>" and a pointer to --help on stderr; returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "lmio: error: <err->message>" on stderr; returns EXIT_BAD_INPUT. */
int fail(const lmio_error *err);
/* "lmio: error: <message>" on stderr; returns EXIT_BAD_INPUT. */
int fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints self->help on stdout; returns EXIT_OK. */
int print_help(const cli_command *self);
int is_help(const char *arg);

/* ---- option parsing ---- */

/* For an option taking a value: *val = argv[*i + 1] and *i advanced, 0;
 * -1 when the value is missing (the caller prints its usage error). */
int opt_value(int argc, char **argv, int *i, const char **val);
/* A positional argument: fills the first NULL of slots[0..n) with arg. An
 * option-looking arg ("-x", not "-") is "unknown option", one slot too many
 * "unexpected argument"; both print a usage error and return EXIT_USAGE. */
int take_positional(const char *cmd, const char *arg, const char **slots[], size_t n);
/* A plain decimal count in [min, max] (no sign, no spaces, no suffix): 0,
 * else -1 with *out untouched. */
int parse_count(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* "1,2,3" -> *ids (malloc'd, free()) and *n; -1 on a malformed list or when
 * out of memory. */
int parse_ids(const char *s, int32_t **ids, size_t *n);

/* A list that grows as options repeat: no fixed cap. */
typedef struct str_list {
    const char **v;
    size_t n, cap;
} str_list;
/* 0, or -1 when out of memory (the list is unchanged). */
int str_list_push(str_list *l, const char *s);
void str_list_free(str_list *l);

/* ---- files ---- */

/* 1 when path names a directory (stat succeeds and says so), else 0. */
int is_dir(const char *path);
/* Reads a whole regular file into *buf (malloc'd, free()) and *len.
 * Prints the error naming path (a directory, unreadable, ...) and returns
 * EXIT_BAD_INPUT on failure, EXIT_OK on success. */
int read_file_all(const char *path, char **buf, size_t *len);
/* The same, but only for a regular file (a FIFO or device is refused
 * without blocking): for files of a model directory. */
int read_regular_file(const char *path, char **buf, size_t *len);

/* A model directory's tokenizer, when lmio reads its kind. *tok is NULL
 * both when there is none (*note "") and when it is of a kind lmio does not
 * read, such as WordPiece (*note says why): inspect, verify and convert
 * work on any directory. Returns EXIT_OK, or the exit code after printing
 * an error for a tokenizer that is broken. */
int dir_tokenizer(const char *dir, lmio_tokenizer **tok, char *note, size_t cap);

/* ---- printing ---- */

/* A progress bar on stderr, only when stderr is a terminal, so logs and
 * pipes stay clean. attach_progress hooks it into save options. */
typedef struct progress {
    const char *label;
    int last_permille;
    int shown;
} progress;
void attach_progress(lmio_save_opts *o, progress *p, const char *label);
void progress_end(progress *p);

void human_bytes(char *buf, size_t cap, uint64_t bytes);
/* The tensor table (name, dtype, shape, bytes, offset[, file]) and totals. */
void print_table(const lmio_statedict *sd, int show_file);
/* Adds "tensors" (name, dtype, shape, nbytes, offset[, file]) and the
 * totals to root: the part of --json shared by files and directories. */
void add_tensors_json(json_t *root, const lmio_statedict *sd, int with_file);
/* Prints root with jansson's dump flags and a newline, then decrefs it;
 * EXIT_BAD_INPUT with a message when it cannot be printed. */
int print_json_value(json_t *root, size_t flags);
/* Invalid UTF-8 (a token may end inside a character) becomes U+FFFD, as
 * Hugging Face's decode does, so JSON and terminals get valid text.
 * malloc'd (free()); NULL when out of memory. */
char *utf8_lossy(const char *s, size_t n);

/* ---- the commands (tools/cmd_*.c) ---- */

extern const char k_inspect_help[], k_verify_help[], k_convert_help[], k_example_help[], k_tokenizer_help[],
    k_logits_help[], k_generate_help[], k_export_help[];
int cmd_inspect(const cli_command *self, int argc, char **argv);
int cmd_verify(const cli_command *self, int argc, char **argv);
int cmd_convert(const cli_command *self, int argc, char **argv);
int cmd_example(const cli_command *self, int argc, char **argv);
int cmd_tokenizer(const cli_command *self, int argc, char **argv);
int cmd_logits(const cli_command *self, int argc, char **argv);
int cmd_generate(const cli_command *self, int argc, char **argv);
int cmd_export(const cli_command *self, int argc, char **argv);

#endif /* LMIO_CLI_H */
