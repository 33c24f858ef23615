# shellcheck shell=bash
# Shared by the scripts in scripts/bench/ (intake.sh, delivery.sh, sync.sh, verify.sh,
# cpu.sh, floor.sh), sourced by each: the shared settings, logging, background processes,
# CPU accounting, set-up checks, the private nginx (upstream and proxy), wrk and its output,
# starting Waypost, journal queries, and the report's common parts. Not a script of its own.
#
# Sourcing it defines functions and the state below, and installs the EXIT, INT and TERM
# traps that stop every background process it started. The sourcing script sets SCRIPT_DIR
# (this directory) before sourcing, then calls bench_settings, which sets the settings all
# the benchmarks share (DURATION, WARMUP, WRK_THREADS, ports, START_TIMEOUT, KEEP_JOURNALS,
# WAYPOST_BIN, ...) and this run's WORK, RESULTS and LUA_SCRIPT; the script sets its own
# settings (CONNS and the like) and DETAILS, the report's lines under its table.
# The variables are assigned by the sourcing script or bench_settings, and the state below
# is read there:
# shellcheck disable=SC2034,SC2153,SC2154

PIDS=()           # background processes this script started and has not stopped yet
STOPPED_STATUS=   # exit status of the process stop_pid stopped last
OTHER_CPU=        # share of the machine that other processes used during the last measured run
JOURNAL_FS=       # "device fstype" of the file system under $WORK
PROBE_BEFORE=     # output of wrk_measure's PROBE before the measured run
PROBE_AFTER=      # and after it
WAYPOST_PID=      # the Waypost process launch_waypost started last
BINARY_NOTE=      # how ensure_prebuilt_waypost chose the binary, and whether it is older than Sources/

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Settings

# bench_settings NAME LUA_FILE WRK_STATUS_COUNTS_DEFAULT: the settings every benchmark has,
# each from the environment or else its default: DURATION 15s, WARMUP 3s, WRK_THREADS 2,
# UPSTREAM_WORKERS 1, UPSTREAM_PORT 18081, WAYPOST_PORT 18080, OUT_DIR <repo>/bench-out,
# KEEP_JOURNALS 0, WAYPOST_BIN empty, STOP_TIMEOUT 60, START_TIMEOUT 30, and
# WRK_STATUS_COUNTS (exported for the wrk script) WRK_STATUS_COUNTS_DEFAULT. Then REPO_ROOT,
# LUA_SCRIPT (LUA_FILE in this directory), FSYNC_PY, and this run's files: RESULTS, the
# report, $OUT_DIR/NAME-STAMP.txt, and WORK, its configs, logs and raw wrk output,
# $OUT_DIR/NAME-STAMP.
bench_settings() {
    local name=$1 lua_file=$2 status_counts=$3
    REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)
    DURATION=${DURATION:-15s}
    WARMUP=${WARMUP:-3s}
    WRK_THREADS=${WRK_THREADS:-2}
    UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
    UPSTREAM_PORT=${UPSTREAM_PORT:-18081}
    WAYPOST_PORT=${WAYPOST_PORT:-18080}
    OUT_DIR=${OUT_DIR:-$REPO_ROOT/bench-out}
    KEEP_JOURNALS=${KEEP_JOURNALS:-0}
    WAYPOST_BIN=${WAYPOST_BIN:-}
    STOP_TIMEOUT=${STOP_TIMEOUT:-60}
    START_TIMEOUT=${START_TIMEOUT:-30}
    export WRK_STATUS_COUNTS=${WRK_STATUS_COUNTS:-$status_counts}

    LUA_SCRIPT=$SCRIPT_DIR/$lua_file
    FSYNC_PY=$SCRIPT_DIR/fsync.py
    STAMP=$(date +%Y%m%d-%H%M%S)
    RESULTS=$OUT_DIR/$name-$STAMP.txt
    WORK=$OUT_DIR/$name-$STAMP
}

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
        # -k: a TLS intake in a benchmark has a certificate made for the run.
        if curl -sk -o /dev/null --max-time 1 "$url"; then
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$logfile" >&2 || true
    die "$url did not answer within ${START_TIMEOUT}s (log: $logfile)"
}

# launch_waypost CONFIG LOGFILE READY_URL: `waypost serve` on CONFIG in the background, its
# output appended to LOGFILE, until READY_URL answers; sets WAYPOST_PID. Stop it with stop_pid.
launch_waypost() {
    local config=$1 logfile=$2 ready_url=$3
    "$WAYPOST_BIN" serve --config "$config" --log-level "${WAYPOST_LOG_LEVEL:-notice}" >>"$logfile" 2>&1 &
    WAYPOST_PID=$!
    PIDS+=("$WAYPOST_PID")
    wait_http "$ready_url" "$WAYPOST_PID" "$logfile"
}

# write_waypost_config CONFIG JOURNAL DURABILITY [ROUTE_LINES]: a scenario's Waypost config
# in CONFIG: the intake on WAYPOST_PORT, the admin API on WAYPOST_ADMIN_PORT, JOURNAL with
# DURABILITY, and the route "bench" on / to the private upstream, with ROUTE_LINES (more of
# its keys, indented by 4 spaces) when given.
write_waypost_config() {
    {
        cat <<EOF
listen: 127.0.0.1:$WAYPOST_PORT
admin: { listen: 127.0.0.1:$WAYPOST_ADMIN_PORT }
journal: { path: $2, durability: $3, max_backlog: 100000000 }
routes:
  - name: bench
    path: /
    upstream: http://127.0.0.1:$UPSTREAM_PORT/
EOF
        if (($# > 3)); then printf '%s\n' "$4"; fi
    } >"$1"
}

# start_scenario_waypost NAME CONFIG LOGFILE READY_URL: refuses a WAYPOST_PORT or
# WAYPOST_ADMIN_PORT already in use, then launch_waypost CONFIG LOGFILE READY_URL.
start_scenario_waypost() {
    local name=$1 config=$2 logfile=$3 ready_url=$4
    port_in_use "$WAYPOST_PORT" && die "127.0.0.1:$WAYPOST_PORT is already in use"
    port_in_use "$WAYPOST_ADMIN_PORT" && die "127.0.0.1:$WAYPOST_ADMIN_PORT is already in use"

    log "$name: starting $WAYPOST_BIN serve --config $config"
    launch_waypost "$config" "$logfile" "$ready_url"
}

# bench_prepare PACKAGE...: what every run does first, from the repository root: the
# script's own check_settings, the Debian packages it needs, the Waypost binary
# (ensure_prebuilt_waypost) and the disk check.
bench_prepare() {
    [[ $(id -u) == 0 ]] || log "warning: not root; installing packages would fail"
    cd "$REPO_ROOT" || die "cannot enter $REPO_ROOT"
    check_settings
    install_missing "$@"
    ensure_prebuilt_waypost
    check_disk
}

# ensure_prebuilt_waypost: sets WAYPOST_BIN (and BINARY_NOTE). The binary is kept fresh
# elsewhere: WAYPOST_BIN if set, else .build-release/release/waypost, else
# .build/release/waypost; built (release, --scratch-path .build-release) only when
# neither exists. A binary older than Sources/ is used anyway; BINARY_NOTE says so.
ensure_prebuilt_waypost() {
    if [[ -n $WAYPOST_BIN ]]; then
        [[ -x $WAYPOST_BIN ]] || die "WAYPOST_BIN=$WAYPOST_BIN is not an executable"
        BINARY_NOTE="WAYPOST_BIN"
    elif [[ -x $REPO_ROOT/.build-release/release/waypost ]]; then
        WAYPOST_BIN=$REPO_ROOT/.build-release/release/waypost
        BINARY_NOTE="found"
    elif [[ -x $REPO_ROOT/.build/release/waypost ]]; then
        WAYPOST_BIN=$REPO_ROOT/.build/release/waypost
        BINARY_NOTE="found"
    else
        log "building Waypost in release mode (no binary yet; ~10 min on 2 cores)"
        (cd "$REPO_ROOT" && swift build -c release --product waypost --scratch-path .build-release)
        WAYPOST_BIN=$REPO_ROOT/.build-release/release/waypost
        [[ -x $WAYPOST_BIN ]] || die "no executable at $WAYPOST_BIN after the build"
        BINARY_NOTE="built now"
    fi
    local newer
    newer=$(cd "$REPO_ROOT" && { find Sources Package.swift -newer "$WAYPOST_BIN" -print -quit 2>/dev/null || true; })
    if [[ -n $newer ]]; then
        BINARY_NOTE="$BINARY_NOTE; older than $newer (not rebuilt)"
    fi
}

# waypost_line: the report's "waypost:" line (binary, how it was chosen, the commit).
waypost_line() {
    echo "waypost: $WAYPOST_BIN ($BINARY_NOTE; $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo 'no commit'))"
}

# ---------------------------------------------------------------------------
# CPU accounting

# cpu_snapshot: prints "total busy ours" in clock ticks: the machine's total and busy time
# from /proc/stat, and the time used by this script's process group (which holds wrk, nginx,
# Waypost and sqlite3; each process's own utime/stime plus, through cutime/cstime,
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

# idle_other_cpu: prints (and logs) the share of the machine that other processes use
# during 2 s in which this script does nothing.
idle_other_cpu() {
    local snapshot busy
    snapshot=$(cpu_snapshot)
    sleep 2
    busy=$(other_cpu_percent "$snapshot" "$(cpu_snapshot)")
    log "CPU used by other processes during 2 s before the run: $busy"
    echo "$busy"
}

# ---------------------------------------------------------------------------
# Set-up

# install_missing TOOL...: apt-get installs the packages of the TOOLs not on the PATH.
install_missing() {
    local missing=() tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || missing+=("$tool")
    done
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

# install_missing_packages PACKAGE...: apt-get installs the Debian PACKAGEs that are not
# installed (for those that put no tool on the PATH, such as libcurl4-openssl-dev).
install_missing_packages() {
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$package")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    log "installing from Debian: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
}

# check_disk: creates WORK and refuses it on a tmpfs or ramfs; sets JOURNAL_FS.
check_disk() {
    local fstype
    mkdir -p "$WORK"
    fstype=$(stat -f -c %T "$WORK")
    case $fstype in
        tmpfs | ramfs)
            die "$WORK is on $fstype: the journal must be on a real disk (set OUT_DIR)" ;;
    esac
    JOURNAL_FS="$(findmnt -n -o SOURCE,FSTYPE -T "$WORK" 2>/dev/null | tr -s ' ' || echo "$fstype")"
}

# check_conns: every one of CONNS is a positive integer, or the run stops.
check_conns() {
    local conns
    for conns in $CONNS; do
        [[ $conns =~ ^[1-9][0-9]*$ ]] || die "CONNS: '$conns' is not a positive integer"
    done
}

# check_durability: DURABILITY is full or relaxed, or the run stops.
check_durability() {
    case $DURABILITY in
        full | relaxed) ;;
        *) die "DURABILITY must be full or relaxed, not '$DURABILITY'" ;;
    esac
}

# fsync_median LINE: the median in ms from a fsync.py line ("... median 1.234 ms, ..."), or n/a.
fsync_median() {
    local median
    median=$(sed -nE 's/.* median ([0-9.]+) ms.*/\1/p' <<<"$1")
    echo "${median:-n/a}"
}

# ---------------------------------------------------------------------------
# nginx

# write_nginx_conf DIR PORT WORKERS LOCATION_BODY [HTTP_BLOCK]: HTTP_BLOCK (e.g. an
# upstream {}) goes into the http block before the server, followed by an empty line.
write_nginx_conf() {
    local dir=$1 port=$2 workers=$3 location=$4 http_block=${5:-}
    [[ -n $http_block ]] && http_block+=$'\n\n'
    mkdir -p "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
# Generated by scripts/bench/${0##*/}; everything lives in $dir.
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

${http_block}    server {
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

# start_upstream [HTTP_BLOCK]: the private nginx upstream on UPSTREAM_PORT, in
# $WORK/nginx-upstream, UPSTREAM_WORKERS workers answering every request with 200 "ok"
# (HTTP_BLOCK as in write_nginx_conf).
# shellcheck disable=SC2120  # the argument is optional
start_upstream() {
    port_in_use "$UPSTREAM_PORT" && die "127.0.0.1:$UPSTREAM_PORT is already in use"
    write_nginx_conf "$WORK/nginx-upstream" "$UPSTREAM_PORT" "$UPSTREAM_WORKERS" \
        '            return 200 "ok\n";' "${1:-}"
    start_nginx upstream "$WORK/nginx-upstream" "$UPSTREAM_PORT"
}

# proxy_upstream_block: the http-level `upstream bench_upstream {}` through which the private
# nginx proxy reaches the upstream on UPSTREAM_PORT, keeping up to UPSTREAM_KEEPALIVE idle
# connections to it. Both nginx configs carry it (the upstream nginx never uses it).
proxy_upstream_block() {
    echo "    upstream bench_upstream {
        server 127.0.0.1:$UPSTREAM_PORT;
        keepalive $UPSTREAM_KEEPALIVE;
        keepalive_requests 1000000;
    }"
}

# start_proxy UPSTREAM_BLOCK: the private nginx reverse proxy on PROXY_PORT, in
# $WORK/nginx-proxy, NGINX_WORKERS workers passing every request to the upstream over
# kept-alive HTTP/1.1 connections (UPSTREAM_BLOCK from proxy_upstream_block).
start_proxy() {
    write_nginx_conf "$WORK/nginx-proxy" "$PROXY_PORT" "$NGINX_WORKERS" \
        '            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";' "$1"
    start_nginx proxy "$WORK/nginx-proxy" "$PROXY_PORT"
}

# ---------------------------------------------------------------------------
# wrk

# wrk_threads CONNS: WRK_THREADS, but no more than CONNS (wrk refuses fewer connections
# than threads).
wrk_threads() {
    if (($1 < WRK_THREADS)); then echo "$1"; else echo "$WRK_THREADS"; fi
}

# wrk_warmup NAME URL CONNS: the unreported run, output kept in $WORK/NAME.warmup.wrk;
# none when WARMUP is 0.
wrk_warmup() {
    local name=$1 url=$2 conns=$3
    [[ $WARMUP =~ ^0+[a-z]*$ ]] && return 0
    log "$name: warm-up $WARMUP, $conns connections"
    wrk -t"$(wrk_threads "$conns")" -c"$conns" -d"$WARMUP" -s "$LUA_SCRIPT" "$url" \
        >"$WORK/$name.warmup.wrk" 2>&1
}

# wrk_measure NAME URL CONNS [PROBE]: the reported run, output in $WORK/NAME.wrk; sets OTHER_CPU.
# PROBE, a command, runs right before ("PROBE start") and right after ("PROBE end") wrk (inside the CPU snapshots, which
# take a moment), its output kept in PROBE_BEFORE and PROBE_AFTER.
wrk_measure() {
    local name=$1 url=$2 conns=$3 probe=${4:-} before after
    log "$name: measuring $DURATION, $conns connections"
    before=$(cpu_snapshot)
    [[ -n $probe ]] && PROBE_BEFORE=$($probe start)
    wrk -t"$(wrk_threads "$conns")" -c"$conns" -d"$DURATION" --latency -s "$LUA_SCRIPT" "$url" \
        >"$WORK/$name.wrk" 2>&1
    [[ -n $probe ]] && PROBE_AFTER=$($probe end)
    after=$(cpu_snapshot)
    OTHER_CPU=$(other_cpu_percent "$before" "$after")
    log "$name: other processes used $OTHER_CPU of the machine meanwhile"
}

# parse_wrk FILE [DECIMALS]: prints "req/s p50_ms p99_ms requests non2xx socket_errors"
# (n/a when absent); latencies below 1 s with DECIMALS decimals (default 2).
parse_wrk() {
    awk -v dec="${2:-2}" '
        function ms(v) {
            if (v ~ /us$/) return sprintf("%." dec "f", v / 1000)
            if (v ~ /ms$/) return sprintf("%." dec "f", v + 0)
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

# status_counts FILE: the "Status counts: ..." line of the wrk script (WRK_STATUS_COUNTS=1)
# followed by "; ", or nothing.
status_counts() {
    local line
    line=$(grep -m1 '^Status counts:' "$1" || true)
    [[ -n $line ]] && printf '%s; ' "$line"
    return 0
}

# status_count FILE CODE...: how many answers had one of the CODEs, from the wrk script's
# "Status counts:" line (0 when a code is not in it); "n/a" without that line
# (WRK_STATUS_COUNTS is not 1).
status_count() {
    local file=$1 line
    shift
    line=$(grep -m1 '^Status counts:' "$file" || true)
    [[ -n $line ]] || { echo "n/a"; return 0; }
    awk -v codes="$*" '{
        n = split(codes, want, " ")
        for (i = 3; i <= NF; i++) {
            split($i, kv, "=")
            for (j = 1; j <= n; j++) if (kv[1] == want[j]) total += kv[2]
        }
        print total + 0
    }' <<<"$line"
}

# status_count_other FILE CODE: answers with any status but CODE, as status_count.
status_count_other() {
    local line
    line=$(grep -m1 '^Status counts:' "$1" || true)
    [[ -n $line ]] || { echo "n/a"; return 0; }
    awk -v code="$2" '{
        for (i = 3; i <= NF; i++) { split($i, kv, "="); if (kv[1] != code) total += kv[2] }
        print total + 0
    }' <<<"$line"
}

# bench_body: the 1024-byte JSON body that post-1k.lua sends, {"data":"xxx...x"}, without
# a trailing newline (for signatures computed in the shell).
bench_body() {
    printf '{"data":"%s"}' "$(head -c 1013 /dev/zero | tr '\0' x)"
}

# ---------------------------------------------------------------------------
# Journal files and queries

# journal_size JOURNAL: the size of the database with its -wal and -shm, "12.3 MiB".
journal_size() {
    local bytes=0 file
    for file in "$1" "$1-wal" "$1-shm"; do
        [[ -f $file ]] && bytes=$((bytes + $(stat -c %s "$file")))
    done
    awk -v b="$bytes" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}

# drop_journal JOURNAL: deletes it with its -wal and -shm, unless KEEP_JOURNALS=1.
drop_journal() {
    [[ $KEEP_JOURNALS == 1 ]] || rm -f "$1" "$1-wal" "$1-shm"
}

# journal_and_log JOURNAL LOGFILE: for a details line, "journal SIZE, log lines with
# warning/error/critical N [...] (LOGFILE)" (journal_size, log_problems); then drops the
# journal (drop_journal).
journal_and_log() {
    echo "journal $(journal_size "$1"), log lines with warning/error/critical $(log_problems "$2") ($2)"
    drop_journal "$1"
}

# sql JOURNAL SQL: one query with the stock CLI, '|'-separated, "n/a" when it fails.
sql() {
    sqlite3 -batch -cmd '.timeout 5000' "$1" "$2" 2>/dev/null || echo "n/a"
}

# state_counts JOURNAL: prints "delivered failed+skipped queued in_flight" deliveries (covered
# by the deliveries_by_state index: no table scan, cheap enough to poll twice a second).
state_counts() {
    local out
    out=$(sql "$1" "SELECT (SELECT count(*) FROM deliveries WHERE state = 'delivered'),
                           (SELECT count(*) FROM deliveries WHERE state IN ('failed', 'skipped')),
                           (SELECT count(*) FROM deliveries WHERE state = 'queued'),
                           (SELECT count(*) FROM deliveries WHERE state = 'in_flight')")
    [[ $out == n/a ]] && out="n/a|n/a|n/a|n/a"
    tr '|' ' ' <<<"$out"
}

# log_problems LOGFILE: "N" lines with warning/error/critical, then up to 5 distinct ones.
log_problems() {
    local count lines
    count=$(grep -ciE '\b(warning|error|critical)\b' "$1" || true)
    printf '%s' "${count:-0}"
    if [[ ${count:-0} != 0 ]]; then
        # Drop the timestamp at the start of each line so repeats collapse.
        lines=$(grep -iE '\b(warning|error|critical)\b' "$1" | sed -E 's/^[0-9T:.+-]+Z? //' \
            | sort | uniq -c | sort -rn | head -n 5 | sed -E 's/^ +//' | paste -sd '|' -)
        printf ' [%s]' "$lines"
    fi
}

# ---------------------------------------------------------------------------
# Report

# report_head NAME BUSY_BEFORE: the report's title, then its lines about the machine and its
# other load.
report_head() {
    echo "Waypost $1 benchmark, $(date -Is)"
    echo "machine: nproc $(nproc), kernel $(uname -r), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "CPU used by other processes: $2 in the 2 s before the run, per scenario below (anything above a few % skews the figures)"
}

# ratio A B: A / B with 2 decimals; "n/a" unless both are whole numbers and B > 0 (an
# unfinished drain's "123*" gives n/a too).
ratio() {
    if [[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ && $2 -gt 0 ]]; then
        awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
    else
        echo "n/a"
    fi
}

# difference A B [DECIMALS]: A - B (e.g. two latencies in ms), with a sign; "n/a" unless both
# are numbers.
difference() {
    if [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ && $2 =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
        awk -v a="$1" -v b="$2" -v dec="${3:-2}" 'BEGIN { printf "%+." dec "f", a - b }'
    else
        echo "n/a"
    fi
}

# print_table FORMAT ROWS HEADER...: the HEADERs, then each '|'-separated row of the array
# named ROWS, through the printf FORMAT.
print_table() {
    local fmt=$1 row
    local -n table_rows=$2
    local -a fields
    shift 2
    # shellcheck disable=SC2059  # the format is a constant of the caller
    printf "$fmt" "$@"
    for row in "${table_rows[@]}"; do
        IFS='|' read -r -a fields <<<"$row"
        # shellcheck disable=SC2059
        printf "$fmt" "${fields[@]}"
    done
}

# detail_lines: an empty line, each line of DETAILS as "- LINE", an empty line.
detail_lines() {
    local line
    echo
    for line in "${DETAILS[@]}"; do
        echo "- $line"
    done
    echo
}

# save_report: copies its input (the report) to standard output and to RESULTS, then says
# where the results are.
save_report() {
    tee "$RESULTS"
    log "results: $RESULTS (raw output in $WORK)"
}
