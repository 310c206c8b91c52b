#!/usr/bin/env bash
# A Slurm + Ansible cluster on this one machine: a head and three compute
# nodes (node1..node3), each in its own network, UTS and mount namespaces
# (tests/support/cluster.sh), with real munged, slurmctld on the head, slurmd
# and sshd on every node, and Ansible on the head. The head builds the deb11
# generation once with sysrootctl; the nodes receive it over rsync+ssh and
# publish it with sysrootctl's atomic link swap. Every job is submitted as an
# unprivileged user. It checks: srun -N3 and sbatch (#!/bin11/bash) on every
# node; the rollout role (packaging/ansible/rollout.yml) in check mode, while a
# job runs on every node (the new generation adds a package from a local apt
# repository and a file from a playbook, sysrootctl's playbook key), with the
# bytes a small change sends, with ssh killed mid-transfer and a second
# rollout refused meanwhile, with a node whose sysrootctl gives odd paths,
# with a node failing the health gate; rollback.yml by generation id, where
# the nodes number generations differently; and that nothing of the cluster
# is left. doc/cluster.md has the measured costs.
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
# With python3: what Ansible's chroot connection needs in the tree.
TREE_SRC=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}/bullseye-i386-python
USER_OK=isw-cluster
TARGET=${CLUSTER_TEST_TARGET_DIR:-$REPO/target/cluster-test}
# The SPANK plugin does not depend on the config path: tests/slurm.sh's build.
SPANK_TARGET=${SLURM_TEST_TARGET_DIR:-$REPO/target/slurm-test}/spank
# Its own virtualenv, made with the system's python3: the head's /root is
# private, so a python found under the host's /root would not be there.
VENV=$TARGET/ansible-venv
CL_MACHINES=(head node1 node2 node3)
NODES=(node1 node2 node3)
declare -A CL_ADDR=([head]=10.213.0.1 [node1]=10.213.0.11 [node2]=10.213.0.12 [node3]=10.213.0.13)
SYSROOTCTL=("$PREFIX/bin/sysrootctl" --imageswitch "$PREFIX/bin/imageswitch" --alias-dir /srv/isw-cluster/bin
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
trap 'exit 130' INT TERM
# finish_cluster: teardown, then the check that nothing is left, then the tally.
finish_cluster() {
    teardown
    local left
    if left=$(cl_verify_down); then
        pass "teardown: no process, namespace, bridge, veth, mount or state of the cluster left"
    else
        fail "teardown: something of the cluster is left" "$left"
    fi
    say "# measured: tests/cluster.sh ran $SECONDS s"
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
    /usr/sbin/sshd:openssh-server rsync:rsync /usr/include/slurm/spank.h:libslurm-dev \
    dpkg-scanpackages:dpkg-dev ansible-playbook:ansible
[ -n "${made_policy:-}" ] && rm -f /usr/sbin/policy-rc.d
must "cached bullseye i386 tree with python3" bash "$REPO/tests/support/trees.sh" bullseye-i386-python
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    must "python3 -m venv $VENV" /usr/bin/python3 -m venv "$VENV"
    must "pip install ansible-core" "$VENV/bin/pip" install --quiet 'ansible-core>=2.16,<2.19'
fi
# Every machine's /etc is its own, so the binaries read the default path.
must "build imageswitch and sysrootctl" env IMAGESWITCH_CONFIG_PATH=/etc/sysroots.toml \
    cargo build --quiet --manifest-path "$REPO/Cargo.toml" --package imageswitch --package sysrootctl \
    --target-dir "$TARGET/main"
must "build the SPANK plugin" \
    cargo build --quiet --manifest-path "$REPO/packaging/slurm/Cargo.toml" --target-dir "$SPANK_TARGET"

# A run that was killed may have left its machines and state: start from nothing.
cl_reap_stale
rm -rf "$CL_BASE" "$PREFIX"
userdel -r "$USER_OK" >/dev/null 2>&1
install -d -m 755 -o root -g root "$PREFIX" "$PREFIX/bin" "$PREFIX/lib"
install -m 4755 -o root -g root "$TARGET/main/debug/imageswitch" "$PREFIX/bin/imageswitch"
install -m 755 -o root -g root "$TARGET/main/debug/sysrootctl" "$PREFIX/bin/sysrootctl"
install -m 644 -o root -g root "$SPANK_TARGET/debug/libimageswitch_spank.so" "$PREFIX/lib/imageswitch_spank.so"
install -m 755 -o root -g root "$SPANK_TARGET/debug/imageswitch-spank-exec" "$PREFIX/lib/imageswitch-spank-exec"
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

# --- build once on the head, roll out to the nodes ---------------------------

install -d -m 755 "$PREFIX/overlay" "$PREFIX/overlay/spool"
echo "release 1" >"$PREFIX/overlay/release"
# A local apt repository (the site's mirror) with one package, in the tree
# from release 1 on; release 2 installs the package (packages key) and runs a
# playbook (playbook key). No network: apt reads the repository in the tree.
pkg=$PREFIX/pkg/isw-cluster-hello
install -d -m 755 "$pkg/DEBIAN" "$pkg/usr/share/isw-cluster-hello" "$PREFIX/repo" "$PREFIX/playbook"
echo "hello from a package" >"$pkg/usr/share/isw-cluster-hello/hello"
printf '%s\n' "Package: isw-cluster-hello" "Version: 1.0" "Architecture: all" \
    "Maintainer: imageswitch tests <root@localhost>" "Description: a package the cluster test adds" \
    " It marks a generation built with it." >"$pkg/DEBIAN/control"
need "build the package" dpkg-deb --root-owner-group -b "$pkg" "$PREFIX/repo/isw-cluster-hello_1.0_all.deb"
(cd "$PREFIX/repo" && dpkg-scanpackages . /dev/null >Packages 2>/dev/null)
echo "deb [trusted=yes] file:/srv/isw-repo ./" >"$PREFIX/overlay/sources.list"
cat >"$PREFIX/playbook/site.yml" <<'EOF'
- name: Customise the golden image
  hosts: all
  gather_facts: false
  tasks:
    - name: Write the site's file
      ansible.builtin.copy:
        dest: /etc/isw-cluster-playbook
        content: "customised by a playbook\n"
        mode: "0644"
EOF
for m in "${CL_MACHINES[@]}"; do
    cat >"$CL_BASE/$m/etc/sysroots.toml" <<EOF
[defaults]
binds = ["/home", "/tmp"]
log_socket = ""

[sysroot.deb11]
path = "/srv/isw-cluster/deb11"
personality = "linux32"
aliases = ["deb11"]
bin_dir = "/bin11"
users = ["$USER_OK"]
binds = ["/var/spool/slurmd"]

[sysroot.deb11.build]
method = "tarball"
source = "$TREE_SRC"
files = [
    { src = "$PREFIX/overlay/spool", dst = "/var/spool/slurmd" },
    { src = "$PREFIX/overlay/release", dst = "/etc/isw-cluster-release" },
    { src = "$PREFIX/repo", dst = "/srv/isw-repo" },
    { src = "$PREFIX/overlay/sources.list", dst = "/etc/apt/sources.list" },
]
EOF
done
cat >"$CL_BASE/head/root/inventory" <<EOF
[imageswitch]
node1
node2
node3
EOF
cat >"$CL_BASE/head/root/vars.yml" <<EOF
ansible_python_interpreter: /usr/bin/python3
ansible_become: false
sysroot_rollout_name: deb11
sysroot_rollout_sysrootctl: $PREFIX/bin/sysrootctl
sysroot_rollout_imageswitch: $PREFIX/bin/imageswitch
sysroot_rollout_options: [--imageswitch, $PREFIX/bin/imageswitch, --alias-dir, /srv/isw-cluster/bin, --applications-dir, /srv/isw-cluster/applications]
sysroot_rollout_canary_user: $USER_OK
sysroot_rollout_canary_command: [/bin/sh, -c, 'test "\$(uname -m)" = i686']
EOF

# play PLAYBOOK ARGS...: ansible-playbook on the head, output in $PREFIX/play.log
# (or $PLAY_LOG).
play() {
    local book=$1 t0=$SECONDS
    shift
    cl_in head env HOME=/root ANSIBLE_NOCOLOR=1 ANSIBLE_RETRY_FILES_ENABLED=0 \
        timeout 300 "$VENV/bin/ansible-playbook" -i /root/inventory -e @/root/vars.yml \
        "$REPO/packaging/ansible/$book" "$@" >"${PLAY_LOG:-$PREFIX/play.log}" 2>&1
    local status=$?
    echo "$((SECONDS - t0))" >"$PREFIX/play.seconds"
    return $status
}
# recap: "node1 changed=N failed=N ..." per node from the last play.
recap() {
    grep -E '^node[0-9] +:' "$PREFIX/play.log" | awk '{print $1, $4, $6}' | tr '\n' ' '
    echo "in $(cat "$PREFIX/play.seconds") s"
}
# node_ids: the live generation id on each node.
node_ids() {
    local n
    for n in "${NODES[@]}"; do
        cl_in "$n" "$PREFIX/bin/sysrootctl" export deb11 --json | jq -r '.id'
    done | tr '\n' ' '
}
# node_numbers: each node's number for its live generation.
node_numbers() {
    local n
    for n in "${NODES[@]}"; do
        cl_in "$n" "$PREFIX/bin/sysrootctl" export deb11 --json | jq -r '.generation'
    done | tr '\n' ' '
}
head_id() { cl_in head "$PREFIX/bin/sysrootctl" status deb11 --json | jq -r '.[0].id'; }

need "sysrootctl apply deb11 on the head" cl_in head "${SYSROOTCTL[@]}" apply deb11
# node1 built a generation of its own before: from here on it numbers the
# generations it receives one higher than node2 and node3 do.
need "sysrootctl apply deb11 on node1" cl_in node1 "${SYSROOTCTL[@]}" apply deb11
ID1=$(head_id)
if play rollout.yml; then
    pass "first rollout to node1..3 (serial, health gate): $(recap)"
    say "# measured: bytes sent per node for the whole tree: $(grep -o 'Total bytes sent: [0-9,]*' "$PREFIX/play.log" | awk '{print $4}' | tr '\n' ' ')($(find "$CL_BASE/head/sysrootctl/deb11/1" | wc -l) files, $(du -sb "$CL_BASE/head/sysrootctl/deb11/1" | cut -f1) bytes)"
else
    fail "first rollout to node1..3" "$(tail -n 30 "$PREFIX/play.log")"
fi
check_eq "every node runs the head's generation (sysrootctl export --json id)" "$ID1 $ID1 $ID1 " "$(node_ids)"

# --- jobs as the user ---------------------------------------------------------

# as CMD...: CMD as the user on the head, in the user's home (shared /home).
as() { cl_in head runuser -u "$USER_OK" -- sh -c 'cd "$HOME" && exec timeout 120 "$@"' sh "$@"; }

out=$(as srun -N3 --sysroot=deb11 sh -c 'echo "$(uname -n) $(uname -m)"' 2>&1 | sort | tr '\n' ' ')
check_eq "srun -N3 --sysroot=deb11 uname -m prints i686 from node1..3" "node1 i686 node2 i686 node3 i686 " "$out"

cat >"$HOME_OK/job-shebang.sh" <<EOF
#!/bin11/bash
echo "\$(uname -n) \$(uname -m) \$(cat /etc/debian_version) bash=\$BASH_VERSION"
EOF
chmod 755 "$HOME_OK/job-shebang.sh"
chown "$USER_OK:" "$HOME_OK/job-shebang.sh"
tree_line="$(cat "$TREE_SRC/etc/debian_version") bash=$(chroot "$TREE_SRC" /bin/bash -c 'echo $BASH_VERSION')"
as sbatch -N3 --wait --quiet -o job-N3.out --wrap 'srun ./job-shebang.sh' >/dev/null 2>&1
out=$(sort "$HOME_OK/job-N3.out" 2>&1 | tr '\n' '|')
check_eq "sbatch -N3: a #!/bin11/bash script on every node" \
    "node1 i686 $tree_line|node2 i686 $tree_line|node3 i686 $tree_line|" "$out"
for n in "${NODES[@]}"; do
    as sbatch -w "$n" --quiet -o "job-$n.out" job-shebang.sh >/dev/null 2>&1
done
for _ in $(seq 1 120); do
    [ -z "$(cl_in head squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.25
done
out=$(cat "$HOME_OK"/job-node[123].out 2>&1 | tr '\n' '|')
check_eq "sbatch of the #!/bin11/bash job script itself, on each node" \
    "node1 i686 $tree_line|node2 i686 $tree_line|node3 i686 $tree_line|" "$out"

# --- a rollout while a job runs on every node -------------------------------

echo "release 2" >"$PREFIX/overlay/release"
sed -i "s|^method = \"tarball\"|&\npackages = [\"isw-cluster-hello\"]\nplaybook = \"$PREFIX/playbook/site.yml\"|" \
    "$CL_BASE/head/etc/sysroots.toml"
t0=$SECONDS
if out=$(cl_in head "${SYSROOTCTL[@]}" apply deb11 2>&1); then
    check_eq "release 2 on the head: a package added, a file from a playbook, a one-file change" "1 1 1" \
        "$(grep -c '^  install packages: isw-cluster-hello$' <<<"$out") $(grep -c '^  playbook .*: task "Write the site.s file" changed$' <<<"$out") $(grep -c '^  update /etc/isw-cluster-release' <<<"$out")"
else
    fail "setup: sysrootctl apply deb11 on the head (release 2)" "$out"
    finish_cluster
fi
say "# measured: sysrootctl apply on the head of release 2 (a package, a playbook, a file): $((SECONDS - t0)) s"
t0=$SECONDS
out=$(cl_in head "${SYSROOTCTL[@]}" apply deb11 2>&1)
check_eq "a second apply on the head changes nothing (the playbook's check mode included)" \
    "deb11: up to date, nothing changed (generation 2)" "$out"
say "# measured: no-op sysrootctl apply on the head with the playbook's check: $((SECONDS - t0)) s"
ID2=$(head_id)
tree_bytes=$(du -sb "$CL_BASE/head/sysrootctl/deb11/2" | cut -f1)

if play rollout.yml --check; then
    would=$(grep -c "deb11 $ID1 -> $ID2 (would change)" "$PREFIX/play.log")
    check_eq "check mode: each node reports that its generation would change, and changes nothing ($(
        grep -o -m1 'Number of regular files transferred: [0-9,]*' "$PREFIX/play.log") per node)" \
        "3 $ID1 $ID1 $ID1 " "$would $(node_ids)"
else
    fail "check mode rollout" "$(tail -n 30 "$PREFIX/play.log")"
fi

GO=/tmp/isw-cluster-test-go
rm -f "$GO"
# Each task says what it sees, waits for $GO (bounded), and says it again.
# What a task sees: the release, the package's file, the playbook's file.
sees='$(cat /etc/isw-cluster-release) $(cat /usr/share/isw-cluster-hello/hello 2>/dev/null || echo no package) $(cat /etc/isw-cluster-playbook 2>/dev/null || echo no playbook)'
as sbatch -N3 --wait --quiet -o job-long.out --wrap "srun --sysroot=deb11 sh -c '
    echo \"\$(uname -n) before $sees\"
    i=0; while [ ! -e $GO ] && [ \$i -lt 600 ]; do sleep 0.2; i=\$((i + 1)); done
    echo \"\$(uname -n) after $sees\"'" >/dev/null 2>&1 &
long_job=$!
for _ in $(seq 1 120); do
    [ "$(grep -c before "$HOME_OK/job-long.out" 2>/dev/null)" = 3 ] && break
    sleep 0.25
done

if play rollout.yml; then
    sent=$(grep -o 'Total bytes sent: [0-9,]*' "$PREFIX/play.log" | tr -d , | awk '{print $4}' | tr '\n' ' ')
    pass "rollout of release 2 while a job runs on every node: $(recap)"
else
    fail "rollout of release 2 while a job runs" "$(tail -n 30 "$PREFIX/play.log")"
fi
check_eq "every node runs release 2's generation" "$ID2 $ID2 $ID2 " "$(node_ids)"
small=1
for b in $sent; do [ "$b" -lt 1000000 ] || small=""; done
if [ -n "$small" ] && [ -n "$sent" ]; then
    pass "a small change sends little: bytes sent per node $sent for a tree of $tree_bytes bytes"
else
    fail "a small change sends little" "bytes sent per node: ${sent:-none}; tree: $tree_bytes bytes"
fi
store2=$CL_BASE/node2/sysrootctl/deb11
out="$(stat -c %i "$store2/1/bin/bash" "$store2/2/bin/bash" | uniq | wc -l) $(cat "$store2/1/etc/isw-cluster-release")"
check_eq "on the node, the new generation shares unchanged files with the old one (hard links)" "1 release 1" "$out"
out=$(as srun -N3 --sysroot=deb11 sh -c "echo \"\$(uname -n) $sees\"" 2>&1 | sort | tr '\n' '|')
new="release 2 hello from a package customised by a playbook"
check_eq "a job started after the switch sees release 2, its package and its playbook's file on every node" \
    "node1 $new|node2 $new|node3 $new|" "$out"
touch "$GO"
wait "$long_job"
status=$?
out=$(sort "$HOME_OK/job-long.out" 2>&1 | tr '\n' '|')
old="release 1 no package no playbook"
check_eq "the job running during the rollout kept release 1 (no package, no playbook's file) until it ended, and succeeded (status $status)" \
    "node1 after $old|node1 before $old|node2 after $old|node2 before $old|node3 after $old|node3 before $old|0" \
    "$out$status"
rm -f "$GO"

# --- an interrupted rollout stops, leaves the node as it was; a re-run converges

echo "release 3" >"$PREFIX/overlay/release"
head -c 8000000 /dev/urandom >"$PREFIX/overlay/big"
sed -i "s|^]|    { src = \"$PREFIX/overlay/big\", dst = \"/opt/isw-big\" },\n]|" "$CL_BASE/head/etc/sysroots.toml"
need "sysrootctl apply deb11 on the head (release 3, 8 MB more)" cl_in head "${SYSROOTCTL[@]}" apply deb11
ID3=$(head_id)
# A record an earlier transfer left on node2 (its receive never ran).
cp -p "$CL_BASE/node2/sysrootctl/deb11/2.json" "$CL_BASE/node2/sysrootctl/deb11/incoming.json"
play rollout.yml -e '{"sysroot_rollout_rsync_options": ["--bwlimit=2000"]}' &
slow_play=$!
killed=""
second=""
for _ in $(seq 1 240); do
    if ls -a "$CL_BASE/node2/sysrootctl/deb11/incoming/opt/" 2>/dev/null | grep -q '^\.isw-big\.'; then
        for p in $(cl_processes); do
            case $(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) in
                ssh\ *node2\ rsync\ --server*)
                    # The transfer held where it is: a second rollout to node2 meanwhile.
                    kill -STOP "$p"
                    PLAY_LOG=$PREFIX/play2.log play rollout.yml --limit node2
                    second=$?
                    kill -9 "$p" && killed=$p
                    ;;
            esac
        done
        break
    fi
    sleep 0.1
done
wait "$slow_play"
status=$?
if [ -n "$killed" ] && [ "$status" -ne 0 ]; then
    pass "ssh to node2 killed mid-transfer (pid $killed): the rollout fails and stops: $(recap)"
else
    fail "ssh to node2 killed mid-transfer" "killed: ${killed:-nothing}, play status $status" "$(tail -n 20 "$PREFIX/play.log")"
fi
if [ "$second" = 2 ] && grep -q "node2: another rollout or rollback of deb11 is running here .* taken by head at" "$PREFIX/play2.log"; then
    pass "a second rollout to node2 during the first is refused at node2's rollout lock"
else
    fail "a second rollout to node2 during the first is refused" "status ${second:-not run}" "$(tail -n 20 "$PREFIX/play2.log")"
fi
check_eq "node1 switched, node2 stays on its generation, node3 never started" "$ID3 $ID2 $ID2 " "$(node_ids)"
incoming=$CL_BASE/node2/sysrootctl/deb11/incoming
out="$([ -d "$incoming/etc" ] && echo kept) $([ -e "$incoming.json" ] && echo record)"
check_eq "node2 keeps the files that arrived for the next run, and no record (the leftover one removed first)" \
    "kept " "$out"
out=$(as srun -w node2 --sysroot=deb11 cat /etc/isw-cluster-release 2>&1)
check_eq "jobs on node2 still run its old generation" "release 2" "$out"
if play rollout.yml; then
    pass "a re-run converges: $(recap)"
else
    fail "a re-run converges" "$(tail -n 30 "$PREFIX/play.log")"
fi
check_eq "every node runs release 3's generation" "$ID3 $ID3 $ID3 " "$(node_ids)"

# --- rollback of every node in one play, by generation id -------------------

if play rollback.yml; then
    pass "rollback play: $(recap)"
else
    fail "rollback play" "$(tail -n 30 "$PREFIX/play.log")"
fi
check_eq "every node is back on release 2's generation (the head's one before its live one), which node1 numbers 3 and node2, node3 number 2" \
    "$ID2 $ID2 $ID2 3 2 2 " "$(node_ids)$(node_numbers)"
out=$(as srun -N3 --sysroot=deb11 sh -c 'echo "$(uname -n) $(cat /etc/isw-cluster-release)"' 2>&1 | sort | tr '\n' '|')
check_eq "jobs after the rollback see release 2 on every node" \
    "node1 release 2|node2 release 2|node3 release 2|" "$out"
if play rollback.yml -e "sysroot_rollout_to=$ID1"; then
    pass "rollback play to release 1's id: $(recap)"
else
    fail "rollback play to release 1's id" "$(tail -n 30 "$PREFIX/play.log")"
fi
check_eq "every node is on release 1's generation, node1's number 2, the others' 1" "$ID1 $ID1 $ID1 2 1 1 " \
    "$(node_ids)$(node_numbers)"
if play rollback.yml --check; then
    out="$(grep -c "deb11 $ID1 -> $ID2 (would change)" "$PREFIX/play.log") $(node_ids)"
    check_eq "rollback check mode: each node reports the change to the head's previous id, and changes nothing" \
        "3 $ID1 $ID1 $ID1 " "$out"
else
    fail "rollback check mode" "$(tail -n 30 "$PREFIX/play.log")"
fi

# --- a node whose sysrootctl gives odd paths ---------------------------------

# node3's sysrootctl, as an odd (or older) one: export names an incoming
# directory outside its store. The rollout must not send there.
cat >"$PREFIX/bin/sysrootctl-odd" <<EOF
#!/bin/sh
if [ "\$(hostname)" = node3 ]; then
    $PREFIX/bin/sysrootctl "\$@" | sed 's|"incoming": ".*"|"incoming": "/etc/isw-cluster-odd/incoming"|'
    exit
fi
exec $PREFIX/bin/sysrootctl "\$@"
EOF
chmod 755 "$PREFIX/bin/sysrootctl-odd"
play rollout.yml --limit node3 -e "sysroot_rollout_sysrootctl=$PREFIX/bin/sysrootctl-odd"
status=$?
out="$status $(grep -c 'node3: sysrootctl export gave paths that are not STORE/deb11/N' "$PREFIX/play.log") $([ -e "$CL_BASE/node3/etc/isw-cluster-odd" ] && echo sent || echo nothing)"
check_eq "a node whose export names an incoming outside its store fails before anything is sent" "2 1 nothing" "$out"
check_eq "node3 stays on its generation" "$ID1" "$(cl_in node3 "$PREFIX/bin/sysrootctl" export deb11 --json | jq -r .id)"

# --- a node that fails the health gate ---------------------------------------

# node2's declaration admits nobody: its canary entry is refused.
sed -i "s/^users = \[\"$USER_OK\"\]/users = []/" "$CL_BASE/node2/etc/sysroots.toml"
play rollout.yml
if grep -q "node2 failed the health gate on $ID3" "$PREFIX/play.log"; then
    pass "node2 fails the health gate (canary entry refused) and the rollout stops: $(recap)"
else
    fail "node2 fails the health gate and the rollout stops" "$(tail -n 30 "$PREFIX/play.log")"
fi
check_eq "node1 switched, node2 put back on its generation (by id), node3 never started" "$ID3 $ID1 $ID1 " "$(node_ids)"
sed -i "s/^users = \[\]/users = [\"$USER_OK\"]/" "$CL_BASE/node2/etc/sysroots.toml"
if play rollout.yml; then
    pass "node2 fixed: rolling release 3 out again converges: $(recap)"
else
    fail "node2 fixed: rolling release 3 out again converges" "$(tail -n 30 "$PREFIX/play.log")"
fi
gens=$(for n in "${NODES[@]}"; do ls "$CL_BASE/$n/sysrootctl/deb11" | grep -c '^[0-9]*$'; done | tr '\n' ' ')
check_eq "every node republished its stored release 3 generation, none stored twice (generations per node)" \
    "$ID3 $ID3 $ID3 3 3 3 " "$(node_ids)$gens"
check_eq "no rollout lock is left on any node" "" "$(find "$CL_BASE"/node*/run/sysroot-rollout -mindepth 1 2>&1)"

finish_cluster
