#!/usr/bin/env bash
# replay's own footprint while it runs tools: a log of N trivial commands
# (memtouch --mib=0) for N = 1k and 10k (and 100k with ALL=1, which takes
# minutes: each tool is a real exec), with replay's own peak RSS (its VmHWM,
# from --report), wall time, and time per command. Flat in N is the goal;
# under 10 MiB the target.
# Usage: bash bench/footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bins --locked -q
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/policy.toml" <<TOML
[policy]
name = "footprint"
os = "linux"
[tool.memtouch]
programs = ["memtouch"]
dirs = ["$PWD/target/release"]
args = "memtouch"
[args.memtouch]
positional = "refuse"
flags = [{ name = "--mib=", form = "joined", range = [0, 0] }]
TOML
sizes=(1000 10000)
[[ ${ALL:-0} == 1 ]] && sizes+=(100000)
echo "| commands | wall | per command | replay's own peak RSS |"
echo "|---|---|---|---|"
for n in "${sizes[@]}"; do
  python3 bench/genlog.py "$n" memtouch > "$work/log.json"
  start=$(date +%s.%N)
  target/release/replay --policy "$work/policy.toml" --report "$work/r.json" "$work/log.json" >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 - "$work/r.json" "$n" "$start" "$end" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["totals"]
n, wall = int(sys.argv[2]), float(sys.argv[4]) - float(sys.argv[3])
print(f"| {n} | {wall:.1f} s | {1000*wall/n:.2f} ms | {r['replay_peak_rss']/2**20:.1f} MiB |")
PY
done
