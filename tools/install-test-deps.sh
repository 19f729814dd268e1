#!/usr/bin/env bash
# Installs and starts what the test suites need on a Debian machine.
#
# Idempotent: a second run only checks. Needs root to install; run as
# another user it reports what is missing and leaves the decision to the
# tests (which skip, or fail under COMPUTE_DRIVER_STRICT=1).
set -euo pipefail

# Debian packages every suite needs: venv for tox, git for pbr's version,
# and the shell linter the pep8 environment runs.
packages=(python3-venv git shellcheck)

missing=()
for pkg in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
            grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "test dependencies: all installed"
    exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
    echo "test dependencies missing (run as root to install): ${missing[*]}" >&2
    exit 0
fi

echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
