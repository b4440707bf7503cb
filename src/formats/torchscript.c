/* TorchScript archives (shared/reference/torch-tokenizer.md section 2):
 * what torch.jit.load needs from a program that is not torch. The tensors'
 * dotted names become a tree of module objects (data.pkl, pickle protocol
 * 2: each module a NEWOBJ of its class with its attributes set by BUILD,
 * each parameter a _rebuild_tensor_v2 of a storage record data/<i>); every
 * distinct module class gets its source under code/, which torch compiles
 * on load: attribute declarations derived from the tree, methods from the
 * caller (the architecture). Layers share a class, as a scripted
 * nn.ModuleList of identical blocks does. */
#include "formats.h"

#include <stdio.h>
#include <string.h>

#define NONE SIZE_MAX

typedef struct member {
    const char *name; /* a part of a tensor name; borrowed, len bytes */
    size_t len;
    bool param;
    size_t idx;  /* the tensor (param) or the node */
    size_t next; /* the node's next member, or NONE */
} member;

typedef struct node {
    char *pattern; /* "transformer.h.{L}"; "" for the root */
    size_t cls;
    size_t first, last; /* members in the order first named */
} node;

typedef struct tsclass {
    char *name;  /* an identifier, unique in the package */
    size_t node; /* the first node of the class: its members declare it */
} tsclass;

typedef struct tree {
    const lmio__ts_program *p;
    const char *path;
    char *qual; /* "__torch__." + package */
    node *nodes;
    size_t n_nodes, cap_nodes;
    member *members;
    size_t n_members, cap_members;
    tsclass *classes;
    size_t n_classes, cap_classes;
} tree;

static lmio_status nomem(const tree *t, lmio_error *err)
{
    return lmio__fail(err, LMIO_ERR_NOMEM, t->path, -1, "", "out of memory");
}

static bool is_index(const char *s, size_t n)
{
    if (!n || (n > 1 && s[0] == '0') || n > 9) return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

/* Python's keywords, and what every module class already declares: a
 * tensor so named would not compile or would shadow it. */
static const char *const k_reserved[] = {
    "False", "None",   "True",  "and",     "as",       "assert", "async",  "await",    "break",
    "class", "continue", "def", "del",     "elif",     "else",   "except", "finally",  "for",
    "from",  "global", "if",    "import",  "in",       "is",     "lambda", "nonlocal", "not",
    "or",    "pass",   "raise", "return",  "try",      "while",  "with",   "yield",    "training",
    "forward"};

static bool is_identifier(const char *s, size_t n)
{
    if (!n || (s[0] >= '0' && s[0] <= '9') || (n >= 2 && s[0] == '_' && s[1] == '_')) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    for (size_t i = 0; i < sizeof k_reserved / sizeof *k_reserved; i++)
        if (strlen(k_reserved[i]) == n && !memcmp(k_reserved[i], s, n)) return false;
    return true;
}

static size_t find_member(const tree *t, size_t nd, const char *s, size_t n)
{
    for (size_t m = t->nodes[nd].first; m != NONE; m = t->members[m].next)
        if (t->members[m].len == n && !memcmp(t->members[m].name, s, n)) return m;
    return NONE;
}

static bool add_member(tree *t, size_t nd, const char *s, size_t n, bool param, size_t idx)
{
    if (!lmio__grow((void **)&t->members, sizeof *t->members, t->n_members + 1, &t->cap_members)) return false;
    size_t m = t->n_members++;
    t->members[m] = (member){s, n, param, idx, NONE};
    node *x = &t->nodes[nd];
    if (x->last == NONE) x->first = m;
    else t->members[x->last].next = m;
    x->last = m;
    return true;
}

/* A new child of parent named s[0..n): its pattern extends the parent's. */
static bool add_node(tree *t, size_t parent, const char *s, size_t n, size_t *out)
{
    if (!lmio__grow((void **)&t->nodes, sizeof *t->nodes, t->n_nodes + 1, &t->cap_nodes)) return false;
    const char *pp = t->nodes[parent].pattern;
    size_t pl = strlen(pp), cap = pl + n + 5;
    char *pat = lmio__malloc(cap);
    if (!pat) return false;
    bool idx = is_index(s, n);
    snprintf(pat, cap, "%s%s%.*s", pp, pl ? "." : "", idx ? 3 : (int)n, idx ? "{L}" : s);
    size_t k = t->n_nodes;
    t->nodes[k] = (node){pat, NONE, NONE, NONE};
    if (!add_member(t, parent, s, n, false, k)) {
        lmio__free(pat);
        return false;
    }
    t->n_nodes++;
    *out = k;
    return true;
}

/* Places tensor i in the tree, making the modules on its way. */
static lmio_status place(tree *t, size_t i, lmio_error *err)
{
    const char *name = t->p->tensors[i].name, *s = name;
    size_t cur = 0;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t n = dot ? (size_t)(dot - s) : strlen(s);
        if (!is_identifier(s, n) && (!dot || !is_index(s, n)))
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, t->path, -1, name,
                              "tensor \"%s\": name part \"%.*s\" cannot be a TorchScript attribute; expected an "
                              "identifier (not a keyword, not training/forward, no leading __)%s",
                              name, (int)n, s, dot ? " or a layer index" : "");
        size_t m = find_member(t, cur, s, n);
        if (m != NONE && (t->members[m].param || !dot))
            return lmio__fail(err, LMIO_ERR_INVALID_ARG, t->path, -1, name,
                              "tensor \"%s\": \"%.*s\" is already a %s; expected each name part to be either a "
                              "tensor or a module",
                              name, (int)(s + n - name), name, t->members[m].param ? "tensor" : "module");
        if (!dot) return add_member(t, cur, s, n, true, i) ? LMIO_OK : nomem(t, err);
        if (m != NONE) cur = t->members[m].idx;
        else if (!add_node(t, cur, s, n, &cur)) return nomem(t, err);
        s = dot + 1;
    }
}

/* Two modules of one class must declare the same attributes. */
static bool same_members(const tree *t, size_t a, size_t b)
{
    size_t x = t->nodes[a].first, y = t->nodes[b].first;
    for (; x != NONE && y != NONE; x = t->members[x].next, y = t->members[y].next) {
        const member *p = &t->members[x], *q = &t->members[y];
        if (p->param != q->param || p->len != q->len || memcmp(p->name, q->name, p->len)) return false;
    }
    return x == NONE && y == NONE;
}

static bool class_named(const tree *t, const char *name)
{
    for (size_t c = 0; c < t->n_classes; c++)
        if (!strcmp(t->classes[c].name, name)) return true;
    return false;
}

/* One class per pattern, named after it: "transformer.h.{L}.attn" ->
 * transformer_h_L_attn (suffixed if that is taken), the root p->root_class. */
static lmio_status assign_classes(tree *t, lmio_error *err)
{
    for (size_t k = 0; k < t->n_nodes; k++) {
        node *x = &t->nodes[k];
        for (size_t c = 0; c < t->n_classes && x->cls == NONE; c++) {
            const node *rep = &t->nodes[t->classes[c].node];
            if (strcmp(rep->pattern, x->pattern)) continue;
            if (!same_members(t, t->classes[c].node, k))
                return lmio__fail(err, LMIO_ERR_INVALID_ARG, t->path, -1, x->pattern,
                                  "modules matching \"%s\" hold different tensors; expected every layer to hold the "
                                  "same names",
                                  x->pattern);
            x->cls = c;
        }
        if (x->cls != NONE) continue;
        if (!lmio__grow((void **)&t->classes, sizeof *t->classes, t->n_classes + 1, &t->cap_classes))
            return nomem(t, err);
        size_t len = strlen(x->pattern), cap = len + 32;
        char *nm = lmio__malloc(cap);
        if (!nm) return nomem(t, err);
        if (k == 0) snprintf(nm, cap, "%s", t->p->root_class);
        else {
            size_t o = 0;
            for (const char *s = x->pattern; *s; s++) {
                if (!strncmp(s, "{L}", 3)) nm[o++] = 'L', s += 2;
                else nm[o++] = *s == '.' ? '_' : *s;
            }
            nm[o] = 0;
            if (class_named(t, nm)) snprintf(nm + o, cap - o, "_%zu", t->n_classes);
        }
        t->classes[t->n_classes] = (tsclass){nm, k};
        x->cls = t->n_classes++;
    }
    return LMIO_OK;
}

static void tree_free(tree *t)
{
    for (size_t k = 0; k < t->n_nodes; k++) lmio__free(t->nodes[k].pattern);
    for (size_t c = 0; c < t->n_classes; c++) lmio__free(t->classes[c].name);
    lmio__free(t->nodes);
    lmio__free(t->members);
    lmio__free(t->classes);
    lmio__free(t->qual);
}

static lmio_status build_tree(tree *t, lmio_error *err)
{
    const lmio__ts_program *p = t->p;
    size_t ql = strlen(p->package) + 16;
    if (!is_identifier(p->root_class, strlen(p->root_class)))
        return lmio__fail(err, LMIO_ERR_INVALID_ARG, t->path, -1, "", "root class \"%s\"; expected an identifier",
                          p->root_class);
    if (!(t->qual = lmio__malloc(ql)) || !(t->nodes = lmio__calloc(1, sizeof *t->nodes)) ||
        !(t->nodes[0].pattern = lmio__strdup("")))
        return nomem(t, err);
    snprintf(t->qual, ql, "__torch__.%s", p->package);
    t->cap_nodes = t->n_nodes = 1;
    t->nodes[0].cls = t->nodes[0].first = t->nodes[0].last = NONE;
    lmio_status s = LMIO_OK;
    for (size_t i = 0; i < p->n_tensors && !s; i++) s = place(t, i, err);
    return s ? s : assign_classes(t, err);
}

/* ---- code/ ---- */

/* The class's declarations as torch.jit.save prints them, then the
 * caller's methods. */
static lmio_status emit_class(const tree *t, const tsclass *c, lmio__buf *b, lmio_error *err)
{
    const node *x = &t->nodes[c->node];
    lmio__buf_puts(b, "class ");
    lmio__buf_puts(b, c->name);
    lmio__buf_puts(b, "(Module):\n  __parameters__ = [");
    for (size_t m = x->first; m != NONE; m = t->members[m].next)
        if (t->members[m].param) {
            lmio__buf_put(b, "\"", 1);
            lmio__buf_put(b, t->members[m].name, t->members[m].len);
            lmio__buf_puts(b, "\", ");
        }
    lmio__buf_puts(b, "]\n  __buffers__ = []\n  training : bool\n");
    for (size_t m = x->first; m != NONE; m = t->members[m].next) {
        const member *y = &t->members[m];
        bool idx = is_index(y->name, y->len);
        lmio__buf_puts(b, idx ? "  __annotations__[\"" : "  ");
        lmio__buf_put(b, y->name, y->len);
        lmio__buf_puts(b, idx ? "\"] = " : " : ");
        if (y->param) lmio__buf_puts(b, "Tensor");
        else {
            lmio__buf_puts(b, t->qual);
            lmio__buf_put(b, ".", 1);
            lmio__buf_puts(b, t->classes[t->nodes[y->idx].cls].name);
        }
        lmio__buf_put(b, "\n", 1);
    }
    return t->p->methods ? t->p->methods(t->p->ctx, x->pattern, b, err) : LMIO_OK;
}

/* ---- data.pkl ---- */

static void pickle_tensor(lmio__pickler *w, const lmio_tensor *x, size_t key)
{
    char k[24];
    int kl = snprintf(k, sizeof k, "%zu", key);
    lmio__pkw_global(w, "torch._utils", "_rebuild_tensor_v2");
    lmio__pkw_op(w, '(');
    lmio__pkw_op(w, '(');
    lmio__pkw_str_memo(w, "storage");
    lmio__pkw_global(w, "torch", "FloatStorage");
    lmio__pkw_str(w, k, (size_t)kl);
    lmio__pkw_str_memo(w, "cpu");
    lmio__pkw_int(w, (int64_t)x->numel);
    lmio__pkw_op(w, 't');
    lmio__pkw_op(w, 'Q');
    lmio__pkw_int(w, 0); /* storage offset */
    uint64_t stride[LMIO_MAX_DIMS], acc = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        stride[d] = acc;
        acc *= x->shape[d] ? x->shape[d] : 1;
    }
    lmio__pkw_int_tuple(w, x->shape, x->ndim);
    lmio__pkw_int_tuple(w, stride, x->ndim);
    lmio__pkw_op(w, 0x88); /* requires_grad: they are the module's parameters */
    lmio__pkw_global(w, "collections", "OrderedDict");
    lmio__pkw_op(w, ')');
    lmio__pkw_op(w, 'R');
    lmio__pkw_op(w, 't');
    lmio__pkw_op(w, 'R');
}

/* A module object: NEWOBJ of its class, then BUILD with a dict of every
 * attribute its class declares (the loader requires each one). Depth is
 * the number of dots in a tensor name. */
static void pickle_node(lmio__pickler *w, const tree *t, size_t k)
{
    const node *x = &t->nodes[k];
    lmio__pkw_global(w, t->qual, t->classes[x->cls].name);
    lmio__pkw_op(w, ')');
    lmio__pkw_op(w, 0x81); /* NEWOBJ */
    lmio__pkw_op(w, '}');
    lmio__pkw_op(w, '(');
    lmio__pkw_str_memo(w, "training");
    lmio__pkw_op(w, 0x89); /* an exported model is for inference: as after .eval() */
    for (size_t m = x->first; m != NONE; m = t->members[m].next) {
        const member *y = &t->members[m];
        lmio__pkw_str(w, y->name, y->len);
        if (y->param) pickle_tensor(w, &t->p->tensors[y->idx], y->idx);
        else pickle_node(w, t, y->idx);
    }
    lmio__pkw_op(w, 'u');
    lmio__pkw_op(w, 'b');
}

/* ---- the archive ---- */

#define CHUNK_ELEMS (1u << 18)

typedef struct job {
    const char *path;
    const lmio_save_opts *o;
    uint64_t total;
    float *buf;
} job;

static lmio_status report(const job *j, uint64_t done, lmio_error *err)
{
    if (j->o->progress && j->o->progress(j->o->progress_ctx, done, j->total))
        return lmio__fail(err, LMIO_ERR_CANCELLED, j->path, -1, "", "export cancelled; nothing was written");
    return LMIO_OK;
}

/* data/<i>: the tensor widened or narrowed to f32 as it streams. */
static lmio_status write_tensor(lmio__zipw *z, job *j, const lmio_tensor *x, size_t i, lmio_error *err)
{
    char name[32];
    snprintf(name, sizeof name, "data/%zu", i);
    lmio_status s = lmio__zipw_begin(z, name, x->numel * sizeof(float), err);
    for (uint64_t e = 0; e < x->numel && !s; e += CHUNK_ELEMS) {
        size_t n = x->numel - e < CHUNK_ELEMS ? (size_t)(x->numel - e) : CHUNK_ELEMS;
        const unsigned char *src = (const unsigned char *)x->data + e * (lmio_dtype_bits(x->dtype) / 8);
        if (x->dtype == LMIO_DTYPE_F32) s = lmio__zipw_data(z, src, n * sizeof(float), err);
        else if (lmio__convert_guarded(j->buf, LMIO_DTYPE_F32, src, x->dtype, n))
            s = lmio__zipw_data(z, j->buf, n * sizeof(float), err);
        else {
            z->lost = true;
            z->lost_addr = lmio__guard_fault_addr();
        }
        if (z->lost) return lmio__tensor_lost(x, z->lost_addr, err);
        if (!s) s = report(j, z->out->written, err);
    }
    return s ? s : lmio__zipw_end(z, err);
}

/* torch names the archive's folder after the file, without extension. */
static void archive_root(const char *path, char *root, size_t cap)
{
    const char *b = lmio__basename(path), *dot = strrchr(b, '.');
    size_t n = dot ? (size_t)(dot - b) : strlen(b);
    if (n == 0 || n >= cap) snprintf(root, cap, "archive");
    else snprintf(root, cap, "%.*s", (int)n, b);
}

static lmio_status write_archive(lmio__outfile *out, job *j, const tree *t, const lmio__buf *pkl,
                                 const lmio__buf *code, lmio_error *err)
{
    char root[256], code_name[512];
    archive_root(j->path, root, sizeof root);
    snprintf(code_name, sizeof code_name, "code/__torch__/%s.py", t->p->package);
    for (char *c = code_name + strlen("code/__torch__/"); *c; c++)
        if (*c == '.' && strcmp(c, ".py")) *c = '/';
    lmio__zipw z = {.out = out, .root = root};
    lmio_status s = LMIO_OK;
    /* torch.jit.save's order: tensors, the object, the code, constants.
     * Left out, as optional for the loader: the .debug_pkl files (source
     * ranges for tracebacks) and the informational .data/serialization_id */
    for (size_t i = 0; i < t->p->n_tensors && !s; i++) s = write_tensor(&z, j, &t->p->tensors[i], i, err);
    if (!s) s = lmio__zipw_record(&z, "data.pkl", pkl->data, pkl->len, err);
    if (!s) s = lmio__zipw_record(&z, code_name, code->data, code->len, err);
    if (!s) s = lmio__zipw_record(&z, "constants.pkl", "\x80\x02).", 4, err); /* no tensor constants */
    /* The code means today's operator semantics (gelu's approximate
     * argument is version 10), so no upgrader may rewrite it on load: the
     * newest file format version the pinned torch reads, as torch.jit.save
     * writes for such code. From version 6 on it lives in .data/version. */
    if (!s) s = lmio__zipw_record(&z, ".data/version", "10\n", 3, err);
    if (!s) s = lmio__zipw_record(&z, "byteorder", "little", 6, err);
    if (!s) s = lmio__zipw_finish(&z, err);
    lmio__zipw_free(&z);
    return s;
}

lmio_status lmio__torchscript_save(const lmio__ts_program *p, const char *path, const lmio_save_opts *o,
                                   lmio_error *err)
{
    tree t = {.p = p, .path = path};
    lmio__pickler pk = {0};
    lmio__buf code = {0};
    job j = {.path = path, .o = o};
    lmio_status s = build_tree(&t, err);
    for (size_t c = 0; c < t.n_classes && !s; c++) s = emit_class(&t, &t.classes[c], &code, err);
    if (!s) {
        lmio__pkw_op(&pk, 0x80);
        lmio__pkw_op(&pk, 2);
        pickle_node(&pk, &t, 0);
        lmio__pkw_op(&pk, '.');
        if (pk.b.oom || code.oom || !(j.buf = lmio__malloc(CHUNK_ELEMS * sizeof(float)))) s = nomem(&t, err);
    }
    for (size_t i = 0; i < p->n_tensors && !s; i++) {
        if (!lmio_dtype_is_convertible_float(p->tensors[i].dtype))
            s = lmio__fail(err, LMIO_ERR_UNSUPPORTED, path, -1, p->tensors[i].name,
                           "tensor \"%s\" is %s; expected F32, F16, BF16 or F64", p->tensors[i].name,
                           lmio_dtype_name(p->tensors[i].dtype));
        j.total += p->tensors[i].numel * sizeof(float);
    }
    j.total += pk.b.len + code.len;
    if (!s) s = report(&j, 0, err);
    lmio__outfile out;
    if (!s && !(s = lmio__outfile_begin(&out, path, err))) {
        s = write_archive(&out, &j, &t, &pk.b, &code, err);
        if (s) lmio__outfile_abort(&out);
        else s = lmio__outfile_commit(&out, o->durable, err);
    }
    lmio__free(j.buf);
    lmio__buf_free(&code);
    lmio__buf_free(&pk.b);
    tree_free(&t);
    return s;
}
