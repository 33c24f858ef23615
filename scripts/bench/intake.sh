#!/usr/bin/env bash
# Intake benchmark: Waypost's durable 202 path against nginx as a plain reverse proxy.
#
# Usage (from the repository root, as root):
#
#   scripts/bench/intake.sh
#   DURATION=30s CONNS="64 256 512" scripts/bench/intake.sh
#   WAYPOST_BIN=/path/to/waypost scripts/bench/intake.sh
#   SKIP_WAYPOST=1 DURATION=3s scripts/bench/intake.sh      # nginx part only
#
# It prints figures and never judges them: the exit code says only whether the
# benchmark itself could run. See scripts/bench/README.md for how to read them.
#
# Environment:
#   DURATION        measured wrk run per scenario (default 15s)
#   WARMUP          unreported wrk run before each measured one (default 3s; 0 for none)
#   CONNS           connection counts for nginx and Waypost durability=full (default "64 256")
#   RELAXED_CONNS   connection counts for Waypost durability=relaxed (default 64)
#   WRK_THREADS     wrk threads (default 2)
#   NGINX_WORKERS   worker_processes of the nginx reverse proxy (default 1)
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   UPSTREAM_KEEPALIVE idle keepalive connections the proxy keeps to the upstream (default 64)
#   WAYPOST_BIN     Waypost binary to use; unset: build .build/release/waypost when stale
#   SKIP_WAYPOST=1  only the nginx scenarios (no build, no Waypost)
#   SKIP_NGINX=1    only the Waypost scenarios (no ratios then)
#   TLS=1           also each durability=full scenario with TLS at the intake (SPEC §14): a
#                   certificate made with openssl for the run (EC P-256), wrk over https
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs)
#   KEEP_JOURNALS=1 keep each scenario's journal.db (they are deleted after counting)
#   WRK_STATUS_COUNTS=1  let post-1k.lua count every status code (costs wrk some speed)
#   UPSTREAM_PORT, PROXY_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT  (18081, 18082, 18080, 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings intake post-1k.lua 0

CONNS=${CONNS:-64 256}
RELAXED_CONNS=${RELAXED_CONNS:-64}
NGINX_WORKERS=${NGINX_WORKERS:-1}
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-64}
PROXY_PORT=${PROXY_PORT:-18082}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}
SKIP_WAYPOST=${SKIP_WAYPOST:-0}
SKIP_NGINX=${SKIP_NGINX:-0}
TLS=${TLS:-0}

TABLE_ROWS=()     # "scenario|conns|req/s|p50|p99|requests|non2xx|rows|msgs/commit|mpc/conn|ratio"
DETAILS=()        # one free-text line per scenario, printed under the table
declare -A NGINX_RPS=()

# ---------------------------------------------------------------------------
# Set-up (the functions shared with delivery.sh are in lib.sh)

ensure_tools() {
    local tools=(wrk nginx curl python3)
    if [[ $SKIP_WAYPOST != 1 ]]; then
        tools+=(sqlite3)
    fi
    install_missing "${tools[@]}"
}

ensure_waypost() {
    [[ $SKIP_WAYPOST == 1 ]] && return 0
    if [[ -n $WAYPOST_BIN ]]; then
        [[ -x $WAYPOST_BIN ]] || die "WAYPOST_BIN=$WAYPOST_BIN is not an executable"
        return 0
    fi
    WAYPOST_BIN=$REPO_ROOT/.build/release/waypost
    local stale=""
    if [[ ! -x $WAYPOST_BIN ]]; then
        stale="absent"
    else
        stale=$(cd "$REPO_ROOT" && find Sources Package.swift -newer "$WAYPOST_BIN" -print -quit)
    fi
    if [[ -n $stale ]]; then
        log "building Waypost in release mode (${stale} is newer or the binary is absent; ~10 min on 2 cores)"
        (cd "$REPO_ROOT" && swift build -c release --product waypost)
    fi
    [[ -x $WAYPOST_BIN ]] || die "no executable at $WAYPOST_BIN after the build"
}

# ---------------------------------------------------------------------------
# Scenarios

nginx_scenario() {
    local conns=$1 name="nginx-proxy@$1" url="http://127.0.0.1:$PROXY_PORT/"
    wrk_warmup "$name" "$url" "$conns"
    wrk_measure "$name" "$url" "$conns"
    local rps p50 p99 reqs non2xx sockerr
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk")
    NGINX_RPS[$conns]=$rps
    TABLE_ROWS+=("nginx proxy|$conns|$rps|$p50|$p99|$reqs|$non2xx|-|-|-|1.00")
    DETAILS+=("$name: other processes' CPU $OTHER_CPU, socket errors $sockerr; \
$(status_counts "$WORK/$name.wrk")raw output $WORK/$name.wrk")
}

journal_rows() {
    sqlite3 -cmd '.timeout 5000' "$1" 'select count(*) from messages' 2>/dev/null || echo "n/a"
}

# waypost_scenario DURABILITY CONNS [tls]
waypost_scenario() {
    local durability=$1 conns=$2 variant=${3:-}
    local name="waypost-$durability${variant:+-$variant}@$conns" scheme=http
    local dir=$WORK/$name
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log
    write_waypost_config "$config" "$journal" "$durability"
    if [[ $variant == tls ]]; then
        scheme=https
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$dir/tls.key" \
            -out "$dir/tls.crt" -days 2 -subj /CN=bench -addext subjectAltName=IP:127.0.0.1 2>/dev/null ||
            die "$name: openssl could not make a certificate"
        printf 'tls: { cert_file: %s, key_file: %s }\n' "$dir/tls.crt" "$dir/tls.key" >>"$config"
    fi

    # Poll a reserved status path (SPEC §2, §4): it answers 404 and journals nothing.
    start_scenario_waypost "$name" "$config" "$logfile" \
        "$scheme://127.0.0.1:$WAYPOST_PORT/_waypost/messages/bench-readiness-probe"
    local pid=$WAYPOST_PID

    local url="$scheme://127.0.0.1:$WAYPOST_PORT/" rows_warmup
    wrk_warmup "$name" "$url" "$conns"
    sleep 1 # let the requests that wrk abandoned at its deadline commit
    rows_warmup=$(journal_rows "$journal")
    wrk_measure "$name" "$url" "$conns"
    local other_cpu=$OTHER_CPU

    log "$name: stopping Waypost (SIGTERM)"
    stop_pid "$pid" "$STOP_TIMEOUT"
    local exit_status=$STOPPED_STATUS

    local rows_total rows=n/a
    rows_total=$(journal_rows "$journal")
    if [[ $rows_total =~ ^[0-9]+$ && $rows_warmup =~ ^[0-9]+$ ]]; then
        rows=$((rows_total - rows_warmup))
    fi

    # "... notice waypost: commits=1624 commits_without_fsync=812 intake_commits=812 messages=402113
    #  [WaypostJournal] journal writer stopped". Group commit is about the commits that hold
    # intake requests; the others hold only delivery state changes.
    local stop_line commits=n/a intake_commits=n/a messages=n/a mpc=n/a per_conn=n/a
    stop_line=$(grep -E 'intake_commits=[0-9]+' "$logfile" | grep -E 'messages=[0-9]+' | tail -n 1 || true)
    if [[ -n $stop_line ]]; then
        commits=$(grep -oE '(^| )commits=[0-9]+' <<<"$stop_line" | tail -n 1 | cut -d= -f2)
        intake_commits=$(grep -oE 'intake_commits=[0-9]+' <<<"$stop_line" | tail -n 1 | cut -d= -f2)
        messages=$(grep -oE 'messages=[0-9]+' <<<"$stop_line" | tail -n 1 | cut -d= -f2)
        if ((intake_commits > 0)); then
            mpc=$(awk -v m="$messages" -v c="$intake_commits" 'BEGIN { printf "%.1f", m / c }')
            per_conn=$(awk -v m="$messages" -v c="$intake_commits" -v n="$conns" \
                'BEGIN { printf "%.2f", m / c / n }')
        fi
    fi

    local log_problems
    log_problems=$(grep -ciE '\b(warning|error|critical)\b' "$logfile" || true)

    local size
    size=$(journal_size "$journal")
    drop_journal "$journal"

    local rps p50 p99 reqs non2xx sockerr ratio=n/a
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk")
    local ref=${NGINX_RPS[$conns]:-}
    if [[ $ref =~ ^[0-9]+$ && $ref -gt 0 && $rps =~ ^[0-9]+$ ]]; then
        ratio=$(awk -v a="$rps" -v b="$ref" 'BEGIN { printf "%.2f", a / b }')
    fi
    local ok=n/a
    [[ $reqs =~ ^[0-9]+$ ]] && ok=$((reqs - non2xx))
    TABLE_ROWS+=("waypost $durability${variant:+ $variant}|$conns|$rps|$p50|$p99|$reqs|$non2xx|$rows|$mpc|$per_conn|$ratio")
    DETAILS+=("$name: wrk 2xx/3xx $ok, journal rows measured $rows (after warm-up $rows_warmup, total $rows_total), \
commits=$commits of which with intake requests $intake_commits, messages=$messages (whole run), other processes' CPU $other_cpu, socket errors $sockerr; \
$(status_counts "$WORK/$name.wrk")\
exit status $exit_status, journal $size, log lines with warning/error/critical $log_problems ($logfile)")
}

# ---------------------------------------------------------------------------
# Report

main() {
    [[ $(id -u) == 0 ]] || log "warning: not root; installing packages would fail"
    cd "$REPO_ROOT"
    ensure_tools
    ensure_waypost
    check_disk

    # The disk's own floor for a durable commit, on the journal's file system, while idle.
    local fsync_append fsync_overwrite
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)
    fsync_overwrite=$(python3 "$FSYNC_PY" "$WORK" --mode overwrite)

    local busy_before
    busy_before=$(idle_other_cpu)

    port_in_use "$PROXY_PORT" && die "127.0.0.1:$PROXY_PORT is already in use"

    # Both nginx configs carry the proxy's upstream (the upstream nginx never uses it).
    local upstream_block
    upstream_block=$(proxy_upstream_block)
    start_upstream "$upstream_block"

    local conns
    if [[ $SKIP_NGINX != 1 ]]; then
        start_proxy "$upstream_block"
        for conns in $CONNS; do
            nginx_scenario "$conns"
        done
    fi

    if [[ $SKIP_WAYPOST != 1 ]]; then
        for conns in $CONNS; do
            waypost_scenario full "$conns"
            if [[ $TLS == 1 ]]; then waypost_scenario full "$conns" tls; fi
        done
        for conns in $RELAXED_CONNS; do
            waypost_scenario relaxed "$conns"
        done
    fi

    local waypost_version=skipped
    if [[ $SKIP_WAYPOST != 1 ]]; then
        waypost_version="$WAYPOST_BIN ($(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo 'no commit'))"
    fi

    {
        report_head intake "$busy_before"
        echo "load: wrk -t$WRK_THREADS -d$DURATION --latency (after a $WARMUP warm-up), 1024-byte JSON POST"
        echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2), proxy worker_processes $NGINX_WORKERS, upstream worker_processes $UPSTREAM_WORKERS, access_log off"
        echo "waypost: $waypost_version"
        echo "journal file system: $JOURNAL_FS ($WORK)"
        echo "$fsync_append"
        echo "$fsync_overwrite"
        echo
        print_table '%-17s %6s %9s %9s %9s %10s %8s %10s %11s %9s %9s\n' TABLE_ROWS \
            scenario conns req/s "p50 ms" "p99 ms" requests non-2xx rows msgs/commit mpc/conn "vs nginx"
        detail_lines
        echo "req/s, p50, p99, requests and non-2xx (wrk counts status >= 400) are from the measured run only."
        echo "rows: journal rows written during the measured run; msgs/commit: from Waypost's stop line, whole run incl. warm-up."
        echo "mpc/conn: msgs/commit divided by connections; vs nginx: req/s over nginx proxy's req/s at the same connections."
    } | save_report
}

main "$@"
