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
# busybox-static makes the test image's initramfs (and archives it);
# util-linux has unshare and nsenter, which the restart tests' private
# libvirtd runs with (tests/functional/private_daemons.py).
ensure_packages libvirt-daemon libvirt-daemon-driver-qemu \
    libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils \
    libvirt-dev pkg-config libxml2-utils busybox-static util-linux

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

# /dev/kvm as udev would leave it. Debian's rule (KERNEL=="kvm",
# GROUP="kvm", MODE="0660") never runs on a host without udev, and a
# /dev/kvm that root can open but libvirt's QEMU user cannot makes libvirtd
# invalidate its QEMU capability cache on every lookup: each defineXML then
# re-probes QEMU for about a minute, and some fail outright. The tests run
# guests with virt_type=qemu either way; this only makes libvirtd's view
# of the host consistent.
fix_kvm_node() {
    [[ -c /dev/kvm ]] || return 0
    getent group kvm >/dev/null || groupadd --system kvm
    if [[ $(stat -c %G:%a /dev/kvm) != kvm:660 ]]; then
        echo "libvirt: /dev/kvm is $(stat -c '%U:%G %a' /dev/kvm);" \
             "setting it to root:kvm 0660 as udev would"
        chgrp kvm /dev/kvm
        chmod 0660 /dev/kvm
    fi
    local qemu_user=libvirt-qemu
    if ! id -nG "$qemu_user" | tr ' ' '\n' | grep -qx kvm; then
        echo "libvirt: adding $qemu_user to the kvm group"
        usermod -a -G kvm "$qemu_user"
    fi
}
fix_kvm_node

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

# A define must take a fraction of a second. When it does not, libvirtd is
# re-probing QEMU on every call (the /dev/kvm state above is the known
# cause) and every libvirt test would pay for it: stop here with the
# reason instead of running a suite that takes the better part of an hour.
check_define_speed() {
    local name=compute-driver-setup-probe xml limit=20 start elapsed
    xml=$(mktemp)
    cat >"$xml" <<XML
<domain type='qemu'>
  <name>$name</name>
  <memory unit='MiB'>32</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64'>hvm</type></os>
</domain>
XML
    virsh -q -c qemu:///system undefine "$name" >/dev/null 2>&1 || true
    # Two defines: the first may legitimately fill an empty cache.
    local attempt
    for attempt in first second; do
        start=$(date +%s%N)
        if ! virsh -q -c qemu:///system define "$xml" >/dev/null; then
            rm -f "$xml"
            echo "libvirt: defining a probe domain failed" >&2
            return 1
        fi
        elapsed=$((($(date +%s%N) - start) / 1000000))
        echo "libvirt: $attempt probe define: ${elapsed} ms"
        virsh -q -c qemu:///system undefine "$name" >/dev/null
    done
    rm -f "$xml"
    if ((elapsed > limit * 1000)); then
        echo "libvirt: a define took ${elapsed} ms (over ${limit} s):" \
             "libvirtd is re-probing QEMU on every call; check that" \
             "/dev/kvm is usable by libvirt-qemu or absent" >&2
        return 1
    fi
}
check_define_speed

bash "$here/../build-libvirt-test-image.sh"
