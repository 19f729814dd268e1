#!/usr/bin/env bash
# Test setup of the DevStack plugin's tests (tests/functional/
# test_devstack_plugin.py), which run the plugin through DevStack's own
# scripts (DEVSTACK_DIR).
#
# DevStack calls sudo even as root, and the tests run it as a throw-away
# non-root STACK_USER too; DevStack's libraries call uuidgen when sourced;
# its global venv needs the Python headers and venv module stack.sh's
# install_python would install.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/common.sh"

py=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
ensure_packages sudo uuid-runtime git curl "python$py-dev" "python$py-venv"
