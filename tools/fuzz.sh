#!/usr/bin/env bash
# Runs the generative (proptest) suites of one input surface for as long as asked:
#
#   bash tools/fuzz.sh SURFACE [--minutes M] [--cases N]
#
#   SURFACE   netlink  tests/hostile_netlink.rs   (netlink datagrams)
#             redis    tests/hostile_redis*.rs    (Redis contents)
#             files    tests/hostile_store.rs     (port_state.json, legacy files, the sled directory)
#             config   tests/hostile_config.rs    (database_config.json, options, environment)
#             all      every suite above, in turn
#   --minutes M   how long to run (default 10); the round under way when time is up is stopped
#   --cases N     PROPTEST_CASES per generative test per round (default 20000)
#
# Each round runs `cargo test --release --features fault-injection --test SUITE` with PROPTEST_CASES=N
# and a fresh PROPTEST_RNG_SEED (printed: `PROPTEST_RNG_SEED=S PROPTEST_CASES=N cargo test ...
# --test SUITE` replays the round exactly). Only the suite's `gen_*` tests run when it has any
# (the deterministic tests do not change between rounds); a suite without that naming runs whole.
#
# A failing case is shrunk by proptest and appended to the suite's regression file under tests/
# (tests/SUITE.proptest-regressions, or tests/proptest-regressions/SUITE.txt), which every later
# `cargo test` replays first: commit that file. A round that fails without leaving a
# regression there (a crash that kills the test binary, a hang stopped by the time limit) is
# recorded with its seed in tests/fuzz-seeds/SUITE.seeds, to replay by hand.
#
# At the end it prints, per suite, the rounds, the failures and the cases run in rounds that
# completed: PROPTEST_CASES per gen_* test, but a 200th of it (at least 16) per gen_binary_* test
# (one process start per case, e.g. tests/hostile_config.rs's environment test); a suite whose
# generative tests are not named gen_* is counted from the fns of its proptest! blocks.
# Needs what the suites need (root, redis-server for some); suites missing on this branch are skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

(($# >= 1)) || usage
surface=$1
shift
minutes=10
cases=20000
while (($# > 0)); do
    case $1 in
    --minutes) minutes=${2:?--minutes needs a value}; shift 2 ;;
    --cases) cases=${2:?--cases needs a value}; shift 2 ;;
    -h | --help) usage ;;
    *) echo "fuzz: unknown argument '$1'" >&2; usage ;;
    esac
done
[[ $minutes =~ ^[0-9]+$ && $((10#$minutes)) -ge 1 ]] || { echo "fuzz: --minutes '$minutes': expected a whole number of at least 1" >&2; exit 2; }
[[ $cases =~ ^[0-9]+$ && $((10#$cases)) -ge 1 ]] || { echo "fuzz: --cases '$cases': expected a whole number of at least 1" >&2; exit 2; }
# Decimal whatever the leading zeros (bash reads 010 as octal).
minutes=$((10#$minutes))
cases=$((10#$cases))

# The suites of a surface that exist on this branch (file names under tests/, without .rs).
suites_of() {
    local pattern
    case $1 in
    netlink) pattern='hostile_netlink' ;;
    redis) pattern='hostile_redis*' ;;
    files) pattern='hostile_store' ;;
    config) pattern='hostile_config' ;;
    *) return 1 ;;
    esac
    local f
    for f in tests/$pattern.rs; do
        [[ -f $f ]] && basename "$f" .rs
    done
    return 0
}

case $surface in
netlink | redis | files | config) surfaces=("$surface") ;;
all) surfaces=(netlink redis files config) ;;
*) echo "fuzz: unknown surface '$surface' (netlink, redis, files, config or all)" >&2; exit 2 ;;
esac

suites=()
for s in "${surfaces[@]}"; do
    found=$(suites_of "$s")
    if [[ -z $found ]]; then
        echo "fuzz: no suite for surface '$s' on this branch (skipped)"
    fi
    for t in $found; do suites+=("$t"); done
done
((${#suites[@]} > 0)) || { echo "fuzz: nothing to run" >&2; exit 1; }

# Generative tests of a suite: the gen_* test functions, else every fn declared in proptest! blocks.
gen_count() {
    local file="tests/$1.rs" n b
    n=$(grep -cE '^\s*fn gen_[a-z0-9_]+\s*\(' "$file" || true)
    b=$(grep -cE '^\s*fn gen_binary_[a-z0-9_]+\s*\(' "$file" || true)
    if ((n > 0)); then
        echo "$((n - b)) gen $b"
        return
    fi
    n=$(awk '
        /proptest![[:space:]]*\{/ { inside = 1; depth = 0 }
        inside {
            line = $0
            if (depth == 1 && line ~ /^[[:space:]]*(pub[[:space:]]+)?fn [a-z0-9_]+[[:space:]]*\(/) n++
            opens = gsub(/\{/, "{", line); closes = gsub(/\}/, "}", line)
            depth += opens - closes
            if (depth <= 0 && opens + closes > 0) inside = 0
        }
        END { print n + 0 }' "$file")
    echo "$n all 0"
}

echo "fuzz: building ${suites[*]} (release, fault-injection)"
for t in "${suites[@]}"; do
    cargo test --release --features fault-injection --test "$t" --no-run 2>&1 | tail -n 2
done

logdir=$(mktemp -d -t portsyncd-fuzz.XXXXXX)
declare -A rounds=() fails=() done_cases=() ngen=() nbin=() mode=()
binary_cases=$((cases / 200))
((binary_cases >= 16)) || binary_cases=16
generative=()
for t in "${suites[@]}"; do
    read -r n m b < <(gen_count "$t")
    if ((n + b == 0)); then
        # Fixed examples only (e.g. tests/hostile_redis.rs): a new seed changes nothing.
        echo "fuzz: $t has no generative test (skipped; plain cargo test runs it)"
        continue
    fi
    generative+=("$t")
    ngen[$t]=$n
    nbin[$t]=$b
    mode[$t]=$m
    rounds[$t]=0
    fails[$t]=0
    done_cases[$t]=0
done
((${#generative[@]} > 0)) || { echo "fuzz: no generative suite to run" >&2; exit 1; }
suites=("${generative[@]}")

# Lines in the regression files that exist among the arguments.
reg_lines() {
    local n=0 f
    for f in "$@"; do
        if [[ -f $f ]]; then n=$((n + $(wc -l <"$f"))); fi
    done
    echo "$n"
}

deadline=$((SECONDS + minutes * 60))
start=$SECONDS
i=0
while ((SECONDS < deadline)); do
    t=${suites[i % ${#suites[@]}]}
    i=$((i + 1))
    seed=$(od -An -N8 -tu8 /dev/urandom | tr -d ' ')
    left=$((deadline - SECONDS))
    ((left > 0)) || break
    # Where the suite's proptest config keeps failing cases (either file, by suite).
    regs=("tests/$t.proptest-regressions" "tests/proptest-regressions/$t.txt")
    before=$(reg_lines "${regs[@]}")
    filter=()
    [[ ${mode[$t]} == gen ]] && filter=(gen_)
    log="$logdir/$t.$seed.log"
    echo "fuzz: $t round $((rounds[$t] + 1)): PROPTEST_RNG_SEED=$seed PROPTEST_CASES=$cases (${left} s left)"
    status=0
    PROPTEST_RNG_SEED=$seed PROPTEST_CASES=$cases timeout --signal=KILL "$((left + 5))" \
        cargo test --release --features fault-injection --test "$t" -- "${filter[@]}" >"$log" 2>&1 || status=$?
    rounds[$t]=$((rounds[$t] + 1))
    if ((status == 0)); then
        done_cases[$t]=$((done_cases[$t] + cases * ngen[$t] + binary_cases * nbin[$t]))
        continue
    fi
    if ((status == 137)) && ((SECONDS >= deadline)); then
        echo "fuzz: $t: round stopped at the time limit (not counted)"
        rounds[$t]=$((rounds[$t] - 1))
        break
    fi
    fails[$t]=$((fails[$t] + 1))
    after=$(reg_lines "${regs[@]}")
    grep -E '^(test .* FAILED|Test failed|minimal failing input)' "$log" | head -n 6 || true
    if ((after > before)); then
        echo "fuzz: $t: FAILED; the shrunk case is in $(ls "${regs[@]}" 2>/dev/null | tr '\n' ' ')(log: $log)"
    else
        mkdir -p tests/fuzz-seeds
        echo "$seed $cases exit=$status $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"tests/fuzz-seeds/$t.seeds"
        echo "fuzz: $t: FAILED without a proptest regression (exit $status); seed kept in tests/fuzz-seeds/$t.seeds (log: $log)"
    fi
done

echo
echo "fuzz: $((SECONDS - start)) s; logs in $logdir"
total_fail=0
for t in "${suites[@]}"; do
    echo "fuzz: $t: ${rounds[$t]} rounds, ${fails[$t]} failed, ${done_cases[$t]} cases in passing rounds (per round: ${ngen[$t]} tests x $cases, ${nbin[$t]} x $binary_cases)"
    total_fail=$((total_fail + fails[$t]))
done
((total_fail == 0))
