#!/usr/bin/env bash
# Installs what building, running and testing the module needs, on Debian 12,
# as root.  Idempotent: packages already there are left as they are.
set -euo pipefail

cd "$(dirname "$0")/.."

packages=(
    make gcc clang libclang-rt-14-dev dpkg-dev   # build, fuzzing
    nginx nginx-dev                              # the distribution's nginx
    libjansson-dev libhiredis-dev                # the module's libraries
    redis-server redis-tools                     # fleet tests (redis-cli)
    podman runc slirp4netns debootstrap          # make docker-test
    libtest-base-perl                            # the t/lib harness
    nodejs npm                                   # mock provider, SDK tests
    wrk valgrind curl ca-certificates openssl            # bench, sanitizer run
    chromium                                     # the status page test
    jq python3-httpx                             # examples/ (curl, python)
    prometheus                                   # t/086: promtool, the queries
    python3-yaml                                 # bin/conductor-convert
    build-essential debhelper lintian            # make deb, its test
    python3 tmux                                 # conductor-top, its test
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing+=("$p")
done

# node may come from elsewhere than Debian (a newer build): keep it
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs}")
    missing=("${missing[@]/npm}")
fi

missing=($(printf '%s\n' "${missing[@]}" | grep -v '^$' || true))

if [ ${#missing[@]} -gt 0 ]; then
    # no service may start on its default address while installing
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT

    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
fi

# the SDK tests' and the examples' node packages (package-lock.json pins
# them: the same versions)
for d in t/sdk examples/node; do
    if [ ! -d $d/node_modules ]; then
        (cd $d && npm ci --no-audit --no-fund --loglevel=error)
    fi
done
