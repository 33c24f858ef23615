-- wrk script for scripts/bench/verify.sh: the same request as post-1k.lua (a POST of a
-- 1024-byte JSON body, {"data":"xxxx...x"}, Content-Type application/json), plus a
-- GitHub signature header that is valid for that body:
--
--   X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>
--
-- The body never changes, so neither does the signature: verify.sh computes it once in
-- the shell (openssl dgst -sha256 -hmac SECRET over the same bytes) and passes the hex
-- digest in BENCH_GITHUB_SIGNATURE. Lua only adds the header; wrk builds the request
-- once per connection as usual.
--
-- The request and the status counts are post-1k.lua's: this script runs it first (from
-- its own directory), as post-keys.lua does.
--
-- Environment:
--   BENCH_GITHUB_SIGNATURE  64 hex digits (required)
--   WRK_STATUS_COUNTS=1     count every status code and print one line at the end,
--                           "Status counts: 202=401877 401=0" (as post-1k.lua does)

-- wrk loads the script with luaL_dofile, so the source is "@" followed by the path given to -s.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
dofile(dir .. "post-1k.lua") -- wrk.method, wrk.body, wrk.headers; setup/init/response/done with WRK_STATUS_COUNTS=1

local signature = os.getenv("BENCH_GITHUB_SIGNATURE") or ""
assert(signature:match("^%x+$") and #signature == 64,
    "BENCH_GITHUB_SIGNATURE must hold the 64 hex digits of the body's HMAC-SHA256")

wrk.headers["X-Hub-Signature-256"] = "sha256=" .. signature
