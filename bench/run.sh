#!/usr/bin/env bash
# bench/run.sh: plain nginx proxy_pass against the conductor gateway, side by
# side, same mock upstream, same machine, same run. See bench/README.md.
#
# Everything listens on 127.0.0.1 only. Servers are started here and stopped
# by their PID on exit (trap).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

usage() {
    cat <<'EOF'
usage: bench/run.sh [--quick] [--no-module] [--strict] [--instructions]

  --quick       1 round of 3 x 1 s slices per run (checks the script; figures are noise)
  --no-module   run a second plain nginx where the gateway would be (tests the
                script before the module builds; the ratio is then ~1.0)
  --strict      exit 1 when a target is missed (default: only on errors)
  --instructions  instead of the wrk runs, count instructions per streamed byte
                and per request with callgrind (bench/callgrind.sh; --quick,
                --no-module and --strict are passed on; see its --help)

Environment (defaults in brackets):
  ROUNDS [3]  DURATION [10] (s per front per round)  LAT_DURATION [10] (s, 1 conn)
  SLICES [5] (each run is cut into SLICES alternating wrk runs)
  LAT_PIN [1] (latency runs: wrk and every nginx process on CPU LAT_CPUS [0])
  THREADS [2]  CONNECTIONS [32]  SSE_CONNECTIONS [8]  SSE_CHUNKS [2000]
  FRONT_WORKERS [1] (plain and gateway)  MOCK_WORKERS [1]  KEEPALIVE [64] (0: off)
  BENCH_PORT [18400] (mock; plain +1, gateway +2)
  MODULE [build/ngx_http_conductor_module.so]  PROXY_CONF [conf/conductor_proxy.conf]
  NGINX [nginx]  WRK [wrk]  BENCH_RUN [build/bench] (configs, logs, wrk output)
EOF
}

NO_MODULE=${BENCH_NO_MODULE:-0}
STRICT=${BENCH_STRICT:-0}
QUICK=0
INSTRUCTIONS=0
for arg in "$@"; do
    case "$arg" in
        --quick)     QUICK=1 ;;
        --no-module) NO_MODULE=1 ;;
        --strict)    STRICT=1 ;;
        --instructions) INSTRUCTIONS=1 ;;
        -h|--help)   usage; exit 0 ;;
        *)           echo "bench: unknown argument: $arg" >&2; usage >&2; exit 1 ;;
    esac
done
if [ "$INSTRUCTIONS" = 1 ]; then
    # callgrind instead of wrk: its own ports (CG_PORT) and run directory
    exec "$BENCH_DIR/callgrind.sh" "$@"
fi

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
LAT_DURATION=${LAT_DURATION:-10}
SLICES=${SLICES:-5}
LAT_PIN=${LAT_PIN:-1}
if [ "$QUICK" = 1 ]; then
    ROUNDS=1; DURATION=3; LAT_DURATION=3; SLICES=3
fi
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
SSE_CONNECTIONS=${SSE_CONNECTIONS:-8}
SSE_CHUNKS=${SSE_CHUNKS:-2000}
FRONT_WORKERS=${FRONT_WORKERS:-1}
MOCK_WORKERS=${MOCK_WORKERS:-1}
KEEPALIVE=${KEEPALIVE:-64}
BENCH_PORT=${BENCH_PORT:-18400}
MODULE=${MODULE:-$REPO/build/ngx_http_conductor_module.so}
PROXY_CONF=${PROXY_CONF:-$REPO/conf/conductor_proxy.conf}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
RUN=${BENCH_RUN:-$REPO/build/bench}

MOCK_PORT=$BENCH_PORT
PLAIN_PORT=$((BENCH_PORT + 1))
GW_PORT=$((BENCH_PORT + 2))

TARGET_RATIO=0.90        # gateway / plain throughput, at least
TARGET_P50_US=30         # added p50 latency, under
TARGET_P99_US=150        # added p99 latency, under
TARGET_SSE_PCT=5         # streaming throughput cost, under

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------- preconditions

command -v "$NGINX" >/dev/null 2>&1 || die "nginx not found (NGINX=$NGINX)"
command -v "$WRK"   >/dev/null 2>&1 || die "wrk not found (WRK=$WRK; apt-get install wrk)"
command -v curl     >/dev/null 2>&1 || die "curl not found"

if [ "$NO_MODULE" != 1 ]; then
    [ -f "$MODULE" ] || die "$MODULE is missing: build the module first (make),
       or run 'bench/run.sh --no-module' to test this script with a plain nginx
       in place of the gateway."
    [ -f "$PROXY_CONF" ] || die "$PROXY_CONF is missing (the gateway's proxy snippet)"
fi

for n in "$SLICES" "$LAT_PIN" "$ROUNDS" "$DURATION" "$LAT_DURATION" "$THREADS" "$CONNECTIONS" \
         "$SSE_CONNECTIONS" "$SSE_CHUNKS" "$FRONT_WORKERS" "$MOCK_WORKERS" \
         "$KEEPALIVE" "$BENCH_PORT"; do
    case "$n" in ''|*[!0-9]*) die "not a number: '$n'" ;; esac
done
[ "$ROUNDS" -ge 1 ] || die "ROUNDS must be at least 1"
[ "$SLICES" -ge 1 ] || die "SLICES must be at least 1"

port_busy() {
    # a successful connect means something already listens there
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for p in "$MOCK_PORT" "$PLAIN_PORT" "$GW_PORT"; do
    if port_busy "$p"; then
        die "127.0.0.1:$p is already in use (set BENCH_PORT to another base port)"
    fi
done

# ---------------------------------------------------------------- run directory

case "$RUN" in /*) ;; *) RUN="$PWD/$RUN" ;; esac
rm -rf "$RUN"
mkdir -p "$RUN/conf" "$RUN/logs" "$RUN/tmp" "$RUN/html" "$RUN/wrk"

USER_LINE=""
if [ "$(id -u)" = 0 ]; then
    USER_LINE="user root;"      # workers read files of this run directory
fi
KEEPALIVE_LINE=""
if [ "$KEEPALIVE" -gt 0 ]; then
    KEEPALIVE_LINE="keepalive $KEEPALIVE;"
fi

# The SSE stream: SSE_CHUNKS content chunks, a finish chunk, a usage-only
# chunk (what OpenAI sends with stream_options.include_usage), [DONE].
awk -v n="$SSE_CHUNKS" 'BEGIN {
    p = "data: {\"id\":\"chatcmpl-bench\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"mock-model\",\"system_fingerprint\":null,";
    printf "%s\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n", p;
    for (i = 1; i <= n; i++)
        printf "%s\"choices\":[{\"index\":0,\"delta\":{\"content\":\" token%d\"},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n", p, i;
    printf "%s\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"length\"}],\"usage\":null}\n\n", p;
    printf "%s\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", p, n, n + 12;
    printf "data: [DONE]\n\n";
}' > "$RUN/html/__stream.sse"
SSE_BYTES=$(wc -c < "$RUN/html/__stream.sse")

render() {   # render TEMPLATE OUT NAME PORT
    sed -e "s|@RUN@|$RUN|g" \
        -e "s|@USER@|$USER_LINE|g" \
        -e "s|@MOCK_WORKERS@|$MOCK_WORKERS|g" \
        -e "s|@FRONT_WORKERS@|$FRONT_WORKERS|g" \
        -e "s|@MOCK_PORT@|$MOCK_PORT|g" \
        -e "s|@SSE_CHUNKS@|$SSE_CHUNKS|g" \
        -e "s|@KEEPALIVE@|$KEEPALIVE_LINE|g" \
        -e "s|@KEEPALIVE_N@|$KEEPALIVE|g" \
        -e "s|@MODULE@|$MODULE|g" \
        -e "s|@PROXY_CONF@|$PROXY_CONF|g" \
        -e "s|@NAME@|$3|g" \
        -e "s|@PORT@|$4|g" \
        "$BENCH_DIR/$1" > "$RUN/conf/$2"
}

render upstream.conf upstream.conf upstream "$MOCK_PORT"
render plain.conf    plain.conf    plain    "$PLAIN_PORT"
if [ "$NO_MODULE" = 1 ]; then
    render plain.conf   gateway.conf gateway "$GW_PORT"
    GW_LABEL="gateway (--no-module: plain nginx stand-in)"
    GW_JSON_MODEL=mock-model;  GW_JSON_PATH=/v1/chat/completions
    GW_SSE_MODEL=mock-model;   GW_SSE_PATH=/sse/v1/chat/completions
else
    render gateway.conf gateway.conf gateway "$GW_PORT"
    GW_LABEL="gateway ($MODULE)"
    GW_JSON_MODEL=bench-json;  GW_JSON_PATH=/v1/chat/completions
    GW_SSE_MODEL=bench-sse;    GW_SSE_PATH=/v1/chat/completions
fi
PLAIN_JSON_PATH=/v1/chat/completions
PLAIN_SSE_PATH=/sse/v1/chat/completions

for c in upstream plain gateway; do
    if ! "$NGINX" -t -q -p "$RUN" -e "$RUN/logs/$c.startup.log" \
            -c "$RUN/conf/$c.conf" > "$RUN/logs/$c.t.log" 2>&1; then
        cat "$RUN/logs/$c.t.log" >&2
        die "nginx -t failed for $RUN/conf/$c.conf"
    fi
done

# ---------------------------------------------------------------- servers

PIDS=()
NAMES=()
# shellcheck disable=SC2317  # called through the trap
cleanup() {
    local i pid
    for i in "${!PIDS[@]}"; do
        pid=${PIDS[$i]}
        kill -QUIT "$pid" 2>/dev/null || true
    done
    for i in "${!PIDS[@]}"; do
        pid=${PIDS[$i]}
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            note "${NAMES[$i]} (pid $pid) ignored QUIT, sending TERM"
            kill -TERM "$pid" 2>/dev/null || true
            sleep 1
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_server() {   # start_server NAME PORT
    local name=$1 port=$2 pid
    "$NGINX" -p "$RUN" -e "$RUN/logs/$name.startup.log" -c "$RUN/conf/$name.conf" \
        > "$RUN/logs/$name.stdout.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    NAMES+=("$name")
    for _ in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$RUN/logs/$name.startup.log" "$RUN/logs/$name.error.log" \
                "$RUN/logs/$name.stdout.log" 2>/dev/null | tail -20 >&2
            die "$name nginx exited at start"
        fi
        port_busy "$port" && return 0
        sleep 0.05
    done
    die "$name nginx does not listen on 127.0.0.1:$port"
}

start_server upstream "$MOCK_PORT"
start_server plain    "$PLAIN_PORT"
start_server gateway  "$GW_PORT"

# ---------------------------------------------------------------- preflight

post() {   # post PORT PATH MODEL STREAM OUTFILE -> prints the HTTP status
    local body
    body="{\"model\":\"$3\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":8"
    if [ "$4" = 1 ] && [ "${BENCH_STREAM_USAGE:-1}" = 0 ]; then
        body="$body,\"stream\":true"
    elif [ "$4" = 1 ]; then
        body="$body,\"stream\":true,\"stream_options\":{\"include_usage\":true}"
    fi
    body="$body}"
    curl -sS -o "$5" -D "$5.headers" -w '%{http_code}' --max-time 10 \
        -H 'Content-Type: application/json' -H 'Authorization: Bearer bench-client-key' \
        --data-binary "$body" "http://127.0.0.1:$1$2" || true
}

check() {   # check LABEL PORT PATH MODEL STREAM
    local out="$RUN/wrk/preflight-$1" status
    status=$(post "$2" "$3" "$4" "$5" "$out")
    if [ "$status" != 200 ]; then
        head -c 600 "$out" >&2 2>/dev/null || true
        echo >&2
        tail -5 "$RUN/logs/gateway.error.log" >&2 2>/dev/null || true
        die "preflight $1: HTTP $status from 127.0.0.1:$2$3 (model $4)"
    fi
    if [ "$5" = 1 ] && [ "${BENCH_STREAM_USAGE:-1}" = 0 ] && [ "$1" = gateway-sse ]; then
        # the client did not ask: the gateway took the usage chunk out
        grep -q '"completion_tokens":' "$out" \
            && die "preflight $1: the usage chunk reached a client that did not ask"
        grep -q '^data: \[DONE\]' "$out" || die "preflight $1: the stream has no [DONE]"
    elif [ "$5" = 1 ]; then
        grep -q '"completion_tokens":'"$SSE_CHUNKS" "$out" \
            || die "preflight $1: the stream carries no usage chunk"
        grep -q '^data: \[DONE\]' "$out" || die "preflight $1: the stream has no [DONE]"
    else
        grep -q '"total_tokens":17' "$out" || die "preflight $1: no usage in the JSON answer"
    fi
}

check plain-json   "$PLAIN_PORT" "$PLAIN_JSON_PATH" mock-model     0
check gateway-json "$GW_PORT"    "$GW_JSON_PATH"    "$GW_JSON_MODEL" 0
check plain-sse    "$PLAIN_PORT" "$PLAIN_SSE_PATH"  mock-model     1
check gateway-sse  "$GW_PORT"    "$GW_SSE_PATH"     "$GW_SSE_MODEL"  1

PLAIN_SSE_SIZE=$(wc -c < "$RUN/wrk/preflight-plain-sse")
GW_SSE_SIZE=$(wc -c < "$RUN/wrk/preflight-gateway-sse")

# ---------------------------------------------------------------- wrk runs
#
# The machine is noisy: each front's share of a round is cut into SLICES short
# wrk runs, and plain and gateway slices alternate (ABBA order), so that both
# see the same noise. Throughput adds the slices' requests and bytes up;
# latency merges the slices' histograms (exact percentiles, see post.lua).

ERRORS=0
declare -A SUM          # KIND.WHO.{req,bytes,dur}.ROUND

# run_wrk NAME PORT PATH MODEL STREAM THREADS CONNS SECONDS HISTFILE [CPU]
# sets R_REQ R_BYTES R_DUR R_RPS R_P50 R_P99 R_ERR
run_wrk() {
    local name=$1 out="$RUN/wrk/$1.txt" line pin=()
    [ -n "${10:-}" ] && pin=(taskset -c "${10}")
    BENCH_MODEL=$4 BENCH_STREAM=$5 BENCH_HIST=$9 "${pin[@]}" "$WRK" -t"$6" -c"$7" \
        -d"$8s" --latency -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$2$3" > "$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed ($name)"; }
    line=$(grep '^@@BENCH ' "$out" | tail -1) \
        || { cat "$out" >&2; die "wrk printed no result line ($name)"; }
    eval "$(echo "$line" | awk '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        d = v["duration_us"] > 0 ? v["duration_us"] : 1
        printf "R_REQ=%d R_BYTES=%d R_DUR=%d R_RPS=%.1f R_P50=%d R_P99=%d R_ERR=%d\n",
            v["requests"], v["bytes"], d, v["requests"] * 1e6 / d, v["p50"], v["p99"],
            v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
    }')"
    if [ "$R_ERR" -gt 0 ]; then
        ERRORS=$((ERRORS + R_ERR))
        note "$name: $R_ERR errors (socket errors or non-2xx), see $out"
    fi
}

# hist_pct P...: percentiles of the merged histogram files named on stdin
hist_pct() {
    xargs -r cat | awk '{ n[$1] += $2 } END { for (v in n) print v, n[v] }' | sort -n \
        | awk -v ps="$*" '
        { v[NR] = $1; c[NR] = $2; total += $2 }
        END {
            m = split(ps, want, " ")
            for (j = 1; j <= m; j++) {
                rank = want[j] / 100 * total; if (rank < 1) rank = 1
                cum = 0; x = 0
                for (i = 1; i <= NR; i++) { cum += c[i]; x = v[i]; if (cum >= rank) break }
                printf "%s%d", (j > 1 ? " " : ""), x
            }
            printf "\n"
        }'
}

# the CPUs the nginx processes may run on; pinned for the latency runs
nginx_pids() {
    local pid
    for pid in "${PIDS[@]}"; do
        echo "$pid"
        pgrep -P "$pid" || true
    done
}
pin_nginx() {   # pin_nginx CPULIST
    local pid
    for pid in $(nginx_pids); do
        taskset -a -p -c "$1" "$pid" > /dev/null 2>&1 || note "cannot set the CPU affinity of pid $pid"
    done
}

# measure KIND ROUND STREAM THREADS CONNS SECONDS [CPU]
measure() {
    local kind=$1 round=$2 stream=$3 t=$4 c=$5 secs=$6 cpu=${7:-} s who first second
    local slice=$((secs / SLICES))
    [ "$slice" -lt 1 ] && slice=1
    for who in plain gateway; do
        SUM[$kind.$who.req.$round]=0; SUM[$kind.$who.bytes.$round]=0; SUM[$kind.$who.dur.$round]=0
    done
    for s in $(seq 1 "$SLICES"); do
        if [ $(((round + s) % 2)) = 0 ]; then first=plain; second=gateway; else first=gateway; second=plain; fi
        local line="  r$round $kind slice $s/$SLICES:"
        for who in $first $second; do
            local port path model
            if [ "$who" = plain ]; then
                port=$PLAIN_PORT; model=mock-model
                if [ "$stream" = 1 ]; then path=$PLAIN_SSE_PATH; else path=$PLAIN_JSON_PATH; fi
            else
                port=$GW_PORT
                if [ "$stream" = 1 ]; then path=$GW_SSE_PATH; model=$GW_SSE_MODEL
                else path=$GW_JSON_PATH; model=$GW_JSON_MODEL; fi
            fi
            run_wrk "$kind-$who-r$round-s$s" "$port" "$path" "$model" "$stream" "$t" "$c" \
                "$slice" "$RUN/wrk/$kind-$who-r$round-s$s.hist" "$cpu"
            SUM[$kind.$who.req.$round]=$((SUM[$kind.$who.req.$round] + R_REQ))
            SUM[$kind.$who.bytes.$round]=$((SUM[$kind.$who.bytes.$round] + R_BYTES))
            SUM[$kind.$who.dur.$round]=$((SUM[$kind.$who.dur.$round] + R_DUR))
            if [ "$kind" = lat ]; then
                line="$line $who p50 ${R_P50}us p99 ${R_P99}us;"
            elif [ "$kind" = sse ]; then
                line="$line $who $(calc "$R_BYTES / $R_DUR" 1) MB/s;"
            else
                line="$line $who ${R_RPS} req/s;"
            fi
        done
        echo "$line" >&2
    done
}

calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

SSE_THREADS=$THREADS
[ "$SSE_CONNECTIONS" -lt "$SSE_THREADS" ] && SSE_THREADS=$SSE_CONNECTIONS
LAT_CPU=""
if [ "$LAT_PIN" = 1 ] && [ "$(nproc)" -gt 1 ] && command -v taskset >/dev/null 2>&1; then
    LAT_CPU=${LAT_CPUS:-0}
fi
ALL_CPUS="0-$(($(nproc) - 1))"

cat >&2 <<INFO
bench: $(nproc) CPUs, $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $("$WRK" -v 2>&1 | head -1 | awk '{print $1, $2}'), load $(cut -d' ' -f1-3 /proc/loadavg)
bench: mock 127.0.0.1:$MOCK_PORT, plain 127.0.0.1:$PLAIN_PORT, gateway 127.0.0.1:$GW_PORT; run directory $RUN
bench: $ROUNDS rounds, each run cut into $SLICES alternating slices; throughput ${DURATION}s x $THREADS threads x $CONNECTIONS conns; latency ${LAT_DURATION}s x 1 conn${LAT_CPU:+ (all on CPU $LAT_CPU)}; SSE ${DURATION}s x $SSE_CONNECTIONS conns, $SSE_CHUNKS chunks ($SSE_BYTES bytes)
bench: warm-up
INFO
run_wrk warmup-plain   "$PLAIN_PORT" "$PLAIN_JSON_PATH" mock-model       0 "$THREADS" "$CONNECTIONS" 2 ""
run_wrk warmup-gateway "$GW_PORT"    "$GW_JSON_PATH"    "$GW_JSON_MODEL" 0 "$THREADS" "$CONNECTIONS" 2 ""
ERRORS=0

for round in $(seq 1 "$ROUNDS"); do
    echo "bench: round $round/$ROUNDS" >&2
    measure json "$round" 0 "$THREADS" "$CONNECTIONS" "$DURATION"
    [ -n "$LAT_CPU" ] && pin_nginx "$LAT_CPU"
    measure lat  "$round" 0 1 1 "$LAT_DURATION" "$LAT_CPU"
    [ -n "$LAT_CPU" ] && pin_nginx "$ALL_CPUS"
    measure sse  "$round" 1 "$SSE_THREADS" "$SSE_CONNECTIONS" "$DURATION"
done

# ---------------------------------------------------------------- report

rate() {   # rate KIND WHO FIELD ROUND|all  -> per second (req) or MB/s (bytes)
    local kind=$1 who=$2 f=$3 r=$4 n=0 d=0 i
    if [ "$r" = all ]; then
        for i in $(seq 1 "$ROUNDS"); do
            n=$((n + SUM[$kind.$who.$f.$i])); d=$((d + SUM[$kind.$who.dur.$i]))
        done
    else
        n=${SUM[$kind.$who.$f.$r]}; d=${SUM[$kind.$who.dur.$r]}
    fi
    [ "$d" -gt 0 ] || d=1
    if [ "$f" = req ]; then calc "$n * 1000000 / $d" 1; else calc "$n / $d" 2; fi
}
lat_pct() {   # lat_pct WHO ROUND|all -> "p50 p99"
    local glob
    if [ "$2" = all ]; then glob="lat-$1-r*-s*.hist"; else glob="lat-$1-r$2-s*.hist"; fi
    find "$RUN/wrk" -name "$glob" | hist_pct 50 99
}
judge() {   # judge EXPR: sets V to ok or MISSED (no subshell: MISSED must count)
    if [ "$(awk "BEGIN { print ($1) ? 1 : 0 }")" = 1 ]; then V=ok; else V=MISSED; MISSED=$((MISSED + 1)); fi
}

MISSED=0
echo
echo "== conductor bench: plain nginx proxy_pass vs $GW_LABEL"
echo "   $(nproc) CPUs; $ROUNDS rounds; plain and gateway alternate in $SLICES slices per run;"
echo "   'all' = every slice of every round added up (the figure judged); wrk output: $RUN/wrk/"
echo
echo "-- JSON chat.completion, $THREADS threads x $CONNECTIONS connections, ${DURATION}s per front per round"
printf '   %-6s %14s %14s %8s\n' round "plain req/s" "gateway req/s" ratio
for r in $(seq 1 "$ROUNDS") all; do
    p=$(rate json plain req "$r"); g=$(rate json gateway req "$r"); ratio=$(calc "$g / $p" 3)
    if [ "$r" = all ]; then
        judge "$ratio >= $TARGET_RATIO"
        printf '   %-6s %14s %14s %8s   target >= %s  [%s]\n' "$r" "$p" "$g" "$ratio" "$TARGET_RATIO" "$V"
    else
        printf '   %-6s %14s %14s %8s\n' "$r" "$p" "$g" "$ratio"
    fi
done

echo
echo "-- latency, 1 connection, ${LAT_DURATION}s per front per round${LAT_CPU:+, wrk and nginx on CPU $LAT_CPU} (microseconds)"
printf '   %-6s %9s %9s %9s   %9s %9s %9s\n' round "plain p50" "gw p50" "added" "plain p99" "gw p99" "added"
for r in $(seq 1 "$ROUNDS") all; do
    read -r pp50 pp99 <<< "$(lat_pct plain "$r")"
    read -r gp50 gp99 <<< "$(lat_pct gateway "$r")"
    printf '   %-6s %9d %9d %9d   %9d %9d %9d\n' "$r" "$pp50" "$gp50" $((gp50 - pp50)) \
        "$pp99" "$gp99" $((gp99 - pp99))
done
a50=$((gp50 - pp50)); a99=$((gp99 - pp99))
judge "$a50 < $TARGET_P50_US"; v50=$V
judge "$a99 < $TARGET_P99_US"; v99=$V
printf '   added p50 %d us, target < %s us  [%s];  added p99 %d us, target < %s us  [%s]\n' \
    "$a50" "$TARGET_P50_US" "$v50" "$a99" "$TARGET_P99_US" "$v99"
printf '   (1-connection throughput: plain %s req/s, gateway %s req/s)\n' \
    "$(rate lat plain req all)" "$(rate lat gateway req all)"

echo
echo "-- SSE stream, $SSE_CHUNKS chunks + usage + [DONE] ($SSE_BYTES bytes), $SSE_THREADS threads x $SSE_CONNECTIONS connections, ${DURATION}s per front per round"
echo "   plain: pass-through; gateway: routing + usage extraction from the stream"
printf '   %-6s %11s %11s %12s %12s %8s\n' round "plain MB/s" "gw MB/s" "plain req/s" "gw req/s" cost
for r in $(seq 1 "$ROUNDS") all; do
    pm=$(rate sse plain bytes "$r"); gm=$(rate sse gateway bytes "$r")
    pr=$(rate sse plain req "$r");   gr=$(rate sse gateway req "$r")
    cost=$(calc "(1 - $gr / $pr) * 100" 2)
    if [ "$r" = all ]; then
        judge "$cost < $TARGET_SSE_PCT"
        printf '   %-6s %11s %11s %12s %12s %7s%%   target < %s %%  [%s]\n' "$r" "$pm" "$gm" "$pr" "$gr" "$cost" "$TARGET_SSE_PCT" "$V"
    else
        printf '   %-6s %11s %11s %12s %12s %7s%%\n' "$r" "$pm" "$gm" "$pr" "$gr" "$cost"
    fi
done
if [ "$PLAIN_SSE_SIZE" != "$GW_SSE_SIZE" ]; then
    echo "   note: one stream body is $PLAIN_SSE_SIZE bytes through plain, $GW_SSE_SIZE through the gateway"
fi

# fairness: proxy_* directives of the gateway snippet that the plain front
# lacks (proxy_ssl_* do not apply: the bench upstream is plain http)
if [ "$NO_MODULE" != 1 ]; then
    missing=$(grep -oE '^[[:space:]]*proxy_[a-z_]+' "$PROXY_CONF" | tr -d ' \t' \
        | grep -v '^proxy_ssl_' | sort -u \
        | while read -r d; do grep -qE "^[[:space:]]*${d}[[:space:]]" "$BENCH_DIR/plain.conf" || echo "$d"; done \
        | tr '\n' ' ')
    if [ -n "$missing" ]; then
        echo
        echo "   note: $PROXY_CONF sets directives the plain front does not: $missing"
    fi
fi

echo
if [ "$ERRORS" -gt 0 ]; then
    echo "RESULT: $ERRORS errors during the runs (see $RUN/wrk/): the figures are not valid"
    exit 1
fi
if [ "$MISSED" -gt 0 ]; then
    echo "RESULT: $MISSED of 4 targets missed"
    [ "$STRICT" = 1 ] && exit 1
else
    echo "RESULT: all 4 targets met"
fi
exit 0
