#!/usr/bin/env bash
# Helpers shared by tools/install-test-deps.sh and the per-backend steps in
# tools/test-setup.d/. Source it; it defines functions only.

# is_root: true when this shell may install packages and start daemons.
is_root() {
    [[ $(id -u) -eq 0 ]]
}

# ensure_packages PKG...: installs the Debian packages that are missing.
# Without root it only reports them and returns 0, so a developer laptop
# can still run the suites that need nothing more.
ensure_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null |
                grep -q 'install ok installed'; then
            missing+=("$pkg")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        echo "packages: all installed ($*)"
        return 0
    fi
    if ! is_root; then
        echo "packages missing (run as root to install): ${missing[*]}" >&2
        return 0
    fi
    echo "installing: ${missing[*]}"
    if [[ -z ${_COMPUTE_DRIVER_APT_UPDATED:-} ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        export _COMPUTE_DRIVER_APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}

# wait_for DESCRIPTION SECONDS COMMAND...: polls COMMAND every half second
# until it succeeds; fails with a message naming DESCRIPTION on timeout.
wait_for() {
    local what=$1 seconds=$2
    shift 2
    local deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            echo "timed out after ${seconds}s waiting for $what" >&2
            return 1
        fi
        sleep 0.5
    done
}
