//! What a linker reads from the work root, looked at in depth: each input,
//! and each `lib*.so*`/`lib*.a` in its `-L` directories, must be an object
//! or an archive of objects that names no other file.
//!
//! A linker follows more than its arguments. GNU `ld` reads any input that
//! is not an object as a linker script; `ld.lld` follows an object's
//! `.deplibs` section (`SHT_LLVM_DEPENDENT_LIBRARIES`, what `#pragma
//! comment(lib, "x")` produces for ELF) to files nobody declared, and LTO
//! does the same for bitcode's `llvm.dependent-libraries`; a thin archive
//! (`!<thin>`) names its members by any path. [`inspect`] refuses all of
//! these, reading only headers and section tables (never whole files), and
//! [`check_reads`] applies it to a command's [`LinkerReads`], at check time
//! (from the argument rule) and again right before the linker runs (the
//! re-check, [`Resolved::verify_linker_reads`], which is defined here).
//!
//! Files that are too short to be the objects they start like are left
//! alone: a linker cannot read them either, and fails.

use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::rootfs::{Kind, Lookup, RootFs};
use crate::verdict::{LinkerReads, Resolved};

/// `SHT_LLVM_DEPENDENT_LIBRARIES`: the type `ld.lld` recognizes `.deplibs`
/// sections by.
const SHT_LLVM_DEPENDENT_LIBRARIES: u32 = 0x6fff_4c04;

/// The most section headers read from one object (`e_shnum` is 16 bits;
/// extended numbering can claim more).
const MAX_SECTIONS: u64 = 1 << 20;

/// The most archive members looked at in one archive.
const MAX_MEMBERS: u64 = 1 << 20;

/// Why a file may not be given to a linker.
#[derive(Debug)]
pub(crate) enum Problem {
    /// Not an object, archive or bitcode file: read as a linker script.
    Script,
    /// A thin archive: its members are files named by any path.
    Thin,
    /// An ELF object (or an archive member, named) with a `.deplibs`
    /// section.
    Deplibs { member: Option<String> },
    /// Bitcode (or an archive member, named), which LTO links with the
    /// libraries its `llvm.dependent-libraries` names.
    Bitcode { member: Option<String> },
    /// More sections or members than the check reads.
    TooLarge,
    /// A complete ELF header whose section table cannot be read.
    Malformed { member: Option<String> },
    /// The file could not be read.
    Unreadable(io::Error),
}

impl Problem {
    /// The rule a finding about this problem names.
    pub(crate) fn rule(&self) -> &'static str {
        match self {
            Problem::Script => "args.linker-script",
            Problem::Thin => "args.thin-archive",
            Problem::Deplibs { .. } | Problem::Bitcode { .. } => "args.linker-deplibs",
            Problem::TooLarge | Problem::Malformed { .. } | Problem::Unreadable(_) => {
                "args.linker-unreadable"
            }
        }
    }

    /// What is wrong with `path`, for a person.
    pub(crate) fn message(&self, path: &str) -> String {
        let member = |m: &Option<String>| match m {
            Some(m) => format!("member `{m}` of `{path}`"),
            None => format!("`{path}`"),
        };
        match self {
            Problem::Script => format!(
                "`{path}` is not an object, archive or bitcode file, so the linker would read it as a linker script"
            ),
            Problem::Thin => format!(
                "`{path}` is a thin archive: its members are other files, named by any path, that the command does not declare"
            ),
            Problem::Deplibs { member: m } => format!(
                "{} has a `.deplibs` section (`#pragma comment(lib, ...)`): `ld.lld` would also read the files it names, which the command does not declare",
                member(m)
            ),
            Problem::Bitcode { member: m } => format!(
                "{} is bitcode: linked with LTO, it may name libraries (`llvm.dependent-libraries`) the check cannot see",
                member(m)
            ),
            Problem::TooLarge => format!(
                "`{path}` has more sections or members than the check reads ({MAX_SECTIONS})"
            ),
            Problem::Malformed { member: m } => format!(
                "{} has an ELF header whose section table cannot be read",
                member(m)
            ),
            Problem::Unreadable(e) => format!("cannot read the linker input `{path}`: {e}"),
        }
    }

    /// What to do about it.
    pub(crate) fn hint(&self) -> &'static str {
        match self {
            Problem::Script => {
                "link only object files, archives and shared libraries; linker scripts are not allowed"
            }
            Problem::Thin => "use a regular archive (`llvm-ar rc`, without `--thin`)",
            Problem::Deplibs { .. } | Problem::Bitcode { .. } => {
                "build objects without `#pragma comment(lib, ...)` (or strip `.deplibs`), and name libraries with `-l`"
            }
            Problem::TooLarge | Problem::Malformed { .. } | Problem::Unreadable(_) => {
                "linker inputs in the work root must be readable objects, archives or shared libraries"
            }
        }
    }
}

/// Whether a file starting with `head` is an object, an archive or
/// bitcode (see [`OBJECT_MAGIC`]).
pub(crate) fn is_object(head: &[u8]) -> bool {
    OBJECT_MAGIC.iter().any(|m| head.starts_with(m))
}

/// How object files, archives and bitcode start: ELF, `ar` (and thin
/// archives, refused by [`inspect`]), LLVM bitcode (raw and wrapped),
/// Mach-O (both byte orders, 32 and 64 bits, and universal), COFF for
/// x86-64, arm64 and i386, and COFF big objects.
const OBJECT_MAGIC: &[&[u8]] = &[
    ELF_MAGIC,
    AR_MAGIC,
    THIN_MAGIC,
    b"BC\xc0\xde",
    b"\xde\xc0\x17\x0b",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
    b"\x64\x86",
    b"\x64\xaa",
    b"\x4c\x01",
    b"\x00\x00\xff\xff",
];

const ELF_MAGIC: &[u8] = b"\x7fELF";
const AR_MAGIC: &[u8] = b"!<arch>\n";
const THIN_MAGIC: &[u8] = b"!<thin>\n";

fn is_bitcode(head: &[u8]) -> bool {
    head.starts_with(b"BC\xc0\xde") || head.starts_with(b"\xde\xc0\x17\x0b")
}

/// Checks one file a linker will read: an object, archive or bitcode
/// file, not a thin archive, with no `.deplibs` section (in it, or in any
/// member of an archive), and not bitcode. Reads headers only.
pub(crate) fn inspect<R: Read + Seek>(file: R) -> Result<(), Problem> {
    let mut r = BufReader::new(file);
    let head = read_upto(&mut r, 8).map_err(Problem::Unreadable)?;
    if !is_object(&head) {
        return Err(Problem::Script);
    }
    if head.starts_with(THIN_MAGIC) {
        return Err(Problem::Thin);
    }
    if is_bitcode(&head) {
        return Err(Problem::Bitcode { member: None });
    }
    if head.starts_with(ELF_MAGIC) {
        return match elf_deplibs(&mut r, 0) {
            Ok(Elf::Clean) => Ok(()),
            Ok(Elf::Deplibs) => Err(Problem::Deplibs { member: None }),
            Ok(Elf::TooLarge) => Err(Problem::TooLarge),
            Ok(Elf::Malformed) => Err(Problem::Malformed { member: None }),
            Err(e) => Err(Problem::Unreadable(e)),
        };
    }
    if head.starts_with(AR_MAGIC) {
        return archive(&mut r);
    }
    Ok(())
}

/// Reads up to `n` bytes (fewer at the end of the file).
fn read_upto<R: Read>(r: &mut R, n: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    r.by_ref().take(n).read_to_end(&mut out)?;
    Ok(out)
}

/// Walks the members of a regular archive (after its magic), checking
/// each ELF member's sections and refusing bitcode members.
fn archive<R: Read + Seek>(r: &mut R) -> Result<(), Problem> {
    let mut at: u64 = AR_MAGIC.len() as u64;
    for _ in 0..MAX_MEMBERS {
        r.seek(SeekFrom::Start(at)).map_err(Problem::Unreadable)?;
        let header = read_upto(r, 60).map_err(Problem::Unreadable)?;
        if header.len() < 60 || &header[58..60] != b"`\n" {
            // The end, or a malformed archive the linker refuses too.
            return Ok(());
        }
        let name = String::from_utf8_lossy(&header[..16]).trim_end().to_owned();
        let size: u64 = match std::str::from_utf8(&header[48..58])
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(n) => n,
            None => return Ok(()),
        };
        let mut data = at + 60;
        let mut len = size;
        let special = matches!(
            name.as_str(),
            "/" | "//" | "/SYM64/" | "__.SYMDEF" | "__.SYMDEF SORTED" | "/<ECSYMBOLS>/"
        );
        // BSD names: `#1/N`, the name in the first N bytes of the data.
        if let Some(n) = name.strip_prefix("#1/").and_then(|n| n.parse::<u64>().ok()) {
            data += n;
            len = len.saturating_sub(n);
        }
        if !special && len > 0 {
            r.seek(SeekFrom::Start(data)).map_err(Problem::Unreadable)?;
            let head = read_upto(r, 8).map_err(Problem::Unreadable)?;
            let member = Some(name.trim_end_matches('/').to_owned());
            if is_bitcode(&head) {
                return Err(Problem::Bitcode { member });
            }
            if head.starts_with(ELF_MAGIC) {
                match elf_deplibs(r, data) {
                    Ok(Elf::Clean) => {}
                    Ok(Elf::Deplibs) => return Err(Problem::Deplibs { member }),
                    Ok(Elf::TooLarge) => return Err(Problem::TooLarge),
                    Ok(Elf::Malformed) => return Err(Problem::Malformed { member }),
                    Err(e) => return Err(Problem::Unreadable(e)),
                }
            }
        }
        // Each step moves past a 60-byte header: the walk ends.
        at = data + len + ((data + len) & 1);
    }
    Err(Problem::TooLarge)
}

/// What an ELF file's section table says.
enum Elf {
    Clean,
    Deplibs,
    TooLarge,
    Malformed,
}

/// Whether the ELF file at `base` has a `SHT_LLVM_DEPENDENT_LIBRARIES`
/// section. A file shorter than its header is clean (no linker reads it).
fn elf_deplibs<R: Read + Seek>(r: &mut R, base: u64) -> io::Result<Elf> {
    r.seek(SeekFrom::Start(base))?;
    let ident = read_upto(r, 64)?;
    let (Some(&class), Some(&data)) = (ident.get(4), ident.get(5)) else {
        return Ok(Elf::Clean);
    };
    let big = match data {
        1 => false,
        2 => true,
        _ => return Ok(Elf::Malformed),
    };
    let u16_at = |b: &[u8], i: usize| -> Option<u64> {
        let s: [u8; 2] = b.get(i..i + 2)?.try_into().ok()?;
        Some(u64::from(if big {
            u16::from_be_bytes(s)
        } else {
            u16::from_le_bytes(s)
        }))
    };
    let u32_at = |b: &[u8], i: usize| -> Option<u64> {
        let s: [u8; 4] = b.get(i..i + 4)?.try_into().ok()?;
        Some(u64::from(if big {
            u32::from_be_bytes(s)
        } else {
            u32::from_le_bytes(s)
        }))
    };
    let u64_at = |b: &[u8], i: usize| -> Option<u64> {
        let s: [u8; 8] = b.get(i..i + 8)?.try_into().ok()?;
        Some(if big {
            u64::from_be_bytes(s)
        } else {
            u64::from_le_bytes(s)
        })
    };
    // (e_shoff, e_shentsize, e_shnum, entry size, sh_type at, sh_size)
    let layout = match class {
        1 => (
            u32_at(&ident, 32),
            u16_at(&ident, 46),
            u16_at(&ident, 48),
            40u64,
        ),
        2 => (
            u64_at(&ident, 40),
            u16_at(&ident, 58),
            u16_at(&ident, 60),
            64u64,
        ),
        _ => return Ok(Elf::Malformed),
    };
    let (Some(shoff), Some(entsize), Some(shnum), want) = layout else {
        // Shorter than its header: no linker reads it.
        return Ok(Elf::Clean);
    };
    if shoff == 0 {
        return Ok(Elf::Clean);
    }
    if entsize != want {
        return Ok(Elf::Malformed);
    }
    let size_of = |e: &[u8]| -> Option<u64> {
        if class == 1 {
            u32_at(e, 20)
        } else {
            u64_at(e, 32)
        }
    };
    let start = base.checked_add(shoff).ok_or(io::ErrorKind::InvalidData)?;
    r.seek(SeekFrom::Start(start))?;
    let mut entry = vec![0u8; want as usize];
    if r.read_exact(&mut entry).is_err() {
        return Ok(Elf::Malformed);
    }
    // Extended numbering: the count is section 0's `sh_size`.
    let count = if shnum == 0 {
        size_of(&entry).unwrap_or(0)
    } else {
        shnum
    };
    if count > MAX_SECTIONS {
        return Ok(Elf::TooLarge);
    }
    for i in 0..count {
        if i > 0 && r.read_exact(&mut entry).is_err() {
            return Ok(Elf::Malformed);
        }
        if u32_at(&entry, 4) == Some(u64::from(SHT_LLVM_DEPENDENT_LIBRARIES)) {
            return Ok(Elf::Deplibs);
        }
    }
    Ok(Elf::Clean)
}

/// A file a linker would read that it may not.
#[derive(Debug)]
pub(crate) struct Refusal {
    /// The rule broken.
    pub rule: &'static str,
    /// The root-relative path.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: &'static str,
}

impl Refusal {
    fn of(path: &str, problem: &Problem) -> Refusal {
        Refusal {
            rule: problem.rule(),
            path: path.to_owned(),
            message: problem.message(path),
            hint: problem.hint(),
        }
    }
}

/// Whether a directory entry is what `-l` finds: `lib*.so*` or `lib*.a`.
pub(crate) fn is_library_name(name: &str) -> bool {
    name.starts_with("lib")
        && (name.ends_with(".a") || name.ends_with(".so") || name.contains(".so."))
}

/// Checks what a linker will read from the root: each object in
/// `reads.objects` and each library in `reads.library_dirs`, which must be
/// a regular file inside the root (a symlink out of it, to something else
/// than a regular file, or one that leads nowhere is refused, not
/// skipped). `at_check`: when the log is checked, a missing object is
/// left alone (an earlier command makes it) and libraries are checked for
/// what they are, not what they hold (an earlier command may make or
/// change them: their contents are checked right before the linker runs).
/// Every refusal is returned.
pub(crate) fn check_reads(fs: &mut RootFs, reads: &LinkerReads, at_check: bool) -> Vec<Refusal> {
    let missing_ok = at_check;
    let mut out = Vec::new();
    for object in &reads.objects {
        match fs.lookup(object) {
            Lookup::Inside {
                kind: Kind::File | Kind::Linked,
            } => {}
            Lookup::Inside {
                kind: Kind::Missing,
            } if missing_ok => continue,
            // Reported as a path elsewhere at check time; right before a
            // run it is a reason not to run.
            _ if missing_ok => continue,
            _ => {
                out.push(Refusal {
                    rule: "args.linker-unreadable",
                    path: object.clone(),
                    message: format!(
                        "the linker input `{object}` is not a regular file inside the work root"
                    ),
                    hint: "linker inputs in the work root must be regular files",
                });
                continue;
            }
        }
        match fs.open_file(object) {
            Ok(file) => {
                if let Err(p) = inspect(file) {
                    out.push(Refusal::of(object, &p));
                }
            }
            Err(e) => out.push(Refusal::of(object, &Problem::Unreadable(e))),
        }
    }
    for dir in &reads.library_dirs {
        let mut names = fs.list(dir);
        names.sort();
        for name in names.into_iter().filter(|n| is_library_name(n)) {
            let path = if dir == "." {
                name
            } else {
                format!("{dir}/{name}")
            };
            let why = match fs.lookup(&path) {
                Lookup::Escapes { via } => Some(format!(
                    "`{path}` leads out of the work root through `{via}`"
                )),
                Lookup::Inside {
                    kind: Kind::File | Kind::Linked,
                } => None,
                Lookup::Inside {
                    kind: Kind::Missing,
                } => Some(format!("`{path}` is a symlink that leads nowhere")),
                Lookup::Inside { kind: Kind::Dir } => Some(format!("`{path}` is a directory")),
                Lookup::Inside { kind: Kind::Other } => Some(format!(
                    "`{path}` is not a regular file (a fifo, socket or device?)"
                )),
            };
            if let Some(why) = why {
                out.push(Refusal {
                    rule: "args.linker-library",
                    path: path.clone(),
                    message: format!("{why}; `-l` in `{dir}` may find it, so it cannot be checked"),
                    hint: "libraries in `-L` directories inside the work root must be regular objects or archives in the root; remove it",
                });
                continue;
            }
            if at_check {
                continue;
            }
            match fs.open_file(&path) {
                Ok(file) => {
                    if let Err(p) = inspect(file) {
                        out.push(Refusal::of(&path, &p));
                    }
                }
                Err(e) => out.push(Refusal {
                    rule: "args.linker-library",
                    path: path.clone(),
                    message: format!("cannot read `{path}`, which `-l` in `{dir}` may find: {e}"),
                    hint: "libraries in `-L` directories inside the work root must be readable",
                }),
            }
        }
    }
    out
}

impl Resolved {
    /// Checks, now, that every file the linker will read from the root is
    /// an object or a regular archive of objects that names no other file
    /// (GNU ld reads any other file as a linker script; `ld.lld` follows
    /// `.deplibs` sections; thin archives name their members by path), and
    /// that every `lib*.so*`/`lib*.a` in its `-L` directories is a regular
    /// file inside the root that passes the same checks (one that cannot
    /// be read is refused, not skipped). `Err` names the file and the rule.
    /// Files are opened through a handle on `root`, so nothing outside it
    /// is read; only headers and section tables are read.
    pub fn verify_linker_reads(&self, root: &Path) -> Result<(), String> {
        let reads = &self.linker_reads;
        if reads.objects.is_empty() && reads.library_dirs.is_empty() {
            return Ok(());
        }
        let mut fs = RootFs::open(root).map_err(|e| format!("cannot open the work root: {e}"))?;
        match check_reads(&mut fs, reads, false).into_iter().next() {
            None => Ok(()),
            Some(r) => Err(format!("{} [{}]", r.message, r.rule)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A minimal little-endian ELF64 relocatable with `types` as its
    /// sections' types (section 0 is the null section).
    fn elf64(types: &[u32]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(ELF_MAGIC);
        out[4] = 2;
        out[5] = 1;
        out[16] = 1;
        out[40..48].copy_from_slice(&64u64.to_le_bytes());
        out[58..60].copy_from_slice(&64u16.to_le_bytes());
        out[60..62].copy_from_slice(&(types.len() as u16 + 1).to_le_bytes());
        out.extend(vec![0u8; 64]);
        for t in types {
            let mut e = vec![0u8; 64];
            e[4..8].copy_from_slice(&t.to_le_bytes());
            out.extend(e);
        }
        out
    }

    fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = AR_MAGIC.to_vec();
        for (name, data) in members {
            out.extend(
                format!(
                    "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
                    format!("{name}/"),
                    0,
                    0,
                    0,
                    644,
                    data.len()
                )
                .as_bytes(),
            );
            out.extend(*data);
            if data.len() % 2 == 1 {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn deplibs_are_found_by_section_type_in_objects_and_archive_members() {
        assert!(inspect(Cursor::new(elf64(&[1, 2, 3]))).is_ok());
        assert!(matches!(
            inspect(Cursor::new(elf64(&[1, SHT_LLVM_DEPENDENT_LIBRARIES]))),
            Err(Problem::Deplibs { member: None })
        ));
        let clean = elf64(&[1]);
        let dirty = elf64(&[SHT_LLVM_DEPENDENT_LIBRARIES]);
        assert!(inspect(Cursor::new(ar(&[("a.o", &clean), ("odd", b"x")]))).is_ok());
        match inspect(Cursor::new(ar(&[("a.o", &clean), ("b.o", &dirty)]))) {
            Err(Problem::Deplibs { member: Some(m) }) => assert_eq!(m, "b.o"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn thin_archives_scripts_and_bitcode_are_refused_and_stubs_pass() {
        assert!(matches!(
            inspect(Cursor::new(b"!<thin>\n".to_vec())),
            Err(Problem::Thin)
        ));
        assert!(matches!(
            inspect(Cursor::new(b"INPUT(/etc/passwd)".to_vec())),
            Err(Problem::Script)
        ));
        assert!(matches!(
            inspect(Cursor::new(b"BC\xc0\xde\x35\x14".to_vec())),
            Err(Problem::Bitcode { member: None })
        ));
        match inspect(Cursor::new(ar(&[("m.bc", b"BC\xc0\xde")]))) {
            Err(Problem::Bitcode { member: Some(m) }) => assert_eq!(m, "m.bc"),
            other => panic!("{other:?}"),
        }
        // Too short to be what it starts like: no linker reads it.
        assert!(inspect(Cursor::new(ELF_MAGIC.to_vec())).is_ok());
        assert!(inspect(Cursor::new(AR_MAGIC.to_vec())).is_ok());
    }

    #[test]
    fn a_section_table_past_the_end_is_malformed() {
        let mut elf = elf64(&[1]);
        elf.truncate(100);
        assert!(matches!(
            inspect(Cursor::new(elf)),
            Err(Problem::Malformed { .. })
        ));
    }

    #[test]
    fn library_names_are_what_dash_l_finds() {
        assert!(is_library_name("libfoo.so"));
        assert!(is_library_name("libfoo.so.1.2"));
        assert!(is_library_name("libfoo.a"));
        assert!(!is_library_name("foo.so"));
        assert!(!is_library_name("libfoo.txt"));
    }
}
