#!/usr/bin/env bash
# Desktop launchers, for real. sysrootctl apply builds a sysroot (imported
# from the cached bullseye i386 tree) and writes its sysroot-NAME.desktop;
# the launcher must pass desktop-file-validate, and its Exec line, started the
# way a desktop starts a Terminal=true entry (xterm -e) under Xvfb as an
# ordinary user, must open a shell inside the sysroot that reports the tree's
# release. A screenshot lands in $ARTIFACTS (default target/test-artifacts).
#
#   bash tests/desktop.sh        (as root; installs what it needs with apt-get)
set -uo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/support/checks.sh
source "$REPO/tests/support/checks.sh"
require_root "it installs a setuid binary and builds a sysroot"

NAME=imageswitch-desktop-test
BASE=/var/lib/$NAME
CONF=/etc/$NAME/sysroots.toml           # the test build's compile-time config
TREE_SRC=${IMAGESWITCH_TEST_CACHE:-/var/cache/imageswitch-test}/bullseye-i386
USER_NAME=isw-desktop
ARTIFACTS=${ARTIFACTS:-$REPO/target/test-artifacts}
export CARGO_TARGET_DIR=${DESKTOP_TEST_TARGET_DIR:-$REPO/target/desktop-test}

install_missing Xvfb:xvfb xterm:xterm xdotool:xdotool import:imagemagick \
    desktop-file-validate:desktop-file-utils xwininfo:x11-utils \
    /usr/share/fonts/X11/misc/fonts.dir:xfonts-base /usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:fonts-dejavu-core
must "cached bullseye i386 tree" bash "$REPO/tests/support/trees.sh" bullseye-i386

xvfb="" term="" marker=""
cleanup() {
    [ -n "$term" ] && kill "$term" 2>/dev/null
    [ -n "$xvfb" ] && kill "$xvfb" 2>/dev/null
    wait 2>/dev/null
    [ -n "${xvfb_log:-}" ] && rm -f "$xvfb_log"
    rm -rf "$BASE" "/etc/$NAME"
    userdel -r "$USER_NAME" >/dev/null 2>&1
}
trap cleanup EXIT
cleanup
getent passwd "$USER_NAME" >/dev/null || must "useradd $USER_NAME" useradd -m -s /bin/bash "$USER_NAME"

must "build imageswitch for $CONF" env IMAGESWITCH_CONFIG_PATH="$CONF" \
    cargo build -q --manifest-path "$REPO/Cargo.toml" -p imageswitch -p sysrootctl --bins
mkdir -p "$BASE/bin" "/etc/$NAME" && chmod 755 "$BASE" "$BASE/bin" "/etc/$NAME"
must "install imageswitch setuid root" install -m 4755 -o root "$CARGO_TARGET_DIR/debug/imageswitch" "$BASE/bin/imageswitch"
cat >"$CONF" <<EOF
[defaults]
binds = ["/home", "/tmp"]
log_socket = ""

[sysroot.desk]
path = "$BASE/roots/desk"
personality = "linux32"

[sysroot.desk.build]
method = "tarball"
source = "$TREE_SRC"
store = "$BASE/store"
users = { sync = true }
EOF
chmod 644 "$CONF"

ctl=("$CARGO_TARGET_DIR/debug/sysrootctl" --config "$CONF" --imageswitch "$BASE/bin/imageswitch"
     --alias-dir "$BASE/aliases" --applications-dir "$BASE/applications")
must "sysrootctl apply desk" "${ctl[@]}" -q apply desk
launcher=$BASE/applications/sysroot-desk.desktop
check "sysrootctl wrote $launcher" test -s "$launcher"
check "desktop-file-validate accepts it" desktop-file-validate "$launcher"
check "it is a Terminal=true application" grep -qx 'Terminal=true' "$launcher"
exec_line=$(sed -n 's/^Exec=//p' "$launcher" | head -1)
check_eq "its Exec line runs imageswitch on the sysroot" "$BASE/bin/imageswitch desk" "$exec_line"

home=$(getent passwd "$USER_NAME" | cut -d: -f6)
marker="$home/desktop-marker"
# Xvfb picks a free display itself and writes its number to -displayfd once
# it accepts connections: no guessed number that another server holds, and no
# fixed wait that a loaded machine outlasts. -noreset: an X server resets when
# its last client leaves, and a client that connects during the reset may be
# dropped with no reason given; the probe below is such a last client. The
# probe runs as the user, so a display that only root reaches fails here, with
# what the machine shows, not later as a missing window. -ac: the test server listens on a Unix socket only,
# and which local users may use it is not what this test is about.
displayfile=$(mktemp)
xvfb_log=$(mktemp)
Xvfb -displayfd 3 -screen 0 800x500x24 -nolisten tcp -noreset -ac 3>"$displayfile" >"$xvfb_log" 2>&1 &
xvfb=$!
for _ in $(seq 600); do [ -s "$displayfile" ] && break; kill -0 "$xvfb" 2>/dev/null || break; sleep 0.1; done
display=:$(tr -dc 0-9 <"$displayfile")
rm -f "$displayfile"
# Run in a subshell of its own: it replaces the shell it runs in.
as_user() { cd "$home" && exec setpriv --reuid="$USER_NAME" --regid="$USER_NAME" --init-groups -- "$@"; }
reached=""
for _ in $(seq 100); do
    (as_user env DISPLAY="$display" xwininfo -root) >/dev/null 2>&1 && { reached=1; break; }
    sleep 0.1
done
if [ -z "$reached" ]; then
    say "# $USER_NAME cannot reach $display; what the machine shows:"
    (as_user env DISPLAY="$display" xwininfo -root) 2>&1 | sed 's/^/#   /'
    { ls -la /tmp/.X11-unix; ss -xl | grep -F X11; sed 's/^/Xvfb: /' "$xvfb_log"; } 2>&1 | sed 's/^/#   /'
fi
must "Xvfb started on $display, and $USER_NAME reaches it" test -n "$reached"

# Started as the user, exactly as a desktop runs a Terminal=true entry's Exec.
# An xterm that exits before its window appears is the test bed's fault, not
# the launcher's: it is said, and started once more.
win=""
for attempt in 1 2; do
    # shellcheck disable=SC2086
    (as_user env DISPLAY="$display" HOME="$home" xterm -geometry 90x20+0+0 -fa Monospace -fs 11 -e $exec_line) &
    term=$!
    for _ in $(seq 300); do
        win=$(DISPLAY=$display xdotool search --class xterm 2>/dev/null | head -1)
        [ -n "$win" ] && break
        kill -0 "$term" 2>/dev/null || break
        sleep 0.1
    done
    [ -n "$win" ] && break
    kill -0 "$term" 2>/dev/null && break
    say "# attempt $attempt: xterm exited before its window appeared"
done
check "a terminal window opened" test -n "$win"
sleep 1
# Typed through XTEST into the focused window, as a person would.
DISPLAY=$display xdotool windowfocus --sync "$win" 2>/dev/null
DISPLAY=$display xdotool type --delay 15 \
    "echo in \$IMAGESWITCH_SYSROOT: \$(cat /etc/debian_version) \$(uname -m) \$(id -un) | tee $marker" 2>/dev/null
DISPLAY=$display xdotool key Return 2>/dev/null
for _ in $(seq 300); do [ -s "$marker" ] && break; sleep 0.1; done
sleep 0.5
mkdir -p "$ARTIFACTS"
DISPLAY=$display import -window root "$ARTIFACTS/desktop-launcher.png" 2>/dev/null
check_eq "the shell inside reports the sysroot, the tree's release, i686 and the user (merged by sysrootctl)" \
    "in desk: $(cat "$TREE_SRC/etc/debian_version") i686 $USER_NAME" "$(cat "$marker" 2>/dev/null)"
check "screenshot saved to $ARTIFACTS/desktop-launcher.png" test -s "$ARTIFACTS/desktop-launcher.png"
finish
