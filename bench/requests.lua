-- wrk script of scripts/bench.sh: replays the requests of the file named by BENCH_REQUESTS
-- (lines METHOD \t PATH \t TOKEN \t BODY [\t IF_NONE_MATCH], written by bench/requests.py) round robin. Thread
-- i of n takes lines i, i+n, i+2n, ... so threads never share a line (the seat cycle relies
-- on that: a pair's assignment and removal stay with one thread, in order).
local nthreads = 0

function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
end

function init(args)
    local file = os.getenv("BENCH_REQUESTS")
    local n = tonumber(os.getenv("BENCH_THREADS") or "2")
    -- wrk 4.1 calls thread 0's request() once more to count pipelined requests
    -- (script_verify_request) and never sends that one: give it a throw-away request so that
    -- no line of the file is lost (a lost assignment would turn its removal into a 404).
    reqs = {}
    if tid == 0 then
        reqs[1] = wrk.format("GET", "/healthz")
    end
    local i = 0
    for line in io.lines(file) do
        if i % n == tid then
            -- METHOD, PATH, TOKEN, BODY (may be empty) and, optionally, an If-None-Match value
            local f = {}
            for v in (line .. "\t"):gmatch("([^\t]*)\t") do
                f[#f + 1] = v
            end
            local m, p, t, b, inm = f[1], f[2], f[3], f[4], f[5]
            local h = { ["Authorization"] = "Bearer " .. t }
            if inm ~= nil and inm ~= "" then
                h["If-None-Match"] = inm
            end
            if b ~= nil and b ~= "" then
                h["Content-Type"] = "application/json"
            else
                b = nil
            end
            reqs[#reqs + 1] = wrk.format(m, p, h, b)
        end
        i = i + 1
    end
    idx = 0
    wrapped = false
end

function request()
    idx = idx % #reqs + 1
    if idx == 1 and tid == 0 and wrapped then
        idx = 2 -- the throw-away only once
    end
    wrapped = true
    return reqs[idx]
end

-- No response() callback: wrk then hands no headers or bodies to Lua (client CPU spent on
-- copying 9 KB lists); it counts the answers that are not 2xx or 3xx itself ("Non-2xx").
