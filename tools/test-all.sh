#!/usr/bin/env bash
# Runs every test suite of compute-driver on a fresh Debian machine.
#
# Run it as root from anywhere: it installs what the tests need (Debian
# packages, daemons, test images) through tools/install-test-deps.sh, then
# runs the tox environments pep8, mypy, docs, py3 (unit), py310 (unit, when a
# Python 3.10 is at hand), functional, nova (Nova's driver suite and
# the adapter's tests, against nova from PyPI) and nova-servers (Nova's
# own server tests on the adapter). CI runs exactly this through .ci/run.
#
# COMPUTE_DRIVER_STRICT=1 (the default here) turns every "daemon missing"
# skip of a functional test into a failure; set it to 0 on a laptop where
# you knowingly lack a daemon. DEVSTACK_DIR (default ../shared/devstack
# when it exists) is the DevStack tree the plugin's tests run; without one
# they fail in strict mode.
#
# Exit status: 0 when every environment passed, else the first failing
# environment's status (5 means pytest collected no test).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export COMPUTE_DRIVER_STRICT="${COMPUTE_DRIVER_STRICT:-1}"

# The DevStack plugin's tests run it through DevStack's own scripts: CI
# keeps DevStack's tree and openstack/requirements' at ../shared.
if [[ -z ${DEVSTACK_DIR:-} && -d ../shared/devstack ]]; then
    DEVSTACK_DIR=$(cd ../shared/devstack && pwd)
    export DEVSTACK_DIR
fi
if [[ -z ${REQUIREMENTS_DIR:-} && -d ../shared/requirements ]]; then
    REQUIREMENTS_DIR=$(cd ../shared/requirements && pwd)
    export REQUIREMENTS_DIR
fi

bash tools/install-test-deps.sh

venv=.tox/runner
if [[ ! -x "$venv/bin/tox" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet 'tox>=4'
fi

# setup.cfg promises Python 3.10; run the unit tests on it too when the
# machine has it, on PATH or through pyenv.
# (A pyenv shim answers "command -v" even when it cannot run, so try it.)
default_envs=pep8,mypy,docs,py3,functional,nova,nova-servers
if ! python3.10 -c '' >/dev/null 2>&1 && command -v pyenv >/dev/null &&
        py310_prefix=$(pyenv prefix 3.10 2>/dev/null); then
    PATH="$py310_prefix/bin:$PATH"
fi
if python3.10 -c '' >/dev/null 2>&1; then
    default_envs=pep8,mypy,docs,py3,py310,functional,nova,nova-servers
else
    echo "note: no Python 3.10 here; the 3.10 floor is not tested" >&2
fi

envs=${TOX_ENVS:-$default_envs}
status=0
IFS=, read -r -a env_list <<< "$envs"
for env in "${env_list[@]}"; do
    echo "==> tox -e $env"
    rc=0
    started=$SECONDS
    "$venv/bin/tox" -e "$env" || rc=$?
    echo "==> tox -e $env: exit $rc in $((SECONDS - started)) s"
    if [[ $rc -ne 0 && $status -eq 0 ]]; then
        status=$rc
    fi
done
exit "$status"
