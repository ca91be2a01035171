#!/usr/bin/env bash
# Coverage-guided fuzzing of the netlink parser with AFL++ (optional; not run by CI):
#
#   bash tools/afl/run.sh [--minutes M]      # default 10
#
# Needs cargo-afl (`cargo install cargo-afl`, which also builds AFL++'s runtime for the current
# toolchain; about 3 min) and, on Debian, nothing else (the `afl++` package is not needed by
# cargo-afl but gives afl-whatsup/afl-plot). Builds tools/afl (an instrumented build of portsyncd,
# about 15 min on 2 shared cores at the first run) into target/afl, seeds AFL++ with the captured
# datagrams of tests/fixtures/netlink/*.hex, fuzzes for M minutes and prints execs/s, paths and
# crashes. Every crash or hang input is copied to tests/fixtures/netlink/afl/ (crash-*.bin,
# hang-*.bin); tests/hostile_netlink.rs replays every file there on each `cargo test`. Commit them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD
minutes=10
while (($# > 0)); do
    case $1 in
    --minutes) minutes=${2:?--minutes needs a value}; shift 2 ;;
    *) echo "afl: unknown argument '$1' (--minutes M)" >&2; exit 2 ;;
    esac
done
[[ $minutes =~ ^[0-9]+$ && $minutes -ge 1 ]] || { echo "afl: --minutes '$minutes': expected a whole number of at least 1" >&2; exit 2; }
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! cargo afl --version >/dev/null 2>&1; then
    echo "afl: cargo-afl missing; installing it (cargo install cargo-afl)"
    cargo install cargo-afl
fi

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/afl}"
(cd tools/afl && cargo afl build --release --bin netlink_parse)
bin="$CARGO_TARGET_DIR/release/netlink_parse"

work=$(mktemp -d -t portsyncd-afl.XXXXXX)
mkdir -p "$work/in"
for f in tests/fixtures/netlink/*.hex; do
    sed 's/#.*//' "$f" | tr -d ' \n' | xxd -r -p >"$work/in/$(basename "$f" .hex).bin"
done

echo "afl: fuzzing for $minutes min (output in $work/out)"
# No core_pattern change on the host, no CPU governor check: AFL++ is told not to care.
AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 \
    cargo afl fuzz -i "$work/in" -o "$work/out" -V "$((minutes * 60))" "$bin" >"$work/fuzz.log" 2>&1 || true

stats="$work/out/default/fuzzer_stats"
[[ -f $stats ]] || { tail -n 20 "$work/fuzz.log"; echo "afl: no statistics (see $work/fuzz.log)" >&2; exit 1; }
grep -E '^(run_time|execs_done|execs_per_sec|corpus_count|saved_crashes|saved_hangs|bitmap_cvg)' "$stats"

kept=0
mkdir -p tests/fixtures/netlink/afl
for kind in crash hang; do
    for f in "$work/out/default/${kind}s"/id:* "$work/out/default/${kind}es"/id:*; do
        [[ -f $f ]] || continue
        sum=$(sha256sum "$f" | cut -c1-16)
        cp "$f" "tests/fixtures/netlink/afl/$kind-$sum.bin"
        kept=$((kept + 1))
    done
done
echo "afl: $kept crash/hang inputs kept in tests/fixtures/netlink/afl/"
((kept == 0))
