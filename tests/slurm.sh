#!/usr/bin/env bash
# End-to-end test of the Slurm SPANK plugin (packaging/slurm) on a one-node
# cluster this script starts itself: munged, slurmctld and slurmd with a
# minimal slurm.conf, the setuid imageswitch installed in a root-owned scratch
# prefix, real users created with useradd, and a copy of the cached Debian
# bullseye i386 tree. Every job is submitted as an unprivileged user.
#
#   bash tests/slurm.sh          (as root; installs what it needs with apt-get)
#
# One line per check, then "N passed, N failed"; non-zero exit on any failure.
# Every daemon started here is stopped on exit, and the users, prefix and
# state directories are removed; the tree copy stays in
# /var/lib/imageswitch-slurm-test for the next run, like the cached trees.
#
# Build output goes to $SLURM_TEST_TARGET_DIR (default: target/slurm-test in
# the checkout), separate from other builds because the imageswitch binary is
# compiled with this test's own config path.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NAME=imageswitch-slurm-test
CONF_DIR=/etc/$NAME                     # the build-time config path lives here
CONFIG=$CONF_DIR/sysroots.toml
PREFIX=/opt/$NAME                       # root-owned scratch install prefix
RUN=/run/$NAME                          # daemon state, sockets, logs
SPOOL=/var/spool/$NAME                  # SlurmdSpoolDir; bound into the tree
TREE_SRC=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}/bullseye-i386
TREE=/var/lib/$NAME/bullseye-i386       # our copy: it gets a $SPOOL mount point
BIN_DIR=/bin11-slurmtest                # the sysroot's bin_dir (shebang jobs)
USER_OK=isw-slurm
USER_NO=isw-slurm-no
TARGET=${SLURM_TEST_TARGET_DIR:-$REPO/target/slurm-test}
export SLURM_CONF=$CONF_DIR/slurm.conf

# shellcheck source=tests/support/checks.sh
source "$REPO/tests/support/checks.sh"
pids=()

require_root "it starts Slurm daemons and installs a setuid binary"

# running PID: alive and not a zombie waiting to be reaped.
running() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
cleanup() {
    local pid
    if [ -n "${slurmctld_pid:-}" ] && [ -x "$(command -v scancel)" ]; then
        scancel --quiet --full --user="$USER_OK" 2>/dev/null
        scancel --quiet --full --user="$USER_NO" 2>/dev/null
        for _ in $(seq 1 20); do
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.5
        done
    fi
    # Our daemons are this shell's children: their pids stay theirs (at worst
    # as zombies) until the wait below, so the signals cannot hit another process.
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 1 40); do
            running "$pid" || break
            sleep 0.25
        done
        running "$pid" && kill -9 "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    userdel -r "$USER_OK" >/dev/null 2>&1
    userdel -r "$USER_NO" >/dev/null 2>&1
    rm -rf "$RUN" "$SPOOL" "$PREFIX" "$CONF_DIR" "$BIN_DIR"
}
trap cleanup EXIT

# --- what the test needs ----------------------------------------------------

install_missing slurmctld:slurmctld slurmd:slurmd srun:slurm-client munged:munge mungekey:munge debootstrap:debootstrap busybox:busybox-static /usr/include/slurm/spank.h:libslurm-dev
must "cached bullseye i386 tree" bash "$REPO/tests/support/trees.sh" bullseye-i386

must "build imageswitch with config $CONFIG" \
    env IMAGESWITCH_CONFIG_PATH="$CONFIG" cargo build --quiet --manifest-path "$REPO/Cargo.toml" \
    --bin imageswitch --target-dir "$TARGET/imageswitch"
must "build the SPANK plugin" \
    cargo build --quiet --manifest-path "$REPO/packaging/slurm/Cargo.toml" --target-dir "$TARGET/spank"

# Start from a clean slate in case an earlier run was killed.
cleanup
install -d -m 755 -o root -g root "$PREFIX" "$PREFIX/bin" "$PREFIX/lib" "$CONF_DIR" "$RUN" "$SPOOL" "$BIN_DIR"
install -m 4755 -o root -g root "$TARGET/imageswitch/debug/imageswitch" "$PREFIX/bin/imageswitch"
install -m 644 -o root -g root "$TARGET/spank/debug/libimageswitch_spank.so" "$PREFIX/lib/imageswitch_spank.so"
install -m 755 -o root -g root "$TARGET/spank/debug/imageswitch-spank-exec" "$PREFIX/lib/imageswitch-spank-exec"
install -m 755 -o root -g root "$REPO/packaging/slurm/imageswitch-slurm-task-prolog" "$PREFIX/lib/imageswitch-slurm-task-prolog"
ln -s "$PREFIX/bin/imageswitch" "$BIN_DIR/bash"

# Our own copy of the tree, so we can add the spool mount point the shebang
# job needs; refreshed when the cache is newer.
if [ ! -e "$TREE/.complete" ] || [ "$TREE_SRC/.complete" -nt "$TREE/.complete" ]; then
    rm -rf "$TREE"
    install -d -m 755 -o root -g root "/var/lib/$NAME"
    must "copy $TREE_SRC" cp -a "$TREE_SRC" "$TREE"
fi
install -d -m 755 -o root -g root "$TREE$SPOOL"

HOME_OK=$(add_user "$USER_OK")
HOME_NO=$(add_user "$USER_NO")
deb11_config "$CONFIG" "$TREE" "$USER_OK" 'aliases = ["deb11"]' "bin_dir = \"$BIN_DIR\"" "binds = [\"$SPOOL\"]"

# --- the cluster ------------------------------------------------------------

install -d -m 755 -o munge -g munge "$RUN/munge"
install -d -m 700 -o root -g root "$RUN/state"
must "create a munge key" setpriv --reuid=munge --regid=munge --init-groups \
    mungekey --create --keyfile="$RUN/munge/munge.key"
setpriv --reuid=munge --regid=munge --init-groups \
    munged --foreground --socket="$RUN/munge/munge.sock" --key-file="$RUN/munge/munge.key" \
    --pid-file="$RUN/munge/munged.pid" --seed-file="$RUN/munge/munge.seed" \
    --log-file="$RUN/munge/munged.log" >/dev/null 2>&1 &
pids+=($!)

HOST=$(hostname -s)
# slurmd -C prints this machine's real layout, which slurmd validates against.
NODE_LINE=$(slurmd -C | head -1)
case $NODE_LINE in NodeName=*) ;; *) fail "setup: slurmd -C" "$NODE_LINE"; finish ;; esac
cat >"$SLURM_CONF" <<EOF
ClusterName=isw-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=16817
SlurmdPort=16818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$RUN/munge/munge.sock
StateSaveLocation=$RUN/state
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$RUN/slurmctld.log
SlurmdLogFile=$RUN/slurmd.log
SlurmdDebug=debug
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
TaskProlog=$CONF_DIR/task-prolog.sh
PlugStackConfig=$CONF_DIR/plugstack.conf
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
$NODE_LINE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
PLUGIN_ARGS="imageswitch=$PREFIX/bin/imageswitch helper=$PREFIX/lib/imageswitch-spank-exec"
# srun, sbatch and salloc read plugstack.conf; slurmd and slurmstepd read
# plugstack-node.conf (slurm-node.conf differs only there), so the node's
# plugin can go missing while the submitting side keeps it. slurmstepd reads
# it afresh for every step.
# set_plugstack LINE [NODE_LINE]: both files (the node's gets NODE_LINE when given).
set_plugstack() {
    echo "$1" >"$CONF_DIR/plugstack.conf"
    echo "${2-$1}" >"$CONF_DIR/plugstack-node.conf"
    chmod 644 "$CONF_DIR/plugstack.conf" "$CONF_DIR/plugstack-node.conf"
}
set_plugstack "required $PREFIX/lib/imageswitch_spank.so $PLUGIN_ARGS"
sed "s|^PlugStackConfig=.*|PlugStackConfig=$CONF_DIR/plugstack-node.conf|" "$SLURM_CONF" >"$CONF_DIR/slurm-node.conf"
# A site TaskProlog: slurmstepd runs it after the plugin's hook, and the
# variables it exports must still reach a --sysroot task. It runs the
# shipped check first, as doc/batch.md tells sites with a TaskProlog to do.
cat >"$CONF_DIR/task-prolog.sh" <<EOF
#!/bin/sh
$PREFIX/lib/imageswitch-slurm-task-prolog || exit
echo "export FROM_TASK_PROLOG=yes"
EOF
chmod 755 "$CONF_DIR/task-prolog.sh"
chmod 644 "$SLURM_CONF" "$CONF_DIR/slurm-node.conf" "$CONFIG"

for _ in $(seq 1 40); do [ -S "$RUN/munge/munge.sock" ] && break; sleep 0.25; done
slurmctld -D -i -f "$SLURM_CONF" >"$RUN/slurmctld.out" 2>&1 &
slurmctld_pid=$!
pids+=("$slurmctld_pid")
slurmd -D -f "$CONF_DIR/slurm-node.conf" >"$RUN/slurmd.out" 2>&1 &
pids+=($!)

state=""
for _ in $(seq 1 60); do
    state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    sleep 0.5
done
if [ "$state" != idle ]; then
    fail "cluster up: node $HOST idle" "state: ${state:-none}" \
        "$(tail -5 "$RUN/slurmctld.log" "$RUN/slurmd.log" 2>&1 | tr '\n' '|')"
    finish
fi
pass "cluster up: munged, slurmctld, slurmd; node $HOST idle"

# --- checks, as the users -------------------------------------------------

# Mounts under our tree or spool; other tests may mount elsewhere meanwhile.
our_mounts() { findmnt -rn -o TARGET,SOURCE | grep -E "^($TREE|$SPOOL|/var/lib/$NAME)" | sort; }
mounts_before=$(our_mounts)

# as USER CMD...: run in the user's home with the test's slurm.conf.
as() {
    local user=$1 home
    shift
    home=$(getent passwd "$user" | cut -d: -f6)
    (cd "$home" && timeout 120 runuser -u "$user" -- env SLURM_CONF="$SLURM_CONF" "$@")
}
# sbatch_job NAME [SBATCH-OPTIONS...] [-- SCRIPT-ARGS...]: submits
# $HOME_OK/NAME.sh as $USER_OK and waits for it; sets status (sbatch's) and
# out (the job's output file).
sbatch_job() {
    local name=$1 opts=()
    shift
    while [ $# -gt 0 ] && [ "$1" != -- ]; do
        opts+=("$1")
        shift
    done
    [ $# -gt 0 ] && shift
    chown "$USER_OK:" "$HOME_OK/$name.sh"
    as "$USER_OK" sbatch --wait --quiet "${opts[@]}" -o "$HOME_OK/$name.out" "$name.sh" "$@" >/dev/null 2>&1
    status=$?
    out=$(cat "$HOME_OK/$name.out" 2>&1)
}
# route COMMAND-LINE: runs it (a shell line, may start with VAR=value) as
# $USER_OK in its home; prints the step's output, or an sbatch job's output
# file, then "status N" on a line of its own.
route() {
    local status
    rm -f "$HOME_OK/route.out"
    case $1 in
    *sbatch*) as "$USER_OK" sh -c "${1/sbatch/sbatch --wait --quiet -o $HOME_OK/route.out}" >/dev/null 2>&1 ;;
    *) as "$USER_OK" sh -c "$1" >"$HOME_OK/route.out" 2>&1 ;;
    esac
    status=$?
    grep -v '^salloc: ' "$HOME_OK/route.out" 2>/dev/null
    echo "status $status"
}
# refused WHAT COMMAND-LINE LINE: the command (see route), which runs
# "uname -m", ends with status 125 and a line starting with LINE, and its
# uname runs nowhere (neither on the host nor in the tree).
refused() {
    local out
    out=$(route "$2")
    if [[ $out == *"status 125" ]] && grep -q "^$3" <<<"$out" && ! grep -qx "$(uname -m)\|i686" <<<"$out"; then
        pass "$1: $(grep -m1 "^$3" <<<"$out")"
    else
        fail "$1" "$out"
    fi
}

out=$(as "$USER_OK" srun --help 2>&1)
if grep -q -- '--sysroot=NAME' <<<"$out"; then
    pass "srun --help lists --sysroot=NAME (plugin loaded by srun)"
else
    fail "srun --help lists --sysroot=NAME" "$(grep -i -m3 'spank\|error' <<<"$out")"
fi

out=$(as "$USER_OK" srun uname -m 2>&1)
check_eq "srun without --sysroot runs on the host" "$(uname -m)" "$out"

out=$(as "$USER_OK" srun --sysroot=deb11 uname -m 2>&1)
check_eq "srun --sysroot=deb11 uname -m" "i686" "$out"

out=$(as "$USER_OK" srun --sysroot=deb11 cat /etc/debian_version 2>&1)
check_eq "srun --sysroot=deb11 sees the tree's /etc/debian_version" \
    "$(cat "$TREE/etc/debian_version")" "$out"

out=$(as "$USER_OK" srun --sysroot=deb11 sh -c 'echo "$IMAGESWITCH_SYSROOT $SLURM_JOB_ID $PWD"' 2>&1)
if [[ $out =~ ^deb11\ [0-9]+\ $HOME_OK$ ]]; then
    pass "srun task keeps the job's environment and cwd (IMAGESWITCH_SYSROOT, SLURM_JOB_ID, PWD)"
else
    fail "srun task keeps the job's environment and cwd" "expected: deb11 <jobid> $HOME_OK" "actual:   $out"
fi

out=$(as "$USER_OK" srun --sysroot=deb11 env 2>&1 | grep '^IMAGESWITCH_SPANK_')
check_eq "the plugin's hand-over variables do not reach the task" "" "$out"

out=$(as "$USER_OK" srun --sysroot=deb11 id -u 2>&1)
check_eq "srun --sysroot task runs as the user" "$(id -u "$USER_OK")" "$out"

out=$(as "$USER_OK" srun --sysroot=deb11 printenv FROM_TASK_PROLOG 2>&1)
check_eq "srun --sysroot task gets the site TaskProlog's environment" "yes" "$out"

# slurmstepd applies the submitter's limits (PropagateResourceLimits) just
# before its exec: a --sysroot task must get them too.
out=$(as "$USER_OK" sh -c 'ulimit -S -n 321 && srun --propagate=NOFILE --sysroot=deb11 sh -c "ulimit -S -n"' 2>&1)
check_eq "srun --sysroot task gets the submitter's propagated limits (ulimit -n 321)" "321" "$out"

out=$(as "$USER_OK" srun --ntasks=2 --sysroot=deb11 uname -m 2>&1)
check_eq "srun --ntasks=2: every task in the sysroot" "i686 i686" "$(echo $out)"

out=$(as "$USER_OK" srun --export=NONE --sysroot=deb11 uname -m 2>&1)
check_eq "srun --export=NONE --sysroot=deb11 uname -m (hand-over survives an empty environment)" "i686" "$out"

out=$(as "$USER_OK" salloc --sysroot=deb11 srun uname -m 2>&1 | grep -v '^salloc:')
check_eq "salloc --sysroot=deb11 srun uname -m" "i686" "$out"

out=$(as "$USER_OK" srun --sysroot=../etc true 2>&1)
status=$?
if [ "$status" -ne 0 ] && grep -q 'imageswitch-spank: --sysroot name "../etc"' <<<"$out"; then
    pass "srun --sysroot=../etc refused at submission (status $status)"
else
    fail "srun --sysroot=../etc refused at submission" "status $status" "$out"
fi

# sbatch with --sysroot: the batch script itself runs inside the tree.
cat >"$HOME_OK/job-sysroot.sh" <<'EOF'
#!/bin/sh
echo "arch=$(uname -m) debian=$(cat /etc/debian_version) sysroot=$IMAGESWITCH_SYSROOT arg=$1"
EOF
sbatch_job job-sysroot --sysroot=deb11 -- A1
check_eq "sbatch --sysroot=deb11 job (status $status)" \
    "arch=i686 debian=$(cat "$TREE/etc/debian_version") sysroot=deb11 arg=A1" "$out"

# The option as an #SBATCH directive in the script, under plain sbatch.
cat >"$HOME_OK/job-directive.sh" <<'EOF'
#!/bin/sh
#SBATCH --sysroot=deb11
echo "arch=$(uname -m) debian=$(cat /etc/debian_version)"
EOF
sbatch_job job-directive
check_eq "#SBATCH --sysroot=deb11 directive (status $status)" \
    "arch=i686 debian=$(cat "$TREE/etc/debian_version")" "$out"

# A #!BIN_DIR/bash job script under plain sbatch: no plugin involved.
cat >"$HOME_OK/job-shebang.sh" <<EOF
#!$BIN_DIR/bash
echo "arch=\$(uname -m) debian=\$(cat /etc/debian_version) bash=\$BASH_VERSION"
EOF
sbatch_job job-shebang
tree_bash=$(chroot "$TREE" /bin/bash -c 'echo $BASH_VERSION')
check_eq "sbatch job with #!$BIN_DIR/bash (status $status)" \
    "arch=i686 debian=$(cat "$TREE/etc/debian_version") bash=$tree_bash" "$out"

# A user outside the sysroot's users list: refused by imageswitch, status 125.
out=$(as "$USER_NO" srun --sysroot=deb11 uname -m 2>&1)
status=$?
if [ "$status" -eq 125 ] && grep -q '^imageswitch: ' <<<"$out" && ! grep -q i686 <<<"$out"; then
    pass "srun --sysroot=deb11 as $USER_NO refused with status 125: $(grep -m1 '^imageswitch: ' <<<"$out")"
else
    fail "srun --sysroot=deb11 as $USER_NO refused with status 125" "status $status" "$out"
fi

as "$USER_NO" sbatch --wait --quiet --sysroot=deb11 -o "$HOME_NO/job-refused.out" \
    --wrap 'uname -m' >/dev/null 2>&1
status=$?
out=$(cat "$HOME_NO/job-refused.out" 2>&1)
if [ "$status" -eq 125 ] && grep -q '^imageswitch: ' <<<"$out" && ! grep -q i686 <<<"$out"; then
    pass "sbatch --sysroot=deb11 as $USER_NO: job output says $(grep -m1 '^imageswitch: ' <<<"$out")"
else
    fail "sbatch --sysroot=deb11 as $USER_NO refused with status 125 and a message" "status $status" "$out"
fi

# Every route by which a task can ask for a sysroot runs it in the tree.
# Row: "what|command" (run in the user's home; an sbatch row writes route.out).
cat >"$HOME_OK/job-export-none.sh" <<'EOF'
#!/bin/sh
#SBATCH --export=NONE
#SBATCH --sysroot=deb11
uname -m
EOF
chown "$USER_OK:" "$HOME_OK/job-export-none.sh"
SPANK_ENV=SLURM_SPANK__SLURM_SPANK_OPTION_imageswitch_sysroot
for row in "sbatch --export=NONE --sysroot|sbatch --export=NONE --sysroot=deb11 --wrap 'uname -m'" \
    "sbatch --export=HOME --sysroot|sbatch --export=HOME --sysroot=deb11 --wrap 'uname -m'" \
    "SBATCH_EXPORT=NONE sbatch --sysroot|SBATCH_EXPORT=NONE sbatch --sysroot=deb11 --wrap 'uname -m'" \
    "#SBATCH --export=NONE and #SBATCH --sysroot|sbatch job-export-none.sh" \
    "$SPANK_ENV=deb11 sbatch --export=NONE|$SPANK_ENV=deb11 sbatch --export=NONE --wrap 'uname -m'" \
    "_SLURM_SPANK_OPTION_imageswitch_sysroot=deb11 srun|_SLURM_SPANK_OPTION_imageswitch_sysroot=deb11 srun uname -m" \
    "srun --export=ALL,_SLURM_SPANK_OPTION_imageswitch_sysroot=deb11|srun --export=ALL,_SLURM_SPANK_OPTION_imageswitch_sysroot=deb11 uname -m" \
    "$SPANK_ENV=deb11 srun --export=NONE|$SPANK_ENV=deb11 srun --export=NONE uname -m" \
    "salloc --sysroot, srun --export=NONE|salloc --sysroot=deb11 srun --export=NONE uname -m"; do
    IFS='|' read -r what cmd <<<"$row"
    out=$(route "$cmd")
    check_eq "every route to --sysroot runs the task in the tree: $what" "i686 status 0" "$(echo $out)"
done

# A name the node refuses (it came through the environment, past the
# submission-time check) ends the task with 125 and says why in its output.
for row in "_SLURM_SPANK_OPTION_imageswitch_sysroot=../etc srun|_SLURM_SPANK_OPTION_imageswitch_sysroot=../etc srun uname -m" \
    "_SLURM_SPANK_OPTION_imageswitch_sysroot=../etc sbatch|_SLURM_SPANK_OPTION_imageswitch_sysroot=../etc sbatch --wrap 'uname -m'"; do
    IFS='|' read -r what cmd <<<"$row"
    refused "a sysroot name refused on the node ends the task with 125: $what" "$cmd" \
        'imageswitch-spank: --sysroot name "../etc"'
done

# srun --multi-prog: slurmstepd runs each rank's line itself, so a --sysroot
# step is refused, in srun and (when the request came another way) in the
# task, wherever the file is (the task may run in another directory, or on a
# node without the file); nothing runs on the host and no hand-over variable
# reaches a task.
printf '0 uname -m\n1 env\n' >"$HOME_OK/ranks.conf"
printf '0 env\n' >"$HOME_OK/ranks1.conf"
printf '* %s deb11 uname -m\n' "$PREFIX/bin/imageswitch" >"$HOME_OK/ranks-imageswitch.conf"
chown "$USER_OK:" "$HOME_OK/ranks.conf" "$HOME_OK/ranks1.conf" "$HOME_OK/ranks-imageswitch.conf"
REMOTE_ENV=_SLURM_SPANK_OPTION_imageswitch_sysroot
for row in "srun --multi-prog --sysroot|srun -n2 --multi-prog --sysroot=deb11 ranks.conf" \
    "$REMOTE_ENV=deb11 srun --multi-prog|$REMOTE_ENV=deb11 srun -n2 --multi-prog ranks.conf" \
    "$REMOTE_ENV=deb11 srun --chdir=/tmp --multi-prog|$REMOTE_ENV=deb11 srun -n1 --chdir=/tmp --multi-prog ranks1.conf" \
    "srun --chdir=/tmp --export=ALL,$REMOTE_ENV=deb11 --multi-prog (only the task sees the request)|srun -n1 --chdir=/tmp --export=ALL,$REMOTE_ENV=deb11 --multi-prog ranks1.conf"; do
    IFS='|' read -r what cmd <<<"$row"
    out=$(route "$cmd")
    if [[ $out != *"status 0" ]] && grep -q '^\(srun: error: \)\?imageswitch-spank: --sysroot cannot be used with --multi-prog' <<<"$out" &&
        ! grep -q "$(uname -m)\|IMAGESWITCH_SPANK_\|^SLURM_" <<<"$out"; then
        pass "--multi-prog with a sysroot is refused wherever the file is, and runs nothing: $what ($(grep -o 'status [0-9]*' <<<"$out"))"
    else
        fail "--multi-prog with a sysroot is refused wherever the file is, and runs nothing: $what" "$out"
    fi
done
# A --sysroot task whose working directory does not exist in the tree fails
# (imageswitch --require-cwd) instead of running in the home directory, where
# its relative outputs would go to the wrong place.
for row in "srun --chdir|srun --chdir=$PREFIX --sysroot=deb11 uname -m" \
    "sbatch --chdir|sbatch --chdir=$PREFIX --sysroot=deb11 --wrap 'uname -m'"; do
    IFS='|' read -r what cmd <<<"$row"
    refused "a --sysroot task whose cwd is missing from the tree fails with 125: $what" "$cmd" "imageswitch: .*$PREFIX"
done

out=$(route "srun -n2 --multi-prog ranks-imageswitch.conf")
check_eq "--multi-prog file whose lines run imageswitch deb11: every rank in the tree" "i686 i686 status 0" "$(echo $out)"

# The hand-over variables come from the plugin only: a copy in the caller's
# environment is replaced or removed before the task starts.
out=$(route "IMAGESWITCH_SPANK_BATCH=1 srun --sysroot=deb11 sh -c 'echo \${0##*/} \$IMAGESWITCH_SPANK_BATCH'")
check_eq "a caller's copy of a hand-over variable never reaches the helper: IMAGESWITCH_SPANK_BATCH=1 srun --sysroot" \
    "sh status 0" "$(echo $out)"

mounts_after=$(our_mounts)
if [ "$mounts_before" = "$mounts_after" ]; then
    pass "no mount left on the host under $TREE or $SPOOL"
else
    fail "no mount left on the host under $TREE or $SPOOL" "$(diff <(echo "$mounts_before") <(echo "$mounts_after") | head -5)"
fi

# Fail closed: when imageswitch or the helper cannot be executed, or the
# plugstack.conf line is wrong, a --sysroot task ends with 125 and never runs
# on the host, even with an "optional" line (which lets Slurm carry on).
for case in "imageswitch missing|imageswitch=$PREFIX/bin/missing helper=$PREFIX/lib/imageswitch-spank-exec|cannot execute $PREFIX/bin/missing" \
    "helper missing|imageswitch=$PREFIX/bin/imageswitch helper=$PREFIX/lib/missing|cannot execute the helper $PREFIX/lib/missing" \
    "bad plugstack.conf argument|imagesw=$PREFIX/bin/imageswitch|unknown plugstack.conf argument"; do
    IFS='|' read -r what args message <<<"$case"
    set_plugstack "optional $PREFIX/lib/imageswitch_spank.so $args"
    out=$(as "$USER_OK" srun --sysroot=deb11 uname -m 2>&1)
    status=$?
    if [ "$status" -eq 125 ] && grep -q "^imageswitch-spank: $message" <<<"$out" && ! grep -q "$(uname -m)" <<<"$out"; then
        pass "$what: task fails closed with status 125: $(grep -m1 '^imageswitch-spank' <<<"$out")"
    else
        fail "$what: task fails closed with status 125" "status $status" "$out"
    fi
done


# A node whose slurmstepd lacks the plugin (not installed yet, removed, or
# left out of plugstack.conf) while srun/sbatch/salloc have it: the task that
# asked for a sysroot is ended by the TaskProlog check with 125, by every
# route, the environment forms of the option included; a task that did not
# ask still runs. The check's proof that the plugin ran cannot come from the
# caller: hand-over variables in the caller's environment prove nothing.
set_plugstack "required $PREFIX/lib/imageswitch_spank.so $PLUGIN_ARGS" ""
for row in "srun --sysroot|srun --sysroot=deb11 uname -m" \
    "srun --export=NONE --sysroot|srun --export=NONE --sysroot=deb11 uname -m" \
    "sbatch --sysroot|sbatch --sysroot=deb11 --wrap 'uname -m'" \
    "sbatch --export=NONE --sysroot|sbatch --export=NONE --sysroot=deb11 --wrap 'uname -m'" \
    "salloc --sysroot, srun|salloc --sysroot=deb11 srun uname -m" \
    "salloc, srun --sysroot|salloc srun --sysroot=deb11 uname -m" \
    "$REMOTE_ENV=deb11 srun|$REMOTE_ENV=deb11 srun uname -m" \
    "$REMOTE_ENV=deb11 sbatch|$REMOTE_ENV=deb11 sbatch --wrap 'uname -m'" \
    "$REMOTE_ENV=deb11 salloc, srun|$REMOTE_ENV=deb11 salloc srun uname -m" \
    "$SPANK_ENV=deb11 srun|$SPANK_ENV=deb11 srun uname -m" \
    "$SPANK_ENV=deb11 sbatch --export=NONE|$SPANK_ENV=deb11 sbatch --export=NONE --wrap 'uname -m'" \
    "IMAGESWITCH_SPANK_SYSROOT=deb11 srun --sysroot (a forged proof)|IMAGESWITCH_SPANK_SYSROOT=deb11 srun --sysroot=deb11 uname -m" \
    "IMAGESWITCH_SPANK_SYSROOT=deb11 sbatch --sysroot (a forged proof)|IMAGESWITCH_SPANK_SYSROOT=deb11 sbatch --sysroot=deb11 --wrap 'uname -m'" \
    "SLURM_TASK_PID=1 srun --sysroot (a forged task pid)|SLURM_TASK_PID=1 srun --sysroot=deb11 uname -m"; do
    IFS='|' read -r what cmd <<<"$row"
    refused "a node without the plugin never runs a --sysroot task: $what" "$cmd" \
        'imageswitch-spank: --sysroot=deb11 was asked for, but the imageswitch SPANK plugin is not loaded'
done
out=$(route "srun uname -m")
check_eq "a node without the plugin still runs a task without --sysroot" "$(uname -m) status 0" "$(echo $out)"
set_plugstack "required $PREFIX/lib/imageswitch_spank.so $PLUGIN_ARGS"
finish
