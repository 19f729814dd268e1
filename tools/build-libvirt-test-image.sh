#!/usr/bin/env bash
# Builds the libvirt backend's test image from Debian packages and registers
# it in an image store.
#
# The guest is Debian's cloud kernel booted directly (no boot loader) with a
# busybox-static initramfs. Its /init prints BOOT_LINE on the serial console,
# which is what the functional tests look for in the console log, loads the
# ACPI button driver and runs busybox's acpid so that a power-button press
# (libvirt's default shutdown method) powers the guest off cleanly, runs a
# shell on the serial console (respawned when it exits), then stays
# alive. It boots in a few seconds under QEMU's software emulation.
#
# Usage: build-libvirt-test-image.sh [IMAGES_PATH [NAME]]
#   IMAGES_PATH  the [libvirt] images_path store
#                (default /var/lib/compute-driver/libvirt/images)
#   NAME         the image's name in the store (default cdtest-busybox)
#
# Idempotent: an image already registered under NAME is left alone unless
# FORCE=1 is set.
set -euo pipefail

store=${1:-/var/lib/compute-driver/libvirt/images}
name=${2:-cdtest-busybox}
boot_line='compute-driver test guest booted'

if [[ -f "$store/$name.json" && -z ${FORCE:-} ]]; then
    echo "libvirt test image: $store/$name.json exists"
    exit 0
fi

for tool in apt-get dpkg-deb qemu-img busybox gzip; do
    if ! command -v "$tool" >/dev/null; then
        echo "build-libvirt-test-image: $tool is missing" >&2
        exit 1
    fi
done

work=$(mktemp -d)
# apt-get download drops privileges to _apt, which must reach the directory.
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# The metapackage only depends on the versioned kernel package, which holds
# the kernel and its modules.
cd "$work"
# A machine whose packages are all installed may never have fetched the
# package lists.
if ! apt-get download -q linux-image-cloud-amd64 >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download -q linux-image-cloud-amd64 >/dev/null
fi
meta=$(ls linux-image-cloud-amd64_*.deb)
kpkg=$(dpkg-deb -f "$meta" Depends | tr ',' '\n' |
    grep -o 'linux-image-[0-9][^ (|]*-cloud-amd64[^ (|]*' | head -n1)
if [[ -z $kpkg ]]; then
    echo "build-libvirt-test-image: no kernel package in $meta" >&2
    exit 1
fi
apt-get download -q "$kpkg" >/dev/null
dpkg-deb -x "$(ls "$kpkg"_*.deb)" "$work/kernel"
vmlinuz=$(ls "$work"/kernel/boot/vmlinuz-*)
kver=${vmlinuz##*/vmlinuz-}

root="$work/initramfs"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,etc,lib/modules,run,tmp}
cp "$(command -v busybox)" "$root/bin/busybox"
for applet in sh mount echo sleep poweroff reboot insmod acpid cat \
        uname mkdir; do
    ln -s busybox "$root/bin/$applet"
done
# -- console: applets of the serial console's shell --
for applet in setsid cttyhack stty ls ps hostname; do
    ln -sf busybox "$root/bin/$applet"
done
# -- end console --
# The power button driver and evdev, which gives acpid the button's input
# device: both are modules in the cloud kernel, compressed or not depending
# on the Debian release.
for module in button evdev; do
    file=$(find "$work/kernel/lib/modules/$kver" -name "$module.ko*" |
        head -n1)
    case $file in
        '') echo "build-libvirt-test-image: no $module module" >&2 ;;
        *.xz) xz -dc "$file" > "$root/lib/modules/$module.ko" ;;
        *.zst) zstd -qdc "$file" > "$root/lib/modules/$module.ko" ;;
        *) cp "$file" "$root/lib/modules/$module.ko" ;;
    esac
done
# -- network: virtio_net and its dependencies, in load order --
net_modules='virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev
virtio_pci failover net_failover virtio_net'
mkdir -p "$root/lib/modules/net"
for module in $net_modules; do
    file=$(find "$work/kernel/lib/modules/$kver" -name "$module.ko*" |
        head -n1)
    case $file in
        # Built into the kernel: nothing to load.
        '') ;;
        *.xz) xz -dc "$file" > "$root/lib/modules/net/$module.ko" ;;
        *.zst) zstd -qdc "$file" > "$root/lib/modules/net/$module.ko" ;;
        *) cp "$file" "$root/lib/modules/net/$module.ko" ;;
    esac
done
echo "$net_modules" > "$root/lib/modules/net/order"
# udhcpc's script: configure the lease and say on the console what it got.
mkdir -p "$root/etc/udhcpc"
cat > "$root/etc/udhcpc/script" <<'EOF'
#!/bin/sh
case $1 in
    bound|renew)
        busybox ip addr flush dev "$interface"
        busybox ip addr add "$ip/$mask" dev "$interface"
        echo "compute-driver test guest: $interface $(cat /sys/class/net/$interface/address) got $ip/$mask" > /dev/console
        ;;
esac
EOF
chmod 755 "$root/etc/udhcpc/script"
# -- end network --
# -- volumes: virtio_blk and what it needs, for hot-plugged volume disks --
for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
        virtio_pci virtio_blk; do
    file=$(find "$work/kernel/lib/modules/$kver" -name "$module.ko*" |
        head -n1)
    case $file in
        '') ;;  # built into this kernel
        *.xz) xz -dc "$file" > "$root/lib/modules/$module.ko" ;;
        *.zst) zstd -qdc "$file" > "$root/lib/modules/$module.ko" ;;
        *) cp "$file" "$root/lib/modules/$module.ko" ;;
    esac
done
# -- end volumes --
mkdir -p "$root/etc/acpi/PWRF"
cat > "$root/etc/acpi/PWRF/00000080" <<'EOF'
#!/bin/sh
echo "compute-driver test guest: power button pressed, powering off" > /dev/console
poweroff -f
EOF
chmod 755 "$root/etc/acpi/PWRF/00000080"
cat > "$root/init" <<EOF
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in button evdev; do
    [ -f /lib/modules/\$module.ko ] && insmod /lib/modules/\$module.ko 2>/dev/null
done
# acpid reads the power button's input device and runs /etc/acpi/PWRF/*.
acpid -d -c /etc/acpi >/dev/null 2>&1 &
# -- network: virtio_net, then a DHCP client on every NIC --
for module in \$(cat /lib/modules/net/order); do
    [ -f /lib/modules/net/\$module.ko ] && insmod /lib/modules/net/\$module.ko 2>/dev/null
done
# Each NIC, hot-plugged ones too (no mdev runs here, hence the polling),
# gets a client that retries forever: a port may be wired late.
(
    while true; do
        for path in /sys/class/net/eth*; do
            [ -e "\$path" ] || continue
            nic=\${path##*/}
            [ -e "/run/udhcpc.\$nic" ] && continue
            : > "/run/udhcpc.\$nic"
            busybox ip link set "\$nic" up
            busybox udhcpc -f -i "\$nic" -t 0 -T 2 -A 2 -s /etc/udhcpc/script >/dev/null 2>&1 &
        done
        # A NIC detached since: a new one of that name gets a client.
        for mark in /run/udhcpc.*; do
            [ -e "\$mark" ] || continue
            [ -e "/sys/class/net/\${mark#/run/udhcpc.}" ] || rm -f "\$mark"
        done
        sleep 2
    done
) &
# -- end network --
# -- volumes: load virtio_blk, then print /proc/partitions and the first
# line of each new virtio disk on the console whenever the set of block
# devices changes (a volume hot-plugged or unplugged). --
for module in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev \
        virtio_pci virtio_blk; do
    [ -f /lib/modules/\$module.ko ] && insmod /lib/modules/\$module.ko 2>/dev/null
done
(
    seen=
    while true; do
        now=\$(busybox ls /sys/block | busybox tr '\\n' ' ')
        if [ "\$now" != "\$seen" ]; then
            echo "cdvol: block devices: \$now"
            busybox cat /proc/partitions
            for dev in \$now; do
                case " \$seen " in *" \$dev "*) continue ;; esac
                case \$dev in vd*)
                    echo "cdvol: \$dev starts with: \$(busybox head -c 64 /dev/\$dev | busybox head -n 1 | busybox tr -cd 'a-zA-Z0-9_ -')"
                esac
            done
            seen=\$now
        fi
        sleep 1
    done
) &
# -- end volumes --
echo "$boot_line on \$(uname -r)"
# -- console: a shell on the serial console, respawned when it exits --
# cttyhack makes the console's real tty (ttyS0) the shell's controlling
# terminal, so that Ctrl-C and job control work as on a login.
(while true; do
    setsid cttyhack sh -l </dev/console >/dev/console 2>&1
done) &
# -- end console --
while true; do
    sleep 3600
done
EOF
chmod 755 "$root/init"
(cd "$root" && find . | busybox cpio -o -H newc 2>/dev/null) |
    gzip -9 > "$work/initrd.gz"

# qemu runs as libvirt-qemu: the store must be searchable and readable by
# it (libvirt also relabels the files it hands to qemu).
mkdir -p "$store"
chmod 755 "$store"
install -m 644 "$vmlinuz" "$store/$name.vmlinuz"
install -m 644 "$work/initrd.gz" "$store/$name.initrd"
qemu-img create -q -f qcow2 "$work/disk.qcow2" 64M
install -m 644 "$work/disk.qcow2" "$store/$name.qcow2"
cat > "$store/$name.json.tmp" <<EOF
{
  "name": "$name",
  "file": "$name.qcow2",
  "disk_format": "qcow2",
  "container_format": "bare",
  "kernel": "$name.vmlinuz",
  "ramdisk": "$name.initrd",
  "cmdline": "console=ttyS0 panic=-1 quiet",
  "min_ram": 128,
  "min_disk": 0,
  "properties": {"os_type": "linux", "boot_line": "$boot_line",
                 "kernel_version": "$kver"}
}
EOF
mv "$store/$name.json.tmp" "$store/$name.json"
echo "libvirt test image: $store/$name.json (kernel $kver)"
