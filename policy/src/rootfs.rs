//! The work root as the checker sees it on disk: where a root-relative path
//! physically leads, following symlinks and `..` the way the kernel would,
//! and reading response files through `cap-std` so that nothing the checker
//! opens can be outside the root.
//!
//! Lexical checks (`cmdlog::path`) cannot see that `sub/..` climbs out of
//! the root when `sub` is a symlink to `/etc/x`, nor that `out.o` is a
//! symlink to `/home/u/.bashrc`; [`RootFs::lookup`] can.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use cap_std::fs::Dir;
use cmdlog::path_ids::{BuildPathIdHasher, PathId, PathIds};

/// How many symlinks one lookup may follow (the kernel's `MAXSYMLINKS`).
const MAX_HOPS: u32 = 40;

/// How many directory lookups are remembered (a few hundred bytes each).
/// Logs name a handful of directories; this bounds the ones that do not.
const CACHE_MAX: usize = 1 << 12;

/// How many directories' listings are remembered (see [`RootFs::absent`]).
const LISTED_DIRS_MAX: usize = 1 << 10;

/// How many names all remembered listings hold, 8 bytes each: a larger
/// directory is not remembered, and its paths are looked up one by one.
const LISTED_NAMES_MAX: usize = 1 << 16;

/// Where a root-relative path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// Inside the root; `kind` says what is there now.
    Inside {
        /// What the path names now.
        kind: Kind,
    },
    /// Out of the root, through the symlink (or `..`) named.
    Escapes {
        /// The root-relative prefix at which the path left the root.
        via: String,
    },
}

/// What a path names now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Nothing (yet).
    Missing,
    /// A regular file.
    File,
    /// A regular file with more than one hard link: writing it may write
    /// a file elsewhere.
    Linked,
    /// A directory.
    Dir,
    /// Something else (a device, a socket, an unreadable entry).
    Other,
}

/// The work root, canonical, with a capability handle on it.
pub(crate) struct RootFs {
    root: PathBuf,
    dir: Dir,
    /// Physical location of directories already walked, by raw prefix.
    dirs: HashMap<String, Result<(PathBuf, usize), String>>,
    /// Lookups of the current command: a path is often named twice (as a
    /// declared input and as an argument), and both looked up and asked
    /// for its physical place.
    memo: Vec<Memo>,
    /// The names in each directory walked, read once: most paths a log
    /// names do not exist yet, and a negative `lstat` costs more than a
    /// hash lookup.
    listed: RefCell<Listings>,
    /// Whether every command looks at the disk anew ([`RootFs::uncached`]).
    uncached: bool,
}

/// One path looked up for the current command.
struct Memo {
    /// The root-relative path as asked for.
    path: String,
    /// What [`RootFs::resolve`] said of it.
    resolved: Result<(PathBuf, Kind), String>,
    /// Its physical place, once [`RootFs::physical`] asked for it.
    physical: Option<Option<String>>,
}

/// How many paths of one command [`RootFs`] remembers.
const MEMO_MAX: usize = 64;

/// Directory listings, as the identities of the names in them.
#[derive(Default)]
struct Listings {
    ids: PathIds,
    /// `None` for a directory that could not be listed, or not within
    /// [`LISTED_NAMES_MAX`].
    by_dir: HashMap<PathBuf, Option<HashSet<PathId, BuildPathIdHasher>>>,
    /// How many names `by_dir` holds.
    names: usize,
}

impl RootFs {
    /// Opens `root` (canonicalized).
    pub(crate) fn open(root: &Path) -> io::Result<RootFs> {
        let root = std::fs::canonicalize(root)?;
        let dir = Dir::open_ambient_dir(&root, cap_std::ambient_authority())?;
        Ok(RootFs {
            root,
            dir,
            dirs: HashMap::new(),
            memo: Vec::new(),
            listed: RefCell::default(),
            uncached: false,
        })
    }

    /// The canonical root.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Forgets the previous command's lookups: files may change between
    /// commands only through outputs, which are looked up anew (and,
    /// [`RootFs::uncached`], through anything a tool did: then the walks
    /// of directories are forgotten too).
    pub(crate) fn begin_command(&mut self) {
        self.memo.clear();
        if self.uncached {
            self.dirs.clear();
        }
    }

    /// Looks every command's paths up on disk, remembering nothing from
    /// one command to the next: for judging while tools run, which may
    /// leave anything in the root (a symlink where a directory listing or
    /// a walk said there was nothing). A few `lstat`s a command.
    pub(crate) fn uncached(mut self) -> Self {
        self.uncached = true;
        self
    }

    /// Where the root-relative `path` leads (only `/` separates
    /// components, as the kernel reads it).
    pub(crate) fn lookup(&mut self, path: &str) -> Lookup {
        let at = self.memo(path);
        match &self.memo[at].resolved {
            Ok((_, kind)) => Lookup::Inside { kind: *kind },
            Err(via) => Lookup::Escapes { via: via.clone() },
        }
    }

    /// Where the current command's entry for `path` is in the memo,
    /// resolved on first need. A command naming more than [`MEMO_MAX`]
    /// paths drops its oldest.
    fn memo(&mut self, path: &str) -> usize {
        match self.memo.iter().position(|m| m.path == path) {
            Some(at) => at,
            None => {
                let resolved = self.resolve(path);
                if self.memo.len() >= MEMO_MAX {
                    self.memo.remove(0);
                }
                self.memo.push(Memo {
                    path: path.to_owned(),
                    resolved,
                    physical: None,
                });
                self.memo.len() - 1
            }
        }
    }

    /// Where the root-relative `path` physically is, relative to the root
    /// (`/`-separated, symlinks followed), or `None` if it leads out.
    /// Differs from the path as written when the path goes through a
    /// symlink, so two spellings of one file can be told apart.
    pub(crate) fn physical(&mut self, path: &str) -> Option<String> {
        let at = self.memo(path);
        let memo = &mut self.memo[at];
        if memo.physical.is_none() {
            memo.physical = Some(match &memo.resolved {
                Ok((at, _)) => relative_to(&self.root, at),
                Err(_) => None,
            });
        }
        memo.physical.clone().flatten()
    }

    /// The physical location of `path` and what is there, or the prefix
    /// through which it leaves the root.
    fn resolve(&mut self, path: &str) -> Result<(PathBuf, Kind), String> {
        let (parent, last) = match path.rfind('/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => ("", path),
        };
        let start = if parent.is_empty() {
            Ok((self.root.clone(), 0))
        } else if let Some(hit) = self.dirs.get(parent) {
            hit.clone()
        } else {
            let walked = self.walk(self.root.clone(), 0, parent, String::new());
            let value = match walked {
                Walk::Inside(p, _, missing) => Ok((p, missing)),
                Walk::Escapes(via) => Err(via),
            };
            if self.dirs.len() >= CACHE_MAX {
                self.dirs.clear();
            }
            self.dirs.insert(parent.to_owned(), value.clone());
            value
        };
        let (at, missing) = start?;
        match self.walk(at, missing, last, parent.to_owned()) {
            Walk::Inside(at, kind, _) => Ok((at, kind)),
            Walk::Escapes(via) => Err(via),
        }
    }

    /// Follows `path` from `at` (inside the root), whose last `missing`
    /// components do not exist.
    fn walk(&self, at: PathBuf, missing: usize, path: &str, shown: String) -> Walk {
        let mut cur = at;
        let mut shown = shown;
        let mut kind = if missing > 0 {
            Kind::Missing
        } else {
            Kind::Dir
        };
        // Components still to follow, last first (a symlink's target
        // adds owned ones).
        let mut pending: Vec<Cow<'_, str>> = path.rsplit('/').map(Cow::Borrowed).collect();
        let mut hops = 0u32;
        // Components below the last existing directory: a tool (or the
        // executor) creates them as plain directories, so `..` out of them
        // lands back in a directory that exists and is followed again.
        let mut missing = missing;
        while let Some(c) = pending.pop() {
            match c.as_ref() {
                "" | "." => continue,
                ".." => {
                    if cur == self.root {
                        push_shown(&mut shown, "..");
                        return Walk::Escapes(shown);
                    }
                    cur.pop();
                    push_shown(&mut shown, "..");
                    missing = missing.saturating_sub(1);
                    kind = if missing > 0 {
                        Kind::Missing
                    } else {
                        Kind::Dir
                    };
                    continue;
                }
                _ => {}
            }
            push_shown(&mut shown, &c);
            let next = cur.join(&*c);
            if missing > 0 {
                missing += 1;
                cur = next;
                continue;
            }
            let md = if self.absent(&cur, &c) {
                Err(io::Error::from(io::ErrorKind::NotFound))
            } else {
                std::fs::symlink_metadata(&next)
            };
            match md {
                Err(_) => {
                    // Nothing there: the rest is created by a tool, which
                    // follows no symlink we have not seen.
                    missing = 1;
                    kind = Kind::Missing;
                    cur = next;
                }
                Ok(md) if md.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        return Walk::Escapes(shown);
                    }
                    let Ok(target) = std::fs::read_link(&next) else {
                        return Walk::Escapes(shown);
                    };
                    let rest: Option<Vec<String>> = if target.is_absolute() {
                        match target.strip_prefix(&self.root) {
                            Ok(inside) => {
                                cur = self.root.clone();
                                components(inside)
                            }
                            Err(_) => return Walk::Escapes(shown),
                        }
                    } else {
                        components(&target)
                    };
                    match rest {
                        Some(rest) => pending.extend(rest.into_iter().rev().map(Cow::Owned)),
                        None => return Walk::Escapes(shown),
                    }
                }
                Ok(md) => {
                    kind = if md.is_file() && links(&md) > 1 {
                        Kind::Linked
                    } else if md.is_file() {
                        Kind::File
                    } else if md.is_dir() {
                        Kind::Dir
                    } else {
                        Kind::Other
                    };
                    cur = next;
                }
            }
        }
        Walk::Inside(cur, kind, missing)
    }

    /// Whether `name` is known not to be in the directory `dir` (inside the
    /// root), from a listing read once. `false` means "look". A name's
    /// identity shared by chance with a listed name means "look" too.
    fn absent(&self, dir: &Path, name: &str) -> bool {
        // A name beyond ASCII may be stored in another Unicode form (NFD
        // on macOS, casefold directories) that the kernel takes for it.
        if self.uncached || !name.is_ascii() {
            return false;
        }
        let mut listed = self.listed.borrow_mut();
        let listed = &mut *listed;
        if !listed.by_dir.contains_key(dir) {
            if listed.by_dir.len() >= LISTED_DIRS_MAX {
                return false;
            }
            let names = listed.read(dir);
            listed.names += names.as_ref().map_or(0, HashSet::len);
            listed.by_dir.insert(dir.to_owned(), names);
        }
        match listed.by_dir.get(dir) {
            Some(Some(names)) => !names.contains(&listed.ids.of(name)),
            _ => false,
        }
    }

    /// Reads a root-relative file through the capability handle, at most
    /// `max` bytes; `Ok(None)` if it is larger.
    /// Refuses anything but a regular file, without blocking on a fifo.
    pub(crate) fn read_capped(&self, path: &str, max: u64) -> io::Result<Option<String>> {
        let file = self.open_regular(path)?;
        let mut text = String::new();
        file.take(max + 1).read_to_string(&mut text)?;
        if text.len() as u64 > max {
            return Ok(None);
        }
        Ok(Some(text))
    }

    /// The names in a root-relative directory, read through the
    /// capability handle; empty if it cannot be listed.
    pub(crate) fn list(&self, dir: &str) -> Vec<String> {
        let Ok(entries) = self.dir.read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .collect()
    }

    /// Opens a root-relative regular file for reading through the
    /// capability handle (nothing outside the root; a fifo is not waited
    /// on).
    pub(crate) fn open_file(&self, path: &str) -> io::Result<cap_std::fs::File> {
        self.open_regular(path)
    }

    /// Opens a root-relative path for reading through the capability
    /// handle (nothing outside the root), if it is a regular file.
    fn open_regular(&self, path: &str) -> io::Result<cap_std::fs::File> {
        let mut options = cap_std::fs::OpenOptions::new();
        options.read(true);
        #[cfg(all(
            target_os = "linux",
            any(
                target_arch = "x86_64",
                target_arch = "aarch64",
                target_arch = "riscv64"
            )
        ))]
        {
            use cap_std::fs::OpenOptionsExt;
            // O_NONBLOCK: opening a fifo must not wait for a writer.
            options.custom_flags(0o4000);
        }
        let file = self.dir.open_with(path, &options)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }
}

/// How many hard links a file has (1 where the platform cannot say).
#[cfg(unix)]
fn links(md: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::nlink(md)
}

#[cfg(not(unix))]
fn links(_: &std::fs::Metadata) -> u64 {
    1
}

enum Walk {
    Inside(PathBuf, Kind, usize),
    Escapes(String),
}

/// `at` relative to `root`, `/`-separated; `None` outside it or not UTF-8.
fn relative_to(root: &Path, at: &Path) -> Option<String> {
    // A walk makes `at` by joining plain components to `root`: then the
    // bytes after `root/` are the answer, without comparing and collecting
    // components (5% of `replay check`). Anything else goes the long way.
    let (r, a) = (root.as_os_str().as_bytes(), at.as_os_str().as_bytes());
    if let Some(rest) = a.strip_prefix(r) {
        let rest = match rest.strip_prefix(b"/") {
            _ if rest.is_empty() => Some(rest),
            _ if r.ends_with(b"/") => Some(rest),
            stripped => stripped,
        };
        if let Some(rest) = rest.filter(|rest| plain_components(rest)) {
            return std::str::from_utf8(rest).ok().map(str::to_owned);
        }
    }
    relative_by_components(root, at)
}

/// Whether `rest` is empty or `/`-separated components, none empty or `.`
/// (as `Path::components` would give them back).
fn plain_components(rest: &[u8]) -> bool {
    rest.is_empty()
        || rest
            .split(|b| *b == b'/')
            .all(|c| !c.is_empty() && c != b".")
}

/// [`relative_to`] by comparing and collecting components.
fn relative_by_components(root: &Path, at: &Path) -> Option<String> {
    let inside = at.strip_prefix(root).ok()?;
    let parts: Option<Vec<&str>> = inside
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect();
    Some(parts?.join("/"))
}

/// Appends the component `c` to the path `shown`.
fn push_shown(shown: &mut String, c: &str) {
    if !shown.is_empty() {
        shown.push('/');
    }
    shown.push_str(c);
}

/// The components of a symlink target as strings; `None` if it has one
/// that is not valid UTF-8 (refused rather than guessed).
fn components(path: &Path) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(s) => out.push(s.to_str()?.to_owned()),
            Component::ParentDir => out.push("..".to_owned()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

impl Listings {
    /// The identities of the names in `dir`, or `None` if it cannot be
    /// listed, would take the listings past [`LISTED_NAMES_MAX`], or
    /// matches names regardless of case.
    fn read(&self, dir: &Path) -> Option<HashSet<PathId, BuildPathIdHasher>> {
        let room = LISTED_NAMES_MAX.checked_sub(self.names)?;
        let mut names = HashSet::default();
        let mut cased = None;
        for entry in std::fs::read_dir(dir).ok()? {
            // A name that is not UTF-8 is no name of a log (they are
            // strings), so its absence changes no answer.
            if let Some(name) = entry.ok()?.file_name().to_str() {
                names.insert(self.ids.of(name));
                if cased.is_none() {
                    cased = other_ascii_case(name);
                }
            }
            if names.len() > room {
                return None;
            }
        }
        // In a directory that matches names regardless of case (ext4
        // casefold, a FAT or SMB mount, macOS), `OUT` is there when the
        // listing has only `out`: a listing cannot answer, so each name
        // is looked up. A directory with names but none to try is not
        // trusted either.
        let answers = match cased {
            Some(other) => {
                names.contains(&self.ids.of(&other))
                    || std::fs::symlink_metadata(dir.join(&other)).is_err()
            }
            None => names.is_empty(),
        };
        answers.then_some(names)
    }
}

/// `name` with the case of its ASCII letters swapped, if it has any: the
/// same length, and the same name to any case-insensitive file system.
fn other_ascii_case(name: &str) -> Option<String> {
    let other: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    (other != name).then_some(other)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root() -> (tempfile::TempDir, RootFs) {
        let tmp = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(tmp.path().join("root")).expect("mkdir");
        let fs = RootFs::open(&tmp.path().join("root")).expect("open root");
        (tmp, fs)
    }

    proptest::proptest! {
        #[test]
        fn relative_places_agree_with_comparing_components(
            root in "/[ab./]{0,8}",
            rest in "[ab./]{0,10}",
        ) {
            for at in [format!("{root}{rest}"), format!("{root}/{rest}"), rest.clone()] {
                let (root, at) = (Path::new(&root), Path::new(&at));
                proptest::prop_assert_eq!(
                    relative_to(root, at),
                    relative_by_components(root, at),
                    "{:?} {:?}", root, at
                );
            }
        }
    }

    #[test]
    fn plain_paths_stay_inside_and_report_what_is_there() {
        let (_tmp, mut fs) = root();
        std::fs::create_dir(fs.root().join("d")).expect("mkdir");
        std::fs::write(fs.root().join("d/f"), "x").expect("write");
        assert_eq!(fs.lookup("d/f"), Lookup::Inside { kind: Kind::File });
        assert_eq!(fs.lookup("d"), Lookup::Inside { kind: Kind::Dir });
        assert_eq!(
            fs.lookup("d/new/deeper"),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        assert_eq!(fs.lookup("d/../d/f"), Lookup::Inside { kind: Kind::File });
    }

    #[test]
    fn names_are_tried_in_the_other_case() {
        assert_eq!(other_ascii_case("out.o").as_deref(), Some("OUT.O"));
        assert_eq!(other_ascii_case("Out").as_deref(), Some("oUT"));
        assert_eq!(other_ascii_case("café").as_deref(), Some("CAFé"));
        assert_eq!(other_ascii_case("ı").as_deref(), None);
        assert_eq!(other_ascii_case("1_2"), None);
    }

    #[test]
    fn listings_answer_only_for_ascii_names_in_directories_they_can_test() {
        let (_tmp, mut fs) = root();
        std::fs::create_dir(fs.root().join("digits")).expect("mkdir");
        std::fs::write(fs.root().join("digits/123"), "x").expect("write");
        std::fs::create_dir(fs.root().join("named")).expect("mkdir");
        std::fs::write(fs.root().join("named/f.o"), "x").expect("write");
        assert_eq!(
            fs.lookup("digits/4"),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        assert_eq!(
            fs.lookup("named/caf\u{e9}"),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        assert_eq!(
            fs.lookup("named/g.o"),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        let listed = fs.listed.borrow();
        // Nothing in `digits` to try in the other case: not listed.
        assert_eq!(listed.by_dir.get(&fs.root().join("digits")), Some(&None));
        assert!(matches!(
            listed.by_dir.get(&fs.root().join("named")),
            Some(Some(_))
        ));
    }

    #[test]
    fn uncached_lookups_see_what_changed_since_the_last_command() {
        let (_tmp, fs) = root();
        let mut fs = fs.uncached();
        std::fs::create_dir(fs.root().join("out")).expect("mkdir");
        assert_eq!(
            fs.lookup("out/link/x"),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        // A tool leaves a symlink out of the root where nothing was.
        symlink("/etc", fs.root().join("out/link")).expect("symlink");
        fs.begin_command();
        assert!(matches!(fs.lookup("out/link/x"), Lookup::Escapes { .. }));
        assert!(matches!(fs.lookup("out/link"), Lookup::Escapes { .. }));
    }

    #[test]
    fn listings_past_their_bounds_are_looked_up_name_by_name() {
        let (_tmp, mut fs) = root();
        for dir in ["full", "listed", "late"] {
            std::fs::create_dir(fs.root().join(dir)).expect("mkdir");
            std::fs::write(fs.root().join(dir).join("f"), "x").expect("write");
        }
        // A listed directory answers from its listing.
        assert_eq!(fs.lookup("listed/f"), Lookup::Inside { kind: Kind::File });
        assert_eq!(
            fs.lookup("listed/g"),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        assert!(fs
            .listed
            .borrow()
            .by_dir
            .contains_key(&fs.root().join("listed")));
        // With no room for names left, a directory is not listed, and its
        // files are still found.
        fs.listed.borrow_mut().names = LISTED_NAMES_MAX;
        fs.begin_command();
        assert_eq!(fs.lookup("full/f"), Lookup::Inside { kind: Kind::File });
        assert_eq!(
            fs.listed.borrow().by_dir.get(&fs.root().join("full")),
            Some(&None)
        );
        // Nor past the number of directories.
        let filler = fs.root().join("filler");
        {
            let mut listed = fs.listed.borrow_mut();
            for i in listed.by_dir.len()..LISTED_DIRS_MAX {
                listed.by_dir.insert(filler.join(i.to_string()), None);
            }
        }
        assert_eq!(fs.lookup("late/f"), Lookup::Inside { kind: Kind::File });
        assert!(!fs
            .listed
            .borrow()
            .by_dir
            .contains_key(&fs.root().join("late")));
    }

    #[test]
    fn symlinks_out_of_the_root_escape_even_when_dangling() {
        let (tmp, mut fs) = root();
        symlink(tmp.path(), fs.root().join("up")).expect("symlink");
        symlink("/nonexistent/target", fs.root().join("dangling")).expect("symlink");
        symlink("../outside", fs.root().join("rel")).expect("symlink");
        assert!(matches!(fs.lookup("up/x"), Lookup::Escapes { .. }));
        assert!(matches!(fs.lookup("dangling"), Lookup::Escapes { .. }));
        assert!(matches!(fs.lookup("rel"), Lookup::Escapes { .. }));
    }

    #[test]
    fn dotdot_after_a_symlinked_dir_is_followed_physically() {
        // `link/..` is the parent of the link's target, not the root: a
        // lexical normalizer would call `link/../x` just `x`.
        let (tmp, mut fs) = root();
        std::fs::create_dir(tmp.path().join("elsewhere")).expect("mkdir");
        symlink(tmp.path().join("elsewhere"), fs.root().join("link")).expect("symlink");
        assert!(matches!(fs.lookup("link/../x"), Lookup::Escapes { .. }));
    }

    #[test]
    fn symlinks_after_a_missing_directory_and_dotdot_are_still_followed() {
        // Regression: `a/../link/..` with `a` missing was judged lexically
        // from `a` on, missing that `link` (followed after `a/..`) leads
        // out; the executor may create `a`, and then the path escapes.
        let (tmp, mut fs) = root();
        symlink(tmp.path(), fs.root().join("link")).expect("symlink");
        assert!(matches!(fs.lookup("a/../link/.."), Lookup::Escapes { .. }));
        assert!(matches!(
            fs.lookup("a/b/../../link"),
            Lookup::Escapes { .. }
        ));
        assert_eq!(
            fs.lookup("a/b/.."),
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        assert_eq!(fs.lookup("a/.."), Lookup::Inside { kind: Kind::Dir });
    }

    #[test]
    fn symlinks_inside_the_root_are_followed() {
        let (_tmp, mut fs) = root();
        std::fs::create_dir(fs.root().join("real")).expect("mkdir");
        std::fs::write(fs.root().join("real/f"), "x").expect("write");
        symlink("real", fs.root().join("alias")).expect("symlink");
        let abs = fs.root().join("real");
        symlink(&abs, fs.root().join("absalias")).expect("symlink");
        assert_eq!(fs.lookup("alias/f"), Lookup::Inside { kind: Kind::File });
        assert_eq!(fs.lookup("absalias/f"), Lookup::Inside { kind: Kind::File });
    }

    #[test]
    fn hard_linked_files_are_told_apart() {
        let (tmp, mut fs) = root();
        std::fs::write(tmp.path().join("outside"), "x").expect("write");
        std::fs::hard_link(tmp.path().join("outside"), fs.root().join("h")).expect("link");
        assert_eq!(fs.lookup("h"), Lookup::Inside { kind: Kind::Linked });
    }

    #[test]
    fn symlink_loops_are_refused() {
        let (_tmp, mut fs) = root();
        symlink("b", fs.root().join("a")).expect("symlink");
        symlink("a", fs.root().join("b")).expect("symlink");
        assert!(matches!(fs.lookup("a"), Lookup::Escapes { .. }));
    }

    #[test]
    fn capped_reads_refuse_escaping_symlinks_and_big_files() {
        let (tmp, fs) = root();
        std::fs::write(tmp.path().join("secret"), "s").expect("write");
        symlink(tmp.path().join("secret"), fs.root().join("s")).expect("symlink");
        assert!(fs.read_capped("s", 10).is_err());
        std::fs::write(fs.root().join("big"), "0123456789x").expect("write");
        assert_eq!(fs.read_capped("big", 10).ok().flatten(), None);
        assert_eq!(
            fs.read_capped("big", 11).ok().flatten().as_deref(),
            Some("0123456789x")
        );
        std::fs::create_dir(fs.root().join("d")).expect("mkdir");
        assert!(fs.read_capped("d", 10).is_err());
    }
}
