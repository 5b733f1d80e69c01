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
// * 2: `get_services` (the [`Services`] table: the host's allocator and
//   panic reports), [`Phase::FIRST_LOAD`], and the descriptor's `flags` and
//   toolchain fingerprint.
#define HCR_ABI_MINOR 2

// How many bytes of toolchain fingerprint a [`ModuleDescriptor`] holds.
#define HCR_FINGERPRINT_CAPACITY 256

// The longest toolchain text that [`Fingerprint::new`] accepts: what is left
// of [`FINGERPRINT_CAPACITY`] after `"; hcr-abi <version>"`. `hcr-build`
// shortens longer texts (see `hcr_build::toolchain_fingerprint`).
#define HCR_TOOLCHAIN_TEXT_CAPACITY (HCR_FINGERPRINT_CAPACITY - 48)

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
// Once per module, after the load that first brought it in committed
// (not after later reloads). Since ABI 1.2; an older runtime refuses the
// registration.
#define HcrPhase_FIRST_LOAD 2

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

// Entry `alloc` of [`Services`]: like `GlobalAlloc::alloc` with the layout's
// size (never zero) and alignment; null on failure. Must not unwind.
typedef uint8_t *(*HcrAllocFn)(void *ctx, size_t size, size_t align);

// Entry `dealloc` of [`Services`]: like `GlobalAlloc::dealloc`. Must not
// unwind.
typedef void (*HcrDeallocFn)(void *ctx, uint8_t *ptr, size_t size, size_t align);

// Entry `realloc` of [`Services`]: like `GlobalAlloc::realloc` (the old
// layout is `size`, `align`); null on failure. Must not unwind.
typedef uint8_t *(*HcrReallocFn)(void *ctx, uint8_t *ptr, size_t size, size_t align, size_t new_size);

// Where a panic that a module reports was caught.
typedef uint32_t HcrPanicOrigin;
// By the guard of a reloadable Rust function: its caller receives the
// panic as a [`ProcPanic`].
#define HcrPanicOrigin_PROC 0
// By the guard of a reload hook ([`Phase`]); the hook did not finish.
#define HcrPanicOrigin_HOOK 1
// Not by hcr: the panic happened outside any reloadable function (on a
// thread the module started, for example). The module printed it.
#define HcrPanicOrigin_UNCAUGHT 2
// By the guard of a global's migration; the reload rolls back.
#define HcrPanicOrigin_MIGRATION 3
// By the module's init (a global's initial value, for example); the
// load or reload rolls back. `proc_` is `"init"`.
#define HcrPanicOrigin_INIT 4

// A panic in module code, as a module reports it to the runtime
// ([`Services::report_panic`]). All strings are valid for the call only.
typedef struct HcrPanicReport {
  // `size_of::<PanicReport>()` as the module was built.
  uint32_t size;
  // Where it was caught.
  HcrPanicOrigin origin;
  // Line of the panic, from 1; 0 when unknown.
  uint32_t line;
  // Column of the panic, from 1; 0 when unknown.
  uint32_t column;
  // The module's name.
  struct HcrStr module;
  // The proc or hook that panicked; empty for [`PanicOrigin::UNCAUGHT`].
  struct HcrStr proc_;
  // The panic message (`"Box<dyn Any>"` when the payload is not a string).
  struct HcrStr message;
  // Source file of the panic; empty when unknown.
  struct HcrStr file;
} HcrPanicReport;

// Entry `report_panic` of [`Services`]. Must not unwind.
typedef void (*HcrReportPanicFn)(void *ctx, const struct HcrPanicReport *report);

// What the runtime offers modules for as long as it lives (not only during
// init): the host's allocator, and a place to report panics.
//
// A module receives it from [`HostApi::services`] in its init, keeps the
// pointer, and calls the entries from any thread until it is unloaded. Like
// [`HostApi`], the table records its size and is only ever appended to: a
// module checks `size` before it uses an entry.
//
// The allocator entries are the host's global allocator. A module's
// [`HostAllocator`] forwards every allocation to them, so that memory can
// change hands between host and module (a `Vec` returned by a reloadable
// function, freed by the host) and outlive the module's library.
typedef struct HcrServices {
  // `size_of::<Services>()` as the runtime was built.
  uint32_t size;
  // Reserved, zero.
  uint32_t reserved;
  // Opaque context; the first argument of every entry.
  void *ctx;
  // The host's allocator: allocate.
  HcrAllocFn alloc;
  // The host's allocator: free.
  HcrDeallocFn dealloc;
  // The host's allocator: grow or shrink.
  HcrReallocFn realloc;
  // The host's allocator: allocate zeroed memory.
  HcrAllocFn alloc_zeroed;
  // Tells the runtime about a panic in module code (for its log and its
  // reload reports); the module has already dealt with the panic.
  HcrReportPanicFn report_panic;
} HcrServices;

// Entry `get_services` (ABI 1.2): the runtime's [`Services`] table, valid for
// as long as the runtime lives.
typedef const struct HcrServices *(*HcrGetServicesFn)(void *ctx);

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
  // See [`HostApi::services`]. Since ABI 1.2.
  HcrGetServicesFn get_services;
} HcrHostApi;

// The descriptor every module exports (under [`DESCRIPTOR_SYMBOL`] or
// [`DESCRIPTOR_SYMBOL_PREFIX`]`<name>`).
//
// The first 16 bytes (magic, versions, size) contain no pointers, so the
// runtime reads and checks them from the file before it opens the library;
// so are the fields from `flags` on (ABI 1.2), which follow the pointers:
// the runtime reads them from the file when `size` covers them.
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
  // A label of this build, for diagnostics (`hcr-build` writes the
  // package's name and version).
  struct HcrStr build_id;
  // Names of the modules this module imports.
  const struct HcrStr *imports;
  // Number of entries at `imports`.
  size_t import_count;
  // The init entry ([`InitFn`], written out so that C headers generated
  // from this file see a nullable function pointer); never null in a
  // valid module.
  HcrStatus (*init)(const struct HcrHostApi *api);
  // [`ModuleFlags`] bits. Since ABI 1.2.
  uint32_t flags;
  // Number of bytes used in `fingerprint`. Since ABI 1.2.
  uint32_t fingerprint_len;
  // The toolchain [`Fingerprint`] as text (not NUL-terminated); required
  // when `flags` has [`ModuleFlags::RUST_ABI`]. Since ABI 1.2.
  uint8_t fingerprint[HCR_FINGERPRINT_CAPACITY];
} HcrModuleDescriptor;

#endif  /* HCR_ABI_H */
