#!/usr/bin/env bash
# make docker-test: the image built and run for real with podman (TAP).
#
# The image is built (docker/lib.sh: the base made with debootstrap once
# and cached in build/docker), then run with each CONDUCTOR_* variable:
# requests through 127.0.0.1:PORT (free ports, published on loopback
# only, slirp4netns: never the host's network), mounted configurations,
# bad ones refused, SIGTERM, secrets kept out of the logs.  Every
# container carries this run's label and is removed at the end, whatever
# happened.  Exit status: 0 when every test passed.
set -u

. "$(dirname "$0")/lib.sh"
docker_setup

LABEL=conductor-docker-test=$$
PFX=conductor-test-$$
TMP=$(mktemp -d "$DOCKER_DIR/test.XXXXXX")
PIDS=()
n=0
failed=0

cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    podman ps -aq --filter "label=$LABEL" | xargs -r podman rm -f -t 0 \
        > /dev/null 2>&1
    rm -rf "$TMP"
    docker_teardown
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# --- TAP -------------------------------------------------------------------

ok() {
    n=$((n + 1))
    echo "ok $n - $1"
}

not_ok() {
    local l
    n=$((n + 1))
    failed=$((failed + 1))
    echo "not ok $n - $1"
    shift
    for l in "$@"; do
        printf '%s\n' "$l" | head -c 2000 | sed 's/^/#   /'
    done
}

# check DESCRIPTION COMMAND...: ok when the command succeeds
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what" "failed: $*"; fi
}

# contains FILE TEXT / lacks FILE TEXT (fixed strings)
contains() { grep -qF -- "$2" "$1"; }
lacks() { ! grep -qF -- "$2" "$1"; }

# --- helpers ---------------------------------------------------------------

free_port() {
    perl -MIO::Socket::INET -e '
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                                      LocalPort => 0, Listen => 1) or die;
        print $s->sockport, "\n"'
}

# start NAME [podman run options]: a detached container of this run
start() {
    local name=$PFX-$1
    shift
    podman run -d --name "$name" --label "$LABEL" --network=slirp4netns \
        "$@" "$DOCKER_IMAGE" > /dev/null
}

running() {
    [ "$(podman inspect -f '{{.State.Running}}' "$PFX-$1" 2>/dev/null)" = true ]
}

# ready NAME PORT: /v1/models answers through the published port
ready() {
    local i
    for i in $(seq 1 60); do
        curl -s -o /dev/null -m 2 "http://127.0.0.1:$2/v1/models" && return 0
        running "$1" || return 1
        sleep 0.5
    done
    return 1
}

# logs NAME: its stdout and stderr in $TMP/NAME.out, $TMP/NAME.err
logs() {
    podman logs "$PFX-$1" > "$TMP/$1.out" 2> "$TMP/$1.err"
}

exit_code() {
    podman inspect -f '{{.State.ExitCode}}' "$PFX-$1"
}

# terminate NAME COMMAND...: stopped so; then its logs, its exit $code and
# the seconds it $took
terminate() {
    local name=$1 t0=$SECONDS
    shift
    "$@" > /dev/null 2>&1
    timeout 60 podman wait "$PFX-$name" > /dev/null 2>&1
    took=$((SECONDS - t0))
    logs "$name"
    code=$(exit_code "$name")
}

# graceful NAME: the entrypoint sent QUIT, nginx's workers shut down so
graceful() {
    contains "$TMP/$1.err" "SIGTERM: nginx stops gracefully" \
        && contains "$TMP/$1.err" "gracefully shutting down"
}

# chat PORT MODEL [curl options]: the answer's body
chat() {
    local port=$1 model=$2
    shift 2
    curl -s -m 20 "$@" "http://127.0.0.1:$port/v1/chat/completions" \
        -d "{\"model\":\"$model\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}"
}

# status_requests PORT: totals.requests of the status JSON
status_requests() {
    curl -s -m 10 "http://127.0.0.1:$1/conductor/status" \
        | perl -MJSON::PP -e 'local $/; my $j = eval { decode_json(<STDIN>) };
                              print $j ? $j->{totals}{requests} : "none"'
}

# once NAME [podman run options]: run to its end in the foreground;
# output in $TMP/NAME.out and .err, exit status in $TMP/NAME.rc
once() {
    local name=$1
    shift
    timeout 120 podman run --rm --name "$PFX-$name" --label "$LABEL" \
        --network=slirp4netns "$@" "$DOCKER_IMAGE" \
        > "$TMP/$name.out" 2> "$TMP/$name.err"
    echo $? > "$TMP/$name.rc"
}

# --- the image ---------------------------------------------------------------

echo "# building the base image (cached) and $DOCKER_IMAGE"
t0=$SECONDS
if docker_base && docker_build; then
    ok "the image builds (base and build: $((SECONDS - t0)) s)"
else
    not_ok "the image builds"
    echo "1..$n"
    echo "docker-test: 0 passed, $failed failed"
    exit 1
fi

# the configurations mounted into the containers below (their folder,
# read-only, as /etc/conductor)
mkdir -p "$TMP/conf"

# mounted.conf: no load_module (the entrypoint adds it), an error_log of
# its own (replaced by stderr), a neighbour file included by a relative
# name, the gateway on 127.0.0.1:8080 (the entrypoint moves it)
cat > "$TMP/conf/mounted.conf" <<'EOF'
worker_processes 1;
error_log /var/log/nginx/mounted-error.log warn;
events { worker_connections 256; }
http {
    include conductor_log.conf;
    access_log /dev/stdout conductor_json;
    conductor_provider mounted-mock {
        url http://127.0.0.1:8101/v1;
        key mounted-1 mounted-key-1 rpm=1000;
        key env-1 env=CONDUCTOR_TEST_KEY rpm=1000;
    }
    include mounted-models.conf;
    upstream conductor_backend { conductor_balancer; }
    server {
        listen 127.0.0.1:8080;
        location /v1/ { conductor_route; include conductor_proxy.conf; }
        location = /v1/models { conductor_models; }
    }
    server {
        listen 127.0.0.1:8101;
        access_log off;
        location / { conductor_mock delay=MOCK_DELAY; }
    }
}
EOF
cat > "$TMP/conf/mounted-models.conf" <<'EOF'
conductor_model mounted { mounted-mock mock-mounted; }
EOF
# a slow mock (a word every 300 ms) for the stream in flight at SIGTERM
sed 's/MOCK_DELAY/300ms/' "$TMP/conf/mounted.conf" > "$TMP/conf/slow.conf"
sed -i 's/MOCK_DELAY/1ms/' "$TMP/conf/mounted.conf"
# bad.conf: a provider that does not exist, on line 9
sed '9s/.*/    conductor_model broken { no-such-provider m; }/' \
    "$TMP/conf/mounted.conf" > "$TMP/conf/bad.conf"
MOUNT=(-v "$TMP/conf:/etc/conductor:ro")

# --- 1. no variables: the embedded mock on 0.0.0.0:8000 ------------------------

P1=$(free_port)
start default -p "127.0.0.1:$P1:8000"
if ready default "$P1"; then
    ok "no variables: the gateway answers on 127.0.0.1:$P1"
else
    logs default
    not_ok "no variables: the gateway answers on 127.0.0.1:$P1" \
        "$(cat "$TMP/default.err")"
fi
before=$(status_requests "$P1")
body=$(chat "$P1" fast)
if [[ $body == *'"content":"Hello from mock-small!'* ]]; then
    ok "no variables: a chat request gets the mock's answer"
else
    not_ok "no variables: a chat request gets the mock's answer" "$body"
fi
stream=$(curl -sN -m 20 "http://127.0.0.1:$P1/v1/chat/completions" \
    -d '{"model":"fast","stream":true,"messages":[{"role":"user","content":"hi"}]}')
if [[ $stream == *'data: [DONE]'* && $stream == *'"content":"mock'* ]]; then
    ok "no variables: a streamed answer ends with [DONE]"
else
    not_ok "no variables: a streamed answer ends with [DONE]" "$stream"
fi
after=$(status_requests "$P1")
if [ "$before" = 0 ] && [ "$after" = 2 ]; then
    ok "no variables: the status JSON counts them (totals.requests $before, then $after)"
else
    not_ok "no variables: the status JSON counts them" \
        "totals.requests before: $before, after: $after (want 0, 2)"
fi
logs default
check "the usage log (JSON) on stdout" \
    contains "$TMP/default.out" '"model":"fast"'
check "INFO: nginx's notice lines on stderr, no debug line" \
    eval 'contains "$TMP/default.err" "[notice]" && lacks "$TMP/default.err" "[debug]"'
check "the entrypoint says where it listens: 0.0.0.0:8000" \
    contains "$TMP/default.err" "listen 0.0.0.0:8000"

# --- 7a. podman stop (SIGTERM): a graceful stop, exit 0 ----------------------

terminate default podman stop -t 20 "$PFX-default"
if [ "$code" = 0 ] && graceful default; then
    ok "podman stop: SIGTERM becomes QUIT, nginx shuts down gracefully, exit 0 (${took} s)"
else
    not_ok "podman stop: SIGTERM becomes QUIT, nginx shuts down gracefully, exit 0" \
        "exit code $code after ${took} s" "$(tail -20 "$TMP/default.err")"
fi

# --- 2. CONDUCTOR_PORT, CONDUCTOR_HOST ---------------------------------------

P2=$(free_port)
P2OLD=$(free_port)
start port -e CONDUCTOR_PORT=9123 -p "127.0.0.1:$P2:9123" \
    -p "127.0.0.1:$P2OLD:8000"
ready port "$P2"
body=$(chat "$P2" fast)
if [[ $body == *'Hello from mock-small!'* ]]; then
    ok "CONDUCTOR_PORT=9123: served on 9123 (mapped to $P2)"
else
    logs port
    not_ok "CONDUCTOR_PORT=9123: served on 9123" "$body" "$(cat "$TMP/port.err")"
fi
body=$(chat "$P2OLD" fast)
if [[ $body != *'Hello from'* ]]; then
    ok "CONDUCTOR_PORT=9123: nothing answers on 8000 any more"
else
    not_ok "CONDUCTOR_PORT=9123: nothing answers on 8000 any more" "$body"
fi

# CONDUCTOR_HOST: loopback only inside the container, so the port map
# (which comes from the container's network) reaches nothing
P3=$(free_port)
start host -e CONDUCTOR_HOST=127.0.0.1 -p "127.0.0.1:$P3:8000"
sleep 2
logs host
body=$(chat "$P3" fast)
inside=$(podman exec "$PFX-host" bash -c '
    exec 3<>/dev/tcp/127.0.0.1/8000 || exit 1
    printf "GET /v1/models HTTP/1.0\r\n\r\n" >&3
    cat <&3' 2>&1)
if contains "$TMP/host.err" "listen 127.0.0.1:8000" \
   && [[ $inside == *'"fast"'* ]] && [[ $body != *'Hello from'* ]]
then
    ok "CONDUCTOR_HOST=127.0.0.1: served inside the container only"
else
    not_ok "CONDUCTOR_HOST=127.0.0.1: served inside the container only" \
        "inside: $inside" "through the map: $body" "$(cat "$TMP/host.err")"
fi

# --- 3. CONDUCTOR_LOG_LEVEL ----------------------------------------------------

P4=$(free_port)
start debug -e CONDUCTOR_LOG_LEVEL=DEBUG -p "127.0.0.1:$P4:8000"
ready debug "$P4"
chat "$P4" fast > /dev/null
logs debug
check "CONDUCTOR_LOG_LEVEL=DEBUG: nginx's debug lines on stderr" \
    contains "$TMP/debug.err" "[debug]"

P5=$(free_port)
start error -e CONDUCTOR_LOG_LEVEL=ERROR -p "127.0.0.1:$P5:8000"
ready error "$P5"
body=$(chat "$P5" fast)
# a file that is not there: an [error] line
curl -s -o /dev/null -m 10 "http://127.0.0.1:$P5/no-such-file"
sleep 0.5
logs error
if [[ $body == *'Hello from mock-small!'* ]] \
   && contains "$TMP/error.err" "[error]" \
   && lacks "$TMP/error.err" "[info]" && lacks "$TMP/error.err" "[notice]" \
   && lacks "$TMP/error.err" "[debug]"
then
    ok "CONDUCTOR_LOG_LEVEL=ERROR: error lines only (no info, notice, debug)"
else
    not_ok "CONDUCTOR_LOG_LEVEL=ERROR: error lines only" "$body" \
        "$(cat "$TMP/error.err")"
fi

# --- 4. CONDUCTOR_CONFIG_PATH: a mounted nginx conf --------------------------

P6=$(free_port)
start mounted "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/mounted.conf \
    -e CONDUCTOR_TEST_KEY=unused -p "127.0.0.1:$P6:8000"
ready mounted "$P6"
body=$(chat "$P6" mounted)
models=$(curl -s -m 10 "http://127.0.0.1:$P6/v1/models")
logs mounted
if [[ $body == *'Hello from mock-mounted!'* && $models == *'"mounted"'* ]]; then
    ok "CONDUCTOR_CONFIG_PATH=a mounted conf: its alias served (neighbour include, snippets, module loaded)"
else
    not_ok "CONDUCTOR_CONFIG_PATH=a mounted conf: its alias served" \
        "$body" "$models" "$(cat "$TMP/mounted.err")"
fi
check "a mounted conf: its first listen 127.0.0.1:8080 becomes 0.0.0.0:8000" \
    contains "$TMP/mounted.err" "listen 0.0.0.0:8000 (its first listen was 127.0.0.1:8080)"
check "a mounted conf: its error_log replaced by stderr" \
    contains "$TMP/mounted.err" "[notice]"

# --- 5. a Conductor config.yaml, converted at start --------------------------

if podman run --rm --network=none --entrypoint sh "$DOCKER_IMAGE" \
       -c 'command -v conductor-convert' > /dev/null 2>&1
then
    echo "# conductor-convert is in the image: the config.yaml tests"
    YAML_TESTS=1
else
    ok "# SKIP a config.yaml converted: no conductor-convert in the image"
    YAML_TESTS=
fi

# --- 6. bad configurations: a clear message, a non-zero exit -----------------

once bad "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/bad.conf
if [ "$(cat "$TMP/bad.rc")" != 0 ] \
   && contains "$TMP/bad.err" "/etc/conductor/bad.conf:9" \
   && contains "$TMP/bad.err" "conductor-entrypoint: error: the configuration, /etc/conductor/bad.conf, is not valid"
then
    ok "a bad conf: exit $(cat "$TMP/bad.rc"), nginx -t's message names the file and line"
else
    not_ok "a bad conf: exit non-zero, a clear message" \
        "exit $(cat "$TMP/bad.rc")" "$(cat "$TMP/bad.err")"
fi

once missing -e CONDUCTOR_CONFIG_PATH=/etc/conductor/none.conf
once level -e CONDUCTOR_LOG_LEVEL=LOUD
once badport -e CONDUCTOR_PORT=80000
for t in "missing:no such file" "level:CONDUCTOR_LOG_LEVEL=LOUD: use DEBUG" \
         "badport:CONDUCTOR_PORT=80000: not a port"
do
    name=${t%%:*}
    if [ "$(cat "$TMP/$name.rc")" != 0 ] && contains "$TMP/$name.err" "${t#*:}"
    then
        ok "refused ($name): exit $(cat "$TMP/$name.rc"), \"${t#*:}\""
    else
        not_ok "refused ($name): exit non-zero, \"${t#*:}\"" \
            "exit $(cat "$TMP/$name.rc")" "$(cat "$TMP/$name.err")"
    fi
done

# --- 7b. SIGTERM with a stream in flight: it ends, then nginx exits 0 --------

P7=$(free_port)
start slow "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/slow.conf \
    -e CONDUCTOR_TEST_KEY=unused -p "127.0.0.1:$P7:8000"
ready slow "$P7"
curl -sN -m 60 "http://127.0.0.1:$P7/v1/chat/completions" \
    -d '{"model":"mounted","stream":true,"messages":[{"role":"user","content":"hi"}]}' \
    > "$TMP/stream.txt" 2>&1 &
PIDS+=($!)
for i in $(seq 1 40); do
    contains "$TMP/stream.txt" "data:" && break
    sleep 0.25
done
terminate slow podman kill -s TERM "$PFX-slow"
wait "${PIDS[-1]}"
if [ "$code" = 0 ] && graceful slow && contains "$TMP/stream.txt" "data: [DONE]"
then
    ok "SIGTERM with a stream in flight: the stream ends with [DONE], exit 0 (${took} s)"
else
    not_ok "SIGTERM with a stream in flight: the stream ends, exit 0" \
        "exit code $code after ${took} s" "stream: $(cat "$TMP/stream.txt")" \
        "$(tail -20 "$TMP/slow.err")"
fi

# --- 8. secrets: a key given by env is in no log -----------------------------

SECRET=sk-docker-$$-$RANDOM$RANDOM
CLIENT=client-docker-$$-$RANDOM$RANDOM
P8=$(free_port)
start secret "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/mounted.conf \
    -e CONDUCTOR_LOG_LEVEL=DEBUG -e CONDUCTOR_TEST_KEY="$SECRET" \
    -p "127.0.0.1:$P8:8000"
ready secret "$P8"
answered=0
for i in 1 2 3 4; do
    chat "$P8" mounted -H "Authorization: Bearer $CLIENT" | grep -q 'Hello from' \
        && answered=$((answered + 1))
done
logs secret
# the debug log shows the headers it read (the mock's Authorization is
# the provider key), so the key had every chance to be there
if [ "$answered" = 4 ] && contains "$TMP/secret.err" "Authorization" \
   && lacks "$TMP/secret.err" "$SECRET" && lacks "$TMP/secret.out" "$SECRET" \
   && lacks "$TMP/secret.err" "$CLIENT" && lacks "$TMP/secret.out" "$CLIENT"
then
    ok "secrets: the env key and the client's key in no log line (DEBUG, $(wc -l < "$TMP/secret.err") lines)"
else
    not_ok "secrets: the env key and the client's key in no log line" \
        "answers: $answered of 4" "$(grep -F -e "$SECRET" -e "$CLIENT" "$TMP"/secret.* | head -5)"
fi

echo "1..$n"
echo "docker-test: $((n - failed)) passed, $failed failed"
[ "$failed" = 0 ]
