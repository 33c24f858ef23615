#!/usr/bin/env bash
# CPU benchmark: how much of the machine Waypost spends per message, and on which of its
# threads, for the intake alone (the route paused through the admin API, so nothing is
# delivered) and for intake plus delivery, under the same wrk load. Where throughput
# figures swing from run to run on a shared machine, CPU time per message moves far less.
#
# Usage (from the repository root, as root):
#
#   scripts/bench/cpu.sh
#   DURATION=5s WARMUP=1s scripts/bench/cpu.sh                  # a short run, ~30 s
#
# It prints figures and never judges them: the exit code says only whether the
# benchmark itself could run. See scripts/bench/README.md ("CPU benchmark").
#
# Environment:
#   DURATION        measured wrk run per scenario (default 15s)
#   WARMUP          unreported wrk run before each measured one (default 3s; 0 for none)
#   CONNS           wrk connections (default 64)
#   WRK_THREADS     wrk threads (default 2)
#   DURABILITY      journal durability, full or relaxed (default full)
#   ORDERING        the route's ordering: fifo, key or none (default none); key posts with
#                   post-keys.lua (16 values of X-Key), the others with post-1k.lua
#   CONCURRENCY     the route's concurrency (default 16)
#   TRANSFORM       a jq program for the route's `transform` (SPEC §11; default none); the
#                   transform workers' CPU is counted as the thread "jq-workers"
#   TRACING=1       export spans with OTLP/HTTP (SPEC §14) to a private nginx collector that
#                   answers 200 on COLLECTOR_PORT (default 18082)
#   WAYPOST_BIN     Waypost binary; unset: .build-release/release/waypost if present, else
#                   .build/release/waypost; built only when neither exists
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs)
#   KEEP_JOURNALS=1 keep each scenario's journal.db
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   UPSTREAM_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT  (18081, 18080, 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
ORDERING=${ORDERING:-none}
# key: post-keys.lua sends 16 values of X-Key, so the route has 16 queues (as in delivery.sh).
if [[ $ORDERING == key ]]; then bench_settings cpu post-keys.lua 0; else bench_settings cpu post-1k.lua 0; fi

CONNS=${CONNS:-64}
DURABILITY=${DURABILITY:-full}
CONCURRENCY=${CONCURRENCY:-16}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}
COLLECTOR_PORT=${COLLECTOR_PORT:-18082}

TABLE_ROWS=()     # "scenario|acks/s|messages|delivered|µs/msg|threads"
DETAILS=()        # one free-text line per scenario, printed under the table
CLOCK_TICKS=$(getconf CLK_TCK)
PROBE_PID=        # the Waypost process and journal the probe looks at
PROBE_JOURNAL=

check_settings() {
    [[ $CONNS =~ ^[0-9]+$ && $CONNS -gt 0 ]] || die "CONNS must be one positive whole number, got '$CONNS'"
    check_durability
    [[ $ORDERING =~ ^(fifo|key|none)$ ]] || die "ORDERING must be fifo, key or none, got '$ORDERING'"
    [[ $CONCURRENCY =~ ^[0-9]+$ && $CONCURRENCY -gt 0 ]] || die "CONCURRENCY must be a positive whole number"
}

# probe start|end (wrk_measure's PROBE): "rows N delivered N", then "THREAD TICKS" per thread
# name of the Waypost process (user + system clock ticks; threads of one name summed).
probe() {
    echo "rows $(sql "$PROBE_JOURNAL" "SELECT count(*) FROM messages")" \
        "delivered $(sql "$PROBE_JOURNAL" "SELECT count(*) FROM deliveries WHERE state = 'delivered'")"
    local task child
    {
        for task in /proc/"$PROBE_PID"/task/*; do
            # Fields after "(comm) ": state is the 1st, utime the 12th, stime the 13th.
            printf '%s %s\n' "$(tr ' ' '_' <"$task/comm")" "$(sed -E 's/^.*\) //' "$task/stat" | awk '{ print $12 + $13 }')"
        done
        # Transform workers: child processes (a worker killed meanwhile takes its ticks along).
        for child in $(pgrep -P "$PROBE_PID" || true); do
            printf 'jq-workers %s\n' "$(sed -E 's/^.*\) //' "/proc/$child/stat" 2>/dev/null | awk '{ print $12 + $13 }')"
        done
    } | awk '{ ticks[$1] += $2 } END { for (name in ticks) print name, ticks[name] }' | sort
}

# cpu_per_message BEFORE AFTER MESSAGES: "TOTAL|THREAD=µs THREAD=µs ..." in µs per message,
# threads that used at least 0.5 µs per message, busiest first.
cpu_per_message() {
    local per_thread total threads
    per_thread=$(awk -v messages="$3" -v tick_us="$((1000000 / CLOCK_TICKS))" '
        FNR == 1 { next }
        NR == FNR { before[$1] = $2; next }
        { printf "%s %.1f\n", $1, ($2 - before[$1]) * tick_us / messages }' <(echo "$1") <(echo "$2"))
    total=$(awk '{ sum += $2 } END { printf "%.1f", sum }' <<<"$per_thread")
    threads=$(awk '$2 >= 0.5' <<<"$per_thread" | sort -k2,2 -rn | awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $1, $2 }')
    echo "$total|$threads"
}

# scenario intake|delivery
scenario() {
    local variant=$1
    local name="$variant@$CONNS"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log
    write_waypost_config "$config" "$journal" "$DURABILITY" "    ordering: $ORDERING
    concurrency: $CONCURRENCY$([[ $ORDERING == key ]] && printf '\n    ordering_key: header:X-Key')$([[ -n ${TRANSFORM:-} ]] && printf "\n    transform: '%s'" "$TRANSFORM")$([[ ${TRACING:-} == 1 ]] && printf '\ntracing: { otlp_endpoint: "http://127.0.0.1:%s" }' "$COLLECTOR_PORT")"
    start_scenario_waypost "$name" "$config" "$logfile" "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
    local pid=$WAYPOST_PID url="http://127.0.0.1:$WAYPOST_PORT/" paused=no
    if [[ $variant == intake ]]; then
        paused=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X POST \
            "http://127.0.0.1:$WAYPOST_ADMIN_PORT/routes/bench/pause" || true)
        [[ $paused == 200 ]] || die "$name: pausing the route through the admin API got '$paused', not 200"
    fi

    wrk_warmup "$name" "$url" "$CONNS"
    sleep 1 # let the requests that wrk abandoned at its deadline commit
    PROBE_PID=$pid
    PROBE_JOURNAL=$journal
    wrk_measure "$name" "$url" "$CONNS" probe
    local other_cpu=$OTHER_CPU

    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS journal_text
    journal_text=$(journal_and_log "$journal" "$logfile")

    local rows_before delivered_before rows_after delivered_after
    read -r _ rows_before _ delivered_before <<<"$(head -n 1 <<<"$PROBE_BEFORE")"
    read -r _ rows_after _ delivered_after <<<"$(head -n 1 <<<"$PROBE_AFTER")"
    local messages=n/a delivered=n/a per_message="n/a|n/a"
    if [[ $rows_before =~ ^[0-9]+$ && $rows_after =~ ^[0-9]+$ && $delivered_after =~ ^[0-9]+$ ]]; then
        messages=$((rows_after - rows_before))
        delivered=$((delivered_after - delivered_before))
        ((messages > 0)) && per_message=$(cpu_per_message "$PROBE_BEFORE" "$PROBE_AFTER" "$messages")
    fi
    local rps sockerr
    read -r rps _ _ _ _ sockerr < <(parse_wrk "$WORK/$name.wrk")
    TABLE_ROWS+=("$variant|$rps|$messages|$delivered|$per_message")
    DETAILS+=("$name: route paused $paused; socket errors $sockerr; $(status_counts "$WORK/$name.wrk")\
other processes' CPU $other_cpu; exit status $exit_status, $journal_text")
}

main() {
    bench_prepare wrk nginx curl sqlite3 python3

    local fsync_append busy_before
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)
    busy_before=$(idle_other_cpu)
    if [[ ${TRACING:-} == 1 ]]; then
        port_in_use "$COLLECTOR_PORT" && die "127.0.0.1:$COLLECTOR_PORT is already in use"
        # The upstream's nginx also plays the OTLP collector: 200 with an empty protobuf answer.
        start_upstream "    server {
        listen 127.0.0.1:$COLLECTOR_PORT;
        location / { default_type application/x-protobuf; return 200 \"\"; }
    }"
    else
        start_upstream
    fi
    scenario intake
    scenario delivery

    {
        report_head cpu "$busy_before"
        waypost_line
        [[ -n ${TRANSFORM:-} ]] && echo "transform: '$TRANSFORM'"
        [[ ${TRACING:-} == 1 ]] && echo "tracing: spans exported with OTLP/HTTP protobuf to a private nginx on 127.0.0.1:$COLLECTOR_PORT"
        echo "route: one route on /, async (202), ordering $ORDERING, concurrency $CONCURRENCY, journal durability $DURABILITY,"
        echo "  file system $JOURNAL_FS; its upstream a private nginx 'return 200' (worker_processes $UPSTREAM_WORKERS)"
        echo "load: wrk -t$WRK_THREADS -c$CONNS -d$DURATION (after a $WARMUP warm-up), 1024-byte JSON POST ($(basename "$LUA_SCRIPT"))"
        echo "$fsync_append"
        echo
        print_table '%-9s %9s %9s %10s %8s  %s\n' TABLE_ROWS \
            scenario acks/s messages delivered "µs/msg" "µs/msg by thread"
        detail_lines
        echo "intake: the route paused through the admin API, so Waypost only accepts; delivery: it delivers while it accepts."
        echo "messages, delivered: journal rows added, and rows that became 'delivered', during the measured run."
        echo "µs/msg: Waypost's CPU time (user + system, all threads, from /proc/PID/task/*/stat) over the measured run,"
        echo "  divided by the messages accepted in it. By thread: NIO-ELT-* are the event loops (intake, status API),"
        echo "  wp-journal the journal writer, wp-forwarder the delivery loop with libcurl, wp-checkpoint the WAL"
        echo "  checkpoints; threads under 0.5 µs/msg are left out."
    } | save_report
}

main "$@"
