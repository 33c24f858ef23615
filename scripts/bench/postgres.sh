#!/usr/bin/env bash
# PostgreSQL journal benchmark through HTTP (issue 18): one Waypost node on a PostgreSQL journal
# beside the same node on the SQLite journal, in the same run, for each connection count: durable
# acknowledgements per second (wrk, 1 KiB JSON bodies, async route), their latency, deliveries per
# second to a private nginx upstream during the measured run, the mean commit batch (messages
# and outcomes per commit, from /metrics) and Waypost's peak RSS. The journal `cluster` is
# three nodes on the PostgreSQL journal (SPEC §12) behind a private nginx that spreads the
# connections over them: acks and deliveries are the cluster's, CPU and RSS the sum and the
# largest of the nodes'.
#
# Usage (from the repository root, as root: PostgreSQL runs as the postgres user):
#
#   swift build -c release --product waypost --scratch-path .build-release
#   WAYPOST_BIN=.build-release/release/waypost scripts/bench/postgres.sh
#   CONNS="64 256" DURATION=15s scripts/bench/postgres.sh
#   JOURNALS="postgres cluster" scripts/bench/postgres.sh
#
# It prints figures and never judges them. PostgreSQL (Debian's, the newest installed) runs on a
# scratch cluster on a free loopback port with its defaults (fsync and synchronous_commit on),
# and shares the machine's cores with Waypost, wrk and the upstream.
#
# Environment: DURATION (15s), WARMUP (3s), CONNS ("64 256"), JOURNALS ("sqlite postgres", and
# "cluster" if asked), WRK_THREADS (2), WAYPOST_BIN, OUT_DIR (<repo>/bench-out), UPSTREAM_PORT
# (18081), WAYPOST_PORT (18080; a cluster's other nodes +10 and +20), WAYPOST_ADMIN_PORT (19901,
# likewise), PROXY_PORT (18070, the cluster's nginx), NGINX_WORKERS (1). STATEMENTS=1 loads
# pg_stat_statements and prints, after each PostgreSQL run, the statements that took the most of
# the server's time.

set -euo pipefail
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=SCRIPTDIR/lib.sh
source "$SCRIPT_DIR/lib.sh"
bench_settings postgres post-1k.lua 0
CONNS=${CONNS:-64 256}
JOURNALS=${JOURNALS:-sqlite postgres}
STATEMENTS=${STATEMENTS:-0}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-19901}
PROXY_PORT=${PROXY_PORT:-18070}
NGINX_WORKERS=${NGINX_WORKERS:-1}
PIDS=()

check_conns
for tool in wrk nginx curl; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
[[ -x ${WAYPOST_BIN:-} ]] || die "set WAYPOST_BIN to a release build of waypost"
# shellcheck source=SCRIPTDIR/scratch-postgres.sh
source "$SCRIPT_DIR/scratch-postgres.sh"
scratch_postgres_check
mkdir -p "$WORK"
trap 'cleanup; stop_scratch_postgres; rm -rf "$WORK"/sqlite.db*' EXIT
start_scratch_postgres "$WORK" "$([[ $STATEMENTS == 1 ]] && echo "-c shared_preload_libraries=pg_stat_statements")"
psql -d postgres -c "CREATE ROLE bench LOGIN"

start_upstream

# cpu_seconds: "WAYPOST POSTGRES" CPU seconds used so far by the Waypost nodes and by every
# process of the postgres user (the server and its backends).
cpu_seconds() {
    local ticks=0 pid
    for pid in "${NODE_PIDS[@]}"; do ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done
    echo "$((ticks / $(getconf CLK_TCK))) $(ps -u postgres -o cputimes= | awk '{ s += $1 } END { print s + 0 }')"
}

# metric NAME: the sum of NAME's samples on every node's /metrics.
metric() {
    local port
    for port in "${ADMIN_PORTS[@]}"; do curl -s --max-time 5 "http://127.0.0.1:$port/metrics"; done \
        | awk -v name="$1" '$1 == name || index($1, name "{") == 1 { sum += $NF } END { printf "%.0f\n", sum }'
}

seconds=${DURATION%s}
ROWS=()
for conns in $CONNS; do
    for journal in $JOURNALS; do
        name=$journal-$conns
        rm -f "$WORK"/sqlite.db*
        psql -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench OWNER bench"
        if [[ $journal == sqlite ]]; then
            location="path: $WORK/sqlite.db"
        else
            location="url: 'postgres://bench@127.0.0.1:$PG_PORT/bench?sslmode=disable'"
        fi
        nodes=1
        [[ $journal == cluster ]] && nodes=3
        NODE_PIDS=()
        ADMIN_PORTS=()
        servers=""
        for ((node = 0; node < nodes; node++)); do
            port=$((WAYPOST_PORT + 10 * node))
            admin_port=$((WAYPOST_ADMIN_PORT + 10 * node))
            cat >"$WORK/$name-$node.yaml" <<YAML
listen: 127.0.0.1:$port
admin: { listen: 127.0.0.1:$admin_port }
journal: { $location, max_backlog: 100000000 }
$([[ $journal == sqlite ]] || echo "cluster: { node: node$node }")
routes:
  - name: bench
    path: /
    upstream: http://127.0.0.1:$UPSTREAM_PORT/
YAML
            launch_waypost "$WORK/$name-$node.yaml" "$WORK/$name-$node.log" "http://127.0.0.1:$admin_port/healthz"
            NODE_PIDS+=("$WAYPOST_PID")
            ADMIN_PORTS+=("$admin_port")
            servers+="        server 127.0.0.1:$port;"$'\n'
        done
        target="http://127.0.0.1:$WAYPOST_PORT/"
        if [[ $journal == cluster ]]; then
            # The nodes behind a private nginx, which keeps connections to each open.
            start_proxy "    upstream bench_upstream {
$servers        keepalive 512;
        keepalive_requests 1000000;
    }"
            PROXY_PID=${PIDS[-1]}
            target="http://127.0.0.1:$PROXY_PORT/"
        fi
        wrk_warmup "$name" "$target" "$conns"
        [[ $STATEMENTS == 1 && $journal != sqlite ]] && psql -d bench -c "CREATE EXTENSION IF NOT EXISTS pg_stat_statements" \
            -c "SELECT pg_stat_statements_reset()" >/dev/null
        delivered_before=$(metric waypost_delivered_total)
        cpu_before=$(cpu_seconds)
        wrk_measure "$name" "$target" "$conns"
        cpu_after=$(cpu_seconds)
        delivered_after=$(metric waypost_delivered_total)
        batch_sum=$(metric waypost_commit_batch_size_sum)
        batch_count=$(metric waypost_commit_batch_size_count)
        rss=$(for pid in "${NODE_PIDS[@]}"; do awk '/^VmHWM:/ { printf "%.0f\n", $2 / 1024 }' "/proc/$pid/status"; done | sort -n | tail -1)
        for pid in "${NODE_PIDS[@]}"; do stop_pid "$pid" "$STOP_TIMEOUT"; done
        [[ $journal == cluster ]] && stop_pid "$PROXY_PID" "$STOP_TIMEOUT"
        read -r rps p50 p99 requests non2xx errors < <(parse_wrk "$WORK/$name.wrk")
        deliveries=$(((delivered_after - delivered_before) / seconds))
        batch=$(awk -v s="$batch_sum" -v c="$batch_count" 'BEGIN { printf "%.1f", (c > 0 ? s / c : 0) }')
        ROWS+=("$journal $conns $rps $p50 $p99 $non2xx $deliveries $batch ${rss}MiB")
        read -r waypost_cpu0 postgres_cpu0 <<<"$cpu_before"
        read -r waypost_cpu1 postgres_cpu1 <<<"$cpu_after"
        cpu="waypost $((waypost_cpu1 - waypost_cpu0)) s, postgres $((postgres_cpu1 - postgres_cpu0)) s of CPU"
        if [[ $STATEMENTS == 1 && $journal != sqlite ]]; then
            psql -d bench -F ' | ' -c "SELECT round(total_exec_time)::bigint AS ms, calls, rows, left(regexp_replace(query, '\s+', ' ', 'g'), 90)
                                        FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8" | sed 's/^/    /' >&2
        fi
        log "$name: $cpu; $rps acks/s, p50 $p50 ms, p99 $p99 ms, $non2xx non-2xx, $errors socket errors, $deliveries deliveries/s, batch $batch, peak RSS ${rss} MiB"
    done
done

{
    echo "PostgreSQL journal benchmark: $WAYPOST_BIN, $DURATION per run after $WARMUP warm-up, 1 KiB bodies, async route to nginx,"
    echo "PostgreSQL $PG_VERSION on 127.0.0.1 (fsync, synchronous_commit on), $(nproc) cores shared by all"
    printf '%-9s %6s %9s %8s %8s %7s %13s %7s %9s\n' journal conns acks/s p50_ms p99_ms non2xx deliveries/s batch peak_rss
    for row in "${ROWS[@]}"; do
        # shellcheck disable=SC2086
        printf '%-9s %6s %9s %8s %8s %7s %13s %7s %9s\n' $row
    done
    echo "batch: mean work items (messages and outcomes) per commit; deliveries/s: delivered during the measured run"
} | tee "$RESULTS"
