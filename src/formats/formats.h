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

/* The table (registry.c), in the order directories are searched. */
size_t lmio__format_count(void);
const lmio__format *lmio__format_at(size_t i);
/* By exact name; NULL if none. */
const lmio__format *lmio__format_find(const char *name);
/* The format whose sniffer is surest about these bytes. A file that no
 * format recognises goes to the fallback (safetensors, which has no magic
 * number), so the error says which of its rules the file breaks. */
const lmio__format *lmio__format_sniff(const unsigned char *head, size_t n, uint64_t file_size);

#endif
