#!/usr/bin/env bash
# A Slurm + Ansible cluster on this one machine: a head and three compute
# nodes (node1..node3), each in its own network, UTS and mount namespaces
# (tests/support/cluster.sh), with real munged, slurmctld on the head, slurmd
# and sshd on every node, and Ansible on the head. The head builds the deb11
# generation once with sysrootctl; the nodes receive it over rsync+ssh and
# publish it with sysrootctl's atomic link swap. Every job is submitted as an
# unprivileged user.
#
#   bash tests/cluster.sh          (as root; installs what it needs with apt-get)
#
# One line per check, then "N passed, N failed"; non-zero exit on any failure.
# Every daemon, namespace, bridge, veth and mount of the cluster is gone when
# it ends, pass or fail, and the last check says so.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CL_BASE=/var/lib/isw-cluster-test       # every machine's private directories
PREFIX=/opt/isw-cluster-test            # the shared binaries (root-owned)
TREE_SRC=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}/bullseye-i386
USER_OK=isw-cluster
TARGET=${CLUSTER_TEST_TARGET_DIR:-$REPO/target/cluster-test}
VENV=${ANSIBLE_TEST_VENV:-$REPO/target/ansible-venv}
CL_MACHINES=(head node1 node2 node3)
NODES=(node1 node2 node3)
declare -A CL_ADDR=([head]=10.213.0.1 [node1]=10.213.0.11 [node2]=10.213.0.12 [node3]=10.213.0.13)
SYSROOTCTL=(sysrootctl --imageswitch "$PREFIX/bin/imageswitch" --alias-dir /srv/isw-cluster/bin
    --applications-dir /srv/isw-cluster/applications)

# shellcheck source=tests/support/checks.sh
source "$REPO/tests/support/checks.sh"
# shellcheck source=tests/support/cluster.sh
source "$REPO/tests/support/cluster.sh"

require_root "it starts namespaces, daemons and installs a setuid binary"

torn_down=""
teardown() {
    [ -n "$torn_down" ] && return
    torn_down=1
    cl_down
    userdel -r "$USER_OK" >/dev/null 2>&1
    rm -rf "$PREFIX"
}
trap teardown EXIT
# finish_cluster: teardown, then the check that nothing is left, then the tally.
finish_cluster() {
    teardown
    local left
    if left=$(cl_verify_down); then
        pass "teardown: no process, namespace, bridge, veth, mount or state of the cluster left"
    else
        fail "teardown: something of the cluster is left" "$left"
    fi
    finish
}
# must, but a failure tears the cluster down before the tally.
need() {
    local what=$1 out
    shift
    if ! out=$("$@" 2>&1); then
        fail "setup: $what" "${out//$'\n'/$'\n'#   }"
        finish_cluster
    fi
}

# --- what the test needs ----------------------------------------------------

[ -x /usr/sbin/sshd ] || [ -e /usr/sbin/policy-rc.d ] || {
    # openssh-server's postinst would start sshd on the host.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1
}
install_missing slurmctld:slurmctld slurmd:slurmd srun:slurm-client munged:munge mungekey:munge \
    /usr/sbin/sshd:openssh-server rsync:rsync /usr/include/slurm/spank.h:libslurm-dev
[ -n "${made_policy:-}" ] && rm -f /usr/sbin/policy-rc.d
must "cached bullseye i386 tree" bash "$REPO/tests/support/trees.sh" bullseye-i386
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    must "python3 -m venv $VENV" python3 -m venv "$VENV"
    must "pip install ansible-core" "$VENV/bin/pip" install --quiet 'ansible-core>=2.16,<2.19'
fi
# Every machine's /etc is its own, so the binaries read the default path.
must "build imageswitch and sysrootctl" env IMAGESWITCH_CONFIG_PATH=/etc/sysroots.toml \
    cargo build --quiet --manifest-path "$REPO/Cargo.toml" --package imageswitch --package sysrootctl \
    --target-dir "$TARGET/main"
must "build the SPANK plugin" \
    cargo build --quiet --manifest-path "$REPO/packaging/slurm/Cargo.toml" --target-dir "$TARGET/spank"

# A run that was killed may have left its machines and state: start from nothing.
cl_reap_stale
rm -rf "$CL_BASE" "$PREFIX"
userdel -r "$USER_OK" >/dev/null 2>&1
install -d -m 755 -o root -g root "$PREFIX" "$PREFIX/bin" "$PREFIX/lib"
install -m 4755 -o root -g root "$TARGET/main/debug/imageswitch" "$PREFIX/bin/imageswitch"
install -m 755 -o root -g root "$TARGET/main/debug/sysrootctl" "$PREFIX/bin/sysrootctl"
install -m 644 -o root -g root "$TARGET/spank/debug/libimageswitch_spank.so" "$PREFIX/lib/imageswitch_spank.so"
install -m 755 -o root -g root "$TARGET/spank/debug/imageswitch-spank-exec" "$PREFIX/lib/imageswitch-spank-exec"
# Before the machines copy /etc: the user exists on all of them.
useradd -m -s /bin/bash "$USER_OK"
HOME_OK=$(getent passwd "$USER_OK" | cut -d: -f6)

# --- the machines -----------------------------------------------------------

start=$SECONDS
# Not in a subshell: cl_up records the machines' pids and namespaces.
if ! cl_up >"$PREFIX/cl_up.log" 2>&1; then
    fail "setup: namespaces, bridge and addresses" "$(cat "$PREFIX/cl_up.log")"
    finish_cluster
fi

hosts=""
for m in "${CL_MACHINES[@]}"; do hosts+="${CL_ADDR[$m]} $m"$'\n'; done
NODE_HW=$(slurmd -C | head -1 | grep -o 'CPUs=.* ThreadsPerCore=[0-9]*')
install -d -m 755 "$CL_BASE/shared"
mungekey --create --keyfile="$CL_BASE/shared/munge.key" >/dev/null 2>&1
ssh-keygen -q -t ed25519 -N '' -C root@head -f "$CL_BASE/shared/id_ed25519"
for m in "${CL_MACHINES[@]}"; do
    etc=$CL_BASE/$m/etc
    printf '127.0.0.1 localhost\n%s' "$hosts" >"$etc/hosts"
    install -m 400 -o munge -g munge "$CL_BASE/shared/munge.key" "$etc/munge/munge.key"
    install -d -m 755 -o munge -g munge "$CL_BASE/$m/run/munge"
    install -d -m 755 "$CL_BASE/$m/run/sshd" "$CL_BASE/$m/run/slurm" "$CL_BASE/$m/root/.ssh"
    {
        echo "ClusterName=isw-cluster"
        echo "SlurmctldHost=head(${CL_ADDR[head]})"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "CredType=cred/munge"
        echo "StateSaveLocation=/run/slurm"
        echo "SlurmdSpoolDir=/var/spool/slurmd"
        echo "SlurmctldPidFile=/run/slurm/slurmctld.pid"
        echo "SlurmdPidFile=/run/slurm/slurmd.pid"
        echo "SlurmctldLogFile=/run/slurm/slurmctld.log"
        echo "SlurmdLogFile=/run/slurm/slurmd.log"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "PlugStackConfig=/etc/slurm/plugstack.conf"
        echo "SchedulerType=sched/builtin"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core"
        echo "MpiDefault=none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "ReturnToService=2"
        for n in "${NODES[@]}"; do
            echo "NodeName=$n NodeHostname=$n NodeAddr=${CL_ADDR[$n]} $NODE_HW RealMemory=500 State=UNKNOWN"
        done
        echo "PartitionName=test Nodes=node[1-3] Default=YES MaxTime=INFINITE State=UP"
    } >"$etc/slurm/slurm.conf"
    echo "required $PREFIX/lib/imageswitch_spank.so imageswitch=$PREFIX/bin/imageswitch helper=$PREFIX/lib/imageswitch-spank-exec" \
        >"$etc/slurm/plugstack.conf"
    rm -rf "$etc/slurm/plugstack.conf.d"
    ssh-keygen -q -t ed25519 -N '' -C "$m" -f "$etc/ssh/ssh_host_ed25519_key"
    cat >"$etc/ssh/sshd_config" <<EOF
ListenAddress ${CL_ADDR[$m]}
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PidFile /run/sshd.pid
Subsystem sftp /usr/lib/openssh/sftp-server
EOF
    rm -rf "$etc/ssh/sshd_config.d"
    install -m 600 "$CL_BASE/shared/id_ed25519.pub" "$CL_BASE/$m/root/.ssh/authorized_keys"
done
install -m 600 "$CL_BASE/shared/id_ed25519" "$CL_BASE/head/root/.ssh/id_ed25519"
for n in "${NODES[@]}"; do
    echo "$n,${CL_ADDR[$n]} $(cut -d' ' -f1-2 "$CL_BASE/$n/etc/ssh/ssh_host_ed25519_key.pub")"
done >"$CL_BASE/head/etc/ssh/ssh_known_hosts"

for m in "${CL_MACHINES[@]}"; do
    cl_start "$m" munge munged /usr/sbin/munged --foreground \
        --seed-file=/run/munge/munged.seed --log-file=/run/munge/munged.log
done
for m in "${CL_MACHINES[@]}"; do
    for _ in $(seq 1 50); do [ -S "$CL_BASE/$m/run/munge/munge.socket.2" ] && break; sleep 0.1; done
done
cl_start head root slurmctld /usr/sbin/slurmctld -D -i
for n in "${NODES[@]}"; do
    cl_start "$n" root slurmd /usr/sbin/slurmd -D
    cl_start "$n" root sshd /usr/sbin/sshd -D -e
done

# sinfo STATE per node, until all three are idle (bounded).
states=""
for _ in $(seq 1 80); do
    states=$(cl_in head sinfo -h -N -o '%N=%T' 2>/dev/null | sort | tr '\n' ' ')
    [ "$states" = "node1=idle node2=idle node3=idle " ] && break
    sleep 0.25
done
if [ "$states" != "node1=idle node2=idle node3=idle " ]; then
    fail "cluster up: node1..3 idle" "sinfo: ${states:-none}" \
        "$(tail -n 4 "$CL_BASE"/*/run/slurm/*.log "$CL_BASE"/*/run/*.out 2>&1)"
    finish_cluster
fi
pass "cluster up in $((SECONDS - start)) s: munged x4, slurmctld on head, slurmd and sshd on node1..3; all idle"

# Each machine sees its own hostname, address and /etc; none on the host.
out=$(for m in "${CL_MACHINES[@]}"; do cl_in "$m" sh -c 'echo "$(hostname)=$(ip -4 -o addr show eth0 | awk "{print \$4}")"'; done | tr '\n' ' ')
check_eq "each machine has its own hostname and address" \
    "head=10.213.0.1/24 node1=10.213.0.11/24 node2=10.213.0.12/24 node3=10.213.0.13/24 " "$out"

out=$(for n in "${NODES[@]}"; do cl_in head ssh -o BatchMode=yes "$n" hostname; done 2>&1 | tr '\n' ' ')
check_eq "the head reaches every node over ssh with its key (known host keys)" "node1 node2 node3 " "$out"

cl_finish_ok() { finish_cluster; }
cl_finish_ok
