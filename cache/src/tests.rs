//! The store, on real files in temporary directories.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::*;

/// A temporary cache, work root and staging directory.
struct Fixture {
    _tmp: tempfile::TempDir,
    cache: PathBuf,
    work: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("cache");
    let work = tmp.path().join("work");
    fs::create_dir(&work).expect("work");
    Fixture {
        _tmp: tmp,
        cache,
        work,
    }
}

fn key(n: u8) -> Digest {
    Digest::of(&[n])
}

/// Writes `outputs` (path, content, executable) under the work root and
/// makes the record of a run that produced them.
fn record(f: &Fixture, outputs: &[(&str, &[u8], bool)]) -> Record {
    let mut produced = Vec::new();
    for (path, content, executable) in outputs {
        let file = f.work.join("made").join(path);
        fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
        fs::write(&file, content).expect("write");
        let mode = if *executable { 0o700 } else { 0o600 };
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).expect("chmod");
        produced.push(ProducedFile {
            path: (*path).to_owned(),
            file,
        });
    }
    Record {
        outputs: produced,
        stdout: b"out\n".to_vec(),
        stderr: b"warning: x\n".to_vec(),
        exit_code: 0,
        cost: Cost {
            wall_ms: 1200,
            cpu_ms: 1100,
            peak_rss_bytes: 123_456_789,
        },
        read_set: Vec::new(),
    }
}

fn stage(f: &Fixture, name: &str) -> PathBuf {
    let dir = f.work.join(name);
    fs::create_dir_all(&dir).expect("stage");
    dir
}

/// Every file and directory under `dir`, relative.
fn listing(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for item in fs::read_dir(&d).expect("read_dir") {
            let path = item.expect("item").path();
            out.push(
                path.strip_prefix(dir)
                    .expect("prefix")
                    .display()
                    .to_string(),
            );
            if path.is_dir() {
                todo.push(path);
            }
        }
    }
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("meta").mode() & 0o7777
}

/// Declared outputs, as a lookup takes them.
fn outs(paths: &[&str]) -> Vec<String> {
    paths.iter().map(|p| (*p).to_owned()).collect()
}

fn hit(outcome: Lookup) -> Hit {
    match outcome {
        Lookup::Hit(hit) => hit,
        Lookup::Miss(reason) => panic!("expected a hit, got a miss: {reason}"),
    }
}

fn miss(outcome: Lookup) -> MissReason {
    match outcome {
        Lookup::Hit(_) => panic!("expected a miss"),
        Lookup::Miss(reason) => reason,
    }
}

fn blob_file(cache: &Path, digest: &Digest) -> PathBuf {
    cache.join("cas").join(&digest.hash[..2]).join(&digest.hash)
}

/// Flips the first byte of a blob (blobs are stored read-only).
fn flip(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).expect("chmod");
    let mut bytes = fs::read(path).expect("read");
    bytes[0] ^= 1;
    fs::write(path, bytes).expect("write");
}

#[test]
fn a_stored_entry_hits_and_restores_identical_outputs_with_modes() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    assert_eq!(mode(&f.cache), 0o700);
    let rec = record(
        &f,
        &[
            ("out/a.o", b"object", false),
            ("bin/tool", b"\x7fELF", true),
        ],
    );
    let entry = store.put(&key(1), &rec).expect("put");
    assert_eq!(entry.cost.peak_rss_bytes, 123_456_789);

    let out = stage(&f, "stage1");
    let got = hit(store
        .lookup(&key(1), &out, &outs(&["out/a.o", "bin/tool"]))
        .expect("lookup"));
    assert_eq!(got.stdout, b"out\n");
    assert_eq!(got.stderr, b"warning: x\n");
    assert_eq!(fs::read(out.join("out/a.o")).expect("a.o"), b"object");
    assert_eq!(fs::read(out.join("bin/tool")).expect("tool"), b"\x7fELF");
    assert_eq!(mode(&out.join("out/a.o")), 0o644);
    assert_eq!(mode(&out.join("bin/tool")), 0o755);
    assert_eq!(listing(&out), ["bin", "bin/tool", "out", "out/a.o"]);

    // A fresh copy: not the blob's inode, and changing it leaves the blob.
    let blob = blob_file(&f.cache, &entry.outputs[0].digest);
    let restored = out.join("out/a.o");
    assert_ne!(
        fs::metadata(&blob).expect("blob").ino(),
        fs::metadata(&restored).expect("restored").ino()
    );
    fs::write(&restored, b"changed").expect("write");
    assert_eq!(fs::read(&blob).expect("blob"), b"object");

    let stats = store.stats().expect("stats");
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.misses, 0);
    assert_eq!(stats.bytes_saved, 10);
    assert_eq!(stats.ms_saved, 1200);
    assert!(stats.bytes > 10);
}

#[test]
fn an_unknown_key_misses_and_writes_nothing() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let out = stage(&f, "stage");
    assert_eq!(
        miss(
            store
                .lookup(&key(9), &out, &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::NoEntry
    );
    assert!(listing(&out).is_empty());
    assert_eq!(store.stats().expect("stats").misses, 1);
}

#[test]
fn a_tampered_blob_is_a_corrupt_miss_evicted_counted_and_nothing_is_left() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let rec = record(
        &f,
        &[("a.o", b"first", false), ("sub/b.o", b"second", false)],
    );
    let entry = store.put(&key(1), &rec).expect("put");
    let bad = entry.outputs[1].digest.clone();
    flip(&blob_file(&f.cache, &bad));

    let out = stage(&f, "stage");
    let reason = miss(
        store
            .lookup(&key(1), &out, &outs(&["a.o", "sub/b.o"]))
            .expect("lookup"),
    );
    assert_eq!(
        reason,
        MissReason::Corrupt {
            digest: bad.clone()
        }
    );
    assert!(reason.to_string().contains("corrupt"));
    assert!(listing(&out).is_empty(), "left: {:?}", listing(&out));
    assert!(!f.cache.join("ac").join(&key(1).hash).exists());
    assert!(!blob_file(&f.cache, &bad).exists());
    let stats = store.stats().expect("stats");
    assert_eq!((stats.misses, stats.evictions, stats.entries), (1, 1, 0));
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &out, &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::NoEntry
    );
}

#[test]
fn a_tampered_stdout_blob_is_a_miss_too() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let entry = store
        .put(&key(1), &record(&f, &[("a.o", b"x", false)]))
        .expect("put");
    flip(&blob_file(&f.cache, &entry.stdout));
    let out = stage(&f, "stage");
    assert!(matches!(
        miss(
            store
                .lookup(&key(1), &out, &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::Corrupt { .. }
    ));
    assert!(listing(&out).is_empty());
}

#[test]
fn a_changed_or_appearing_read_file_misses() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let header = f.work.join("dep.h");
    fs::write(&header, b"#define A 1").expect("write");
    let absent = f.work.join("probed.h");
    let mut rec = record(&f, &[("a.o", b"x", false)]);
    rec.read_set = vec![
        ReadFile {
            path: header.clone(),
            digest: Some(store.digest_file(&header).expect("digest")),
            listing: false,
        },
        ReadFile {
            path: absent.clone(),
            digest: None,
            listing: false,
        },
    ];
    store.put(&key(1), &rec).expect("put");
    let out = stage(&f, "s1");
    hit(store
        .lookup(&key(1), &out, &outs(&["a.o"]))
        .expect("lookup"));

    fs::write(&header, b"#define A 2").expect("write");
    let out = stage(&f, "s2");
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &out, &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::ReadChanged {
            path: header.clone()
        }
    );
    assert!(listing(&out).is_empty());

    fs::write(&header, b"#define A 1").expect("write");
    hit(store
        .lookup(&key(1), &stage(&f, "s3"), &outs(&["a.o"]))
        .expect("lookup"));
    fs::write(&absent, b"").expect("write");
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s4"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::ReadChanged { path: absent }
    );
}

#[test]
fn failures_and_missing_outputs_are_never_stored() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let mut rec = record(&f, &[("a.o", b"x", false)]);
    rec.exit_code = 1;
    assert!(matches!(
        store.put(&key(1), &rec),
        Err(PutError::NonZeroExit { code: 1 })
    ));
    let mut rec = record(&f, &[("a.o", b"x", false)]);
    rec.outputs.push(ProducedFile {
        path: "b.o".into(),
        file: f.work.join("nowhere/b.o"),
    });
    assert!(matches!(
        store.put(&key(1), &rec),
        Err(PutError::MissingOutput { .. })
    ));
    let mut rec = record(&f, &[("a.o", b"x", false)]);
    rec.outputs[0].path = "../a.o".into();
    assert!(matches!(
        store.put(&key(1), &rec),
        Err(PutError::BadPath { .. })
    ));
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::NoEntry
    );
}

#[test]
fn an_entry_of_another_format_or_garbage_is_a_miss() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    store
        .put(&key(1), &record(&f, &[("a.o", b"x", false)]))
        .expect("put");
    let path = f.cache.join("ac").join(&key(1).hash);
    let text = fs::read_to_string(&path).expect("entry");
    let other = text.replacen(&format!("\"format\":{FORMAT_VERSION}"), "\"format\":99", 1);
    assert_ne!(text, other);
    fs::write(&path, other).expect("write");
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s1"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::OtherFormat { found: 99 }
    );
    assert!(!path.exists());
    fs::write(&path, b"{not json").expect("write");
    assert!(matches!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s2"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::BadEntry { .. }
    ));
    // An entry copied under another key is not trusted.
    store
        .put(&key(2), &record(&f, &[("a.o", b"x", false)]))
        .expect("put");
    fs::copy(f.cache.join("ac").join(&key(2).hash), &path).expect("copy");
    assert!(matches!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s3"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::BadEntry { .. }
    ));
}

#[test]
fn a_cache_dir_others_can_write_is_refused() {
    let f = fixture();
    fs::create_dir(&f.cache).expect("mkdir");
    fs::set_permissions(&f.cache, fs::Permissions::from_mode(0o770)).expect("chmod");
    let err = Store::open(&f.cache, 1).expect_err("group-writable");
    assert!(matches!(err, OpenError::Writable { mode: 0o770, .. }));
    assert!(err.to_string().contains("chmod go-w"), "{err}");
    fs::set_permissions(&f.cache, fs::Permissions::from_mode(0o757)).expect("chmod");
    assert!(matches!(
        Store::open(&f.cache, 1),
        Err(OpenError::Writable { .. })
    ));
    fs::set_permissions(&f.cache, fs::Permissions::from_mode(0o755)).expect("chmod");
    Store::open(&f.cache, 1).expect("a 0755 dir of this user is fine");
    let file = f.work.join("file");
    fs::write(&file, b"").expect("write");
    assert!(matches!(
        Store::open(&file, 1),
        Err(OpenError::NotADirectory { .. }) | Err(OpenError::Io { .. })
    ));
}

#[test]
fn a_cache_dir_of_another_user_is_refused() {
    // Only root can make a directory another user owns.
    if nix::unistd::geteuid().as_raw() != 0 {
        return;
    }
    let f = fixture();
    fs::create_dir(&f.cache).expect("mkdir");
    nix::unistd::chown(&f.cache, Some(nix::unistd::Uid::from_raw(65534)), None).expect("chown");
    assert!(matches!(
        Store::open(&f.cache, 1),
        Err(OpenError::OtherOwner { owner: 65534, .. })
    ));
}

#[test]
fn concurrent_stores_and_lookups_of_one_key_all_succeed() {
    let f = fixture();
    Store::open(&f.cache, 1 << 30).expect("open");
    let rec = record(&f, &[("a.o", &[7u8; 100_000], false), ("b.o", b"b", true)]);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let cache = f.cache.clone();
            let rec = rec.clone();
            let work = f.work.clone();
            std::thread::spawn(move || {
                // A Store each, as separate processes would have.
                let store = Store::open(&cache, 1 << 30).expect("open");
                for i in 0..15 {
                    store.put(&key(1), &rec).expect("put");
                    let out = work.join(format!("t{t}-{i}"));
                    fs::create_dir(&out).expect("stage");
                    match store
                        .lookup(&key(1), &out, &outs(&["a.o", "b.o"]))
                        .expect("lookup")
                    {
                        Lookup::Hit(_) => {
                            assert_eq!(fs::read(out.join("a.o")).expect("a.o"), [7u8; 100_000]);
                        }
                        Lookup::Miss(reason) => panic!("miss under concurrency: {reason}"),
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("thread");
    }
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let stats = store.stats().expect("stats");
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 60, 0));
    assert!(store.verify().expect("verify").bad.is_empty());
}

#[test]
fn over_the_cap_the_never_read_entry_goes_first_then_the_least_recent() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let size = |s: &Store| s.stats().expect("stats").bytes;
    for n in 1..=3u8 {
        let content = vec![n; 4000];
        store
            .put(&key(n), &record(&f, &[("o", &content, false)]))
            .expect("put");
        std::thread::sleep(Duration::from_millis(20));
    }
    let three = size(&store);
    // 1 and 3 are read (1 first); 2 never is.
    hit(store
        .lookup(&key(1), &stage(&f, "a"), &outs(&["o"]))
        .expect("lookup"));
    std::thread::sleep(Duration::from_millis(20));
    hit(store
        .lookup(&key(3), &stage(&f, "b"), &outs(&["o"]))
        .expect("lookup"));

    // A cap that holds three entries but not four: storing 4 evicts one.
    let capped = Store::open(&f.cache, three + 100).expect("open");
    capped
        .put(&key(4), &record(&f, &[("o", &[4u8; 4000], false)]))
        .expect("put");
    let present = |n: u8| f.cache.join("ac").join(&key(n).hash).exists();
    assert!(!present(2), "the never-read entry is evicted first");
    assert!(present(1) && present(3) && present(4));
    assert!(size(&capped) <= three + 100);
    // 4 is new and never read, so it is the next to go; then 1.
    let tighter = Store::open(&f.cache, three * 2 / 3 - 100).expect("open");
    let report = tighter.gc().expect("gc");
    assert_eq!(report.evicted, 2);
    assert!(!present(4) && !present(1) && present(3));
    assert_eq!(tighter.stats().expect("stats").evictions, 3);
    hit(tighter
        .lookup(&key(3), &stage(&f, "c"), &outs(&["o"]))
        .expect("lookup"));
}

#[test]
fn gc_removes_blobs_no_entry_names() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let entry = store
        .put(&key(1), &record(&f, &[("a.o", b"kept", false)]))
        .expect("put");
    let orphan = Digest::of(b"orphan");
    let path = blob_file(&f.cache, &orphan);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    fs::write(&path, b"orphan").expect("write");
    let report = store.gc().expect("gc");
    assert_eq!((report.evicted, report.blobs_removed), (0, 1));
    assert!(!path.exists());
    assert!(blob_file(&f.cache, &entry.outputs[0].digest).exists());
    hit(store
        .lookup(&key(1), &stage(&f, "s"), &outs(&["a.o"]))
        .expect("lookup"));
}

#[test]
fn verify_finds_a_flipped_byte_and_evicts_its_entry() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let bad = store
        .put(&key(1), &record(&f, &[("a.o", b"one", false)]))
        .expect("put");
    store
        .put(&key(2), &record(&f, &[("a.o", b"two", false)]))
        .expect("put");
    let clean = store.verify().expect("verify");
    assert!(clean.bad.is_empty() && clean.evicted == 0);
    let path = blob_file(&f.cache, &bad.outputs[0].digest);
    flip(&path);
    let report = store.verify().expect("verify");
    assert_eq!(report.bad, vec![path]);
    assert_eq!(report.evicted, 1);
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s1"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::NoEntry
    );
    hit(store
        .lookup(&key(2), &stage(&f, "s2"), &outs(&["a.o"]))
        .expect("lookup"));
}

#[test]
fn clear_empties_the_store_and_the_counters() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    store
        .put(&key(1), &record(&f, &[("a.o", b"x", false)]))
        .expect("put");
    hit(store
        .lookup(&key(1), &stage(&f, "s"), &outs(&["a.o"]))
        .expect("lookup"));
    store.clear().expect("clear");
    let stats = store.stats().expect("stats");
    assert_eq!(stats, Stats::default());
    assert_eq!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "t"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::NoEntry
    );
}

#[test]
fn a_key_from_a_spec_round_trips_through_the_store() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let src = f.work.join("a.c");
    fs::write(&src, b"int a;").expect("write");
    let spec = ActionSpec {
        program_digest: Digest::of(b"cc"),
        argv: vec!["cc".into(), "-c".into(), "a.c".into()],
        cwd: ".".into(),
        platform: host_platform(),
        inputs: vec![InputFile {
            path: "a.c".into(),
            digest: store.digest_file(&src).expect("digest"),
            executable: false,
        }],
        outputs: vec!["a.o".into()],
        ..ActionSpec::default()
    };
    let key = spec.key().expect("key");
    store
        .put(&key.action, &record(&f, &[("a.o", b"obj", false)]))
        .expect("put");
    hit(store
        .lookup(&key.action, &stage(&f, "s"), &outs(&["a.o"]))
        .expect("lookup"));
    fs::write(&src, b"int b;").expect("write");
    let mut changed = spec.clone();
    changed.inputs[0].digest = store.digest_file(&src).expect("digest");
    let other = changed.key().expect("key");
    assert_eq!(
        miss(
            store
                .lookup(&other.action, &stage(&f, "t"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::NoEntry
    );
}

#[test]
fn malformed_keys_are_refused() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let evil = Digest {
        hash: "../../etc/passwd".into(),
        size_bytes: 1,
    };
    assert!(matches!(
        store.lookup(&evil, &stage(&f, "s"), &outs(&["a.o"])),
        Err(LookupError::BadKey(_))
    ));
    assert!(matches!(
        store.put(&evil, &Record::default()),
        Err(PutError::BadKey(_))
    ));
}

#[test]
fn the_default_dir_ends_in_replay_actions() {
    if let Some(dir) = default_dir() {
        assert!(dir.ends_with("replay/actions"));
        assert!(dir.is_absolute());
    }
}

/// The work one `replay` process does in the cross-process test: store
/// and look up one key, many times. Runs only in the children that test
/// starts (it returns at once without their environment).
#[test]
#[ignore = "a helper that concurrent_processes_share_one_cache runs in child processes"]
fn process_helper() {
    let (Some(cache), Some(work)) = (
        std::env::var_os("REPLAY_CACHE_TEST_DIR"),
        std::env::var_os("REPLAY_CACHE_TEST_WORK"),
    ) else {
        return;
    };
    let (cache, work) = (PathBuf::from(cache), PathBuf::from(work));
    let store = Store::open(&cache, 1 << 30).expect("open");
    let rec = Record {
        outputs: vec![ProducedFile {
            path: "a.o".into(),
            file: work.join("made/a.o"),
        }],
        stdout: b"hello".to_vec(),
        ..Record::default()
    };
    for i in 0..20 {
        store.put(&key(1), &rec).expect("put");
        let out = work.join(format!("p{}-{i}", std::process::id()));
        fs::create_dir(&out).expect("stage");
        let got = hit(store
            .lookup(&key(1), &out, &outs(&["a.o"]))
            .expect("lookup"));
        assert_eq!(got.stdout, b"hello");
        assert_eq!(fs::read(out.join("a.o")).expect("a.o"), [3u8; 200_000]);
    }
}

#[test]
fn concurrent_processes_share_one_cache() {
    let f = fixture();
    Store::open(&f.cache, 1 << 30).expect("open");
    record(&f, &[("a.o", &[3u8; 200_000], false)]);
    let exe = std::env::current_exe().expect("test binary");
    let children: Vec<_> = (0..3)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["tests::process_helper", "--exact", "--ignored"])
                .env("REPLAY_CACHE_TEST_DIR", &f.cache)
                .env("REPLAY_CACHE_TEST_WORK", &f.work)
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for mut child in children {
        assert!(child.wait().expect("wait").success(), "a child failed");
    }
    let stats = Store::open(&f.cache, 1 << 30)
        .expect("open")
        .stats()
        .expect("stats");
    assert_eq!((stats.entries, stats.hits, stats.misses), (1, 60, 0));
}

#[test]
fn an_entry_whose_outputs_are_not_the_commands_is_a_bad_entry() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    store
        .put(&key(1), &record(&f, &[("a.o", b"x", false)]))
        .expect("put");
    let reason = miss(
        store
            .lookup(&key(1), &stage(&f, "s"), &outs(&["a.o", "b.o"]))
            .expect("lookup"),
    );
    assert!(matches!(reason, MissReason::BadEntry { .. }), "{reason:?}");
    assert!(listing(&stage(&f, "s")).is_empty());
}

#[test]
fn a_cache_under_a_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture();
    let open = f.cache.parent().expect("parent").join("open");
    fs::create_dir(&open).expect("mkdir");
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).expect("chmod");
    let refused = Store::open(&open.join("cache"), 1 << 30);
    assert!(
        matches!(refused, Err(crate::OpenError::UnsafeAncestor { .. })),
        "{refused:?}"
    );
    // Sticky, as /tmp is: others cannot rename what is ours.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).expect("chmod");
    assert!(Store::open(&open.join("cache2"), 1 << 30).is_ok());
}

#[test]
fn a_changed_directory_listing_is_a_miss() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let dir = f.cache.parent().expect("parent").join("gcc");
    fs::create_dir_all(dir.join("12")).expect("mkdir");
    let mut rec = record(&f, &[("a.o", b"x", false)]);
    rec.read_set = vec![ReadFile {
        path: dir.clone(),
        digest: Some(crate::store::listing_digest(&dir).expect("listing")),
        listing: true,
    }];
    store.put(&key(1), &rec).expect("put");
    hit(store
        .lookup(&key(1), &stage(&f, "s1"), &outs(&["a.o"]))
        .expect("lookup"));
    fs::create_dir(dir.join("99")).expect("a newer toolchain");
    assert!(matches!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s2"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::ReadChanged { .. }
    ));
}

#[test]
fn a_fifo_where_a_read_file_was_is_a_miss_not_a_hang() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let header = f.cache.parent().expect("parent").join("x.h");
    let mut rec = record(&f, &[("a.o", b"x", false)]);
    rec.read_set = vec![ReadFile {
        path: header.clone(),
        digest: None,
        listing: false,
    }];
    store.put(&key(1), &rec).expect("put");
    let status = std::process::Command::new("mkfifo")
        .arg(&header)
        .status()
        .expect("mkfifo");
    assert!(status.success());
    assert!(matches!(
        miss(
            store
                .lookup(&key(1), &stage(&f, "s"), &outs(&["a.o"]))
                .expect("lookup")
        ),
        MissReason::ReadChanged { .. }
    ));
}

#[test]
fn the_memo_outlives_the_store_and_a_changed_file_is_hashed_again() {
    let f = fixture();
    let lib = f.cache.parent().expect("parent").join("libx.so");
    fs::write(&lib, b"one").expect("write");
    // Settled: the memo remembers only files not changed in the last second.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(10);
    fs::File::options()
        .write(true)
        .open(&lib)
        .and_then(|f| f.set_modified(old))
        .expect("mtime");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let first = store.digest_file(&lib).expect("digest");
    store.save_memo().expect("save");
    let again = Store::open(&f.cache, 1 << 30).expect("open");
    assert_eq!(again.memo().len(), 1, "the digest came back");
    assert_eq!(again.digest_file(&lib).expect("digest"), first);
    fs::write(&lib, b"two").expect("rewrite");
    let changed = again.digest_file(&lib).expect("digest");
    assert_ne!(changed, first, "a new stamp is hashed again");
    assert_eq!(changed, Digest::of(b"two"));
}

/// Regression (a remote's read set names what its server chose): a file
/// whose size is not the one claimed, a FIFO, or a file expected absent
/// was opened and hashed (a big file in full), and nothing bounded the
/// hashing but the file's end.
#[test]
fn a_remote_read_set_is_checked_without_reading_what_cannot_match() {
    let f = fixture();
    let store = Store::open(&f.cache, 1 << 30).expect("open");
    let big = f.work.join("big");
    fs::write(&big, vec![3u8; 8 << 20]).expect("write");
    let fifo = f.work.join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let read = |path: &Path, digest: Option<Digest>| ReadFile {
        path: path.to_owned(),
        digest,
        listing: false,
    };
    let never = || false;
    // The claimed size is not the file's: changed, not one byte read.
    let lying = Digest {
        hash: Digest::of(b"x").hash,
        size_bytes: 1,
    };
    let changed = store
        .remote_read_set_changed(&[read(&big, Some(lying))], &never)
        .expect("in time");
    assert_eq!(changed.as_deref(), Some(big.as_path()));
    for what in [read(&fifo, Some(Digest::of(b""))), read(&big, None)] {
        let changed = store
            .remote_read_set_changed(std::slice::from_ref(&what), &never)
            .expect("in time");
        assert_eq!(changed, Some(what.path.clone()));
    }
    assert_eq!(store.memo().bytes_hashed(), 0, "nothing was hashed");
    // A file that is as claimed is the same; a stop gives up.
    let same = read(&big, Some(Digest::of(&vec![3u8; 8 << 20])));
    let absent = read(&f.work.join("absent"), None);
    let checked = store.remote_read_set_changed(&[same.clone(), absent], &never);
    assert_eq!(checked.expect("in time"), None);
    let fresh = Store::open(&f.cache.join("other"), 1 << 30).expect("open");
    let stopped = fresh.remote_read_set_changed(&[same], &|| true);
    assert_eq!(
        stopped.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::TimedOut)
    );
}
