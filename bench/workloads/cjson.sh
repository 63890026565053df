#!/usr/bin/env bash
# The real-build workload of figure 11: Debian's cJSON source package
# (`apt-get source cjson`, as tests/real-projects.sh fetches it),
# configured by its own CMake for Ninja and clang-14 (Release, its tests
# on) in DIR/build, with `ninja -t compdb` in DIR/build/compdb.json and the
# imported log in DIR/replay.log.json. Nothing is built.
#
#   bash bench/workloads/cjson.sh DIR REPLAY
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
dir=$1 replay=$2
source scripts/debsrc.sh
src=$(fetch cjson "$repo/bench/work/debsrc")
rm -rf "$dir"
mkdir -p "$(dirname "$dir")"
cp -a "$src" "$dir"
cmake -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DENABLE_CJSON_TEST=ON -S "$dir" -B "$dir/build" >/dev/null
(cd "$dir/build" && ninja -t compdb >compdb.json)
(cd "$dir" && "$replay" import compdb build/compdb.json --root . --policy "$repo/policies/linux-cc.toml" >/dev/null)
