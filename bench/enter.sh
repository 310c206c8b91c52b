#!/usr/bin/env bash
# Cost of entering the i386 tree and running /bin/true, against peers, as
# ratios of medians, at 0, 200 and 1000 extra mounts on the host, with
# LANG=C.UTF-8 and with LANG unset for every command (LC_* and LANGUAGE always
# unset), all in one run whose samples are interleaved:
#   chroot(8)              no mounts, as root: the floor
#   imageswitch fast path  as a user the tree knows, host_files = []: setns
#                          into the pinned namespace, nothing per entry
#   imageswitch fast path + identity and host files
#                          as a user the tree does not know, default host
#                          files: the caller's own pin (host files, their
#                          passwd and group in it), setns only (issue 8: the
#                          whole per-entry view)
#   imageswitch fallback   the per-entry path, from a nested namespace whose
#                          mounts are private
#   imageswitch + caller bind
#                          a sysroot without a /home bind: the pin, a private
#                          copy of it and the caller's home bound
#   bwrap                  same binds, unprivileged user namespace, as the user
#   schroot                type=directory, Debian's default profile, as the user
#
#   sudo bench/enter.sh [RUNS]        (default 300 runs per command and LANG)
# Needs: hyperfine schroot bubblewrap debootstrap jq (installed if missing).
#
# The bench runs in a mount namespace of its own whose mounts are shared (in
# peer groups of its own), as on a systemd host: the fast path needs shared
# mounts. Its extra mounts vanish with it. Before measuring, and again at
# each mount count, it checks that each imageswitch row takes the path it is
# named after, and stops otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH_DIR=$PWD/bench
RUNS=${1:-300}
die() { echo "bench/enter.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "bench/enter.sh: run as root" >&2; exit 2; }
if [ -z "${IMGSW_BENCH_NS:-}" ]; then
    exec unshare --mount --propagation private -- env IMGSW_BENCH_NS=1 bash "$0" "$@"
fi
mount --make-rshared /

need=()
for pc in hyperfine:hyperfine schroot:schroot bubblewrap:bwrap debootstrap:debootstrap jq:jq; do
    command -v "${pc#*:}" >/dev/null || need+=("${pc%%:*}")
done
[ ${#need[@]} -eq 0 ] || { apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; }

# Only LANG differs between the two halves of the run.
unset LANGUAGE LC_ALL $(compgen -e | grep '^LC_' || true)

bash tests/support/trees.sh bullseye-i386
USER_NAME=imgsw-bench
# Not in imageswitch's tree: its passwd entry is added per entry.
NEW_USER=imgsw-bench-new
CONF=/etc/imageswitch-bench/sysroots.toml
PREFIX=/var/lib/imageswitch-bench
PINS=/run/imageswitch/pins
# schroot's setup scripts write into the tree (passwd, group, debian_chroot):
# the bench gets its own copy rather than the test suite's cached one.
TREE=$PREFIX/bullseye-i386
mkdir -p $PREFIX && chmod 755 $PREFIX
[ -e $TREE/etc/debian_version ] || cp -a /var/cache/imageswitch-test/bullseye-i386 $TREE
# imageswitch's own copy, which schroot never writes: it knows USER_NAME (as
# users.sync would make it) and not NEW_USER.
ITREE=$PREFIX/bullseye-i386-imageswitch
[ -e $ITREE/etc/debian_version ] || cp -a /var/cache/imageswitch-test/bullseye-i386 $ITREE
# The mount points sysrootctl apply makes for the default host files (a
# debootstrapped tree has no /etc/hosts), so each is bound over the tree's,
# and for USER_NAME's home (users.sync), where bench-home binds it.
for f in hosts localtime resolv.conf timezone; do
    [ -e $ITREE/etc/$f ] || [ -L $ITREE/etc/$f ] || install -m 644 /dev/null $ITREE/etc/$f
done
install -d -m 755 -o root -g root $ITREE/home/$USER_NAME
OUT=$(mktemp -d) && chmod 1777 "$OUT"
MNT=$PREFIX/many

getent passwd $USER_NAME >/dev/null || useradd -m -s /bin/bash $USER_NAME
getent passwd $NEW_USER >/dev/null || useradd -m -s /bin/bash $NEW_USER
for u in $USER_NAME $NEW_USER; do [ -d /home/$u ] || install -d -o $u -g $u /home/$u; done
grep -q "^$USER_NAME:" $ITREE/etc/passwd || getent passwd $USER_NAME | sed 's/:[^:]*:/:x:/' >>$ITREE/etc/passwd
grep -q "^$USER_NAME:" $ITREE/etc/group || getent group $USER_NAME | sed 's/:[^:]*:/:x:/' >>$ITREE/etc/group

# A release build whose configuration path is the bench's own.
IMAGESWITCH_CONFIG_PATH=$CONF cargo build --release -q --bin imageswitch --target-dir target/bench
mkdir -p $PREFIX/bin /etc/imageswitch-bench && chmod 755 $PREFIX $PREFIX/bin
install -m 4755 -o root target/bench/release/imageswitch $PREFIX/bin/imageswitch
cat >$CONF <<EOF
[defaults]
binds = ["/tmp"]
log_socket = "/dev/log"
[sysroot.bench]
path = "$ITREE"
personality = "linux32"
binds = ["/home"]
host_files = []
[sysroot.bench-login]
path = "$ITREE"
personality = "linux32"
binds = ["/home"]
# No /home bind: the caller's home is bound per entry.
[sysroot.bench-home]
path = "$ITREE"
personality = "linux32"
host_files = []
EOF
chmod 644 $CONF

cat >/etc/schroot/chroot.d/imgsw-bench <<EOF
[imgsw-bench]
type=directory
directory=$TREE
users=$USER_NAME
personality=linux32
profile=default
EOF

cleanup() {
    if [ -d $MNT ]; then
        findmnt -rn -o TARGET | grep "^$MNT/" | sort -r | xargs -r -n 50 umount 2>/dev/null || true
        rm -rf $MNT
    fi
    rm -f /etc/schroot/chroot.d/imgsw-bench
    rm -rf "$OUT"
    # The bench's set-uid build is not left installed.
    rm -f "$PREFIX/bin/imageswitch"
}
trap cleanup EXIT

IMGSW=$PREFIX/bin/imageswitch
BWRAP=(setarch linux32 bwrap --bind $TREE / --proc /proc --dev /dev --bind /home /home --bind /tmp /tmp --chdir /tmp)
as_user() { setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups -- "$@"; }
as_new_user() { setpriv --reuid=$NEW_USER --regid=$NEW_USER --init-groups -- "$@"; }
# The fallback row: a nested namespace whose mounts are private.
private_ns() { unshare --mount --propagation private -- "$@"; }

# Which path an entry took: probe AS SYSROOT enters with a command that
# prints who it is, its mount namespace, and whether /etc/passwd and the
# caller's home are mounts of their own, then waits while root looks, from
# outside, at where its namespace's root is: the tree for a pin or a private
# copy of one (pivoted into the tree), the host's for the per-entry path (a
# copy of the caller's namespace, chrooted).
# shellcheck disable=SC2016
PROBE='whoami; readlink /proc/self/ns/mnt
grep -c " /etc/passwd " /proc/self/mountinfo || :
grep -c " $HOME " /proc/self/mountinfo || :
echo $$ >"$0.pid"; read -r _ <"$0"'
probe() { # as_user|as_new_user sysroot
    local fifo=$OUT/probe pid="" root i
    rm -f $fifo $fifo.pid && mkfifo -m 666 $fifo
    (cd /tmp && "$1" $IMGSW "$2" sh -c "$PROBE" $fifo) &
    for i in $(seq 100); do
        pid=$(cat $fifo.pid 2>/dev/null || :)
        [ -n "$pid" ] && break
        sleep 0.05
    done
    [ -n "$pid" ] || { echo >$fifo; wait $!; die "$2: the probe did not start"; }
    root=$(nsenter -t "$pid" -m stat -c %d:%i /)
    echo >$fifo
    wait $!
    if [ "$root" = "$(stat -c %d:%i $ITREE)" ]; then echo tree; else echo host; fi
}
# hidden SYSROOT -> the first parts of SYSROOT's pins' names, KEY.SYSROOT:
# hashes keyed with the pin directory's key (imageswitch(8), PINNED
# NAMESPACES; bench/pin-prefix.py)
hidden() {
    python3 "$BENCH_DIR/pin-prefix.py" "$PINS/key" "$1"
}
# pin SYSROOT -> the inode of this namespace's pin for SYSROOT (its nsfs file), or nothing
pin() {
    local ns
    ns=$(printf %x "$(stat -L -c %i /proc/self/ns/mnt)")
    findmnt -rn -o TARGET,FSTYPE | awk -v p="$PINS/$(hidden "$1").$ns." '$2 == "nsfs" && index($1, p) == 1 { print $1 }' |
        while read -r f; do stat -c %i "$f"; done
}
# marker SYSROOT -> "marker" for each per-entry marker of this namespace's for
# SYSROOT (/dev/null bound on it)
marker() {
    local ns m
    ns=$(printf %x "$(stat -L -c %i /proc/self/ns/mnt)")
    for m in "$PINS/$(hidden "$1").$ns."*perentry; do
        [ "$(stat -c %t:%T "$m" 2>/dev/null)" = 1:3 ] && echo marker
    done
}
# The fallback row's entry, probe and marker in a nested namespace whose
# mounts are private.
fallback_probe() {
    probe as_user bench
    pin bench
    marker bench
}
export OUT IMGSW ITREE PINS PROBE USER_NAME BENCH_DIR
export -f probe pin marker hidden fallback_probe as_user die
# A first entry does not always leave a pin (the builders' lock is only
# tried, and publishing one can fail: that entry takes the per-entry path):
# enter until the pin is there.
first_entries() { # as_user|as_new_user sysroot
    local i
    for i in $(seq 20); do
        (cd /tmp && "$1" $IMGSW "$2" /bin/true)
        [ -z "$(pin "$2")" ] || return 0
        sleep 0.2
    done
    die "$2: no pin in $PINS after 20 entries"
}
expect() { # what got want
    [ "$2" = "$3" ] || die "$1: got '$(echo "$2" | tr '\n' ' ')', wanted '$(echo "$3" | tr '\n' ' ')'"
}
check_paths() { # extra-mounts
    local at="at +$1 mounts" got ino
    expect "bench lands in the i386 tree" "$(cd /tmp && as_user $IMGSW bench uname -m)" i686
    expect "chroot(8)" "$(chroot $TREE /bin/true && echo ok)" ok
    expect "schroot" "$(cd /tmp && as_user schroot -q -c imgsw-bench -- uname -m)" i686
    expect "bwrap" "$(cd /tmp && as_user "${BWRAP[@]}" uname -m)" i686

    first_entries as_user bench
    first_entries as_new_user bench-login
    first_entries as_user bench-home
    got=$(probe as_user bench)
    ino=$(pin bench)
    [ -n "$ino" ] || die "fast path $at: no pin for bench in $PINS"
    expect "fast path $at (the pin itself, nothing per entry)" "$got" "$USER_NAME
mnt:[$ino]
0
0
tree"
    got=$(probe as_new_user bench-login)
    ino=$(pin bench-login)
    [ -n "$ino" ] || die "fast path + identity $at: no pin for bench-login in $PINS"
    expect "fast path + identity $at (the caller's own pin, their passwd in it)" "$got" "$NEW_USER
mnt:[$ino]
1
0
tree"
    got=$(probe as_user bench-home)
    ino=$(pin bench-home)
    [ -n "$ino" ] || die "caller bind $at: no pin for bench-home in $PINS"
    expect "caller bind $at (a private copy of the pin, the home bound)" "$(sed 2d <<<"$got")" "$USER_NAME
0
1
tree"
    [ "$(sed -n 2p <<<"$got")" != "mnt:[$ino]" ] || die "caller bind $at: entered the pin itself"
    got=$(private_ns bash -c fallback_probe)
    expect "fallback $at (the per-entry path, a .perentry marker, no pin)" "$(sed 2d <<<"$got")" "$USER_NAME
0
0
host
marker"
}

# hyperfine -N runs each command without an intermediate shell. Each
# measurement is split into ROUNDS slices taken in turn with the others and
# with the other LANG, so drifting load on the machine touches every command
# alike; the figure is the median of all samples.
ROUNDS=10
sample() { # json-file runs C.UTF-8|unset user|newuser|user-private|root command...
    local json=$1 runs=$2 lang=$3 who=$4; shift 4
    local lang_env=(env LANG="$lang") warm=5
    [ "$lang" = unset ] && lang_env=(env -u LANG)
    [ "$runs" -lt 10 ] && warm=2
    local hf=(hyperfine -N -w $warm -r "$runs" --export-json "$json" "$*")
    case $who in
    user) (cd /home/$USER_NAME && "${lang_env[@]}" setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups -- "${hf[@]}") ;;
    newuser) (cd /home/$NEW_USER && "${lang_env[@]}" setpriv --reuid=$NEW_USER --regid=$NEW_USER --init-groups -- "${hf[@]}") ;;
    user-private) (cd /home/$USER_NAME && private_ns "${lang_env[@]}" setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups -- "${hf[@]}") ;;
    root) (cd /home/$USER_NAME && "${lang_env[@]}" "${hf[@]}") ;;
    esac >"$OUT/log" 2>&1 || die "hyperfine failed on '$*' (LANG $lang): $(tail -3 "$OUT/log")"
}
median_of() { # name...  -> median seconds over all rounds of each name, one per line
    for name in "$@"; do
        jq -s '[.[].results[0].times[]] | sort | .[length/2|floor]' "$OUT/$name".*.json
    done
}
LANGS=(C.UTF-8 unset)
# measure_set RUNS TAG name|who|command ...   (files: name-TAG-LANG.ROUND.json)
measure_set() {
    local runs=$1 tag=$2; shift 2
    local per=$(( runs / ROUNDS > 2 ? runs / ROUNDS : 2 ))
    for r in $(seq $ROUNDS); do
        for spec in "$@"; do
            IFS='|' read -r name who cmd <<<"$spec"
            for lang in "${LANGS[@]}"; do
                # shellcheck disable=SC2086
                sample "$OUT/$name-$tag-$lang.$r.json" "$per" "$lang" "$who" $cmd
            done
        done
    done
}

schroot_runs=$(( RUNS / 10 > 20 ? RUNS / 10 : 20 ))
COUNTS=(0 200 1000)
ROWS=(chroot fast view fallback callerbind bwrap schroot)
mkdir -p $MNT
have=0
for n in "${COUNTS[@]}"; do
    while [ $have -lt $n ]; do
        mkdir -p $MNT/$have
        mount -t tmpfs -o size=64k tmpfs $MNT/$have
        have=$((have + 1))
    done
    check_paths "$n"
    measure_set "$RUNS" "$n" "chroot|root|chroot $TREE /bin/true" \
        "fast|user|$IMGSW bench /bin/true" \
        "view|newuser|$IMGSW bench-login /bin/true" \
        "fallback|user-private|$IMGSW bench /bin/true" \
        "callerbind|user|$IMGSW bench-home /bin/true" \
        "bwrap|user|${BWRAP[*]} /bin/true"
    measure_set "$schroot_runs" "$n" "schroot|user|schroot -q -c imgsw-bench -- /bin/true"
    # Nothing moved while measuring (a pin that failed would fall back).
    check_paths "$n"
done

declare -A s
for n in "${COUNTS[@]}"; do
    for lang in "${LANGS[@]}"; do
        for row in "${ROWS[@]}"; do s[$row-$n-$lang]=$(median_of "$row-$n-$lang"); done
    done
done
cell() { awk -v a="$1" -v c="$2" 'BEGIN { printf "%.3f (%.2f×)", a * 1000, a / c }'; }
delta() { awk -v a="$1" -v b="$2" -v c="$3" 'BEGIN { printf "%+.3f (%+.2f×)", (a - b) * 1000, (a - b) / c }'; }
declare -A label=(
    [chroot]="chroot(8), no mounts, root"
    [fast]="**imageswitch fast path** (pinned, user the tree knows, \`host_files = []\`)"
    [view]="imageswitch fast path + identity and host files (user the tree does not know)"
    [fallback]="imageswitch fallback (per-entry path, caller's mounts private)"
    [callerbind]="imageswitch + caller bind (home outside the binds)"
    [bwrap]="bwrap, same binds, user"
    [schroot]="schroot, type=directory, user"
)

echo "## Entering the bullseye i386 tree and running /bin/true: median ms (× chroot(8))"
echo
echo "$RUNS runs per command (schroot $schroot_runs), in $ROUNDS interleaved slices;"
echo "$(date -u +%Y-%m-%d), $(nproc) CPUs, Linux $(uname -r)."
for lang in "${LANGS[@]}"; do
    echo
    echo "### LANG=${lang/unset/ (unset)}"
    echo
    printf '| how |'; printf ' +%s host mounts |' "${COUNTS[@]}"; echo
    printf '|---|'; printf -- '---|%.0s' "${COUNTS[@]}"; echo
    for row in "${ROWS[@]}"; do
        printf '| %s |' "${label[$row]}"
        for n in "${COUNTS[@]}"; do printf ' %s |' "$(cell "${s[$row-$n-$lang]}" "${s[chroot-$n-$lang]}")"; done
        echo
        if [ "$row" = view ]; then
            printf '| the per-entry view'"'"'s cost (difference of the two rows above) |'
            for n in "${COUNTS[@]}"; do
                printf ' %s |' "$(delta "${s[view-$n-$lang]}" "${s[fast-$n-$lang]}" "${s[chroot-$n-$lang]}")"
            done
            echo
        fi
    done
done
