#!/usr/bin/env bash
# Builds the Debian packages with packaging/deb/build.sh, installs them on this
# machine with dpkg -i, checks the setuid binary's mode and owner, enters the
# cached bullseye i386 tree through /etc/sysroots.toml as a useradd'ed user,
# checks that srun/sbatch/salloc and slurmd load the SPANK plugin from the
# package, that removing the plugin package alone (an apt rollback) leaves
# srun/sbatch/salloc and slurmd working and reinstalling brings it back, then
# removes and purges both packages and checks nothing is left. Also checks that
# the RPM spec parses (rpmspec -P) and builds, and that both packages ship
# packaging/build-setuid.sh's build of the setuid binary byte for byte.
#
#   bash tests/deb.sh        (as root; installs what it needs with apt-get)
#
# One line per check, then "N passed, N failed"; non-zero exit on any failure.
# Refuses to run when imageswitch is already installed from elsewhere, and
# restores an existing /etc/sysroots.toml afterwards.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TREE=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}/bullseye-i386
USER_OK=isw-deb
CONFIG=/etc/sysroots.toml
# Shared with packaging/ansible/test.sh, which builds the same release packages.
export CARGO_TARGET_DIR=${DEB_TEST_TARGET_DIR:-$REPO/target/packages}

# shellcheck source=tests/support/checks.sh
source "$REPO/tests/support/checks.sh"

require_root "it installs packages with dpkg"

package_test_frame

install_missing dpkg-shlibdeps:dpkg-dev srun:slurm-client slurmd:slurmd rpmspec:rpm debootstrap:debootstrap lintian:lintian /usr/include/slurm/spank.h:libslurm-dev
must "cached bullseye i386 tree" bash "$REPO/tests/support/trees.sh" bullseye-i386

# --- build ----------------------------------------------------------------------

if ! build_out=$(bash "$REPO/packaging/deb/build.sh" "$WORK/out" 2>"$WORK/build.log"); then
    fail "packaging/deb/build.sh" "$(tail -5 "$WORK/build.log" | tr '\n' '|')"
    finish
fi
DEB=$(grep '/imageswitch_[^/]*\.deb$' <<<"$build_out")
DEB_SLURM=$(grep '/imageswitch-slurm_[^/]*\.deb$' <<<"$build_out")
if [ -f "$DEB" ] && [ -f "$DEB_SLURM" ]; then
    pass "build.sh built $(basename "$DEB") and $(basename "$DEB_SLURM")"
else
    fail "build.sh built both packages" "$build_out"
    finish
fi

# The shipped setuid binary is the checked one: the build .ci/check-setuid-deps
# checks, run in the same target directory, finds nothing to rebuild.
dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./usr/sbin/imageswitch >"$WORK/shipped"
checked=$(bash "$REPO/packaging/build-setuid.sh")
if cmp -s "$WORK/shipped" "$checked"; then
    pass "the packaged /usr/sbin/imageswitch is packaging/build-setuid.sh's build"
else
    fail "the packaged /usr/sbin/imageswitch is packaging/build-setuid.sh's build" "differs from $checked"
fi

if out=$(lintian --fail-on error --tag-display-limit 0 "$DEB" "$DEB_SLURM" 2>&1); then
    pass "lintian finds no errors ($(grep -c '^W:' <<<"$out") warnings)"
    grep '^W:' <<<"$out" | sed 's/^/#   /'
else
    fail "lintian finds no errors" "$(grep '^E:' <<<"$out")"
fi

contents=$(dpkg-deb -c "$DEB")
for f in usr/sbin/imageswitch usr/sbin/sysrootctl usr/share/doc/imageswitch/copyright \
    usr/share/doc/imageswitch/examples/sysroots.toml usr/share/bash-completion/completions/sysrootctl \
    usr/share/zsh/vendor-completions/_sysrootctl usr/share/fish/vendor_completions.d/sysrootctl.fish; do
    if grep -q " \./$f\$" <<<"$contents"; then pass "package ships /$f"; else fail "package ships /$f"; fi
done
man_pages=$(grep -o '\./usr/share/man/man[1-8]/.*\.gz$' <<<"$contents" | sed 's|.*/||; s|\.gz$||' | sort | tr '\n' ' ')
md_pages=$(find "$REPO/doc" -maxdepth 1 -name '*.[1-8].md' -printf '%f\n' 2>/dev/null | sed 's|\.md$||' | sort | tr '\n' ' ')
check_eq "package ships a man page for each doc/NAME.SECTION.md (${md_pages:-none})" "$md_pages" "$man_pages"

# --- install ---------------------------------------------------------------------

out=$(dpkg -i "$DEB" 2>&1)
if [ $? -eq 0 ] && installed imageswitch; then
    pass "dpkg -i $(basename "$DEB")"
else
    fail "dpkg -i $(basename "$DEB")" "$out"
    finish
fi
check_eq "/usr/sbin/imageswitch mode and owner" "4755 root root" "$(stat -c '%a %U %G' /usr/sbin/imageswitch)"
check_eq "dpkg --verify imageswitch" "" "$(dpkg --verify imageswitch 2>&1)"
for page in $man_pages; do
    section=${page##*.}
    th=$(zcat "/usr/share/man/man$section/$page.gz" 2>&1 | grep -m1 '^\.TH')
    if [[ $th == ".TH \"${page%.*}\" \"$section\""* || $th == ".TH \"$(tr a-z A-Z <<<"${page%.*}")\" \"$section\""* ]]; then
        pass "installed man page $page.gz is roff ($th)"
    else
        fail "installed man page $page.gz is roff" "$th"
    fi
done

out=$(bash -c 'source /usr/share/bash-completion/completions/sysrootctl && complete -p sysrootctl' 2>&1)
if [[ $out == "complete "*"-F _sysrootctl sysrootctl" ]]; then
    pass "installed bash completion defines sysrootctl's completion ($out)"
else
    fail "installed bash completion defines sysrootctl's completion" "$out"
fi
out=$(/usr/sbin/sysrootctl --version 2>&1)
check_eq "installed sysrootctl --version" "sysrootctl $(dpkg-query -W -f '${Version}' imageswitch)" "$out"

HOME_OK=$(add_user "$USER_OK")
deb11_config "$CONFIG" "$TREE" "$USER_OK"

as_user() { (cd "$HOME_OK" && timeout 60 runuser -u "$USER_OK" -- "$@"); }
check_eq "as $USER_OK: /usr/sbin/imageswitch deb11 uname -m" "i686" "$(as_user /usr/sbin/imageswitch deb11 uname -m 2>&1)"
check_eq "as $USER_OK: the tree's /etc/debian_version" "$(cat "$TREE/etc/debian_version")" \
    "$(as_user /usr/sbin/imageswitch deb11 cat /etc/debian_version 2>&1)"
check_eq "as $USER_OK: cwd preserved" "$HOME_OK" "$(as_user /usr/sbin/imageswitch deb11 pwd 2>&1)"
check_eq "as $USER_OK: real and effective uid are the user's" "$(id -u "$USER_OK") $(id -u "$USER_OK")" \
    "$(as_user /usr/sbin/imageswitch deb11 sh -c 'echo $(id -ru) $(id -u)' 2>&1)"

out=$(dpkg -i "$DEB_SLURM" 2>&1)
if [ $? -eq 0 ] && installed imageswitch-slurm; then
    pass "dpkg -i $(basename "$DEB_SLURM")"
else
    fail "dpkg -i $(basename "$DEB_SLURM")" "$out"
fi
plugin=$(dpkg -L imageswitch-slurm | grep '/imageswitch_spank\.so$')
check_eq "plugin file mode and owner" "644 root root" "$(stat -c '%a %U %G' "$plugin" 2>&1)"
helper=/usr/libexec/imageswitch/imageswitch-spank-exec
check_eq "plugin's exec helper: mode and owner, not setuid" "755 root root" "$(stat -c '%a %U %G' "$helper" 2>&1)"
check_eq "plugstack.conf.d conffile includes the package's plugstack line" \
    "include /usr/lib/imageswitch-slurm/plugstack.conf" "$(grep -v '^#' /etc/slurm/plugstack.conf.d/imageswitch.conf)"
check_eq "the package's plugstack line names the installed plugin, imageswitch and helper" \
    "required $plugin imageswitch=/usr/sbin/imageswitch helper=$helper" \
    "$(cat /usr/lib/imageswitch-slurm/plugstack.conf 2>&1)"
task_prolog=/usr/libexec/imageswitch/imageswitch-slurm-task-prolog
check_eq "imageswitch ships the TaskProlog check $task_prolog (755 root root)" "755 root root" \
    "$(stat -c '%a %U %G' "$task_prolog" 2>&1)"
# srun, sbatch and salloc read /etc/slurm/plugstack.conf, which includes the
# package's plugstack.conf.d line; they only need a parseable slurm.conf.
cat >"$WORK/slurm.conf" <<EOF
ClusterName=isw-deb
SlurmctldHost=localhost
PlugStackConfig=/etc/slurm/plugstack.conf
NodeName=localhost
PartitionName=p Nodes=localhost
EOF
chmod 644 "$WORK/slurm.conf"
for cmd in srun sbatch salloc; do
    # Whole output first: grep -q stopping early would break the pipe under pipefail.
    out=$(as_user env SLURM_CONF="$WORK/slurm.conf" "$cmd" --help 2>&1)
    if grep -q -- '--sysroot=NAME' <<<"$out"; then
        pass "$cmd --help lists --sysroot=NAME from the installed plugin"
    else
        fail "$cmd --help lists --sysroot=NAME from the installed plugin"
    fi
done

# slurmd_starts: starts slurmd (foreground, its own ports, spool and pid
# file, no controller) with /etc/slurm/plugstack.conf and stops it once it
# has started or given up; prints "started" plus whether it loaded the
# plugin, or "failed" and the log's last lines.
slurmd_starts() {
    local pid state=""
    install -d -m 755 "$WORK/slurmd"
    cat >"$WORK/slurmd.conf" <<EOF
ClusterName=isw-deb
SlurmctldHost=localhost
SlurmctldPort=16917
SlurmdPort=16918
AuthType=auth/none
CredType=cred/none
SlurmdSpoolDir=$WORK/slurmd
SlurmdPidFile=$WORK/slurmd/slurmd.pid
SlurmdLogFile=$WORK/slurmd/slurmd.log
SlurmdDebug=debug
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
PlugStackConfig=/etc/slurm/plugstack.conf
NodeName=localhost
PartitionName=p Nodes=localhost
EOF
    rm -f "$WORK/slurmd/slurmd.log"
    slurmd -D -N localhost -f "$WORK/slurmd.conf" >/dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        grep -q 'slurmd started on' "$WORK/slurmd/slurmd.log" 2>/dev/null && state=started && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    if [ "$state" = started ]; then
        if grep -q 'Loaded plugin imageswitch_spank.so' "$WORK/slurmd/slurmd.log"; then
            echo "started with imageswitch_spank.so"
        else
            echo "started without imageswitch_spank.so"
        fi
    else
        echo "failed: $(tail -3 "$WORK/slurmd/slurmd.log" 2>&1 | tr '\n' '|')"
    fi
}
check_eq "slurmd starts and loads the installed plugin" "started with imageswitch_spank.so" "$(slurmd_starts)"

# --- removing the plugin package alone (an apt rollback) and reinstalling it ------------

out=$(dpkg -r imageswitch-slurm 2>&1)
if [ $? -eq 0 ] && ! installed imageswitch-slurm && [ ! -e "$plugin" ] && [ -e /etc/slurm/plugstack.conf.d/imageswitch.conf ]; then
    pass "dpkg -r imageswitch-slurm removes the plugin and keeps its conffile"
else
    fail "dpkg -r imageswitch-slurm removes the plugin and keeps its conffile" "$out"
fi
for cmd in srun sbatch salloc; do
    out=$(as_user env SLURM_CONF="$WORK/slurm.conf" "$cmd" --help 2>&1)
    status=$?
    if [ "$status" -eq 0 ] && ! grep -q -- '--sysroot\|^[a-z]*: error' <<<"$out"; then
        pass "removing the plugin package never breaks jobs that do not use it: $cmd works, without --sysroot"
    else
        fail "removing the plugin package never breaks jobs that do not use it: $cmd works" "status $status" \
            "$(grep '^[a-z]*: error' <<<"$out" | head -3)"
    fi
done
check_eq "removing the plugin package never breaks jobs that do not use it: slurmd starts" \
    "started without imageswitch_spank.so" "$(slurmd_starts)"
check "the TaskProlog check stays with the imageswitch package" test -x "$task_prolog"
out=$(dpkg -i "$DEB_SLURM" 2>&1)
status=$?
out=$(as_user env SLURM_CONF="$WORK/slurm.conf" srun --help 2>&1)
if [ "$status" -eq 0 ] && grep -q -- '--sysroot=NAME' <<<"$out"; then
    pass "reinstalling imageswitch-slurm brings --sysroot back"
else
    fail "reinstalling imageswitch-slurm brings --sysroot back" "dpkg -i status $status"
fi
check_eq "after reinstalling, slurmd loads the plugin again" "started with imageswitch_spank.so" "$(slurmd_starts)"

# --- remove -----------------------------------------------------------------------

out=$(dpkg -r imageswitch-slurm imageswitch 2>&1)
status=$?
if [ "$status" -eq 0 ] && ! installed imageswitch && ! installed imageswitch-slurm &&
    [ ! -e /usr/sbin/imageswitch ] && [ ! -e /usr/sbin/sysrootctl ] && [ ! -e "$plugin" ] && [ ! -e "$helper" ] &&
    [ ! -e "$task_prolog" ] && [ ! -e /usr/lib/imageswitch-slurm/plugstack.conf ]; then
    pass "dpkg -r removes both packages and their files"
else
    fail "dpkg -r removes both packages and their files" "status $status" "$out"
fi
if [ -e /etc/slurm/plugstack.conf.d/imageswitch.conf ]; then
    pass "dpkg -r keeps the plugstack.conf.d conffile"
else
    fail "dpkg -r keeps the plugstack.conf.d conffile"
fi
out=$(dpkg -P imageswitch-slurm imageswitch 2>&1)
if [ $? -eq 0 ] && [ ! -e /etc/slurm/plugstack.conf.d/imageswitch.conf ] &&
    ! dpkg-query -W imageswitch imageswitch-slurm >/dev/null 2>&1; then
    pass "dpkg -P purges the conffile and leaves no package record"
else
    fail "dpkg -P purges the conffile and leaves no package record" "$out"
fi

# --- RPM spec ------------------------------------------------------------------------

if out=$(rpmspec -P "$REPO/packaging/rpm/imageswitch.spec" 2>&1); then
    if grep -q '^%attr(4755, *root, *root) /usr/sbin/imageswitch$' <<<"$out"; then
        pass "rpmspec -P parses packaging/rpm/imageswitch.spec; imageswitch is %attr(4755,root,root)"
    else
        fail "imageswitch.spec installs imageswitch 4755 root:root" "$(grep -n 'imageswitch$' <<<"$out" | head -3)"
    fi
else
    fail "rpmspec -P packaging/rpm/imageswitch.spec" "$out"
fi

# A real rpmbuild on this Debian machine (--nodeps: the BuildRequires are not
# rpm packages here), from a copy of the source, reusing its own cargo target.
rm -rf "$WORK/rpmsrc"
mkdir -p "$WORK/rpmsrc" "$CARGO_TARGET_DIR/rpm"
tar -C "$REPO" --exclude=./.git --exclude=./target --exclude=./packaging/slurm/target -cf - . |
    tar -C "$WORK/rpmsrc" -xf -
ln -s "$CARGO_TARGET_DIR/rpm" "$WORK/rpmsrc/target"
if (cd "$WORK/rpmsrc" && rpmbuild -bb --build-in-place --nodeps --define "_topdir $WORK/rpmtop" \
    packaging/rpm/imageswitch.spec >"$WORK/rpmbuild.log" 2>&1); then
    rpm_main=$(rpm -qlvp "$WORK"/rpmtop/RPMS/*/imageswitch-[0-9]*.rpm 2>/dev/null)
    rpm_slurm=$(rpm -qlp "$WORK"/rpmtop/RPMS/*/imageswitch-slurm-[0-9]*.rpm 2>/dev/null)
    if grep -q '^-rwsr-xr-x .* root  *root .* /usr/sbin/imageswitch$' <<<"$rpm_main" &&
        grep -q ' /usr/sbin/sysrootctl$' <<<"$rpm_main" && grep -q '/man8/imageswitch\.8' <<<"$rpm_main" &&
        grep -q '^/etc/slurm/plugstack.conf.d/imageswitch.conf$' <<<"$rpm_slurm" &&
        grep -q '/imageswitch_spank\.so$' <<<"$rpm_slurm" && grep -q '/imageswitch-spank-exec$' <<<"$rpm_slurm" &&
        grep -q '^/usr/lib/imageswitch-slurm/plugstack.conf$' <<<"$rpm_slurm" &&
        grep -q ' /usr/libexec/imageswitch/imageswitch-slurm-task-prolog$' <<<"$rpm_main"; then
        pass "rpmbuild -bb builds imageswitch (setuid root imageswitch, sysrootctl, man pages) and imageswitch-slurm"
    else
        fail "rpmbuild packages hold the expected files" "$(grep -v build-id <<<"$rpm_main$rpm_slurm" | head -12)"
    fi
    # As for the .deb: the RPM's setuid binary is the checked build, byte for byte.
    rpm2archive -n - <"$(echo "$WORK"/rpmtop/RPMS/*/imageswitch-[0-9]*.rpm)" |
        tar -xO --wildcards '*usr/sbin/imageswitch' >"$WORK/shipped.rpm"
    if cmp -s "$WORK/shipped.rpm" "$checked"; then
        pass "the RPM's /usr/sbin/imageswitch is packaging/build-setuid.sh's build"
    else
        fail "the RPM's /usr/sbin/imageswitch is packaging/build-setuid.sh's build" \
            "differs from $checked ($(stat -c %s "$WORK/shipped.rpm") against $(stat -c %s "$checked") bytes)"
    fi
else
    fail "rpmbuild -bb packaging/rpm/imageswitch.spec" "$(tail -8 "$WORK/rpmbuild.log")"
fi

finish
