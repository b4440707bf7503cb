/* Reads of mapped files that cannot kill the process.
 *
 * A mapped input that another process truncates raises SIGBUS on the next
 * read past its new end, whatever the mmap flags (shared/reference/
 * hostile-inputs.md §5). Two ways out were possible: stop reading through
 * the mapping (pread into owned buffers) or catch the signal around the
 * reads. pread would mean keeping a descriptor per shard open for the life
 * of a state dict (thousands of shards exhaust the fd limit) and giving up
 * the zero-copy views the API promises, so lmio catches the signal instead,
 * and only where it is safe to: lmio__guarded runs a function that just
 * loads and computes (memcpy, dtype conversion, memcmp), with no allocation,
 * lock or I/O that a jump could leave half done, so leaving it with
 * siglongjmp is sound. The jump buffer is thread-local (the signal goes to
 * the thread that faulted), and a SIGBUS outside a guarded region goes to
 * whatever handler was installed before, or kills the process as usual. */
#define _GNU_SOURCE
#include "core.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static _Thread_local sigjmp_buf *tl_jump;
static _Thread_local const void *tl_fault; /* the address that faulted last */
/* The patched region (lmio__patch_begin): [lo, hi) and its first fault. */
static _Thread_local uintptr_t tl_patch_lo, tl_patch_hi;
static _Thread_local const void *tl_patch_fault;
static uintptr_t g_page;
static struct sigaction g_prev;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    /* only a fault the kernel raised (si_code > 0), not a kill(2) */
    bool fault = info && info->si_code > 0;
    if (tl_jump && fault) {
        tl_fault = info->si_addr;
        siglongjmp(*tl_jump, 1);
    }
    uintptr_t a = fault ? (uintptr_t)info->si_addr : 0;
    if (fault && a >= tl_patch_lo && a < tl_patch_hi) {
        /* A page of the file being parsed is gone: put a page of zeros in
         * its place and let the load run again. mmap is a plain system call
         * here (no lock is taken), and the caller fails the whole parse. */
        void *p = mmap((void *)(a & ~(g_page - 1)), g_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (p != MAP_FAILED) {
            if (!tl_patch_fault) tl_patch_fault = (const void *)a;
            return;
        }
    }
    if (g_prev.sa_flags & SA_SIGINFO) {
        if (g_prev.sa_sigaction) g_prev.sa_sigaction(sig, info, uctx);
        return;
    }
    if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN) {
        g_prev.sa_handler(sig);
        return;
    }
    /* Default action: returning re-executes the faulting load, which now
     * raises SIGBUS with the default disposition and ends the process. */
    signal(SIGBUS, SIG_DFL);
}

static void install(void)
{
    g_page = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_prev);
}

bool lmio__guarded(void (*fn)(void *ctx), void *ctx)
{
    pthread_once(&g_once, install);
    sigjmp_buf here;
    sigjmp_buf *volatile outer = tl_jump; /* guarded regions may nest */
    if (sigsetjmp(here, 0)) { /* SA_NODEFER: SIGBUS is not blocked, no mask to restore */
        tl_jump = outer;
        return false;
    }
    tl_jump = &here;
    fn(ctx);
    tl_jump = outer;
    return true;
}

const void *lmio__guard_fault_addr(void) { return tl_fault; }

void lmio__guard_raise(const void *addr)
{
    if (tl_jump) {
        tl_fault = addr;
        siglongjmp(*tl_jump, 1);
    }
    /* No guarded region to leave: what an unguarded fault would have done.
     * The first raise goes to the handler installed before lmio's (or
     * resets the default); if that returns, the second ends the process. */
    raise(SIGBUS);
    raise(SIGBUS);
    abort();
}

void lmio__patch_begin(const void *base, uint64_t size)
{
    pthread_once(&g_once, install);
    tl_patch_fault = NULL;
    tl_patch_lo = (uintptr_t)base;
    tl_patch_hi = (uintptr_t)base + (uintptr_t)size;
}

const void *lmio__patch_end(void)
{
    tl_patch_lo = tl_patch_hi = 0;
    return tl_patch_fault;
}
