#!/usr/bin/env bash
# Verify benchmark: the durable 202 intake of a route with inbound signature verification
# (verify: { scheme: github }) against the same route without it, same requests, same run.
#
# Usage (from the repository root, as root):
#
#   scripts/bench/verify.sh
#   DURATION=3s WARMUP=1s scripts/bench/verify.sh                 # a short run, ~20 s
#   WRK_STATUS_COUNTS=1 scripts/bench/verify.sh                   # count 401s explicitly
#
# It prints figures and never judges them: the exit code says only whether the
# benchmark itself could run. See scripts/bench/README.md ("Verify benchmark").
#
# Environment:
#   DURATION        measured wrk run per scenario (default 15s)
#   WARMUP          unreported wrk run before each measured one (default 3s; 0 for none)
#   CONNS           wrk connection counts (default 64); plain and verify at each
#   WRK_THREADS     wrk threads (default 2)
#   DURABILITY      journal durability, full or relaxed (default full)
#   WAYPOST_BIN     Waypost binary; unset: .build-release/release/waypost if present, else
#                   .build/release/waypost; built only when neither exists
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs)
#   KEEP_JOURNALS=1 keep each scenario's journal.db
#   WRK_STATUS_COUNTS=1  let post-1k.lua count every status code (a 401 column then; costs wrk some speed)
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   UPSTREAM_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT  (18081, 18080, 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings verify post-github.lua 0

CONNS=${CONNS:-64}
DURABILITY=${DURABILITY:-full}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}

TABLE_ROWS=()     # "scenario|conns|acks/s|p50|p99|requests|non-2xx|401|rows|vs plain"
DETAILS=()        # one free-text line per scenario, printed under the table
SUMMARY=()        # one "verify / plain" line per connection count
declare -A PLAIN=()   # conns -> "acks/s p50 p99" of the route without verify

check_settings() {
    check_conns
    check_durability
}

# The secret for this run (the route reads it from BENCH_GITHUB_SECRET, SPEC §9), and the
# signature of post-1k.lua's body under it, computed once: the body never changes.
make_signature() {
    BENCH_GITHUB_SECRET="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    BENCH_GITHUB_SIGNATURE=$(bench_body | openssl dgst -sha256 -hmac "$BENCH_GITHUB_SECRET" -r | cut -d' ' -f1)
    [[ $BENCH_GITHUB_SIGNATURE =~ ^[0-9a-f]{64}$ ]] || die "openssl did not give a SHA-256 HMAC: '$BENCH_GITHUB_SIGNATURE'"
    export BENCH_GITHUB_SECRET BENCH_GITHUB_SIGNATURE
}

# post_status URL SIGNATURE: the status of one POST of the benchmark's body with
# "X-Hub-Signature-256: sha256=SIGNATURE".
post_status() {
    bench_body | curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        -H 'Content-Type: application/json' -H "X-Hub-Signature-256: sha256=$2" \
        --data-binary @- "$1" || true
}

# ---------------------------------------------------------------------------
# Scenarios

# waypost_scenario plain|verify CONNS
waypost_scenario() {
    local variant=$1 conns=$2
    local name="$variant@$conns"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log verify=""
    [[ $variant == verify ]] && verify="    verify: { scheme: github, secret_env: BENCH_GITHUB_SECRET }"
    write_waypost_config "$config" "$journal" "$DURABILITY" "$verify"

    # A reserved path (SPEC §2): any HTTP answer, even a 404, means the listener is up.
    start_scenario_waypost "$name" "$config" "$logfile" "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
    local pid=$WAYPOST_PID url="http://127.0.0.1:$WAYPOST_PORT/"

    # By hand first: wrk's signature must be accepted, and (with verify) a wrong one refused,
    # so that the route really verifies.
    local good bad=- wrong
    good=$(post_status "$url" "$BENCH_GITHUB_SIGNATURE")
    [[ $good == 202 ]] || log "$name: warning: the signed POST got $good, not 202"
    if [[ $variant == verify ]]; then
        wrong=$(printf '%064d' 0)
        bad=$(post_status "$url" "$wrong")
        [[ $bad == 401 ]] || log "$name: warning: a POST with a wrong signature got $bad, not 401"
    fi

    local rows_before
    wrk_warmup "$name" "$url" "$conns"
    sleep 1 # let the requests that wrk abandoned at its deadline commit
    rows_before=$(sql "$journal" "SELECT count(*) FROM messages")
    wrk_measure "$name" "$url" "$conns"
    local other_cpu=$OTHER_CPU

    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS
    local rows_after rows=n/a
    rows_after=$(sql "$journal" "SELECT count(*) FROM messages")
    [[ $rows_after =~ ^[0-9]+$ && $rows_before =~ ^[0-9]+$ ]] && rows=$((rows_after - rows_before))
    local journal_text
    journal_text=$(journal_and_log "$journal" "$logfile")

    local rps p50 p99 reqs non2xx sockerr vs=1.00 unauthorized
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk" 3)
    unauthorized=$(status_count "$WORK/$name.wrk" 401)
    if [[ $variant == plain ]]; then
        PLAIN[$conns]="$rps $p50 $p99"
    else
        local prps pp50 pp99
        read -r prps pp50 pp99 <<<"${PLAIN[$conns]:-n/a n/a n/a}"
        vs=$(ratio "$rps" "$prps")
        SUMMARY+=("verify / plain at $conns connections: acks/s $rps / $prps = $vs; \
p50 $p50 vs $pp50 ms ($(difference "$p50" "$pp50" 3)); p99 $p99 vs $pp99 ms ($(difference "$p99" "$pp99" 3))")
    fi
    TABLE_ROWS+=("$variant|$conns|$rps|$p50|$p99|$reqs|$non2xx|$unauthorized|$rows|$vs")
    DETAILS+=("$name: by hand, signed POST $good, wrong signature $bad; journal rows measured $rows \
(before $rows_before, after $rows_after); socket errors $sockerr; $(status_counts "$WORK/$name.wrk")\
other processes' CPU $other_cpu; exit status $exit_status, $journal_text")
}

# ---------------------------------------------------------------------------
# Report

main() {
    bench_prepare wrk nginx curl sqlite3 python3 openssl
    make_signature

    local fsync_append
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)
    local busy_before
    busy_before=$(idle_other_cpu)

    # The route's upstream: Waypost forwards what it accepts while wrk posts, in both
    # scenarios alike, as in intake.sh.
    start_upstream

    # Plain first, then verify, at each connection count: the two runs of a pair are back
    # to back and see the same machine.
    local conns
    for conns in $CONNS; do
        waypost_scenario plain "$conns"
        waypost_scenario verify "$conns"
    done

    {
        report_head verify "$busy_before"
        waypost_line
        echo "route: one route on /, async (202), journal durability $DURABILITY, file system $JOURNAL_FS; it forwards to"
        echo "  a private nginx 'return 200' (worker_processes $UPSTREAM_WORKERS) while wrk posts"
        echo "  verify: the same route plus verify: { scheme: github, secret_env: BENCH_GITHUB_SECRET }"
        echo "load: wrk -t$WRK_THREADS -d$DURATION --latency (after a $WARMUP warm-up), 1024-byte JSON POST with a valid"
        echo "  X-Hub-Signature-256 (post-github.lua), the same bytes for both routes"
        echo "$fsync_append"
        echo
        print_table '%-8s %6s %9s %9s %9s %10s %8s %6s %9s %9s\n' TABLE_ROWS \
            scenario conns acks/s "p50 ms" "p99 ms" requests non-2xx 401 rows "vs plain"
        echo
        local line
        for line in "${SUMMARY[@]}"; do
            echo "$line"
        done
        detail_lines
        echo "acks/s, p50, p99, requests: wrk's, measured run only. non-2xx: wrk's count of statuses >= 400 (a 401 is one)."
        echo "401: from the status counts (n/a unless WRK_STATUS_COUNTS=1); any 401 means the signature did not match."
        echo "rows: journal rows written during the measured run (up to one per connection more than the 2xx: wrk's"
        echo "  abandoned last requests). vs plain: acks/s over the route without verify at the same connections."
    } | save_report
}

main "$@"
