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
#   WARMUP          unreported wrk run before each measured one (default 3s)
#   CONNS           connection counts for nginx and Waypost durability=full (default "64 256")
#   RELAXED_CONNS   connection counts for Waypost durability=relaxed (default 64)
#   WRK_THREADS     wrk threads (default 2)
#   NGINX_WORKERS   worker_processes of the nginx reverse proxy (default 1)
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   UPSTREAM_KEEPALIVE idle keepalive connections the proxy keeps to the upstream (default 64)
#   WAYPOST_BIN     Waypost binary to use; unset: build .build/release/waypost when stale
#   SKIP_WAYPOST=1  only the nginx scenarios (no build, no Waypost)
#   SKIP_NGINX=1    only the Waypost scenarios (no ratios then)
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs)
#   KEEP_JOURNALS=1 keep each scenario's journal.db (they are deleted after counting)
#   WRK_STATUS_COUNTS=1  let post-1k.lua count every status code (costs wrk some speed)
#   UPSTREAM_PORT, PROXY_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT  (18081, 18082, 18080, 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-3s}
CONNS=${CONNS:-64 256}
RELAXED_CONNS=${RELAXED_CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
NGINX_WORKERS=${NGINX_WORKERS:-1}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-64}
UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
PROXY_PORT=${PROXY_PORT:-18082}
WAYPOST_PORT=${WAYPOST_PORT:-18080}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}
OUT_DIR=${OUT_DIR:-$REPO_ROOT/bench-out}
SKIP_WAYPOST=${SKIP_WAYPOST:-0}
SKIP_NGINX=${SKIP_NGINX:-0}
KEEP_JOURNALS=${KEEP_JOURNALS:-0}
WAYPOST_BIN=${WAYPOST_BIN:-}
STOP_TIMEOUT=${STOP_TIMEOUT:-60}
START_TIMEOUT=${START_TIMEOUT:-30}
export WRK_STATUS_COUNTS=${WRK_STATUS_COUNTS:-0}

LUA_SCRIPT=$SCRIPT_DIR/post-1k.lua
FSYNC_PY=$SCRIPT_DIR/fsync.py
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS=$OUT_DIR/intake-$STAMP.txt
WORK=$OUT_DIR/intake-$STAMP    # configs, logs and raw wrk output of this run

PIDS=()           # background processes this script started and has not stopped yet
STOPPED_STATUS=   # exit status of the process stop_pid stopped last
OTHER_CPU=        # share of the machine that other processes used during the last measured run
JOURNAL_FS=       # "device fstype" of the file system under $WORK
TABLE_ROWS=()     # "scenario|conns|req/s|p50|p99|requests|non2xx|rows|msgs/commit|mpc/conn|ratio"
DETAILS=()        # one free-text line per scenario, printed under the table
declare -A NGINX_RPS=()

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Processes

forget_pid() {
    local pid=$1 kept=() p
    for p in "${PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    PIDS=("${kept[@]}")
}

# stop_pid PID TIMEOUT_SECONDS: SIGTERM, wait up to the timeout, then SIGKILL.
# Sets STOPPED_STATUS to the exit status (137 after a SIGKILL). Not for use in $(...):
# only this shell can wait for its children.
stop_pid() {
    local pid=$1 timeout=$2 status=0 i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still running ${timeout}s after SIGTERM: sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || status=$?
    forget_pid "$pid"
    STOPPED_STATUS=$status
}

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        log "cleanup: stopping pid $pid"
        stop_pid "$pid" 10
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_http URL PID LOGFILE: until URL gives any HTTP answer (curl exits 0 for a 404 too).
wait_http() {
    local url=$1 pid=$2 logfile=$3 i
    for ((i = 0; i < START_TIMEOUT * 5; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "process $pid exited before $url answered (log: $logfile)"
        fi
        if curl -s -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$logfile" >&2 || true
    die "$url did not answer within ${START_TIMEOUT}s (log: $logfile)"
}

# cpu_snapshot: prints "machine_total machine_busy ours" in clock ticks, where "ours" is the
# CPU time of this script's process group (wrk, nginx, Waypost, and through cutime/cstime
# the children it has already waited for).
cpu_snapshot() {
    local pgrp ours=0 f rest
    local -a st
    pgrp=$(ps -o pgid= -p $$ | tr -d ' ')
    for f in /proc/[0-9]*/stat; do
        { read -r rest <"$f"; } 2>/dev/null || continue # the process may just have ended
        read -r -a st <<<"${rest##*) }"          # fields from "state" on; comm may hold spaces
        # st: 0 state, 2 pgrp, 11 utime, 12 stime, 13 cutime, 14 cstime
        [[ ${st[2]:-} == "$pgrp" ]] || continue
        ours=$((ours + st[11] + st[12] + st[13] + st[14]))
    done
    # "cpu user nice system idle iowait irq softirq steal guest guest_nice": guest time is
    # already in user, so sum fields 2-9; idle + iowait is the time nothing ran.
    awk -v ours="$ours" 'NR == 1 {
        for (i = 2; i <= 9; i++) total += $i
        print total, total - $5 - $6, ours
    }' /proc/stat
}

# other_cpu_percent BEFORE AFTER: share of the machine used by processes outside this run.
other_cpu_percent() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        split(a, x); split(b, y)
        total = y[1] - x[1]; other = (y[2] - x[2]) - (y[3] - x[3])
        share = 0
        if (total > 0 && other > 0) share = 100 * other / total
        printf "%.0f%%", share
    }'
}

# ---------------------------------------------------------------------------
# Set-up

ensure_tools() {
    local missing=() tool
    for tool in wrk nginx curl python3; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
    if [[ $SKIP_WAYPOST != 1 ]]; then
        command -v sqlite3 >/dev/null || missing+=(sqlite3)
    fi
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing from Debian: ${missing[*]}"
    local packages=()
    for tool in "${missing[@]}"; do
        case $tool in
            nginx) packages+=(nginx-light) ;;
            *) packages+=("$tool") ;;
        esac
    done
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
    # Installing nginx may start the system service: this benchmark never uses it.
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

check_disk() {
    local fstype
    fstype=$(stat -f -c %T "$WORK")
    case $fstype in
        tmpfs | ramfs)
            die "$WORK is on $fstype: the journal must be on a real disk (set OUT_DIR)" ;;
    esac
    JOURNAL_FS="$(findmnt -n -o SOURCE,FSTYPE -T "$WORK" 2>/dev/null | tr -s ' ' || echo "$fstype")"
}

# write_nginx_conf DIR PORT WORKERS LOCATION_BODY
write_nginx_conf() {
    local dir=$1 port=$2 workers=$3 location=$4
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# Generated by scripts/bench/intake.sh; everything lives in $dir.
worker_processes $workers;
worker_rlimit_nofile 16384;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
lock_file $dir/nginx.lock;

events {
    worker_connections 8192;
}

http {
    access_log off;
    default_type text/plain;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    # 1 KiB bodies stay in memory, never in a temp file.
    client_max_body_size 1m;
    client_body_buffer_size 16k;
    keepalive_requests 1000000;
    keepalive_timeout 75s;

    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
    }

    server {
        listen 127.0.0.1:$port backlog=4096;
        location / {
$location
        }
    }
}
EOF
}

# start_nginx NAME DIR PORT: the master in the foreground of a background job (daemon off).
start_nginx() {
    local name=$1 dir=$2 port=$3
    nginx -t -q -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        || die "nginx $name: invalid config $dir/nginx.conf"
    nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" -g 'daemon off;' \
        >"$dir/nginx.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$port/" "$pid" "$dir/error.log"
    log "nginx $name on 127.0.0.1:$port (pid $pid)"
}

# ---------------------------------------------------------------------------
# wrk

# wrk_warmup NAME URL CONNS: the unreported run, output kept in $WORK/NAME.warmup.wrk.
wrk_warmup() {
    local name=$1 url=$2 conns=$3
    log "$name: warm-up $WARMUP, $conns connections"
    wrk -t"$WRK_THREADS" -c"$conns" -d"$WARMUP" -s "$LUA_SCRIPT" "$url" \
        >"$WORK/$name.warmup.wrk" 2>&1
}

# wrk_measure NAME URL CONNS: the reported run, output in $WORK/NAME.wrk; sets OTHER_CPU.
wrk_measure() {
    local name=$1 url=$2 conns=$3 before after
    log "$name: measuring $DURATION, $conns connections"
    before=$(cpu_snapshot)
    wrk -t"$WRK_THREADS" -c"$conns" -d"$DURATION" --latency -s "$LUA_SCRIPT" "$url" \
        >"$WORK/$name.wrk" 2>&1
    after=$(cpu_snapshot)
    OTHER_CPU=$(other_cpu_percent "$before" "$after")
    log "$name: other processes used $OTHER_CPU of the machine meanwhile"
}

# parse_wrk FILE: prints "req/s p50_ms p99_ms requests non2xx socket_errors" (n/a when absent).
parse_wrk() {
    awk '
        function ms(v) {
            if (v ~ /us$/) return sprintf("%.2f", v / 1000)
            if (v ~ /ms$/) return sprintf("%.2f", v + 0)
            if (v ~ /m$/)  return sprintf("%.0f", v * 60000)
            if (v ~ /s$/)  return sprintf("%.0f", v * 1000)
            return "n/a"
        }
        BEGIN { rps = p50 = p99 = reqs = "n/a"; non2xx = 0; sockerr = 0 }
        /^Requests\/sec:/                   { rps = sprintf("%.0f", $2) }
        /^ +50% /                           { p50 = ms($2) }
        /^ +99% /                           { p99 = ms($2) }
        / requests in /                     { reqs = $1 }
        /Non-2xx or 3xx responses:/         { non2xx = $NF }
        /Socket errors:/ {
            gsub(/,/, "")
            sockerr = $4 + $6 + $8 + $10
        }
        END { print rps, p50, p99, reqs, non2xx, sockerr }
    ' "$1"
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

status_counts() {
    local line
    line=$(grep -m1 '^Status counts:' "$1" || true)
    [[ -n $line ]] && printf '%s; ' "$line"
    return 0
}

journal_rows() {
    sqlite3 -cmd '.timeout 5000' "$1" 'select count(*) from messages' 2>/dev/null || echo "n/a"
}

waypost_scenario() {
    local durability=$1 conns=$2
    local name="waypost-$durability@$conns"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local config=$dir/waypost.yaml journal=$dir/journal.db logfile=$dir/waypost.log
    cat >"$config" <<EOF
listen: 127.0.0.1:$WAYPOST_PORT
admin: { listen: 127.0.0.1:$WAYPOST_ADMIN_PORT }
journal: { path: $journal, durability: $durability, max_backlog: 100000000 }
routes:
  - name: bench
    path: /
    upstream: http://127.0.0.1:$UPSTREAM_PORT/
EOF
    port_in_use "$WAYPOST_PORT" && die "127.0.0.1:$WAYPOST_PORT is already in use"
    port_in_use "$WAYPOST_ADMIN_PORT" && die "127.0.0.1:$WAYPOST_ADMIN_PORT is already in use"

    log "$name: starting $WAYPOST_BIN serve --config $config"
    "$WAYPOST_BIN" serve --config "$config" --log-level "${WAYPOST_LOG_LEVEL:-notice}" >"$logfile" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    # Poll a reserved status path (SPEC §2, §4): it answers 404 and journals nothing.
    wait_http "http://127.0.0.1:$WAYPOST_PORT/_waypost/messages/bench-readiness-probe" "$pid" "$logfile"

    local url="http://127.0.0.1:$WAYPOST_PORT/" rows_warmup
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

    # "... info waypost: commits=812 messages=402113 [WaypostJournal] journal writer stopped"
    local stop_line commits=n/a messages=n/a mpc=n/a per_conn=n/a
    stop_line=$(grep -E 'commits=[0-9]+' "$logfile" | grep -E 'messages=[0-9]+' | tail -n 1 || true)
    if [[ -n $stop_line ]]; then
        commits=$(grep -oE 'commits=[0-9]+' <<<"$stop_line" | tail -n 1 | cut -d= -f2)
        messages=$(grep -oE 'messages=[0-9]+' <<<"$stop_line" | tail -n 1 | cut -d= -f2)
        if ((commits > 0)); then
            mpc=$(awk -v m="$messages" -v c="$commits" 'BEGIN { printf "%.1f", m / c }')
            per_conn=$(awk -v m="$messages" -v c="$commits" -v n="$conns" \
                'BEGIN { printf "%.2f", m / c / n }')
        fi
    fi

    local log_problems
    log_problems=$(grep -ciE '\b(warning|error|critical)\b' "$logfile" || true)

    local bytes=0 file size
    for file in "$journal" "$journal-wal" "$journal-shm"; do
        [[ -f $file ]] && bytes=$((bytes + $(stat -c %s "$file")))
    done
    size=$(awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }')
    [[ $KEEP_JOURNALS == 1 ]] || rm -f "$journal" "$journal-wal" "$journal-shm"

    local rps p50 p99 reqs non2xx sockerr ratio=n/a
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk")
    local ref=${NGINX_RPS[$conns]:-}
    if [[ $ref =~ ^[0-9]+$ && $ref -gt 0 && $rps =~ ^[0-9]+$ ]]; then
        ratio=$(awk -v a="$rps" -v b="$ref" 'BEGIN { printf "%.2f", a / b }')
    fi
    local ok=n/a
    [[ $reqs =~ ^[0-9]+$ ]] && ok=$((reqs - non2xx))
    TABLE_ROWS+=("waypost $durability|$conns|$rps|$p50|$p99|$reqs|$non2xx|$rows|$mpc|$per_conn|$ratio")
    DETAILS+=("$name: wrk 2xx/3xx $ok, journal rows measured $rows (after warm-up $rows_warmup, total $rows_total), \
commits=$commits messages=$messages (whole run), other processes' CPU $other_cpu, socket errors $sockerr; \
$(status_counts "$WORK/$name.wrk")\
exit status $exit_status, journal $size, log lines with warning/error/critical $log_problems ($logfile)")
}

# ---------------------------------------------------------------------------
# Report

print_table() {
    local fmt='%-17s %6s %9s %9s %9s %10s %8s %10s %11s %9s %9s\n'
    # shellcheck disable=SC2059  # the format is the constant above
    printf "$fmt" scenario conns req/s "p50 ms" "p99 ms" requests non-2xx rows msgs/commit mpc/conn "vs nginx"
    local row
    local -a f
    for row in "${TABLE_ROWS[@]}"; do
        IFS='|' read -r -a f <<<"$row"
        # shellcheck disable=SC2059
        printf "$fmt" "${f[@]}"
    done
}

main() {
    [[ $(id -u) == 0 ]] || log "warning: not root; installing packages would fail"
    cd "$REPO_ROOT"
    ensure_tools
    ensure_waypost
    mkdir -p "$WORK"
    check_disk

    # The disk's own floor for a durable commit, on the journal's file system, while idle.
    local fsync_append fsync_overwrite
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)
    fsync_overwrite=$(python3 "$FSYNC_PY" "$WORK" --mode overwrite)

    local busy_before snapshot
    snapshot=$(cpu_snapshot)
    sleep 2
    busy_before=$(other_cpu_percent "$snapshot" "$(cpu_snapshot)")
    log "CPU used by other processes during 2 s before the run: $busy_before"

    local port
    for port in "$UPSTREAM_PORT" "$PROXY_PORT"; do
        port_in_use "$port" && die "127.0.0.1:$port is already in use"
    done

    write_nginx_conf "$WORK/nginx-upstream" "$UPSTREAM_PORT" "$UPSTREAM_WORKERS" \
        '            return 200 "ok\n";'
    start_nginx upstream "$WORK/nginx-upstream" "$UPSTREAM_PORT"

    local conns
    if [[ $SKIP_NGINX != 1 ]]; then
        write_nginx_conf "$WORK/nginx-proxy" "$PROXY_PORT" "$NGINX_WORKERS" \
            '            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";'
        start_nginx proxy "$WORK/nginx-proxy" "$PROXY_PORT"
        for conns in $CONNS; do
            nginx_scenario "$conns"
        done
    fi

    if [[ $SKIP_WAYPOST != 1 ]]; then
        for conns in $CONNS; do
            waypost_scenario full "$conns"
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
        echo "Waypost intake benchmark, $(date -Is)"
        echo "machine: nproc $(nproc), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
        echo "CPU used by other processes: $busy_before in the 2 s before the run, per scenario below (anything above a few % skews the figures)"
        echo "load: wrk -t$WRK_THREADS -d$DURATION --latency (after a $WARMUP warm-up), 1024-byte JSON POST"
        echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2), proxy worker_processes $NGINX_WORKERS, upstream worker_processes $UPSTREAM_WORKERS, access_log off"
        echo "waypost: $waypost_version"
        echo "journal file system: $JOURNAL_FS ($WORK)"
        echo "$fsync_append"
        echo "$fsync_overwrite"
        echo
        print_table
        echo
        local line
        for line in "${DETAILS[@]}"; do
            echo "- $line"
        done
        echo
        echo "req/s, p50, p99, requests and non-2xx (wrk counts status >= 400) are from the measured run only."
        echo "rows: journal rows written during the measured run; msgs/commit: from Waypost's stop line, whole run incl. warm-up."
        echo "mpc/conn: msgs/commit divided by connections; vs nginx: req/s over nginx proxy's req/s at the same connections."
    } | tee "$RESULTS"
    log "results: $RESULTS (raw output in $WORK)"
}

main "$@"
