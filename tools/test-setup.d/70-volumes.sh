#!/usr/bin/env bash
# Test setup of volumes (compute_driver.volume).
#
# Local volumes are loop devices (util-linux's losetup); the docker
# backend formats them (e2fsprogs) and probes them with blkid. The iSCSI
# tests run their own userspace target, tgtd from Debian's tgt, on
# 127.0.0.1 and log in with open-iscsi's iscsiadm, which also needs the
# kernel's iscsi_tcp initiator: a kernel without it cannot be fixed here,
# and those tests say so when they skip. LVM volumes (lvm2) need the
# kernel's device-mapper, likewise. os-brick comes from pip (the volumes
# extra).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/common.sh"

ensure_packages util-linux e2fsprogs tgt open-iscsi lvm2
