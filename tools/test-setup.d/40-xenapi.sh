#!/usr/bin/env bash
# Test setup of the xenapi backend.
#
# Its daemon is the XAPI simulator the tests start themselves, and the
# XenAPI SDK comes from pip, so only the openssl tool is needed: the TLS
# tests make a throw-away certificate with it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/common.sh"

ensure_packages openssl
