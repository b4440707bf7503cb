/* The format layer: one table entry per file format, each defined in its
 * own file under src/formats/. lmio_statedict_open picks a reader by the
 * file's bytes, lmio_statedict_save a writer by name, and the checkpoint
 * layer finds a Hugging Face directory's weight files through the same
 * entries. Formats never call each other: conversion is reader -> state
 * dict -> writer. Adding a format is one new file, one line in registry.c
 * and one declaration below. */
#ifndef LMIO_FORMATS_H
#define LMIO_FORMATS_H
#include "../core/core.h"

/* How sure a sniffer is that a file is its format. */
typedef enum lmio__sniff {
    LMIO__SNIFF_NO = 0,
    LMIO__SNIFF_MAYBE = 1, /* no magic number, but the bytes fit */
    LMIO__SNIFF_YES = 2    /* a magic number matched */
} lmio__sniff;

typedef struct lmio__format {
    const char *name;        /* "safetensors": lmio_statedict_format, --format */
    const char *const *aliases; /* other names --format accepts; NULL-terminated or NULL */
    const char *description; /* for messages: "GGUF (llama.cpp)" */
    /* Judges the first bytes of a file (head, n of them, n <= 64) and its
     * size; by content, never by file name. */
    lmio__sniff (*sniff)(const unsigned char *head, size_t n, uint64_t file_size);
    /* Reads a whole opened file; on success the file's ownership moves to
     * the new state dict, on failure the caller keeps it. NULL: lmio
     * recognises the format but cannot read it yet. */
    lmio_status (*open)(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err);
    /* Writes sd to path atomically; o is complete (already read through
     * lmio__opts_read) and its dtype, if any, a convertible float. NULL:
     * read-only format. */
    lmio_status (*save)(const lmio_statedict *sd, const char *path, const lmio_save_opts *o, lmio_error *err);
    /* In a Hugging Face model directory (NULL when the format has no place
     * there): the single weights file, the shard index, shards' names as
     * <stem>-00001-of-00003<ext>, and metadata every shard carries as
     * NULL-terminated key, value pairs. */
    const char *dir_file;
    const char *dir_index;
    const char *dir_shard_stem, *dir_shard_ext;
    const char *const *dir_metadata;
} lmio__format;

/* The entries, defined in their formats' files. */
extern const lmio__format lmio__format_safetensors;
extern const lmio__format lmio__format_gguf;
extern const lmio__format lmio__format_torch_zip;

/* Tests only: 0 makes the safetensors reader skip its fast header path
 * (safetensors.c) so both paths can be compared on the same bytes. Not
 * thread-safe; 1 by default. */
extern int lmio__safetensors_fast_header;

/* The table (registry.c), in the order directories are searched. */
size_t lmio__format_count(void);
const lmio__format *lmio__format_at(size_t i);
/* By exact name or alias; NULL if none. */
const lmio__format *lmio__format_find(const char *name);
/* The format whose sniffer is surest about these bytes. A file that no
 * format recognises goes to the fallback (safetensors, which has no magic
 * number), so the error says which of its rules the file breaks. */
const lmio__format *lmio__format_sniff(const unsigned char *head, size_t n, uint64_t file_size);

/* ---- helpers of the PyTorch formats (zip.c, pickle.c) ---- */

/* A zip archive's members, read from its central directory and checked
 * against the bytes: every local header present, named as in the central
 * directory, and inside the file; no two members overlapping. */
typedef struct lmio__zip_entry {
    const char *name; /* borrowed from the file; not NUL-terminated */
    size_t name_len;
    uint64_t header_off, data_off; /* local header, first data byte */
    uint64_t size, comp_size;
    uint16_t method;                /* 0: stored */
} lmio__zip_entry;

typedef struct lmio__zip {
    lmio__zip_entry *entries; /* sorted by name */
    size_t count;
    const char *root; /* the folder every member is in (torch's rule) */
    size_t root_len;
} lmio__zip;

lmio_status lmio__zip_read(const char *path, const unsigned char *data, uint64_t size, lmio__zip *z,
                           lmio_error *err);
/* The member <root>/<name>, or NULL. */
const lmio__zip_entry *lmio__zip_find(const lmio__zip *z, const char *name);
void lmio__zip_free(lmio__zip *z);

/* A streaming zip writer laid out as torch.save's PyTorchStreamWriter lays
 * out archives: stored members under one root folder, every payload
 * 64-byte aligned by a padding extra field, sizes in data descriptors,
 * zip64 records where sizes or offsets need them, and a zip64 end record
 * always. CRC-32s are computed as the data streams through. */
typedef struct lmio__zipw_entry {
    char *name;
    uint64_t offset, size;
    uint32_t crc;
} lmio__zipw_entry;

/* lmio_statedict_open once the file is open: sniffs and parses f (taken
 * over on success, closed on failure). */
lmio_status lmio__statedict_open_file(const char *path, lmio__file *f, lmio_statedict **out, lmio_error *err);

typedef struct lmio__zipw {
    lmio__outfile *out;
    const char *root;
    lmio__zipw_entry *entries;
    size_t count, cap;
    uint64_t cur_size, cur_done; /* the member being written */
    uint32_t cur_crc;
    bool lost;              /* data given to lmio__zipw_data could not be read: */
    const void *lost_addr;  /* a mapped input shrank, and this address faulted */
} lmio__zipw;

/* Starts member root/name of exactly size bytes. */
lmio_status lmio__zipw_begin(lmio__zipw *w, const char *name, uint64_t size, lmio_error *err);
/* Appends n bytes of the member. A mapped source that shrank is
 * LMIO_ERR_IO with lost set (the caller knows which tensor to name). */
lmio_status lmio__zipw_data(lmio__zipw *w, const void *p, size_t n, lmio_error *err);
lmio_status lmio__zipw_end(lmio__zipw *w, lmio_error *err);
/* A whole small member. */
lmio_status lmio__zipw_record(lmio__zipw *w, const char *name, const void *p, size_t n, lmio_error *err);
/* Central directory and end records. */
lmio_status lmio__zipw_finish(lmio__zipw *w, lmio_error *err);
void lmio__zipw_free(lmio__zipw *w);

/* What a torch pickle describes, without executing any of it: a value
 * graph built by a machine that knows only the opcodes and globals
 * torch.save's state dicts and checkpoints use (pickle.c). */
typedef struct lmio__pickle lmio__pickle;

/* A tensor found in the graph: its storage (persistent id) and view. */
typedef struct lmio__pickle_tensor {
    const char *key; /* storage key, e.g. "0"; borrowed, key_len bytes */
    size_t key_len;
    lmio_dtype storage_dtype; /* LMIO_DTYPE_NONE: untyped (bytes) */
    uint64_t storage_numel;   /* elements of storage_dtype, bytes if untyped */
    lmio_dtype dtype;         /* the tensor's */
    int ndim;
    uint64_t shape[LMIO_MAX_DIMS];
    uint64_t stride[LMIO_MAX_DIMS]; /* in elements */
    uint64_t offset;                /* in elements */
    int64_t at;                     /* pickle offset of its REDUCE */
} lmio__pickle_tensor;

typedef struct lmio__pickle_sink {
    void *ctx;
    /* name is NUL-terminated, nested keys joined with '.' */
    lmio_status (*tensor)(void *ctx, const char *name, const lmio__pickle_tensor *t, lmio_error *err);
    lmio_status (*value)(void *ctx, const char *name, const char *text, lmio_error *err);
} lmio__pickle_sink;

/* Parses one pickle at data[0..n) up to its STOP (*used: bytes consumed).
 * Errors name path, what ("data.pkl") and the offset as base + position. */
lmio_status lmio__pickle_parse(const char *path, const char *what, int64_t base, const unsigned char *data,
                               size_t n, size_t *used, lmio__pickle **out, lmio_error *err);
/* Walks the result: each tensor and each other leaf (int, float, str,
 * bool, None, dtype, empty container) reaches the sink, named by its path. */
lmio_status lmio__pickle_flatten(const lmio__pickle *p, const lmio__pickle_sink *sink, lmio_error *err);
/* For the legacy stream's small pickles: the root as a list of strings
 * (*items borrowed, *lens their lengths), or a dict's bool value by key. */
lmio_status lmio__pickle_strings(const lmio__pickle *p, const char ***items, size_t **lens, size_t *n,
                                 lmio_error *err);
int lmio__pickle_dict_bool(const lmio__pickle *p, const char *key); /* -1: absent or not a bool */
void lmio__pickle_free(lmio__pickle *p);
/* Every tensor the pickle describes, in the order made (borrowed). */
const lmio__pickle_tensor *lmio__pickle_tensors(const lmio__pickle *p, size_t *n);

/* torch's names for an lmio dtype, from the reader's table of globals: the
 * storage class _rebuild_tensor_v2 uses ("FloatStorage"), or NULL when
 * torch saves the dtype as bytes plus a dtype (_rebuild_tensor_v3, name
 * "uint16"). False when torch has no such dtype. */
bool lmio__torch_dtype(lmio_dtype dt, const char **storage_class, const char **dtype_name);

/* Pickle writing (protocol 2, the opcodes torch.save emits). */
typedef struct lmio__pickler {
    lmio__buf b;
    struct { const char *a, *b; uint32_t idx; } memo[64]; /* (module, name) or (text, NULL) */
    size_t n_memo;
    uint32_t next_memo;
} lmio__pickler;
void lmio__pkw_op(lmio__pickler *w, unsigned char op);
void lmio__pkw_int(lmio__pickler *w, int64_t v);
void lmio__pkw_float(lmio__pickler *w, double v); /* BINFLOAT */
void lmio__pkw_str(lmio__pickler *w, const char *s, size_t n);
/* A string, or a global, stored once and fetched from the memo after that
 * (the strings must outlive w). */
void lmio__pkw_str_memo(lmio__pickler *w, const char *s);
void lmio__pkw_global(lmio__pickler *w, const char *module, const char *name);
void lmio__pkw_int_tuple(lmio__pickler *w, const uint64_t *v, int n);

/* A Python value for torch.save to hold when a flat state dict is not
 * enough (an optimizer's state_dict()): a tree of nodes the caller owns.
 * A dict's children carry their keys (key, or ikey when key is NULL); a
 * tensor node names a tensor of the state dict given beside the tree. */
typedef enum lmio__pyv_kind {
    LMIO__PYV_NONE,
    LMIO__PYV_BOOL,   /* i: 0 or 1 */
    LMIO__PYV_INT,    /* i */
    LMIO__PYV_FLOAT,  /* f */
    LMIO__PYV_STR,    /* s, NUL-terminated */
    LMIO__PYV_TENSOR, /* i: index into the state dict */
    LMIO__PYV_LIST,
    LMIO__PYV_TUPLE,
    LMIO__PYV_DICT    /* insertion-ordered, as Python's dict */
} lmio__pyv_kind;

typedef struct lmio__pyv {
    lmio__pyv_kind kind;
    const char *key; /* as a dict's child */
    int64_t ikey;
    int64_t i;
    double f;
    const char *s;
    const struct lmio__pyv *items; /* list, tuple, dict */
    size_t n;
} lmio__pyv;

/* Writes root with torch.save's archive layout and protocol-2 opcodes
 * (torch_zip.c): each tensor as _rebuild_tensor_v2/v3 of a persistent
 * storage, storages shared where sd's bytes overlap, numbered in the order
 * the tree first reaches them. Atomic, through lmio__outfile; o is
 * complete. Every string in the tree must outlive the call. */
lmio_status lmio__torch_save_tree(const char *path, const lmio__pyv *root, const lmio_statedict *sd,
                                  const lmio_save_opts *o, lmio_error *err);

/* ---- GGUF writing (gguf.c) ---- */

/* Writes sd as GGUF v3 (alignment 32) atomically: metadata typed from its
 * text (see put_meta_value), tensors with their names and shapes; types[i]
 * is tensor i's ggml type (0 F32, 1 F16, 30 BF16, 8 Q8_0, or UINT32_MAX:
 * its dtype, or o->dtype for floats), or types is NULL for all UINT32_MAX. */
lmio_status lmio__gguf_write(const lmio_statedict *sd, const char *path, const uint32_t *types,
                             const lmio_save_opts *o, lmio_error *err);

/* ---- ggml's tensor types (gguf_quant.c) ---- */

typedef struct lmio__ggml_type {
    const char *name; /* "Q4_1", as ggml and gguf-py spell it */
    uint32_t id;      /* enum ggml_type */
    uint32_t block_elems, block_bytes;
} lmio__ggml_type;

/* The type with enum value id; NULL for ids ggml never had or removed. */
const lmio__ggml_type *lmio__ggml_type_find(uint32_t id);
/* Whether lmio__ggml_dequantize handles id (the block types lmio reads). */
bool lmio__ggml_can_dequantize(uint32_t id);
/* n_blocks blocks of type id at src to f32 at dst, as gguf-py's dequantize
 * computes them. Only reads and computes: safe inside lmio__guarded. */
void lmio__ggml_dequantize(uint32_t id, const unsigned char *src, float *dst, uint64_t n_blocks);
/* n_blocks of 32 floats to Q8_0 blocks (34 bytes each), as gguf-py's
 * quantize (and ggml's quantize_row_q8_0_ref) does. */
void lmio__ggml_quantize_q8_0(const float *x, unsigned char *dst, uint64_t n_blocks);
/* ---- TorchScript archives (torchscript.c) ---- */

/* Appends to code the methods, in TorchScript's Python dialect and indented
 * two spaces, of the module class at node: "" for the root, else the dotted
 * prefix of its tensors' names with each numeric part written "{L}"
 * ("transformer.h.{L}": every layer shares one class). Appending nothing
 * leaves the class a plain container. */
typedef lmio_status (*lmio__ts_methods_fn)(void *ctx, const char *node, lmio__buf *code, lmio_error *err);

typedef struct lmio__ts_program {
    const char *package;    /* the classes' module under __torch__: "lmio.gpt2" */
    const char *root_class; /* "GPT2LMHeadModel" */
    /* The parameters, in this order. Each dotted name places its tensor in
     * the module tree: "transformer.h.0.ln_1.weight" is parameter "weight"
     * of module "transformer.h.0.ln_1"; numeric parts are ModuleList-style
     * children. Written as f32 (the data must be F32, F16, BF16 or F64). */
    const lmio_tensor *tensors;
    size_t n_tensors;
    lmio__ts_methods_fn methods;
    void *ctx;
} lmio__ts_program;

/* Writes an archive torch.jit.load reads (shared/reference/
 * torch-tokenizer.md section 2): data.pkl holding the module objects,
 * the classes' source under code/, an empty constants.pkl, tensor records;
 * atomically, through lmio__outfile. o is complete. */
lmio_status lmio__torchscript_save(const lmio__ts_program *p, const char *path, const lmio_save_opts *o,
                                   lmio_error *err);

#endif
