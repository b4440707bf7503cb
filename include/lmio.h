/*
 * lmio.h: the one public header of lmio, a C11 library that saves, loads,
 * validates and converts trained language models.
 *
 * Conventions that hold for every function below:
 *  - Fallible calls return an lmio_status and take a nullable lmio_error *.
 *    On failure the error receives the code, the path, the byte offset in the
 *    file (-1 when none applies), the key (tensor or metadata name, "" when
 *    none) and a one-line message of the form
 *        <file>: offset <N>: <what was found>; expected <what was expected>
 *    The message is safe to print: control characters, invisible reordering
 *    marks and invalid UTF-8 (in file names, tensor names, metadata) appear
 *    as \xNN, as lmio_escape_text writes them. The path and key fields keep
 *    the exact bytes.
 *  - The library never prints, aborts or exits.
 *  - Every *_free accepts NULL.
 *  - Pointers returned by the library are borrowed unless a comment says
 *    otherwise; the comment names how long they stay valid.
 *  - Options structs start from their *_OPTS_INIT macro, which sets their
 *    first field, struct_size, to the size of the struct as this header
 *    declares it. New behaviour only ever arrives as a new field at the end,
 *    and the library reads only the first struct_size bytes: a program built
 *    against an older, shorter struct gets the defaults for the fields its
 *    struct lacks. A struct_size that is not one the library knows (zero, or
 *    larger than the library's own struct) is LMIO_ERR_INVALID_ARG.
 */
#ifndef LMIO_H
#define LMIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(LMIO_BUILDING) && defined(__GNUC__)
#define LMIO_API __attribute__((visibility("default")))
#else
#define LMIO_API
#endif

#define LMIO_VERSION_MAJOR 0
#define LMIO_VERSION_MINOR 1
#define LMIO_VERSION_PATCH 0
#define LMIO_VERSION_STRING "0.1.0"

/* Runtime version, e.g. "0.1.0"; static storage. */
LMIO_API const char *lmio_version(void);

/* ------------------------------------------------------------------------ */
/* Status and errors                                                         */
/* ------------------------------------------------------------------------ */

/* Values are pinned: they are never renumbered, new ones are appended. */
typedef enum lmio_status {
    LMIO_OK = 0,
    LMIO_ERR_INVALID_ARG = 1, /* the caller passed something unusable       */
    LMIO_ERR_IO = 2,          /* open/read/write/fsync/rename failed        */
    LMIO_ERR_NOMEM = 3,       /* an allocation failed                       */
    LMIO_ERR_FORMAT = 4,      /* the file breaks its format's rules         */
    LMIO_ERR_UNSUPPORTED = 5, /* well-formed, but lmio cannot do this       */
    LMIO_ERR_NOT_FOUND = 6,   /* a named tensor, key or file is absent      */
    LMIO_ERR_LIMIT = 7,       /* a size or count exceeds a documented cap   */
    LMIO_ERR_DUPLICATE = 8,   /* a name occurs twice                        */
    LMIO_ERR_CANCELLED = 9,   /* a progress callback asked to stop          */
    LMIO_ERR_INTEGRITY = 10   /* a checksum does not match                  */
} lmio_status;

/* Static string naming a status, e.g. "format error". */
LMIO_API const char *lmio_status_str(lmio_status status);

#define LMIO_ERROR_PATH_MAX 1024
#define LMIO_ERROR_KEY_MAX 256
#define LMIO_ERROR_MESSAGE_MAX 2048

typedef struct lmio_error {
    lmio_status code;
    int64_t offset;                     /* byte offset in the file, or -1   */
    char path[LMIO_ERROR_PATH_MAX];     /* file concerned, or ""            */
    char key[LMIO_ERROR_KEY_MAX];       /* tensor/metadata key, or ""       */
    char message[LMIO_ERROR_MESSAGE_MAX]; /* full one-line message          */
} lmio_error;

/* Resets an error to LMIO_OK with empty fields. */
LMIO_API void lmio_error_clear(lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Allocator hook                                                            */
/* ------------------------------------------------------------------------ */

/* All heap memory lmio (and the JSON library it wraps) takes goes through
 * these functions. Install before any other call; process-wide; not
 * thread-safe to change while other lmio calls run. Passing NULL restores
 * the C library's malloc/realloc/free. */
typedef struct lmio_allocator {
    void *(*malloc_fn)(void *ctx, size_t size);
    void *(*realloc_fn)(void *ctx, void *ptr, size_t size);
    void (*free_fn)(void *ctx, void *ptr);
    void *ctx;
} lmio_allocator;

LMIO_API void lmio_set_allocator(const lmio_allocator *allocator);

/* ------------------------------------------------------------------------ */
/* Data types                                                                */
/* ------------------------------------------------------------------------ */

/* Values are pinned. Names are the safetensors spellings ("F32", "BF16"). */
typedef enum lmio_dtype {
    LMIO_DTYPE_BOOL = 0,
    LMIO_DTYPE_U8 = 1,
    LMIO_DTYPE_I8 = 2,
    LMIO_DTYPE_I16 = 3,
    LMIO_DTYPE_U16 = 4,
    LMIO_DTYPE_I32 = 5,
    LMIO_DTYPE_U32 = 6,
    LMIO_DTYPE_I64 = 7,
    LMIO_DTYPE_U64 = 8,
    LMIO_DTYPE_F16 = 9,
    LMIO_DTYPE_BF16 = 10,
    LMIO_DTYPE_F32 = 11,
    LMIO_DTYPE_F64 = 12,
    LMIO_DTYPE_F8_E4M3 = 13, /* torch float8_e4m3fn */
    LMIO_DTYPE_F8_E5M2 = 14,
    LMIO_DTYPE_F8_E8M0 = 15, /* carried as bytes, not converted */
    LMIO_DTYPE_F8_E4M3FNUZ = 16,
    LMIO_DTYPE_F8_E5M2FNUZ = 17,
    LMIO_DTYPE_F6_E2M3 = 18,
    LMIO_DTYPE_F6_E3M2 = 19,
    LMIO_DTYPE_F4 = 20,
    LMIO_DTYPE_C64 = 21,
    LMIO_DTYPE_COUNT = 22,
    LMIO_DTYPE_NONE = -1 /* "keep the dtype" in options */
} lmio_dtype;

/* "F32" etc.; NULL for an invalid value. Static storage. */
LMIO_API const char *lmio_dtype_name(lmio_dtype dtype);
/* Exact, case-sensitive match of a safetensors name; LMIO_DTYPE_NONE if unknown. */
LMIO_API lmio_dtype lmio_dtype_from_name(const char *name);
/* Bits per element (4, 6, 8, 16, 32, 64), 0 for an invalid value. */
LMIO_API unsigned lmio_dtype_bits(lmio_dtype dtype);
/* 1 for F16, BF16, F32, F64: the types lmio converts between. */
LMIO_API int lmio_dtype_is_convertible_float(lmio_dtype dtype);

/* Converts n elements between F32, F16, BF16 and F64 (any pair, including
 * identity). The results equal torch's Tensor.to() on x86-64 bit for bit:
 * round to nearest even, overflow to +-Inf, subnormals kept, +-Inf kept, NaN
 * stays NaN (f16 keeps the sign and top payload bits and sets the quiet bit;
 * bf16 NaN becomes 0xFFFF as ATen writes it, or 0x7FC0 when coming from f16;
 * F64 narrows through F32). dst and
 * src must not overlap; neither needs any alignment. Uses F16C/AVX2 when the
 * CPU has them; the portable path gives the same bits. */
LMIO_API lmio_status lmio_convert(void *dst, lmio_dtype dst_dtype, const void *src,
                                  lmio_dtype src_dtype, size_t n, lmio_error *err);

/* Which conversion kernels run: LMIO_SIMD_AUTO picks by CPU (default; the
 * environment variable LMIO_SIMD=0 forces portable at startup). Returns the
 * previous setting. For tests and benchmarks. */
typedef enum lmio_simd { LMIO_SIMD_AUTO = 0, LMIO_SIMD_PORTABLE = 1 } lmio_simd;
LMIO_API lmio_simd lmio_set_simd(lmio_simd mode);
/* "avx2+f16c" or "portable": what lmio_convert uses now. Static storage. */
LMIO_API const char *lmio_simd_active(void);

/* ------------------------------------------------------------------------ */
/* State dict: an ordered set of named tensors                               */
/* ------------------------------------------------------------------------ */

#define LMIO_MAX_DIMS 16

/* A read-only view of one tensor. Borrowed from its state dict: valid until
 * the state dict is freed or the tensor is removed. */
typedef struct lmio_tensor {
    const char *name;
    lmio_dtype dtype;
    int ndim;                        /* 0 for a scalar                     */
    uint64_t shape[LMIO_MAX_DIMS];
    const void *data;                /* NULL only when nbytes == 0         */
    uint64_t nbytes;
    uint64_t numel;
    int64_t file_offset;             /* absolute offset of the data in the
                                        file it was read from, or -1       */
    const char *source;              /* that file's path, or NULL          */
} lmio_tensor;

typedef struct lmio_statedict lmio_statedict;

/* How a state dict holds data given to lmio_statedict_add. */
typedef enum lmio_ownership {
    LMIO_BORROW = 0, /* keep the pointer; the caller keeps the bytes alive
                        and unchanged until the state dict is freed         */
    LMIO_COPY = 1    /* copy the bytes now                                  */
} lmio_ownership;

/* An empty state dict. Free with lmio_statedict_free. */
LMIO_API lmio_status lmio_statedict_create(lmio_statedict **out, lmio_error *err);
/* Frees a state dict (created or opened) and unmaps any file behind it. */
LMIO_API void lmio_statedict_free(lmio_statedict *sd);

/* Appends a tensor. name: UTF-8, 1..LMIO_NAME_MAX bytes, unique in the state
 * dict (LMIO_ERR_DUPLICATE otherwise), not "__metadata__". nbytes must equal
 * numel * bits / 8 exactly. */
#define LMIO_NAME_MAX 4096
LMIO_API lmio_status lmio_statedict_add(lmio_statedict *sd, const char *name, lmio_dtype dtype,
                                        int ndim, const uint64_t *shape, const void *data,
                                        uint64_t nbytes, lmio_ownership ownership,
                                        lmio_error *err);

LMIO_API size_t lmio_statedict_count(const lmio_statedict *sd);
/* Fills *out with tensor i (0-based, in state-dict order). */
LMIO_API lmio_status lmio_statedict_get(const lmio_statedict *sd, size_t i, lmio_tensor *out,
                                        lmio_error *err);
/* Looks a tensor up by name; LMIO_ERR_NOT_FOUND if absent. */
LMIO_API lmio_status lmio_tensor_find(const lmio_statedict *sd, const char *name,
                                      lmio_tensor *out, lmio_error *err);

/* String-to-string metadata (safetensors __metadata__). Setting an existing
 * key replaces its value. Both strings are copied and must be UTF-8. */
LMIO_API lmio_status lmio_metadata_set(lmio_statedict *sd, const char *key, const char *value,
                                       lmio_error *err);
LMIO_API size_t lmio_metadata_count(const lmio_statedict *sd);
/* Entry i, in key order. Borrowed: valid until the state dict changes or is freed. */
LMIO_API lmio_status lmio_metadata_get(const lmio_statedict *sd, size_t i, const char **key,
                                       const char **value, lmio_error *err);
/* The value for key, or NULL. Borrowed, as above. */
LMIO_API const char *lmio_metadata_find(const lmio_statedict *sd, const char *key);

/* The file the state dict was opened from, or NULL. Borrowed. */
LMIO_API const char *lmio_statedict_path(const lmio_statedict *sd);
/* The format an opened file was read in ("safetensors", as
 * lmio_format_name spells it), NULL for a built one. Static storage. */
LMIO_API const char *lmio_statedict_format(const lmio_statedict *sd);

/* ------------------------------------------------------------------------ */
/* Opening files                                                             */
/* ------------------------------------------------------------------------ */

typedef struct lmio_open_opts {
    size_t struct_size; /* sizeof(lmio_open_opts), set by the INIT macro   */
    int use_mmap; /* 1 (default): map the file and hand out zero-copy views;
                     0: read it into memory with pread                      */
} lmio_open_opts;
#define LMIO_OPEN_OPTS_INIT {sizeof(lmio_open_opts), 1}

/* Opens a model file, detecting its format from its first bytes, and
 * validates every offset, size and count against the file before returning.
 * Tensor data is borrowed from the mapping: valid until lmio_statedict_free.
 * opts may be NULL for defaults. */
LMIO_API lmio_status lmio_statedict_open(const char *path, const lmio_open_opts *opts,
                                         lmio_statedict **out, lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Saving files                                                              */
/* ------------------------------------------------------------------------ */

/* Called as bytes are written; return non-zero to cancel (the save then
 * fails with LMIO_ERR_CANCELLED and leaves nothing behind). */
typedef int (*lmio_progress_fn)(void *ctx, uint64_t done, uint64_t total);

typedef struct lmio_save_opts {
    size_t struct_size;      /* sizeof(lmio_save_opts), set by the INIT macro */
    lmio_dtype dtype;        /* LMIO_DTYPE_NONE: keep; F32/F16/BF16/F64:
                                convert every floating tensor to this      */
    int durable;             /* 1 (default): fsync the file and directory   */
    lmio_progress_fn progress;
    void *progress_ctx;
} lmio_save_opts;
#define LMIO_SAVE_OPTS_INIT {sizeof(lmio_save_opts), LMIO_DTYPE_NONE, 1, NULL, NULL}

/* Writes a state dict in the named format ("safetensors"; NULL means
 * safetensors; "pytorch", also spelled "bin", "pt", "torch" or "torch-zip":
 * a torch.save checkpoint; lmio_format_can_save tells which names work),
 * atomically:
 * a temporary file beside path, fsynced when opts->durable, renamed over
 * path. An unknown name is LMIO_ERR_INVALID_ARG, a format lmio only reads
 * LMIO_ERR_UNSUPPORTED; both name the formats that can be written. */
LMIO_API lmio_status lmio_statedict_save(const lmio_statedict *sd, const char *path, const char *format,
                                         const lmio_save_opts *opts, lmio_error *err);

/* The formats lmio knows, by index from 0 ("safetensors", "pytorch",
 * "gguf"); NULL past the last. Static storage. Files are recognised by
 * their bytes, never by their names. The functions below also accept each
 * format's other spellings ("bin", "pt", "torch", "torch-zip" for pytorch).
 *
 * PyTorch checkpoints (torch.save's zip archive, and the legacy stream of
 * _use_new_zipfile_serialization=False) are read by a pickle machine that
 * executes nothing: it knows the protocol-2 opcodes and the globals
 * torch.save writes for tensors, storages, dtypes, OrderedDict and
 * Parameters, and refuses any other (LMIO_ERR_UNSUPPORTED naming the global
 * or opcode and its offset). Nested dicts, lists and tuples are flattened
 * into names joined with '.' ("optimizer.state.0.exp_avg"); ints, floats,
 * strings, bools, None and dtypes become metadata under their names, as
 * Python prints them ("step" = "5"). Contiguous tensor views are zero-copy
 * views of the file; strided views are copied out contiguous, and may not
 * hold more elements than their storage (LMIO_ERR_LIMIT). Writing produces
 * what torch.save does: tensors whose bytes overlap in memory share one
 * storage; F6 and F4 tensors are LMIO_ERR_UNSUPPORTED; metadata is not
 * written. */
LMIO_API const char *lmio_format_name(size_t i);
/* The format lmio would read the file at path as, judged by its first
 * bytes as lmio_statedict_open judges them ("gguf"; a file no format
 * recognises is "safetensors", whose reader then says what is wrong); NULL
 * when it cannot be opened. Static storage. */
LMIO_API const char *lmio_format_of(const char *path);
/* 1 if lmio reads / writes the named format, else 0. */
LMIO_API int lmio_format_can_read(const char *name);
LMIO_API int lmio_format_can_save(const char *name);

/* lmio_statedict_save(sd, path, "safetensors", opts, err).
 * Writes a state dict as safetensors. The header is computed first, then
 * tensors stream out one by one (converted in bounded chunks when opts asks
 * for a dtype): memory use does not grow with the model. Tensors are ordered
 * as the reference writer orders them (descending dtype alignment, then
 * name); metadata is written first, keys sorted, when there is any. Output
 * goes to a temporary file in the destination directory that is fsynced and
 * renamed over path, so an existing file is replaced whole or left as it was
 * (path may even be the file sd was opened from). Same input, same bytes. */
LMIO_API lmio_status lmio_safetensors_save(const lmio_statedict *sd, const char *path,
                                           const lmio_save_opts *opts, lmio_error *err);

/* Limits lmio enforces when reading safetensors. */
#define LMIO_SAFETENSORS_MAX_HEADER 100000000ULL /* as the reference reader */

/* ------------------------------------------------------------------------ */
/* Utilities                                                                 */
/* ------------------------------------------------------------------------ */

/* Formats a shape as "[2, 3]" ("[]" for a scalar) into buf, always
 * NUL-terminated when cap > 0 and truncated safely when it does not fit.
 * Allocates nothing; shape needs ndim entries. */
LMIO_API void lmio_shape_format(char *buf, size_t cap, int ndim, const uint64_t *shape);

/* A dtype from what a user types: the safetensors names case-insensitively
 * ("F32", "bf16") and the usual spellings "float32", "fp32", "float16",
 * "fp16", "half", "bfloat16", "float64", "fp64" (also case-insensitive).
 * LMIO_DTYPE_NONE when unknown or s is NULL. */
LMIO_API lmio_dtype lmio_dtype_parse(const char *s);

/* The length of the longest prefix of s[0..n) that is valid UTF-8 (no
 * overlong forms, no surrogates, nothing above U+10FFFF): n when all of it
 * is valid. The same rule lmio applies to headers, JSON and tokenizer input.
 * s may be NULL when n is 0. */
LMIO_API size_t lmio_utf8_valid_prefix(const char *s, size_t n);

/* Writes len bytes of data to path atomically with lmio's one file writer,
 * the one every save uses: a temporary file .<name>.lmio-tmp-XXXXXX beside
 * path (created with O_EXCL, never through a symlink), then rename over it,
 * so path ends up holding all of data or stays as it was, and no temporary
 * file is left behind. A file it replaces keeps its mode and, where the
 * process may set them (root, or the same owner), its owner and group; a new
 * file gets mode 0666 & ~umask. durable = 1 also fsyncs the file and its
 * directory. Leftovers of saves to the same path that were killed
 * (SIGKILL, power loss) are removed first; never those of a live save.
 * LMIO_ERR_INVALID_ARG when path is NULL, a directory, a FIFO, a device, a
 * socket or a symlink to one of these (nothing is opened or replaced), or
 * data is NULL with len > 0; creating, writing, fsyncing or renaming
 * failures are LMIO_ERR_IO with the errno text, naming path. If only the
 * directory fsync after the rename fails, path already holds data and the
 * error says so. data is only read and stays the caller's. */
LMIO_API lmio_status lmio_file_write_atomic(const char *path, const void *data, size_t len, int durable,
                                            lmio_error *err);

/* Removes the temporary files and directories of every save this process
 * has in flight (those saves then fail). Async-signal-safe: meant for a
 * SIGINT/SIGTERM handler, which should then end the process, e.g. by
 * restoring the default action and raising the signal again. Without it, a
 * save interrupted by a signal leaves its .<name>.lmio-tmp-XXXXXX behind
 * until the next save to the same destination removes it. */
LMIO_API void lmio_cleanup_temporaries(void);

/* Copies s[0..n) into dst (cap bytes; always NUL-terminated when cap > 0),
 * making visible what a terminal would act on or hide: C0 and C1 control
 * characters, DEL, the bidirectional marks and overrides (U+061C, U+200E,
 * U+200F, U+202A-U+202E, U+2066-U+2069) and every byte of invalid UTF-8
 * become \xNN (per byte). Everything else, backslash included, is copied,
 * so escaping twice gives the same text. Stops before a character that
 * would not fit. Returns the length written, without the NUL. */
LMIO_API size_t lmio_escape_text(char *dst, size_t cap, const char *s, size_t n);

/* Copies n bytes of t's data, starting offset bytes in, into dst. Unlike
 * reading t->data directly, a mapped file that shrank since it was opened
 * gives LMIO_ERR_IO naming that file instead of killing the process with
 * SIGBUS. LMIO_ERR_INVALID_ARG when the range is outside the tensor. */
LMIO_API lmio_status lmio_tensor_read(const lmio_tensor *t, uint64_t offset, void *dst, size_t n,
                                      lmio_error *err);

/* Frees memory lmio returned to the caller (encode ids, decode text, ...). */
LMIO_API void lmio_free(void *ptr);

/* ------------------------------------------------------------------------ */
/* Tokenizer: byte-level BPE (GPT-2 family)                                  */
/* ------------------------------------------------------------------------ */

/* Encodes and decodes exactly as Hugging Face `tokenizers` does for GPT-2:
 * added tokens (e.g. <|endoftext|>) are matched in the text first; the rest
 * is split by GPT-2's pattern (Unicode letter/number classes, contractions,
 * whitespace look-ahead), mapped through the byte-to-unicode table and
 * merged by rank. Encoding and decoding are thread-safe. */
typedef struct lmio_tokenizer lmio_tokenizer;

/* path: a directory (tokenizer.json, else vocab.json + merges.txt, with
 * added tokens from tokenizer_config.json) or a tokenizer.json file. */
LMIO_API lmio_status lmio_tokenizer_load(const char *path, lmio_tokenizer **out, lmio_error *err);
/* vocab.json + merges.txt by explicit paths (e.g. encoder.json + vocab.bpe);
 * special may list added tokens that must already be in the vocabulary. */
LMIO_API lmio_status lmio_tokenizer_load_files(const char *vocab_json, const char *merges_txt,
                                               const char *const *special, size_t n_special,
                                               lmio_tokenizer **out, lmio_error *err);
/* Writes tokenizer.json, tokenizer_config.json, special_tokens_map.json,
 * vocab.json and merges.txt into an existing directory, each atomically. */
LMIO_API lmio_status lmio_tokenizer_save(const lmio_tokenizer *tok, const char *dir, lmio_error *err);
LMIO_API void lmio_tokenizer_free(lmio_tokenizer *tok);

/* Number of ids (vocabulary plus added tokens not in it). */
LMIO_API size_t lmio_tokenizer_vocab_size(const lmio_tokenizer *tok);
/* Id of a token string (byte-level form), or -1. */
LMIO_API int32_t lmio_tokenizer_token_id(const lmio_tokenizer *tok, const char *token);
/* Token string of an id, or NULL. Borrowed: valid until the tokenizer is freed. */
LMIO_API const char *lmio_tokenizer_token(const lmio_tokenizer *tok, int32_t id);
/* The end-of-text token's id: tokenizer_config.json's (or a GGUF's) eos
 * token when it names one, else the first special token; -1 if none. */
LMIO_API int32_t lmio_tokenizer_eos_id(const lmio_tokenizer *tok);

/* text must be UTF-8 (else LMIO_ERR_INVALID_ARG naming the byte offset).
 * *ids is allocated; free it with lmio_free. */
LMIO_API lmio_status lmio_tokenizer_encode(const lmio_tokenizer *tok, const char *text, size_t len,
                                           int32_t **ids, size_t *n_ids, lmio_error *err);
/* The bytes the ids stand for (NUL-terminated as a convenience; *len excludes
 * it). Free with lmio_free. */
LMIO_API lmio_status lmio_tokenizer_decode(const lmio_tokenizer *tok, const int32_t *ids, size_t n_ids,
                                           char **text, size_t *len, lmio_error *err);

typedef struct lmio_train_opts {
    size_t struct_size;             /* sizeof(lmio_train_opts), set by INIT   */
    size_t vocab_size;              /* target, including the 256 byte tokens
                                       and the special tokens                */
    uint32_t min_frequency;         /* a pair seen fewer times is not merged  */
    const char *const *special;     /* added at the end, e.g. "<|endoftext|>" */
    size_t n_special;
} lmio_train_opts;
#define LMIO_TRAIN_OPTS_INIT {sizeof(lmio_train_opts), 1000, 2, NULL, 0}

/* Trains a byte-level BPE on UTF-8 text files: pre-tokenises as encode does,
 * then repeatedly merges the most frequent adjacent pair (ties: the pair of
 * smaller ids). Deterministic. */
LMIO_API lmio_status lmio_tokenizer_train(const char *const *files, size_t n_files,
                                          const lmio_train_opts *opts, lmio_tokenizer **out,
                                          lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Model config (config.json)                                                */
/* ------------------------------------------------------------------------ */

/* The config is kept as the JSON object it came from, so keys lmio does not
 * know survive a load/save round trip. For an architecture lmio knows
 * (lmio_arch_supported), getters apply its Transformers config class's
 * defaults and key aliases (GPT-2: hidden_size = n_embd, num_hidden_layers =
 * n_layer, num_attention_heads = n_head, max_position_embeddings =
 * n_positions); for any other model_type they return the config's own
 * values only. */
typedef struct lmio_config lmio_config;

/* The on-disk format lmio writes: "lmio_format_version" in config.json.
 * Directories with a newer major version are refused. */
#define LMIO_FORMAT_VERSION_MAJOR 1
#define LMIO_FORMAT_VERSION_MINOR 1 /* 1.1: every directory has LMIO_MANIFEST_NAME */

/* A config holding every default of model_type's Transformers config class
 * ("gpt2": GPT2Config(), GPT-2 small). LMIO_ERR_UNSUPPORTED, naming the
 * model types lmio knows, for any other model_type. */
LMIO_API lmio_status lmio_config_create(const char *model_type, lmio_config **out, lmio_error *err);
/* lmio_config_create("gpt2", ...), kept from lmio 0.1. */
LMIO_API lmio_status lmio_config_create_gpt2(lmio_config **out, lmio_error *err);
/* path: config.json or a directory holding it. */
LMIO_API lmio_status lmio_config_load(const char *path, lmio_config **out, lmio_error *err);
/* Writes config.json at path (a file path or an existing directory), as
 * Transformers writes it (sorted keys, 2-space indent), atomically. */
LMIO_API lmio_status lmio_config_save(const lmio_config *cfg, const char *path, lmio_error *err);
LMIO_API void lmio_config_free(lmio_config *cfg);
/* A deep copy. */
LMIO_API lmio_status lmio_config_copy(const lmio_config *cfg, lmio_config **out, lmio_error *err);
/* The config as JSON text, exactly as lmio_config_save would write it.
 * *text is allocated (free with lmio_free); *len excludes the final NUL. */
LMIO_API lmio_status lmio_config_to_json(const lmio_config *cfg, char **text, size_t *len, lmio_error *err);

/* "gpt2", or "" when absent. Borrowed: valid until the config changes. */
LMIO_API const char *lmio_config_model_type(const lmio_config *cfg);
/* Typed access; a get of an absent key without a default is
 * LMIO_ERR_NOT_FOUND, of another type LMIO_ERR_FORMAT naming the key. */
LMIO_API lmio_status lmio_config_get_int(const lmio_config *cfg, const char *key, int64_t *out, lmio_error *err);
LMIO_API lmio_status lmio_config_get_float(const lmio_config *cfg, const char *key, double *out, lmio_error *err);
LMIO_API lmio_status lmio_config_get_bool(const lmio_config *cfg, const char *key, int *out, lmio_error *err);
/* Borrowed: valid until the config changes. */
LMIO_API lmio_status lmio_config_get_string(const lmio_config *cfg, const char *key, const char **out,
                                            lmio_error *err);
LMIO_API lmio_status lmio_config_set_int(lmio_config *cfg, const char *key, int64_t v, lmio_error *err);
LMIO_API lmio_status lmio_config_set_float(lmio_config *cfg, const char *key, double v, lmio_error *err);
LMIO_API lmio_status lmio_config_set_bool(lmio_config *cfg, const char *key, int v, lmio_error *err);
LMIO_API lmio_status lmio_config_set_string(lmio_config *cfg, const char *key, const char *v, lmio_error *err);
/* Sets a key to JSON null (e.g. n_inner = null: "4 * n_embd"). */
LMIO_API lmio_status lmio_config_set_null(lmio_config *cfg, const char *key, lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Models: the reference implementations (fp32 compute)                      */
/* ------------------------------------------------------------------------ */

/* lmio runs the architectures of its architecture table: today "gpt2"
 * (Transformers' GPT2LMHeadModel) and "llama" (LlamaForCausalLM: grouped-
 * query attention, rope_theta, "llama3" rope scaling, head_dim, optional
 * attention and MLP biases, tied or untied embeddings). Files and
 * directories of any other architecture still load, save, convert and
 * verify; only running them needs a known model_type. */

/* 1 if lmio can run model_type (config.json's "model_type"), else 0. */
LMIO_API int lmio_arch_supported(const char *model_type);
/* The i-th model type lmio can run (0-based), NULL past the last. Static storage. */
LMIO_API const char *lmio_arch_name(size_t i);

/* A model of any supported architecture. */
typedef struct lmio_model lmio_model;

/* Builds the model cfg's model_type names from weights, a state dict with
 * Transformers' names (GPT-2: GPT2LMHeadModel's, "transformer.h.0.attn
 * .c_attn.weight", ...; Llama: LlamaForCausalLM's, "model.layers.0.self_attn
 * .q_proj.weight", ...; a tied lm_head may be absent). An unknown model_type
 * is LMIO_ERR_UNSUPPORTED naming it and the model types lmio knows. Every
 * tensor is checked (present, shape as the config implies, a float dtype)
 * before anything sized by the config is allocated, so a config that claims
 * more layers or positions than the weights hold fails at once, naming the
 * first missing or mis-shaped tensor. F32 weights are used in place (the
 * state dict must outlive the model); F16, BF16 and F64 weights are widened
 * to f32 once. Free with lmio_model_free. */
LMIO_API lmio_status lmio_model_create(const lmio_config *cfg, const lmio_statedict *weights, lmio_model **out,
                                       lmio_error *err);
LMIO_API void lmio_model_free(lmio_model *model);
/* Its config's model_type ("gpt2"). Static storage; NULL for NULL. */
LMIO_API const char *lmio_model_type(const lmio_model *model);
/* Rows of the logits (the config's vocab_size); 0 for NULL. */
LMIO_API size_t lmio_model_vocab_size(const lmio_model *model);
/* The most positions one sequence may have (GPT-2: n_positions, Llama:
 * max_position_embeddings); 0 for NULL. */
LMIO_API size_t lmio_model_max_positions(const lmio_model *model);

/* Logits for every position of ids: logits has n * vocab_size floats,
 * row-major (position, token). n must not exceed max_positions. F32
 * weights are read in place: if their mapped file shrinks while the model
 * is in use, this (and lmio_model_generate) returns LMIO_ERR_IO naming the
 * file, the byte and the tensor, instead of the process taking SIGBUS. */
LMIO_API lmio_status lmio_model_logits(lmio_model *model, const int32_t *ids, size_t n, float *logits,
                                       lmio_error *err);

typedef struct lmio_generate_opts {
    size_t struct_size;  /* sizeof(lmio_generate_opts), set by INIT        */
    int greedy;          /* 1 (default): argmax; 0: sample                 */
    float temperature;   /* sampling temperature, > 0                      */
    uint64_t seed;       /* sampling is reproducible for a seed            */
    int32_t stop_id;     /* stop after generating this id; -1: never       */
} lmio_generate_opts;
#define LMIO_GENERATE_OPTS_INIT {sizeof(lmio_generate_opts), 1, 1.0f, 0, -1}

/* Appends up to n_new tokens after the prompt into out (n_new slots);
 * *n_out receives how many were generated (fewer when stop_id came). The
 * prompt plus the new tokens must fit in max_positions. opts may be NULL. */
LMIO_API lmio_status lmio_model_generate(lmio_model *model, const int32_t *prompt, size_t n_prompt, size_t n_new,
                                         const lmio_generate_opts *opts, int32_t *out, size_t *n_out,
                                         lmio_error *err);

/* Writes a TorchScript archive of the model (cfg, weights as for
 * lmio_model_create, which checks them the same way) to path, atomically:
 * torch.jit.load(path) gives a module whose forward(input_ids) maps int64
 * ids of shape (T) or (B, T) to fp32 logits (T, vocab) or (B, T, vocab),
 * equal to lmio_model_logits' up to fp32 rounding. Its parameters carry
 * Transformers' names (model.state_dict() keys; a tied lm_head is left
 * out) and are written f32; the module is in eval mode. opts may be NULL;
 * its dtype must be LMIO_DTYPE_NONE or F32. An architecture lmio runs but
 * cannot export yet is LMIO_ERR_UNSUPPORTED. */
LMIO_API lmio_status lmio_export_torchscript(const lmio_config *cfg, const lmio_statedict *weights, const char *path,
                                             const lmio_save_opts *opts, lmio_error *err);

/* ---- GPT-2, as lmio 0.1 spelled it ----
 * Thin wrappers kept so existing programs build: an lmio_gpt2 is an
 * lmio_model, and each call below is its lmio_model_* namesake, except that
 * lmio_gpt2_create also refuses a model_type other than "gpt2". */
typedef struct lmio_model lmio_gpt2;

LMIO_API lmio_status lmio_gpt2_create(const lmio_config *cfg, const lmio_statedict *weights, lmio_gpt2 **out,
                                      lmio_error *err);
LMIO_API void lmio_gpt2_free(lmio_gpt2 *model);
LMIO_API size_t lmio_gpt2_vocab_size(const lmio_gpt2 *model);
LMIO_API lmio_status lmio_gpt2_logits(lmio_gpt2 *model, const int32_t *ids, size_t n, float *logits,
                                      lmio_error *err);
LMIO_API lmio_status lmio_gpt2_generate(lmio_gpt2 *model, const int32_t *prompt, size_t n_prompt, size_t n_new,
                                        const lmio_generate_opts *opts, int32_t *out, size_t *n_out,
                                        lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Hugging Face directories: save_pretrained / from_pretrained               */
/* ------------------------------------------------------------------------ */

typedef struct lmio_pretrained_opts {
    size_t struct_size;       /* sizeof(lmio_pretrained_opts), set by INIT   */
    lmio_dtype dtype;         /* LMIO_DTYPE_NONE: keep; F32/F16/BF16: convert */
    uint64_t max_shard_size;  /* bytes of tensor data per shard; 0: 5 GB      */
    int durable;              /* 1: fsync every file and directory            */
    const char *format;       /* weights format by name (lmio_format_name);
                                 NULL: "safetensors"                          */
    const char *source_dir;   /* a model directory whose other files are
                                 copied unchanged into the new one: all but
                                 config.json, weights and .git (tokenizer
                                 files of any kind, README.md, modules.json,
                                 1_Pooling/, ...). A file lmio writes itself
                                 (tokenizer files when tok is given) replaces
                                 the carried one; a carried
                                 generation_config.json is kept. NULL: none. */
    int64_t keep_other_files; /* 0 (default): refuse a destination holding
                                 files lmio does not write; 1: keep them.
                                 int64_t, not int: an int could fit in the
                                 tail padding of an older struct, keeping
                                 sizeof, so an older caller's uninitialised
                                 padding would be read as this field        */
} lmio_pretrained_opts;
#define LMIO_PRETRAINED_OPTS_INIT {sizeof(lmio_pretrained_opts), LMIO_DTYPE_NONE, 0, 1, NULL, NULL, 0}

/* Writes a directory Transformers loads with no flags: config.json (with
 * dtype, architectures, lmio_version and lmio_format_version),
 * generation_config.json, model.safetensors or model-0000i-of-0000N
 * .safetensors + model.safetensors.index.json, the tokenizer files, and
 * last LMIO_MANIFEST_NAME (each file's size and SHA-256, each tensor's
 * CRC-32). Every shard carries __metadata__ {"format": "pt"} and nothing
 * of lmio's: shards are written exactly as the reference writer would, so
 * the same tensors give the same bytes (and hashes) whatever lmio version
 * wrote them; the lmio version and format version are in config.json and
 * the manifest, which names every shard by its hash. For an architecture
 * lmio knows (lmio_arch_supported), "architectures" is filled in when the
 * config lacks it, its legacy buffers are left out, and so is a tied head
 * (GPT-2's lm_head.weight when tie_word_embeddings), as Transformers does;
 * tensors of other architectures are written as they are. cfg, weights
 * and tok may each be NULL to leave that part out.
 *
 * The directory appears whole or not at all: it is built beside dir as
 * .<name>.lmio-tmp-XXXXXX and swapped into place in one step, keeping the
 * mode and (where allowed) the owner of a directory it replaces. An existing
 * dir is replaced only when it holds nothing but files lmio writes (the
 * names above, the tokenizer files tokenizer.json, tokenizer_config.json,
 * special_tokens_map.json, vocab.json, merges.txt, the manifest) or is
 * empty; anything
 * else (README.md, .git/, sources) makes the save fail with
 * LMIO_ERR_INVALID_ARG naming the first such file, unless keep_other_files
 * is 1: then those files stay where they are, lmio's files are moved in one
 * by one (each atomically, the set not), and lmio files of the old save that
 * the new one does not have (e.g. shards) are removed. A destination that is
 * not a directory, is a symlink, contains a file the weights were read from
 * or lies inside their directory is refused (the same directory is allowed:
 * the old files are removed only after the new ones are in place). */
LMIO_API lmio_status lmio_pretrained_save(const char *dir, const lmio_config *cfg, const lmio_statedict *weights,
                                          const lmio_tokenizer *tok, const lmio_pretrained_opts *opts,
                                          lmio_error *err);

/* Loads a directory written by Transformers or lmio: single or sharded
 * safetensors, or pytorch_model.bin when no safetensors weights are there
 * (every shard the index names must exist and hold the tensors
 * it is named for), any float dtype. For an architecture lmio knows, names
 * are normalised to its Transformers class's (GPT-2: the "transformer."
 * prefix added where absent), its legacy buffers are dropped (GPT-2's
 * attn.bias / attn.masked_bias), and a tied head is dropped (the model uses
 * the embedding); the tensors of any other model_type are kept as they
 * are. Pass NULL for parts not wanted; *cfg is set to NULL when the
 * directory has no config.json, *tok to NULL when it has no tokenizer files
 * (a tokenizer of a kind lmio does not read, such as WordPiece, is
 * LMIO_ERR_UNSUPPORTED: pass tok = NULL to load the rest). The state dict's tensors
 * are zero-copy views into the mapped shards. */
LMIO_API lmio_status lmio_pretrained_load(const char *dir, lmio_config **cfg, lmio_statedict **weights,
                                          lmio_tokenizer **tok, lmio_error *err);

/* Whether loading checks the manifest first (lmio_manifest_check). */
typedef enum lmio_hash_check {
    LMIO_HASHES_SKIP = 0,   /* default: load at mmap speed, hash nothing      */
    LMIO_HASHES_CHECK = 1,  /* check the manifest when there is one           */
    LMIO_HASHES_REQUIRE = 2 /* and refuse a directory without one
                               (LMIO_ERR_INTEGRITY)                           */
} lmio_hash_check;

typedef struct lmio_pretrained_load_opts {
    size_t struct_size;        /* sizeof(lmio_pretrained_load_opts), by INIT  */
    lmio_hash_check hashes;    /* LMIO_HASHES_SKIP                            */
} lmio_pretrained_load_opts;
#define LMIO_PRETRAINED_LOAD_OPTS_INIT {sizeof(lmio_pretrained_load_opts), LMIO_HASHES_SKIP}

/* lmio_pretrained_load with options (opts may be NULL: the defaults, which
 * are exactly lmio_pretrained_load). With LMIO_HASHES_CHECK every file is
 * read and hashed once before loading (1.4 GB/s per core with SHA-NI), and
 * a mismatch is LMIO_ERR_INTEGRITY naming the file and tensor: the files
 * are checked as they are at the call. */
LMIO_API lmio_status lmio_pretrained_load_with(const char *dir, const lmio_pretrained_load_opts *opts,
                                               lmio_config **cfg, lmio_statedict **weights, lmio_tokenizer **tok,
                                               lmio_error *err);

/* Rewrites a model directory of any architecture with new weight options
 * (dtype, sharding, format): from_pretrained's checks on src_dir, then a
 * save_pretrained to dst_dir that keeps config.json's content (updating
 * only "dtype" to the new tensors and recording lmio_version and
 * lmio_format_version) and carries every other file byte for byte
 * (opts->source_dir is set to src_dir). Neither the architecture nor the
 * tokenizer needs to be one lmio knows. dst_dir appears whole or not at all. */
LMIO_API lmio_status lmio_pretrained_convert(const char *src_dir, const char *dst_dir,
                                             const lmio_pretrained_opts *opts, lmio_error *err);

/* ---- GGUF (llama.cpp) ----
 * lmio_pretrained_load and lmio_pretrained_convert also take a GGUF file
 * in place of a directory: for an architecture lmio runs (the file's
 * general.architecture is a model_type), the config comes from its
 * hyperparameters, tensors get Transformers' names and layouts (llama.cpp's
 * rotary row order of Llama's q/k undone, GPT-2's Conv1D transposed back),
 * quantised tensors are dequantised to F32, and the tokenizer comes from
 * its tokenizer.ggml.* metadata (byte-level BPE; the pre-tokenizer that
 * tokenizer.ggml.pre names; special tokens and chat template). */

typedef struct lmio_gguf_opts {
    size_t struct_size; /* sizeof(lmio_gguf_opts), set by the INIT macro */
    const char *type;   /* the matrices' type: "f32" (NULL), "f16", "bf16",
                           "q8_0" (quantised as gguf-py's quantize does) */
    int durable;        /* 1 (default): fsync the file and its directory */
    lmio_progress_fn progress;
    void *progress_ctx;
} lmio_gguf_opts;
#define LMIO_GGUF_OPTS_INIT {sizeof(lmio_gguf_opts), NULL, 1, NULL, NULL}

/* Writes a GGUF file atomically, as llama.cpp's convert_hf_to_gguf.py
 * writes one. With a config of an architecture lmio runs: tensors under
 * llama.cpp's names and layouts (a tied head left out), the hyperparameter
 * keys (<arch>.context_length, embedding_length, block_count,
 * feed_forward_length, attention.head_count(_kv), rope.freq_base,
 * layer_norm(_rms)_epsilon, ...), general.file_type and
 * quantization_version, and, with tok, tokenizer.ggml.* (model "gpt2",
 * the pre name of its pre-tokenizer, tokens, token types, merges, special
 * ids, chat template). Vectors, norms, biases and position embeddings stay
 * F32; a matrix whose rows Q8_0 cannot split stays F16. With cfg NULL the
 * state dict is written with its own names and metadata, every floating
 * matrix in opts->type. */
LMIO_API lmio_status lmio_gguf_save(const char *path, const lmio_config *cfg, const lmio_statedict *weights,
                                    const lmio_tokenizer *tok, const lmio_gguf_opts *opts, lmio_error *err);

/* "500MB", "2GB", "10KB", "123" (bytes); decimal units as Hugging Face uses
 * (1 GB = 10^9 bytes), "GiB"/"MiB"/"KiB" binary. */
LMIO_API lmio_status lmio_parse_size(const char *text, uint64_t *out, lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Exporting: ONNX for onnxruntime and transformers.js                       */
/* ------------------------------------------------------------------------ */

typedef struct lmio_onnx_opts {
    size_t struct_size;     /* sizeof(lmio_onnx_opts), set by INIT            */
    lmio_dtype dtype;       /* LMIO_DTYPE_NONE or F32: float32; F16: weights,
                               past/present and logits in float16 (the graph
                               computes in float32 either way)              */
    int32_t durable;        /* 1 (default): fsync every file and directory    */
    int64_t external_data;  /* 1: weights in onnx/model.onnx_data even when
                               the model fits in one file; 0 (default): only
                               when it does not (protobuf's 2 GiB limit)     */
} lmio_onnx_opts;
#define LMIO_ONNX_OPTS_INIT {sizeof(lmio_onnx_opts), LMIO_DTYPE_NONE, 1, 0}

/* Writes dir as a model folder transformers.js (and onnxruntime) runs as it
 * is: dir/onnx/model.onnx, the decoder with its KV cache in the layout of
 * Optimum's text-generation-with-past export (inputs input_ids,
 * attention_mask, position_ids, past_key_values.{i}.key/.value of shape
 * [batch_size, heads, past_sequence_length, head_dim]; outputs logits,
 * present.{i}.key/.value; batch and sequence axes symbolic; opset 20, IR 9),
 * and beside it config.json, generation_config.json and, when tok is given,
 * the tokenizer files (tokenizer.json, tokenizer_config.json, ...).
 * Weights go to dir/onnx/model.onnx_data (each tensor at a 4096-byte
 * aligned offset) when asked or when the model would pass 2 GiB; config.json
 * then says so ("transformers.js_config": {"use_external_data_format":
 * true}). The model's architecture must be one lmio can export
 * (lmio_onnx_supported), else LMIO_ERR_UNSUPPORTED; every tensor is checked
 * against the config as lmio_model_create checks it. dir is created if
 * absent; files already in it that lmio does not write are kept. Each file
 * is written atomically, the ONNX files first and config.json last; a failed
 * export removes the folders it created. Same model, same bytes. */
LMIO_API lmio_status lmio_onnx_export(const char *dir, const lmio_config *cfg, const lmio_statedict *weights,
                                      const lmio_tokenizer *tok, const lmio_onnx_opts *opts, lmio_error *err);
/* 1 if lmio can export model_type to ONNX, else 0. */
LMIO_API int lmio_onnx_supported(const char *model_type);

/* ------------------------------------------------------------------------ */
/* Verifying                                                                 */
/* ------------------------------------------------------------------------ */

/* Called after each tensor's bytes have been read, in file order (by file,
 * then offset); nonfinite counts its NaN and Inf values (0 for dtypes other
 * than F16, BF16, F32, F64). t is borrowed for the call. Return non-zero
 * to stop: the verification then fails with LMIO_ERR_CANCELLED. */
typedef int (*lmio_verify_tensor_fn)(void *ctx, const lmio_tensor *t, uint64_t nonfinite);

/* What checking a directory against its manifest found. Errors make the
 * check fail (LMIO_ERR_INTEGRITY); notes do not. */
typedef enum lmio_integrity_event {
    LMIO_INTEGRITY_VERIFIED = 0,        /* note: every listed file and tensor
                                           matched (message: the counts)     */
    LMIO_INTEGRITY_NO_MANIFEST = 1,     /* note: the directory has none
                                           (written before format 1.1, or by
                                           another tool): not checked        */
    LMIO_INTEGRITY_UNLISTED = 2,        /* note: a file the manifest does not
                                           list (not lmio's, e.g. a README
                                           kept by keep_other_files)          */
    LMIO_INTEGRITY_MISSING = 3,         /* error: a listed file is absent     */
    LMIO_INTEGRITY_CORRUPT_FILE = 4,    /* error: a file's size or SHA-256
                                           differs outside its tensors' data  */
    LMIO_INTEGRITY_CORRUPT_TENSOR = 5,  /* error: a tensor's bytes differ     */
    LMIO_INTEGRITY_CORRUPT_MANIFEST = 6 /* error: the manifest is damaged     */
} lmio_integrity_event;

/* Called for each finding, in the manifest's file order. file is the path
 * of the file concerned, tensor its tensor's name or NULL, message a
 * one-line description (as an lmio_error message reads). All borrowed for
 * the call. */
typedef void (*lmio_integrity_fn)(void *ctx, lmio_integrity_event event, const char *file, const char *tensor,
                                  const char *message);

typedef struct lmio_verify_opts {
    size_t struct_size;       /* sizeof(lmio_verify_opts), set by INIT        */
    size_t buffer_size;       /* bytes per read; 0: 8 MiB. The one buffer is
                                 reused, so memory does not grow with the
                                 model (at least 4096; rounded down to 8)   */
    lmio_verify_tensor_fn tensor_fn; /* NULL: none                           */
    void *ctx;
    lmio_integrity_fn integrity_fn;  /* directories: every manifest finding;
                                        NULL: none (the first error still
                                        fills err)                           */
    void *integrity_ctx;
} lmio_verify_opts;
#define LMIO_VERIFY_OPTS_INIT {sizeof(lmio_verify_opts), 0, NULL, NULL, NULL, NULL}

/* What a verification found; every field is filled on success. */
typedef struct lmio_verify_report {
    const char *format;         /* the file's format ("safetensors"), NULL
                                   for a directory or a state dict built in
                                   memory; static storage                   */
    size_t tensors;
    uint64_t parameters;        /* sum of numel                              */
    uint64_t data_bytes;        /* sum of nbytes                             */
    size_t files;               /* distinct files the data was read from     */
    size_t nonfinite_tensors;   /* floating tensors holding NaN or Inf       */
    uint64_t nonfinite_values;
} lmio_verify_report;

/* The integrity manifest every directory lmio saves carries (model
 * directories and training checkpoints alike, since format 1.1): written
 * by the staged directory commit itself, after every other file and before
 * the directory is renamed into place. A JSON object, keys in this order:
 *   "lmio_version", "lmio_format_version" ("1.1"): what wrote it;
 *   "file_hash": "sha256", "tensor_hash": "crc32";
 *   "files": [{"path": relative, '/'-separated, "size": bytes, "sha256": hex,
 *             and for files lmio reads tensors from (safetensors, torch.save):
 *             "tensors": [{"name", "offset": absolute byte offset of the
 *             data, "size": bytes, "crc32": 8 hex digits (zlib's CRC-32 of
 *             the data)}]}], sorted by path;
 *   "manifest_sha256": SHA-256 of every byte of the file before the line
 *             that holds this key, which is always the last line but "}".
 * The file SHA-256 is what sha256sum prints and what the Hugging Face Hub
 * calls a file's LFS oid. Files are hashed while they stream out where lmio
 * writes them itself, and otherwise read back after, several at a time. */
#define LMIO_MANIFEST_NAME "lmio_manifest.json"

/* Checks dir against its manifest: every listed file present with its size
 * and SHA-256, and every listed tensor's CRC-32, reading each file once
 * (several files at a time, one thread per core) in bounded memory. fn
 * (may be NULL) hears every finding; err receives the first error.
 * LMIO_OK when everything matched or there is no manifest (fn hears
 * LMIO_INTEGRITY_NO_MANIFEST); LMIO_ERR_INTEGRITY naming the first corrupt
 * or missing file (and tensor) otherwise; LMIO_ERR_UNSUPPORTED for a
 * manifest of a newer major format version; LMIO_ERR_IO when a file cannot
 * be read. Paths in the manifest must stay inside dir. */
LMIO_API lmio_status lmio_manifest_check(const char *dir, lmio_integrity_fn fn, void *ctx, lmio_error *err);

/* Validates a model completely at disk speed in bounded memory. A file:
 * every rule lmio_statedict_open checks, then every data byte read with
 * pread (nothing is read into memory whole; the file is only mapped to
 * parse its header). A directory: everything lmio_pretrained_load checks
 * (config, index, every shard and the tensors the index places there,
 * tokenizer files of a kind lmio reads), then every shard's data read the
 * same way; first of all, when the directory has a manifest,
 * lmio_manifest_check (opts->integrity_fn hears its findings), whose
 * LMIO_ERR_INTEGRITY is returned before the structure is looked at. An
 * unreadable or vanished byte is LMIO_ERR_IO naming the file and offset.
 * NaN and Inf are counted, not errors: they are legal, if rarely meant.
 * opts may be NULL; out may be NULL. */
LMIO_API lmio_status lmio_verify(const char *path, const lmio_verify_opts *opts, lmio_verify_report *out,
                                 lmio_error *err);
/* The data part of lmio_verify for a state dict already open: each
 * tensor's bytes are read again from the file it came from (tensors built
 * in memory are scanned where they are). */
LMIO_API lmio_status lmio_statedict_verify(const lmio_statedict *sd, const lmio_verify_opts *opts,
                                           lmio_verify_report *out, lmio_error *err);

/* ------------------------------------------------------------------------ */
/* Training                                                                  */
/* ------------------------------------------------------------------------ */

/* A trainer holds a model of an architecture lmio can train (today
 * "gpt2"), its gradients and AdamW's moments, all f32, and runs training
 * steps in C on the CPU (OpenMP threads when built with it):
 *  - a batch: batch_size offsets into the token stream, each drawn as
 *    splitmix64(state) % (n_tokens - seq_len) (the generator of
 *    lmio__splitmix64, 8 bytes of state, seeded with opts.seed; modulo bias
 *    below range / 2^64). Inputs are seq_len tokens from an offset, targets
 *    the same shifted by one;
 *  - forward keeping activations, mean cross-entropy, backward (dropout
 *    off: lmio trains as Transformers' model in eval mode computes);
 *  - gradient clipping by global norm as torch.nn.utils.clip_grad_norm_
 *    (coef = max_norm / (norm + 1e-6), applied when below 1; the norm is
 *    summed in double);
 *  - AdamW as torch.optim.AdamW(fused=True) computes it on x86-64, bit for
 *    bit: weight decay decoupled (p *= 1 - lr * wd, on tensors of 2 or more
 *    dimensions only, as Transformers' Trainer groups them), bias
 *    corrections in double, eps added after dividing sqrt(v) by
 *    sqrt(1 - beta2^t);
 *  - learning rate of Transformers' get_cosine_schedule_with_warmup: update
 *    k (from 0) uses lr * k / warmup during warmup, then
 *    lr * 0.5 * (1 + cos(pi * (k - warmup) / (total - warmup))).
 * Every step is deterministic: the same state and data give the same bits
 * whatever the thread count, so a resumed run equals an uninterrupted one
 * byte for byte. */
typedef struct lmio_trainer lmio_trainer;

typedef struct lmio_trainer_opts {
    size_t struct_size;     /* sizeof(lmio_trainer_opts), set by INIT        */
    size_t batch_size;      /* sequences per step; default 8                  */
    size_t seq_len;         /* tokens per sequence; 0 (default): the smaller
                               of 64 and n_positions                          */
    double lr;              /* peak learning rate; default 1e-3               */
    uint64_t warmup_steps;  /* default 0                                      */
    uint64_t total_steps;   /* where the cosine reaches 0; default 1000       */
    double beta1, beta2;    /* default 0.9, 0.999 (torch's)                   */
    double eps;             /* default 1e-8                                   */
    double weight_decay;    /* default 0.01 (torch AdamW's)                   */
    double max_grad_norm;   /* default 1.0; 0: no clipping                    */
    uint64_t seed;          /* initialisation and batch order; default 0      */
} lmio_trainer_opts;
#define LMIO_TRAINER_OPTS_INIT {sizeof(lmio_trainer_opts), 8, 0, 1e-3, 0, 1000, 0.9, 0.999, 1e-8, 0.01, 1.0, 0}

/* A trainer for cfg's architecture, starting from weights (a state dict
 * with Transformers' names, any float dtype, copied) or, when weights is
 * NULL, from weights initialised as the Transformers class does
 * (GPT-2: normal(0, initializer_range), c_proj scaled by 1/sqrt(2 n_layer),
 * LayerNorm 1, biases 0) from opts->seed. tok (may be NULL) is written into
 * every checkpoint; it is borrowed and must outlive the trainer. cfg is
 * copied. LMIO_ERR_UNSUPPORTED for an architecture lmio cannot train. */
LMIO_API lmio_status lmio_trainer_create(const lmio_config *cfg, const lmio_statedict *weights,
                                         const lmio_tokenizer *tok, const lmio_trainer_opts *opts,
                                         lmio_trainer **out, lmio_error *err);
/* Waits for a background save (its error is dropped: call
 * lmio_trainer_wait first to see it), then frees. */
LMIO_API void lmio_trainer_free(lmio_trainer *tr);

/* The token stream batches are drawn from (copied). It must hold more
 * than seq_len tokens. A resumed trainer checks that it is the stream the
 * run was trained on (count and FNV-1a 64 fingerprint): another one is
 * LMIO_ERR_INVALID_ARG. */
LMIO_API lmio_status lmio_trainer_set_data(lmio_trainer *tr, const int32_t *ids, size_t n, lmio_error *err);

/* What one step did. */
typedef struct lmio_train_stats {
    uint64_t step;          /* updates done, this one included               */
    float loss;             /* mean cross-entropy of the batch before it      */
    double lr;              /* the learning rate it used                      */
    float grad_norm;        /* global gradient norm before clipping           */
    double tokens_per_second;
} lmio_train_stats;

/* One training step: draw a batch, forward, backward, clip, AdamW, advance
 * the schedule. Appends a line to the training log. stats may be NULL. */
LMIO_API lmio_status lmio_trainer_step(lmio_trainer *tr, lmio_train_stats *stats, lmio_error *err);
/* Updates done so far (the step of the next checkpoint); 0 for NULL. */
LMIO_API uint64_t lmio_trainer_step_count(const lmio_trainer *tr);
/* The learning rate the next update will use. */
LMIO_API double lmio_trainer_next_lr(const lmio_trainer *tr);

/* The two halves of a step, for tests and custom loops. backward zeroes
 * the gradients and sets them for B sequences of T ids with their targets
 * (a target < 0 is not counted), without drawing from the data or
 * updating; update clips them, applies AdamW and advances the step. */
LMIO_API lmio_status lmio_trainer_backward(lmio_trainer *tr, const int32_t *ids, const int32_t *targets, size_t B,
                                           size_t T, float *loss, lmio_error *err);
LMIO_API lmio_status lmio_trainer_update(lmio_trainer *tr, lmio_train_stats *stats, lmio_error *err);

typedef enum lmio_trainer_part {
    LMIO_TRAINER_WEIGHTS = 0,
    LMIO_TRAINER_GRADS = 1,
    LMIO_TRAINER_EXP_AVG = 2,    /* AdamW's first moment   */
    LMIO_TRAINER_EXP_AVG_SQ = 3  /* AdamW's second moment  */
} lmio_trainer_part;
/* A state dict of F32 views of one part, one tensor per trained parameter
 * under its Transformers name, in named_parameters() order (a tied head is
 * not a parameter of its own). The views borrow the trainer's memory: they
 * change as it trains, may be written through (a test sets gradients this
 * way before lmio_trainer_update), and are valid until lmio_trainer_free.
 * Free the state dict with lmio_statedict_free. */
LMIO_API lmio_status lmio_trainer_tensors(lmio_trainer *tr, lmio_trainer_part part, lmio_statedict **out,
                                          lmio_error *err);

typedef struct lmio_checkpoint_opts {
    size_t struct_size;  /* sizeof(lmio_checkpoint_opts), set by INIT         */
    uint64_t keep;       /* keep the newest K checkpoints; 0 (default): all  */
    int keep_best;       /* also keep the one of lowest loss; default 0      */
    int async;           /* write in a background thread; default 0          */
    int durable;         /* fsync files and directories; default 1           */
} lmio_checkpoint_opts;
#define LMIO_CHECKPOINT_OPTS_INIT {sizeof(lmio_checkpoint_opts), 0, 0, 0, 1}

/* Saves the trainer into run_dir/checkpoint-<step>/ (run_dir is created if
 * absent): a model directory lmio_pretrained_load and Transformers load
 * (config.json, generation_config.json, model.safetensors, the tokenizer
 * files) and the training state: optimizer.safetensors (exp_avg.<name>,
 * exp_avg_sq.<name>), optimizer.pt, scheduler.json, rng_state.json,
 * data_state.json, trainer_state.json, training_log.jsonl (README
 * documents each). The directory is built beside its place and renamed
 * into it whole, then run_dir/latest (a text file: "checkpoint-<step>\n")
 * is replaced atomically to name it; only then are older checkpoints
 * beyond keep removed (never the newest, nor with keep_best the one whose
 * loss, the mean over the steps since the previous checkpoint, is lowest).
 * A crash at any moment leaves latest naming a complete checkpoint.
 * With async, the call returns once weights and moments are copied to
 * memory; a writer thread does the rest. At most one save is in flight:
 * the next save (or lmio_trainer_wait) waits for it first and returns its
 * error if it failed. */
LMIO_API lmio_status lmio_trainer_save(lmio_trainer *tr, const char *run_dir, const lmio_checkpoint_opts *opts,
                                       lmio_error *err);
/* Waits for a background save; returns its status (LMIO_OK when none). */
LMIO_API lmio_status lmio_trainer_wait(lmio_trainer *tr, lmio_error *err);

/* The newest complete checkpoint of run_dir (checkpoint-<step> with the
 * largest step; directories only ever appear whole), into path (cap bytes)
 * and *step. First removes what killed saves left (.checkpoint-*
 * temporaries no live save holds). LMIO_ERR_NOT_FOUND when run_dir holds
 * none. */
LMIO_API lmio_status lmio_run_latest(const char *run_dir, char *path, size_t cap, uint64_t *step, lmio_error *err);

/* A trainer restored from a checkpoint directory written by
 * lmio_trainer_save, with the options it was saved with; total_steps, when
 * not 0, replaces the schedule's length. Data must be set again
 * (lmio_trainer_set_data) and must be the run's. The tokenizer is the
 * checkpoint's, owned by the trainer. */
LMIO_API lmio_status lmio_trainer_resume(const char *checkpoint_dir, uint64_t total_steps, lmio_trainer **out,
                                         lmio_error *err);
/* The trainer's options (after a resume: the run's); NULL for NULL. */
LMIO_API const lmio_trainer_opts *lmio_trainer_options(const lmio_trainer *tr);
/* The tokenizer given to create or loaded by resume; may be NULL. */
LMIO_API const lmio_tokenizer *lmio_trainer_tokenizer(const lmio_trainer *tr);

#ifdef __cplusplus
}
#endif
#endif /* LMIO_H */
