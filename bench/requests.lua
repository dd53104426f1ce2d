-- wrk script of scripts/bench.sh: replays the requests of the file named by BENCH_REQUESTS
-- (lines METHOD \t PATH \t TOKEN \t BODY, written by bench/requests.py) round robin. Thread
-- i of n takes lines i, i+n, i+2n, ... so threads never share a line (the seat cycle relies
-- on that: a pair's assignment and removal stay with one thread, in order).
local nthreads = 0
local threads = {}

function setup(thread)
    thread:set("tid", nthreads)
    nthreads = nthreads + 1
    threads[#threads + 1] = thread
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
            local m, p, t, b = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t?(.*)$")
            local h = { ["Authorization"] = "Bearer " .. t }
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
    statuses = {}
end

function request()
    idx = idx % #reqs + 1
    if idx == 1 and tid == 0 and wrapped then
        idx = 2 -- the throw-away only once
    end
    wrapped = true
    return reqs[idx]
end

function response_unused(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
end

-- Prints "status N: count" per answer status (bench.sh shows the non-2xx ones).
function done(summary, latency, requests)
    local all = {}
    for _, t in ipairs(threads) do
        for s, n in pairs(t:get("statuses")) do
            all[s] = (all[s] or 0) + n
        end
    end
    for s, n in pairs(all) do
        io.write(string.format("status %d: %d\n", s, n))
    end
end
