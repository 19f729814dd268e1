#!/usr/bin/env bash
# A small stand-in for the DevStack functions the compute-driver plugin
# calls, so that devstack/plugin.sh can be run without a DevStack tree.
# See tests/devstack/README.rst for what each function does here and how it
# differs from DevStack's.
#
# Source it; it defines functions and reads these variables:
#
# STANDIN_RECORD  "1": install_package, pip_install, pip_uninstall,
#                 setup_develop, uninstall_package, run_process,
#                 stop_process and add_user_to_group only append the call
#                 to STANDIN_CALLS instead of acting. Anything else: they
#                 act for real (needs root for packages and daemons).
# STANDIN_CALLS   file the calls are appended to, one per line, in both
#                 modes.
# STANDIN_RUN_DIR where run_process keeps its pid files and logs; in record
#                 mode, running/DAEMON marks a daemon as started.
# STANDIN_INSTALLED_PACKAGES  in record mode, the Debian packages
#                 is_package_installed treats as installed; install_package
#                 adds to it.

STANDIN_CALLS=${STANDIN_CALLS:-/dev/null}
STANDIN_RUN_DIR=${STANDIN_RUN_DIR:-${DATA_DIR:-/tmp}/standin-run}

_standin_recording() {
    [[ ${STANDIN_RECORD:-0} == 1 ]]
}

_standin_log() {
    echo "$*" >> "$STANDIN_CALLS"
}

# --- messages and errors -------------------------------------------------

# die LINENO MESSAGE...: print the message and end the DevStack run, as
# DevStack's die does (it exits the sourcing stack.sh).
function die {
    local line=$1
    shift
    echo "[ERROR] ${BASH_SOURCE[1]}:$line $*" >&2
    exit 1
}

# warn LINENO MESSAGE...: print the message and carry on.
function warn {
    local line=$1
    shift
    echo "[WARNING] ${BASH_SOURCE[1]}:$line $*" >&2
}

function echo_summary {
    echo "$@"
}

# trueorfalse DEFAULT VARNAME: the value of VARNAME as True/False.
function trueorfalse {
    local default=$1
    local value=${!2:-}
    case "${value,,}" in
        '') echo "$default" ;;
        1|yes|true|on) echo True ;;
        0|no|false|off) echo False ;;
        *) die $LINENO "$2 must be true or false, not '$value'" ;;
    esac
}

# --- plugins and services ------------------------------------------------

function define_plugin {
    _standin_log "define_plugin $*"
}

function plugin_requires {
    _standin_log "plugin_requires $*"
}

# is_service_enabled SERVICE...: true if any is in ENABLED_SERVICES. As in
# DevStack, "nova" also matches any enabled n-* service.
function is_service_enabled {
    local service
    for service in "$@"; do
        if [[ ,${ENABLED_SERVICES:-}, == *,$service,* ]]; then
            return 0
        fi
        if [[ $service == nova && ,${ENABLED_SERVICES:-} == *,n-* ]]; then
            return 0
        fi
    done
    return 1
}

# enable_service SERVICE...: as DevStack, a service disabled in local.conf
# (DISABLED_SERVICES) stays disabled.
function enable_service {
    local service
    for service in "$@"; do
        if [[ ,${DISABLED_SERVICES:-}, == *,$service,* ]]; then
            warn $LINENO "not enabling $service: it has been disabled"
            continue
        fi
        if ! is_service_enabled "$service"; then
            ENABLED_SERVICES=${ENABLED_SERVICES:+$ENABLED_SERVICES,}$service
        fi
    done
}

function disable_service {
    local service list=,${ENABLED_SERVICES:-},
    for service in "$@"; do
        list=${list//,$service,/,}
    done
    list=${list#,}
    ENABLED_SERVICES=${list%,}
    DISABLED_SERVICES=${DISABLED_SERVICES:+$DISABLED_SERVICES,}$*
    DISABLED_SERVICES=${DISABLED_SERVICES// /,}
}

# --- privileges and users ------------------------------------------------

# sudo COMMAND...: DevStack runs as a user with password-less sudo; the
# harness runs as root or inside a temporary root, so run the command
# directly when already root.
function sudo {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    else
        command sudo "$@"
    fi
}

function add_user_to_group {
    _standin_log "add_user_to_group $*"
    _standin_recording && return 0
    sudo usermod -a -G "$2" "$1"
}

# --- packages ------------------------------------------------------------

function is_package_installed {
    local pkg
    if _standin_recording; then
        for pkg in "$@"; do
            [[ " ${STANDIN_INSTALLED_PACKAGES:-} " == *" $pkg "* ]] ||
                return 1
        done
        return 0
    fi
    dpkg -s "$@" >/dev/null 2>&1
}

function install_package {
    _standin_log "install_package $*"
    if _standin_recording; then
        STANDIN_INSTALLED_PACKAGES="${STANDIN_INSTALLED_PACKAGES:-} $*"
        return 0
    fi
    sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends "$@"
}

function uninstall_package {
    _standin_log "uninstall_package $*"
    _standin_recording && return 0
    sudo env DEBIAN_FRONTEND=noninteractive apt-get purge -y -qq "$@"
}

# --- Python --------------------------------------------------------------

# The interpreter DevStack installs projects with.
PYTHON=${PYTHON:-$(command -v python3)}

function get_python_exec_prefix {
    dirname "$PYTHON"
}

function pip_install {
    _standin_log "pip_install $*"
    _standin_recording && return 0
    "$PYTHON" -m pip install -q "$@"
}

function pip_uninstall {
    _standin_log "pip_uninstall $*"
    _standin_recording && return 0
    "$PYTHON" -m pip uninstall -q -y "$@" || true
}

# setup_develop PROJECT_DIR [EXTRAS]: an editable install of the project,
# with the given comma-separated extras.
function setup_develop {
    local project_dir=$1 extras=${2:-}
    _standin_log "setup_develop $*"
    _standin_recording && return 0
    "$PYTHON" -m pip install -q -e "$project_dir${extras:+[$extras]}"
}

# --- processes -----------------------------------------------------------

# run_process SERVICE COMMAND [GROUP] [USER]: start COMMAND in the
# background as the service SERVICE, if the service is enabled. DevStack
# makes a systemd unit of it; here it is a plain background process whose
# pid is kept in STANDIN_RUN_DIR. GROUP and USER are accepted and ignored.
function run_process {
    local service=$1 command=$2
    if ! is_service_enabled "$service"; then
        return 0
    fi
    _standin_log "run_process $service $command"
    mkdir -p "$STANDIN_RUN_DIR"
    if _standin_recording; then
        # Nothing runs; leave a mark the harness's fake probes
        # (tests/devstack/fake-bin) read as "this daemon is up".
        local daemon=${command%% *}
        daemon=${daemon##*/}
        mkdir -p "$STANDIN_RUN_DIR/running"
        : > "$STANDIN_RUN_DIR/running/$daemon"
        echo "$daemon" > "$STANDIN_RUN_DIR/$service.daemon"
        return 0
    fi
    setsid bash -c "exec $command" \
        >"$STANDIN_RUN_DIR/$service.log" 2>&1 </dev/null &
    echo $! >"$STANDIN_RUN_DIR/$service.pid"
}

# stop_process SERVICE: stop what run_process started for SERVICE.
function stop_process {
    local service=$1 pid
    _standin_log "stop_process $service"
    if _standin_recording; then
        if [[ -f $STANDIN_RUN_DIR/$service.daemon ]]; then
            rm -f "$STANDIN_RUN_DIR/running/$(<"$STANDIN_RUN_DIR/$service.daemon")" \
                "$STANDIN_RUN_DIR/$service.daemon"
        fi
        return 0
    fi
    local pidfile=$STANDIN_RUN_DIR/$service.pid
    [[ -f $pidfile ]] || return 0
    pid=$(<"$pidfile")
    if kill "$pid" 2>/dev/null; then
        local i
        for i in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$pidfile" "$STANDIN_RUN_DIR/$service.log"
    rmdir "$STANDIN_RUN_DIR" 2>/dev/null || true
}

# --- INI files -------------------------------------------------------------
#
# These behave as DevStack's inc/ini-config does: SECTION and OPTION are
# sed basic regular expressions matched at the start of a line; a section
# runs from its "[SECTION]" line to the next line starting with "["; new
# options go right below the section line; new sections are appended
# after an empty line; the file is created when missing; replacing a value
# keeps the spacing around "="; iniget joins the words of the value with
# single spaces. "-sudo" as the first argument runs the change with sudo.

# The sed address of SECTION's lines, header included.
_standin_ini_range() {
    printf '/^\\[%s\\]/,/^\\[.*\\]/' "$1"
}

# ini_has_option [-sudo] FILE SECTION OPTION
function ini_has_option {
    local sudo=''
    if [[ $1 == -sudo ]]; then
        sudo=sudo
        shift
    fi
    local file=$1 section=$2 option=$3 found
    found=$($sudo sed -ne "$(_standin_ini_range "$section") { /^${option}[ \t]*=/ p; }" \
        "$file" 2>/dev/null)
    [[ -n $found ]]
}

# iniget FILE SECTION OPTION
function iniget {
    local file=$1 section=$2 option=$3 found words
    found=$(sed -ne "$(_standin_ini_range "$section") { /^${option}[ \t]*=/ p; }" \
        "$file" 2>/dev/null)
    read -r -d '' -a words <<< "${found#*=}" || true
    echo "${words[*]}"
}

# iniget_multiline FILE SECTION OPTION: every value of OPTION, on one line.
function iniget_multiline {
    local file=$1 section=$2 option=$3 found words
    found=$(sed -ne "$(_standin_ini_range "$section") { s/^${option}[ \t]*=[ \t]*//gp; }" \
        "$file" 2>/dev/null)
    read -r -d '' -a words <<< "$found" || true
    echo "${words[*]}"
}

# iniset [-sudo] FILE SECTION OPTION VALUE: set OPTION, adding the section
# and the file when missing. Nothing happens without SECTION or OPTION.
function iniset {
    local sudo='' sudo_arg=''
    if [[ $1 == -sudo ]]; then
        sudo=sudo
        sudo_arg=-sudo
        shift
    fi
    local file=$1 section=${2:-} option=${3:-} value=${4:-} words
    if [[ -z $section || -z $option ]]; then
        return 0
    fi
    # As DevStack: runs of blanks in the value become one space, and "\"
    # and "&" are escaped for sed's replacement text.
    read -r -d '' -a words <<< "$value" || true
    value=${words[*]}
    value=${value//\\/\\\\}
    value=${value//&/\\&}
    if ! $sudo grep -q "^\[$section\]" "$file" 2>/dev/null; then
        printf '\n[%s]\n' "$section" | $sudo tee -a "$file" >/dev/null
    fi
    if ! ini_has_option $sudo_arg "$file" "$section" "$option"; then
        $sudo sed -i -e "/^\[$section\]/ a\\
$option = $value
" "$file"
    else
        # \x01 as the s command's delimiter: values may hold "/" or "|".
        local sep=$'\x01'
        $sudo sed -i -e "$(_standin_ini_range "$section") s$sep^\(${option}[ \t]*=[ \t]*\).*\$$sep\1$value$sep" \
            "$file"
    fi
}

# iniset_multiline [-sudo] FILE SECTION OPTION VALUE...: replace every
# line of OPTION by one line per VALUE, in order.
function iniset_multiline {
    local sudo=''
    if [[ $1 == -sudo ]]; then
        sudo=sudo
        shift
    fi
    local file=$1 section=$2 option=$3
    shift 3
    local -a values
    # Word-split like DevStack, which passes the values unquoted.
    read -r -d '' -a values <<< "$*" || true
    if ! $sudo grep -q "^\[$section\]" "$file" 2>/dev/null; then
        printf '\n[%s]\n' "$section" | $sudo tee -a "$file" >/dev/null
    else
        $sudo sed -i -e "$(_standin_ini_range "$section") { /^${option}[ \t]*=/ d; }" "$file"
    fi
    # Each line is inserted right below the section line, so insert the
    # last value first.
    local i
    for ((i = ${#values[@]} - 1; i >= 0; i--)); do
        $sudo sed -i -e "/^\[$section\]/ a\\
$option = ${values[i]}
" "$file"
    done
}

# iniadd [-sudo] FILE SECTION OPTION VALUE...: add values to OPTION.
function iniadd {
    local sudo_arg=''
    if [[ $1 == -sudo ]]; then
        sudo_arg=-sudo
        shift
    fi
    local file=$1 section=$2 option=$3
    shift 3
    local existing
    existing=$(iniget_multiline "$file" "$section" "$option")
    # shellcheck disable=SC2086  # the values are words, as in DevStack
    iniset_multiline $sudo_arg "$file" "$section" "$option" $existing "$@"
}

# inidelete [-sudo] FILE SECTION OPTION: remove every line of OPTION.
function inidelete {
    local sudo=''
    if [[ $1 == -sudo ]]; then
        sudo=sudo
        shift
    fi
    local file=$1 section=${2:-} option=${3:-}
    if [[ -z $section || -z $option ]]; then
        return 0
    fi
    $sudo sed -i -e "$(_standin_ini_range "$section") { /^${option}[ \t]*=/ d; }" "$file"
}

# inicomment [-sudo] FILE SECTION OPTION: turn OPTION's lines into
# comments ("#option = value").
function inicomment {
    local sudo=''
    if [[ $1 == -sudo ]]; then
        sudo=sudo
        shift
    fi
    local file=$1 section=$2 option=$3
    $sudo sed -i -e "$(_standin_ini_range "$section") s|^\(${option}[ \t]*=.*\$\)|#\1|" "$file"
}

# iniuncomment [-sudo] FILE SECTION OPTION: the reverse of inicomment.
function iniuncomment {
    local sudo=''
    if [[ $1 == -sudo ]]; then
        sudo=sudo
        shift
    fi
    local file=$1 section=$2 option=$3
    $sudo sed -i -e "$(_standin_ini_range "$section") s|[^ \t]*#[ \t]*\(${option}[ \t]*=.*\$\)|\1|" "$file"
}

# iniget_sections FILE: the section names, space-separated.
function iniget_sections {
    local names
    names=$(sed -ne 's/^\[\(.*\)\]/\1/p' "$1")
    local -a words
    read -r -d '' -a words <<< "$names" || true
    echo "${words[*]}"
}
