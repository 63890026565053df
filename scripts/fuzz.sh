#!/usr/bin/env bash
# Runs one fuzz target for a given time: bash scripts/fuzz.sh TARGET SECONDS
#
# Targets (fuzz/fuzz_targets/): log_reader, policy_loader, journal_reader,
# arg_checker. Needs `cargo install cargo-fuzz`. cargo-fuzz needs a nightly
# compiler; this script uses the stable one with RUSTC_BOOTSTRAP=1 (which
# unlocks the nightly flags it passes, e.g. `-Zsanitizer=address`), so no
# second toolchain is needed. Crashes land in fuzz/artifacts/TARGET/, the
# corpus in fuzz/corpus/TARGET/. Not part of CI's test command.
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: bash scripts/fuzz.sh TARGET SECONDS" >&2
    echo "targets: log_reader policy_loader journal_reader arg_checker" >&2
    exit 2
fi
target=$1
seconds=$2
cd "$(dirname "$0")/../fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz is not installed" >&2
    echo "hint: cargo install cargo-fuzz" >&2
    exit 2
fi
# -rss_limit_mb: a target that holds more than this is a finding (bounded
# memory is one of the properties); -max_len bounds one input.
RUSTC_BOOTSTRAP=1 exec cargo fuzz run "$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=512 -max_len=65536 -timeout=10
