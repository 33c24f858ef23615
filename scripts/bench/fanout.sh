#!/usr/bin/env bash
# Fan-out benchmark (SPEC §11): one route delivering every message to three destinations,
# ordering none, key and fifo, all to the private nginx upstream, while wrk posts 1 KiB JSON
# bodies with 16 values of X-Key. It prints acks/s, each destination's deliveries/s over the
# measured run, Waypost's CPU per accepted message and its peak RSS.
#
# Usage (from the repository root, as root):
#
#   scripts/bench/fanout.sh
#   DURATION=10s WARMUP=2s WAYPOST_BIN=/path/to/waypost scripts/bench/fanout.sh
#
# It prints figures and never judges them: the exit code says only whether the benchmark
# itself could run.
#
# Environment:
#   DURATION, WARMUP, WRK_THREADS, WAYPOST_BIN, OUT_DIR, UPSTREAM_WORKERS, UPSTREAM_PORT,
#   WAYPOST_PORT   as in cpu.sh (defaults 15s, 3s, 2, prebuilt release, <repo>/bench-out, 1,
#                  18081, 18080)
#   CONNS          wrk connections (default 64)
#   CONCURRENCY    the none and key destinations' concurrency (default 16)
#   DURABILITY     journal durability, full or relaxed (default full)
#   WAYPOST_ADMIN_PORT  (default 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings fanout post-keys.lua 0

CONNS=${CONNS:-64}
DURABILITY=${DURABILITY:-full}
CONCURRENCY=${CONCURRENCY:-16}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}
DESTINATIONS=(none key fifo)
CLOCK_TICKS=$(getconf CLK_TCK)
PROBE_PID=
PROBE_JOURNAL=

check_settings() {
    [[ $CONNS =~ ^[0-9]+$ && $CONNS -gt 0 ]] || die "CONNS must be one positive whole number, got '$CONNS'"
    check_durability
    [[ $CONCURRENCY =~ ^[0-9]+$ && $CONCURRENCY -gt 0 ]] || die "CONCURRENCY must be a positive whole number"
}

# probe start|end: "messages N", one "DESTINATION N" line per destination (deliveries
# delivered), then "cpu TICKS" (user + system, all threads) of the Waypost process.
probe() {
    echo "messages $(sql "$PROBE_JOURNAL" "SELECT count(*) FROM messages")"
    sql "$PROBE_JOURNAL" "SELECT destination || ' ' || count(*) FROM deliveries WHERE state = 'delivered' GROUP BY destination"
    echo "cpu $(awk '{ print $14 + $15 }' "/proc/$PROBE_PID/stat")"
}

# field NAME TEXT: the number after NAME in a probe's output (0 when absent).
field() {
    awk -v name="$1" '$1 == name { print $2; found = 1 } END { if (!found) print 0 }' <<<"$2"
}

main() {
    check_settings
    bench_prepare wrk nginx curl sqlite3 python3
    local busy_before
    busy_before=$(idle_other_cpu)
    start_upstream

    local name="fanout@$CONNS" dir=$WORK/fanout
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log
    write_waypost_config "$config" "$journal" "$DURABILITY" "    concurrency: $CONCURRENCY
    destinations:
      - { name: none, ordering: none }
      - { name: key, ordering: key, ordering_key: \"header:X-Key\" }
      - { name: fifo, ordering: fifo }"
    start_scenario_waypost "$name" "$config" "$logfile" "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
    local pid=$WAYPOST_PID url="http://127.0.0.1:$WAYPOST_PORT/"
    wrk_warmup "$name" "$url" "$CONNS"
    sleep 1
    PROBE_PID=$pid
    PROBE_JOURNAL=$journal
    local t0 t1
    t0=$EPOCHREALTIME
    wrk_measure "$name" "$url" "$CONNS" probe
    t1=$EPOCHREALTIME
    local rss_kib
    rss_kib=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo n/a)
    local other_cpu=$OTHER_CPU
    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS

    local seconds messages cpu_ticks rps sockerr rows=()
    seconds=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    messages=$(($(field messages "$PROBE_AFTER") - $(field messages "$PROBE_BEFORE")))
    cpu_ticks=$(($(field cpu "$PROBE_AFTER") - $(field cpu "$PROBE_BEFORE")))
    read -r rps _ _ _ _ sockerr < <(parse_wrk "$WORK/$name.wrk")
    local destination delivered
    for destination in "${DESTINATIONS[@]}"; do
        delivered=$(($(field "$destination" "$PROBE_AFTER") - $(field "$destination" "$PROBE_BEFORE")))
        rows+=("$destination|$delivered|$(awk -v d="$delivered" -v s="$seconds" 'BEGIN { printf "%.0f", d / s }')")
    done
    local per_message=n/a
    ((messages > 0)) && per_message=$(awk -v t="$cpu_ticks" -v hz="$CLOCK_TICKS" -v m="$messages" \
        'BEGIN { printf "%.1f", t * 1000000 / hz / m }')

    {
        report_head fanout "$busy_before"
        waypost_line
        echo "route: one route on /, async (202), three destinations to the private nginx 'return 200'"
        echo "  (worker_processes $UPSTREAM_WORKERS): none and key (X-Key, 16 values) with concurrency $CONCURRENCY, and fifo;"
        echo "  journal durability $DURABILITY, file system $JOURNAL_FS"
        echo "load: wrk -t$WRK_THREADS -c$CONNS -d$DURATION (after a $WARMUP warm-up), 1024-byte JSON POST (post-keys.lua)"
        echo
        echo "acks/s $rps; messages accepted in the measured run $messages; CPU $per_message µs per accepted message"
        echo "peak RSS $(awk -v k="$rss_kib" 'BEGIN { if (k ~ /^[0-9]+$/) printf "%.1f MiB", k / 1024; else print "n/a" }')"
        echo
        print_table '%-12s %12s %14s\n' rows destination delivered "delivered/s"
        echo
        echo "- socket errors $sockerr; $(status_counts "$WORK/$name.wrk")other processes' CPU $other_cpu; exit status $exit_status"
        echo "delivered: deliveries to the destination that became 'delivered' during the measured run"
        echo "  (${seconds} s by the wall clock, wrk's run and the probes); a destination behind the intake"
        echo "  delivers its backlog later. CPU: user + system of every Waypost thread over the same span."
    } | save_report
}

main "$@"
