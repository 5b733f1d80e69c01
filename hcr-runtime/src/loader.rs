//! Getting a module from a file into the process: private copies, change
//! stamps, checks made on the file before any of its code runs, opening the
//! library and reading its descriptor.

use std::fs::File;
use std::io::{self, Write};
use std::mem::offset_of;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hcr_abi::{
    ABI_MAJOR, DESCRIPTOR_SYMBOL, DESCRIPTOR_SYMBOL_PREFIX, FINGERPRINT_CAPACITY, Fingerprint, InitFn, MAGIC,
    ModuleDescriptor, ModuleFlags, Str,
};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::{arch, elf, names, os};

/// The lock file in a private directory: held (`flock`) by the runtime that
/// owns the directory, for as long as it lives.
const LOCK_FILE: &str = ".lock";
/// Private directories are named `hcr-` and this many random letters and
/// digits.
const DIR_RANDOM: usize = 12;
/// Copies are named with this many random letters and digits, then `-` and
/// the module's file name.
const COPY_RANDOM: usize = 12;

/// What the loader accepts, from the runtime's configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// [`Config::max_module_size`](crate::Config::max_module_size).
    pub(crate) max_size: u64,
    /// [`Config::allow_writable_code`](crate::Config::allow_writable_code).
    pub(crate) allow_writable_code: bool,
}

/// The cheap part of a file's identity: what `stat` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quick {
    /// The file does not exist or cannot be examined.
    Missing,
    /// Length, modification time and inode-like identity.
    Present { len: u64, modified: Option<SystemTime>, id: u64 },
}

impl Quick {
    fn of(meta: &std::fs::Metadata) -> Quick {
        Quick::Present { len: meta.len(), modified: meta.modified().ok(), id: os::file_id(meta) }
    }

    /// Examines `path` without opening it.
    pub(crate) fn stat(path: &Path) -> Quick {
        std::fs::metadata(path).map_or(Quick::Missing, |m| Quick::of(&m))
    }
}

/// A file's quick stamp plus its identity: a hash of the linker's build id
/// when the file has one, else of its content.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    pub(crate) quick: Quick,
    pub(crate) hash: u128,
}

/// Opens a module file for reading, refusing anything but a regular file
/// before and after opening it. Nothing here can block: special files are
/// refused on their `stat`, and the open itself is non-blocking in case one
/// was put in place in between.
fn open_module(path: &Path) -> Result<(File, std::fs::Metadata)> {
    let read_err = |source| Error::ReadModule { path: path.to_owned(), source };
    let not_regular = |kind| Error::NotRegularFile { path: path.to_owned(), kind };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if let Some(kind) = os::special_kind(&meta) {
        return Err(not_regular(kind));
    }
    let file = os::open_nonblocking(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if let Some(kind) = os::special_kind(&meta) {
        return Err(not_regular(kind));
    }
    Ok((file, meta))
}

/// Stamps the module file at `path`: `stat`, then a bounded read of its
/// build id (the content is hashed only when it has none, up to `limit`
/// bytes).
pub(crate) fn stamp_file(path: &Path, limit: u64) -> Result<Stamp> {
    let (file, meta) = open_module(path)?;
    let hash = identity(&file, limit).map_err(|source| Error::ReadModule { path: path.to_owned(), source })?;
    Ok(Stamp { quick: Quick::of(&meta), hash })
}

/// What identifies a build: its build id, read from the note segments
/// (a few hundred bytes), or when there is none, its content (at most
/// `limit` + 1 bytes). The two kinds never compare equal.
fn identity(file: &File, limit: u64) -> io::Result<u128> {
    let mut hasher = Xxh3::new();
    if let Some(id) = elf::build_id_from_reader(|offset, buf| os::read_exact_at(file, buf, offset).is_ok()) {
        hasher.update(b"build id\0");
        hasher.update(&id);
        return Ok(hasher.digest128());
    }
    hasher.update(b"content\0");
    let mut buf = vec![0u8; 256 * 1024];
    let mut offset = 0u64;
    while offset <= limit {
        let want = (buf.len() as u64).min(limit + 1 - offset) as usize;
        let n = read_at(file, &mut buf[..want], offset)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hasher.digest128())
}

/// One positioned read, retried when interrupted.
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    loop {
        #[cfg(unix)]
        let read = std::os::unix::fs::FileExt::read_at(file, buf, offset);
        #[cfg(windows)]
        let read = std::os::windows::fs::FileExt::seek_read(file, buf, offset);
        match read {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// The per-process directory that holds private copies of loaded modules:
/// `hcr-` and random letters, mode 0700, holding a lock file the runtime
/// keeps locked while it lives. Removed, with whatever is left in it, on
/// drop.
pub(crate) struct PrivateDir {
    // Declared before `dir`: unlocked before the directory is removed.
    _lock: File,
    dir: tempfile::TempDir,
    limits: Limits,
}

impl PrivateDir {
    /// Removes the private directories that runtimes which are gone left
    /// under `parent`, then creates a fresh one with an unpredictable name.
    pub(crate) fn create(parent: &Path, limits: Limits) -> Result<PrivateDir> {
        let removed = remove_abandoned(parent);
        if removed > 0 {
            tracing::info!(count = removed, parent = %parent.display(), "removed private module directories of processes that are gone");
        }
        let dir_err = |path: &Path| {
            let path = path.to_owned();
            move |source| Error::PrivateDir { path, source }
        };
        let dir = private_dir_builder().tempdir_in(parent).map_err(dir_err(parent))?;
        os::make_private(dir.path()).map_err(dir_err(dir.path()))?;
        // The lock file appears under its final name only once it is
        // locked, so that another runtime sweeping `parent` never sees it
        // unlocked while this one lives.
        let staging = dir.path().join(".lock-new");
        let lock = os::create_exclusive(&staging).map_err(dir_err(&staging))?;
        lock.try_lock().map_err(io::Error::from).map_err(dir_err(&staging))?;
        std::fs::rename(&staging, dir.path().join(LOCK_FILE)).map_err(dir_err(&staging))?;
        Ok(PrivateDir { _lock: lock, dir, limits })
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The size limit for module files.
    pub(crate) fn max_size(&self) -> u64 {
        self.limits.max_size
    }

    /// Copies `source` under a fresh, unpredictable name. Refuses anything
    /// but a regular file, and files larger than the size limit (checked
    /// before, and enforced during, the copy). Holes in `source` stay holes.
    pub(crate) fn copy_in(&mut self, source: &Path) -> Result<PrivateCopy> {
        self.copy_in_with(source, COPY_RANDOM)
    }

    /// [`PrivateDir::copy_in`] with `random` random characters in the name.
    fn copy_in_with(&mut self, source: &Path, random: usize) -> Result<PrivateCopy> {
        let limit = self.limits.max_size;
        let (input, meta) = open_module(source)?;
        if meta.len() > limit {
            return Err(Error::ModuleTooLarge { path: source.to_owned(), size: meta.len(), limit });
        }
        let quick = Quick::of(&meta);
        let file_name = source.file_name().map_or_else(|| "module".into(), |n| n.to_string_lossy().into_owned());
        let suffix = format!("-{file_name}");
        let dir = self.dir.path();
        let copy_err = |copy: &Path| {
            let (path, copy) = (source.to_owned(), copy.to_owned());
            move |e| Error::CopyModule { path, copy, source: e }
        };
        // A name that exists (planted, or a collision) is skipped: the
        // builder tries another one.
        let named = tempfile::Builder::new()
            .prefix("")
            .rand_bytes(random)
            .suffix(&suffix)
            .make_in(dir, os::create_exclusive)
            .map_err(copy_err(dir))?;
        let (output, path) = named.keep().map_err(|e| copy_err(dir)(e.error))?;
        // From here on the copy is ours: it is deleted on any failure.
        let mut copy = PrivateCopy { path, stamp: Stamp { quick, hash: 0 }, limits: self.limits };
        match os::copy_bounded(&input, &output, limit) {
            Ok(Some(_)) => {}
            Ok(None) => {
                return Err(Error::ModuleTooLarge { path: source.to_owned(), size: limit + 1, limit });
            }
            Err(e) => return Err(copy_err(&copy.path)(e)),
        }
        drop(output);
        let written = File::open(&copy.path).map_err(copy_err(&copy.path))?;
        copy.stamp.hash = identity(&written, limit).map_err(copy_err(&copy.path))?;
        Ok(copy)
    }
}

fn private_dir_builder() -> tempfile::Builder<'static, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix("hcr-").rand_bytes(DIR_RANDOM);
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    builder
}

/// Whether `name` is a private directory's: `hcr-` and [`DIR_RANDOM`]
/// ASCII letters or digits.
fn is_private_dir_name(name: &str) -> bool {
    name.strip_prefix("hcr-")
        .is_some_and(|rest| rest.len() == DIR_RANDOM && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Removes the private directories under `parent` whose runtime is gone:
/// only names of the private-directory pattern, only directories (never
/// through a symbolic link) owned by this user with mode 0700, and only when
/// their lock file is not held. Returns how many were removed.
fn remove_abandoned(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_str().is_some_and(is_private_dir_name) {
            continue;
        }
        let path = entry.path();
        match os::claim_abandoned_dir(&path, LOCK_FILE) {
            Ok(Some(_lock)) => {
                // `remove_dir_all` never follows symbolic links inside the
                // directory.
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => removed += 1,
                    Err(e) => {
                        tracing::debug!(path = %path.display(), error = %e, "cannot remove an abandoned private directory")
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::debug!(path = %path.display(), error = %e, "cannot examine a private directory"),
        }
    }
    removed
}

/// A private copy of a module file; deleted on drop.
pub(crate) struct PrivateCopy {
    path: PathBuf,
    pub(crate) stamp: Stamp,
    limits: Limits,
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::debug!(path = %self.path.display(), error = %e, "could not remove a private module copy");
        }
    }
}

/// Appends `line` to the reload report file. The file is opened without
/// blocking and must be a regular file; anything else is skipped with a
/// warning.
pub(crate) fn append_report(path: &Path, line: &str) {
    let written = os::open_append_nonblocking(path).and_then(|mut file| {
        let meta = file.metadata()?;
        if let Some(kind) = os::special_kind(&meta) {
            return Err(io::Error::other(format!("it is a {kind}, not a regular file")));
        }
        file.write_all(format!("{line}\n").as_bytes())
    });
    if let Err(e) = written {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the reload report");
    }
}

/// What the system loader will map, as validated (ELF systems only), with
/// the chosen descriptor's address in it.
type Layout = Option<(elf::Image, u64)>;

/// What [`inspect`] found in the file.
#[derive(Debug)]
struct Inspected {
    /// The descriptor's exported name (see [`choose_descriptor`]).
    symbol: String,
    /// The bytes of the descriptor's header `size` (checked to cover at
    /// least the fields every ABI version has).
    size: usize,
    layout: Layout,
}

/// The memory a loaded library occupies, from its validated layout: the
/// pointers in its descriptor must point there (a damaged file could
/// otherwise make the runtime read anywhere). Without a layout (systems
/// whose libraries are not ELF), nothing is checked.
struct Bounds {
    image: Option<(elf::Image, u64)>,
}

impl Bounds {
    /// `descriptor` is where the loader put the descriptor symbol.
    fn new(layout: Layout, descriptor: *const ModuleDescriptor) -> Bounds {
        let image = layout.map(|(image, vaddr)| (image, (descriptor as u64).wrapping_sub(vaddr)));
        Bounds { image }
    }

    /// Whether `len` bytes at `ptr` lie in one segment with `flags`.
    fn holds(&self, ptr: *const u8, len: usize, flags: u32) -> bool {
        match &self.image {
            None => true,
            Some((image, base)) => image.contains((ptr as u64).wrapping_sub(*base), len as u64, flags),
        }
    }

    /// Copies a string out of the library's readable memory.
    fn string(&self, s: Str, max: usize, what: &str) -> std::result::Result<String, String> {
        if s.len > 0 && s.len <= max && !self.holds(s.ptr, s.len, elf::PF_R) {
            return Err(format!("its {what} points outside the library"));
        }
        read_str(s, max, what)
    }
}

/// Checks a private copy before anything in it runs, as the system loader
/// will read it (see [`crate::elf`]): an ELF shared library for this
/// machine whose every structure the loader trusts is sound, that creates
/// no writable and executable memory, and that exports a descriptor (chosen
/// by [`choose_descriptor`]) that passes [`check_descriptor_bytes`] as read
/// from the file.
#[cfg(all(unix, not(target_vendor = "apple")))]
fn inspect(copy: &PrivateCopy, source: &Path) -> Result<Inspected> {
    let data = map_copy(copy, source)?;
    let policy =
        elf::Policy { allow_writable_code: copy.limits.allow_writable_code, page_size: os::page_size() as u64 };
    let image = elf::validate(
        &data,
        arch::ELF_MACHINE,
        policy,
        DESCRIPTOR_SYMBOL,
        size_of::<ModuleDescriptor>() as u64,
    )
    .map_err(|problem| match problem {
        elf::Problem::NotElf(reason) => Error::NotLoadable { path: source.to_owned(), reason, source: None },
        elf::Problem::WrongMachine(found) => Error::WrongArchitecture {
            path: source.to_owned(),
            found: elf::machine_name(found),
            expected: arch::NAME,
        },
        elf::Problem::Malformed(reason) => Error::NotLoadable {
            path: source.to_owned(),
            reason: format!("{reason} (the file is damaged or not a library of this system: rebuild it)"),
            source: None,
        },
        elf::Problem::WritableCode(reason) => Error::WritableCode { path: source.to_owned(), reason },
        elf::Problem::RunsCodeWhileLoading(what) => Error::NotLoadable {
            path: source.to_owned(),
            reason: format!(
                "{what} would run while the system loader holds its lock, before any check of the module: build it without ifuncs"
            ),
            source: None,
        },
    })?;
    let names: Vec<&str> = image.descriptors.iter().map(|d| d.symbol.as_str()).collect();
    let symbol = choose_descriptor(&names, &file_stem(source))
        .map_err(|reason| Error::NotAModule { path: source.to_owned(), reason })?
        .to_owned();
    let site = image.descriptors.iter().find(|d| d.symbol == symbol).expect("a chosen export");
    let size = check_descriptor_bytes(&symbol, &site.bytes, site.size, source)?;
    let vaddr = site.vaddr;
    Ok(Inspected { symbol, size, layout: Some((image, vaddr)) })
}

/// Maps a private copy for reading.
fn map_copy(copy: &PrivateCopy, source: &Path) -> Result<memmap2::Mmap> {
    let read_err = |e| Error::ReadModule { path: copy.path.clone(), source: e };
    let file = File::open(&copy.path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len == 0 {
        return Err(Error::NotLoadable { path: source.to_owned(), reason: "the file is empty".into(), source: None });
    }
    // SAFETY: the copy lives in the runtime's private directory (mode 0700),
    // was written completely before this call and is never written again, so
    // the mapping cannot change or shrink underneath us.
    unsafe { memmap2::Mmap::map(&file) }.map_err(read_err)
}

/// Checks a private copy before anything in it runs, on systems whose
/// libraries are not ELF (untested): a dynamic library for this
/// architecture that exports a descriptor whose header carries the magic and
/// this runtime's major ABI version.
#[cfg(not(all(unix, not(target_vendor = "apple"))))]
fn inspect(copy: &PrivateCopy, source: &Path) -> Result<Inspected> {
    use object::{Object, ObjectSection};
    let data = map_copy(copy, source)?;
    let not_loadable = |reason: String, err: Option<crate::error::BoxError>| Error::NotLoadable {
        path: source.to_owned(),
        reason,
        source: err,
    };
    let obj = object::File::parse(&*data)
        .map_err(|e| not_loadable("it is not an object file the runtime can read".into(), Some(Box::new(e))))?;
    if obj.architecture() != arch::FILE_ARCHITECTURE {
        return Err(Error::WrongArchitecture {
            path: source.to_owned(),
            found: format!("{:?}", obj.architecture()),
            expected: arch::NAME,
        });
    }
    if obj.kind() != object::ObjectKind::Dynamic {
        return Err(not_loadable(format!("it is a {:?} file, not a dynamic library", obj.kind()), None));
    }
    let corrupt = |e: object::Error| not_loadable("its export table is corrupt".into(), Some(Box::new(e)));
    let mut exports: Vec<(String, u64)> = Vec::new();
    for item in obj.exports().map_err(corrupt)? {
        let item = item.map_err(corrupt)?;
        let object::NameOrOrdinal::Name(name) = item.name() else { continue };
        // Mach-O prefixes C symbol names with an underscore.
        let name = name.strip_prefix(b"_").filter(|n| n.starts_with(DESCRIPTOR_SYMBOL.as_bytes())).unwrap_or(name);
        if !name.starts_with(DESCRIPTOR_SYMBOL.as_bytes()) {
            continue;
        }
        if let (Ok(name), object::ExportTarget::Address { address }) = (std::str::from_utf8(name), item.target()) {
            exports.push((name.to_owned(), address));
        }
    }
    let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
    let symbol = choose_descriptor(&names, &file_stem(source))
        .map_err(|reason| Error::NotAModule { path: source.to_owned(), reason })?
        .to_owned();
    let address = exports.iter().find(|(n, _)| *n == symbol).map(|(_, a)| *a).expect("a chosen export");
    let read = |len: u64| obj.sections().find_map(|s| s.data_range(address, len).ok().flatten());
    let bytes = match read(16) {
        None => &[][..],
        Some(header) => {
            let declared = u64::from(header_size(header.try_into().expect("16 bytes")));
            read(declared.clamp(16, size_of::<ModuleDescriptor>() as u64)).unwrap_or(header)
        }
    };
    let size = check_descriptor_bytes(&symbol, bytes, 0, source)?;
    Ok(Inspected { symbol, size, layout: None })
}

/// Checks a descriptor as read from the file: `bytes` are its header and as
/// many of the bytes it declares as the runtime knows, `symbol_size` the
/// size of its symbol (`0` if unknown). The header must carry the magic and
/// this runtime's major ABI version and declare at least the fields every
/// ABI version has (1.0 and 1.1 end before `flags`); the file must hold
/// them; a module with Rust-ABI procs must carry the runtime's toolchain
/// fingerprint ([`check_toolchain`]). Returns the declared size.
fn check_descriptor_bytes(symbol: &str, bytes: &[u8], symbol_size: u64, source: &Path) -> Result<usize> {
    let not_a_module = |reason: String| Error::NotAModule { path: source.to_owned(), reason };
    let Some(header) = bytes.get(..16) else {
        return Err(not_a_module(format!("`{symbol}` does not point at data in the file")));
    };
    let header: &[u8; 16] = header.try_into().expect("16 bytes");
    check_header(header, symbol, source)?;
    let declared = header_size(header) as usize;
    if declared < MIN_DESCRIPTOR_SIZE {
        return Err(not_a_module(format!("`{symbol}` is {declared} bytes, too small for a descriptor")));
    }
    if symbol_size != 0 && symbol_size < declared as u64 {
        return Err(not_a_module(format!(
            "`{symbol}` is {symbol_size} bytes, but its header declares {declared}: the file is damaged, rebuild it"
        )));
    }
    let known = declared.min(size_of::<ModuleDescriptor>());
    let Some(descriptor) = bytes.get(..known) else {
        return Err(not_a_module(format!("`{symbol}` ({declared} bytes) runs past the data in the file")));
    };
    check_toolchain(descriptor, source)?;
    Ok(declared)
}

/// The stem of a module file's name: `game` for `libgame.so`, `game.dll`
/// or `libgame.dylib`.
fn file_stem(path: &Path) -> String {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = name.strip_prefix(std::env::consts::DLL_PREFIX).unwrap_or(&name);
    name.strip_suffix(std::env::consts::DLL_SUFFIX).unwrap_or(name).to_owned()
}

/// Which of a library's exports named `HCR_MODULE_DESCRIPTOR*` is the
/// descriptor of the module in file `lib<stem>.so`:
///
/// 1. `HCR_MODULE_DESCRIPTOR_<stem>`;
/// 2. else the only `HCR_MODULE_DESCRIPTOR_*`, if there is exactly one (a
///    renamed file);
/// 3. else `HCR_MODULE_DESCRIPTOR` (modules written in C);
/// 4. else none: the file is not a module (the candidates are listed).
///
/// A library built from a module crate that links other module crates
/// exports their descriptors too; rule 1 picks its own.
pub(crate) fn choose_descriptor<'a>(exports: &[&'a str], stem: &str) -> std::result::Result<&'a str, String> {
    let own = format!("{DESCRIPTOR_SYMBOL_PREFIX}{stem}");
    if let Some(found) = exports.iter().find(|e| **e == own) {
        return Ok(found);
    }
    let mut suffixed: Vec<&'a str> = exports
        .iter()
        .copied()
        .filter(|e| e.strip_prefix(DESCRIPTOR_SYMBOL_PREFIX).is_some_and(|s| !s.is_empty()))
        .collect();
    suffixed.sort_unstable();
    suffixed.dedup();
    if let [only] = suffixed[..] {
        return Ok(only);
    }
    if let Some(found) = exports.iter().find(|e| **e == DESCRIPTOR_SYMBOL) {
        return Ok(found);
    }
    if suffixed.is_empty() {
        Err(format!("it exports neither `{own}` nor `{DESCRIPTOR_SYMBOL}`"))
    } else {
        Err(format!(
            "it exports several module descriptors ({}) and none named after the file (`{own}`); load the file under its module's name",
            suffixed.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")
        ))
    }
}

/// The fingerprint of the toolchain this runtime (and its host) was built
/// with, as modules store theirs.
const RUNTIME_FINGERPRINT: Fingerprint = Fingerprint::new(env!("HCR_TOOLCHAIN_FINGERPRINT"));

/// Refuses a module with Rust-ABI procs whose toolchain fingerprint (read
/// from the descriptor's bytes in the file: `flags` and the fingerprint are
/// pointer-free) is missing, corrupt, or not the runtime's own.
fn check_toolchain(descriptor: &[u8], source: &Path) -> Result<()> {
    let field = |offset: usize| -> Option<u32> {
        descriptor.get(offset..offset + 4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes")))
    };
    let Some(flags) = field(offset_of!(ModuleDescriptor, flags)) else {
        // An ABI 1.0 or 1.1 descriptor: no Rust-ABI procs.
        return Ok(());
    };
    if !ModuleFlags(flags).contains(ModuleFlags::RUST_ABI) {
        return Ok(());
    }
    let expected = RUNTIME_FINGERPRINT.as_str().to_owned();
    let start = offset_of!(ModuleDescriptor, fingerprint);
    let len = field(offset_of!(ModuleDescriptor, fingerprint_len)).unwrap_or(0) as usize;
    let found = match descriptor.get(start..start + len) {
        _ if len == 0 => Err("no fingerprint".to_owned()),
        Some(bytes) if len <= FINGERPRINT_CAPACITY => Ok(bytes),
        _ => Err(format!("a corrupt fingerprint ({len} bytes, at most {FINGERPRINT_CAPACITY})")),
    };
    match found {
        Ok(bytes) if bytes == RUNTIME_FINGERPRINT.as_bytes() => Ok(()),
        Ok(bytes) => Err(Error::ToolchainMismatch {
            path: source.to_owned(),
            found: String::from_utf8_lossy(bytes).into_owned(),
            expected,
        }),
        Err(found) => Err(Error::ToolchainMismatch { path: source.to_owned(), found: format!("<{found}>"), expected }),
    }
}

/// Checks the first 16 bytes of a descriptor: magic, major version.
fn check_header(header: &[u8; 16], symbol: &str, source: &Path) -> Result<()> {
    if header[..8] != MAGIC {
        return Err(Error::NotAModule {
            path: source.to_owned(),
            reason: format!("`{symbol}` does not start with the hcr magic"),
        });
    }
    let major = u16::from_ne_bytes([header[8], header[9]]);
    let minor = u16::from_ne_bytes([header[10], header[11]]);
    if major != ABI_MAJOR {
        return Err(Error::AbiMismatch { path: source.to_owned(), found_major: major, found_minor: minor });
    }
    Ok(())
}

/// What a module's descriptor says, copied out of the library.
#[derive(Debug)]
pub(crate) struct Descriptor {
    pub(crate) name: String,
    pub(crate) build_id: String,
    pub(crate) abi_minor: u16,
    pub(crate) imports: Vec<String>,
    pub(crate) init: InitFn,
}

/// An open module library and the private copy it was loaded from. Dropping
/// it closes the library, then deletes the copy.
pub(crate) struct ModuleLibrary {
    library: Option<libloading::Library>,
    _copy: PrivateCopy,
}

impl std::fmt::Debug for ModuleLibrary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleLibrary").field("path", &self._copy.path).finish()
    }
}

impl ModuleLibrary {
    /// The private copy the library was loaded from.
    pub(crate) fn path(&self) -> &Path {
        &self._copy.path
    }

    /// Checks the copy, opens it and reads its descriptor. `source` is the
    /// file the user knows, used in errors.
    pub(crate) fn open(copy: PrivateCopy, source: &Path) -> Result<(ModuleLibrary, Descriptor)> {
        let inspected = inspect(&copy, source)?;
        let library = os::open_library(&copy.path).map_err(|e| Error::NotLoadable {
            path: source.to_owned(),
            reason: "the system loader refused it".into(),
            source: Some(Box::new(e)),
        })?;
        let module = ModuleLibrary { library: Some(library), _copy: copy };
        let descriptor = module.read_descriptor(inspected, source)?;
        Ok((module, descriptor))
    }

    /// Reads the descriptor `inspect` chose in the file.
    fn read_descriptor(&self, inspected: Inspected, source: &Path) -> Result<Descriptor> {
        let Inspected { symbol, size, layout } = inspected;
        let library = self.library.as_ref().expect("open library");
        let not_a_module = |reason: String| Error::NotAModule { path: source.to_owned(), reason };
        let mut symbol_nul = symbol.as_bytes().to_vec();
        symbol_nul.push(0);
        // SAFETY: we only take the symbol's address; nothing is called.
        let found = unsafe { library.get::<*const ModuleDescriptor>(symbol_nul.as_slice()) }
            .map_err(|e| not_a_module(format!("`{symbol}` cannot be resolved: {e}")))?;
        let ptr: *const ModuleDescriptor = *found;
        if ptr.is_null() || !ptr.cast::<u64>().is_aligned() {
            return Err(not_a_module(format!("`{symbol}` is null or misaligned")));
        }
        let bounds = Bounds::new(layout, ptr);
        if !bounds.holds(ptr.cast(), size.min(size_of::<ModuleDescriptor>()), elf::PF_R) {
            return Err(not_a_module(format!("`{symbol}` does not lie inside the library")));
        }
        // SAFETY: the file exports this symbol with the hcr magic and our
        // major ABI version in its 16-byte header (checked by `inspect`),
        // which the module defines as the start of a `ModuleDescriptor`; the
        // `size` bytes it declares lie in the library's readable memory
        // (checked just above).
        let header = unsafe { ptr.cast::<[u8; 16]>().read() };
        check_header(&header, &symbol, source)?;
        if header_size(&header) as usize != size {
            return Err(not_a_module(format!("`{symbol}` changed between the file and memory")));
        }
        // SAFETY: as above: the declared `size` bytes are readable, and the
        // descriptor contract makes its fields up to `size` valid.
        let d = unsafe { copy_descriptor(ptr) }
            .ok_or_else(|| not_a_module(format!("its descriptor is {size} bytes, too small")))?;
        let name = module_name(&bounds, d.name, "module name").map_err(&not_a_module)?;
        if let Some(suffix) = symbol.strip_prefix(DESCRIPTOR_SYMBOL_PREFIX)
            && suffix != name
        {
            return Err(not_a_module(format!(
                "it exports its descriptor as `{symbol}`, but the descriptor names module `{name}`: rebuild it"
            )));
        }
        let build_id = bounds.string(d.build_id, 4096, "build id").map_err(&not_a_module)?;
        let imports_len = d.import_count.saturating_mul(size_of::<Str>());
        let imports_ok =
            d.import_count == 0 || (!d.imports.is_null() && bounds.holds(d.imports.cast(), imports_len, elf::PF_R));
        if d.import_count > 4096 || !imports_ok {
            return Err(not_a_module(format!("its import list is invalid ({} entries)", d.import_count)));
        }
        let imports = (0..d.import_count)
            .map(|i| {
                // SAFETY: `imports` points at `import_count` `Str`s in the
                // module's static data (descriptor contract; null checked,
                // and inside the library's readable memory).
                let s = unsafe { d.imports.add(i).read() };
                module_name(&bounds, s, "import name")
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(&not_a_module)?;
        let init = d.init.ok_or_else(|| not_a_module("its init entry is null".into()))?;
        if !bounds.holds(init as *const u8, 1, elf::PF_X) {
            return Err(not_a_module("its init entry is not code of the library".into()));
        }
        Ok(Descriptor { name, build_id, abi_minor: d.abi_minor, imports, init })
    }

    /// Closes the library now, reporting a failure of the system loader.
    pub(crate) fn close(mut self) {
        if let Some(library) = self.library.take()
            && let Err(e) = library.close()
        {
            tracing::warn!(error = %e, "closing a module library failed");
        }
    }
}

/// The `size` field of a descriptor's header.
fn header_size(header: &[u8; 16]) -> u32 {
    u32::from_ne_bytes([header[12], header[13], header[14], header[15]])
}

/// The smallest descriptor accepted: ABI 1.0 and 1.1 end before `flags`.
const MIN_DESCRIPTOR_SIZE: usize = offset_of!(ModuleDescriptor, flags);

/// Copies a module's descriptor, reading only the `size` bytes the module
/// declares (a module built for ABI 1.0 or 1.1 has no `flags` and no
/// fingerprint: those read as zero). `None` when `size` is too small to
/// hold the fields every version has.
///
/// # Safety
///
/// `ptr` must point at a descriptor whose first `size` bytes (as its header
/// says) are readable, and whose fields up to `flags` are valid.
unsafe fn copy_descriptor(ptr: *const ModuleDescriptor) -> Option<ModuleDescriptor> {
    // SAFETY: the 16-byte header is readable (caller).
    let size = header_size(&unsafe { ptr.cast::<[u8; 16]>().read() }) as usize;
    if size < MIN_DESCRIPTOR_SIZE {
        return None;
    }
    // SAFETY: every field of a descriptor is valid when all zero (null
    // pointers, `None`, empty strings, zero counts).
    let mut d: ModuleDescriptor = unsafe { std::mem::zeroed() };
    // SAFETY: the module's first `size` bytes are readable (caller), at
    // most `size_of::<ModuleDescriptor>()` of them are copied into `d`, and
    // they include every pointer field whole (`size` reaches `flags`), each
    // a valid value by the descriptor contract.
    unsafe {
        std::ptr::copy_nonoverlapping(
            ptr.cast::<u8>(),
            std::ptr::from_mut(&mut d).cast::<u8>(),
            size.min(size_of::<ModuleDescriptor>()),
        )
    };
    Some(d)
}

/// Copies a string out of module memory, validating it.
pub(crate) fn read_str(s: Str, max: usize, what: &str) -> std::result::Result<String, String> {
    if s.len > max {
        return Err(format!("its {what} is {} bytes long (at most {max})", s.len));
    }
    if s.len > 0 && s.ptr.is_null() {
        return Err(format!("its {what} is a null pointer"));
    }
    // SAFETY: module contract: `ptr` points at `len` bytes valid for the call.
    let bytes = unsafe { s.as_bytes() };
    std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| format!("its {what} is not UTF-8"))
}

/// A module name from module memory (see [`names::check_module_name`]).
fn module_name(bounds: &Bounds, s: Str, what: &str) -> std::result::Result<String, String> {
    let name = bounds.string(s, names::MAX_MODULE_NAME, what)?;
    names::check_module_name(&name, what)?;
    Ok(name)
}

/// The file name a module is built to: `lib<name>.so`, `lib<name>.dylib` or
/// `<name>.dll`.
pub(crate) fn library_file_name(module: &str) -> String {
    format!("{}{module}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_size: 1 << 20, allow_writable_code: false };

    fn scratch() -> tempfile::TempDir {
        tempfile::Builder::new().prefix("loader-test-").tempdir().unwrap()
    }

    #[test]
    fn private_directory_is_0700_locked_and_removed_on_drop() {
        let parent = scratch();
        let dir = PrivateDir::create(parent.path(), LIMITS).unwrap();
        let path = dir.path().to_owned();
        assert!(is_private_dir_name(path.file_name().unwrap().to_str().unwrap()), "{}", path.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
            // Alive: its lock is held, so nobody may claim it.
            assert!(os::claim_abandoned_dir(&path, LOCK_FILE).unwrap().is_none());
        }
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn private_directory_names_follow_one_pattern() {
        assert!(is_private_dir_name("hcr-aB3dE6gH9jK1"));
        for other in
            ["hcr-aB3dE6gH9jK", "hcr-aB3dE6gH9jK12", "hcr-aB3dE6gH9-K1", "hcr-1234-00ab00ab00ab", "xhcr-aB3dE6gH9jK1"]
        {
            assert!(!is_private_dir_name(other), "{other}");
        }
    }

    /// A directory that looks like a private one, with an unlocked lock file.
    #[cfg(unix)]
    fn plant_abandoned(parent: &Path, name: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = parent.join(name);
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join(LOCK_FILE), b"").unwrap();
        std::fs::write(dir.join("AAAAAAAAAAAA-libm.so"), b"old copy").unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[cfg(unix)]
    #[test]
    fn only_abandoned_private_directories_are_removed() {
        let parent = scratch();
        let parent = parent.path();
        let live = PrivateDir::create(parent, LIMITS).unwrap();
        let abandoned = plant_abandoned(parent, "hcr-abandoned001", 0o700);
        let other_name = plant_abandoned(parent, "hcr-abandoned", 0o700);
        let other_mode = plant_abandoned(parent, "hcr-abandoned002", 0o755);
        let no_lock = plant_abandoned(parent, "hcr-abandoned003", 0o700);
        std::fs::remove_file(no_lock.join(LOCK_FILE)).unwrap();
        // A link with the pattern's name to an abandoned-looking directory
        // elsewhere: neither it nor its target is touched.
        let elsewhere = scratch();
        let target = plant_abandoned(elsewhere.path(), "hcr-abandoned004", 0o700);
        let link = parent.join("hcr-abandoned005");
        std::os::unix::fs::symlink(&target, &link).unwrap();

        let next = PrivateDir::create(parent, LIMITS).unwrap();
        assert!(!abandoned.exists(), "the abandoned directory is removed");
        for kept in [live.path(), &other_name, &other_mode, &no_lock, &link, &target.join(LOCK_FILE)] {
            assert!(kept.exists(), "{} is kept", kept.display());
        }
        drop((live, next));
    }

    #[test]
    fn copies_are_stamped_unique_and_deleted_on_drop() {
        let parent = scratch();
        let mut dir = PrivateDir::create(parent.path(), LIMITS).unwrap();
        let src = parent.path().join("libm.so");
        std::fs::write(&src, b"some bytes").unwrap();
        let a = dir.copy_in(&src).unwrap();
        let b = dir.copy_in(&src).unwrap();
        assert_ne!(a.path, b.path);
        assert!(a.path.file_name().unwrap().to_str().unwrap().ends_with("-libm.so"));
        assert_eq!(a.stamp.hash, b.stamp.hash);
        assert_eq!(a.stamp.hash, stamp_file(&src, LIMITS.max_size).unwrap().hash);
        assert_eq!(std::fs::read(&a.path).unwrap(), b"some bytes");
        let path = a.path.clone();
        drop(a);
        assert!(!path.exists());
        std::fs::write(&src, b"other bytes").unwrap();
        assert_ne!(dir.copy_in(&src).unwrap().stamp.hash, b.stamp.hash);
    }

    #[cfg(unix)]
    #[test]
    fn planted_names_are_skipped() {
        // With one random character there are 62 possible names: plant 60
        // of them, as files and as links to a victim.
        let parent = scratch();
        let mut dir = PrivateDir::create(parent.path(), LIMITS).unwrap();
        let victim = parent.path().join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').collect();
        let (planted, free) = alphabet.split_at(60);
        for (i, c) in planted.iter().enumerate() {
            let name = dir.path().join(format!("{c}-libm.so"));
            if i % 2 == 0 {
                std::os::unix::fs::symlink(&victim, &name).unwrap();
            } else {
                std::fs::write(&name, b"planted").unwrap();
            }
        }
        let src = parent.path().join("libm.so");
        std::fs::write(&src, b"payload").unwrap();
        let copy = dir.copy_in_with(&src, 1).unwrap();
        let name = copy.path.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(free.iter().any(|c| name == format!("{c}-libm.so")), "{name}");
        assert_eq!(std::fs::read(&copy.path).unwrap(), b"payload");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
    }

    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_without_blocking() {
        let parent = scratch();
        let mut dir = PrivateDir::create(parent.path(), LIMITS).unwrap();
        let fifo = parent.path().join("libfifo.so");
        let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let link = parent.path().join("libnull.so");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let cases = [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/null"), "character device"),
            (&link, "character device"),
            (parent.path(), "directory"),
        ];
        for (path, expected) in cases {
            for err in [dir.copy_in(path).err().unwrap(), stamp_file(path, LIMITS.max_size).unwrap_err()] {
                match err {
                    Error::NotRegularFile { kind, .. } => assert_eq!(kind, expected, "{}", path.display()),
                    other => panic!("{}: {other}", path.display()),
                }
            }
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "only the lock file");
    }

    #[test]
    fn files_over_the_size_limit_are_refused() {
        let parent = scratch();
        let mut dir = PrivateDir::create(parent.path(), Limits { max_size: 4096, ..LIMITS }).unwrap();
        let src = parent.path().join("libbig.so");
        std::fs::write(&src, vec![1u8; 4097]).unwrap();
        match dir.copy_in(&src).err().unwrap() {
            Error::ModuleTooLarge { size, limit, .. } => assert_eq!((size, limit), (4097, 4096)),
            other => panic!("{other}"),
        }
        std::fs::write(&src, vec![1u8; 4096]).unwrap();
        assert_eq!(std::fs::read(dir.copy_in(&src).unwrap().path.clone()).unwrap().len(), 4096);
    }

    #[test]
    fn the_copy_stops_at_the_limit_even_when_the_file_grew() {
        // `copy_bounded` reads to the end of the file, not to the size the
        // caller saw: a file that grew past the limit is caught.
        let parent = scratch();
        let src = parent.path().join("grown");
        std::fs::write(&src, vec![7u8; 10_000]).unwrap();
        let input = File::open(&src).unwrap();
        let out_path = parent.path().join("out");
        let output = File::create(&out_path).unwrap();
        assert_eq!(os::copy_bounded(&input, &output, 9_999).unwrap(), None);
        assert!(std::fs::metadata(&out_path).unwrap().len() <= 10_000);
        let output = File::create(&out_path).unwrap();
        assert_eq!(os::copy_bounded(&input, &output, 10_000).unwrap(), Some(10_000));
        assert_eq!(std::fs::read(&out_path).unwrap(), vec![7u8; 10_000]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn holes_stay_holes() {
        use std::os::unix::fs::{FileExt, MetadataExt};
        let parent = scratch();
        let src = parent.path().join("sparse");
        let file = File::create(&src).unwrap();
        file.set_len(256 << 20).unwrap();
        file.write_all_at(b"head", 0).unwrap();
        file.write_all_at(b"middle", 100 << 20).unwrap();
        drop(file);
        if std::fs::metadata(&src).unwrap().blocks() * 512 > 1 << 20 {
            return; // this file system does not keep holes
        }
        let input = File::open(&src).unwrap();
        let out_path = parent.path().join("copy");
        let output = File::create(&out_path).unwrap();
        assert_eq!(os::copy_bounded(&input, &output, 1 << 30).unwrap(), Some(256 << 20));
        let copy = std::fs::metadata(&out_path).unwrap();
        assert_eq!(copy.len(), 256 << 20);
        assert!(copy.blocks() * 512 < 8 << 20, "{} bytes allocated", copy.blocks() * 512);
        let copied = File::open(&out_path).unwrap();
        let mut buf = [0u8; 6];
        copied.read_exact_at(&mut buf, 100 << 20).unwrap();
        assert_eq!(&buf, b"middle");
        copied.read_exact_at(&mut buf[..4], 0).unwrap();
        assert_eq!(&buf[..4], b"head");
    }

    #[test]
    fn the_descriptor_is_the_one_named_after_the_file_then_the_only_one_then_the_c_one() {
        let c = DESCRIPTOR_SYMBOL;
        let game = "HCR_MODULE_DESCRIPTOR_game";
        let physics = "HCR_MODULE_DESCRIPTOR_physics";
        // A module library that links another module crate exports both.
        assert_eq!(choose_descriptor(&[physics, game], "game"), Ok(game));
        assert_eq!(choose_descriptor(&[physics, game, c], "physics"), Ok(physics));
        // A renamed file with one descriptor.
        assert_eq!(choose_descriptor(&[game], "game-copy"), Ok(game));
        assert_eq!(choose_descriptor(&[game, c], "other"), Ok(game));
        // A module written in C.
        assert_eq!(choose_descriptor(&[c], "counter"), Ok(c));
        assert_eq!(choose_descriptor(&[physics, game, c], "other"), Ok(c));
        // Several and none named after the file: they are listed.
        let err = choose_descriptor(&[physics, game], "other").unwrap_err();
        assert!(err.contains("`HCR_MODULE_DESCRIPTOR_game`, `HCR_MODULE_DESCRIPTOR_physics`"), "{err}");
        assert!(err.contains("`HCR_MODULE_DESCRIPTOR_other`"), "{err}");
        let err = choose_descriptor(&[], "m").unwrap_err();
        assert_eq!(err, "it exports neither `HCR_MODULE_DESCRIPTOR_m` nor `HCR_MODULE_DESCRIPTOR`");
        // An empty suffix is not a module's name.
        assert_eq!(choose_descriptor(&["HCR_MODULE_DESCRIPTOR_"], "m").unwrap_err(), err);
        assert_eq!(file_stem(Path::new(&format!("/x/{}", library_file_name("a.b")))), "a.b");
    }

    fn descriptor_bytes(flags: ModuleFlags, fingerprint: &[u8], len: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; size_of::<ModuleDescriptor>()];
        let flags_at = offset_of!(ModuleDescriptor, flags);
        bytes[flags_at..flags_at + 4].copy_from_slice(&flags.0.to_ne_bytes());
        let len_at = offset_of!(ModuleDescriptor, fingerprint_len);
        bytes[len_at..len_at + 4].copy_from_slice(&len.to_ne_bytes());
        let at = offset_of!(ModuleDescriptor, fingerprint);
        bytes[at..at + fingerprint.len()].copy_from_slice(fingerprint);
        bytes
    }

    #[test]
    fn rust_modules_need_the_runtimes_toolchain() {
        let path = Path::new("libm.so");
        let ours = RUNTIME_FINGERPRINT.as_bytes();
        assert!(ours.starts_with(b"rustc ") && ours.ends_with(hcr_abi::VERSION.as_bytes()));
        let same = descriptor_bytes(ModuleFlags::RUST_ABI, ours, ours.len() as u32);
        check_toolchain(&same, path).unwrap();
        let other = b"rustc 1.0.0 (0000); x86_64-unknown-linux-gnu; panic=abort";
        let refused = check_toolchain(&descriptor_bytes(ModuleFlags::RUST_ABI, other, other.len() as u32), path);
        let Err(Error::ToolchainMismatch { found, expected, .. }) = refused else { panic!("{refused:?}") };
        assert_eq!((found.as_bytes(), expected.as_bytes()), (&other[..], ours));
        for (len, what) in [(0, "<no fingerprint>"), (300, "<a corrupt fingerprint (300 bytes, at most 256)>")] {
            let refused = check_toolchain(&descriptor_bytes(ModuleFlags::RUST_ABI, b"", len), path);
            assert!(matches!(&refused, Err(Error::ToolchainMismatch { found, .. }) if found == what), "{refused:?}");
        }
        // Without the flag (a C module), or an ABI 1.1 descriptor: nothing to compare.
        check_toolchain(&descriptor_bytes(ModuleFlags::NONE, b"", 0), path).unwrap();
        check_toolchain(&descriptor_bytes(ModuleFlags::RUST_ABI, other, 10)[..MIN_DESCRIPTOR_SIZE], path).unwrap();
    }

    #[test]
    fn module_names_are_restricted() {
        let unchecked = Bounds { image: None };
        assert_eq!(module_name(&unchecked, Str::new("game_logic-2.x"), "n").unwrap(), "game_logic-2.x");
        for bad in ["", "../etc", "a/b", "a\\b", ".hidden", "sp ace"] {
            assert!(module_name(&unchecked, Str::new(bad), "n").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_and_empty_files_are_refused_before_loading() {
        let parent = scratch();
        let mut dir = PrivateDir::create(parent.path(), LIMITS).unwrap();
        for (name, bytes) in [("empty.so", &b""[..]), ("garbage.so", &b"\x7fELF garbage that is not an object"[..])] {
            let path = parent.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let copy = dir.copy_in(&path).unwrap();
            let err = inspect(&copy, &path).unwrap_err();
            assert!(matches!(err, Error::NotLoadable { .. }), "{name}: {err}");
        }
    }
}
