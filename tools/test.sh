#!/usr/bin/env bash
# The whole test suite, as the README's second command and as CI run it:
#
#   bash tools/test.sh [extra cargo test args, e.g. a test name filter]
#
# Installs what is missing (tools/setup.sh), then builds and runs every unit and integration test with the
# `fault-injection` feature (test-only hooks compiled into the daemon binary the integration tests start)
# and the `tools` feature (the tool binaries some tests start: chaos-soak, powercut-fs; and their tests);
# --no-fail-fast so that one failing test binary does not hide the results of the others.
# Needs root: the tests create network namespaces with veth pairs, start private redis-servers on unix
# sockets in temp dirs and mount a FUSE filesystem for the power-cut tests. Then checks and unit-tests the
# Prometheus alert rules with promtool (the live /metrics is linted by tests/observability.rs). Exits
# non-zero on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash tools/setup.sh
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

log=$(mktemp -t portsyncd-test.XXXXXX)
trap 'rm -f "$log"' EXIT

start=$SECONDS
status=0
cargo test --all-targets --no-fail-fast --features fault-injection,tools "$@" 2>&1 | tee "$log" || status=$?

# One line over every test binary: "test result: ok. 12 passed; 0 failed; 1 ignored; ..."
read -r passed failed skipped binaries < <(awk '/^test result:/ {
        for (i = 2; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
            if ($(i) ~ /^ignored;?$/) s += $(i - 1)
        }
        n++
    }
    END { printf "%d %d %d %d\n", p, f, s, n }' "$log")

# The alert rules an operator loads as they are: syntax, then their unit tests (firing and not firing).
rules_status=0
promtool check rules deploy/prometheus/portsyncd-rules.yml || rules_status=$?
promtool test rules deploy/prometheus/portsyncd-rules.test.yml || rules_status=$?
if ((rules_status != 0)); then
    echo "promtool: alert rules FAILED" >&2
    ((status != 0)) || status=$rules_status
fi

echo
if ((status != 0)); then
    grep -E '^(failures:|    [A-Za-z_:0-9]+$|error(\[|:))' "$log" | head -n 40 || true
    echo "tests FAILED (cargo test exit status $status)" >&2
fi
echo "test binaries: ${binaries}, wall time: $((SECONDS - start)) s"
echo "summary: ${passed} passed, ${failed} failed, ${skipped} skipped"
exit "$status"
