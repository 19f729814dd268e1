#!/usr/bin/env bash
# Test setup of the networking helpers (compute_driver.network).
#
# The functional tests run dnsmasq (Debian's dnsmasq-base: the binary
# without the system service, which would otherwise start and listen on
# the host) on a bridge inside namespaces they create, get a lease with
# busybox's udhcpc and ping with busybox's ping; nsenter (util-linux)
# runs those inside the namespaces. os-vif and pyroute2 come from pip
# (the network extra).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/common.sh"

ensure_packages dnsmasq-base busybox-static util-linux
