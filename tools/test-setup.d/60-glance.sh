#!/usr/bin/env bash
# Test setup of the image service's Glance tests (tests/functional/
# test_glance.py), which start a real Glance API themselves
# (compute_driver.testing.glance).
#
# Glance runs as its own server process, so it gets its own virtualenv,
# .tox/glance-server, rather than joining the tests' environments: its
# many pinned dependencies then never move the versions the tests run
# with. No Debian package is needed beyond python3-venv; openstack/
# requirements' upper-constraints (REQUIREMENTS_DIR, as for the DevStack
# tests) pins Glance's dependencies to a set released together when it is
# at hand. The tests find the virtualenv by itself, or through
# COMPUTE_DRIVER_GLANCE_PYTHON.
set -euo pipefail

# The newest Glance release; its standalone server is gone, so the tests
# run glance.wsgi.api:application under gunicorn.
GLANCE_VERSION=${GLANCE_VERSION:-33.0.0}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.tox/glance-server"

if "$venv/bin/python" - "$GLANCE_VERSION" >/dev/null 2>&1 <<'PY'
import importlib.metadata
import sys
import glance.wsgi  # noqa: F401
import gunicorn  # noqa: F401
sys.exit(importlib.metadata.version('glance') != sys.argv[1])
PY
then
    echo "glance: $GLANCE_VERSION installed in $venv"
    exit 0
fi

constraints=()
if [[ -n ${REQUIREMENTS_DIR:-} && -f $REQUIREMENTS_DIR/upper-constraints.txt ]]; then
    constraints=(-c "$REQUIREMENTS_DIR/upper-constraints.txt")
fi
echo "glance: installing $GLANCE_VERSION and gunicorn into $venv"
started=$SECONDS
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "${constraints[@]}" \
    "glance==$GLANCE_VERSION" gunicorn
echo "glance: installed in $((SECONDS - started)) s"
