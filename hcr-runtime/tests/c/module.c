/* Module `cmod`, in C, for the C API tests. STEP selects the build:
 * 1: answer(x) = 10x + 1, plus `only_v1`; 2: answer(x) = 10x + 2;
 * 3: init refuses to load, with a message. Every call of `answer` counts in
 * the global `call_count`, which survives reloads. */
#include "hcr_module.h"

#ifndef STEP
#error "build with -DSTEP=<n>"
#endif

static uint64_t *call_count;

static uint64_t answer(uint64_t x) {
    *call_count += 1;
    return x * 10 + STEP;
}

static uint64_t calls(void) {
    return *call_count;
}

static uint64_t version(void) {
    return STEP;
}

#if STEP == 1
static uint64_t only_v1(void) {
    return 1;
}
#endif

static HcrStatus init(const HcrHostApi *api) {
    if (STEP == 3) {
        hcr_api_report_error(api, "step 3 is not supported");
        return HcrStatus_FAILED;
    }
    HCR_REGISTER_GLOBAL(api, uint64_t, call_count, 0);
    HCR_REGISTER_PROC(api, answer, "uint64_t (uint64_t)");
    HCR_REGISTER_PROC(api, calls, "uint64_t (void)");
    HCR_REGISTER_PROC(api, version, "uint64_t (void)");
#if STEP == 1
    HCR_REGISTER_PROC(api, only_v1, "uint64_t (void)");
#endif
    return HcrStatus_OK;
}

HCR_MODULE("cmod", "c-test", init);
