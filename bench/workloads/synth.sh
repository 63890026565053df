#!/usr/bin/env bash
# The synthetic workload of the scale figure (bench/run.py).
#
#   bash bench/workloads/synth.sh N             generate and build it (idempotent)
#   bash bench/workloads/synth.sh verify N PROG check a program aotc built from it
#
# Setup writes bench/work/synth/N/: synth.c (bench/workloads/synth.py N),
# synth.bc (clang-14 -emit-llvm -O0 -Xclang -disable-O0-optnone, the input
# for aotc), and ref, the same C built by clang-14 directly, whose output
# is the expected one. Verify runs PROG and compares its output with ref's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work="$here/../work/synth"

if [[ ${1:-} == verify ]]; then
  [[ $# == 3 ]] || { echo "usage: synth.sh verify N PROG" >&2; exit 2; }
  dir="$work/$2"
  expected=$("$dir/ref")
  actual=$("$3")
  if [[ "$expected" != "$actual" ]]; then
    echo "synth $2: \`$3\` printed \`$actual\`, expected \`$expected\` (from clang-14 directly)" >&2
    exit 1
  fi
  exit 0
fi

[[ $# == 1 && $1 =~ ^[0-9]+$ ]] || { echo "usage: synth.sh N | synth.sh verify N PROG" >&2; exit 2; }
n=$1
dir="$work/$n"
mkdir -p "$dir"
python3 "$here/synth.py" "$n" > "$dir/synth.c.new"
# Rebuild only when the generated text changed (or a product is missing).
if cmp -s "$dir/synth.c.new" "$dir/synth.c" && [[ -f "$dir/synth.bc" && -x "$dir/ref" ]]; then
  rm "$dir/synth.c.new"
  exit 0
fi
mv "$dir/synth.c.new" "$dir/synth.c"
clang-14 -emit-llvm -c -O0 -Xclang -disable-O0-optnone "$dir/synth.c" -o "$dir/synth.bc.new"
clang-14 -O0 "$dir/synth.c" -o "$dir/ref.new"
mv "$dir/synth.bc.new" "$dir/synth.bc"
mv "$dir/ref.new" "$dir/ref"
