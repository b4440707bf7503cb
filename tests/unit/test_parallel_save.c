/* save_pretrained writes the shards of a large model on several threads:
 * every shard must hold exactly what a single-file save of its tensors
 * holds (so the threads' timing cannot show in the output), and a failure
 * in one shard must fail the save with that shard's own error (not the
 * cancellation of the others), leaving nothing behind. */
#include "../../src/core/core.h"
#include "fixture.h"

#include <errno.h>

static const char *k_json_name(const char *index, const char *tensor, char *out, size_t cap)
{
    /* "tensor": "model-0000k-of-0000n.safetensors" in the index */
    char key[128];
    snprintf(key, sizeof key, "\"%s\": \"", tensor);
    const char *p = strstr(index, key);
    if (!p) return NULL;
    p += strlen(key);
    size_t n = strcspn(p, "\"");
    snprintf(out, cap, "%.*s", (int)n, p);
    return out;
}

int main(void)
{
    if (scratch_begin("psave")) return 1;
    /* 12 tensors of 4 MiB (f32): 48 MiB, 12 shards at 5 MB; 3 at 10 MB in bf16 */
    lmio_statedict *w = fx_weights(12, 1 << 20, 0.5f);
    for (int conv = 0; conv < 2; conv++) {
        lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
        o.max_shard_size = 5000000 * (conv ? 2 : 1);
        o.dtype = conv ? LMIO_DTYPE_BF16 : LMIO_DTYPE_NONE;
        o.durable = 0;
        const char *dir = scratch(conv ? "bf16" : "f32");
        CHECK_OK(lmio_pretrained_save(dir, NULL, w, NULL, &o, &e_));
        char ipath[600];
        snprintf(ipath, sizeof ipath, "%s/model.safetensors.index.json", dir);
        char *index = fx_read(ipath, NULL);
        CHECK(index != NULL);
        if (!index) continue;
        /* each shard against a single-file save of the tensors it lists */
        int shards = 0;
        for (int k = 1;; k++) {
            char want[64], shard[700], alone[700];
            lmio_statedict *part;
            lmio_statedict_create(&part, NULL);
            for (size_t i = 0; i < lmio_statedict_count(w); i++) {
                lmio_tensor t;
                char in[64];
                lmio_statedict_get(w, i, &t, NULL);
                snprintf(want, sizeof want, "model-%05d-of-", k);
                if (k_json_name(index, t.name, in, sizeof in) && !strncmp(in, want, strlen(want))) {
                    lmio_statedict_add(part, t.name, t.dtype, t.ndim, t.shape, t.data, t.nbytes, LMIO_BORROW, NULL);
                    snprintf(shard, sizeof shard, "%s/%s", dir, in);
                }
            }
            if (!lmio_statedict_count(part)) {
                lmio_statedict_free(part);
                break;
            }
            lmio_metadata_set(part, "format", "pt", NULL);
            lmio_save_opts so = LMIO_SAVE_OPTS_INIT;
            so.dtype = o.dtype;
            snprintf(alone, sizeof alone, "%s/alone.safetensors", g_scratch);
            CHECK_OK(lmio_safetensors_save(part, alone, &so, &e_));
            CHECK_MSG(fx_same(shard, alone), "%s differs from a single-file save of its tensors", shard);
            lmio_statedict_free(part);
            shards++;
        }
        CHECK_MSG(shards >= 3, "%d shards", shards);
        free(index);
    }
    /* a write failing in the middle: the save fails with that error */
    long writes;
    lmio__io_fault_arm(LMIO__IO_COUNT, 0, 0);
    lmio_pretrained_opts o = LMIO_PRETRAINED_OPTS_INIT;
    o.max_shard_size = 5000000;
    CHECK_OK(lmio_pretrained_save(scratch("count"), NULL, w, NULL, &o, &e_));
    writes = lmio__io_fault_calls(LMIO__IO_WRITE);
    for (long k = 1; k <= writes; k++) {
        lmio_error err;
        lmio__io_fault_arm(LMIO__IO_WRITE, k, ENOSPC);
        lmio_status s = lmio_pretrained_save(scratch("fails"), NULL, w, NULL, &o, &err);
        lmio__io_fault_arm(LMIO__IO_COUNT, 0, 0);
        CHECK_MSG(s == LMIO_ERR_IO && strstr(err.message, "No space left"), "write %ld: %s: %s", k,
                  lmio_status_str(s), err.message);
        CHECK(access(scratch("fails"), F_OK) != 0);
        CHECK(fx_count_named(g_scratch, LMIO__TMP_TAG) == 0);
    }
    lmio_statedict_free(w);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_scratch);
    if (system(cmd) != 0) fprintf(stderr, "warning: %s failed\n", cmd);
    return test_result("test_parallel_save");
}
