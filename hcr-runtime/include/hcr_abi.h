/* Generated from hcr-abi/src/lib.rs; do not edit.
 * `HCR_BLESS=1 cargo test -p hcr-runtime --test c_api` regenerates it. */

#ifndef HCR_ABI_H
#define HCR_ABI_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// Major ABI version. A runtime refuses modules whose major version differs.
#define HCR_ABI_MAJOR 1

// Minor ABI version: the number of append-only extensions to [`HostApi`].
//
// * 0: the original table.
// * 1: `register_global_migrating`.
#define HCR_ABI_MINOR 1

// A borrowed UTF-8 string: pointer and length in bytes, not NUL-terminated.
//
// Strings in descriptors point at static data of the module. Strings passed
// to [`HostApi`] entries only need to live for the duration of the call.
typedef struct HcrStr {
  // First byte; may be dangling when `len` is zero.
  const uint8_t *ptr;
  // Length in bytes.
  size_t len;
} HcrStr;

// Result code of a [`HostApi`] entry and of a module's init entry.
//
// Zero is success; everything else is a failure. The runtime keeps a precise
// description of every failure it reports, so a module only needs to pass a
// non-zero status on.
typedef int32_t HcrStatus;
// Success.
#define HcrStatus_OK 0
// A pointer was null, a string was not UTF-8, a size or alignment was
// invalid, or a name was empty or too long.
#define HcrStatus_INVALID_ARGUMENT 1
// The name was already registered by this module during this init.
#define HcrStatus_DUPLICATE 2
// A global exists with another size, alignment or layout hash.
#define HcrStatus_LAYOUT_MISMATCH 3
// A proc exists with another signature hash.
#define HcrStatus_SIGNATURE_MISMATCH 4
// The requested module or global does not exist.
#define HcrStatus_NOT_FOUND 5
// The runtime's stub table is full.
#define HcrStatus_CAPACITY_EXHAUSTED 6
// Memory for a global could not be allocated.
#define HcrStatus_OUT_OF_MEMORY 7
// The runtime's [`HostApi`] is too old to have this entry.
#define HcrStatus_UNSUPPORTED 8
// The runtime failed internally; details are in the runtime's error.
#define HcrStatus_INTERNAL 9
// The module's init failed; it should call `report_error` first.
#define HcrStatus_FAILED 10

// A proc (function) that a module registers.
typedef struct HcrProcDesc {
  // Name, unique within the module.
  struct HcrStr name;
  // The function's address in the module.
  const void *addr;
  // Hash of the function's normalised signature; `0` means "unknown".
  uint64_t signature_hash;
  // The signature as text, for error messages; may be empty.
  struct HcrStr signature;
} HcrProcDesc;

// Entry `register_proc`: register a proc of the module being initialised.
typedef HcrStatus (*HcrRegisterProcFn)(void *ctx, const struct HcrProcDesc *proc_);

// A proc that a module (or the host) wants to call: it receives its stub.
typedef struct HcrProcImport {
  // Name of the module that registers the proc.
  struct HcrStr module;
  // Name of the proc.
  struct HcrStr name;
  // Hash of the signature the caller was compiled against; `0` = unknown.
  uint64_t signature_hash;
  // That signature as text; may be empty.
  struct HcrStr signature;
} HcrProcImport;

// Entry `get_proc`: write the stub address of a proc to `out`.
typedef HcrStatus (*HcrGetProcFn)(void *ctx, const struct HcrProcImport *import, const void **out);

// A global that a module registers.
typedef struct HcrGlobalDesc {
  // Name, unique within the module.
  struct HcrStr name;
  // Size of the value in bytes.
  size_t size;
  // Alignment of the value; a power of two.
  size_t align;
  // Hash of the value's type layout; `0` means "unknown".
  uint64_t layout_hash;
  // The layout as text, for error messages; may be empty.
  struct HcrStr layout;
} HcrGlobalDesc;

// What [`HostApi::register_global`] hands back.
typedef struct HcrGlobalSlot {
  // Runtime-owned, zeroed, aligned storage of the requested size.
  void *ptr;
  // `1` when this is the first registration and the module must write the
  // initial value; `0` when the slot already holds a value to keep.
  uint32_t initialize;
} HcrGlobalSlot;

// Entry `register_global`: register a global and receive its slot.
typedef HcrStatus (*HcrRegisterGlobalFn)(void *ctx,
                                         const struct HcrGlobalDesc *global,
                                         struct HcrGlobalSlot *out);

// A global of another module that a module wants to use.
typedef struct HcrGlobalImport {
  // Name of the module that registers the global.
  struct HcrStr module;
  // Name of the global.
  struct HcrStr name;
  // Expected size in bytes.
  size_t size;
  // Expected alignment.
  size_t align;
  // Expected layout hash; `0` skips the check.
  uint64_t layout_hash;
  // Expected layout as text; may be empty.
  struct HcrStr layout;
} HcrGlobalImport;

// Entry `get_global`: write the address of another module's global to `out`.
typedef HcrStatus (*HcrGetGlobalFn)(void *ctx, const struct HcrGlobalImport *import, void **out);

// When a reload handler runs.
typedef uint32_t HcrPhase;
// Before the changed modules are loaded; the old code is still current.
#define HcrPhase_BEFORE_RELOAD 0
// After the reload committed or rolled back.
#define HcrPhase_AFTER_RELOAD 1

// How a reload ended, as seen by an after-reload handler.
typedef uint32_t HcrOutcome;
// The reload has not happened yet (before-reload handlers).
#define HcrOutcome_PENDING 0
// The new code is current.
#define HcrOutcome_COMMITTED 1
// The reload failed; the old code and all state were kept.
#define HcrOutcome_ROLLED_BACK 2

// What a reload handler is told.
typedef struct HcrReloadEvent {
  // `size_of::<ReloadEvent>()` as the runtime knows it.
  uint32_t size;
  // Which handlers are running.
  HcrPhase phase;
  // How the reload ended.
  HcrOutcome outcome;
  // Reserved, zero.
  uint32_t reserved;
  // The runtime's generation: the number of committed reloads, counting
  // this one if it committed.
  uint64_t generation;
} HcrReloadEvent;

// A reload handler: called with the `user` pointer it was registered with.
//
// Handlers must not unwind; a Rust handler catches its own panics.
typedef void (*HcrHandlerFn)(void *user, const struct HcrReloadEvent *event);

// Entry `add_handler`: register a reload handler for `phase`.
typedef HcrStatus (*HcrAddHandlerFn)(void *ctx, HcrPhase phase, HcrHandlerFn handler, void *user);

// Entry `report_error`: attach a message to the module's failure.
typedef void (*HcrReportErrorFn)(void *ctx, struct HcrStr message);

// Converts a global's value from an older layout: reads the old value at
// `old_value` (which it must leave intact) and writes the new value to
// `new_value`.
// Returns [`Status::OK`] on success. Must not unwind.
typedef HcrStatus (*HcrMigrateFn)(const void *old_value, void *new_value);

// A way to carry a global over from an older layout: used when the global
// exists with exactly this size, alignment and layout hash.
typedef struct HcrGlobalMigration {
  // Layout hash of the old value.
  uint64_t from_layout_hash;
  // Size of the old value.
  size_t from_size;
  // Alignment of the old value.
  size_t from_align;
  // The conversion.
  HcrMigrateFn migrate;
} HcrGlobalMigration;

// Entry `register_global_migrating` (ABI 1.1): like `register_global`, with
// migrations from older layouts.
typedef HcrStatus (*HcrRegisterGlobalMigratingFn)(void *ctx,
                                                  const struct HcrGlobalDesc *global,
                                                  const struct HcrGlobalMigration *migrations,
                                                  size_t migration_count,
                                                  struct HcrGlobalSlot *out);

// The table of runtime entry points handed to a module's init.
//
// Entries are only ever appended (each append bumps [`ABI_MINOR`]). Call them
// through the methods, which check [`HostApi::size`] first.
typedef struct HcrHostApi {
  // `size_of::<HostApi>()` as the runtime was built.
  uint32_t size;
  // The runtime's [`ABI_MAJOR`].
  uint16_t abi_major;
  // The runtime's [`ABI_MINOR`].
  uint16_t abi_minor;
  // Opaque context; the first argument of every entry.
  void *ctx;
  // See [`HostApi::register_proc`].
  HcrRegisterProcFn register_proc;
  // See [`HostApi::get_proc`].
  HcrGetProcFn get_proc;
  // See [`HostApi::register_global`].
  HcrRegisterGlobalFn register_global;
  // See [`HostApi::get_global`].
  HcrGetGlobalFn get_global;
  // See [`HostApi::add_handler`].
  HcrAddHandlerFn add_handler;
  // See [`HostApi::report_error`].
  HcrReportErrorFn report_error;
  // See [`HostApi::register_global_migrating`]. Since ABI 1.1.
  HcrRegisterGlobalMigratingFn register_global_migrating;
} HcrHostApi;

// The descriptor every module exports under [`DESCRIPTOR_SYMBOL`].
//
// The first 16 bytes (magic, versions, size) contain no pointers, so the
// runtime reads and checks them from the file before it opens the library.
typedef struct HcrModuleDescriptor {
  // Always [`MAGIC`].
  uint8_t magic[8];
  // The [`ABI_MAJOR`] the module was built against.
  uint16_t abi_major;
  // The [`ABI_MINOR`] the module was built against.
  uint16_t abi_minor;
  // `size_of::<ModuleDescriptor>()` as the module was built.
  uint32_t size;
  // The module's name: what other modules import it by.
  struct HcrStr name;
  // An identifier of this build, for diagnostics.
  struct HcrStr build_id;
  // Names of the modules this module imports.
  const struct HcrStr *imports;
  // Number of entries at `imports`.
  size_t import_count;
  // The init entry ([`InitFn`], written out so that C headers generated
  // from this file see a nullable function pointer); never null in a
  // valid module.
  HcrStatus (*init)(const struct HcrHostApi *api);
} HcrModuleDescriptor;

#endif  /* HCR_ABI_H */
