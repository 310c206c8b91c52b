#!/usr/bin/env bash
# The kernel's own cost of a private copy of a pinned namespace (the
# "+ caller bind" row of bench/enter.sh): `sudo bench/private-copy.sh [N]`
# (default 2000) after bench/enter.sh has set up its tree and configuration.
#
# In a mount namespace of its own with shared mounts (as bench/enter.sh),
# enters the bench sysroot once as a user the tree knows, so that its pin
# exists, then runs bench/private-copy.c against that pin: fork + setns +
# exit, the same with unshare(CLONE_NEWNS) (copy, and teardown at exit), and
# with one bind mount in the copy. No set-uid program is installed; the
# compiled measurement goes with the scratch directory.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-2000}
[ "$(id -u)" = 0 ] || { echo "bench/private-copy.sh: run as root" >&2; exit 2; }
CONF=/etc/imageswitch-bench/sysroots.toml
BIN=/var/lib/imageswitch-bench/bin/imageswitch
[ -e $CONF ] && [ -x $BIN ] || { echo "bench/private-copy.sh: run bench/enter.sh first" >&2; exit 2; }
if [ -z "${IMGSW_COPY_NS:-}" ]; then
    exec unshare --mount --propagation private -- env IMGSW_COPY_NS=1 bash "$0" "$@"
fi
mount --make-rshared /
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cc -O2 -Wall -o "$scratch/private-copy" bench/private-copy.c
cd /tmp
setpriv --reuid=imgsw-bench --regid=imgsw-bench --init-groups -- $BIN bench /bin/true
# The pin of this namespace: the one nsfs file among the pins.
pin=""
for f in /run/imageswitch/pins/*; do
    [ "$(stat -f -c %T "$f" 2>/dev/null)" = nsfs ] && pin=$f
done
[ -n "$pin" ] || { echo "bench/private-copy.sh: no pin was built" >&2; exit 1; }
echo "== median of $N rounds, interleaved (pin $(basename "$pin"))"
"$scratch/private-copy" "$pin" "$N"
