#!/usr/bin/env bash
# Sync benchmark: the synchronous round trip through Waypost (mode: sync: journal, forward,
# answer with the upstream's reply) against the same requests sent straight to the same
# upstream, in the same run, at a few connection counts.
#
# Usage (from the repository root, as root):
#
#   scripts/bench/sync.sh
#   DURATION=3s WARMUP=1s scripts/bench/sync.sh          # a short run, ~30 s
#   CONNS="1 4 16 64 256" scripts/bench/sync.sh
#   REPLY=1 CONNS="1 8" scripts/bench/sync.sh           # also with a jq reply program
#
# It prints figures and never judges them: the exit code says only whether the
# benchmark itself could run. See scripts/bench/README.md ("Sync benchmark").
#
# Environment:
#   DURATION        measured wrk run per scenario (default 15s)
#   WARMUP          unreported wrk run before each measured one (default 3s; 0 for none)
#   CONNS           wrk connection counts (default "1 8 64"); wrk threads are min(WRK_THREADS, conns)
#   WRK_THREADS     wrk threads (default 2)
#   CONCURRENCY     the route's concurrency (default 64: the forwarder is not the limit at c=64)
#   SYNC_TIMEOUT    the route's sync_timeout (default 10s)
#   REPLY=1         after each Waypost run, the same with the route's `reply` program (SPEC §11),
#                   BENCH_REPLY below; a second table gives the latency it adds
#   DURABILITY      journal durability, full or relaxed (default full)
#   SETTLE_TIMEOUT  seconds to wait after a run for queued/in-flight messages to finish (default 30)
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   WAYPOST_BIN     Waypost binary; unset: .build-release/release/waypost if present, else
#                   .build/release/waypost; built only when neither exists
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs)
#   KEEP_JOURNALS=1 keep each scenario's journal.db
#   WRK_STATUS_COUNTS  default 1 here (post-1k.lua counts every status, so 202 fallbacks show);
#                   0 saves wrk some CPU but leaves only wrk's ">= 400" count
#   UPSTREAM_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT  (18081, 18080, 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings sync post-1k.lua 1

CONNS=${CONNS:-1 8 64}
CONCURRENCY=${CONCURRENCY:-64}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-10s}
DURABILITY=${DURABILITY:-full}
SETTLE_TIMEOUT=${SETTLE_TIMEOUT:-30}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}

TABLE_ROWS=()     # "conns|d req/s|d p50|d p99|w req/s|w p50|w p99|added p50|goal|non-200|202|undelivered"
DETAILS=()        # one free-text line per scenario, printed under the table
GOAL_MS=n/a       # fdatasync median + 1 ms: the added p50 the goal allows
declare -A DIRECT=()  # conns -> "req/s p50 p99" of the direct run
declare -A THROUGH=() # conns -> "req/s p50 p99" of the Waypost run without a reply program
REPLY=${REPLY:-0}
REPLY_ROWS=()     # "conns|w r/s|w p50|w p99|+reply r/s|p50|p99|added p50|added p99|non-200"
BENCH_REPLY='{status: (if .status < 300 then 200 else 502 end), body: {ok: (.status < 300), attempts, id}}'

check_settings() {
    check_conns
    check_durability
    [[ $REPLY == 0 || $REPLY == 1 ]] || die "REPLY must be 0 or 1, not '$REPLY'"
    [[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive integer, not '$CONCURRENCY'"
    [[ $SETTLE_TIMEOUT =~ ^[0-9]+$ ]] || die "SETTLE_TIMEOUT must be a whole number of seconds"
}

# non200 FILE NON2XX: answers other than 200 from the status counts, or wrk's ">= 400"
# count with a "*" when the counts are off.
non200() {
    local n
    n=$(status_count_other "$1" 200)
    [[ $n == n/a ]] && n="$2*"
    echo "$n"
}

# ---------------------------------------------------------------------------
# Scenarios

direct_scenario() {
    local conns=$1 name="direct@$1" url="http://127.0.0.1:$UPSTREAM_PORT/"
    wrk_warmup "$name" "$url" "$conns"
    wrk_measure "$name" "$url" "$conns"
    local rps p50 p99 reqs non2xx sockerr
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk" 3)
    DIRECT[$conns]="$rps $p50 $p99"
    DETAILS+=("$name: $reqs answers, non-200 $(non200 "$WORK/$name.wrk" "$non2xx"), socket errors $sockerr; \
$(status_counts "$WORK/$name.wrk")other processes' CPU $OTHER_CPU; raw output $WORK/$name.wrk")
}

# settle JOURNAL: waits up to SETTLE_TIMEOUT s until nothing is queued or in flight (a 202
# fallback, or a request wrk abandoned at its deadline, is still being delivered).
settle() {
    local d f q i t
    for ((t = 0; t < SETTLE_TIMEOUT * 2; t++)); do
        read -r d f q i < <(state_counts "$1")
        [[ $q == 0 && $i == 0 ]] && return 0
        sleep 0.5
    done
    log "still queued $q, in flight $i after ${SETTLE_TIMEOUT}s"
}

# waypost_scenario CONNS [reply]: the sync route, with BENCH_REPLY as its reply program for "reply".
waypost_scenario() {
    local conns=$1 variant=${2:-} name="waypost${2:++$2}@$1"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log
    local route_keys="    mode: sync
    sync_timeout: $SYNC_TIMEOUT
    ordering: none
    concurrency: $CONCURRENCY"
    [[ $variant == reply ]] && route_keys+=$'\n'"    reply: '$BENCH_REPLY'"
    write_waypost_config "$config" "$journal" "$DURABILITY" "$route_keys"

    # A reserved path (SPEC §2): any HTTP answer, even a 404, means the listener is up.
    start_scenario_waypost "$name" "$config" "$logfile" "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
    local pid=$WAYPOST_PID url="http://127.0.0.1:$WAYPOST_PORT/"

    # One request by hand: a sync route should answer with the upstream's 200 and "ok".
    local probe
    probe=$(bench_body | curl -s -o "$dir/probe.body" -w '%{http_code}' --max-time 15 \
        -H 'Content-Type: application/json' --data-binary @- "$url" || true)
    [[ $probe == 200 ]] || log "$name: warning: a single POST got $probe, not 200 (body in $dir/probe.body)"

    wrk_warmup "$name" "$url" "$conns"
    wrk_measure "$name" "$url" "$conns"
    local other_cpu=$OTHER_CPU
    settle "$journal"

    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS

    local d f q i total undelivered=n/a
    read -r d f q i < <(state_counts "$journal")
    total=$(sql "$journal" "SELECT count(*) FROM messages")
    [[ $total =~ ^[0-9]+$ && $d =~ ^[0-9]+$ ]] && undelivered=$((total - d))
    local journal_text
    journal_text=$(journal_and_log "$journal" "$logfile")

    local rps p50 p99 reqs non2xx sockerr
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk" 3)
    local drps dp50 dp99
    read -r drps dp50 dp99 <<<"${DIRECT[$conns]:-n/a n/a n/a}"
    local fallback
    fallback=$(status_count "$WORK/$name.wrk" 202)
    if [[ $variant == reply ]]; then
        local wrps wp50 wp99
        read -r wrps wp50 wp99 <<<"${THROUGH[$conns]:-n/a n/a n/a}"
        REPLY_ROWS+=("$conns|$wrps|$wp50|$wp99|$rps|$p50|$p99|$(difference "$p50" "$wp50" 3)|$(difference "$p99" "$wp99" 3)|\
$(non200 "$WORK/$name.wrk" "$non2xx")")
    else
        THROUGH[$conns]="$rps $p50 $p99"
    fi
    [[ $variant == reply ]] || TABLE_ROWS+=("$conns|$drps|$dp50|$dp99|$rps|$p50|$p99|$(difference "$p50" "$dp50" 3)|$GOAL_MS|\
$(non200 "$WORK/$name.wrk" "$non2xx")|$fallback|$undelivered")
    DETAILS+=("$name: single POST before the load got $probe; $reqs answers, socket errors $sockerr; \
$(status_counts "$WORK/$name.wrk")journal after stop: $total rows (warm-up and probe included), delivered $d, \
failed/skipped $f, queued $q, in flight $i; other processes' CPU $other_cpu; \
exit status $exit_status, $journal_text")
}

# ---------------------------------------------------------------------------
# Report

main() {
    bench_prepare wrk nginx curl sqlite3 python3

    # One journal commit costs at least one fdatasync of the WAL (append) with durability full.
    local fsync_append fsync_overwrite median
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)
    fsync_overwrite=$(python3 "$FSYNC_PY" "$WORK" --mode overwrite)
    median=$(fsync_median "$fsync_append")
    if [[ $median != n/a ]]; then
        GOAL_MS=$(awk -v m="$median" 'BEGIN { printf "%.3f", m + 1 }')
    fi

    local busy_before
    busy_before=$(idle_other_cpu)

    start_upstream

    # Direct and through Waypost back to back at each connection count, so that both
    # runs of a row see the same machine.
    local conns
    for conns in $CONNS; do
        direct_scenario "$conns"
        waypost_scenario "$conns"
        if [[ $REPLY == 1 ]]; then waypost_scenario "$conns" reply; fi
    done

    {
        report_head sync "$busy_before"
        waypost_line
        echo "route: mode sync, sync_timeout $SYNC_TIMEOUT, ordering none, concurrency $CONCURRENCY; journal durability $DURABILITY, file system $JOURNAL_FS"
        echo "upstream: nginx $(nginx -v 2>&1 | cut -d/ -f2) 'return 200', worker_processes $UPSTREAM_WORKERS, access_log off"
        echo "load: wrk -t min($WRK_THREADS, conns) -d$DURATION --latency (after a $WARMUP warm-up), 1024-byte JSON POST (post-1k.lua), WRK_STATUS_COUNTS=$WRK_STATUS_COUNTS"
        echo "$fsync_append"
        echo "$fsync_overwrite"
        echo
        print_table '%5s %10s %8s %8s %11s %8s %8s %10s %11s %8s %6s %12s\n' TABLE_ROWS \
            conns "direct r/s" "p50 ms" "p99 ms" "waypost r/s" "p50 ms" "p99 ms" "added p50" "commit+1ms" \
            non-200 202 undelivered
        if ((${#REPLY_ROWS[@]} > 0)); then
            echo
            echo "With a reply program: reply: '$BENCH_REPLY' (run by a transform worker), back to back with the run without"
            print_table '%5s %11s %8s %8s %10s %8s %8s %10s %10s %8s\n' REPLY_ROWS \
                conns "waypost r/s" "p50 ms" "p99 ms" "+reply r/s" "p50 ms" "p99 ms" "added p50" "added p99" non-200
        fi
        detail_lines
        echo "direct: wrk straight to the nginx upstream; waypost: the same wrk to Waypost, which journals, forwards to that"
        echo "  upstream and answers with its reply. Each row's two runs are back to back; r/s, p50, p99 from wrk (ms)."
        echo "added p50: waypost p50 - direct p50. commit+1ms: the fdatasync append median above + 1 ms, the goal for added p50"
        echo "  (at most one journal commit plus 1 ms). Printed, not checked."
        echo "non-200: answers other than the upstream's 200 (from the status counts; '*': wrk's count of >= 400 only, 202 not"
        echo "  seen). 202: the sync budget ran out and Waypost answered asynchronously. undelivered: journal rows not"
        echo "  'delivered' after the run had settled (up to ${SETTLE_TIMEOUT}s) and Waypost had stopped."
    } | save_report
}

main "$@"
