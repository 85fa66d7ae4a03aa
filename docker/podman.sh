#!/usr/bin/env bash
# podman with the project's own storage and settings (docker/lib.sh):
#
#   docker/podman.sh build      the image (make docker): the base image
#                               made with debootstrap once, then the build
#   docker/podman.sh ARGS...    podman ARGS on that storage, e.g.
#       docker/podman.sh run --rm --network=slirp4netns \
#           -p 127.0.0.1:8000:8000 ngx-conductor
#       docker/podman.sh save ngx-conductor | docker load
set -euo pipefail

. "$(dirname "$0")/lib.sh"
docker_setup

if [ "${1:-}" = build ] && [ $# -eq 1 ]; then
    docker_base && docker_build || { docker_teardown; exit 1; }
    docker_teardown
    echo "image $DOCKER_IMAGE, in $DOCKER_DIR (run it: docker/podman.sh run ...)"
    exit 0
fi

exec podman "$@"
