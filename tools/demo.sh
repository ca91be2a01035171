#!/usr/bin/env bash
# The live demo (README command 1):
#
#   bash tools/demo.sh            # as root, on a Debian machine
#
# Installs what is missing, builds in release, then, all inside a private network namespace and a temp
# dir (nothing on the host is touched):
#   - a private redis-server on a unix socket (notify-keyspace-events AKE, as in SONiC), CONFIG_DB seeded
#     with a PORT table like a real switch's (8 ports, Ethernet0..Ethernet28);
#   - the orchagent stand-in (consumes APPL_DB PORT_TABLE like ConsumerStateTable) and portsyncd;
#   - 8 veth pairs as "front-panel ports" (Ethernet0..28, peers peer0..7) created after portsyncd started,
#     as syncd creates host interfaces in SONiC;
#   - admin up, carrier up/down (link flaps), an MTU change, a deleted port; the STATE_DB and APPL_DB
#     results as a table after each step;
#   - a warm restart with one change made while portsyncd was down: Redis MONITOR shows that only that
#     port was written; WARM_RESTART_TABLE, the Prometheus metrics and `portsyncd-state inspect`.
# Everything started is stopped and removed on exit, also on Ctrl-C.
# PORTSYNCD_DEMO_BIN=DIR skips the build and takes portsyncd, orchagent-standin and portsyncd-state from DIR.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD

# ---------------------------------------------------------------------------------------------- helpers
step_no=0
step() {
    step_no=$((step_no + 1))
    printf '\n==== step %d: %s\n' "$step_no" "$*"
}
note() { printf '  - %s\n' "$*"; }
die() {
    printf 'demo: %s\n' "$*" >&2
    exit 1
}

NS="psd-demo-$$"
TMP=""
PIDS=()         # every background process this script started
DAEMON_PID=""   # the running portsyncd, if any
LOG_SHOWN=0     # lines of the portsyncd log already shown

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    local pid
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    ip netns del "$NS" 2>/dev/null || true
    if [[ -n "$TMP" && -d "$TMP" ]]; then
        rm -rf "$TMP"
    fi
    if ((status != 0)); then
        printf '\ndemo: stopped (status %d); cleaned up namespace %s and temp dir\n' "$status" "$NS" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 100 ms until it succeeds.
wait_for() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@"; do
        if ((SECONDS >= deadline)); then
            show_log
            die "timed out after ${secs} s waiting for: $what"
        fi
        sleep 0.1
    done
}

rc() { redis-cli -s "$SOCK" "$@"; }          # redis-cli on the private socket
appl() { rc -n 0 "$@"; }                     # APPL_DB
config() { rc -n 4 "$@"; }                   # CONFIG_DB
state() { rc -n 6 "$@"; }                    # STATE_DB
nsip() { ip -n "$NS" "$@"; }

# New lines of the portsyncd log since the last call (colour codes stripped, at most 15 lines).
show_log() {
    [[ -n "$TMP" && -f "$TMP/portsyncd.log" ]] || return 0
    local total
    total=$(wc -l <"$TMP/portsyncd.log")
    if ((total > LOG_SHOWN)); then
        echo "  portsyncd log:"
        tail -n +"$((LOG_SHOWN + 1))" "$TMP/portsyncd.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    | /' |
            head -n 15
        if ((total - LOG_SHOWN > 15)); then
            echo "    | ... ($((total - LOG_SHOWN - 15)) more lines in the log)"
        fi
        LOG_SHOWN=$total
    fi
}

# kernel view of one netdev: "admin oper mtu", or "- - -" when it is gone. oper is the kernel's operstate
# (UP or UNKNOWN), which is exactly what IFF_RUNNING reports; `ip` does not print RUNNING itself.
kernel_view() {
    local line
    if ! line=$(nsip -o link show dev "$1" 2>/dev/null); then
        echo "- - -"
        return 0
    fi
    awk '{
        flags = $3; admin = (flags ~ /[<,]UP[,>]/) ? "up" : "down"; oper = "down"
        for (i = 1; i <= NF; i++) {
            if ($(i) == "mtu") mtu = $(i + 1)
            if ($(i) == "state" && ($(i + 1) == "UP" || $(i + 1) == "UNKNOWN")) oper = "up"
        }
        print admin, oper, mtu
    }' <<<"$line"
}

# The table: the kernel's truth next to what portsyncd published in STATE_DB, and APPL_DB's state.
show_tables() {
    printf '  %-10s | %-21s | %-33s | %s\n' "" "kernel (netns)" "STATE_DB PORT_TABLE|<port>" "APPL_DB"
    printf '  %-10s | %-5s %-5s %-9s | %-5s %-5s %-5s %-5s %-9s | %s\n' \
        port admin oper mtu admin oper mtu state other PORT_TABLE
    printf '  %s\n' "-----------+-----------------------+-----------------------------------+-----------"
    local p k_admin k_oper k_mtu s_admin s_oper s_mtu s_state other appl_state
    for p in "${PORTS[@]}"; do
        read -r k_admin k_oper k_mtu < <(kernel_view "$p")
        {
            read -r s_admin
            read -r s_oper
            read -r s_mtu
            read -r s_state
        } < <(state HMGET "PORT_TABLE|$p" admin_status netdev_oper_status mtu state)
        other=$(state HKEYS "PORT_TABLE|$p" | grep -cvxE '(admin_status|netdev_oper_status|mtu|state)?' || true)
        if [[ $(appl EXISTS "PORT_TABLE:$p") == 1 ]]; then appl_state=consumed; else appl_state=-; fi
        printf '  %-10s | %-5s %-5s %-9s | %-5s %-5s %-5s %-5s %-9s | %s\n' "$p" \
            "$k_admin" "$k_oper" "$k_mtu" "${s_admin:--}" "${s_oper:--}" "${s_mtu:--}" "${s_state:--}" \
            "$( ((other > 0)) && echo "+$other" || echo -)" "$appl_state"
    done
    local cfg_done init_done
    cfg_done=$(appl HGET "PORT_TABLE:PortConfigDone" count)
    init_done=$(appl EXISTS "PORT_TABLE:PortInitDone")
    printf '  APPL_DB PortConfigDone count=%s   PortInitDone %s   pending for orchagent: %s keys\n' \
        "${cfg_done:--}" "$( ((init_done == 1)) && echo present || echo absent)" \
        "$(appl SCARD PORT_TABLE_KEY_SET)"
}

# STATE_DB holds exactly the kernel's truth for every configured port (absent when the netdev is gone).
state_matches_kernel() {
    local p k_admin k_oper k_mtu got
    for p in "${PORTS[@]}"; do
        read -r k_admin k_oper k_mtu < <(kernel_view "$p")
        got=$(state HMGET "PORT_TABLE|$p" admin_status netdev_oper_status mtu state | paste -sd' ')
        if [[ $k_admin == - ]]; then
            [[ $(state EXISTS "PORT_TABLE|$p") == 0 ]] || return 1
        else
            [[ $got == "$k_admin $k_oper $k_mtu ok" ]] || return 1
        fi
    done
}

# True once a NETLINK_ROUTE socket in the netns has joined the link group (RTMGRP_LINK, bit 0 of Groups)
# with no dump running and nothing queued: portsyncd's initial dump is over. Netdevs that exist before
# that are "left over" to a cold start (set admin-down and ignored), so the ports are created after it.
daemon_listening() {
    ip netns exec "$NS" cat /proc/net/netlink |
        awk 'NR > 1 && $2 == 0 && $4 ~ /[13579bdf]$/ && $5 == 0 && $7 == 0 { found = 1 } END { exit !found }'
}

start_daemon() {
    ip netns exec "$NS" env NO_COLOR=1 "$BIN/portsyncd" \
        --redis-url "$URL" \
        --state-dir "$TMP/state" \
        --metrics-listen "127.0.0.1:$METRICS_PORT" \
        --eoiu-timeout-secs 5 \
        --log-level info --log-output stderr >>"$TMP/portsyncd.log" 2>&1 &
    DAEMON_PID=$!   # `ip netns exec` execs the daemon: this is portsyncd's own pid
    PIDS+=("$DAEMON_PID")
    note "portsyncd started in netns $NS (pid $DAEMON_PID)"
}

stop_daemon() {
    local status=0
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || status=$?
    note "portsyncd (pid $DAEMON_PID) got SIGTERM and exited with status $status"
    local keep=() pid
    for pid in "${PIDS[@]}"; do
        [[ $pid == "$DAEMON_PID" ]] || keep+=("$pid")
    done
    PIDS=("${keep[@]}")
    DAEMON_PID=""
    ((status == 0)) || die "portsyncd should exit 0 after SIGTERM"
}

# --------------------------------------------------------------------------------------------- set up
[[ $(id -u) -eq 0 ]] || die "run as root (network namespaces need it)"
step "set up and build (release)"
bash tools/setup.sh
if ! command -v cargo >/dev/null 2>&1; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if [[ -n "${PORTSYNCD_DEMO_BIN:-}" ]]; then
    BIN=$PORTSYNCD_DEMO_BIN   # binaries built elsewhere (e.g. a debug build): no build here
else
    cargo build --release --bins --quiet
    BIN="${CARGO_TARGET_DIR:-$REPO/target}/release"
fi
for b in portsyncd orchagent-standin portsyncd-state; do
    [[ -x "$BIN/$b" ]] || die "missing binary $BIN/$b after the build"
done
note "binaries in $BIN"

TMP=$(mktemp -d -t portsyncd-demo.XXXXXX)
SOCK="$TMP/redis.sock"
URL="unix://$SOCK"
METRICS_PORT=9810  # inside the private netns, so it cannot clash with anything on the host
PORTS=()
for i in $(seq 0 7); do PORTS+=("Ethernet$((i * 4))"); done

step "private redis-server on $SOCK, CONFIG_DB seeded with 8 ports"
redis-server --port 0 --unixsocket "$SOCK" --unixsocketperm 700 --dir "$TMP" --save "" \
    --appendonly no --notify-keyspace-events AKE --logfile "$TMP/redis.log" &
PIDS+=("$!")
wait_for 10 "redis-server to answer" bash -c "redis-cli -s '$SOCK' PING 2>/dev/null | grep -q PONG"
for i in $(seq 0 7); do
    p="Ethernet$((i * 4))"
    config HSET "PORT|$p" alias "etp$((i + 1))" lanes "$((i * 4 + 1)),$((i * 4 + 2)),$((i * 4 + 3)),$((i * 4 + 4))" \
        speed 100000 mtu 9100 admin_status up index "$((i + 1))" fec rs autoneg off \
        description "front panel port $((i + 1))" >/dev/null
done
note "CONFIG_DB PORT|Ethernet0 = $(config HGETALL 'PORT|Ethernet0' | paste -sd' ')"

step "network namespace $NS (only lo so far), orchagent stand-in, portsyncd (cold start)"
ip netns add "$NS"
nsip link set lo up
"$BIN/orchagent-standin" --redis-url "$URL" >"$TMP/orchagent-standin.log" 2>&1 &
PIDS+=("$!")
note "orchagent-standin started (pid $!)"
start_daemon
wait_for 20 "PortConfigDone in APPL_DB" bash -c "[[ \$(redis-cli -s '$SOCK' -n 0 EXISTS PORT_TABLE:PortConfigDone) == 1 ]]"
wait_for 20 "portsyncd to finish its initial netlink dump" daemon_listening
note "APPL_DB PORT_TABLE:Ethernet0 = $(appl HGETALL 'PORT_TABLE:Ethernet0' | paste -sd' ')"
note "STATE_DB WARM_RESTART_TABLE|portsyncd = $(state HGETALL 'WARM_RESTART_TABLE|portsyncd' | paste -sd' ')"
show_log
show_tables

step "create the host interfaces: 8 veth pairs Ethernet<4i> <-> peer<i> (down, mtu 1500)"
for i in $(seq 0 7); do
    nsip link add "Ethernet$((i * 4))" type veth peer name "peer$i"
done
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
wait_for 10 "PortInitDone" bash -c "[[ \$(redis-cli -s '$SOCK' -n 0 EXISTS PORT_TABLE:PortInitDone) == 1 ]]"
# orchagent adds fields of its own to the same STATE_DB hashes; portsyncd must keep them.
state HSET "PORT_TABLE|Ethernet0" host_tx_ready true speed 100000 >/dev/null
note "orchagent's own STATE_DB fields on Ethernet0 (host_tx_ready, speed) shown as 'other'"
show_log
show_tables

step "admin up on every port (as portmgrd does); the peers are still down, so no carrier"
for p in "${PORTS[@]}"; do nsip link set "$p" up; done
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
show_log
show_tables

step "bring the peers up: carrier on every port"
for i in $(seq 0 7); do nsip link set "peer$i" up; done
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
show_log
show_tables

step "flap links: peer1 and peer5 down (carrier loss on Ethernet4, Ethernet20), 5 quick flaps of peer2"
nsip link set peer1 down
nsip link set peer5 down
for _ in $(seq 5); do
    nsip link set peer2 down
    nsip link set peer2 up
done
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
show_log
show_tables

step "MTU 9100 on Ethernet0 and Ethernet8 (as portmgrd applies CONFIG_DB mtu); peer1 back up"
nsip link set Ethernet0 mtu 9100
nsip link set Ethernet8 mtu 9100
nsip link set peer1 up
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
show_log
show_tables
note "Ethernet0 full STATE_DB hash: $(state HGETALL 'PORT_TABLE|Ethernet0' | paste -sd' ')"

step "delete Ethernet28 (its veth pair goes with it): its STATE_DB entry must go"
nsip link del Ethernet28
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
show_log
show_tables

step "warm restart: enable it, stop portsyncd, change two ports while it is down, start it again"
state HSET "WARM_RESTART_ENABLE_TABLE|system" enable true >/dev/null
note "STATE_DB WARM_RESTART_ENABLE_TABLE|system enable = $(state HGET 'WARM_RESTART_ENABLE_TABLE|system' enable)"
stop_daemon
nsip link set Ethernet12 mtu 9000
nsip link add Ethernet28 type veth peer name peer7
note "while portsyncd was down: Ethernet12 mtu 1500 -> 9000, Ethernet28 created again (down); nothing else"
rc MONITOR >"$TMP/monitor.log" 2>&1 &
MONITOR_PID=$!
PIDS+=("$MONITOR_PID")
sleep 0.3
start_daemon
wait_for 30 "WARM_RESTART_TABLE|portsyncd state reconciled" \
    bash -c "[[ \$(redis-cli -s '$SOCK' -n 6 HGET 'WARM_RESTART_TABLE|portsyncd' state) == reconciled ]]"
wait_for 10 "STATE_DB to match the kernel" state_matches_kernel
sleep 0.5
kill -TERM "$MONITOR_PID" 2>/dev/null || true
wait "$MONITOR_PID" 2>/dev/null || true
show_log
show_tables

step "what portsyncd wrote to Redis during the warm restart (from redis-cli MONITOR)"
# MONITOR lines: 1732600000.123456 [6 unix:/tmp/x/redis.sock] "HSET" "PORT_TABLE|Ethernet12" "mtu" "9000"
writes='"(HSET|HMSET|HSETNX|HINCRBY|HDEL|DEL|SET|SADD|SREM|PUBLISH|EVALSHA|EVAL|UNLINK|RENAME)"'
echo "  expected: one write each for Ethernet12 and Ethernet28, zero for every unchanged port"
printf '  %-12s %s\n' port "STATE_DB PORT_TABLE writes"
for p in "${PORTS[@]}"; do
    n=$(grep -E "^[0-9.]+ \[6 [^]]*\] ${writes} \"PORT_TABLE\|${p}\"" "$TMP/monitor.log" | grep -c . || true)
    printf '  %-12s %s\n' "$p" "$n"
done
echo "  STATE_DB writes (any key):"
grep -E "^[0-9.]+ \[6 [^]]*\] ${writes}" "$TMP/monitor.log" | sed -E 's/^[0-9.]+ \[[^]]*\] /    /' |
    sort | uniq -c | sed 's/^/  /' || echo "    (none)"
echo "  APPL_DB writes (any key; expected: only PortInitDone, and the orchagent stand-in consuming it):"
grep -E "^[0-9.]+ \[0 [^]]*\] ${writes}" "$TMP/monitor.log" | sed -E 's/^[0-9.]+ \[[^]]*\] /    /' |
    cut -c1-110 | sort | uniq -c | sed 's/^/  /' || echo "    (none)"
note "STATE_DB WARM_RESTART_TABLE|portsyncd = $(state HGETALL 'WARM_RESTART_TABLE|portsyncd' | paste -sd' ')"

step "Prometheus metrics (GET http://127.0.0.1:$METRICS_PORT/metrics inside the netns)"
if metrics=$(ip netns exec "$NS" curl -sf --max-time 3 "http://127.0.0.1:$METRICS_PORT/metrics"); then
    grep -E '^portsyncd_' <<<"$metrics" | grep -vE '_bucket\{' | sed 's/^/  /' || echo "  (no portsyncd_ lines)"
else
    note "could not fetch /metrics (see the log below)"
fi

step "stop portsyncd (SIGTERM commits its state first) and inspect the saved state offline"
stop_daemon
show_log
"$BIN/portsyncd-state" --state-dir "$TMP/state" inspect | sed 's/^/  /'

step "done"
note "STATE_DB matched the kernel after every step; cleaning up namespace $NS, redis-server and $TMP"
