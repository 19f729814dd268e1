#!/usr/bin/env bash
# Runs the DevStack plugin through DevStack's own scripts: sources the real
# functions, lib/stack, stackrc (with local.conf's localrc section), the
# service libraries, registers and fetches the plugin with fetch_plugins and
# runs its phases with run_phase, in the order stack.sh, unstack.sh and
# clean.sh use. See tests/devstack/README.rst.
#
# Usage: devstack.sh bootstrap          global venv + install_infra
#        devstack.sh stack [PHASE...]   (default: every phase, in order)
#        devstack.sh unstack
#        devstack.sh clean
#        devstack.sh eval SCRIPT        after stack.sh's sourcing, no phase
#
# Run it with TOP_DIR's local.conf written; each call is one process, as
# stack.sh, unstack.sh and clean.sh are.
#
# Environment:
#   TOP_DIR        required; a writable copy of DevStack holding local.conf
#   TEST_NOVA_CONF_DIR  where lib/nova's /etc/nova is put (the one place
#                  this script departs from DevStack: lib/nova hard-codes
#                  NOVA_CONF_DIR)

# DevStack's files are sourced from TOP_DIR at run time, and set globals
# for one another.
# shellcheck disable=SC1090,SC1091,SC2034
mode=${1:?usage: devstack.sh bootstrap | stack [PHASE...] | unstack | clean | eval SCRIPT}
shift
: "${TOP_DIR:?TOP_DIR must name a copy of DevStack}"
export TOP_DIR
FILES=$TOP_DIR/files

# The service libraries stack.sh sources between override_defaults and
# the source phase.
function _source_service_libs {
    local lib
    for lib in apache tls infra libraries lvm horizon keystone glance nova \
            placement cinder swift neutron ldap dstat atop tcpdump etcd3 \
            os-vif; do
        source "$TOP_DIR/lib/$lib"
    done
    if [[ -n ${TEST_NOVA_CONF_DIR:-} ]]; then
        NOVA_CONF_DIR=$TEST_NOVA_CONF_DIR
        NOVA_CONF=$NOVA_CONF_DIR/nova.conf
    fi
}

# stack.sh from its start to the first plugin phase, less what needs the
# network or other services (requirements clone, install_prereqs,
# install_pip, fixup_stuff, bindep, the database and the message queue).
function _stack_preamble {
    source "$TOP_DIR/functions"
    source "$TOP_DIR/lib/stack"
    GetDistro
    rm -f "$TOP_DIR/.localrc.auto"
    extract_localrc_section "$TOP_DIR/local.conf" "$TOP_DIR/localrc" \
        "$TOP_DIR/.localrc.auto"
    source "$TOP_DIR/stackrc"
    if [[ ! -d $DEST ]]; then
        sudo mkdir -p "$DEST"
        safe_chown -R "$STACK_USER" "$DEST"
        safe_chmod 0755 "$DEST"
    fi
    if [[ ! -d $DATA_DIR ]]; then
        sudo mkdir -p "$DATA_DIR"
        safe_chown -R "$STACK_USER" "$DATA_DIR"
        safe_chmod 0755 "$DATA_DIR"
    fi
    install_python
    source "$TOP_DIR/lib/database"
    source "$TOP_DIR/lib/rpc_backend"
    fetch_plugins
    run_phase override_defaults
    _source_service_libs
    run_phase source
    if [[ $GLOBAL_VENV == True ]]; then
        setup_devstack_virtualenv
    fi
}

case $mode in
    bootstrap)
        set -o errexit
        _stack_preamble
        # stack.sh's "install_infra": the requirements venv with
        # edit-constraints, and pbr.
        install_infra
        ;;
    stack)
        set -o errexit
        _stack_preamble
        phases=("$@")
        if [[ ${#phases[@]} -eq 0 ]]; then
            phases=(pre-install install post-config extra test-config)
        fi
        for phase in "${phases[@]}"; do
            run_phase stack "$phase"
        done
        ;;
    eval)
        set -o errexit
        _stack_preamble
        eval "$1"
        ;;
    unstack)
        # unstack.sh, less its refusal to run as root and the other
        # services' stop and cleanup functions.
        source "$TOP_DIR/functions"
        source "$TOP_DIR/lib/database"
        source "$TOP_DIR/openrc"
        DATA_DIR=${DATA_DIR:-${DEST}/data}
        GetDistro
        run_phase override_defaults
        _source_service_libs
        load_plugin_settings
        set -o xtrace
        run_phase unstack
        clean_pyc_files
        sudo sed -i "\+directory = ${DEST}+ d" /etc/gitconfig
        ;;
    clean)
        # clean.sh up to its own cleanup of the other services, which
        # then removes DATA_DIR (and so the global venv) wholesale.
        source "$TOP_DIR/functions"
        source "$TOP_DIR/openrc"
        if [[ -r $TOP_DIR/.stackenv ]]; then
            source "$TOP_DIR/.stackenv"
        fi
        GetDistro
        _source_service_libs
        set -o xtrace
        bash "${BASH_SOURCE[0]}" unstack
        load_plugin_settings
        run_phase clean
        ;;
    *)
        echo "unknown mode '$mode'" >&2
        exit 2
        ;;
esac
