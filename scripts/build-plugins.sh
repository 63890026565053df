#!/usr/bin/env bash
# Builds the example policy plugins (policies/plugins/, its own cargo
# workspace) for wasm32-wasip1 in release, and copies each module next to
# the policies that name it: policies/plugins/naming.wasm. Idempotent; cargo
# rebuilds only what changed. Prints the sha256 to pin in a policy.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip1

# Its own target directory: the plugin workspace has its own profile and
# lock file, and a test that calls this script while `cargo test` holds the
# main target directory must not wait on that lock.
export CARGO_TARGET_DIR="$PWD/target/plugins"
cargo build --manifest-path policies/plugins/Cargo.toml \
  --target wasm32-wasip1 --release -p replay-plugin-naming

for plugin in naming; do
  built="$CARGO_TARGET_DIR/wasm32-wasip1/release/$plugin.wasm"
  # Copy then rename, so a reader never sees half a module.
  cp "$built" "policies/plugins/.$plugin.wasm.tmp"
  mv -f "policies/plugins/.$plugin.wasm.tmp" "policies/plugins/$plugin.wasm"
  echo "build-plugins: policies/plugins/$plugin.wasm sha256 $(sha256sum "policies/plugins/$plugin.wasm" | cut -d' ' -f1)"
done
