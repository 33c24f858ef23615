#!/usr/bin/env bash
# Console benchmark (SPEC §13, issue 19's goal: every page in < 100 ms with 1,000,000 messages
# in the journal): builds a journal of MESSAGES messages with the stock sqlite3 (a delivery and
# an attempt each; every 25th failed, the newest 1% waiting behind a paused route), starts
# Waypost on it, and times each console page with curl, sequentially, REPEAT times.
#
# Usage (from the repository root):
#
#   scripts/bench/console.sh
#   MESSAGES=100000 REPEAT=5 scripts/bench/console.sh
#
# It prints figures and never judges them: the exit code says only whether the benchmark
# itself could run.
#
# Environment:
#   MESSAGES        messages in the journal (default 1000000)
#   REPEAT          timed requests per page (default 20; the first of each is not counted)
#   WAYPOST_BIN     default .build-release/release/waypost, else .build/release/waypost
#   OUT_DIR         scratch files (default <repo>/bench-out)
#   WAYPOST_PORT, WAYPOST_ADMIN_PORT  (18180, 18181)

set -euo pipefail
cd "$(dirname "$0")/../.."
MESSAGES=${MESSAGES:-1000000}
REPEAT=${REPEAT:-20}
WAYPOST_PORT=${WAYPOST_PORT:-18180}
WAYPOST_ADMIN_PORT=${WAYPOST_ADMIN_PORT:-18181}
OUT_DIR=${OUT_DIR:-$PWD/bench-out}
[[ $MESSAGES =~ ^[0-9]+$ && $MESSAGES -ge 100 ]] || { echo "MESSAGES must be a whole number of at least 100" >&2; exit 2; }
[[ $REPEAT =~ ^[0-9]+$ && $REPEAT -ge 2 ]] || { echo "REPEAT must be a whole number of at least 2" >&2; exit 2; }
if [[ -z ${WAYPOST_BIN:-} ]]; then
    for candidate in .build-release/release/waypost .build/release/waypost; do
        [[ -x $candidate ]] && WAYPOST_BIN=$candidate && break
    done
fi
[[ -x ${WAYPOST_BIN:-} ]] || { echo "no release build: swift build -c release --product waypost, or set WAYPOST_BIN" >&2; exit 2; }
command -v sqlite3 >/dev/null && command -v curl >/dev/null || { echo "needs sqlite3 and curl" >&2; exit 2; }

work=$OUT_DIR/console-$(date +%Y%m%d-%H%M%S)
mkdir -p "$work"
journal=$work/journal.db
config=$work/waypost.yaml
cat >"$config" <<EOF
listen: 127.0.0.1:$WAYPOST_PORT
admin: { listen: 127.0.0.1:$WAYPOST_ADMIN_PORT }
journal: { path: $journal }
routes:
  - { name: bench, path: /, upstream: "http://127.0.0.1:9/" }
EOF

pid=
stop() { [[ -n $pid ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=; }
trap stop EXIT
start() {
    "$WAYPOST_BIN" serve --config "$config" --log-level warning >"$work/waypost.out" 2>>"$work/waypost.log" &
    pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$WAYPOST_ADMIN_PORT/healthz" && return
        sleep 0.1
    done
    echo "waypost did not start: $(tail -5 "$work/waypost.log")" >&2
    exit 1
}

# The schema, from Waypost itself; then the rows, in one transaction.
start
stop
echo "building a journal of $MESSAGES messages ..." >&2
started=$(date +%s.%N)
sqlite3 "$journal" >/dev/null <<EOF
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
INSERT INTO control (name, value) VALUES ('paused:bench', 1) ON CONFLICT (name) DO UPDATE SET value = 1;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $MESSAGES)
INSERT INTO messages (id, correlation_id, route, method, path, headers, body, received_at)
SELECT i, printf('01BENCH%019d', i), 'bench', 'POST', '/orders',
       '[["Host","shop.example"],["Content-Type","application/json"],["User-Agent","bench"]]',
       CAST(printf('{"order":%d,"customer":"c-%d","items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"note":"%s"}',
                   i, i % 977, substr(hex(randomblob(200)), 1, 400)) AS BLOB),
       strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', ($MESSAGES - i) * 3))
FROM n;
INSERT INTO deliveries (id, message_id, route, destination, state, attempts, cycle_attempts, delivered_at, updated_at,
                        last_error, response_status, response_headers, response_body)
SELECT id, id, 'bench', 'bench',
       CASE WHEN id > $MESSAGES * 99 / 100 THEN 'queued' WHEN id % 25 = 0 THEN 'failed' ELSE 'delivered' END,
       CASE WHEN id > $MESSAGES * 99 / 100 THEN 0 ELSE 1 END, CASE WHEN id > $MESSAGES * 99 / 100 THEN 0 ELSE 1 END,
       CASE WHEN id % 25 <> 0 AND id <= $MESSAGES * 99 / 100 THEN received_at END, received_at,
       CASE WHEN id % 25 = 0 AND id <= $MESSAGES * 99 / 100 THEN 'HTTP 503; 1 attempts made (max_attempts)' END,
       CASE WHEN id > $MESSAGES * 99 / 100 THEN NULL WHEN id % 25 = 0 THEN 503 ELSE 200 END,
       CASE WHEN id > $MESSAGES * 99 / 100 THEN NULL ELSE '[["Content-Length","2"]]' END,
       CASE WHEN id > $MESSAGES * 99 / 100 THEN NULL ELSE CAST('ok' AS BLOB) END
FROM messages;
INSERT INTO attempts (delivery_id, attempt, started_at, duration_ms, status, body_bytes, body_sha256)
SELECT id, 1, updated_at, 12, response_status, 180, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
FROM deliveries WHERE attempts = 1;
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
ANALYZE;
EOF
built=$(printf '%.1f' "$(echo "$(date +%s.%N) - $started" | bc)")
size=$(du -h "$journal" | cut -f1)

start
jar=$work/cookies
admin="http://127.0.0.1:$WAYPOST_ADMIN_PORT"
curl -s -o /dev/null -c "$jar" "$admin/"   # no token, loopback: the first page gives a session
middle=$(printf '01BENCH%019d' $((MESSAGES / 2 + 1)))
failed_id=$(printf '01BENCH%019d' $((MESSAGES / 2 / 25 * 25)))
pages=(
    "overview|/"
    "recent|/console/messages"
    "failed|/console/messages?state=failed"
    "waiting|/console/messages?state=queued"
    "failed, one route and destination, since 2h|/console/messages?state=failed&route=bench&destination=bench&since=2h"
    "recent, a page a tenth of the way down|/console/messages?cursor=$((MESSAGES * 9 / 10))"
    "one message|/console/messages/$middle"
    "one failed message|/console/messages/$failed_id"
    "bulk replay, counting failed|/console/replay?state=failed&route=bench"
    "bulk replay, counting failed since 1h|/console/replay?state=failed&since=1h"
)

printf '%-42s %8s %8s %8s %8s  %s\n' page "p50 ms" "p90 ms" "max ms" bytes status
for entry in "${pages[@]}"; do
    name=${entry%%|*}
    path=${entry#*|}
    times=()
    for run in $(seq "$REPEAT"); do
        read -r code seconds bytes < <(curl -s -o /dev/null -b "$jar" -w '%{http_code} %{time_total} %{size_download}\n' "$admin$path")
        ((run > 1)) && times+=("$seconds")
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -g)
    count=${#times[@]}
    pick() { echo "$sorted" | sed -n "$(( ($1 * count + 99) / 100 ))p"; }
    printf '%-42s %8.1f %8.1f %8.1f %8s  %s\n' "$name" "$(echo "$(pick 50) * 1000" | bc)" "$(echo "$(pick 90) * 1000" | bc)" \
        "$(echo "$(echo "$sorted" | tail -1) * 1000" | bc)" "$bytes" "$code"
done
echo
echo "journal: $MESSAGES messages ($size, built in $built s): one delivery and one attempt each, every 25th failed,"
echo "  the newest 1% queued behind the paused route; $WAYPOST_BIN, curl one request at a time, $((REPEAT - 1)) timed per page"
echo "  (the first of each not counted), on $(nproc) cores; work files in $work"
