#!/usr/bin/env bash
# Cost of entering the i386 tree and running /bin/true, against peers in the
# same run, as ratios of medians:
#   imageswitch (all default binds, as an ordinary user): once as a user the
#               tree knows with host_files = [] (no per-entry layer), once as a
#               user the tree does not know with the default host files (the
#               whole per-entry view: passwd/group entries and host files)
#   chroot(8)   (no mounts, as root: the floor)
#   schroot     (type=directory, Debian's default profile, as the user)
#   bwrap       (same binds, unprivileged user namespace, as the user)
# then how imageswitch's cost grows with the number of mounts on the host.
#
#   sudo bench/enter.sh [RUNS]        (default 300 runs per command)
# Needs: hyperfine schroot bubblewrap debootstrap (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-300}
[ "$(id -u)" = 0 ] || { echo "bench/enter.sh: run as root" >&2; exit 2; }

need=()
for pc in hyperfine:hyperfine schroot:schroot bubblewrap:bwrap debootstrap:debootstrap jq:jq; do
    command -v "${pc#*:}" >/dev/null || need+=("${pc%%:*}")
done
[ ${#need[@]} -eq 0 ] || { apt-get update -q; DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; }

bash tests/support/trees.sh bullseye-i386
USER_NAME=imgsw-bench
# Not in imageswitch's tree: its passwd entry is added per entry.
NEW_USER=imgsw-bench-new
CONF=/etc/imageswitch-bench/sysroots.toml
PREFIX=/var/lib/imageswitch-bench
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
# debootstrapped tree has no /etc/hosts), so each is bound over the tree's.
for f in hosts localtime resolv.conf timezone; do
    [ -e $ITREE/etc/$f ] || [ -L $ITREE/etc/$f ] || install -m 644 /dev/null $ITREE/etc/$f
done
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
binds = ["/home", "/tmp"]
log_socket = "/dev/log"
[sysroot.bench]
path = "$ITREE"
personality = "linux32"
host_files = []
[sysroot.bench-login]
path = "$ITREE"
personality = "linux32"
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
}
trap cleanup EXIT

as_user() { setpriv --reuid=$USER_NAME --regid=$USER_NAME --init-groups -- "$@"; }
as_new_user() { setpriv --reuid=$NEW_USER --regid=$NEW_USER --init-groups -- "$@"; }

# hyperfine -N runs each command without an intermediate shell. Each
# measurement is split into ROUNDS slices taken in turn with the others, so
# drifting load on the machine touches every command alike; the figure is the
# median of all samples.
ROUNDS=5
sample() { # json-file runs user|newuser|root command...
    local json=$1 runs=$2 who=$3; shift 3
    if [ "$who" = user ]; then
        (cd /home/$USER_NAME && as_user hyperfine -N -w 5 -r "$runs" --export-json "$json" "$*" >/dev/null 2>&1)
    elif [ "$who" = newuser ]; then
        (cd /home/$NEW_USER && as_new_user hyperfine -N -w 5 -r "$runs" --export-json "$json" "$*" >/dev/null 2>&1)
    else
        (cd /home/$USER_NAME && hyperfine -N -w 5 -r "$runs" --export-json "$json" "$*" >/dev/null 2>&1)
    fi
}
median_of() { # name...  -> median seconds over all rounds of each name, one per line
    for name in "$@"; do
        jq -s '[.[].results[0].times[]] | sort | .[length/2|floor]' "$OUT/$name".*.json
    done
}
# measure_set RUNS name:who:command ...  (commands separated as name|who|cmd)
measure_set() {
    local runs=$1; shift
    local per=$(( runs / ROUNDS > 2 ? runs / ROUNDS : 2 ))
    for r in $(seq $ROUNDS); do
        for spec in "$@"; do
            IFS='|' read -r name who cmd <<<"$spec"
            # shellcheck disable=SC2086
            sample "$OUT/$name.$r.json" "$per" "$who" $cmd
        done
    done
}

# Sanity: each path really runs inside the i386 tree.
test "$(cd /tmp && as_user $PREFIX/bin/imageswitch bench uname -m)" = i686
# ... and the per-entry view is really made for the new user (and only for them).
# (its files bound one by one over the tree's, /etc itself not covered).
VIEW='whoami; stat -f -c %T /etc; grep -c " /etc/passwd " /proc/self/mountinfo || :'
test "$(cd /tmp && as_new_user $PREFIX/bin/imageswitch bench-login sh -c "$VIEW")" = "$NEW_USER
$(stat -f -c %T $ITREE/etc)
1"
test "$(cd /tmp && as_user $PREFIX/bin/imageswitch bench sh -c "$VIEW")" = "$USER_NAME
$(stat -f -c %T $ITREE/etc)
0"
test "$(chroot $TREE /bin/true && echo ok)" = ok
test "$(cd /tmp && as_user schroot -q -c imgsw-bench -- uname -m)" = i686
BWRAP=(setarch linux32 bwrap --bind $TREE / --proc /proc --dev /dev --bind /home /home --bind /tmp /tmp --chdir /tmp)
test "$(cd /tmp && as_user "${BWRAP[@]}" uname -m)" = i686

schroot_runs=$(( RUNS / 10 > 20 ? RUNS / 10 : 20 ))
measure_set "$RUNS" "chroot|root|chroot $TREE /bin/true" \
    "imageswitch|user|$PREFIX/bin/imageswitch bench /bin/true" \
    "login|newuser|$PREFIX/bin/imageswitch bench-login /bin/true" \
    "bwrap|user|${BWRAP[*]} /bin/true"
measure_set "$schroot_runs" "schroot|user|schroot -q -c imgsw-bench -- /bin/true"
read -r chroot_s imgsw_s login_s bwrap_s schroot_s <<<"$(median_of chroot imageswitch login bwrap schroot | tr "\n" " ")"

ms() { awk -v s="$1" 'BEGIN { printf "%.3f", s * 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo "## Entering the bullseye i386 tree and running /bin/true (median of $RUNS runs; schroot $schroot_runs)"
echo
echo "| how | median ms | × chroot(8) | imageswitch faster by |"
echo "|---|---|---|---|"
echo "| chroot(8), no mounts, root | $(ms "$chroot_s") | 1.00 | |"
echo "| imageswitch, default binds, user | $(ms "$imgsw_s") | $(ratio "$imgsw_s" "$chroot_s") | |"
echo "| imageswitch, + own passwd/group entries and host files | $(ms "$login_s") | $(ratio "$login_s" "$chroot_s") | |"
echo "| bwrap, same binds, user | $(ms "$bwrap_s") | $(ratio "$bwrap_s" "$chroot_s") | $(ratio "$bwrap_s" "$imgsw_s")× |"
echo "| schroot, type=directory, user | $(ms "$schroot_s") | $(ratio "$schroot_s" "$chroot_s") | $(ratio "$schroot_s" "$imgsw_s")× |"
echo

echo "## imageswitch cost against the number of mounts on the host"
echo
echo "| extra host mounts | imageswitch ms | chroot(8) ms | × chroot(8) | bwrap ms |"
echo "|---|---|---|---|---|"
mkdir -p $MNT
have=0
for n in 0 20 200 1000; do
    while [ $have -lt $n ]; do
        mkdir -p $MNT/$have
        mount -t tmpfs -o size=64k tmpfs $MNT/$have
        have=$((have + 1))
    done
    measure_set "$RUNS" "imgsw-$n|user|$PREFIX/bin/imageswitch bench /bin/true" "chroot-$n|root|chroot $TREE /bin/true" \
        "bwrap-$n|user|${BWRAP[*]} /bin/true"
    read -r i c b <<<"$(median_of "imgsw-$n" "chroot-$n" "bwrap-$n" | tr "\n" " ")"
    echo "| $n | $(ms "$i") | $(ms "$c") | $(ratio "$i" "$c") | $(ms "$b") |"
done
