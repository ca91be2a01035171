#!/usr/bin/env bash
# Runs the deterministic simulation of the whole daemon (tests/simulation.rs) for as long as asked:
#
#   bash tools/sim.sh [--seeds N] [--minutes M] [--first F] [--windows W]
#   bash tools/sim.sh --seed S [--windows W]
#
#   --seeds N     run seeds F .. F+N-1 (default: 10000 unless --minutes is given)
#   --minutes M   run seeds from F until M minutes have passed (decimal: 0.5 is 30 s)
#   --first F     the first seed (default 0; the CI slice is seeds 0..999)
#   --windows W   windows per seed, each 10 s of faults then 45 s quiet and a quiet point (default 6)
#   --seed S      replay seed S exactly: prints its schedule and, if it fails, the shrunk trace
#
# Release build (`cargo test --release --test simulation`). The first failing seed stops the run and
# prints the violated invariant, the replay command and the shrunk schedule (events dropped while the
# same invariant still fails). A run prints the seeds, events, quiet points, starts and commits.
# Needs nothing but cargo: no root, no Redis, no network namespace.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

number() { # NAME VALUE: a non-negative decimal (integer unless $3 = float)
    local re='^[0-9]+$'
    [[ "${3:-}" == float ]] && re='^[0-9]+(\.[0-9]+)?$'
    [[ "$2" =~ $re ]] || { echo "sim.sh: $1 wants a number, got '$2'" >&2; exit 2; }
}

seeds="" minutes="" first="" windows="" seed=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seeds) number --seeds "${2:-}"; seeds="$2"; shift 2 ;;
        --minutes) number --minutes "${2:-}" float; minutes="$2"; shift 2 ;;
        --first) number --first "${2:-}"; first="$2"; shift 2 ;;
        --windows) number --windows "${2:-}"; windows="$2"; shift 2 ;;
        --seed) number --seed "${2:-}"; seed="$2"; shift 2 ;;
        -h|--help) usage ;;
        *) echo "sim.sh: unknown argument '$1'" >&2; usage ;;
    esac
done

export SIM_WINDOWS="${windows:-6}"
if [[ -n "$seed" ]]; then
    SIM_SEED="$seed" exec cargo test --release --test simulation replay -- --ignored --nocapture
fi
export SIM_FIRST="${first:-0}"
if [[ -n "$minutes" ]]; then
    export SIM_MINUTES="$minutes"
    [[ -n "$seeds" ]] && export SIM_SEEDS="$seeds"
else
    export SIM_SEEDS="${seeds:-10000}"
fi
exec cargo test --release --test simulation ci_seeds -- --nocapture
