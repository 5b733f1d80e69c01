//! Getting a module from a file into the process: private copies, change
//! stamps, checks made on the file before any of its code runs, opening the
//! library and reading its descriptor.

use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hcr_abi::{ABI_MAJOR, DESCRIPTOR_SYMBOL, DESCRIPTOR_SYMBOL_NUL, InitFn, MAGIC, ModuleDescriptor, Str};
use object::{Object, ObjectSection};
use xxhash_rust::xxh3::Xxh3;

use crate::error::{Error, Result};
use crate::{arch, names, os};

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

    /// Examines `path` without reading it.
    pub(crate) fn stat(path: &Path) -> Quick {
        std::fs::metadata(path).map_or(Quick::Missing, |m| Quick::of(&m))
    }
}

/// A file's quick stamp plus the hash of its content.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamp {
    pub(crate) quick: Quick,
    pub(crate) hash: u128,
}

/// Reads `path` and hashes it.
pub(crate) fn stamp_file(path: &Path) -> Result<Stamp> {
    let read_err = |source| Error::ReadModule { path: path.to_owned(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let quick = Quick::of(&file.metadata().map_err(read_err)?);
    let mut hasher = Xxh3::new();
    stream(&mut file, |chunk| {
        hasher.update(chunk);
        Ok(())
    })
    .map_err(read_err)?;
    Ok(Stamp { quick, hash: hasher.digest128() })
}

/// Feeds `input` to `sink` in chunks. The file is read, never mapped: the
/// build may truncate or rewrite it at any moment, which would turn a read of
/// a mapping into a fatal `SIGBUS`.
fn stream(input: &mut File, mut sink: impl FnMut(&[u8]) -> io::Result<()>) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => sink(&buf[..n])?,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The per-process directory that holds private copies of loaded modules.
/// Removed, with whatever is left in it, on drop.
pub(crate) struct PrivateDir {
    path: PathBuf,
    next: u64,
}

impl PrivateDir {
    /// Creates a fresh directory, mode 0700, with a unique unpredictable name
    /// under `parent`. Never reuses anything that already exists.
    pub(crate) fn create(parent: &Path) -> Result<PrivateDir> {
        let mut last = None;
        for _ in 0..16 {
            let path = parent.join(format!("hcr-{}-{:016x}", std::process::id(), random_u64()));
            match os::create_private_dir(&path) {
                Ok(()) => return Ok(PrivateDir { path, next: 0 }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(source) => return Err(Error::PrivateDir { path, source }),
            }
        }
        let (path, source) = last.expect("16 attempts were made");
        Err(Error::PrivateDir { path, source })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Copies `source` under a name used once, hashing it on the way.
    pub(crate) fn copy_in(&mut self, source: &Path) -> Result<PrivateCopy> {
        let read_err = |source_err| Error::ReadModule { path: source.to_owned(), source: source_err };
        let mut input = File::open(source).map_err(read_err)?;
        let quick = Quick::of(&input.metadata().map_err(read_err)?);
        let file_name = source.file_name().map_or_else(|| "module".into(), |n| n.to_string_lossy().into_owned());
        let dest = self.path.join(format!("{:05}-{file_name}", self.next));
        self.next += 1;
        let copy_err = |e| Error::CopyModule { path: source.to_owned(), copy: dest.clone(), source: e };
        let mut output = os::create_exclusive(&dest).map_err(copy_err)?;
        // From here on the copy is ours: delete it on any failure.
        let mut copy = PrivateCopy { path: dest.clone(), stamp: Stamp { quick, hash: 0 } };
        let mut hasher = Xxh3::new();
        let mut write_failed = None;
        let read = stream(&mut input, |chunk| {
            hasher.update(chunk);
            output.write_all(chunk).inspect_err(|e| write_failed = Some(e.kind()))
        });
        match (read, write_failed) {
            (Err(e), Some(_)) => return Err(copy_err(e)),
            (Err(e), None) => return Err(read_err(e)),
            (Ok(()), _) => {}
        }
        copy.stamp.hash = hasher.digest128();
        Ok(copy)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::debug!(path = %self.path.display(), error = %e, "could not remove the private module directory");
        }
    }
}

fn random_u64() -> u64 {
    // `RandomState` is seeded from the OS's random source once per process
    // and advanced for every instance.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    hasher.finish()
}

/// A private copy of a module file; deleted on drop.
pub(crate) struct PrivateCopy {
    path: PathBuf,
    pub(crate) stamp: Stamp,
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

/// Checks a private copy before anything in it runs: it must be a dynamic
/// library for this architecture, every loadable segment must be present in
/// the file (a truncated library would make the system loader fault), and it
/// must export a descriptor whose pointer-free header carries the magic and
/// this runtime's major ABI version.
fn inspect(copy: &Path, source: &Path) -> Result<()> {
    let not_loadable = |reason: String, err: Option<crate::error::BoxError>| Error::NotLoadable {
        path: source.to_owned(),
        reason,
        source: err,
    };
    let file = File::open(copy).map_err(|e| Error::ReadModule { path: copy.to_owned(), source: e })?;
    let len = file.metadata().map_err(|e| Error::ReadModule { path: copy.to_owned(), source: e })?.len();
    if len == 0 {
        return Err(not_loadable("the file is empty".into(), None));
    }
    // SAFETY: the copy lives in the runtime's private directory (mode 0700),
    // was written completely before this call and is never written again, so
    // the mapping cannot change or shrink underneath us.
    let map =
        unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::ReadModule { path: copy.to_owned(), source: e })?;
    let data: &[u8] = &map;
    let obj = object::File::parse(data)
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
    check_elf_segments(data).map_err(|reason| not_loadable(reason, None))?;

    let corrupt = |e: object::Error| not_loadable("its export table is corrupt".into(), Some(Box::new(e)));
    let wanted = DESCRIPTOR_SYMBOL.as_bytes();
    let mut address = None;
    for item in obj.exports().map_err(corrupt)? {
        let item = item.map_err(corrupt)?;
        let object::NameOrOrdinal::Name(name) = item.name() else { continue };
        // Mach-O prefixes C symbol names with an underscore.
        if name == wanted || name.strip_prefix(b"_") == Some(wanted) {
            if let object::ExportTarget::Address { address: a } = item.target() {
                address = Some(a);
            }
            break;
        }
    }
    let Some(address) = address else {
        return Err(Error::NotAModule {
            path: source.to_owned(),
            reason: format!("it does not export `{DESCRIPTOR_SYMBOL}`"),
        });
    };
    let header = obj.sections().find_map(|s| s.data_range(address, 16).ok().flatten());
    let Some(header) = header else {
        return Err(Error::NotAModule {
            path: source.to_owned(),
            reason: format!("`{DESCRIPTOR_SYMBOL}` does not point at data in the file"),
        });
    };
    check_header(header, source)
}

/// Checks the first 16 bytes of a descriptor: magic, major version.
fn check_header(header: &[u8], source: &Path) -> Result<()> {
    if header[..8] != MAGIC {
        return Err(Error::NotAModule {
            path: source.to_owned(),
            reason: format!("`{DESCRIPTOR_SYMBOL}` does not start with the hcr magic"),
        });
    }
    let major = u16::from_ne_bytes([header[8], header[9]]);
    let minor = u16::from_ne_bytes([header[10], header[11]]);
    if major != ABI_MAJOR {
        return Err(Error::AbiMismatch { path: source.to_owned(), found_major: major, found_minor: minor });
    }
    Ok(())
}

/// For ELF files: every `PT_LOAD` segment's file bytes must be in the file.
fn check_elf_segments(data: &[u8]) -> std::result::Result<(), String> {
    use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
    if object::FileKind::parse(data) != Ok(object::FileKind::Elf64) {
        return Ok(());
    }
    let elf = ElfFile64::<object::Endianness>::parse(data).map_err(|e| format!("its ELF headers are corrupt: {e}"))?;
    let endian = elf.endian();
    let headers =
        elf.elf_header().program_headers(endian, data).map_err(|e| format!("its program headers are corrupt: {e}"))?;
    for ph in headers {
        if ph.p_type(endian) != object::elf::PT_LOAD {
            continue;
        }
        let end = ph.p_offset(endian).checked_add(ph.p_filesz(endian));
        if end.is_none_or(|end| end > data.len() as u64) {
            return Err(format!(
                "it is truncated: a loadable segment needs {} bytes but the file has {}",
                end.unwrap_or(u64::MAX),
                data.len()
            ));
        }
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
        inspect(&copy.path, source)?;
        let library = os::open_library(&copy.path).map_err(|e| Error::NotLoadable {
            path: source.to_owned(),
            reason: "the system loader refused it".into(),
            source: Some(Box::new(e)),
        })?;
        let module = ModuleLibrary { library: Some(library), _copy: copy };
        let descriptor = module.read_descriptor(source)?;
        Ok((module, descriptor))
    }

    fn read_descriptor(&self, source: &Path) -> Result<Descriptor> {
        let library = self.library.as_ref().expect("open library");
        let not_a_module = |reason: String| Error::NotAModule { path: source.to_owned(), reason };
        // SAFETY: we only take the symbol's address; nothing is called.
        let symbol = unsafe { library.get::<*const ModuleDescriptor>(DESCRIPTOR_SYMBOL_NUL) }
            .map_err(|e| not_a_module(format!("`{DESCRIPTOR_SYMBOL}` cannot be resolved: {e}")))?;
        let ptr: *const ModuleDescriptor = *symbol;
        if ptr.is_null() || !ptr.cast::<u64>().is_aligned() {
            return Err(not_a_module(format!("`{DESCRIPTOR_SYMBOL}` is null or misaligned")));
        }
        // SAFETY: the file exports this symbol with the hcr magic and our
        // major ABI version in its header (checked by `inspect`), which means
        // the module defines it as a `ModuleDescriptor` of this layout.
        let d = unsafe { &*ptr };
        let mut header = [0u8; 16];
        header[..8].copy_from_slice(&d.magic);
        header[8..10].copy_from_slice(&d.abi_major.to_ne_bytes());
        header[10..12].copy_from_slice(&d.abi_minor.to_ne_bytes());
        check_header(&header, source)?;
        if (d.size as usize) < size_of::<ModuleDescriptor>() {
            return Err(not_a_module(format!("its descriptor is {} bytes, too small", d.size)));
        }
        let name = module_name(d.name, "module name").map_err(&not_a_module)?;
        let build_id = read_str(d.build_id, 4096, "build id").map_err(&not_a_module)?;
        if d.import_count > 4096 || (d.import_count > 0 && d.imports.is_null()) {
            return Err(not_a_module(format!("its import list is invalid ({} entries)", d.import_count)));
        }
        let imports = (0..d.import_count)
            .map(|i| {
                // SAFETY: `imports` points at `import_count` `Str`s in the
                // module's static data (descriptor contract; null checked).
                let s = unsafe { d.imports.add(i).read() };
                module_name(s, "import name")
            })
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(&not_a_module)?;
        let init = d.init.ok_or_else(|| not_a_module("its init entry is null".into()))?;
        Ok(Descriptor { name, build_id, abi_minor: d.abi_minor, imports, init })
    }

    /// Leaves the library mapped for the rest of the process (its private
    /// copy is still deleted: the mapping outlives the file).
    pub(crate) fn leak(mut self) {
        if let Some(library) = self.library.take() {
            std::mem::forget(library);
        }
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
fn module_name(s: Str, what: &str) -> std::result::Result<String, String> {
    let name = read_str(s, names::MAX_MODULE_NAME, what)?;
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

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("hcr-loader-test-{}-{:x}", std::process::id(), random_u64()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn private_directory_is_0700_and_removed_on_drop() {
        let parent = scratch();
        let dir = PrivateDir::create(&parent).unwrap();
        let path = dir.path().to_owned();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        drop(dir);
        assert!(!path.exists());
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn copies_are_hashed_unique_and_deleted_on_drop() {
        let parent = scratch();
        let mut dir = PrivateDir::create(&parent).unwrap();
        let src = parent.join("libm.so");
        std::fs::write(&src, b"some bytes").unwrap();
        let a = dir.copy_in(&src).unwrap();
        let b = dir.copy_in(&src).unwrap();
        assert_ne!(a.path, b.path);
        assert_eq!(a.stamp.hash, b.stamp.hash);
        assert_eq!(a.stamp.hash, stamp_file(&src).unwrap().hash);
        assert_eq!(std::fs::read(&a.path).unwrap(), b"some bytes");
        let path = a.path.clone();
        drop(a);
        assert!(!path.exists());
        std::fs::write(&src, b"other bytes").unwrap();
        assert_ne!(dir.copy_in(&src).unwrap().stamp.hash, b.stamp.hash);
        drop((b, dir));
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_planted_symlink_is_never_followed() {
        let parent = scratch();
        let mut dir = PrivateDir::create(&parent).unwrap();
        let victim = parent.join("victim");
        std::fs::write(&victim, b"keep me").unwrap();
        // Plant a link where the next copy will be written.
        std::os::unix::fs::symlink(&victim, dir.path().join("00000-libm.so")).unwrap();
        let src = parent.join("libm.so");
        std::fs::write(&src, b"payload").unwrap();
        let err = dir.copy_in(&src).err().expect("must refuse the planted link");
        assert!(matches!(err, Error::CopyModule { .. }), "{err}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep me");
        drop(dir);
        std::fs::remove_dir_all(parent).unwrap();
    }

    #[test]
    fn module_names_are_restricted() {
        assert_eq!(module_name(Str::new("game_logic-2.x"), "n").unwrap(), "game_logic-2.x");
        for bad in ["", "../etc", "a/b", "a\\b", ".hidden", "sp ace"] {
            assert!(module_name(Str::new(bad), "n").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn garbage_and_empty_files_are_refused_before_loading() {
        let parent = scratch();
        for (name, bytes) in [("empty.so", &b""[..]), ("garbage.so", &b"\x7fELF garbage that is not an object"[..])] {
            let path = parent.join(name);
            std::fs::write(&path, bytes).unwrap();
            let err = inspect(&path, &path).unwrap_err();
            assert!(matches!(err, Error::NotLoadable { .. }), "{name}: {err}");
        }
        std::fs::remove_dir_all(parent).unwrap();
    }
}
