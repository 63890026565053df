#!/usr/bin/env bash
# Sets up a fresh machine and runs the main job on the bundled example:
# `aotc` compiles examples/hello/hello.ll and writes the tool commands it
# would have run to a log, `replay` checks every command against the Linux
# policy and runs them, and the program they built runs. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if [[ -f scripts/build-plugins.sh ]]; then
  bash scripts/build-plugins.sh
fi
cargo build --workspace --bins --locked
# Where cargo put the binaries: `CARGO_TARGET_DIR` if set, else `target`.
bin=${CARGO_TARGET_DIR:-target}/debug

out=examples/hello/out
rm -rf "$out"
mkdir -p "$out"

# Runs one step of the job, showing it first.
step() {
  local title=$1
  shift
  echo "== $title"
  echo "\$ $*"
  "$@"
}

step "aotc: compile the example and write its tool commands to a log" \
  "$bin/aotc" examples/hello/hello.ll -o "$out/hello" --log "$out/log.json"
step "replay check: audit every command against the Linux policy" \
  "$bin/replay" check --policy policies/linux.toml "$out/log.json"
step "replay: check again, then run the tools one at a time" \
  "$bin/replay" --policy policies/linux.toml "$out/log.json"
step "run the program the tools built" "$out/hello"
echo "== done"
