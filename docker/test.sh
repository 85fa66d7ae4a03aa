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

# refused NAME WHAT TEXT...: the run of once NAME ended non-zero and its
# stderr says every TEXT
refused() {
    local name=$1 what=$2 rc t
    shift 2
    rc=$(cat "$TMP/$name.rc")
    for t in "$@"; do
        contains "$TMP/$name.err" "$t" || rc="$rc, without \"$t\""
    done
    case $rc in
        0*|124*|*without*) not_ok "$what" "exit $rc" "$(cat "$TMP/$name.err")" ;;
        *)                 ok "$what (exit $rc)" ;;
    esac
}

# --- the image ---------------------------------------------------------------

echo "# building the base image (once, then cached in $DOCKER_DIR) and $DOCKER_IMAGE"
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
mode=$(podman exec "$PFX-mounted" stat -c '%a' /run/conductor/conf \
           /run/conductor/conf/mounted.conf 2>&1 | tr '\n' ' ')
check "a mounted conf: the copy nginx reads (keys and all) is root's only ($mode)" \
    test "$mode" = "700 600 "

# SIGHUP: the configuration written again from the mounted file (nginx
# itself would read the old copy), tested, then nginx reloads
sed -i 's/^    include mounted-models.conf;/&\n    conductor_model reloaded { mounted-mock mock-reloaded; }/' \
    "$TMP/conf/mounted.conf"
podman kill -s HUP "$PFX-mounted" > /dev/null
for i in $(seq 1 40); do
    models=$(curl -s -m 5 "http://127.0.0.1:$P6/v1/models")
    [[ $models == *'"reloaded"'* ]] && break
    sleep 0.25
done
if [[ $models == *'"reloaded"'* ]] && running mounted; then
    ok "SIGHUP: the mounted conf read again, its new alias served"
else
    logs mounted
    not_ok "SIGHUP: the mounted conf read again" "$models" \
        "$(tail -20 "$TMP/mounted.err")"
fi

# --- 5. a Conductor config.yaml, converted at start --------------------------

# its one provider is down (nothing listens on 127.0.0.1:8109): the
# requests are routed there, fail over to nothing and are counted
YAML_KEY=sk-yaml-$$-$RANDOM$RANDOM
cat > "$TMP/conf/config.yaml" <<EOF
conductor:
  scheduling_strategy: round_robin
  request_timeout: 30
  max_retries: 1
models:
  docker-alias:
    yamlprov: "upstream-model"
providers:
  yamlprov:
    enabled: true
    base_url: http://127.0.0.1:8109/v1
    keys:
      - name: key-1
        api_key: $YAML_KEY
        requests_per_minute: 30
        tokens_per_minute: 60000
EOF
# the same without api_key, for CONDUCTOR_SECRETS=env
grep -v 'api_key' "$TMP/conf/config.yaml" > "$TMP/conf/env.yaml"
# an unknown field on line 4
sed '4s/.*/  max_retry: 1/' "$TMP/conf/config.yaml" > "$TMP/conf/broken.yaml"

if podman run --rm --network=none --entrypoint sh "$DOCKER_IMAGE" \
       -c 'command -v conductor-convert' > /dev/null 2>&1
then
    P9=$(free_port)
    start yaml "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/config.yaml \
        -p "127.0.0.1:$P9:8000"
    ready yaml "$P9"
    models=$(curl -s -m 10 "http://127.0.0.1:$P9/v1/models")
    health=$(curl -s -m 10 "http://127.0.0.1:$P9/health")
    body=$(chat "$P9" docker-alias)
    status=$(curl -s -m 10 "http://127.0.0.1:$P9/conductor/status")
    mode=$(podman exec "$PFX-yaml" stat -c '%a %U' \
               /run/conductor/secrets/yamlprov/key-1 2>&1)
    logs yaml
    if [[ $models == *'"docker-alias"'* && $health == *'"healthy"'* \
          && $status == *'"yamlprov"'* && $status == *'"key-1"'* ]]
    then
        ok "CONDUCTOR_CONFIG_PATH=config.yaml: converted and served (its alias, /health, its provider and key in the status)"
    else
        not_ok "CONDUCTOR_CONFIG_PATH=config.yaml: converted and served" \
            "models: $models" "health: $health" "$(cat "$TMP/yaml.err")"
    fi
    if [[ $body == *'"error"'* ]] && contains "$TMP/yaml.err" "127.0.0.1:8109"; then
        ok "config.yaml: a chat request routed to its provider (down here: an error in the dialect)"
    else
        not_ok "config.yaml: a chat request routed to its provider" "$body"
    fi
    if [ "$mode" = "600 root" ] && lacks "$TMP/yaml.err" "$YAML_KEY" \
       && lacks "$TMP/yaml.out" "$YAML_KEY" && [[ $status != *"$YAML_KEY"* ]]
    then
        ok "config.yaml: its api_key in a 0600 file, in no log line nor the status"
    else
        not_ok "config.yaml: its api_key in a 0600 file, in no log line" \
            "secret file: $mode" "$(grep -F "$YAML_KEY" "$TMP"/yaml.* | head -3)"
    fi

    ENV_KEY=sk-yaml-env-$$-$RANDOM$RANDOM
    P10=$(free_port)
    start yamlenv "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/env.yaml \
        -e CONDUCTOR_SECRETS=env -e YAMLPROV_KEY_1="$ENV_KEY" \
        -e CONDUCTOR_LOG_LEVEL=DEBUG -p "127.0.0.1:$P10:8000"
    ready yamlenv "$P10"
    models=$(curl -s -m 10 "http://127.0.0.1:$P10/v1/models")
    chat "$P10" docker-alias > /dev/null
    logs yamlenv
    if [[ $models == *'"docker-alias"'* ]] && contains "$TMP/yamlenv.err" "[debug]" \
       && lacks "$TMP/yamlenv.err" "$ENV_KEY" && lacks "$TMP/yamlenv.out" "$ENV_KEY"
    then
        ok "config.yaml, CONDUCTOR_SECRETS=env: its key from YAMLPROV_KEY_1, served, in no log line (DEBUG)"
    else
        not_ok "config.yaml, CONDUCTOR_SECRETS=env: served, the key in no log line" \
            "models: $models" "$(grep -F "$ENV_KEY" "$TMP"/yamlenv.* | head -3)" \
            "$(tail -20 "$TMP/yamlenv.err")"
    fi

    once badyaml "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/broken.yaml
    refused badyaml "a broken config.yaml refused, the converter names the file and line" \
        "/etc/conductor/broken.yaml:4" "conductor-convert refused it"
else
    ok "# SKIP a config.yaml converted: no conductor-convert in the image"
fi

# --- 6. bad configurations: a clear message, a non-zero exit -----------------

once bad "${MOUNT[@]}" -e CONDUCTOR_CONFIG_PATH=/etc/conductor/bad.conf
refused bad "a bad conf refused, nginx -t's message names the file and line" \
    "/etc/conductor/bad.conf:9" \
    "conductor-entrypoint: error: the configuration, /etc/conductor/bad.conf, is not valid"

once missing -e CONDUCTOR_CONFIG_PATH=/etc/conductor/none.conf
once level -e CONDUCTOR_LOG_LEVEL=LOUD
once badport -e CONDUCTOR_PORT=80000
refused missing "CONDUCTOR_CONFIG_PATH of no file refused" "no such file"
refused level "CONDUCTOR_LOG_LEVEL=LOUD refused" \
    "CONDUCTOR_LOG_LEVEL=LOUD: use DEBUG"
refused badport "CONDUCTOR_PORT=80000 refused" "CONDUCTOR_PORT=80000: not a port"

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
