#!/usr/bin/env bash
# Installs what portsyncd's demo, tests and benchmarks need on a Debian machine, when it is missing.
# Idempotent and quiet: a machine that has everything gets no apt-get call at all.
#
#   bash tools/setup.sh          # as root
#
# Needs: redis-server (redis-server), ip (iproute2), fusermount3 (fuse3, libfuse3-dev for the power-cut
# tests), ps/pkill (procps), curl, a C linker and pkg-config (for cargo), promtool (prometheus: checks the
# alert rules and lints /metrics), and a Rust toolchain (cargo),
# which this script checks for but cannot install.
set -euo pipefail

log() { printf 'setup: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (network namespaces, veth pairs and apt-get need it)" >&2
    exit 1
fi

# command -> Debian package that provides it
declare -A want=(
    [redis-server]=redis-server
    [redis-cli]=redis-tools
    [ip]=iproute2
    [fusermount3]=fuse3
    [pkill]=procps
    [curl]=curl
    [cc]=build-essential
    [pkg-config]=pkg-config
    [promtool]=prometheus
)
missing=()
for cmd in "${!want[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
# Headers for the FUSE-based power-cut tests (no command to probe for).
if ! dpkg-query -W -f='${Status}' libfuse3-dev 2>/dev/null | grep -q 'ok installed'; then
    missing+=(libfuse3-dev)
fi

if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's redis-server package may start a system instance; ours are private on unix sockets.
fi

# The kernel must offer network namespaces and veth (there is no dummy driver here; veth is enough).
if [[ ! -e /proc/self/ns/net ]]; then
    log "this kernel has no network namespaces" >&2
    exit 1
fi

# Rust: cannot be downloaded on these machines, only checked.
if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    log "no Rust toolchain (cargo) found; install one (rustup, or Debian's cargo) and retry" >&2
    exit 1
fi
log "ok: $(redis-server --version | awk '{print $3}'), $(ip -V 2>&1 | head -n1), $(cargo --version)"
