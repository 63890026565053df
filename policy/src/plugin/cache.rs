//! The on-disk cache of compiled plugin modules ([`ModuleCache`]), so a
//! replay does not pay compile time twice.
//!
//! An entry is named `<module sha256>-<engine key>.cwasm`, where the engine
//! key is a sha256 of [`Engine::precompile_compatibility_hash`] (which covers
//! the wasmtime version, the target and every setting that changes the
//! code). Loading an entry maps native code into the process, so the cache is
//! trusted exactly as much as the directory holding it: the directory must be
//! owned by the current user and writable by no one else, entries are
//! written to a fresh file and renamed into place (never written in place),
//! and an entry that is not a regular file owned by the current user is
//! ignored. Anything else that goes wrong with an entry is a miss: the module
//! is compiled again and the entry replaced.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::error::HostError;

/// How a plugin's compiled module was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// The host has no cache directory; the module was compiled.
    Disabled,
    /// The compiled module was loaded from the cache.
    Hit,
    /// The module was compiled and stored in the cache.
    Stored,
    /// The module was compiled but could not be stored (the reason); the
    /// plugin works, the next load compiles again.
    NotStored(String),
}

/// A directory of compiled modules for one engine configuration.
#[derive(Debug)]
pub(crate) struct ModuleCache {
    dir: PathBuf,
    engine_key: String,
}

impl ModuleCache {
    /// Opens (creating it with mode 0700 if needed) the cache directory,
    /// refusing one that someone else could write to.
    pub(crate) fn open(dir: PathBuf, engine: &Engine) -> Result<ModuleCache, HostError> {
        create_private_dir(&dir).map_err(|source| HostError::CacheDir {
            path: dir.clone(),
            source,
        })?;
        os::check_private_dir(&dir).map_err(|reason| HostError::InsecureCacheDir {
            path: dir.clone(),
            reason,
        })?;
        Ok(ModuleCache {
            dir,
            engine_key: engine_key(engine),
        })
    }

    /// The file holding the compiled form of the module with this sha256.
    pub(crate) fn entry(&self, module_sha256: &str) -> PathBuf {
        self.dir
            .join(format!("{module_sha256}-{}.cwasm", self.engine_key))
    }

    /// The compiled module for this sha256, if the cache has a usable one.
    pub(crate) fn load(&self, engine: &Engine, module_sha256: &str) -> Option<Module> {
        let path = self.entry(module_sha256);
        // Open first, then check what was opened: checking the path and
        // opening it again would let the entry be swapped in between.
        let file = os::open_no_follow(&path).ok()?;
        let metadata = file.metadata().ok()?;
        if !metadata.is_file() || os::check_private_file(&metadata).is_err() {
            return None;
        }
        // SAFETY: `Module::deserialize_open_file` trusts the file to be a
        // module that `Module::serialize` wrote for a compatible engine, and
        // to stay unchanged while the module is alive (it is mapped, not
        // copied). Both hold here:
        // - Only this user can write the file: the directory was checked at
        //   `open` to be owned by the current user and not writable by group
        //   or others, and the very file we opened (without following a
        //   symlink; its metadata read from the open descriptor) is a
        //   regular file owned by the current user and not group- or
        //   world-writable. Anyone able to plant a file there could already
        //   run code as this user.
        // - Entries are only ever written by `store` below, from
        //   `Module::serialize` of a module compiled by an engine with the
        //   same compatibility hash (it is in the file name), into a fresh
        //   temporary file that is synced and then renamed over the entry.
        //   Nothing writes to an entry in place, so a mapped entry never
        //   changes under us: a replacement is a new inode.
        // - wasmtime itself checks the header (wasmtime version, target,
        //   engine settings) and refuses a mismatch with an error, which is a
        //   cache miss here.
        unsafe { Module::deserialize_open_file(engine, file) }.ok()
    }

    /// Stores the compiled module under its sha256, atomically.
    pub(crate) fn store(&self, module: &Module, module_sha256: &str) -> Result<(), String> {
        let bytes = module
            .serialize()
            .map_err(|error| format!("cannot serialize the compiled module: {error}"))?;
        let entry = self.entry(module_sha256);
        let temporary = self.dir.join(format!(
            ".{module_sha256}.{}.{}.tmp",
            std::process::id(),
            NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_new_private_file(&temporary, &bytes)
            .and_then(|()| fs::rename(&temporary, &entry));
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            return Err(format!("cannot write `{}`: {error}", entry.display()));
        }
        Ok(())
    }
}

/// Makes temporary file names unique within this process.
static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// A stable name for everything about `engine` that its compiled code
/// depends on.
fn engine_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let digest = hasher.0.finalize();
    hex(&digest[..16])
}

/// Feeds [`Hash`] into sha256, which (unlike `DefaultHasher`) is the same
/// in every Rust release, so cache keys survive a toolchain update.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        // Only the digest is used; `finish` is required by the trait.
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn write_new_private_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(unix)]
mod os {
    //! Ownership and mode checks of the cache directory and its entries.

    use std::fs::Metadata;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::path::Path;

    /// Write permission for group or others.
    const SHARED_WRITE: u32 = 0o022;
    /// Write permission for others.
    const WORLD_WRITE: u32 = 0o002;
    /// The sticky bit: only an entry's owner may rename or remove it.
    const STICKY: u32 = 0o1000;

    /// Refuses a directory that is a symlink, not ours, or writable by
    /// group or others, or that sits under a directory where others could
    /// swap it (world-writable without the sticky bit).
    pub(super) fn check_private_dir(dir: &Path) -> Result<(), String> {
        let metadata = std::fs::symlink_metadata(dir)
            .map_err(|error| format!("cannot inspect it: {error}"))?;
        if metadata.file_type().is_symlink() {
            return Err("it is a symbolic link".into());
        }
        if !metadata.is_dir() {
            return Err("it is not a directory".into());
        }
        check_owner_and_mode(&metadata)?;
        let canonical = dir
            .canonicalize()
            .map_err(|error| format!("cannot resolve it: {error}"))?;
        for ancestor in canonical.ancestors().skip(1) {
            let metadata = std::fs::metadata(ancestor)
                .map_err(|error| format!("cannot inspect `{}`: {error}", ancestor.display()))?;
            let mode = metadata.permissions().mode();
            if mode & WORLD_WRITE != 0 && mode & STICKY == 0 {
                return Err(format!(
                    "its parent `{}` is writable by everyone (mode {:o})",
                    ancestor.display(),
                    mode & 0o7777
                ));
            }
        }
        Ok(())
    }

    /// Refuses an entry that is not ours or is writable by group or others.
    pub(super) fn check_private_file(metadata: &Metadata) -> Result<(), String> {
        check_owner_and_mode(metadata)
    }

    /// Opens `path` for reading, failing if its last component is a symlink.
    pub(super) fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
    }

    fn check_owner_and_mode(metadata: &Metadata) -> Result<(), String> {
        let me = rustix::process::geteuid().as_raw();
        if metadata.uid() != me {
            return Err(format!(
                "it is owned by uid {}, not by the current user (uid {me})",
                metadata.uid()
            ));
        }
        let mode = metadata.permissions().mode();
        if mode & SHARED_WRITE != 0 {
            return Err(format!(
                "it is writable by group or others (mode {:o})",
                mode & 0o7777
            ));
        }
        Ok(())
    }
}

#[cfg(not(unix))]
mod os {
    //! No ownership model to check outside Unix; the directory's ACLs are
    //! the user's responsibility there.

    use std::fs::Metadata;
    use std::path::Path;

    pub(super) fn check_private_dir(_dir: &Path) -> Result<(), String> {
        Ok(())
    }

    pub(super) fn check_private_file(_metadata: &Metadata) -> Result<(), String> {
        Ok(())
    }

    /// Opens `path` for reading.
    pub(super) fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
        std::fs::File::open(path)
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_directory_is_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b/cache");
        create_private_dir(&dir).unwrap();
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        os::check_private_dir(&dir).unwrap();
    }

    #[test]
    fn group_or_world_writable_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        for mode in [0o770, 0o702, 0o777] {
            let dir = root.path().join(format!("m{mode:o}"));
            fs::create_dir(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).unwrap();
            let reason = os::check_private_dir(&dir).unwrap_err();
            assert!(reason.contains("writable by group or others"), "{reason}");
        }
    }

    #[test]
    fn symlinked_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        create_private_dir(&real).unwrap();
        let link = root.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let reason = os::check_private_dir(&link).unwrap_err();
        assert!(reason.contains("symbolic link"), "{reason}");
    }

    #[test]
    fn directory_under_a_world_writable_non_sticky_parent_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let open = root.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        let dir = open.join("cache");
        create_private_dir(&dir).unwrap();
        let reason = os::check_private_dir(&dir).unwrap_err();
        assert!(reason.contains("writable by everyone"), "{reason}");
        // With the sticky bit (as on /tmp) others cannot swap the directory.
        fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
        os::check_private_dir(&dir).unwrap();
    }

    #[test]
    fn a_symlinked_entry_is_not_opened() {
        // Regression: the entry was checked by path and then opened again
        // by path, so it could be swapped for a link in between; now the
        // open itself refuses to follow one.
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("target.cwasm");
        fs::write(&target, b"not a module").unwrap();
        let link = root.path().join("entry.cwasm");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(os::open_no_follow(&link).is_err());
        assert!(os::open_no_follow(&target).is_ok());
    }

    #[test]
    fn a_cache_entry_swapped_for_a_symlink_is_a_miss() {
        let root = tempfile::tempdir().unwrap();
        let engine = Engine::default();
        let cache = ModuleCache::open(root.path().join("cache"), &engine).unwrap();
        let wasm = wat::parse_str("(module)").unwrap();
        let module = Module::new(&engine, &wasm).unwrap();
        let sha = "ab".repeat(32);
        cache.store(&module, &sha).unwrap();
        assert!(cache.load(&engine, &sha).is_some(), "a stored entry loads");
        // Someone swaps the entry for a link to a file of their choosing.
        let entry = cache.entry(&sha);
        let elsewhere = root.path().join("elsewhere.cwasm");
        fs::rename(&entry, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &entry).unwrap();
        assert!(cache.load(&engine, &sha).is_none());
    }

    #[test]
    fn hex_is_lowercase_and_padded() {
        assert_eq!(hex(&[0, 0xab, 0x0f]), "00ab0f");
    }
}
