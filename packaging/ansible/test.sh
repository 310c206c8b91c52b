#!/usr/bin/env bash
# Tests the Ansible role against this machine (localhost, local connection):
# builds the .deb with packaging/deb/build.sh, installs ansible-core from PyPI
# into a virtualenv, then runs site.yml with a declaration whose one sysroot is
# built by sysrootctl from the cached busybox tree ("tarball" method):
#   check mode on a new node reports changes and changes nothing;
#   the first run changes, installs imageswitch 4755 root, the SPANK plugin
#   package and the tree, and a
#   useradd'ed user can enter it; the second run and a check run report changed=0;
#   drift (a deleted alias link) is reported by check mode from sysrootctl plan's
#   exit status and repaired by the next run; check mode validates and plans
#   the new declaration, not the installed one: a sysroot added to it shows in
#   the plan, and a declaration with a syntax error fails the check run as it
#   fails the real one, and the old file stays.
#
#   bash packaging/ansible/test.sh     (as root)
#
# One line per check, then "N passed, N failed"; non-zero exit on any failure.
# Refuses to run when imageswitch is already installed; restores an existing
# /etc/sysroots.toml; removes the package, the trees and the user afterwards.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
STATE=/var/lib/imageswitch-ansible-test
CONFIG=/etc/sysroots.toml
TREE_SRC=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}/busybox
USER_OK=isw-ansible
VENV=${ANSIBLE_TEST_VENV:-$REPO/target/ansible-venv}
# Shared with tests/deb.sh, which builds the same release packages.
export CARGO_TARGET_DIR=${ANSIBLE_TEST_TARGET_DIR:-$REPO/target/packages}
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_RETRY_FILES_ENABLED=0 ANSIBLE_LOCALHOST_WARNING=0

# shellcheck source=tests/support/checks.sh
source "$REPO/tests/support/checks.sh"

require_root "it installs packages"
extra_cleanup() { rm -rf "$STATE" /var/cache/imageswitch-ansible; }
package_test_frame
rm -rf "$STATE"

python3 -c 'import venv, ensurepip' 2>/dev/null || need_pkgs+=(python3-venv)
/usr/bin/python3 -c 'import apt' 2>/dev/null || need_pkgs+=(python3-apt)
install_missing dpkg-shlibdeps:dpkg-dev busybox:busybox-static /usr/include/slurm/spank.h:libslurm-dev
must "cached busybox tree" bash "$REPO/tests/support/trees.sh" busybox
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    must "python3 -m venv $VENV" python3 -m venv "$VENV"
    must "pip install ansible-core" "$VENV/bin/pip" install --quiet 'ansible-core>=2.16,<2.19'
fi
must "packaging/deb/build.sh" bash "$REPO/packaging/deb/build.sh" "$WORK/out"
DEB=$(ls "$WORK"/out/imageswitch_*.deb)
DEB_SLURM=$(ls "$WORK"/out/imageswitch-slurm_*.deb)

useradd -m -s /bin/sh "$USER_OK"
install -d -m 755 -o root -g root "$STATE"
cat >"$WORK/sysroots.toml" <<EOF
[defaults]
binds = ["/home", "/tmp"]
log_socket = ""

[sysroot.bb]
path = "$STATE/bb"
aliases = ["bb"]
users = ["$USER_OK"]

[sysroot.bb.build]
method = "tarball"
source = "$TREE_SRC"
store = "$STATE/store"
EOF
cat >"$WORK/vars.yml" <<EOF
imageswitch_hosts: localhost
imageswitch_deb: $DEB
imageswitch_slurm_deb: $DEB_SLURM
imageswitch_config_src: $WORK/sysroots.toml
imageswitch_sysrootctl_options:
  - --imageswitch
  - /usr/sbin/imageswitch
  - --alias-dir
  - $STATE/bin
  - --applications-dir
  - $STATE/applications
EOF

# play LOG [ansible-playbook options]: runs site.yml on localhost; prints the
# recap's changed= count, or "failed" when the run failed.
play() {
    local log=$1
    shift
    "$VENV/bin/ansible-playbook" -i localhost, -c local \
        -e ansible_python_interpreter=/usr/bin/python3 -e "@$WORK/vars.yml" \
        "$@" "$HERE/site.yml" >"$WORK/$log" 2>&1 || { echo failed; return; }
    sed -n 's/^localhost *: .*changed=\([0-9]*\).*/\1/p' "$WORK/$log"
}
show() { tail -15 "$WORK/$1" | tr -s ' ' | tr '\n' '|'; }
# Which tasks reported "changed" in a run's log.
changed_tasks() {
    awk '/^TASK \[/ {task = $0; sub(/^TASK \[[^:]*: /, "", task); sub(/\].*/, "", task)}
         /^changed: / {print task}' "$WORK/$1" | sort -u | tr '\n' ';'
}

# --- a new node -------------------------------------------------------------------

n=$(play check1.log --check)
if [ "$n" != failed ] && [ "$n" -gt 0 ]; then
    pass "check mode on a new node reports changed=$n"
else
    fail "check mode on a new node reports changes" "changed=$n" "$(show check1.log)"
fi
if ! installed imageswitch && ! installed imageswitch-slurm && [ ! -e "$CONFIG" ] && [ ! -e "$STATE/bb" ]; then
    pass "check mode changed nothing (no package, no $CONFIG, no tree)"
else
    fail "check mode changed nothing" "$(ls -d "$CONFIG" "$STATE/bb" 2>&1; dpkg -l imageswitch 2>&1 | tail -1)"
fi

n=$(play run1.log)
if [ "$n" != failed ] && [ "$n" -gt 0 ]; then
    pass "first run reports changed=$n ($(changed_tasks run1.log))"
else
    fail "first run reports changes" "changed=$n" "$(show run1.log)"
fi
check_eq "imageswitch installed 4755 root root" "4755 root root" "$(stat -c '%a %U %G' /usr/sbin/imageswitch 2>&1)"
if installed imageswitch-slurm && [ -x /usr/libexec/imageswitch/imageswitch-spank-exec ]; then
    pass "imageswitch-slurm (SPANK plugin) installed"
else
    fail "imageswitch-slurm (SPANK plugin) installed"
fi
check_eq "$CONFIG installed 644 root root" "644 root root" "$(stat -c '%a %U %G' "$CONFIG" 2>&1)"
out=$(cd "/home/$USER_OK" && runuser -u "$USER_OK" -- /usr/sbin/imageswitch bb cat /etc/debian_version 2>&1)
check_eq "as $USER_OK: imageswitch bb enters the tree sysrootctl published" "busybox" "$out"
out=$(cd "/home/$USER_OK" && runuser -u "$USER_OK" -- "$STATE/bin/bb" -c 'cat /etc/debian_version' 2>&1)
check_eq "as $USER_OK: the alias link sysrootctl made works" "busybox" "$out"

# --- converged ------------------------------------------------------------------------

n=$(play run2.log)
check_eq "second run reports changed=0" "0" "$n"
n=$(play check2.log --check)
check_eq "check mode on a converged node reports changed=0" "0" "$n"

# --- drift ---------------------------------------------------------------------------------

rm -f "$STATE/bin/bb"
n=$(play check3.log --check)
tasks=$(changed_tasks check3.log)
if [ "$n" = 1 ] && [ "$tasks" = "Plan the sysroot trees (sysrootctl plan);" ] && [ ! -e "$STATE/bin/bb" ]; then
    pass "check mode reports drift (deleted alias link) through sysrootctl plan's exit status, changing nothing"
else
    fail "check mode reports drift through sysrootctl plan" "changed=$n tasks=$tasks" "$(show check3.log)"
fi
n=$(play run3.log)
if [ "$n" = 1 ] && [ -L "$STATE/bin/bb" ]; then
    pass "the next run repairs the drift with sysrootctl apply ($(changed_tasks run3.log))"
else
    fail "the next run repairs the drift with sysrootctl apply" "changed=$n" "$(show run3.log)"
fi
n=$(play run4.log)
check_eq "and the run after that reports changed=0" "0" "$n"

# --- check mode validates and plans the new declaration ------------------------------------------

before=$(sha256sum <"$CONFIG")
# declare_config FILE: the role's declaration from now on.
declare_config() { sed -i "s|^imageswitch_config_src: .*|imageswitch_config_src: $1|" "$WORK/vars.yml"; }
# validation_failed LOG: the run stopped at the role's validation of the new declaration.
validation_failed() { grep -A2 '^TASK \[imageswitch : Validate the new declaration' "$WORK/$1" | grep -q '^fatal: '; }
cat "$WORK/sysroots.toml" - >"$WORK/added.toml" <<EOF

[sysroot.bb2]
path = "$STATE/bb2"
users = ["$USER_OK"]

[sysroot.bb2.build]
method = "tarball"
source = "$TREE_SRC"
store = "$STATE/store"
EOF
declare_config "$WORK/added.toml"
n=$(play check4.log --check)
if [ "$n" != failed ] && grep -q '"msg": "bb2: ' "$WORK/check4.log" && [ ! -e "$STATE/bb2" ] &&
    [ "$(sha256sum <"$CONFIG")" = "$before" ]; then
    pass "check mode plans the new declaration (sysroot bb2 added to it) and changes nothing"
else
    fail "check mode plans the new declaration (sysroot bb2 added to it)" "changed=$n" "$(show check4.log)"
fi

printf '[defaults\nbinds = [\n' >"$WORK/broken.toml"
declare_config "$WORK/broken.toml"
n=$(play check5.log --check)
if [ "$n" = failed ] && validation_failed check5.log && [ "$(sha256sum <"$CONFIG")" = "$before" ]; then
    pass "check mode fails on a declaration with a syntax error, as the real run does; $CONFIG is unchanged"
else
    fail "check mode fails on a declaration with a syntax error" "result=$n" "$(show check5.log)"
fi
n=$(play broken.log)
if [ "$n" = failed ] && validation_failed broken.log && [ "$(sha256sum <"$CONFIG")" = "$before" ]; then
    pass "a declaration with a syntax error fails validation; $CONFIG is unchanged"
else
    fail "a declaration with a syntax error fails validation" "result=$n" "$(show broken.log)"
fi
leftover=$(find /tmp -maxdepth 1 -name 'ansible.*sysroots.toml' 2>/dev/null)
check_eq "the role leaves no temporary declaration behind" "" "$leftover"

finish
