/* lmio train: train a small model on a text file, with checkpoints that
 * survive a crash and resume exactly (lmio_trainer_*). */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char k_train_help[] =
    "usage: lmio train --data FILE.txt --out RUN_DIR --steps N [--save-every K] [--keep K] [--keep-best]\n"
    "                  [--seed S] [--async-save] [--config DIR | --n-layer L --n-embd C --n-head H\n"
    "                  --n-positions P --vocab-size V] [--batch-size B] [--seq-len T] [--lr LR]\n"
    "                  [--warmup W] [--weight-decay WD] [--max-grad-norm G]\n"
    "\n"
    "Train a model (GPT-2 or Llama) on the UTF-8 text FILE.txt until N updates\n"
    "are done, saving\n"
    "RUN_DIR/checkpoint-<step>/ every K steps and at the end, and RUN_DIR/latest\n"
    "naming the newest. When RUN_DIR already holds checkpoints, training resumes\n"
    "from the newest complete one, bit for bit as if it had never stopped (the\n"
    "model, optimizer and data options are the run's; the text must be the same).\n"
    "\n"
    "The model: config.json of --config DIR (with its tokenizer when it has one),\n"
    "else a GPT-2 of the size options (defaults 2 layers, n_embd 64, 4 heads, 128\n"
    "positions). Without a tokenizer, a byte-level BPE of --vocab-size tokens\n"
    "(default 512) is trained on the text first. Dropout is off.\n"
    "\n"
    "  --keep K        keep the newest K checkpoints (default: all)\n"
    "  --keep-best     also keep the checkpoint of lowest mean training loss\n"
    "  --async-save    write checkpoints in a background thread; training pauses\n"
    "                  only to copy the weights and optimizer state to memory\n"
    "  --seed S        initialisation and batch order (default 0)\n"
    "  defaults: --batch-size 8 --seq-len min(64, n_positions) --lr 1e-3\n"
    "            --warmup N/20 --weight-decay 0.01 --max-grad-norm 1.0\n"
    "\n"
    "Prints one JSON line per step on stdout: step, loss, lr, grad_norm,\n"
    "tokens_per_second (the same lines go to each checkpoint's\n"
    "training_log.jsonl).\n";

typedef struct train_args {
    const char *data, *out, *config;
    uint64_t steps, save_every, keep, seed, vocab;
    uint64_t n_layer, n_embd, n_head, n_positions, batch, seq, warmup;
    int keep_best, async, warmup_set;
    double lr, wd, clip;
} train_args;

static int num_opt(const char *cmd, int argc, char **argv, int *i, uint64_t min, uint64_t *out)
{
    const char *v;
    if (opt_value(argc, argv, i, &v) || parse_count(v, min, UINT64_MAX >> 1, out))
        return usage_error(cmd, "%s needs a whole number >= %llu", argv[*i - (*i > 0)], (unsigned long long)min);
    return EXIT_OK;
}

static int real_opt(const char *cmd, int argc, char **argv, int *i, double *out)
{
    const char *v;
    char *end;
    if (opt_value(argc, argv, i, &v) || !((*out = strtod(v, &end)) >= 0) || *end)
        return usage_error(cmd, "%s needs a number >= 0", argv[*i - (*i > 0)]);
    return EXIT_OK;
}

static int parse_args(const char *cmd, int argc, char **argv, train_args *a)
{
    static const struct { const char *name; size_t off; uint64_t min; } nums[] = {
        {"--steps", offsetof(train_args, steps), 1}, {"--save-every", offsetof(train_args, save_every), 1},
        {"--keep", offsetof(train_args, keep), 1}, {"--seed", offsetof(train_args, seed), 0},
        {"--vocab-size", offsetof(train_args, vocab), 257}, {"--n-layer", offsetof(train_args, n_layer), 1},
        {"--n-embd", offsetof(train_args, n_embd), 1}, {"--n-head", offsetof(train_args, n_head), 1},
        {"--n-positions", offsetof(train_args, n_positions), 2}, {"--batch-size", offsetof(train_args, batch), 1},
        {"--seq-len", offsetof(train_args, seq), 1}, {"--warmup", offsetof(train_args, warmup), 0}};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i];
        int rc = -1;
        for (size_t k = 0; k < sizeof nums / sizeof nums[0] && rc < 0; k++)
            if (!strcmp(o, nums[k].name)) rc = num_opt(cmd, argc, argv, &i, nums[k].min, (uint64_t *)((char *)a + nums[k].off));
        if (!strcmp(o, "--warmup")) a->warmup_set = 1;
        if (rc > 0) return rc;
        if (rc == 0) continue;
        if (!strcmp(o, "--data") || !strcmp(o, "--out") || !strcmp(o, "--config")) {
            const char **dst = o[2] == 'd' ? &a->data : o[2] == 'o' ? &a->out : &a->config;
            if (opt_value(argc, argv, &i, dst)) return usage_error(cmd, "%s needs a path", o);
        } else if (!strcmp(o, "--lr")) rc = real_opt(cmd, argc, argv, &i, &a->lr);
        else if (!strcmp(o, "--weight-decay")) rc = real_opt(cmd, argc, argv, &i, &a->wd);
        else if (!strcmp(o, "--max-grad-norm")) rc = real_opt(cmd, argc, argv, &i, &a->clip);
        else if (!strcmp(o, "--keep-best")) a->keep_best = 1;
        else if (!strcmp(o, "--async-save")) a->async = 1;
        else return usage_error(cmd, "unknown option '%s'", o);
        if (rc > 0) return rc;
    }
    if (!a->data || !a->out || !a->steps) return usage_error(cmd, "%s", "needs --data, --out and --steps");
    return EXIT_OK;
}

/* A config (and maybe a tokenizer) from --config DIR, else from the size options. */
static int make_config(const train_args *a, lmio_config **cfg, lmio_tokenizer **tok)
{
    lmio_error err;
    *tok = NULL;
    if (a->config) {
        char note[256];
        if (lmio_config_load(a->config, cfg, &err)) return fail(&err);
        return dir_tokenizer(a->config, tok, note, sizeof note);
    }
    if (lmio_config_create("gpt2", cfg, &err)) return fail(&err);
    const char *keys[] = {"n_layer", "n_embd", "n_head", "n_positions"};
    uint64_t vals[] = {a->n_layer, a->n_embd, a->n_head, a->n_positions};
    for (int k = 0; k < 4; k++)
        if (lmio_config_set_int(*cfg, keys[k], (int64_t)vals[k], &err)) return fail(&err);
    return EXIT_OK;
}

/* The config's vocabulary and special ids follow the tokenizer; training
 * runs without dropout, and the config says so. */
static int fit_config(lmio_config *cfg, const lmio_tokenizer *tok)
{
    lmio_error err;
    int32_t eos = lmio_tokenizer_eos_id(tok);
    /* the dropout keys Transformers' configs use; only those this config
     * (or its architecture's defaults) has are set, so no architecture
     * gets another's keys */
    const char *zero[] = {"attn_pdrop", "embd_pdrop", "resid_pdrop", "attention_dropout"};
    if (lmio_config_set_int(cfg, "vocab_size", (int64_t)lmio_tokenizer_vocab_size(tok), &err)) return fail(&err);
    for (size_t k = 0; k < sizeof zero / sizeof zero[0]; k++) {
        double v;
        if (lmio_config_get_float(cfg, zero[k], &v, NULL) == LMIO_OK && lmio_config_set_float(cfg, zero[k], 0.0, &err))
            return fail(&err);
    }
    if (eos >= 0 && (lmio_config_set_int(cfg, "bos_token_id", eos, &err) || lmio_config_set_int(cfg, "eos_token_id", eos, &err)))
        return fail(&err);
    return EXIT_OK;
}

static int fresh_trainer(const train_args *a, lmio_trainer **tr, lmio_tokenizer **tok)
{
    lmio_config *cfg = NULL;
    lmio_error err;
    int rc = make_config(a, &cfg, tok);
    if (!rc && !*tok) {
        int64_t cv = 0;
        const char *special[] = {"<|endoftext|>"};
        lmio_train_opts to = LMIO_TRAIN_OPTS_INIT;
        to.vocab_size = a->config && !lmio_config_get_int(cfg, "vocab_size", &cv, NULL) ? (size_t)cv : (size_t)a->vocab;
        to.special = special;
        to.n_special = 1;
        fprintf(stderr, "lmio train: training a %zu-token tokenizer on %s\n", to.vocab_size, tty(a->data));
        if (lmio_tokenizer_train(&a->data, 1, &to, tok, &err)) rc = fail(&err);
    }
    if (!rc) rc = fit_config(cfg, *tok);
    lmio_trainer_opts o = LMIO_TRAINER_OPTS_INIT;
    o.batch_size = (size_t)a->batch;
    o.seq_len = (size_t)a->seq;
    o.lr = a->lr;
    o.total_steps = a->steps;
    o.warmup_steps = a->warmup_set ? a->warmup : a->steps / 20;
    o.weight_decay = a->wd;
    o.max_grad_norm = a->clip;
    o.seed = a->seed;
    if (!rc && lmio_trainer_create(cfg, NULL, *tok, &o, tr, &err)) rc = fail(&err);
    lmio_config_free(cfg);
    return rc;
}

static int load_data(const char *path, const lmio_tokenizer *tok, int32_t **ids, size_t *n)
{
    char *text;
    size_t len;
    lmio_error err;
    int rc = read_file_all(path, &text, &len);
    if (rc) return rc;
    if (lmio_tokenizer_encode(tok, text, len, ids, n, &err)) rc = fail(&err);
    free(text);
    return rc;
}

static int train_loop(const train_args *a, lmio_trainer *tr)
{
    lmio_error err;
    lmio_checkpoint_opts co = LMIO_CHECKPOINT_OPTS_INIT;
    co.keep = a->keep;
    co.keep_best = a->keep_best;
    co.async = a->async;
    while (lmio_trainer_step_count(tr) < a->steps) {
        lmio_train_stats st;
        if (lmio_trainer_step(tr, &st, &err)) return fail(&err);
        printf("{\"step\": %llu, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.4f, \"tokens_per_second\": %.0f}\n",
               (unsigned long long)st.step, st.loss, st.lr, st.grad_norm, st.tokens_per_second);
        fflush(stdout);
        if ((a->save_every && st.step % a->save_every == 0) || st.step == a->steps) {
            if (lmio_trainer_save(tr, a->out, &co, &err)) return fail(&err);
        }
    }
    if (lmio_trainer_wait(tr, &err)) return fail(&err);
    return EXIT_OK;
}

int cmd_train(const cli_command *self, int argc, char **argv)
{
    train_args a = {.n_layer = 2, .n_embd = 64, .n_head = 4, .n_positions = 128, .vocab = 512, .batch = 8,
                    .lr = 1e-3, .wd = 0.01, .clip = 1.0};
    for (int i = 1; i < argc; i++)
        if (is_help(argv[i])) return print_help(self);
    int rc = parse_args(self->name, argc, argv, &a);
    if (rc) return rc;
    lmio_error err;
    lmio_trainer *tr = NULL;
    lmio_tokenizer *tok = NULL;
    char ckpt[4200];
    uint64_t at;
    lmio_status s = lmio_run_latest(a.out, ckpt, sizeof ckpt, &at, &err);
    if (s == LMIO_OK) {
        fprintf(stderr, "lmio train: resuming from %s\n", tty(ckpt));
        if (lmio_trainer_resume(ckpt, a.steps, &tr, &err)) return fail(&err);
    } else if (s != LMIO_ERR_NOT_FOUND) {
        return fail(&err);
    } else if ((rc = fresh_trainer(&a, &tr, &tok))) {
        lmio_tokenizer_free(tok);
        return rc;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    rc = load_data(a.data, lmio_trainer_tokenizer(tr), &ids, &n);
    if (!rc && lmio_trainer_set_data(tr, ids, n, &err)) rc = fail(&err);
    if (!rc) rc = train_loop(&a, tr);
    lmio_free(ids);
    lmio_trainer_free(tr);
    lmio_tokenizer_free(tok);
    return rc;
}
