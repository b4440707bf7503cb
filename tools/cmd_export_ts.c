/* lmio export DIR --to torchscript OUT.pt */
#include "cli.h"

#include <stdio.h>
#include <string.h>

const char k_export_help[] =
    "usage: lmio export DIR --to torchscript OUT.pt\n"
    "\n"
    "Write the model of DIR (an architecture lmio runs) as a TorchScript\n"
    "archive: torch.jit.load(OUT.pt) gives a module whose forward(input_ids)\n"
    "maps int64 ids of shape (T) or (B, T) to fp32 logits (T, vocab) or\n"
    "(B, T, vocab), equal to `lmio logits` up to fp32 rounding. Its parameters\n"
    "keep Transformers' names and are written f32; no Python from the\n"
    "directory is involved. OUT.pt appears whole or not at all.\n";

int cmd_export(const cli_command *self, int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *to = NULL;
    for (int i = 1; i < argc; i++) {
        int rc;
        if (is_help(argv[i])) return print_help(self);
        else if (!strcmp(argv[i], "--to")) {
            if (opt_value(argc, argv, &i, &to)) return usage_error(self->name, "%s", "--to needs a format");
        } else if ((rc = take_positional(self->name, argv[i], (const char **[]){&dir, &out}, 2)))
            return rc;
    }
    if (!dir || !out || !to) return usage_error(self->name, "%s", "needs DIR, --to FORMAT and OUT");
    if (strcmp(to, "torchscript"))
        return usage_error(self->name, "--to %s: unknown target; expected torchscript", tty(to));
    lmio_error err;
    lmio_config *cfg = NULL;
    lmio_statedict *w = NULL;
    int rc = EXIT_OK;
    if (lmio_pretrained_load(dir, &cfg, &w, NULL, &err)) rc = fail(&err);
    else if (!cfg) rc = fail_msg("%s: no config.json; expected a model directory with a config", tty(dir));
    if (!rc) {
        lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
        progress p;
        attach_progress(&so, &p, "exporting");
        lmio_status s = lmio_export_torchscript(cfg, w, out, &so, &err);
        progress_end(&p);
        if (s) rc = fail(&err);
        else printf("wrote %s (TorchScript, %s)\n", tty(out), lmio_config_model_type(cfg));
    }
    lmio_statedict_free(w);
    lmio_config_free(cfg);
    return rc;
}
