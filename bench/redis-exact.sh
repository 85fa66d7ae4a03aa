#!/usr/bin/env bash
# bench/redis-exact.sh: what conductor_redis sync=0 adds to a request's
# latency (see "sync=0" in bench/README.md).  One nginx, one worker, an
# embedded mock provider (conductor_mock) in the same nginx, one local
# redis-server; N sequential JSON requests on one kept-alive connection
# per mode: no Redis, sync=100ms, sync=0.  p50 / p99 of each, in µs.
# Everything listens on 127.0.0.1 only and is stopped by its PID.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

NGINX=${NGINX:-nginx}
MODULE=${MODULE:-$REPO/build/ngx_http_conductor_module.so}
RUN=${BENCH_RUN:-$REPO/build/bench-redis}
PORT=${BENCH_REDIS_PORT:-18490}
RPORT=${BENCH_REDIS_RPORT:-18491}
N=${N:-3000}

[ -f "$MODULE" ] || { echo "bench/redis-exact.sh: no $MODULE (make build)" >&2; exit 1; }

pid=
rpid=
cleanup() {
    [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null || true
    [ -n "$rpid" ] && kill "$rpid" 2>/dev/null || true
}
trap cleanup EXIT

rm -rf "$RUN"
mkdir -p "$RUN/logs" "$RUN/conf" "$RUN/redis"

redis-server --bind 127.0.0.1 --port "$RPORT" --save '' --appendonly no \
    --dir "$RUN/redis" --daemonize no --logfile "$RUN/redis/log" &
rpid=$!
sleep 0.3

conf() {
    local redis=$1
    {
        echo "load_module $MODULE;"
        [ "$(id -u)" = 0 ] && echo "user root root;"
        echo "worker_processes 1; daemon on; master_process on;"
        echo "error_log logs/error.log warn; pid logs/nginx.pid;"
        echo "events { worker_connections 256; }"
        echo "http {"
        echo "  access_log off;"
        echo "  conductor_zone conductor:4m;"
        echo "  conductor_provider p { url http://127.0.0.1:$((PORT + 2))/v1;"
        echo "    key k s rpm=1000000 tpm=1000000000 max_inflight=1000; }"
        echo "  conductor_model m { p pm; }"
        echo "  conductor_client c { key sk-c; limit rpm=1000000 max_inflight=1000; }"
        [ -n "$redis" ] && echo "  conductor_redis redis://127.0.0.1:$RPORT $redis prefix=bench:;"
        echo "  upstream conductor_backend { conductor_balancer keepalive=8; }"
        echo "  server { listen 127.0.0.1:$PORT;"
        echo "    location /v1/ { conductor_auth on; conductor_route;"
        echo "      include $REPO/conf/conductor_proxy.conf; } }"
        echo "  server { listen 127.0.0.1:$((PORT + 2)); conductor_auth off;"
        echo "    location / { conductor_mock; } }"
        echo "}"
    } > "$RUN/conf/nginx.conf"
}

measure() {
    python3 - "$PORT" "$N" <<'PY'
import http.client, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
c = http.client.HTTPConnection('127.0.0.1', port)
body = '{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}'
h = {'Content-Type': 'application/json', 'Authorization': 'Bearer sk-c'}
t = []
for i in range(n + 200):
    s = time.perf_counter()
    c.request('POST', '/v1/chat/completions', body, h)
    r = c.getresponse(); r.read()
    if r.status != 200: sys.exit('status %d' % r.status)
    if i >= 200: t.append(time.perf_counter() - s)
t.sort()
print('%d %d' % (t[len(t) // 2] * 1e6, t[int(len(t) * 0.99)] * 1e6))
PY
}

# Redis's own time for the scripts, from INFO commandstats (microseconds
# spent in EVALSHA, calls): what a request costs the Redis server, apart
# from the round trip and the machine's scheduling
script_time() {
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' \
        | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2/p'
}

for mode in "" "sync=100ms" "sync=0"; do
    conf "$mode"
    "$NGINX" -p "$RUN/" -c conf/nginx.conf
    pid=$(cat "$RUN/logs/nginx.pid")
    sleep 1.2
    redis-cli -p "$RPORT" config resetstat >/dev/null
    read -r p50 p99 < <(measure)
    printf '%-12s p50 %6d us   p99 %6d us' "${mode:-no redis}" "$p50" "$p99"
    read -r calls usec < <(script_time; echo "0 0")
    if [ "$mode" = "sync=0" ] && [ "${calls:-0}" -gt 0 ]; then
        awk -v c="$calls" -v u="$usec" -v n="$((N + 200))" 'BEGIN {
            printf "   Redis: %d script calls, %.1f us each, %.1f us a request",
                   c, u / c, u / n }'
    fi
    echo
    kill -QUIT "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    pid=
done
