# A head and compute nodes on this one machine, for tests/cluster.sh.
# shellcheck shell=bash
#
# Each machine is a set of namespaces (network, UTS, mount) kept alive by a
# holder process: its own address on a private bridge, its own hostname, and
# its own /etc (a copy), /run, /root, /var/lib/sysrootctl, /var/spool/slurmd,
# /srv/isw-cluster and /bin11, all whole-directory binds; binaries, /home and
# /tmp are the host's. The bridge lives in a network namespace of its own, so
# no address, bridge or veth ever appears on the host. Why whole directories:
# shared/notes/cluster-on-one-machine.md.
#
# Every process of the cluster runs in one of our network namespaces; teardown
# stops exactly those processes (recognised by namespace id, never by name)
# and then checks that nothing of the cluster is left.
#
# Needs: CL_BASE (state directory on the host), CL_MACHINES (head first),
# CL_ADDR[machine], and the functions pass/fail from checks.sh.

CL_NET=10.213.0
CL_PRIVATE_DIRS=(/etc /run /root /var/lib/sysrootctl /var/spool/slurmd /srv/isw-cluster /bin11)
declare -A CL_PID=() CL_NS=()
CL_SWITCH_PID=""
CL_MADE_DIRS=()
# What the host's shared directories held before the cluster came up (a demo's
# /bin11, say): teardown leaves them exactly so.
declare -gA CL_BEFORE=()

# cl_ns_ids PID: the "net:[N] mnt:[N] uts:[N]" identity of PID's namespaces.
cl_ns_ids() {
    local pid=$1 out="" t
    for t in net mnt uts; do
        out+="$(readlink "/proc/$pid/ns/$t" 2>/dev/null) "
    done
    echo "${out% }"
}

# cl_in MACHINE CMD...: CMD in MACHINE's namespaces (cwd: /), after checking
# that the holder still is the process whose namespaces we made.
cl_in() {
    local m=$1 pid=${CL_PID[$1]:-}
    shift
    if [ -z "$pid" ] || [ "$(cl_ns_ids "$pid")" != "${CL_NS[$m]}" ]; then
        echo "cluster: machine $m is gone" >&2
        return 125
    fi
    nsenter -t "$pid" -n -u -m -- "$@"
}

# cl_start MACHINE USER NAME EXE ARGS...: a daemon in MACHINE's namespaces,
# run as USER under the name MACHINE-NAME (a symlink to EXE) so nothing that
# stops daemons by name elsewhere ever hits it; output in MACHINE's
# /run/NAME.out.
cl_start() {
    local m=$1 user=$2 name=$3 exe=$4
    shift 4
    ln -sf "$exe" "$CL_BASE/bin/$m-$name"
    cl_in "$m" setpriv --reuid="$user" --regid="$user" --init-groups \
        "$CL_BASE/bin/$m-$name" "$@" </dev/null >>"$CL_BASE/$m/run/$name.out" 2>&1 &
}

cl_holder() { # NAME UNSHARE-FLAGS...: starts a holder, sets CL_LAST_PID
    local name=$1
    shift
    ln -sf "$(command -v sleep)" "$CL_BASE/bin/$name"
    unshare "$@" -- "$CL_BASE/bin/$name" infinity </dev/null >/dev/null 2>&1 &
    CL_LAST_PID=$!
    local _
    for _ in $(seq 1 50); do
        [ "$(readlink "/proc/$CL_LAST_PID/exe" 2>/dev/null)" = "$(readlink -f "$(command -v sleep)")" ] && return 0
        sleep 0.05
    done
    return 1
}

# cl_up: the switch, the machines, their private directories and addresses.
cl_up() {
    local m i=0 d
    install -d -m 755 "$CL_BASE" "$CL_BASE/bin"
    for d in /srv/isw-cluster /bin11; do
        CL_BEFORE[$d]=$(ls -A "$d" 2>/dev/null)
    done
    for d in "${CL_PRIVATE_DIRS[@]}"; do
        if [ ! -e "$d" ]; then
            install -d -m 755 "$d" && CL_MADE_DIRS+=("$d")
        fi
    done
    cl_holder isw-cl-switch --net || return 1
    CL_SWITCH_PID=$CL_LAST_PID
    CL_NS[switch]=$(readlink "/proc/$CL_SWITCH_PID/ns/net")
    nsenter -t "$CL_SWITCH_PID" -n -- sh -ec 'ip link add isw-br type bridge; ip link set isw-br up' || return 1
    for m in "${CL_MACHINES[@]}"; do
        i=$((i + 1))
        install -d -m 755 "$CL_BASE/$m"
        for d in "${CL_PRIVATE_DIRS[@]}"; do
            [ "$d" = /etc ] && continue
            install -d -m 755 "$CL_BASE/$m/${d##*/}"
        done
        chmod 700 "$CL_BASE/$m/root"
        cp -a /etc "$CL_BASE/$m/etc" || return 1
        rm -f "$CL_BASE/$m"/etc/ssh/ssh_host_*
        echo "$m" >"$CL_BASE/$m/etc/hostname"
        cl_holder "isw-cl-$m" --net --uts --mount --propagation private || return 1
        CL_PID[$m]=$CL_LAST_PID
        CL_NS[$m]=$(cl_ns_ids "$CL_LAST_PID")
        # shellcheck disable=SC2016
        nsenter -t "${CL_PID[$m]}" -m -u -- sh -ec '
            base=$1; shift
            hostname "${base##*/}"
            for d in "$@"; do mount --bind "$base/${d##*/}" "$d"; done
        ' sh "$CL_BASE/$m" "${CL_PRIVATE_DIRS[@]}" || return 1
        nsenter -t "$CL_SWITCH_PID" -n -- sh -ec '
            ip link add "isw-$1" type veth peer name eth0 netns "$2"
            ip link set "isw-$1" master isw-br up
        ' sh "$m" "${CL_PID[$m]}" || return 1
        nsenter -t "${CL_PID[$m]}" -n -- sh -ec '
            echo 1 >/proc/sys/net/ipv6/conf/all/disable_ipv6
            ip link set lo up
            ip addr add "$1/24" dev eth0
            ip link set eth0 up
        ' sh "${CL_ADDR[$m]}" || return 1
    done
}

# Processes in any of our network namespaces (the holders included).
cl_processes() {
    local nets=() m p net
    for m in switch "${CL_MACHINES[@]}"; do
        [ -n "${CL_NS[$m]:-}" ] && nets+=("${CL_NS[$m]%% *}")
    done
    [ ${#nets[@]} -gt 0 ] || return 0
    for p in /proc/[0-9]*; do
        net=$(readlink "$p/ns/net" 2>/dev/null) || continue
        for n in "${nets[@]}"; do
            [ "$net" = "$n" ] && { echo "${p#/proc/}"; break; }
        done
    done
}

# cl_reap_stale: a killed run's machines, recognised by their holders (our
# own executable names under CL_BASE), are stopped like cl_down would.
cl_reap_stale() {
    local h m=0
    for h in $(pgrep -f "^$CL_BASE/bin/isw-cl-"); do
        m=$((m + 1))
        CL_NS[stale$m]=$(readlink "/proc/$h/ns/net")
    done
    [ "$m" -gt 0 ] || return 0
    local saved=("${CL_MACHINES[@]}")
    CL_MACHINES=()
    for h in $(seq 1 "$m"); do CL_MACHINES+=("stale$h"); done
    cl_down
    CL_MACHINES=("${saved[@]}")
    CL_NS=()
}

# cl_down: stops every process of the cluster (TERM, then KILL), waits for the
# namespaces to go, unmounts nothing on the host (nothing was mounted there)
# and removes the state. Idempotent.
cl_down() {
    local pids _
    for sig in TERM TERM KILL; do
        pids=$(cl_processes)
        [ -z "$pids" ] && break
        # shellcheck disable=SC2086
        kill -s "$sig" $pids 2>/dev/null
        for _ in $(seq 1 40); do
            [ -z "$(cl_processes)" ] && break
            sleep 0.1
        done
    done
    # Our own children (holders, daemons started with &) are reaped here.
    wait 2>/dev/null
    local d
    for d in "${CL_MADE_DIRS[@]}"; do
        rmdir "$d" 2>/dev/null
    done
    CL_MADE_DIRS=()
    rm -rf "$CL_BASE"
}

# cl_verify_down: nothing of the cluster left; prints what is, fails if any.
cl_verify_down() {
    local left="" _ m d
    for _ in $(seq 1 50); do
        left=$(cl_processes)
        [ -z "$left" ] && break
        sleep 0.1
    done
    [ -n "$left" ] && echo "processes still in the cluster's namespaces: $left"
    # Namespaces: no process of any kind still holds one of ours.
    local ids=() p
    for m in switch "${CL_MACHINES[@]}"; do
        # shellcheck disable=SC2206
        [ -n "${CL_NS[$m]:-}" ] && ids+=(${CL_NS[$m]})
    done
    for p in /proc/[0-9]*/ns/{net,mnt,uts}; do
        local id
        id=$(readlink "$p" 2>/dev/null) || continue
        for n in "${ids[@]}"; do
            [ "$id" = "$n" ] && { echo "namespace $n still held by ${p%/ns/*}"; left=1; }
        done
    done
    if ip -o link show | grep -q 'isw-'; then
        echo "a bridge or veth of the cluster is on the host: $(ip -o link show | grep 'isw-' | head -3)"
        left=1
    fi
    local mounts
    mounts=$(findmnt -rn -o TARGET | grep -E "^($CL_BASE|/srv/isw-cluster|/bin11|/var/lib/sysrootctl|/var/spool/slurmd)(/|$)")
    if [ -n "$mounts" ]; then
        echo "mounts of the cluster on the host: $mounts"
        left=1
    fi
    if [ -e "$CL_BASE" ]; then
        echo "$CL_BASE still exists"
        left=1
    fi
    for d in /srv/isw-cluster /bin11; do
        [ -d "$d" ] && [ "$(ls -A "$d" 2>/dev/null)" != "${CL_BEFORE[$d]-}" ] &&
            { echo "$d on the host holds other entries than before the cluster"; left=1; }
    done
    [ -z "$left" ]
}
