#!/usr/bin/env bash
# Debian source packages for the real-project tests and the bench: a
# deb-src entry derived from this machine's own apt sources, then `apt-get
# source`. Sourced (not run) by tests/real-projects.sh and
# bench/workloads/cjson.sh; defines `retry`, `deb_src` and `fetch`.
# Needs root (or sudo) for the deb-src entry and `apt-get update`.

sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)

# `retry CMD...`: a network step, tried up to three times (a mirror's
# hiccup must not fail the suite).
retry() {
  local n
  for n in 1 2 3; do
    "$@" && return 0
    echo "debsrc: \`$*\` failed (try $n of 3)" >&2
    sleep $((n * 5))
  done
  return 1
}

# deb-src: the same archives, suites and components as the machine's own
# `deb` entries (deb822 or one-line format).
deb_src() {
  local out=/etc/apt/sources.list.d/replay-deb-src.sources
  [[ -f $out ]] && return
  local src=""
  if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
    src=$(sed -n '/^Types:.*\bdeb\b/,/^$/p' /etc/apt/sources.list.d/debian.sources |
      sed 's/^Types:.*/Types: deb-src/')
  elif [[ -f /etc/apt/sources.list ]]; then
    src=$(grep -E '^deb ' /etc/apt/sources.list | sed 's/^deb /deb-src /')
    out=/etc/apt/sources.list.d/replay-deb-src.list
  fi
  [[ -n $src ]] || { echo "debsrc: no Debian apt sources to derive deb-src from" >&2; exit 2; }
  echo "debsrc: adding $out" >&2
  printf '%s\n' "$src" | "${sudo[@]}" tee "$out" >/dev/null
  retry "${sudo[@]}" apt-get update -qq
}

# fetch PACKAGE WORK: its unpacked source directory under WORK/src
# (fetched once).
fetch() {
  local package=$1 work=$2
  mkdir -p "$work/src"
  local dir
  dir=$(find "$work/src" -maxdepth 1 -type d -name "$package-*" | head -n1)
  if [[ -z $dir ]]; then
    deb_src
    (cd "$work/src" && retry apt-get source -qq "$package" >/dev/null 2>&1) || true
    dir=$(find "$work/src" -maxdepth 1 -type d -name "$package-*" | head -n1)
  fi
  [[ -n $dir ]] || { echo "debsrc: apt-get source $package failed" >&2; exit 2; }
  echo "$dir"
}

