#!/usr/bin/env bash
# Test setup of the libvirt backend: libvirtd with QEMU (software emulation
# is enough), virtlogd, and the test image the functional tests boot.
#
# There is no systemd on the test machines, so the daemons are started as
# plain background processes when they are not running.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/common.sh"

# libvirt-dev and pkg-config let pip build libvirt-python; libvirt-clients
# has virt-xml-validate, which the unit tests run on the domain XML;
# busybox-static makes the test image's initramfs (and archives it).
ensure_packages libvirt-daemon libvirt-daemon-driver-qemu \
    libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils \
    libvirt-dev pkg-config libxml2-utils busybox-static

if ! is_root; then
    echo "libvirt: not root; not starting libvirtd or building the image"
    exit 0
fi

# libvirtd runs qemu as this user and refuses to start without it; the
# Debian package creates it, a trimmed image may not have.
if ! getent passwd libvirt-qemu >/dev/null; then
    getent group kvm >/dev/null || groupadd --system kvm
    useradd --system --gid kvm --home-dir /var/lib/libvirt \
        --no-create-home --shell /usr/sbin/nologin libvirt-qemu
fi

socket=/var/run/libvirt/libvirt-sock
if ! pgrep -x virtlogd >/dev/null; then
    echo "libvirt: starting virtlogd"
    virtlogd -d
fi
if ! pgrep -x libvirtd >/dev/null; then
    echo "libvirt: starting libvirtd"
    libvirtd -d
fi
wait_for "libvirtd's socket $socket" 60 test -S "$socket"
wait_for "libvirtd to answer" 60 virsh -c qemu:///system version

bash "$here/../build-libvirt-test-image.sh"
