# Shared by the shell test scripts (tests/slurm.sh, tests/deb.sh,
# tests/desktop.sh, packaging/ansible/test.sh): one line per check, then
# "N passed, N failed", and a non-zero exit on any failure.
# shellcheck shell=bash

passed=0
failed=0
say() { echo "$*"; }
pass() { passed=$((passed + 1)); say "ok: $1"; }
fail() {
    failed=$((failed + 1))
    say "FAIL: $1"
    shift
    local line
    for line in "$@"; do say "#   $line"; done
}
# check_eq NAME EXPECTED ACTUAL: exact string comparison.
check_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected: $2" "actual:   $3"; fi
}
# check NAME COMMAND...: passes when the command succeeds.
check() {
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
finish() {
    say "$passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
    exit $?
}
# A setup step that must work; anything else is reported as one failure.
must() {
    local what=$1
    shift
    local out
    if ! out=$("$@" 2>&1); then
        fail "setup: $what" "${out//$'\n'/$'\n'#   }"
        finish
    fi
}
installed() { [ "$(dpkg-query -W -f '${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
# require_root WHY: skips visibly when not root, and fails under CI=true.
require_root() {
    if [ "$(id -u)" != 0 ]; then
        say "skipped: ${0##*/} needs root ($1)"
        say "0 passed, 0 failed, 1 skipped"
        [ "${CI:-}" = true ] && exit 1
        exit 0
    fi
}
# install_missing WHAT:PACKAGE...: installs PACKAGE unless WHAT (a command,
# or an absolute path) is there already; extra packages may be appended to
# the array need_pkgs beforehand.
install_missing() {
    local pair what
    for pair in "$@"; do
        what=${pair%%:*}
        if [ "${what#/}" != "$what" ]; then
            [ -e "$what" ] && continue
        else
            command -v "$what" >/dev/null && continue
        fi
        need_pkgs+=("${pair#*:}")
    done
    [ ${#need_pkgs[@]} -gt 0 ] || return 0
    say "# installing: ${need_pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${need_pkgs[@]}" >/dev/null 2>&1 ||
        { apt-get update >/dev/null 2>&1 && must "apt-get install ${need_pkgs[*]}" \
            apt-get install -y --no-install-recommends "${need_pkgs[@]}"; }
}
need_pkgs=()
# refuse_if_installed PACKAGE...: these tests install and remove the real
# packages, so they never replace ones installed from elsewhere.
refuse_if_installed() {
    local pkg
    for pkg in "$@"; do
        if installed "$pkg"; then
            fail "setup: $pkg is already installed on this machine; not replacing it"
            finish
        fi
    done
}
# add_user NAME: useradd's NAME with a home and bash; prints the home.
add_user() { useradd -m -s /bin/bash "$1" && getent passwd "$1" | cut -d: -f6; }
# deb11_config CONFIG TREE USER [LINE...]: writes CONFIG (mode 644): /home and
# /tmp bound, no log socket, and one sysroot deb11 at TREE, linux32, for USER
# only, with LINE... as more of its keys.
deb11_config() {
    local config=$1 tree=$2 user=$3
    shift 3
    {
        printf '[defaults]\nbinds = ["/home", "/tmp"]\nlog_socket = ""\n\n[sysroot.deb11]\n'
        printf 'path = "%s"\npersonality = "linux32"\nusers = ["%s"]\n' "$tree" "$user"
        printf '%s\n' "$@"
    } >"$config"
    chmod 644 "$config"
}

# The shared frame of the package tests (tests/deb.sh, packaging/ansible/test.sh):
# refuses to run over installed packages, makes $WORK, moves $CONFIG aside and
# puts everything back at exit: purges the packages, removes $USER_OK, runs the
# caller's extra_cleanup if it defines one, restores $CONFIG.
package_test_frame() {
    refuse_if_installed imageswitch imageswitch-slurm
    WORK=$(mktemp -d)
    chmod 755 "$WORK"
    config_saved=""
    trap package_test_cleanup EXIT
    if [ -e "$CONFIG" ]; then
        config_saved=$WORK/sysroots.toml.saved
        mv "$CONFIG" "$config_saved"
    fi
}
package_test_cleanup() {
    dpkg -P imageswitch-slurm imageswitch >/dev/null 2>&1
    userdel -r "$USER_OK" >/dev/null 2>&1
    if declare -F extra_cleanup >/dev/null; then extra_cleanup; fi
    rm -f "$CONFIG"
    [ -n "$config_saved" ] && mv "$config_saved" "$CONFIG"
    rm -rf "$WORK"
}
