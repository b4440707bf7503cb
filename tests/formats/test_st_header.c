/* The safetensors reader's fast header path (a strict lexer, no JSON tree)
 * against its general path (jansson) on the same bytes: for every header
 * here and every one-byte edit of it (replaced, deleted, inserted), both
 * must give the same status, offset and message, or the same tensors and
 * metadata. The fast path may only accept what the general one accepts
 * and must decline everything else, so any difference is a bug in it. */
#include "../../src/formats/formats.h"
#include "../test.h"

#include <stdlib.h>

typedef struct result {
    lmio_status s;
    lmio_error err;
    char *dump; /* tensors and metadata, one line each */
} result;

static char *dump_sd(const lmio_statedict *sd, const unsigned char *base)
{
    size_t cap = 1 << 16, len = 0;
    char *d = malloc(cap);
    for (size_t i = 0; i < lmio_statedict_count(sd); i++) {
        lmio_tensor t;
        lmio_statedict_get(sd, i, &t, NULL);
        char sh[256];
        lmio__format_shape(sh, sizeof sh, t.ndim, t.shape);
        if (cap - len < 1024) d = realloc(d, cap *= 2);
        len += (size_t)snprintf(d + len, cap - len, "%s %s %s data+%td %llu off %lld\n", t.name,
                                lmio_dtype_name(t.dtype), sh, t.data ? (const unsigned char *)t.data - base : -1,
                                (unsigned long long)t.nbytes, (long long)t.file_offset);
    }
    for (size_t i = 0; i < lmio_metadata_count(sd); i++) {
        const char *k, *v;
        lmio_metadata_get(sd, i, &k, &v, NULL);
        if (cap - len < strlen(k) + strlen(v) + 16) d = realloc(d, cap = cap * 2 + strlen(k) + strlen(v));
        len += (size_t)snprintf(d + len, cap - len, "meta %s=%s\n", k, v);
    }
    d[len] = 0;
    return d;
}

static result open_bytes(const unsigned char *bytes, size_t n, int fast)
{
    result r = {0};
    unsigned char *copy = lmio__malloc(n ? n : 1);
    memcpy(copy, bytes, n);
    lmio__file f = {copy, n, 0};
    lmio_statedict *sd = NULL;
    lmio__safetensors_fast_header = fast;
    r.s = lmio__format_safetensors.open("hdr.safetensors", &f, &sd, &r.err);
    lmio__safetensors_fast_header = 1;
    if (r.s) {
        lmio__file_close(&f);
        return r;
    }
    r.dump = dump_sd(sd, copy);
    lmio_statedict_free(sd);
    return r;
}

static int g_cases, g_accepted;

/* Both paths on one file; a mismatch is reported with the header text. */
static void compare(const unsigned char *bytes, size_t n, const char *what)
{
    result a = open_bytes(bytes, n, 1), b = open_bytes(bytes, n, 0);
    g_cases++;
    bool same = a.s == b.s && (a.s ? a.err.offset == b.err.offset && !strcmp(a.err.message, b.err.message)
                                   : !strcmp(a.dump, b.dump));
    if (!a.s) g_accepted++;
    CHECK_MSG(same, "%s: fast %s (%s) vs general %s (%s); header: %.*s", what, lmio_status_str(a.s),
              a.s ? a.err.message : "ok", lmio_status_str(b.s), b.s ? b.err.message : "ok",
              n > 8 ? (int)(n - 8 > 400 ? 400 : n - 8) : 0, (const char *)bytes + 8);
    free(a.dump);
    free(b.dump);
}

/* A file: u64le header length, the header, then data bytes. */
static unsigned char *file_of(const char *hdr, size_t hn, size_t data, size_t *n)
{
    *n = 8 + hn + data;
    unsigned char *f = malloc(*n);
    lmio__put_le64(f, hn);
    memcpy(f + 8, hdr, hn);
    for (size_t i = 0; i < data; i++) f[8 + hn + i] = (unsigned char)i;
    return f;
}

static void edits(const char *hdr, size_t data)
{
    static const char repl[] = "\\\"-+.eE0129 \t\n\r{}[],:xaF_\x01\x7f";
    size_t hn = strlen(hdr), n;
    char *h = malloc(hn + 2);
    unsigned char *f = file_of(hdr, hn, data, &n);
    compare(f, n, "unedited");
    free(f);
    for (size_t i = 0; i <= hn; i++) {
        for (const char *c = repl; *c; c++) {
            if (i < hn) { /* replaced */
                memcpy(h, hdr, hn);
                h[i] = *c;
                f = file_of(h, hn, data, &n);
                compare(f, n, "replaced");
                free(f);
            }
            /* inserted */
            memcpy(h, hdr, i);
            h[i] = *c;
            memcpy(h + i + 1, hdr + i, hn - i);
            f = file_of(h, hn + 1, data, &n);
            compare(f, n, "inserted");
            free(f);
        }
        if (i < hn) { /* deleted */
            memcpy(h, hdr, i);
            memcpy(h + i, hdr + i + 1, hn - i - 1);
            f = file_of(h, hn - 1, data, &n);
            compare(f, n, "deleted");
            free(f);
        }
    }
    free(h);
}

int main(void)
{
    /* as lmio and the reference writer emit it */
    edits("{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},\"a.b\":{\"dtype\":\"F32\",\"shape\":[2,2],"
          "\"data_offsets\":[0,16]},\"c\":{\"dtype\":\"I8\",\"shape\":[3],\"data_offsets\":[16,19]},"
          "\"e\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[19,21]}}   ",
          21);
    /* as json.dumps writes it, keys in another order, a zero-size tensor */
    edits("{ \"w\": {\"shape\": [1, 10], \"data_offsets\": [0, 40], \"dtype\": \"I32\"},\n"
          "  \"z\": {\"data_offsets\": [40, 40], \"dtype\": \"F16\", \"shape\": [0, 7]},\n"
          "  \"__metadata__\": {}\n}",
          40);
    /* numbers at their edges */
    edits("{\"t\":{\"dtype\":\"U8\",\"shape\":[9223372036854775807,0],\"data_offsets\":[0,0]}}", 0);
    edits("{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2);
    edits("{}", 0);
    /* things only the general path reads: escapes, non-ASCII names */
    edits("{\"n\\u00e9\\\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
          "\"__metadata__\":{\"a\\nb\":\"\\ud83d\\ude00\"}}",
          1);
    edits("{\"caf\xc3\xa9\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1);
    /* each a rule the fast path must decline or apply exactly as the general one */
    static const char *const hand[] = {
        "{\"t\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},\"t\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[1,1]}}",
        "{\"__metadata__\":{},\"__metadata__\":{}}",
        "{\"__metadata__\":{\"a\":\"1\",\"a\":\"2\"}}",
        "{\"__metadata__\":{\"b\":\"1\",\"a\":\"2\"}}",
        "{\"__metadata__\":{\"a\":1}}",
        "{\"__metadata__\":{\"a\":{}}}",
        "{\"__metadata__\":[]}",
        "{\"__metadata__\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[9223372036854775808],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[18446744073709551616],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1.0],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1e0],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[-1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[-0],\"data_offsets\":[0,0]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[01],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":0}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1]}}",
        "{\"t\":{\"dtype\":\"u8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"F8_E4M3FNUZ_\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"F8_E4M3FNUZ\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,0]}}",
        "{\"t\":[],\"u\":{}}",
        "{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        " \t\r\n{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} \n",
        "\xef\xbb\xbf{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}{}",
        "{\"t\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}},",
        "[]",
    };
    for (size_t i = 0; i < sizeof hand / sizeof hand[0]; i++) {
        for (size_t data = 0; data <= 2; data++) {
            size_t n;
            unsigned char *f = file_of(hand[i], strlen(hand[i]), data, &n);
            compare(f, n, hand[i]);
            free(f);
        }
        edits(hand[i], 1);
    }
    printf("safetensors header, fast vs general path: %d files, %d accepted, all alike\n", g_cases, g_accepted);
    CHECK(g_accepted > 100);
    return test_result("test_st_header");
}
