/* The state dict: an ordered set of named tensors plus string metadata.
 * Names are indexed in an open-addressing hash table, keyed (lmio__hash) so
 * that names chosen to collide cannot turn it quadratic, so lookups and the
 * duplicate check stay O(1) for models with tens of thousands of tensors. */
#include "core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Per tensor a small constant: names and shapes live in the arena, and the
 * index holds 32-bit entry numbers, so a file of a million empty tensors
 * costs tens of megabytes, not a gigabyte. */
typedef struct entry {
    const char *name;      /* in the arena, NUL-terminated */
    const uint64_t *shape; /* in the arena; NULL when ndim is 0 */
    const void *data;
    void *owned; /* data copied in (LMIO_COPY), freed with the state dict */
    const char *source; /* borrowed from this or an adopted state dict */
    uint64_t numel, nbytes;
    int64_t file_offset;
    uint32_t name_len;
    int32_t dtype;
    int32_t ndim;
} entry;

typedef struct meta {
    char *key;
    char *value;
} meta;

/* Bump allocation in blocks that never move, so names handed out in views
 * stay valid while more tensors are added. */
typedef struct arena {
    char **blocks;
    size_t n_blocks, cap_blocks;
    size_t used, avail; /* in the last block */
} arena;

struct lmio_statedict {
    entry *entries;
    size_t count, cap;
    uint32_t *slots; /* index+1 into entries; 0 = empty */
    size_t nslots;   /* power of two, >= 2 * count */
    arena names;
    meta *meta;
    size_t meta_count, meta_cap;
    char *path;
    const char *format;
    lmio__file file;
    lmio_statedict **children; /* adopted: freed with this one */
    size_t n_children, children_cap;
};

static void *arena_alloc(arena *a, size_t n)
{
    n = (n + 7) & ~(size_t)7; /* shapes are u64 */
    if (n > a->avail) {
        /* small first blocks: a sharded model holds one state dict per shard */
        size_t size = a->n_blocks ? 65536 : 512;
        if (size < n) size = n;
        if (a->n_blocks == a->cap_blocks &&
            !lmio__grow((void **)&a->blocks, sizeof *a->blocks, a->n_blocks + 1, &a->cap_blocks))
            return NULL;
        char *b = lmio__malloc(size);
        if (!b) return NULL;
        a->blocks[a->n_blocks++] = b;
        a->used = 0;
        a->avail = size;
    }
    char *p = a->blocks[a->n_blocks - 1] + a->used;
    a->used += n;
    a->avail -= n;
    return p;
}

static void arena_free(arena *a)
{
    for (size_t i = 0; i < a->n_blocks; i++) lmio__free(a->blocks[i]);
    lmio__free(a->blocks);
}

static uint32_t *find_slot(const lmio_statedict *sd, const char *name, size_t n)
{
    if (!sd->nslots) return NULL;
    size_t mask = sd->nslots - 1;
    for (size_t i = (size_t)lmio__hash(name, n) & mask;; i = (i + 1) & mask) {
        uint32_t v = sd->slots[i];
        if (v == 0) return &sd->slots[i];
        const entry *e = &sd->entries[v - 1];
        if (e->name_len == n && memcmp(e->name, name, n) == 0) return &sd->slots[i];
    }
}

static bool grow_index(lmio_statedict *sd)
{
    size_t nslots = sd->nslots ? sd->nslots * 2 : 64;
    uint32_t *slots = lmio__calloc(nslots, sizeof *slots);
    if (!slots) return false;
    lmio__free(sd->slots);
    sd->slots = slots;
    sd->nslots = nslots;
    for (size_t i = 0; i < sd->count; i++)
        *find_slot(sd, sd->entries[i].name, sd->entries[i].name_len) = (uint32_t)(i + 1);
    return true;
}

lmio_status lmio_statedict_create(lmio_statedict **out, lmio_error *err)
{
    if (!out) return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "out is NULL");
    *out = lmio__calloc(1, sizeof **out);
    if (!*out) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    return LMIO_OK;
}

void lmio_statedict_free(lmio_statedict *sd)
{
    if (!sd) return;
    for (size_t i = 0; i < sd->count; i++) lmio__free(sd->entries[i].owned);
    arena_free(&sd->names);
    for (size_t i = 0; i < sd->meta_count; i++) {
        lmio__free(sd->meta[i].key);
        lmio__free(sd->meta[i].value);
    }
    lmio__free(sd->entries);
    lmio__free(sd->slots);
    lmio__free(sd->meta);
    lmio__free(sd->path);
    lmio__file_close(&sd->file);
    for (size_t i = 0; i < sd->n_children; i++) lmio_statedict_free(sd->children[i]);
    lmio__free(sd->children);
    lmio__free(sd);
}

lmio_status lmio__statedict_adopt(lmio_statedict *sd, lmio_statedict *child, lmio_error *err)
{
    if (sd->n_children == sd->children_cap &&
        !lmio__grow((void **)&sd->children, sizeof *sd->children, sd->n_children + 1, &sd->children_cap))
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory");
    sd->children[sd->n_children++] = child;
    return LMIO_OK;
}

bool lmio__statedict_has(const lmio_statedict *sd, const char *name, size_t n)
{
    uint32_t *slot = find_slot(sd, name, n);
    return slot && *slot;
}

static lmio_status append(lmio_statedict *sd, const char *name, size_t name_len, lmio_dtype dtype,
                          int ndim, const uint64_t *shape, uint64_t numel, const void *data,
                          uint64_t nbytes, void *owned, int64_t file_offset, const char *source,
                          lmio_error *err)
{
    if (sd->count >= UINT32_MAX - 1 || name_len > UINT32_MAX) goto nomem;
    if ((sd->count + 1) * 2 > sd->nslots && !grow_index(sd)) goto nomem;
    if (sd->count == sd->cap) {
        size_t cap = sd->cap ? sd->cap * 2 : 16;
        entry *e = lmio__realloc(sd->entries, cap * sizeof *e);
        if (!e) goto nomem;
        sd->entries = e;
        sd->cap = cap;
    }
    uint32_t *slot = find_slot(sd, name, name_len);
    if (*slot) {
        lmio__free(owned);
        char shown[LMIO_ERROR_KEY_MAX];
        snprintf(shown, sizeof shown, "%.*s", (int)(name_len < 200 ? name_len : 200), name);
        return lmio__fail(err, LMIO_ERR_DUPLICATE, sd->path ? sd->path : "", -1, shown,
                          "tensor \"%s\" appears twice; expected unique names", shown);
    }
    entry *e = &sd->entries[sd->count];
    memset(e, 0, sizeof *e);
    char *nm = arena_alloc(&sd->names, name_len + 1);
    uint64_t *sh = ndim ? arena_alloc(&sd->names, (size_t)ndim * sizeof *shape) : NULL;
    if (!nm || (ndim && !sh)) goto nomem;
    memcpy(nm, name, name_len);
    nm[name_len] = '\0';
    if (ndim) memcpy(sh, shape, (size_t)ndim * sizeof *shape);
    e->name = nm;
    e->name_len = (uint32_t)name_len;
    e->dtype = (int32_t)dtype;
    e->ndim = ndim;
    e->shape = sh;
    e->numel = numel;
    e->data = nbytes ? data : NULL;
    e->nbytes = nbytes;
    e->owned = owned;
    e->file_offset = file_offset;
    e->source = source;
    *slot = (uint32_t)++sd->count;
    return LMIO_OK;
nomem:
    lmio__free(owned);
    return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, "", "out of memory adding a tensor");
}

lmio_status lmio__statedict_add_view(lmio_statedict *sd, const char *name, size_t name_len,
                                     lmio_dtype dtype, int ndim, const uint64_t *shape,
                                     const void *data, uint64_t nbytes, int64_t file_offset,
                                     const char *source, lmio_error *err)
{
    uint64_t numel = 0;
    lmio__numel(ndim, shape, &numel); /* checked by the reader already */
    return append(sd, name, name_len, dtype, ndim, shape, numel, data, nbytes, NULL, file_offset,
                  source ? source : sd->path, err);
}

lmio_status lmio__statedict_add_owned(lmio_statedict *sd, const char *name, size_t name_len, lmio_dtype dtype,
                                      int ndim, const uint64_t *shape, void *data, uint64_t nbytes,
                                      lmio_error *err)
{
    uint64_t numel = 0;
    lmio__numel(ndim, shape, &numel);
    return append(sd, name, name_len, dtype, ndim, shape, numel, data, nbytes, data, -1, NULL, err);
}

lmio_status lmio_statedict_add(lmio_statedict *sd, const char *name, lmio_dtype dtype, int ndim,
                               const uint64_t *shape, const void *data, uint64_t nbytes,
                               lmio_ownership ownership, lmio_error *err)
{
    if (!sd || !name)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "state dict or name is NULL");
    size_t n = strlen(name);
    if (n == 0 || n > LMIO_NAME_MAX || !lmio__utf8_valid(name, n))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "",
                          "tensor name is empty, longer than %d bytes or not UTF-8; expected a valid name",
                          LMIO_NAME_MAX);
    if (strcmp(name, "__metadata__") == 0)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, name,
                          "\"__metadata__\" is reserved; expected another tensor name");
    if (!lmio_dtype_name(dtype))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, name, "tensor \"%s\": invalid dtype %d",
                          name, (int)dtype);
    if (ndim < 0 || ndim > LMIO_MAX_DIMS || (ndim > 0 && !shape))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, name,
                          "tensor \"%s\": %d dimensions; expected 0..%d", name, ndim, LMIO_MAX_DIMS);
    uint64_t numel, want;
    if (!lmio__numel(ndim, shape, &numel) || lmio__nbytes(dtype, numel, &want) != LMIO__SIZE_OK) {
        char sh[256];
        lmio__format_shape(sh, sizeof sh, ndim, shape);
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, name,
                          "tensor \"%s\": shape %s of %s overflows or is not a whole number of bytes",
                          name, sh, lmio_dtype_name(dtype));
    }
    if (want != nbytes)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, name,
                          "tensor \"%s\": %llu bytes given; expected %llu", name,
                          (unsigned long long)nbytes, (unsigned long long)want);
    if (nbytes && !data)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, name, "tensor \"%s\": data is NULL",
                          name);
    void *owned = NULL;
    if (ownership == LMIO_COPY && nbytes) {
        if (nbytes > SIZE_MAX || !(owned = lmio__malloc((size_t)nbytes)))
            return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, name, "out of memory copying tensor \"%s\"",
                              name);
        /* data may be another state dict's mapped tensor: a file that
         * shrank since is an error, not SIGBUS */
        if (!lmio__copy_guarded(owned, data, (size_t)nbytes)) {
            lmio__free(owned);
            return lmio__fail(err, LMIO_ERR_IO, "", -1, name,
                              "data of tensor \"%s\" can no longer be read (its memory went away: a mapped file "
                              "shrank?); expected readable bytes",
                              name);
        }
        data = owned;
    }
    return append(sd, name, n, dtype, ndim, shape, numel, data, nbytes, owned, -1, NULL, err);
}

size_t lmio_statedict_count(const lmio_statedict *sd) { return sd ? sd->count : 0; }

static void fill_view(const entry *e, lmio_tensor *out)
{
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = (lmio_dtype)e->dtype;
    out->ndim = e->ndim;
    if (e->ndim) memcpy(out->shape, e->shape, (size_t)e->ndim * sizeof *e->shape);
    out->data = e->data;
    out->nbytes = e->nbytes;
    out->numel = e->numel;
    out->file_offset = e->file_offset;
    out->source = e->source;
}

lmio_status lmio_statedict_get(const lmio_statedict *sd, size_t i, lmio_tensor *out,
                               lmio_error *err)
{
    if (!sd || !out || i >= sd->count)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "tensor index %zu out of range",
                          i);
    fill_view(&sd->entries[i], out);
    return LMIO_OK;
}

lmio_status lmio_tensor_find(const lmio_statedict *sd, const char *name, lmio_tensor *out,
                             lmio_error *err)
{
    if (!sd || !name || !out)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    uint32_t *slot = find_slot(sd, name, strlen(name));
    if (!slot || !*slot)
        return lmio__fail(err, LMIO_ERR_NOT_FOUND, sd->path ? sd->path : "", -1, name,
                          "no tensor named \"%s\"", name);
    fill_view(&sd->entries[*slot - 1], out);
    return LMIO_OK;
}

/* ---- metadata, kept sorted by key so output is canonical ---- */

static size_t meta_lower_bound(const lmio_statedict *sd, const char *key)
{
    size_t lo = 0, hi = sd->meta_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(sd->meta[mid].key, key) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

lmio_status lmio_metadata_set(lmio_statedict *sd, const char *key, const char *value,
                              lmio_error *err)
{
    if (!sd || !key || !value)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "NULL argument");
    if (!lmio__utf8_valid(key, strlen(key)) || !lmio__utf8_valid(value, strlen(value)))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "metadata is not UTF-8");
    size_t i = meta_lower_bound(sd, key);
    char *v = lmio__strdup(value);
    if (!v) return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, key, "out of memory");
    if (i < sd->meta_count && strcmp(sd->meta[i].key, key) == 0) {
        lmio__free(sd->meta[i].value);
        sd->meta[i].value = v;
        return LMIO_OK;
    }
    char *k = lmio__strdup(key);
    if (!k) {
        lmio__free(v);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, key, "out of memory");
    }
    if (sd->meta_count == sd->meta_cap) {
        size_t cap = sd->meta_cap ? sd->meta_cap * 2 : 8;
        meta *m = lmio__realloc(sd->meta, cap * sizeof *m);
        if (!m) {
            lmio__free(k);
            lmio__free(v);
            return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, key, "out of memory");
        }
        sd->meta = m;
        sd->meta_cap = cap;
    }
    memmove(&sd->meta[i + 1], &sd->meta[i], (sd->meta_count - i) * sizeof *sd->meta);
    sd->meta[i] = (meta){k, v};
    sd->meta_count++;
    return LMIO_OK;
}

/* Readers add metadata in file order and sort once (O(n log n)): keys
 * inserted one by one in descending order would each shift the whole array. */
lmio_status lmio__metadata_append(lmio_statedict *sd, const char *key, const char *value, lmio_error *err)
{
    char *k = lmio__strdup(key), *v = lmio__strdup(value);
    if (!k || !v || (sd->meta_count == sd->meta_cap &&
                     !lmio__grow((void **)&sd->meta, sizeof *sd->meta, sd->meta_count + 1, &sd->meta_cap))) {
        lmio__free(k);
        lmio__free(v);
        return lmio__fail(err, LMIO_ERR_NOMEM, "", -1, key, "out of memory");
    }
    sd->meta[sd->meta_count++] = (meta){k, v};
    return LMIO_OK;
}

static int cmp_meta(const void *a, const void *b) { return strcmp(((const meta *)a)->key, ((const meta *)b)->key); }

lmio_status lmio__metadata_sort(lmio_statedict *sd, lmio_error *err)
{
    if (sd->meta_count > 1) qsort(sd->meta, sd->meta_count, sizeof *sd->meta, cmp_meta);
    for (size_t i = 1; i < sd->meta_count; i++)
        if (!strcmp(sd->meta[i - 1].key, sd->meta[i].key))
            return lmio__fail(err, LMIO_ERR_DUPLICATE, sd->path ? sd->path : "", -1, sd->meta[i].key,
                              "metadata key \"%s\" appears twice; expected unique keys", sd->meta[i].key);
    return LMIO_OK;
}

size_t lmio_metadata_count(const lmio_statedict *sd) { return sd ? sd->meta_count : 0; }

lmio_status lmio_metadata_get(const lmio_statedict *sd, size_t i, const char **key,
                              const char **value, lmio_error *err)
{
    if (!sd || i >= sd->meta_count)
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, "", -1, "", "metadata index %zu out of range", i);
    if (key) *key = sd->meta[i].key;
    if (value) *value = sd->meta[i].value;
    return LMIO_OK;
}

const char *lmio_metadata_find(const lmio_statedict *sd, const char *key)
{
    if (!sd || !key) return NULL;
    size_t i = meta_lower_bound(sd, key);
    return i < sd->meta_count && strcmp(sd->meta[i].key, key) == 0 ? sd->meta[i].value : NULL;
}

const char *lmio_statedict_path(const lmio_statedict *sd) { return sd ? sd->path : NULL; }
const char *lmio_statedict_format(const lmio_statedict *sd) { return sd ? sd->format : NULL; }

lmio_status lmio__statedict_set_source(lmio_statedict *sd, const char *path, const char *format,
                                       lmio__file *file, lmio_error *err)
{
    if (path) { /* NULL keeps the path already recorded */
        char *p = lmio__strdup(path);
        if (!p) return lmio__fail(err, LMIO_ERR_NOMEM, path, -1, "", "out of memory");
        lmio__free(sd->path);
        sd->path = p;
    }
    sd->format = format;
    if (file) {
        lmio__file_close(&sd->file);
        sd->file = *file;
        memset(file, 0, sizeof *file);
    }
    return LMIO_OK;
}

size_t lmio__statedict_child_count(const lmio_statedict *sd) { return sd->n_children; }

lmio_status lmio__statedict_find_in_child(const lmio_statedict *sd, size_t child, const char *name,
                                          lmio_tensor *out)
{
    if (child >= sd->n_children) return LMIO_ERR_NOT_FOUND;
    return lmio_tensor_find(sd->children[child], name, out, NULL);
}
