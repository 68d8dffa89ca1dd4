/* NVTX v3 injection library for topoprof's tests: records NVTX events to a text file.
 *
 * Loaded by NVTX at the first NVTX call of a process when NVTX_INJECTION64_PATH names this
 * library. Writes one line per event to the file named by TOPOPROF_NVTX_LOG (opened once,
 * O_APPEND, each line one write(2) under a mutex, so nothing is buffered and forked or
 * spawned processes may share the file). Line format (tab-separated, parsed by tests/nvtxrec.py):
 *
 *   kind pid tid ts_ns domain range_id payload color category message
 *
 * kind: push|pop|mark|start|end; tid: gettid(); ts_ns: CLOCK_MONOTONIC (= time.monotonic_ns());
 * domain: name, "" for the default domain; range_id: start/end only, else "-";
 * payload: "-" | i:<int64> | u:<uint64> | d:<double> | ?:<payload type>; color: "-" | 0xAARRGGBB;
 * category: decimal (0 = none); message: last field, "\N" when absent. In domain and message,
 * backslash, tab, newline and CR are escaped as \\ \t \n \r. Lines starting with '#' are comments.
 * Build: gcc -O2 -shared -fPIC -I<nvtx3 include dir> recorder.c -o librec.so -lpthread -ldl */
#define _GNU_SOURCE
#define NVTX_NO_IMPL
#include <nvToolsExt.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

typedef struct { char *name; } Domain;     /* behind nvtxDomainHandle_t */
typedef struct { char *str; } RegString;   /* behind nvtxStringHandle_t */

static int log_fd = -1;
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t next_range_id = 1;
static __thread int depth;                 /* push/pop nesting level of this thread */
static __thread long my_tid;               /* cached gettid(), 0 = not yet known */
static int my_pid;                         /* cached getpid() */

static void lock(void) { pthread_mutex_lock(&log_mu); }
static void unlock(void) { pthread_mutex_unlock(&log_mu); }
static void forked_child(void) { my_pid = getpid(); my_tid = 0; unlock(); }

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }

static char *escape(char *out, const char *s) {   /* out needs 2*strlen(s)+1 bytes */
    for (; *s; s++) {
        char c = *s, e = c == '\\' ? '\\' : c == '\t' ? 't' : c == '\n' ? 'n' : c == '\r' ? 'r' : 0;
        if (e) { *out++ = '\\'; *out++ = e; } else *out++ = c;
    }
    return out;
}

static char *wide_to_utf8(const wchar_t *w) {     /* malloc'd UTF-8 copy */
    size_t n = wcslen(w); char *o = malloc(4 * n + 1), *p = o;
    if (!o) return NULL;
    for (; *w; w++) {
        uint32_t c = (uint32_t)*w;
        if (c < 0x80) *p++ = (char)c;
        else if (c < 0x800) { *p++ = 0xC0 | c >> 6; *p++ = 0x80 | (c & 63); }
        else if (c < 0x10000) { *p++ = 0xE0 | c >> 12; *p++ = 0x80 | (c >> 6 & 63); *p++ = 0x80 | (c & 63); }
        else { *p++ = 0xF0 | c >> 18; *p++ = 0x80 | (c >> 12 & 63); *p++ = 0x80 | (c >> 6 & 63); *p++ = 0x80 | (c & 63); }
    }
    *p = 0;
    return o;
}

static void emit(const char *kind, nvtxDomainHandle_t dom, uint64_t rid,
                 const nvtxEventAttributes_t *a, const char *msg) {
    const char *dname = dom ? ((Domain *)dom)->name : "";
    char *wide = NULL, pay[48] = "-", col[16] = "-", ids[24] = "-", pre[256], stackbuf[1024];
    uint32_t cat = 0;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (a) {
        if (a->messageType == NVTX_MESSAGE_TYPE_ASCII) msg = a->message.ascii;
        else if (a->messageType == NVTX_MESSAGE_TYPE_REGISTERED)
            msg = a->message.registered ? ((RegString *)a->message.registered)->str : NULL;
        else if (a->messageType == NVTX_MESSAGE_TYPE_UNICODE && a->message.unicode)
            msg = wide = wide_to_utf8(a->message.unicode);
        switch (a->payloadType) {
        case NVTX_PAYLOAD_UNKNOWN: break;
        case NVTX_PAYLOAD_TYPE_INT64: snprintf(pay, sizeof pay, "i:%" PRId64, a->payload.llValue); break;
        case NVTX_PAYLOAD_TYPE_INT32: snprintf(pay, sizeof pay, "i:%" PRId32, a->payload.iValue); break;
        case NVTX_PAYLOAD_TYPE_UNSIGNED_INT64: snprintf(pay, sizeof pay, "u:%" PRIu64, a->payload.ullValue); break;
        case NVTX_PAYLOAD_TYPE_UNSIGNED_INT32: snprintf(pay, sizeof pay, "u:%" PRIu32, a->payload.uiValue); break;
        case NVTX_PAYLOAD_TYPE_DOUBLE: snprintf(pay, sizeof pay, "d:%.17g", a->payload.dValue); break;
        case NVTX_PAYLOAD_TYPE_FLOAT: snprintf(pay, sizeof pay, "d:%.9g", (double)a->payload.fValue); break;
        default: snprintf(pay, sizeof pay, "?:%" PRId32, a->payloadType);
        }
        if (a->colorType == NVTX_COLOR_ARGB) snprintf(col, sizeof col, "0x%08" PRIx32, a->color);
        cat = a->category;
    }
    if (rid) snprintf(ids, sizeof ids, "%" PRIu64, rid);
    if (!my_tid) my_tid = (long)syscall(SYS_gettid);
    int n = snprintf(pre, sizeof pre, "%s\t%d\t%ld\t%lld\t", kind, my_pid, my_tid,
                     (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec);
    size_t cap = (size_t)n + 2 * strlen(dname) + (msg ? 2 * strlen(msg) : 2) + 128;
    char *buf = cap <= sizeof stackbuf ? stackbuf : malloc(cap), *p = buf;
    if (buf) {
        memcpy(p, pre, (size_t)n); p += n;
        p = escape(p, dname);
        p += sprintf(p, "\t%s\t%s\t%s\t%" PRIu32 "\t", ids, pay, col, cat);
        if (msg) p = escape(p, msg); else { *p++ = '\\'; *p++ = 'N'; }
        *p++ = '\n';
        lock();
        for (char *w = buf; w < p;) {
            ssize_t k = write(log_fd, w, (size_t)(p - w));
            if (k > 0) w += k; else if (k < 0 && errno != EINTR) break;
        }
        unlock();
        if (buf != stackbuf) free(buf);
    } else fprintf(stderr, "nvtx recorder: out of memory, %s event lost\n", kind);
    free(wide);
}

static int push(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a, const char *m) { emit("push", d, 0, a, m); return depth++; }
static int pop(nvtxDomainHandle_t d) { emit("pop", d, 0, NULL, NULL); return depth > 0 ? --depth : -1; }
static nvtxRangeId_t start(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a, const char *m) {
    nvtxRangeId_t id = __atomic_fetch_add(&next_range_id, 1, __ATOMIC_RELAXED);
    emit("start", d, id, a, m); return id;
}

static int RangePushA(const char *m) { return push(NULL, NULL, m); }
static int RangePushEx(const nvtxEventAttributes_t *a) { return push(NULL, a, NULL); }
static int RangePop(void) { return pop(NULL); }
static void MarkA(const char *m) { emit("mark", NULL, 0, NULL, m); }
static void MarkEx(const nvtxEventAttributes_t *a) { emit("mark", NULL, 0, a, NULL); }
static nvtxRangeId_t RangeStartA(const char *m) { return start(NULL, NULL, m); }
static nvtxRangeId_t RangeStartEx(const nvtxEventAttributes_t *a) { return start(NULL, a, NULL); }
static void RangeEnd(nvtxRangeId_t id) { emit("end", NULL, id, NULL, NULL); }
static int DomainRangePushEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) { return push(d, a, NULL); }
static int DomainRangePop(nvtxDomainHandle_t d) { return pop(d); }
static void DomainMarkEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) { emit("mark", d, 0, a, NULL); }
static nvtxRangeId_t DomainRangeStartEx(nvtxDomainHandle_t d, const nvtxEventAttributes_t *a) { return start(d, a, NULL); }
static void DomainRangeEnd(nvtxDomainHandle_t d, nvtxRangeId_t id) { emit("end", d, id, NULL, NULL); }
/* Handles are never freed: a string or domain handle may be used until the process exits. */
static nvtxDomainHandle_t DomainCreateA(const char *name) {
    Domain *d = malloc(sizeof *d);
    if (d && !(d->name = strdup(name ? name : ""))) { free(d); d = NULL; }
    return (nvtxDomainHandle_t)d;
}
static nvtxStringHandle_t DomainRegisterStringA(nvtxDomainHandle_t d, const char *s) {
    (void)d;
    RegString *r = malloc(sizeof *r);
    if (r) { r->str = dupstr(s); if (s && !r->str) { free(r); r = NULL; } }
    return (nvtxStringHandle_t)r;
}

static int install(const NvtxExportTableCallbacks *cb, NvtxCallbackModule mod, const int *ids,
                   NvtxFunctionPointer *fns, int n) {
    NvtxFunctionTable table = NULL; unsigned int size = 0;
    if (!cb->GetModuleFunctionTable(mod, &table, &size) || !table) return 0;
    for (int i = 0; i < n; i++)
        if ((unsigned)ids[i] < size && table[ids[i]]) *table[ids[i]] = fns[i]; else return 0;
    return 1;
}

#define FP(f) ((NvtxFunctionPointer)(f))
NVTX_DYNAMIC_EXPORT int InitializeInjectionNvtx2(NvtxGetExportTableFunc_t getExportTable) {
    const char *path = getenv("TOPOPROF_NVTX_LOG");
    const NvtxExportTableCallbacks *cb = (const NvtxExportTableCallbacks *)getExportTable(NVTX_ETID_CALLBACKS);
    if (!path || !*path) { fprintf(stderr, "nvtx recorder: TOPOPROF_NVTX_LOG is not set\n"); return 0; }
    if (!cb || cb->struct_size < sizeof *cb) { fprintf(stderr, "nvtx recorder: no callbacks export table\n"); return 0; }
    log_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) { fprintf(stderr, "nvtx recorder: cannot open %s: %s\n", path, strerror(errno)); return 0; }
    my_pid = getpid();
    pthread_atfork(lock, unlock, forked_child);   /* a forked child never inherits a held lock */
    static const int core_ids[] = {NVTX_CBID_CORE_RangePushA, NVTX_CBID_CORE_RangePushEx, NVTX_CBID_CORE_RangePop,
        NVTX_CBID_CORE_MarkA, NVTX_CBID_CORE_MarkEx, NVTX_CBID_CORE_RangeStartA, NVTX_CBID_CORE_RangeStartEx,
        NVTX_CBID_CORE_RangeEnd};
    NvtxFunctionPointer core[] = {FP(RangePushA), FP(RangePushEx), FP(RangePop), FP(MarkA), FP(MarkEx),
        FP(RangeStartA), FP(RangeStartEx), FP(RangeEnd)};
    static const int core2_ids[] = {NVTX_CBID_CORE2_DomainCreateA, NVTX_CBID_CORE2_DomainRegisterStringA,
        NVTX_CBID_CORE2_DomainRangePushEx, NVTX_CBID_CORE2_DomainRangePop, NVTX_CBID_CORE2_DomainMarkEx,
        NVTX_CBID_CORE2_DomainRangeStartEx, NVTX_CBID_CORE2_DomainRangeEnd};
    NvtxFunctionPointer core2[] = {FP(DomainCreateA), FP(DomainRegisterStringA), FP(DomainRangePushEx),
        FP(DomainRangePop), FP(DomainMarkEx), FP(DomainRangeStartEx), FP(DomainRangeEnd)};
    if (!install(cb, NVTX_CB_MODULE_CORE, core_ids, core, 8) || !install(cb, NVTX_CB_MODULE_CORE2, core2_ids, core2, 7)) {
        fprintf(stderr, "nvtx recorder: cannot install callbacks\n"); return 0;
    }
    char hdr[96];
    int n = snprintf(hdr, sizeof hdr, "# topoprof-nvtx-recorder v1 pid=%d\n", (int)getpid());
    if (write(log_fd, hdr, (size_t)n) < 0) return 0;
    return 1;
}
