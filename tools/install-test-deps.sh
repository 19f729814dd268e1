#!/usr/bin/env bash
# Installs and starts what the test suites need on a Debian machine.
#
# The base packages every suite needs are handled here; each backend keeps
# its own steps (Debian packages, daemons, test images) in
# tools/test-setup.d/<backend>.sh, run in name order after the base. Each
# step is idempotent: a second run only checks. Needs root to install; run
# as another user it reports what is missing and leaves the decision to the
# tests (which skip, or fail under COMPUTE_DRIVER_STRICT=1).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tools/test-setup.d/common.sh
source "$here/test-setup.d/common.sh"

# Debian packages every suite needs: venv for tox, git for pbr's version,
# and the shell linter the pep8 environment runs.
ensure_packages python3-venv git shellcheck

for step in "$here"/test-setup.d/[0-9]*.sh; do
    [[ -e "$step" ]] || continue
    echo "test setup: $(basename "$step")"
    bash "$step"
done
