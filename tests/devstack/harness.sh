#!/usr/bin/env bash
# Runs the DevStack plugin (devstack/plugin.sh) the way DevStack does, with
# tests/devstack/devstack-functions.sh standing in for DevStack, on a
# temporary root. See tests/devstack/README.rst.
#
# Usage: harness.sh stack [PHASE...]   (default: every phase, in order)
#        harness.sh unstack
#        harness.sh clean
#
# Each call is one process, as stack.sh, unstack.sh and clean.sh are, so
# that the plugin can only pass state between them through files.
#
# Environment:
#   HARNESS_ROOT         required; DEST, DATA_DIR, /etc/compute-driver,
#                        nova.conf and tempest.conf live under it
#   HARNESS_WORK         required; a directory outside HARNESS_ROOT for the
#                        harness's own files (calls log, run dir)
#   HARNESS_SERVICES     ENABLED_SERVICES before the plugin's settings add
#                        its own (e.g. "n-cpu,tempest")
#   HARNESS_DISABLED_SERVICES  services local.conf disables
#   HARNESS_NOVA_ADAPTER "present" adds a stand-in
#                        compute_driver.nova.driver behind any real one,
#                        "absent" makes finding it fail; unset leaves the
#                        installed package as it is
#   HARNESS_NOVA_DIR     a directory holding a "nova" package (with
#                        nova/virt/) to put first on PYTHONPATH, as
#                        DevStack's editable install of nova does; the
#                        plugin installs the real shim into it
#   STANDIN_RECORD       "1" records package, pip and process calls in
#                        HARNESS_WORK/calls.log instead of running them, and
#                        puts tests/devstack/fake-bin first on PATH so that
#                        the plugin's probes see the daemons it "started"
#   HARNESS_RUNNING      in record mode, the daemons (dockerd, libvirtd,
#                        virtlogd) to treat as running before the plugin
#   PYTHON               the interpreter compute-driver is installed in
#   COMPUTE_DRIVER_*     the plugin's settings (devstack/settings)
set -o errexit

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)

: "${HARNESS_ROOT:?HARNESS_ROOT must name a temporary root directory}"
: "${HARNESS_WORK:?HARNESS_WORK must name a work directory}"
mode=${1:?usage: harness.sh stack [PHASE...] | unstack | clean}
shift

# What stackrc and stack.sh define before any plugin runs.
export PYTHON=${PYTHON:-$(command -v python3)}
DEST=$HARNESS_ROOT/opt/stack
DATA_DIR=$DEST/data
NOVA_CONF=$HARNESS_ROOT/etc/nova/nova.conf
TEMPEST_CONFIG=$DEST/tempest/etc/tempest.conf
STACK_USER=$(id -un)
ENABLED_SERVICES=${HARNESS_SERVICES:-}
DISABLED_SERVICES=${HARNESS_DISABLED_SERVICES:-}
COMPUTE_DRIVER_DIR=$repo
COMPUTE_DRIVER_ROOT=$HARNESS_ROOT
export STANDIN_CALLS=$HARNESS_WORK/calls.log
export STANDIN_RUN_DIR=$HARNESS_WORK/run
mkdir -p "$DATA_DIR"
if [[ ${STANDIN_RECORD:-0} == 1 ]]; then
    # Nothing really starts in record mode; probe fake daemons instead.
    export PATH=$here/fake-bin:$PATH
fi

case ${HARNESS_NOVA_ADAPTER:-} in
    present|absent)
        adapter_dir=$HARNESS_WORK/nova-adapter-$HARNESS_NOVA_ADAPTER
        mkdir -p "$adapter_dir/standin"
        # Never imported: the plugin only looks for the adapter, and the
        # shim only names it.
        cat > "$adapter_dir/standin/driver.py" <<'EOF'
class ComputeDriverAdapter:
    """Stands in for the Nova adapter in the DevStack plugin's tests."""
EOF
        if [[ $HARNESS_NOVA_ADAPTER == present ]]; then
            cat > "$adapter_dir/sitecustomize.py" <<EOF
import compute_driver.nova
compute_driver.nova.__path__.append('$adapter_dir/standin')
EOF
        else
            cat > "$adapter_dir/sitecustomize.py" <<'EOF'
import sys


class _NoAdapter:
    def find_spec(self, name, path=None, target=None):
        if name == 'compute_driver.nova.driver':
            raise ModuleNotFoundError(
                "No module named 'compute_driver.nova.driver'", name=name)
        return None


sys.meta_path.insert(0, _NoAdapter())
EOF
        fi
        export PYTHONPATH=$adapter_dir${PYTHONPATH:+:$PYTHONPATH}
        ;;
esac
if [[ -n ${HARNESS_NOVA_DIR:-} ]]; then
    export PYTHONPATH=$HARNESS_NOVA_DIR${PYTHONPATH:+:$PYTHONPATH}
fi

# shellcheck source=tests/devstack/devstack-functions.sh
source "$here/devstack-functions.sh"
# shellcheck source=devstack/settings
source "$repo/devstack/settings"

case $mode in
    stack)
        phases=("$@")
        if [[ ${#phases[@]} -eq 0 ]]; then
            phases=(pre-install install post-config extra test-config)
        fi
        for phase in "${phases[@]}"; do
            # shellcheck source=devstack/plugin.sh
            source "$repo/devstack/plugin.sh" stack "$phase"
        done
        ;;
    unstack|clean)
        # shellcheck source=devstack/plugin.sh
        source "$repo/devstack/plugin.sh" "$mode"
        ;;
    *)
        echo "unknown mode '$mode'" >&2
        exit 2
        ;;
esac
