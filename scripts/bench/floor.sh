#!/usr/bin/env bash
# Floor benchmark: the least CPU that the parts Waypost is built from cost on this machine,
# each alone, per request or message: a bare SwiftNIO server answering 202 like Waypost's
# intake (floor-nio), Waypost's journal statements on SQLite (sqlite-floor), and a libcurl
# multi client POSTing to a kept-alive upstream (curl-floor); beside them nginx, as the
# upstream under wrk and as a reverse proxy, and the load's own cost (wrk, the upstream).
# Set Waypost's per-message CPU (cpu.sh) beside the sum of the floors and nginx's budget.
#
# Usage (from the repository root, as root):
#
#   scripts/bench/floor.sh                              # ~3 min, plus ~2 min to build floor-nio the first time
#   DURATION=5s WARMUP=1s scripts/bench/floor.sh        # ~2 min
#   CONNS=64 SQLITE_BATCHES=32 SQLITE_MESSAGES=50000 scripts/bench/floor.sh
#
# It prints figures and never judges them: the exit code says only whether the
# benchmark itself could run. See scripts/bench/README.md ("Floor benchmark").
#
# Environment:
#   DURATION        measured run per wrk and curl-floor scenario (default 10s)
#   WARMUP          unreported run before each of them (default 3s; 0 for none)
#   CONNS           wrk connection counts (default "64 256")
#   WRK_THREADS     wrk threads (default 2)
#   CURL_CONCURRENCY  curl-floor's transfers in flight (default "1 16")
#   SQLITE_BATCHES  messages per intake transaction in sqlite-floor (default "32 128")
#   SQLITE_MESSAGES messages per sqlite-floor run (default 200000)
#   SQLITE_SCHEMA   a schema file (`sqlite3 journal.db .schema`) for sqlite-floor; unset:
#                   Waypost creates a journal (started briefly) and its schema is dumped
#   NGINX_WORKERS   worker_processes of the nginx reverse proxy (default 1)
#   UPSTREAM_WORKERS worker_processes of the nginx upstream (default 1)
#   UPSTREAM_KEEPALIVE idle keepalive connections the proxy keeps to the upstream (default 64)
#   WAYPOST_BIN     Waypost binary (only to create the journal for the schema); unset:
#                   .build-release/release/waypost if present, else .build/release/waypost
#   OUT_DIR         results and scratch files (default <repo>/bench-out; must not be tmpfs);
#                   floor-nio is built in $OUT_DIR/floor-nio-build
#   KEEP_JOURNALS=1 keep each sqlite-floor journal (~450 MB each at the defaults)
#   UPSTREAM_PORT, PROXY_PORT, NIO_FLOOR_PORT, WAYPOST_PORT, WAYPOST_ADMIN_PORT
#                   (18081, 18082, 18090, 18080, 19901)

set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
DURATION=${DURATION:-10s}
bench_settings floor post-1k.lua 0

CONNS=${CONNS:-64 256}
CURL_CONCURRENCY=${CURL_CONCURRENCY:-1 16}
SQLITE_BATCHES=${SQLITE_BATCHES:-32 128}
SQLITE_MESSAGES=${SQLITE_MESSAGES:-200000}
SQLITE_SCHEMA=${SQLITE_SCHEMA:-}
NGINX_WORKERS=${NGINX_WORKERS:-1}
UPSTREAM_KEEPALIVE=${UPSTREAM_KEEPALIVE:-64}
PROXY_PORT=${PROXY_PORT:-18082}
NIO_FLOOR_PORT=${NIO_FLOOR_PORT:-18090}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}

FLOOR_SRC=$SCRIPT_DIR/floor            # the floors' sources
NIO_BUILD=$OUT_DIR/floor-nio-build     # floor-nio's scratch path, kept between runs
CLOCK_TICKS=$(getconf CLK_TCK)
CURL_FLOOR=       # the built programs
SQLITE_FLOOR=
NIO_FLOOR_BIN=
NIO_PID=          # the running floor-nio
SCHEMA_NOTE=      # where sqlite-floor's schema came from
STATEMENTS_NOTE=  # whether its statements are still Waypost's
GROUP_TICKS=()    # clock ticks each process group of wrk_cpu_run used during its run
WRK_CPU_US=       # and wrk's own CPU time in µs

HTTP_ROWS=()      # "scenario|conns|req/s|non-2xx|wrk|server|upstream|sum", µs per request
CURL_ROWS=()      # "concurrency|req/s|curl-floor|user|system|upstream|sum"
SQLITE_ROWS=()    # "durability|transactions|batch|msgs/s|commits|µs/msg|user|system"
DETAILS=()        # one free-text line per scenario, printed under the tables
declare -A WRK_US=() SERVER_US=() PROXY_US=() BEHIND_US=() PROXY_RPS=() NIO_US=() CURL_US=() SQLITE_US=()

# ---------------------------------------------------------------------------
# Settings and set-up

# duration_seconds DURATION: wrk's duration syntax (N, Ns, Nm, Nh) in whole seconds.
duration_seconds() {
    [[ $1 =~ ^([0-9]+)([smh]?)$ ]] || return 1
    case ${BASH_REMATCH[2]} in
        m) echo $((10#${BASH_REMATCH[1]} * 60)) ;;
        h) echo $((10#${BASH_REMATCH[1]} * 3600)) ;;
        *) echo $((10#${BASH_REMATCH[1]})) ;;
    esac
}

# check_positive_list NAME VALUE...: every VALUE is a positive whole number, or the run stops.
check_positive_list() {
    local name=$1 value
    shift
    (($# > 0)) || die "$name is empty"
    for value in "$@"; do
        [[ $value =~ ^[1-9][0-9]*$ ]] || die "$name: '$value' is not a positive whole number"
    done
}

check_settings() {
    local seconds
    seconds=$(duration_seconds "$DURATION") || die "DURATION must be N, Ns, Nm or Nh, got '$DURATION'"
    ((seconds > 0)) || die "DURATION must be above 0"
    duration_seconds "$WARMUP" >/dev/null || die "WARMUP must be N, Ns, Nm or Nh, got '$WARMUP'"
    # shellcheck disable=SC2086  # the lists split on spaces
    {
        check_positive_list CONNS $CONNS
        check_positive_list CURL_CONCURRENCY $CURL_CONCURRENCY
        check_positive_list SQLITE_BATCHES $SQLITE_BATCHES
        check_positive_list SQLITE_MESSAGES $SQLITE_MESSAGES
    }
    if [[ -n $SQLITE_SCHEMA && ! -r $SQLITE_SCHEMA ]]; then
        die "SQLITE_SCHEMA=$SQLITE_SCHEMA is not a readable file"
    fi
}

# build_floors: curl-floor and sqlite-floor with gcc into WORK; floor-nio with swift build
# into NIO_BUILD (incremental after the first run).
build_floors() {
    log "building curl-floor and sqlite-floor (gcc -O2)"
    CURL_FLOOR=$WORK/curl-floor
    SQLITE_FLOOR=$WORK/sqlite-floor
    gcc -O2 -Wall -o "$CURL_FLOOR" "$FLOOR_SRC/curl-floor.c" -lcurl || die "cannot build curl-floor"
    gcc -O2 -Wall -o "$SQLITE_FLOOR" "$FLOOR_SRC/sqlite-floor.c" -lsqlite3 || die "cannot build sqlite-floor"

    command -v swift >/dev/null || die "swift is not on the PATH: floor-nio needs a Swift toolchain"
    log "building floor-nio (release, in $NIO_BUILD; ~2 min the first time)"
    if ! swift build -c release --package-path "$FLOOR_SRC/nio" --scratch-path "$NIO_BUILD" \
        >"$WORK/floor-nio-build.log" 2>&1; then
        tail -n 30 "$WORK/floor-nio-build.log" >&2
        die "cannot build floor-nio (log: $WORK/floor-nio-build.log)"
    fi
    NIO_FLOOR_BIN=$NIO_BUILD/release/floor-nio
    [[ -x $NIO_FLOOR_BIN ]] || die "no executable at $NIO_FLOOR_BIN after the build"
}

# resolved_nio FILE: the swift-nio version pinned in a Package.resolved, or "unknown".
resolved_nio() {
    local version
    version=$(awk '/"identity" : "swift-nio"/ { found = 1 }
                   found && /"version"/ { gsub(/[",]/, ""); print $3; exit }' "$1" 2>/dev/null || true)
    echo "${version:-unknown}"
}

# make_schema: WORK/schema.sql for sqlite-floor: a copy of SQLITE_SCHEMA, or the schema of a
# journal that Waypost creates (started once on it, then stopped), dumped with sqlite3.
make_schema() {
    if [[ -n $SQLITE_SCHEMA ]]; then
        cp "$SQLITE_SCHEMA" "$WORK/schema.sql"
        SCHEMA_NOTE="from SQLITE_SCHEMA=$SQLITE_SCHEMA"
        return 0
    fi
    local dir=$WORK/schema-journal
    mkdir -p "$dir"
    write_waypost_config "$dir/waypost.yaml" "$dir/journal.db" full
    start_scenario_waypost schema "$dir/waypost.yaml" "$dir/waypost.log" \
        "http://127.0.0.1:$WAYPOST_PORT/_waypost/ready"
    stop_pid "$WAYPOST_PID" "$STOP_TIMEOUT"
    sqlite3 "$dir/journal.db" .schema >"$WORK/schema.sql" || die "cannot dump the schema of $dir/journal.db"
    grep -q 'CREATE TABLE messages' "$WORK/schema.sql" || die "no messages table in $dir/journal.db"
    SCHEMA_NOTE="dumped from a journal that the Waypost binary above created (user_version $(sql "$dir/journal.db" 'PRAGMA user_version'))"
    drop_journal "$dir/journal.db"
}

# check_statements: whether sqlite-floor's statements (`sqlite-floor -p`) are still those of
# Sources/WaypostJournal/JournalWriter.swift (its multi-line literals without indentation);
# sets STATEMENTS_NOTE. Says so, never stops the run.
check_statements() {
    local swift_file=$REPO_ROOT/Sources/WaypostJournal/JournalWriter.swift
    "$SQLITE_FLOOR" -p >"$WORK/statements.floor"
    python3 - "$swift_file" >"$WORK/statements.waypost" <<'EOF'
import re, sys
source = open(sys.argv[1]).read()
found = []
for name in ("insert", "closeAttempt", "finishMessageWithResponse"):
    block = re.search(name + r' = try db\.prepare\(\n[ ]*"""\n(.*?)\n([ ]*)"""\)', source, re.S)
    line = re.search(name + r' = try db\.prepare\(\s*"((?:[^"\\]|\\.)*)"\)', source)
    if block:
        indent = block.group(2)
        found.append("\n".join(l[len(indent):] if l.startswith(indent) else l for l in block.group(1).split("\n")))
    elif line:
        found.append(line.group(1))
    else:
        found.append("(no statement " + name + " found)")
print("\n--\n".join(found))
EOF
    if cmp -s "$WORK/statements.floor" "$WORK/statements.waypost"; then
        STATEMENTS_NOTE="byte-identical to insert, closeAttempt and finishMessageWithResponse in Sources/WaypostJournal/JournalWriter.swift"
    else
        diff "$WORK/statements.waypost" "$WORK/statements.floor" >"$WORK/statements.diff" || true
        STATEMENTS_NOTE="DIFFER from those in Sources/WaypostJournal/JournalWriter.swift ($WORK/statements.diff): update scripts/bench/floor/sqlite-floor.c"
        log "warning: sqlite-floor's statements differ from JournalWriter.swift's (see $WORK/statements.diff)"
    fi
}

# ---------------------------------------------------------------------------
# CPU accounting per process

# process_ticks PID...: user + system clock ticks the PIDs have used (all their threads).
process_ticks() {
    local pid rest total=0
    local -a st
    for pid in "$@"; do
        { read -r rest <"/proc/$pid/stat"; } 2>/dev/null || continue
        read -r -a st <<<"${rest##*) }" # fields from "state" on: 11 utime, 12 stime
        total=$((total + st[11] + st[12]))
    done
    echo "$total"
}

# nginx_pids DIR: the master of the private nginx in DIR and its workers.
nginx_pids() {
    local master
    master=$(cat "$1/nginx.pid")
    # shellcheck disable=SC2046  # one word per worker
    echo "$master" $(ps -o pid= --ppid "$master")
}

# us_per TICKS_OR_US UNIT COUNT: CPU per request in µs with 1 decimal (UNIT ticks or us);
# n/a unless COUNT is a positive whole number.
us_per() {
    [[ $3 =~ ^[0-9]+$ && $3 -gt 0 && $1 =~ ^[0-9]+$ ]] || { echo "n/a"; return 0; }
    awk -v v="$1" -v unit="$2" -v n="$3" -v hz="$CLOCK_TICKS" \
        'BEGIN { us = (unit == "ticks") ? v * 1000000 / hz : v; printf "%.1f", us / n }'
}

# sum_us A B...: the sum with 1 decimal; n/a if one of them is not a number.
sum_us() {
    local value
    for value in "$@"; do
        [[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "n/a"; return 0; }
    done
    awk 'BEGIN { for (i = 1; i < ARGC; i++) s += ARGV[i]; printf "%.1f", s }' "$@"
}

# ceiling US: nproc × 1,000,000 / US, whole per second; n/a if US is not a positive number.
ceiling() {
    [[ $1 =~ ^[0-9]+(\.[0-9]+)?$ ]] || { echo "n/a"; return 0; }
    awk -v us="$1" -v cores="$(nproc)" 'BEGIN { if (us > 0) printf "%.0f", cores * 1000000 / us; else print "n/a" }'
}

# kv FILE KEY: the value of KEY in the key=value line a floor program printed, or n/a.
kv() {
    local value
    value=$(grep -oE "(^| )$2=[^ ]+" "$1" 2>/dev/null | head -n 1 | cut -d= -f2)
    echo "${value:-n/a}"
}

# wrk_cpu_run NAME URL CONNS PIDS...: the measured wrk run (like lib.sh's wrk_measure: output
# in $WORK/NAME.wrk, OTHER_CPU), also measuring CPU: WRK_CPU_US, wrk's own user + system
# time in µs (bash's `times` in the subshell that waited for it), and GROUP_TICKS, the clock
# ticks used meanwhile by each process group, each given as one word of PIDs.
wrk_cpu_run() {
    local name=$1 url=$2 conns=$3 before after group i=0
    shift 3
    local -a start=()
    log "$name: measuring $DURATION, $conns connections"
    before=$(cpu_snapshot)
    for group in "$@"; do
        # shellcheck disable=SC2086  # a group is a list of PIDs
        start+=("$(process_ticks $group)")
    done
    (
        wrk -t"$(wrk_threads "$conns")" -c"$conns" -d"$DURATION" --latency -s "$LUA_SCRIPT" "$url" \
            >"$WORK/$name.wrk" 2>&1 || exit 1
        times >"$WORK/$name.times"
    ) || die "$name: wrk failed (output: $WORK/$name.wrk)"
    GROUP_TICKS=()
    for group in "$@"; do
        # shellcheck disable=SC2086
        GROUP_TICKS+=("$(($(process_ticks $group) - start[i]))")
        i=$((i + 1))
    done
    after=$(cpu_snapshot)
    OTHER_CPU=$(other_cpu_percent "$before" "$after")
    log "$name: other processes used $OTHER_CPU of the machine meanwhile"
    # `times` prints the shell's user and system time, then its children's: "0m1.180s 0m6.690s".
    WRK_CPU_US=$(awk 'NR == 2 {
        gsub(/,/, ".")
        split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%.0f", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000000
    }' "$WORK/$name.times")
}

# ---------------------------------------------------------------------------
# Scenarios

# http_scenario KIND CONNS: wrk → the nginx upstream (upstream), the nginx proxy in front of
# it (proxy) or floor-nio (nio), with CPU per request of wrk and of every server involved.
http_scenario() {
    local kind=$1 conns=$2 name url label
    local -a groups
    case $kind in
        upstream)
            name="upstream@$conns" label="nginx upstream" url="http://127.0.0.1:$UPSTREAM_PORT/"
            groups=("$(nginx_pids "$WORK/nginx-upstream")") ;;
        proxy)
            name="proxy@$conns" label="nginx proxy" url="http://127.0.0.1:$PROXY_PORT/"
            groups=("$(nginx_pids "$WORK/nginx-proxy")" "$(nginx_pids "$WORK/nginx-upstream")") ;;
        nio)
            name="floor-nio@$conns" label="floor-nio" url="http://127.0.0.1:$NIO_FLOOR_PORT/"
            groups=("$NIO_PID") ;;
    esac
    wrk_warmup "$name" "$url" "$conns"
    wrk_cpu_run "$name" "$url" "$conns" "${groups[@]}"

    local rps p50 p99 reqs non2xx sockerr
    read -r rps p50 p99 reqs non2xx sockerr < <(parse_wrk "$WORK/$name.wrk")
    local wrk_us server_us behind_us=- sum
    wrk_us=$(us_per "$WRK_CPU_US" us "$reqs")
    server_us=$(us_per "${GROUP_TICKS[0]}" ticks "$reqs")
    if [[ $kind == proxy ]]; then
        behind_us=$(us_per "${GROUP_TICKS[1]}" ticks "$reqs")
        sum=$(sum_us "$wrk_us" "$server_us" "$behind_us")
        PROXY_US[$conns]=$server_us BEHIND_US[$conns]=$behind_us PROXY_RPS[$conns]=$rps
    else
        sum=$(sum_us "$wrk_us" "$server_us")
    fi
    WRK_US[$kind@$conns]=$wrk_us
    [[ $kind == upstream ]] && SERVER_US[$conns]=$server_us
    [[ $kind == nio ]] && NIO_US[$conns]=$server_us
    HTTP_ROWS+=("$label|$conns|$rps|$non2xx|$wrk_us|$server_us|$behind_us|$sum")
    DETAILS+=("$name: $reqs requests, p50 $p50 ms, p99 $p99 ms, socket errors $sockerr; $(status_counts "$WORK/$name.wrk")\
other processes' CPU $OTHER_CPU; raw output $WORK/$name.wrk")
}

start_nio_floor() {
    "$NIO_FLOOR_BIN" "$NIO_FLOOR_PORT" >"$WORK/floor-nio.log" 2>&1 &
    NIO_PID=$!
    PIDS+=("$NIO_PID")
    wait_http "http://127.0.0.1:$NIO_FLOOR_PORT/" "$NIO_PID" "$WORK/floor-nio.log"
    log "floor-nio on 127.0.0.1:$NIO_FLOOR_PORT (pid $NIO_PID)"
}

# curl_scenario CONCURRENCY: curl-floor against the nginx upstream, warm-up then DURATION.
curl_scenario() {
    local concurrency=$1 name="curl-floor@$1" url="http://127.0.0.1:$UPSTREAM_PORT/"
    local warmup_s duration_s upstream before after start
    warmup_s=$(duration_seconds "$WARMUP")
    duration_s=$(duration_seconds "$DURATION")
    upstream=$(nginx_pids "$WORK/nginx-upstream")
    if ((warmup_s > 0)); then
        log "$name: warm-up ${warmup_s}s"
        "$CURL_FLOOR" -c "$concurrency" -t "$warmup_s" "$url" >"$WORK/$name.warmup.out" 2>&1 \
            || die "$name: curl-floor failed (output: $WORK/$name.warmup.out)"
    fi
    log "$name: measuring ${duration_s}s"
    before=$(cpu_snapshot)
    # shellcheck disable=SC2086  # a list of PIDs
    start=$(process_ticks $upstream)
    "$CURL_FLOOR" -c "$concurrency" -t "$duration_s" "$url" >"$WORK/$name.out" 2>&1 \
        || die "$name: curl-floor failed (output: $WORK/$name.out)"
    local upstream_ticks
    # shellcheck disable=SC2086
    upstream_ticks=$(($(process_ticks $upstream) - start))
    after=$(cpu_snapshot)
    local other_cpu
    other_cpu=$(other_cpu_percent "$before" "$after")
    log "$name: other processes used $other_cpu of the machine meanwhile"

    local out=$WORK/$name.out requests curl_us upstream_us
    requests=$(kv "$out" requests)
    curl_us=$(kv "$out" cpu_us_per_request)
    upstream_us=$(us_per "$upstream_ticks" ticks "$requests")
    CURL_US[$concurrency]=$curl_us
    CURL_ROWS+=("$concurrency|$(kv "$out" req_per_s)|$curl_us|$(kv "$out" user_us_per_request)|\
$(kv "$out" sys_us_per_request)|$upstream_us|$(sum_us "$curl_us" "$upstream_us")")
    DETAILS+=("$name: $requests requests in $(kv "$out" seconds) s; other processes' CPU $other_cpu; raw output $out")
}

# sqlite_scenario DURABILITY OUTCOMES(0|1) BATCH: sqlite-floor on a fresh journal in WORK.
sqlite_scenario() {
    local durability=$1 outcomes=$2 batch=$3 transactions=intake
    ((outcomes)) && transactions=intake+outcomes
    local name="sqlite-$durability-$transactions@$batch"
    local dir=$WORK/$name
    mkdir -p "$dir"
    local journal=$dir/journal.db out=$WORK/$name.out before after other_cpu
    local -a flags=(-d "$durability" -b "$batch" -n "$SQLITE_MESSAGES")
    ((outcomes)) && flags+=(-o)
    log "$name: $SQLITE_MESSAGES messages"
    before=$(cpu_snapshot)
    "$SQLITE_FLOOR" "${flags[@]}" "$WORK/schema.sql" "$journal" >"$out" 2>&1 \
        || die "$name: sqlite-floor failed (output: $out)"
    after=$(cpu_snapshot)
    other_cpu=$(other_cpu_percent "$before" "$after")
    log "$name: other processes used $other_cpu of the machine meanwhile"

    local us size
    us=$(kv "$out" cpu_us_per_message)
    SQLITE_US[$durability-$outcomes-$batch]=$us
    SQLITE_ROWS+=("$durability|$transactions|$batch|$(kv "$out" msgs_per_s)|$(kv "$out" commits)|$us|\
$(kv "$out" user_us_per_message)|$(kv "$out" sys_us_per_message)")
    size=$(journal_size "$journal")
    drop_journal "$journal"
    DETAILS+=("$name: $(kv "$out" messages) messages in $(kv "$out" seconds) s, journal $size; \
other processes' CPU $other_cpu; raw output $out")
}

# ---------------------------------------------------------------------------
# Report

# pick PREFERRED VALUE...: PREFERRED if it is among the VALUEs, else the first VALUE.
pick() {
    local preferred=$1 value
    shift
    for value in "$@"; do
        [[ $value == "$preferred" ]] && { echo "$value"; return 0; }
    done
    echo "$1"
}

# summary: the floor per message accepted and delivered, the load's cost, the ceiling they
# imply, and nginx proxy's figures beside it.
summary() {
    local conns concurrency batch cores
    cores=$(nproc)
    # shellcheck disable=SC2086  # the lists split on spaces
    {
        conns=$(pick 64 $CONNS)
        concurrency=$(pick 16 $CURL_CONCURRENCY)
        batch=$(pick 32 $SQLITE_BATCHES)
    }
    local nio=${NIO_US[$conns]:-n/a} journal=${SQLITE_US[full-1-$batch]:-n/a} curl=${CURL_US[$concurrency]:-n/a}
    local wrk=${WRK_US[upstream@$conns]:-n/a} upstream=${SERVER_US[$conns]:-n/a}
    local floor load total
    floor=$(sum_us "$nio" "$journal" "$curl")
    load=$(sum_us "$wrk" "$upstream")
    total=$(sum_us "$floor" "$load")
    local fmt='  %-66s %s\n'
    echo "Summary: CPU time per message, user + system, in µs; this machine has $cores cores"
    # shellcheck disable=SC2059  # the format is a constant
    {
        printf "$fmt" "floor-nio at $conns connections (intake: HTTP, 202)" "$nio µs"
        printf "$fmt" "sqlite-floor, durability full, with outcomes, batch $batch (journal)" "$journal µs"
        printf "$fmt" "curl-floor at concurrency $concurrency (delivery over libcurl)" "$curl µs"
        printf "$fmt" "floor per message accepted and delivered (the three above)" "$floor µs"
        printf "$fmt" "load's own cost at $conns connections: wrk $wrk + nginx upstream $upstream" "$load µs"
        printf "$fmt" "floor + load" "$total µs"
        printf "$fmt" "ceiling that implies: $cores cores x 1,000,000 / (floor + load)" "$(ceiling "$total") messages/s"
        for conns in $CONNS; do
            local proxy_total
            proxy_total=$(sum_us "${WRK_US[proxy@$conns]:-n/a}" "${PROXY_US[$conns]:-n/a}" "${BEHIND_US[$conns]:-n/a}")
            printf "$fmt" "nginx proxy at $conns connections, measured" "${PROXY_RPS[$conns]:-n/a} req/s"
            printf "$fmt" "  its CPU: wrk ${WRK_US[proxy@$conns]:-n/a} + proxy ${PROXY_US[$conns]:-n/a} + upstream ${BEHIND_US[$conns]:-n/a}" \
                "$proxy_total µs per request; ceiling $cores cores x 1,000,000 / $proxy_total = $(ceiling "$proxy_total") req/s"
        done
    }
}

main() {
    [[ $(id -u) == 0 ]] || log "warning: not root; installing packages would fail"
    cd "$REPO_ROOT" || die "cannot enter $REPO_ROOT"
    check_settings
    install_missing wrk nginx curl sqlite3 python3 gcc
    install_missing_packages libcurl4-openssl-dev libsqlite3-dev
    if [[ -z $SQLITE_SCHEMA ]]; then
        ensure_prebuilt_waypost
    fi
    check_disk
    port_in_use "$UPSTREAM_PORT" && die "127.0.0.1:$UPSTREAM_PORT is already in use"
    port_in_use "$PROXY_PORT" && die "127.0.0.1:$PROXY_PORT is already in use"
    port_in_use "$NIO_FLOOR_PORT" && die "127.0.0.1:$NIO_FLOOR_PORT is already in use"

    build_floors
    make_schema
    check_statements
    local fsync_append busy_before conns concurrency durability outcomes batch
    fsync_append=$(python3 "$FSYNC_PY" "$WORK" --mode append)
    busy_before=$(idle_other_cpu)

    # The nginx upstream, and the proxy in front of it, exactly as intake.sh has them.
    local upstream_block
    upstream_block=$(proxy_upstream_block)
    start_upstream "$upstream_block"
    start_proxy "$upstream_block"
    for conns in $CONNS; do http_scenario upstream "$conns"; done
    for conns in $CONNS; do http_scenario proxy "$conns"; done
    start_nio_floor
    for conns in $CONNS; do http_scenario nio "$conns"; done
    stop_pid "$NIO_PID" 10
    for concurrency in $CURL_CONCURRENCY; do curl_scenario "$concurrency"; done
    for durability in full relaxed; do
        for outcomes in 0 1; do
            for batch in $SQLITE_BATCHES; do sqlite_scenario "$durability" "$outcomes" "$batch"; done
        done
    done

    {
        report_head floor "$busy_before"
        if [[ -z $SQLITE_SCHEMA ]]; then waypost_line; fi
        echo "nginx: $(nginx -v 2>&1 | cut -d/ -f2), proxy worker_processes $NGINX_WORKERS (keepalive $UPSTREAM_KEEPALIVE to the upstream), upstream worker_processes $UPSTREAM_WORKERS, access_log off"
        echo "floor-nio: swift-nio $(resolved_nio "$FLOOR_SRC/nio/Package.resolved") (Waypost's Package.resolved: $(resolved_nio "$REPO_ROOT/Package.resolved")), $(nproc) event loops, $NIO_FLOOR_BIN"
        echo "curl-floor: $(curl-config --version 2>/dev/null || echo 'libcurl'); sqlite-floor: SQLite $(sqlite3 --version | cut -d' ' -f1)"
        echo "sqlite-floor's schema: $SCHEMA_NOTE"
        echo "sqlite-floor's statements: $STATEMENTS_NOTE"
        echo "journal file system: $JOURNAL_FS ($WORK)"
        echo "$fsync_append"
        echo
        echo "HTTP under wrk -t$WRK_THREADS -d$DURATION (after a $WARMUP warm-up), 1024-byte JSON POST ($(basename "$LUA_SCRIPT")); CPU µs per request"
        print_table '%-15s %6s %9s %8s %8s %8s %9s %8s\n' HTTP_ROWS \
            scenario conns req/s non-2xx wrk server upstream sum
        echo
        echo "libcurl multi (curl-floor), 1024-byte POSTs to the nginx upstream for $DURATION (after $WARMUP); CPU µs per request"
        print_table '%-12s %9s %11s %7s %7s %9s %8s\n' CURL_ROWS \
            concurrency req/s curl-floor user system upstream sum
        echo
        echo "SQLite journal (sqlite-floor), $SQLITE_MESSAGES messages of 1024 bytes per run, each on a fresh journal; CPU µs per message"
        print_table '%-10s %-16s %6s %9s %8s %8s %7s %7s\n' SQLITE_ROWS \
            durability transactions batch msgs/s commits cpu user system
        detail_lines
        summary
        echo
        echo "CPU µs per request or message: user + system time, from /proc/PID/stat for nginx (master and workers) and"
        echo "  floor-nio (all threads), from bash's times for wrk, from getrusage inside curl-floor and sqlite-floor;"
        echo "  divided by the requests (wrk's count) or messages of the measured run. server: the process wrk sends to;"
        echo "  upstream: the nginx upstream behind the proxy (HTTP table), or the one curl-floor posts to; sum: all of the row."
        echo "sqlite-floor: intake = one transaction per batch (synchronous FULL under full, NORMAL under relaxed);"
        echo "  intake+outcomes = each followed by one with the batch's attempts and 'delivered' updates (NORMAL)."
        echo "Compare Waypost's µs/msg from cpu.sh (delivery scenario: intake and delivery, all threads) with the floor per"
        echo "  message; and floor + load with the nginx proxy's CPU per request. Figures, not verdicts."
    } | save_report
}

main "$@"
