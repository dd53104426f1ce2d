-- wrk script of scripts/bench.sh: replays the requests of the file named by BENCH_REQUESTS
-- (lines METHOD \t PATH \t TOKEN \t BODY, written by bench/requests.py) round robin. Thread
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
    reqs = {}
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
    bad = 0
end

function request()
    idx = idx % #reqs + 1
    return reqs[idx]
end
