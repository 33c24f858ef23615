#!/usr/bin/env bash
# Runs one fuzz target (or all of them, one after another) under libFuzzer with AddressSanitizer.
#
#     scripts/fuzz.sh TARGET SECONDS        # e.g. scripts/fuzz.sh intake 600
#     scripts/fuzz.sh all SECONDS           # every target, SECONDS each
#     JOBS=2 scripts/fuzz.sh all 600        # two targets at a time
#
# Targets: intake, admin, query, units, config, json, filter, signatures, transform, notifications
# (Sources/WaypostFuzzing).
# The seeds are scripts/fuzz/corpus/TARGET (kept in git, never written); what libFuzzer finds
# goes to fuzz-out/corpus/TARGET (not in git), crashes to fuzz-out/crashes/TARGET/. The last
# lines of each run (executions, coverage, crashes) are printed and kept in fuzz-out/TARGET.log.
# Reproduce a crash with: swift run waypost-fuzz TARGET fuzz-out/crashes/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."

target=${1:?usage: scripts/fuzz.sh TARGET|all SECONDS}
seconds=${2:?usage: scripts/fuzz.sh TARGET|all SECONDS}
targets=(intake admin query units config json filter signatures transform notifications)
[ "$target" = all ] || targets=("$target")

binary=.build-fuzz/release/waypost-fuzz
echo "== building waypost-fuzz with -sanitize=fuzzer,address (.build-fuzz)"
# lld: gold fails on this link (an internal error in its DWARF reader).
swift build -c release --scratch-path .build-fuzz --product waypost-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld \
    -Xcc -fsanitize=fuzzer-no-link,address 2>&1 | grep -vE "^\[|^warning: you may be able|apt-get install" || true
[ -x "$binary" ] || { echo "fuzz.sh: the build failed" >&2; exit 1; }

run_one() {
    local name=$1
    mkdir -p "fuzz-out/corpus/$name" "fuzz-out/crashes/$name"
    echo "== $name: ${seconds}s"
    # -rss_limit_mb bounds memory; -timeout marks an input that takes over 10 s as a hang (spin).
    local status=0
    WAYPOST_FUZZ_TARGET=$name ASAN_OPTIONS=detect_leaks=0:quarantine_size_mb=64 SWIFT_BACKTRACE=enable=no "$binary" \
        -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="fuzz-out/crashes/$name/" "fuzz-out/corpus/$name" "scripts/fuzz/corpus/$name" \
        > "fuzz-out/$name.log" 2>&1 || status=$?
    grep -E "^#[0-9]+.*(DONE|pulse)|stat::|ERROR|SUMMARY|Test unit written|fuzz invariant|Fatal error" "fuzz-out/$name.log" | tail -n 12 || true
    echo "== $name: exit $status, $(ls "fuzz-out/crashes/$name" | wc -l) crash file(s)"
    return $status
}

failed=0
jobs=${JOBS:-1}
if [ "$jobs" -gt 1 ]; then
    pids=()
    for name in "${targets[@]}"; do
        run_one "$name" & pids+=($!)
        while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    done
    for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
else
    for name in "${targets[@]}"; do run_one "$name" || failed=1; done
fi
exit $failed
