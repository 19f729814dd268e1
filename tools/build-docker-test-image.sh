#!/usr/bin/env bash
# Builds the docker backend's test image from Debian's busybox-static.
#
# No registry is reachable where the tests run, so the image is made from
# a Debian package: /bin/busybox of busybox-static, one symlink per applet,
# imported with "docker import". Its command prints a boot banner (the
# console log tests read it), then sleeps until SIGTERM, on which it exits
# at once so that a clean stop does not wait for the kill timeout.
#
# Usage: tools/build-docker-test-image.sh [--save-dir DIR] [--force]
#   --save-dir DIR  also write the "docker save" tarballs [docker]
#                   image_directory reads: the image itself, and a copy
#                   tagged compute-driver/busybox-tarball:test that dockerd
#                   is NOT left with (to test loading from the directory).
#   --force         rebuild even when the image exists.
# Environment: COMPUTE_DRIVER_DOCKER_TEST_IMAGE (default
# compute-driver/busybox:test) names the image.
set -euo pipefail

image=${COMPUTE_DRIVER_DOCKER_TEST_IMAGE:-compute-driver/busybox:test}
tarball_image=compute-driver/busybox-tarball:test
save_dir=
force=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        --save-dir) save_dir=$2; shift 2 ;;
        --force) force=1; shift ;;
        *) echo "usage: $0 [--save-dir DIR] [--force]" >&2; exit 2 ;;
    esac
done

busybox=/bin/busybox
if ! "$busybox" --list >/dev/null 2>&1 ||
        ! file_type=$(LC_ALL=C od -An -c -N4 "$busybox" 2>/dev/null) ||
        [[ $file_type != *E*L*F* ]]; then
    echo "$busybox is missing: apt-get install busybox-static" >&2
    exit 1
fi
if ldd "$busybox" >/dev/null 2>&1; then
    echo "$busybox is dynamically linked; install busybox-static" >&2
    exit 1
fi

# The boot banner and the wait loop, expanded inside the container, not here
# (hence single quotes): "wait" returns as soon as a trapped
# signal arrives, where a foreground sleep would delay the trap.
# shellcheck disable=SC2016
init='echo "compute-driver test container $(hostname) booting";'
# shellcheck disable=SC2016
init+=' echo "busybox $(busybox | head -n1 | cut -d" " -f2) ready";'
init+=' trap "echo shutting down; exit 0" TERM INT;'
init+=' while :; do sleep 3600 & wait $!; done'

if [[ $force -eq 1 ]] || ! docker image inspect "$image" >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    trap 'rm -rf "$rootfs"' EXIT
    mkdir -p "$rootfs"/{bin,dev,etc,proc,sys,tmp,run,root}
    cp "$busybox" "$rootfs/bin/busybox"
    for applet in $("$busybox" --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$rootfs/bin/$applet"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
    echo 'root:x:0:' > "$rootfs/etc/group"
    chmod 1777 "$rootfs/tmp"
    version=$(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null ||
        echo unknown)
    tar -C "$rootfs" -c . | docker import \
        --change "CMD [\"/bin/sh\", \"-c\", \"${init//\"/\\\"}\"]" \
        --change 'ENV PATH=/bin' \
        --change "LABEL org.openstack.compute-driver.test-image=busybox-static-$version" \
        --message "busybox-static $version for compute-driver tests" \
        - "$image" >/dev/null
    echo "built $image from busybox-static $version"
else
    echo "image $image present"
fi

if [[ -n $save_dir ]]; then
    mkdir -p "$save_dir"
    out="$save_dir/${image//\//_}.tar"
    docker save -o "$out.partial" "$image"
    mv "$out.partial" "$out"
    docker tag "$image" "$tarball_image"
    out="$save_dir/${tarball_image//\//_}.tar"
    docker save -o "$out.partial" "$tarball_image"
    mv "$out.partial" "$out"
    docker rmi "$tarball_image" >/dev/null
    echo "saved $image and $tarball_image into $save_dir"
fi
