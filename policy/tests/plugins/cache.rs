//! The compiled-module cache: a second load is a hit (a fresh host, as in a
//! second `replay` run), a damaged entry is a miss that gets replaced, and a
//! directory someone else could write to is refused.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use policy::plugin::{CacheOutcome, HostError, PluginHost};

use super::support::{log, platform, spec, Fixture};

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    entries
}

#[test]
fn second_load_hits_the_cache() {
    let fixture = Fixture::new();
    let cache = fixture.path().join("cache");
    let good = spec("good", fixture.good());

    let first = PluginHost::new(Some(cache.clone())).unwrap();
    let plugin = first.load(&good).unwrap();
    assert_eq!(plugin.cache_outcome(), &CacheOutcome::Stored);
    let stored = entries(&cache);
    assert_eq!(stored.len(), 1, "{stored:?}");
    let name = stored[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(name.starts_with(plugin.sha256()), "{name}");
    assert!(name.ends_with(".cwasm"), "{name}");
    let mode = std::fs::metadata(&cache).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    let second = PluginHost::new(Some(cache.clone())).unwrap();
    let cached = second.load(&good).unwrap();
    assert_eq!(cached.cache_outcome(), &CacheOutcome::Hit);
    assert_eq!(entries(&cache), stored, "a hit writes nothing");
    assert_eq!(
        cached.evaluate(&platform(), &log()).unwrap(),
        plugin.evaluate(&platform(), &log()).unwrap()
    );
}

#[test]
fn damaged_entry_is_a_miss_and_is_replaced() {
    let fixture = Fixture::new();
    let cache = fixture.path().join("cache");
    let good = spec("good", fixture.good());
    PluginHost::new(Some(cache.clone()))
        .unwrap()
        .load(&good)
        .unwrap();
    let entry = entries(&cache).pop().unwrap();
    std::fs::write(&entry, b"not a compiled module").unwrap();

    let host = PluginHost::new(Some(cache.clone())).unwrap();
    let plugin = host.load(&good).unwrap();
    assert_eq!(plugin.cache_outcome(), &CacheOutcome::Stored);
    assert!(plugin.evaluate(&platform(), &log()).is_ok());
    assert_ne!(std::fs::read(&entry).unwrap(), b"not a compiled module");
    assert_eq!(
        PluginHost::new(Some(cache))
            .unwrap()
            .load(&good)
            .unwrap()
            .cache_outcome(),
        &CacheOutcome::Hit
    );
}

#[test]
fn entry_writable_by_others_is_ignored() {
    let fixture = Fixture::new();
    let cache = fixture.path().join("cache");
    let good = spec("good", fixture.good());
    PluginHost::new(Some(cache.clone()))
        .unwrap()
        .load(&good)
        .unwrap();
    let entry = entries(&cache).pop().unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o666)).unwrap();
    let plugin = PluginHost::new(Some(cache)).unwrap().load(&good).unwrap();
    assert_eq!(plugin.cache_outcome(), &CacheOutcome::Stored);
    let mode = std::fs::metadata(&entry).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the replacement is private");
}

#[test]
fn different_modules_get_different_entries() {
    let fixture = Fixture::new();
    let cache = fixture.path().join("cache");
    let host = PluginHost::new(Some(cache.clone())).unwrap();
    host.load(&spec("good", fixture.good())).unwrap();
    host.load(&spec("other", fixture.writes("other", "{}")))
        .unwrap();
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn world_writable_cache_dir_is_refused() {
    let fixture = Fixture::new();
    let cache = fixture.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
    let error = PluginHost::new(Some(cache.clone())).unwrap_err();
    assert!(
        matches!(&error, HostError::InsecureCacheDir { path, .. } if path == &cache),
        "{error}"
    );
    assert!(
        error.to_string().contains("writable by group or others"),
        "{error}"
    );
}

#[test]
fn without_a_cache_dir_nothing_is_cached() {
    let fixture = Fixture::new();
    let plugin = PluginHost::new(None)
        .unwrap()
        .load(&spec("good", fixture.good()))
        .unwrap();
    assert_eq!(plugin.cache_outcome(), &CacheOutcome::Disabled);
}
