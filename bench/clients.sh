#!/usr/bin/env bash
# bench/clients.sh: what client keys (conductor_auth, a client's limits and
# budget) and the fleet store (conductor_redis sync=100ms, a real
# redis-server on loopback) cost, against plain proxy_pass and the gateway
# without them, in the same run. See "Client keys and Redis (issue 9, 10)"
# in bench/README.md.
#
# Two parts, each on its own set of servers:
#   instructions  every front under callgrind (one process, master_process
#                 off), N1 and N2 requests per run, every run the same wall
#                 time, so that Redis's periodic push cancels; the push is
#                 counted apart (idle runs of two lengths) and accounted per
#                 second
#   wall clock    every front as a normal nginx (1 worker), wrk slices in
#                 rotating order: JSON throughput and 1-connection latency
#
# MODE=exact adds a front with conductor_redis sync=0 (every reservation
# settled in Redis as it is made); while nginx -t refuses sync=0 it is
# reported as "not available".
#
# Everything listens on 127.0.0.1 only; every server is started here and
# stopped by its PID on exit (trap).

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

usage() {
    cat <<'EOF'
usage: bench/clients.sh [--quick] [--instructions-only | --wall-only] [--strict]

  --quick              fewer requests, 1 round of short slices (checks the script)
  --instructions-only  only the callgrind part
  --wall-only          only the wrk part
  --strict             exit 1 when a target is missed

Environment (defaults in brackets):
  MODE [fleet]         exact: also measure sync=0 (reported "not available"
                       while the module refuses it)
  CL_N1 [200] CL_N2 [1600]   requests per callgrind run (--quick: 20, 120)
  CL_T [20]            seconds each callgrind run lasts, start to QUIT (--quick: 12)
  ROUNDS [3] DURATION [10] LAT_DURATION [10] SLICES [5]   wrk, as bench/run.sh
  THREADS [2] CONNECTIONS [32]  LAT_PIN [1] LAT_CPUS [0]  KEEPALIVE [64]
  CL_PORT [18800]      mock; fronts +1..+7, callgrind front +8, redis +9
  REDIS_SERVER [/usr/bin/redis-server]  REDIS_CLI [redis-cli]
  MODULE PROXY_CONF NGINX WRK VALGRIND CURL as for bench/run.sh
  CL_RUN [build/clients] (configs, logs, callgrind.out files; wiped at start)
EOF
}

STRICT=0; QUICK=0; DO_CG=1; DO_WALL=1
for arg in "$@"; do
    case "$arg" in
        --quick)             QUICK=1 ;;
        --strict)            STRICT=1 ;;
        --instructions-only) DO_WALL=0 ;;
        --wall-only)         DO_CG=0 ;;
        -h|--help)           usage; exit 0 ;;
        *) echo "clients: unknown argument: $arg" >&2; usage >&2; exit 1 ;;
    esac
done

MODE=${MODE:-fleet}
if [ "$QUICK" = 1 ]; then
    N1=${CL_N1:-20}; N2=${CL_N2:-120}; CG_T=${CL_T:-12}
    ROUNDS=1; DURATION=3; LAT_DURATION=3; SLICES=3
else
    N1=${CL_N1:-200}; N2=${CL_N2:-1600}; CG_T=${CL_T:-20}
    ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}; LAT_DURATION=${LAT_DURATION:-10}; SLICES=${SLICES:-5}
fi
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-32}
LAT_PIN=${LAT_PIN:-1}
KEEPALIVE=${KEEPALIVE:-64}
CL_PORT=${CL_PORT:-18800}
MODULE=${MODULE:-$REPO/build/ngx_http_conductor_module.so}
PROXY_CONF=${PROXY_CONF:-$REPO/conf/conductor_proxy.conf}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
VALGRIND=${VALGRIND:-valgrind}
CURL=${CURL:-curl}
REDIS_SERVER=${REDIS_SERVER:-/usr/bin/redis-server}
REDIS_CLI=${REDIS_CLI:-redis-cli}
RUN=${CL_RUN:-$REPO/build/clients}

MOCK_PORT=$CL_PORT
CG_PORT=$((CL_PORT + 8))
REDIS_PORT=$((CL_PORT + 9))
CLIENT_KEY=bench-client-key      # what post.lua and the curl client send

TARGET_REDIS=1.03                # sync=100ms / no Redis, at most (instructions and wall clock)
TARGET_EXACT_P99_US=150          # sync=0: added p99, under

die() { echo "clients: $*" >&2; exit 1; }
note() { echo "clients: $*" >&2; }
calc() { awk "BEGIN { printf \"%.${2:-3}f\", $1 }"; }

case "$MODE" in fleet|exact) ;; *) die "MODE is fleet or exact, not '$MODE'" ;; esac
for n in "$N1" "$N2" "$CG_T" "$ROUNDS" "$DURATION" "$LAT_DURATION" "$SLICES" "$THREADS" \
         "$CONNECTIONS" "$LAT_PIN" "$KEEPALIVE" "$CL_PORT"; do
    case "$n" in ''|*[!0-9]*) die "not a number: '$n'" ;; esac
done
[ "$N1" -ge 1 ] && [ "$N2" -gt "$N1" ] || die "need 1 <= CL_N1 < CL_N2"

for c in "$NGINX" "$CURL" "$REDIS_SERVER" "$REDIS_CLI"; do
    command -v "$c" >/dev/null 2>&1 || die "$c not found"
done
[ "$DO_CG" = 0 ] || command -v "$VALGRIND" >/dev/null 2>&1 || die "valgrind not found"
[ "$DO_WALL" = 0 ] || command -v "$WRK" >/dev/null 2>&1 || die "wrk not found"
[ -f "$MODULE" ] || die "$MODULE is missing: build the module first (make build)"
[ -f "$PROXY_CONF" ] || die "$PROXY_CONF is missing"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $(seq "$CL_PORT" $((CL_PORT + 9))); do
    port_busy "$p" && die "127.0.0.1:$p is already in use (set CL_PORT to another base port)"
done

# ---------------------------------------------------------------- run directory

case "$RUN" in /*) ;; *) RUN="$PWD/$RUN" ;; esac
rm -rf "$RUN"
mkdir -p "$RUN/conf" "$RUN/logs" "$RUN/tmp" "$RUN/html" "$RUN/req" "$RUN/out" "$RUN/cg" "$RUN/wrk" "$RUN/redis"

# the module and the snippet copied: a rebuild meanwhile cannot mix builds
cp "$MODULE" "$RUN/ngx_http_conductor_module.so"
cp "$PROXY_CONF" "$RUN/conf/conductor_proxy.conf"
MODULE_MD5=$(md5sum < "$RUN/ngx_http_conductor_module.so" | cut -c1-32)
MODULE_TIME=$(date -u -r "$MODULE" '+%Y-%m-%d %H:%M:%S UTC')
MODULE_SRC=$MODULE
MODULE=$RUN/ngx_http_conductor_module.so
PROXY_CONF=$RUN/conf/conductor_proxy.conf

USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root;"
KEEPALIVE_LINE=""
[ "$KEEPALIVE" -gt 0 ] && KEEPALIVE_LINE="keepalive $KEEPALIVE;"

render() {   # render TEMPLATE OUT NAME PORT
    sed -e "s|@RUN@|$RUN|g" -e "s|@USER@|$USER_LINE|g" \
        -e "s|@MOCK_WORKERS@|1|g" -e "s|@FRONT_WORKERS@|1|g" \
        -e "s|@MOCK_PORT@|$MOCK_PORT|g" -e "s|@SSE_CHUNKS@|10|g" \
        -e "s|@KEEPALIVE@|$KEEPALIVE_LINE|g" -e "s|@KEEPALIVE_N@|$KEEPALIVE|g" \
        -e "s|@MODULE@|$MODULE|g" -e "s|@PROXY_CONF@|$PROXY_CONF|g" \
        -e "s|@NAME@|$3|g" -e "s|@PORT@|$4|g" \
        "$BENCH_DIR/$1" > "$RUN/conf/$2"
}
# edit, cleanup and wait_listen: bench/lib.sh
. "$BENCH_DIR/lib.sh"
add_http() {   # add_http FILE TEXT WHAT: lines after conductor_zone
    local esc
    esc=$(printf '%s' "$2" | sed -e 's/$/\\/' )
    edit "$1" "/^[[:space:]]*conductor_zone[[:space:]]/a\\
$esc
" "$3"
}
# gateway.conf writes pid and error log under its own name: one per front
own_files() {   # own_files FILE NAME
    edit "$1" "s|$RUN/gateway.pid|$RUN/$2.pid|; s|logs/gateway.error.log|logs/$2.error.log|; s|tmp/gateway_|tmp/$2_|g" "name the pid and logs"
}

# The fronts. What each adds to the one before it:
#   gw         bench/gateway.conf as bench/run.sh runs it (no auth, no limits)
#   auth       conductor_auth on, one client (key only); response headers on
#              as for gw (with auth their default is: admin clients only)
#   authdef    auth, response headers left at their default (callgrind only)
#   client     the client has limits (rpm, tpm never reached), a budget per
#              day (never spent), the providers' prices: its reservation
#              under the pick's lock and its reconciliation in the LOG phase
#   redis      conductor_redis sync=100ms on the loopback redis-server
#   exact      conductor_redis sync=0 (MODE=exact)
CLIENT_AUTH="    conductor_client bench {
        key  $CLIENT_KEY;
    }
    conductor_auth on;"
CLIENT_LIMITS="    conductor_client bench {
        key     $CLIENT_KEY;
        limit   rpm=1000000000 tpm=1000000000000;
        budget  1000000 per=day;
    }
    conductor_auth on;"
HEADERS_ON="    conductor_response_headers on;"
REDIS_SYNC="    conductor_redis redis://127.0.0.1:$REDIS_PORT sync=100ms timeout=200ms;"
REDIS_EXACT="    conductor_redis redis://127.0.0.1:$REDIS_PORT sync=0 timeout=200ms;"

FRONTS=(plain gw auth client redis)
declare -A LABEL=(
    [plain]="plain proxy_pass"
    [gw]="gateway (no client keys)"
    [auth]="+ conductor_auth, client key"
    [authdef]="  (auth, response headers default)"
    [client]="+ client limits, budget, prices"
    [redis]="+ conductor_redis sync=100ms"
    [exact]="+ conductor_redis sync=0 instead"
)

make_front() {   # make_front NAME PORT SINGLE(0|1) -> conf/NAME[-cg].conf
    local name=$1 port=$2 out=$1.conf sfx=""
    if [ "$3" = 1 ]; then out=$1-cg.conf; sfx=-cg; fi
    if [ "$name" = plain ]; then
        render plain.conf "$out" "plain$sfx" "$port"
    else
        render gateway.conf "$out" gateway "$port"
        own_files "$RUN/conf/$out" "$name$sfx"
        case "$name" in
            gw) ;;
            auth)    add_http "$RUN/conf/$out" "$CLIENT_AUTH
$HEADERS_ON" "add the client" ;;
            authdef) add_http "$RUN/conf/$out" "$CLIENT_AUTH" "add the client" ;;
            client)  add_http "$RUN/conf/$out" "$CLIENT_LIMITS
$HEADERS_ON" "add the client" ;;
            redis)   add_http "$RUN/conf/$out" "$CLIENT_LIMITS
$HEADERS_ON
$REDIS_SYNC" "add the client and Redis" ;;
            exact)   add_http "$RUN/conf/$out" "$CLIENT_LIMITS
$HEADERS_ON
$REDIS_EXACT" "add the client and Redis" ;;
        esac
    fi
    if [ "$3" = 1 ]; then
        edit "$RUN/conf/$out" 's/^\([[:space:]]*master_process[[:space:]]*\)on;/\1off;/' "set master_process off"
    fi
}

render upstream.conf upstream.conf upstream "$MOCK_PORT"
EXACT_STATE=""          # "", "not available: ...", or ok
declare -A FPORT
i=1
for f in plain gw auth authdef client redis exact; do
    FPORT[$f]=$((CL_PORT + i)); i=$((i + 1))
    make_front "$f" "${FPORT[$f]}" 0
    make_front "$f" "$CG_PORT" 1
done
FPORT[authdef]=""

check_conf() {   # check_conf FILE -> 0 if nginx -t accepts it; output in logs/
    "$NGINX" -t -q -p "$RUN" -e "$RUN/logs/$(basename "$1" .conf).startup.log" \
        -c "$RUN/conf/$1" > "$RUN/logs/$(basename "$1" .conf).t.log" 2>&1
}
for c in upstream plain gw auth authdef client redis plain-cg gw-cg auth-cg authdef-cg client-cg redis-cg; do
    check_conf "$c.conf" || { cat "$RUN/logs/$c.t.log" >&2; die "nginx -t failed for $RUN/conf/$c.conf"; }
done
if [ "$MODE" = exact ]; then
    if check_conf exact.conf && check_conf exact-cg.conf; then
        EXACT_STATE=ok
        FRONTS+=(exact)
    else
        EXACT_STATE="not available: nginx -t refuses it: $(grep -m1 -o 'emerg.*' "$RUN/logs/exact.t.log" "$RUN/logs/exact.startup.log" 2>/dev/null | head -1 | sed 's/^[^:]*://')"
        note "sync=0 $EXACT_STATE"
    fi
fi

# the request: bench/post.lua's body, the gateway's alias or the mock's model
body() {
    printf '%s' '{"model":"'"$1"'","messages":[{"role":"system","content":"You are a terse assistant."},{"role":"user","content":"Say hello to the benchmark in five words."}],"max_tokens":32,"temperature":0.7}'
}
body mock-model > "$RUN/req/plain.body"
body bench-json > "$RUN/req/gateway.body"
model_of() { [ "$1" = plain ] && echo mock-model || echo bench-json; }
body_of() { [ "$1" = plain ] && echo "$RUN/req/plain.body" || echo "$RUN/req/gateway.body"; }

# ---------------------------------------------------------------- servers

PIDS=()
NAMES=()
stop_pid() {   # stop_pid PID NAME: QUIT (redis-server: TERM), wait; TERM, KILL if it does not go
    local pid=$1 sig=QUIT
    [ "$2" = redis-server ] && sig=TERM
    kill -"$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
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
forget_pid() {   # forget_pid PID: stopped already
    local i
    for i in "${!PIDS[@]}"; do [ "${PIDS[$i]}" = "$1" ] && PIDS[$i]=""; done
    return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM


start_nginx() {   # start_nginx NAME CONF PORT -> pid in STARTED
    "$NGINX" -p "$RUN" -e "$RUN/logs/$1.startup.log" -c "$RUN/conf/$2" \
        > "$RUN/logs/$1.stdout.log" 2>&1 &
    STARTED=$!
    PIDS+=("$STARTED"); NAMES+=("$1")
    wait_listen "$STARTED" "$3" "$1" 10
}

"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$RUN/redis" --logfile "$RUN/logs/redis.log" --daemonize no &
REDIS_PID=$!
PIDS+=("$REDIS_PID"); NAMES+=(redis-server)
wait_listen "$REDIS_PID" "$REDIS_PORT" redis 10
rcli() { "$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }
rcli PING > /dev/null || die "redis-server does not answer PING"

start_nginx upstream upstream.conf "$MOCK_PORT"

cat >&2 <<INFO
clients: $(nproc) CPUs, $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'), $("$REDIS_SERVER" --version | awk '{print $1, $2, $3}'), load $(cut -d' ' -f1-3 /proc/loadavg)
clients: module $MODULE_SRC of $MODULE_TIME, md5 $MODULE_MD5; run directory $RUN
clients: mock :$MOCK_PORT, redis-server :$REDIS_PORT (pid $REDIS_PID), callgrind front :$CG_PORT; MODE=$MODE
INFO

# ---------------------------------------------------------------- instructions

# client LABEL PORT BODYFILE N: N sequential POSTs on one keepalive connection
# with the headers wrk sends; out/LABEL.first, "status size conns" lines
client() {
    local cfg="$RUN/out/$1.curl" i
    {
        printf 'silent\nshow-error\nhttp1.1\nmax-time = 300\n'
        printf 'header = "Content-Type: application/json"\n'
        printf 'header = "Authorization: Bearer %s"\n' "$CLIENT_KEY"
        printf 'header = "User-Agent:"\nheader = "Accept:"\nheader = "Expect:"\n'
        printf 'data-binary = "@%s"\n' "$3"
        printf 'write-out = "%%{http_code} %%{size_download} %%{num_connects}\\n"\n'
        printf 'url = "http://127.0.0.1:%s/v1/chat/completions"\noutput = "%s"\n' "$2" "$RUN/out/$1.first"
        for i in $(seq 2 "$4"); do
            printf 'url = "http://127.0.0.1:%s/v1/chat/completions"\noutput = "/dev/null"\n' "$2"
        done
    } > "$cfg"
    "$CURL" -K "$cfg" > "$RUN/out/$1.status" 2> "$RUN/out/$1.stderr" \
        || { cat "$RUN/out/$1.stderr" >&2; die "curl failed ($1), see $RUN/out/"; }
    local st="$RUN/out/$1.status" bad
    [ "$(wc -l < "$st")" = "$4" ] || die "$1: $(wc -l < "$st") answers, not $4 (see $st)"
    bad=$(awk -v size="$(wc -c < "$RUN/out/$1.first")" '$1 != 200 || $2 != size || (NR > 1 && $3 != 0)' "$st" | head -3)
    [ -z "$bad" ] || die "$1: an answer is not 200, not of the first one's size, or on a new connection: $bad (see $st)"
    grep -q '"total_tokens":17' "$RUN/out/$1.first" || die "$1: no usage in the answer (see $RUN/out/$1.first)"
}

# cg_run LABEL FRONT N SECONDS: the front under callgrind for SECONDS from its
# start to QUIT, N requests (0: idle) as soon as it listens. Sets R_IR, and
# R_SCRIPTS / R_CALLS (Redis: script calls, all commands) and R_SECS.
cg_run() {
    local label=$1 front=$2 n=$3 secs=$4 out="$RUN/cg/$1.out" pid t0 left total
    if [ "$front" = redis ] || [ "$front" = exact ]; then
        rcli FLUSHALL > /dev/null; rcli CONFIG RESETSTAT > /dev/null
    fi
    t0=$(date +%s%N)
    "$VALGRIND" --tool=callgrind --callgrind-out-file="$out" \
        --log-file="$RUN/logs/$label.valgrind.log" \
        "$NGINX" -p "$RUN" -e "$RUN/logs/$label.startup.log" -c "$RUN/conf/$front-cg.conf" \
        > "$RUN/logs/$label.stdout.log" 2>&1 &
    pid=$!
    PIDS+=("$pid"); NAMES+=("$label")
    wait_listen "$pid" "$CG_PORT" "$label" 120
    if [ "$n" -gt 0 ]; then client "$label" "$CG_PORT" "$(body_of "$front")" "$n"; fi
    left=$(( (t0 + secs * 1000000000 - $(date +%s%N)) / 1000000 ))
    [ "$left" -gt 200 ] || die "$label: start-up and $n requests took longer than ${secs}s under callgrind: raise CL_T"
    sleep "$(calc "$left / 1000" 3)"
    R_SECS=$(calc "($(date +%s%N) - $t0) / 1e9" 2)
    stop_pid "$pid" "$label"; forget_pid "$pid"
    total=$(awk '/^(summary|totals):/ { print $2; exit }' "$out" 2>/dev/null || true)
    [ -n "$total" ] || die "$label: no instruction total in $out (see $RUN/logs/$label.valgrind.log)"
    R_IR=$total; R_SCRIPTS=0; R_CALLS=0
    if [ "$front" = redis ] || [ "$front" = exact ]; then
        rcli INFO commandstats > "$RUN/out/$label.commandstats"
        R_SCRIPTS=$(awk -F'[=,:]' '/^cmdstat_(evalsha|eval):/ { s += $3 } END { print s + 0 }' "$RUN/out/$label.commandstats")
        R_CALLS=$(awk -F'[=,:]' '/^cmdstat_ping:/ { s += $3 } END { print s + 0 }' "$RUN/out/$label.commandstats")
    fi
    note "$(printf '%-16s %5s req %6ss: %13s Ir  redis: %5s script calls, %5s PINGs' "$label" "$n" "$R_SECS" "$R_IR" "$R_SCRIPTS" "$R_CALLS")"
}

declare -A IR SC CA SE PR
if [ "$DO_CG" = 1 ]; then
    CG_FRONTS=(plain gw auth authdef client redis)
    [ "$EXACT_STATE" = ok ] && CG_FRONTS+=(exact)
    note "instructions: $N1 and $N2 requests per run, ${CG_T}s per run"
    for f in "${CG_FRONTS[@]}"; do
        for n in "$N1" "$N2"; do
            cg_run "$f-$n" "$f" "$n" "$CG_T"
            IR[$f.$n]=$R_IR; SC[$f.$n]=$R_SCRIPTS; CA[$f.$n]=$R_CALLS; SE[$f.$n]=$R_SECS
        done
    done
    # the timer alone: idle runs of CG_T and 2 CG_T seconds, with and without Redis
    for f in client redis; do
        for s in "$CG_T" $((2 * CG_T)); do
            cg_run "$f-idle-$s" "$f" 0 "$s"
            IR[$f.idle.$s]=$R_IR; SC[$f.idle.$s]=$R_SCRIPTS; CA[$f.idle.$s]=$R_CALLS; SE[$f.idle.$s]=$R_SECS
        done
    done
    # what one round pushes: the hash tags (one per key and client) Redis holds
    ITEMS=$(rcli --scan | sed -n 's/^[^{]*{\([^}]*\)}.*/\1/p' | sort -u | wc -l)
fi

# ---------------------------------------------------------------- wall clock

# run_wrk NAME PORT MODEL THREADS CONNS SECONDS HISTFILE [CPU]
run_wrk() {
    local name=$1 out="$RUN/wrk/$1.txt" line pin=()
    [ -n "${8:-}" ] && pin=(taskset -c "${8}")
    BENCH_MODEL=$3 BENCH_STREAM=0 BENCH_HIST=$7 "${pin[@]}" "$WRK" -t"$4" -c"$5" \
        -d"$6s" --latency -s "$BENCH_DIR/post.lua" "http://127.0.0.1:$2/v1/chat/completions" > "$out" 2>&1 \
        || { cat "$out" >&2; die "wrk failed ($name)"; }
    line=$(grep '^@@BENCH ' "$out" | tail -1) || { cat "$out" >&2; die "wrk printed no result line ($name)"; }
    eval "$(echo "$line" | awk '{
        for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] }
        d = v["duration_us"] > 0 ? v["duration_us"] : 1
        printf "R_REQ=%d R_DUR=%d R_P50=%d R_P99=%d R_ERR=%d\n",
            v["requests"], d, v["p50"], v["p99"],
            v["err_connect"] + v["err_read"] + v["err_write"] + v["err_status"] + v["err_timeout"]
    }')"
    if [ "$R_ERR" -gt 0 ]; then
        ERRORS=$((ERRORS + R_ERR)); note "$name: $R_ERR errors (socket errors or non-2xx), see $out"
    fi
}
hist_pct() {   # percentiles of the merged histogram files named on stdin
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

ERRORS=0
declare -A WREQ WDUR WPID
if [ "$DO_WALL" = 1 ]; then
    for f in "${FRONTS[@]}"; do
        if [ "$f" = redis ]; then
            rcli FLUSHALL > /dev/null; rcli CONFIG RESETSTAT > /dev/null; WALL_T0=$(date +%s%N)
        fi
        [ "$f" = exact ] && rcli FLUSHALL > /dev/null
        start_nginx "$f" "$f.conf" "${FPORT[$f]}"
        WPID[$f]=$STARTED
        out="$RUN/out/preflight-$f"
        st=$(curl -sS -o "$out" -w '%{http_code}' --max-time 10 -H 'Content-Type: application/json' \
             -H "Authorization: Bearer $CLIENT_KEY" --data-binary "@$(body_of "$f")" \
             "http://127.0.0.1:${FPORT[$f]}/v1/chat/completions" || true)
        [ "$st" = 200 ] && grep -q '"total_tokens":17' "$out" \
            || { head -c 400 "$out" >&2; die "preflight $f: HTTP $st"; }
    done
    # every Redis front's worker is connected (its sync pushes, or PINGs)
    if [ "${WPID[redis]:-}" ]; then
        sleep 0.5
        rcli CLIENT LIST | grep -q 'name=nginx-conductor-' || die "no nginx worker is connected to redis-server"
    fi

    LAT_CPU=""
    if [ "$LAT_PIN" = 1 ] && [ "$(nproc)" -gt 1 ] && command -v taskset >/dev/null 2>&1; then
        LAT_CPU=${LAT_CPUS:-0}
    fi
    ALL_CPUS="0-$(($(nproc) - 1))"
    pin_all() {   # every nginx process and redis-server on CPU list $1
        local pid
        for pid in "${WPID[@]}" "$REDIS_PID"; do
            for p in "$pid" $(pgrep -P "$pid" || true); do
                taskset -a -p -c "$1" "$p" > /dev/null 2>&1 || note "cannot pin pid $p"
            done
        done
    }

    nf=${#FRONTS[@]}
    # wmeasure KIND ROUND THREADS CONNS SECONDS [CPU]: every front SECONDS in
    # SLICES slices; the order rotates each slice and reverses every other one
    wmeasure() {
        local kind=$1 r=$2 slice=$(($5 / SLICES)) s k j f order line
        [ "$slice" -lt 1 ] && slice=1
        for s in $(seq 1 "$SLICES"); do
            order=()
            for k in $(seq 0 $((nf - 1))); do
                j=$(( (k + s + r) % nf ))
                order+=("${FRONTS[$j]}")
            done
            if [ $((s % 2)) = 0 ]; then
                local rev=(); for ((k = nf - 1; k >= 0; k--)); do rev+=("${order[$k]}"); done; order=("${rev[@]}")
            fi
            line="  r$r $kind $s/$SLICES:"
            for f in "${order[@]}"; do
                run_wrk "$kind-$f-r$r-s$s" "${FPORT[$f]}" "$(model_of "$f")" "$3" "$4" "$slice" \
                    "$RUN/wrk/$kind-$f-r$r-s$s.hist" "${6:-}"
                WREQ[$kind.$f]=$(( ${WREQ[$kind.$f]:-0} + R_REQ )); WDUR[$kind.$f]=$(( ${WDUR[$kind.$f]:-0} + R_DUR ))
                WREQ[$kind.$f.$r]=$(( ${WREQ[$kind.$f.$r]:-0} + R_REQ )); WDUR[$kind.$f.$r]=$(( ${WDUR[$kind.$f.$r]:-0} + R_DUR ))
                if [ "$kind" = lat ]; then line="$line $f ${R_P50}/${R_P99}us"
                else line="$line $f $(calc "$R_REQ * 1e6 / $R_DUR" 0)"; fi
            done
            echo "$line" >&2
        done
    }
    note "wall clock: ${FRONTS[*]}; $ROUNDS rounds, ${DURATION}s (throughput) and ${LAT_DURATION}s (latency) per front per round, $SLICES slices"
    for f in "${FRONTS[@]}"; do run_wrk "warmup-$f" "${FPORT[$f]}" "$(model_of "$f")" "$THREADS" "$CONNECTIONS" 2 ""; done
    ERRORS=0
    for r in $(seq 1 "$ROUNDS"); do
        wmeasure json "$r" "$THREADS" "$CONNECTIONS" "$DURATION"
        [ -n "$LAT_CPU" ] && pin_all "$LAT_CPU"
        wmeasure lat "$r" 1 1 "$LAT_DURATION" "$LAT_CPU"
        [ -n "$LAT_CPU" ] && pin_all "$ALL_CPUS"
    done
    # the Redis front really synced during the runs
    rcli INFO commandstats > "$RUN/out/wall.commandstats"
    WALL_SCRIPTS=$(awk -F'[=,:]' '/^cmdstat_(evalsha|eval):/ { s += $3 } END { print s + 0 }' "$RUN/out/wall.commandstats")
    WALL_SECS=$(calc "($(date +%s%N) - $WALL_T0) / 1e9" 1)
    [ "$WALL_SCRIPTS" -gt 0 ] || die "the Redis front made no script call during the wall-clock runs (see $RUN/logs/redis.error.log)"
fi

# ---------------------------------------------------------------- report

MISSED=0
judge() { if [ "$(awk "BEGIN { print ($1) ? 1 : 0 }")" = 1 ]; then V=ok; else V=MISSED; MISSED=$((MISSED + 1)); fi; }

echo
echo "== client keys and Redis: plain proxy_pass, the gateway, and the gateway with"
echo "   conductor_auth, a client's limits and budget, conductor_redis (redis-server on loopback)"
echo "   module $MODULE_SRC of $MODULE_TIME, md5 $MODULE_MD5"

if [ "$DO_CG" = 1 ]; then
    d=$((N2 - N1))
    # the Redis timer: Ir per script call from the idle runs (two lengths,
    # so start-up cancels), minus what the same idle time costs without Redis
    s1=$CG_T; s2=$((2 * CG_T))
    idle_nr=$(calc "(${IR[client.idle.$s2]} - ${IR[client.idle.$s1]}) / (${SE[client.idle.$s2]} - ${SE[client.idle.$s1]})" 0)
    dsc=$(( SC[redis.idle.$s2] - SC[redis.idle.$s1] ))
    [ "$dsc" -gt 0 ] || die "the idle Redis runs made no more script calls in ${s2}s than in ${s1}s"
    per_call=$(calc "(${IR[redis.idle.$s2]} - ${IR[redis.idle.$s1]} - $idle_nr * (${SE[redis.idle.$s2]} - ${SE[redis.idle.$s1]})) / $dsc" 0)
    calls_s=$(calc "$dsc / (${SE[redis.idle.$s2]} - ${SE[redis.idle.$s1]})" 2)
    # a second has 1000 / 100 rounds of ITEMS calls (nginx not slowed down;
    # under callgrind fewer rounds fit, the wall-clock part counts the real rate)
    nominal_s=$((ITEMS * 10))
    timer_s=$(calc "$per_call * $nominal_s" 0)
    # where the timer's instructions go: inclusive cost of a few functions,
    # the long idle run minus the short one, per script call
    incl() {   # incl FILE FUNCTION -> inclusive Ir (the largest of its lines)
        callgrind_annotate --inclusive=yes "$1" 2>/dev/null \
            | awk -v fn="$2" '{ gsub(",", "", $1) } $0 ~ (":" fn "( |$)") && $1 + 0 > m { m = $1 + 0 } END { print m + 0 }'
    }
    BREAKDOWN=""
    if command -v callgrind_annotate > /dev/null 2>&1; then
        for fn in ngx_http_conductor_sync_push redisFormatCommandArgv __sprintf_chk ngx_http_conductor_redis_read_handler ngx_http_conductor_redis_write_handler; do
            a=$(incl "$RUN/cg/redis-idle-$s1.out" "$fn"); b=$(incl "$RUN/cg/redis-idle-$s2.out" "$fn")
            BREAKDOWN="$BREAKDOWN $fn $(calc "($b - $a) / $dsc" 0)"
        done
    fi
    # per request: the two runs' script calls differ a little (start-up time
    # under callgrind varies): that many calls' cost taken out
    for f in "${CG_FRONTS[@]}"; do
        PR[$f]=$(calc "((${IR[$f.$N2]} - ${SC[$f.$N2]} * $per_call) - (${IR[$f.$N1]} - ${SC[$f.$N1]} * $per_call)) / $d" 0)
    done
    echo
    echo "-- instructions per request (callgrind, the front's one process), small JSON chat, one keepalive connection"
    echo "   (Ir(${N2} req) - Ir(${N1} req)) / $d, both runs ${CG_T}s from start to QUIT; Redis script calls' cost taken out (below)"
    printf '   %-36s %9s %9s %10s %9s\n' front "Ir/req" "vs plain" "vs gateway" "added"
    prev=""
    for f in "${CG_FRONTS[@]}"; do
        base=${prev:-$f}
        [ "$f" = authdef ] && base=auth
        [ "$f" = client ] && base=auth
        [ "$f" = exact ] && base=client
        printf '   %-36s %9s %9s %10s %+9d\n' "${LABEL[$f]}" "${PR[$f]}" "$(calc "${PR[$f]} / ${PR[plain]}" 3)" \
            "$(calc "${PR[$f]} / ${PR[gw]}" 3)" $(( PR[$f] - PR[$base] ))
        [ "$f" = authdef ] || prev=$f
    done
    echo "   added: over the row above (auth variants over the gateway, client over auth, Redis over client)"
    echo
    echo "-- the Redis timer (sync=100ms), idle runs of ${s1}s and ${s2}s, same front, no request"
    echo "   script calls (EVALSHA, one per key and client a round, $ITEMS of them): ${SC[redis.idle.$s1]} and ${SC[redis.idle.$s2]}; PINGs ${CA[redis.idle.$s1]} and ${CA[redis.idle.$s2]}"
    echo "   per script call $per_call Ir (push built, sent, reply read and applied, timer, event loop);"
    echo "   10 rounds/s x $ITEMS calls -> $timer_s Ir per second (the idle runs under callgrind: $(calc "$calls_s / $ITEMS" 1) rounds/s);"
    echo "   the same front without Redis, idle: $idle_nr Ir/s"
    if [ -n "$BREAKDOWN" ]; then
        echo "   per script call, inclusive:$(echo "$BREAKDOWN" | awk '{ for (i = 1; i < NF; i += 2) printf "%s %s%s", $i, $(i + 1), (i + 2 < NF ? ";" : "") }')"
    fi
    echo
    echo "-- sync=100ms against no Redis, per request, the timer's cost shared by the requests of a second"
    printf '   %-14s %12s %12s %8s   target <= %sx\n' "requests/s" "no Redis" "sync=100ms" ratio "$TARGET_REDIS"
    RATES="100 1000 10000"
    [ "$DO_WALL" = 1 ] && WRATE=$(calc "${WREQ[json.redis]} * 1e6 / ${WDUR[json.redis]}" 0) && RATES="$RATES $WRATE"
    for rate in $RATES; do
        with=$(calc "${PR[redis]} + $timer_s / $rate" 0)
        ratio=$(calc "$with / ${PR[client]}" 3)
        tag=""
        if [ "${WRATE:-}" = "$rate" ] || { [ -z "${WRATE:-}" ] && [ "$rate" = 10000 ]; }; then
            judge "$ratio <= $TARGET_REDIS"; tag="  [$V]"
            [ -n "${WRATE:-}" ] && tag="$tag (the rate wrk reached on it below)"
        fi
        printf '   %-14s %12s %12s %8s%s\n' "$rate" "${PR[client]}" "$with" "$ratio" "$tag"
    done
    echo "   without the timer (requests only): $(calc "${PR[redis]} / ${PR[client]}" 3)x"
    if [ "$MODE" = exact ] && [ "$EXACT_STATE" != ok ]; then
        echo "   sync=0: $EXACT_STATE"
    fi
fi

if [ "$DO_WALL" = 1 ]; then
    rps() { calc "${WREQ[$1]} * 1e6 / ${WDUR[$1]}" 1; }
    echo
    echo "-- wall clock, JSON chat, $THREADS threads x $CONNECTIONS connections, ${DURATION}s per front per round (wrk; swings 30 % run to run)"
    printf '   %-36s %10s %9s %10s  %s\n' front "req/s" "vs plain" "vs gateway" "rounds (req/s)"
    for f in "${FRONTS[@]}"; do
        rr=""; for r in $(seq 1 "$ROUNDS"); do rr="$rr $(calc "${WREQ[json.$f.$r]} * 1e6 / ${WDUR[json.$f.$r]}" 0)"; done
        printf '   %-36s %10s %9s %10s %s\n' "${LABEL[$f]}" "$(rps "json.$f")" \
            "$(calc "${WREQ[json.$f]} * ${WDUR[json.plain]} / (${WDUR[json.$f]} * ${WREQ[json.plain]})" 3)" \
            "$(calc "${WREQ[json.$f]} * ${WDUR[json.gw]} / (${WDUR[json.$f]} * ${WREQ[json.gw]})" 3)" "$rr"
    done
    wr=$(calc "${WREQ[json.redis]} * ${WDUR[json.client]} / (${WDUR[json.redis]} * ${WREQ[json.client]})" 3)
    judge "$wr >= 1 / $TARGET_REDIS"
    echo "   sync=100ms / no Redis (client front): $wr   target >= $(calc "1 / $TARGET_REDIS" 3) (within 3 %)  [$V]"
    echo "   auth / gateway: $(calc "${WREQ[json.auth]} * ${WDUR[json.gw]} / (${WDUR[json.auth]} * ${WREQ[json.gw]})" 3);  client / auth: $(calc "${WREQ[json.client]} * ${WDUR[json.auth]} / (${WDUR[json.client]} * ${WREQ[json.auth]})" 3)"
    echo "   script calls to redis-server during the wall-clock runs: $WALL_SCRIPTS in ${WALL_SECS}s ($(calc "$WALL_SCRIPTS / $WALL_SECS" 1)/s)"
    echo
    echo "-- latency, 1 connection, ${LAT_DURATION}s per front per round${LAT_CPU:+, wrk, nginx and redis-server on CPU $LAT_CPU} (microseconds)"
    printf '   %-36s %6s %6s %13s %13s\n' front p50 p99 "added p50" "added p99"
    declare -A P50 P99
    for f in "${FRONTS[@]}"; do
        read -r P50[$f] P99[$f] <<< "$(find "$RUN/wrk" -name "lat-$f-r*-s*.hist" | hist_pct 50 99)"
    done
    for f in "${FRONTS[@]}"; do
        base=gw; [ "$f" = plain ] && base=plain
        [ "$f" = redis ] || [ "$f" = exact ] && base=client
        printf '   %-36s %6s %6s %13s %13s\n' "${LABEL[$f]}" "${P50[$f]}" "${P99[$f]}" \
            "$((P50[$f] - P50[$base])) vs $base" "$((P99[$f] - P99[$base])) vs $base"
    done
    if [ "$MODE" = exact ]; then
        if [ "$EXACT_STATE" = ok ]; then
            a99=$((P99[exact] - P99[client]))
            judge "$a99 < $TARGET_EXACT_P99_US"
            echo "   sync=0: added p50 $((P50[exact] - P50[client])) us, p99 $a99 us over no Redis, target p99 < $TARGET_EXACT_P99_US us  [$V]"
        else
            echo "   sync=0: $EXACT_STATE"
        fi
    fi
fi

echo
if [ "$ERRORS" -gt 0 ]; then
    echo "RESULT: $ERRORS errors during the wrk runs (see $RUN/wrk/): the wall-clock figures are not valid"
    exit 1
fi
if [ "$MISSED" -gt 0 ]; then
    echo "RESULT: $MISSED targets missed"
    [ "$STRICT" = 1 ] && exit 1
else
    echo "RESULT: every target judged here met"
fi
exit 0
