#!/usr/bin/env bash
# Validation throughput: `replay check` on generated logs of 1k, 10k, 100k
# (and, with ALL=1, 1M) commands, with the Linux policy, and with the
# example naming plugin (cold: empty module cache; cached: second run).
# Prints a Markdown table of wall time and replay's peak RSS (from
# /usr/bin/time -v: replay runs no child here, so that is its own).
# Usage: bash bench/check.sh   (release build; takes a few minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build-plugins.sh >/dev/null
cargo build --release --bins --locked -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sizes=(1000 10000 100000)
[[ ${ALL:-0} == 1 ]] && sizes+=(1000000)
measure() { # label policy log [env...]
  local label=$1 policy=$2 log=$3
  shift 3
  local best_wall="" best_rss=""
  for run in 1 2 3 4 5; do
    env "$@" /usr/bin/time -v -o "$work/time" target/release/replay check --policy "$policy" "$log" >/dev/null || true
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
    echo "$wall $rss" >> "$work/$label.runs"
  done
  # median of 5 by wall time
  sort -t: -k2 -n "$work/$label.runs" | sed -n 3p | {
    read -r wall rss
    printf '| %s | %s | %s s | %.1f MiB |\n' "$label" "$(basename "$log" .json)" "${wall#0:}" "$(echo "$rss/1024" | bc -l)"
  }
}
echo "| case | log | wall (median of 5) | peak RSS |"
echo "|---|---|---|---|"
for n in "${sizes[@]}"; do
  python3 bench/genlog.py "$n" opt > "$work/$n.json"
  measure "rules" policies/linux.toml "$work/$n.json"
done
n=100000
rm -rf "$work/cache"
env XDG_CACHE_HOME="$work/cache" /usr/bin/time -v -o "$work/time" target/release/replay check --policy policies/linux-naming.toml "$work/$n.json" >/dev/null || true
printf '| rules + naming plugin, cold cache | %s | %s s | %.1f MiB |\n' "$n" \
  "$(awk -F': ' '/Elapsed/ {print $2}' "$work/time" | sed 's/^0://')" \
  "$(echo "$(awk -F': ' '/Maximum resident/ {print $2}' "$work/time")/1024" | bc -l)"
measure "rules + naming plugin, cached" policies/linux-naming.toml "$work/$n.json" XDG_CACHE_HOME="$work/cache"
