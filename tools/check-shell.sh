#!/usr/bin/env bash
# Runs shellcheck over every shell script in the tree.
#
# Without shellcheck this fails under COMPUTE_DRIVER_STRICT=1 or CI=true
# and only warns otherwise, like the functional tests' daemon checks.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The same test as compute_driver.testing.fixtures.strict_mode().
is_true() {
    case "${1,,}" in
        1|true|yes|on) return 0 ;;
    esac
    return 1
}
strict=0
if is_true "${COMPUTE_DRIVER_STRICT:-}" || is_true "${CI:-}"; then
    strict=1
fi

if ! command -v shellcheck >/dev/null 2>&1; then
    echo "shellcheck is not installed (apt-get install shellcheck)" >&2
    exit "$strict"
fi

mapfile -t scripts < <(
    git ls-files --cached --others --exclude-standard |
        while read -r f; do
            case "$f" in
                *.sh|.ci/run) echo "$f" ;;
                devstack/*|tests/devstack/bin/*)
                    [[ -f "$f" ]] && head -c 200 "$f" | grep -q 'bash' &&
                        echo "$f" ;;
            esac
        done)

echo "shellcheck: ${#scripts[@]} scripts"
shellcheck --severity=style --external-sources "${scripts[@]}"
