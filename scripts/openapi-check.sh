#!/usr/bin/env bash
# Checks docs/openapi.yaml against a running server with schemathesis (SPEC §14: every answer of
# the status and admin APIs conforms to the document).
#
#     scripts/openapi-check.sh
#
# Starts `waypost serve` on free loopback ports with a fresh journal and an upstream that refuses
# connections (127.0.0.1:9, so messages stay queued), posts a few messages, then runs schemathesis
# twice with every check: the status API against the intake listener, the admin API (with the
# bearer token) against the admin listener. Exits non-zero when either run fails.
#
# Environment:
#   WAYPOST_BIN               the waypost binary (default .build/debug/waypost)
#   OPENAPI_CHECK_REQUIRED    when set, a missing schemathesis is an error instead of a skip
#   OPENAPI_CHECK_EXAMPLES    test cases per operation and phase (default 50)
#   OPENAPI_CHECK_SEED        a schemathesis seed, to repeat a run (default: a new one, printed)
#   OPENAPI_CHECK_JOURNAL     the journal to serve on, a file or a postgres:// URL of an empty
#                             database (default: a fresh file in the scratch directory)
#
# Needs python3 and schemathesis 4 (`pip install schemathesis`, which installs `st`).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

bin=${WAYPOST_BIN:-.build/debug/waypost}
schema=$root/docs/openapi.yaml
examples=${OPENAPI_CHECK_EXAMPLES:-50}
token=test-token
# The message the document's examples name (`MessageId`): posted with this X-Correlation-ID and
# skipped, so that the status API's example requests find it final and never wait.
example_id=01KBA0Z3M6Q7V8W9X0Y1Z2A3B4

st=$(command -v st || command -v schemathesis || true)
if [ -z "$st" ]; then
    if [ -n "${OPENAPI_CHECK_REQUIRED:-}" ]; then
        echo "openapi-check: schemathesis is not installed (pip install schemathesis) and OPENAPI_CHECK_REQUIRED is set" >&2
        exit 1
    fi
    echo "openapi-check: SKIPPED: schemathesis is not installed (pip install schemathesis); set OPENAPI_CHECK_REQUIRED to make this an error"
    exit 0
fi
case $bin in /*) ;; *) bin=$root/$bin ;; esac
if [ ! -x "$bin" ]; then
    echo "openapi-check: no waypost binary at $bin (build it, or set WAYPOST_BIN)" >&2
    exit 1
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/openapi-check.XXXXXX")
server=
cleanup() {
    if [ -n "$server" ] && kill -0 "$server" 2>/dev/null; then
        kill -TERM "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

WAYPOST_ADMIN_TOKEN=$token "$bin" serve --upstream http://127.0.0.1:9/ --listen 127.0.0.1:0 \
    --admin-listen 127.0.0.1:0 --journal "${OPENAPI_CHECK_JOURNAL:-$work/journal.db}" >"$work/stdout" 2>"$work/stderr" &
server=$!

# `listening intake=HOST:PORT admin=HOST:PORT` on stdout once both listeners are bound.
intake=
admin=
for _ in $(seq 1 300); do
    line=$(grep -m1 '^listening ' "$work/stdout" || true)
    if [ -n "$line" ]; then
        for word in $line; do
            case $word in
                intake=*) intake=${word#intake=} ;;
                admin=*) admin=${word#admin=} ;;
            esac
        done
        break
    fi
    if ! kill -0 "$server" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$intake" ] || [ -z "$admin" ]; then
    echo "openapi-check: the server did not start; its output:" >&2
    cat "$work/stdout" "$work/stderr" >&2
    exit 1
fi
echo "openapi-check: waypost serving intake=$intake admin=$admin"

# A few messages, so that lists are not empty; the example message, skipped.
python3 - "$intake" "$admin" "$token" "$example_id" <<'PY'
import sys, urllib.request
intake, admin, token, example_id = sys.argv[1:]
def send(url, body=None, headers={}):
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
for path in ("/any", "/hooks/a", "/hooks/b"):
    send(f"http://{intake}{path}", b"{}", {"Content-Type": "application/json"})
send(f"http://{intake}/hooks/example", b"{}", {"Content-Type": "application/json", "X-Correlation-ID": example_id})
send(f"http://{admin}/messages/{example_id}/skip", headers={"Authorization": f"Bearer {token}"})
PY

common=(--checks all --max-examples "$examples" --generation-database none --no-color)
if [ -n "${OPENAPI_CHECK_SEED:-}" ]; then common+=(--seed "$OPENAPI_CHECK_SEED"); fi

# Hypothesis and schemathesis keep caches in the working directory: keep them out of the tree.
cd "$work"
status=0
echo "openapi-check: status API (intake listener)"
(set -x; "$st" run "$schema" --url "http://$intake" --include-path-regex '^/_waypost/' "${common[@]}") || status=1
echo "openapi-check: admin API (admin listener)"
# GET /openapi.json is left out while the binary does not serve it (404).
exclude=(--exclude-path-regex '^/_waypost/')
served=$(python3 -c 'import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(sys.argv[1], timeout=10).status)
except urllib.error.HTTPError as error:
    print(error.code)' "http://$admin/openapi.json")
if [ "$served" = 404 ]; then
    echo "openapi-check: GET /openapi.json is not served by this binary (404): left out"
    exclude+=(--exclude-path /openapi.json)
fi
(set -x; "$st" run "$schema" --url "http://$admin" "${exclude[@]}" -H "Authorization: Bearer $token" "${common[@]}") || status=1

if ! kill -0 "$server" 2>/dev/null; then
    echo "openapi-check: the server died during the run; its log:" >&2
    cat "$work/stderr" >&2
    status=1
fi
if [ "$status" -ne 0 ]; then
    echo "openapi-check: FAILED" >&2
else
    echo "openapi-check: passed"
fi
exit "$status"
