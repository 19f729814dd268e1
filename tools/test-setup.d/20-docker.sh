#!/usr/bin/env bash
# Test setup of the docker backend: docker.io, a running dockerd, and the
# test image built from busybox-static (no registry is reachable in CI).
#
# dockerd is started as a plain background process when it does not
# answer: test machines have no systemd. Its log goes to
# ${COMPUTE_DRIVER_DOCKERD_LOG:-/var/log/compute-driver-dockerd.log}.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/common.sh"

# util-linux: nsenter, which starts the private dockerd the restart test
# uses (tests/functional/private_daemons.py).
ensure_packages docker.io busybox-static util-linux

if ! command -v dockerd >/dev/null 2>&1; then
    echo "docker: dockerd is not installed; the docker tests will skip" \
         "(or fail under COMPUTE_DRIVER_STRICT=1)" >&2
    exit 0
fi

if docker info >/dev/null 2>&1; then
    echo "docker: dockerd is running"
elif ! is_root; then
    echo "docker: dockerd is not running and starting it needs root" >&2
    exit 0
else
    log=${COMPUTE_DRIVER_DOCKERD_LOG:-/var/log/compute-driver-dockerd.log}
    echo "docker: starting dockerd (log: $log)"
    # setsid: dockerd must outlive this script and its process group.
    # Started from /, as a daemon should be: it must not keep the checkout
    # it was started from as its directory, which may be deleted later.
    (cd / && exec setsid dockerd >"$log" 2>&1 < /dev/null) &
    if ! wait_for dockerd 60 docker info; then
        tail -n 20 "$log" >&2
        exit 1
    fi
fi

bash "$here/../build-docker-test-image.sh" \
    --save-dir "${COMPUTE_DRIVER_DOCKER_IMAGE_DIR:-/var/lib/compute-driver/docker-images}"
