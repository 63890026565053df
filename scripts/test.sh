#!/usr/bin/env bash
# The whole test suite, from a clean clone: installs what is missing, checks
# formatting and lints, builds every binary (the end-to-end tests drive
# them), then runs every test of the workspace, and builds real C projects
# (Debian source packages) through `replay import` and `replay`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
if [[ -f scripts/build-plugins.sh ]]; then
  bash scripts/build-plugins.sh
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (binaries for the end-to-end tests, and the tests)"
# All targets at once: the tests' dev-dependencies (jsonschema) unify
# features of crates the binaries share (hashbrown, serde_json), so
# building the binaries alone would build wasmtime's stack twice.
cargo build --workspace --all-targets --locked
echo "== cargo test"
cargo test --workspace --locked

echo "== real projects (Debian source packages through replay import and replay)"
bash tests/real-projects.sh

echo "== plugin workspace (policies/plugins)"
cargo fmt --manifest-path policies/plugins/Cargo.toml -p replay-plugin-kit -p replay-plugin-naming -- --check
cargo clippy --manifest-path policies/plugins/Cargo.toml --all-targets -- -D warnings
cargo test --manifest-path policies/plugins/Cargo.toml

echo "== bench tools (bench/tools: the benchmarks' memory referee and plot)"
cargo fmt --manifest-path bench/tools/Cargo.toml -- --check
cargo clippy --manifest-path bench/tools/Cargo.toml --all-targets --locked -- -D warnings
cargo test --manifest-path bench/tools/Cargo.toml --locked
