-- bench/post.lua: wrk script, POST of an OpenAI chat request.
--
-- Environment:
--   BENCH_MODEL   model name to send (an alias for the gateway)
--   BENCH_STREAM  "1": a streaming request that asks for usage
--   BENCH_STREAM_USAGE  "0": ... that does not ask for it
--   BENCH_HIST    if set, done() writes the latency histogram there, one
--                 "<microseconds> <count>" line per value, so that bench/run.sh
--                 can merge several short runs into exact percentiles
-- done() prints one machine-readable "@@BENCH" line that bench/run.sh reads;
-- wrk's own --latency report is printed as well.

local model  = os.getenv("BENCH_MODEL") or "mock-model"
local stream = os.getenv("BENCH_STREAM") == "1"
local hist   = os.getenv("BENCH_HIST")

local body = '{"model":"' .. model .. '","messages":[{"role":"system",'
    .. '"content":"You are a terse assistant."},{"role":"user","content":'
    .. '"Say hello to the benchmark in five words."}],"max_tokens":32,'
    .. '"temperature":0.7'
-- BENCH_STREAM_USAGE=0: the client does not ask for usage (the SDKs'
-- default): the gateway asks for it upstream and takes the extra chunk out
if stream and os.getenv("BENCH_STREAM_USAGE") == "0" then
    body = body .. ',"stream":true'
elseif stream then
    body = body .. ',"stream":true,"stream_options":{"include_usage":true}'
end
body = body .. '}'

wrk.method = "POST"
wrk.body   = body
wrk.headers["Content-Type"]  = "application/json"
wrk.headers["Authorization"] = "Bearer bench-client-key"

function done(summary, latency, requests)
    if hist and hist ~= "" then
        local f = assert(io.open(hist, "w"))
        for i = 1, #latency do
            local value, count = latency(i)
            f:write(string.format("%d %d\n", value, count))
        end
        f:close()
    end
    local e = summary.errors
    io.write(string.format(
        "@@BENCH requests=%d duration_us=%d bytes=%d p50=%d p90=%d p99=%d "
        .. "mean=%.1f max=%d err_connect=%d err_read=%d err_write=%d "
        .. "err_status=%d err_timeout=%d\n",
        summary.requests, summary.duration, summary.bytes,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.mean, latency.max, e.connect, e.read, e.write, e.status,
        e.timeout))
end
