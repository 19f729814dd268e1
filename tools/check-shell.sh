#!/usr/bin/env bash
# Runs shellcheck over every shell script in the tree.
#
# Without shellcheck this fails under COMPUTE_DRIVER_STRICT=1 or CI=true
# and only warns otherwise, like the functional tests' daemon checks.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

strict=0
case "${COMPUTE_DRIVER_STRICT:-}:${CI:-}" in
    1:*|true:*|yes:*|*:true) strict=1 ;;
esac

if ! command -v shellcheck >/dev/null 2>&1; then
    echo "shellcheck is not installed (apt-get install shellcheck)" >&2
    exit "$strict"
fi

mapfile -t scripts < <(
    git ls-files --cached --others --exclude-standard |
        while read -r f; do
            case "$f" in
                *.sh|.ci/run) echo "$f" ;;
                devstack/*)
                    [[ -f "$f" ]] && head -c 200 "$f" | grep -q 'bash' &&
                        echo "$f" ;;
            esac
        done)

echo "shellcheck: ${#scripts[@]} scripts"
shellcheck --severity=style --external-sources "${scripts[@]}"
