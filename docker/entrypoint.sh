#!/bin/bash
# conductor-entrypoint: the container's PID 1.  It writes the nginx
# configuration from the Conductor seed's variables, checks it with
# nginx -t, runs nginx in the foreground as its child and turns SIGTERM
# into nginx's graceful stop (QUIT).
#
#   CONDUCTOR_HOST          listen address       (0.0.0.0)
#   CONDUCTOR_PORT          listen port          (8000)
#   CONDUCTOR_LOG_LEVEL     DEBUG INFO WARNING ERROR (INFO)
#   CONDUCTOR_CONFIG_PATH   an nginx conf of the module's, or a Conductor
#                           config.yaml (.yaml, .yml) converted at start
#                           (none: the embedded mock, no key needed)
#   CONDUCTOR_SECRETS       for a config.yaml: "file" (its keys go to 0600
#                           files) or "env" (keys from environment names)
#
# The configuration is taken as written but for what a container needs:
# the first listen directive (the gateway's server) gets
# CONDUCTOR_HOST:CONDUCTOR_PORT, its parameters kept; error_log and daemon
# lines are commented out (the error log is stderr at CONDUCTOR_LOG_LEVEL,
# nginx runs in the foreground); the module is loaded if it does not load
# it.  Lines keep their numbers, so nginx's messages point at the user's
# line.  Relative paths resolve as they would beside the user's file: its
# folder's entries and /etc/nginx's (the snippets) are linked beside the
# written copy.  logs/error.log and logs/usage.log are stderr and stdout.

set -u

NAME=conductor-entrypoint
RUN=${CONDUCTOR_RUN_DIR:-/run/conductor}
DEFAULT_CONF=${CONDUCTOR_DEFAULT_CONF:-/usr/share/conductor/conductor.conf}
MODULE=/usr/lib/nginx/modules/ngx_http_conductor_module.so
NGINX_ETC=/etc/nginx

HOST=${CONDUCTOR_HOST:-0.0.0.0}
PORT=${CONDUCTOR_PORT:-8000}
LEVEL=${CONDUCTOR_LOG_LEVEL:-INFO}
CONFIG=${CONDUCTOR_CONFIG_PATH:-}
SECRETS=${CONDUCTOR_SECRETS:-file}

# every line of ours is one line on stderr, prefixed, never a secret
say() {
    printf '%s: %s\n' "$NAME" "$*" >&2
}

info() {
    case $NGX_LEVEL in debug|info) say "$@" ;; esac
}

fail() {
    say "error: $*"
    exit 1
}

# --- the variables ---------------------------------------------------------

case ${LEVEL^^} in
    DEBUG)          NGX_LEVEL=debug ;;
    INFO)           NGX_LEVEL=info ;;
    WARNING|WARN)   NGX_LEVEL=warn ;;
    ERROR)          NGX_LEVEL=error ;;
    CRITICAL)       NGX_LEVEL=crit ;;
    *)  NGX_LEVEL=info
        fail "CONDUCTOR_LOG_LEVEL=$LEVEL: use DEBUG, INFO, WARNING or ERROR" ;;
esac

if ! [[ $PORT =~ ^[0-9]{1,5}$ ]] || [ "$((10#$PORT))" -lt 1 ] \
   || [ "$((10#$PORT))" -gt 65535 ]
then
    fail "CONDUCTOR_PORT=$PORT: not a port number (1-65535)"
fi
PORT=$((10#$PORT))

# a name or an address, nothing nginx would read as more than one token
if ! [[ $HOST =~ ^(\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*|[A-Za-z0-9.*_-]+)$ ]]
then
    fail "CONDUCTOR_HOST=$HOST: not an address or host name"
fi
case $HOST in
    \[*) LISTEN=$HOST:$PORT ;;
    *:*) LISTEN=[$HOST]:$PORT ;;
    *)   LISTEN=$HOST:$PORT ;;
esac

case $SECRETS in
    file|env) ;;
    *) fail "CONDUCTOR_SECRETS=$SECRETS: use file or env" ;;
esac

if [ -n "$CONFIG" ]; then
    if [ -d "$CONFIG" ]; then
        fail "CONDUCTOR_CONFIG_PATH=$CONFIG is a folder: name the file"
    fi
    if [ ! -r "$CONFIG" ]; then
        fail "CONDUCTOR_CONFIG_PATH=$CONFIG: no such file (mount it: -v HOST_FILE:$CONFIG:ro)"
    fi
fi

# --- the configuration -----------------------------------------------------

# $1: the source conf, $2: the copy nginx reads
rewrite_conf() {
    awk -v listen="$LISTEN" -v report="$RUN/listen.txt" '
        # one-line directives only: a directive over several lines is kept
        ($1 == "daemon" || $1 == "error_log") && /;/ {
            print "#" $0 "   # conductor-entrypoint: set by the container"
            next
        }
        !done && $1 == "listen" && /;/ {
            was = $0
            sub(/^[ \t]*listen[ \t]+/, "", was)
            sub(/[ \t;].*$/, "", was)
            sub(/listen[ \t]+[^ \t;]+/, "listen " listen)
            print was > report
            done = 1
        }
        { print }
    ' "$1" > "$2"
}

# the copy's folder: links to the entries of the source's folder, then to
# /etc/nginx's that it lacks (conductor_proxy.conf, mime.types, ...)
link_folder() {
    local src_dir=$1 skip=$2 e

    for e in "$src_dir"/* "$NGINX_ETC"/*; do
        [ -e "$e" ] || continue
        [ "$e" = "$skip" ] && continue
        [ -e "$RUN/conf/${e##*/}" ] || [ -L "$RUN/conf/${e##*/}" ] \
            || ln -s "$e" "$RUN/conf/${e##*/}"
    done
}

convert_yaml() {
    local convert out=$RUN/conf/conductor.conf args=()

    convert=$(command -v conductor-convert) \
        || fail "CONDUCTOR_CONFIG_PATH=$CONFIG: conductor-convert is not in this image"
    if [ "$SECRETS" = env ]; then
        args=(--env)
    else
        mkdir -p -m 0700 "$RUN/secrets"
        args=(--secrets-dir "$RUN/secrets")
    fi
    if ! "$convert" --listen "$LISTEN" "${args[@]}" "$CONFIG" > "$out.tmp"
    then
        fail "CONDUCTOR_CONFIG_PATH=$CONFIG: conductor-convert refused it (above)"
    fi
    mv "$out.tmp" "$out"
    SOURCE=$out
}

make_conf() {
    local mask

    # the copy holds what the user's file holds, keys written in it too:
    # for root only, as the secrets files are
    mask=$(umask)
    umask 077
    rm -rf "$RUN/conf" "$RUN/listen.txt"
    mkdir -p "$RUN/conf" "$RUN/logs"
    # the shipped configurations' relative logs are the container's
    ln -sfn /dev/stderr "$RUN/logs/error.log"
    ln -sfn /dev/stdout "$RUN/logs/usage.log"
    ln -sfn /dev/stdout "$RUN/logs/access.log"

    case $CONFIG in
        "")
            SOURCE=$DEFAULT_CONF
            DESCRIBED="the embedded mock ($DEFAULT_CONF)"
            ;;
        *.yaml|*.yml|*.YAML|*.YML)
            convert_yaml
            DESCRIBED="$CONFIG (converted by conductor-convert)"
            ;;
        *)
            SOURCE=$CONFIG
            DESCRIBED=$CONFIG
            ;;
    esac

    MAIN=$RUN/conf/${SOURCE##*/}
    [ "$SOURCE" = "$MAIN" ] && MAIN=$RUN/conf/nginx-conductor.conf
    rewrite_conf "$SOURCE" "$MAIN"
    link_folder "$(dirname "$SOURCE")" "$SOURCE"

    # the default's mock listens on 127.0.0.1:8001: off our port
    if [ -z "$CONFIG" ] && [ "$PORT" = 8001 ]; then
        sed -i 's/127\.0\.0\.1:8001\b/127.0.0.1:8002/' "$MAIN"
    fi
    # the status page of the configurations written for the user (the
    # default, a converted one) is for loopback; through a port map the
    # host comes from the container network's gateway, a private address
    if [ "$SOURCE" != "$CONFIG" ]; then
        sed -i 's|^\([[:space:]]*\)allow 127\.0\.0\.1;|\1allow 127.0.0.1; allow 10.0.0.0/8; allow 172.16.0.0/12; allow 192.168.0.0/16; allow fc00::/7;|' "$MAIN"
    fi

    umask "$mask"

    GLOBALS="error_log stderr $NGX_LEVEL;"
    if ! grep -Eq '^[[:space:]]*(load_module[[:space:]].*ngx_http_conductor_module|include[[:space:]].*modules-enabled)' "$MAIN"
    then
        GLOBALS="load_module $MODULE; $GLOBALS"
    fi

    if [ -s "$RUN/listen.txt" ]; then
        info "configuration: $DESCRIBED; listen $LISTEN (its first listen was $(cat "$RUN/listen.txt"))"
    else
        say "warning: $DESCRIBED has no listen line of its own: CONDUCTOR_HOST and CONDUCTOR_PORT not applied"
    fi
}

# nginx -t; its messages name the user's file rather than our copy
test_conf() {
    local out rc

    out=$(nginx -t -q -p "$RUN/" -c "$MAIN" -e stderr -g "$GLOBALS" 2>&1)
    rc=$?
    if [ -n "$out" ]; then
        printf '%s\n' "$out" | sed "s|$MAIN|$SOURCE|g" >&2
    fi
    return $rc
}

make_conf
if ! test_conf; then
    fail "the configuration, $DESCRIBED, is not valid (nginx -t, above): not starting"
fi

# --- nginx as our child ----------------------------------------------------

NGINX_PID=

stop() {
    info "$1: nginx stops gracefully (QUIT): requests in flight finish first"
    [ -n "$NGINX_PID" ] && kill -QUIT "$NGINX_PID" 2>/dev/null
}

# a reload reads the configuration again: written anew, tested first
reload() {
    info "SIGHUP: configuration written again and tested"
    # in a subshell: a refusal must not end PID 1 while nginx serves
    if (make_conf && test_conf); then
        kill -HUP "$NGINX_PID" 2>/dev/null
    else
        say "error: the new configuration is not valid: nginx keeps the old"
    fi
}

trap 'stop SIGTERM' TERM
trap 'stop SIGINT' INT
trap 'stop SIGQUIT' QUIT
trap 'reload' HUP
trap 'kill -USR1 "$NGINX_PID" 2>/dev/null' USR1

nginx -p "$RUN/" -c "$MAIN" -e stderr -g "daemon off; $GLOBALS" &
NGINX_PID=$!

# wait returns early for every trapped signal; nginx is gone when it
# cannot be signalled any more
while :; do
    wait "$NGINX_PID"
    status=$?
    kill -0 "$NGINX_PID" 2>/dev/null || break
done

info "nginx exited with status $status"
exit "$status"
