#!/usr/bin/env bash
# The real workload of the benchmarks (bench/run.py): SQLite's amalgamation
# and a small driver program of ours (demo.c).
#
#   bash bench/workloads/sqlite.sh              fetch and build it (idempotent)
#   bash bench/workloads/sqlite.sh verify PROG  check a program aotc built from it
#   bash bench/workloads/sqlite.sh edit         build the one-function edit (below)
#
# Setup fetches the npm package better-sqlite3 with `npm pack` (it ships the
# amalgamation under deps/sqlite3/; the version is pinned below, override
# with SQLITE_NPM_SPEC), then writes bench/work/sqlite/: sqlite3.bc and
# demo.bc (clang-14 -emit-llvm -O0 -Xclang -disable-O0-optnone, the inputs
# for aotc) and ref, the same program built by clang-14 directly. Verify
# runs PROG and compares its output with demo.expected (checked in) and
# with ref's.
#
# Edit (the action cache's figure, after setup) writes bench/work/sqlite/edit/:
# sqlite3.c with ONE function body changed (sqlite3_libversion_number()
# returns SQLITE_VERSION_NUMBER + 1; demo.c never calls it, so verify
# still passes) and its sqlite3.bc, built exactly as sqlite3.bc is (same
# flags, same file name, so nothing else in the bitcode differs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work="$here/../work/sqlite"
spec=${SQLITE_NPM_SPEC:-better-sqlite3@12.11.1}
# No threads and no dlopen, so the program links with libm alone.
defines=(-DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION)

if [[ ${1:-} == verify ]]; then
  [[ $# == 2 ]] || { echo "usage: sqlite.sh verify PROG" >&2; exit 2; }
  actual=$("$2")
  for expected in "$here/demo.expected" "$work/ref.out"; do
    if ! diff -u "$expected" <(printf '%s\n' "$actual") >&2; then
      echo "sqlite: \`$2\` printed something else than \`$expected\`" >&2
      exit 1
    fi
  done
  exit 0
fi
if [[ ${1:-} == edit ]]; then
  [[ -f $work/sqlite3.c && -f $work/sqlite3.h ]] || { echo "sqlite: run \`sqlite.sh\` (setup) first" >&2; exit 2; }
  mkdir -p "$work/edit"
  cd "$work/edit"
  if [[ ! -f sqlite3.bc || ../sqlite3.c -nt sqlite3.bc ]]; then
    sed 's/^\(SQLITE_API int sqlite3_libversion_number(void){ return SQLITE_VERSION_NUMBER\); }$/\1 + 1; }/' \
      ../sqlite3.c > sqlite3.c
    changed=$(diff ../sqlite3.c sqlite3.c | grep -c '^>' || true)
    [[ $changed == 1 ]] || { echo "sqlite: the edit changed $changed lines, not 1" >&2; exit 1; }
    cp ../sqlite3.h .
    clang-14 -emit-llvm -c -O0 -Xclang -disable-O0-optnone "${defines[@]}" sqlite3.c -o sqlite3.bc.new
    mv sqlite3.bc.new sqlite3.bc
  fi
  exit 0
fi
[[ $# == 0 ]] || { echo "usage: sqlite.sh | sqlite.sh verify PROG | sqlite.sh edit" >&2; exit 2; }

mkdir -p "$work"
cd "$work"
if [[ ! -f sqlite3.c || "$(cat spec 2>/dev/null)" != "$spec" ]]; then
  rm -rf pack && mkdir pack
  (cd pack && npm pack --silent "$spec" >/dev/null)
  tar -xzf pack/*.tgz -C pack package/deps/sqlite3/sqlite3.c package/deps/sqlite3/sqlite3.h
  mv pack/package/deps/sqlite3/sqlite3.c pack/package/deps/sqlite3/sqlite3.h .
  rm -rf pack sqlite3.bc demo.bc ref ref.out
  echo "$spec" > spec
fi
if [[ ! -f sqlite3.bc ]]; then
  clang-14 -emit-llvm -c -O0 -Xclang -disable-O0-optnone "${defines[@]}" sqlite3.c -o sqlite3.bc.new
  mv sqlite3.bc.new sqlite3.bc
fi
if [[ ! -f demo.bc || "$here/demo.c" -nt demo.bc ]]; then
  clang-14 -emit-llvm -c -O0 -Xclang -disable-O0-optnone -I. "$here/demo.c" -o demo.bc.new
  mv demo.bc.new demo.bc
fi
if [[ ! -x ref || "$here/demo.c" -nt ref ]]; then
  clang-14 -O0 "${defines[@]}" -I. sqlite3.c "$here/demo.c" -lm -o ref.new
  mv ref.new ref
  ./ref > ref.out
fi
