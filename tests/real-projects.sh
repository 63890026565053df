#!/usr/bin/env bash
# Real C projects through `replay import compdb` and `replay` (issue 18):
# each is brought in as a Debian source package (`apt-get source`, with a
# deb-src entry derived from this machine's own apt sources), configured
# with its own build system (CMake + Ninja, clang-14), built twice: once by
# Ninja (the reference), once by `replay` from the imported `ninja -t
# compdb`. Each build must pass the project's own tests (`ctest`), and the
# same database with an injected attack must be refused with nothing run.
#
#   bash tests/real-projects.sh [WORK_DIR]     (default: target/real-projects)
#
# Needs root (or sudo) for the deb-src entry and `apt-get update`, the
# packages of scripts/install-deps.sh, and `cargo build --workspace --bins`
# first. The third-party sources stay in WORK_DIR, never in the repository.
# Projects: cjson static and shared (its 19 tests), jansson (its 213).
# Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-$repo/target/real-projects}
replay=${CARGO_TARGET_DIR:-$repo/target}/debug/replay
policy=$repo/policies/linux-cc.toml
export REPLAY_NO_CACHE=1
[[ -x $replay ]] || { echo "real-projects: build replay first (cargo build --workspace --bins)" >&2; exit 2; }
bash scripts/install-deps.sh >/dev/null

# retry, deb_src and fetch: shared with the bench (bench/workloads/cjson.sh).
source scripts/debsrc.sh

# A fresh copy of the source at $2, configured by CMake for Ninja in build/.
configure() {
  local src=$1 tree=$2
  shift 2
  rm -rf "$tree"
  cp -a "$src" "$tree"
  cmake -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=Release "$@" \
    -S "$tree" -B "$tree/build" >"$tree.configure.log" 2>&1
  (cd "$tree/build" && ninja -t compdb >compdb.json)
}

built() { find "$1/build" -name '*.o' -o -name '*.a' | wc -l; }

# project PACKAGE VARIANT CMAKE_ARGS...: VARIANT names the trees
# (`cjson-shared`); the attacks are injected into the `static` variant.
project() {
  local package=$1 variant=$2
  shift 2
  local name=$package-$variant
  local src
  src=$(fetch "$package" "$work")
  echo "== $name ($(basename "$src"))"
  # The reference: Ninja builds it and runs its tests.
  configure "$src" "$work/$name-ninja" "$@"
  ninja -C "$work/$name-ninja/build" >"$work/$name-ninja.build.log"
  (cd "$work/$name-ninja/build" && ctest --output-on-failure >"$work/$name-ninja.ctest.log")
  echo "ninja:  $(tail -n 3 "$work/$name-ninja.ctest.log" | grep 'tests passed')"

  # The same through replay: import, check, run, then the project's tests.
  local tree=$work/$name-replay
  configure "$src" "$tree" "$@"
  (cd "$tree" && "$replay" import compdb build/compdb.json --root . --policy "$policy" >"$tree.import.log")
  grep -E '^(imported|left out)' "$tree.import.log" | sed 's/^/import: /'
  (cd "$tree" && "$replay" --policy "$policy" replay.log.json >"$tree.run.log" 2>&1) ||
    { tail -n 20 "$tree.run.log"; exit 1; }
  echo "replay: $(grep '^total:' "$tree.run.log")"
  (cd "$tree/build" && ctest --output-on-failure >"$tree.ctest.log") ||
    { tail -n 30 "$tree.ctest.log"; exit 1; }
  echo "replay: $(tail -n 3 "$tree.ctest.log" | grep 'tests passed')"
  if [[ $variant == shared ]]; then
    # The tests ran against the shared library replay linked, through the
    # soname links replay made (built-in `symlink` commands).
    local lib
    lib=$(find "$tree/build" -maxdepth 1 -name "lib$package.so.*.*" -type f | head -n1)
    [[ -n $lib && -L $tree/build/lib$package.so ]] ||
      { echo "real-projects: no shared library and soname links in $tree/build" >&2; exit 1; }
    local soname
    soname=$(readelf -d "$lib" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')
    [[ -L $tree/build/$soname && $(readlink -f "$tree/build/$soname") == "$lib" ]] ||
      { echo "real-projects: $soname does not lead to $lib" >&2; exit 1; }
    local test_program
    test_program=$(find "$tree/build" -path '*test*' -type f -perm -u+x -newer "$lib" | head -n1)
    ldd "$test_program" | grep -q "$tree/build/$soname" ||
      { echo "real-projects: $test_program does not load $tree/build/$soname" >&2; ldd "$test_program" >&2; exit 1; }
    echo "shared: $(basename "$test_program") loads $soname -> $(basename "$lib"), made by replay"
    return
  fi

  # One injected attack each: a linker plugin in a link, a compiler
  # plugin or a search directory for clang's own programs in a compile.
  # Refused at import (exit 3) and by replay, and nothing is built.
  for attack in '-Wl,-plugin,/tmp/x.so' '-fplugin=/tmp/x.so' '-B/tmp'; do
    local bad=$work/$name-attack
    configure "$src" "$bad" "$@"
    if [[ $attack == -Wl* ]]; then
      # The first link step: `: && /usr/bin/clang-14 ...`.
      sed -i "0,\|: \&\& /usr/bin/clang-14 |s||&$attack |" "$bad/build/compdb.json"
    else
      sed -i "0,\| -c |s|| $attack -c |" "$bad/build/compdb.json"
    fi
    grep -q -- "$attack" "$bad/build/compdb.json" || { echo "real-projects: could not inject $attack" >&2; exit 1; }
    local code=0
    (cd "$bad" && "$replay" import compdb build/compdb.json --root . --policy "$policy" >"$bad.import.log") || code=$?
    [[ $code -eq 3 ]] || { echo "real-projects: import of $attack exited $code, not 3" >&2; exit 1; }
    code=0
    (cd "$bad" && "$replay" --policy "$policy" replay.log.json >"$bad.run.log" 2>&1) || code=$?
    [[ $code -eq 3 && $(built "$bad") -eq 0 ]] ||
      { echo "real-projects: $attack: replay exited $code, $(built "$bad") files built" >&2; exit 1; }
    echo "attack: $attack refused, nothing built"
  done
}

# cJSON: static library, its tests on; then shared, with its soname links
# (`cmake -E cmake_symlink_library`, imported as built-in `symlink`s), its
# tests run against the replay-built .so.
project cjson static -DBUILD_SHARED_LIBS=OFF -DENABLE_CJSON_TEST=ON
project cjson shared -DBUILD_SHARED_LIBS=ON -DENABLE_CJSON_TEST=ON
# Jansson: static by default; its 213 tests (test suites run through its
# own json_process and unit test programs). No docs (Sphinx).
project jansson static -DJANSSON_BUILD_DOCS=OFF
echo "real-projects: ok"
