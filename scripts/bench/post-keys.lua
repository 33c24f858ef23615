-- wrk script for scripts/bench/delivery.sh: the same request as post-1k.lua (a POST
-- of a 1024-byte JSON body, {"data":"xxxx...x"}, Content-Type application/json), plus
-- an X-Key header that takes one of 16 values, k0 ... k15, round-robin.
--
-- A route with "ordering: key" and "ordering_key: header:X-Key" then has 16 ordered
-- queues that it delivers in parallel; routes with "ordering: fifo" or "none" ignore
-- the header, so delivery.sh uses this script for every scenario and the load is the
-- same bytes everywhere.
--
-- Each wrk thread cycles through the 16 values on its own (request() runs in the
-- thread's Lua state), so over a run every key gets 1/16 of the requests.
-- The 16 requests are formatted once in init(); request() only picks the next one.
--
-- The request and the status counts are post-1k.lua's: this script runs it first
-- (from its own directory) and adds the X-Key rotation.
--
-- Environment:
--   KEY_COUNT=N          number of key values (default 16)
--   WRK_STATUS_COUNTS=1  count every status code and print one line at the end,
--                        "Status counts: 202=401877 503=12" (as post-1k.lua does)

-- wrk loads the script with luaL_dofile, so the source is "@" followed by the path given to -s.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or ""
dofile(dir .. "post-1k.lua") -- wrk.method, wrk.body, wrk.headers; setup/init/response/done with WRK_STATUS_COUNTS=1

local KEY_COUNT = tonumber(os.getenv("KEY_COUNT") or "16") or 16
assert(KEY_COUNT >= 1, "KEY_COUNT must be at least 1")

local base_init = init -- post-1k.lua's, or nil

-- Runs in each thread's own Lua state.
function init(args)
    if base_init then
        base_init(args)
    end
    requests = {}
    for i = 0, KEY_COUNT - 1 do
        local headers = { ["Content-Type"] = "application/json", ["X-Key"] = "k" .. i }
        requests[i + 1] = wrk.format("POST", nil, headers, wrk.body)
    end
    next_request = 0
end

function request()
    next_request = next_request % KEY_COUNT + 1
    return requests[next_request]
end
