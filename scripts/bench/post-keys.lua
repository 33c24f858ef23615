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
-- Environment:
--   KEY_COUNT=N          number of key values (default 16)
--   WRK_STATUS_COUNTS=1  count every status code and print one line at the end,
--                        "Status counts: 202=401877 503=12" (as post-1k.lua does)

local BODY_BYTES = 1024
local prefix, suffix = '{"data":"', '"}'
local KEY_COUNT = tonumber(os.getenv("KEY_COUNT") or "16") or 16

wrk.method = "POST"
wrk.body = prefix .. string.rep("x", BODY_BYTES - #prefix - #suffix) .. suffix
wrk.headers["Content-Type"] = "application/json"
assert(#wrk.body == BODY_BYTES, "body must be exactly " .. BODY_BYTES .. " bytes")
assert(KEY_COUNT >= 1, "KEY_COUNT must be at least 1")

local threads = {}

-- Runs in the main Lua state, once per wrk thread.
function setup(thread)
    table.insert(threads, thread)
end

-- Runs in each thread's own Lua state.
function init(args)
    requests = {}
    for i = 0, KEY_COUNT - 1 do
        local headers = { ["Content-Type"] = "application/json", ["X-Key"] = "k" .. i }
        requests[i + 1] = wrk.format("POST", nil, headers, wrk.body)
    end
    next_request = 0
    counts = {}
end

function request()
    next_request = next_request % KEY_COUNT + 1
    return requests[next_request]
end

if os.getenv("WRK_STATUS_COUNTS") == "1" then
    function response(status, headers, body)
        counts[status] = (counts[status] or 0) + 1
    end

    -- Runs in the main Lua state after the run: merge the threads' counts.
    function done(summary, latency, requests)
        local total = {}
        for _, thread in ipairs(threads) do
            for status, n in pairs(thread:get("counts")) do
                total[status] = (total[status] or 0) + n
            end
        end
        local codes = {}
        for status in pairs(total) do
            table.insert(codes, status)
        end
        table.sort(codes)
        local parts = {}
        for _, status in ipairs(codes) do
            table.insert(parts, status .. "=" .. total[status])
        end
        io.write("Status counts: " .. table.concat(parts, " ") .. "\n")
    end
end
