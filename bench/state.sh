#!/usr/bin/env bash
# bench/state.sh: what conductor_state_file costs, for zones of 10, 1000 and
# 10000 nodes (see "State file" in bench/README.md):
#
#   snapshot   in the worker's event loop: the copy under the zone lock (and,
#              in brackets, how long the lock is held)
#   format     JSON, in a thread of nginx's pool (in the worker on exit)
#   write      write + fsync + rename + fsync of the directory, in the thread
#   exit       format + write in the exiting worker (synchronous)
#   load       read + parse + check + apply in the master at start
#
# The figures are the module's own debug lines (error_log debug), medians
# over WRITES interval writes. nginx listens on 127.0.0.1 only and is stopped
# by its PID.

set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH_DIR/.." && pwd)

NGINX=${NGINX:-nginx}
MODULE=${MODULE:-$REPO/build/ngx_http_conductor_module.so}
RUN=${BENCH_RUN:-$REPO/build/bench-state}
PORT=${BENCH_STATE_PORT:-18480}
WRITES=${WRITES:-15}
SIZES=${NODES:-10 1000 10000}

[ -f "$MODULE" ] || { echo "bench/state.sh: no $MODULE (make build)" >&2; exit 1; }

pid=
cleanup() { [ -n "$pid" ] && kill -QUIT "$pid" 2>/dev/null || true; }
trap cleanup EXIT

# the workers must write in the run directory: as root, run them as root
user_line() {
    [ "$(id -u)" = 0 ] && echo "user root root;" || true
}

# nodes = gateway + 2 pass-through aliases + provider p + its keys (at most
# 100: the pass-through aliases take every key of their dialect, 256 at most)
# + aliases m0, m1, ...
conf() {
    local dir=$1 nodes=$2 keys aliases i
    keys=$(( nodes - 5 < 100 ? nodes - 5 : 100 ))
    aliases=$(( nodes - 4 - keys ))
    {
        echo "load_module $MODULE;"
        user_line
        echo "worker_processes 1; daemon on; master_process on;"
        echo "error_log logs/error.log debug; pid logs/nginx.pid;"
        echo "events { worker_connections 64; }"
        echo "http {"
        echo "  conductor_zone conductor:64m;"
        echo "  conductor_provider p { url http://127.0.0.1:9/v1;"
        for ((i = 0; i < keys; i++)); do echo "    key k$i s$i rpm=100 tpm=100000;"; done
        echo "  }"
        for ((i = 0; i < aliases; i++)); do echo "  conductor_model m$i { p pm; }"; done
        echo "  conductor_state_file $dir/state.json interval=200ms;"
        echo "  server { listen 127.0.0.1:$PORT; location / { return 204; } }"
        echo "}"
    } > "$dir/conf/nginx.conf"
}

start() {
    local dir=$1
    "$NGINX" -p "$dir/" -c conf/nginx.conf
    pid=$(cat "$dir/logs/nginx.pid")
}

stop() {
    kill -QUIT "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    pid=
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }

# field N (1-based) of the numbers in the interval-write debug lines
field() {
    grep 'state file written' "$1" | grep 'in a thread' \
        | sed -E 's/.*snapshot ([0-9]+) us \(zone locked ([0-9]+) us\); in a thread: format ([0-9]+) us, write, fsync and rename ([0-9]+) us.*/\1 \2 \3 \4/' \
        | awk -v f="$2" '{ print $f }' | median
}

printf '%7s %9s %8s %12s %10s %10s %14s %9s\n' nodes bytes snapshot "(locked)" format write "exit fmt+wr" load
for n in $SIZES; do
    dir=$RUN/$n
    rm -rf "$dir"
    mkdir -p "$dir/conf" "$dir/logs"
    conf "$dir" "$n"

    start "$dir"
    deadline=$((SECONDS + 60))
    until [ "$(grep -c 'state file written.*in a thread' "$dir/logs/error.log" || true)" -ge "$WRITES" ]; do
        [ $SECONDS -lt $deadline ] || { echo "no $WRITES writes in 60 s" >&2; exit 1; }
        sleep 0.2
    done
    stop
    cp "$dir/logs/error.log" "$dir/run1.log"

    # the load: a start from that file
    start "$dir"
    stop

    log=$dir/run1.log
    nodes=$(grep -m1 'state file written' "$log" | sed -E 's/.*written: ([0-9]+) nodes.*/\1/')
    bytes=$(grep -m1 'state file written' "$log" | sed -E 's/.* ([0-9]+) bytes.*/\1/')
    exitl=$(grep 'state file written.*in the worker: format' "$log" | tail -1 \
            | sed -E 's/.*format ([0-9]+) us, write, fsync and rename ([0-9]+) us.*/\1+\2/')
    load=$(grep -o 'loaded in [0-9]* ms' "$dir/logs/error.log" | tail -1 | grep -o '[0-9]*')
    printf '%7s %9s %6s us %9s us %7s us %7s us %11s us %6s ms\n' "$nodes" "$bytes" \
        "$(field "$log" 1)" "$(field "$log" 2)" "$(field "$log" 3)" "$(field "$log" 4)" \
        "$exitl" "${load:--}"
done
