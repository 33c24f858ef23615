-- wrk script for scripts/bench/intake.sh: every request is a POST of a
-- 1024-byte JSON body, {"data":"xxxx...x"}, with Content-Type application/json.
-- post-keys.lua (delivery.sh) runs this script first and adds an X-Key header.
--
-- wrk already reports "Non-2xx or 3xx responses" (it counts status >= 400).
-- With WRK_STATUS_COUNTS=1 in the environment the script also counts every
-- status code and prints one line at the end:
--
--   Status counts: 202=401877 503=12
--
-- It is off by default: a Lua response() callback makes wrk parse every
-- response into Lua, which costs wrk some throughput on a 2-core machine.

local BODY_BYTES = 1024
local prefix, suffix = '{"data":"', '"}'

wrk.method = "POST"
wrk.body = prefix .. string.rep("x", BODY_BYTES - #prefix - #suffix) .. suffix
wrk.headers["Content-Type"] = "application/json"
assert(#wrk.body == BODY_BYTES, "body must be exactly " .. BODY_BYTES .. " bytes")

if os.getenv("WRK_STATUS_COUNTS") == "1" then
    local threads = {}

    -- Runs in the main Lua state, once per wrk thread.
    function setup(thread)
        table.insert(threads, thread)
    end

    -- Runs in each thread's own Lua state.
    function init(args)
        counts = {}
    end

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
