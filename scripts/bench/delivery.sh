#!/usr/bin/env bash
# Delivery benchmark: how fast Waypost's forwarder empties the journal to a fast local
# upstream, with intake running at the same time (live) and from a backlog (drain).
#
# Usage (from the repository root, as root):
#
#   scripts/bench/delivery.sh
#   DURATION=5s BACKLOG=20000 scripts/bench/delivery.sh      # a short run
#   SCENARIOS=key SKIP_DRAIN=1 scripts/bench/delivery.sh
#   SIGN=1 SKIP_LIVE=1 BACKLOG=20000 scripts/bench/delivery.sh   # drains with and without sign
#   TRANSFORM=1 SCENARIOS=none scripts/bench/delivery.sh           # with and without a jq transform
#   WAYPOST_BIN=/path/to/waypost scripts/bench/delivery.sh
#
# It prints figures and never judges them: the exit code says only whether the
# benchmark itself could run. See scripts/bench/README.md ("Delivery benchmark").
#
# Environment:
#   DURATION        measured wrk run per live scenario (default 15s)
#   WARMUP          unreported wrk run before each measured one (default 3s; 0 for none)
#   CONNS           wrk connections (default 64)
#   WRK_THREADS     wrk threads (default 2)
#   SCENARIOS       orderings to run, of fifo, key and none (default "fifo key none")
#   CONCURRENCY     the routes' concurrency for key and none (default 16)
#   KEY_COUNT       distinct X-Key values, sent by post-keys.lua and put in the backlog (default 16)
#   DURABILITY      journal durability, full or relaxed (default full)
#   BACKLOG         messages in the drain scenarios' backlog (default 100000)
#   SKIP_LIVE=1     no live scenarios (no wrk)
#   SKIP_DRAIN=1    no backlog drain scenarios
#   SIGN=1          run every scenario twice: as is, then with the route signing its deliveries
#                   (sign: { scheme: standard-webhooks, secret_env: BENCH_SIGN_SECRET }, a random
#                   whsec_ secret made for the run); the report gives signed / unsigned rates
#   TRANSFORM=1     run every scenario twice: as is, then with a small jq transform on the route
#                   (SPEC §11: a new body from the old one and a header); the report gives
#                   transformed / plain rates
#   DRAIN_TIMEOUT   give up a drain after this many seconds (default 600)
#   STALL_TIMEOUT   give up a drain when nothing was delivered for this many seconds (default 60)
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   WAYPOST_BIN     Waypost binary; unset: .build-release/release/waypost if present, else
#                   .build/release/waypost; built (release, --scratch-path .build-release)
#                   only when neither exists
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs)
#   KEEP_JOURNALS=1 keep each scenario's journal.db (they are deleted after counting)
#   WRK_STATUS_COUNTS=1  let post-keys.lua count every status code (costs wrk some speed)
#   UPSTREAM_PORT, WAYPOST_PORT  (18081, 18080)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings delivery post-keys.lua 0

CONNS=${CONNS:-64}
SCENARIOS=${SCENARIOS:-fifo key none}
CONCURRENCY=${CONCURRENCY:-16}
export KEY_COUNT=${KEY_COUNT:-16}
DURABILITY=${DURABILITY:-full}
BACKLOG=${BACKLOG:-100000}
SKIP_LIVE=${SKIP_LIVE:-0}
SKIP_DRAIN=${SKIP_DRAIN:-0}
SIGN=${SIGN:-0}
TRANSFORM=${TRANSFORM:-0}
# The transform of the +transform scenarios: the body is post-1k.lua's {"data":"xxx…"}.
BENCH_TRANSFORM='.body |= {kind: "bench", size: (.data | length), head: .data[0:16]} | .headers["x-bench"] = "1"'
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
STALL_TIMEOUT=${STALL_TIMEOUT:-60}

# The goals the figures are read against (printed, never checked).
GOAL_FIFO_PER_S=5000
GOAL_PARALLEL_PER_S=10000
GOAL_DRAIN_RSS_MB=150

LIVE_ROWS=()      # "scenario|conns|acks/s|non2xx|delivered/s|goal|p50|p99|backlog start->end|failed|rss"
DRAIN_ROWS=()     # "scenario|messages|ready s|drain s|msgs/s|failed|rss|goal"
DETAILS=()        # one free-text line per scenario, printed under the tables
declare -A LIVE_RATE=() DRAIN_RATE=()   # delivered/s and drain msgs/s by scenario ("fifo", "fifo+sign")

# ---------------------------------------------------------------------------
# Set-up (the functions shared with the other benchmarks are in lib.sh)

ensure_tools() {
    local tools=(nginx curl sqlite3 python3)
    if [[ $SKIP_LIVE != 1 ]]; then
        tools+=(wrk)
    fi
    install_missing "${tools[@]}"
}

check_settings() {
    local scenario
    for scenario in $SCENARIOS; do
        case $scenario in
            fifo | key | none) ;;
            *) die "SCENARIOS: unknown ordering '$scenario' (fifo, key, none)" ;;
        esac
    done
    check_durability
    [[ $BACKLOG =~ ^[1-9][0-9]*$ ]] || die "BACKLOG must be a positive integer, not '$BACKLOG'"
    [[ $KEY_COUNT =~ ^[1-9][0-9]*$ ]] || die "KEY_COUNT must be a positive integer, not '$KEY_COUNT'"
    [[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive integer, not '$CONCURRENCY'"
    [[ $SIGN == 0 || $SIGN == 1 ]] || die "SIGN must be 0 or 1, not '$SIGN'"
    [[ $TRANSFORM == 0 || $TRANSFORM == 1 ]] || die "TRANSFORM must be 0 or 1, not '$TRANSFORM'"
}

# ---------------------------------------------------------------------------
# Journal and process probes

# latency_ms JOURNAL FROM TO: "count p50 p99 max" of delivered_at - received_at in ms, for the
# deliveries ended delivered in [FROM, TO) (RFC 3339 text, which sorts in time order). Nearest rank.
latency_ms() {
    local out
    out=$(sql "$1" "
        WITH l AS (
            SELECT (julianday(d.delivered_at) - julianday(m.received_at)) * 86400000.0 AS ms
            FROM deliveries d JOIN messages m ON m.id = d.message_id
            WHERE d.state = 'delivered' AND d.delivered_at >= '$2' AND d.delivered_at < '$3'),
        r AS (SELECT ms, row_number() OVER (ORDER BY ms) AS rank, count(*) OVER () AS n FROM l)
        SELECT count(*),
               printf('%.1f', min(CASE WHEN rank >= 0.50 * n THEN ms END)),
               printf('%.1f', min(CASE WHEN rank >= 0.99 * n THEN ms END)),
               printf('%.1f', max(ms))
        FROM r")
    [[ $out == n/a || $out == "0|||" || $out == "0|0.0|0.0|0.0" ]] && out="0|n/a|n/a|n/a"
    tr '|' ' ' <<<"$out"
}

# failed_summary JOURNAL: the most common last_error of failed messages, for the details line.
failed_summary() {
    sql "$1" "SELECT count(*) || ' x ' || coalesce(last_error, '?') FROM deliveries
              WHERE state IN ('failed', 'skipped') GROUP BY last_error ORDER BY count(*) DESC LIMIT 3" \
        | paste -sd ';' -
}

# retrying JOURNAL: messages waiting for a retry (queued after a failed attempt).
retrying() {
    sql "$1" "SELECT count(*) FROM deliveries WHERE state = 'queued' AND attempts > 0"
}

# peak_rss_kib PID: VmHWM (the resident set's high-water mark) of a running process.
peak_rss_kib() {
    awk '/^VmHWM:/ { print $2; found = 1 } END { if (!found) print "n/a" }' "/proc/$1/status" 2>/dev/null || echo "n/a"
}

mib() {
    [[ $1 =~ ^[0-9]+$ ]] || { echo "n/a"; return 0; }
    awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'
}

now_iso() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }

# elapsed FROM TO: seconds between two $EPOCHREALTIME values, 3 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

per_second() {
    [[ $1 =~ ^[0-9]+$ ]] || { echo "n/a"; return 0; }
    awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print "n/a" }'
}

# write_config ORDERING DIR [sign|transform]: the route "bench" on / to the private upstream;
# with "sign", it signs every delivery (SPEC §9) with the secret in BENCH_SIGN_SECRET; with
# "transform", it runs BENCH_TRANSFORM over each delivery (SPEC §11).
write_config() {
    local ordering=$1 dir=$2 variant=${3:-} extra=""
    case $ordering in
        key) extra="    ordering_key: header:X-Key
    concurrency: $CONCURRENCY" ;;
        none) extra="    concurrency: $CONCURRENCY" ;;
    esac
    if [[ $variant == sign ]]; then
        extra+="${extra:+$'\n'}    sign: { scheme: standard-webhooks, secret_env: BENCH_SIGN_SECRET }"
    fi
    if [[ $variant == transform ]]; then
        extra+="${extra:+$'\n'}    transform: '$BENCH_TRANSFORM'"
    fi
    cat >"$dir/waypost.yaml" <<EOF
listen: 127.0.0.1:$WAYPOST_PORT
journal: { path: $dir/journal.db, durability: $DURABILITY, max_backlog: 100000000 }
routes:
  - name: bench
    path: /
    upstream: http://127.0.0.1:$UPSTREAM_PORT/
    ordering: $ordering
$extra
EOF
}

# start_waypost DIR: starts Waypost on DIR/waypost.yaml (log appended to DIR/waypost.log),
# waits until it answers HTTP; sets WAYPOST_PID.
start_waypost() {
    local dir=$1
    port_in_use "$WAYPOST_PORT" && die "127.0.0.1:$WAYPOST_PORT is already in use"
    # A reserved path (SPEC §2): any HTTP answer, even a 404, means the listener is up.
    launch_waypost "$dir/waypost.yaml" "$dir/waypost.log" "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
}

# ---------------------------------------------------------------------------
# Live: intake and delivery at the same time

# window_probe start|end: "epoch_seconds rfc3339 delivered failed queued in_flight" of
# $PROBE_JOURNAL. The clock is read before the counts at the start and after them at the
# end, so the window is never shorter than the time in which its deliveries were counted.
PROBE_JOURNAL=
window_probe() {
    local counts t iso
    if [[ $1 == start ]]; then
        t=$EPOCHREALTIME
        iso=$(now_iso)
        counts=$(state_counts "$PROBE_JOURNAL")
    else
        counts=$(state_counts "$PROBE_JOURNAL")
        t=$EPOCHREALTIME
        iso=$(now_iso)
    fi
    echo "$t $iso $counts"
}

# live_scenario ORDERING [sign]
live_scenario() {
    local ordering=$1 variant=${2:-} conns=$CONNS
    local label=$ordering${variant:++$variant}
    local name="live-$ordering${variant:+-$variant}"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local journal=$dir/journal.db logfile=$dir/waypost.log url="http://127.0.0.1:$WAYPOST_PORT/"
    write_config "$ordering" "$dir" "$variant"

    log "$name: starting $WAYPOST_BIN serve --config $dir/waypost.yaml"
    start_waypost "$dir"
    local pid=$WAYPOST_PID

    wrk_warmup "$name" "$url" "$conns"

    # The window: delivered count and wall clock just before and just after the measured run.
    local t0 t1 iso0 iso1 d0 f0 q0 i0 d1 f1 q1 i1
    PROBE_JOURNAL=$journal
    wrk_measure "$name" "$url" "$conns" window_probe
    read -r t0 iso0 d0 f0 q0 i0 <<<"$PROBE_BEFORE"
    read -r t1 iso1 d1 f1 q1 i1 <<<"$PROBE_AFTER"
    local other_cpu=$OTHER_CPU window
    window=$(elapsed "$t0" "$t1")

    local rss_kib
    rss_kib=$(peak_rss_kib "$pid")

    local delivered=n/a rate=n/a
    if [[ $d0 =~ ^[0-9]+$ && $d1 =~ ^[0-9]+$ ]]; then
        delivered=$((d1 - d0))
        rate=$(per_second "$delivered" "$window")
    fi
    local lat_n p50 p99 pmax
    read -r lat_n p50 p99 pmax < <(latency_ms "$journal" "$iso0" "$iso1")
    local retry_count
    retry_count=$(retrying "$journal")

    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS
    local total failed_text=""
    total=$(sql "$journal" "SELECT count(*) FROM messages")
    if [[ $f1 =~ ^[0-9]+$ && $f1 -gt 0 ]]; then
        failed_text="failed: $(failed_summary "$journal"); "
    fi
    local journal_text
    journal_text=$(journal_and_log "$journal" "$logfile")

    local rps wp50 wp99 reqs non2xx sockerr goal=$GOAL_PARALLEL_PER_S backlog0=n/a backlog=n/a
    read -r rps wp50 wp99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk")
    [[ $ordering == fifo ]] && goal=$GOAL_FIFO_PER_S
    [[ $q0 =~ ^[0-9]+$ && $i0 =~ ^[0-9]+$ ]] && backlog0=$((q0 + i0))
    [[ $q1 =~ ^[0-9]+$ && $i1 =~ ^[0-9]+$ ]] && backlog=$((q1 + i1))
    LIVE_RATE[$label]=$rate
    LIVE_ROWS+=("$label|$conns|$rps|$non2xx|$rate|>=$goal|$p50|$p99|$backlog0->$backlog|$f1|$(mib "$rss_kib")")
    DETAILS+=("$name: window ${window}s, delivered $d0 -> $d1 (+$delivered), queued+in_flight $backlog0 -> $backlog \
(queued $q1, in_flight $i1, of which waiting for a retry $retry_count), failed/skipped $f0 -> $f1; \
latency over $lat_n messages delivered in the window, max ${pmax} ms; \
wrk ${reqs} answers, p50 ${wp50} ms, p99 ${wp99} ms, socket errors $sockerr; $(status_counts "$WORK/$name.wrk")\
${failed_text}rows after stop $total; other processes' CPU $other_cpu; \
exit status $exit_status, $journal_text")
}

# ---------------------------------------------------------------------------
# Drain: a backlog left by an outage, delivered after a start

# insert_backlog JOURNAL ORDERING N: N queued rows, as an intake would have stored them.
insert_backlog() {
    local journal=$1 ordering=$2 n=$3 key_expr="NULL"
    [[ $ordering == key ]] && key_expr="'k' || (id % $KEY_COUNT)"
    sqlite3 -batch -bail "$journal" <<EOF
.timeout 5000
BEGIN IMMEDIATE;
WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < $n)
INSERT INTO messages (correlation_id, route, method, path, headers, body, received_at)
SELECT 'bench-' || i, 'bench', 'POST', '/', '[["Content-Type","application/json"]]',
       CAST('{"data":"' || replace(hex(zeroblob(1013)), '00', 'x') || '"}' AS BLOB),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
FROM seq;
-- One delivery per message, to the route's one destination (named like the route).
INSERT INTO deliveries (message_id, route, destination, ordering_key, state, updated_at)
SELECT id, 'bench', 'bench', $key_expr, 'queued', received_at FROM messages ORDER BY id;
COMMIT;
EOF
}

# drain_scenario ORDERING [sign]
drain_scenario() {
    local ordering=$1 variant=${2:-} n=$BACKLOG
    local label=$ordering${variant:++$variant}
    local name="drain-$ordering${variant:+-$variant}"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local journal=$dir/journal.db logfile=$dir/waypost.log
    write_config "$ordering" "$dir" "$variant"

    # 1. Let Waypost create the journal (schema, pragmas), then stop it.
    log "$name: creating the journal with a brief start"
    start_waypost "$dir"
    stop_pid "$WAYPOST_PID" "$STOP_TIMEOUT"
    local schema_version
    schema_version=$(sql "$journal" "PRAGMA user_version")

    # 2. The outage's backlog.
    local ti0 ti1 body_bytes
    log "$name: inserting $n queued messages with sqlite3"
    ti0=$EPOCHREALTIME
    insert_backlog "$journal" "$ordering" "$n" || die "$name: inserting the backlog failed"
    ti1=$EPOCHREALTIME
    body_bytes=$(sql "$journal" "SELECT length(body) FROM messages LIMIT 1")
    local queued_before
    queued_before=$(sql "$journal" "SELECT count(*) FROM deliveries WHERE state = 'queued'")
    echo "--- backlog of $queued_before inserted, starting again ---" >>"$logfile"

    # 3. Start with the upstream up, poll twice a second until every message is final.
    local before after t0 t_ready t_done="" t_last_progress d=0 f=0 q i last_d=-1 now outcome="complete"
    before=$(cpu_snapshot)
    t0=$EPOCHREALTIME
    log "$name: starting Waypost on the backlog"
    start_waypost "$dir"
    t_ready=$EPOCHREALTIME
    local pid=$WAYPOST_PID
    t_last_progress=$t_ready
    while true; do
        read -r d f q i < <(state_counts "$journal")
        now=$EPOCHREALTIME
        if [[ $d =~ ^[0-9]+$ && $f =~ ^[0-9]+$ ]]; then
            if ((d + f >= n)); then
                t_done=$now
                break
            fi
            if ((d != last_d)); then
                last_d=$d
                t_last_progress=$now
            fi
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            outcome="Waypost exited"
            break
        fi
        if awk -v a="$t0" -v b="$now" -v l="$DRAIN_TIMEOUT" 'BEGIN { exit !(b - a > l) }'; then
            outcome="timeout after ${DRAIN_TIMEOUT}s"
            break
        fi
        if awk -v a="$t_last_progress" -v b="$now" -v l="$STALL_TIMEOUT" 'BEGIN { exit !(b - a > l) }'; then
            outcome="stalled: nothing delivered for ${STALL_TIMEOUT}s"
            break
        fi
        sleep 0.5
    done
    after=$(cpu_snapshot)
    local other_cpu rss_kib
    other_cpu=$(other_cpu_percent "$before" "$after")
    rss_kib=$(peak_rss_kib "$pid")
    [[ $outcome == complete ]] || log "$name: $outcome ($d delivered, $f failed/skipped, $q queued, $i in flight)"

    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS

    local ready_s drain_s=n/a rate=n/a span=n/a
    ready_s=$(elapsed "$t0" "$t_ready")
    if [[ -n $t_done ]]; then
        drain_s=$(elapsed "$t0" "$t_done")
        rate=$(per_second "$d" "$drain_s")
    else
        rate="$(per_second "$d" "$(elapsed "$t0" "$now")")*"
    fi
    # The journal's own view: first to last delivered_at (no 0.5 s polling granularity).
    span=$(sql "$journal" "SELECT printf('%.3f', (julianday(max(delivered_at)) - julianday(min(delivered_at))) * 86400)
                           FROM deliveries WHERE state = 'delivered'")
    local failed_text=""
    if [[ $f =~ ^[0-9]+$ && $f -gt 0 ]]; then
        failed_text="failed: $(failed_summary "$journal"); "
    fi
    local journal_text
    journal_text=$(journal_and_log "$journal" "$logfile")

    DRAIN_RATE[$label]=$rate
    DRAIN_ROWS+=("$label|$n|$ready_s|$drain_s|$rate|$f|$(mib "$rss_kib")|<$GOAL_DRAIN_RSS_MB MB")
    DETAILS+=("$name: $outcome; schema user_version $schema_version, backlog $queued_before rows of $body_bytes-byte bodies \
inserted in $(elapsed "$ti0" "$ti1")s; delivered $d, failed/skipped $f, left queued $q, in flight $i; \
first to last delivered_at ${span}s; ${failed_text}other processes' CPU $other_cpu; \
exit status $exit_status, $journal_text")
}

# ---------------------------------------------------------------------------
# Report

# variant_ratios VARIANT: one line per ordering, the variant's delivered/s (live) and msgs/s
# (drain) over the plain scenario's.
variant_ratios() {
    local variant=$1 ordering text
    for ordering in $SCENARIOS; do
        text="$variant cost, $ordering ($variant / plain):"
        if [[ $SKIP_LIVE != 1 ]]; then
            text+=" live delivered/s ${LIVE_RATE[$ordering+$variant]:-n/a} / ${LIVE_RATE[$ordering]:-n/a}"
            text+=" = $(ratio "${LIVE_RATE[$ordering+$variant]:-}" "${LIVE_RATE[$ordering]:-}");"
        fi
        if [[ $SKIP_DRAIN != 1 ]]; then
            text+=" drain msgs/s ${DRAIN_RATE[$ordering+$variant]:-n/a} / ${DRAIN_RATE[$ordering]:-n/a}"
            text+=" = $(ratio "${DRAIN_RATE[$ordering+$variant]:-}" "${DRAIN_RATE[$ordering]:-}")"
        fi
        echo "${text%;}"
    done
}

main() {
    [[ $(id -u) == 0 ]] || log "warning: not root; installing packages would fail"
    cd "$REPO_ROOT"
    check_settings
    ensure_tools
    ensure_prebuilt_waypost
    check_disk

    local fsync_append
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)

    local busy_before
    busy_before=$(idle_other_cpu)

    start_upstream

    local variants=("") ordering variant
    if [[ $SIGN == 1 ]]; then
        variants+=(sign)
        # A Standard Webhooks secret for this run only: whsec_ + base64 of 32 random bytes.
        BENCH_SIGN_SECRET="whsec_$(head -c 32 /dev/urandom | base64 -w0)"
        export BENCH_SIGN_SECRET
    fi
    if [[ $TRANSFORM == 1 ]]; then variants+=(transform); fi
    if [[ $SKIP_LIVE != 1 ]]; then
        for ordering in $SCENARIOS; do
            for variant in "${variants[@]}"; do
                live_scenario "$ordering" "$variant"
            done
        done
    fi
    if [[ $SKIP_DRAIN != 1 ]]; then
        for ordering in $SCENARIOS; do
            for variant in "${variants[@]}"; do
                drain_scenario "$ordering" "$variant"
            done
        done
    fi

    {
        report_head delivery "$busy_before"
        waypost_line
        echo "routes: one route 'bench', ordering per scenario; key: ordering_key header:X-Key ($KEY_COUNT values), concurrency $CONCURRENCY; none: concurrency $CONCURRENCY"
        if [[ $SIGN == 1 ]]; then
            echo "  +sign: the same route with sign: { scheme: standard-webhooks, secret_env: BENCH_SIGN_SECRET } (a random whsec_ secret)"
        fi
        if [[ $TRANSFORM == 1 ]]; then
            echo "  +transform: the same route with transform: '$BENCH_TRANSFORM'"
        fi
        echo "journal: durability $DURABILITY, file system $JOURNAL_FS ($WORK)"
        echo "$fsync_append"
        echo "upstream: nginx $(nginx -v 2>&1 | cut -d/ -f2) 'return 200', worker_processes $UPSTREAM_WORKERS, access_log off"
        if ((${#LIVE_ROWS[@]} > 0)); then
            echo
            echo "Live: wrk -t$WRK_THREADS -c$CONNS -d$DURATION (after a $WARMUP warm-up) POSTs 1 KiB JSON (post-keys.lua) while Waypost delivers"
            print_table '%-9s %6s %9s %8s %12s %9s %11s %11s %16s %7s %13s\n' LIVE_ROWS \
                scenario conns acks/s non-2xx delivered/s goal "e2e p50 ms" "e2e p99 ms" backlog failed "peak RSS MiB"
        fi
        if ((${#DRAIN_ROWS[@]} > 0)); then
            echo
            echo "Drain: $BACKLOG queued 1 KiB messages inserted with sqlite3 while Waypost was stopped, then Waypost started"
            print_table '%-9s %9s %9s %9s %9s %8s %13s %10s\n' DRAIN_ROWS \
                scenario messages "ready s" "drain s" msgs/s failed "peak RSS MiB" "goal RSS"
        fi
        if [[ $SIGN == 1 || $TRANSFORM == 1 ]]; then echo; fi
        if [[ $SIGN == 1 ]]; then variant_ratios sign; fi
        if [[ $TRANSFORM == 1 ]]; then variant_ratios transform; fi
        detail_lines
        echo "acks/s: wrk's Requests/sec (all answers); non-2xx: wrk's count of statuses >= 400 (a 503 from a full or busy journal)."
        echo "delivered/s: change in the journal's delivered count over the measured run, divided by its wall-clock length."
        echo "e2e p50/p99: delivered_at - received_at (journal timestamps, ms resolution) of the messages delivered during the measured run,"
        echo "  whenever they were received (a backlog left by the warm-up counts too)."
        echo "backlog: queued + in_flight when the measured run started -> when it ended. Grown: delivery did not keep up, delivered/s is the"
        echo "  forwarder's ceiling under this intake, and e2e p99 leaves out the messages still waiting (it understates). Near 0 at both ends:"
        echo "  delivery kept up, delivered/s is bounded by acks/s (the intake), and the drain table shows the forwarder's own ceiling."
        echo "peak RSS: VmHWM of the Waypost process (whole life: warm-up, or start-up, included)."
        echo "drain s: from launching Waypost on the backlog until every message is final (polled every 0.5 s); msgs/s = delivered / drain s (* = incomplete)."
        echo "goals: fifo >= $GOAL_FIFO_PER_S delivered/s, key and none >= $GOAL_PARALLEL_PER_S delivered/s; drain peak RSS < $GOAL_DRAIN_RSS_MB MB. Printed, not checked."
    } | save_report
}

main "$@"
