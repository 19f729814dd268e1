#!/usr/bin/env bash
# Sourced by the fake probes in this directory: is_running DAEMON is true
# when the harness says DAEMON ran before the plugin (HARNESS_RUNNING, a
# space-separated list) or the stand-in's run_process "started" it.
is_running() {
    [[ " ${HARNESS_RUNNING:-} " == *" $1 "* ]] ||
        [[ -e ${STANDIN_RUN_DIR:?}/running/$1 ]]
}
