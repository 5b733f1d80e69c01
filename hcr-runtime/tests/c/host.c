/* A host in C for the C API tests: loads the Rust module `counter` from the
 * path it is given, calls it through a stub, reloads it with the build named
 * by HCR_TEST_V2 and then with a broken file, and prints what it sees. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hcr.h"

typedef uint64_t (*fn_u64_u64)(uint64_t);
typedef uint64_t (*fn_u64)(void);

static unsigned before, committed, rolled_back;
static uint64_t last_generation;

static void on_reload(void *user, const HcrReloadEvent *event) {
    (void)user;
    if (event->phase == HcrPhase_BEFORE_RELOAD) {
        before++;
    } else if (event->outcome == HcrOutcome_COMMITTED) {
        committed++;
    } else if (event->outcome == HcrOutcome_ROLLED_BACK) {
        rolled_back++;
    }
    last_generation = event->generation;
}

static int fail(const char *what) {
    const char *error = hcr_last_error();
    fprintf(stderr, "%s failed: %s\n", what, error ? error : "(no message)");
    return 1;
}

/* Replaces the file at `to` with the bytes of `from` (or with `text`). */
static int replace_file(const char *to, const char *from, const char *text) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.partial", to);
    FILE *out = fopen(tmp, "wb");
    if (!out) {
        return -1;
    }
    if (from) {
        FILE *in = fopen(from, "rb");
        if (!in) {
            fclose(out);
            return -1;
        }
        char buf[65536];
        size_t n;
        while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
            fwrite(buf, 1, n, out);
        }
        fclose(in);
    } else {
        fputs(text, out);
    }
    fclose(out);
    return rename(tmp, to);
}

int main(int argc, char **argv) {
    const char *v2 = getenv("HCR_TEST_V2");
    if (argc != 2 || !v2) {
        fprintf(stderr, "usage: HCR_TEST_V2=<v2 build> c-host <module>\n");
        return 2;
    }
    HcrConfig config;
    if (hcr_config_from_env(&config) != HCR_RESULT_OK) {
        return fail("hcr_config_from_env");
    }
    config.stub_base = 0;
    config.stub_capacity = 1024;
    config.unload_policy = HCR_UNLOAD_IMMEDIATE;
    HcrRuntime *rt = hcr_runtime_new(&config);
    if (!rt) {
        return fail("hcr_runtime_new");
    }
    if (hcr_add_handler(rt, on_reload, NULL) != HCR_RESULT_OK) {
        return fail("hcr_add_handler");
    }

    if (hcr_load(rt, "/nonexistent/libnothing.so") != HCR_RESULT_FAILED) {
        fprintf(stderr, "loading a missing file did not fail\n");
        return 1;
    }
    printf("missing module refused: %s\n", hcr_last_error());

    if (hcr_load(rt, argv[1]) != HCR_RESULT_OK) {
        return fail("hcr_load");
    }
    fn_u64_u64 answer = (fn_u64_u64)hcr_get_proc(rt, "counter", "answer");
    fn_u64 bump = (fn_u64)hcr_get_proc(rt, "counter", "bump");
    fn_u64 count = (fn_u64)hcr_get_proc(rt, "counter", "count");
    if (!answer || !bump || !count) {
        return fail("hcr_get_proc");
    }
    bump();
    bump();
    bump();
    size_t size = 0;
    uint64_t *count_global = hcr_get_global(rt, "counter", "COUNT", &size);
    if (!count_global) {
        return fail("hcr_get_global");
    }
    printf("v1: answer(40) = %" PRIu64 ", count = %" PRIu64 ", COUNT is %zu bytes and holds %" PRIu64 "\n",
           answer(40), count(), size, *count_global);

    HcrReloadSummary summary;
    if (hcr_perform_reload(rt, &summary) != HCR_RESULT_OK) {
        return fail("hcr_perform_reload (unchanged)");
    }
    printf("nothing changed: reloaded %u, generation %" PRIu64 "\n", summary.reloaded, summary.generation);

    if (replace_file(argv[1], v2, NULL) != 0) {
        perror("installing v2");
        return 1;
    }
    /* As a host loop would: ask at every frame until the new file has
       settled (gone unmodified for the configured settle time). */
    int frames = 0;
    while (!hcr_reload_needed(rt)) {
        if (++frames == 5000) {
            fprintf(stderr, "the new build was not noticed\n");
            return 1;
        }
        struct timespec frame = {0, 1000000};
        nanosleep(&frame, NULL);
    }
    if (hcr_perform_reload(rt, &summary) != HCR_RESULT_OK) {
        return fail("hcr_perform_reload");
    }
    uint64_t *count_after = hcr_get_global(rt, "counter", "COUNT", NULL);
    printf("v2: answer(40) = %" PRIu64 " through the same pointer, count = %" PRIu64
           ", COUNT at the %s address holds %" PRIu64 "\n",
           answer(40), count(), count_after == count_global ? "same" : "another", *count_global);
    printf("reloaded %u module, generation %" PRIu64 " (%.1f ms)\n", summary.reloaded, summary.generation,
           summary.total_ms);

    if (replace_file(argv[1], NULL, "not a library") != 0) {
        perror("installing a broken build");
        return 1;
    }
    if (hcr_perform_reload(rt, &summary) != HCR_RESULT_FAILED) {
        fprintf(stderr, "the broken build was not refused\n");
        return 1;
    }
    printf("broken build refused, answer(40) = %" PRIu64 ": %s\n", answer(40), hcr_last_error());
    printf("handlers: %u before, %u committed, %u rolled back, last generation %" PRIu64 "\n", before, committed,
           rolled_back, last_generation);
    hcr_runtime_free(rt);
    printf("freed\n");
    return 0;
}
