#!/usr/bin/env bash
# The one command for the benchmarks: installs what is missing, builds
# replay, aotc, the example plugin and the bench tools (release), fetches and
# builds the workloads (SQLite via npm, the synthetic generator), runs every
# figure and rewrites bench/RESULTS.md, bench/results.json and
# bench/scale.svg. Arguments go to bench/run.py (`--runs N`, `--quick`,
# `--only FIGURES`, `--merge` to rerun some figures and keep the others;
# see `python3 bench/run.py --help`).
# Takes about 80 minutes on 2 cores (the 100,000-command footprint run is
# a quarter of an hour of it). Not part of the tests or CI.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh --bench
bash scripts/build-plugins.sh >/dev/null
cargo build --release --bins --locked
cargo build --release --locked --manifest-path bench/tools/Cargo.toml
exec python3 bench/run.py "$@"
