#!/usr/bin/env bash
# Bootstrap (once) and cache the real trees the end-to-end tests enter.
# Trees live outside the checkout so CI and repeated runs reuse them.
#   trees.sh [bullseye-i386] [bullseye-i386-python] [trixie-amd64] [busybox]
#   (default: busybox bullseye-i386 trixie-amd64)
# bullseye-i386-python also has python3: what Ansible's chroot connection
# needs inside a tree (sysrootctl's playbook step, tests/cluster.sh).
# The Debian mirror is read from the host's own apt sources; no mirror
# name is written into the project.
set -euo pipefail

CACHE=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}

host_mirror() {
    local uri=""
    if [ -r /etc/apt/sources.list.d/debian.sources ]; then
        uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    if [ -z "$uri" ]; then
        uri=$(grep -hE '^deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
            | grep -v security | awk '{print $2; exit}')
    fi
    [ -n "$uri" ] || { echo "trees.sh: no Debian mirror in the host's apt sources" >&2; exit 1; }
    echo "$uri"
}

bootstrap() { # name suite arch [packages...]
    local name=$1 suite=$2 arch=$3 dest="$CACHE/$1" include=bsdutils
    shift 3
    for p in "$@"; do include+=",$p"; done
    [ -e "$dest/.complete" ] && return 0
    rm -rf "$dest.tmp"
    echo "trees.sh: debootstrap $suite $arch -> $dest" >&2
    debootstrap --variant=minbase --arch="$arch" --include="$include" "$suite" "$dest.tmp" "$(host_mirror)" \
        >"$CACHE/$name.log" 2>&1 || { tail -20 "$CACHE/$name.log" >&2; exit 1; }
    touch "$dest.tmp/.complete"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
}

busybox_tree() {
    local dest="$CACHE/busybox"
    [ -e "$dest/.complete" ] && return 0
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"/{bin,etc,proc,sys,dev,tmp,home,root}
    chmod 1777 "$dest.tmp/tmp"
    cp /bin/busybox "$dest.tmp/bin/busybox"
    for applet in sh ash true false id pwd ls cat echo env uname logger sleep touch mkdir rm stat readlink grep; do
        ln -s busybox "$dest.tmp/bin/$applet"
    done
    echo "busybox" >"$dest.tmp/etc/debian_version"
    touch "$dest.tmp/.complete"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
}

mkdir -p "$CACHE"
chmod 755 "$CACHE"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(busybox bullseye-i386 trixie-amd64)
for t in "${targets[@]}"; do
    case $t in
        busybox) busybox_tree ;;
        bullseye-i386) bootstrap bullseye-i386 bullseye i386 ;;
        bullseye-i386-python) bootstrap bullseye-i386-python bullseye i386 python3 ;;
        trixie-amd64) bootstrap trixie-amd64 trixie amd64 ;;
        bookworm-amd64) bootstrap bookworm-amd64 bookworm amd64 ;;
        *) echo "trees.sh: unknown tree $t" >&2; exit 2 ;;
    esac
done
