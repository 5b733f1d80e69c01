/* hcr_module.h: writing an hcr module in C.
 *
 * A module is a shared library that exports one descriptor
 * (HCR_MODULE_DESCRIPTOR) and whose init function registers its procs
 * (functions) and globals with the runtime. The runtime re-points the procs'
 * stubs at every new build, and keeps every global's storage and value.
 *
 *     #include "hcr_module.h"
 *
 *     static uint64_t *calls;            // points at runtime-owned storage
 *
 *     static uint64_t answer(uint64_t x) { *calls += 1; return x + 1; }
 *
 *     static HcrStatus init(const HcrHostApi *api) {
 *         HCR_REGISTER_GLOBAL(api, uint64_t, calls, 0);
 *         HCR_REGISTER_PROC(api, answer, "uint64_t (uint64_t)");
 *         return HcrStatus_OK;
 *     }
 *
 *     HCR_MODULE("example", "build 1", init);
 *
 * Build it as a shared library (`cc -shared -fPIC -Ipath/to/include ...`).
 * See docs/c-api.md.
 */
#ifndef HCR_MODULE_H
#define HCR_MODULE_H

#include <string.h>

#include "hcr_abi.h"

#if defined(_WIN32)
#define HCR_EXPORT __declspec(dllexport)
#else
#define HCR_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define HCR_EXTERN_C extern "C"
#define HCR_ALIGNOF(type) alignof(type)
#else
#define HCR_EXTERN_C
#define HCR_ALIGNOF(type) _Alignof(type)
#endif

/* An HcrStr initializer for a string literal; usable in static data. */
#define HCR_STR_LITERAL(literal) { (const uint8_t *)(literal), sizeof(literal) - 1 }

/* Views a NUL-terminated string (null gives the empty string). */
static inline HcrStr hcr_str(const char *text) {
    HcrStr s = { (const uint8_t *)text, text ? strlen(text) : 0 };
    return s;
}

/* 64-bit FNV-1a of a NUL-terminated string: the signature and layout hashes
 * of C modules, so that a caller bound to one signature text is protected
 * from a build that registers another. 0 stays "unknown". */
static inline uint64_t hcr_hash(const char *text) {
    uint64_t hash = 0xcbf29ce484222325u;
    if (!text || !*text) {
        return 0;
    }
    for (; *text; text++) {
        hash ^= (unsigned char)*text;
        hash *= 0x100000001b3u;
    }
    return hash ? hash : 1;
}

/* Defines the module's descriptor. NAME and BUILD_ID are string literals;
 * INIT is `HcrStatus init(const HcrHostApi *api)`. */
#define HCR_MODULE(name, build_id, init) HCR_MODULE_IMPORTING(name, build_id, init, NULL, 0)

/* Like HCR_MODULE, for a module that imports others: IMPORTS is a static
 * array of COUNT HcrStr (HCR_STR_LITERAL("other_module"), ...), loaded
 * before this module. */
/* A C module has no flags and no toolchain fingerprint (those are for
 * modules with Rust-ABI functions). */
#define HCR_MODULE_IMPORTING(name, build_id, init, imports, count)                                         \
    HCR_EXTERN_C HCR_EXPORT const HcrModuleDescriptor HCR_MODULE_DESCRIPTOR = {                           \
        { 'H', 'C', 'R', 'M', 'O', 'D', 'U', 'L' }, HCR_ABI_MAJOR, HCR_ABI_MINOR,                        \
        sizeof(HcrModuleDescriptor), HCR_STR_LITERAL(name), HCR_STR_LITERAL(build_id), (imports), (count), \
        (init), 0, 0, { 0 } }

/* Registers function ADDR under NAME, with its signature as text (hashed
 * with hcr_hash; null or "" for unknown). */
static inline HcrStatus hcr_api_register_proc(const HcrHostApi *api, const char *name, const void *addr,
                                              const char *signature) {
    HcrProcDesc desc = { hcr_str(name), addr, hcr_hash(signature), hcr_str(signature) };
    return api->register_proc(api->ctx, &desc);
}

/* Writes to *OUT the stub of proc NAME of MODULE (another module): an
 * address that always runs that module's current code. */
static inline HcrStatus hcr_api_get_proc(const HcrHostApi *api, const char *module, const char *name,
                                         const char *signature, const void **out) {
    HcrProcImport import = { hcr_str(module), hcr_str(name), hcr_hash(signature), hcr_str(signature) };
    return api->get_proc(api->ctx, &import, out);
}

/* Registers global NAME of SIZE bytes and alignment ALIGN, its type as text
 * in LAYOUT; writes the runtime's storage to *OUT. out->initialize is 1 the
 * first time only: then write the initial value. */
static inline HcrStatus hcr_api_register_global(const HcrHostApi *api, const char *name, size_t size, size_t align,
                                                const char *layout, HcrGlobalSlot *out) {
    HcrGlobalDesc desc = { hcr_str(name), size, align, hcr_hash(layout), hcr_str(layout) };
    return api->register_global(api->ctx, &desc, out);
}

/* Writes to *OUT the storage of global NAME of MODULE (another module). */
static inline HcrStatus hcr_api_get_global(const HcrHostApi *api, const char *module, const char *name, size_t size,
                                           size_t align, const char *layout, void **out) {
    HcrGlobalImport import = { hcr_str(module), hcr_str(name), size, align, hcr_hash(layout), hcr_str(layout) };
    return api->get_global(api->ctx, &import, out);
}

/* Registers HANDLER to run with USER before (HcrPhase_BEFORE_RELOAD) or
 * after (HcrPhase_AFTER_RELOAD) every reload while this build is current,
 * or once, after the load that brought this module in committed
 * (HcrPhase_FIRST_LOAD, ABI 1.2; an older runtime returns
 * HcrStatus_INVALID_ARGUMENT). */
static inline HcrStatus hcr_api_add_handler(const HcrHostApi *api, HcrPhase phase, HcrHandlerFn handler, void *user) {
    return api->add_handler(api->ctx, phase, handler, user);
}

/* Attaches MESSAGE to this module's failure; return HcrStatus_FAILED from
 * init afterwards. */
static inline void hcr_api_report_error(const HcrHostApi *api, const char *message) {
    api->report_error(api->ctx, hcr_str(message));
}

/* Returns from the enclosing init with STATUS unless it is HcrStatus_OK. */
#define HCR_TRY(status)                       \
    do {                                      \
        HcrStatus hcr_status_ = (status);     \
        if (hcr_status_ != HcrStatus_OK) {    \
            return hcr_status_;               \
        }                                     \
    } while (0)

/* Registers function FN under its own name with SIGNATURE (text); returns
 * from the enclosing init on failure. */
#define HCR_REGISTER_PROC(api, fn, signature) HCR_TRY(hcr_api_register_proc((api), #fn, (const void *)(fn), (signature)))

/* Registers global VAR of TYPE under the name of VAR, a `static TYPE *VAR;`
 * which then points at the runtime's storage; sets it to INITIAL the first
 * time only (later builds keep the value). Returns from the enclosing init
 * on failure. */
#define HCR_REGISTER_GLOBAL(api, type, var, initial)                                                             \
    do {                                                                                                         \
        HcrGlobalSlot hcr_slot_;                                                                                 \
        HCR_TRY(hcr_api_register_global((api), #var, sizeof(type), HCR_ALIGNOF(type), #type, &hcr_slot_));    \
        (var) = (type *)hcr_slot_.ptr;                                                                           \
        if (hcr_slot_.initialize) {                                                                              \
            *(var) = (initial);                                                                                  \
        }                                                                                                        \
    } while (0)

#endif /* HCR_MODULE_H */
