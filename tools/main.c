/* lmio: the command-line tool. Argument parsing, printing and exit codes
 * only; all work is done by the library through include/lmio.h.
 *
 * Exit codes: 0 success; 1 invalid input, failed verification or any I/O
 * failure (the message on stderr names the file); 2 usage error.
 *
 * A command is a row of the table below and a tools/cmd_*.c file; `lmio
 * --help` is built from the table, so a new command cannot be left out. */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static int cmd_version(const cli_command *self, int argc, char **argv)
{
    if (argc > 1 && is_help(argv[1])) return print_help(self);
    printf("lmio %s\n", lmio_version());
    return EXIT_OK;
}

static const cli_command k_commands[] = {
    {"inspect", "PATH|DIR [--json]", "show format, metadata and tensors", cmd_inspect, k_inspect_help},
    {"verify", "PATH|DIR", "validate a file or directory completely", cmd_verify, k_verify_help},
    {"convert", "IN OUT [--dtype f32|f16|bf16]", "rewrite, converting floating tensors", cmd_convert, k_convert_help},
    {"example", "OUT", "write the built-in example model", cmd_example, k_example_help},
    {"tokenizer", "encode|decode|train ...", "GPT-2 byte-level BPE (see --help)", cmd_tokenizer, k_tokenizer_help},
    {"logits", "DIR --ids 1,2,3 --out F.npy", "reference model logits as .npy", cmd_logits, k_logits_help},
    {"generate", "DIR --prompt TEXT [-n N]", "continue a prompt (greedy or sampled)", cmd_generate, k_generate_help},
    {"export", "DIR --to onnx|torchscript OUT", "a model for onnxruntime, transformers.js or torch.jit.load",
     cmd_export, k_export_help},
    {"train", "--data F.txt --out RUN_DIR --steps N", "train GPT-2 or Llama; checkpoints, exact resume", cmd_train,
     k_train_help},
    {"version", "", "print lmio's version", cmd_version, "usage: lmio version\n\nPrint lmio's version.\n"},
};
enum { N_COMMANDS = sizeof k_commands / sizeof k_commands[0] };

static void main_help(FILE *f)
{
    fputs("usage: lmio COMMAND [ARGS]\n"
          "\n"
          "Save, load, validate and convert trained language models.\n"
          "\n"
          "commands:\n",
          f);
    for (size_t i = 0; i < N_COMMANDS; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", k_commands[i].name, *k_commands[i].synopsis ? " " : "",
                 k_commands[i].synopsis);
        fprintf(f, "  %-37s %s\n", left, k_commands[i].summary);
    }
    fputs("\n"
          "Each command takes --help. Exit codes: 0 success, 1 invalid input or failed\n"
          "verification, 2 usage error.\n",
          f);
}

/* Output that never reached stdout (a full disk, a closed pipe) is a
 * failure, not a success with a truncated result. */
static int finish_stdout(int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno;
        fprintf(stderr, "%s: error: writing to standard output: %s\n", cli_prog, strerror(e));
        return rc ? rc : EXIT_BAD_INPUT;
    }
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_help(stderr);
        return EXIT_USAGE;
    }
    install_signal_cleanup();
    const char *cmd = argv[1];
    if (is_help(cmd) || strcmp(cmd, "help") == 0) {
        main_help(stdout);
        return finish_stdout(EXIT_OK);
    }
    if (strcmp(cmd, "--version") == 0) return finish_stdout(cmd_version(NULL, 0, NULL));
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(cmd, k_commands[i].name) == 0)
            return finish_stdout(k_commands[i].run(&k_commands[i], argc - 1, argv + 1));
    fprintf(stderr, "%s: unknown command '%s'\n\n", cli_prog, cmd);
    main_help(stderr);
    return EXIT_USAGE;
}
