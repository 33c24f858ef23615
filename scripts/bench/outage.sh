#!/usr/bin/env bash
# Outage benchmark (issue 17): a steady load of RATE messages/s; the upstream answers 503 for
# OUTAGE seconds, then 200 again. Run twice, with the breaker and without it (`breaker: off`),
# it prints the attempts the dead upstream received, how long the backlog took to drain once
# the upstream was back (at the route's rate_limit), and the messages lost (none, or it is a bug).
#
# Usage (from the repository root, as root):
#
#   scripts/bench/outage.sh
#   OUTAGE=20 WAYPOST_BIN=/path/to/waypost scripts/bench/outage.sh      # a shorter outage
#
# It prints figures and never judges them: the exit code says only whether the benchmark
# itself could run.
#
# Environment:
#   RATE            messages per second the sources send (default 500)
#   BEFORE, OUTAGE, AFTER   seconds of load before, during and after the outage (10, 60, 20)
#   CONNS           wrk connections, each sending every CONNS/RATE s (default 10)
#   RATE_LIMIT      the route's rate_limit (default 1000/s)
#   PROBE_INTERVAL  the breaker's probe_interval in the run with it (default 5s)
#   DRAIN_TIMEOUT   give up draining after this many seconds (default 300)
#   WAYPOST_BIN, OUT_DIR, UPSTREAM_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT   as in cpu.sh

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings outage post-1k.lua 0

RATE=${RATE:-500}
BEFORE=${BEFORE:-10}
OUTAGE=${OUTAGE:-60}
AFTER=${AFTER:-20}
CONNS=${CONNS:-10}
RATE_LIMIT=${RATE_LIMIT:-1000/s}
PROBE_INTERVAL=${PROBE_INTERVAL:-5s}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-300}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}
TABLE_ROWS=()
DETAILS=()

check_settings() {
    local name
    for name in RATE BEFORE OUTAGE AFTER CONNS DRAIN_TIMEOUT; do
        [[ ${!name} =~ ^[0-9]+$ && ${!name} -gt 0 ]] || die "$name must be a positive whole number, got '${!name}'"
    done
    ((RATE >= CONNS)) || die "RATE must be at least CONNS"
}

# The upstream: nginx answering 503 while $WORK/down exists, else 200, logging each status.
start_switchable_upstream() {
    port_in_use "$UPSTREAM_PORT" && die "127.0.0.1:$UPSTREAM_PORT is already in use"
    write_nginx_conf "$WORK/nginx-upstream" "$UPSTREAM_PORT" 1 \
        "            access_log $WORK/upstream.log status;
            if (-f $WORK/down) { return 503; }
            return 200 \"ok\\n\";" \
        "    log_format status '\$status';"
    start_nginx upstream "$WORK/nginx-upstream" "$UPSTREAM_PORT"
}

# A wrk script: post-1k.lua's request, each connection pausing so that together they send RATE/s.
write_rate_script() {
    cat >"$WORK/rate.lua" <<EOF
dofile("$SCRIPT_DIR/post-1k.lua")
function delay() return $((1000 * CONNS / RATE)) end
EOF
}

# scenario NAME BREAKER_LINE
scenario() {
    local name=$1 breaker=$2 dir=$WORK/$1
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log
    write_waypost_config "$config" "$journal" full "    ordering: none
    concurrency: 16
    retry: { initial: 1s, factor: 2, max_delay: 10s, max_attempts: 100000 }
    rate_limit: $RATE_LIMIT
    breaker: $breaker"
    rm -f "$WORK/down"
    : >"$WORK/upstream.log"
    start_scenario_waypost "$name" "$config" "$logfile" "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
    local pid=$WAYPOST_PID
    local total=$((BEFORE + OUTAGE + AFTER))
    log "$name: $RATE msg/s for ${total}s; the upstream answers 503 from ${BEFORE}s to $((BEFORE + OUTAGE))s"
    wrk -t1 -c"$CONNS" -d"${total}s" -s "$WORK/rate.lua" "http://127.0.0.1:$WAYPOST_PORT/" >"$WORK/$name.wrk" 2>&1 &
    local wrk_pid=$!
    sleep "$BEFORE"
    local before_down
    before_down=$(wc -l <"$WORK/upstream.log")
    touch "$WORK/down"
    sleep "$OUTAGE"
    rm -f "$WORK/down"
    local back=$EPOCHREALTIME during_down
    during_down=$(($(wc -l <"$WORK/upstream.log") - before_down))
    wait "$wrk_pid" || true
    log "$name: the load ended; draining"
    local waiting=1 drained=n/a now
    while true; do
        read -r _ _ q i < <(state_counts "$journal")
        now=$EPOCHREALTIME
        if [[ $q == 0 && $i == 0 ]]; then
            drained=$(awk -v a="$back" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
            waiting=0
            break
        fi
        if awk -v a="$back" -v b="$now" -v t="$DRAIN_TIMEOUT" 'BEGIN { exit !(b - a > t) }'; then break; fi
        sleep 0.5
    done
    stop_pid "$pid" "$STOP_TIMEOUT"
    local rows delivered attempts failed_503 lost rps
    rows=$(sql "$journal" "SELECT count(*) FROM messages")
    delivered=$(sql "$journal" "SELECT count(*) FROM deliveries WHERE state = 'delivered'")
    attempts=$(wc -l <"$WORK/upstream.log")
    failed_503=$(grep -c '^503$' "$WORK/upstream.log" || true)
    lost=n/a
    [[ $rows =~ ^[0-9]+$ && $delivered =~ ^[0-9]+$ ]] && lost=$((rows - delivered))
    read -r rps _ _ _ _ _ < <(parse_wrk "$WORK/$name.wrk")
    TABLE_ROWS+=("$name|$rps|$rows|$during_down|$failed_503|$attempts|${drained}|$lost")
    local note=""
    [[ $waiting == 1 ]] && note="; NOT drained within ${DRAIN_TIMEOUT}s"
    DETAILS+=("$name: breaker: $breaker; $(journal_and_log "$journal" "$logfile")$note")
}

main() {
    check_settings
    bench_prepare wrk nginx curl sqlite3 python3
    local busy_before
    busy_before=$(idle_other_cpu)
    start_switchable_upstream
    write_rate_script
    scenario breaker "{ failures: 20, probe_interval: $PROBE_INTERVAL }"
    scenario no-breaker off
    {
        report_head outage "$busy_before"
        waypost_line
        echo "route: one route, ordering none, concurrency 16, retry { initial: 1s, factor: 2, max_delay: 10s },"
        echo "  rate_limit $RATE_LIMIT, to a private nginx that answers 503 during the outage"
        echo "load: wrk -t1 -c$CONNS, $RATE msg/s (each connection pausing $((1000 * CONNS / RATE)) ms), 1 KiB JSON bodies,"
        echo "  ${BEFORE}s before the outage, ${OUTAGE}s of outage, ${AFTER}s after"
        echo
        print_table '%-11s %8s %9s %16s %10s %10s %9s %6s\n' TABLE_ROWS \
            scenario acks/s messages "attempts in outage" "503s" attempts "drain s" lost
        detail_lines
        echo "attempts in outage: requests the upstream received while it answered 503; attempts: all it received."
        echo "drain s: from the upstream's return to the last waiting delivery delivered."
        echo "lost: messages accepted (journal rows) minus deliveries delivered, after the drain."
    } | save_report
}

main "$@"
