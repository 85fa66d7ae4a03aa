# docker/lib.sh: podman with the project's own storage and settings, and
# the debian:bookworm-slim base image made offline.  Sourced by
# docker/podman.sh (make docker) and docker/test.sh (make docker-test).
#
# Nothing global changes: graphroot, runroot, containers.conf and
# storage.conf all live under $DOCKER_DIR (build/docker by default), and
# podman reads them through CONTAINERS_CONF and CONTAINERS_STORAGE_CONF.
# runc, not crun (crun fails on hybrid cgroups); ulimits no higher than
# this root may set (podman's defaults are, and the start fails).

DOCKER_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DOCKER_DIR=${DOCKER_DIR:-$DOCKER_SRC/build/docker}
DOCKER_IMAGE=${DOCKER_IMAGE:-ngx-conductor:latest}
DOCKER_BASE=debian:bookworm-slim

docker_setup() {
    mkdir -p "$DOCKER_DIR/storage" "$DOCKER_DIR/run" "$DOCKER_DIR/tmp" \
             "$DOCKER_DIR/cni"
    cat > "$DOCKER_DIR/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$DOCKER_DIR/storage"
runroot = "$DOCKER_DIR/run"
EOF
    cat > "$DOCKER_DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$DOCKER_DIR/tmp"
image_copy_tmp_dir = "$DOCKER_DIR/tmp"

[network]
network_config_dir = "$DOCKER_DIR/cni"
EOF
    export TMPDIR=$DOCKER_DIR/tmp
    export CONTAINERS_CONF=$DOCKER_DIR/containers.conf
    export CONTAINERS_STORAGE_CONF=$DOCKER_DIR/storage.conf
    # (podman's own database and volumes live under the graphroot)
    # a registries.conf of ours, so that no short name is ever resolved
    cat > "$DOCKER_DIR/registries.conf" <<EOF
unqualified-search-registries = []
EOF
    export CONTAINERS_REGISTRIES_CONF=$DOCKER_DIR/registries.conf
    # the one file podman writes where no setting moves it: the image
    # library's blob cache (/var/lib/containers/cache): removed at the end
    # when it was not there before (docker_teardown)
    [ -e /var/lib/containers ] && DOCKER_VARLIB_KEEP=1 || DOCKER_VARLIB_KEEP=
}

docker_teardown() {
    if [ -z "$DOCKER_VARLIB_KEEP" ] \
       && [ -z "$(ls -A /var/lib/containers 2>/dev/null | grep -vx cache)" ]
    then
        rm -rf /var/lib/containers
    fi
}

# the first URI of the Debian archive apt uses here
docker_mirror() {
    local uri
    uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
          | awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' \
          | grep -v -- '-security' | head -1)
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
                  2>/dev/null \
              | awk '$1 == "deb" { for (i = 2; i <= NF; i++)
                                       if ($i ~ /^[a-z]+:/) { print $i; break } }' \
              | grep -v -- '-security' | head -1)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}

# debian:bookworm-slim in our storage: imported from a cached tarball of
# a debootstrap minbase (build/docker/bookworm-minbase.tar), made once
docker_base() {
    local tar=$DOCKER_DIR/bookworm-minbase.tar root=$DOCKER_DIR/rootfs

    if podman image exists "$DOCKER_BASE"; then
        return 0
    fi
    if [ ! -s "$tar" ]; then
        echo "# debootstrap bookworm minbase from $(docker_mirror)"
        rm -rf "$root"
        debootstrap --variant=minbase bookworm "$root" "$(docker_mirror)" \
            > "$DOCKER_DIR/debootstrap.log" 2>&1 \
            || { tail -20 "$DOCKER_DIR/debootstrap.log"; return 1; }
        # apt inside works as it does here: the same sources, the same
        # configuration (a snapshot mirror needs Check-Valid-Until off)
        rm -f "$root"/etc/apt/sources.list
        cp -a /etc/apt/sources.list "$root"/etc/apt/ 2>/dev/null || true
        cp -a /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources \
            "$root"/etc/apt/sources.list.d/ 2>/dev/null || true
        cp -a /etc/apt/apt.conf.d/. "$root"/etc/apt/apt.conf.d/
        cp -a /etc/apt/trusted.gpg.d/. "$root"/etc/apt/trusted.gpg.d/
        # a slim image: no apt lists nor caches kept, as Debian's has
        rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
               "$root"/var/cache/apt/archives/*.deb
        tar -C "$root" -cf "$tar.part" . && mv "$tar.part" "$tar"
        rm -rf "$root"
    fi
    podman import -q "$tar" "$DOCKER_BASE" > /dev/null
}

# the image, from the work tree (the build stage compiles it)
# (--network=host for the build's apt only: nothing listens in a build)
docker_build() {
    podman build --pull=never --network=host \
        -f "$DOCKER_SRC/docker/Dockerfile" -t "$DOCKER_IMAGE" "$DOCKER_SRC" \
        > "$DOCKER_DIR/build.log" 2>&1 \
        || { tail -40 "$DOCKER_DIR/build.log"
             echo "podman build failed (log: $DOCKER_DIR/build.log)" >&2
             return 1; }
}
