#!/bin/bash
#
# DevStack plugin of compute-driver. DevStack sources it as
#
#   source plugin.sh stack pre-install|install|post-config|extra|test-config
#   source plugin.sh unstack
#   source plugin.sh clean
#
# after devstack/settings; the work is done by devstack/lib/compute-driver.

# Save trace setting
_XTRACE_COMPUTE_DRIVER_PLUGIN=$(set +o | grep xtrace)
set -o xtrace

# shellcheck source=devstack/lib/compute-driver
source "$(dirname "${BASH_SOURCE[0]}")/lib/compute-driver"

if is_service_enabled compute-driver; then
    case "$1/${2:-}" in
        stack/pre-install)
            echo_summary "Checking the compute-driver settings"
            validate_compute_driver_settings
            ;;
        stack/install)
            echo_summary "Installing compute-driver with the" \
                "$COMPUTE_DRIVER_BACKEND backend"
            install_compute_driver
            ;;
        stack/post-config)
            echo_summary "Configuring compute-driver"
            configure_compute_driver
            ;;
        stack/extra)
            echo_summary "Checking the $COMPUTE_DRIVER_BACKEND backend"
            check_compute_driver
            ;;
        stack/test-config)
            configure_compute_driver_tempest
            ;;
        unstack/*)
            stop_compute_driver
            ;;
        clean/*)
            cleanup_compute_driver
            ;;
    esac
fi

# Restore xtrace
$_XTRACE_COMPUTE_DRIVER_PLUGIN
