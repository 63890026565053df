#!/usr/bin/env bash
# Installs what replay needs on a Debian bookworm machine with rustup, and
# nothing that is already there: LLVM 14 (headers and libLLVM for inkwell,
# and the opt/llc/clang tools the logs run), GNU ld, and the wasm32-wasip1
# Rust target for policy plugins, and CMake and Ninja (the end-to-end test
# of `replay import compdb` builds a real CMake+Ninja project). Safe to run any number of times.
# With --bench, also what the benchmarks need (python3, and npm to fetch
# SQLite's amalgamation), when missing.
set -euo pipefail

packages=(
  llvm-14 llvm-14-dev llvm-14-tools # libLLVM, llvm-config, opt, llc
  clang-14 lld-14                   # the C driver that links, and lld
  binutils                          # GNU ld
  libc6-dev                         # crt files and libc for linking
  gcc                               # `cc`, the linker rustc itself calls
  time                              # /usr/bin/time -v, used by the benches
  cmake ninja-build                 # real C projects imported by `replay import`
  libxml2-utils                     # xmllint: the tests validate JUnit reports with the XSD
  openssl                           # certificates of the TLS remote-cache test
  postgresql                        # the database BuildGrid's scheduler needs (remote-execution tests)
)

if [[ ${1:-} == --bench ]]; then
  command -v python3 >/dev/null || packages+=(python3)
  # Any npm will do (this machine may have Node.js from elsewhere).
  command -v npm >/dev/null || packages+=(npm)
fi

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$package")
  fi
done

if ((${#missing[@]} > 0)); then
  echo "install-deps: installing ${missing[*]}"
  sudo=()
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if command -v rustup >/dev/null; then
  if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    echo "install-deps: adding the rustup target wasm32-wasip1"
    rustup target add wasm32-wasip1
  fi
else
  echo "install-deps: rustup not found; policy plugins need the wasm32-wasip1 target" >&2
fi

for tool in /usr/lib/llvm-14/bin/opt /usr/lib/llvm-14/bin/llc /usr/bin/clang-14 /usr/bin/ld; do
  [[ -x $tool ]] || { echo "install-deps: $tool is missing after installation" >&2; exit 1; }
done

# BuildGrid, the REAPI v2 server the remote-cache tests start (issue 21):
# pinned, in its own virtual environment under ~/.cache/replay-test/
# (the tests look for `bgd` there, or at $REPLAY_BGD). Needs python3-venv.
buildgrid_version=0.4.4
buildgrid_venv="${REPLAY_TEST_CACHE:-$HOME/.cache/replay-test}/buildgrid-$buildgrid_version"
if ! "$buildgrid_venv/bin/bgd" --help >/dev/null 2>&1; then
  echo "install-deps: installing BuildGrid $buildgrid_version into $buildgrid_venv"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    sudo=()
    [[ $(id -u) -ne 0 ]] && sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf "$buildgrid_venv"
  python3 -m venv "$buildgrid_venv"
  "$buildgrid_venv/bin/pip" install -q "buildgrid==$buildgrid_version"
  "$buildgrid_venv/bin/bgd" --help >/dev/null
fi

# BuildGrid's SQL scheduler (the remote-execution tests, issue 22) talks to
# PostgreSQL through psycopg; pinned like BuildGrid itself.
psycopg_version=3.3.9
psycopg2_version=2.9.13
if ! "$buildgrid_venv/bin/python" -c "
import importlib.metadata as m, sys
sys.exit(m.version('psycopg') != '$psycopg_version' or m.version('psycopg-binary') != '$psycopg_version' or m.version('psycopg2-binary') != '$psycopg2_version')
" 2>/dev/null; then
  echo "install-deps: installing psycopg $psycopg_version and psycopg2-binary $psycopg2_version into $buildgrid_venv"
  "$buildgrid_venv/bin/pip" install -q "psycopg[binary]==$psycopg_version" "psycopg2-binary==$psycopg2_version"
fi
for tool in initdb pg_ctl createdb; do
  [[ -x /usr/lib/postgresql/15/bin/$tool ]] || { echo "install-deps: PostgreSQL's $tool is missing after installation" >&2; exit 1; }
done
