#!/usr/bin/env bash
# Journal benchmark (issue 18): durable acknowledgements per second of the SQLite journal and of
# a PostgreSQL one, in the same run, with CLIENTS concurrent submitters of 1 KiB messages, each
# waiting for its acknowledgement (after COMMIT, fsync on both) before storing the next. No
# HTTP: it measures what each journal commits and how much group commit gathers (the mean
# batch), not Waypost's intake.
#
# Usage (from the repository root, as root: PostgreSQL runs as the postgres user):
#
#   swift build -c release --product waypost-journal-bench --scratch-path .build-release
#   scripts/bench/journal.sh
#   CLIENTS="16 64 256" SECONDS_EACH=5 scripts/bench/journal.sh
#
# It prints figures and never judges them: the exit code says only whether the benchmark
# itself could run. PostgreSQL (Debian's, the newest installed) runs on a scratch cluster on a
# free loopback port with its defaults but fsync and synchronous_commit on, and shares the
# machine's cores with the benchmark.
#
# Environment:
#   CLIENTS         concurrent submitters, one run per value (default "64 256")
#   SECONDS_EACH    measured seconds per run (default 10)
#   BENCH_BIN       default .build-release/release/waypost-journal-bench, else .build/release/…
#   OUT_DIR         scratch files (default <repo>/bench-out)

set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${CLIENTS:-"64 256"}
SECONDS_EACH=${SECONDS_EACH:-10}
OUT_DIR=${OUT_DIR:-$PWD/bench-out}
for clients in $CLIENTS; do
    [[ $clients =~ ^[0-9]+$ && $clients -ge 1 && $clients -le 4096 ]] || { echo "CLIENTS must be whole numbers from 1 to 4096" >&2; exit 2; }
done
[[ $SECONDS_EACH =~ ^[0-9]+$ && $SECONDS_EACH -ge 1 && $SECONDS_EACH -le 600 ]] || { echo "SECONDS_EACH must be 1 to 600" >&2; exit 2; }
if [[ -z ${BENCH_BIN:-} ]]; then
    for candidate in .build-release/release/waypost-journal-bench .build/release/waypost-journal-bench; do
        [[ -x $candidate ]] && BENCH_BIN=$candidate && break
    done
fi
[[ -x ${BENCH_BIN:-} ]] || { echo "no release build: swift build -c release --product waypost-journal-bench, or set BENCH_BIN" >&2; exit 2; }
# shellcheck source=SCRIPTDIR/scratch-postgres.sh
source scripts/bench/scratch-postgres.sh
scratch_postgres_check

work=$OUT_DIR/journal-$(date +%Y%m%d-%H%M%S)
mkdir -p "$work"
# At the end: PostgreSQL stopped, and its data and the SQLite journal (a GiB or more) removed.
trap 'stop_scratch_postgres; rm -rf "$work"/sqlite.db*' EXIT
start_scratch_postgres "$work"
psql -d postgres -c "CREATE ROLE bench LOGIN"

echo "journal benchmark: $BENCH_BIN, 1 KiB messages, ${SECONDS_EACH}s per run, PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT, $(nproc) cores"
for clients in $CLIENTS; do
    rm -f "$work"/sqlite.db*
    "$BENCH_BIN" sqlite "$work/sqlite.db" "$clients" "$SECONDS_EACH"
    psql -d postgres -c "DROP DATABASE IF EXISTS bench" -c "CREATE DATABASE bench OWNER bench"
    "$BENCH_BIN" postgres "postgres://bench@127.0.0.1:$PG_PORT/bench?sslmode=disable" "$clients" "$SECONDS_EACH"
done
echo "batch: messages per commit (group commit); logs in $work"
