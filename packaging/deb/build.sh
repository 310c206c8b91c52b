#!/usr/bin/env bash
# Builds the Debian packages from this checkout with dpkg-deb from a staged
# tree, so every file's mode is the one written here (debhelper's dh_fixperms
# would strip the setuid bit):
#   imageswitch        /usr/sbin/imageswitch (4755 root:root), sysrootctl, man pages,
#                      sysrootctl completions, the example config in /usr/share/doc,
#                      the Slurm TaskProlog check imageswitch-slurm-task-prolog
#   imageswitch-slurm  the SPANK plugin, its exec helper and its plugstack.conf.d line
#
#   packaging/deb/build.sh [OUTDIR]      (default OUTDIR: target/deb)
#
# Needs cargo, dpkg-dev, and libslurm-dev for the plugin. Build output goes to
# $CARGO_TARGET_DIR (default: target/ in the checkout). Prints the .deb paths.
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
OUT=$(mkdir -p "${1:-$REPO/target/deb}" && cd "${1:-$REPO/target/deb}" && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
CONFIG_PATH=/etc/sysroots.toml

die() { echo "build.sh: $*" >&2; exit 1; }

for tool in cargo dpkg-deb dpkg-shlibdeps dpkg-architecture; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install cargo dpkg-dev)"
done
[ -r /usr/include/slurm/slurm_version.h ] || [ -n "${SLURM_INCLUDE_DIR:-}" ] ||
    die "Slurm headers not found (apt-get install libslurm-dev)"

VERSION=$(cargo pkgid --manifest-path "$REPO/Cargo.toml" -p imageswitch | sed 's/.*[#@]//')
ARCH=$(dpkg-architecture -qDEB_HOST_ARCH)
MULTIARCH=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
PLUGIN_DIR=/usr/lib/$MULTIARCH/slurm-wlm
SLURM_HEADER=${SLURM_INCLUDE_DIR:-/usr/include}/slurm/slurm_version.h
# The plugin loads only into the Slurm major.minor it was built against.
SLURM_NUM=$(awk '/^#define SLURM_VERSION_NUMBER/ {print $3}' "$SLURM_HEADER")
SLURM_MAJOR=$((SLURM_NUM >> 16))
SLURM_MINOR=$(((SLURM_NUM >> 8) & 0xff))
SLURM_SERIES=$(printf '%d.%02d' "$SLURM_MAJOR" "$SLURM_MINOR")
SLURM_NEXT=$(printf '%d.%02d' "$SLURM_MAJOR" $((SLURM_MINOR + 1)))
# The packager: $DEB_MAINTAINER, else the last commit's author.
MAINTAINER=${DEB_MAINTAINER:-$(git -C "$REPO" log -1 --format='%an <%ae>' 2>/dev/null || true)}
[ -n "$MAINTAINER" ] || die "set DEB_MAINTAINER (\"Name <address>\"): no git history to take it from"
# Reproducible dates: the last commit's, when there is one.
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
export SOURCE_DATE_EPOCH=$EPOCH

# --- build ---------------------------------------------------------------

# The setuid binary on its own, exactly as .ci/check-setuid-deps checks it.
IMAGESWITCH=$(bash "$REPO/packaging/build-setuid.sh" "$TARGET")
env -u IMAGESWITCH_CONFIG_PATH cargo build --release --locked --manifest-path "$REPO/Cargo.toml" \
    --target-dir "$TARGET" -p sysrootctl --bin sysrootctl
cargo build --release --locked --manifest-path "$REPO/packaging/slurm/Cargo.toml" \
    --target-dir "$TARGET/spank"
SYSROOTCTL=$TARGET/release/sysrootctl
PLUGIN=$TARGET/spank/release/libimageswitch_spank.so
HELPER=$TARGET/spank/release/imageswitch-spank-exec
for f in "$IMAGESWITCH" "$SYSROOTCTL" "$PLUGIN" "$HELPER"; do [ -f "$f" ] || die "build produced no $f"; done
grep -qaF "$CONFIG_PATH" "$IMAGESWITCH" || die "$IMAGESWITCH was not built for $CONFIG_PATH"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# --- shared pieces -----------------------------------------------------------

# shlibs_depends FILE...: the libraries' Depends, as dpkg-shlibdeps computes them.
shlibs_depends() {
    mkdir -p "$WORK/shlibs/debian"
    printf 'Source: imageswitch\n\nPackage: imageswitch\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
    (cd "$WORK/shlibs" && dpkg-shlibdeps -O "${@/#/-e}" 2>/dev/null) | sed -n 's/^shlibs:Depends=//p'
}

# doc_files STAGE PACKAGE: copyright and changelog where Debian expects them
# (changelog.gz: the version has no Debian revision, a native package).
doc_files() {
    local doc=$1/usr/share/doc/$2
    install -d "$doc"
    cat >"$doc/copyright" <<EOF
$2: run a user's command inside another installed Linux tree.

Copyright $(date -u -d "@$EPOCH" +%Y) the imageswitch contributors.
License: MIT OR Apache-2.0, at your option.
On Debian systems the full text of the Apache License 2.0 is in
/usr/share/common-licenses/Apache-2.0.
EOF
    {
        echo "$2 ($VERSION) unstable; urgency=medium"
        echo
        echo "  * Built from the imageswitch source tree by packaging/deb/build.sh."
        echo
        echo " -- $MAINTAINER  $(date -R -u -d "@$EPOCH")"
    } | gzip -9n >"$doc/changelog.gz"
}

# finish_package STAGE: md5sums, size, build, and check the result.
finish_package() {
    local stage=$1 name version deb
    (cd "$stage" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
    chmod 644 "$stage/DEBIAN/md5sums"
    name=$(sed -n 's/^Package: //p' "$stage/DEBIAN/control")
    version=$(sed -n 's/^Version: //p' "$stage/DEBIAN/control")
    deb=$OUT/${name}_${version}_$ARCH.deb
    dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
    echo "$deb"
}

# man_page SRC DEST: Markdown man page source to roff, with pandoc when it is
# installed, else with the small converter next to this script.
man_page() {
    if command -v pandoc >/dev/null; then
        pandoc --standalone --from markdown --to man "$1"
    else
        awk -v title="$(basename "$1" .md)" -v date="$(date -u -d "@$EPOCH" +%Y-%m-%d)" \
            -v version="imageswitch $VERSION" -f "$REPO/packaging/md2man.awk" "$1"
    fi | gzip -9n >"$2"
}

# --- imageswitch ---------------------------------------------------------------

S=$WORK/imageswitch
install -d "$S/DEBIAN" "$S/usr/sbin" "$S/usr/share/doc/imageswitch/examples" "$S/usr/libexec/imageswitch"
install -m 4755 "$IMAGESWITCH" "$S/usr/sbin/imageswitch"
install -m 755 "$SYSROOTCTL" "$S/usr/sbin/sysrootctl"
# Here, not in imageswitch-slurm: a node from which the plugin was removed
# must still refuse the --sysroot tasks sent to it (see doc/batch.md).
install -m 755 "$REPO/packaging/slurm/imageswitch-slurm-task-prolog" "$S/usr/libexec/imageswitch/imageswitch-slurm-task-prolog"
doc_files "$S" imageswitch
[ -f "$REPO/etc/sysroots.toml" ] || die "no etc/sysroots.toml to ship as the example config"
install -m 644 "$REPO/etc/sysroots.toml" "$S/usr/share/doc/imageswitch/examples/sysroots.toml"
# The setuid bit is the point of the package; say so to lintian.
install -D -m 644 /dev/stdin "$S/usr/share/lintian/overrides/imageswitch" <<EOF
# imageswitch is a setuid-root helper by design: see imageswitch(8).
imageswitch: elevated-privileges 4755 root/root [usr/sbin/imageswitch]
EOF
[ -f "$REPO/README.md" ] && install -m 644 "$REPO/README.md" "$S/usr/share/doc/imageswitch/README.md"
# Man pages: doc/NAME.SECTION.md becomes man/manSECTION/NAME.SECTION.gz; the
# Markdown is shipped too, for reading on the web or without man.
shopt -s nullglob
for src in "$REPO"/doc/*.[1-8].md; do
    page=$(basename "$src" .md)
    section=${page##*.}
    install -d "$S/usr/share/man/man$section"
    man_page "$src" "$S/usr/share/man/man$section/$page.gz"
    install -m 644 "$src" "$S/usr/share/doc/imageswitch/$page.md"
done
for src in "$REPO"/doc/*.md; do
    case $src in *.[1-8].md) continue ;; esac
    install -m 644 "$src" "$S/usr/share/doc/imageswitch/$(basename "$src")"
done
shopt -u nullglob
# Completions come from sysrootctl's own flag definitions.
for sh in bash zsh fish; do
    "$SYSROOTCTL" completions "$sh" >"$WORK/completion.$sh" && [ -s "$WORK/completion.$sh" ] ||
        die "sysrootctl completions $sh failed"
done
install -D -m 644 "$WORK/completion.bash" "$S/usr/share/bash-completion/completions/sysrootctl"
install -D -m 644 "$WORK/completion.zsh" "$S/usr/share/zsh/vendor-completions/_sysrootctl"
install -D -m 644 "$WORK/completion.fish" "$S/usr/share/fish/vendor_completions.d/sysrootctl.fish"
cat >"$S/DEBIAN/control" <<EOF
Package: imageswitch
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$S" | cut -f1)
Depends: $(shlibs_depends "$IMAGESWITCH" "$SYSROOTCTL")
Section: admin
Priority: optional
Description: run commands inside other installed Linux trees (setuid helper)
 imageswitch puts an ordinary user into another Linux distribution installed
 on the same machine (an i386 Scientific Linux 5 tree on a Debian host, say),
 in the directory they were in, with their files, as if they had logged in.
 /usr/sbin/imageswitch is setuid root; it reads only /etc/sysroots.toml, which
 must be root-owned. sysrootctl builds and maintains the trees declaratively.
 .
 An example configuration is in /usr/share/doc/imageswitch/examples.
EOF
finish_package "$S"

# --- imageswitch-slurm ---------------------------------------------------------

P=$WORK/imageswitch-slurm
install -d "$P/DEBIAN" "$P$PLUGIN_DIR" "$P/etc/slurm/plugstack.conf.d" "$P/usr/libexec/imageswitch" \
    "$P/usr/lib/imageswitch-slurm"
install -m 644 "$PLUGIN" "$P$PLUGIN_DIR/imageswitch_spank.so"
install -m 755 "$HELPER" "$P/usr/libexec/imageswitch/imageswitch-spank-exec"
# The conffile only includes the "required" line, which lives with the
# plugin: "dpkg -r" keeps conffiles, and a required line naming a removed
# plugin would stop every srun/sbatch and slurmd on the node. An include that
# matches nothing loads nothing. "required": a node whose plugin fails to
# load refuses jobs instead of running a --sysroot job on the host.
cat >"$P/etc/slurm/plugstack.conf.d/imageswitch.conf" <<EOF
# imageswitch SPANK plugin: srun/sbatch/salloc --sysroot=NAME (see imageswitch(8)).
include /usr/lib/imageswitch-slurm/plugstack.conf
EOF
cat >"$P/usr/lib/imageswitch-slurm/plugstack.conf" <<EOF
required $PLUGIN_DIR/imageswitch_spank.so imageswitch=/usr/sbin/imageswitch helper=/usr/libexec/imageswitch/imageswitch-spank-exec
EOF
chmod 644 "$P/etc/slurm/plugstack.conf.d/imageswitch.conf" "$P/usr/lib/imageswitch-slurm/plugstack.conf"
echo /etc/slurm/plugstack.conf.d/imageswitch.conf >"$P/DEBIAN/conffiles"
doc_files "$P" imageswitch-slurm
[ -f "$REPO/doc/batch.md" ] && install -m 644 "$REPO/doc/batch.md" "$P/usr/share/doc/imageswitch-slurm/batch.md"
cat >"$P/DEBIAN/control" <<EOF
Package: imageswitch-slurm
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $(du -sk --exclude=DEBIAN "$P" | cut -f1)
Depends: imageswitch (= $VERSION), $(shlibs_depends "$PLUGIN" "$HELPER")
Breaks: slurmd (<< $SLURM_SERIES), slurmd (>= $SLURM_NEXT), slurm-client (<< $SLURM_SERIES), slurm-client (>= $SLURM_NEXT)
Enhances: slurmd, slurm-client
Section: admin
Priority: optional
Description: Slurm SPANK plugin for imageswitch (--sysroot=NAME)
 Adds --sysroot=NAME to srun, sbatch and salloc: every task of the job runs
 inside that sysroot through the installed setuid imageswitch, which does all
 checks. Built for Slurm $SLURM_SERIES; enabled by
 /etc/slurm/plugstack.conf.d/imageswitch.conf.
EOF
finish_package "$P"

# The whole point of building with dpkg-deb: check the setuid bit made it.
dpkg-deb -c "$OUT/imageswitch_${VERSION}_$ARCH.deb" >"$WORK/contents"
grep -q '^-rwsr-xr-x root/root .* \./usr/sbin/imageswitch$' "$WORK/contents" ||
    die "imageswitch is not 4755 root:root in the package"
