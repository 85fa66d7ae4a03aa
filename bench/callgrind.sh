#!/usr/bin/env bash
# bench/callgrind.sh: instructions per streamed byte and per request, plain
# nginx proxy_pass against the conductor gateway, counted by callgrind. See
# the section "Instructions (callgrind)" of bench/README.md.
#
# The front nginx (plain or gateway) runs as a single process (master_process
# off) under valgrind --tool=callgrind; the mock upstream of upstream.conf
# runs natively. Each figure comes from two runs of the same front, one with
# N1 and one with N2 requests: per unit = (Ir(N2) - Ir(N1)) / (N2 - N1),
# which cancels start-up and shutdown. Everything listens on 127.0.0.1 only;
# servers are started here and stopped by their PID on exit (trap).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

usage() {
    cat <<'EOF'
usage: bench/callgrind.sh [--quick] [--no-module] [--strict]
       bench/run.sh --instructions [--quick] [--no-module] [--strict]

  --quick       fewer requests per run (checks the script; figures less exact)
  --no-module   a plain nginx stands in for the gateway (ratios ~1.0; tests the
                script before the module builds; strip mode is skipped)
  --strict      exit 1 when a target is missed (default: only on errors)

Environment (defaults in brackets):
  CG_SSE_N1 [2]  CG_SSE_N2 [32]     streams per run (--quick: 1 and 4)
  CG_JSON_N1 [100] CG_JSON_N2 [1600] requests per run (--quick: 20 and 120)
  SSE_CHUNKS [2000]  KEEPALIVE [64] (upstream connections cached; 0: off)
  CG_PORT [18500] (mock; the front under callgrind on +1)
  MODULE [build/ngx_http_conductor_module.so]  PROXY_CONF [conf/conductor_proxy.conf]
  NGINX [nginx]  VALGRIND [valgrind]  CURL [curl]
  CG_RUN [build/callgrind] (configs, logs, callgrind.out files; wiped at start)
EOF
}

NO_MODULE=${BENCH_NO_MODULE:-0}
STRICT=${BENCH_STRICT:-0}
QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick)        QUICK=1 ;;
        --no-module)    NO_MODULE=1 ;;
        --strict)       STRICT=1 ;;
        --instructions) ;;   # passed on by run.sh
        -h|--help)      usage; exit 0 ;;
        *)              echo "callgrind: unknown argument: $arg" >&2; usage >&2; exit 1 ;;
    esac
done

if [ "$QUICK" = 1 ]; then
    SSE_N1=${CG_SSE_N1:-1};  SSE_N2=${CG_SSE_N2:-4}
    JSON_N1=${CG_JSON_N1:-20}; JSON_N2=${CG_JSON_N2:-120}
else
    SSE_N1=${CG_SSE_N1:-2};  SSE_N2=${CG_SSE_N2:-32}
    JSON_N1=${CG_JSON_N1:-100}; JSON_N2=${CG_JSON_N2:-1600}
fi
SSE_CHUNKS=${SSE_CHUNKS:-2000}
KEEPALIVE=${KEEPALIVE:-64}
CG_PORT=${CG_PORT:-18500}
MODULE=${MODULE:-$REPO/build/ngx_http_conductor_module.so}
PROXY_CONF=${PROXY_CONF:-$REPO/conf/conductor_proxy.conf}
LOG_CONF=$REPO/conf/conductor_log.conf
NGINX=${NGINX:-nginx}
VALGRIND=${VALGRIND:-valgrind}
CURL=${CURL:-curl}
RUN=${CG_RUN:-$REPO/build/callgrind}

MOCK_PORT=$CG_PORT
FRONT_PORT=$((CG_PORT + 1))

# gateway / plain, at most
TARGET_SSE_ASKED=1.3     # instructions per streamed byte, client asked for usage
TARGET_SSE_STRIP=3       # ... client did not ask (the usage chunk is removed)
TARGET_JSON_SMALL=1.25   # instructions per small JSON request (also with access logs)
TARGET_JSON_5K=1.5       # ... 5 KB request, 5 KB answer

die() { echo "callgrind: $*" >&2; exit 1; }
note() { echo "callgrind: $*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

# ---------------------------------------------------------------- preconditions

command -v "$NGINX"    >/dev/null 2>&1 || die "nginx not found (NGINX=$NGINX)"
command -v "$VALGRIND" >/dev/null 2>&1 || die "valgrind not found (VALGRIND=$VALGRIND; apt-get install valgrind)"
command -v "$CURL"     >/dev/null 2>&1 || die "curl not found (CURL=$CURL)"

if [ "$NO_MODULE" != 1 ]; then
    [ -f "$MODULE" ] || die "$MODULE is missing: build the module first (make build),
       or run 'bench/callgrind.sh --no-module' to test this script with a plain
       nginx in place of the gateway."
    [ -f "$PROXY_CONF" ] || die "$PROXY_CONF is missing (the gateway's proxy snippet)"
    [ -f "$LOG_CONF" ] || die "$LOG_CONF is missing (the gateway's log format)"
fi

for n in "$SSE_N1" "$SSE_N2" "$JSON_N1" "$JSON_N2" "$SSE_CHUNKS" "$KEEPALIVE" "$CG_PORT"; do
    case "$n" in ''|*[!0-9]*) die "not a number: '$n'" ;; esac
done
if [ "$SSE_N1" -lt 1 ] || [ "$SSE_N2" -le "$SSE_N1" ]; then die "need 1 <= CG_SSE_N1 < CG_SSE_N2"; fi
if [ "$JSON_N1" -lt 1 ] || [ "$JSON_N2" -le "$JSON_N1" ]; then die "need 1 <= CG_JSON_N1 < CG_JSON_N2"; fi

port_busy() {
    # a successful connect means something already listens there
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
for p in "$MOCK_PORT" "$FRONT_PORT"; do
    if port_busy "$p"; then
        die "127.0.0.1:$p is already in use (set CG_PORT to another base port)"
    fi
done

# ---------------------------------------------------------------- run directory

case "$RUN" in /*) ;; *) RUN="$PWD/$RUN" ;; esac
rm -rf "$RUN"
mkdir -p "$RUN/conf" "$RUN/logs" "$RUN/tmp" "$RUN/html" "$RUN/req" "$RUN/out" "$RUN/cg"

USER_LINE=""
if [ "$(id -u)" = 0 ]; then
    USER_LINE="user root;"      # the mock's worker reads files of this run directory
fi
KEEPALIVE_LINE=""
if [ "$KEEPALIVE" -gt 0 ]; then
    KEEPALIVE_LINE="keepalive $KEEPALIVE;"
fi

# The SSE stream: the same file as bench/run.sh serves.
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

# text5k SIZE PREFIX SUFFIX: PREFIX, JSON string content, SUFFIX, SIZE bytes
# in all (prose with an escaped newline after each sentence)
text5k() {
    awk -v size="$1" -v pre="$2" -v suf="$3" 'BEGIN {
        s = "The benchmark counts every instruction the front spends on this request, byte by byte.\\n"
        want = size - length(pre) - length(suf); t = ""
        while (length(t) + length(s) <= want) t = t s
        while (length(t) < want) t = t "x"
        printf "%s%s%s", pre, t, suf
    }'
}

# The 5 KB answer, served by the mock from a file (see the location added to
# its config below).
text5k 5120 '{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"' \
    '"},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1180,"completion_tokens":1100,"total_tokens":2280}}' \
    > "$RUN/html/__answer5k.json"

# Request bodies. body MODEL KIND: the body of bench/post.lua (KIND json,
# sse-asked: stream_options.include_usage, sse-noask: stream only), or a
# 5 KB chat request (KIND json5k).
body() {
    local head='{"model":"'$1'","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":'
    case "$2" in
        json)      printf '%s' "$head"'"Say hello to the benchmark in five words."}],"max_tokens":32,"temperature":0.7}' ;;
        sse-asked) printf '%s' "$head"'"Say hello to the benchmark in five words."}],"max_tokens":32,"temperature":0.7,"stream":true,"stream_options":{"include_usage":true}}' ;;
        sse-noask) printf '%s' "$head"'"Say hello to the benchmark in five words."}],"max_tokens":32,"temperature":0.7,"stream":true}' ;;
        json5k)    text5k 5120 "$head\"" '"}],"max_tokens":32,"temperature":0.7}' ;;
    esac
}

render() {   # render TEMPLATE OUT NAME PORT
    sed -e "s|@RUN@|$RUN|g" \
        -e "s|@USER@|$USER_LINE|g" \
        -e "s|@MOCK_WORKERS@|1|g" \
        -e "s|@FRONT_WORKERS@|1|g" \
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

# edit, cleanup and wait_listen: bench/lib.sh
. "$BENCH_DIR/lib.sh"

# the mock: upstream.conf as bench/run.sh runs it, plus one location that
# answers the 5 KB chat.completion (the same error_page trick as its /sse/)
render upstream.conf upstream.conf upstream "$MOCK_PORT"
edit "$RUN/conf/upstream.conf" '/^[[:space:]]*location \/sse\/ {/i\
        location /json5k/ {\
            error_page  405 =200 /__answer5k.json;\
            return      405;\
        }\
        location = /__answer5k.json {\
            internal;\
            root          '"$RUN"'/html;\
            default_type  application/json;\
        }\
' "add the 5 KB answer"

# the fronts: plain.conf and gateway.conf as bench/run.sh runs them, but one
# process (master_process off), so that valgrind sees the worker's work
single() { edit "$1" 's/^\([[:space:]]*master_process[[:space:]]*\)on;/\1off;/' "set master_process off"; }
with_log() {   # with_log FILE INCLUDE FORMAT
    edit "$1" "0,/^[[:space:]]*access_log[[:space:]]*off;/s||    include  $2;\\
    access_log  $RUN/logs/$(basename "$1" .conf).access.log $3;|" "turn the access log on"
}

render plain.conf plain.conf plain "$FRONT_PORT"
single "$RUN/conf/plain.conf"
cp "$RUN/conf/plain.conf" "$RUN/conf/plain-log.conf"
with_log "$RUN/conf/plain-log.conf" "$BENCH_DIR/plain_log.conf" plain_json

# what the gateway loads and includes, copied: a rebuild during the run (make
# build by someone else) cannot mix two builds in one report
if [ "$NO_MODULE" != 1 ]; then
    cp "$MODULE" "$RUN/ngx_http_conductor_module.so"
    cp "$PROXY_CONF" "$RUN/conf/conductor_proxy.conf"
    cp "$LOG_CONF" "$RUN/conf/conductor_log.conf"
    MODULE_MD5=$(md5sum < "$RUN/ngx_http_conductor_module.so" | cut -c1-32)
    MODULE_TIME=$(date -u -r "$MODULE" '+%Y-%m-%d %H:%M:%S UTC')
    MODULE_SRC=$MODULE
    MODULE=$RUN/ngx_http_conductor_module.so
    PROXY_CONF=$RUN/conf/conductor_proxy.conf
    LOG_CONF=$RUN/conf/conductor_log.conf
fi

if [ "$NO_MODULE" = 1 ]; then
    GW_LABEL="gateway (--no-module: plain nginx stand-in)"
    for v in gateway gateway-5k; do
        render plain.conf "$v.conf" gateway "$FRONT_PORT"; single "$RUN/conf/$v.conf"
    done
    render plain.conf gateway-log.conf gateway "$FRONT_PORT"; single "$RUN/conf/gateway-log.conf"
    with_log "$RUN/conf/gateway-log.conf" "$BENCH_DIR/plain_log.conf" plain_json
    GW_LOG_FMT=plain_json
    GW_JSON_MODEL=mock-model; GW_SSE_MODEL=mock-model; GW_5K_MODEL=mock-model
    GW_JSON_PATH=/v1/chat/completions; GW_SSE_PATH=/sse/v1/chat/completions
    GW_5K_PATH=/json5k/v1/chat/completions
else
    GW_LABEL="gateway ($MODULE_SRC of $MODULE_TIME, md5 $MODULE_MD5)"
    render gateway.conf gateway.conf gateway "$FRONT_PORT"
    single "$RUN/conf/gateway.conf"
    cp "$RUN/conf/gateway.conf" "$RUN/conf/gateway-log.conf"
    with_log "$RUN/conf/gateway-log.conf" "$LOG_CONF" conductor_json
    GW_LOG_FMT="conf/conductor_log.conf conductor_json"
    # a third provider on the mock's 5 KB answer
    cp "$RUN/conf/gateway.conf" "$RUN/conf/gateway-5k.conf"
    edit "$RUN/conf/gateway-5k.conf" '/^[[:space:]]*conductor_zone[[:space:]]/a\
    conductor_provider bench5k {\
        url  http://127.0.0.1:'"$MOCK_PORT"'/json5k/v1;\
        api  openai;\
        key  bench-5k-1 bench-secret-6;\
        price mock-model input=0.50 output=1.50;\
    }\
    conductor_model bench-5k { bench5k mock-model; }\
' "add the 5 KB provider"
    GW_JSON_MODEL=bench-json; GW_SSE_MODEL=bench-sse; GW_5K_MODEL=bench-5k
    GW_JSON_PATH=/v1/chat/completions; GW_SSE_PATH=/v1/chat/completions
    GW_5K_PATH=/v1/chat/completions
fi
PLAIN_JSON_PATH=/v1/chat/completions
PLAIN_SSE_PATH=/sse/v1/chat/completions
PLAIN_5K_PATH=/json5k/v1/chat/completions

for c in upstream plain plain-log gateway gateway-log gateway-5k; do
    if ! "$NGINX" -t -q -p "$RUN" -e "$RUN/logs/$c.startup.log" \
            -c "$RUN/conf/$c.conf" > "$RUN/logs/$c.t.log" 2>&1; then
        cat "$RUN/logs/$c.t.log" >&2
        die "nginx -t failed for $RUN/conf/$c.conf"
    fi
done

body mock-model json      > "$RUN/req/plain-json.body"
body mock-model sse-asked > "$RUN/req/plain-sse-asked.body"
body mock-model sse-noask > "$RUN/req/plain-sse-noask.body"
body mock-model json5k    > "$RUN/req/plain-json5k.body"
body "$GW_JSON_MODEL" json      > "$RUN/req/gateway-json.body"
body "$GW_SSE_MODEL"  sse-asked > "$RUN/req/gateway-sse-asked.body"
body "$GW_SSE_MODEL"  sse-noask > "$RUN/req/gateway-sse-noask.body"
body "$GW_5K_MODEL"   json5k    > "$RUN/req/gateway-json5k.body"

# ---------------------------------------------------------------- servers

PIDS=()
NAMES=()
stop_pid() {   # stop_pid PID NAME: QUIT, wait; TERM, KILL if it does not go
    local pid=$1
    kill -QUIT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        note "$2 (pid $pid) ignored QUIT, sending TERM"
        kill -TERM "$pid" 2>/dev/null || true
        sleep 2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


"$NGINX" -p "$RUN" -e "$RUN/logs/upstream.startup.log" -c "$RUN/conf/upstream.conf" \
    > "$RUN/logs/upstream.stdout.log" 2>&1 &
PIDS+=("$!"); NAMES+=(upstream)
wait_listen "$!" "$MOCK_PORT" upstream 5

# ---------------------------------------------------------------- measuring

# client LABEL PATH BODYFILE N: N sequential POSTs on one keepalive
# connection (curl reuses it), the headers wrk sends; the first answer is
# kept in out/LABEL.first, "status size" per answer in out/LABEL.status
client() {
    local cfg="$RUN/out/$1.curl" i
    {
        printf 'silent\nshow-error\nhttp1.1\nmax-time = 300\n'
        printf 'header = "Content-Type: application/json"\n'
        printf 'header = "Authorization: Bearer bench-client-key"\n'
        printf 'header = "User-Agent:"\nheader = "Accept:"\nheader = "Expect:"\n'
        printf 'data-binary = "@%s"\n' "$3"
        printf 'write-out = "%%{http_code} %%{size_download} %%{num_connects}\\n"\n'
        printf 'url = "http://127.0.0.1:%s%s"\noutput = "%s"\n' "$FRONT_PORT" "$2" "$RUN/out/$1.first"
        for i in $(seq 2 "$4"); do
            printf 'url = "http://127.0.0.1:%s%s"\noutput = "/dev/null"\n' "$FRONT_PORT" "$2"
        done
    } > "$cfg"
    "$CURL" -K "$cfg" > "$RUN/out/$1.status" 2> "$RUN/out/$1.stderr" \
        || { cat "$RUN/out/$1.stderr" >&2; die "curl failed ($1), see $RUN/out/"; }
}

# check LABEL N KIND: every answer 200 and of the same size, one connection,
# the first one complete
check() {
    local st="$RUN/out/$1.status" first="$RUN/out/$1.first" bad
    [ "$(wc -l < "$st")" = "$2" ] || die "$1: $(wc -l < "$st") answers, not $2 (see $st)"
    bad=$(awk -v size="$(wc -c < "$first")" '$1 != 200 || $2 != size || (NR > 1 && $3 != 0)' "$st" | head -3)
    [ -z "$bad" ] || die "$1: an answer is not 200, not of the first one's size, or came on a new connection: $bad (see $st)"
    case "$3" in
        sse-asked|sse-plain)
            grep -q '"completion_tokens":'"$SSE_CHUNKS" "$first" \
                || die "$1: the stream carries no usage chunk (see $first)"
            grep -q '^data: \[DONE\]' "$first" || die "$1: the stream has no [DONE] (see $first)" ;;
        sse-strip)
            grep -q '"completion_tokens":' "$first" \
                && die "$1: the usage chunk reached a client that did not ask (see $first)"
            grep -q '^data: \[DONE\]' "$first" || die "$1: the stream has no [DONE] (see $first)" ;;
        json)   grep -q '"total_tokens":17' "$first" || die "$1: no usage in the JSON answer (see $first)" ;;
        json5k) grep -q '"total_tokens":2280' "$first" || die "$1: no usage in the 5 KB answer (see $first)" ;;
    esac
}

# cg_run LABEL CONF PATH BODYFILE N KIND -> sets R_IR (instructions of the whole
# run) and R_SIZE (bytes of one answer)
cg_run() {
    local label=$1 conf=$2 out="$RUN/cg/$1.out" pid total
    "$VALGRIND" --tool=callgrind --callgrind-out-file="$out" \
        --log-file="$RUN/logs/$label.valgrind.log" \
        "$NGINX" -p "$RUN" -e "$RUN/logs/$label.startup.log" -c "$RUN/conf/$conf.conf" \
        > "$RUN/logs/$label.stdout.log" 2>&1 &
    pid=$!
    PIDS+=("$pid"); NAMES+=("$label")
    wait_listen "$pid" "$FRONT_PORT" "$label" 120
    client "$label" "$3" "$4" "$5"
    stop_pid "$pid" "$label"
    PIDS[${#PIDS[@]}-1]=""
    check "$label" "$5" "$6"
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out" 2>/dev/null || true)
    [ -n "$total" ] || die "$label: no instruction total in $out (see $RUN/logs/$label.valgrind.log)"
    R_IR=$total
    R_SIZE=$(wc -c < "$RUN/out/$label.first")
}

# per_unit NAME CONF PATH BODY KIND N1 N2 -> sets U (instructions per unit),
# S (the rest: start-up and shutdown), SIZE (bytes of one answer)
per_unit() {
    local name=$1 t1 t2 start=$SECONDS
    cg_run "$name-$6" "$2" "$3" "$4" "$6" "$5"; t1=$R_IR
    cg_run "$name-$7" "$2" "$3" "$4" "$7" "$5"; t2=$R_IR
    SIZE=$R_SIZE
    U=$(calc "($t2 - $t1) / ($7 - $6)" 0)
    S=$(calc "$t1 - $6 * ($t2 - $t1) / ($7 - $6)" 0)
    note "$(printf '%-22s %6s and %6s units: %13s and %13s Ir -> %10s Ir/unit (%ss)' \
        "$name" "$6" "$7" "$t1" "$t2" "$U" $((SECONDS - start)))"
}

cat >&2 <<INFO
callgrind: $(nproc) CPUs, $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $("$VALGRIND" --version), load $(cut -d' ' -f1-3 /proc/loadavg)
callgrind: mock 127.0.0.1:$MOCK_PORT (native), front 127.0.0.1:$FRONT_PORT (one process under callgrind); run directory $RUN
callgrind: SSE $SSE_N1 and $SSE_N2 streams per run ($SSE_BYTES bytes each), JSON $JSON_N1 and $JSON_N2 requests per run
INFO
T0=$SECONDS

declare -A IR SZ
measure() {   # measure KEY CONF PATH BODY KIND N1 N2
    per_unit "$1" "$2" "$3" "$RUN/req/$4.body" "$5" "$6" "$7"
    IR[$1]=$U; IR[$1.start]=$S; SZ[$1]=$SIZE
}

measure plain-sse-asked  plain       "$PLAIN_SSE_PATH"  plain-sse-asked   sse-plain "$SSE_N1" "$SSE_N2"
measure gw-sse-asked     gateway     "$GW_SSE_PATH"     gateway-sse-asked sse-asked "$SSE_N1" "$SSE_N2"
measure plain-sse-noask  plain       "$PLAIN_SSE_PATH"  plain-sse-noask   sse-plain "$SSE_N1" "$SSE_N2"
if [ "$NO_MODULE" = 1 ]; then
    measure gw-sse-strip gateway     "$GW_SSE_PATH"     gateway-sse-noask sse-plain "$SSE_N1" "$SSE_N2"
else
    measure gw-sse-strip gateway     "$GW_SSE_PATH"     gateway-sse-noask sse-strip "$SSE_N1" "$SSE_N2"
fi
measure plain-json       plain       "$PLAIN_JSON_PATH" plain-json        json      "$JSON_N1" "$JSON_N2"
measure gw-json          gateway     "$GW_JSON_PATH"    gateway-json      json      "$JSON_N1" "$JSON_N2"
measure plain-json-log   plain-log   "$PLAIN_JSON_PATH" plain-json        json      "$JSON_N1" "$JSON_N2"
measure gw-json-log      gateway-log "$GW_JSON_PATH"    gateway-json      json      "$JSON_N1" "$JSON_N2"
measure plain-json5k     plain       "$PLAIN_5K_PATH"   plain-json5k      json5k    "$JSON_N1" "$JSON_N2"
measure gw-json5k        gateway-5k  "$GW_5K_PATH"      gateway-json5k    json5k    "$JSON_N1" "$JSON_N2"

# the log lines are there, and the gateway's carries the usage
for f in plain-log gateway-log; do
    [ -s "$RUN/logs/$f.access.log" ] || die "no access log lines in $RUN/logs/$f.access.log"
done
if [ "$NO_MODULE" != 1 ]; then
    tail -1 "$RUN/logs/gateway-log.access.log" | grep -q '"total_tokens":"17"' \
        || die "the gateway's access log carries no usage (see $RUN/logs/gateway-log.access.log)"
fi
LOG_PLAIN=$(tail -1 "$RUN/logs/plain-log.access.log" | wc -c)
LOG_GW=$(tail -1 "$RUN/logs/gateway-log.access.log" | wc -c)

# ---------------------------------------------------------------- report

MISSED=0
judge() {   # judge EXPR: sets V to ok or MISSED
    if [ "$(awk "BEGIN { print ($1) ? 1 : 0 }")" = 1 ]; then V=ok; else V=MISSED; MISSED=$((MISSED + 1)); fi
}

echo
echo "== conductor instructions (callgrind): plain nginx proxy_pass vs $GW_LABEL"
echo "   front: one nginx process under callgrind, mock upstream native; Ir = instructions executed;"
echo "   per unit = (Ir(N2 units) - Ir(N1 units)) / (N2 - N1): start-up and shutdown cancel"
echo
echo "-- SSE stream, $SSE_CHUNKS chunks + usage + [DONE] ($SSE_BYTES bytes from the upstream), $SSE_N1 and $SSE_N2 streams per run"
echo "   Ir/B = instructions per stream / $SSE_BYTES"
printf '   %-36s %12s %12s %9s %9s %7s\n' mode "plain Ir/str" "gw Ir/str" "plain/B" "gw/B" ratio
sse_row() {   # sse_row LABEL PLAINKEY GWKEY TARGET
    local p=${IR[$2]} g=${IR[$3]} ratio
    ratio=$(calc "$g / $p" 3)
    judge "$ratio <= $4"
    printf '   %-36s %12s %12s %9s %9s %7s   target <= %sx  [%s]\n' "$1" "$p" "$g" \
        "$(calc "$p / $SSE_BYTES" 3)" "$(calc "$g / $SSE_BYTES" 3)" "$ratio" "$4" "$V"
}
sse_row "asked (include_usage: passes as is)" plain-sse-asked gw-sse-asked "$TARGET_SSE_ASKED"
sse_row "strip (not asked: usage chunk out)"  plain-sse-noask gw-sse-strip "$TARGET_SSE_STRIP"
echo "   bytes to the client per stream: plain ${SZ[plain-sse-asked]}, gateway asked ${SZ[gw-sse-asked]}, strip ${SZ[gw-sse-strip]}"

echo
echo "-- JSON chat.completion, $JSON_N1 and $JSON_N2 requests per run, one keepalive client connection"
printf '   %-36s %12s %12s %9s %7s\n' case "plain Ir/req" "gw Ir/req" added ratio
json_row() {   # json_row LABEL PLAINKEY GWKEY TARGET
    local p=${IR[$2]} g=${IR[$3]} ratio
    ratio=$(calc "$g / $p" 3)
    judge "$ratio <= $4"
    printf '   %-36s %12s %12s %9s %7s   target <= %sx  [%s]\n' "$1" "$p" "$g" $((g - p)) "$ratio" "$4" "$V"
}
json_row "small, access_log off"             plain-json     gw-json     "$TARGET_JSON_SMALL"
json_row "small, JSON access log"            plain-json-log gw-json-log "$TARGET_JSON_SMALL"
json_row "5 KB request, 5 KB answer"         plain-json5k   gw-json5k   "$TARGET_JSON_5K"
echo "   request bodies $(wc -c < "$RUN/req/plain-json.body") and $(wc -c < "$RUN/req/plain-json5k.body") bytes; answers ${SZ[plain-json]} and ${SZ[plain-json5k]} bytes (plain), ${SZ[gw-json]} and ${SZ[gw-json5k]} (gateway)"
echo "   access log lines: plain $LOG_PLAIN bytes (bench/plain_log.conf plain_json), gateway $LOG_GW bytes ($GW_LOG_FMT)"
echo "   logging costs plain $((IR[plain-json-log] - IR[plain-json])) Ir/req, gateway $((IR[gw-json-log] - IR[gw-json])) Ir/req"

echo
echo "   start-up + shutdown (cancelled above): plain $(calc "${IR[plain-json.start]} / 1e6" 1) M Ir, gateway $(calc "${IR[gw-json.start]} / 1e6" 1) M Ir; $((SECONDS - T0)) s in all"
echo
if [ "$MISSED" -gt 0 ]; then
    echo "RESULT: $MISSED of 5 targets missed"
    [ "$STRICT" = 1 ] && exit 1
else
    echo "RESULT: all 5 targets met"
fi
exit 0
