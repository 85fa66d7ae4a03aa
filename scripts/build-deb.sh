#!/usr/bin/env bash
# Builds libnginx-mod-http-conductor_VERSION_ARCH.deb into BUILD (default
# ./build): dpkg-buildpackage on a copy of the tree in BUILD/deb, so the
# checkout gets no debian/ build files and nothing is written beside it.
#
#   scripts/build-deb.sh [BUILD]       (make deb)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
build=$(mkdir -p "${1:-$root/build}" && cd "${1:-$root/build}" && pwd)
cd "$root"

version=$(debian/module-version)
arch=$(dpkg --print-architecture)
name=libnginx-mod-http-conductor
deb="${name}_${version}_${arch}.deb"

stage="$build/deb"
src="$stage/$name-$version"
rm -rf "$stage"
mkdir -p "$src"

# what the package is built from: the module, its snippets, docs, packaging
# and whichever scripts bin/ (and their pages man/) hold
cp -a config ngx_http_conductor_module.c src conf debian Makefile README.md \
      "$src/"
for d in bin man; do
    if [ -d "$d" ]; then cp -a "$d" "$src/"; fi
done

(cd "$src" && dpkg-buildpackage -b -uc -us) > "$stage/build.log" 2>&1 || {
    tail -40 "$stage/build.log"
    echo "build-deb: dpkg-buildpackage failed (log: $stage/build.log)" >&2
    exit 1
}

cp "$stage/$deb" "$build/$deb"
echo "$build/$deb"
