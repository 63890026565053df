#!/usr/bin/env bash
# Builds the example policy plugins (policies/plugins/, its own cargo
# workspace) for wasm32-wasip1 in release, and copies each module next to
# the policies that name it: policies/plugins/naming.wasm (ABI v2) and
# naming-v1.wasm (the same rules over ABI v1, for tests). Idempotent; cargo
# rebuilds only what changed. Prints the sha256 to pin in a policy.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v rustup >/dev/null; then
  rustup target add wasm32-wasip1
fi

# Its own target directory: the plugin workspace has its own profile and
# lock file, and a test that calls this script while `cargo test` holds the
# main target directory must not wait on that lock.
export CARGO_TARGET_DIR="$PWD/target/plugins"
# No machine-specific paths in the modules (panic locations name source
# files), so the same sources and toolchain give the same sha256 to pin.
export RUSTFLAGS="--remap-path-prefix=$PWD=/replay --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"
cargo build --manifest-path policies/plugins/Cargo.toml \
  --target wasm32-wasip1 --release --locked -p replay-plugin-naming

for plugin in naming naming-v1; do
  built="$CARGO_TARGET_DIR/wasm32-wasip1/release/$plugin.wasm"
  # Copy then rename, so a reader (or a concurrent build) never sees half
  # a module.
  tmp="policies/plugins/.$plugin.wasm.$$.tmp"
  cp "$built" "$tmp"
  mv -f "$tmp" "policies/plugins/$plugin.wasm"
  echo "build-plugins: policies/plugins/$plugin.wasm sha256 $(sha256sum "policies/plugins/$plugin.wasm" | cut -d' ' -f1)"
done
