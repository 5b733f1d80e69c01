/* Generated from hcr-runtime/src/capi.rs; do not edit.
 * `HCR_BLESS=1 cargo test -p hcr-runtime --test c_api` regenerates it. */

#ifndef HCR_H
#define HCR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include "hcr_abi.h"

// `HcrConfig::unload_policy`: close a replaced library once every thread
// registered with the runtime passed a quiescent point (no thread is
// registered through the C API, so for C hosts this is the same as
// `HCR_UNLOAD_IMMEDIATE`).
#define HCR_UNLOAD_DEFERRED 0

// `HcrConfig::unload_policy`: close a replaced library as soon as the
// reload commits.
#define HCR_UNLOAD_IMMEDIATE 1

// `HcrConfig::unload_policy`: keep replaced libraries loaded until the
// runtime is freed.
#define HCR_UNLOAD_NEVER 2

// How a call of the C API ended.
typedef enum HcrResult {
  // Success.
  HCR_RESULT_OK = 0,
  // The runtime refused or failed: a module did not load, a reload was
  // rolled back (the old code keeps running with its state), a name is
  // unknown... `hcr_last_error` says what happened.
  HCR_RESULT_FAILED = 1,
  // A pointer was null, or a string was not valid UTF-8.
  HCR_RESULT_INVALID_ARGUMENT = 2,
  // The runtime panicked (a bug in hcr); the runtime is still usable.
  HCR_RESULT_PANICKED = 3,
} HcrResult;

// A runtime, created by `hcr_runtime_new` and freed by `hcr_runtime_free`.
// It may be used from several threads at once.
typedef struct HcrRuntime HcrRuntime;

// Settings for `hcr_runtime_new`. Fill it with `hcr_config_from_env` (or
// `hcr_config_default`), then change what you need.
typedef struct HcrConfig {
  // Preferred address of the stub table; 0 lets the system choose.
  size_t stub_base;
  // Number of stubs the table can hold.
  size_t stub_capacity;
  // What happens to replaced libraries: one of the `HCR_UNLOAD_*`
  // constants.
  uint32_t unload_policy;
  // Watch the modules' files so that `hcr_reload_needed` costs one atomic
  // load while nothing changes.
  bool watch_files;
  // Milliseconds a changed module file must go unmodified before it is
  // loaded (a linker may still be writing it); at most 10000.
  uint32_t settle_ms;
  // A file to which every reload that did something appends one line, or
  // null. Copied by `hcr_runtime_new`.
  const char *report_file;
} HcrConfig;

// What `hcr_perform_reload` did.
typedef struct HcrReloadSummary {
  // The generation after the reload (the number of committed reloads).
  uint64_t generation;
  // Modules whose new build is now current; 0 when nothing changed.
  uint32_t reloaded;
  // Modules loaded for the first time (new imports).
  uint32_t loaded;
  // Modules unloaded because nothing imports them any more.
  uint32_t unloaded;
  // Milliseconds the reload took.
  double total_ms;
} HcrReloadSummary;

// A reload handler: called with the `user` pointer it was registered with.
typedef void (*HcrHandler)(void *user, const HcrReloadEvent *event);

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Writes the built-in defaults to `*config` (ignoring the environment).
//
// # Safety
//
// `config` is null or points at writable memory for an `HcrConfig`.
enum HcrResult hcr_config_default(struct HcrConfig *config);

// Writes the defaults overridden by the environment (`HCR_STUB_BASE`,
// `HCR_STUB_CAPACITY`, `HCR_WATCH`, `HCR_SETTLE_MS`) to `*config`. `report_file` is left
// null: `hcr_runtime_new(NULL)` reads `HCR_REPORT_FILE` itself.
//
// # Safety
//
// `config` is null or points at writable memory for an `HcrConfig`.
enum HcrResult hcr_config_from_env(struct HcrConfig *config);

// Creates a runtime: reserves the stub table and creates the private
// directory for module copies. With a null `config`, the configuration
// comes from the environment. Returns null on failure (see
// `hcr_last_error`).
//
// # Safety
//
// `config` is null or points at a valid `HcrConfig` whose `report_file` is
// null or a NUL-terminated string.
struct HcrRuntime *hcr_runtime_new(const struct HcrConfig *config);

// Frees a runtime: closes every module and releases the stub table. Every
// stub address and global pointer it handed out becomes invalid. Null is
// ignored.
//
// # Safety
//
// `runtime` is null or was returned by `hcr_runtime_new` and not freed, and
// no other thread uses it.
void hcr_runtime_free(struct HcrRuntime *runtime);

// Loads the module at `path` (and the modules it imports). Loading a file
// that is already loaded does nothing.
//
// # Safety
//
// `runtime` is a live runtime; `path` is a NUL-terminated string.
enum HcrResult hcr_load(const struct HcrRuntime *runtime, const char *path);

// Unloads module `name` unless another module imports it.
//
// # Safety
//
// `runtime` is a live runtime; `name` is a NUL-terminated string.
enum HcrResult hcr_unload(const struct HcrRuntime *runtime, const char *name);

// Whether a loaded module's file changed since it was loaded. False for a
// null runtime.
//
// # Safety
//
// `runtime` is null or a live runtime.
bool hcr_reload_needed(const struct HcrRuntime *runtime);

// Reloads every module whose file changed, as one transaction, and writes
// what it did to `*summary` (if not null). On failure nothing changed: the
// old code keeps running with all its state.
//
// # Safety
//
// `runtime` is a live runtime; `summary` is null or writable.
enum HcrResult hcr_perform_reload(const struct HcrRuntime *runtime,
                                  struct HcrReloadSummary *summary);

// The number of reloads that committed. 0 for a null runtime.
//
// # Safety
//
// `runtime` is null or a live runtime.
uint64_t hcr_generation(const struct HcrRuntime *runtime);

// The stable address of proc `name` of `module`: a stub that always jumps
// to the current code, valid until the runtime is freed. Cast it to the
// function's type. A proc that is not registered yet gets a stub that is
// bound when it is; calling it before then aborts with a message. Null on
// failure.
//
// # Safety
//
// `runtime` is a live runtime; `module` and `name` are NUL-terminated
// strings.
const void *hcr_get_proc(const struct HcrRuntime *runtime, const char *module, const char *name);

// The storage of global `name` of `module`, and its size in `*size` (if
// not null). It keeps its address and value across reloads, until the
// module stops registering it. Null if there is no such global.
//
// # Safety
//
// `runtime` is a live runtime; `module` and `name` are NUL-terminated
// strings; `size` is null or writable.
void *hcr_get_global(const struct HcrRuntime *runtime,
                     const char *module,
                     const char *name,
                     size_t *size);

// Registers `handler`, called with `user` before every reload attempt
// (phase `HcrPhase_BEFORE_RELOAD`) and after it committed or rolled back
// (`HcrPhase_AFTER_RELOAD`, with the outcome), on the thread that calls
// `hcr_perform_reload`, after the modules' own handlers. Host handlers are
// not called for first loads: `HcrPhase_FIRST_LOAD` is for modules'
// handlers (`hcr_api_add_handler`), which run once after the load that
// brought their module in.
//
// # Safety
//
// `runtime` is a live runtime. `handler` must not unwind, and may be
// called with `user` from any thread that reloads until the runtime is
// freed.
enum HcrResult hcr_add_handler(const struct HcrRuntime *runtime, HcrHandler handler, void *user);

// The message of the last failure of an `hcr_*` call on this thread, or
// null if the last call succeeded. Valid until the next `hcr_*` call on
// this thread.
const char *hcr_last_error(void);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* HCR_H */
